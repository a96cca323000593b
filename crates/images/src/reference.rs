//! Image references as users write them: `name`, `name:tag`, `name@sha256:…`, with an
//! optional registry host (`localhost:4567/`, `<acct>.dkr.ecr.<region>.amazonaws.com/`,
//! `docker.io/library/`…). The host is dropped: every image lives in this one store.

use crate::ImageError;
use crate::digest::is_valid_digest;

/// A tag or a digest within a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(String),
}

impl Reference {
    /// A registry-API reference (path segment of `/v2/<name>/manifests/<reference>`).
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        if s.contains(':') {
            if is_valid_digest(s) {
                Ok(Reference::Digest(s.to_string()))
            } else {
                Err(ImageError::InvalidReference(s.to_string()))
            }
        } else if is_valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(ImageError::InvalidReference(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) => t,
            Reference::Digest(d) => d,
        }
    }
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The registry host as written (dropped for lookups).
    pub registry: Option<String>,
    /// Normalised repository (`docker.io/library/x` → `x`, `localhost/x` → `x`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageReference {
    /// What to look up: the digest when given, else the tag, else `latest`.
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Reference::Digest(d.clone()),
            (None, Some(t)) => Reference::Tag(t.clone()),
            (None, None) => Reference::Tag("latest".to_string()),
        }
    }
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (OCI distribution spec).
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Repository names: `/`-separated components of lowercase alphanumerics joined by `.`,
/// `_`, `__` or runs of `-` (OCI distribution spec).
pub fn is_valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-'))
                && !c.contains("..")
                && !c.contains("._")
                && !c.contains("_.")
                && !c.contains("___")
        })
}

fn is_docker_hub(host: &str) -> bool {
    matches!(host, "docker.io" | "index.docker.io" | "registry-1.docker.io")
}

/// Parses `[host[:port]/]name[:tag][@sha256:…]`.
pub fn parse_reference(s: &str) -> Result<ImageReference, ImageError> {
    let invalid = || ImageError::InvalidReference(s.to_string());
    let s_trim = s.trim();
    if s_trim.is_empty() {
        return Err(invalid());
    }
    let (rest, digest) = match s_trim.split_once('@') {
        Some((r, d)) => {
            if !is_valid_digest(d) {
                return Err(invalid());
            }
            (r, Some(d.to_string()))
        }
        None => (s_trim, None),
    };
    // A host is a first component with a '.' or ':' or exactly "localhost" (docker's rule).
    let (registry, path) = match rest.split_once('/') {
        Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            let host_ok = first.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[')
                && !first.contains("..")
                && first
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !host_ok {
                return Err(invalid());
            }
            (Some(first.to_string()), path)
        }
        _ => (None, rest),
    };
    let (name, tag) = match path.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
        _ => (path, None),
    };
    if let Some(t) = &tag
        && !is_valid_tag(t)
    {
        return Err(invalid());
    }
    let mut name = name;
    if registry.as_deref().is_some_and(is_docker_hub) {
        name = name.strip_prefix("library/").unwrap_or(name);
    }
    if !is_valid_repository(name) {
        return Err(invalid());
    }
    Ok(ImageReference { registry, repository: name.to_string(), tag, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (String, Option<String>, Option<String>) {
        let r = parse_reference(s).unwrap();
        (r.repository, r.tag, r.digest)
    }

    #[test]
    fn forms() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(p("busybox"), ("busybox".into(), None, None));
        assert_eq!(p("busybox:1.36"), ("busybox".into(), Some("1.36".into()), None));
        assert_eq!(p(&format!("busybox@{d}")), ("busybox".into(), None, Some(d.clone())));
        assert_eq!(p("localhost:4567/team/app:v1"), ("team/app".into(), Some("v1".into()), None));
        assert_eq!(p("127.0.0.1:4567/app:v1"), ("app".into(), Some("v1".into()), None));
        assert_eq!(
            p("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1"),
            ("app".into(), Some("v1".into()), None)
        );
        assert_eq!(p("docker.io/library/busybox:latest"), ("busybox".into(), Some("latest".into()), None));
        assert_eq!(p("localhost/busybox:latest"), ("busybox".into(), Some("latest".into()), None));
        assert_eq!(p("quay.io/org/app"), ("org/app".into(), None, None));
        assert_eq!(p(&format!("app:v1@{d}")), ("app".into(), Some("v1".into()), Some(d)));
        assert_eq!(parse_reference("x").unwrap().reference(), Reference::Tag("latest".into()));
        for bad in ["", "Busybox", "app:", "app:-x", "app@sha256:xyz", "a//b", "../x", "a/../b"] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn api_references() {
        assert_eq!(Reference::parse("v1").unwrap(), Reference::Tag("v1".into()));
        assert!(Reference::parse("sha256:zz").is_err());
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "0".repeat(64))).unwrap(),
            Reference::Digest(_)
        ));
    }
}
