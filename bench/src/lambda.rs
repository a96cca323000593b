//! The benchmark functions (zipped in memory) and the few Lambda API calls the harness makes.
use crate::http::{Conn, Response, Template};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::Method;
use serde_json::json;
use std::io::Write;
use std::path::Path;

pub const ROLE: &str = "arn:aws:iam::123456789012:role/r";
/// The no-op event: rust-echo answers `{}` at once.
pub const NOOP_EVENT: &str = r#"{"noop":true}"#;

/// One function to benchmark: runtime, handler and its deployment package.
pub struct Package {
    pub runtime: &'static str,
    pub handler: &'static str,
    pub zip: Vec<u8>,
}

/// Zips `files` as (name, unix mode, contents).
fn zip(files: &[(&str, u32, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, mode, data) in files {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        w.start_file(*name, opts)?;
        w.write_all(data)?;
    }
    Ok(w.finish()?.into_inner())
}

/// The rust-echo binary (a real `lambda_runtime` function) as `bootstrap`, mode 0755.
pub fn provided(rust_echo: &Path) -> anyhow::Result<Package> {
    let bin = std::fs::read(rust_echo).with_context(|| format!("reading {}", rust_echo.display()))?;
    Ok(Package { runtime: "provided.al2023", handler: "bootstrap", zip: zip(&[("bootstrap", 0o755, &bin)])? })
}

pub fn python() -> anyhow::Result<Package> {
    let src = b"def handler(event, context):\n    return {}\n";
    Ok(Package {
        runtime: "python3.12",
        handler: "lambda_function.handler",
        zip: zip(&[("lambda_function.py", 0o644, src)])?,
    })
}

pub fn node() -> anyhow::Result<Package> {
    let src = b"exports.handler = async () => ({});\n";
    Ok(Package { runtime: "nodejs20.x", handler: "index.handler", zip: zip(&[("index.js", 0o644, src)])? })
}

/// CreateFunction.
pub async fn create(conn: &mut Conn, name: &str, p: &Package) -> anyhow::Result<()> {
    let body = json!({
        "FunctionName": name,
        "Runtime": p.runtime,
        "Role": ROLE,
        "Handler": p.handler,
        "Code": { "ZipFile": B64.encode(&p.zip) },
    });
    conn.send(&Template::new(Method::POST, "/2015-03-31/functions").json(&body))
        .await?
        .ok()
        .with_context(|| format!("CreateFunction {name}"))?;
    Ok(())
}

/// UpdateFunctionConfiguration with a new Environment, which retires warm environments.
pub async fn set_env(conn: &mut Conn, name: &str, value: &str) -> anyhow::Result<()> {
    let body = json!({ "Environment": { "Variables": { "BENCH_GENERATION": value } } });
    conn.send(&Template::new(Method::PUT, format!("/2015-03-31/functions/{name}/configuration")).json(&body))
        .await?
        .ok()
        .with_context(|| format!("UpdateFunctionConfiguration {name}"))?;
    Ok(())
}

/// Invoke request for `name` with the no-op event; `tail` asks for the log tail.
pub fn invoke_template(name: &str, tail: bool) -> Template {
    let t = Template::new(Method::POST, format!("/2015-03-31/functions/{name}/invocations"))
        .header("content-type", "application/json")
        .body(NOOP_EVENT);
    if tail { t.header("x-amz-log-type", "Tail") } else { t }
}

/// `Ok` for a successful invoke: 2xx (checked by the caller) and no X-Amz-Function-Error.
pub fn invoke_succeeded(r: &Response) -> Result<(), String> {
    match r.headers.get("x-amz-function-error") {
        Some(kind) => Err(format!("function error {kind:?}: {}", String::from_utf8_lossy(&r.body))),
        None => Ok(()),
    }
}

/// The decoded X-Amz-Log-Result of a Tail invoke.
pub fn log_tail(r: &Response) -> Option<String> {
    let raw = r.headers.get("x-amz-log-result")?.to_str().ok()?;
    String::from_utf8(B64.decode(raw).ok()?).ok()
}

/// `Init Duration: N ms` from the REPORT line, present only on a cold start.
pub fn init_duration_ms(log: &str) -> Option<f64> {
    let report = log.lines().find(|l| l.starts_with("REPORT "))?;
    let after = report.split("Init Duration: ").nth(1)?;
    after.split(" ms").next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn init_duration() {
        let log = "START RequestId: a\nEND RequestId: a\nREPORT RequestId: a\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\tInit Duration: 12.34 ms\t\n";
        assert_eq!(super::init_duration_ms(log), Some(12.34));
        assert_eq!(super::init_duration_ms("REPORT RequestId: a\tDuration: 1.50 ms\t"), None);
    }
}
