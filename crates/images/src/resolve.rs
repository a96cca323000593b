//! Reference → runnable image: tag/digest lookup, index platform selection, config parsing.

use crate::manifest::{self, Parsed};
use crate::reference::{Reference, parse_reference};
use crate::{Image, ImageError, ImageStore, LayerRef, host_platform};

impl ImageStore {
    /// Resolves any reference form users write (see the crate docs) to a single-platform
    /// image of this host. `NotFound(reference)` when nothing matches.
    pub fn resolve(&self, reference: &str) -> Result<Image, ImageError> {
        let not_found = || ImageError::NotFound(reference.to_string());
        // A bare digest: any repository that holds it.
        if reference.starts_with("sha256:") {
            let repo = self.repos_with_manifest(reference).into_iter().next().ok_or_else(not_found)?;
            return self.image_from(&repo, reference, reference);
        }
        let parsed = parse_reference(reference)?;
        let r = parsed.reference();
        let mut candidates = vec![parsed.repository.clone()];
        // `library/x` (Docker Hub's implicit namespace written out) may have been stored as `x`.
        if let Some(short) = parsed.repository.strip_prefix("library/") {
            candidates.push(short.to_string());
        }
        for repo in candidates {
            if let Some(digest) = self.manifest_digest(&repo, r.as_str()) {
                return self.image_from(&repo, &digest, reference);
            }
        }
        // A digest reference may name a manifest stored under another repository name.
        if let Reference::Digest(d) = r
            && let Some(repo) = self.repos_with_manifest(&d).into_iter().next()
        {
            return self.image_from(&repo, &d, reference);
        }
        Err(not_found())
    }

    fn read_manifest_blob(&self, digest: &str, reference: &str) -> Result<Parsed, ImageError> {
        let path = self.blob_path(digest).ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        let bytes = std::fs::read(path)?;
        let declared = self.manifest_record("", digest).map(|r| r.media_type).unwrap_or_default();
        manifest::parse(&bytes, &declared)
    }

    fn image_from(&self, repo: &str, digest: &str, reference: &str) -> Result<Image, ImageError> {
        let mut parsed = self.read_manifest_blob(digest, reference)?;
        let mut manifest_digest = digest.to_string();
        // Indexes may nest (an index of indexes); a few levels are plenty.
        for _ in 0..4 {
            if !parsed.is_index() {
                break;
            }
            let child = select_platform(&parsed).ok_or_else(|| {
                let (os, arch) = host_platform();
                ImageError::NotFound(format!("{reference} (no {os}/{arch} entry in the image index)"))
            })?;
            manifest_digest = child;
            parsed = self.read_manifest_blob(&manifest_digest, reference)?;
        }
        if parsed.is_index() {
            return Err(ImageError::InvalidManifest("image indexes nested too deeply".into()));
        }
        let config_desc = parsed
            .config
            .as_ref()
            .ok_or_else(|| ImageError::InvalidManifest("image manifest without config".into()))?;
        let config_path = self
            .blob_path(&config_desc.digest)
            .ok_or_else(|| ImageError::ManifestBlobUnknown(config_desc.digest.clone()))?;
        let config = manifest::parse_config(&std::fs::read(config_path)?)?;
        Ok(Image {
            repository: repo.to_string(),
            digest: digest.to_string(),
            manifest_digest,
            config_digest: config_desc.digest.clone(),
            config,
            layers: parsed
                .layers
                .iter()
                .map(|l| LayerRef {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                    size: l.size,
                })
                .collect(),
        })
    }
}

/// The index entry for linux + this host's architecture (exact variant preferred; an index
/// with a single entry without platform information counts as matching).
fn select_platform(index: &Parsed) -> Option<String> {
    let (os, arch) = host_platform();
    let matching: Vec<_> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch)
                // Attestation manifests (buildkit) carry platform unknown/unknown; skip them.
                && !d.annotations.as_ref().is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
        })
        .collect();
    if let Some(first) = matching.iter().find(|d| {
        let v = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        v.is_none() || (arch == "arm64" && v == Some("v8"))
    }) {
        return Some(first.digest.clone());
    }
    if let Some(first) = matching.first() {
        return Some(first.digest.clone());
    }
    if index.manifests.len() == 1 && index.manifests[0].platform.is_none() {
        return Some(index.manifests[0].digest.clone());
    }
    None
}
