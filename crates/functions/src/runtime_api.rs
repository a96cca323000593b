//! The Lambda Runtime API (2018-06-01), served to each execution environment on its own
//! loopback port, so a long-polling `next` always knows which environment is asking.
use crate::environment::{EnvShared, Invocation, Outcome};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nimbus_model::limits::SYNC_PAYLOAD_BYTES;
use std::sync::Arc;
use tokio::net::TcpListener;

pub(crate) fn router(env: Arc<EnvShared>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(env)
}

/// Serves `router` on `listener` until the returned task is aborted; connections are
/// owned by the task, so aborting it also ends a pending `next` long poll.
pub(crate) fn serve(listener: TcpListener, router: Router) -> tokio::task::JoinHandle<()> {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let svc = TowerToHyperService::new(router.clone());
            conns.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
            // Reap finished connections so the set does not grow.
            while conns.try_join_next().is_some() {}
        }
    })
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

async fn next(State(env): State<Arc<EnvShared>>) -> Response {
    env.runtime_ready();
    let inv: Invocation = {
        let mut queue = env.queue.lock().await;
        env.waiting_for_next(true);
        let got = queue.recv().await;
        env.waiting_for_next(false);
        match got {
            Some(inv) => inv,
            // The environment is being destroyed: never answer (lambda_runtime panics on
            // a non-200 `next`); the connection is dropped with the environment.
            None => std::future::pending().await,
        }
    };
    let mut headers = HeaderMap::new();
    let put = |h: &mut HeaderMap, k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put(&mut headers, "lambda-runtime-aws-request-id", &inv.request_id);
    put(&mut headers, "lambda-runtime-deadline-ms", &inv.deadline_ms.to_string());
    put(&mut headers, "lambda-runtime-invoked-function-arn", &inv.function_arn);
    put(&mut headers, "lambda-runtime-trace-id", &inv.trace_id);
    if let Some(cc) = &inv.client_context {
        put(&mut headers, "lambda-runtime-client-context", cc);
    }
    put(&mut headers, "content-type", "application/json");
    (StatusCode::OK, headers, inv.payload).into_response()
}

async fn response(State(env): State<Arc<EnvShared>>, Path(id): Path<String>, body: Bytes) -> Response {
    if body.len() > SYNC_PAYLOAD_BYTES {
        let outcome = Outcome::Error {
            body: Bytes::from(format!(
                "{{\"errorMessage\":\"Response payload size ({} bytes) exceeded maximum allowed payload size ({SYNC_PAYLOAD_BYTES} bytes).\",\"errorType\":\"Function.ResponseSizeTooLarge\"}}",
                body.len()
            )),
        };
        env.complete(&id, outcome);
        return json(
            StatusCode::PAYLOAD_TOO_LARGE,
            r#"{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).","errorType":"RequestEntityTooLarge"}"#,
        );
    }
    if env.complete(&id, Outcome::Response(body)) {
        json(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
    } else {
        json(
            StatusCode::BAD_REQUEST,
            r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
        )
    }
}

/// Normalises what a runtime posted as an error into Lambda's
/// `{errorMessage, errorType, stackTrace}` (runtimes may post anything).
fn error_body(body: Bytes, headers: &HeaderMap) -> Bytes {
    if serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_object()) {
        return body;
    }
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled");
    Bytes::from(
        serde_json::json!({"errorMessage": String::from_utf8_lossy(&body), "errorType": error_type})
            .to_string(),
    )
}

async fn error(
    State(env): State<Arc<EnvShared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if env.complete(&id, Outcome::Error { body: error_body(body, &headers) }) {
        json(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
    } else {
        json(
            StatusCode::BAD_REQUEST,
            r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
        )
    }
}

async fn init_error(State(env): State<Arc<EnvShared>>, headers: HeaderMap, body: Bytes) -> Response {
    env.init_failed(error_body(body, &headers));
    json(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}
