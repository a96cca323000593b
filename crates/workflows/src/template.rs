//! Payload templates: `Parameters`, `ResultSelector`, `ItemSelector`, `Credentials` and
//! `Assign`. Fields whose name ends in `.$` take their value from a path or an intrinsic
//! function; everything else is copied as is.

use crate::error::EvalError;
use crate::intrinsics::{Call, Entropy};
use crate::jsonpath::{JsonPath, Scope};
use serde_json::{Map, Value};

/// A compiled payload template.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// Static JSON (no `.$` field anywhere below).
    Literal(Value),
    /// An object with at least one dynamic field somewhere below. Keys have `.$` removed.
    Object(Vec<(String, Template)>),
    /// An array with a dynamic element somewhere below.
    Array(Vec<Template>),
    /// A `.$` field selecting with a path; `field` is the original key (for messages).
    Path { field: String, path: JsonPath },
    /// A `.$` field calling an intrinsic function.
    Call { field: String, call: Box<Call> },
}

/// The value of a `.$` field: a path or an intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub enum Dynamic {
    Path(JsonPath),
    Call(Box<Call>),
}

impl Template {
    /// True when evaluating can never fail or vary.
    pub fn is_literal(&self) -> bool {
        matches!(self, Template::Literal(_))
    }

    /// Evaluates the template against the state's data.
    pub fn evaluate(&self, scope: Scope<'_>, entropy: &mut dyn Entropy) -> Result<Value, EvalError> {
        Ok(match self {
            Template::Literal(v) => v.clone(),
            Template::Object(fields) => {
                let mut out = Map::new();
                for (k, t) in fields {
                    out.insert(k.clone(), t.evaluate(scope, entropy)?);
                }
                Value::Object(out)
            }
            Template::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for t in items {
                    out.push(t.evaluate(scope, entropy)?);
                }
                Value::Array(out)
            }
            Template::Path { field, path } => path.select(scope)?.ok_or_else(|| {
                EvalError::runtime(format!(
                    "The JSONPath '{path}' specified for the field '{field}' could not be found in the input '{}'",
                    scope.input
                ))
            })?,
            Template::Call { call, .. } => call.evaluate(scope, entropy)?,
        })
    }
}

/// Parses the string value of a `.$` field.
pub(crate) fn parse_dynamic(text: &str) -> Result<Dynamic, String> {
    if crate::intrinsics::looks_like_call(text) {
        Call::parse(text).map(|c| Dynamic::Call(Box::new(c))).map_err(|e| e.message)
    } else {
        JsonPath::parse(text).map(Dynamic::Path).map_err(|e| e.message)
    }
}

/// Compiles a template, reporting every problem through `report(location, message)`.
/// Returns `None` if anything was wrong.
pub(crate) fn compile(value: &Value, at: &str, report: &mut dyn FnMut(String, String)) -> Option<Template> {
    match value {
        Value::Object(map) => {
            let mut fields = Vec::with_capacity(map.len());
            let mut ok = true;
            let mut dynamic = false;
            for (key, v) in map {
                if let Some(stripped) = key.strip_suffix(".$") {
                    dynamic = true;
                    if map.contains_key(stripped) {
                        // After `.$` is removed both would produce the same field.
                        report(
                            at.to_string(),
                            format!(
                                "Duplicate field '{stripped}': '{key}' and '{stripped}' name the same field"
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    let Some(text) = v.as_str() else {
                        report(
                            format!("{at}/{key}"),
                            format!(
                                "The value for the field '{key}' must be a STRING that contains a JSONPath or an intrinsic function"
                            ),
                        );
                        ok = false;
                        continue;
                    };
                    match parse_dynamic(text) {
                        Ok(Dynamic::Path(path)) => {
                            fields.push((stripped.to_string(), Template::Path { field: key.clone(), path }))
                        }
                        Ok(Dynamic::Call(call)) => {
                            fields.push((stripped.to_string(), Template::Call { field: key.clone(), call }))
                        }
                        Err(why) => {
                            report(
                                format!("{at}/{key}"),
                                format!(
                                    "The value for the field '{key}' must be a valid JSONPath or a valid intrinsic function call ({why})"
                                ),
                            );
                            ok = false;
                        }
                    }
                } else {
                    match compile(v, &format!("{at}/{key}"), report) {
                        Some(t) => {
                            dynamic |= !t.is_literal();
                            fields.push((key.clone(), t));
                        }
                        None => ok = false,
                    }
                }
            }
            if !ok {
                None
            } else if dynamic {
                Some(Template::Object(fields))
            } else {
                Some(Template::Literal(value.clone()))
            }
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, v) in items.iter().enumerate() {
                match compile(v, &format!("{at}[{i}]"), report) {
                    Some(t) => out.push(t),
                    None => ok = false,
                }
            }
            if !ok {
                None
            } else if out.iter().all(Template::is_literal) {
                Some(Template::Literal(value.clone()))
            } else {
                Some(Template::Array(out))
            }
        }
        other => Some(Template::Literal(other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Zero;
    impl Entropy for Zero {
        fn next_u64(&mut self) -> u64 {
            0
        }
    }

    fn build(v: Value) -> Result<Template, Vec<(String, String)>> {
        let mut errs = Vec::new();
        let t = compile(&v, "/Parameters", &mut |a, m| errs.push((a, m)));
        t.ok_or(errs)
    }

    #[test]
    fn parameters_example_from_docs() {
        // "InputPath, Parameters and ResultSelector" page.
        let t = build(json!({
            "comment": "Selecting what I care about.",
            "MyDetails": {"size.$": "$.product.details.size", "exists.$": "$.product.availability", "StaticValue": "foo"}
        }))
        .unwrap();
        let input = json!({"comment": "Example for Parameters.", "product": {"details": {"color": "blue", "size": "small", "material": "cotton"}, "availability": "in stock", "sku": "2317", "cost": "$23"}});
        let vars = Map::new();
        let out =
            t.evaluate(Scope { input: &input, context: &json!({}), variables: &vars }, &mut Zero).unwrap();
        assert_eq!(
            out,
            json!({"comment": "Selecting what I care about.", "MyDetails": {"size": "small", "exists": "in stock", "StaticValue": "foo"}})
        );
    }

    #[test]
    fn result_selector_example_from_docs() {
        let t = build(json!({"ClusterId.$": "$.output.ClusterId", "ResourceType.$": "$.resourceType", "SomethingElse.$": "$.thisdoesnotexist"})).unwrap();
        let input =
            json!({"resourceType": "elasticmapreduce", "output": {"ClusterId": "AKIAIOSFODNN7EXAMPLE"}});
        let vars = Map::new();
        let err = t
            .evaluate(Scope { input: &input, context: &json!({}), variables: &vars }, &mut Zero)
            .unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert!(
            err.cause.contains(
                "'$.thisdoesnotexist' specified for the field 'SomethingElse.$' could not be found"
            ),
            "{}",
            err.cause
        );
    }

    #[test]
    fn arrays_and_context() {
        let t = build(json!([{"id.$": "$$.Execution.Id", "n": null}])).unwrap();
        let vars = Map::new();
        let out = t
            .evaluate(
                Scope { input: &json!({}), context: &json!({"Execution": {"Id": "e"}}), variables: &vars },
                &mut Zero,
            )
            .unwrap();
        assert_eq!(out, json!([{"id": "e", "n": null}]));
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(build(json!({"conflict": "value", "conflict.$": "$.value"})).is_err());
        assert!(build(json!({"lorem.$": "ipsum"})).is_err());
        assert!(build(json!({"a": [{"b.$": 5}]})).is_err());
        assert!(build(json!({"a.$": "States.MathAdd(1,'-1')"})).is_err());
        let errs = build(json!({"x": {"y.$": "nope"}})).unwrap_err();
        assert_eq!(errs[0].0, "/Parameters/x/y.$");
    }
}
