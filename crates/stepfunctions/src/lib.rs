//! The Step Functions engine: durable state machines and executions over the `Store`,
//! driving the pure `nimbus-workflows` interpreter with real tasks (Lambda through the
//! [`TaskInvoker`] the binary provides, nested executions in-engine) and real time.
//!
//! Standard executions are durable: every batch of interpreter events is persisted (the
//! execution's state and its new history events) before the resulting actions are
//! performed, and [`StepFunctionsEngine::open`] resumes RUNNING executions by re-issuing
//! only what was still outstanding. Express executions run in memory.
#![forbid(unsafe_code)]

mod driver;
mod engine;
mod names;
mod tasks;

pub use engine::StepFunctionsEngine;

use chrono::{DateTime, Utc};
use nimbus_workflows::{ExecutionStatus, HistoryEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One Lambda invocation a Task state asks for.
#[derive(Debug, Clone)]
pub struct LambdaInvocation {
    pub account: String,
    pub region: String,
    /// A function name, partial or full ARN (possibly qualified).
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: bytes::Bytes,
    /// `InvocationType: Event` (asynchronous).
    pub asynchronous: bool,
}

/// What the function answered.
#[derive(Debug, Clone)]
pub struct LambdaOutcome {
    pub status: u16,
    pub payload: bytes::Bytes,
    /// Set (e.g. `Unhandled`) when the function failed.
    pub function_error: Option<String>,
    pub executed_version: String,
    pub request_id: String,
}

/// A task that could not run: `error` is the ASL error name Retry/Catch match on
/// (e.g. `Lambda.ResourceNotFoundException`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
}

/// How the engine reaches compute outside itself; the binary implements it (Lambda via
/// the functions engine). ECS and Batch targets plug in here once they exist.
pub trait TaskInvoker: Send + Sync + 'static {
    fn invoke_lambda(
        &self,
        invocation: LambdaInvocation,
    ) -> BoxFuture<'static, Result<LambdaOutcome, TaskFailure>>;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidDefinition(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidArn(String),
    #[error("{0}")]
    InvalidExecutionInput(String),
    #[error("{0}")]
    InvalidOutput(String),
    #[error("{0}")]
    InvalidToken(String),
    #[error("{0}")]
    InvalidLoggingConfiguration(String),
    #[error("{0}")]
    StateMachineAlreadyExists(String),
    #[error("{0}")]
    StateMachineDoesNotExist(String),
    #[error("{0}")]
    StateMachineTypeNotSupported(String),
    #[error("{0}")]
    ExecutionDoesNotExist(String),
    #[error("{0}")]
    ExecutionAlreadyExists(String),
    #[error("{0}")]
    TaskDoesNotExist(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    TooManyTags(String),
    #[error("{0}")]
    Validation(String),
    #[error(transparent)]
    Store(#[from] nimbus_store::StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateMachineType {
    #[serde(rename = "STANDARD")]
    Standard,
    #[serde(rename = "EXPRESS")]
    Express,
}

impl StateMachineType {
    pub fn as_str(self) -> &'static str {
        match self {
            StateMachineType::Standard => "STANDARD",
            StateMachineType::Express => "EXPRESS",
        }
    }
}

/// `loggingConfiguration`, kept as given (Nimbus does not ship execution logs yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoggingConfiguration {
    /// `ALL`, `ERROR`, `FATAL` or `OFF`.
    pub level: String,
    pub include_execution_data: bool,
    /// CloudWatch Logs log group ARNs.
    pub destinations: Vec<String>,
}

/// A state machine as DescribeStateMachine reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateMachineInfo {
    pub arn: String,
    pub name: String,
    pub definition: String,
    pub role_arn: String,
    pub machine_type: StateMachineType,
    pub creation_date: DateTime<Utc>,
    pub update_date: Option<DateTime<Utc>>,
    /// Changes on every UpdateStateMachine.
    pub revision_id: String,
    pub logging: LoggingConfiguration,
    pub tracing_enabled: bool,
    pub description: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// CreateStateMachine's input.
#[derive(Debug, Clone)]
pub struct CreateStateMachine {
    pub account: String,
    pub region: String,
    pub name: String,
    pub definition: String,
    pub role_arn: String,
    pub machine_type: StateMachineType,
    pub logging: Option<LoggingConfiguration>,
    pub tracing_enabled: bool,
    pub tags: Vec<(String, String)>,
}

/// UpdateStateMachine's input: `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct UpdateStateMachine {
    pub arn: String,
    pub definition: Option<String>,
    pub role_arn: Option<String>,
    pub logging: Option<LoggingConfiguration>,
    pub tracing_enabled: Option<bool>,
}

/// StartExecution's input.
#[derive(Debug, Clone)]
pub struct StartExecution {
    pub state_machine_arn: String,
    /// Generated (a UUID) when absent.
    pub name: Option<String>,
    /// JSON text; `{}` when absent.
    pub input: Option<String>,
}

/// An execution as DescribeExecution reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionInfo {
    pub arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub status: ExecutionStatus,
    pub start_date: DateTime<Utc>,
    pub stop_date: Option<DateTime<Utc>>,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// What StartSyncExecution returns: the finished execution and what it was billed.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncExecutionResult {
    pub execution: ExecutionInfo,
    pub billed_duration_ms: u64,
    pub billed_memory_mb: u64,
}

/// One page of a listing; `next` is an opaque continuation token.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// GetExecutionHistory's input.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub execution_arn: String,
    pub max_results: Option<usize>,
    pub reverse_order: bool,
    pub next_token: Option<String>,
}

/// The state machine definition an execution runs (DescribeStateMachineForExecution).
#[derive(Debug, Clone, PartialEq)]
pub struct MachineForExecution {
    pub state_machine_arn: String,
    pub name: String,
    pub definition: String,
    pub role_arn: String,
    pub update_date: DateTime<Utc>,
    pub revision_id: String,
    pub logging: LoggingConfiguration,
    pub tracing_enabled: bool,
}

pub use nimbus_workflows::ExecutionStatus as Status;

/// Re-exported so callers can render history without depending on the interpreter.
pub type History = Vec<HistoryEvent>;
