//! Content: blobs on disk (content-addressed), manifests / tags / repository links as
//! metadata in the `Store` (collections `images.*`), mirrored in memory for fast reads.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{digest_hex, sha256_digest, sha256_file};
use crate::manifest;
use crate::reference::{Reference, is_valid_repository, is_valid_tag};
use crate::{ImageError, ImageStore, ManifestInfo, StoredManifest};

const C_REPOS: &str = "images.repos";
const C_MANIFESTS: &str = "images.manifests";
const C_TAGS: &str = "images.tags";
const C_LINKS: &str = "images.blob-links";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestRecord {
    pub repo: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub pushed_at_ms: i64,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub config_media_type: Option<String>,
    #[serde(default)]
    pub layers_size: u64,
    #[serde(default)]
    pub children: Vec<String>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RepoRecord {
    repo: String,
    created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TagRecord {
    repo: String,
    tag: String,
    digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LinkRecord {
    repo: String,
    digest: String,
}

#[derive(Debug, Default)]
pub(crate) struct RepoMeta {
    pub created_at_ms: i64,
    pub manifests: BTreeMap<String, ManifestRecord>,
    pub tags: BTreeMap<String, String>,
    pub blobs: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Meta {
    pub repos: BTreeMap<String, RepoMeta>,
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, v: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(v)
        .map_err(|e| ImageError::Store(nimbus_store::StoreError::Corrupt(format!("{key}: {e}"))))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain records cannot fail (no maps with non-string keys).
    serde_json::to_vec(v).unwrap_or_default()
}

impl Meta {
    pub fn load(store: &dyn nimbus_store::Store) -> Result<Meta, ImageError> {
        let mut meta = Meta::default();
        for (k, v) in store.list(C_REPOS)? {
            let r: RepoRecord = decode(&k, &v)?;
            meta.repos.entry(r.repo).or_default().created_at_ms = r.created_at_ms;
        }
        for (k, v) in store.list(C_MANIFESTS)? {
            let r: ManifestRecord = decode(&k, &v)?;
            meta.repos.entry(r.repo.clone()).or_default().manifests.insert(r.digest.clone(), r);
        }
        for (k, v) in store.list(C_TAGS)? {
            let r: TagRecord = decode(&k, &v)?;
            meta.repos.entry(r.repo).or_default().tags.insert(r.tag, r.digest);
        }
        for (k, v) in store.list(C_LINKS)? {
            let r: LinkRecord = decode(&k, &v)?;
            meta.repos.entry(r.repo).or_default().blobs.insert(r.digest);
        }
        Ok(meta)
    }
}

/// How long a new blob file is protected from removal by a repository's blob delete.
const RECENT_BLOB: std::time::Duration = std::time::Duration::from_secs(10);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn check_repo(repo: &str) -> Result<(), ImageError> {
    if is_valid_repository(repo) { Ok(()) } else { Err(ImageError::InvalidReference(repo.to_string())) }
}

impl ImageStore {
    // ----- blobs -----

    fn blob_file(&self, digest: &str) -> Option<PathBuf> {
        digest_hex(digest).map(|hex| self.inner.root.join("blobs/sha256").join(hex))
    }

    /// The blob's file, if present.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        self.blob_file(digest).filter(|p| p.is_file())
    }

    pub fn blob_size(&self, digest: &str) -> Option<u64> {
        let p = self.blob_file(digest)?;
        std::fs::metadata(p).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// Where registry uploads keep their partial files (same filesystem as the blobs, so
    /// `commit_blob` is a rename).
    pub fn upload_dir(&self) -> PathBuf {
        self.inner.root.join("uploads")
    }

    /// Verifies `temp`'s sha256 against `expected` and moves it into the blob store. The
    /// temp file is consumed either way (removed on a mismatch).
    pub fn commit_blob(&self, temp: &Path, expected: &str) -> Result<String, ImageError> {
        let Some(target) = self.blob_file(expected) else {
            let _ = std::fs::remove_file(temp);
            return Err(ImageError::InvalidReference(expected.to_string()));
        };
        let (actual, _) = sha256_file(temp)?;
        if actual != expected {
            let _ = std::fs::remove_file(temp);
            return Err(ImageError::DigestMismatch { expected: expected.to_string(), actual });
        }
        self.move_into_place(temp, &target)?;
        Ok(actual)
    }

    /// Like `commit_blob` for a caller that computed `digest` while writing `temp` (a
    /// streaming upload): skips re-reading the file. The caller vouches for the digest.
    pub fn commit_blob_prehashed(&self, temp: &Path, digest: &str) -> Result<String, ImageError> {
        self.commit_hashed(temp, digest)?;
        Ok(digest.to_string())
    }

    /// Trusts `digest` (the caller hashed `temp` while writing it) — for imports and uploads
    /// that already streamed through a hasher.
    pub(crate) fn commit_hashed(&self, temp: &Path, digest: &str) -> Result<(), ImageError> {
        let target =
            self.blob_file(digest).ok_or_else(|| ImageError::InvalidReference(digest.to_string()))?;
        self.move_into_place(temp, &target)
    }

    fn move_into_place(&self, temp: &Path, target: &Path) -> Result<(), ImageError> {
        if target.is_file() {
            // Content-addressed: the same bytes are already there.
            let _ = std::fs::remove_file(temp);
            return Ok(());
        }
        match std::fs::rename(temp, target) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
                let staged = self.tmp_dir().join(format!("blob-{}", uuid::Uuid::new_v4()));
                std::fs::copy(temp, &staged)?;
                std::fs::rename(&staged, target)?;
                let _ = std::fs::remove_file(temp);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let digest = sha256_digest(bytes);
        if self.blob_path(&digest).is_some() {
            return Ok(digest);
        }
        let temp = self.tmp_dir().join(format!("blob-{}", uuid::Uuid::new_v4()));
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(bytes)?;
        drop(f);
        self.commit_hashed(&temp, &digest)?;
        Ok(digest)
    }

    /// Removes the blob's file and every repository's link to it.
    pub fn delete_blob(&self, digest: &str) -> Result<bool, ImageError> {
        let Some(path) = self.blob_file(digest) else {
            return Ok(false);
        };
        let existed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        let mut meta = self.inner.meta.write();
        for (repo, rm) in meta.repos.iter_mut() {
            if rm.blobs.remove(digest) {
                self.inner.store.delete(C_LINKS, &format!("{repo}@{digest}"))?;
            }
        }
        Ok(existed)
    }

    fn ensure_repo_locked(&self, meta: &mut Meta, repo: &str) -> Result<(), ImageError> {
        if !meta.repos.contains_key(repo) {
            let rec = RepoRecord { repo: repo.to_string(), created_at_ms: now_ms() };
            self.inner.store.put(C_REPOS, repo, &encode(&rec))?;
            meta.repos.insert(
                repo.to_string(),
                RepoMeta { created_at_ms: rec.created_at_ms, ..Default::default() },
            );
        }
        Ok(())
    }

    fn link_locked(&self, meta: &mut Meta, repo: &str, digest: &str) -> Result<(), ImageError> {
        self.ensure_repo_locked(meta, repo)?;
        let Some(rm) = meta.repos.get_mut(repo) else { return Ok(()) };
        if !rm.blobs.contains(digest) {
            let rec = LinkRecord { repo: repo.to_string(), digest: digest.to_string() };
            self.inner.store.put(C_LINKS, &format!("{repo}@{digest}"), &encode(&rec))?;
            rm.blobs.insert(digest.to_string());
        }
        Ok(())
    }

    /// Creates the repository's metadata if missing (pushes and imports do this implicitly).
    pub fn ensure_repository(&self, repo: &str) -> Result<(), ImageError> {
        check_repo(repo)?;
        let mut meta = self.inner.meta.write();
        self.ensure_repo_locked(&mut meta, repo)
    }

    pub fn repository_exists(&self, repo: &str) -> bool {
        self.inner.meta.read().repos.contains_key(repo)
    }

    /// Records that `repo` holds `digest` (after an upload or a cross-repository mount).
    pub fn link_blob(&self, repo: &str, digest: &str) -> Result<(), ImageError> {
        check_repo(repo)?;
        if digest_hex(digest).is_none() {
            return Err(ImageError::InvalidReference(digest.to_string()));
        }
        let mut meta = self.inner.meta.write();
        self.link_locked(&mut meta, repo, digest)
    }

    /// Forgets `repo`'s link to `digest` (the file stays: other repositories may hold it).
    pub fn unlink_blob(&self, repo: &str, digest: &str) -> Result<bool, ImageError> {
        let mut meta = self.inner.meta.write();
        let removed = meta.repos.get_mut(repo).is_some_and(|rm| rm.blobs.remove(digest));
        if removed {
            self.inner.store.delete(C_LINKS, &format!("{repo}@{digest}"))?;
        }
        Ok(removed)
    }

    /// The registry's `DELETE /v2/<repo>/blobs/<digest>`: forgets `repo`'s link (false if it
    /// had none), then removes the file only when no repository links it any more and no
    /// stored manifest is, or references, it — other repositories' images keep working.
    pub fn delete_repository_blob(&self, repo: &str, digest: &str) -> Result<bool, ImageError> {
        let Some(path) = self.blob_file(digest) else {
            return Ok(false);
        };
        // One write lock over unlink + reference check + removal, so a concurrent manifest
        // put or link cannot slip between the check and the removal.
        let mut meta = self.inner.meta.write();
        let removed = meta.repos.get_mut(repo).is_some_and(|rm| rm.blobs.remove(digest));
        if !removed {
            return Ok(false);
        }
        self.inner.store.delete(C_LINKS, &format!("{repo}@{digest}"))?;
        // A blob written moments ago may be mid-push elsewhere: committed but not yet linked,
        // or checked by a manifest put that has not recorded itself yet (both happen outside
        // this lock). Leave such a file; an orphan costs only disk.
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .is_some_and(|t| t.elapsed().map_or(true, |age| age < RECENT_BLOB));
        if !fresh && !self.blob_in_use_locked(&meta, digest) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Whether any repository links `digest`, or any stored manifest is or references it.
    fn blob_in_use_locked(&self, meta: &Meta, digest: &str) -> bool {
        let linked_or_manifest = meta.repos.values().any(|rm| {
            rm.blobs.contains(digest)
                || rm.manifests.contains_key(digest)
                || rm.manifests.values().any(|r| r.children.iter().any(|c| c == digest))
        });
        if linked_or_manifest {
            return true;
        }
        // Manifest records keep no layer list, so read each stored manifest once; an
        // unreadable one counts as a reference (never delete what might still be needed).
        let mut seen = BTreeSet::new();
        meta.repos.values().flat_map(|rm| rm.manifests.values()).any(|r| {
            if !seen.insert(r.digest.clone()) {
                return false;
            }
            let Some(p) = self.blob_path(&r.digest) else { return false };
            match std::fs::read(p).map_err(ImageError::from).and_then(|b| manifest::parse(&b, &r.media_type))
            {
                Ok(parsed) => parsed.referenced().any(|d| d.digest == digest),
                Err(_) => true,
            }
        })
    }

    /// Whether `repo` holds the blob (linked by an upload / mount / manifest, or a manifest
    /// of the repository) and the blob is present.
    pub fn repo_has_blob(&self, repo: &str, digest: &str) -> bool {
        let linked = self
            .inner
            .meta
            .read()
            .repos
            .get(repo)
            .is_some_and(|rm| rm.blobs.contains(digest) || rm.manifests.contains_key(digest));
        linked && self.blob_path(digest).is_some()
    }

    // ----- manifests -----

    /// Stores a manifest under `repo` by tag or digest. See the crate docs for checks.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, ImageError> {
        check_repo(repo)?;
        let reference = Reference::parse(reference)?;
        let digest = sha256_digest(bytes);
        if let Reference::Digest(expected) = &reference
            && *expected != digest
        {
            return Err(ImageError::DigestMismatch { expected: expected.clone(), actual: digest });
        }
        let parsed = manifest::parse(bytes, media_type)?;
        for d in parsed.referenced() {
            if self.blob_path(&d.digest).is_none() {
                return Err(ImageError::ManifestBlobUnknown(d.digest.clone()));
            }
        }
        self.put_blob(bytes)?;
        let mut meta = self.inner.meta.write();
        let layers_size = if parsed.is_index() {
            parsed
                .manifests
                .iter()
                .filter_map(|c| find_record(&meta, repo, &c.digest).map(|r| r.layers_size))
                .sum()
        } else {
            parsed.layers_size()
        };
        self.ensure_repo_locked(&mut meta, repo)?;
        let previous = meta.repos.get(repo).and_then(|rm| rm.manifests.get(&digest)).map(|r| r.pushed_at_ms);
        let rec = ManifestRecord {
            repo: repo.to_string(),
            digest: digest.clone(),
            media_type: parsed.media_type.clone(),
            size: bytes.len() as u64,
            pushed_at_ms: previous.unwrap_or_else(now_ms),
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            artifact_type: parsed.artifact_type.clone(),
            config_media_type: parsed.config.as_ref().map(|c| c.media_type.clone()),
            layers_size,
            children: parsed.manifests.iter().map(|c| c.digest.clone()).collect(),
            annotations: parsed.annotations.clone(),
        };
        self.inner.store.put(C_MANIFESTS, &format!("{repo}@{digest}"), &encode(&rec))?;
        for d in parsed.referenced() {
            self.link_locked(&mut meta, repo, &d.digest)?;
        }
        if let Some(rm) = meta.repos.get_mut(repo) {
            rm.manifests.insert(digest.clone(), rec);
        }
        if let Reference::Tag(tag) = &reference {
            self.tag_locked(&mut meta, repo, tag, &digest)?;
        }
        Ok(digest)
    }

    fn tag_locked(&self, meta: &mut Meta, repo: &str, tag: &str, digest: &str) -> Result<(), ImageError> {
        let rec = TagRecord { repo: repo.to_string(), tag: tag.to_string(), digest: digest.to_string() };
        self.inner.store.put(C_TAGS, &format!("{repo}:{tag}"), &encode(&rec))?;
        if let Some(rm) = meta.repos.get_mut(repo) {
            rm.tags.insert(tag.to_string(), digest.to_string());
        }
        Ok(())
    }

    /// The digest `reference` (tag or digest) names in `repo`, if any.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        let meta = self.inner.meta.read();
        let rm = meta.repos.get(repo)?;
        match Reference::parse(reference).ok()? {
            Reference::Tag(t) => rm.tags.get(&t).cloned(),
            Reference::Digest(d) => rm.manifests.contains_key(&d).then_some(d),
        }
    }

    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<Option<StoredManifest>, ImageError> {
        Reference::parse(reference)?;
        let Some(digest) = self.manifest_digest(repo, reference) else {
            return Ok(None);
        };
        let media_type = {
            let meta = self.inner.meta.read();
            match meta.repos.get(repo).and_then(|rm| rm.manifests.get(&digest)) {
                Some(r) => r.media_type.clone(),
                None => return Ok(None),
            }
        };
        let Some(path) = self.blob_path(&digest) else {
            return Ok(None);
        };
        let bytes = std::fs::read(path)?;
        Ok(Some(StoredManifest { digest, media_type, bytes }))
    }

    /// Removes the manifest from `repo` and every tag pointing at it.
    pub fn delete_manifest(&self, repo: &str, digest: &str) -> Result<bool, ImageError> {
        let mut meta = self.inner.meta.write();
        let Some(rm) = meta.repos.get_mut(repo) else {
            return Ok(false);
        };
        if rm.manifests.remove(digest).is_none() {
            return Ok(false);
        }
        self.inner.store.delete(C_MANIFESTS, &format!("{repo}@{digest}"))?;
        let tags: Vec<String> =
            rm.tags.iter().filter(|(_, d)| *d == digest).map(|(t, _)| t.clone()).collect();
        for t in tags {
            rm.tags.remove(&t);
            self.inner.store.delete(C_TAGS, &format!("{repo}:{t}"))?;
        }
        Ok(true)
    }

    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, ImageError> {
        let mut meta = self.inner.meta.write();
        let removed = meta.repos.get_mut(repo).is_some_and(|rm| rm.tags.remove(tag).is_some());
        if removed {
            self.inner.store.delete(C_TAGS, &format!("{repo}:{tag}"))?;
        }
        Ok(removed)
    }

    /// Points `tag` at a manifest already in `repo` (NotFound otherwise).
    pub fn tag_manifest(&self, repo: &str, tag: &str, digest: &str) -> Result<(), ImageError> {
        if !is_valid_tag(tag) {
            return Err(ImageError::InvalidReference(tag.to_string()));
        }
        let mut meta = self.inner.meta.write();
        if !meta.repos.get(repo).is_some_and(|rm| rm.manifests.contains_key(digest)) {
            return Err(ImageError::NotFound(format!("{repo}@{digest}")));
        }
        self.tag_locked(&mut meta, repo, tag, digest)
    }

    pub fn tags(&self, repo: &str) -> Vec<String> {
        self.inner.meta.read().repos.get(repo).map(|rm| rm.tags.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn repositories(&self) -> Vec<String> {
        self.inner.meta.read().repos.keys().cloned().collect()
    }

    /// Every manifest of `repo` (oldest push first).
    pub fn manifests(&self, repo: &str) -> Vec<ManifestInfo> {
        let meta = self.inner.meta.read();
        let Some(rm) = meta.repos.get(repo) else {
            return Vec::new();
        };
        let mut out: Vec<ManifestInfo> = rm
            .manifests
            .values()
            .map(|r| ManifestInfo {
                digest: r.digest.clone(),
                media_type: r.media_type.clone(),
                tags: rm.tags.iter().filter(|(_, d)| **d == r.digest).map(|(t, _)| t.clone()).collect(),
                size_bytes: r.layers_size,
                pushed_at: chrono::DateTime::from_timestamp_millis(r.pushed_at_ms).unwrap_or_default(),
                artifact_media_type: r.artifact_type.clone().or_else(|| r.config_media_type.clone()),
            })
            .collect();
        out.sort_by(|a, b| a.pushed_at.cmp(&b.pushed_at).then_with(|| a.digest.cmp(&b.digest)));
        out
    }

    /// OCI descriptors of the manifests in `repo` whose `subject` is `digest`.
    pub fn referrers(&self, repo: &str, digest: &str) -> Vec<serde_json::Value> {
        let meta = self.inner.meta.read();
        let Some(rm) = meta.repos.get(repo) else {
            return Vec::new();
        };
        rm.manifests
            .values()
            .filter(|r| r.subject.as_deref() == Some(digest))
            .map(|r| {
                let mut d =
                    serde_json::json!({"mediaType": r.media_type, "digest": r.digest, "size": r.size});
                if let Some(at) = r.artifact_type.clone().or_else(|| r.config_media_type.clone()) {
                    d["artifactType"] = serde_json::Value::String(at);
                }
                if let Some(a) = &r.annotations {
                    d["annotations"] = serde_json::json!(a);
                }
                d
            })
            .collect()
    }

    /// Forgets the repository, its manifests, tags and blob links (blob files stay).
    pub fn delete_repository(&self, repo: &str) -> Result<(), ImageError> {
        let mut meta = self.inner.meta.write();
        let Some(rm) = meta.repos.remove(repo) else {
            return Ok(());
        };
        let store = &self.inner.store;
        for d in rm.manifests.keys() {
            store.delete(C_MANIFESTS, &format!("{repo}@{d}"))?;
        }
        for t in rm.tags.keys() {
            store.delete(C_TAGS, &format!("{repo}:{t}"))?;
        }
        for d in &rm.blobs {
            store.delete(C_LINKS, &format!("{repo}@{d}"))?;
        }
        store.delete(C_REPOS, repo)?;
        Ok(())
    }

    /// The stored record of a manifest (own repository first, then any).
    pub(crate) fn manifest_record(&self, repo: &str, digest: &str) -> Option<ManifestRecord> {
        find_record(&self.inner.meta.read(), repo, digest).cloned()
    }

    /// Repositories holding a manifest with this digest.
    pub(crate) fn repos_with_manifest(&self, digest: &str) -> Vec<String> {
        let meta = self.inner.meta.read();
        meta.repos
            .iter()
            .filter(|(_, rm)| rm.manifests.contains_key(digest))
            .map(|(r, _)| r.clone())
            .collect()
    }
}

fn find_record<'a>(meta: &'a Meta, repo: &str, digest: &str) -> Option<&'a ManifestRecord> {
    meta.repos
        .get(repo)
        .and_then(|rm| rm.manifests.get(digest))
        .or_else(|| meta.repos.values().find_map(|rm| rm.manifests.get(digest)))
}
