//! The one dispatcher for every JSON-1.0/1.1 service: `X-Amz-Target: Prefix.Operation`
//! picks the service and operation; services only map typed input to typed output.
use crate::auth::RequestContext;
use crate::error::{ApiError, Protocol};
use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A JSON-protocol AWS service (Logs, ECS, Step Functions, EventBridge, ECR…).
pub trait JsonService: Send + Sync {
    /// The part of `X-Amz-Target` before the dot, e.g. `Logs_20140328`.
    fn target_prefix(&self) -> &'static str;
    fn call<'a>(
        &'a self,
        ctx: &'a RequestContext,
        operation: &'a str,
        input: Bytes,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;
}

pub struct Dispatcher {
    services: HashMap<&'static str, Arc<dyn JsonService>>,
}

impl Dispatcher {
    pub fn new(services: Vec<Arc<dyn JsonService>>) -> Dispatcher {
        Dispatcher { services: services.into_iter().map(|s| (s.target_prefix(), s)).collect() }
    }
}

/// Parses an operation's input; malformed JSON is AWS's `SerializationException`.
pub fn parse<T: DeserializeOwned>(input: &[u8]) -> Result<T, ApiError> {
    let input = if input.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { input };
    serde_json::from_slice(input).map_err(|e| {
        if e.is_data() {
            ApiError::validation(format!("1 validation error detected: {e}"))
        } else {
            ApiError::new(400, "SerializationException", format!("Could not parse request body: {e}"))
        }
    })
}

pub fn unknown_operation(target: &str) -> ApiError {
    ApiError::new(400, "UnknownOperationException", format!("Unknown operation {target}"))
}

pub async fn dispatch(
    Extension(dispatcher): Extension<Arc<Dispatcher>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) else {
        return ApiError::new(404, "UnknownOperationException", "Missing X-Amz-Target")
            .render(Protocol::Json);
    };
    let Some((prefix, operation)) = target.split_once('.') else {
        return unknown_operation(target).render(Protocol::Json);
    };
    let Some(service) = dispatcher.services.get(prefix) else {
        return unknown_operation(target).render(Protocol::Json);
    };
    let content_type = match headers.get("content-type").and_then(|v| v.to_str().ok()) {
        Some(ct) if ct.starts_with("application/x-amz-json-1.0") => "application/x-amz-json-1.0",
        _ => "application/x-amz-json-1.1",
    };
    match service.call(&ctx, operation, body).await {
        Ok(v) => (StatusCode::OK, [("content-type", content_type)], v.to_string()).into_response(),
        Err(e) => e.render(Protocol::Json),
    }
}
