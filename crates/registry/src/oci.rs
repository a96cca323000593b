//! The OCI Distribution v1.1 server (ECR's data plane) as an axum `Router` over the shared
//! `ImageStore`. Repository names may contain `/`, so one catch-all route takes `/v2/…` and
//! the path is parsed from the right. Request and response bodies are streamed: uploads are
//! appended chunk by chunk to a file in the store's upload dir and verified when committed;
//! blobs are served from their files.
use crate::RegistryError;
use crate::ecr::{EcrEngine, manifest_media_type};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use nimbus_images::{
    ImageError, ImageStore, StoredManifest, is_valid_digest, is_valid_repository, is_valid_tag, media_types,
    sha256_digest,
};
use nimbus_model::Scope;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Manifests larger than this are refused (ECR's and distribution's limit is 4 MiB).
const MAX_MANIFEST: usize = 4 * 1024 * 1024;
const READ_CHUNK: usize = 256 * 1024;

/// Who may use the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryAuth {
    /// Any credentials, or none (a valid ECR token still names the caller's account).
    Anonymous,
    /// Basic `AWS:<token>` with a token from GetAuthorizationToken; 401 otherwise.
    Token,
}

struct Upload {
    repo: String,
    path: PathBuf,
    size: u64,
    /// sha256 of every byte so far, when all of them passed through this process (a session
    /// resumed after a restart has none: its file is hashed once at commit instead).
    hasher: Option<Sha256>,
}

#[derive(Clone)]
struct Reg {
    ecr: Arc<EcrEngine>,
    images: ImageStore,
    auth: RegistryAuth,
    uploads: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>>,
}

/// Upload sessions untouched this long are abandoned (distribution purges after a week;
/// a day is plenty for one machine) and removed when a router is built.
const STALE_UPLOAD: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes abandoned upload files (and interrupted imports) from the upload dir.
fn sweep_stale_uploads(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_UPLOAD);
        if old && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The registry listener's router (body limits off: blobs are streamed).
pub fn router(ecr: Arc<EcrEngine>, auth: RegistryAuth) -> Router {
    sweep_stale_uploads(&ecr.images().upload_dir());
    let reg = Reg { images: ecr.images().clone(), ecr, auth, uploads: Arc::default() };
    Router::new()
        .route("/v2", axum::routing::any(base))
        .route("/v2/", axum::routing::any(base))
        .route("/v2/{*rest}", axum::routing::any(dispatch))
        .fallback(unknown_path)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::map_response(api_version))
        .with_state(reg)
}

async fn api_version(mut resp: Response) -> Response {
    resp.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    resp
}

// ---- errors ----------------------------------------------------------------------------

/// An error in the OCI error format: `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug)]
struct OciError {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: Value,
    headers: Vec<(&'static str, String)>,
}

impl OciError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> OciError {
        OciError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            detail: Value::Null,
            headers: Vec::new(),
        }
    }
    fn detail(mut self, d: Value) -> OciError {
        self.detail = d;
        self
    }
    fn header(mut self, k: &'static str, v: String) -> OciError {
        self.headers.push((k, v));
        self
    }
    fn internal(m: impl Into<String>) -> OciError {
        let m = m.into();
        tracing::error!("registry: {m}");
        OciError::new(500, "UNKNOWN", m)
    }
    fn name_unknown(name: &str) -> OciError {
        OciError::new(404, "NAME_UNKNOWN", format!("repository name not known to registry: {name}"))
            .detail(json!({"name": name}))
    }
    fn blob_unknown(digest: &str) -> OciError {
        OciError::new(404, "BLOB_UNKNOWN", "blob unknown to registry").detail(json!({"digest": digest}))
    }
    fn upload_unknown() -> OciError {
        OciError::new(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
    }
    fn digest_invalid(m: impl Into<String>) -> OciError {
        OciError::new(400, "DIGEST_INVALID", m)
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if !self.detail.is_null() {
            err["detail"] = self.detail;
        }
        let body = json!({"errors": [err]}).to_string();
        let mut resp = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

impl From<ImageError> for OciError {
    fn from(e: ImageError) -> OciError {
        match e {
            ImageError::DigestMismatch { expected, actual } => OciError::digest_invalid(format!(
                "provided digest did not match uploaded content: expected {expected}, content is {actual}"
            ))
            .detail(json!({"digest": expected})),
            ImageError::ManifestBlobUnknown(d) => {
                OciError::new(400, "MANIFEST_BLOB_UNKNOWN", format!("blob unknown to registry: {d}"))
                    .detail(json!({"digest": d}))
            }
            ImageError::InvalidManifest(m) => {
                OciError::new(400, "MANIFEST_INVALID", format!("manifest invalid: {m}"))
            }
            ImageError::InvalidReference(m) => OciError::new(400, "NAME_INVALID", m),
            ImageError::NotFound(m) => {
                OciError::new(404, "MANIFEST_UNKNOWN", format!("manifest unknown: {m}"))
            }
            other => OciError::internal(other.to_string()),
        }
    }
}

impl From<RegistryError> for OciError {
    fn from(e: RegistryError) -> OciError {
        match e {
            // ECR answers a push onto an immutable tag with TAG_INVALID.
            RegistryError::ImageTagAlreadyExists(m) => OciError::new(400, "TAG_INVALID", m),
            RegistryError::RepositoryNotFound(m) => OciError::new(404, "NAME_UNKNOWN", m),
            RegistryError::Images(i) => i.into(),
            other => OciError::internal(other.to_string()),
        }
    }
}

impl From<std::io::Error> for OciError {
    fn from(e: std::io::Error) -> OciError {
        OciError::internal(format!("io: {e}"))
    }
}

type OciResult = Result<Response, OciError>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, OciError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| OciError::internal(e.to_string()))
}

// ---- auth -------------------------------------------------------------------------------

impl Reg {
    /// The caller's scope (from a valid ECR token), or the 401 that token mode requires.
    fn authorize(&self, headers: &HeaderMap) -> Result<Option<Scope>, OciError> {
        let scope = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (user, token) = s.split_once(':')?;
                if user == "AWS" { self.ecr.check_token(token) } else { None }
            });
        match (self.auth, scope) {
            (_, Some(s)) => Ok(Some(s)),
            (RegistryAuth::Anonymous, None) => Ok(None),
            (RegistryAuth::Token, None) => {
                let realm = self.ecr.registry_endpoint();
                Err(OciError::new(
                    401,
                    "UNAUTHORIZED",
                    "authentication required: use `aws ecr get-login-password`",
                )
                .header(
                    "www-authenticate",
                    format!("Basic realm=\"{realm}/\",service=\"ecr.amazonaws.com\""),
                ))
            }
        }
    }
}

async fn base(State(reg): State<Reg>, req: Request) -> Response {
    match reg.authorize(req.headers()) {
        Ok(_) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
        Err(e) => e.into_response(),
    }
}

async fn unknown_path() -> Response {
    OciError::new(404, "NOT_FOUND", "unknown path").into_response()
}

// ---- routing ----------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Catalog,
    Tags(String),
    Manifest(String, String),
    Referrers(String, String),
    UploadStart(String),
    Upload(String, String),
    Blob(String, String),
}

/// Parses `<name>/…` from the right (names contain `/`).
fn parse_route(rest: &str) -> Option<Route> {
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| segs[..n - k].join("/");
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Some(Route::Tags(name(2)));
    }
    if n >= 3 && segs[n - 2] == "manifests" {
        return Some(Route::Manifest(name(2), segs[n - 1].to_string()));
    }
    if n >= 3 && segs[n - 2] == "referrers" {
        return Some(Route::Referrers(name(2), segs[n - 1].to_string()));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        return Some(if segs[n - 1].is_empty() {
            Route::UploadStart(name(3))
        } else {
            Route::Upload(name(3), segs[n - 1].to_string())
        });
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some(Route::UploadStart(name(2)));
    }
    if n >= 3 && segs[n - 2] == "blobs" {
        return Some(Route::Blob(name(2), segs[n - 1].to_string()));
    }
    None
}

async fn dispatch(State(reg): State<Reg>, req: Request) -> Response {
    match route(reg, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(reg: Reg, req: Request) -> OciResult {
    let scope = reg.authorize(req.headers())?;
    let rest = req.uri().path().strip_prefix("/v2/").unwrap_or_default().to_string();
    let route = parse_route(&rest).ok_or_else(|| OciError::new(404, "NOT_FOUND", "unknown path"))?;
    let query: HashMap<String, String> =
        Query::<HashMap<String, String>>::try_from_uri(req.uri()).map(|q| q.0).unwrap_or_default();
    let method = req.method().clone();
    if route == Route::Catalog {
        return match method {
            Method::GET => Ok(catalog(&reg, &query)),
            _ => Err(unsupported()),
        };
    }
    let name = match &route {
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Referrers(n, _)
        | Route::UploadStart(n)
        | Route::Upload(n, _)
        | Route::Blob(n, _) => n.clone(),
        Route::Catalog => String::new(),
    };
    if !is_valid_repository(&name) {
        return Err(OciError::new(400, "NAME_INVALID", format!("invalid repository name: {name}"))
            .detail(json!({"name": name})));
    }
    if !reg.ecr.registry_repository_exists(&name) {
        return Err(OciError::name_unknown(&name));
    }
    match (route, method) {
        (Route::Tags(_), Method::GET) => Ok(tags_list(&reg, &name, &query)),
        (Route::Manifest(_, r), m) if m == Method::GET || m == Method::HEAD => {
            get_manifest(&reg, &name, &r, req.headers(), m == Method::HEAD).await
        }
        (Route::Manifest(_, r), Method::PUT) => put_manifest(&reg, scope, &name, &r, req).await,
        (Route::Manifest(_, r), Method::DELETE) => delete_manifest(&reg, &name, &r).await,
        (Route::Referrers(_, d), Method::GET) => referrers(&reg, &name, &d, &query).await,
        (Route::UploadStart(_), Method::POST) => start_upload(&reg, &name, &query, req).await,
        (Route::Upload(_, id), Method::PATCH) => patch_upload(&reg, &name, &id, req).await,
        (Route::Upload(_, id), Method::PUT) => finish_upload(&reg, &name, &id, &query, req).await,
        (Route::Upload(_, id), Method::GET) => upload_status(&reg, &name, &id).await,
        (Route::Upload(_, id), Method::DELETE) => cancel_upload(&reg, &name, &id).await,
        (Route::Blob(_, d), m) if m == Method::GET || m == Method::HEAD => {
            get_blob(&reg, &name, &d, req.headers(), m == Method::HEAD).await
        }
        (Route::Blob(_, d), Method::DELETE) => delete_blob(&reg, &name, &d).await,
        _ => Err(unsupported()),
    }
}

fn unsupported() -> OciError {
    OciError::new(405, "UNSUPPORTED", "the operation is unsupported")
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    for (k, v) in headers {
        h.insert(*k, hv(v));
    }
    resp
}

// ---- tags, catalog, referrers -------------------------------------------------------------

/// Applies `last` / `n` to a sorted list; the `Link` header when more remain.
fn paginate(
    mut items: Vec<String>,
    query: &HashMap<String, String>,
    path: &str,
) -> Result<(Vec<String>, Option<String>), OciError> {
    if let Some(last) = query.get("last") {
        items.retain(|t| t.as_str() > last.as_str());
    }
    let mut link = None;
    if let Some(n) = query.get("n") {
        let n: usize = n.parse().map_err(|_| {
            OciError::new(400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
        })?;
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                link = Some(format!("<{path}?n={n}&last={last}>; rel=\"next\""));
            }
        }
    }
    Ok((items, link))
}

fn json_response(body: Value, link: Option<String>) -> Response {
    let mut resp =
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Some(l) = link {
        resp.headers_mut().insert(header::LINK, hv(&l));
    }
    resp
}

fn tags_list(reg: &Reg, name: &str, query: &HashMap<String, String>) -> Response {
    match paginate(reg.images.tags(name), query, &format!("/v2/{name}/tags/list")) {
        Ok((tags, link)) => json_response(json!({"name": name, "tags": tags}), link),
        Err(e) => e.into_response(),
    }
}

fn catalog(reg: &Reg, query: &HashMap<String, String>) -> Response {
    match paginate(reg.ecr.catalog(), query, "/v2/_catalog") {
        Ok((repos, link)) => json_response(json!({"repositories": repos}), link),
        Err(e) => e.into_response(),
    }
}

async fn referrers(reg: &Reg, name: &str, digest: &str, query: &HashMap<String, String>) -> OciResult {
    if !is_valid_digest(digest) {
        return Err(OciError::digest_invalid(format!("invalid digest {digest}")));
    }
    let (images, n, d) = (reg.images.clone(), name.to_string(), digest.to_string());
    let mut list = blocking(move || images.referrers(&n, &d)).await?;
    let filter = query.get("artifactType").cloned();
    if let Some(t) = &filter {
        list.retain(|desc| desc.get("artifactType").and_then(Value::as_str) == Some(t.as_str()));
    }
    let body = json!({"schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": list});
    let mut resp =
        (StatusCode::OK, [(header::CONTENT_TYPE, media_types::OCI_INDEX)], body.to_string()).into_response();
    if filter.is_some() {
        resp.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
    }
    Ok(resp)
}

// ---- manifests -------------------------------------------------------------------------------

fn accepted_types(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn accepts(accepted: &[String], media_type: &str) -> bool {
    accepted.is_empty() || accepted.iter().any(|a| a == media_type || a == "*/*")
}

/// Content negotiation as distribution does it: the stored manifest when its type is
/// accepted (or no Accept is given); for an index / manifest list a client cannot take, the
/// host platform's image manifest if that is acceptable; otherwise MANIFEST_UNKNOWN.
fn negotiate(
    images: &ImageStore,
    name: &str,
    stored: StoredManifest,
    accepted: &[String],
) -> Result<StoredManifest, OciError> {
    if accepts(accepted, &stored.media_type) {
        return Ok(stored);
    }
    if media_types::is_index(&stored.media_type) {
        let (os, arch) = nimbus_images::host_platform();
        let (os, arch): (&str, &str) = (AsRef::<str>::as_ref(&os), AsRef::<str>::as_ref(&arch));
        let doc: Value = serde_json::from_slice(&stored.bytes).unwrap_or(Value::Null);
        for child in doc["manifests"].as_array().into_iter().flatten() {
            let p = &child["platform"];
            let child_type = child["mediaType"].as_str().unwrap_or_default();
            if p["os"].as_str() == Some(os)
                && p["architecture"].as_str() == Some(arch)
                && accepts(accepted, child_type)
                && let Some(d) = child["digest"].as_str()
                && let Ok(Some(m)) = images.get_manifest(name, d)
            {
                return Ok(m);
            }
        }
    }
    let kind = if stored.media_type.contains("oci") { "OCI" } else { "Docker" };
    Err(OciError::new(
        404,
        "MANIFEST_UNKNOWN",
        format!("{kind} manifest found, but accept header does not support {} ", stored.media_type),
    ))
}

async fn get_manifest(reg: &Reg, name: &str, reference: &str, headers: &HeaderMap, head: bool) -> OciResult {
    let (images, n, r) = (reg.images.clone(), name.to_string(), reference.to_string());
    let accepted = accepted_types(headers);
    let stored = blocking(move || -> Result<StoredManifest, OciError> {
        let stored = images.get_manifest(&n, &r)?.ok_or_else(|| {
            OciError::new(404, "MANIFEST_UNKNOWN", "manifest unknown")
                .detail(json!({"name": n, "reference": r}))
        })?;
        negotiate(&images, &n, stored, &accepted)
    })
    .await??;
    let len = stored.bytes.len();
    let mut resp = Response::new(if head { Body::empty() } else { Body::from(stored.bytes) });
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(&stored.media_type));
    h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
    h.insert("docker-content-digest", hv(&stored.digest));
    h.insert(header::ETAG, hv(&format!("\"{}\"", stored.digest)));
    Ok(resp)
}

async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, OciError> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| OciError::new(400, "MANIFEST_INVALID", format!("reading body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(OciError::new(
                    413,
                    "SIZE_INVALID",
                    format!("manifest larger than {limit} bytes"),
                ));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

async fn put_manifest(
    reg: &Reg,
    scope: Option<Scope>,
    name: &str,
    reference: &str,
    req: Request,
) -> OciResult {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_string());
    let bytes = read_limited(req.into_body(), MAX_MANIFEST).await?;
    let declared = manifest_media_type(&bytes)
        .ok_or_else(|| OciError::new(400, "MANIFEST_INVALID", "manifest invalid: not a JSON manifest"))?;
    let has_own_type =
        serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v.get("mediaType").cloned()).is_some();
    let media_type = match content_type {
        Some(ct) if media_types::is_manifest(&ct) => {
            if has_own_type && declared != ct {
                return Err(OciError::new(
                    400,
                    "MANIFEST_INVALID",
                    format!("manifest invalid: mediaType {declared} does not match Content-Type {ct}"),
                ));
            }
            ct
        }
        _ => declared,
    };
    let digest = sha256_digest(&bytes);
    if reference.starts_with("sha256:") || reference.contains(':') {
        if reference != digest {
            return Err(OciError::digest_invalid(format!(
                "manifest digest {digest} does not match {reference}"
            ))
            .detail(json!({"digest": reference})));
        }
    } else if !is_valid_tag(reference) {
        return Err(OciError::new(400, "TAG_INVALID", format!("invalid tag {reference}"))
            .detail(json!({"tag": reference})));
    }
    let subject = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["subject"]["digest"].as_str().map(str::to_string));
    let (ecr, n, r, d) = (reg.ecr.clone(), name.to_string(), reference.to_string(), digest.clone());
    let stored = blocking(move || -> Result<String, OciError> {
        if !r.contains(':')
            && let Some(repo) = ecr.find_for_registry(&n, scope.as_ref())
        {
            ecr.check_tag_push(&repo, &r, &d)?;
        }
        let stored = ecr.images().put_manifest(&n, &r, &media_type, &bytes)?;
        ecr.after_push(&n);
        Ok(stored)
    })
    .await??;
    let mut headers =
        vec![("location", format!("/v2/{name}/manifests/{stored}")), ("docker-content-digest", stored)];
    if let Some(s) = subject {
        headers.push(("oci-subject", s));
    }
    Ok(empty(StatusCode::CREATED, &headers))
}

async fn delete_manifest(reg: &Reg, name: &str, reference: &str) -> OciResult {
    let (images, n, r) = (reg.images.clone(), name.to_string(), reference.to_string());
    let by_digest = reference.contains(':');
    let deleted =
        blocking(move || if by_digest { images.delete_manifest(&n, &r) } else { images.delete_tag(&n, &r) })
            .await??;
    if !deleted {
        return Err(OciError::new(404, "MANIFEST_UNKNOWN", "manifest unknown")
            .detail(json!({"name": name, "reference": reference})));
    }
    Ok(empty(StatusCode::ACCEPTED, &[]))
}

// ---- blobs -----------------------------------------------------------------------------------

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive (start, end) within `size`.
fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return None;
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let s: u64 = a.parse().ok()?;
        let e: u64 = if b.is_empty() {
            size.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?)
        };
        (s, e)
    };
    (start <= end && end < size).then_some((start, end))
}

fn file_body(file: tokio::fs::File, len: u64) -> Body {
    let stream = futures_util::stream::unfold((file, len), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; (left.min(READ_CHUNK as u64)) as usize];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    Body::from_stream(stream)
}

async fn get_blob(reg: &Reg, name: &str, digest: &str, headers: &HeaderMap, head: bool) -> OciResult {
    if !is_valid_digest(digest) {
        return Err(
            OciError::digest_invalid(format!("invalid digest {digest}")).detail(json!({"digest": digest}))
        );
    }
    // Blobs are served per repository (as on ECR / distribution): a blob deleted from this
    // repository, or never pushed / mounted into it, is unknown here even if another holds it.
    if !reg.images.repo_has_blob(name, digest) {
        return Err(OciError::blob_unknown(digest));
    }
    let path = reg.images.blob_path(digest).ok_or_else(|| OciError::blob_unknown(digest))?;
    let mut file = tokio::fs::File::open(&path).await.map_err(|_| OciError::blob_unknown(digest))?;
    let size = file.metadata().await?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (status, start, end) = match range {
        Some(r) => match parse_range(&r, size) {
            Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e),
            None => {
                return Err(OciError::new(416, "RANGE_INVALID", format!("invalid range {r}"))
                    .header("content-range", format!("bytes */{size}")));
            }
        },
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let body = if head {
        Body::empty()
    } else {
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start)).await?;
        }
        file_body(file, len)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
    h.insert("docker-content-digest", hv(digest));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, hv(&format!("\"{digest}\"")));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(header::CONTENT_RANGE, hv(&format!("bytes {start}-{end}/{size}")));
    }
    Ok(resp)
}

/// Removes only this repository's link: other repositories' manifests may share the blob; the
/// image store drops the file once nothing links or references it.
async fn delete_blob(reg: &Reg, name: &str, digest: &str) -> OciResult {
    if !is_valid_digest(digest) {
        return Err(OciError::digest_invalid(format!("invalid digest {digest}")));
    }
    let (images, n, d) = (reg.images.clone(), name.to_string(), digest.to_string());
    if !blocking(move || images.delete_repository_blob(&n, &d)).await?? {
        return Err(OciError::blob_unknown(digest));
    }
    Ok(empty(StatusCode::ACCEPTED, &[]))
}

// ---- uploads ----------------------------------------------------------------------------------

/// Appends a request body to `path` as it arrives, hashing it on the way; returns the
/// bytes written.
async fn append_body(path: &Path, body: Body, hasher: &mut Option<Sha256>) -> Result<u64, OciError> {
    let file = tokio::fs::OpenOptions::new().append(true).create(true).open(path).await?;
    let mut w = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut body = body;
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| OciError::new(400, "BLOB_UPLOAD_INVALID", format!("reading body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if let Some(h) = hasher.as_mut() {
                h.update(&data);
            }
            w.write_all(&data).await?;
            n += data.len() as u64;
        }
    }
    w.flush().await?;
    Ok(n)
}

/// Appends a chunk to a session; a chunk that fails half-way is cut off again, so the
/// session stays at its last good size (and is re-hashed at commit).
async fn append_chunk(up: &mut Upload, body: Body) -> Result<(), OciError> {
    match append_body(&up.path, body, &mut up.hasher).await {
        Ok(n) => {
            up.size += n;
            Ok(())
        }
        Err(e) => {
            up.hasher = None;
            if let Ok(f) = tokio::fs::OpenOptions::new().write(true).open(&up.path).await {
                let _ = f.set_len(up.size).await;
            }
            Err(e)
        }
    }
}

fn upload_headers(name: &str, id: &str, size: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", format!("0-{}", size.saturating_sub(1))),
        ("docker-upload-uuid", id.to_string()),
    ]
}

/// Commits a finished upload file as `digest` and links it to the repository. `hashed`:
/// the digest computed while the bytes streamed in (then the file is not read again).
async fn commit(reg: &Reg, name: &str, temp: PathBuf, digest: &str, hashed: Option<String>) -> OciResult {
    if !is_valid_digest(digest) {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(
            OciError::digest_invalid(format!("invalid digest {digest}")).detail(json!({"digest": digest}))
        );
    }
    let (images, n, d) = (reg.images.clone(), name.to_string(), digest.to_string());
    let committed = blocking(move || -> Result<String, ImageError> {
        let result = match hashed {
            Some(actual) if actual != d => Err(ImageError::DigestMismatch { expected: d.clone(), actual }),
            Some(_) => images.commit_blob_prehashed(&temp, &d),
            None => images.commit_blob(&temp, &d),
        };
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        let stored = result?;
        images.link_blob(&n, &stored)?;
        Ok(stored)
    })
    .await??;
    Ok(empty(
        StatusCode::CREATED,
        &[("location", format!("/v2/{name}/blobs/{committed}")), ("docker-content-digest", committed)],
    ))
}

fn new_upload_id() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid().to_string()
}

async fn start_upload(reg: &Reg, name: &str, query: &HashMap<String, String>, req: Request) -> OciResult {
    if let Some(mount) = query.get("mount") {
        let from = query.get("from").cloned().unwrap_or_default();
        let (images, n, m) = (reg.images.clone(), name.to_string(), mount.clone());
        let mounted = blocking(move || -> Result<bool, ImageError> {
            let present = is_valid_digest(&m) && images.blob_path(&m).is_some();
            // Mount only from a repository that holds the blob (or any, when the source
            // was not named) — otherwise the client uploads, as the spec allows.
            if present
                && (from.is_empty() || images.repo_has_blob(&from, &m) || !images.repository_exists(&from))
            {
                images.link_blob(&n, &m)?;
                return Ok(true);
            }
            Ok(false)
        })
        .await??;
        if mounted {
            return Ok(empty(
                StatusCode::CREATED,
                &[
                    ("location", format!("/v2/{name}/blobs/{mount}")),
                    ("docker-content-digest", mount.clone()),
                ],
            ));
        }
    } else if let Some(digest) = query.get("digest") {
        // Monolithic upload: the body is the whole blob.
        let temp = reg.images.upload_dir().join(new_upload_id());
        let mut hasher = Some(Sha256::new());
        if let Err(e) = append_body(&temp, req.into_body(), &mut hasher).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        let hashed = hasher.map(|h| format!("sha256:{}", hex::encode(h.finalize())));
        return commit(reg, name, temp, digest, hashed).await;
    }
    let id = new_upload_id();
    let dir = reg.images.upload_dir();
    let path = dir.join(&id);
    tokio::fs::File::create(&path).await?;
    // The repository beside the data lets a session survive a restart (resumable uploads).
    tokio::fs::write(dir.join(format!("{id}.repo")), name).await?;
    reg.uploads.lock().insert(
        id.clone(),
        Arc::new(tokio::sync::Mutex::new(Upload {
            repo: name.to_string(),
            path,
            size: 0,
            hasher: Some(Sha256::new()),
        })),
    );
    Ok(empty(StatusCode::ACCEPTED, &upload_headers(name, &id, 0)))
}

async fn session(reg: &Reg, name: &str, id: &str) -> Result<Arc<tokio::sync::Mutex<Upload>>, OciError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(OciError::upload_unknown());
    }
    let known = reg.uploads.lock().get(id).cloned();
    if let Some(s) = known {
        if s.lock().await.repo != name {
            return Err(OciError::upload_unknown());
        }
        return Ok(s);
    }
    // After a restart: the session's file and repository are still in the upload dir.
    let dir = reg.images.upload_dir();
    let path = dir.join(id);
    let repo = tokio::fs::read_to_string(dir.join(format!("{id}.repo")))
        .await
        .map_err(|_| OciError::upload_unknown())?;
    let size = tokio::fs::metadata(&path).await.map_err(|_| OciError::upload_unknown())?.len();
    if repo != name {
        return Err(OciError::upload_unknown());
    }
    let s = Arc::new(tokio::sync::Mutex::new(Upload { repo, path, size, hasher: None }));
    Ok(reg.uploads.lock().entry(id.to_string()).or_insert(s).clone())
}

fn forget(reg: &Reg, id: &str) {
    reg.uploads.lock().remove(id);
    let _ = std::fs::remove_file(reg.images.upload_dir().join(format!("{id}.repo")));
}

/// Checks a chunk's `Content-Range: <start>-<end>` against the bytes received so far.
fn check_content_range(headers: &HeaderMap, size: u64, name: &str, id: &str) -> Result<(), OciError> {
    let Some(v) = headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let spec = v.trim().trim_start_matches("bytes").trim_start_matches([' ', '=']);
    let start = spec.split('-').next().and_then(|s| s.trim().parse::<u64>().ok());
    if start != Some(size) {
        let mut e = OciError::new(
            416,
            "BLOB_UPLOAD_INVALID",
            format!("chunk out of order: expected start {size}, got {v}"),
        );
        for (k, val) in upload_headers(name, id, size) {
            e = e.header(k, val);
        }
        return Err(e);
    }
    Ok(())
}

async fn patch_upload(reg: &Reg, name: &str, id: &str, req: Request) -> OciResult {
    let s = session(reg, name, id).await?;
    let mut up = s.lock().await;
    check_content_range(req.headers(), up.size, name, id)?;
    append_chunk(&mut up, req.into_body()).await?;
    Ok(empty(StatusCode::ACCEPTED, &upload_headers(name, id, up.size)))
}

async fn finish_upload(
    reg: &Reg,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
    req: Request,
) -> OciResult {
    let s = session(reg, name, id).await?;
    let mut up = s.lock().await;
    let Some(digest) = query.get("digest").cloned() else {
        return Err(OciError::digest_invalid("digest missing from the upload's PUT"));
    };
    check_content_range(req.headers(), up.size, name, id)?;
    append_chunk(&mut up, req.into_body()).await?;
    let path = up.path.clone();
    let hashed = up.hasher.take().map(|h| format!("sha256:{}", hex::encode(h.finalize())));
    forget(reg, id);
    drop(up);
    commit(reg, name, path, &digest, hashed).await
}

async fn upload_status(reg: &Reg, name: &str, id: &str) -> OciResult {
    let s = session(reg, name, id).await?;
    let up = s.lock().await;
    Ok(empty(StatusCode::NO_CONTENT, &upload_headers(name, id, up.size)))
}

async fn cancel_upload(reg: &Reg, name: &str, id: &str) -> OciResult {
    let s = session(reg, name, id).await?;
    let up = s.lock().await;
    let _ = tokio::fs::remove_file(&up.path).await;
    forget(reg, id);
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_from_the_right() {
        assert_eq!(parse_route("a/b/tags/list"), Some(Route::Tags("a/b".into())));
        assert_eq!(parse_route("a/b/manifests/latest"), Some(Route::Manifest("a/b".into(), "latest".into())));
        assert_eq!(parse_route("x/blobs/uploads/"), Some(Route::UploadStart("x".into())));
        assert_eq!(parse_route("x/y/blobs/uploads/abc"), Some(Route::Upload("x/y".into(), "abc".into())));
        assert_eq!(parse_route("x/blobs/sha256:00"), Some(Route::Blob("x".into(), "sha256:00".into())));
        assert_eq!(
            parse_route("x/referrers/sha256:00"),
            Some(Route::Referrers("x".into(), "sha256:00".into()))
        );
        assert_eq!(parse_route("_catalog"), Some(Route::Catalog));
        assert_eq!(parse_route("x"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-200", 100), Some((5, 99)));
    }

    #[test]
    fn names() {
        assert!(is_valid_repository("library/busybox"));
        assert!(is_valid_repository("a.b_c-d/e"));
        assert!(!is_valid_repository("UPPER"));
        assert!(!is_valid_repository("a//b"));
    }
}
