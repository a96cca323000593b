//! Choice rules (JSONPath flavour): comparisons, `And`/`Or`/`Not`, type tests.

use crate::error::EvalError;
use crate::jsonpath::{JsonPath, Scope};
use crate::template::Template;
use chrono::{DateTime, FixedOffset};
use serde_json::Value;
use std::cmp::Ordering;

/// A top-level choice rule: a condition and where to go when it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceRule {
    pub condition: Condition,
    pub next: String,
    /// Variables assigned when this rule is taken.
    pub assign: Option<Template>,
}

/// A boolean expression over the state input.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    /// `Variable` plus one comparison operator.
    Test {
        variable: JsonPath,
        test: Test,
    },
}

/// What a data-test rule compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    /// The `...Path` operators: compare with another value of the input.
    Path(JsonPath),
}

/// Value type a comparison operates on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareType {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

/// Comparison relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Equals,
    LessThan,
    GreaterThan,
    LessThanEquals,
    GreaterThanEquals,
}

/// Type tests (`IsNull`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeTest {
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

/// A comparison operator and its operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Compare {
        ty: CompareType,
        relation: Relation,
        operand: Operand,
    },
    /// `StringMatches` with `*` wildcards (`\*` and `\\` escape).
    Matches(String),
    /// `IsNull: true` etc.; `expected` is the literal boolean.
    Type {
        test: TypeTest,
        expected: bool,
    },
}

/// Every comparison operator name, for parsing and for "unknown field" checks.
pub(crate) fn parse_operator(name: &str) -> Option<(OperatorKind, bool)> {
    let (base, path) = match name.strip_suffix("Path") {
        Some(b) if b != "Is" => (b, true),
        _ => (name, false),
    };
    let types = [
        ("String", CompareType::String),
        ("Numeric", CompareType::Numeric),
        ("Boolean", CompareType::Boolean),
        ("Timestamp", CompareType::Timestamp),
    ];
    let relations = [
        ("Equals", Relation::Equals),
        ("LessThanEquals", Relation::LessThanEquals),
        ("GreaterThanEquals", Relation::GreaterThanEquals),
        ("LessThan", Relation::LessThan),
        ("GreaterThan", Relation::GreaterThan),
    ];
    for (tn, ty) in types {
        if let Some(rest) = base.strip_prefix(tn) {
            if ty == CompareType::Boolean && rest != "Equals" {
                return None;
            }
            if ty == CompareType::String && rest == "Matches" && !path {
                return Some((OperatorKind::Matches, false));
            }
            for (rn, rel) in relations {
                if rest == rn {
                    return Some((OperatorKind::Compare(ty, rel), path));
                }
            }
            return None;
        }
    }
    if path {
        return None;
    }
    let tt = match name {
        "IsNull" => TypeTest::IsNull,
        "IsPresent" => TypeTest::IsPresent,
        "IsNumeric" => TypeTest::IsNumeric,
        "IsString" => TypeTest::IsString,
        "IsBoolean" => TypeTest::IsBoolean,
        "IsTimestamp" => TypeTest::IsTimestamp,
        _ => return None,
    };
    Some((OperatorKind::Type(tt), false))
}

/// A recognised operator name, before its operand is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OperatorKind {
    Compare(CompareType, Relation),
    Matches,
    Type(TypeTest),
}

/// Parses an ASL timestamp (RFC 3339, e.g. `2016-03-14T01:59:00Z`).
pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    // AWS requires the 'T' separator; chrono's RFC 3339 parser also takes a space.
    if !s.contains('T') {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

/// `StringMatches`: `*` matches any run of characters; `\*` a literal star, `\\` a
/// literal backslash.
pub fn string_matches(pattern: &str, value: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => toks.push(Tok::Char(e)),
                None => toks.push(Tok::Char('\\')),
            },
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let v: Vec<char> = value.chars().collect();
    // Classic wildcard matching with backtracking to the last star.
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < v.len() {
        match toks.get(p) {
            Some(Tok::Char(c)) if *c == v[i] => {
                p += 1;
                i += 1;
            }
            Some(Tok::Star) => {
                star = Some((p, i));
                p += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

impl Condition {
    /// Evaluates the condition. A `Variable` that does not exist is an error (AWS fails
    /// the execution), except under `IsPresent`.
    pub fn evaluate(&self, scope: Scope<'_>) -> Result<bool, EvalError> {
        match self {
            Condition::And(all) => {
                for c in all {
                    if !c.evaluate(scope)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Condition::Or(any) => {
                for c in any {
                    if c.evaluate(scope)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Condition::Not(c) => Ok(!c.evaluate(scope)?),
            Condition::Test { variable, test } => {
                let value = variable.select(scope)?;
                if let Test::Type { test: TypeTest::IsPresent, expected } = test {
                    return Ok(value.is_some() == *expected);
                }
                let Some(value) = value else {
                    return Err(EvalError::runtime(format!(
                        "Invalid path '{variable}': The choice state's condition path references an invalid value."
                    )));
                };
                test.holds(&value, scope)
            }
        }
    }
}

impl Test {
    fn holds(&self, value: &Value, scope: Scope<'_>) -> Result<bool, EvalError> {
        Ok(match self {
            Test::Type { test, expected } => {
                let is = match test {
                    TypeTest::IsNull => value.is_null(),
                    TypeTest::IsPresent => true,
                    TypeTest::IsNumeric => value.is_number(),
                    TypeTest::IsString => value.is_string(),
                    TypeTest::IsBoolean => value.is_boolean(),
                    TypeTest::IsTimestamp => value.as_str().and_then(parse_timestamp).is_some(),
                };
                is == *expected
            }
            Test::Matches(pattern) => value.as_str().is_some_and(|s| string_matches(pattern, s)),
            Test::Compare { ty, relation, operand } => {
                let other = match operand {
                    Operand::Literal(v) => v.clone(),
                    Operand::Path(p) => p.select(scope)?.ok_or_else(|| {
                        EvalError::runtime(format!(
                            "Invalid path '{p}': The choice state's condition path references an invalid value."
                        ))
                    })?,
                };
                // A type mismatch makes the comparison false rather than an error.
                let ord = match ty {
                    CompareType::String => match (value, &other) {
                        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                        _ => None,
                    },
                    CompareType::Numeric => match (value.as_f64(), other.as_f64()) {
                        (Some(a), Some(b)) if value.is_number() && other.is_number() => a.partial_cmp(&b),
                        _ => None,
                    },
                    CompareType::Boolean => match (value, &other) {
                        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
                        _ => None,
                    },
                    CompareType::Timestamp => {
                        match (
                            value.as_str().and_then(parse_timestamp),
                            other.as_str().and_then(parse_timestamp),
                        ) {
                            (Some(a), Some(b)) => Some(a.cmp(&b)),
                            _ => None,
                        }
                    }
                };
                match (ord, relation) {
                    (None, _) => false,
                    (Some(o), Relation::Equals) => o == Ordering::Equal,
                    (Some(o), Relation::LessThan) => o == Ordering::Less,
                    (Some(o), Relation::GreaterThan) => o == Ordering::Greater,
                    (Some(o), Relation::LessThanEquals) => o != Ordering::Greater,
                    (Some(o), Relation::GreaterThanEquals) => o != Ordering::Less,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_parse() {
        assert_eq!(
            parse_operator("StringEquals"),
            Some((OperatorKind::Compare(CompareType::String, Relation::Equals), false))
        );
        assert_eq!(
            parse_operator("NumericLessThanEqualsPath"),
            Some((OperatorKind::Compare(CompareType::Numeric, Relation::LessThanEquals), true))
        );
        assert_eq!(
            parse_operator("BooleanEqualsPath"),
            Some((OperatorKind::Compare(CompareType::Boolean, Relation::Equals), true))
        );
        assert_eq!(parse_operator("StringMatches"), Some((OperatorKind::Matches, false)));
        assert_eq!(parse_operator("IsPresent"), Some((OperatorKind::Type(TypeTest::IsPresent), false)));
        assert_eq!(parse_operator("BooleanLessThan"), None);
        assert_eq!(parse_operator("StringMatchesPath"), None);
        assert_eq!(parse_operator("IsNullPath"), None);
        assert_eq!(parse_operator("Next"), None);
    }

    #[test]
    fn wildcard_matching() {
        assert!(string_matches("log-*.txt", "log-2024.txt"));
        assert!(string_matches("*.log", "a.log"));
        assert!(string_matches("*", ""));
        assert!(string_matches("a*b*c", "aXXbYYc"));
        assert!(!string_matches("a*b*c", "aXXbYY"));
        assert!(string_matches("file\\*.txt", "file*.txt"));
        assert!(!string_matches("file\\*.txt", "fileX.txt"));
        assert!(string_matches("back\\\\slash", "back\\slash"));
        assert!(!string_matches("abc", "abcd"));
    }

    #[test]
    fn timestamps() {
        assert!(parse_timestamp("2016-03-14T01:59:00Z").is_some());
        assert!(parse_timestamp("2016-03-14T01:59:00.123+02:00").is_some());
        assert!(parse_timestamp("2016-03-14 01:59:00Z").is_none());
        assert!(parse_timestamp("yesterday").is_none());
    }
}
