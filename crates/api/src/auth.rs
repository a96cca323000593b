//! Who is calling: the SigV4 credential scope gives account and region; `strict` mode
//! verifies the signature against configured keys.
use crate::error::{ApiError, Protocol};
use crate::{AppState, sigv4};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use nimbus_model::Scope;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Any credentials, or none, are accepted (like LocalStack): users' real keys just work.
    Dev,
    /// Only configured keys, with valid signatures.
    Strict,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// access key id → secret access key
    pub keys: HashMap<String, String>,
    /// The secret of the credentials Nimbus gives functions: any 12-digit access key id
    /// (an account) with this secret is accepted, so functions can call the platform.
    pub function_secret: String,
}

impl AuthConfig {
    fn secret_for(&self, access_key: &str) -> Option<&str> {
        self.keys.get(access_key).map(String::as_str).or_else(|| {
            (access_key.len() == 12 && access_key.chars().all(|c| c.is_ascii_digit()))
                .then_some(self.function_secret.as_str())
        })
    }
}

/// The caller, as every handler sees it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub scope: Scope,
    pub access_key: Option<String>,
    pub request_id: String,
}

/// A 12-digit access key id names its account (handy for multi-account tests);
/// anything else acts in the default account.
fn account_for(access_key: &str) -> String {
    if access_key.len() == 12 && access_key.chars().all(|c| c.is_ascii_digit()) {
        access_key.to_string()
    } else {
        nimbus_model::arn::DEFAULT_ACCOUNT.to_string()
    }
}

fn forbidden(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(403, code, msg)
}

/// Middleware: authenticate, attach a `RequestContext`, stamp `x-amzn-RequestId`.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let protocol =
        if req.headers().contains_key("x-amz-target") { Protocol::Json } else { Protocol::RestJson };
    // Request ids need uniqueness, not secrecy: a fast PRNG avoids a getrandom syscall per request.
    let request_id =
        uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid().to_string();
    let req = match identify(&state, req, request_id.clone()).await {
        Ok(req) => req,
        Err(e) => return stamp(e.render(protocol), &request_id),
    };
    stamp(next.run(req).await, &request_id)
}

fn stamp(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().entry("x-amzn-requestid").or_insert(v);
    }
    resp
}

async fn identify(state: &AppState, req: Request, request_id: String) -> Result<Request, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    let parsed = match sigv4::parse(req.headers(), &query) {
        Ok(p) => p,
        Err(e) if state.auth.mode == AuthMode::Dev => {
            tracing::debug!("ignoring unparseable credentials in dev mode: {e}");
            None
        }
        Err(e) => return Err(forbidden("IncompleteSignatureException", e.to_string())),
    };
    // Health checks and the code download links are not AWS APIs.
    let path = req.uri().path();
    let public = path == "/_nimbus/health" || path.starts_with("/_nimbus/code/");
    let mut req = req;
    if state.auth.mode == AuthMode::Strict && !public {
        let Some(auth) = parsed.as_ref() else {
            return Err(forbidden("MissingAuthenticationTokenException", "Missing Authentication Token"));
        };
        let Some(secret) = state.auth.secret_for(&auth.credential.access_key_id) else {
            return Err(forbidden(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ));
        };
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 80 * 1024 * 1024)
            .await
            .map_err(|_| ApiError::new(413, "RequestTooLargeException", "Request body too large"))?;
        let raw_path = parts.uri.path().to_string();
        sigv4::verify(
            auth,
            parts.method.as_str(),
            &raw_path,
            &query,
            &parts.headers,
            &bytes,
            secret,
            chrono::Utc::now(),
        )
        .map_err(|e| match e {
            sigv4::SigV4Error::Incomplete(m) => forbidden("IncompleteSignatureException", m),
            sigv4::SigV4Error::Missing => {
                forbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
            }
            other => forbidden("InvalidSignatureException", other.to_string()),
        })?;
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let scope = match &parsed {
        Some(a) => Scope::new(account_for(&a.credential.access_key_id), a.credential.region.clone()),
        None => Scope::default(),
    };
    let ctx = RequestContext { scope, access_key: parsed.map(|a| a.credential.access_key_id), request_id };
    req.extensions_mut().insert(ctx);
    Ok(req)
}
