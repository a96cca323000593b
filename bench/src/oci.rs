//! Test images built from files for the ECS and registry scenarios: busybox-static plus
//! optional filler, as OCI layers (gzip tar), packed as an OCI archive or pushed blob by
//! blob to a registry. Nothing is pulled from anywhere.
use anyhow::Context;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;

pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One layer: its bytes as stored (compressed or not), media type and uncompressed digest.
pub struct Layer {
    pub bytes: Vec<u8>,
    pub media_type: &'static str,
    pub diff_id: String,
}

/// A whole image: layers, config and manifest bytes.
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

fn tar_of(files: &[(&str, Vec<u8>, u32)], links: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in files {
        let mut p = std::path::Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
    }
    for d in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, d, std::io::empty())?;
    }
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, data.as_slice())?;
    }
    for (link, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mtime(0);
        h.set_mode(0o777);
        b.append_link(&mut h, link, target)?;
    }
    Ok(b.into_inner()?)
}

fn layer(tar: Vec<u8>, gzip: bool) -> anyhow::Result<Layer> {
    let diff_id = sha256(&tar);
    if !gzip {
        return Ok(Layer { bytes: tar, media_type: LAYER_TAR, diff_id });
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar)?;
    Ok(Layer { bytes: gz.finish()?, media_type: LAYER_GZIP, diff_id })
}

/// busybox (from the host's busybox-static) with the applets the scenarios use, plus
/// `filler_mb` MiB of incompressible data split over `filler_layers` uncompressed layers.
pub fn busybox_image(filler_mb: usize, filler_layers: usize) -> anyhow::Result<Image> {
    let busybox = std::fs::read("/bin/busybox").context("reading /bin/busybox (apt-get install busybox-static)")?;
    let applets = ["sh", "sleep", "true", "echo", "cat", "httpd", "nc", "kill"];
    let links: Vec<(String, &str)> = applets.iter().map(|a| (format!("bin/{a}"), "busybox")).collect();
    let links: Vec<(&str, &str)> = links.iter().map(|(l, t)| (l.as_str(), *t)).collect();
    let mut layers = vec![layer(tar_of(&[("bin/busybox", busybox, 0o755)], &links)?, true)?];
    let per_layer = filler_mb.div_ceil(filler_layers.max(1));
    for i in 0..filler_layers {
        if filler_mb == 0 {
            break;
        }
        let mut data = vec![0u8; per_layer << 20];
        fastrand::fill(&mut data);
        layers.push(layer(tar_of(&[(&format!("filler/{i}.bin"), data, 0o644)], &[])?, false)?);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>() },
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": { "mediaType": CONFIG, "digest": sha256(&config), "size": config.len() },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": sha256(&l.bytes), "size": l.bytes.len(),
        })).collect::<Vec<Value>>(),
    }))?;
    Ok(Image { layers, config, manifest })
}

impl Image {
    /// An OCI archive (a tar of an OCI image layout) with `ref_name` as the tag annotation.
    pub fn oci_archive(&self, ref_name: &str) -> anyhow::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| -> anyhow::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            b.append_data(&mut h, path, data)?;
            Ok(())
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MANIFEST, "digest": sha256(&self.manifest), "size": self.manifest.len(),
                "annotations": { "org.opencontainers.image.ref.name": ref_name },
            }],
        }))?;
        add("index.json", &index)?;
        let blob = |bytes: &[u8]| format!("blobs/sha256/{}", &sha256(bytes)[7..]);
        add(&blob(&self.manifest), &self.manifest)?;
        add(&blob(&self.config), &self.config)?;
        for l in &self.layers {
            add(&blob(&l.bytes), &l.bytes)?;
        }
        Ok(b.into_inner()?)
    }

    /// Total size of the layers in bytes.
    pub fn layer_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.bytes.len()).sum()
    }
}
