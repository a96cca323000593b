//! Deployment packages: validating and unpacking a zip into a content-addressed
//! directory, refusing zip slip, symlink escapes and zip bombs.
use crate::Error;
use nimbus_model::limits::UNZIPPED_CODE_BYTES;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

const COMPLETE_MARKER: &str = ".nimbus-unpacked";

fn invalid_zip() -> Error {
    Error::InvalidParameter(
        "Could not unzip uploaded file. Please check your file, then try to upload again.".into(),
    )
}

fn too_big() -> Error {
    Error::InvalidParameter(format!("Unzipped size must be smaller than {UNZIPPED_CODE_BYTES} bytes"))
}

/// A relative path inside the package, or an error if the entry would escape it.
fn safe_relative(name: &str) -> Result<PathBuf, Error> {
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Error::InvalidParameter(format!(
                    "Could not unzip uploaded file: entry '{name}' points outside the package"
                )));
            }
        }
    }
    Ok(out)
}

/// Checks that `bytes` is a zip Lambda would accept, without writing anything:
/// readable, no escaping entries, unzipped total within 250 MB (counted by actually
/// inflating, never trusting the headers' declared sizes).
pub fn validate(bytes: &[u8]) -> Result<(), Error> {
    unpack_inner(bytes, None)
}

/// Unpacks into `dest` (created), once: a finished unpack leaves a marker, and a crash
/// mid-way leaves only a temporary directory that is replaced next time.
pub fn unpack_once(bytes: &[u8], dest: &Path) -> Result<(), Error> {
    if dest.join(COMPLETE_MARKER).exists() {
        return Ok(());
    }
    let parent = dest.parent().ok_or_else(|| Error::Internal("code dir has no parent".into()))?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".tmp-{}-{}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("code"),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&tmp)?;
    let result = unpack_inner(bytes, Some(&tmp)).and_then(|()| {
        std::fs::File::create(tmp.join(COMPLETE_MARKER))?;
        if dest.exists() {
            std::fs::remove_dir_all(dest)?;
        }
        std::fs::rename(&tmp, dest)?;
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn unpack_inner(bytes: &[u8], dest: Option<&Path>) -> Result<(), Error> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|_| invalid_zip())?;
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|_| invalid_zip())?;
        let rel = safe_relative(entry.name())?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mode = entry.unix_mode();
        let is_symlink = mode.is_some_and(|m| m & 0o170000 == 0o120000);
        if entry.is_dir() {
            if let Some(d) = dest {
                std::fs::create_dir_all(d.join(&rel))?;
            }
            continue;
        }
        if is_symlink {
            let mut target = String::new();
            entry.read_to_string(&mut target).map_err(|_| invalid_zip())?;
            // Resolve the link against its own directory; it must stay inside the package.
            let base = rel.parent().unwrap_or(Path::new(""));
            let mut depth: i64 = base.components().count() as i64;
            for c in Path::new(&target).components() {
                match c {
                    Component::Normal(_) => depth += 1,
                    Component::ParentDir => depth -= 1,
                    Component::CurDir => {}
                    _ => depth = -1,
                }
                if depth < 0 {
                    return Err(Error::InvalidParameter(format!(
                        "Could not unzip uploaded file: symlink '{}' points outside the package",
                        entry.name()
                    )));
                }
            }
            if let Some(d) = dest {
                let path = d.join(&rel);
                if let Some(p) = path.parent() {
                    std::fs::create_dir_all(p)?;
                }
                std::os::unix::fs::symlink(&target, &path)?;
            }
            continue;
        }
        let mut out = match dest {
            Some(d) => {
                let path = d.join(&rel);
                if let Some(p) = path.parent() {
                    std::fs::create_dir_all(p)?;
                }
                Some((std::fs::File::create(&path)?, path))
            }
            None => None,
        };
        loop {
            let n = entry.read(&mut buf).map_err(|_| invalid_zip())?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > UNZIPPED_CODE_BYTES {
                return Err(too_big());
            }
            if let Some((f, _)) = out.as_mut() {
                f.write_all(&buf[..n])?;
            }
        }
        if let (Some((_, path)), Some(m)) = (out, mode) {
            use std::os::unix::fs::PermissionsExt;
            // Keep the package's exec bits (a `bootstrap` must stay executable).
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644 | (m & 0o755)))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode)).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn unpacks_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let z = zip_of(&[("bootstrap", b"#!/bin/sh\n", 0o755), ("lib/a.txt", b"a", 0o644)]);
        let dest = dir.path().join("code");
        unpack_once(&z, &dest).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(dest.join("bootstrap")).unwrap().permissions().mode();
        assert_eq!(m & 0o111, 0o111);
        assert_eq!(std::fs::read(dest.join("lib/a.txt")).unwrap(), b"a");
        unpack_once(&z, &dest).unwrap();
    }

    #[test]
    fn refuses_slip_bombs_and_garbage() {
        assert!(validate(&zip_of(&[("../evil", b"x", 0o644)])).is_err());
        assert!(validate(&zip_of(&[("/etc/evil", b"x", 0o644)])).is_err());
        assert!(validate(b"definitely not a zip").is_err());
        // 300 MB of zeros deflates to ~300 KB: the bomb must be caught while inflating.
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("zeros", SimpleFileOptions::default()).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..300 {
            w.write_all(&chunk).unwrap();
        }
        let bomb = w.finish().unwrap().into_inner();
        let err = validate(&bomb).unwrap_err().to_string();
        assert!(err.contains("Unzipped size"), "{err}");
    }
}
