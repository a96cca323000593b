//! EventBridge event patterns: parse and validate a pattern as EventBridge does
//! (`InvalidEventPatternException` texts included) and match events against it.
//!
//! Semantics follow aws/event-ruler, the matcher EventBridge runs:
//! - the pattern and the event are both flattened to dot-joined paths, so `{"a.b": …}` and
//!   `{"a": {"b": …}}` are the same field, in the pattern and in the event;
//! - only leaves count: `exists` never matches an object, and an empty array has no leaves;
//! - an array in the event offers each element as a value ("any element matches");
//! - fields matched inside objects that are elements of the same array must come from the same
//!   element ("array consistency", event-ruler's `rulesForJSONEvent`);
//! - `$or` forks the pattern into alternatives; duplicate keys keep the last one.

mod compile;
mod complexity;
mod ip;
mod json;
mod text;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use compile::Failure;
use ip::IpRange;
use text::{Folded, Wildcard};

/// Why a pattern was refused. Every variant displays as AWS's `InvalidEventPatternException`
/// message, `Event pattern is not valid. Reason: …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The text is not well-formed JSON (the reason is worded as AWS's JSON parser words it).
    #[error("Event pattern is not valid. Reason: {0}")]
    MalformedJson(String),
    /// Well-formed JSON that is not a valid pattern.
    #[error("Event pattern is not valid. Reason: {0}")]
    Invalid(String),
}

impl PatternError {
    /// The part after `Reason: `.
    pub fn reason(&self) -> &str {
        match self {
            PatternError::MalformedJson(r) | PatternError::Invalid(r) => r,
        }
    }
}

/// A compiled event pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    rules: Vec<SubRule>,
    /// Every field path the rules test, so matching only collects those leaves.
    paths: HashSet<String>,
}

/// One alternative of a pattern (after `$or` expansion): every field must match.
#[derive(Debug, Clone)]
pub(crate) struct SubRule {
    /// Flattened path and its alternatives, sorted by path as event-ruler walks them.
    pub(crate) fields: Vec<(String, Vec<Matcher>)>,
}

/// One value in a field's list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matcher {
    Exact(Exact),
    Prefix(String),
    Suffix(String),
    PrefixFold(Folded),
    SuffixFold(Folded),
    EqualsFold(Folded),
    Wildcard(Wildcard),
    Numeric(NumRange),
    Cidr(IpRange),
    /// `{"exists": true}`
    Exists,
    /// `{"exists": false}`
    Absent,
    AnythingBut(Negated),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Exact {
    Str(String),
    /// A string pattern that is an IP literal: equal addresses match whatever their spelling.
    Ip(Vec<u8>),
    Number(Number),
    Bool(bool),
    Null,
}

/// The values an `anything-but` refuses (sorted and de-duplicated: they are a set).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Negated {
    Strings(Vec<String>),
    Numbers(Vec<Number>),
    Prefixes(Vec<String>),
    Suffixes(Vec<String>),
    Folded(Vec<Folded>),
    Wildcards(Vec<Wildcard>),
}

/// A JSON number compared by value: exactly when both are integers, else as doubles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number {
    pub(crate) float: f64,
    pub(crate) int: Option<i128>,
}

impl Number {
    /// From JSON number text (always valid: the tokenizer checked it).
    pub(crate) fn parse(text: &str) -> Number {
        let int = if text.contains(['.', 'e', 'E']) { None } else { text.parse::<i128>().ok() };
        Number { float: text.parse::<f64>().unwrap_or(f64::NAN), int }
    }

    fn from_json(n: &serde_json::Number) -> Number {
        let int = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
        Number { float: n.as_f64().unwrap_or(f64::NAN), int }
    }

    fn same_value(&self, other: &Number) -> bool {
        match (self.int, other.int) {
            (Some(a), Some(b)) => a == b,
            _ => self.float == other.float,
        }
    }
}

/// A numeric interval; event-ruler bounds every range by ±5e9.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NumRange {
    pub(crate) bottom: f64,
    pub(crate) open_bottom: bool,
    pub(crate) top: f64,
    pub(crate) open_top: bool,
}

impl NumRange {
    pub(crate) fn equals(v: f64) -> NumRange {
        NumRange { bottom: v, open_bottom: false, top: v, open_top: false }
    }

    fn contains(&self, x: f64) -> bool {
        let above = x > self.bottom || (!self.open_bottom && x == self.bottom);
        let below = x < self.top || (!self.open_top && x == self.top);
        above && below
    }
}

impl Exact {
    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Exact::Str(p), Value::String(s)) => p == s,
            (Exact::Ip(p), Value::String(s)) => ip::ip_bytes(s).is_ok_and(|b| &b == p),
            (Exact::Number(p), Value::Number(n)) => p.same_value(&Number::from_json(n)),
            (Exact::Bool(p), Value::Bool(b)) => p == b,
            (Exact::Null, Value::Null) => true,
            _ => false,
        }
    }
}

impl Negated {
    /// Whether `v` is one of the refused values. Only strings (or, for a number list, numbers)
    /// can be refused: anything of another type passes an `anything-but`.
    fn refuses(&self, v: &Value) -> bool {
        match (self, v) {
            (Negated::Strings(set), Value::String(s)) => set.binary_search(s).is_ok(),
            (Negated::Numbers(set), Value::Number(n)) => {
                let n = Number::from_json(n);
                set.iter().any(|m| m.same_value(&n))
            }
            (Negated::Prefixes(set), Value::String(s)) => set.iter().any(|p| s.starts_with(p.as_str())),
            (Negated::Suffixes(set), Value::String(s)) => set.iter().any(|p| s.ends_with(p.as_str())),
            (Negated::Folded(set), Value::String(s)) => set.iter().any(|f| f.equals(s)),
            (Negated::Wildcards(set), Value::String(s)) => set.iter().any(|w| w.matches(s)),
            _ => false,
        }
    }
}

impl Matcher {
    /// Whether a present leaf value satisfies this matcher.
    fn matches(&self, v: &Value) -> bool {
        let s = v.as_str();
        match self {
            Matcher::Exact(e) => e.matches(v),
            Matcher::Prefix(p) => s.is_some_and(|s| s.starts_with(p.as_str())),
            Matcher::Suffix(p) => s.is_some_and(|s| s.ends_with(p.as_str())),
            Matcher::PrefixFold(f) => s.is_some_and(|s| f.is_prefix_of(s)),
            Matcher::SuffixFold(f) => s.is_some_and(|s| f.is_suffix_of(s)),
            Matcher::EqualsFold(f) => s.is_some_and(|s| f.equals(s)),
            Matcher::Wildcard(w) => s.is_some_and(|s| w.matches(s)),
            Matcher::Numeric(r) => v.as_f64().is_some_and(|x| v.is_number() && r.contains(x)),
            Matcher::Cidr(r) => s.is_some_and(|s| ip::ip_bytes(s).is_ok_and(|b| r.contains(&b))),
            Matcher::Exists => true,
            Matcher::Absent => false,
            Matcher::AnythingBut(n) => !n.refuses(v),
        }
    }
}

impl Pattern {
    /// Parses and validates a pattern as EventBridge's `PutRule`/`TestEventPattern` do.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let rules = match compile::compile(text, true) {
            Ok(rules) => rules,
            // Event-ruler retries a syntax failure with its legacy compiler, which reads `$or`
            // as a plain field name (so `{"$or": {"a": ["b"]}}` is valid there).
            Err(Failure::Syntax(_) | Failure::Json(_)) => compile::compile(text, false).map_err(to_error)?,
            Err(other) => return Err(to_error(other)),
        };
        complexity::check(&rules).map_err(PatternError::Invalid)?;
        let paths = rules.iter().flat_map(|r| r.fields.iter().map(|(p, _)| p.clone())).collect();
        Ok(Pattern { source: text.to_string(), rules, paths })
    }

    /// The pattern text as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `event` matches. Only a JSON object can match.
    pub fn matches(&self, event: &Value) -> bool {
        self.matches_flat(&FlatEvent::new(event, &self.paths))
    }

    /// Every field path this pattern tests (to build a [`FlatEvent`] for many patterns).
    pub fn paths(&self) -> &HashSet<String> {
        &self.paths
    }

    /// Matches an event walked once for many patterns; `event` must have been built with
    /// (a superset of) this pattern's [`paths`](Pattern::paths).
    pub fn matches_flat(&self, event: &FlatEvent<'_>) -> bool {
        event.object && self.rules.iter().any(|rule| Search::new(rule, &event.leaves).run())
    }
}

/// An event's leaves on the wanted paths, collected in one walk, so routing one event
/// through every rule on a bus walks it once instead of once per rule.
pub struct FlatEvent<'e> {
    leaves: HashMap<String, Vec<Leaf<'e>>>,
    object: bool,
}

impl<'e> FlatEvent<'e> {
    pub fn new(event: &'e Value, paths: &HashSet<String>) -> FlatEvent<'e> {
        let mut leaves: HashMap<String, Vec<Leaf>> = HashMap::new();
        if event.is_object() {
            let mut walker = Walker { wanted: paths, out: &mut leaves, next_array: 0 };
            walker.walk(event, &mut String::new(), &mut Vec::new());
        }
        FlatEvent { leaves, object: event.is_object() }
    }
}

fn to_error(f: Failure) -> PatternError {
    match f {
        Failure::Json(m) => PatternError::MalformedJson(m),
        Failure::Syntax(m) | Failure::Illegal(m) => PatternError::Invalid(m),
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Which element of which event array a leaf sits in: `(array id, index)`, sorted by id.
type Membership = Vec<(u32, u32)>;

struct Leaf<'e> {
    value: &'e Value,
    membership: Membership,
}

struct Walker<'w, 'e> {
    wanted: &'w HashSet<String>,
    out: &'w mut HashMap<String, Vec<Leaf<'e>>>,
    next_array: u32,
}

impl<'e> Walker<'_, 'e> {
    fn walk(&mut self, v: &'e Value, path: &mut String, membership: &mut Membership) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    self.walk(child, path, membership);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                let id = self.next_array;
                self.next_array += 1;
                for (i, item) in items.iter().enumerate() {
                    membership.push((id, i as u32));
                    self.walk(item, path, membership);
                    membership.pop();
                }
            }
            leaf => {
                if self.wanted.contains(path.as_str()) {
                    self.out
                        .entry(path.clone())
                        .or_default()
                        .push(Leaf { value: leaf, membership: membership.clone() });
                }
            }
        }
    }
}

/// Two memberships agree when every array they share is at the same index.
fn consistent(a: &Membership, b: &Membership) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if a[i].1 != b[j].1 {
                    return false;
                }
                i += 1;
                j += 1;
            }
        }
    }
    true
}

fn merge(a: &Membership, b: &Membership) -> Membership {
    let mut out: Membership = a.iter().chain(b.iter()).copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Depth-first search for an array-consistent choice of one leaf per field, in path order.
/// `exists: false` is judged against the leaves consistent with the choices made so far, as
/// event-ruler's name matcher does.
struct Search<'a, 'e> {
    rule: &'a SubRule,
    leaves: &'a HashMap<String, Vec<Leaf<'e>>>,
    /// (field index, membership) states already known to fail, so arrays cannot blow up.
    failed: HashSet<(usize, Membership)>,
}

impl<'a, 'e> Search<'a, 'e> {
    fn new(rule: &'a SubRule, leaves: &'a HashMap<String, Vec<Leaf<'e>>>) -> Self {
        Search { rule, leaves, failed: HashSet::new() }
    }

    fn run(&mut self) -> bool {
        self.step(0, &Vec::new())
    }

    fn step(&mut self, i: usize, membership: &Membership) -> bool {
        let Some((path, matchers)) = self.rule.fields.get(i) else {
            return true;
        };
        if self.failed.contains(&(i, membership.clone())) {
            return false;
        }
        let leaves: &[Leaf] = self.leaves.get(path).map(Vec::as_slice).unwrap_or(&[]);
        let mut any_present = false;
        for leaf in leaves {
            if !consistent(membership, &leaf.membership) {
                continue;
            }
            any_present = true;
            if matchers.iter().any(|m| m.matches(leaf.value)) {
                let next = merge(membership, &leaf.membership);
                if self.step(i + 1, &next) {
                    return true;
                }
            }
        }
        if !any_present && matchers.contains(&Matcher::Absent) && self.step(i + 1, membership) {
            return true;
        }
        self.failed.insert((i, membership.clone()));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(pattern: &str, event: Value) -> bool {
        Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}")).matches(&event)
    }

    fn err(pattern: &str) -> String {
        Pattern::parse(pattern).err().map(|e| e.reason().to_string()).unwrap_or_default()
    }

    #[test]
    fn exact_values() {
        assert!(m(r#"{"source": ["aws.ec2", "aws.s3"]}"#, json!({"source": "aws.s3"})));
        assert!(!m(r#"{"source": ["aws.ec2"]}"#, json!({"source": "aws.s3"})));
        assert!(m(r#"{"n": [300]}"#, json!({"n": 300.0})));
        assert!(m(r#"{"n": [3.0e2]}"#, json!({"n": 300})));
        assert!(!m(r#"{"n": [300]}"#, json!({"n": "300"})));
        assert!(m(r#"{"b": [true]}"#, json!({"b": true})));
        assert!(!m(r#"{"b": ["true"]}"#, json!({"b": true})));
        assert!(m(r#"{"z": [null]}"#, json!({"z": null})));
        assert!(!m(r#"{"z": [null]}"#, json!({})));
        assert!(m(r#"{"acct": [123456789012]}"#, json!({"acct": 123456789012u64})));
    }

    #[test]
    fn arrays_and_nesting() {
        assert!(m(r#"{"r": ["b"]}"#, json!({"r": ["a", "b"]})));
        assert!(m(r#"{"d": {"s": {"t": ["x"]}}}"#, json!({"d": {"s": {"t": "x"}}})));
        assert!(m(r#"{"d.s": ["x"]}"#, json!({"d": {"s": "x"}})));
        assert!(m(r#"{"d": {"s": ["x"]}}"#, json!({"d.s": "x"})));
        // Array consistency: both fields must come from the same element.
        let event = json!({"e": [{"f": "John", "l": "Doe"}, {"f": "Anna", "l": "Smith"}]});
        assert!(m(r#"{"e": {"f": ["Anna"], "l": ["Smith"]}}"#, event.clone()));
        assert!(!m(r#"{"e": {"f": ["Anna"], "l": ["Doe"]}}"#, event));
    }

    #[test]
    fn absent_is_array_consistent() {
        let event = json!({"e": [{"f": "Anna"}, {"f": "John", "l": "Doe"}]});
        // Anna's element has no "l", so exists:false holds there.
        assert!(m(r#"{"e": {"f": ["Anna"], "l": [{"exists": false}]}}"#, event.clone()));
        assert!(!m(r#"{"e": {"f": ["John"], "l": [{"exists": false}]}}"#, event));
    }

    #[test]
    fn operators() {
        let e = json!({"s": "Hello.PNG", "n": 42, "ip": "10.1.2.3"});
        assert!(m(r#"{"s": [{"prefix": "Hel"}]}"#, e.clone()));
        assert!(m(r#"{"s": [{"suffix": {"equals-ignore-case": ".png"}}]}"#, e.clone()));
        assert!(m(r#"{"s": [{"equals-ignore-case": "hello.png"}]}"#, e.clone()));
        assert!(m(r#"{"s": [{"wildcard": "H*.P*"}]}"#, e.clone()));
        assert!(m(r#"{"n": [{"numeric": [">", 0, "<=", 42]}]}"#, e.clone()));
        assert!(!m(r#"{"n": [{"numeric": [">", 0, "<", 42]}]}"#, e.clone()));
        assert!(m(r#"{"n": [{"numeric": ["=", 4.2e1]}]}"#, e.clone()));
        assert!(m(r#"{"ip": [{"cidr": "10.0.0.0/8"}]}"#, e.clone()));
        assert!(m(r#"{"ip": ["10.1.2.3"]}"#, e.clone()));
        assert!(m(r#"{"s": [{"anything-but": {"prefix": "x"}}]}"#, e.clone()));
        assert!(!m(r#"{"n": [{"anything-but": [41, 42]}]}"#, e.clone()));
        assert!(m(r#"{"n": [{"anything-but": ["42"]}]}"#, e.clone()));
        assert!(m(r#"{"s": [{"exactly": "Hello.PNG"}]}"#, e.clone()));
        assert!(m(r#"{"x": [{"exists": false}], "s": [{"exists": true}]}"#, e));
    }

    #[test]
    fn type_sensitivity_and_bounds() {
        // anything-but passes if any element of an event array is not refused.
        assert!(m(r#"{"s": [{"anything-but": "x"}]}"#, json!({"s": ["x", "y"]})));
        assert!(!m(r#"{"s": [{"anything-but": "x"}]}"#, json!({"s": ["x"]})));
        // String operators never match non-strings; numeric never matches strings.
        assert!(!m(r#"{"s": [{"prefix": ""}]}"#, json!({"s": 1})));
        assert!(!m(r#"{"s": [{"equals-ignore-case": "1"}]}"#, json!({"s": 1})));
        assert!(!m(r#"{"s": [{"wildcard": "*"}]}"#, json!({"s": null})));
        // Numeric ranges stop at event-ruler's ±5e9.
        assert!(!m(r#"{"n": [{"numeric": [">", 0]}]}"#, json!({"n": 6e9})));
        assert!(m(r#"{"n": [{"numeric": [">", 0]}]}"#, json!({"n": 5e9})));
        assert!(m(r#"{"n": [{"numeric": ["<", 0]}]}"#, json!({"n": -5e9})));
        assert_eq!(err(r#"{"n": [{"numeric": [">", 5e9]}]}"#), "Bottom must be less than top");
        assert_eq!(
            err(r#"{"n": [{"numeric": [">", -6e9]}]}"#),
            "Value must be between -5.0E9 and 5.0E9, inclusive"
        );
        // exists only sees leaves.
        assert!(!m(r#"{"o": [{"exists": true}]}"#, json!({"o": {"k": 1}})));
        assert!(m(r#"{"o": [{"exists": false}]}"#, json!({"o": {"k": 1}})));
        assert!(m(r#"{"o": [{"exists": true}]}"#, json!({"o": null})));
        assert!(m(r#"{"o": [{"exists": false}]}"#, json!({"o": []})));
        // Only objects are events.
        assert!(!m(r#"{"o": [{"exists": false}]}"#, json!([1])));
    }

    #[test]
    fn ipv6_literals_match_any_spelling() {
        assert!(m(r#"{"ip": ["2001:db8::1"]}"#, json!({"ip": "2001:0DB8:0:0:0:0:0:1"})));
    }

    #[test]
    fn or_forks_and_overrides() {
        let p = r#"{"a": ["1"], "$or": [{"a": ["2"]}, {"b": ["3"]}]}"#;
        assert!(m(p, json!({"a": "2"})));
        assert!(m(p, json!({"a": "1", "b": "3"})));
        assert!(!m(p, json!({"a": "1"})));
        // Duplicate keys: the last one wins.
        assert!(m(r#"{"a": ["x"], "a": ["y"]}"#, json!({"a": "y"})));
        assert!(!m(r#"{"a": ["x"], "a": ["y"]}"#, json!({"a": "x"})));
    }

    #[test]
    fn legacy_or_fallback() {
        // Not an array: event-ruler's legacy compiler reads "$or" as a field name.
        assert!(m(r#"{"$or": {"a": ["b"]}}"#, json!({"$or": {"a": "b"}})));
        assert_eq!(err(r#"{"$or": [{"a": ["b"]}]}"#), "Unrecognized match type a");
        assert_eq!(err(r#"{"$or": [{"numeric": [1]}, {"a": ["b"]}]}"#), "Invalid member in numeric match: 1");
    }

    #[test]
    fn validation_messages() {
        assert_eq!(err("[1]"), "Filter is not an object");
        assert_eq!(err("{}"), "Empty objects are not allowed");
        assert_eq!(err(r#"{"a": {}}"#), "Empty objects are not allowed");
        assert_eq!(err(r#"{"a": [[1]]}"#), "Match value must be String, number, true, false, or null");
        assert_eq!(err(r#"{"a": [{}]}"#), "Match expression name not found");
        assert_eq!(
            err(r#"{"a": [{"prefix": "x", "suffix": "y"}]}"#),
            "Only one key allowed in match expression"
        );
        assert_eq!(err(r#"{"a": [{"numeric": []}]}"#), "Invalid member in numeric match: ]");
        assert_eq!(err(r#"{"a": [{"numeric": ["!", 1]}]}"#), "Unrecognized numeric range operator: !");
        assert_eq!(
            err(r#"{"a": [{"numeric": ["<", 1, ">", 0]}]}"#),
            "Too many elements in numeric expression"
        );
        assert_eq!(err(r#"{"a": [{"numeric": [">", 5, "<", 1]}]}"#), "Bottom must be less than top");
        assert_eq!(
            err(r#"{"a": [{"numeric": [">", 0, "<", 1, 2]}]}"#),
            "Too many terms in numeric range expression"
        );
        assert_eq!(
            err(r#"{"a": [{"numeric": ["=", 6e9]}]}"#),
            "Value must be between -5.0E9 and 5.0E9, inclusive"
        );
        assert_eq!(err(r#"{"a": [{"numeric": [">", 1, 2]}]}"#), "Bad value in numeric range: 2");
        assert_eq!(err(r#"{"a": [{"exists": 1}]}"#), "exists match pattern must be either true or false.");
        assert_eq!(
            err(r#"{"a": [{"anything-but": {"regex": "x"}}]}"#),
            "Unsupported anything-but pattern: regex"
        );
        assert_eq!(
            err(r#"{"a": [{"anything-but": ["a", 1]}]}"#),
            "Inside anything but list, either all values are number or string, mixed type is not supported"
        );
        assert_eq!(err(r#"{"a": [{"prefix": {"x": "y"}}]}"#), "Unsupported prefix pattern: x");
        // Reserved names inside $or fail the $or compiler; the legacy retry then reports.
        assert_eq!(
            err(r#"{"$or": [{"prefix": ["a"]}, {"b": ["c"]}]}"#),
            "prefix match pattern must be a string"
        );
        assert_eq!(
            err(r#"{"x": ["1"], "$or": [{"a": {"numeric": ["1"]}}, {"b": ["c"]}]}"#),
            "Unrecognized match type a"
        );
        assert!(matches!(Pattern::parse("{'a': 1}"), Err(PatternError::MalformedJson(_))));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = |n: usize| format!("{}[\"x\"]{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        let p = Pattern::parse(&deep(998)).unwrap();
        let mut event = json!("x");
        for _ in 0..998 {
            event = json!({ "a": event });
        }
        assert!(p.matches(&event));
        assert!(matches!(Pattern::parse(&deep(1200)), Err(PatternError::MalformedJson(_))));
    }

    #[test]
    fn serde_round_trip() {
        let p = Pattern::parse(r#"{"source": ["a"]}"#).unwrap();
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(s, r#""{\"source\": [\"a\"]}""#);
        let back: Pattern = serde_json::from_str(&s).unwrap();
        assert_eq!(back, p);
    }
}
