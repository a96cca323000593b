//! One execution environment: a sandboxed runtime process, its Runtime API endpoint,
//! its log stream, and the hand-off of invocations to it.
use crate::logpipe::LogPipe;
use crate::runtime_api;
use bytes::Bytes;
use nimbus_model::{FunctionConfig, RuntimeFamily};
use nimbus_sandbox::{ExitStatus, FsView, Instance, Limits, Sandbox, SandboxSpec};
use nimbus_store::{LogEvent, LogStore};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// An event handed to the runtime through `next`.
pub(crate) struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub deadline_ms: u64,
    pub function_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
}

/// How an invocation ended, from the environment's side.
pub(crate) enum Outcome {
    Response(Bytes),
    /// The runtime reported an error (body is Lambda's error JSON).
    Error {
        body: Bytes,
    },
    /// The runtime process exited mid-invocation.
    Exited(ExitStatus),
}

/// How initialisation ended.
pub(crate) enum InitResult {
    Ready,
    /// The runtime posted `/runtime/init/error`.
    Failed(Bytes),
    Exited(ExitStatus),
}

#[derive(Default)]
struct FreezeState {
    /// Returned to the warm pool (no invocation assigned).
    idle: bool,
    frozen: bool,
    /// The runtime is blocked in `next`.
    waiting: bool,
}

/// State shared between the engine and the environment's Runtime API handlers.
pub(crate) struct EnvShared {
    pub queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    sender: mpsc::Sender<Invocation>,
    inflight: Mutex<Option<(String, oneshot::Sender<Outcome>)>>,
    init: Mutex<Option<oneshot::Sender<InitResult>>>,
    freeze: Mutex<FreezeState>,
    freeze_enabled: bool,
    instance: OnceLock<Box<dyn Instance>>,
    pub dead: AtomicBool,
    /// Log text of the current invocation, captured for `--log-type Tail`.
    pub tail: Mutex<Option<String>>,
}

impl EnvShared {
    fn pause(&self) {
        if let Some(i) = self.instance.get() {
            let _ = i.pause();
        }
    }

    /// The runtime called `next` for the first time: initialisation is over.
    pub fn runtime_ready(&self) {
        if let Some(tx) = self.init.lock().take() {
            let _ = tx.send(InitResult::Ready);
        }
    }

    pub fn init_failed(&self, body: Bytes) {
        if let Some(tx) = self.init.lock().take() {
            let _ = tx.send(InitResult::Failed(body));
        }
    }

    /// Freeze an idle environment only once its runtime is parked in `next`, so a thaw
    /// hands the event straight to a waiting request.
    pub fn waiting_for_next(&self, waiting: bool) {
        let mut f = self.freeze.lock();
        f.waiting = waiting;
        if waiting && f.idle && !f.frozen && self.freeze_enabled {
            self.pause();
            f.frozen = true;
        }
    }

    fn set_idle(&self) {
        let mut f = self.freeze.lock();
        f.idle = true;
        if f.waiting && !f.frozen && self.freeze_enabled {
            self.pause();
            f.frozen = true;
        }
    }

    fn set_busy(&self) {
        let mut f = self.freeze.lock();
        f.idle = false;
        if f.frozen {
            if let Some(i) = self.instance.get() {
                let _ = i.resume();
            }
            f.frozen = false;
        }
    }

    /// Delivers the runtime's answer for `request_id`; false if no such invocation is open.
    pub fn complete(&self, request_id: &str, outcome: Outcome) -> bool {
        let mut slot = self.inflight.lock();
        match slot.take() {
            Some((id, tx)) if id == request_id => {
                let _ = tx.send(outcome);
                true
            }
            other => {
                *slot = other;
                false
            }
        }
    }

    fn exited(&self, status: ExitStatus) {
        self.dead.store(true, Ordering::SeqCst);
        if let Some(tx) = self.init.lock().take() {
            let _ = tx.send(InitResult::Exited(status));
        }
        if let Some((_, tx)) = self.inflight.lock().take() {
            let _ = tx.send(Outcome::Exited(status));
        }
    }
}

/// Everything needed to start an environment of one function.
pub(crate) struct StartParams<'a> {
    pub config: &'a FunctionConfig,
    pub code_dir: PathBuf,
    pub runtimes_dir: &'a std::path::Path,
    pub python: &'a std::path::Path,
    pub node: &'a std::path::Path,
    pub envs_dir: &'a std::path::Path,
    pub endpoint_url: &'a str,
    pub sandbox: &'a dyn Sandbox,
    pub logs: Arc<LogStore>,
    pub freeze: bool,
    /// Started for provisioned concurrency (kept warm, never reaped for idleness).
    pub provisioned: bool,
    /// Where the AWS SDK for Python (boto3) is installed for python runtimes, if ready.
    pub python_sdk: Option<PathBuf>,
    /// Unpacked layers, in the function's order (later ones win).
    pub layers: Vec<PathBuf>,
    /// The secret paired with the account-id access key functions get (strict auth accepts it).
    pub function_secret: &'a str,
    /// Where image functions' root filesystems come from.
    pub images: Option<Arc<dyn crate::ImageResolver>>,
}

pub(crate) struct Environment {
    #[allow(dead_code)]
    pub id: String,
    pub shared: Arc<EnvShared>,
    pub pipe: Arc<LogPipe>,
    server: tokio::task::JoinHandle<()>,
    work_dir: PathBuf,
    pub last_used: Mutex<Instant>,
    /// Provisioned-concurrency environments are exempt from idle reaping.
    pub provisioned: AtomicBool,
    logs: Arc<LogStore>,
    log_scope: Arc<str>,
    log_group: Arc<str>,
    log_stream_name: Arc<str>,
}

pub(crate) enum StartError {
    /// Initialisation failed; the body is the error Lambda returns for the invoke.
    Init {
        body: Bytes,
        init: Duration,
        env: Option<Arc<Environment>>,
    },
    Internal(String),
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Environment {
    /// Starts the runtime and waits for it to finish initialising (its first `next`).
    pub async fn start(p: StartParams<'_>) -> Result<(Arc<Environment>, Duration), StartError> {
        let internal = |e: &dyn std::fmt::Display| StartError::Internal(e.to_string());
        let cfg = p.config;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let log_stream = format!("{}/[{}]{}", chrono::Utc::now().format("%Y/%m/%d"), cfg.version, id);
        let log_scope: Arc<str> = format!("{}:{}", cfg.account, cfg.region).into();
        let log_group: Arc<str> = cfg.log_group().into();
        let log_stream_name: Arc<str> = log_stream.as_str().into();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| internal(&e))?;
        let addr = listener.local_addr().map_err(|e| internal(&e))?;
        let (sender, receiver) = mpsc::channel(1);
        let (init_tx, init_rx) = oneshot::channel();
        let shared = Arc::new(EnvShared {
            queue: tokio::sync::Mutex::new(receiver),
            sender,
            inflight: Mutex::new(None),
            init: Mutex::new(Some(init_tx)),
            freeze: Mutex::new(FreezeState::default()),
            freeze_enabled: p.freeze,
            instance: OnceLock::new(),
            dead: AtomicBool::new(false),
            // Capture init output: an init failure's log tail shows it.
            tail: Mutex::new(Some(String::new())),
        });
        let server = runtime_api::serve(listener, runtime_api::router(shared.clone()));

        let (reader, writer) = std::io::pipe().map_err(|e| internal(&e))?;
        let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).map_err(|e| internal(&e))?;
        let sink = {
            let (logs, scope, group, stream, shared) = (
                p.logs.clone(),
                log_scope.clone(),
                log_group.clone(),
                log_stream_name.clone(),
                shared.clone(),
            );
            Box::new(move |line: &str| {
                if let Some(t) = shared.tail.lock().as_mut() {
                    t.push_str(line);
                    t.push('\n');
                }
                logs.append(LogEvent {
                    scope: scope.clone(),
                    group: group.clone(),
                    stream: stream.clone(),
                    timestamp_ms: now_ms(),
                    message: format!("{line}\n"),
                });
            })
        };
        let pipe = LogPipe::new(rx, sink);

        let work_dir = p.envs_dir.join(&id);
        // Isolated sandboxes see their code at /var/task, layers merged at /opt and a private
        // /tmp, as on AWS; the process backend runs in the host's paths.
        let isolated = p.sandbox.capabilities().filesystem_isolation;
        let view = if isolated { View::aws(&p) } else { View::host(&p, work_dir.join("tmp")) };
        if !isolated {
            std::fs::create_dir_all(&view.tmp).map_err(|e| internal(&e))?;
        }
        let runtime = cfg.runtime.as_ref().map(|r| r.as_str()).unwrap_or("provided.al2023");
        let family = cfg.runtime.as_ref().map(|r| r.family()).unwrap_or(RuntimeFamily::Provided);
        let (program, args) = match family {
            RuntimeFamily::Python => (
                p.python.to_path_buf(),
                // -S: no `site` — the host interpreter's site-packages (and .pth hooks that can
                // cost tens of ms per start) are not part of a Lambda runtime; the function's
                // own packages, layers and boto3 come in through PYTHONPATH as on AWS.
                vec![
                    "-u".into(),
                    "-S".into(),
                    view.runtime_dir.join("python/bootstrap.py").display().to_string(),
                ],
            ),
            RuntimeFamily::Node => {
                (p.node.to_path_buf(), vec![view.runtime_dir.join("node/bootstrap.js").display().to_string()])
            }
            // As on AWS: the package's bootstrap, else one a layer provides (/opt/bootstrap).
            RuntimeFamily::Provided => {
                let own = p.code_dir.join("bootstrap");
                let from_layer = p.layers.iter().rev().map(|l| l.join("bootstrap")).find(|b| b.exists());
                let host = if own.exists() { own.clone() } else { from_layer.clone().unwrap_or(own.clone()) };
                if !host.exists() {
                    (host, vec![])
                } else if isolated {
                    let inner = if own.exists() { "/var/task/bootstrap" } else { "/opt/bootstrap" };
                    (PathBuf::from(inner), vec![])
                } else {
                    (host, vec![])
                }
            }
        };
        let env = runtime_env(&p, &view, runtime, family, &addr.to_string(), &log_stream);

        let env_obj = Arc::new(Environment {
            id,
            shared: shared.clone(),
            pipe,
            server,
            work_dir,
            last_used: Mutex::new(Instant::now()),
            provisioned: AtomicBool::new(p.provisioned),
            logs: p.logs.clone(),
            log_scope,
            log_group,
            log_stream_name,
        });

        let started = Instant::now();
        let limits = Limits {
            memory_mb: Some(cfg.memory_mb as u64),
            nofile: Some(1024),
            fsize_mb: Some(cfg.ephemeral_storage_mb as u64),
            cpu_millis: None,
            pids_max: Some(nimbus_model::limits::PROCESSES_AND_THREADS),
        };
        let image_spec = match &cfg.image {
            None => None,
            Some(image) => {
                match image_spec(&p, image, &env_obj.work_dir, &addr.to_string(), &log_stream).await {
                    Ok(spec) => Some(SandboxSpec { limits: limits.clone(), ..spec }),
                    Err(message) => {
                        drop(writer);
                        env_obj.destroy();
                        env_obj.log("INIT_REPORT Init Duration: 0.00 ms\tPhase: init\tStatus: error\tError Type: Runtime.InvalidEntrypoint");
                        let body = serde_json::json!({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": message});
                        return Err(StartError::Init {
                            body: Bytes::from(body.to_string()),
                            init: started.elapsed(),
                            env: None,
                        });
                    }
                }
            }
        };
        if image_spec.is_none() && family == RuntimeFamily::Provided && !isolated && !program.exists()
            || image_spec.is_none()
                && family == RuntimeFamily::Provided
                && isolated
                && !p.code_dir.join("bootstrap").exists()
                && !p.layers.iter().any(|l| l.join("bootstrap").exists())
        {
            drop(writer);
            env_obj.destroy();
            let body = serde_json::json!({
                "errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": "Error: Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]",
            });
            env_obj.log("INIT_REPORT Init Duration: 0.00 ms\tPhase: init\tStatus: error\tError Type: Runtime.InvalidEntrypoint");
            return Err(StartError::Init {
                body: Bytes::from(body.to_string()),
                init: started.elapsed(),
                env: None,
            });
        }
        let mut expose = vec![(p.runtimes_dir.to_path_buf(), view.runtime_dir.clone())];
        let mut program = program;
        if isolated && family != RuntimeFamily::Provided {
            // The real binary (not a venv's or a version manager's symlink to it), whose
            // installation is then shown read-only inside the sandbox at the same path.
            program = std::fs::canonicalize(&program).unwrap_or(program);
            expose.extend(interpreter_root(&program).map(|r| (r.clone(), r)));
        }
        if let (RuntimeFamily::Python, Some(sdk), Some(inside)) = (family, &p.python_sdk, &view.python_sdk) {
            expose.push((sdk.clone(), inside.clone()));
        }
        let spec = if let Some(mut spec) = image_spec {
            spec.output = Some(writer.into());
            spec
        } else {
            SandboxSpec {
                program,
                args,
                cwd: view.task_root.clone(),
                env,
                output: Some(writer.into()),
                limits,
                fs: FsView {
                    code: Some(p.code_dir.clone()),
                    layers: p.layers.clone(),
                    tmp_mb: cfg.ephemeral_storage_mb as u64,
                    expose,
                    image_root: None,
                    binds: Vec::new(),
                },
                isolate_network: false,
                ..Default::default()
            }
        };
        let instance = match p.sandbox.start(spec) {
            Ok(i) => i,
            Err(e) => {
                env_obj.destroy();
                let body = serde_json::json!({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": e.to_string()});
                return Err(StartError::Init {
                    body: Bytes::from(body.to_string()),
                    init: started.elapsed(),
                    env: None,
                });
            }
        };
        let _ = shared.instance.set(instance);
        {
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Some(i) = shared.instance.get() {
                    let status = i.wait().await;
                    shared.exited(status);
                }
            });
        }

        let init_limit =
            Duration::from_secs(nimbus_model::limits::INIT_TIMEOUT_SECS.max(cfg.timeout_secs as u64));
        let result = tokio::time::timeout(init_limit, init_rx).await;
        let init = started.elapsed();
        let failure = match result {
            Ok(Ok(InitResult::Ready)) => {
                *shared.tail.lock() = None;
                // CPU in proportion to memory from the first invoke on (1,769 MB = one vCPU);
                // initialisation ran unthrottled, like AWS's init phase.
                if let Some(i) = shared.instance.get() {
                    let cpu =
                        Limits { cpu_millis: Some(cpu_millis(cfg.memory_mb as u64)), ..Default::default() };
                    if let Err(e) = i.update_limits(&cpu) {
                        tracing::warn!("could not cap CPU of {}: {e}", cfg.name);
                    }
                }
                return Ok((env_obj, init));
            }
            Ok(Ok(InitResult::Failed(body))) => {
                let kind = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("errorType").and_then(|t| t.as_str()).map(str::to_string))
                    .unwrap_or_else(|| "Runtime.Unknown".into());
                (body, kind)
            }
            Ok(Ok(InitResult::Exited(status))) => {
                let body = serde_json::json!({
                    "errorType": "Runtime.ExitError",
                    "errorMessage": format!("Error: Runtime exited with error: {status}"),
                });
                (Bytes::from(body.to_string()), "Runtime.ExitError".to_string())
            }
            Ok(Err(_)) => (
                Bytes::from_static(
                    br#"{"errorType":"Runtime.Unknown","errorMessage":"Unknown application error occurred"}"#,
                ),
                "Runtime.Unknown".into(),
            ),
            Err(_) => {
                let body = serde_json::json!({
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": format!("Error: Task timed out after {:.2} seconds", init_limit.as_secs_f64()),
                });
                (Bytes::from(body.to_string()), "Sandbox.Timedout".to_string())
            }
        };
        env_obj.pipe.drain(true);
        env_obj.log(&format!(
            "INIT_REPORT Init Duration: {:.2} ms\tPhase: init\tStatus: error\tError Type: {}",
            init.as_secs_f64() * 1000.0,
            failure.1
        ));
        env_obj.destroy();
        Err(StartError::Init { body: failure.0, init, env: Some(env_obj) })
    }

    /// Writes a platform line (START/END/REPORT…) into this environment's stream.
    pub fn log(&self, line: &str) {
        if let Some(t) = self.shared.tail.lock().as_mut() {
            t.push_str(line);
            t.push('\n');
        }
        self.logs.append(LogEvent {
            scope: self.log_scope.clone(),
            group: self.log_group.clone(),
            stream: self.log_stream_name.clone(),
            timestamp_ms: now_ms(),
            message: format!("{line}\n"),
        });
    }

    /// Hands an invocation to the runtime; the outcome arrives on the returned channel.
    pub fn dispatch(&self, inv: Invocation) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        *self.shared.inflight.lock() = Some((inv.request_id.clone(), tx));
        self.shared.set_busy();
        if self.shared.dead.load(Ordering::SeqCst) {
            // Exited between pooling and now: report it as an exit.
            self.shared.exited(ExitStatus::Code(-1));
        } else if let Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) =
            self.shared.sender.try_send(inv)
        {
            // Cannot happen while the engine holds the environment exclusively.
            self.shared.exited(ExitStatus::Code(-1));
        }
        rx
    }

    /// Back to the warm pool: frozen once its runtime parks in `next`.
    pub fn park(&self) {
        *self.last_used.lock() = Instant::now();
        self.shared.set_idle();
    }

    pub fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::SeqCst)
    }

    pub fn peak_memory_mb(&self) -> u64 {
        let bytes = self.shared.instance.get().map(|i| i.stats().peak_memory_bytes).unwrap_or(0);
        bytes.div_ceil(1024 * 1024)
    }

    /// Kills the runtime, closes its endpoint and removes its scratch space.
    pub fn destroy(&self) {
        self.shared.dead.store(true, Ordering::SeqCst);
        if let Some(i) = self.shared.instance.get() {
            i.destroy();
        }
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The sandbox of an image function's environment: the image's root (prepared under the
/// environment's scratch directory), its ENTRYPOINT/CMD/WORKDIR/ENV with the function's
/// `ImageConfig` overrides, and Lambda's variables. Shares the host's network namespace, so
/// the image's runtime interface client reaches its Runtime API on loopback.
async fn image_spec(
    p: &StartParams<'_>,
    image: &nimbus_model::FunctionImage,
    work_dir: &std::path::Path,
    runtime_api: &str,
    log_stream: &str,
) -> Result<SandboxSpec, String> {
    let Some(images) = p.images.clone() else {
        return Err("container image functions need an image store, and this server has none".into());
    };
    if !p.sandbox.capabilities().image_roots {
        return Err(format!(
            "container image functions need the container sandbox (--sandbox container); this server runs the {} sandbox",
            p.sandbox.name()
        ));
    }
    let (uri, dir) = (image.resolved_image_uri.clone(), work_dir.to_path_buf());
    let (root, defaults) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        images.rootfs_for(&uri, &dir).map_err(|e| format!("{uri}: {e}"))
    })
    .await
    .map_err(|e| e.to_string())??;
    let launch = crate::image::launch(image, &defaults)?;
    let env = image_env(p, &defaults, &launch.handler, runtime_api, log_stream);
    let mut argv = launch.argv.into_iter();
    let program = argv.next().unwrap_or_default();
    Ok(SandboxSpec {
        program: program.into(),
        args: argv.collect(),
        cwd: launch.cwd.into(),
        env,
        fs: FsView {
            image_root: Some(root),
            tmp_mb: p.config.ephemeral_storage_mb as u64,
            ..Default::default()
        },
        // Lambda runs images as a least-privileged user, whatever the image's USER says.
        user: Some((nimbus_sandbox::SANDBOX_UID, nimbus_sandbox::SANDBOX_GID)),
        ..Default::default()
    })
}

/// An image function's environment: the image's ENV, then the function's variables, then
/// what Lambda sets (reserved names win, as on AWS).
fn image_env(
    p: &StartParams<'_>,
    defaults: &crate::ImageDefaults,
    handler: &str,
    runtime_api: &str,
    log_stream: &str,
) -> Vec<(String, String)> {
    fn set(env: &mut Vec<(String, String)>, k: &str, v: String) {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v));
    }
    let cfg = p.config;
    let mut env = Vec::new();
    set(&mut env, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    for (k, v) in defaults.env.iter().map(|(k, v)| (k, v)).chain(cfg.environment.iter()) {
        set(&mut env, k, v.clone());
    }
    let task_root = env
        .iter()
        .find(|(k, _)| k == "LAMBDA_TASK_ROOT")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/var/task".into());
    set(&mut env, "TZ", ":UTC".into());
    set(&mut env, "AWS_LAMBDA_RUNTIME_API", runtime_api.to_string());
    set(&mut env, "_HANDLER", handler.to_string());
    set(&mut env, "LAMBDA_TASK_ROOT", task_root);
    set(&mut env, "LAMBDA_RUNTIME_DIR", "/var/runtime".into());
    set(&mut env, "AWS_LAMBDA_FUNCTION_NAME", cfg.name.clone());
    set(&mut env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", cfg.memory_mb.to_string());
    set(&mut env, "AWS_LAMBDA_FUNCTION_VERSION", cfg.version.clone());
    let init = if p.provisioned { "provisioned-concurrency" } else { "on-demand" };
    set(&mut env, "AWS_LAMBDA_INITIALIZATION_TYPE", init.into());
    set(&mut env, "AWS_LAMBDA_LOG_GROUP_NAME", cfg.log_group());
    set(&mut env, "AWS_LAMBDA_LOG_STREAM_NAME", log_stream.to_string());
    set(&mut env, "AWS_REGION", cfg.region.clone());
    set(&mut env, "AWS_DEFAULT_REGION", cfg.region.clone());
    set(&mut env, "AWS_ENDPOINT_URL", p.endpoint_url.to_string());
    set(&mut env, "AWS_ACCESS_KEY_ID", cfg.account.clone());
    set(&mut env, "AWS_SECRET_ACCESS_KEY", p.function_secret.to_string());
    set(&mut env, "AWS_SESSION_TOKEN", "nimbus".into());
    env
}

/// vCPU share for a memory size, in thousandths (AWS: 1,769 MB = one vCPU).
pub(crate) fn cpu_millis(memory_mb: u64) -> u64 {
    (memory_mb * 1000).div_ceil(1769).max(1)
}

/// The real interpreter's installation (e.g. `/opt/python3.12` for `/opt/python3.12/bin/python3`),
/// which an isolated sandbox must see; interpreters under the system root need nothing.
fn interpreter_root(program: &std::path::Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(program).ok()?;
    let root = real.parent()?.parent()?.to_path_buf();
    (!root.starts_with("/usr") && root != std::path::Path::new("/")).then_some(root)
}

/// Where a function's files are, as its runtime sees them.
struct View {
    task_root: PathBuf,
    tmp: PathBuf,
    /// Nimbus's runtime bootstraps (AWS keeps its runtime in /var/runtime too).
    runtime_dir: PathBuf,
    /// boto3 for python runtimes, where the sandbox shows it elsewhere than on the host.
    python_sdk: Option<PathBuf>,
    /// Layer directories in the function's order (later ones win).
    layers: Vec<PathBuf>,
    /// The host's PATH for the process backend; the system default in an isolated root.
    path: String,
}

impl View {
    fn aws(p: &StartParams<'_>) -> View {
        View {
            task_root: "/var/task".into(),
            tmp: "/tmp".into(),
            runtime_dir: "/var/runtime".into(),
            python_sdk: p.python_sdk.as_ref().map(|_| "/var/lang/sdk".into()),
            layers: vec![],
            path: "/usr/local/bin:/usr/bin:/bin".into(),
        }
    }
    fn host(p: &StartParams<'_>, tmp: PathBuf) -> View {
        View {
            task_root: p.code_dir.clone(),
            tmp,
            runtime_dir: p.runtimes_dir.to_path_buf(),
            python_sdk: p.python_sdk.clone(),
            layers: p.layers.clone(),
            path: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        }
    }
}

fn runtime_env(
    p: &StartParams<'_>,
    view: &View,
    runtime: &str,
    family: RuntimeFamily,
    runtime_api: &str,
    log_stream: &str,
) -> Vec<(String, String)> {
    let (cfg, code_dir, provisioned) = (p.config, &view.task_root, p.provisioned);
    let endpoint_url = p.endpoint_url;
    let host_path = &view.path;
    let mut env: Vec<(String, String)> =
        cfg.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    // Layers stand where AWS merges them into /opt (in an isolated sandbox they are /opt):
    // later layers first, so they win.
    let in_layers = |sub: &str| -> String {
        view.layers.iter().rev().map(|l| format!("{}:", l.join(sub).display())).collect()
    };
    set("PATH", format!("{}{host_path}:/opt/bin", in_layers("bin")));
    if !p.layers.is_empty() {
        set("LD_LIBRARY_PATH", format!("{}/opt/lib", in_layers("lib")));
    }
    set("LANG", "en_US.UTF-8".into());
    set("TZ", ":UTC".into());
    set("TMPDIR", view.tmp.display().to_string());
    set("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string());
    set("_HANDLER", cfg.handler.clone().unwrap_or_default());
    set("LAMBDA_TASK_ROOT", code_dir.display().to_string());
    set("LAMBDA_RUNTIME_DIR", view.runtime_dir.display().to_string());
    set("AWS_EXECUTION_ENV", format!("AWS_Lambda_{runtime}"));
    set("AWS_LAMBDA_FUNCTION_NAME", cfg.name.clone());
    set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", cfg.memory_mb.to_string());
    set("AWS_LAMBDA_FUNCTION_VERSION", cfg.version.clone());
    set(
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        if provisioned { "provisioned-concurrency" } else { "on-demand" }.into(),
    );
    set("AWS_LAMBDA_LOG_GROUP_NAME", cfg.log_group());
    set("AWS_LAMBDA_LOG_STREAM_NAME", log_stream.to_string());
    set("AWS_REGION", cfg.region.clone());
    set("AWS_DEFAULT_REGION", cfg.region.clone());
    // Functions call the platform with an unconfigured SDK, as on AWS.
    set("AWS_ENDPOINT_URL", endpoint_url.to_string());
    set("AWS_ACCESS_KEY_ID", cfg.account.clone());
    set("AWS_SECRET_ACCESS_KEY", p.function_secret.to_string());
    set("AWS_SESSION_TOKEN", "nimbus".into());
    match family {
        RuntimeFamily::Python => {
            set("PYTHONUNBUFFERED", "1".into());
            // As on AWS: the function's own packages first, then layers, then the runtime's boto3.
            let mut path = format!("{}:{}/opt/python", code_dir.display(), in_layers("python"));
            if let Some(sdk) = &view.python_sdk {
                path.push_str(&format!(":{}", sdk.display()));
            }
            set("PYTHONPATH", path);
        }
        RuntimeFamily::Node => {
            set(
                "NODE_PATH",
                format!(
                    "{}/opt/nodejs/node_modules:/opt/nodejs/node22/node_modules",
                    in_layers("nodejs/node_modules")
                ),
            );
        }
        RuntimeFamily::Provided => {}
    }
    env
}
