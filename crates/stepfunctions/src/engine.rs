//! The engine: state machines (in memory, written through to the store) and executions.
use crate::driver::{EXECUTIONS, ExecEntry, ExecRecord, history_collection};
use crate::names::{check_arn, check_name, check_role_arn, execution_arn, machine_arn};
use crate::tasks::TokenEntry;
use crate::{
    CreateStateMachine, Error, ExecutionInfo, HistoryQuery, LoggingConfiguration, MachineForExecution, Page,
    StartExecution, StateMachineInfo, StateMachineType, SyncExecutionResult, TaskInvoker, UpdateStateMachine,
};
use chrono::{DateTime, Utc};
use nimbus_store::Store;
use nimbus_workflows::{Event, Execution, ExecutionContext, ExecutionStatus, HistoryEvent, StateMachine};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

const MACHINES: &str = "sfn.state-machines";
/// AWS's limits: 256 KiB of input/output, 50 tags per resource.
const MAX_PAYLOAD: usize = 256 * 1024;
const MAX_TAGS: usize = 50;

struct MachineEntry {
    info: StateMachineInfo,
    parsed: Arc<StateMachine>,
}

pub struct StepFunctionsEngine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) invoker: Arc<dyn TaskInvoker>,
    machines: RwLock<BTreeMap<String, Arc<MachineEntry>>>,
    executions: RwLock<HashMap<String, Arc<ExecEntry>>>,
    /// Standard execution ARNs per state machine, oldest first.
    by_machine: RwLock<HashMap<String, Vec<String>>>,
    pub(crate) tokens: Mutex<HashMap<String, TokenEntry>>,
    me: std::sync::Weak<StepFunctionsEngine>,
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Store(nimbus_store::StoreError::Corrupt(format!("{what} {key}: {e}"))))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Internal(e.to_string()))
}

/// Offsets into listings, as opaque tokens.
fn offset(token: Option<&str>) -> Result<usize, Error> {
    match token {
        None => Ok(0),
        Some(t) => t.parse().map_err(|_| Error::InvalidToken(format!("Invalid Token: '{t}'"))),
    }
}

fn paginate<T>(all: Vec<T>, max: Option<usize>, token: Option<&str>) -> Result<Page<T>, Error> {
    let start = offset(token)?;
    // maxResults 0 means the default (100 for listings, 1000 for history), as on AWS.
    let max = max.filter(|m| *m > 0).unwrap_or(100).min(1000);
    let total = all.len();
    let items: Vec<T> = all.into_iter().skip(start).take(max).collect();
    let next = (start + items.len() < total).then(|| (start + items.len()).to_string());
    Ok(Page { items, next })
}

fn check_input(input: Option<&str>) -> Result<(String, serde_json::Value), Error> {
    let text = input.unwrap_or("{}");
    if text.len() > MAX_PAYLOAD {
        return Err(Error::InvalidExecutionInput(
            "Invalid State Machine Execution Input: 'The input size exceeds the maximum 262144 bytes'".into(),
        ));
    }
    let value = serde_json::from_str(text)
        .map_err(|e| Error::InvalidExecutionInput(format!("Invalid State Machine Execution Input: '{e}'")))?;
    Ok((text.to_string(), value))
}

impl StepFunctionsEngine {
    /// Loads state machines and executions from the store and resumes every RUNNING
    /// standard execution where it stopped. Must run inside a tokio runtime.
    pub fn open(
        store: Arc<dyn Store>,
        invoker: Arc<dyn TaskInvoker>,
    ) -> Result<Arc<StepFunctionsEngine>, Error> {
        let engine = Arc::new_cyclic(|me| StepFunctionsEngine {
            store,
            invoker,
            machines: RwLock::default(),
            executions: RwLock::default(),
            by_machine: RwLock::default(),
            tokens: Mutex::default(),
            me: me.clone(),
        });
        for (key, bytes) in engine.store.list(MACHINES)? {
            let info: StateMachineInfo = decode("state machine", &key, &bytes)?;
            let parsed = match StateMachine::parse(&info.definition) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    tracing::error!("state machine {key} no longer parses ({e}); skipped");
                    continue;
                }
            };
            engine.machines.write().insert(info.arn.clone(), Arc::new(MachineEntry { info, parsed }));
        }
        let mut records: Vec<ExecRecord> = Vec::new();
        for (key, bytes) in engine.store.list(EXECUTIONS)? {
            records.push(decode("execution", &key, &bytes)?);
        }
        records.sort_by_key(|r| r.start_date);
        let mut resumed = 0;
        for record in records {
            let mut history: Vec<HistoryEvent> = Vec::new();
            for (key, bytes) in engine.store.list(&history_collection(&record.arn))? {
                // Keep the gapless run of ids: a batch written just before a crash, whose
                // record never followed, is dropped (and rewritten under the same key).
                for event in decode::<Vec<HistoryEvent>>("history", &key, &bytes)? {
                    if event.id == history.len() as u64 + 1 {
                        history.push(event);
                    }
                }
            }
            history.truncate(record.history_len as usize);
            let machine = match StateMachine::parse(&record.machine.definition) {
                Ok(m) => Arc::new(m),
                Err(e) => {
                    tracing::error!("execution {} has a definition that no longer parses ({e})", record.arn);
                    continue;
                }
            };
            let running = !record.execution.is_finished();
            let outstanding = record.execution.outstanding();
            let (arn, machine_arn) = (record.arn.clone(), record.machine.arn.clone());
            let (entry, rx) = ExecEntry::new(record, history, machine, true);
            engine.executions.write().insert(arn.clone(), entry.clone());
            engine.by_machine.write().entry(machine_arn).or_default().push(arn);
            if running {
                resumed += 1;
                tokio::spawn(engine.clone().drive(entry, rx, outstanding));
            }
        }
        if resumed > 0 {
            tracing::info!("step functions: resumed {resumed} running executions");
        }
        Ok(engine)
    }

    fn arc(&self) -> Result<Arc<StepFunctionsEngine>, Error> {
        self.me.upgrade().ok_or_else(|| Error::Internal("engine is shutting down".into()))
    }

    pub fn state_machine_count(&self) -> usize {
        self.machines.read().len()
    }

    fn machine(&self, arn: &str) -> Result<Arc<MachineEntry>, Error> {
        check_arn(arn, "stateMachine")?;
        self.machines
            .read()
            .get(arn)
            .cloned()
            .ok_or_else(|| Error::StateMachineDoesNotExist(format!("State Machine Does Not Exist: '{arn}'")))
    }

    fn execution(&self, arn: &str) -> Result<Arc<ExecEntry>, Error> {
        if check_arn(arn, "execution").is_err() {
            check_arn(arn, "express")?;
        }
        self.executions
            .read()
            .get(arn)
            .cloned()
            .ok_or_else(|| Error::ExecutionDoesNotExist(format!("Execution Does Not Exist: '{arn}'")))
    }

    fn save_machine(&self, info: &StateMachineInfo) -> Result<(), Error> {
        self.store.put(MACHINES, &info.arn, &encode(info)?)?;
        Ok(())
    }

    fn parse_definition(definition: &str) -> Result<StateMachine, Error> {
        StateMachine::parse(definition).map_err(|e| Error::InvalidDefinition(e.to_string()))
    }

    // ---- state machines ---------------------------------------------------------------

    /// CreateStateMachine. Creating the same name again with the same definition, role
    /// and type returns the existing machine, as AWS does.
    pub fn create_state_machine(&self, req: CreateStateMachine) -> Result<StateMachineInfo, Error> {
        check_name(&req.name)?;
        check_role_arn(&req.role_arn)?;
        if req.tags.len() > MAX_TAGS {
            return Err(Error::TooManyTags(format!(
                "Too many tags: {} (at most {MAX_TAGS})",
                req.tags.len()
            )));
        }
        let parsed = Arc::new(Self::parse_definition(&req.definition)?);
        let logging =
            req.logging.unwrap_or_else(|| LoggingConfiguration { level: "OFF".into(), ..Default::default() });
        check_logging(&logging)?;
        let arn = machine_arn(&req.region, &req.account, &req.name);
        let mut machines = self.machines.write();
        if let Some(existing) = machines.get(&arn) {
            let same = existing.info.definition == req.definition
                && existing.info.role_arn == req.role_arn
                && existing.info.machine_type == req.machine_type;
            return if same {
                Ok(existing.info.clone())
            } else {
                Err(Error::StateMachineAlreadyExists(format!("State Machine Already Exists: '{arn}'")))
            };
        }
        let info = StateMachineInfo {
            arn: arn.clone(),
            name: req.name,
            definition: req.definition,
            role_arn: req.role_arn,
            machine_type: req.machine_type,
            creation_date: Utc::now(),
            update_date: None,
            revision_id: uuid::Uuid::new_v4().to_string(),
            logging,
            tracing_enabled: req.tracing_enabled,
            description: None,
            tags: req.tags.into_iter().collect(),
        };
        self.save_machine(&info)?;
        machines.insert(arn, Arc::new(MachineEntry { info: info.clone(), parsed }));
        Ok(info)
    }

    pub fn describe_state_machine(&self, arn: &str) -> Result<StateMachineInfo, Error> {
        Ok(self.machine(arn)?.info.clone())
    }

    /// UpdateStateMachine; running executions keep the definition they started with.
    pub fn update_state_machine(&self, req: UpdateStateMachine) -> Result<StateMachineInfo, Error> {
        let current = self.machine(&req.arn)?;
        if req.definition.is_none()
            && req.role_arn.is_none()
            && req.logging.is_none()
            && req.tracing_enabled.is_none()
        {
            return Err(Error::Validation(
                "Either the definition, the roleArn, the loggingConfiguration or the tracingConfiguration must be specified"
                    .into(),
            ));
        }
        if let Some(role) = &req.role_arn {
            check_role_arn(role)?;
        }
        if let Some(l) = &req.logging {
            check_logging(l)?;
        }
        let parsed = match &req.definition {
            Some(d) => Arc::new(Self::parse_definition(d)?),
            None => current.parsed.clone(),
        };
        let mut info = current.info.clone();
        if let Some(d) = req.definition {
            info.definition = d;
        }
        if let Some(r) = req.role_arn {
            info.role_arn = r;
        }
        if let Some(l) = req.logging {
            info.logging = l;
        }
        if let Some(t) = req.tracing_enabled {
            info.tracing_enabled = t;
        }
        info.update_date = Some(Utc::now());
        info.revision_id = uuid::Uuid::new_v4().to_string();
        let mut machines = self.machines.write();
        if !machines.contains_key(&info.arn) {
            return Err(Error::StateMachineDoesNotExist(format!(
                "State Machine Does Not Exist: '{}'",
                info.arn
            )));
        }
        self.save_machine(&info)?;
        machines.insert(info.arn.clone(), Arc::new(MachineEntry { info: info.clone(), parsed }));
        Ok(info)
    }

    /// DeleteStateMachine: the machine goes; its executions stay describable.
    pub fn delete_state_machine(&self, arn: &str) -> Result<(), Error> {
        check_arn(arn, "stateMachine")?;
        let mut machines = self.machines.write();
        if machines.remove(arn).is_some() {
            self.store.delete(MACHINES, arn)?;
        }
        Ok(())
    }

    pub fn list_state_machines(
        &self,
        account: &str,
        region: &str,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page<StateMachineInfo>, Error> {
        let prefix = format!("arn:aws:states:{region}:{account}:stateMachine:");
        let all: Vec<StateMachineInfo> = self
            .machines
            .read()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, m)| m.info.clone())
            .collect();
        paginate(all, max_results, next_token)
    }

    // ---- tags ---------------------------------------------------------------------------

    fn with_tags<T>(
        &self,
        arn: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let missing = || Error::ResourceNotFound(format!("Resource not found: '{arn}'"));
        let mut machines = self.machines.write();
        let current = machines.get(arn).ok_or_else(missing)?;
        let mut info = current.info.clone();
        let out = change(&mut info.tags)?;
        if info.tags != current.info.tags {
            self.save_machine(&info)?;
            let parsed = current.parsed.clone();
            machines.insert(arn.to_string(), Arc::new(MachineEntry { info, parsed }));
        }
        Ok(out)
    }

    pub fn tag_resource(&self, arn: &str, tags: Vec<(String, String)>) -> Result<(), Error> {
        self.with_tags(arn, |current| {
            current.extend(tags);
            if current.len() > MAX_TAGS {
                return Err(Error::TooManyTags(format!("Too many tags: at most {MAX_TAGS} per resource")));
            }
            Ok(())
        })
    }

    pub fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<(), Error> {
        self.with_tags(arn, |current| {
            for k in keys {
                current.remove(k);
            }
            Ok(())
        })
    }

    pub fn list_tags(&self, arn: &str) -> Result<BTreeMap<String, String>, Error> {
        self.with_tags(arn, |current| Ok(current.clone()))
    }

    // ---- executions ---------------------------------------------------------------------

    /// Creates and starts an execution; standard ones are persisted before this returns.
    /// `reuse_closed`: a nested start finds the child it already started even if it ended.
    fn launch(&self, req: StartExecution, reuse_closed: bool) -> Result<Arc<ExecEntry>, Error> {
        let machine = self.machine(&req.state_machine_arn)?;
        let name = match req.name {
            Some(n) => {
                check_name(&n)?;
                n
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let (input_text, input) = check_input(req.input.as_deref())?;
        let durable = machine.info.machine_type == StateMachineType::Standard;
        let arn = execution_arn(&machine.info.arn, &name, !durable);
        if durable && let Some(existing) = self.executions.read().get(&arn).cloned() {
            // Same name and input as a running execution: the same answer (idempotent).
            let st = existing.state.lock();
            let reusable =
                st.record.input == input_text && (reuse_closed || !st.record.execution.is_finished());
            drop(st);
            return if reusable {
                Ok(existing)
            } else {
                Err(Error::ExecutionAlreadyExists(format!("Execution Already Exists: '{arn}'")))
            };
        }
        let now = Utc::now();
        let context = ExecutionContext {
            execution_arn: arn.clone(),
            execution_name: name.clone(),
            state_machine_arn: machine.info.arn.clone(),
            state_machine_name: machine.info.name.clone(),
            role_arn: machine.info.role_arn.clone(),
            start_time: now,
            seed: rand_seed(),
        };
        let mut execution = Execution::new(&machine.parsed, input, context);
        let step = execution.start(&machine.parsed).map_err(|e| Error::Internal(e.to_string()))?;
        let finished = execution.is_finished();
        let record = ExecRecord {
            arn: arn.clone(),
            name,
            machine: machine.info.clone(),
            start_date: now,
            stop_date: finished.then_some(now),
            input: input_text,
            execution,
            history_len: 0,
        };
        let (entry, rx) = ExecEntry::new(record, step.history, machine.parsed.clone(), durable);
        if durable {
            let mut executions = self.executions.write();
            if executions.contains_key(&arn) {
                // Lost a race with a concurrent start of the same name.
                return Err(Error::ExecutionAlreadyExists(format!("Execution Already Exists: '{arn}'")));
            }
            self.persist(&mut entry.state.lock(), 0);
            executions.insert(arn.clone(), entry.clone());
            self.by_machine.write().entry(machine.info.arn.clone()).or_default().push(arn);
        }
        if finished {
            // Nothing to drive: a machine of Pass/Choice states ends within `start`.
            self.finish(&entry);
        } else {
            tokio::spawn(self.arc()?.drive(entry.clone(), rx, step.actions));
        }
        Ok(entry)
    }

    /// StartExecution: returns the execution ARN and start date.
    pub fn start_execution(&self, req: StartExecution) -> Result<(String, DateTime<Utc>), Error> {
        let entry = self.launch(req, false)?;
        let start = entry.state.lock().record.start_date;
        Ok((entry.arn.clone(), start))
    }

    pub(crate) fn start_child(&self, req: StartExecution) -> Result<Arc<ExecEntry>, Error> {
        self.launch(req, true)
    }

    /// StartSyncExecution: runs an EXPRESS execution to its end, in memory.
    pub async fn start_sync_execution(&self, req: StartExecution) -> Result<SyncExecutionResult, Error> {
        let machine = self.machine(&req.state_machine_arn)?;
        if machine.info.machine_type != StateMachineType::Express {
            return Err(Error::StateMachineTypeNotSupported(
                "This operation is not supported by this type of state machine".into(),
            ));
        }
        let started = Instant::now();
        let entry = self.launch(req, false)?;
        entry.wait().await;
        let elapsed = started.elapsed().as_millis() as u64;
        let execution = entry.state.lock().info();
        // Express billing: 100 ms increments, 64 MB minimum.
        Ok(SyncExecutionResult {
            execution,
            billed_duration_ms: elapsed.div_ceil(100).max(1) * 100,
            billed_memory_mb: 64,
        })
    }

    pub fn describe_execution(&self, arn: &str) -> Result<ExecutionInfo, Error> {
        Ok(self.execution(arn)?.state.lock().info())
    }

    pub fn describe_state_machine_for_execution(&self, arn: &str) -> Result<MachineForExecution, Error> {
        let entry = self.execution(arn)?;
        let st = entry.state.lock();
        let m = &st.record.machine;
        Ok(MachineForExecution {
            state_machine_arn: m.arn.clone(),
            name: m.name.clone(),
            definition: m.definition.clone(),
            role_arn: m.role_arn.clone(),
            update_date: m.update_date.unwrap_or(m.creation_date),
            revision_id: m.revision_id.clone(),
            logging: m.logging.clone(),
            tracing_enabled: m.tracing_enabled,
        })
    }

    /// ListExecutions, newest first.
    pub fn list_executions(
        &self,
        state_machine_arn: &str,
        status: Option<ExecutionStatus>,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<Page<ExecutionInfo>, Error> {
        let machine = self.machine(state_machine_arn)?;
        if machine.info.machine_type == StateMachineType::Express {
            return Err(Error::StateMachineTypeNotSupported(
                "This operation is not supported by this type of state machine".into(),
            ));
        }
        let arns = self.by_machine.read().get(state_machine_arn).cloned().unwrap_or_default();
        let executions = self.executions.read();
        let all: Vec<ExecutionInfo> = arns
            .iter()
            .rev()
            .filter_map(|a| executions.get(a))
            .map(|e| e.state.lock().info())
            .filter(|i| status.is_none_or(|s| i.status == s))
            .collect();
        drop(executions);
        paginate(all, max_results, next_token)
    }

    /// StopExecution: aborts a running execution; returns when the abort is durable.
    pub async fn stop_execution(
        &self,
        arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<DateTime<Utc>, Error> {
        let entry = self.execution(arn)?;
        if let Some(stopped) = entry.state.lock().record.stop_date {
            // Stopping an ended execution changes nothing (AWS answers with its stop date).
            return Ok(stopped);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        if entry.tx.send(crate::driver::Msg::Stop { error, cause, reply }).is_err() {
            return Ok(entry.state.lock().record.stop_date.unwrap_or_else(Utc::now));
        }
        Ok(answer.await.unwrap_or_else(|_| Utc::now()))
    }

    /// GetExecutionHistory.
    pub fn execution_history(&self, q: HistoryQuery) -> Result<Page<HistoryEvent>, Error> {
        let entry = self.execution(&q.execution_arn)?;
        let st = entry.state.lock();
        let start = offset(q.next_token.as_deref())?;
        let max = q.max_results.filter(|m| *m > 0).unwrap_or(1000).min(1000);
        let total = st.history.len();
        let items: Vec<HistoryEvent> = if q.reverse_order {
            st.history.iter().rev().skip(start).take(max).cloned().collect()
        } else {
            st.history.iter().skip(start).take(max).cloned().collect()
        };
        let next = (start + items.len() < total).then(|| (start + items.len()).to_string());
        Ok(Page { items, next })
    }

    // ---- task tokens ----------------------------------------------------------------------

    fn token(&self, token: &str) -> Result<(), Error> {
        if token.is_empty() || token.len() > 1024 {
            return Err(Error::InvalidToken(format!("Invalid Token: '{token}'")));
        }
        Ok(())
    }

    fn take_token(&self, token: &str) -> Result<TokenEntry, Error> {
        self.token(token)?;
        self.tokens.lock().remove(token).ok_or_else(|| Error::TaskDoesNotExist("Task Does Not Exist".into()))
    }

    pub fn send_task_success(&self, token: &str, output: &str) -> Result<(), Error> {
        let output = serde_json::from_str(output)
            .map_err(|e| Error::InvalidOutput(format!("Invalid Output: '{e}'")))?;
        let t = self.take_token(token)?;
        t.execution.send(Event::TaskSucceeded { task_id: t.task_id, output });
        Ok(())
    }

    pub fn send_task_failure(
        &self,
        token: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<(), Error> {
        let t = self.take_token(token)?;
        let (error, cause) = (error.unwrap_or_default(), cause.unwrap_or_default());
        t.execution.send(Event::TaskFailed { task_id: t.task_id, error, cause });
        Ok(())
    }

    pub fn send_task_heartbeat(&self, token: &str) -> Result<(), Error> {
        self.token(token)?;
        let mut tokens = self.tokens.lock();
        let t = tokens.get_mut(token).ok_or_else(|| Error::TaskDoesNotExist("Task Does Not Exist".into()))?;
        t.last_heartbeat = Instant::now();
        Ok(())
    }

    pub(crate) fn forget_tokens(&self, execution: &str) {
        self.tokens.lock().retain(|_, t| t.execution.arn != execution);
    }
}

fn check_logging(l: &LoggingConfiguration) -> Result<(), Error> {
    if !["ALL", "ERROR", "FATAL", "OFF"].contains(&l.level.as_str()) {
        return Err(Error::InvalidLoggingConfiguration(format!(
            "Invalid Logging Configuration: level '{}'",
            l.level
        )));
    }
    if l.level != "OFF" && l.destinations.is_empty() {
        return Err(Error::InvalidLoggingConfiguration(
            "Invalid Logging Configuration: Must specify exactly one Log Destination.".into(),
        ));
    }
    Ok(())
}

/// Seeds an execution's deterministic random numbers (MathRandom, UUID, jitter, tokens).
fn rand_seed() -> u64 {
    let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
    a ^ b
}
