//! The `nimbus` binary: `nimbus server` runs the whole platform on one machine.
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use nimbus_api::{AppState, AuthConfig, AuthMode};
use nimbus_functions::{FunctionsEngine, Interpreter};
use nimbus_sandbox::{ContainerSandbox, ProcessSandbox, Sandbox};
use nimbus_store::{BlobStore, LogStore, SqliteStore};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod advise;
mod cli_http;
mod cli_image;
mod ecs_tasks;
mod ecs_wiring;
mod image_functions;
mod registry_wiring;
mod task_invoker;
mod wiring;

/// mimalloc: the request paths allocate many small, short-lived buffers; glibc malloc
/// was ~20% of a GetFunction's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "nimbus", version, about = "AWS Lambda/ECS/Step Functions semantics on your own machines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: every AWS API on one listener, state under --data-dir.
    Server(ServerArgs),
    /// Cost and fit advice from measured usage: Lambda, Fargate or EC2, and what each costs.
    Advise(advise::AdviseArgs),
    /// Images: import, push, pull, ls, rm.
    Image(cli_image::ImageArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum AuthArg {
    Dev,
    Strict,
}

#[derive(Clone, Copy, ValueEnum)]
enum SandboxArg {
    Auto,
    Process,
    Container,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Address for every AWS API (port 0 picks a free one; the chosen one is printed).
    #[arg(long, env = "NIMBUS_LISTEN", default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Where state (SQLite), blobs, code and logs live.
    #[arg(long, env = "NIMBUS_DATA_DIR", default_value = "./.nimbus")]
    data_dir: PathBuf,
    /// `dev` accepts any credentials; `strict` verifies SigV4 against --access-key.
    #[arg(long, env = "NIMBUS_AUTH", value_enum, default_value = "dev")]
    auth: AuthArg,
    /// ACCESS_KEY_ID:SECRET accepted in strict mode (repeatable; env: comma-separated).
    #[arg(long = "access-key", env = "NIMBUS_ACCESS_KEYS", value_delimiter = ',')]
    access_keys: Vec<String>,
    /// Account-wide concurrent executions (Lambda's default quota is 1000).
    #[arg(long, env = "NIMBUS_MAX_CONCURRENCY", default_value_t = 1000)]
    max_concurrency: usize,
    /// Seconds an idle execution environment is kept warm before it is reaped.
    #[arg(long, env = "NIMBUS_ENV_IDLE_TIMEOUT", default_value_t = 300.0)]
    env_idle_timeout: f64,
    /// Keep idle environments running instead of freezing them between invokes.
    #[arg(long, env = "NIMBUS_NO_FREEZE", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    no_freeze: bool,
    /// Seconds before the first retry of a failed asynchronous invocation (doubling after).
    #[arg(long, env = "NIMBUS_ASYNC_RETRY_DELAY", default_value_t = 60.0)]
    async_retry_delay: f64,
    /// Where boto3 for python functions is installed (shared by every data dir); `off`
    /// to not provide it.
    #[arg(long, env = "NIMBUS_PYTHON_SDK_CACHE")]
    python_sdk_cache: Option<String>,
    /// Sandbox backend; `auto` picks the best one this host supports.
    #[arg(long, env = "NIMBUS_SANDBOX", value_enum, default_value = "auto")]
    sandbox: SandboxArg,
    /// Price table for `nimbus advise` (JSON; default: the built-in us-east-1 table).
    #[arg(long, env = "NIMBUS_PRICES")]
    prices: Option<PathBuf>,
    #[command(flatten)]
    registry: registry_wiring::RegistryArgs,
}

fn find_on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The interpreter behind a command. Version-manager shims (pyenv, asdf, nvm) are shell
/// scripts that cost ~100 ms per exec — on every cold start — so resolve them once.
fn interpreter(name: &str, env_override: &str, probe: &'static [&'static str]) -> Interpreter {
    if let Some(p) = std::env::var_os(env_override) {
        return Interpreter::new(PathBuf::from(p));
    }
    let found = find_on_path(name);
    let mut magic = [0u8; 2];
    let is_script = std::fs::File::open(&found)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .map(|()| &magic == b"#!")
        .unwrap_or(false);
    let interp =
        if is_script { Interpreter::resolving(found.clone()) } else { Interpreter::new(found.clone()) };
    if is_script {
        let handle = interp.clone();
        std::thread::spawn(move || handle.resolve(resolve_script(found, probe)));
    }
    interp
}

fn resolve_script(found: PathBuf, probe: &[&str]) -> PathBuf {
    let mut cmd = std::process::Command::new(&found);
    cmd.args(probe);
    nimbus_sandbox::die_with_parent(&mut cmd);
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_file())
        .unwrap_or(found)
}

/// Picks the sandbox backend. `auto` takes `container` when its probe (root, cgroups, a real
/// test sandbox) passes and says why not otherwise; `--sandbox container` never falls back.
fn choose_sandbox(arg: SandboxArg, data_dir: &std::path::Path) -> anyhow::Result<(Arc<dyn Sandbox>, String)> {
    let state = data_dir.join("sandbox");
    match arg {
        SandboxArg::Auto => match ContainerSandbox::probe(&state) {
            Ok(sb) => Ok((Arc::new(sb), "auto: namespaces and cgroups work on this host".into())),
            Err(why) => {
                Ok((Arc::new(ProcessSandbox), format!("auto: container backend unavailable ({why})")))
            }
        },
        SandboxArg::Process => Ok((Arc::new(ProcessSandbox), "forced by --sandbox process".into())),
        SandboxArg::Container => match ContainerSandbox::probe(&state) {
            Ok(sb) => Ok((Arc::new(sb), "forced by --sandbox container".into())),
            Err(why) => anyhow::bail!("--sandbox container cannot work on this host: {why}"),
        },
    }
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let (sandbox, why) = choose_sandbox(args.sandbox, &data_dir)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let endpoint_url = format!("http://{addr}");

    let db = data_dir.join("state.db");
    let store: Arc<dyn nimbus_store::Store> = Arc::new(SqliteStore::open(&db)?);
    let mut registry = registry_wiring::open(&args.registry, &data_dir, store.clone()).await?;
    let gateway = nimbus_gateway::GatewayEngine::open(store.clone())?;
    let logs = Arc::new(LogStore::open(&db)?);
    let blobs = BlobStore::open(&data_dir.join("blobs"))?;
    let queues = nimbus_queues::QueuesEngine::open(store.clone())?;
    let python = interpreter("python3", "NIMBUS_PYTHON", &["-c", "import sys; print(sys.executable)"]);
    let python_sdk: Arc<std::sync::OnceLock<PathBuf>> = Arc::default();
    let function_secret = uuid::Uuid::new_v4().simple().to_string();
    spawn_python_sdk_install(&args, python.clone(), python_sdk.clone());
    let functions = FunctionsEngine::open(
        nimbus_functions::Config {
            data_dir: data_dir.clone(),
            max_concurrency: args.max_concurrency,
            env_idle_timeout: Duration::from_secs_f64(args.env_idle_timeout.max(0.05)),
            freeze_idle: !args.no_freeze,
            endpoint_url: endpoint_url.clone(),
            python,
            python_sdk,
            function_secret: function_secret.clone(),
            node: interpreter("node", "NIMBUS_NODE", &["-e", "console.log(process.execPath)"]),
            async_retry_delay: Duration::from_secs_f64(args.async_retry_delay.max(0.0)),
        },
        store.clone(),
        blobs,
        logs.clone(),
        sandbox.clone(),
    )?;
    functions.set_destination_sink(Arc::new(wiring::QueueSink(queues.clone())));
    let accounting = advise::open_accounting(args.prices.as_deref(), store.clone())?;
    functions.set_usage_sink(Arc::new(advise::UsageBridge(accounting.recorder.clone())));
    image_functions::wire(&functions, &registry.images);
    let triggers = nimbus_triggers::Triggers::open(store.clone(), functions.clone(), queues.clone())?;
    let keys = parse_keys(&args.access_keys)?;
    let mode = match args.auth {
        AuthArg::Dev => AuthMode::Dev,
        AuthArg::Strict => {
            anyhow::ensure!(!keys.is_empty(), "--auth strict needs at least one --access-key ID:SECRET");
            AuthMode::Strict
        }
    };
    // Step Functions and EventBridge reach ECS through a handle filled once ECS is open.
    let ecs_handle = Arc::new(ecs_tasks::EcsHandle::default());
    let stepfunctions = nimbus_stepfunctions::StepFunctionsEngine::open(
        store.clone(),
        Arc::new(ecs_tasks::StepTasks {
            lambda: task_invoker::LambdaTasks(functions.clone()),
            ecs: ecs_handle.clone(),
            store: store.clone(),
        }),
    )?;
    let eventbridge = nimbus_eventbridge::EventBridgeEngine::open(
        store.clone(),
        Arc::new(wiring::EventTargets {
            functions: functions.clone(),
            queues: queues.clone(),
            stepfunctions: stepfunctions.clone(),
            ecs: ecs_handle.clone(),
        }),
        Duration::from_secs(1),
    )?;
    tokio::spawn(eventbridge.clone().run_scheduler());
    let ecs = ecs_wiring::open(
        &data_dir,
        store.clone(),
        sandbox.clone(),
        &registry.images,
        logs.clone(),
        Some(accounting.recorder.clone()),
    )?;
    ecs_handle.set(ecs.clone());
    accounting.set_routing(Arc::new(advise::GatewayRouting { gateway: gateway.clone(), ecs: ecs.clone() }));
    let app = nimbus_api::router(AppState {
        functions: functions.clone(),
        gateway: gateway.clone(),
        logs,
        eventbridge,
        queues: queues.clone(),
        triggers,
        stepfunctions,
        auth: Arc::new(AuthConfig { mode, keys, function_secret }),
        usage: Some(accounting.clone()),
        images: registry.images.clone(),
        ecr: registry.ecr.clone(),
        ecs,
        version: env!("CARGO_PKG_VERSION"),
        endpoint_url: endpoint_url.clone(),
    });
    tracing::info!(
        "sandbox backend: {} ({why}; {}); {} functions and {} HTTP APIs loaded from {}",
        sandbox.name(),
        sandbox.fingerprint(),
        functions.function_count(),
        gateway.api_count(),
        data_dir.display()
    );
    // Which backend and why, then the ready line tools wait for.
    println!("sandbox backend: {} ({why})", sandbox.name());
    println!(
        "nimbus listening on {endpoint_url} (sandbox: {}) ready in {:.1} ms",
        sandbox.name(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    // After the ready line (tools read the first two lines as they always were).
    registry.serve();
    std::io::stdout().flush()?;
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    // Usage recorded since the last flush (background tasks may still hold the recorder).
    if let Err(e) = accounting.recorder.flush() {
        tracing::warn!("usage: flush at shutdown failed: {e}");
    }
    Ok(())
}

/// Provides boto3 to python functions, as AWS's python runtimes do, without delaying start-up.
fn spawn_python_sdk_install(args: &ServerArgs, python: Interpreter, slot: Arc<std::sync::OnceLock<PathBuf>>) {
    let cache = match args.python_sdk_cache.as_deref() {
        Some("off") => return,
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join("nimbus"),
    };
    std::thread::spawn(move || {
        // Wait briefly for a version-manager shim to resolve, so pip runs the real interpreter.
        std::thread::sleep(Duration::from_millis(500));
        match nimbus_functions::python_sdk::ensure(&python.path(), &cache, nimbus_sandbox::die_with_parent) {
            Ok(dir) => {
                tracing::info!("boto3 for python functions: {}", dir.display());
                let _ = slot.set(dir);
            }
            Err(e) => tracing::warn!("python functions will not have boto3 unless they package it: {e}"),
        }
    });
}

fn parse_keys(raw: &[String]) -> anyhow::Result<HashMap<String, String>> {
    raw.iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split_once(':')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--access-key {s:?}: expected ACCESS_KEY_ID:SECRET"))
        })
        .collect()
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return ctrl_c.await.unwrap_or(()),
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("NIMBUS_WORKER_THREADS").ok().and_then(|v| v.parse().ok()) {
        builder.worker_threads(n);
    }
    // Sandboxes are cloned on blocking-pool threads and carry PR_SET_PDEATHSIG, which fires
    // when the *thread* that cloned them exits, not the process. Tokio retires a blocking
    // thread after 10 s idle by default, SIGKILLing every container or function environment
    // it happened to start (ECS tasks dying with exit 137 ~10 s after a burst of starts). Keep
    // blocking threads for the life of the server.
    builder.thread_keep_alive(std::time::Duration::from_secs(365 * 24 * 3600));
    let runtime = builder.enable_all().build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(serve(args)),
        Command::Advise(args) => runtime.block_on(advise::run(args)),
        Command::Image(args) => runtime.block_on(cli_image::run(args)),
    }
}
