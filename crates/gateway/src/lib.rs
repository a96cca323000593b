//! API Gateway HTTP APIs without the wire: route-key parsing and AWS's route selection,
//! Lambda proxy payloads (format 1.0 and 2.0) and their response interpretation, CORS,
//! token-bucket throttling, `$context` access-log templates, request parameter mapping,
//! authorizer results and their cache, and the durable engine for APIs, routes,
//! integrations, stages, deployments and authorizers. Function URLs reuse the payload and
//! CORS parts. No HTTP server or client lives here: `crates/api` does the I/O.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod authorizer;
pub mod cors;
mod engine;
pub mod jwt;
pub mod mapping;
mod model;
pub mod payload;
pub mod routing;
pub mod throttle;

pub use engine::{
    GatewayEngine, Live, MAX_TIMEOUT_MS, Served, elb_target_group_of, lambda_function_of, page,
};
pub use model::*;

/// What can go wrong in the gateway's control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `resource` is AWS's `ResourceType` member (`Api`, `Route`, …).
    #[error("{message}")]
    NotFound { resource: &'static str, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] nimbus_store::StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn not_found(resource: &'static str, id: &str) -> Error {
        let what = match resource {
            "Api" => "API",
            other => other,
        };
        Error::NotFound { resource, message: format!("Invalid {what} identifier specified {id}") }
    }
}
