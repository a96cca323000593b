//! The Step Functions engine: durable state machines and executions over the `Store`,
//! driving the pure `nimbus-workflows` interpreter with real tasks (Lambda through the
//! [`TaskInvoker`] the binary provides, ECS tasks through the same trait, nested executions
//! in-engine) and real time.
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

/// One `arn:aws:states:::ecs:runTask[.sync|.waitForTaskToken]` a Task state asks for.
#[derive(Debug, Clone)]
pub struct EcsRunTask {
    pub account: String,
    pub region: String,
    /// The state's resolved Parameters: RunTask's request as Step Functions writes it
    /// (PascalCase); the implementor maps it onto the ECS API.
    pub parameters: serde_json::Value,
    /// Stable for one attempt of one task state of one execution: a resumed execution
    /// re-issuing the task must get the task(s) it already started, not new ones.
    pub idempotency_key: String,
    /// `.sync`: answer only once every started task is STOPPED — with the task's
    /// description when every essential container exited 0, `States.TaskFailed` otherwise.
    /// Without it: RunTask's response.
    pub wait: bool,
}

/// How the engine reaches compute outside itself; the binary implements it (Lambda via
/// the functions engine, ECS via the containers engine). Batch plugs in here once it exists.
pub trait TaskInvoker: Send + Sync + 'static {
    fn invoke_lambda(
        &self,
        invocation: LambdaInvocation,
    ) -> BoxFuture<'static, Result<LambdaOutcome, TaskFailure>>;

    /// `ecs:runTask`. The default is for builds (and tests) without ECS.
    fn run_ecs_task(&self, _run: EcsRunTask) -> BoxFuture<'static, Result<serde_json::Value, TaskFailure>> {
        Box::pin(async {
            Err(TaskFailure {
                error: "States.TaskFailed".into(),
                cause: "ECS is not available in this Nimbus build".into(),
            })
        })
    }

    /// Best-effort StopTask for the task(s) started under `idempotency_key`: a `.sync`
    /// ECS task whose execution ended (stopped, timed out) is stopped too, as on AWS.
    fn stop_ecs_task(
        &self,
        _account: String,
        _region: String,
        _idempotency_key: String,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
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
