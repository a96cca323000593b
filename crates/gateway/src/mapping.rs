//! Request parameter mapping for HTTP integrations: `overwrite:path`, `append:header.x`,
//! `overwrite:querystring.q`, `remove:header.x`, … with values that are static text or
//! `$request.*` / `$context.*` / `$stageVariables.*` references.
use crate::access_log::render;
use std::collections::BTreeMap;

/// The parts of a request an HTTP integration forwards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ForwardRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
}

/// Why a mapping was refused at configuration time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid mapping expression specified: {0}")]
pub struct MappingError(pub String);

enum Op {
    Append,
    Overwrite,
    Remove,
}

enum Target<'a> {
    Path,
    Header(&'a str),
    Query(&'a str),
}

fn parse(key: &str) -> Result<(Op, Target<'_>), MappingError> {
    let bad = || MappingError(key.to_string());
    let (op, target) = key.split_once(':').ok_or_else(bad)?;
    let op = match op {
        "append" => Op::Append,
        "overwrite" => Op::Overwrite,
        "remove" => Op::Remove,
        _ => return Err(bad()),
    };
    let target = if target == "path" {
        Target::Path
    } else if let Some(h) = target.strip_prefix("header.").filter(|h| !h.is_empty()) {
        Target::Header(h)
    } else if let Some(q) = target.strip_prefix("querystring.").filter(|q| !q.is_empty()) {
        Target::Query(q)
    } else {
        return Err(bad());
    };
    if matches!((&op, &target), (Op::Append | Op::Remove, Target::Path)) {
        return Err(bad());
    }
    Ok((op, target))
}

/// Checks every key of a mapping (CreateIntegration refuses bad ones).
pub fn validate(mapping: &BTreeMap<String, String>) -> Result<(), MappingError> {
    mapping.keys().try_for_each(|k| parse(k).map(|_| ()))
}

fn set(list: &mut Vec<(String, String)>, name: &str, value: String, append: bool, ci: bool) {
    let same = |k: &String| if ci { k.eq_ignore_ascii_case(name) } else { k == name };
    if !append && let Some(i) = list.iter().position(|(k, _)| same(k)) {
        // Overwrite in place; later duplicates go.
        list[i].1 = value;
        let mut seen = 0;
        list.retain(|(k, _)| {
            !same(k) || {
                seen += 1;
                seen == 1
            }
        });
        return;
    }
    list.push((name.to_string(), value));
}

/// Applies `mapping`; `resolve` answers `request.path.id`, `context.requestId`, … .
pub fn apply(
    mapping: &BTreeMap<String, String>,
    req: &mut ForwardRequest,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Result<(), MappingError> {
    for (key, value) in mapping {
        let (op, target) = parse(key)?;
        let value = render(value, "", resolve);
        match (op, target) {
            (_, Target::Path) => req.path = if value.starts_with('/') { value } else { format!("/{value}") },
            (Op::Remove, Target::Header(h)) => req.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(h)),
            (Op::Remove, Target::Query(q)) => req.query.retain(|(k, _)| k != q),
            (op, Target::Header(h)) => set(&mut req.headers, h, value, matches!(op, Op::Append), true),
            (op, Target::Query(q)) => set(&mut req.query, q, value, matches!(op, Op::Append), false),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_append_remove() {
        let mut req = ForwardRequest {
            path: "/prod/items/7".into(),
            headers: vec![("X-Old".into(), "1".into()), ("x-keep".into(), "k".into())],
            query: vec![("q".into(), "1".into())],
        };
        let mapping = BTreeMap::from([
            ("overwrite:path".to_string(), "/v1/things/$request.path.id".to_string()),
            ("append:header.x-from".to_string(), "gw-${context.requestId}".to_string()),
            ("remove:header.x-old".to_string(), "''".to_string()),
            ("overwrite:querystring.q".to_string(), "$stageVariables.env".to_string()),
            ("append:querystring.z".to_string(), "static".to_string()),
        ]);
        validate(&mapping).unwrap();
        apply(&mapping, &mut req, &|n| match n {
            "request.path.id" => Some("7".into()),
            "context.requestId" => Some("r1".into()),
            "stageVariables.env" => Some("prod".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(req.path, "/v1/things/7");
        assert_eq!(
            req.headers,
            vec![("x-keep".to_string(), "k".to_string()), ("x-from".into(), "gw-r1".into())]
        );
        assert_eq!(req.query, vec![("q".to_string(), "prod".to_string()), ("z".into(), "static".into())]);
    }

    #[test]
    fn bad_keys_are_refused() {
        for k in ["append:path", "overwrite:body", "change:header.x", "append:header."] {
            assert!(validate(&BTreeMap::from([(k.to_string(), "v".to_string())])).is_err(), "{k}");
        }
    }
}
