//! The one image store: OCI content (blobs, manifests, tags) shared by the registry, ECS tasks and image functions; imports of OCI layouts and docker-save archives; layers unpacked once; rootfs preparation.
//!
//! Public API (see each item's docs):
//! ```text
//! ImageStore::open(data_dir, store) -> ImageStore            // cheap Clone, Send + Sync
//!  content (registry):
//!   blob_path(digest) -> Option<PathBuf>      blob_size(digest) -> Option<u64>
//!   upload_dir() -> PathBuf                   commit_blob(temp, expected) -> digest (temp consumed)
//!   commit_blob_prehashed(temp, digest) (caller hashed while writing; no re-read)
//!   put_blob(bytes) -> digest                 delete_blob(digest) -> bool (file + all repo links)
//!   link_blob(repo, digest)                   unlink_blob(repo, digest) -> bool
//!   repo_has_blob(repo, digest) -> bool
//!   delete_repository_blob(repo, digest) -> bool (unlink; file removed once unreferenced)
//!   put_manifest(repo, reference, media_type, bytes) -> digest
//!   get_manifest(repo, reference) -> Option<StoredManifest>
//!   manifest_digest(repo, reference) -> Option<String>
//!   delete_manifest(repo, digest) -> bool     delete_tag(repo, tag) -> bool
//!   tag_manifest(repo, tag, digest)           tags(repo) -> Vec<String> (sorted)
//!   repositories() -> Vec<String> (sorted)    repository_exists(repo) -> bool
//!   ensure_repository(repo)                   delete_repository(repo)
//!   manifests(repo) -> Vec<ManifestInfo>      referrers(repo, digest) -> Vec<serde_json::Value>
//!  images (ECS tasks, image functions, `nimbus image`):
//!   import(path, tag) -> Vec<ImportedImage>   resolve(reference) -> Image
//!   unpack(&Image) -> Vec<PathBuf> (bottom→top layer dirs)     unpack_layer(digest) -> PathBuf
//!   layer_dir(digest) -> Option<PathBuf>      layer_whiteouts(digest) -> LayerWhiteouts
//!   prepare_rootfs(&Image, dir) -> RootfsView (NIMBUS_ROOTFS=copy|overlay forces a mode)
//!   prepare_rootfs_with(&Image, dir, RootfsMode) -> RootfsView   overlay_supported(near) -> bool
//!   layers_unpacked() -> u64                  root() -> &Path (<data_dir>/images)
//!  free functions: parse_reference(s) -> ImageReference; Reference::parse(s); is_valid_tag;
//!   is_valid_repository;
//!   sha256_digest(bytes); is_valid_digest(s); host_platform() -> ("linux", "amd64"|…);
//!   media_types::{OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, …, is_index, …}
//! ```
#![forbid(unsafe_code)]

mod content;
mod digest;
mod import;
mod manifest;
pub mod media_types;
mod reference;
mod resolve;
mod rootfs;
mod unpack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

pub use digest::{is_valid_digest, sha256_digest};
pub use reference::{ImageReference, Reference, is_valid_repository, is_valid_tag, parse_reference};
pub use rootfs::{RootfsMode, host_platform};
pub use unpack::LayerWhiteouts;

/// Errors of the image store. `NotFound` carries what was looked up (a reference, digest or
/// repository) so callers can phrase AWS's / OCI's messages around it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("manifest references unknown blob {0}")]
    ManifestBlobUnknown(String),
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("invalid reference: {0}")]
    InvalidReference(String),
    #[error("unsafe path in layer: {0}")]
    UnsafePath(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("store: {0}")]
    Store(#[from] nimbus_store::StoreError),
}

/// A manifest as stored: its digest, the media type it is served with, and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// One manifest of a repository, for ECR's ListImages / DescribeImages.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestInfo {
    pub digest: String,
    pub media_type: String,
    /// Sorted.
    pub tags: Vec<String>,
    /// Sum of the layer sizes (for an index: of the children's layers that are stored).
    pub size_bytes: u64,
    pub pushed_at: chrono::DateTime<chrono::Utc>,
    /// The config's media type (ECR's `artifactMediaType`), or the manifest's `artifactType`.
    pub artifact_media_type: Option<String>,
}

/// What `import` stored: one entry per image of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
}

/// A resolved, runnable image (always a single-platform image manifest).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub repository: String,
    /// The digest the reference resolved to (an index's digest when the reference named an
    /// index; this is what ECS reports as `imageDigest`).
    pub digest: String,
    /// The platform image manifest actually run (equals `digest` unless an index was resolved).
    pub manifest_digest: String,
    pub config_digest: String,
    pub config: ImageConfig,
    /// Bottom → top.
    pub layers: Vec<LayerRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// The runnable parts of an image config (`config` object of the OCI/Docker config JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// "K=V".
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// "80/tcp" form, sorted.
    pub exposed_ports: Vec<String>,
}

/// How a container's root filesystem is to be assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsView {
    /// Mount overlayfs with these (lower bottom → top; overlayfs' `lowerdir=` wants top first).
    Overlay { lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
    /// A private full copy with whiteouts applied.
    Dir(PathBuf),
}

/// The image store. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `<data_dir>/images`
    root: PathBuf,
    store: Arc<dyn nimbus_store::Store>,
    meta: RwLock<content::Meta>,
    /// One lock per layer digest so concurrent unpacks of one layer happen once.
    layer_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Whether overlayfs mounts work here (probed once, on first `prepare_rootfs`).
    overlay_ok: OnceLock<bool>,
    /// Layer unpacks performed by this process (dedup is observable in tests and metrics).
    unpacked: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore").field("root", &self.inner.root).finish()
    }
}

impl ImageStore {
    /// Opens (creating directories as needed) the store under `<data_dir>/images` and loads
    /// the metadata from `store`.
    pub fn open(data_dir: &Path, store: Arc<dyn nimbus_store::Store>) -> Result<ImageStore, ImageError> {
        let root = data_dir.join("images");
        for sub in ["blobs/sha256", "layers", "uploads", "tmp"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        // Leftovers of an interrupted import/unpack are garbage; uploads belong to the
        // registry (resumable uploads may span restarts), so they stay.
        if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
            for e in rd.flatten() {
                let _ = remove_any(&e.path());
            }
        }
        if let Ok(rd) = std::fs::read_dir(root.join("layers")) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = remove_any(&e.path());
                }
            }
        }
        let meta = content::Meta::load(store.as_ref())?;
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root,
                store,
                meta: RwLock::new(meta),
                layer_locks: Mutex::new(HashMap::new()),
                overlay_ok: OnceLock::new(),
                unpacked: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// `<data_dir>/images`.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// How many layers this process has unpacked (each digest at most once).
    pub fn layers_unpacked(&self) -> u64 {
        self.inner.unpacked.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.inner.root.join("tmp")
    }
}

/// Removes a file, symlink or directory tree without following symlinks.
pub(crate) fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
