//! One driver task per running execution: it feeds events into the interpreter, persists
//! (group commit: every event already queued, one write) and only then acts.
use crate::engine::StepFunctionsEngine;
use crate::{ExecutionInfo, StateMachineInfo};
use chrono::{DateTime, Utc};
use nimbus_workflows::{Action, Event, Execution, HistoryEvent, StateMachine};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// The durable part of an execution: who it is, what it runs, and the interpreter state.
#[derive(Serialize, Deserialize)]
pub(crate) struct ExecRecord {
    pub arn: String,
    pub name: String,
    /// The machine as it was when the execution started (it keeps running that
    /// definition through later updates).
    pub machine: StateMachineInfo,
    pub start_date: DateTime<Utc>,
    pub stop_date: Option<DateTime<Utc>>,
    /// The input as given (JSON text).
    pub input: String,
    pub execution: Execution,
    /// History events persisted so far; events beyond it (a crash between the two
    /// writes of a commit) are discarded on load.
    pub history_len: u64,
}

pub(crate) struct ExecState {
    pub record: ExecRecord,
    pub history: Vec<HistoryEvent>,
}

impl ExecState {
    pub fn info(&self) -> ExecutionInfo {
        let r = &self.record;
        let error = r.execution.error();
        ExecutionInfo {
            arn: r.arn.clone(),
            name: r.name.clone(),
            state_machine_arn: r.machine.arn.clone(),
            status: r.execution.status(),
            start_date: r.start_date,
            stop_date: r.stop_date,
            input: r.input.clone(),
            output: r.execution.output().map(|v| v.to_string()),
            error: error.map(|(e, _)| e.to_string()),
            cause: error.map(|(_, c)| c.to_string()),
        }
    }
}

pub(crate) enum Msg {
    Event(Event),
    /// StopExecution: answered with the stop date once the abort is persisted.
    Stop {
        error: Option<String>,
        cause: Option<String>,
        reply: oneshot::Sender<DateTime<Utc>>,
    },
}

/// A live execution.
pub(crate) struct ExecEntry {
    pub arn: String,
    pub machine: Arc<StateMachine>,
    /// Standard executions persist; express ones live in memory only.
    pub durable: bool,
    pub state: Mutex<ExecState>,
    pub tx: mpsc::UnboundedSender<Msg>,
    /// Flips to true when the execution has ended.
    pub done: watch::Sender<bool>,
}

impl ExecEntry {
    pub fn new(
        record: ExecRecord,
        history: Vec<HistoryEvent>,
        machine: Arc<StateMachine>,
        durable: bool,
    ) -> (Arc<ExecEntry>, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let finished = record.execution.is_finished();
        let entry = ExecEntry {
            arn: record.arn.clone(),
            machine,
            durable,
            state: Mutex::new(ExecState { record, history }),
            tx,
            done: watch::channel(finished).0,
        };
        (Arc::new(entry), rx)
    }

    pub fn send(&self, event: Event) {
        // Fails only once the driver has ended, when events are moot.
        let _ = self.tx.send(Msg::Event(event));
    }

    pub fn is_finished(&self) -> bool {
        self.state.lock().record.execution.is_finished()
    }

    /// Waits until the execution has ended.
    pub async fn wait(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// A StopExecution caller waiting for the (persisted) stop date.
type StopReply = (oneshot::Sender<DateTime<Utc>>, DateTime<Utc>);

/// Upper bound of one group commit, so a flood of events still makes progress visible.
const MAX_BATCH: usize = 4096;
/// Commits cheaper than this are not worth delaying events for.
const COALESCE_FROM: Duration = Duration::from_millis(1);
const MAX_COALESCE: Duration = Duration::from_millis(20);

impl StepFunctionsEngine {
    /// Runs an execution until it ends; `initial` are the actions its last persisted
    /// step (start, or `outstanding()` after a restart) still owes.
    pub(crate) async fn drive(
        self: Arc<Self>,
        entry: Arc<ExecEntry>,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        initial: Vec<Action>,
    ) {
        if entry.is_finished() {
            self.finish(&entry);
            return;
        }
        self.arm_machine_timeout(&entry);
        self.perform(&entry, initial);
        let mut batch = Vec::new();
        let mut last_commit = Duration::ZERO;
        loop {
            let Some(first) = rx.recv().await else { return };
            batch.push(first);
            // A commit rewrites the whole execution state: when that is expensive (a big
            // Map), gather events for as long as the last commit took, so commits stay a
            // fraction of the time rather than one per event.
            if entry.durable && last_commit > COALESCE_FROM {
                tokio::time::sleep(last_commit.min(MAX_COALESCE)).await;
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let (actions, replies, finished) = self.apply(&entry, batch.drain(..));
            last_commit = started.elapsed();
            for (reply, date) in replies {
                let _ = reply.send(date);
            }
            if finished {
                self.finish(&entry);
                return;
            }
            self.perform(&entry, actions);
        }
    }

    /// Advances the interpreter through a batch of messages and persists the result once.
    fn apply(
        &self,
        entry: &ExecEntry,
        batch: impl Iterator<Item = Msg>,
    ) -> (Vec<Action>, Vec<StopReply>, bool) {
        let now = Utc::now();
        let mut actions = Vec::new();
        let mut replies = Vec::new();
        let mut st = entry.state.lock();
        let first_new = st.history.len();
        for msg in batch {
            let event = match msg {
                Msg::Event(e) => e,
                Msg::Stop { error, cause, reply } => {
                    replies.push(reply);
                    Event::Stop { error, cause }
                }
            };
            if st.record.execution.is_finished() {
                continue;
            }
            match st.record.execution.advance(&entry.machine, now, event) {
                Ok(step) => {
                    st.history.extend(step.history);
                    actions.extend(step.actions);
                }
                Err(e) => tracing::error!(execution = %entry.arn, "interpreter refused an event: {e}"),
            }
        }
        let finished = st.record.execution.is_finished();
        if finished && st.record.stop_date.is_none() {
            st.record.stop_date = Some(now);
        }
        if entry.durable && st.history.len() > first_new {
            self.persist(&mut st, first_new);
        }
        let stop_date = st.record.stop_date.unwrap_or(now);
        (actions, replies.into_iter().map(|r| (r, stop_date)).collect(), finished)
    }

    /// Writes the history events from `first_new` on, then the execution record. The
    /// record names how many events are valid, so a crash between the writes is safe.
    pub(crate) fn persist(&self, st: &mut ExecState, first_new: usize) {
        let new = &st.history[first_new..];
        if let Some(first) = new.first() {
            let result = serde_json::to_vec(new).map_err(|e| e.to_string()).and_then(|b| {
                self.store
                    .put(&history_collection(&st.record.arn), &history_key(first.id), &b)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = result {
                tracing::error!(execution = %st.record.arn, "persisting history: {e}");
                return;
            }
        }
        st.record.history_len = st.history.len() as u64;
        let result = serde_json::to_vec(&st.record)
            .map_err(|e| e.to_string())
            .and_then(|b| self.store.put(EXECUTIONS, &st.record.arn, &b).map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::error!(execution = %st.record.arn, "persisting execution: {e}");
        }
    }

    /// Performs actions: tasks and timers run as their own tasks and report back.
    fn perform(self: &Arc<Self>, entry: &Arc<ExecEntry>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::InvokeTask { .. } => self.spawn_task(entry, action),
                Action::Wait { timer_id, until } => {
                    let entry = entry.clone();
                    tokio::spawn(async move {
                        sleep_until(until).await;
                        entry.send(Event::TimerFired { timer_id });
                    });
                }
                // The execution's status says it ended; nothing to do.
                Action::Succeed { .. } | Action::Fail { .. } => {}
            }
        }
    }

    fn arm_machine_timeout(&self, entry: &Arc<ExecEntry>) {
        if let Some(secs) = entry.machine.timeout_seconds {
            let start = entry.state.lock().record.start_date;
            let until = start + chrono::Duration::seconds(secs.min(i64::MAX as u64 / 1000) as i64);
            let entry = entry.clone();
            tokio::spawn(async move {
                sleep_until(until).await;
                entry.send(Event::TimedOut);
            });
        }
    }

    /// The execution ended: wake `.sync` parents and StartSyncExecution callers, forget
    /// its task tokens.
    pub(crate) fn finish(&self, entry: &ExecEntry) {
        self.forget_tokens(&entry.arn);
        entry.done.send_replace(true);
    }
}

pub(crate) const EXECUTIONS: &str = "sfn.executions";

pub(crate) fn history_collection(arn: &str) -> String {
    format!("sfn.history:{arn}")
}

fn history_key(first_id: u64) -> String {
    format!("{first_id:012}")
}

pub(crate) async fn sleep_until(until: DateTime<Utc>) {
    let wait = (until - Utc::now()).to_std().unwrap_or_default();
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}
