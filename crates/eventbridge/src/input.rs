//! What a target receives: InputPath selection and InputTransformer templates, as AWS
//! documents them (placeholders `<name>` filled from `InputPathsMap` JSONPaths; inside a
//! JSON string a value is inserted as text, elsewhere as JSON).
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputTransformer {
    pub input_paths_map: BTreeMap<String, String>,
    pub input_template: String,
}

/// Selects a simple JSONPath (`$`, `$.a.b`, `$.a[0]`, `$['a']`) from `event`.
pub fn select<'a>(event: &'a Value, path: &str) -> Result<Option<&'a Value>, String> {
    let rest = path.strip_prefix('$').ok_or_else(|| format!("InputPath {path} must start with $"))?;
    let mut cur = event;
    let mut chars = rest.char_indices().peekable();
    let bytes = rest;
    while let Some((i, c)) = chars.next() {
        match c {
            '.' => {
                let start = i + 1;
                let mut end = bytes.len();
                while let Some(&(j, n)) = chars.peek() {
                    if n == '.' || n == '[' {
                        end = j;
                        break;
                    }
                    chars.next();
                }
                let key = &bytes[start..end];
                match cur.get(key) {
                    Some(v) => cur = v,
                    None => return Ok(None),
                }
            }
            '[' => {
                let start = i + 1;
                let mut end = None;
                for (j, n) in chars.by_ref() {
                    if n == ']' {
                        end = Some(j);
                        break;
                    }
                }
                let end = end.ok_or_else(|| format!("InputPath {path}: unclosed ["))?;
                let inner = &bytes[start..end];
                let next = if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                    cur.get(q)
                } else {
                    let idx: usize =
                        inner.parse().map_err(|_| format!("InputPath {path}: bad index {inner}"))?;
                    cur.get(idx)
                };
                match next {
                    Some(v) => cur = v,
                    None => return Ok(None),
                }
            }
            _ => return Err(format!("InputPath {path} is not valid")),
        }
    }
    Ok(Some(cur))
}

/// Fills an InputTransformer's template from `event`.
pub fn transform_input(t: &InputTransformer, event: &Value) -> Result<String, String> {
    let mut values: BTreeMap<&str, Value> = BTreeMap::new();
    for (name, path) in &t.input_paths_map {
        values.insert(name, select(event, path)?.cloned().unwrap_or(Value::Null));
    }
    let event_text = event.to_string();
    let template = &t.input_template;
    let mut out = String::with_capacity(template.len() + 64);
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    let b = template.as_bytes();
    while i < b.len() {
        let c = b[i];
        if c == b'<' {
            if let Some(close) = template[i + 1..].find('>') {
                let name = &template[i + 1..i + 1 + close];
                let value = match name {
                    "aws.events.event" | "aws.events.event.json" => Some(event.clone()),
                    _ => values.get(name).cloned(),
                };
                if let Some(v) = value {
                    match (&v, in_string) {
                        (Value::String(s), true) => out.push_str(&escape_in_string(s)),
                        (other, true) => out.push_str(&escape_in_string(&other.to_string())),
                        (other, false) => out.push_str(&other.to_string()),
                    }
                    i += close + 2;
                    continue;
                }
            }
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
        }
        // Copy one UTF-8 character.
        let len = utf8_len(c);
        out.push_str(&template[i..(i + len).min(b.len())]);
        i += len;
    }
    let _ = event_text;
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// A value's text as it must appear between JSON quotes.
fn escape_in_string(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"id": "e1", "source": "my.app", "detail": {"instance": "i-1", "state": "running", "n": 3, "tags": ["a", "b"]}})
    }

    #[test]
    fn selects_paths() {
        let e = event();
        assert_eq!(select(&e, "$.detail.state").unwrap(), Some(&json!("running")));
        assert_eq!(select(&e, "$.detail.tags[1]").unwrap(), Some(&json!("b")));
        assert_eq!(select(&e, "$['detail']['n']").unwrap(), Some(&json!(3)));
        assert_eq!(select(&e, "$").unwrap(), Some(&e));
        assert_eq!(select(&e, "$.missing.x").unwrap(), None);
        assert!(select(&e, "detail").is_err());
    }

    #[test]
    fn fills_templates_as_aws_documents() {
        let t = InputTransformer {
            input_paths_map: [
                ("instance", "$.detail.instance"),
                ("state", "$.detail.state"),
                ("n", "$.detail.n"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            input_template:
                r#"{"msg": "<instance> is <state>", "state": <state>, "count": <n>, "raw": "<n>"}"#.into(),
        };
        let out: Value = serde_json::from_str(&transform_input(&t, &event()).unwrap()).unwrap();
        assert_eq!(out, json!({"msg": "i-1 is running", "state": "running", "count": 3, "raw": "3"}));
        let plain = InputTransformer {
            input_paths_map: [("s".to_string(), "$.detail.state".to_string())].into_iter().collect(),
            input_template: r#""Instance is <s>""#.into(),
        };
        assert_eq!(transform_input(&plain, &event()).unwrap(), r#""Instance is running""#);
        let whole = InputTransformer {
            input_paths_map: BTreeMap::new(),
            input_template: r#"{"e": <aws.events.event>}"#.into(),
        };
        let out: Value = serde_json::from_str(&transform_input(&whole, &event()).unwrap()).unwrap();
        assert_eq!(out["e"]["id"], "e1");
    }
}
