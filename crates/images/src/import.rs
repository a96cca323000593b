//! Imports of OCI image layouts (directories), OCI archives (a tar of a layout) and
//! docker/podman `save` archives (`manifest.json` with Config/RepoTags/Layers).
//!
//! Everything imported goes through the same content path as registry pushes: blobs are
//! verified and stored content-addressed, manifests stored with `put_manifest` under their
//! repository, so the registry serves imported images and `resolve` finds them. A docker-save
//! image has no manifest of its own: an OCI image manifest is built for it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::{HashingWriter, sha256_file};
use crate::manifest::{self, Descriptor};
use crate::media_types as mt;
use crate::reference::{ImageReference, is_valid_repository, is_valid_tag, parse_reference};
use crate::unpack::{Compression, open_layer, parents_are_dirs, safe_parents, sanitize};
use crate::{ImageError, ImageStore, ImportedImage, remove_any};

const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANN_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Removes an extraction directory when the import is over, whatever happened.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = remove_any(&self.0);
    }
}

/// The files of a layout / save archive, on disk, and which of them were already stored.
struct Source {
    dir: PathBuf,
    /// Extracted into our tmp dir: files can be moved into the blob store.
    owned: bool,
    /// relative path → (digest, size) of files already stored.
    stored: HashMap<PathBuf, (String, u64)>,
}

#[derive(Debug, Deserialize)]
struct SaveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Repository/tag an imported image is stored under.
#[derive(Debug, Clone)]
struct Name {
    repository: String,
    tag: Option<String>,
}

fn name_from_ref(r: &ImageReference) -> Name {
    Name { repository: r.repository.clone(), tag: Some(r.tag.clone().unwrap_or_else(|| "latest".into())) }
}

/// A repository name from an archive's file name (`busybox.tar.gz` → `busybox`), used when
/// the archive names nothing itself.
fn repo_from_path(path: &Path) -> String {
    let mut name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    for ext in [".gz", ".zst", ".tgz", ".tar", ".oci", ".docker"] {
        if let Some(s) = name.strip_suffix(ext) {
            name = s.to_string();
        }
    }
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    if is_valid_repository(&cleaned) { cleaned } else { "imported".to_string() }
}

impl ImageStore {
    /// Imports an OCI image layout directory, an OCI archive, or a docker/podman save
    /// tarball (optionally gzip/zstd-compressed). `tag` ("name[:tag]", any registry host is
    /// dropped) names the first image instead of the archive's own names.
    pub fn import(&self, path: &Path, tag: Option<&str>) -> Result<Vec<ImportedImage>, ImageError> {
        let forced = tag.map(parse_reference).transpose()?.map(|r| name_from_ref(&r));
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::NotFound(path.display().to_string()),
            _ => ImageError::Io(e),
        })?;
        let _guard;
        let mut src = if meta.is_dir() {
            Source { dir: path.to_path_buf(), owned: false, stored: HashMap::new() }
        } else {
            let dir = self.tmp_dir().join(format!("import-{}", uuid::Uuid::new_v4()));
            _guard = TempDir(dir.clone());
            std::fs::create_dir_all(&dir)?;
            extract_archive(path, &dir)?;
            Source { dir, owned: true, stored: HashMap::new() }
        };
        let fallback_repo = repo_from_path(path);
        if src.dir.join("index.json").is_file() {
            self.import_layout(&mut src, forced, &fallback_repo)
        } else if src.dir.join("manifest.json").is_file() {
            self.import_docker_save(&mut src, forced, &fallback_repo)
        } else {
            Err(ImageError::Unsupported(format!(
                "{} is neither an OCI image layout/archive (index.json) nor a docker save archive (manifest.json)",
                path.display()
            )))
        }
    }

    /// Stores the file at `rel` (verifying `expected` when given) and returns its digest/size.
    fn ingest(
        &self,
        src: &mut Source,
        rel: &Path,
        expected: Option<&str>,
    ) -> Result<(String, u64), ImageError> {
        let rel = sanitize(rel)?.ok_or_else(|| ImageError::UnsafePath(rel.display().to_string()))?;
        if let Some(done) = src.stored.get(&rel) {
            return check_expected(done.clone(), expected);
        }
        if src.owned && !parents_are_dirs(&src.dir, &rel) {
            return Err(ImageError::UnsafePath(rel.display().to_string()));
        }
        let file = src.dir.join(&rel);
        if !file.is_file() {
            return Err(match expected {
                Some(d) => ImageError::ManifestBlobUnknown(d.to_string()),
                None => ImageError::NotFound(format!("{} in the archive", rel.display())),
            });
        }
        let (digest, size) = if src.owned {
            let (digest, size) = sha256_file(&file)?;
            let got = check_expected((digest, size), expected)?;
            self.commit_hashed(&file, &got.0)?;
            got
        } else {
            // Someone else's directory: copy (hashing on the way), never move.
            let temp = self.tmp_dir().join(format!("blob-{}", uuid::Uuid::new_v4()));
            let mut w = HashingWriter::new(std::fs::File::create(&temp)?);
            let copied = std::io::copy(&mut std::fs::File::open(&file)?, &mut w);
            let (_, digest, size) = w.finish();
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&temp);
                return Err(e.into());
            }
            match check_expected((digest, size), expected) {
                Ok(got) => {
                    self.commit_hashed(&temp, &got.0)?;
                    got
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    return Err(e);
                }
            }
        };
        src.stored.insert(rel, (digest.clone(), size));
        Ok((digest, size))
    }

    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest).ok_or_else(|| ImageError::ManifestBlobUnknown(digest.to_string()))?;
        Ok(std::fs::read(p)?)
    }

    // ----- OCI layout -----

    fn import_layout(
        &self,
        src: &mut Source,
        forced: Option<Name>,
        fallback_repo: &str,
    ) -> Result<Vec<ImportedImage>, ImageError> {
        let index_bytes = std::fs::read(src.dir.join("index.json"))?;
        let index = manifest::parse(&index_bytes, mt::OCI_INDEX)?;
        if !index.is_index() {
            return Err(ImageError::InvalidManifest("index.json is not an image index".into()));
        }
        if index.manifests.is_empty() {
            return Err(ImageError::InvalidManifest("index.json lists no images".into()));
        }
        let mut out = Vec::new();
        let mut forced = forced;
        for desc in &index.manifests {
            let name = match forced.take() {
                Some(n) => n,
                None => layout_name(desc, fallback_repo)?,
            };
            let digest = self.import_layout_manifest(src, desc, &name.repository, 0)?;
            if let Some(tag) = &name.tag {
                self.tag_manifest(&name.repository, tag, &digest)?;
            }
            out.push(ImportedImage { repository: name.repository, tag: name.tag, digest });
        }
        Ok(out)
    }

    /// Stores a manifest of the layout (and everything it references) under `repo` by
    /// digest; returns the digest to tag. An index whose children are not all in the layout
    /// (a single-platform copy) is replaced by its child for this host.
    fn import_layout_manifest(
        &self,
        src: &mut Source,
        desc: &Descriptor,
        repo: &str,
        depth: u32,
    ) -> Result<String, ImageError> {
        if depth > 4 {
            return Err(ImageError::InvalidManifest("image indexes nested too deeply".into()));
        }
        let rel = blob_rel(&desc.digest)?;
        self.ingest(src, &rel, Some(&desc.digest))?;
        let bytes = self.read_blob(&desc.digest)?;
        let parsed = manifest::parse(&bytes, &desc.media_type)?;
        if parsed.is_index() {
            let present: Vec<&Descriptor> = parsed
                .manifests
                .iter()
                .filter(|c| blob_rel(&c.digest).is_ok_and(|r| src.dir.join(r).is_file()))
                .collect();
            if present.len() == parsed.manifests.len() {
                for c in &parsed.manifests {
                    self.import_layout_manifest(src, c, repo, depth + 1)?;
                }
                return self.put_manifest(repo, &desc.digest, &parsed.media_type, &bytes);
            }
            let (os, arch) = crate::host_platform();
            let pick = present
                .iter()
                .find(|c| c.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch))
                .or_else(|| present.first())
                .ok_or_else(|| ImageError::ManifestBlobUnknown(parsed.manifests[0].digest.clone()))?;
            let pick = (*pick).clone();
            return self.import_layout_manifest(src, &pick, repo, depth + 1);
        }
        for d in parsed.referenced() {
            let rel = blob_rel(&d.digest)?;
            self.ingest(src, &rel, Some(&d.digest))?;
        }
        self.put_manifest(repo, &desc.digest, &parsed.media_type, &bytes)
    }

    // ----- docker save -----

    fn import_docker_save(
        &self,
        src: &mut Source,
        forced: Option<Name>,
        fallback_repo: &str,
    ) -> Result<Vec<ImportedImage>, ImageError> {
        let entries: Vec<SaveEntry> = serde_json::from_slice(&std::fs::read(src.dir.join("manifest.json"))?)
            .map_err(|e| ImageError::InvalidManifest(format!("manifest.json: {e}")))?;
        if entries.is_empty() {
            return Err(ImageError::InvalidManifest("manifest.json lists no images".into()));
        }
        let mut out = Vec::new();
        let mut forced = forced;
        for entry in &entries {
            let (config_digest, config_size) = self.ingest(src, Path::new(&entry.config), None)?;
            // The config must be JSON with a rootfs; parse it to fail early on garbage.
            let config_bytes = self.read_blob(&config_digest)?;
            manifest::parse_config(&config_bytes)?;
            let mut layers = Vec::new();
            for l in &entry.layers {
                let (digest, size) = self.ingest(src, Path::new(l), None)?;
                let blob =
                    self.blob_path(&digest).ok_or_else(|| ImageError::ManifestBlobUnknown(digest.clone()))?;
                let media_type = match crate::unpack::compression_of_file(&blob)? {
                    Compression::Gzip => mt::OCI_LAYER_GZIP,
                    Compression::Zstd => mt::OCI_LAYER_ZSTD,
                    Compression::None => mt::OCI_LAYER,
                };
                layers.push(serde_json::json!({"mediaType": media_type, "digest": digest, "size": size}));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": mt::OCI_MANIFEST,
                "config": {"mediaType": mt::OCI_CONFIG, "digest": config_digest, "size": config_size},
                "layers": layers,
            });
            let bytes = serde_json::to_vec(&manifest)
                .map_err(|e| ImageError::InvalidManifest(format!("building manifest: {e}")))?;
            let names: Vec<Name> = match forced.take() {
                Some(n) => vec![n],
                None => {
                    let tags = entry.repo_tags.clone().unwrap_or_default();
                    let mut names = Vec::new();
                    for t in tags.iter().filter(|t| !t.is_empty() && *t != "<none>:<none>") {
                        names.push(name_from_ref(&parse_reference(t)?));
                    }
                    if names.is_empty() {
                        names.push(Name { repository: fallback_repo.to_string(), tag: None });
                    }
                    names
                }
            };
            for name in names {
                let reference = name.tag.clone().unwrap_or_else(|| crate::sha256_digest(&bytes));
                let digest = self.put_manifest(&name.repository, &reference, mt::OCI_MANIFEST, &bytes)?;
                out.push(ImportedImage { repository: name.repository, tag: name.tag, digest });
            }
        }
        Ok(out)
    }
}

fn check_expected(got: (String, u64), expected: Option<&str>) -> Result<(String, u64), ImageError> {
    match expected {
        Some(e) if e != got.0 => Err(ImageError::DigestMismatch { expected: e.to_string(), actual: got.0 }),
        _ => Ok(got),
    }
}

fn blob_rel(digest: &str) -> Result<PathBuf, ImageError> {
    let hex = crate::digest::digest_hex(digest)
        .ok_or_else(|| ImageError::InvalidManifest(format!("digest {digest}")))?;
    Ok(Path::new("blobs/sha256").join(hex))
}

/// The repository/tag an index.json entry names (containerd's full name first, then the
/// OCI ref name: a full reference, or a bare tag for the archive-named repository).
fn layout_name(desc: &Descriptor, fallback_repo: &str) -> Result<Name, ImageError> {
    let empty = BTreeMap::new();
    let ann = desc.annotations.as_ref().unwrap_or(&empty);
    if let Some(full) = ann.get(ANN_CONTAINERD_NAME)
        && let Ok(r) = parse_reference(full)
    {
        return Ok(name_from_ref(&r));
    }
    match ann.get(ANN_REF_NAME) {
        Some(n) if n.contains(':') || n.contains('/') => Ok(name_from_ref(&parse_reference(n)?)),
        Some(n) if is_valid_tag(n) => {
            Ok(Name { repository: fallback_repo.to_string(), tag: Some(n.clone()) })
        }
        Some(n) => Err(ImageError::InvalidReference(n.clone())),
        None => Ok(Name { repository: fallback_repo.to_string(), tag: None }),
    }
}

/// Extracts an archive's regular files into `dir` (paths confined like layer entries).
/// Symlinks between archive files (old docker-save layouts link repeated `layer.tar`s) are
/// resolved inside the archive and materialised as hard links.
fn extract_archive(path: &Path, dir: &Path) -> Result<(), ImageError> {
    let reader = open_layer(path)?;
    let mut archive = tar::Archive::new(reader);
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let Some(rel) = sanitize(&raw)? else { continue };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let p = safe_parents(dir, &rel)?;
                remove_any(&p)?;
                let mut f = std::fs::File::create(&p)?;
                std::io::copy(&mut entry, &mut f)?;
            }
            tar::EntryType::Directory => {
                let p = safe_parents(dir, &rel)?;
                if !p.is_dir() {
                    std::fs::create_dir(&p)?;
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name()? {
                    let target = target.into_owned();
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        rel.parent().map(Path::to_path_buf).unwrap_or_default()
                    } else {
                        PathBuf::new()
                    };
                    links.push((rel, lexical_join(&base, &target)?));
                }
            }
            _ => {}
        }
    }
    // Chains of links resolve over a few rounds.
    for _ in 0..8 {
        let mut pending = Vec::new();
        for (rel, target) in links {
            let src = dir.join(&target);
            if parents_are_dirs(dir, &target) && std::fs::symlink_metadata(&src).is_ok_and(|m| m.is_file()) {
                let p = safe_parents(dir, &rel)?;
                remove_any(&p)?;
                std::fs::hard_link(&src, &p)?;
            } else {
                pending.push((rel, target));
            }
        }
        if pending.is_empty() {
            break;
        }
        links = pending;
    }
    Ok(())
}

/// `base/target` normalised lexically, refusing to climb above the archive root.
fn lexical_join(base: &Path, target: &Path) -> Result<PathBuf, ImageError> {
    use std::path::Component;
    let mut out: Vec<std::ffi::OsString> = Vec::new();
    let start: PathBuf = if target.is_absolute() { PathBuf::new() } else { base.to_path_buf() };
    for c in start.components().chain(target.components()) {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir if out.pop().is_none() => {
                return Err(ImageError::UnsafePath(target.display().to_string()));
            }
            _ => {}
        }
    }
    Ok(out.iter().collect())
}
