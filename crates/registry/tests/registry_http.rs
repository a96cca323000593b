//! The registry router and the ECR engine over a real image store and SQLite store, driven
//! in-process (no sockets): uploads, auth, immutability, lifecycle, restart durability.
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use nimbus_images::{ImageStore, sha256_digest};
use nimbus_model::Scope;
use nimbus_registry::{CreateRepository, EcrEngine, RegistryAuth, TagMutability};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

fn open(dir: &Path) -> Arc<EcrEngine> {
    let store: Arc<dyn nimbus_store::Store> =
        Arc::new(nimbus_store::SqliteStore::open(&dir.join("state.db")).expect("sqlite"));
    let images = ImageStore::open(dir, store.clone()).expect("image store");
    EcrEngine::open(store, images).expect("ecr")
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, k: &str) -> &str {
        self.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    fn error_code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).expect("json error body");
        v["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }
}

async fn call(app: &axum::Router, method: &str, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::from(body)).expect("request")).await.expect("infallible");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes().to_vec();
    Resp { status: parts.status, headers: parts.headers, body }
}

fn create(ecr: &EcrEngine, name: &str, mutability: TagMutability) {
    ecr.create_repository(
        &Scope::default(),
        CreateRepository { name: name.into(), tag_mutability: Some(mutability), ..Default::default() },
    )
    .expect("create");
}

/// Pushes config + one layer monolithically and returns the manifest bytes.
async fn image(app: &axum::Router, repo: &str, payload: &[u8]) -> Vec<u8> {
    let config = json!({"architecture": "amd64", "os": "linux", "config": {}}).to_string().into_bytes();
    for blob in [&config[..], payload] {
        let d = sha256_digest(blob);
        let r = call(app, "POST", &format!("/v2/{repo}/blobs/uploads/?digest={d}"), &[], blob.to_vec()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    }
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256_digest(payload), "size": payload.len()}],
    })
    .to_string()
    .into_bytes()
}

async fn put_manifest(app: &axum::Router, repo: &str, reference: &str, bytes: Vec<u8>) -> Resp {
    call(
        app,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        bytes,
    )
    .await
}

#[tokio::test]
async fn chunked_upload_survives_a_restart_and_rejects_out_of_order_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&data);
    let loc;
    {
        let ecr = open(dir.path());
        create(&ecr, "app", TagMutability::Mutable);
        let app = nimbus_registry::router(ecr, RegistryAuth::Anonymous);
        let r = call(&app, "POST", "/v2/app/blobs/uploads/", &[], vec![]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        loc = r.header("location").to_string();
        let r = call(&app, "PATCH", &loc, &[("content-range", "0-99999")], data[..100_000].to_vec()).await;
        assert_eq!((r.status, r.header("range")), (StatusCode::ACCEPTED, "0-99999"));
        let r =
            call(&app, "PATCH", &loc, &[("content-range", "150000-199999")], data[150_000..].to_vec()).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    }
    // A new server on the same data dir resumes the session.
    let ecr = open(dir.path());
    let app = nimbus_registry::router(ecr.clone(), RegistryAuth::Anonymous);
    let r = call(&app, "GET", &loc, &[], vec![]).await;
    assert_eq!((r.status, r.header("range")), (StatusCode::NO_CONTENT, "0-99999"));
    let r = call(
        &app,
        "PUT",
        &format!("{loc}?digest={digest}"),
        &[("content-range", "100000-199999")],
        data[100_000..].to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    let r = call(&app, "GET", &format!("/v2/app/blobs/{digest}"), &[], vec![]).await;
    assert_eq!(r.body, data);
    assert!(ecr.images().repo_has_blob("app", &digest));
}

#[tokio::test]
async fn token_mode_accepts_only_valid_ecr_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ecr = open(dir.path());
    create(&ecr, "app", TagMutability::Mutable);
    let app = nimbus_registry::router(ecr.clone(), RegistryAuth::Token);
    let r = call(&app, "GET", "/v2/", &[], vec![]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "UNAUTHORIZED");
    assert!(r.header("www-authenticate").starts_with("Basic realm="));
    let (token, _) = ecr.authorization_token(&Scope::default()).expect("token");
    let basic = |u: &str, p: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))
    };
    let good = basic("AWS", &token);
    assert_eq!(call(&app, "GET", "/v2/", &[("authorization", &good)], vec![]).await.status, StatusCode::OK);
    for bad in [basic("AWS", "nope"), basic("admin", &token)] {
        assert_eq!(
            call(&app, "GET", "/v2/app/tags/list", &[("authorization", &bad)], vec![]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Tokens are durable: a restarted server still accepts them.
    drop(app);
    let ecr2 = open(dir.path());
    assert_eq!(ecr2.check_token(&token), Some(Scope::default()));
}

#[tokio::test]
async fn immutable_tags_and_lifecycle_on_push() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ecr = open(dir.path());
    create(&ecr, "frozen", TagMutability::Immutable);
    create(&ecr, "rolling", TagMutability::Mutable);
    let app = nimbus_registry::router(ecr.clone(), RegistryAuth::Anonymous);
    let one = image(&app, "frozen", b"one").await;
    let two = image(&app, "frozen", b"two").await;
    assert_eq!(put_manifest(&app, "frozen", "v1", one.clone()).await.status, StatusCode::CREATED);
    // Same digest again is fine; a different one under the tag is not.
    assert_eq!(put_manifest(&app, "frozen", "v1", one).await.status, StatusCode::CREATED);
    let r = put_manifest(&app, "frozen", "v1", two).await;
    assert_eq!((r.status, r.error_code().as_str()), (StatusCode::BAD_REQUEST, "TAG_INVALID"));

    let policy = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    ecr.put_lifecycle_policy(&Scope::default(), "rolling", policy).expect("policy");
    let mut last = String::new();
    for i in 0..3u8 {
        let m = image(&app, "rolling", &[b'x', i]).await;
        let r = put_manifest(&app, "rolling", &format!("v{i}"), m).await;
        assert_eq!(r.status, StatusCode::CREATED);
        last = r.header("docker-content-digest").to_string();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let left: Vec<String> = ecr.images().manifests("rolling").into_iter().map(|m| m.digest).collect();
    assert_eq!(left, vec![last]);
    assert!(
        ecr.get_lifecycle_policy(&Scope::default(), "rolling")
            .expect("policy")
            .lifecycle_evaluated_at_ms
            .is_some()
    );
}

#[tokio::test]
async fn repositories_persist_and_unknown_names_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let ecr = open(dir.path());
        create(&ecr, "team/svc", TagMutability::Immutable);
        let app = nimbus_registry::router(ecr, RegistryAuth::Anonymous);
        let r = call(&app, "POST", "/v2/other/blobs/uploads/", &[], vec![]).await;
        assert_eq!((r.status, r.error_code().as_str()), (StatusCode::NOT_FOUND, "NAME_UNKNOWN"));
    }
    let ecr = open(dir.path());
    let repo = ecr.get_repository(&Scope::default(), "team/svc").expect("persisted");
    assert_eq!(repo.tag_mutability, TagMutability::Immutable);
    assert_eq!(repo.arn(), "arn:aws:ecr:us-east-1:000000000000:repository/team/svc");
    let app = nimbus_registry::router(ecr, RegistryAuth::Anonymous);
    let r = call(&app, "GET", "/v2/_catalog", &[], vec![]).await;
    assert_eq!(serde_json::from_slice::<Value>(&r.body).expect("json")["repositories"], json!(["team/svc"]));
}

#[tokio::test]
async fn deleting_a_blob_unlinks_it_from_one_repository_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ecr = open(dir.path());
    create(&ecr, "one", TagMutability::Mutable);
    create(&ecr, "two", TagMutability::Mutable);
    let app = nimbus_registry::router(ecr.clone(), RegistryAuth::Anonymous);
    let payload = b"a layer both repositories share".to_vec();
    let layer = sha256_digest(&payload);
    for repo in ["one", "two"] {
        let m = image(&app, repo, &payload).await;
        assert_eq!(put_manifest(&app, repo, "v1", m).await.status, StatusCode::CREATED);
    }
    let r = call(&app, "DELETE", &format!("/v2/one/blobs/{layer}"), &[], vec![]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = call(&app, "GET", &format!("/v2/one/blobs/{layer}"), &[], vec![]).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".to_string()));
    let r = call(&app, "DELETE", &format!("/v2/one/blobs/{layer}"), &[], vec![]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "already unlinked from one");
    let r = call(&app, "GET", &format!("/v2/two/blobs/{layer}"), &[], vec![]).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, payload));

    // A blob only one repository links, referenced by no manifest: its file goes.
    let lone = b"pushed, never referenced".to_vec();
    let d = sha256_digest(&lone);
    let r = call(&app, "POST", &format!("/v2/two/blobs/uploads/?digest={d}"), &[], lone).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let path = ecr.images().blob_path(&d).expect("stored");
    // Past the store's protection of just-written blobs (a push may still be linking them).
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)))
        .expect("backdate");
    let r = call(&app, "DELETE", &format!("/v2/two/blobs/{d}"), &[], vec![]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(ecr.images().blob_path(&d).is_none());
}

#[test]
fn ecr_layer_upload_in_ordered_parts_survives_a_restart() {
    use nimbus_registry::RegistryError as E;
    let dir = tempfile::tempdir().expect("tempdir");
    let scope = Scope::default();
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let digest = sha256_digest(&data);
    let id;
    {
        let ecr = open(dir.path());
        create(&ecr, "app", TagMutability::Mutable);
        create(&ecr, "other", TagMutability::Mutable);
        let (uid, part) = ecr.initiate_layer_upload(&scope, "app").expect("initiate");
        assert!(part > 0);
        id = uid;
        assert_eq!(
            ecr.upload_layer_part(&scope, "app", &id, 0, 19_999, &data[..20_000]).expect("part"),
            19_999
        );
        match ecr.upload_layer_part(&scope, "app", &id, 30_000, 39_999, &data[30_000..40_000]) {
            Err(E::InvalidLayerPart { last_valid_byte_received, .. }) => {
                assert_eq!(last_valid_byte_received, 19_999)
            }
            other => panic!("expected InvalidLayerPart, got {other:?}"),
        }
        assert!(matches!(
            ecr.upload_layer_part(&scope, "other", &id, 20_000, 29_999, &data[20_000..30_000]),
            Err(E::UploadNotFound(_))
        ));
    }
    // A new server on the same data dir continues the session where it stood.
    let ecr = open(dir.path());
    ecr.upload_layer_part(&scope, "app", &id, 20_000, 49_999, &data[20_000..]).expect("part after restart");
    assert_eq!(
        ecr.complete_layer_upload(&scope, "app", &id, std::slice::from_ref(&digest)).expect("complete"),
        digest
    );
    assert!(ecr.images().repo_has_blob("app", &digest));
    assert!(!ecr.images().repo_has_blob("other", &digest));
    assert!(matches!(
        ecr.complete_layer_upload(&scope, "app", &id, std::slice::from_ref(&digest)),
        Err(E::UploadNotFound(_))
    ));
    // The same bytes again: already there.
    let (again, _) = ecr.initiate_layer_upload(&scope, "app").expect("initiate");
    ecr.upload_layer_part(&scope, "app", &again, 0, 49_999, &data).expect("part");
    assert!(matches!(
        ecr.complete_layer_upload(&scope, "app", &again, &[digest]),
        Err(E::LayerAlreadyExists(_))
    ));
    let leftovers: Vec<_> = std::fs::read_dir(ecr.images().upload_dir())
        .expect("upload dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ecr-layer-"))
        .collect();
    assert!(leftovers.is_empty(), "finished sessions leave no files");
}
