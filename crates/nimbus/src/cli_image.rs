//! `nimbus image …`: the human CLI for images. `import` sends an archive (a directory is
//! tarred on the fly) to the server's `/_nimbus/images/import`; `push`, `pull`, `ls` and `rm`
//! speak the OCI distribution API to the registry listener, with a progress bar per layer.
use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli_http::{Body, Http, bytes_body, empty_body};

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(clap::Args)]
pub struct ImageArgs {
    /// The Nimbus API endpoint (for `import`).
    #[arg(long, env = "NIMBUS_ENDPOINT", default_value = "http://127.0.0.1:4566", global = true)]
    endpoint: String,
    /// The Nimbus registry (for `push`, `pull`, `ls`, `rm`).
    #[arg(long, env = "NIMBUS_REGISTRY", default_value = "http://127.0.0.1:4567", global = true)]
    registry: String,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(clap::Subcommand)]
enum ImageCommand {
    /// Import an OCI layout directory, OCI archive or docker/podman save tarball into the
    /// server (its ECR repository is created if missing).
    Import {
        path: PathBuf,
        /// NAME:TAG to store it under (default: the archive's own RepoTags / ref name).
        #[arg(long)]
        tag: Option<String>,
    },
    /// Push an OCI archive / layout dir (or an image already in the registry) to NAME:TAG
    /// (the repository must exist, as on ECR: `aws ecr create-repository`).
    Push { src: String, dest: String },
    /// Pull NAME[:TAG|@DIGEST] from the registry into an OCI archive.
    Pull {
        reference: String,
        /// Output file (default: <name>-<tag>.tar in the current directory).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// List the registry's images (repository, tag, digest).
    Ls,
    /// Remove a tag (NAME:TAG) or an image (NAME@DIGEST).
    Rm { reference: String },
}

/// A file streamed as a request body, advancing `pb`.
fn file_body(file: tokio::fs::File, pb: ProgressBar) -> Body {
    let stream = futures_util::stream::unfold((file, pb), |(mut f, pb)| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                pb.inc(n as u64);
                Some((Ok(Frame::data(Bytes::from(buf))), (f, pb)))
            }
            Err(e) => Some((Err(e), (f, pb))),
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

fn bar(mp: &MultiProgress, label: &str, total: u64) -> ProgressBar {
    let pb = mp.add(ProgressBar::new(total));
    pb.set_style(
        ProgressStyle::with_template("{prefix:>20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(label.chars().take(20).collect::<String>());
    pb
}

fn short(digest: &str) -> String {
    digest.trim_start_matches("sha256:").chars().take(12).collect()
}

/// `[host[:port]/]name[:tag|@digest]` → (registry base URL override, name, reference).
fn parse_ref(r: &str, default_registry: &str) -> anyhow::Result<(String, String, String)> {
    let (mut base, mut rest) = (default_registry.trim_end_matches('/').to_string(), r.to_string());
    if let Some((first, tail)) = r.split_once('/')
        && (first.contains(':') || first.contains('.') || first == "localhost")
    {
        // Our own registry under its AWS name is still the one --registry points at.
        if !first.ends_with(".amazonaws.com") {
            base = format!("http://{first}");
        }
        rest = tail.to_string();
    }
    let (name, reference) = if let Some((n, d)) = rest.split_once('@') {
        (n.to_string(), d.to_string())
    } else {
        match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n.to_string(), t.to_string()),
            _ => (rest.clone(), "latest".to_string()),
        }
    };
    if name.is_empty() {
        bail!("invalid image reference {r:?}");
    }
    Ok((base, name, reference))
}

pub async fn run(args: ImageArgs) -> anyhow::Result<()> {
    let http = Http::new();
    match args.command {
        ImageCommand::Import { path, tag } => import(&http, &args.endpoint, &path, tag.as_deref()).await,
        ImageCommand::Push { src, dest } => push(&http, &args.registry, &src, &dest).await,
        ImageCommand::Pull { reference, output } => pull(&http, &args.registry, &reference, output).await,
        ImageCommand::Ls => ls(&http, &args.registry).await,
        ImageCommand::Rm { reference } => rm(&http, &args.registry, &reference).await,
    }
}

// ---- import -------------------------------------------------------------------------------

async fn import(http: &Http, endpoint: &str, path: &Path, tag: Option<&str>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    // A layout directory travels as an OCI archive (a tar of the directory).
    let _tmp;
    let file = if meta.is_dir() {
        let t = tempfile::NamedTempFile::new()?;
        let mut b = tar::Builder::new(std::fs::File::create(t.path())?);
        b.follow_symlinks(false);
        b.append_dir_all(".", path)?;
        b.into_inner()?.sync_all()?;
        let p = t.path().to_path_buf();
        _tmp = t;
        p
    } else {
        path.to_path_buf()
    };
    let size = std::fs::metadata(&file)?.len();
    let mp = MultiProgress::new();
    let pb = bar(&mp, "upload", size);
    let mut url = format!("{}/_nimbus/images/import", endpoint.trim_end_matches('/'));
    if let Some(t) = tag {
        url.push_str(&format!(
            "?tag={}",
            t.replace('%', "%25").replace('&', "%26").replace('/', "%2F").replace(':', "%3A")
        ));
    }
    // The signature covers the payload: hash the archive before streaming it.
    let hash = {
        let f = file.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut h = Sha256::new();
            std::io::copy(&mut std::fs::File::open(f)?, &mut h)?;
            Ok(hex::encode(h.finalize()))
        })
        .await??
    };
    let body = file_body(tokio::fs::File::open(&file).await?, pb.clone());
    let resp = http.send_api("POST", &url, &[("content-type", "application/x-tar")], body, &hash).await?;
    pb.finish_and_clear();
    let status = resp.status;
    let text = resp.bytes().await?;
    if status != 200 {
        bail!("import failed ({status}): {}", String::from_utf8_lossy(&text));
    }
    let v: Value = serde_json::from_slice(&text)?;
    for img in v["images"].as_array().into_iter().flatten() {
        let tag = img["tag"].as_str().map(|t| format!(":{t}")).unwrap_or_default();
        println!(
            "imported {}{tag}@{}",
            img["repository"].as_str().unwrap_or(""),
            img["digest"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

// ---- ls / rm ---------------------------------------------------------------------------------

async fn get_json(http: &Http, url: &str) -> anyhow::Result<Value> {
    let resp = http.send("GET", url, &[], empty_body()).await?;
    let status = resp.status;
    let body = resp.bytes().await?;
    if status != 200 {
        bail!("GET {url}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

async fn ls(http: &Http, registry: &str) -> anyhow::Result<()> {
    let base = registry.trim_end_matches('/');
    let catalog = get_json(http, &format!("{base}/v2/_catalog")).await?;
    println!("{:<40} {:<20} {:<20}", "REPOSITORY", "TAG", "DIGEST");
    for repo in catalog["repositories"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let tags = get_json(http, &format!("{base}/v2/{repo}/tags/list")).await?;
        for tag in tags["tags"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let resp = http
                .send(
                    "HEAD",
                    &format!("{base}/v2/{repo}/manifests/{tag}"),
                    &[("accept", MANIFEST_ACCEPT)],
                    empty_body(),
                )
                .await?;
            let digest = resp.header("docker-content-digest").unwrap_or_default();
            println!("{repo:<40} {tag:<20} {digest}");
        }
    }
    Ok(())
}

async fn rm(http: &Http, registry: &str, reference: &str) -> anyhow::Result<()> {
    let (base, name, r) = parse_ref(reference, registry)?;
    let resp = http.send("DELETE", &format!("{base}/v2/{name}/manifests/{r}"), &[], empty_body()).await?;
    let status = resp.status;
    let body = resp.bytes().await?;
    if status != 202 {
        bail!("removing {reference} failed ({status}): {}", String::from_utf8_lossy(&body));
    }
    println!("removed {name}{}{r}", if r.contains(':') { "@" } else { ":" });
    Ok(())
}

// ---- pull ------------------------------------------------------------------------------------

async fn fetch_manifest(
    http: &Http,
    base: &str,
    name: &str,
    r: &str,
) -> anyhow::Result<(Vec<u8>, String, String)> {
    let resp = http
        .send("GET", &format!("{base}/v2/{name}/manifests/{r}"), &[("accept", MANIFEST_ACCEPT)], empty_body())
        .await?;
    let status = resp.status;
    let media_type = resp.header("content-type").unwrap_or_default();
    let bytes = resp.bytes().await?;
    if status != 200 {
        bail!("manifest {name}:{r}: {status} {}", String::from_utf8_lossy(&bytes));
    }
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    Ok((bytes, media_type, digest))
}

/// Every blob a manifest names (config + layers), or the child manifests of an index.
fn referenced(manifest: &Value) -> (Vec<(String, u64)>, Vec<String>) {
    let desc =
        |d: &Value| (d["digest"].as_str().unwrap_or_default().to_string(), d["size"].as_u64().unwrap_or(0));
    let mut blobs = Vec::new();
    if manifest["config"].is_object() {
        blobs.push(desc(&manifest["config"]));
    }
    blobs.extend(manifest["layers"].as_array().into_iter().flatten().map(desc));
    let children = manifest["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["digest"].as_str().map(str::to_string))
        .collect();
    (blobs, children)
}

async fn download_blob(
    http: &Http,
    base: &str,
    name: &str,
    digest: &str,
    dir: &Path,
    pb: ProgressBar,
) -> anyhow::Result<()> {
    let hex = digest.trim_start_matches("sha256:");
    let dest = dir.join("blobs/sha256").join(hex);
    if dest.exists() {
        pb.finish_with_message("exists");
        return Ok(());
    }
    let resp = http.send("GET", &format!("{base}/v2/{name}/blobs/{digest}"), &[], empty_body()).await?;
    if resp.status != 200 {
        let status = resp.status;
        bail!("blob {digest}: {status} {}", String::from_utf8_lossy(&resp.bytes().await?));
    }
    let tmp = dest.with_extension("part");
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::create(&tmp).await?);
    let mut hasher = Sha256::new();
    let mut body = resp.body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        out.write_all(&chunk).await?;
        pb.inc(chunk.len() as u64);
    }
    out.flush().await?;
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != digest {
        bail!("blob {digest}: downloaded content is {actual}");
    }
    tokio::fs::rename(&tmp, &dest).await?;
    pb.finish();
    Ok(())
}

async fn pull(http: &Http, registry: &str, reference: &str, output: Option<PathBuf>) -> anyhow::Result<()> {
    let (base, name, r) = parse_ref(reference, registry)?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("blobs/sha256"))?;
    let (top, top_type, top_digest) = fetch_manifest(http, &base, &name, &r).await?;
    let mp = MultiProgress::new();
    let mut pending = vec![(top.clone(), top_digest.clone())];
    while let Some((bytes, digest)) = pending.pop() {
        std::fs::write(dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:")), &bytes)?;
        let v: Value = serde_json::from_slice(&bytes)?;
        let (blobs, children) = referenced(&v);
        for (d, size) in blobs {
            download_blob(http, &base, &name, &d, dir, bar(&mp, &short(&d), size)).await?;
        }
        for c in children {
            let (b, _, d) = fetch_manifest(http, &base, &name, &c).await?;
            pending.push((b, d));
        }
    }
    let tag = if r.contains(':') { None } else { Some(r.clone()) };
    let mut desc = json!({"mediaType": top_type, "digest": top_digest, "size": top.len()});
    if let Some(t) = &tag {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": t});
    }
    std::fs::write(dir.join("index.json"), json!({"schemaVersion": 2, "manifests": [desc]}).to_string())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let out = output.unwrap_or_else(|| {
        let last = name.rsplit('/').next().unwrap_or("image");
        PathBuf::from(format!("{last}-{}.tar", tag.as_deref().unwrap_or(&short(&top_digest))))
    });
    let mut b = tar::Builder::new(std::fs::File::create(&out).with_context(|| format!("{}", out.display()))?);
    b.append_dir_all(".", dir)?;
    b.into_inner()?.sync_all()?;
    println!("pulled {name}@{top_digest} into {}", out.display());
    Ok(())
}

// ---- push ------------------------------------------------------------------------------------

/// An OCI layout to push from: a directory, or an archive unpacked into a temp dir.
fn open_layout(src: &Path) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    if src.is_dir() {
        return Ok((src.to_path_buf(), None));
    }
    let tmp = tempfile::tempdir()?;
    tar::Archive::new(std::fs::File::open(src)?).unpack(tmp.path()).context("unpacking the OCI archive")?;
    if !tmp.path().join("index.json").exists() {
        bail!(
            "{} is not an OCI archive (no index.json); use `nimbus image import` for docker-save tarballs",
            src.display()
        );
    }
    Ok((tmp.path().to_path_buf(), Some(tmp)))
}

async fn blob_exists(http: &Http, base: &str, name: &str, digest: &str) -> anyhow::Result<bool> {
    Ok(http.send("HEAD", &format!("{base}/v2/{name}/blobs/{digest}"), &[], empty_body()).await?.status == 200)
}

async fn upload_blob(
    http: &Http,
    base: &str,
    name: &str,
    digest: &str,
    path: &Path,
    pb: ProgressBar,
) -> anyhow::Result<()> {
    if blob_exists(http, base, name, digest).await? {
        pb.finish_with_message("exists");
        return Ok(());
    }
    let file = tokio::fs::File::open(path).await.with_context(|| format!("{}", path.display()))?;
    let len = file.metadata().await?.len().to_string();
    let url = format!("{base}/v2/{name}/blobs/uploads/?digest={digest}");
    let resp = http
        .send(
            "POST",
            &url,
            &[("content-type", "application/octet-stream"), ("content-length", &len)],
            file_body(file, pb.clone()),
        )
        .await?;
    if resp.status != 201 {
        let status = resp.status;
        bail!("uploading {digest}: {status} {}", String::from_utf8_lossy(&resp.bytes().await?));
    }
    pb.finish();
    Ok(())
}

async fn put_manifest(
    http: &Http,
    base: &str,
    name: &str,
    reference: &str,
    bytes: Vec<u8>,
    media_type: &str,
) -> anyhow::Result<String> {
    let resp = http
        .send(
            "PUT",
            &format!("{base}/v2/{name}/manifests/{reference}"),
            &[("content-type", media_type)],
            bytes_body(bytes),
        )
        .await?;
    if resp.status != 201 {
        let status = resp.status;
        bail!(
            "putting manifest {name}:{reference}: {status} {}",
            String::from_utf8_lossy(&resp.bytes().await?)
        );
    }
    Ok(resp.header("docker-content-digest").unwrap_or_default())
}

fn media_type_of(v: &Value, fallback: &str) -> String {
    v["mediaType"].as_str().unwrap_or(fallback).to_string()
}

async fn push(http: &Http, registry: &str, src: &str, dest: &str) -> anyhow::Result<()> {
    let (base, name, tag) = parse_ref(dest, registry)?;
    let mp = MultiProgress::new();
    if !Path::new(src).exists() {
        // An image already in a registry: copy it, mounting blobs when it is the same one.
        let (sbase, sname, sref) = parse_ref(src, registry)?;
        let (top, top_type, _) = fetch_manifest(http, &sbase, &sname, &sref).await?;
        let mut order = Vec::new();
        let mut pending = vec![(top, top_type, tag.clone())];
        while let Some((bytes, mt, reference)) = pending.pop() {
            let v: Value = serde_json::from_slice(&bytes)?;
            let (blobs, children) = referenced(&v);
            for (d, size) in blobs {
                let pb = bar(&mp, &short(&d), size);
                if blob_exists(http, &base, &name, &d).await? {
                    pb.finish();
                    continue;
                }
                if sbase == base {
                    let r = http
                        .send(
                            "POST",
                            &format!("{base}/v2/{name}/blobs/uploads/?mount={d}&from={sname}"),
                            &[],
                            empty_body(),
                        )
                        .await?;
                    if r.status == 201 {
                        pb.inc(size);
                        pb.finish();
                        continue;
                    }
                }
                let tmp = tempfile::tempdir()?;
                std::fs::create_dir_all(tmp.path().join("blobs/sha256"))?;
                download_blob(http, &sbase, &sname, &d, tmp.path(), pb.clone()).await?;
                pb.reset();
                upload_blob(
                    http,
                    &base,
                    &name,
                    &d,
                    &tmp.path().join("blobs/sha256").join(d.trim_start_matches("sha256:")),
                    pb,
                )
                .await?;
            }
            for c in children {
                let (b, t, d) = fetch_manifest(http, &sbase, &sname, &c).await?;
                pending.push((b, t, d));
            }
            order.push((bytes, mt, reference));
        }
        // Children before their index.
        let mut digest = String::new();
        for (bytes, mt, reference) in order.into_iter().rev() {
            digest = put_manifest(http, &base, &name, &reference, bytes, &mt).await?;
        }
        println!("pushed {name}:{tag}@{digest}");
        return Ok(());
    }
    let (dir, _tmp) = open_layout(Path::new(src))?;
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).context("reading index.json")?)?;
    let top = index["manifests"]
        .as_array()
        .and_then(|m| m.first())
        .cloned()
        .context("index.json lists no manifest")?;
    let blob_path = |d: &str| dir.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let top_digest = top["digest"].as_str().context("manifest descriptor without digest")?.to_string();
    let mut order = Vec::new();
    let mut pending =
        vec![(top_digest.clone(), top["mediaType"].as_str().unwrap_or_default().to_string(), tag.clone())];
    while let Some((digest, mt, reference)) = pending.pop() {
        let bytes = std::fs::read(blob_path(&digest))
            .with_context(|| format!("manifest {digest} missing from the layout"))?;
        let v: Value = serde_json::from_slice(&bytes)?;
        let (blobs, children) = referenced(&v);
        for (d, size) in blobs {
            upload_blob(http, &base, &name, &d, &blob_path(&d), bar(&mp, &short(&d), size)).await?;
        }
        for c in v["manifests"].as_array().into_iter().flatten() {
            if let Some(d) = c["digest"].as_str() {
                pending.push((
                    d.to_string(),
                    c["mediaType"].as_str().unwrap_or_default().to_string(),
                    d.to_string(),
                ));
            }
        }
        let _ = children;
        let mt = media_type_of(&v, &mt);
        order.push((bytes, mt, reference));
    }
    let mut digest = String::new();
    for (bytes, mt, reference) in order.into_iter().rev() {
        digest = put_manifest(http, &base, &name, &reference, bytes, &mt).await?;
    }
    println!("pushed {name}:{tag}@{digest}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ref;

    #[test]
    fn references() {
        let d = "http://127.0.0.1:4567";
        assert_eq!(parse_ref("app", d).unwrap(), (d.into(), "app".into(), "latest".into()));
        assert_eq!(parse_ref("team/app:v1", d).unwrap(), (d.into(), "team/app".into(), "v1".into()));
        assert_eq!(
            parse_ref("localhost:5000/app@sha256:ab", d).unwrap(),
            ("http://localhost:5000".into(), "app".into(), "sha256:ab".into())
        );
        assert_eq!(
            parse_ref("000000000000.dkr.ecr.us-east-1.amazonaws.com/app:v2", d).unwrap(),
            (d.into(), "app".into(), "v2".into())
        );
    }
}
