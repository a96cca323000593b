//! The Lambda engine: functions and their code, execution environments (cold start,
//! warm reuse, freeze/thaw, reaping), the per-environment Runtime API, invoke paths,
//! concurrency limits and Lambda-format logs. Takes typed requests; knows no AWS wire.
#![forbid(unsafe_code)]

mod async_queue;
pub mod code;
mod destinations;
mod engine;
mod environment;
mod image;
mod layers;
mod logpipe;
pub mod python_sdk;
pub use layers::PublishLayer;
mod runtime_api;
mod urls;
mod usage;

pub use async_queue::{EventInvokeConfig, EventInvokeConfigInput};
pub use destinations::{DestinationSink, SinkAttribute};
pub use engine::{Config, FunctionsEngine, Interpreter, ProvisionedState};
pub use usage::{InvocationUsage, UsageSink};
pub use image::{ImageDefaults, ImageResolver, ImageSourceError, split_env as split_image_env};

use bytes::Bytes;
use nimbus_model::{Scope, ValidationError};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    ProvisionedConfigNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{message}")]
    TooManyRequests { reason: &'static str, message: String },
    #[error("{0}")]
    RequestTooLarge(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("store: {0}")]
    Store(#[from] nimbus_store::StoreError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// CreateFunction, typed.
#[derive(Debug, Clone, Default)]
pub struct CreateFunction {
    pub name: String,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: String,
    pub zip: Vec<u8>,
    pub description: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_secs: Option<u32>,
    pub environment: Option<BTreeMap<String, String>>,
    pub ephemeral_storage_mb: Option<u32>,
    pub architectures: Option<Vec<String>>,
    pub package_type: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub layers: Vec<String>,
    /// `DeadLetterConfig.TargetArn` (an SQS queue).
    pub dead_letter_target_arn: Option<String>,
    /// `Code.ImageUri` (`PackageType=Image`).
    pub image_uri: Option<String>,
    /// `ImageConfig`: overrides of the image's ENTRYPOINT, CMD and WORKDIR.
    pub image_config: Option<ImageConfigInput>,
}

/// `ImageConfig` of CreateFunction / UpdateFunctionConfiguration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfigInput {
    pub entry_point: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub working_directory: Option<String>,
}

/// UpdateFunctionConfiguration: only the fields given change.
#[derive(Debug, Clone, Default)]
pub struct UpdateConfiguration {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub role: Option<String>,
    pub description: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_secs: Option<u32>,
    pub environment: Option<BTreeMap<String, String>>,
    pub ephemeral_storage_mb: Option<u32>,
    pub layers: Option<Vec<String>>,
    /// `Some("")` removes the dead-letter queue.
    pub dead_letter_target_arn: Option<String>,
    pub revision_id: Option<String>,
    /// Image functions: replaces the `ImageConfig` overrides.
    pub image_config: Option<ImageConfigInput>,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateCode {
    pub zip: Vec<u8>,
    /// Image functions: the new `ImageUri`.
    pub image_uri: Option<String>,
    pub revision_id: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

#[derive(Debug, Clone)]
pub struct InvokeRequest {
    pub scope: Scope,
    /// Also the invoke response's `x-amzn-RequestId`, as on AWS.
    pub request_id: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Bytes,
    pub invocation_type: InvocationType,
    pub tail_log: bool,
    pub client_context: Option<String>,
}

/// What an invoke produced. `status` is the HTTP status Lambda answers with.
#[derive(Debug, Clone)]
pub struct InvokeResult {
    pub status: u16,
    pub payload: Bytes,
    /// `Unhandled` when the function failed.
    pub function_error: Option<&'static str>,
    /// The last 4 KB of the invocation's log, when asked for.
    pub log_tail: Option<String>,
    pub executed_version: String,
}

/// One page of ListFunctions.
#[derive(Debug, Clone)]
pub struct FunctionPage {
    pub functions: Vec<std::sync::Arc<nimbus_model::FunctionConfig>>,
    pub next_marker: Option<String>,
}
