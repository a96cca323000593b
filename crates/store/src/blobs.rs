//! Content-addressed blobs on local disk: `<root>/sha256/<hex>`, written to a temporary
//! file and renamed into place, so a crash never leaves a partial blob under its digest.
use crate::StoreError;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn open(root: &Path) -> Result<BlobStore, StoreError> {
        std::fs::create_dir_all(root.join("sha256"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(BlobStore { root: root.to_path_buf() })
    }

    /// Stores `bytes`, returning its hex SHA-256. Storing the same content twice is free.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let digest = hex::encode(Sha256::digest(bytes));
        let path = self.path(&digest);
        if path.exists() {
            return Ok(digest);
        }
        let tmp = self.root.join("tmp").join(format!("{digest}.{}", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(digest)
    }

    pub fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path(digest)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn path(&self, digest: &str) -> PathBuf {
        // Digests come from our own hashing; refuse anything else so a digest can never
        // name a path outside the store.
        let safe: String = digest.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        self.root.join("sha256").join(safe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_addressed() {
        let dir = tempfile::tempdir().unwrap();
        let b = BlobStore::open(dir.path()).unwrap();
        let d = b.put(b"hello").unwrap();
        assert_eq!(d, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(b.put(b"hello").unwrap(), d);
        assert_eq!(b.get(&d).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(b.get("00").unwrap().is_none());
        assert!(b.path("../../etc/passwd").starts_with(dir.path()));
    }
}
