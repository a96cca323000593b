//! Builders for test images: layer tars (including malicious ones the `tar` builder would
//! refuse to write), OCI layouts/archives and docker-save archives.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nimbus_images::{ImageStore, media_types as mt, sha256_digest};

pub fn open_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_at(dir.path());
    (dir, store)
}

pub fn open_at(dir: &Path) -> ImageStore {
    let db = nimbus_store::SqliteStore::open(&dir.join("store.db")).unwrap();
    ImageStore::open(dir, Arc::new(db)).unwrap()
}

pub enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDev(&'a str),
}

/// Writes `name` straight into the header bytes: `Header::set_path` refuses `..`, and the
/// point of some tests is archives that contain it.
fn raw_name(h: &mut tar::Header, name: &str) {
    let gnu = h.as_old_mut();
    gnu.name = [0; 100];
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
}

fn raw_link(h: &mut tar::Header, target: &str) {
    let gnu = h.as_old_mut();
    gnu.linkname = [0; 100];
    gnu.linkname[..target.len()].copy_from_slice(target.as_bytes());
}

pub fn layer_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let data: &[u8] = match e {
            E::File(p, data, mode) => {
                raw_name(&mut h, p);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                data
            }
            E::Dir(p) => {
                raw_name(&mut h, p);
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                &[]
            }
            E::Symlink(p, t) => {
                raw_name(&mut h, p);
                raw_link(&mut h, t);
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                &[]
            }
            E::Hardlink(p, t) => {
                raw_name(&mut h, p);
                raw_link(&mut h, t);
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                &[]
            }
            E::CharDev(p) => {
                raw_name(&mut h, p);
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_size(0);
                &[]
            }
        };
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

pub fn layer_media_type(blob: &[u8]) -> &'static str {
    if blob.starts_with(&[0x1f, 0x8b]) {
        mt::OCI_LAYER_GZIP
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        mt::OCI_LAYER_ZSTD
    } else {
        mt::OCI_LAYER
    }
}

pub fn config_json(entrypoint: &[&str], cmd: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "Cmd": cmd, "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/app",
                   "User": "1000:1000", "ExposedPorts": {"8080/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap()
}

/// An image's blobs: (config, layers) and its OCI manifest bytes.
pub struct TestImage {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
}

impl TestImage {
    pub fn new(layers: Vec<Vec<u8>>) -> TestImage {
        Self::with_config(config_json(&["/bin/sh", "-c"], &["echo hi"]), layers)
    }

    pub fn with_config(config: Vec<u8>, layers: Vec<Vec<u8>>) -> TestImage {
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
            "config": {"mediaType": mt::OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": layer_media_type(l), "digest": sha256_digest(l), "size": l.len()})).collect::<Vec<_>>(),
        }))
        .unwrap();
        TestImage { config, layers, manifest }
    }

    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    /// Pushes blobs and manifest like a registry client would.
    pub fn push(&self, store: &ImageStore, repo: &str, reference: &str) -> String {
        store.put_blob(&self.config).unwrap();
        for l in &self.layers {
            store.put_blob(l).unwrap();
        }
        store.put_manifest(repo, reference, mt::OCI_MANIFEST, &self.manifest).unwrap()
    }

    pub fn blobs(&self) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = vec![&self.config, &self.manifest];
        v.extend(self.layers.iter().map(|l| l.as_slice()));
        v
    }
}

/// Writes an OCI image layout: blobs + index.json listing `entries` (manifest bytes, media
/// type, annotations, platform).
pub fn write_layout(dir: &Path, blobs: &[&[u8]], index_entries: Vec<serde_json::Value>) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for b in blobs {
        let d = sha256_digest(b);
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
    }
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": index_entries});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

pub fn index_entry(manifest: &[u8], media_type: &str, ref_name: Option<&str>) -> serde_json::Value {
    let mut e = serde_json::json!({"mediaType": media_type, "digest": sha256_digest(manifest), "size": manifest.len()});
    if let Some(n) = ref_name {
        e["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": n});
    }
    e
}

/// A tar of every file under `dir` (paths relative to it).
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// A legacy docker-save archive: `<id>/layer.tar` (plain tars), `<hex>.json` config,
/// manifest.json; a repeated layer is stored once and symlinked, as docker does.
pub fn docker_save(out: &Path, config: &[u8], layers: &[Vec<u8>], repo_tags: Option<Vec<&str>>) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, path, data).unwrap();
    };
    let config_name = format!("{}.json", &sha256_digest(config)[7..]);
    add(&mut b, &config_name, config);
    let mut layer_paths = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let id = format!("{:064x}", i + 1);
        let path = format!("{id}/layer.tar");
        let d = sha256_digest(l);
        if let Some((_, first)) = seen.iter().find(|(dd, _)| *dd == d) {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, &path, format!("../{first}")).unwrap();
        } else {
            add(&mut b, &path, l);
            seen.push((d, path.clone()));
        }
        layer_paths.push(path);
    }
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_paths}]);
    add(&mut b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    std::fs::write(out, b.into_inner().unwrap()).unwrap();
    out.to_path_buf()
}
