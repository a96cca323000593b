//! `POST /_nimbus/images/import?tag=NAME:TAG`: an OCI archive (tar of an OCI layout) or a
//! `docker save` / `podman save` tarball as the body, streamed to a file, then imported into
//! the shared image store. The repositories it writes become ECR repositories of the
//! caller's account (created implicitly, as a push through the registry cannot).
use crate::AppState;
use crate::auth::RequestContext;
use crate::error::{ApiError, Protocol};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use nimbus_images::ImageError;
use serde_json::json;
use std::collections::HashMap;
use tokio::io::AsyncWriteExt;

pub async fn import(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    match run(state, ctx, query, body).await {
        Ok(r) => r,
        Err(e) => e.render(Protocol::RestJson),
    }
}

async fn run(
    state: AppState,
    ctx: RequestContext,
    query: HashMap<String, String>,
    body: Body,
) -> Result<Response, ApiError> {
    let tag = query.get("tag").filter(|t| !t.is_empty()).cloned();
    let temp = state.images.upload_dir().join(format!("import-{}.tar", uuid::Uuid::new_v4().simple()));
    let written = write_body(&temp, body).await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(ApiError::new(400, "ValidationException", format!("reading the archive: {e}")));
    }
    let (images, ecr, path) = (state.images.clone(), state.ecr.clone(), temp.clone());
    let result =
        tokio::task::spawn_blocking(move || -> Result<Vec<nimbus_images::ImportedImage>, ApiError> {
            let imported = images.import(&path, tag.as_deref()).map_err(import_error)?;
            for img in &imported {
                ecr.ensure_repository(&ctx.scope, &img.repository)?;
            }
            for repo in
                imported.iter().map(|i| i.repository.as_str()).collect::<std::collections::BTreeSet<_>>()
            {
                ecr.after_push(repo);
            }
            Ok(imported)
        })
        .await
        .map_err(|e| ApiError::new(500, "ServiceException", e.to_string()));
    let _ = tokio::fs::remove_file(&temp).await;
    let imported = result??;
    let list: Vec<_> = imported
        .iter()
        .map(|i| json!({"repository": i.repository, "tag": i.tag, "digest": i.digest}))
        .collect();
    Ok((StatusCode::OK, axum::Json(json!({"images": list}))).into_response())
}

async fn write_body(path: &std::path::Path, body: Body) -> std::io::Result<()> {
    let file = tokio::fs::File::create(path).await?;
    let mut w = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(std::io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            w.write_all(&data).await?;
        }
    }
    w.flush().await
}

fn import_error(e: ImageError) -> ApiError {
    match e {
        ImageError::Io(io) => ApiError::new(500, "ServiceException", io.to_string()),
        ImageError::Store(s) => s.into(),
        other => ApiError::new(400, "ValidationException", other.to_string()),
    }
}
