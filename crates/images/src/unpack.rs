//! Layer unpacking: each layer blob once into `layers/<hex>/`, whiteouts in overlayfs form,
//! every path confined to the layer directory.
//!
//! Safety model: entry paths are made relative and may not contain `..`; parents are walked
//! component by component with `lstat` and a symlink parent is refused, so no entry is ever
//! written through a symlink (symlinks themselves are written as-is: they are only ever
//! interpreted inside the container's root). Hard links must name an entry of this layer,
//! reached by the same walk.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::digest_hex;
use crate::{Image, ImageError, ImageStore, remove_any};

pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Whiteouts of one layer, as paths relative to the layer root. Always written beside the
/// layer (`layers/<hex>.whiteouts`) so the copy path does not depend on mknod/xattr having
/// worked (they need root in the initial user namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerWhiteouts {
    /// Paths deleted from the layers below.
    pub whiteouts: Vec<String>,
    /// Directories whose lower contents are hidden ("" is the root).
    pub opaque: Vec<String>,
}

impl ImageStore {
    /// Unpacks every layer of `image` (once per layer digest, ever) and returns the layer
    /// directories bottom → top.
    pub fn unpack(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        image.layers.iter().map(|l| self.unpack_layer(&l.digest)).collect()
    }

    /// The unpacked directory of a layer, if it has been unpacked.
    pub fn layer_dir(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest_hex(digest)?;
        let dir = self.inner.root.join("layers").join(hex);
        dir.is_dir().then_some(dir)
    }

    /// The whiteouts recorded when the layer was unpacked.
    pub fn layer_whiteouts(&self, digest: &str) -> Result<LayerWhiteouts, ImageError> {
        let hex = digest_hex(digest).ok_or_else(|| ImageError::InvalidReference(digest.to_string()))?;
        let path = self.inner.root.join("layers").join(format!("{hex}.whiteouts"));
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ImageError::Io(std::io::Error::other(format!("{}: {e}", path.display())))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LayerWhiteouts::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Unpacks one layer blob (once) and returns its directory.
    pub fn unpack_layer(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = digest_hex(digest).ok_or_else(|| ImageError::InvalidReference(digest.to_string()))?;
        let layers = self.inner.root.join("layers");
        let final_dir = layers.join(hex);
        if final_dir.is_dir() {
            return Ok(final_dir);
        }
        let lock = self.inner.layer_locks.lock().entry(digest.to_string()).or_default().clone();
        let result = {
            let _guard = lock.lock();
            if final_dir.is_dir() {
                Ok(final_dir.clone())
            } else {
                self.unpack_layer_locked(digest, hex, &layers, &final_dir)
            }
        };
        // Waiters hold their own Arc; dropping the map entry keeps the map small.
        let mut locks = self.inner.layer_locks.lock();
        if locks.get(digest).is_some_and(|l| Arc::strong_count(l) == 2) {
            locks.remove(digest);
        }
        result
    }

    fn unpack_layer_locked(
        &self,
        digest: &str,
        hex: &str,
        layers: &Path,
        final_dir: &Path,
    ) -> Result<PathBuf, ImageError> {
        let blob =
            self.blob_path(digest).ok_or_else(|| ImageError::ManifestBlobUnknown(digest.to_string()))?;
        let tmp = layers.join(format!(".tmp-{hex}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        let started = std::time::Instant::now();
        let outcome = extract_layer(&blob, &tmp).and_then(|wh| {
            // The sidecar goes in first: the rename of the directory is the completion marker.
            let side = layers.join(format!("{hex}.whiteouts"));
            let side_tmp = layers.join(format!(".tmp-{hex}-{}.whiteouts", uuid::Uuid::new_v4()));
            std::fs::write(&side_tmp, serde_json::to_vec(&wh).unwrap_or_default())?;
            std::fs::rename(&side_tmp, &side)?;
            match std::fs::rename(&tmp, final_dir) {
                // Another process sharing the data dir finished first: its copy is as good.
                Err(_) if final_dir.is_dir() => {
                    let _ = remove_any(&tmp);
                    Ok(())
                }
                other => other.map_err(ImageError::from),
            }
        });
        match outcome {
            Ok(()) => {
                self.inner.unpacked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(digest, elapsed_ms = started.elapsed().as_millis() as u64, "layer unpacked");
                Ok(final_dir.to_path_buf())
            }
            Err(e) => {
                let _ = remove_any(&tmp);
                Err(e)
            }
        }
    }
}

/// Compression of a layer blob, by magic bytes (media types lie often enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    Gzip,
    Zstd,
    None,
}

pub(crate) fn detect_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

pub(crate) fn compression_of_file(path: &Path) -> std::io::Result<Compression> {
    let mut f = File::open(path)?;
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(detect_compression(&head[..n]))
}

/// A decompressing reader over a layer blob.
pub(crate) fn open_layer(blob: &Path) -> Result<Box<dyn Read>, ImageError> {
    let mut src = BufReader::with_capacity(256 * 1024, File::open(blob)?);
    let head = src.fill_buf()?;
    Ok(match detect_compression(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(src)),
        Compression::Zstd => Box::new(ZstdFrames { dec: None, src: Some(src) }),
        Compression::None => Box::new(src),
    })
}

/// zstd stream of one or more frames (zstd:chunked layers have many, plus skippable frames);
/// ruzstd's StreamingDecoder decodes exactly one.
struct ZstdFrames {
    dec: Option<ruzstd::decoding::StreamingDecoder<BufReader<File>, ruzstd::decoding::FrameDecoder>>,
    src: Option<BufReader<File>>,
}

impl Read for ZstdFrames {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(d) = self.dec.as_mut() {
                let n = d.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                if let Some(d) = self.dec.take() {
                    self.src = Some(d.into_inner());
                }
            }
            let Some(mut src) = self.src.take() else {
                return Ok(0);
            };
            let mut magic = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                let k = src.read(&mut magic[got..])?;
                if k == 0 {
                    break;
                }
                got += k;
            }
            if got < 4 {
                return Ok(0);
            }
            let m = u32::from_le_bytes(magic);
            if (0x184D_2A50..=0x184D_2A5F).contains(&m) {
                let mut len = [0u8; 4];
                src.read_exact(&mut len)?;
                src.seek_relative(i64::from(u32::from_le_bytes(len)))?;
                self.src = Some(src);
                continue;
            }
            if m != 0xFD2F_B528 {
                // Trailing bytes that are not a frame: the stream is over.
                return Ok(0);
            }
            src.seek_relative(-4)?;
            self.dec = Some(ruzstd::decoding::StreamingDecoder::new(src).map_err(std::io::Error::other)?);
        }
    }
}

/// Makes an archive path relative and `..`-free. `None` for the root itself.
pub(crate) fn sanitize(path: &Path) -> Result<Option<PathBuf>, ImageError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(ImageError::UnsafePath(path.display().to_string())),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Walks `rel`'s parents under `root`, creating missing directories; refuses a parent that
/// is a symlink (writing through it could leave the root). A non-directory parent is
/// replaced by a directory, as a later tar entry would. Returns the full path of `rel`.
pub(crate) fn safe_parents(root: &Path, rel: &Path) -> Result<PathBuf, ImageError> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(ImageError::UnsafePath(format!("{} (a parent is a symlink)", rel.display())));
                }
                Ok(_) => {
                    std::fs::remove_file(&cur)?;
                    make_dir(&cur)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_dir(&cur)?,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(root.join(rel))
}

fn make_dir(p: &Path) -> std::io::Result<()> {
    std::fs::create_dir(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
}

/// Whether every parent of `rel` under `root` is a real directory (not a symlink, present).
pub(crate) fn parents_are_dirs(root: &Path, rel: &Path) -> bool {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                _ => return false,
            }
        }
    }
    true
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

struct DirAttrs {
    path: PathBuf,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

fn set_mtime(path: &Path, mtime: u64) {
    if let Ok(f) = File::open(path) {
        let _ = f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
    }
}

/// Extracts a (possibly compressed) layer tar into `root`, returning its whiteouts.
pub(crate) fn extract_layer(blob: &Path, root: &Path) -> Result<LayerWhiteouts, ImageError> {
    let reader = open_layer(blob)?;
    let mut archive = tar::Archive::new(reader);
    let mut wh = LayerWhiteouts::default();
    let mut dirs: Vec<DirAttrs> = Vec::new();
    let root_user = is_root();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let Some(rel) = sanitize(&raw)? else {
            continue;
        };
        let hdr = entry.header();
        let kind = hdr.entry_type();
        let mode = hdr.mode().unwrap_or(0o644) & 0o7777;
        let uid = hdr.uid().unwrap_or(0) as u32;
        let gid = hdr.gid().unwrap_or(0) as u32;
        let mtime = hdr.mtime().unwrap_or(0);
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

        if name == OPAQUE_MARKER {
            let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            let dir = if parent.as_os_str().is_empty() {
                root.to_path_buf()
            } else {
                let p = safe_parents(root, &parent.join("x"))?;
                let d = p.parent().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
                match std::fs::symlink_metadata(&d) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        std::fs::remove_file(&d)?;
                        make_dir(&d)?;
                    }
                    Err(_) => make_dir(&d)?,
                }
                d
            };
            if let Err(e) = xattr::set(&dir, OPAQUE_XATTR, b"y") {
                tracing::debug!(dir = %dir.display(), error = %e, "opaque xattr not set; recorded in sidecar only");
            }
            wh.opaque.push(parent.to_string_lossy().into_owned());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(ImageError::UnsafePath(raw.display().to_string()));
            }
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // aufs metadata (`.wh..wh.plnk`, `.wh..wh.aufs`) in old docker layers: not content.
                continue;
            }
            let target_rel = rel.with_file_name(hidden);
            let target = safe_parents(root, &target_rel)?;
            remove_any(&target)?;
            let made = nix::sys::stat::mknod(
                &target,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                nix::sys::stat::makedev(0, 0),
            );
            if let Err(e) = made {
                tracing::debug!(path = %target.display(), error = %e, "whiteout device not created; recorded in sidecar only");
            }
            wh.whiteouts.push(target_rel.to_string_lossy().into_owned());
            continue;
        }

        let path = safe_parents(root, &rel)?;
        match kind {
            tar::EntryType::Directory => {
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_any(&path)?;
                        make_dir(&path)?;
                    }
                    Err(_) => make_dir(&path)?,
                }
                if root_user {
                    apply_pax_xattrs(&mut entry, &path);
                }
                dirs.push(DirAttrs { path, mode, uid, gid, mtime });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_any(&path)?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)?;
                std::io::copy(&mut entry, &mut f)?;
                // chown before chmod: chown clears set-id bits.
                let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                let _ = f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
                drop(f);
                if root_user {
                    apply_pax_xattrs(&mut entry, &path);
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| {
                        ImageError::UnsafePath(format!("{} (symlink without target)", raw.display()))
                    })?
                    .into_owned();
                remove_any(&path)?;
                std::os::unix::fs::symlink(&target, &path)?;
                let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name()?
                    .ok_or_else(|| {
                        ImageError::UnsafePath(format!("{} (hard link without target)", raw.display()))
                    })?
                    .into_owned();
                let target_rel = sanitize(&target_raw)?.ok_or_else(|| {
                    ImageError::UnsafePath(format!("{} -> {}", raw.display(), target_raw.display()))
                })?;
                if !parents_are_dirs(root, &target_rel) {
                    return Err(ImageError::UnsafePath(format!(
                        "{} -> {} (hard link through a symlink or outside the layer)",
                        raw.display(),
                        target_raw.display()
                    )));
                }
                let source = root.join(&target_rel);
                if std::fs::symlink_metadata(&source).is_err() {
                    return Err(ImageError::UnsafePath(format!(
                        "{} -> {} (hard link target not in the layer)",
                        raw.display(),
                        target_raw.display()
                    )));
                }
                if source != path {
                    remove_any(&path)?;
                    std::fs::hard_link(&source, &path)?;
                }
            }
            tar::EntryType::Fifo => {
                remove_any(&path)?;
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(mode))
                    .map_err(std::io::Error::from)?;
                let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
            }
            // Devices come from the runtime (/dev is a tmpfs in the container); the rest
            // (pax headers, GNU long names) are consumed by the tar reader itself.
            other => {
                tracing::debug!(path = %raw.display(), kind = ?other, "layer entry skipped");
            }
        }
    }
    // Directory attributes last: a read-only directory must not stop its own entries, and
    // writing entries would bump the mtimes again.
    for d in dirs.iter().rev() {
        let _ = std::os::unix::fs::lchown(&d.path, Some(d.uid), Some(d.gid));
        std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(d.mode))?;
        set_mtime(&d.path, d.mtime);
    }
    Ok(wh)
}

/// `SCHILY.xattr.*` PAX records (file capabilities, e.g. ping's cap_net_raw).
fn apply_pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return;
    };
    for ext in exts.flatten() {
        if let Ok(key) = ext.key()
            && let Some(name) = key.strip_prefix("SCHILY.xattr.")
        {
            let _ = xattr::set(path, name, ext.value_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_paths() {
        assert_eq!(sanitize(Path::new("/etc/passwd")).unwrap(), Some(PathBuf::from("etc/passwd")));
        assert_eq!(sanitize(Path::new("./a/./b")).unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(sanitize(Path::new("./")).unwrap(), None);
        assert!(sanitize(Path::new("../evil")).is_err());
        assert!(sanitize(Path::new("a/../../evil")).is_err());
    }

    #[test]
    fn compression_magic() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(detect_compression(b"etc/"), Compression::None);
    }
}
