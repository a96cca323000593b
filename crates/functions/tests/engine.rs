//! The functions engine through its public API, with the real process sandbox and
//! Nimbus's Python bootstrap (needs `python3` on PATH, as the test script ensures).
use bytes::Bytes;
use nimbus_functions::{
    Config, CreateFunction, Error, FunctionsEngine, Interpreter, InvocationType, InvokeRequest,
    UpdateConfiguration,
};
use nimbus_model::Scope;
use nimbus_sandbox::ProcessSandbox;
use nimbus_store::{BlobStore, LogStore, SqliteStore};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

fn engine(dir: &std::path::Path, max_concurrency: usize) -> Arc<FunctionsEngine> {
    let db = dir.join("state.db");
    FunctionsEngine::open(
        Config {
            data_dir: dir.to_path_buf(),
            max_concurrency,
            env_idle_timeout: Duration::from_secs(60),
            freeze_idle: true,
            endpoint_url: "http://127.0.0.1:1".into(),
            python: Interpreter::new("python3".into()),
            node: Interpreter::new("node".into()),
            async_retry_delay: Duration::from_millis(100),
            python_sdk: Default::default(),
            function_secret: "test-secret".into(),
        },
        Arc::new(SqliteStore::open(&db).unwrap()),
        BlobStore::open(&dir.join("blobs")).unwrap(),
        Arc::new(LogStore::open(&db).unwrap()),
        Arc::new(ProcessSandbox),
    )
    .unwrap()
}

fn python_zip(src: &str) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("lambda_function.py", zip::write::SimpleFileOptions::default()).unwrap();
    w.write_all(src.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

const SRC: &str = r#"
import os, time
n = 0
def handler(event, context):
    global n
    n += 1
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise ValueError("boom")
    return {"n": n, "pid": os.getpid(), "greeting": os.environ.get("GREETING")}
"#;

fn create(e: &FunctionsEngine, name: &str) {
    e.create_function(
        &Scope::default(),
        CreateFunction {
            name: name.into(),
            runtime: Some("python3.12".into()),
            handler: Some("lambda_function.handler".into()),
            role: "arn:aws:iam::123456789012:role/r".into(),
            zip: python_zip(SRC),
            timeout_secs: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
}

fn req(name: &str, payload: &str) -> InvokeRequest {
    InvokeRequest {
        scope: Scope::default(),
        request_id: uuid::Uuid::new_v4().to_string(),
        function: name.into(),
        qualifier: None,
        payload: Bytes::from(payload.to_string()),
        invocation_type: InvocationType::RequestResponse,
        tail_log: true,
        client_context: None,
    }
}

fn json(b: &Bytes) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_reuse_errors_timeouts_and_retirement() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), 10);
    create(&e, "f");

    let first = e.invoke(req("f", "{}")).await.unwrap();
    let second = e.invoke(req("f", "{}")).await.unwrap();
    assert_eq!(json(&first.payload)["n"], 1);
    assert_eq!(json(&second.payload)["n"], 2, "the warm environment keeps module state");
    assert_eq!(json(&first.payload)["pid"], json(&second.payload)["pid"]);

    let failed = e.invoke(req("f", r#"{"fail": true}"#)).await.unwrap();
    assert_eq!(failed.function_error, Some("Unhandled"));
    assert_eq!(json(&failed.payload)["errorType"], "ValueError");

    let timed_out = e.invoke(req("f", r#"{"sleep": 3}"#)).await.unwrap();
    let msg = json(&timed_out.payload)["errorMessage"].as_str().unwrap().to_string();
    assert!(msg.ends_with("Task timed out after 1.00 seconds"), "{msg}");
    let after = e.invoke(req("f", "{}")).await.unwrap();
    assert_eq!(json(&after.payload)["n"], 1, "a timed-out environment is destroyed");

    let mut env = std::collections::BTreeMap::new();
    env.insert("GREETING".to_string(), "hi".to_string());
    e.update_configuration(
        &Scope::default(),
        "f",
        UpdateConfiguration { environment: Some(env), ..Default::default() },
    )
    .unwrap();
    let updated = e.invoke(req("f", "{}")).await.unwrap();
    assert_eq!(json(&updated.payload)["greeting"], "hi");
    assert_eq!(json(&updated.payload)["n"], 1, "an update retires old environments");

    e.delete_function(&Scope::default(), "f", None).unwrap();
    assert!(matches!(e.invoke(req("f", "{}")).await, Err(Error::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_throttles() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), 1);
    create(&e, "g");
    let busy = {
        let e = e.clone();
        tokio::spawn(async move { e.invoke(req("g", r#"{"sleep": 0.8}"#)).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    match e.invoke(req("g", "{}")).await {
        Err(Error::TooManyRequests { reason, .. }) => assert_eq!(reason, "ConcurrentInvocationLimitExceeded"),
        other => panic!("expected a throttle, got {other:?}"),
    }
    assert!(busy.await.unwrap().unwrap().function_error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = engine(dir.path(), 10);
        create(&e, "durable");
    }
    let e = engine(dir.path(), 10);
    let c = e.get_function(&Scope::default(), "durable", None).unwrap();
    assert_eq!(c.runtime.as_ref().unwrap().as_str(), "python3.12");
    let out = e.invoke(req("durable", "{}")).await.unwrap();
    assert_eq!(json(&out.payload)["n"], 1);
}
