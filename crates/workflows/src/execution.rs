//! The interpreter: a pure, serialisable state machine over one execution.
//!
//! The engine that drives it owns time and side effects. It calls [`Execution::start`],
//! performs the returned [`Action`]s (invoke a task, arm a timer), and feeds outcomes
//! back as [`Event`]s through [`Execution::advance`], passing the current time each
//! time. Between calls the [`Execution`] can be serialised (serde) and resumed after a
//! crash; [`Execution::outstanding`] lists the tasks and timers still owed, so nothing
//! that completed is run again. Parallel branches and Map iterations run as "frames"
//! inside the one execution, so several tasks can be outstanding at once.

use crate::definition::*;
use crate::error::{EvalError, ExecutionError};
use crate::errors;
use crate::history::{HistoryEvent, TaskFamily, payload, resource_parts};
use crate::intrinsics::{Entropy, splitmix64};
use crate::jsonpath::{JsonPath, Scope};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};

/// Who and what this execution is: the `$$.Execution` / `$$.StateMachine` context, and
/// the seed of its (persisted, deterministic) random numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionContext {
    pub execution_arn: String,
    pub execution_name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub role_arn: String,
    #[serde(with = "crate::timestamp")]
    pub start_time: DateTime<Utc>,
    /// Seeds `States.MathRandom`, `States.UUID`, retry jitter and task tokens.
    pub seed: u64,
}

/// Something the engine must do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Run a task and report `TaskSucceeded`/`TaskFailed`/`TaskTimedOut` for `task_id`.
    /// The engine enforces `timeout_seconds` and `heartbeat_seconds`.
    InvokeTask {
        task_id: u64,
        /// The Task state's name.
        state: String,
        resource: String,
        input: Value,
        credentials: Option<Value>,
        timeout_seconds: Option<u64>,
        heartbeat_seconds: Option<u64>,
        /// Set for `.waitForTaskToken` resources: the token `SendTaskSuccess` will quote.
        task_token: Option<String>,
        /// 0 for the first try, then 1, 2, … for retries.
        attempt: u64,
    },
    /// Report `TimerFired { timer_id }` at (or after) `until`: a Wait state or a retry
    /// back-off.
    Wait {
        timer_id: u64,
        #[serde(with = "crate::timestamp")]
        until: DateTime<Utc>,
    },
    /// The execution succeeded.
    Succeed { output: Value },
    /// The execution failed.
    Fail { error: String, cause: String },
}

/// Something that happened, reported by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// The task began running (only recorded in the history).
    TaskStarted {
        task_id: u64,
    },
    TaskSucceeded {
        task_id: u64,
        output: Value,
    },
    TaskFailed {
        task_id: u64,
        error: String,
        cause: String,
    },
    /// `heartbeat: false` → `States.Timeout`; `true` → `States.HeartbeatTimeout`.
    TaskTimedOut {
        task_id: u64,
        heartbeat: bool,
    },
    TimerFired {
        timer_id: u64,
    },
    /// StopExecution.
    Stop {
        error: Option<String>,
        cause: Option<String>,
    },
    /// The machine's `TimeoutSeconds` elapsed.
    TimedOut,
}

/// What one call produced: actions to perform and history events to record, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub actions: Vec<Action>,
    pub history: Vec<HistoryEvent>,
}

/// Execution status, as DescribeExecution names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    #[serde(rename = "RUNNING")]
    Running,
    #[serde(rename = "SUCCEEDED")]
    Succeeded,
    #[serde(rename = "FAILED")]
    Failed,
    #[serde(rename = "TIMED_OUT")]
    TimedOut,
    #[serde(rename = "ABORTED")]
    Aborted,
}

/// One execution's complete, serialisable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    fingerprint: String,
    context: ExecutionContext,
    input: Value,
    status: ExecutionStatus,
    started: bool,
    output: Option<Value>,
    error: Option<(String, String)>,
    frames: BTreeMap<u64, Frame>,
    tasks: BTreeMap<u64, PendingTask>,
    timers: BTreeMap<u64, PendingTimer>,
    next_id: u64,
    last_event_id: u64,
    rng: u64,
    /// Whether `$$.Execution.Input` can be referenced: building the context object would
    /// otherwise copy the whole execution input for every state (quadratic in a Map).
    #[serde(default = "yes")]
    context_input: bool,
}

fn yes() -> bool {
    true
}

/// Could the definition read `$$.Execution.Input`? Conservative: any `$$` reference not
/// under a context field other than the input counts.
fn reads_execution_input(definition: &str) -> bool {
    const SAFE: &[&str] = &[
        "$$.Map.",
        "$$.Task.",
        "$$.State.",
        "$$.StateMachine.",
        "$$.Execution.Id",
        "$$.Execution.Name",
        "$$.Execution.StartTime",
        "$$.Execution.RoleArn",
        "$$.Execution.RedriveCount",
    ];
    definition.match_indices("$$").any(|(at, _)| !SAFE.iter().any(|p| definition[at..].starts_with(p)))
}

/// A thread of control: the machine itself, a Parallel branch or a Map iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Frame {
    parent: Option<u64>,
    /// Branch index (Parallel) or item index (Map) in the parent.
    slot: usize,
    scope: Vec<ScopeStep>,
    state: String,
    /// The raw input of the current state.
    input: Value,
    vars: Map<String, Value>,
    phase: Phase,
    /// Attempts used per retrier of the current state.
    retries: Vec<u64>,
    #[serde(with = "crate::timestamp")]
    entered_at: DateTime<Utc>,
    /// Id of the current state's `...StateEntered` event (AWS quotes it in causes).
    entered_event: u64,
    last_event: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Phase {
    /// About to enter `state`.
    Ready,
    AwaitTask {
        task_id: u64,
    },
    /// A Wait state; `output` is what it will emit.
    AwaitWait {
        timer_id: u64,
        output: Value,
    },
    /// A retry back-off; the state's work reruns when the timer fires.
    AwaitRetry {
        timer_id: u64,
    },
    AwaitChildren(Box<Children>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Children {
    is_map: bool,
    active: usize,
    /// Map items not started yet (MaxConcurrency), with their inputs.
    pending: VecDeque<(usize, Value)>,
    results: Vec<Option<Value>>,
    failures: u64,
    max_concurrency: usize,
    tolerated_count: Option<u64>,
    tolerated_percentage: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingTask {
    frame: u64,
    action: Action,
    started: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PendingTimer {
    frame: u64,
    #[serde(with = "crate::timestamp")]
    until: DateTime<Utc>,
}

/// The persisted generator: SplitMix64 over `Execution::rng`.
struct Rng<'a>(&'a mut u64);

impl Entropy for Rng<'_> {
    fn next_u64(&mut self) -> u64 {
        let out = splitmix64(*self.0);
        *self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }
}

/// Per-call working set.
struct Run<'m> {
    machine: &'m StateMachine,
    now: DateTime<Utc>,
    step: Step,
    ready: VecDeque<u64>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Does a retrier/catcher name match an error? `States.ALL` matches everything but
/// `States.Runtime`/`States.DataLimitExceeded`; `States.TaskFailed` also excludes
/// timeouts.
pub fn error_matches(pattern: &str, error: &str) -> bool {
    if pattern == error {
        return true;
    }
    let unmatchable = error == errors::RUNTIME || error == errors::DATA_LIMIT_EXCEEDED;
    match pattern {
        errors::ALL => !unmatchable,
        errors::TASK_FAILED => !unmatchable && error != errors::TIMEOUT && error != errors::HEARTBEAT_TIMEOUT,
        _ => false,
    }
}

impl Execution {
    /// Creates an execution of `machine` with `input`. Nothing runs until [`start`](Self::start).
    pub fn new(machine: &StateMachine, input: Value, context: ExecutionContext) -> Execution {
        let rng = splitmix64(context.seed);
        Execution {
            fingerprint: machine.fingerprint().to_string(),
            context,
            input,
            status: ExecutionStatus::Running,
            started: false,
            output: None,
            error: None,
            frames: BTreeMap::new(),
            tasks: BTreeMap::new(),
            timers: BTreeMap::new(),
            next_id: 1,
            last_event_id: 0,
            rng,
            context_input: reads_execution_input(machine.definition()),
        }
    }

    pub fn status(&self) -> ExecutionStatus {
        self.status
    }

    pub fn context(&self) -> &ExecutionContext {
        &self.context
    }

    pub fn input(&self) -> &Value {
        &self.input
    }

    /// The output once `SUCCEEDED`.
    pub fn output(&self) -> Option<&Value> {
        self.output.as_ref()
    }

    /// `(error, cause)` once `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub fn error(&self) -> Option<(&str, &str)> {
        self.error.as_ref().map(|(e, c)| (e.as_str(), c.as_str()))
    }

    /// True once the execution has ended.
    pub fn is_finished(&self) -> bool {
        self.status != ExecutionStatus::Running
    }

    /// The tasks and timers the engine still owes an answer for. After resuming a
    /// persisted execution, re-issue these (task ids stay the same, so a late answer
    /// from before the crash is still accepted, and a duplicate one ignored).
    pub fn outstanding(&self) -> Vec<Action> {
        let tasks = self.tasks.values().map(|t| t.action.clone());
        let timers = self.timers.iter().map(|(id, t)| Action::Wait { timer_id: *id, until: t.until });
        tasks.chain(timers).collect()
    }

    /// Records `ExecutionStarted` and runs until the execution needs the engine.
    pub fn start(&mut self, machine: &StateMachine) -> Result<Step, ExecutionError> {
        self.check(machine)?;
        if self.started {
            return Err(ExecutionError::AlreadyStarted);
        }
        self.started = true;
        let now = self.context.start_time;
        let mut r = Run { machine, now, step: Step::default(), ready: VecDeque::new() };
        let details = json!({
            "input": payload(&self.input),
            "inputDetails": {"truncated": false},
            "roleArn": self.context.role_arn,
        });
        self.emit(None, &mut r, "ExecutionStarted", Some("executionStartedEventDetails"), details);
        let id = self.new_id();
        let frame = Frame {
            parent: None,
            slot: 0,
            scope: Vec::new(),
            state: machine.root.start_at.clone(),
            input: self.input.clone(),
            vars: Map::new(),
            phase: Phase::Ready,
            retries: Vec::new(),
            entered_at: now,
            entered_event: 0,
            last_event: self.last_event_id,
        };
        self.frames.insert(id, frame);
        r.ready.push_back(id);
        self.drain(&mut r);
        Ok(r.step)
    }

    /// Applies one event at time `now` and runs until the execution needs the engine
    /// again. Events for unknown (already answered or cancelled) tasks and timers are
    /// ignored, so redelivery is harmless.
    pub fn advance(
        &mut self,
        machine: &StateMachine,
        now: DateTime<Utc>,
        event: Event,
    ) -> Result<Step, ExecutionError> {
        self.check(machine)?;
        if !self.started {
            return Err(ExecutionError::NotStarted);
        }
        if self.is_finished() {
            return Err(ExecutionError::Finished);
        }
        let mut r = Run { machine, now, step: Step::default(), ready: VecDeque::new() };
        match event {
            Event::TaskStarted { task_id } => self.task_started(task_id, &mut r),
            Event::TaskSucceeded { task_id, output } => {
                if let Some(task) = self.tasks.remove(&task_id) {
                    let (resource, family) = task_resource(&task.action);
                    let mut d = json!({"output": payload(&output), "outputDetails": {"truncated": false}});
                    add_resource(&mut d, &resource, family);
                    self.task_event(task.frame, &mut r, family, "Succeeded", d);
                    self.state_succeeded(task.frame, output, &mut r);
                }
            }
            Event::TaskFailed { task_id, error, cause } => {
                if let Some(task) = self.tasks.remove(&task_id) {
                    let (resource, family) = task_resource(&task.action);
                    let mut d = json!({"error": error, "cause": cause});
                    add_resource(&mut d, &resource, family);
                    self.task_event(task.frame, &mut r, family, "Failed", d);
                    self.state_failed(task.frame, error, cause, &mut r);
                }
            }
            Event::TaskTimedOut { task_id, heartbeat } => {
                if let Some(task) = self.tasks.remove(&task_id) {
                    let (resource, family) = task_resource(&task.action);
                    let error = if heartbeat { errors::HEARTBEAT_TIMEOUT } else { errors::TIMEOUT };
                    let cause = if heartbeat {
                        "The task did not send a heartbeat in time"
                    } else {
                        "The task timed out"
                    };
                    let mut d = json!({"error": error, "cause": cause});
                    add_resource(&mut d, &resource, family);
                    self.task_event(task.frame, &mut r, family, "TimedOut", d);
                    self.state_failed(task.frame, error.to_string(), cause.to_string(), &mut r);
                }
            }
            Event::TimerFired { timer_id } => {
                if let Some(timer) = self.timers.remove(&timer_id) {
                    self.timer_fired(timer.frame, timer_id, &mut r);
                }
            }
            Event::Stop { error, cause } => {
                let (error, cause) = (error.unwrap_or_default(), cause.unwrap_or_default());
                self.emit(
                    None,
                    &mut r,
                    "ExecutionAborted",
                    Some("executionAbortedEventDetails"),
                    json!({"error": error, "cause": cause}),
                );
                self.end(ExecutionStatus::Aborted, None, Some((error, cause)));
            }
            Event::TimedOut => {
                let cause = "The execution ran longer than the state machine's TimeoutSeconds".to_string();
                let d = json!({"error": errors::TIMEOUT, "cause": cause});
                self.emit(None, &mut r, "ExecutionTimedOut", Some("executionTimedOutEventDetails"), d);
                self.end(ExecutionStatus::TimedOut, None, Some((errors::TIMEOUT.to_string(), cause)));
            }
        }
        self.drain(&mut r);
        Ok(r.step)
    }

    fn check(&self, machine: &StateMachine) -> Result<(), ExecutionError> {
        if machine.fingerprint() == self.fingerprint { Ok(()) } else { Err(ExecutionError::MachineMismatch) }
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn end(&mut self, status: ExecutionStatus, output: Option<Value>, error: Option<(String, String)>) {
        self.status = status;
        self.output = output;
        self.error = error;
        self.frames.clear();
        self.tasks.clear();
        self.timers.clear();
    }

    fn emit(
        &mut self,
        fid: Option<u64>,
        r: &mut Run<'_>,
        ty: &str,
        key: Option<&str>,
        details: Value,
    ) -> u64 {
        self.last_event_id += 1;
        let id = self.last_event_id;
        let frame = fid.and_then(|f| self.frames.get_mut(&f));
        let previous = frame.as_ref().map_or(id - 1, |f| f.last_event);
        if let Some(f) = frame {
            f.last_event = id;
        }
        r.step.history.push(HistoryEvent {
            id,
            previous_event_id: previous,
            timestamp: r.now,
            event_type: ty.to_string(),
            details_key: key.map(str::to_string),
            details: if key.is_some() { details } else { Value::Null },
        });
        id
    }

    fn task_event(&mut self, fid: u64, r: &mut Run<'_>, family: TaskFamily, what: &str, details: Value) {
        let (ty, key) = family.names(what);
        self.emit(Some(fid), r, &ty, Some(&key), details);
    }

    fn task_started(&mut self, task_id: u64, r: &mut Run<'_>) {
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        if task.started {
            return;
        }
        task.started = true;
        let frame = task.frame;
        let (resource, family) = task_resource(&task.action);
        let mut d = json!({});
        add_resource(&mut d, &resource, family);
        let (ty, key) = family.names("Started");
        let key = (family == TaskFamily::Service).then_some(key);
        self.emit(Some(frame), r, &ty, key.as_deref(), d);
    }

    fn drain(&mut self, r: &mut Run<'_>) {
        while let Some(fid) = r.ready.pop_front() {
            if self.frames.get(&fid).is_some_and(|f| f.phase == Phase::Ready) {
                self.enter(fid, r);
            }
        }
    }

    fn state_of<'m>(&self, machine: &'m StateMachine, fid: u64) -> Option<&'m State> {
        let f = self.frames.get(&fid)?;
        machine.branch(&f.scope)?.states.get(&f.state)
    }

    /// The `$$` context object for a frame's current state.
    fn context_object(&self, fid: u64, token: Option<&str>, item: Option<(usize, &Value)>) -> Value {
        let c = &self.context;
        let (name, entered, retries) = match self.frames.get(&fid) {
            Some(f) => (f.state.as_str(), f.entered_at, f.retries.iter().sum::<u64>()),
            None => ("", c.start_time, 0),
        };
        let mut ctx = json!({
            "Execution": {
                "Id": c.execution_arn,
                "Input": if self.context_input { self.input.clone() } else { Value::Null },
                "Name": c.execution_name,
                "RoleArn": c.role_arn,
                "StartTime": ts(c.start_time),
                "RedriveCount": 0,
            },
            "StateMachine": {"Id": c.state_machine_arn, "Name": c.state_machine_name},
            "State": {"Name": name, "EnteredTime": ts(entered), "RetryCount": retries},
        });
        if let Some(obj) = ctx.as_object_mut() {
            if let Some(t) = token {
                obj.insert("Task".into(), json!({"Token": t}));
            }
            if let Some((index, value)) = item {
                obj.insert("Map".into(), json!({"Item": {"Index": index, "Value": value}}));
            }
        }
        ctx
    }

    fn vars(&self, fid: u64) -> Map<String, Value> {
        self.frames.get(&fid).map(|f| f.vars.clone()).unwrap_or_default()
    }

    fn raw_input(&self, fid: u64) -> Value {
        self.frames.get(&fid).map(|f| f.input.clone()).unwrap_or(Value::Null)
    }

    fn enter(&mut self, fid: u64, r: &mut Run<'_>) {
        let Some(state) = self.state_of(r.machine, fid) else {
            let name = self.frames.get(&fid).map(|f| f.state.clone()).unwrap_or_default();
            self.finish_frame(
                fid,
                Err((errors::RUNTIME.into(), format!("State '{name}' does not exist"))),
                r,
            );
            return;
        };
        let retriers = match &state.kind {
            StateKind::Task(t) => t.retry.len(),
            StateKind::Parallel(p) => p.retry.len(),
            StateKind::Map(m) => m.retry.len(),
            _ => 0,
        };
        let input = match self.frames.get_mut(&fid) {
            Some(f) => {
                f.entered_at = r.now;
                f.retries = vec![0; retriers];
                f.input.clone()
            }
            None => return,
        };
        let d = json!({"name": state.name, "input": payload(&input), "inputDetails": {"truncated": false}});
        let id = self.emit(
            Some(fid),
            r,
            &format!("{}StateEntered", state.kind.type_name()),
            Some("stateEnteredEventDetails"),
            d,
        );
        if let Some(f) = self.frames.get_mut(&fid) {
            f.entered_event = id;
        }
        self.run_state(fid, state, r);
    }

    /// Does the state's work (also reruns it after a retry back-off).
    fn run_state(&mut self, fid: u64, state: &State, r: &mut Run<'_>) {
        if let Err(e) = self.try_run_state(fid, state, r) {
            self.hard_fail(fid, state, e, r);
        }
    }

    /// A data-flow failure: the state's retriers and catchers do not apply.
    fn hard_fail(&mut self, fid: u64, state: &State, e: EvalError, r: &mut Run<'_>) {
        let entered = self.frames.get(&fid).map_or(0, |f| f.entered_event);
        let cause = format!(
            "An error occurred while executing the state '{}' (entered at the event id #{entered}). {}",
            state.name, e.cause
        );
        self.abort_children(fid);
        self.finish_frame(fid, Err((e.error, cause)), r);
    }

    fn effective_input(
        &self,
        fid: u64,
        io: &Io,
        ctx: &Value,
        vars: &Map<String, Value>,
    ) -> Result<Value, EvalError> {
        let raw = self.raw_input(fid);
        match &io.input_path {
            None => Ok(json!({})),
            Some(p) => p.select(Scope { input: &raw, context: ctx, variables: vars })?.ok_or_else(|| {
                EvalError::runtime(format!(
                    "Invalid path '{p}' : No results for path: {p} in the input '{raw}'"
                ))
            }),
        }
    }

    fn number(
        &self,
        src: &Option<NumberSource>,
        scope: Scope<'_>,
        field: &str,
    ) -> Result<Option<f64>, EvalError> {
        match src {
            None => Ok(None),
            Some(NumberSource::Literal(n)) => Ok(Some(*n)),
            Some(NumberSource::Path(p)) => match p.select(scope)? {
                Some(v) => v.as_f64().filter(|n| *n >= 0.0).map(Some).ok_or_else(|| {
                    EvalError::runtime(format!(
                        "The value at '{p}' for the field '{field}' must be a non-negative number, got {v}"
                    ))
                }),
                None => Err(EvalError::runtime(format!(
                    "The JSONPath '{p}' specified for the field '{field}' could not be found in the input"
                ))),
            },
        }
    }

    fn try_run_state(&mut self, fid: u64, state: &State, r: &mut Run<'_>) -> Result<(), EvalError> {
        let vars = self.vars(fid);
        match &state.kind {
            StateKind::Pass { result } => {
                let ctx = self.context_object(fid, None, None);
                let eff = self.effective_input(fid, &state.io, &ctx, &vars)?;
                // Parameters shapes the effective input; Result, when given, is the
                // "virtual task" output that replaces it.
                let shaped = match &state.io.parameters {
                    Some(p) => p.evaluate(
                        Scope { input: &eff, context: &ctx, variables: &vars },
                        &mut Rng(&mut self.rng),
                    )?,
                    None => eff,
                };
                let value = result.clone().unwrap_or(shaped);
                self.state_succeeded_with(fid, state, value, r);
            }
            StateKind::Task(task) => {
                let token = task.resource.ends_with(".waitForTaskToken").then(|| {
                    let mut rng = Rng(&mut self.rng);
                    format!(
                        "{:016x}{:016x}{:016x}{:016x}",
                        rng.next_u64(),
                        rng.next_u64(),
                        rng.next_u64(),
                        rng.next_u64()
                    )
                });
                let ctx = self.context_object(fid, token.as_deref(), None);
                let eff = self.effective_input(fid, &state.io, &ctx, &vars)?;
                let scope = Scope { input: &eff, context: &ctx, variables: &vars };
                let input = match &state.io.parameters {
                    Some(p) => p.evaluate(scope, &mut Rng(&mut self.rng))?,
                    None => eff.clone(),
                };
                let credentials = match &task.credentials {
                    Some(c) => Some(c.evaluate(scope, &mut Rng(&mut self.rng))?),
                    None => None,
                };
                let timeout =
                    self.number(&task.timeout_seconds, scope, "TimeoutSecondsPath")?.map(|n| n as u64);
                let heartbeat =
                    self.number(&task.heartbeat_seconds, scope, "HeartbeatSecondsPath")?.map(|n| n as u64);
                let attempt = self.frames.get(&fid).map_or(0, |f| f.retries.iter().sum());
                let task_id = self.new_id();
                let action = Action::InvokeTask {
                    task_id,
                    state: state.name.clone(),
                    resource: task.resource.clone(),
                    input: input.clone(),
                    credentials,
                    timeout_seconds: timeout,
                    heartbeat_seconds: heartbeat,
                    task_token: token,
                    attempt,
                };
                let family = TaskFamily::of(&task.resource);
                let mut d = match family {
                    TaskFamily::Service => json!({"parameters": payload(&input)}),
                    _ => {
                        json!({"resource": task.resource, "input": payload(&input), "inputDetails": {"truncated": false}})
                    }
                };
                if family == TaskFamily::Service {
                    add_resource(&mut d, &task.resource, family);
                }
                if let Some(obj) = d.as_object_mut() {
                    if let Some(t) = timeout {
                        obj.insert("timeoutInSeconds".into(), json!(t));
                    }
                    if let Some(h) = heartbeat.filter(|_| family != TaskFamily::Lambda) {
                        obj.insert("heartbeatInSeconds".into(), json!(h));
                    }
                }
                self.task_event(fid, r, family, "Scheduled", d);
                self.tasks
                    .insert(task_id, PendingTask { frame: fid, action: action.clone(), started: false });
                self.set_phase(fid, Phase::AwaitTask { task_id });
                r.step.actions.push(action);
            }
            StateKind::Choice(choice) => {
                let ctx = self.context_object(fid, None, None);
                let eff = self.effective_input(fid, &state.io, &ctx, &vars)?;
                let scope = Scope { input: &eff, context: &ctx, variables: &vars };
                let mut target = None;
                for rule in &choice.choices {
                    if rule.condition.evaluate(scope)? {
                        target = Some((rule.next.clone(), rule.assign.as_ref()));
                        break;
                    }
                }
                let (next, rule_assign) = match target {
                    Some(t) => t,
                    None => {
                        match &choice.default {
                            Some(d) => (d.clone(), None),
                            None => {
                                return Err(EvalError {
                                error: errors::NO_CHOICE_MATCHED.into(),
                                cause: "No Matches! No choice rule matched and the Choice state has no Default".into(),
                            });
                            }
                        }
                    }
                };
                let mut assigned = Map::new();
                for a in [state.assign.as_ref(), rule_assign].into_iter().flatten() {
                    if let Value::Object(m) = a.evaluate(scope, &mut Rng(&mut self.rng))? {
                        assigned.extend(m);
                    }
                }
                let output = output_path(&state.io, eff.clone(), &ctx, &vars)?;
                self.assign_vars(fid, assigned);
                self.exit_state(fid, state, &output, r);
                self.go(fid, &Transition::Next(next), output, r);
            }
            StateKind::Wait(wait) => {
                let ctx = self.context_object(fid, None, None);
                let eff = self.effective_input(fid, &state.io, &ctx, &vars)?;
                let scope = Scope { input: &eff, context: &ctx, variables: &vars };
                let until = match wait {
                    WaitFor::Seconds(s) => r.now + Duration::seconds(*s as i64),
                    WaitFor::Timestamp(t) => t.with_timezone(&Utc),
                    WaitFor::SecondsPath(p) => {
                        let v = p.select(scope)?.ok_or_else(|| {
                            EvalError::runtime(format!(
                                "The SecondsPath '{p}' could not be found in the input"
                            ))
                        })?;
                        let secs = v.as_u64().ok_or_else(|| {
                            EvalError::runtime(format!(
                                "The SecondsPath '{p}' must point to a non-negative integer, got {v}"
                            ))
                        })?;
                        r.now
                            + Duration::seconds(
                                i64::try_from(secs).unwrap_or(i64::MAX / 1000).min(3_153_600_000),
                            )
                    }
                    WaitFor::TimestampPath(p) => {
                        let v = p.select(scope)?.ok_or_else(|| {
                            EvalError::runtime(format!(
                                "The TimestampPath '{p}' could not be found in the input"
                            ))
                        })?;
                        v.as_str()
                            .and_then(crate::choice::parse_timestamp)
                            .map(|t| t.with_timezone(&Utc))
                            .ok_or_else(|| {
                                EvalError::runtime(format!(
                                    "The TimestampPath '{p}' must point to an RFC 3339 timestamp, got {v}"
                                ))
                            })?
                    }
                };
                if let Some(a) = &state.assign
                    && let Value::Object(m) = a.evaluate(scope, &mut Rng(&mut self.rng))?
                {
                    self.assign_vars(fid, m);
                }
                let output = output_path(&state.io, eff.clone(), &ctx, &vars)?;
                let timer_id = self.new_id();
                self.timers.insert(timer_id, PendingTimer { frame: fid, until });
                self.set_phase(fid, Phase::AwaitWait { timer_id, output });
                r.step.actions.push(Action::Wait { timer_id, until });
            }
            StateKind::Succeed => {
                let ctx = self.context_object(fid, None, None);
                let eff = self.effective_input(fid, &state.io, &ctx, &vars)?;
                let output = output_path(&state.io, eff, &ctx, &vars)?;
                self.exit_state(fid, state, &output, r);
                self.finish_frame(fid, Ok(output), r);
            }
            StateKind::Fail(fail) => {
                let ctx = self.context_object(fid, None, None);
                let raw = self.raw_input(fid);
                let scope = Scope { input: &raw, context: &ctx, variables: &vars };
                let error = self.text(&fail.error, scope, "ErrorPath")?;
                let cause = self.text(&fail.cause, scope, "CausePath")?;
                self.finish_frame(fid, Err((error, cause)), r);
            }
            StateKind::Parallel(par) => {
                let ctx = self.context_object(fid, None, None);
                let eff = self.effective_input(fid, &state.io, &ctx, &vars)?;
                let input = match &state.io.parameters {
                    Some(p) => p.evaluate(
                        Scope { input: &eff, context: &ctx, variables: &vars },
                        &mut Rng(&mut self.rng),
                    )?,
                    None => eff,
                };
                self.emit(Some(fid), r, "ParallelStateStarted", None, Value::Null);
                let children = Children {
                    is_map: false,
                    active: 0,
                    pending: VecDeque::new(),
                    results: vec![None; par.branches.len()],
                    failures: 0,
                    max_concurrency: 0,
                    tolerated_count: None,
                    tolerated_percentage: None,
                };
                self.set_phase(fid, Phase::AwaitChildren(Box::new(children)));
                for (i, b) in par.branches.iter().enumerate() {
                    let step = ScopeStep { state: state.name.clone(), branch: Some(i) };
                    self.spawn(fid, step, &b.start_at, i, input.clone(), r);
                }
            }
            StateKind::Map(map) => self.run_map(fid, state, map, &vars, r)?,
        }
        Ok(())
    }

    fn run_map(
        &mut self,
        fid: u64,
        state: &State,
        map: &MapState,
        vars: &Map<String, Value>,
        r: &mut Run<'_>,
    ) -> Result<(), EvalError> {
        if map.item_reader.is_some() {
            return Err(EvalError {
                error: errors::ITEM_READER_FAILED.into(),
                cause: "ItemReader (Distributed Map reading items from S3) is not supported by this engine"
                    .into(),
            });
        }
        let ctx = self.context_object(fid, None, None);
        let eff = self.effective_input(fid, &state.io, &ctx, vars)?;
        let scope = Scope { input: &eff, context: &ctx, variables: vars };
        let items = match map.items_path.select(scope)? {
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(EvalError::runtime(format!(
                    "Map items at '{}' must be an array, got {}",
                    map.items_path,
                    crate::jsonpath::type_name(&other)
                )));
            }
            None => {
                return Err(EvalError::runtime(format!(
                    "The ItemsPath '{}' could not be found in the input",
                    map.items_path
                )));
            }
        };
        let items = batch(map, items, scope, &mut Rng(&mut self.rng))?;
        let mut inputs = VecDeque::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let input = match &map.item_selector {
                Some(sel) => {
                    let ictx = self.context_object(fid, None, Some((i, item)));
                    sel.evaluate(
                        Scope { input: &eff, context: &ictx, variables: vars },
                        &mut Rng(&mut self.rng),
                    )?
                }
                None => item.clone(),
            };
            inputs.push_back((i, input));
        }
        let max_concurrency =
            self.number(&map.max_concurrency, scope, "MaxConcurrencyPath")?.unwrap_or(0.0) as usize;
        let tolerated_count =
            self.number(&map.tolerated_failure_count, scope, "ToleratedFailureCountPath")?.map(|n| n as u64);
        let tolerated_percentage =
            self.number(&map.tolerated_failure_percentage, scope, "ToleratedFailurePercentagePath")?;
        self.emit(
            Some(fid),
            r,
            "MapStateStarted",
            Some("mapStateStartedEventDetails"),
            json!({"length": items.len()}),
        );
        if items.is_empty() {
            self.emit(Some(fid), r, "MapStateSucceeded", None, Value::Null);
            self.state_succeeded_with(fid, state, json!([]), r);
            return Ok(());
        }
        let children = Children {
            is_map: true,
            active: 0,
            pending: inputs,
            results: vec![None; items.len()],
            failures: 0,
            max_concurrency,
            tolerated_count,
            tolerated_percentage,
        };
        self.set_phase(fid, Phase::AwaitChildren(Box::new(children)));
        self.start_more(fid, state, r);
        Ok(())
    }

    /// Starts Map iterations up to MaxConcurrency.
    fn start_more(&mut self, fid: u64, state: &State, r: &mut Run<'_>) {
        loop {
            let next = match self.frames.get_mut(&fid).map(|f| &mut f.phase) {
                Some(Phase::AwaitChildren(ch))
                    if ch.max_concurrency == 0 || ch.active < ch.max_concurrency =>
                {
                    ch.pending.pop_front()
                }
                _ => None,
            };
            let Some((index, input)) = next else { return };
            let StateKind::Map(map) = &state.kind else { return };
            self.emit(
                Some(fid),
                r,
                "MapIterationStarted",
                Some("mapIterationStartedEventDetails"),
                json!({"name": state.name, "index": index}),
            );
            let step = ScopeStep { state: state.name.clone(), branch: None };
            self.spawn(fid, step, &map.processor.start_at, index, input, r);
        }
    }

    fn spawn(
        &mut self,
        parent: u64,
        step: ScopeStep,
        start_at: &str,
        slot: usize,
        input: Value,
        r: &mut Run<'_>,
    ) {
        let Some(p) = self.frames.get_mut(&parent) else { return };
        if let Phase::AwaitChildren(ch) = &mut p.phase {
            ch.active += 1;
        }
        let mut scope = p.scope.clone();
        scope.push(step);
        let frame = Frame {
            parent: Some(parent),
            slot,
            scope,
            state: start_at.to_string(),
            input,
            vars: p.vars.clone(),
            phase: Phase::Ready,
            retries: Vec::new(),
            entered_at: r.now,
            entered_event: 0,
            last_event: p.last_event,
        };
        let id = self.new_id();
        self.frames.insert(id, frame);
        r.ready.push_back(id);
    }

    fn text(&self, src: &Option<TextSource>, scope: Scope<'_>, field: &str) -> Result<String, EvalError> {
        let v = match src {
            None => return Ok(String::new()),
            Some(TextSource::Literal(s)) => return Ok(s.clone()),
            Some(TextSource::Path(p)) => p.select(scope)?.ok_or_else(|| {
                EvalError::runtime(format!("The JSONPath '{p}' specified for the field '{field}' could not be found in the input '{}'", scope.input))
            })?,
            Some(TextSource::Call(c)) => {
                // Intrinsics here never draw randomness that matters for replay.
                let mut seed = 0u64;
                c.evaluate(scope, &mut Rng(&mut seed))?
            }
        };
        Ok(match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }

    fn set_phase(&mut self, fid: u64, phase: Phase) {
        if let Some(f) = self.frames.get_mut(&fid) {
            f.phase = phase;
        }
    }

    fn assign_vars(&mut self, fid: u64, values: Map<String, Value>) {
        if let Some(f) = self.frames.get_mut(&fid) {
            f.vars.extend(values);
        }
    }

    fn exit_state(&mut self, fid: u64, state: &State, output: &Value, r: &mut Run<'_>) {
        let d = json!({"name": state.name, "output": payload(output), "outputDetails": {"truncated": false}});
        self.emit(
            Some(fid),
            r,
            &format!("{}StateExited", state.kind.type_name()),
            Some("stateExitedEventDetails"),
            d,
        );
    }

    /// Moves a frame on: to the next state, or ends it.
    fn go(&mut self, fid: u64, t: &Transition, output: Value, r: &mut Run<'_>) {
        match t {
            Transition::Next(n) => {
                if let Some(f) = self.frames.get_mut(&fid) {
                    f.state = n.clone();
                    f.input = output;
                    f.phase = Phase::Ready;
                    r.ready.push_back(fid);
                }
            }
            Transition::End => self.finish_frame(fid, Ok(output), r),
        }
    }

    /// A task answered, or children all finished: the current state's result.
    fn state_succeeded(&mut self, fid: u64, result: Value, r: &mut Run<'_>) {
        if let Some(state) = self.state_of(r.machine, fid) {
            self.state_succeeded_with(fid, state, result, r);
        }
    }

    /// ResultSelector → Assign → ResultPath → OutputPath, then exit and transition.
    fn state_succeeded_with(&mut self, fid: u64, state: &State, result: Value, r: &mut Run<'_>) {
        match self.result_output(fid, state, result) {
            Ok(output) => {
                self.exit_state(fid, state, &output, r);
                match &state.transition {
                    Some(t) => self.go(fid, t, output, r),
                    None => self.finish_frame(fid, Ok(output), r),
                }
            }
            Err(e) => self.hard_fail(fid, state, e, r),
        }
    }

    fn result_output(&mut self, fid: u64, state: &State, result: Value) -> Result<Value, EvalError> {
        let ctx = self.context_object(fid, None, None);
        let vars = self.vars(fid);
        let selected = match &state.io.result_selector {
            Some(sel) => sel.evaluate(
                Scope { input: &result, context: &ctx, variables: &vars },
                &mut Rng(&mut self.rng),
            )?,
            None => result,
        };
        let assigned = match &state.assign {
            Some(a) => match a.evaluate(
                Scope { input: &selected, context: &ctx, variables: &vars },
                &mut Rng(&mut self.rng),
            )? {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            None => Map::new(),
        };
        let raw = self.raw_input(fid);
        let combined = match &state.io.result_path {
            None => raw,
            Some(p) => p.set(raw, selected)?,
        };
        let output = output_path(&state.io, combined, &ctx, &vars)?;
        self.assign_vars(fid, assigned);
        Ok(output)
    }

    /// A task, branch or iteration failed: retry, catch, or fail the frame.
    fn state_failed(&mut self, fid: u64, error: String, cause: String, r: &mut Run<'_>) {
        let Some(state) = self.state_of(r.machine, fid) else { return };
        let (retry, catch): (&[Retrier], &[Catcher]) = match &state.kind {
            StateKind::Task(t) => (&t.retry, &t.catch),
            StateKind::Parallel(p) => (&p.retry, &p.catch),
            StateKind::Map(m) => (&m.retry, &m.catch),
            _ => (&[], &[]),
        };
        if let Some(i) = retry.iter().position(|rt| rt.error_equals.iter().any(|p| error_matches(p, &error)))
        {
            let rt = &retry[i];
            let used = self.frames.get(&fid).and_then(|f| f.retries.get(i).copied()).unwrap_or(0);
            if used < rt.max_attempts {
                let mut delay = rt.interval_seconds as f64
                    * rt.backoff_rate.powi(i32::try_from(used).unwrap_or(i32::MAX));
                if let Some(max) = rt.max_delay_seconds {
                    delay = delay.min(max as f64);
                }
                if rt.jitter == Jitter::Full {
                    // Full jitter: uniformly between 0 and the computed delay.
                    let unit = (Rng(&mut self.rng).next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                    delay *= unit;
                }
                let until = r.now + Duration::milliseconds((delay.min(1.0e9) * 1000.0) as i64);
                if let Some(f) = self.frames.get_mut(&fid)
                    && let Some(slot) = f.retries.get_mut(i)
                {
                    *slot += 1;
                }
                let timer_id = self.new_id();
                self.timers.insert(timer_id, PendingTimer { frame: fid, until });
                self.set_phase(fid, Phase::AwaitRetry { timer_id });
                r.step.actions.push(Action::Wait { timer_id, until });
                return;
            }
        }
        if let Some(c) = catch.iter().find(|c| c.error_equals.iter().any(|p| error_matches(p, &error))) {
            let error_output = json!({"Error": error, "Cause": cause});
            let raw = self.raw_input(fid);
            let output = match &c.result_path {
                None => Ok(raw),
                Some(p) => p.set(raw, error_output.clone()),
            };
            let assigned = match &c.assign {
                Some(a) => {
                    let ctx = self.context_object(fid, None, None);
                    let vars = self.vars(fid);
                    a.evaluate(
                        Scope { input: &error_output, context: &ctx, variables: &vars },
                        &mut Rng(&mut self.rng),
                    )
                }
                None => Ok(Value::Null),
            };
            match (output, assigned) {
                (Ok(output), Ok(assigned)) => {
                    if let Value::Object(m) = assigned {
                        self.assign_vars(fid, m);
                    }
                    self.exit_state(fid, state, &output, r);
                    self.go(fid, &Transition::Next(c.next.clone()), output, r);
                }
                (Err(e), _) | (_, Err(e)) => self.hard_fail(fid, state, e, r),
            }
            return;
        }
        self.finish_frame(fid, Err((error, cause)), r);
    }

    fn timer_fired(&mut self, fid: u64, timer_id: u64, r: &mut Run<'_>) {
        let Some(state) = self.state_of(r.machine, fid) else { return };
        let phase = self.frames.get(&fid).map(|f| f.phase.clone());
        match phase {
            Some(Phase::AwaitWait { timer_id: t, output }) if t == timer_id => {
                self.exit_state(fid, state, &output, r);
                match &state.transition {
                    Some(tr) => self.go(fid, tr, output, r),
                    None => self.finish_frame(fid, Ok(output), r),
                }
            }
            Some(Phase::AwaitRetry { timer_id: t }) if t == timer_id => self.run_state(fid, state, r),
            _ => {}
        }
    }

    /// Removes every frame below `fid` (and their tasks and timers): a failed Parallel
    /// branch or Map iteration cancels its siblings.
    fn abort_children(&mut self, fid: u64) {
        let mut doomed = Vec::new();
        for (id, f) in &self.frames {
            let mut p = f.parent;
            while let Some(pid) = p {
                if pid == fid {
                    doomed.push(*id);
                    break;
                }
                p = self.frames.get(&pid).and_then(|x| x.parent);
            }
        }
        for id in &doomed {
            self.frames.remove(id);
        }
        self.tasks.retain(|_, t| !doomed.contains(&t.frame));
        self.timers.retain(|_, t| !doomed.contains(&t.frame));
    }

    /// A frame ended: the execution ends, or its parent Parallel/Map collects the result.
    fn finish_frame(&mut self, fid: u64, outcome: Result<Value, (String, String)>, r: &mut Run<'_>) {
        let Some(frame) = self.frames.get(&fid) else { return };
        let (parent, slot) = (frame.parent, frame.slot);
        match parent {
            None => match outcome {
                Ok(output) => {
                    let d = json!({"output": payload(&output), "outputDetails": {"truncated": false}});
                    self.emit(Some(fid), r, "ExecutionSucceeded", Some("executionSucceededEventDetails"), d);
                    r.step.actions.push(Action::Succeed { output: output.clone() });
                    self.end(ExecutionStatus::Succeeded, Some(output), None);
                }
                Err((error, cause)) => {
                    let d = json!({"error": error, "cause": cause});
                    self.emit(Some(fid), r, "ExecutionFailed", Some("executionFailedEventDetails"), d);
                    r.step.actions.push(Action::Fail { error: error.clone(), cause: cause.clone() });
                    self.end(ExecutionStatus::Failed, None, Some((error, cause)));
                }
            },
            Some(pid) => {
                let last = self.frames.remove(&fid).map_or(0, |f| f.last_event);
                if let Some(p) = self.frames.get_mut(&pid) {
                    p.last_event = p.last_event.max(last);
                }
                self.child_finished(pid, slot, outcome, r);
            }
        }
    }

    fn child_finished(
        &mut self,
        pid: u64,
        slot: usize,
        outcome: Result<Value, (String, String)>,
        r: &mut Run<'_>,
    ) {
        let Some(state) = self.state_of(r.machine, pid) else { return };
        let is_map = matches!(state.kind, StateKind::Map(_));
        let failed = outcome.as_ref().err().cloned();
        let over_tolerance = {
            let Some(Phase::AwaitChildren(ch)) = self.frames.get_mut(&pid).map(|f| &mut f.phase) else {
                return;
            };
            ch.active = ch.active.saturating_sub(1);
            match outcome {
                Ok(v) => {
                    if let Some(s) = ch.results.get_mut(slot) {
                        *s = Some(v);
                    }
                    false
                }
                Err((e, c)) => {
                    ch.failures += 1;
                    if let Some(s) = ch.results.get_mut(slot) {
                        *s = Some(json!({"Error": e, "Cause": c}));
                    }
                    let total = ch.results.len().max(1) as f64;
                    let tolerated = ch.tolerated_count.is_some() || ch.tolerated_percentage.is_some();
                    !tolerated
                        || ch.tolerated_count.is_some_and(|n| ch.failures > n)
                        || ch.tolerated_percentage.is_some_and(|p| ch.failures as f64 * 100.0 / total > p)
                }
            }
        };
        let tolerated = match self.frames.get(&pid).map(|f| &f.phase) {
            Some(Phase::AwaitChildren(ch)) => {
                ch.tolerated_count.is_some() || ch.tolerated_percentage.is_some()
            }
            _ => false,
        };
        if is_map {
            let what = if failed.is_some() { "MapIterationFailed" } else { "MapIterationSucceeded" };
            let key = if failed.is_some() {
                "mapIterationFailedEventDetails"
            } else {
                "mapIterationSucceededEventDetails"
            };
            self.emit(Some(pid), r, what, Some(key), json!({"name": state.name, "index": slot}));
        }
        if let Some((error, cause)) = failed
            && over_tolerance
        {
            self.abort_children(pid);
            let prefix = if is_map { "Map" } else { "Parallel" };
            self.emit(Some(pid), r, &format!("{prefix}StateFailed"), None, Value::Null);
            let (error, cause) = if is_map && tolerated {
                (
                    errors::EXCEED_TOLERATED_FAILURE_THRESHOLD.to_string(),
                    format!(
                        "The Map state's tolerated failure threshold was exceeded. Last failure: {error}: {cause}"
                    ),
                )
            } else {
                (error, cause)
            };
            self.state_failed(pid, error, cause, r);
            return;
        }
        if is_map {
            self.start_more(pid, state, r);
        }
        let done = match self.frames.get(&pid).map(|f| &f.phase) {
            Some(Phase::AwaitChildren(ch)) if ch.active == 0 && ch.pending.is_empty() => {
                Some(Value::Array(ch.results.iter().map(|v| v.clone().unwrap_or(Value::Null)).collect()))
            }
            _ => None,
        };
        if let Some(results) = done {
            let prefix = if is_map { "Map" } else { "Parallel" };
            self.emit(Some(pid), r, &format!("{prefix}StateSucceeded"), None, Value::Null);
            self.state_succeeded_with(pid, state, results, r);
        }
    }
}

fn output_path(io: &Io, combined: Value, ctx: &Value, vars: &Map<String, Value>) -> Result<Value, EvalError> {
    match &io.output_path {
        None => Ok(json!({})),
        Some(p) if p.as_str() == "$" => Ok(combined),
        Some(p) => p.select(Scope { input: &combined, context: ctx, variables: vars })?.ok_or_else(|| {
            EvalError::runtime(format!(
                "Invalid path '{p}' : No results for path: {p} in the output '{combined}'"
            ))
        }),
    }
}

/// `ItemBatcher`: groups items into `{"BatchInput": …, "Items": [...]}` batches.
fn batch(
    map: &MapState,
    items: Vec<Value>,
    scope: Scope<'_>,
    entropy: &mut dyn Entropy,
) -> Result<Vec<Value>, EvalError> {
    let Some(Value::Object(cfg)) = &map.item_batcher else { return Ok(items) };
    let size = match (cfg.get("MaxItemsPerBatch"), cfg.get("MaxItemsPerBatchPath")) {
        (Some(n), _) => n.as_u64(),
        (None, Some(Value::String(p))) => match JsonPath::parse(p) {
            Ok(path) => path.select(scope)?.and_then(|v| v.as_u64()),
            Err(_) => None,
        },
        _ => None,
    }
    .unwrap_or(u64::MAX)
    .max(1);
    let batch_input = match cfg.get("BatchInput") {
        Some(v) => {
            let mut found = Vec::new();
            let t = crate::template::compile(v, "/ItemBatcher/BatchInput", &mut |a, m| found.push((a, m)));
            match t {
                Some(t) => Some(t.evaluate(scope, entropy)?),
                None => None,
            }
        }
        None => None,
    };
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    Ok(items
        .chunks(size)
        .map(|chunk| {
            let mut m = Map::new();
            if let Some(b) = &batch_input {
                m.insert("BatchInput".into(), b.clone());
            }
            m.insert("Items".into(), Value::Array(chunk.to_vec()));
            Value::Object(m)
        })
        .collect())
}

fn task_resource(action: &Action) -> (String, TaskFamily) {
    match action {
        Action::InvokeTask { resource, .. } => (resource.clone(), TaskFamily::of(resource)),
        _ => (String::new(), TaskFamily::Service),
    }
}

/// Service-integration task events carry `resourceType` and `resource`.
fn add_resource(details: &mut Value, resource: &str, family: TaskFamily) {
    if family != TaskFamily::Service {
        return;
    }
    let (ty, res) = resource_parts(resource);
    if let Some(obj) = details.as_object_mut() {
        obj.insert("resourceType".into(), Value::String(ty));
        obj.insert("resource".into(), Value::String(res));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_input_in_context_only_when_referenced() {
        assert!(!reads_execution_input(r#"{"a.$": "$$.Map.Item.Value", "b.$": "$$.Execution.Id"}"#));
        assert!(reads_execution_input(r#"{"a.$": "$$.Execution.Input.x"}"#));
        assert!(reads_execution_input(r#"{"a.$": "$$"}"#));
        assert!(reads_execution_input(r#"{"a.$": "$$.Execution"}"#));
        assert!(reads_execution_input(r#"{"a.$": "States.Format('{}', $$..Input)"}"#));
        let machine = StateMachine::parse(
            r#"{"StartAt": "P", "States": {"P": {"Type": "Pass",
                "Parameters": {"in.$": "$$.Execution.Input.v", "id.$": "$$.Execution.Name"}, "End": true}}}"#,
        )
        .unwrap();
        let now = Utc::now();
        let context = ExecutionContext {
            execution_arn: "arn:aws:states:us-east-1:1:execution:m:e".into(),
            execution_name: "e".into(),
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:m".into(),
            state_machine_name: "m".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
            start_time: now,
            seed: 1,
        };
        let mut execution = Execution::new(&machine, json!({"v": 5}), context);
        let step = execution.start(&machine).unwrap();
        assert_eq!(step.actions, vec![Action::Succeed { output: json!({"in": 5, "id": "e"}) }]);
    }
}
