//! EventBridge for Nimbus: event buses, rules (event patterns and schedules) and their
//! targets, durable over the `Store`; PutEvents routes matching events to targets, and a
//! scheduler fires schedule rules. Delivery goes through `TargetInvoker`, which the binary
//! wires to Lambda, Step Functions, SQS and ECS — this crate knows targets only by ARN
//! (and an ECS target's `EcsParameters`).
#![forbid(unsafe_code)]

mod input;

pub use input::{InputTransformer, transform_input};

use chrono::{DateTime, SecondsFormat, Utc};
use nimbus_events::{FlatEvent, Pattern, Schedule};
use nimbus_store::{Store, StoreError};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

const RULES: &str = "events.rules";
const BUSES: &str = "events.buses";
pub const DEFAULT_BUS: &str = "default";
/// AWS quotas.
pub const MAX_TARGETS_PER_RULE: usize = 5;
pub const MAX_PUT_EVENTS_ENTRIES: usize = 10;
pub const MAX_PUT_EVENTS_BYTES: usize = 256 * 1024;
pub const DEFAULT_MAX_RETRY_ATTEMPTS: u32 = 185;
pub const DEFAULT_MAX_EVENT_AGE_SECS: u64 = 86_400;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidPattern(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// Delivers one event (already shaped by the target's Input settings) to a target ARN.
pub trait TargetInvoker: Send + Sync + 'static {
    fn deliver<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        target_arn: &'a str,
        input: String,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// Runs an ECS target's task(s) (a target whose ARN is a cluster, with `EcsParameters`).
    /// The default is for builds (and tests) without ECS.
    fn run_ecs_task<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        launch: EcsLaunch,
    ) -> BoxFuture<'a, Result<(), String>> {
        let _ = (account, region);
        Box::pin(async move {
            Err(format!("ECS targets are not supported by this Nimbus build ({})", launch.cluster_arn))
        })
    }
}

/// One matched event's ECS launch.
#[derive(Debug, Clone, PartialEq)]
pub struct EcsLaunch {
    pub cluster_arn: String,
    /// Tasks are started by `events-rule/<rule name>`, as on AWS.
    pub rule_name: String,
    pub parameters: EcsParameters,
    /// The target's Input / InputPath / InputTransformer result when it has one: for ECS
    /// targets that text is the task override (AWS does not hand the event itself to the task).
    pub overrides: Option<String>,
}

/// What one matched event sends to one target.
enum Delivery {
    /// The shaped input, to `TargetInvoker::deliver`.
    Input(String),
    Ecs(Box<EcsLaunch>),
}

/// A target's `EcsParameters`: how to call RunTask on the target cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EcsParameters {
    pub task_definition_arn: String,
    /// 1 when absent.
    pub task_count: Option<u32>,
    pub launch_type: Option<String>,
    pub network_configuration: Option<EcsNetworkConfiguration>,
    pub platform_version: Option<String>,
    pub group: Option<String>,
    pub enable_ecs_managed_tags: bool,
    pub enable_execute_command: bool,
    /// (type, expression)
    pub placement_constraints: Vec<(String, Option<String>)>,
    /// (type, field)
    pub placement_strategy: Vec<(String, Option<String>)>,
    pub propagate_tags: Option<String>,
    pub reference_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// `awsvpcConfiguration` of an ECS target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EcsNetworkConfiguration {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleState {
    #[serde(rename = "ENABLED")]
    Enabled,
    #[serde(rename = "DISABLED")]
    Disabled,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_in_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub arn: String,
    pub role_arn: Option<String>,
    pub input: Option<String>,
    pub input_path: Option<String>,
    pub input_transformer: Option<InputTransformer>,
    pub retry_policy: Option<RetryPolicy>,
    pub dead_letter_arn: Option<String>,
    /// Set for ECS cluster targets (absent in records written before ECS existed).
    #[serde(default)]
    pub ecs_parameters: Option<EcsParameters>,
}

impl Target {
    fn has_input_settings(&self) -> bool {
        self.input.is_some() || self.input_path.is_some() || self.input_transformer.is_some()
    }

    /// An ECS cluster ARN (`arn:aws:ecs:…:cluster/…`): the target runs tasks.
    pub fn is_ecs_cluster(&self) -> bool {
        self.arn.split(':').nth(2) == Some("ecs")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub account: String,
    pub region: String,
    pub name: String,
    pub event_bus_name: String,
    pub arn: String,
    pub event_pattern: Option<String>,
    pub schedule_expression: Option<String>,
    pub state: RuleState,
    pub description: Option<String>,
    pub role_arn: Option<String>,
    pub targets: Vec<Target>,
    /// When a rate schedule counts from (creation or last enabling), ms since the epoch.
    pub anchor_ms: i64,
    /// The last schedule tick fired, ms since the epoch (persisted before delivery, so a
    /// tick never fires twice, also across a restart).
    pub last_fire_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBus {
    pub account: String,
    pub region: String,
    pub name: String,
    pub arn: String,
    pub description: Option<String>,
    pub created_ms: i64,
}

/// A PutRule request.
#[derive(Debug, Clone, Default)]
pub struct PutRule {
    pub name: String,
    pub event_bus_name: Option<String>,
    pub event_pattern: Option<String>,
    pub schedule_expression: Option<String>,
    pub state: Option<RuleState>,
    pub description: Option<String>,
    pub role_arn: Option<String>,
}

/// One PutEvents entry.
#[derive(Debug, Clone, Default)]
pub struct EventEntry {
    pub source: Option<String>,
    pub detail_type: Option<String>,
    pub detail: Option<String>,
    pub resources: Vec<String>,
    pub time: Option<DateTime<Utc>>,
    pub event_bus_name: Option<String>,
}

/// One PutEvents result: an event id, or an error code and message.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryResult {
    Accepted { event_id: String },
    Failed { code: &'static str, message: String },
}

#[derive(Debug, Clone)]
struct CompiledRule {
    rule: Rule,
    pattern: Option<Arc<Pattern>>,
    schedule: Option<Schedule>,
}

/// The pattern rules of one bus, with the union of the paths they test.
#[derive(Default)]
struct BusRules {
    rules: Vec<Arc<CompiledRule>>,
    paths: HashSet<String>,
}

#[derive(Default)]
struct State {
    /// `account:region:bus:rule` → rule.
    rules: BTreeMap<String, Arc<CompiledRule>>,
    /// `account:region:bus` → its pattern rules (derived from `rules`, rebuilt on change).
    pattern_rules: BTreeMap<String, BusRules>,
    /// `account:region:bus` → custom bus (the default bus always exists).
    buses: BTreeMap<String, EventBus>,
}

impl State {
    /// Rebuilds the routing view of the bus that `rule_key` belongs to.
    fn reindex(&mut self, rule_key: &str) {
        let Some(bus) = rule_key.rsplit_once(':').map(|(b, _)| b.to_string()) else { return };
        let prefix = format!("{bus}:");
        let mut view = BusRules::default();
        for (_, r) in self.rules.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
            if let Some(p) = &r.pattern {
                view.paths.extend(p.paths().iter().cloned());
                view.rules.push(r.clone());
            }
        }
        if view.rules.is_empty() {
            self.pattern_rules.remove(&bus);
        } else {
            self.pattern_rules.insert(bus, view);
        }
    }
}

fn rule_key(account: &str, region: &str, bus: &str, name: &str) -> String {
    format!("{account}:{region}:{bus}:{name}")
}

fn bus_key(account: &str, region: &str, bus: &str) -> String {
    format!("{account}:{region}:{bus}")
}

pub fn bus_arn(account: &str, region: &str, bus: &str) -> String {
    format!("arn:aws:events:{region}:{account}:event-bus/{bus}")
}

fn rule_arn(account: &str, region: &str, bus: &str, name: &str) -> String {
    if bus == DEFAULT_BUS {
        format!("arn:aws:events:{region}:{account}:rule/{name}")
    } else {
        format!("arn:aws:events:{region}:{account}:rule/{bus}/{name}")
    }
}

/// `EventBusName` may be a name or an ARN.
fn bus_name(given: Option<&str>) -> String {
    match given {
        None | Some("") => DEFAULT_BUS.to_string(),
        Some(s) => s.rsplit_once("event-bus/").map(|(_, n)| n.to_string()).unwrap_or_else(|| s.to_string()),
    }
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub struct EventBridgeEngine {
    store: Arc<dyn Store>,
    invoker: Arc<dyn TargetInvoker>,
    state: RwLock<State>,
    /// Wakes the scheduler when schedule rules change.
    schedules_changed: tokio::sync::Notify,
    /// First retry delay of a failed delivery (doubles, capped at a minute).
    retry_delay: Duration,
}

impl EventBridgeEngine {
    pub fn open(
        store: Arc<dyn Store>,
        invoker: Arc<dyn TargetInvoker>,
        retry_delay: Duration,
    ) -> Result<Arc<EventBridgeEngine>, Error> {
        let mut state = State::default();
        for (key, raw) in store.list(RULES)? {
            let rule: Rule =
                serde_json::from_slice(&raw).map_err(|e| Error::Corrupt(format!("{key}: {e}")))?;
            state.rules.insert(key, Arc::new(compile(rule)?));
        }
        let buses: std::collections::BTreeSet<String> =
            state.rules.keys().filter_map(|k| k.rsplit_once(':').map(|(b, _)| format!("{b}:"))).collect();
        for bus in buses {
            state.reindex(&bus);
        }
        for (key, raw) in store.list(BUSES)? {
            let bus: EventBus =
                serde_json::from_slice(&raw).map_err(|e| Error::Corrupt(format!("{key}: {e}")))?;
            state.buses.insert(key, bus);
        }
        Ok(Arc::new(EventBridgeEngine {
            store,
            invoker,
            state: RwLock::new(state),
            schedules_changed: tokio::sync::Notify::new(),
            retry_delay,
        }))
    }

    // -- buses -------------------------------------------------------------------------

    fn bus_exists(&self, account: &str, region: &str, bus: &str) -> bool {
        bus == DEFAULT_BUS || self.state.read().buses.contains_key(&bus_key(account, region, bus))
    }

    fn require_bus(&self, account: &str, region: &str, bus: &str) -> Result<(), Error> {
        if self.bus_exists(account, region, bus) {
            Ok(())
        } else {
            Err(Error::NotFound(format!("Event bus {bus} does not exist.")))
        }
    }

    pub fn create_event_bus(
        &self,
        account: &str,
        region: &str,
        name: &str,
        description: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<EventBus, Error> {
        if !valid_name(name, 256) || name == DEFAULT_BUS || name.starts_with("aws.") {
            return Err(Error::Validation(format!("Event bus name {name} is not valid.")));
        }
        let key = bus_key(account, region, name);
        let bus = EventBus {
            account: account.into(),
            region: region.into(),
            name: name.into(),
            arn: bus_arn(account, region, name),
            description,
            created_ms: now.timestamp_millis(),
        };
        let mut state = self.state.write();
        if state.buses.contains_key(&key) {
            return Err(Error::AlreadyExists(format!("Event bus {name} already exists.")));
        }
        self.store.put(BUSES, &key, &serde_json::to_vec(&bus).map_err(|e| Error::Corrupt(e.to_string()))?)?;
        state.buses.insert(key, bus.clone());
        Ok(bus)
    }

    pub fn describe_event_bus(
        &self,
        account: &str,
        region: &str,
        name: Option<&str>,
    ) -> Result<EventBus, Error> {
        let name = bus_name(name);
        if name == DEFAULT_BUS {
            return Ok(EventBus {
                account: account.into(),
                region: region.into(),
                arn: bus_arn(account, region, DEFAULT_BUS),
                name,
                description: None,
                created_ms: 0,
            });
        }
        self.state
            .read()
            .buses
            .get(&bus_key(account, region, &name))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("Event bus {name} does not exist.")))
    }

    pub fn list_event_buses(&self, account: &str, region: &str, prefix: Option<&str>) -> Vec<EventBus> {
        let mut out =
            vec![self.describe_event_bus(account, region, None).unwrap_or_else(|_| unreachable_bus())];
        let state = self.state.read();
        out.extend(state.buses.values().filter(|b| b.account == account && b.region == region).cloned());
        out.retain(|b| prefix.is_none_or(|p| b.name.starts_with(p)));
        out
    }

    /// Deleting a bus that does not exist succeeds, as on AWS; its rules go with it.
    pub fn delete_event_bus(&self, account: &str, region: &str, name: &str) -> Result<(), Error> {
        if name == DEFAULT_BUS {
            return Err(Error::Validation("Cannot delete event bus default.".into()));
        }
        let key = bus_key(account, region, name);
        let mut state = self.state.write();
        self.store.delete(BUSES, &key)?;
        state.buses.remove(&key);
        let prefix = format!("{key}:");
        let doomed: Vec<String> = state.rules.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
        for k in doomed {
            self.store.delete(RULES, &k)?;
            state.rules.remove(&k);
        }
        state.pattern_rules.remove(&key);
        Ok(())
    }

    // -- rules -------------------------------------------------------------------------

    pub fn put_rule(
        &self,
        account: &str,
        region: &str,
        req: PutRule,
        now: DateTime<Utc>,
    ) -> Result<String, Error> {
        if !valid_name(&req.name, 64) {
            return Err(Error::Validation(format!(
                "1 validation error detected: Value '{}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+",
                req.name
            )));
        }
        let bus = bus_name(req.event_bus_name.as_deref());
        self.require_bus(account, region, &bus)?;
        if req.event_pattern.is_none() && req.schedule_expression.is_none() {
            return Err(Error::Validation(
                "Parameter(s) EventPattern or ScheduleExpression must be specified.".into(),
            ));
        }
        if req.schedule_expression.is_some() && bus != DEFAULT_BUS {
            return Err(Error::Validation(
                "ScheduleExpression is supported only on the default event bus.".into(),
            ));
        }
        let key = rule_key(account, region, &bus, &req.name);
        let mut state = self.state.write();
        let previous = state.rules.get(&key).map(|r| r.rule.clone());
        let new_state = req.state.or(previous.as_ref().map(|p| p.state)).unwrap_or(RuleState::Enabled);
        let schedule_changed = previous.as_ref().is_none_or(|p| {
            p.schedule_expression != req.schedule_expression
                || (p.state != new_state && new_state == RuleState::Enabled)
        });
        let rule = Rule {
            account: account.into(),
            region: region.into(),
            arn: rule_arn(account, region, &bus, &req.name),
            name: req.name,
            event_bus_name: bus,
            event_pattern: req.event_pattern,
            schedule_expression: req.schedule_expression,
            state: new_state,
            description: req.description,
            role_arn: req.role_arn,
            targets: previous.as_ref().map(|p| p.targets.clone()).unwrap_or_default(),
            anchor_ms: match (&previous, schedule_changed) {
                (Some(p), false) => p.anchor_ms,
                _ => now.timestamp_millis(),
            },
            last_fire_ms: previous.as_ref().filter(|_| !schedule_changed).and_then(|p| p.last_fire_ms),
        };
        let compiled = compile(rule)?;
        let arn = compiled.rule.arn.clone();
        self.persist(&key, &compiled.rule)?;
        state.rules.insert(key.clone(), Arc::new(compiled));
        state.reindex(&key);
        drop(state);
        self.schedules_changed.notify_one();
        Ok(arn)
    }

    fn persist(&self, key: &str, rule: &Rule) -> Result<(), Error> {
        let raw = serde_json::to_vec(rule).map_err(|e| Error::Corrupt(e.to_string()))?;
        self.store.put(RULES, key, &raw)?;
        Ok(())
    }

    fn get(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        name: &str,
    ) -> Result<(String, Arc<CompiledRule>), Error> {
        let bus = bus_name(bus);
        let key = rule_key(account, region, &bus, name);
        match self.state.read().rules.get(&key) {
            Some(r) => Ok((key, r.clone())),
            None => Err(Error::NotFound(format!("Rule {name} does not exist on EventBus {bus}."))),
        }
    }

    pub fn describe_rule(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        name: &str,
    ) -> Result<Rule, Error> {
        Ok(self.get(account, region, bus, name)?.1.rule.clone())
    }

    pub fn list_rules(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<Vec<Rule>, Error> {
        let bus = bus_name(bus);
        self.require_bus(account, region, &bus)?;
        let key_prefix = format!("{}:", bus_key(account, region, &bus));
        Ok(self
            .state
            .read()
            .rules
            .range(key_prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&key_prefix))
            .filter(|(_, r)| prefix.is_none_or(|p| r.rule.name.starts_with(p)))
            .map(|(_, r)| r.rule.clone())
            .collect())
    }

    fn modify(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Rule) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let (key, current) = self.get(account, region, bus, name)?;
        let mut rule = current.rule.clone();
        f(&mut rule)?;
        let compiled = compile(rule)?;
        self.persist(&key, &compiled.rule)?;
        let mut state = self.state.write();
        state.rules.insert(key.clone(), Arc::new(compiled));
        state.reindex(&key);
        drop(state);
        self.schedules_changed.notify_one();
        Ok(())
    }

    pub fn set_rule_state(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        name: &str,
        state: RuleState,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.modify(account, region, bus, name, |r| {
            if r.state != state && state == RuleState::Enabled {
                // A rate schedule counts from when it is enabled again.
                r.anchor_ms = now.timestamp_millis();
                r.last_fire_ms = None;
            }
            r.state = state;
            Ok(())
        })
    }

    pub fn delete_rule(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        name: &str,
    ) -> Result<(), Error> {
        let bus_n = bus_name(bus);
        let key = rule_key(account, region, &bus_n, name);
        let mut state = self.state.write();
        if let Some(r) = state.rules.get(&key) {
            if !r.rule.targets.is_empty() {
                return Err(Error::Validation("Rule can't be deleted since it has targets.".into()));
            }
        }
        self.store.delete(RULES, &key)?;
        state.rules.remove(&key);
        state.reindex(&key);
        Ok(())
    }

    /// Adds or replaces targets by Id; returns the ids that failed, with why.
    pub fn put_targets(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        name: &str,
        targets: Vec<Target>,
    ) -> Result<Vec<(String, &'static str, String)>, Error> {
        for t in &targets {
            let given = [t.input.is_some(), t.input_path.is_some(), t.input_transformer.is_some()];
            if given.iter().filter(|g| **g).count() > 1 {
                return Err(Error::Validation(
                    "Only one of Input, InputPath, or InputTransformer must be provided.".into(),
                ));
            }
            if let Some(input) = &t.input {
                if serde_json::from_str::<Value>(input).is_err() {
                    return Err(Error::Validation(format!(
                        "Input for target {} is not valid JSON text.",
                        t.id
                    )));
                }
            }
            if !valid_name(&t.id, 64) {
                return Err(Error::Validation(format!("Target id {} is not valid.", t.id)));
            }
            if t.is_ecs_cluster() {
                let Some(p) = &t.ecs_parameters else {
                    return Err(Error::Validation(format!(
                        "Parameter(s) EcsParameters must be specified for target: {}.",
                        t.id
                    )));
                };
                if p.task_definition_arn.is_empty() {
                    return Err(Error::Validation("Parameter TaskDefinitionArn is not valid.".into()));
                }
                if p.task_count == Some(0) {
                    return Err(Error::Validation("Parameter TaskCount is not valid.".into()));
                }
            }
        }
        let mut failed = Vec::new();
        self.modify(account, region, bus, name, |r| {
            for t in targets {
                if !t.arn.starts_with("arn:") {
                    failed.push((t.id.clone(), "ValidationException", format!("Parameter {} is not valid.", t.arn)));
                    continue;
                }
                let count = r.targets.len();
                match r.targets.iter_mut().find(|x| x.id == t.id) {
                    Some(existing) => *existing = t,
                    None if count >= MAX_TARGETS_PER_RULE => {
                        return Err(Error::LimitExceeded(format!(
                            "The requested resource exceeds the maximum number allowed ({MAX_TARGETS_PER_RULE})."
                        )));
                    }
                    None => r.targets.push(t),
                }
            }
            Ok(())
        })?;
        Ok(failed)
    }

    pub fn remove_targets(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        name: &str,
        ids: &[String],
    ) -> Result<Vec<(String, &'static str, String)>, Error> {
        let mut failed = Vec::new();
        self.modify(account, region, bus, name, |r| {
            for id in ids {
                let before = r.targets.len();
                r.targets.retain(|t| &t.id != id);
                if r.targets.len() == before {
                    failed.push((
                        id.clone(),
                        "ResourceNotFoundException",
                        format!("Target {id} does not exist."),
                    ));
                }
            }
            Ok(())
        })?;
        Ok(failed)
    }

    pub fn list_targets(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        name: &str,
    ) -> Result<Vec<Target>, Error> {
        Ok(self.get(account, region, bus, name)?.1.rule.targets.clone())
    }

    // -- events ------------------------------------------------------------------------

    /// PutEvents: validates each entry, shapes it as an EventBridge event, and hands it to
    /// every enabled rule on its bus that matches. Delivery is asynchronous (as on AWS).
    pub fn put_events(
        self: &Arc<Self>,
        account: &str,
        region: &str,
        entries: Vec<EventEntry>,
        now: DateTime<Utc>,
    ) -> Vec<EntryResult> {
        entries
            .into_iter()
            .map(|e| {
                let bus = bus_name(e.event_bus_name.as_deref());
                let invalid = |what: &str, reason: &str| EntryResult::Failed {
                    code: "InvalidArgument",
                    message: format!("Parameter {what} is not valid. Reason: {reason}"),
                };
                let Some(source) = e.source.filter(|s| !s.is_empty()) else {
                    return invalid("Source", "Source is a required argument.");
                };
                let Some(detail_type) = e.detail_type.filter(|s| !s.is_empty()) else {
                    return invalid("DetailType", "DetailType is a required argument.");
                };
                let Some(detail) = e.detail else {
                    return invalid("Detail", "Detail is a required argument.");
                };
                let detail: Value = match serde_json::from_str(&detail) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        return EntryResult::Failed {
                            code: "MalformedDetail",
                            message: "Detail is malformed.".into(),
                        };
                    }
                };
                if !self.bus_exists(account, region, &bus) {
                    return EntryResult::Failed {
                        code: "ResourceNotFoundException",
                        message: format!("Event bus {bus} does not exist."),
                    };
                }
                let id = uuid::Uuid::new_v4().to_string();
                let event = json!({
                    "version": "0",
                    "id": id,
                    "detail-type": detail_type,
                    "source": source,
                    "account": account,
                    "time": iso(e.time.unwrap_or(now)),
                    "region": region,
                    "resources": e.resources,
                    "detail": detail,
                });
                self.route(account, region, &bus, &event, now);
                EntryResult::Accepted { event_id: id }
            })
            .collect()
    }

    /// Sends `event` to the targets of every enabled, matching pattern rule on `bus`.
    fn route(
        self: &Arc<Self>,
        account: &str,
        region: &str,
        bus: &str,
        event: &Value,
        now: DateTime<Utc>,
    ) -> usize {
        let matched: Vec<Arc<CompiledRule>> = {
            let state = self.state.read();
            let key = bus_key(account, region, bus);
            let Some(rules) = state.pattern_rules.get(&key) else { return 0 };
            // One walk of the event serves every rule on the bus.
            let flat = FlatEvent::new(event, &rules.paths);
            rules
                .rules
                .iter()
                .filter(|r| {
                    r.rule.state == RuleState::Enabled
                        && r.pattern.as_ref().is_some_and(|p| p.matches_flat(&flat))
                })
                .cloned()
                .collect()
        };
        for rule in &matched {
            self.deliver_to_targets(rule, event, now);
        }
        matched.len()
    }

    fn deliver_to_targets(self: &Arc<Self>, rule: &CompiledRule, event: &Value, now: DateTime<Utc>) {
        for target in &rule.rule.targets {
            // An ECS target gets no event: only its explicit input, which is the task override.
            let shaped = match &target.ecs_parameters {
                Some(_) if !target.has_input_settings() => Ok(None),
                _ => shape_input(target, event).map(Some),
            };
            let input = match shaped {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!("rule {}: target {}: {e}", rule.rule.name, target.id);
                    continue;
                }
            };
            let delivery = match &target.ecs_parameters {
                Some(p) => Delivery::Ecs(Box::new(EcsLaunch {
                    cluster_arn: target.arn.clone(),
                    rule_name: rule.rule.name.clone(),
                    parameters: p.clone(),
                    overrides: input,
                })),
                None => Delivery::Input(input.unwrap_or_default()),
            };
            let me = self.clone();
            let (account, region, target, event) =
                (rule.rule.account.clone(), rule.rule.region.clone(), target.clone(), event.clone());
            tokio::spawn(async move {
                me.deliver_with_retries(account, region, target, delivery, event, now).await
            });
        }
    }

    /// Delivers with exponential back-off until the target's RetryPolicy gives up, then to
    /// its dead-letter queue if it has one.
    async fn deliver_with_retries(
        self: Arc<Self>,
        account: String,
        region: String,
        target: Target,
        delivery: Delivery,
        event: Value,
        first_attempt: DateTime<Utc>,
    ) {
        let policy = target.retry_policy.clone().unwrap_or_default();
        let max_retries = policy.maximum_retry_attempts.unwrap_or(DEFAULT_MAX_RETRY_ATTEMPTS);
        let max_age =
            Duration::from_secs(policy.maximum_event_age_in_seconds.unwrap_or(DEFAULT_MAX_EVENT_AGE_SECS));
        let started = tokio::time::Instant::now();
        let mut delay = self.retry_delay;
        let mut attempt = 0u32;
        loop {
            let attempt_result = match &delivery {
                Delivery::Ecs(launch) => {
                    self.invoker.run_ecs_task(&account, &region, (**launch).clone()).await
                }
                Delivery::Input(input) => {
                    self.invoker.deliver(&account, &region, &target.arn, input.clone()).await
                }
            };
            let err = match attempt_result {
                Ok(()) => return,
                Err(e) => e,
            };
            attempt += 1;
            if attempt > max_retries || started.elapsed() + delay > max_age {
                tracing::warn!("event to {} failed after {attempt} attempts: {err}", target.arn);
                if let Some(dlq) = &target.dead_letter_arn {
                    // The DLQ gets the event itself (AWS adds the failure as message attributes).
                    let _ = first_attempt;
                    if let Err(e) = self.invoker.deliver(&account, &region, dlq, event.to_string()).await {
                        tracing::warn!("dead-letter queue {dlq}: {e}");
                    }
                }
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }

    // -- schedules ---------------------------------------------------------------------

    /// The next tick of an enabled schedule rule strictly after its last fired tick (or,
    /// for a rule never fired, after `not_before`).
    fn next_tick(rule: &CompiledRule, not_before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let schedule = rule.schedule.as_ref()?;
        if rule.rule.state != RuleState::Enabled {
            return None;
        }
        let anchor = DateTime::from_timestamp_millis(rule.rule.anchor_ms)?;
        let after = rule
            .rule
            .last_fire_ms
            .and_then(DateTime::from_timestamp_millis)
            .map_or(not_before, |l| l.max(not_before));
        schedule.next_after(anchor, after)
    }

    /// Fires every schedule tick due at `now` (each tick once: the tick is persisted before
    /// delivery) and returns when the next one is due. Ticks missed by more than `grace`
    /// (the server was down) are skipped rather than fired late.
    pub fn fire_due(self: &Arc<Self>, now: DateTime<Utc>, grace: chrono::TimeDelta) -> Option<DateTime<Utc>> {
        let rules: Vec<(String, Arc<CompiledRule>)> = self
            .state
            .read()
            .rules
            .iter()
            .filter(|(_, r)| r.schedule.is_some() && r.rule.state == RuleState::Enabled)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        let mut next: Option<DateTime<Utc>> = None;
        for (key, rule) in rules {
            let Some(mut tick) = Self::next_tick(&rule, now - grace) else { continue };
            if tick <= now {
                // Due: record the tick first, then deliver.
                let mut updated = rule.rule.clone();
                updated.last_fire_ms = Some(tick.timestamp_millis());
                let compiled = CompiledRule {
                    rule: updated,
                    pattern: rule.pattern.clone(),
                    schedule: rule.schedule.clone(),
                };
                if self.persist(&key, &compiled.rule).is_err() {
                    continue;
                }
                {
                    let mut state = self.state.write();
                    // Only if the rule was not changed meanwhile.
                    if state.rules.get(&key).is_some_and(|r| Arc::ptr_eq(r, &rule)) {
                        state.rules.insert(key.clone(), Arc::new(compiled.clone()));
                        state.reindex(&key);
                    }
                }
                let event = json!({
                    "version": "0",
                    "id": uuid::Uuid::new_v4().to_string(),
                    "detail-type": "Scheduled Event",
                    "source": "aws.events",
                    "account": rule.rule.account,
                    "time": iso(tick),
                    "region": rule.rule.region,
                    "resources": [rule.rule.arn],
                    "detail": {},
                });
                self.deliver_to_targets(&compiled, &event, now);
                match Self::next_tick(&compiled, tick) {
                    Some(t) => tick = t,
                    None => continue,
                }
            }
            next = Some(next.map_or(tick, |n| n.min(tick)));
        }
        next
    }

    /// Runs the scheduler until the process ends: fires due ticks, sleeps until the next
    /// one (or until a schedule rule changes).
    pub async fn run_scheduler(self: Arc<Self>) {
        let grace = chrono::TimeDelta::seconds(1);
        loop {
            let next = self.fire_due(Utc::now(), grace);
            let wait = match next {
                Some(t) => (t - Utc::now()).to_std().unwrap_or(Duration::ZERO),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.schedules_changed.notified() => {}
            }
        }
    }

    /// Rules on a bus that match `event` (used by tests and by the bench).
    pub fn matching_rules(
        &self,
        account: &str,
        region: &str,
        bus: Option<&str>,
        event: &Value,
    ) -> Vec<String> {
        let bus = bus_name(bus);
        let prefix = format!("{}:", bus_key(account, region, &bus));
        self.state
            .read()
            .rules
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, r)| r.pattern.as_ref().is_some_and(|p| p.matches(event)))
            .map(|(_, r)| r.rule.name.clone())
            .collect()
    }
}

fn unreachable_bus() -> EventBus {
    EventBus {
        account: String::new(),
        region: String::new(),
        name: DEFAULT_BUS.into(),
        arn: String::new(),
        description: None,
        created_ms: 0,
    }
}

fn compile(rule: Rule) -> Result<CompiledRule, Error> {
    let pattern = match &rule.event_pattern {
        Some(p) => Some(Arc::new(Pattern::parse(p).map_err(|e| Error::InvalidPattern(e.to_string()))?)),
        None => None,
    };
    let schedule = match &rule.schedule_expression {
        Some(s) => Some(
            Schedule::parse(s)
                .map_err(|_| Error::Validation("Parameter ScheduleExpression is not valid.".into()))?,
        ),
        None => None,
    };
    Ok(CompiledRule { rule, pattern, schedule })
}

/// The text a target receives: the event, or its Input / InputPath / InputTransformer.
fn shape_input(target: &Target, event: &Value) -> Result<String, String> {
    if let Some(input) = &target.input {
        return Ok(input.clone());
    }
    if let Some(path) = &target.input_path {
        return Ok(input::select(event, path)?.map(|v| v.to_string()).unwrap_or_else(|| "null".into()));
    }
    if let Some(t) = &target.input_transformer {
        return transform_input(t, event);
    }
    Ok(event.to_string())
}

#[cfg(test)]
mod tests;
