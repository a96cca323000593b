//! Root filesystems for containers: overlayfs over the shared layer directories where that
//! mount works, otherwise a private copy of all layers with whiteouts applied.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::unpack::{LayerWhiteouts, parents_are_dirs, sanitize};
use crate::{Image, ImageError, ImageStore, RootfsView, remove_any};

/// ("linux", GOARCH-style architecture of this host).
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// How `prepare_rootfs` assembles a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsMode {
    /// Overlay when the probe mount works, else copy.
    Auto,
    Overlay,
    Copy,
}

impl ImageStore {
    /// Makes `dir/upper` + `dir/work` for an overlay of the image's layers, or (where overlay
    /// mounts fail, or `NIMBUS_ROOTFS=copy`) a full copy in `dir/rootfs`. Unpacks as needed.
    pub fn prepare_rootfs(&self, image: &Image, dir: &Path) -> Result<RootfsView, ImageError> {
        let mode = match std::env::var("NIMBUS_ROOTFS").as_deref() {
            Ok("copy") => RootfsMode::Copy,
            Ok("overlay") => RootfsMode::Overlay,
            _ => RootfsMode::Auto,
        };
        self.prepare_rootfs_with(image, dir, mode)
    }

    pub fn prepare_rootfs_with(
        &self,
        image: &Image,
        dir: &Path,
        mode: RootfsMode,
    ) -> Result<RootfsView, ImageError> {
        let lower = self.unpack(image)?;
        std::fs::create_dir_all(dir)?;
        let overlay = match mode {
            RootfsMode::Overlay => true,
            RootfsMode::Copy => false,
            RootfsMode::Auto => self.overlay_supported(dir),
        };
        if overlay {
            let upper = dir.join("upper");
            let work = dir.join("work");
            std::fs::create_dir_all(&upper)?;
            std::fs::create_dir_all(&work)?;
            // The container's root is the overlay's root: it takes the upper dir's mode.
            std::fs::set_permissions(&upper, std::fs::Permissions::from_mode(0o755))?;
            return Ok(RootfsView::Overlay { lower, upper, work });
        }
        let rootfs = dir.join("rootfs");
        if rootfs.exists() {
            remove_any(&rootfs)?;
        }
        std::fs::create_dir(&rootfs)?;
        std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755))?;
        for (layer, dir) in image.layers.iter().zip(&lower) {
            let wh = self.layer_whiteouts(&layer.digest)?;
            apply_layer(dir, &wh, &rootfs)?;
        }
        Ok(RootfsView::Dir(rootfs))
    }

    /// Whether an overlayfs mount works here (probed once per store, with `near` as the
    /// place for the probe's upper/work directories).
    pub fn overlay_supported(&self, near: &Path) -> bool {
        *self.inner.overlay_ok.get_or_init(|| {
            let ok = probe_overlay(&self.tmp_dir(), near);
            tracing::info!(overlay = ok, "rootfs mode probed");
            ok
        })
    }
}

fn probe_overlay(lower_parent: &Path, near: &Path) -> bool {
    let id = uuid::Uuid::new_v4();
    let lower = lower_parent.join(format!("overlay-probe-{id}"));
    let base = near.join(format!(".overlay-probe-{id}"));
    let (upper, work, merged) = (base.join("u"), base.join("w"), base.join("m"));
    let ok = (|| -> std::io::Result<bool> {
        for d in [&lower, &upper, &work, &merged] {
            std::fs::create_dir_all(d)?;
        }
        let opts =
            format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        if opts.matches(',').count() != 2 || opts.matches(':').count() != 0 {
            // Paths with option separators cannot be passed to overlayfs at all.
            return Ok(false);
        }
        let mounted = nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        );
        if mounted.is_err() {
            return Ok(false);
        }
        // Writing through proves the upper dir's filesystem is usable too.
        let wrote = std::fs::write(merged.join("probe"), b"ok").is_ok();
        let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
        Ok(wrote)
    })()
    .unwrap_or(false);
    let _ = remove_any(&lower);
    let _ = remove_any(&base);
    ok
}

/// Copies one layer over `rootfs` with overlay semantics: the layer's whiteouts and opaque
/// directories hide what lower layers put there, then its entries replace what is below
/// (a directory merges into a directory, anything else replaces).
pub(crate) fn apply_layer(layer: &Path, wh: &LayerWhiteouts, rootfs: &Path) -> Result<(), ImageError> {
    for d in &wh.opaque {
        let rel = PathBuf::from(d);
        if rel.as_os_str().is_empty() {
            clear_dir(rootfs)?;
            continue;
        }
        let Some(rel) = sanitize(&rel)? else { continue };
        if parents_are_dirs(rootfs, &rel) {
            let p = rootfs.join(&rel);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => clear_dir(&p)?,
                Ok(_) => remove_any(&p)?,
                Err(_) => {}
            }
        }
    }
    for w in &wh.whiteouts {
        let Some(rel) = sanitize(Path::new(w))? else { continue };
        // A whiteout below a symlink or a missing directory has nothing to hide, and
        // following the symlink could delete outside the root.
        if parents_are_dirs(rootfs, &rel) {
            remove_any(&rootfs.join(&rel))?;
        }
    }
    let mut dirs = Vec::new();
    copy_tree(layer, rootfs, &mut dirs)?;
    for (path, meta) in dirs.iter().rev() {
        let _ = std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        if let (Ok(f), Ok(t)) = (std::fs::File::open(path), meta.modified()) {
            let _ = f.set_modified(t);
        }
    }
    Ok(())
}

fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        remove_any(&e?.path())?;
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path, dirs: &mut Vec<(PathBuf, std::fs::Metadata)>) -> Result<(), ImageError> {
    use std::os::unix::fs::FileTypeExt;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let s = e.path();
        let d = dst.join(e.file_name());
        let meta = std::fs::symlink_metadata(&s)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            // An overlay whiteout: applied from the sidecar already.
            continue;
        }
        if ft.is_dir() {
            match std::fs::symlink_metadata(&d) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_any(&d)?;
                    std::fs::create_dir(&d)?;
                }
                Err(_) => std::fs::create_dir(&d)?,
            }
            copy_tree(&s, &d, dirs)?;
            dirs.push((d, meta));
        } else if ft.is_file() {
            remove_any(&d)?;
            std::fs::copy(&s, &d)?;
            let _ = std::os::unix::fs::lchown(&d, Some(meta.uid()), Some(meta.gid()));
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            if let (Ok(f), Ok(t)) = (std::fs::OpenOptions::new().write(true).open(&d), meta.modified()) {
                let _ = f.set_modified(t);
            }
        } else if ft.is_symlink() {
            remove_any(&d)?;
            std::os::unix::fs::symlink(std::fs::read_link(&s)?, &d)?;
            let _ = std::os::unix::fs::lchown(&d, Some(meta.uid()), Some(meta.gid()));
        } else if ft.is_fifo() {
            remove_any(&d)?;
            nix::unistd::mkfifo(&d, nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777))
                .map_err(std::io::Error::from)?;
            let _ = std::os::unix::fs::lchown(&d, Some(meta.uid()), Some(meta.gid()));
        }
    }
    Ok(())
}
