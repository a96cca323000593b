//! `$context.*` templates (access-log formats) and the variable syntax request parameter
//! mappings share: `$context.requestId`, `${request.header.x}`, `$stageVariables.env`.

/// Expands every `$a.b.c` / `${a.b.c}` in `template` through `resolve` (called with
/// `a.b.c`); `missing` stands in for variables it doesn't know.
pub fn render(template: &str, missing: &str, resolve: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .char_indices()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                .map(|(i, _)| i)
                .unwrap_or(after.len());
            // A trailing dot is punctuation, not part of the name.
            let name = after[..end].trim_end_matches('.');
            (name, name.len())
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        match resolve(name) {
            Some(v) => out.push_str(&v),
            None => out.push_str(missing),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// An access-log line: unknown or empty `$context` variables print `-`, as AWS does.
pub fn access_log_line(format: &str, context: &dyn Fn(&str) -> Option<String>) -> String {
    render(format, "-", &|name| name.strip_prefix("context.").and_then(context).filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(name: &str) -> Option<String> {
        match name {
            "requestId" => Some("r1".into()),
            "httpMethod" => Some("GET".into()),
            "status" => Some("200".into()),
            "authorizer.claims.sub" => Some("me".into()),
            _ => None,
        }
    }

    #[test]
    fn renders_context_variables_in_json_and_clf_formats() {
        let f = r#"{"requestId":"$context.requestId","m":"$context.httpMethod","s":$context.status,"x":"$context.nope"}"#;
        assert_eq!(access_log_line(f, &ctx), r#"{"requestId":"r1","m":"GET","s":200,"x":"-"}"#);
        assert_eq!(access_log_line("$context.requestId $context.httpMethod.", &ctx), "r1 GET.");
        assert_eq!(access_log_line("${context.authorizer.claims.sub} $", &ctx), "me $");
    }

    #[test]
    fn render_leaves_unknown_sigils_alone() {
        let r = render("a $ b ${request.path.id}", "", &|n| (n == "request.path.id").then(|| "7".into()));
        assert_eq!(r, "a $ b 7");
    }
}
