//! The validated, typed form of a state machine definition.

use crate::choice::ChoiceRule;
use crate::error::DefinitionError;
use crate::intrinsics::Call;
use crate::jsonpath::JsonPath;
use crate::template::Template;
use chrono::{DateTime, FixedOffset};
use serde_json::Value;
use sha2::Digest as _;
use std::collections::BTreeMap;

/// A parsed and validated state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachine {
    pub comment: Option<String>,
    /// Top-level `TimeoutSeconds`: the engine enforces it and reports `Event::TimedOut`.
    pub timeout_seconds: Option<u64>,
    pub version: Option<String>,
    /// The top-level states and `StartAt`.
    pub root: Branch,
    definition: String,
    fingerprint: String,
}

/// A set of states with a start: the machine itself, a Parallel branch or a Map's item
/// processor. Transitions never leave a branch.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub comment: Option<String>,
    pub start_at: String,
    pub states: BTreeMap<String, State>,
}

/// One state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub name: String,
    pub comment: Option<String>,
    pub kind: StateKind,
    /// Where to go after success (`None` for Choice, Succeed and Fail).
    pub transition: Option<Transition>,
    pub io: Io,
    /// JSONPath-mode workflow variables to set on leaving the state.
    pub assign: Option<Template>,
}

/// `Next` or `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Next(String),
    End,
}

/// Input/output processing fields. A `None` path means the field was JSON `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct Io {
    /// Default `$`; `None` (null) means the effective input is `{}`.
    pub input_path: Option<JsonPath>,
    /// Default `$`; `None` (null) means the output is `{}`.
    pub output_path: Option<JsonPath>,
    /// Default `$`; `None` (null) discards the result (output = input).
    pub result_path: Option<JsonPath>,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
}

/// A number given literally or read from the input with a `...Path` field.
#[derive(Debug, Clone, PartialEq)]
pub enum NumberSource {
    Literal(f64),
    Path(JsonPath),
}

/// The type-specific part of a state.
#[derive(Debug, Clone, PartialEq)]
pub enum StateKind {
    Pass { result: Option<Value> },
    Task(Box<TaskState>),
    Choice(ChoiceState),
    Wait(WaitFor),
    Succeed,
    Fail(FailState),
    Parallel(ParallelState),
    Map(Box<MapState>),
}

impl StateKind {
    /// The `Type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            StateKind::Pass { .. } => "Pass",
            StateKind::Task(_) => "Task",
            StateKind::Choice(_) => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed => "Succeed",
            StateKind::Fail(_) => "Fail",
            StateKind::Parallel(_) => "Parallel",
            StateKind::Map(_) => "Map",
        }
    }
}

/// Task state fields.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub resource: String,
    pub timeout_seconds: Option<NumberSource>,
    pub heartbeat_seconds: Option<NumberSource>,
    pub credentials: Option<Template>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

/// Choice state fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceState {
    pub choices: Vec<ChoiceRule>,
    pub default: Option<String>,
}

/// How long a Wait state waits.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    Seconds(u64),
    Timestamp(DateTime<FixedOffset>),
    SecondsPath(JsonPath),
    TimestampPath(JsonPath),
}

/// Where a Fail state's error or cause comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TextSource {
    Literal(String),
    Path(JsonPath),
    Call(Box<Call>),
}

/// Fail state fields.
#[derive(Debug, Clone, PartialEq)]
pub struct FailState {
    pub error: Option<TextSource>,
    pub cause: Option<TextSource>,
}

/// Parallel state fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelState {
    pub branches: Vec<Branch>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

/// Map processing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    Inline,
    Distributed,
}

/// Map state fields.
#[derive(Debug, Clone, PartialEq)]
pub struct MapState {
    pub processor: Branch,
    pub mode: MapMode,
    /// Default `$`.
    pub items_path: JsonPath,
    /// `ItemSelector`, or the legacy `Parameters` of a Map state.
    pub item_selector: Option<Template>,
    pub max_concurrency: Option<NumberSource>,
    pub tolerated_failure_percentage: Option<NumberSource>,
    pub tolerated_failure_count: Option<NumberSource>,
    /// Distributed-map configuration, validated but not run by this crate.
    pub item_reader: Option<Value>,
    pub item_batcher: Option<Value>,
    pub result_writer: Option<Value>,
    pub label: Option<String>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

/// `JitterStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    None,
    Full,
}

/// One `Retry` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: u64,
    pub max_attempts: u64,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<u64>,
    pub jitter: Jitter,
}

/// One `Catch` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    /// Default `$`; `None` (null) keeps the state input as the output.
    pub result_path: Option<JsonPath>,
    pub assign: Option<Template>,
}

impl StateMachine {
    /// Parses and validates a definition the way CreateStateMachine does.
    pub fn parse(definition: &str) -> Result<StateMachine, DefinitionError> {
        let parts = crate::validate::validate(definition)?;
        let fingerprint = crate::digest::hex(&sha2::Sha256::digest(definition.as_bytes()));
        Ok(StateMachine {
            comment: parts.comment,
            timeout_seconds: parts.timeout_seconds,
            version: parts.version,
            root: parts.root,
            definition: definition.to_string(),
            fingerprint,
        })
    }

    /// The definition text this machine was parsed from.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    /// SHA-256 of the definition: executions remember it to refuse a different machine.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Finds the branch a scope path leads to.
    pub(crate) fn branch(&self, scope: &[ScopeStep]) -> Option<&Branch> {
        let mut branch = &self.root;
        for step in scope {
            let state = branch.states.get(&step.state)?;
            branch = match (&state.kind, step.branch) {
                (StateKind::Parallel(p), Some(i)) => p.branches.get(i)?,
                (StateKind::Map(m), None) => &m.processor,
                _ => return None,
            };
        }
        Some(branch)
    }
}

/// One step from a branch into a nested one: a Parallel state's branch `i`, or a Map
/// state's item processor (`branch: None`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScopeStep {
    pub state: String,
    pub branch: Option<usize>,
}

impl Retrier {
    /// Defaults from the spec: 1 s interval, 3 attempts, back-off 2.0.
    pub(crate) fn defaults(error_equals: Vec<String>) -> Retrier {
        Retrier {
            error_equals,
            interval_seconds: 1,
            max_attempts: 3,
            backoff_rate: 2.0,
            max_delay_seconds: None,
            jitter: Jitter::None,
        }
    }
}
