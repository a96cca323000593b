//! Container image functions through the engine's public API: create-time checks (the image
//! must resolve; the sandbox must run images), the pinned `ResolvedImageUri`, and what an
//! environment is started as — checked on the mock sandbox, with this test acting as the
//! image's runtime interface client over the environment's real Runtime API.
use bytes::Bytes;
use nimbus_functions::{
    Config, CreateFunction, Error, FunctionsEngine, ImageConfigInput, ImageDefaults, ImageResolver,
    ImageSourceError, Interpreter, InvocationType, InvokeRequest, UpdateCode, UpdateConfiguration,
};
use nimbus_model::{PackageType, Scope};
use nimbus_sandbox::{ImageRoot, MockSandbox, ProcessSandbox, Sandbox};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// One image, `localhost:4567/echo:v1`, whose rootfs is a directory under the env's dir.
struct FakeImages;

impl ImageResolver for FakeImages {
    fn resolve(&self, image_uri: &str) -> Result<String, ImageSourceError> {
        match image_uri {
            "localhost:4567/echo:v1"
            | "localhost:4567/echo@sha256:1111111111111111111111111111111111111111111111111111111111111111" => {
                Ok(DIGEST.into())
            }
            u if u.contains(' ') => Err(ImageSourceError::Invalid(u.into())),
            u => Err(ImageSourceError::NotFound(u.into())),
        }
    }
    fn rootfs_for(
        &self,
        image_uri: &str,
        env_dir: &Path,
    ) -> Result<(ImageRoot, ImageDefaults), ImageSourceError> {
        assert_eq!(image_uri, format!("localhost:4567/echo@{DIGEST}"), "environments run the pinned digest");
        let dir = env_dir.join("rootfs");
        std::fs::create_dir_all(&dir).map_err(|e| ImageSourceError::Failed(e.to_string()))?;
        Ok((
            ImageRoot::Dir(dir),
            ImageDefaults {
                entrypoint: vec!["/usr/local/bin/echo-fn".into()],
                cmd: vec!["default.handler".into()],
                env: vec![("PATH".into(), "/usr/local/bin:/bin".into()), ("FROM_IMAGE".into(), "1".into())],
                working_dir: Some("/app".into()),
            },
        ))
    }
}

fn engine(dir: &Path, sandbox: Arc<dyn Sandbox>) -> Arc<FunctionsEngine> {
    let db = dir.join("state.db");
    let e = FunctionsEngine::open(
        Config {
            data_dir: dir.to_path_buf(),
            max_concurrency: 10,
            env_idle_timeout: Duration::from_secs(60),
            freeze_idle: false,
            endpoint_url: "http://127.0.0.1:1".into(),
            python: Interpreter::new("python3".into()),
            node: Interpreter::new("node".into()),
            async_retry_delay: Duration::from_millis(100),
            python_sdk: Default::default(),
            function_secret: "test-secret".into(),
        },
        Arc::new(nimbus_store::SqliteStore::open(&db).unwrap()),
        nimbus_store::BlobStore::open(&dir.join("blobs")).unwrap(),
        Arc::new(nimbus_store::LogStore::open(&db).unwrap()),
        sandbox,
    )
    .unwrap();
    e.set_image_resolver(Arc::new(FakeImages));
    e
}

fn image_fn(name: &str, uri: &str, config: Option<ImageConfigInput>) -> CreateFunction {
    let mut env = std::collections::BTreeMap::new();
    env.insert("FROM_FUNCTION".to_string(), "2".to_string());
    CreateFunction {
        name: name.into(),
        role: "arn:aws:iam::123456789012:role/r".into(),
        package_type: Some("Image".into()),
        image_uri: Some(uri.into()),
        image_config: config,
        environment: Some(env),
        timeout_secs: Some(5),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_checks_the_image_and_pins_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), Arc::new(MockSandbox::default()));
    let s = Scope::default();
    let c = e.create_function(&s, image_fn("f", "localhost:4567/echo:v1", None)).unwrap();
    assert_eq!(c.package_type, PackageType::Image);
    assert_eq!((c.runtime.as_ref(), c.handler.as_ref()), (None, None));
    let image = c.image.as_ref().unwrap();
    assert_eq!(image.image_uri, "localhost:4567/echo:v1");
    assert_eq!(image.resolved_image_uri, format!("localhost:4567/echo@{DIGEST}"));
    assert_eq!(c.code_sha256, DIGEST.trim_start_matches("sha256:"));

    match e.create_function(&s, image_fn("g", "localhost:4567/nope:v1", None)) {
        Err(Error::InvalidParameter(m)) => {
            assert_eq!(m, "Source image localhost:4567/nope:v1 does not exist. Provide a valid source image.")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        e.create_function(&s, image_fn("g", "bad ref", None)),
        Err(Error::InvalidParameter(m)) if m.contains("is not valid")
    ));
    let no_uri = CreateFunction { image_uri: None, ..image_fn("g", "", None) };
    assert!(matches!(e.create_function(&s, no_uri), Err(Error::InvalidParameter(_))));

    // ImageConfig can be changed later; a Zip function refuses it.
    let c = e
        .update_configuration(
            &s,
            "f",
            UpdateConfiguration {
                image_config: Some(ImageConfigInput {
                    command: Some(vec!["x.y".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(c.image.as_ref().unwrap().command.as_deref(), Some(&["x.y".to_string()][..]));
    match e.update_code(&s, "f", UpdateCode::default()) {
        Err(Error::InvalidParameter(m)) => {
            assert_eq!(m, "Please provide ImageUri when updating a function with packageType Image.")
        }
        other => panic!("{other:?}"),
    }
    let c = e
        .update_code(
            &s,
            "f",
            UpdateCode { image_uri: Some("localhost:4567/echo:v1".into()), ..Default::default() },
        )
        .unwrap();
    assert_eq!(
        c.image.as_ref().unwrap().command.as_deref(),
        Some(&["x.y".to_string()][..]),
        "overrides kept"
    );
}

#[tokio::test]
async fn the_process_sandbox_refuses_image_functions() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), Arc::new(ProcessSandbox));
    match e.create_function(&Scope::default(), image_fn("f", "localhost:4567/echo:v1", None)) {
        Err(Error::InvalidParameter(m)) => assert!(m.contains("need the container sandbox"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A minimal HTTP/1.1 exchange with the Runtime API: (status, headers, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    (status, headers, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_run_the_image_with_overrides_and_lambda_variables() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(MockSandbox::default());
    let e = engine(dir.path(), sandbox.clone());
    let overrides = ImageConfigInput {
        command: Some(vec!["my.handler".into(), "--flag".into()]),
        working_directory: Some("/srv".into()),
        ..Default::default()
    };
    e.create_function(&Scope::default(), image_fn("f", "localhost:4567/echo:v1", Some(overrides))).unwrap();

    // Play the image's runtime interface client once the environment is started.
    let runtime = {
        let sandbox = sandbox.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            let handle = loop {
                if let Some(h) = sandbox.started().first().cloned() {
                    break h;
                }
                assert!(Instant::now() < deadline, "no environment started");
                std::thread::sleep(Duration::from_millis(10));
            };
            let api = handle.env.iter().find(|(k, _)| k == "AWS_LAMBDA_RUNTIME_API").unwrap().1.clone();
            let (status, headers, body) = http(&api, "GET", "/2018-06-01/runtime/invocation/next", "");
            assert_eq!(status, 200);
            let id = headers.iter().find(|(k, _)| k == "lambda-runtime-aws-request-id").unwrap().1.clone();
            let (status, _, _) = http(
                &api,
                "POST",
                &format!("/2018-06-01/runtime/invocation/{id}/response"),
                &format!("{{\"echo\":{body}}}"),
            );
            assert_eq!(status, 202);
            handle
        })
    };
    let result = e
        .invoke(InvokeRequest {
            scope: Scope::default(),
            request_id: uuid::Uuid::new_v4().to_string(),
            function: "f".into(),
            qualifier: None,
            payload: Bytes::from_static(br#"{"a":1}"#),
            invocation_type: InvocationType::RequestResponse,
            tail_log: false,
            client_context: None,
        })
        .await
        .unwrap();
    assert_eq!(result.function_error, None, "{:?}", result.payload);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&result.payload).unwrap()["echo"]["a"], 1);

    let h = runtime.await.unwrap();
    assert_eq!(h.program, "/usr/local/bin/echo-fn", "the image's ENTRYPOINT");
    assert_eq!(h.args, ["my.handler", "--flag"], "ImageConfig.Command replaces CMD");
    assert_eq!(h.cwd, Path::new("/srv"), "ImageConfig.WorkingDirectory replaces WORKDIR");
    assert!(matches!(&h.fs.image_root, Some(ImageRoot::Dir(d)) if d.ends_with("rootfs")));
    assert_eq!(h.user, Some((993, 990)), "Lambda's least-privileged user");
    assert!(!h.isolate_network, "the Runtime API is on the host's loopback");
    let env = |k: &str| h.env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(env("_HANDLER").as_deref(), Some("my.handler"));
    assert_eq!(env("FROM_IMAGE").as_deref(), Some("1"));
    assert_eq!(env("FROM_FUNCTION").as_deref(), Some("2"));
    assert_eq!(env("PATH").as_deref(), Some("/usr/local/bin:/bin"), "the image's PATH");
    assert_eq!(env("AWS_LAMBDA_FUNCTION_NAME").as_deref(), Some("f"));
    assert_eq!(env("LAMBDA_TASK_ROOT").as_deref(), Some("/var/task"));
    assert_eq!(h.env.iter().filter(|(k, _)| k == "PATH").count(), 1, "no duplicate variables");
}
