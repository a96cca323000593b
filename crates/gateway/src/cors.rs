//! CORS as API Gateway HTTP APIs (and function URLs) apply a `CorsConfiguration`: a
//! preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered by the gateway
//! itself; other responses get `Access-Control-Allow-Origin` & co when the origin is allowed.
use crate::model::Cors;

fn allows(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v.eq_ignore_ascii_case(value))
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &str, access_control_request_method: Option<&str>) -> bool {
    method == "OPTIONS" && access_control_request_method.is_some()
}

/// The headers of the answer to a preflight. Nothing CORS-related is returned for an
/// origin, method or header the configuration doesn't allow (the browser then refuses).
pub fn preflight(
    cors: &Cors,
    origin: Option<&str>,
    request_method: Option<&str>,
    request_headers: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let Some(allow_origin) = origin.and_then(|o| cors.allowed_origin(o)) else { return out };
    if let Some(m) = request_method
        && !allows(&cors.allow_methods, m)
    {
        return out;
    }
    if let Some(h) = request_headers {
        let all_allowed =
            h.split(',').map(str::trim).filter(|h| !h.is_empty()).all(|h| allows(&cors.allow_headers, h));
        if !all_allowed {
            return out;
        }
    }
    out.push(("access-control-allow-origin", allow_origin));
    if !cors.allow_methods.is_empty() {
        out.push(("access-control-allow-methods", cors.allow_methods.join(",")));
    }
    if !cors.allow_headers.is_empty() {
        out.push(("access-control-allow-headers", cors.allow_headers.join(",")));
    }
    if let Some(age) = cors.max_age {
        out.push(("access-control-max-age", age.to_string()));
    }
    if cors.allow_credentials == Some(true) {
        out.push(("access-control-allow-credentials", "true".into()));
    }
    out
}

/// Headers added to an actual (non-preflight) response for `origin`.
pub fn response_headers(cors: &Cors, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let Some(allow_origin) = origin.and_then(|o| cors.allowed_origin(o)) else { return out };
    out.push(("access-control-allow-origin", allow_origin));
    if !cors.expose_headers.is_empty() {
        out.push(("access-control-expose-headers", cors.expose_headers.join(",")));
    }
    if cors.allow_credentials == Some(true) {
        out.push(("access-control-allow-credentials", "true".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            allow_credentials: Some(true),
            allow_headers: vec!["content-type".into(), "x-api".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_origins: vec!["https://a.example".into()],
            expose_headers: vec!["x-out".into()],
            max_age: Some(300),
        }
    }

    #[test]
    fn preflight_allows_only_what_is_configured() {
        let c = cors();
        let ok = preflight(&c, Some("https://a.example"), Some("POST"), Some("Content-Type, X-Api"));
        assert!(ok.contains(&("access-control-allow-origin", "https://a.example".into())));
        assert!(ok.contains(&("access-control-allow-methods", "GET,POST".into())));
        assert!(ok.contains(&("access-control-max-age", "300".into())));
        assert!(ok.contains(&("access-control-allow-credentials", "true".into())));
        assert!(preflight(&c, Some("https://b.example"), Some("GET"), None).is_empty());
        assert!(preflight(&c, Some("https://a.example"), Some("DELETE"), None).is_empty());
        assert!(preflight(&c, Some("https://a.example"), Some("GET"), Some("x-other")).is_empty());
        assert!(is_preflight("OPTIONS", Some("GET")) && !is_preflight("OPTIONS", None));
    }

    #[test]
    fn wildcard_origin_and_response_headers() {
        let c = Cors { allow_origins: vec!["*".into()], ..cors() };
        let h = response_headers(&c, Some("https://z.example"));
        assert_eq!(h[0], ("access-control-allow-origin", "*".to_string()));
        assert!(h.contains(&("access-control-expose-headers", "x-out".into())));
        assert!(response_headers(&cors(), None).is_empty());
    }
}
