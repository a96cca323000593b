//! Route keys (`GET /pets/{id}`, `ANY /{proxy+}`, `$default`) and AWS's selection rule:
//! among the routes whose method and path match, the most specific path wins (a literal
//! segment beats `{param}`, which beats a greedy `{proxy+}`), then a named method beats
//! `ANY`; `$default` catches what nothing else matches.
use std::fmt;

pub const METHODS: &[&str] = &["ANY", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
    /// `{name+}`: one or more remaining segments; only last.
    Greedy(String),
}

impl Segment {
    /// Higher is more specific.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 2,
            Segment::Param(_) => 1,
            Segment::Greedy(_) => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    Default,
    Http { method: String, segments: Vec<Segment> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKeyError(pub String);

impl fmt::Display for RouteKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RouteKey {
    pub fn parse(key: &str) -> Result<RouteKey, RouteKeyError> {
        if key == "$default" {
            return Ok(RouteKey::Default);
        }
        let bad = |why: &str| RouteKeyError(format!("Invalid route key {key}: {why}"));
        let (method, path) =
            key.split_once(' ').ok_or_else(|| bad("expected 'METHOD /path' or '$default'"))?;
        if !METHODS.contains(&method) {
            return Err(bad("unknown HTTP method"));
        }
        if !path.starts_with('/') {
            return Err(bad("the path must start with '/'"));
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = path[1..].split('/').collect();
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            if part.is_empty() {
                if count == 1 {
                    break; // "/" itself
                }
                return Err(bad("empty path segment"));
            }
            let seg = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if name.ends_with('+') => {
                    if i + 1 != count {
                        return Err(bad("a greedy path variable must be the last segment"));
                    }
                    Segment::Greedy(name.trim_end_matches('+').to_string())
                }
                Some("") => return Err(bad("empty path variable")),
                Some(name) => Segment::Param(name.to_string()),
                None if part.contains(['{', '}']) => {
                    return Err(bad("path variables must span a whole segment"));
                }
                None => Segment::Literal(part.to_string()),
            };
            segments.push(seg);
        }
        Ok(RouteKey::Http { method: method.to_string(), segments })
    }

    /// The path parameters if this key matches `method` and the (stage-less) `path`.
    pub fn matches(&self, method: &str, path: &str) -> Option<Vec<(String, String)>> {
        let RouteKey::Http { method: m, segments } = self else { return None };
        if m != "ANY" && m != method {
            return None;
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let parts: &[&str] = if parts == [""] { &[] } else { &parts };
        let mut params = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            match seg {
                Segment::Greedy(name) => {
                    let rest = parts.get(i..).unwrap_or(&[]).join("/");
                    if rest.is_empty() {
                        return None;
                    }
                    params.push((name.clone(), decode(&rest)));
                    return Some(params);
                }
                Segment::Literal(lit) => {
                    if parts.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => match parts.get(i) {
                    Some(p) if !p.is_empty() => params.push((name.clone(), decode(p))),
                    _ => return None,
                },
            }
        }
        (parts.len() == segments.len()).then_some(params)
    }

    /// Orders matching keys: greater is more specific.
    fn specificity(&self) -> (Vec<u8>, bool) {
        match self {
            RouteKey::Default => (Vec::new(), false),
            RouteKey::Http { method, segments } => {
                let mut ranks: Vec<u8> = segments.iter().map(Segment::rank).collect();
                // A route that consumes more segments literally is more specific; a greedy
                // tail ranks below any concrete segment at its position.
                ranks.push(1);
                (ranks, method != "ANY")
            }
        }
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A compiled set of routes: `T` is whatever the caller attaches (route id, index…).
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    routes: Vec<(RouteKey, T)>,
    default: Option<T>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { routes: Vec::new(), default: None }
    }
}

/// The route a request selected.
#[derive(Debug)]
pub struct Selected<'a, T> {
    pub value: &'a T,
    pub path_parameters: Vec<(String, String)>,
}

impl<T> RouteTable<T> {
    /// Keys that don't parse are skipped (the control plane refuses them).
    pub fn new(routes: impl IntoIterator<Item = (String, T)>) -> RouteTable<T> {
        let mut table = RouteTable::default();
        for (key, value) in routes {
            match RouteKey::parse(&key) {
                Ok(RouteKey::Default) => table.default = Some(value),
                Ok(k) => table.routes.push((k, value)),
                Err(_) => {}
            }
        }
        table
    }

    pub fn select(&self, method: &str, path: &str) -> Option<Selected<'_, T>> {
        type Candidate<'k, T> = (&'k RouteKey, &'k T, Vec<(String, String)>);
        let mut best: Option<Candidate<'_, T>> = None;
        for (key, value) in &self.routes {
            let Some(params) = key.matches(method, path) else { continue };
            let better = match &best {
                None => true,
                Some((b, _, _)) => key.specificity() > b.specificity(),
            };
            if better {
                best = Some((key, value, params));
            }
        }
        match best {
            Some((_, value, path_parameters)) => Some(Selected { value, path_parameters }),
            None => self.default.as_ref().map(|value| Selected { value, path_parameters: Vec::new() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: &[&str]) -> RouteTable<String> {
        RouteTable::new(keys.iter().map(|k| (k.to_string(), k.to_string())))
    }

    fn pick(t: &RouteTable<String>, m: &str, p: &str) -> Option<(String, Vec<(String, String)>)> {
        t.select(m, p).map(|s| (s.value.clone(), s.path_parameters))
    }

    #[test]
    fn parses_and_rejects_route_keys() {
        assert_eq!(RouteKey::parse("$default").unwrap(), RouteKey::Default);
        assert!(RouteKey::parse("GET /pets/{id}").is_ok());
        assert!(RouteKey::parse("GET /").is_ok());
        assert!(RouteKey::parse("FETCH /x").is_err());
        assert!(RouteKey::parse("GET pets").is_err());
        assert!(RouteKey::parse("GET /{proxy+}/x").is_err());
        assert!(RouteKey::parse("GET /a//b").is_err());
        assert!(RouteKey::parse("GET /a{b}").is_err());
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table(&[
            "GET /pets",
            "GET /pets/{id}",
            "GET /pets/dog",
            "ANY /pets/{id}",
            "GET /{proxy+}",
            "ANY /{proxy+}",
            "$default",
        ]);
        assert_eq!(pick(&t, "GET", "/pets").unwrap().0, "GET /pets");
        assert_eq!(pick(&t, "GET", "/pets/dog").unwrap().0, "GET /pets/dog");
        let (k, p) = pick(&t, "GET", "/pets/7").unwrap();
        assert_eq!((k.as_str(), p), ("GET /pets/{id}", vec![("id".into(), "7".into())]));
        assert_eq!(pick(&t, "POST", "/pets/7").unwrap().0, "ANY /pets/{id}");
        let (k, p) = pick(&t, "GET", "/a/b/c").unwrap();
        assert_eq!((k.as_str(), p), ("GET /{proxy+}", vec![("proxy".into(), "a/b/c".into())]));
        assert_eq!(pick(&t, "DELETE", "/a/b").unwrap().0, "ANY /{proxy+}");
        // The greedy variable needs at least one segment: `/` falls through to $default.
        assert_eq!(pick(&t, "GET", "/").unwrap().0, "$default");
    }

    #[test]
    fn unmatched_without_default_is_none() {
        let t = table(&["GET /pets", "POST /pets/{id}"]);
        assert!(pick(&t, "GET", "/cats").is_none());
        assert!(pick(&t, "GET", "/pets/1").is_none());
        assert!(pick(&t, "GET", "/pets/1/x").is_none());
        assert!(pick(&t, "GET", "/").is_none());
        let root = table(&["GET /"]);
        assert_eq!(pick(&root, "GET", "/").unwrap().0, "GET /");
    }

    #[test]
    fn path_parameters_are_decoded() {
        let t = table(&["GET /files/{name}"]);
        assert_eq!(pick(&t, "GET", "/files/a%20b").unwrap().1, vec![("name".into(), "a b".into())]);
    }
}
