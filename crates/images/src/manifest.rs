//! Parsing of OCI / Docker schema 2 manifests and indexes, and of image configs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::is_valid_digest;
use crate::media_types as mt;
use crate::{ImageConfig, ImageError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub media_type: String,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    /// Children of an index.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Parsed {
    pub fn is_index(&self) -> bool {
        mt::is_index(&self.media_type)
    }

    /// Every blob / manifest this one references, that must be present to serve it (foreign
    /// layers with `urls` are fetched from elsewhere by clients, so they are exempt).
    pub fn referenced(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|d| d.urls.is_empty()))
            .chain(self.manifests.iter())
    }

    pub fn layers_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// Parses manifest `bytes`; `declared` is the Content-Type it came with (may be empty).
pub(crate) fn parse(bytes: &[u8], declared: &str) -> Result<Parsed, ImageError> {
    let invalid = |m: String| ImageError::InvalidManifest(m);
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not a manifest: {e}")))?;
    if raw.schema_version == Some(1)
        || declared == mt::DOCKER_SCHEMA1
        || declared == mt::DOCKER_SCHEMA1_SIGNED
    {
        return Err(ImageError::Unsupported("Docker schema 1 manifests".into()));
    }
    if raw.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2".into()));
    }
    let declared = declared.split(';').next().unwrap_or("").trim();
    let media_type = match raw.media_type.as_deref() {
        Some(m) if mt::is_manifest(m) => m.to_string(),
        Some(m) if !m.is_empty() => return Err(ImageError::Unsupported(format!("manifest media type {m}"))),
        _ if mt::is_manifest(declared) => declared.to_string(),
        _ if raw.manifests.is_some() => mt::OCI_INDEX.to_string(),
        _ => mt::OCI_MANIFEST.to_string(),
    };
    let parsed = Parsed {
        config: raw.config,
        layers: raw.layers.unwrap_or_default(),
        manifests: raw.manifests.unwrap_or_default(),
        subject: raw.subject,
        artifact_type: raw.artifact_type,
        annotations: raw.annotations,
        media_type,
    };
    if parsed.is_index() {
        if parsed.config.is_some() || !parsed.layers.is_empty() {
            return Err(invalid("an index has no config or layers".into()));
        }
    } else if parsed.config.is_none() {
        return Err(invalid("an image manifest needs a config".into()));
    } else if !parsed.manifests.is_empty() {
        return Err(invalid("an image manifest has no manifests list".into()));
    }
    for d in parsed.referenced().chain(parsed.subject.iter()).chain(parsed.layers.iter()) {
        if !is_valid_digest(&d.digest) {
            return Err(invalid(format!("unsupported or malformed digest {:?}", d.digest)));
        }
    }
    Ok(parsed)
}

/// The runnable parts of an image config JSON. A config that is not an image config (an
/// artifact's) yields an empty `ImageConfig`.
pub(crate) fn parse_config(bytes: &[u8]) -> Result<ImageConfig, ImageError> {
    #[derive(Deserialize, Default)]
    struct Inner {
        #[serde(rename = "Entrypoint", default)]
        entrypoint: Option<Vec<String>>,
        #[serde(rename = "Cmd", default)]
        cmd: Option<Vec<String>>,
        #[serde(rename = "Env", default)]
        env: Option<Vec<String>>,
        #[serde(rename = "WorkingDir", default)]
        working_dir: Option<String>,
        #[serde(rename = "User", default)]
        user: Option<String>,
        #[serde(rename = "ExposedPorts", default)]
        exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    }
    #[derive(Deserialize)]
    struct Outer {
        #[serde(default)]
        config: Option<Inner>,
    }
    let outer: Outer = serde_json::from_slice(bytes)
        .map_err(|e| ImageError::InvalidManifest(format!("image config is not valid JSON: {e}")))?;
    let c = outer.config.unwrap_or_default();
    Ok(ImageConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        user: c.user.filter(|u| !u.is_empty()),
        exposed_ports: c.exposed_ports.map(|m| m.into_keys().collect()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn parses_image_and_index() {
        let m = serde_json::json!({"schemaVersion":2,"mediaType":mt::OCI_MANIFEST,
            "config":{"mediaType":mt::OCI_CONFIG,"digest":d('a'),"size":2},
            "layers":[{"mediaType":mt::OCI_LAYER_GZIP,"digest":d('b'),"size":10}],
            "subject":{"mediaType":mt::OCI_MANIFEST,"digest":d('c'),"size":5}});
        let p = parse(m.to_string().as_bytes(), "").unwrap();
        assert_eq!(p.media_type, mt::OCI_MANIFEST);
        assert_eq!(p.referenced().count(), 2);
        assert_eq!(p.layers_size(), 10);
        assert_eq!(p.subject.unwrap().digest, d('c'));
        let i = serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":mt::OCI_MANIFEST,"digest":d('a'),"size":2,
            "platform":{"os":"linux","architecture":"amd64"}}]});
        let p = parse(i.to_string().as_bytes(), mt::DOCKER_MANIFEST_LIST).unwrap();
        assert_eq!(p.media_type, mt::DOCKER_MANIFEST_LIST);
        assert!(p.is_index());
        assert!(parse(b"{}", "").is_err());
        assert!(parse(br#"{"schemaVersion":2}"#, "").is_err());
        assert!(matches!(parse(br#"{"schemaVersion":1}"#, ""), Err(ImageError::Unsupported(_))));
        let bad =
            serde_json::json!({"schemaVersion":2,"config":{"digest":"sha256:../x","size":1},"layers":[]});
        assert!(parse(bad.to_string().as_bytes(), "").is_err());
    }

    #[test]
    fn config() {
        let c = parse_config(br#"{"config":{"Entrypoint":["/bin/sh"],"Cmd":null,"Env":["A=1"],"WorkingDir":"","ExposedPorts":{"80/tcp":{}}}}"#).unwrap();
        assert_eq!(c.entrypoint, vec!["/bin/sh"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.working_dir, None);
        assert_eq!(c.exposed_ports, vec!["80/tcp"]);
        assert_eq!(parse_config(b"{}").unwrap(), ImageConfig::default());
    }
}
