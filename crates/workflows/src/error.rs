//! Error types: definition diagnostics (CreateStateMachine's `InvalidDefinition`) and
//! the failures of evaluating paths, templates and intrinsic functions at run time.

use std::fmt;

/// One problem found in a state machine definition, in the shape AWS reports it:
/// `CODE: message at /json/pointer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// AWS's diagnostic code, e.g. `SCHEMA_VALIDATION_FAILED`, `MISSING_TRANSITION_TARGET`.
    pub code: &'static str,
    /// Human-readable reason.
    pub message: String,
    /// Where in the definition, as AWS prints it (`/States/A/Next`); `None` for
    /// whole-definition problems such as `MISSING_END_STATE`.
    pub location: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(at) => write!(f, "{}: {} at {}", self.code, self.message, at),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

/// Diagnostic codes, named as AWS names them.
pub mod codes {
    /// The definition is not (strict) JSON.
    pub const INVALID_JSON_DESCRIPTION: &str = "INVALID_JSON_DESCRIPTION";
    /// A field is missing, unknown, of the wrong type or out of range.
    pub const SCHEMA_VALIDATION_FAILED: &str = "SCHEMA_VALIDATION_FAILED";
    /// A `Next`/`Default`/`StartAt` names no state in scope, or a state is unreachable.
    pub const MISSING_TRANSITION_TARGET: &str = "MISSING_TRANSITION_TARGET";
    /// A scope (the machine, a branch, an item processor) has no terminal state.
    pub const MISSING_END_STATE: &str = "MISSING_END_STATE";
    /// Two states share a name somewhere in the machine.
    pub const DUPLICATE_STATE_NAME: &str = "DUPLICATE_STATE_NAME";
    /// Not an AWS code: a valid definition using a feature this implementation lacks
    /// (JSONata). Kept distinct so callers never mistake it for a user error.
    pub const UNSUPPORTED_FEATURE: &str = "UNSUPPORTED_FEATURE";
}

/// Why `StateMachine::parse` refused a definition. Displays like AWS's
/// `InvalidDefinition` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid State Machine Definition: '{}'", join(.diagnostics))]
pub struct DefinitionError {
    /// Every problem found, in a stable order.
    pub diagnostics: Vec<Diagnostic>,
}

fn join(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

impl DefinitionError {
    /// True when any diagnostic carries `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.diagnostics.iter().any(|d| d.code == code)
    }
}

/// A syntax error in a JSONPath or intrinsic function expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
}

impl SyntaxError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// A failure while evaluating data flow (paths, templates, intrinsic functions) during
/// an execution. Carries the ASL error name the state fails with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct EvalError {
    /// ASL error name, e.g. `States.Runtime`, `States.IntrinsicFailure`.
    pub error: String,
    /// Human-readable cause, worded like AWS's.
    pub cause: String,
}

impl EvalError {
    pub(crate) fn runtime(cause: impl Into<String>) -> Self {
        Self { error: crate::errors::RUNTIME.to_string(), cause: cause.into() }
    }
    pub(crate) fn intrinsic(cause: impl Into<String>) -> Self {
        Self { error: crate::errors::INTRINSIC_FAILURE.to_string(), cause: cause.into() }
    }
}

/// Misuse of the execution API (not a failure of the workflow itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    /// The execution was created for a different definition than the one passed in.
    #[error("the state machine does not match the one this execution was started with")]
    MachineMismatch,
    /// The execution has already finished; nothing more can happen.
    #[error("the execution has already finished")]
    Finished,
    /// `start` was called twice.
    #[error("the execution has already started")]
    AlreadyStarted,
    /// `advance` was called before `start`.
    #[error("the execution has not started")]
    NotStarted,
}
