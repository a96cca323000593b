//! Lambda REQUEST authorizers: identity sources, the authorizer's event, simple and
//! IAM-policy responses, and the result cache keyed by identity values (TTL from
//! `AuthorizerResultTtlInSeconds`).
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The values of an authorizer's identity sources (`$request.header.Authorization`,
/// `$request.querystring.token`, `$context.x`, `$stageVariables.x`), or `None` when one
/// is missing or empty — API Gateway then answers 401 without calling the authorizer.
pub fn identity_values(sources: &[String], resolve: &dyn Fn(&str) -> Option<String>) -> Option<Vec<String>> {
    sources
        .iter()
        .map(|s| {
            let name = s.trim().strip_prefix('$')?;
            let name = name.strip_prefix('{').and_then(|n| n.strip_suffix('}')).unwrap_or(name);
            resolve(name).filter(|v| !v.is_empty())
        })
        .collect()
}

/// `arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{method}{path}`
pub fn route_arn(region: &str, account: &str, api_id: &str, stage: &str, method: &str, path: &str) -> String {
    format!("arn:aws:execute-api:{region}:{account}:{api_id}/{stage}/{method}{path}")
}

/// Turns the integration event (2.0) into the REQUEST authorizer's event.
pub fn event_v2(mut request_event: Value, route_arn: &str, identity: &[String]) -> Value {
    if let Some(o) = request_event.as_object_mut() {
        o.insert("type".into(), json!("REQUEST"));
        o.insert("routeArn".into(), json!(route_arn));
        o.insert("identitySource".into(), json!(identity));
        o.remove("isBase64Encoded");
        o.remove("body");
    }
    request_event
}

/// Payload 1.0 authorizer event: the 1.0 request event plus `type`, `methodArn`, `identitySource`.
pub fn event_v1(mut request_event: Value, route_arn: &str, identity: &[String]) -> Value {
    if let Some(o) = request_event.as_object_mut() {
        o.insert("type".into(), json!("REQUEST"));
        o.insert("methodArn".into(), json!(route_arn));
        o.insert("identitySource".into(), json!(identity.join(",")));
        o.remove("body");
    }
    request_event
}

/// What an authorizer decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub principal_id: Option<String>,
    /// Passed to the integration (`requestContext.authorizer.lambda` in 2.0).
    pub context: Value,
}

fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Evaluates an IAM policy for `execute-api:Invoke` on `route_arn`: an explicit Deny wins,
/// otherwise some Allow must match.
pub fn policy_allows(policy: &Value, route_arn: &str) -> bool {
    let statements = match policy.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => Vec::new(),
    };
    let mut allowed = false;
    for s in statements {
        let action =
            strings(s.get("Action")).iter().any(|a| wildcard(&a.to_ascii_lowercase(), "execute-api:invoke"));
        let resource = strings(s.get("Resource")).iter().any(|r| wildcard(r, route_arn));
        if !(action && resource) {
            continue;
        }
        match s.get("Effect").and_then(Value::as_str) {
            Some("Deny") => return false,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// Reads a Lambda authorizer's answer. A malformed answer is `None` (AWS: 500).
pub fn decide(payload: &[u8], simple: bool, route_arn: &str) -> Option<Decision> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let context = v.get("context").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    if simple {
        let allowed = v.get("isAuthorized")?.as_bool()?;
        return Some(Decision { allowed, principal_id: None, context });
    }
    let policy = v.get("policyDocument")?;
    Some(Decision {
        allowed: policy_allows(policy, route_arn),
        principal_id: v.get("principalId").and_then(Value::as_str).map(str::to_string),
        context,
    })
}

/// Authorizer results by (authorizer, identity values), kept for the authorizer's TTL.
#[derive(Debug, Default)]
pub struct ResultCache {
    entries: Mutex<HashMap<String, (Instant, Decision)>>,
}

impl ResultCache {
    pub fn key(authorizer_id: &str, identity: &[String]) -> String {
        let mut k = authorizer_id.to_string();
        for v in identity {
            k.push('\u{1f}');
            k.push_str(v);
        }
        k
    }

    pub fn get(&self, key: &str, now: Instant) -> Option<Decision> {
        let mut entries = self.entries.lock();
        match entries.get(key) {
            Some((expires, d)) if *expires > now => Some(d.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: String, decision: Decision, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() > 10_000 {
            entries.retain(|_, (expires, _)| *expires > now);
        }
        entries.insert(key, (now + ttl, decision));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sources_resolve_or_fail() {
        let resolve = |n: &str| match n {
            "request.header.authorization" => Some("tok".to_string()),
            "request.querystring.empty" => Some(String::new()),
            _ => None,
        };
        let src = vec!["$request.header.authorization".to_string()];
        assert_eq!(identity_values(&src, &resolve), Some(vec!["tok".to_string()]));
        assert_eq!(identity_values(&["$request.querystring.empty".to_string()], &resolve), None);
        assert_eq!(identity_values(&["$request.header.x".to_string()], &resolve), None);
    }

    #[test]
    fn simple_and_policy_responses() {
        let arn = route_arn("us-east-1", "1", "api", "$default", "GET", "/pets");
        let d = decide(br#"{"isAuthorized":true,"context":{"user":"u1"}}"#, true, &arn).unwrap();
        assert!(d.allowed);
        assert_eq!(d.context["user"], "u1");
        assert!(!decide(br#"{"isAuthorized":false}"#, true, &arn).unwrap().allowed);
        assert!(decide(br#"{"nope":1}"#, true, &arn).is_none());
        let allow = br#"{"principalId":"p","policyDocument":{"Version":"2012-10-17","Statement":[
            {"Action":"execute-api:Invoke","Effect":"Allow","Resource":"arn:aws:execute-api:us-east-1:1:api/*/GET/*"}]}}"#;
        let d = decide(allow, false, &arn).unwrap();
        assert!(d.allowed && d.principal_id.as_deref() == Some("p"));
        let other = route_arn("us-east-1", "1", "api", "$default", "POST", "/pets");
        assert!(!decide(allow, false, &other).unwrap().allowed);
        let deny = br#"{"policyDocument":{"Statement":[
            {"Action":"*","Effect":"Allow","Resource":"*"},
            {"Action":["execute-api:*"],"Effect":"Deny","Resource":["*"]}]}}"#;
        assert!(!decide(deny, false, &arn).unwrap().allowed);
    }

    #[test]
    fn cache_honours_ttl() {
        let c = ResultCache::default();
        let now = Instant::now();
        let d = Decision { allowed: true, principal_id: None, context: json!({}) };
        let k = ResultCache::key("a1", &["t".into()]);
        c.put(k.clone(), d.clone(), Duration::from_secs(5), now);
        assert_eq!(c.get(&k, now + Duration::from_secs(4)), Some(d.clone()));
        assert_eq!(c.get(&k, now + Duration::from_secs(6)), None);
        c.put(k.clone(), d, Duration::ZERO, now);
        assert_eq!(c.get(&k, now), None);
    }
}
