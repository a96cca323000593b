//! Amazon States Language (Step Functions) for Nimbus: definition validation like
//! CreateStateMachine, JSONPath/intrinsic data flow, and a pure, serialisable interpreter
//! that a durable engine drives (no I/O, no clock: tasks and time come from the caller).
//!
//! * [`StateMachine::parse`] validates a definition like CreateStateMachine and returns
//!   AWS-worded diagnostics ([`DefinitionError`]). JSONata (`QueryLanguage: JSONata`) is
//!   refused with the non-AWS code `UNSUPPORTED_FEATURE`.
//! * [`Execution`] runs one execution as pure data: [`Execution::start`] and
//!   [`Execution::advance`] return [`Step`]s of [`Action`]s for the engine (invoke a task,
//!   arm a timer, report success/failure) and [`HistoryEvent`]s named as
//!   GetExecutionHistory names them. The execution serialises with serde, so an engine
//!   can persist it after every step and resume after a crash.
//!
//! ```
//! use nimbus_workflows::{Action, Event, Execution, ExecutionContext, StateMachine};
//! use serde_json::json;
//!
//! let machine = StateMachine::parse(r#"{
//!   "StartAt": "Greet",
//!   "States": {
//!     "Greet": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
//!               "Parameters": {"name.$": "$.who"}, "ResultPath": "$.greeting", "End": true}
//!   }
//! }"#).unwrap();
//! let now = chrono::Utc::now();
//! let context = ExecutionContext {
//!     execution_arn: "arn:aws:states:us-east-1:123456789012:execution:hello:1".into(),
//!     execution_name: "1".into(),
//!     state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:hello".into(),
//!     state_machine_name: "hello".into(),
//!     role_arn: "arn:aws:iam::123456789012:role/sfn".into(),
//!     start_time: now,
//!     seed: 7,
//! };
//! let mut execution = Execution::new(&machine, json!({"who": "Ada"}), context);
//! let step = execution.start(&machine).unwrap();
//! let Action::InvokeTask { task_id, input, .. } = &step.actions[0] else { unreachable!() };
//! assert_eq!(input, &json!({"name": "Ada"}));
//!
//! let event = Event::TaskSucceeded { task_id: *task_id, output: json!("Hello, Ada") };
//! let step = execution.advance(&machine, now, event).unwrap();
//! assert_eq!(step.actions, vec![Action::Succeed { output: json!({"who": "Ada", "greeting": "Hello, Ada"}) }]);
//! ```
#![forbid(unsafe_code)]

pub mod choice;
pub mod definition;
mod digest;
pub mod error;
pub mod execution;
pub mod history;
pub mod intrinsics;
pub mod jsonpath;
mod strict_json;
pub mod template;
mod timestamp;
mod validate;

/// ASL error names the interpreter raises.
pub mod errors {
    /// Matches every error except `States.Runtime` and `States.DataLimitExceeded`.
    pub const ALL: &str = "States.ALL";
    /// Matches every task error except `States.Timeout`.
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    /// Data-flow failures; not matched by `States.ALL`, so they always fail the execution.
    pub const RUNTIME: &str = "States.Runtime";
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    pub const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";
}

pub use definition::StateMachine;
pub use error::{DefinitionError, Diagnostic, EvalError, ExecutionError};
pub use execution::{Action, Event, Execution, ExecutionContext, ExecutionStatus, Step};
pub use history::HistoryEvent;
