//! Definition validation: turns raw JSON into the typed model while collecting every
//! problem as an AWS-style diagnostic (field rules per state type, paths, templates,
//! intrinsic functions, retriers and catchers, choice rules, transitions, terminal and
//! unreachable states, duplicate names).

use crate::choice::{ChoiceRule, Condition, Operand, OperatorKind, Test, parse_operator, parse_timestamp};
use crate::definition::*;
use crate::error::{DefinitionError, Diagnostic, codes};
use crate::intrinsics::{Call, looks_like_call};
use crate::jsonpath::{JsonPath, Root};
use crate::template::{self, Template};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// AWS limits state names to 80 characters.
const MAX_STATE_NAME: usize = 80;
/// Largest value AWS accepts for the seconds and attempts fields.
const MAX_SECONDS: u64 = 99_999_999;

pub(crate) struct Parts {
    pub comment: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub version: Option<String>,
    pub root: Branch,
}

pub(crate) fn validate(text: &str) -> Result<Parts, DefinitionError> {
    let value = crate::strict_json::parse(text).map_err(|e| DefinitionError {
        diagnostics: vec![Diagnostic {
            code: codes::INVALID_JSON_DESCRIPTION,
            message: e.to_string(),
            location: None,
        }],
    })?;
    let mut v = Validator::default();
    let parts = v.machine(&value);
    match parts {
        Some(p) if v.diags.is_empty() => Ok(p),
        _ => {
            if v.diags.is_empty() {
                // Defensive: a None result always comes with a diagnostic.
                v.schema("/", "The definition is invalid");
            }
            Err(DefinitionError { diagnostics: v.diags })
        }
    }
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];
const PASS: &[&str] =
    &["Next", "End", "InputPath", "OutputPath", "ResultPath", "Parameters", "Result", "Assign"];
const TASK: &[&str] = &[
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "Resource",
    "TimeoutSeconds",
    "TimeoutSecondsPath",
    "HeartbeatSeconds",
    "HeartbeatSecondsPath",
    "Retry",
    "Catch",
    "Credentials",
    "Assign",
];
const CHOICE: &[&str] = &["Choices", "Default", "InputPath", "OutputPath", "Assign"];
const WAIT: &[&str] = &[
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "Seconds",
    "SecondsPath",
    "Timestamp",
    "TimestampPath",
    "Assign",
];
const SUCCEED: &[&str] = &["InputPath", "OutputPath"];
const FAIL: &[&str] = &["Error", "ErrorPath", "Cause", "CausePath"];
const PARALLEL: &[&str] = &[
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "Branches",
    "Retry",
    "Catch",
    "Assign",
];
const MAP: &[&str] = &[
    "Next",
    "End",
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "ItemsPath",
    "ItemSelector",
    "ItemProcessor",
    "Iterator",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "ToleratedFailurePercentage",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCount",
    "ToleratedFailureCountPath",
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "Label",
    "Retry",
    "Catch",
    "Assign",
];

/// How strictly a path field is checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PathRule {
    /// Any JSONPath (InputPath, OutputPath).
    Any,
    /// A Reference Path from any root (`$`, `$$`, `$var`).
    Reference,
    /// A Reference Path into the state input (`ResultPath`).
    ResultPath,
}

#[derive(Default)]
struct Validator {
    diags: Vec<Diagnostic>,
    /// State name → where it was first defined (names are unique machine-wide).
    names: HashMap<String, String>,
}

fn loc(at: &str) -> String {
    if at.is_empty() { "/".to_string() } else { at.to_string() }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

fn as_uint(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 1.0e15).map(|f| f as u64))
}

impl Validator {
    fn push(&mut self, code: &'static str, message: impl Into<String>, location: Option<String>) {
        self.diags.push(Diagnostic { code, message: message.into(), location });
    }

    fn schema(&mut self, at: &str, message: impl Into<String>) {
        self.push(codes::SCHEMA_VALIDATION_FAILED, message, Some(loc(at)));
    }

    /// Reports unknown and missing fields. Returns false if any required field is missing.
    fn check_fields(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        allowed: &[&[&str]],
        required: &[&str],
    ) -> bool {
        for key in obj.keys() {
            if !allowed.iter().any(|set| set.contains(&key.as_str())) {
                self.schema(at, format!("Field '{key}' is not supported"));
            }
        }
        let missing: Vec<&str> = required.iter().copied().filter(|k| !obj.contains_key(*k)).collect();
        if !missing.is_empty() {
            self.schema(at, format!("These fields are required: [{}]", missing.join(", ")));
        }
        missing.is_empty()
    }

    fn object<'v>(&mut self, v: &'v Value, at: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.schema(at, format!("Expected value of type Object but found {}", type_of(other)));
                None
            }
        }
    }

    fn string(&mut self, obj: &Map<String, Value>, key: &str, at: &str) -> Option<String> {
        match obj.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.schema(
                    &format!("{at}/{key}"),
                    format!("Expected value of type String but found {}", type_of(other)),
                );
                None
            }
        }
    }

    fn uint(&mut self, obj: &Map<String, Value>, key: &str, at: &str, min: u64) -> Option<u64> {
        let v = obj.get(key)?;
        match as_uint(v) {
            Some(n) if (min..=MAX_SECONDS).contains(&n) => Some(n),
            Some(_) => {
                self.schema(
                    &format!("{at}/{key}"),
                    format!("The value of '{key}' must be between {min} and {MAX_SECONDS}"),
                );
                None
            }
            None => {
                self.schema(
                    &format!("{at}/{key}"),
                    format!("Expected value of type Integer but found {}", type_of(v)),
                );
                None
            }
        }
    }

    fn exclusive(&mut self, obj: &Map<String, Value>, at: &str, a: &str, b: &str) -> bool {
        if obj.contains_key(a) && obj.contains_key(b) {
            self.schema(at, format!("Only one of these fields may be specified: [{a}, {b}]"));
            false
        } else {
            true
        }
    }

    /// Parses a path string under `rule`, reporting AWS's wording on failure.
    fn path_str(&mut self, text: &str, field: &str, at: &str, rule: PathRule) -> Option<JsonPath> {
        let what = if rule == PathRule::Any { "JSONPath" } else { "ReferencePath" };
        let parsed = match JsonPath::parse(text) {
            Ok(p) => p,
            Err(e) => {
                self.schema(at, format!("The value for the field '{field}' must be a valid {what} ({e})"));
                return None;
            }
        };
        if rule != PathRule::Any && !parsed.is_reference() {
            self.schema(at, format!("The value for the field '{field}' must be a valid ReferencePath"));
            return None;
        }
        if rule == PathRule::ResultPath && parsed.root() != &Root::Input {
            self.schema(
                at,
                format!(
                    "The value for the field '{field}' must be a ReferencePath into the state input ('$...')"
                ),
            );
            return None;
        }
        Some(parsed)
    }

    /// A path field that may be absent (`default`) or null (`None`).
    fn io_path(&mut self, obj: &Map<String, Value>, key: &str, at: &str, rule: PathRule) -> Option<JsonPath> {
        let default = JsonPath::parse("$").ok();
        match obj.get(key) {
            None => default,
            Some(Value::Null) => None,
            Some(Value::String(s)) => self.path_str(s, key, &format!("{at}/{key}"), rule).or(default),
            Some(other) => {
                self.schema(
                    &format!("{at}/{key}"),
                    format!("Expected value of type String but found {}", type_of(other)),
                );
                default
            }
        }
    }

    /// A required-when-present reference path field (`SecondsPath`, ...).
    fn ref_path(&mut self, obj: &Map<String, Value>, key: &str, at: &str) -> Option<JsonPath> {
        let s = self.string(obj, key, at)?;
        self.path_str(&s, key, &format!("{at}/{key}"), PathRule::Reference)
    }

    fn template(&mut self, v: &Value, at: &str) -> Option<Template> {
        let mut found = Vec::new();
        let t = template::compile(v, at, &mut |l, m| found.push((l, m)));
        for (l, m) in found {
            self.schema(&l, m);
        }
        t
    }

    fn object_template(&mut self, obj: &Map<String, Value>, key: &str, at: &str) -> Option<Template> {
        let v = obj.get(key)?;
        let at = format!("{at}/{key}");
        if !v.is_object() {
            self.schema(&at, format!("Expected value of type Object but found {}", type_of(v)));
            return None;
        }
        self.template(v, &at)
    }

    fn number_source(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        at: &str,
        min: u64,
    ) -> Option<NumberSource> {
        let path_key = format!("{key}Path");
        self.exclusive(obj, at, key, &path_key);
        if obj.contains_key(key) {
            self.uint(obj, key, at, min).map(|n| NumberSource::Literal(n as f64))
        } else if obj.contains_key(&path_key) {
            self.ref_path(obj, &path_key, at).map(NumberSource::Path)
        } else {
            None
        }
    }

    fn machine(&mut self, v: &Value) -> Option<Parts> {
        let obj = self.object(v, "")?;
        if let Some(Value::String(ql)) = obj.get("QueryLanguage")
            && ql == "JSONata"
        {
            self.push(
                codes::UNSUPPORTED_FEATURE,
                "QueryLanguage 'JSONata' is not supported; use JSONPath",
                Some("/QueryLanguage".to_string()),
            );
            return None;
        }
        self.query_language(obj, "");
        self.check_fields(
            obj,
            "",
            &[&["Comment", "StartAt", "States", "TimeoutSeconds", "Version", "QueryLanguage"]],
            &["StartAt", "States"],
        );
        let comment = self.string(obj, "Comment", "");
        let version = self.string(obj, "Version", "");
        let timeout_seconds = self.uint(obj, "TimeoutSeconds", "", 1);
        let root = self.branch_body(obj, "")?;
        Some(Parts { comment, timeout_seconds, version, root })
    }

    /// `QueryLanguage`: JSONPath is the default; JSONata is valid ASL but not supported here.
    /// Returns false when the state should not be validated further.
    fn query_language(&mut self, obj: &Map<String, Value>, at: &str) -> bool {
        match obj.get("QueryLanguage") {
            None => true,
            Some(Value::String(s)) if s == "JSONPath" => true,
            Some(Value::String(s)) if s == "JSONata" => {
                self.push(
                    codes::UNSUPPORTED_FEATURE,
                    "QueryLanguage 'JSONata' is not supported; use JSONPath",
                    Some(format!("{at}/QueryLanguage")),
                );
                false
            }
            Some(_) => {
                self.schema(
                    &format!("{at}/QueryLanguage"),
                    "The value of 'QueryLanguage' must be 'JSONPath' or 'JSONata'",
                );
                true
            }
        }
    }

    /// A nested branch object (Parallel branch, Iterator, ItemProcessor).
    fn branch(&mut self, v: &Value, at: &str, allowed: &[&str]) -> Option<Branch> {
        let obj = self.object(v, at)?;
        self.check_fields(obj, at, &[&["StartAt", "States", "Comment"], allowed], &["StartAt", "States"]);
        self.branch_body(obj, at)
    }

    fn branch_body(&mut self, obj: &Map<String, Value>, at: &str) -> Option<Branch> {
        let comment = self.string(obj, "Comment", at);
        let start_at = self.string(obj, "StartAt", at);
        let states_at = format!("{at}/States");
        let raw_states = match obj.get("States") {
            Some(v) => self.object(v, &states_at)?,
            None => return None,
        };
        if raw_states.is_empty() {
            self.schema(&states_at, "'States' must contain at least one state");
            return None;
        }
        let mut states = BTreeMap::new();
        let mut ok = true;
        for (name, sv) in raw_states {
            match self.state(name, sv, &format!("{states_at}/{name}")) {
                Some(s) => {
                    states.insert(name.clone(), s);
                }
                None => ok = false,
            }
        }
        let start_at = start_at?;
        self.graph(&start_at, raw_states, at);
        if ok { Some(Branch { comment, start_at, states }) } else { None }
    }

    /// Transition checks within one branch, from the raw JSON so they run even when a
    /// state has other errors.
    fn graph(&mut self, start_at: &str, states: &Map<String, Value>, at: &str) {
        if !states.contains_key(start_at) {
            self.push(
                codes::MISSING_TRANSITION_TARGET,
                format!("Missing 'Next' target: {start_at}"),
                Some(format!("{at}/StartAt")),
            );
        }
        let mut edges: HashMap<&str, Vec<String>> = HashMap::new();
        let mut has_terminal = false;
        for (name, sv) in states {
            let Some(s) = sv.as_object() else { continue };
            let base = format!("{at}/States/{name}");
            let mut targets: Vec<(String, String)> = Vec::new();
            if let Some(Value::String(n)) = s.get("Next") {
                targets.push((n.clone(), format!("{base}/Next")));
            }
            if let Some(Value::String(n)) = s.get("Default") {
                targets.push((n.clone(), format!("{base}/Default")));
            }
            for (field, key) in [("Choices", "Next"), ("Catch", "Next")] {
                if let Some(Value::Array(items)) = s.get(field) {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(Value::String(n)) = item.get(key) {
                            targets.push((n.clone(), format!("{base}/{field}[{i}]/{key}")));
                        }
                    }
                }
            }
            let ty = s.get("Type").and_then(Value::as_str);
            if s.get("End") == Some(&Value::Bool(true)) || matches!(ty, Some("Succeed" | "Fail")) {
                has_terminal = true;
            }
            for (target, where_) in &targets {
                if !states.contains_key(target) {
                    self.push(
                        codes::MISSING_TRANSITION_TARGET,
                        format!("Missing 'Next' target: {target}"),
                        Some(where_.clone()),
                    );
                }
            }
            edges.insert(name.as_str(), targets.into_iter().map(|(t, _)| t).collect());
        }
        if !has_terminal {
            // AWS reports this alone (no location) and skips the reachability walk.
            let location = if at.is_empty() { None } else { Some(at.to_string()) };
            self.push(codes::MISSING_END_STATE, "Workflow has no terminal state", location);
            return;
        }
        if !states.contains_key(start_at) {
            return;
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([start_at]);
        while let Some(n) = queue.pop_front() {
            if !seen.insert(n) {
                continue;
            }
            for t in edges.get(n).into_iter().flatten() {
                if let Some((k, _)) = states.get_key_value(t.as_str()) {
                    queue.push_back(k.as_str());
                }
            }
        }
        for name in states.keys() {
            if !seen.contains(name.as_str()) {
                self.push(
                    codes::MISSING_TRANSITION_TARGET,
                    format!("State \"{name}\" is not reachable."),
                    Some(format!("{at}/States/{name}")),
                );
            }
        }
    }

    fn state(&mut self, name: &str, v: &Value, at: &str) -> Option<State> {
        if name.chars().count() > MAX_STATE_NAME {
            self.schema(at, format!("State name '{name}' is longer than {MAX_STATE_NAME} characters"));
        }
        if name.is_empty() {
            self.schema(at, "State names must not be empty");
        }
        if let Some(first) = self.names.get(name) {
            let message = format!("Duplicate State name: {name} (first defined at {first})");
            self.push(codes::DUPLICATE_STATE_NAME, message, Some(at.to_string()));
        } else {
            self.names.insert(name.to_string(), at.to_string());
        }
        let obj = self.object(v, at)?;
        if !self.query_language(obj, at) {
            return None;
        }
        let Some(ty) = self.string(obj, "Type", at) else {
            if !obj.contains_key("Type") {
                self.schema(at, "These fields are required: [Type]");
            }
            return None;
        };
        let specific: &[&str] = match ty.as_str() {
            "Pass" => PASS,
            "Task" => TASK,
            "Choice" => CHOICE,
            "Wait" => WAIT,
            "Succeed" => SUCCEED,
            "Fail" => FAIL,
            "Parallel" => PARALLEL,
            "Map" => MAP,
            other => {
                self.schema(&format!("{at}/Type"), format!("'{other}' is not a valid state Type"));
                return None;
            }
        };
        let errors_before = self.diags.len();
        self.check_fields(obj, at, &[COMMON, specific], &[]);
        let comment = self.string(obj, "Comment", at);
        let transition = if specific.contains(&"Next") { self.transition(obj, at) } else { None };
        let io = Io {
            input_path: self.io_path(obj, "InputPath", at, PathRule::Any),
            output_path: self.io_path(obj, "OutputPath", at, PathRule::Any),
            result_path: self.io_path(obj, "ResultPath", at, PathRule::ResultPath),
            parameters: match obj.get("Parameters") {
                Some(p) if specific.contains(&"Parameters") && ty != "Map" => {
                    self.template(p, &format!("{at}/Parameters"))
                }
                _ => None,
            },
            result_selector: self.object_template(obj, "ResultSelector", at),
        };
        let assign = self.object_template(obj, "Assign", at);
        let kind = match ty.as_str() {
            "Pass" => StateKind::Pass { result: obj.get("Result").cloned() },
            "Task" => StateKind::Task(Box::new(self.task(obj, at)?)),
            "Choice" => StateKind::Choice(self.choice(obj, at)?),
            "Wait" => StateKind::Wait(self.wait(obj, at)?),
            "Succeed" => StateKind::Succeed,
            "Fail" => StateKind::Fail(self.fail(obj, at)),
            "Parallel" => StateKind::Parallel(self.parallel(obj, at)?),
            _ => StateKind::Map(Box::new(self.map(obj, at)?)),
        };
        if self.diags.len() > errors_before {
            return None;
        }
        Some(State { name: name.to_string(), comment, kind, transition, io, assign })
    }

    fn transition(&mut self, obj: &Map<String, Value>, at: &str) -> Option<Transition> {
        let next = self.string(obj, "Next", at);
        let end = match obj.get("End") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.schema(
                    &format!("{at}/End"),
                    format!("Expected value of type Boolean but found {}", type_of(other)),
                );
                false
            }
        };
        match (next, end) {
            (Some(_), true) => {
                self.schema(at, "Only one of these fields may be specified: [Next, End]");
                None
            }
            (Some(n), false) => Some(Transition::Next(n)),
            (None, true) => Some(Transition::End),
            (None, false) => {
                if !obj.contains_key("Next") {
                    self.schema(at, "These fields are required: [Next or End]");
                }
                None
            }
        }
    }

    fn task(&mut self, obj: &Map<String, Value>, at: &str) -> Option<TaskState> {
        let resource = match obj.get("Resource") {
            None => {
                self.schema(at, "These fields are required: [Resource]");
                None
            }
            Some(Value::String(r)) => {
                if !resource_is_valid(r) {
                    self.schema(
                        &format!("{at}/Resource"),
                        format!("Value is not a valid resource ARN: '{r}'"),
                    );
                }
                Some(r.clone())
            }
            Some(other) => {
                self.schema(
                    &format!("{at}/Resource"),
                    format!("Expected value of type String but found {}", type_of(other)),
                );
                None
            }
        };
        let timeout_seconds = self.number_source(obj, "TimeoutSeconds", at, 1);
        let heartbeat_seconds = self.number_source(obj, "HeartbeatSeconds", at, 1);
        if let (Some(NumberSource::Literal(t)), Some(NumberSource::Literal(h))) =
            (&timeout_seconds, &heartbeat_seconds)
            && h >= t
        {
            self.schema(
                &format!("{at}/HeartbeatSeconds"),
                "HeartbeatSeconds must be smaller than TimeoutSeconds",
            );
        }
        let credentials = self.object_template(obj, "Credentials", at);
        let retry = self.retriers(obj, at);
        let catch = self.catchers(obj, at);
        Some(TaskState { resource: resource?, timeout_seconds, heartbeat_seconds, credentials, retry, catch })
    }

    fn error_equals(&mut self, obj: &Map<String, Value>, at: &str) -> Vec<String> {
        let at = format!("{at}/ErrorEquals");
        let Some(v) = obj.get("ErrorEquals") else { return Vec::new() };
        let Some(items) = v.as_array() else {
            self.schema(&at, format!("Expected value of type Array but found {}", type_of(v)));
            return Vec::new();
        };
        if items.is_empty() {
            self.schema(&at, "'ErrorEquals' must contain at least one error name");
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => self.schema(
                    &format!("{at}[{i}]"),
                    format!("Expected value of type String but found {}", type_of(other)),
                ),
            }
        }
        if out.len() > 1 && out.iter().any(|e| e == "States.ALL") {
            self.schema(&at, "'States.ALL' must appear alone in 'ErrorEquals'");
        }
        out
    }

    fn entries<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        key: &str,
        at: &str,
    ) -> Vec<(String, &'v Map<String, Value>)> {
        let Some(v) = obj.get(key) else { return Vec::new() };
        let at = format!("{at}/{key}");
        let Some(items) = v.as_array() else {
            self.schema(&at, format!("Expected value of type Array but found {}", type_of(v)));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_at = format!("{at}[{i}]");
            if let Some(o) = self.object(item, &item_at) {
                out.push((item_at, o));
            }
        }
        out
    }

    fn check_all_last(&mut self, lists: &[(String, Vec<String>)], what: &str) {
        for (i, (at, errors)) in lists.iter().enumerate() {
            if i + 1 < lists.len() && errors.iter().any(|e| e == "States.ALL") {
                self.schema(at, format!("'States.ALL' must be in the last {what}"));
            }
        }
    }

    fn retriers(&mut self, obj: &Map<String, Value>, at: &str) -> Vec<Retrier> {
        let mut out = Vec::new();
        let mut lists = Vec::new();
        for (rat, r) in self.entries(obj, "Retry", at) {
            self.check_fields(
                r,
                &rat,
                &[&[
                    "ErrorEquals",
                    "IntervalSeconds",
                    "MaxAttempts",
                    "BackoffRate",
                    "MaxDelaySeconds",
                    "JitterStrategy",
                    "Comment",
                ]],
                &["ErrorEquals"],
            );
            let mut retrier = Retrier::defaults(self.error_equals(r, &rat));
            lists.push((rat.clone(), retrier.error_equals.clone()));
            if r.contains_key("IntervalSeconds") {
                retrier.interval_seconds = self.uint(r, "IntervalSeconds", &rat, 1).unwrap_or(1);
            }
            if r.contains_key("MaxAttempts") {
                retrier.max_attempts = self.uint(r, "MaxAttempts", &rat, 0).unwrap_or(3);
            }
            retrier.max_delay_seconds = self.uint(r, "MaxDelaySeconds", &rat, 1);
            if let Some(b) = r.get("BackoffRate") {
                match b.as_f64() {
                    Some(rate) if rate >= 1.0 => retrier.backoff_rate = rate,
                    Some(_) => self.schema(
                        &format!("{rat}/BackoffRate"),
                        "The value of 'BackoffRate' must be at least 1.0",
                    ),
                    None => self.schema(
                        &format!("{rat}/BackoffRate"),
                        format!("Expected value of type Number but found {}", type_of(b)),
                    ),
                }
            }
            match self.string(r, "JitterStrategy", &rat).as_deref() {
                None | Some("NONE") => {}
                Some("FULL") => retrier.jitter = Jitter::Full,
                Some(other) => self.schema(
                    &format!("{rat}/JitterStrategy"),
                    format!("'{other}' is not a valid JitterStrategy (FULL or NONE)"),
                ),
            }
            out.push(retrier);
        }
        self.check_all_last(&lists, "Retrier");
        out
    }

    fn catchers(&mut self, obj: &Map<String, Value>, at: &str) -> Vec<Catcher> {
        let mut out = Vec::new();
        let mut lists = Vec::new();
        for (cat, c) in self.entries(obj, "Catch", at) {
            self.check_fields(
                c,
                &cat,
                &[&["ErrorEquals", "Next", "ResultPath", "Comment", "Assign"]],
                &["ErrorEquals", "Next"],
            );
            let error_equals = self.error_equals(c, &cat);
            lists.push((cat.clone(), error_equals.clone()));
            let next = self.string(c, "Next", &cat);
            let result_path = self.io_path(c, "ResultPath", &cat, PathRule::ResultPath);
            let assign = self.object_template(c, "Assign", &cat);
            if let Some(next) = next {
                out.push(Catcher { error_equals, next, result_path, assign });
            }
        }
        self.check_all_last(&lists, "Catcher");
        out
    }

    /// A required, non-empty array field (`Choices`, `Branches`) and its location.
    fn required_array<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        field: &str,
        at: &str,
        item: &str,
    ) -> Option<(&'v Vec<Value>, String)> {
        let Some(v) = obj.get(field) else {
            self.schema(at, format!("These fields are required: [{field}]"));
            return None;
        };
        let loc = format!("{at}/{field}");
        let Some(items) = v.as_array() else {
            self.schema(&loc, format!("Expected value of type Array but found {}", type_of(v)));
            return None;
        };
        if items.is_empty() {
            self.schema(&loc, format!("'{field}' must contain at least one {item}"));
        }
        Some((items, loc))
    }

    fn choice(&mut self, obj: &Map<String, Value>, at: &str) -> Option<ChoiceState> {
        let default = self.string(obj, "Default", at);
        let (items, cat) = self.required_array(obj, "Choices", at, "choice rule")?;
        let mut choices = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let rat = format!("{cat}[{i}]");
            if let Some((condition, next, assign)) = self.rule(item, &rat, true) {
                choices.push(ChoiceRule { condition, next: next.unwrap_or_default(), assign });
            }
        }
        Some(ChoiceState { choices, default })
    }

    /// A choice rule; `top` rules carry `Next` (and may carry `Assign`), nested ones must not.
    fn rule(
        &mut self,
        v: &Value,
        at: &str,
        top: bool,
    ) -> Option<(Condition, Option<String>, Option<Template>)> {
        let obj = self.object(v, at)?;
        let before = self.diags.len();
        let mut operators = Vec::new();
        for key in obj.keys() {
            let structural = ["Variable", "And", "Or", "Not", "Comment"].contains(&key.as_str())
                || (top && (key == "Next" || key == "Assign"));
            if structural {
                continue;
            }
            match parse_operator(key) {
                Some((kind, is_path)) => operators.push((key.clone(), kind, is_path)),
                None => self.schema(at, format!("Field '{key}' is not supported")),
            }
        }
        let next = if top {
            if !obj.contains_key("Next") {
                self.schema(at, "These fields are required: [Next]");
            }
            self.string(obj, "Next", at)
        } else {
            None
        };
        let assign = if top { self.object_template(obj, "Assign", at) } else { None };
        let combinators: Vec<&str> =
            ["And", "Or", "Not"].into_iter().filter(|k| obj.contains_key(*k)).collect();
        if combinators.len() + usize::from(!operators.is_empty()) != 1 || operators.len() > 1 {
            self.schema(
                at,
                "A choice rule must have exactly one comparison operator, or one of And, Or, Not",
            );
            return None;
        }
        let condition = if let Some(c) = combinators.first() {
            if obj.contains_key("Variable") {
                self.schema(at, "Field 'Variable' is not supported");
            }
            let cat = format!("{at}/{c}");
            let value = &obj[*c];
            if *c == "Not" {
                let (inner, _, _) = self.rule(value, &cat, false)?;
                Condition::Not(Box::new(inner))
            } else {
                let Some(items) = value.as_array() else {
                    self.schema(&cat, format!("Expected value of type Array but found {}", type_of(value)));
                    return None;
                };
                if items.is_empty() {
                    self.schema(&cat, format!("'{c}' must contain at least one choice rule"));
                }
                let mut rules = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some((r, _, _)) = self.rule(item, &format!("{cat}[{i}]"), false) {
                        rules.push(r);
                    }
                }
                if *c == "And" { Condition::And(rules) } else { Condition::Or(rules) }
            }
        } else {
            let (key, kind, is_path) = operators.remove(0);
            let Some(var_text) = self.string(obj, "Variable", at) else {
                if !obj.contains_key("Variable") {
                    self.schema(at, "These fields are required: [Variable]");
                }
                return None;
            };
            if looks_like_call(&var_text) {
                self.schema(
                    &format!("{at}/Variable"),
                    "The value for the field 'Variable' must be a valid JSONPath",
                );
                return None;
            }
            let variable =
                self.path_str(&var_text, "Variable", &format!("{at}/Variable"), PathRule::Reference)?;
            let oat = format!("{at}/{key}");
            let value = &obj[&key];
            let test = if is_path {
                let Some(s) = value.as_str() else {
                    self.schema(&oat, format!("Expected value of type String but found {}", type_of(value)));
                    return None;
                };
                let p = self.path_str(s, &key, &oat, PathRule::Reference)?;
                match kind {
                    OperatorKind::Compare(ty, relation) => {
                        Test::Compare { ty, relation, operand: Operand::Path(p) }
                    }
                    _ => return None,
                }
            } else {
                match kind {
                    OperatorKind::Compare(ty, relation) => {
                        use crate::choice::CompareType as T;
                        let ok = match ty {
                            T::String => value.is_string(),
                            T::Numeric => value.is_number(),
                            T::Boolean => value.is_boolean(),
                            T::Timestamp => value.as_str().and_then(parse_timestamp).is_some(),
                        };
                        if !ok {
                            let want = match ty {
                                T::String => "a String",
                                T::Numeric => "a Number",
                                T::Boolean => "a Boolean",
                                T::Timestamp => "a valid timestamp (RFC 3339, e.g. 2016-03-14T01:59:00Z)",
                            };
                            self.schema(&oat, format!("The value of '{key}' must be {want}"));
                            return None;
                        }
                        Test::Compare { ty, relation, operand: Operand::Literal(value.clone()) }
                    }
                    OperatorKind::Matches => match value.as_str() {
                        Some(s) => Test::Matches(s.to_string()),
                        None => {
                            self.schema(
                                &oat,
                                format!("Expected value of type String but found {}", type_of(value)),
                            );
                            return None;
                        }
                    },
                    OperatorKind::Type(test) => match value.as_bool() {
                        Some(expected) => Test::Type { test, expected },
                        None => {
                            self.schema(
                                &oat,
                                format!("Expected value of type Boolean but found {}", type_of(value)),
                            );
                            return None;
                        }
                    },
                }
            };
            Condition::Test { variable, test }
        };
        if self.diags.len() > before {
            return None;
        }
        Some((condition, next, assign))
    }

    fn wait(&mut self, obj: &Map<String, Value>, at: &str) -> Option<WaitFor> {
        let present: Vec<&str> = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"]
            .into_iter()
            .filter(|k| obj.contains_key(*k))
            .collect();
        if present.len() != 1 {
            self.schema(at, "Exactly one of these fields must be specified: [Seconds, Timestamp, SecondsPath, TimestampPath]");
            return None;
        }
        match present[0] {
            "Seconds" => self.uint(obj, "Seconds", at, 0).map(WaitFor::Seconds),
            "Timestamp" => {
                let s = self.string(obj, "Timestamp", at)?;
                match parse_timestamp(&s) {
                    Some(t) => Some(WaitFor::Timestamp(t)),
                    None => {
                        self.schema(
                            &format!("{at}/Timestamp"),
                            "The value of 'Timestamp' must be a valid RFC 3339 timestamp",
                        );
                        None
                    }
                }
            }
            "SecondsPath" => self.ref_path(obj, "SecondsPath", at).map(WaitFor::SecondsPath),
            _ => self.ref_path(obj, "TimestampPath", at).map(WaitFor::TimestampPath),
        }
    }

    fn text_source(&mut self, obj: &Map<String, Value>, key: &str, at: &str) -> Option<TextSource> {
        let path_key = format!("{key}Path");
        self.exclusive(obj, at, key, &path_key);
        if obj.contains_key(key) {
            return self.string(obj, key, at).map(TextSource::Literal);
        }
        let text = self.string(obj, &path_key, at)?;
        let pat = format!("{at}/{path_key}");
        if looks_like_call(&text) {
            match Call::parse(&text) {
                Ok(c) => Some(TextSource::Call(Box::new(c))),
                Err(e) => {
                    self.schema(&pat, format!("The value for the field '{path_key}' must be a valid intrinsic function call ({e})"));
                    None
                }
            }
        } else {
            self.path_str(&text, &path_key, &pat, PathRule::Reference).map(TextSource::Path)
        }
    }

    fn fail(&mut self, obj: &Map<String, Value>, at: &str) -> FailState {
        FailState { error: self.text_source(obj, "Error", at), cause: self.text_source(obj, "Cause", at) }
    }

    fn parallel(&mut self, obj: &Map<String, Value>, at: &str) -> Option<ParallelState> {
        let retry = self.retriers(obj, at);
        let catch = self.catchers(obj, at);
        let (items, bat) = self.required_array(obj, "Branches", at, "branch")?;
        let mut branches = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(b) = self.branch(item, &format!("{bat}[{i}]"), &[]) {
                branches.push(b);
            }
        }
        (branches.len() == items.len()).then_some(ParallelState { branches, retry, catch })
    }

    fn map(&mut self, obj: &Map<String, Value>, at: &str) -> Option<MapState> {
        let retry = self.retriers(obj, at);
        let catch = self.catchers(obj, at);
        let mut mode = MapMode::Inline;
        let processor = match (obj.get("ItemProcessor"), obj.get("Iterator")) {
            (Some(_), Some(_)) => {
                self.schema(at, "Only one of these fields may be specified: [ItemProcessor, Iterator]");
                None
            }
            (None, None) => {
                self.schema(at, "These fields are required: [ItemProcessor]");
                None
            }
            (Some(p), None) => {
                let pat = format!("{at}/ItemProcessor");
                if let Some(cfg) = p.get("ProcessorConfig") {
                    let cat = format!("{pat}/ProcessorConfig");
                    if let Some(c) = self.object(cfg, &cat) {
                        self.check_fields(c, &cat, &[&["Mode", "ExecutionType"]], &[]);
                        match self.string(c, "Mode", &cat).as_deref() {
                            None | Some("INLINE") => {}
                            Some("DISTRIBUTED") => mode = MapMode::Distributed,
                            Some(other) => self.schema(
                                &format!("{cat}/Mode"),
                                format!("'{other}' is not a valid Mode (INLINE or DISTRIBUTED)"),
                            ),
                        }
                        match self.string(c, "ExecutionType", &cat).as_deref() {
                            None | Some("STANDARD" | "EXPRESS") => {}
                            Some(other) => self.schema(
                                &format!("{cat}/ExecutionType"),
                                format!("'{other}' is not a valid ExecutionType (STANDARD or EXPRESS)"),
                            ),
                        }
                    }
                }
                self.branch(p, &pat, &["ProcessorConfig"])
            }
            (None, Some(it)) => self.branch(it, &format!("{at}/Iterator"), &[]),
        };
        let items_path = match obj.get("ItemsPath") {
            None => JsonPath::parse("$").ok(),
            Some(_) => self.ref_path(obj, "ItemsPath", at),
        };
        self.exclusive(obj, at, "ItemSelector", "Parameters");
        let item_selector = match obj.get("ItemSelector") {
            Some(_) => self.object_template(obj, "ItemSelector", at),
            None => self.object_template(obj, "Parameters", at),
        };
        let max_concurrency = self.number_source(obj, "MaxConcurrency", at, 0);
        let tolerated_failure_count = self.number_source(obj, "ToleratedFailureCount", at, 0);
        self.exclusive(obj, at, "ToleratedFailurePercentage", "ToleratedFailurePercentagePath");
        let tolerated_failure_percentage = if let Some(v) = obj.get("ToleratedFailurePercentage") {
            match v.as_f64() {
                Some(p) if (0.0..=100.0).contains(&p) => Some(NumberSource::Literal(p)),
                Some(_) => {
                    self.schema(
                        &format!("{at}/ToleratedFailurePercentage"),
                        "The value of 'ToleratedFailurePercentage' must be between 0 and 100",
                    );
                    None
                }
                None => {
                    self.schema(
                        &format!("{at}/ToleratedFailurePercentage"),
                        format!("Expected value of type Number but found {}", type_of(v)),
                    );
                    None
                }
            }
        } else if obj.contains_key("ToleratedFailurePercentagePath") {
            self.ref_path(obj, "ToleratedFailurePercentagePath", at).map(NumberSource::Path)
        } else {
            None
        };
        let item_reader = self.item_reader(obj, at);
        let item_batcher = self.item_batcher(obj, at);
        let result_writer = self.result_writer(obj, at);
        let label = self.string(obj, "Label", at);
        Some(MapState {
            processor: processor?,
            mode,
            items_path: items_path?,
            item_selector,
            max_concurrency,
            tolerated_failure_percentage,
            tolerated_failure_count,
            item_reader,
            item_batcher,
            result_writer,
            label,
            retry,
            catch,
        })
    }

    fn item_reader(&mut self, obj: &Map<String, Value>, at: &str) -> Option<Value> {
        let v = obj.get("ItemReader")?;
        let rat = format!("{at}/ItemReader");
        let r = self.object(v, &rat)?;
        self.check_fields(r, &rat, &[&["Resource", "Parameters", "ReaderConfig"]], &["Resource"]);
        self.string(r, "Resource", &rat);
        self.object_template(r, "Parameters", &rat);
        if let Some(cfg) = r.get("ReaderConfig") {
            let cat = format!("{rat}/ReaderConfig");
            if let Some(c) = self.object(cfg, &cat) {
                self.check_fields(
                    c,
                    &cat,
                    &[&[
                        "InputType",
                        "CSVHeaderLocation",
                        "CSVHeaders",
                        "CSVDelimiter",
                        "MaxItems",
                        "MaxItemsPath",
                        "ManifestType",
                    ]],
                    &[],
                );
                self.number_source(c, "MaxItems", &cat, 1);
            }
        }
        Some(v.clone())
    }

    fn item_batcher(&mut self, obj: &Map<String, Value>, at: &str) -> Option<Value> {
        let v = obj.get("ItemBatcher")?;
        let bat = format!("{at}/ItemBatcher");
        let b = self.object(v, &bat)?;
        self.check_fields(
            b,
            &bat,
            &[&[
                "MaxItemsPerBatch",
                "MaxItemsPerBatchPath",
                "MaxInputBytesPerBatch",
                "MaxInputBytesPerBatchPath",
                "BatchInput",
            ]],
            &[],
        );
        self.number_source(b, "MaxItemsPerBatch", &bat, 1);
        self.number_source(b, "MaxInputBytesPerBatch", &bat, 1);
        self.object_template(b, "BatchInput", &bat);
        Some(v.clone())
    }

    fn result_writer(&mut self, obj: &Map<String, Value>, at: &str) -> Option<Value> {
        let v = obj.get("ResultWriter")?;
        let wat = format!("{at}/ResultWriter");
        let w = self.object(v, &wat)?;
        self.check_fields(w, &wat, &[&["Resource", "Parameters", "WriterConfig"]], &[]);
        self.string(w, "Resource", &wat);
        self.object_template(w, "Parameters", &wat);
        Some(v.clone())
    }
}

/// A Task `Resource`: an ARN (`arn:partition:service:region:account:rest`), with Lambda
/// function ARNs checked for a valid name and qualifier; or an unresolved
/// `${Substitution}` placeholder, which CloudFormation's DefinitionSubstitutions fill in.
pub(crate) fn resource_is_valid(r: &str) -> bool {
    if let Some(inner) = r.strip_prefix("${").and_then(|s| s.strip_suffix('}')) {
        return !inner.is_empty() && !inner.contains(['{', '}']);
    }
    let parts: Vec<&str> = r.splitn(6, ':').collect();
    let [arn, partition, service, region, account, rest] = parts.as_slice() else {
        return false;
    };
    let word = |s: &str| s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if *arn != "arn"
        || !partition.starts_with("aws")
        || !word(partition)
        || service.is_empty()
        || !word(service)
        || !word(region)
        || !account.chars().all(|c| c.is_ascii_digit())
        || rest.is_empty()
        || rest.chars().any(char::is_whitespace)
    {
        return false;
    }
    if *service == "lambda" {
        let Some(f) = rest.strip_prefix("function:") else { return false };
        let ident =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        return match f.split_once(':') {
            None => ident(f),
            Some((name, qualifier)) => ident(name) && (qualifier == "$LATEST" || ident(qualifier)),
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources() {
        for ok in [
            "arn:aws:lambda:us-east-1:123456789012:function:foo",
            "arn:aws:lambda:::function:publish-to-slack-lambda",
            "arn:aws:lambda:region-1:1234567890:function:F:$LATEST",
            "arn:aws:lambda:region-1:1234567890:function:F:AZaz12-_",
            "arn:aws:states:::lambda:invoke",
            "arn:aws:states:::batch:submitJob.sync",
            "arn:aws:states:::aws-sdk:s3:listObjectsV2",
            "arn:aws:states:us-east-1:12345:activity:hello-world",
            "arn:aws-us-gov:states:::sqs:sendMessage.waitForTaskToken",
            "${lambdaArn}",
        ] {
            assert!(resource_is_valid(ok), "{ok}");
        }
        for bad in [
            "arn:aws:lambda:region-1:1234567890:function:FUNCTION_NAME:",
            "arn:aws:lambda:region-1:1234567890:function:FUNCTION_NAME:$*#$7485",
            "${lambdaArn",
            "lambda",
            "arn:aws:states",
            "",
        ] {
            assert!(!resource_is_valid(bad), "{bad}");
        }
    }
}
