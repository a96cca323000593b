//! The functions engine: the function registry (in memory, written through to the
//! store), warm pools of execution environments, and the invoke paths.
use crate::environment::{Environment, Invocation, Outcome, StartError, StartParams};
use crate::{
    CreateFunction, Error, FunctionPage, InvocationType, InvokeRequest, InvokeResult, UpdateCode,
    UpdateConfiguration, code,
};
use base64::Engine as _;
use bytes::Bytes;
use nimbus_model::function::{
    validate_environment, validate_ephemeral_storage, validate_handler, validate_memory, validate_role,
    validate_timeout,
};
use nimbus_model::{Alias, FunctionConfig, FunctionRef, PackageType, Runtime, Scope, limits};
use nimbus_sandbox::Sandbox;
use nimbus_store::{BlobStore, LogStore, Store};
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const COLLECTION: &str = "lambda.functions";

/// Engine settings, from the server's flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Account-wide concurrent executions.
    pub max_concurrency: usize,
    /// Idle environments are destroyed after this long.
    pub env_idle_timeout: Duration,
    /// Freeze idle environments (SIGSTOP/cgroup freezer) between invokes.
    pub freeze_idle: bool,
    /// What functions get as `AWS_ENDPOINT_URL`.
    pub endpoint_url: String,
    pub python: Interpreter,
    pub node: Interpreter,
    /// Secret of the credentials functions receive (`AWS_ACCESS_KEY_ID` = their account id),
    /// so `--auth strict` can accept calls functions make to the platform.
    pub function_secret: String,
    /// boto3 for python runtimes, set once installed (see `python_sdk::ensure`).
    pub python_sdk: Arc<std::sync::OnceLock<PathBuf>>,
    /// First retry delay of a failed asynchronous invocation (Lambda: about a minute);
    /// the second waits twice as long.
    pub async_retry_delay: Duration,
}

/// A language interpreter's path, which may be resolved in the background after start
/// (so version-manager shims cost nothing on the start-up path).
#[derive(Debug, Clone)]
pub struct Interpreter {
    fallback: PathBuf,
    resolved: Arc<std::sync::OnceLock<PathBuf>>,
    /// A resolution is under way (the fallback is a shim that isolated sandboxes cannot run).
    pending: bool,
}

impl Interpreter {
    pub fn new(fallback: PathBuf) -> Interpreter {
        Interpreter { fallback, resolved: Arc::default(), pending: false }
    }
    /// An interpreter whose real path `resolve` will provide shortly.
    pub fn resolving(fallback: PathBuf) -> Interpreter {
        Interpreter { pending: true, ..Interpreter::new(fallback) }
    }
    pub fn resolve(&self, path: PathBuf) {
        let _ = self.resolved.set(path);
    }
    pub fn path(&self) -> PathBuf {
        self.resolved.get().unwrap_or(&self.fallback).clone()
    }
    /// The resolved path, waiting (up to 5 s, only just after start-up) for a pending resolution.
    pub async fn settled_path(&self) -> PathBuf {
        if self.pending {
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.resolved.get().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.path()
    }
}

/// One function's current configuration and its warm environments. Replaced wholesale
/// on every update, so environments of an older configuration retire with their entry.
struct FunctionEntry {
    config: Arc<FunctionConfig>,
    code_dir: PathBuf,
    idle: Mutex<Vec<Arc<Environment>>>,
    retired: AtomicBool,
}

impl FunctionEntry {
    fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        for env in self.idle.lock().drain(..) {
            env.destroy();
        }
    }
}

pub struct FunctionsEngine {
    cfg: Config,
    store: Arc<dyn Store>,
    blobs: BlobStore,
    logs: Arc<LogStore>,
    sandbox: Arc<dyn Sandbox>,
    runtimes_dir: PathBuf,
    /// `$LATEST` and published versions, by `entry_key`.
    functions: RwLock<HashMap<String, Arc<FunctionEntry>>>,
    /// Aliases by `acct:region:name:alias`.
    aliases: RwLock<HashMap<String, Arc<Alias>>>,
    /// In-flight invocations per account (functions without reserved concurrency) and per
    /// function (`acct:region:name`, those with it).
    concurrency: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    /// Provisioned concurrency by `acct:region:name:qualifier`.
    provisioned: Mutex<HashMap<String, Arc<ProvisionedState>>>,
    /// Reserved concurrency by `acct:region:name`.
    reserved: RwLock<HashMap<String, usize>>,
    /// Function URL configurations by URL id.
    url_configs: RwLock<HashMap<String, Arc<nimbus_model::FunctionUrlConfig>>>,
    /// Tags set through TagResource, by function ARN (a read-through cache of `TAGS`).
    tags: RwLock<HashMap<String, BTreeMap<String, String>>>,
    /// Serialises control-plane writes so read-modify-write updates do not interleave.
    writes: Mutex<()>,
    /// Queue delivery for destinations and dead-letter queues (wired by the binary).
    pub(crate) destinations: std::sync::OnceLock<Arc<dyn crate::DestinationSink>>,
    /// Usage accounting of every invocation (wired by the binary).
    pub(crate) usage: std::sync::OnceLock<Arc<dyn crate::UsageSink>>,
    /// Images of `PackageType=Image` functions (wired by the binary over its image store).
    images: std::sync::OnceLock<Arc<dyn crate::ImageResolver>>,
}

fn key(account: &str, region: &str, name: &str) -> String {
    format!("{account}:{region}:{name}")
}

/// Registry and store key of one configuration: `acct:region:name` for `$LATEST`,
/// `acct:region:name:N` for a published version.
fn entry_key(c: &FunctionConfig) -> String {
    let base = key(&c.account, &c.region, &c.name);
    if c.version == "$LATEST" { base } else { format!("{base}:{}", c.version) }
}

const ALIASES: &str = "lambda.aliases";
const PROVISIONED: &str = "lambda.provisioned-concurrency";
const RESERVED: &str = "lambda.reserved-concurrency";
const TAGS: &str = "lambda.tags";
const VERSION_COUNTERS: &str = "lambda.version-counters";

/// Provisioned concurrency of one version or alias, as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ProvisionedDoc {
    account: String,
    region: String,
    function: String,
    qualifier: String,
    requested: usize,
}

/// Live state of a provisioned-concurrency configuration.
#[derive(Debug)]
pub struct ProvisionedState {
    pub qualified_arn: String,
    pub requested: usize,
    pub allocated: AtomicUsize,
    pub failed: Mutex<Option<String>>,
    pub last_modified: String,
}

impl ProvisionedState {
    /// `IN_PROGRESS`, `READY` or `FAILED`, as Lambda reports it.
    pub fn status(&self) -> &'static str {
        if self.failed.lock().is_some() {
            "FAILED"
        } else if self.allocated.load(Ordering::SeqCst) >= self.requested {
            "READY"
        } else {
            "IN_PROGRESS"
        }
    }
}

/// Holds one unit of account concurrency until dropped.
struct ConcurrencySlot(Arc<AtomicUsize>);

impl Drop for ConcurrencySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn not_found(arn: &str) -> Error {
    Error::NotFound(format!("Function not found: {arn}"))
}

const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

fn check_environment(vars: &BTreeMap<String, String>) -> Result<(), Error> {
    validate_environment(vars)?;
    let reserved: Vec<&str> = vars.keys().map(String::as_str).filter(|k| RESERVED_ENV.contains(k)).collect();
    if !reserved.is_empty() {
        return Err(Error::InvalidParameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    Ok(())
}

impl FunctionsEngine {
    /// Opens the engine over durable state, reloading every stored function.
    pub fn open(
        cfg: Config,
        store: Arc<dyn Store>,
        blobs: BlobStore,
        logs: Arc<LogStore>,
        sandbox: Arc<dyn Sandbox>,
    ) -> Result<Arc<FunctionsEngine>, Error> {
        let runtimes_dir = cfg.data_dir.join("runtimes");
        install_runtimes(&runtimes_dir)?;
        std::fs::create_dir_all(cfg.data_dir.join("envs"))?;
        // Scratch space of environments from a previous run is garbage now.
        for entry in std::fs::read_dir(cfg.data_dir.join("envs"))?.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
        let engine = FunctionsEngine {
            cfg,
            store,
            blobs,
            logs,
            sandbox,
            runtimes_dir,
            functions: RwLock::new(HashMap::new()),
            aliases: RwLock::new(HashMap::new()),
            concurrency: Mutex::new(HashMap::new()),
            reserved: RwLock::new(HashMap::new()),
            tags: RwLock::new(HashMap::new()),
            url_configs: RwLock::new(HashMap::new()),
            provisioned: Mutex::new(HashMap::new()),
            writes: Mutex::new(()),
            destinations: std::sync::OnceLock::new(),
            usage: std::sync::OnceLock::new(),
            images: std::sync::OnceLock::new(),
        };
        for (k, v) in engine.store.list(COLLECTION)? {
            let config: FunctionConfig = serde_json::from_slice(&v)
                .map_err(|e| Error::Internal(format!("stored function {k} is unreadable: {e}")))?;
            let code_dir = engine.code_dir(&config.code_digest);
            engine.functions.write().insert(
                k,
                Arc::new(FunctionEntry {
                    config: Arc::new(config),
                    code_dir,
                    idle: Mutex::new(Vec::new()),
                    retired: AtomicBool::new(false),
                }),
            );
        }
        for (k, v) in engine.store.list(crate::urls::URL_CONFIGS)? {
            if let Ok(u) = serde_json::from_slice(&v) {
                engine.url_configs.write().insert(k, Arc::new(u));
            }
        }
        for (k, v) in engine.store.list(TAGS)? {
            if let Ok(t) = serde_json::from_slice(&v) {
                engine.tags.write().insert(k, t);
            }
        }
        for (k, v) in engine.store.list(RESERVED)? {
            if let Some(n) = String::from_utf8(v).ok().and_then(|s| s.parse().ok()) {
                engine.reserved.write().insert(k, n);
            }
        }
        for (k, v) in engine.store.list(ALIASES)? {
            let alias: Alias = serde_json::from_slice(&v)
                .map_err(|e| Error::Internal(format!("stored alias {k} is unreadable: {e}")))?;
            engine.aliases.write().insert(k, Arc::new(alias));
        }
        let engine = Arc::new(engine);
        engine.spawn_reaper();
        for (_, v) in engine.store.list(PROVISIONED)? {
            if let Ok(doc) = serde_json::from_slice::<ProvisionedDoc>(&v) {
                let scope = Scope::new(doc.account.clone(), doc.region.clone());
                if let Err(e) = engine.provision(&scope, &doc.function, &doc.qualifier, doc.requested) {
                    tracing::warn!(
                        "could not restore provisioned concurrency of {}:{}: {e}",
                        doc.function,
                        doc.qualifier
                    );
                }
            }
        }
        let pending = engine.recover_events()?;
        if pending > 0 {
            tracing::info!("resuming {pending} asynchronous invocations accepted before the restart");
        }
        Ok(engine)
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub(crate) fn data_dir(&self) -> &std::path::Path {
        &self.cfg.data_dir
    }

    pub(crate) fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub(crate) fn url_configs(&self) -> &RwLock<HashMap<String, Arc<nimbus_model::FunctionUrlConfig>>> {
        &self.url_configs
    }

    pub(crate) fn async_retry_delay(&self) -> Duration {
        self.cfg.async_retry_delay
    }

    /// Whether boto3 is ready for python functions.
    pub fn python_sdk_ready(&self) -> bool {
        self.cfg.python_sdk.get().is_some()
    }

    pub fn sandbox_name(&self) -> &'static str {
        self.sandbox.name()
    }

    pub fn function_count(&self) -> usize {
        self.functions.read().len()
    }

    fn code_dir(&self, digest: &str) -> PathBuf {
        self.cfg.data_dir.join("code").join(digest)
    }

    /// Destroys environments idle for longer than the idle timeout.
    fn spawn_reaper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period = (self.cfg.env_idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(engine) = weak.upgrade() else { return };
                let entries: Vec<_> = engine.functions.read().values().cloned().collect();
                for entry in entries {
                    let mut idle = entry.idle.lock();
                    idle.retain(|env| {
                        let keep =
                            env.last_used.lock().elapsed() < engine.cfg.env_idle_timeout && !env.is_dead();
                        if !keep {
                            env.destroy();
                        }
                        keep
                    });
                }
            }
        });
    }

    fn resolve(&self, scope: &Scope, function: &str) -> Result<(FunctionRef, String), Error> {
        let r = FunctionRef::parse(function)?;
        let account = r.account.clone().unwrap_or_else(|| scope.account.clone());
        let region = r.region.clone().unwrap_or_else(|| scope.region.clone());
        let k = key(&account, &region, &r.name);
        Ok((r, k))
    }

    fn entry(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Arc<FunctionEntry>, Error> {
        self.entry_routed(scope, function, qualifier, None)
    }

    /// Resolves a function and qualifier (`$LATEST`, a version or an alias) to the
    /// configuration that serves it. With `roll`, an alias routes by its weights;
    /// without, it resolves to its primary version.
    fn entry_routed(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
        roll: Option<f64>,
    ) -> Result<Arc<FunctionEntry>, Error> {
        let (r, k) = self.resolve(scope, function)?;
        let qualifier = qualifier.or(r.qualifier.as_deref());
        let arn = || {
            let base = Scope::new(
                r.account.clone().unwrap_or(scope.account.clone()),
                r.region.clone().unwrap_or(scope.region.clone()),
            )
            .function_arn(&r.name);
            match qualifier {
                Some(q) => format!("{base}:{q}"),
                None => base,
            }
        };
        let functions = self.functions.read();
        let latest = functions.get(&k).cloned().ok_or_else(|| not_found(&arn()))?;
        let version = match qualifier {
            None | Some("$LATEST") => return Ok(latest),
            Some(q) if q.chars().all(|c| c.is_ascii_digit()) => q.to_string(),
            Some(alias) => {
                let a = self
                    .aliases
                    .read()
                    .get(&format!("{k}:{alias}"))
                    .cloned()
                    .ok_or_else(|| not_found(&arn()))?;
                match roll {
                    Some(roll) => a.route(roll).to_string(),
                    None => a.function_version.clone(),
                }
            }
        };
        if version == "$LATEST" {
            return Ok(latest);
        }
        functions.get(&format!("{k}:{version}")).cloned().ok_or_else(|| not_found(&arn()))
    }

    pub fn get_function(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Arc<FunctionConfig>, Error> {
        Ok(self.entry(scope, function, qualifier)?.config.clone())
    }

    /// The deployment package bytes (GetFunction's `Code.Location` serves them).
    pub fn code_package(&self, digest: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.blobs.get(digest)?)
    }

    pub fn list_functions(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        max_items: Option<usize>,
    ) -> Result<FunctionPage, Error> {
        let max = max_items.unwrap_or(50).clamp(1, 50);
        let mut all: Vec<Arc<FunctionConfig>> = self
            .functions
            .read()
            .values()
            .filter(|e| {
                e.config.account == scope.account
                    && e.config.region == scope.region
                    && e.config.version == "$LATEST"
            })
            .map(|e| e.config.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let start = match marker {
            Some(m) => {
                let after = String::from_utf8(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(m)
                        .map_err(|_| Error::InvalidParameter("Invalid Marker".into()))?,
                )
                .map_err(|_| Error::InvalidParameter("Invalid Marker".into()))?;
                all.partition_point(|f| f.name.as_str() <= after.as_str())
            }
            None => 0,
        };
        let page: Vec<_> = all.iter().skip(start).take(max).cloned().collect();
        let next_marker = (start + page.len() < all.len())
            .then(|| page.last().map(|f| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&f.name)))
            .flatten();
        Ok(FunctionPage { functions: page, next_marker })
    }

    /// Validates, stores and unpacks a zip; returns (hex digest, base64 sha, size).
    fn ingest_zip(&self, zip: &[u8]) -> Result<(String, String, u64), Error> {
        if zip.is_empty() {
            return Err(Error::InvalidParameter("Please provide a source for function code.".into()));
        }
        code::validate(zip)?;
        let digest = self.blobs.put(zip)?;
        code::unpack_once(zip, &self.code_dir(&digest))?;
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip));
        Ok((digest, sha, zip.len() as u64))
    }

    fn persist(&self, config: &FunctionConfig) -> Result<(), Error> {
        let bytes = serde_json::to_vec(config).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.put(COLLECTION, &entry_key(config), &bytes)?;
        Ok(())
    }

    fn install(&self, config: FunctionConfig) -> Arc<FunctionConfig> {
        let config = Arc::new(config);
        let entry = Arc::new(FunctionEntry {
            code_dir: self.code_dir(&config.code_digest),
            config: config.clone(),
            idle: Mutex::new(Vec::new()),
            retired: AtomicBool::new(false),
        });
        if let Some(old) = self.functions.write().insert(entry_key(&config), entry) {
            old.retire();
        }
        config
    }

    pub fn create_function(&self, scope: &Scope, req: CreateFunction) -> Result<Arc<FunctionConfig>, Error> {
        let r = FunctionRef::parse(&req.name)?;
        if r.qualifier.is_some() {
            return Err(Error::InvalidParameter(
                "Qualifiers are not allowed in CreateFunction's FunctionName.".into(),
            ));
        }
        let scope = Scope::new(
            r.account.clone().unwrap_or(scope.account.clone()),
            r.region.clone().unwrap_or(scope.region.clone()),
        );
        let image = match req.package_type.as_deref() {
            None | Some("Zip") => None,
            Some("Image") => Some(self.image_of(req.image_uri.as_deref(), req.image_config.clone())?),
            Some(other) => {
                return Err(Error::InvalidParameter(format!("Unsupported PackageType: {other}")));
            }
        };
        // An image brings its own runtime and handler (its ENTRYPOINT and CMD).
        let (runtime, handler) = match &image {
            Some(_) => (None, None),
            None => {
                let (Some(runtime), Some(handler)) = (req.runtime.as_deref(), req.handler.as_deref()) else {
                    return Err(Error::InvalidParameter(
                        "Runtime and Handler are mandatory parameters for functions created with deployment packages.".into(),
                    ));
                };
                validate_handler(handler)?;
                (Some(Runtime::parse(runtime)?), Some(handler.to_string()))
            }
        };
        validate_role(&req.role)?;
        let memory_mb = req.memory_mb.unwrap_or(limits::DEFAULT_MEMORY_MB);
        validate_memory(memory_mb)?;
        let timeout_secs = req.timeout_secs.unwrap_or(limits::DEFAULT_TIMEOUT_SECS);
        validate_timeout(timeout_secs)?;
        let ephemeral = req.ephemeral_storage_mb.unwrap_or(limits::EPHEMERAL_MB_MIN);
        validate_ephemeral_storage(ephemeral)?;
        let environment = req.environment.unwrap_or_default();
        check_environment(&environment)?;
        if let Some(d) = &req.description
            && d.len() > 256
        {
            return Err(Error::InvalidParameter("Description must be at most 256 characters.".into()));
        }
        let layer_sizes = self.resolve_layers(&req.layers)?.iter().map(|l| l.code_size).collect();
        let architectures = req.architectures.unwrap_or_else(|| vec!["x86_64".into()]);
        if architectures.len() != 1 || !["x86_64", "arm64"].contains(&architectures[0].as_str()) {
            return Err(Error::InvalidParameter(
                "Architectures must be exactly one of x86_64, arm64.".into(),
            ));
        }
        let dead_letter_target_arn = req.dead_letter_target_arn.filter(|a| !a.is_empty());
        if let Some(arn) = &dead_letter_target_arn {
            self.validate_dead_letter_target(&scope, arn)?;
        }
        let k = key(&scope.account, &scope.region, &r.name);
        let _w = self.writes.lock();
        if self.functions.read().contains_key(&k) {
            return Err(Error::Conflict(format!("Function already exist: {}", r.name)));
        }
        let (code_digest, code_sha256, code_size) = match &image {
            // Lambda reports the image manifest's digest as CodeSha256 and no code size.
            Some((_, digest)) => (String::new(), digest.trim_start_matches("sha256:").to_string(), 0),
            None => self.ingest_zip(&req.zip)?,
        };
        let package_type = if image.is_some() { PackageType::Image } else { PackageType::Zip };
        let config = FunctionConfig {
            name: r.name.clone(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            runtime,
            handler,
            role: req.role,
            description: req.description.unwrap_or_default(),
            memory_mb,
            timeout_secs,
            ephemeral_storage_mb: ephemeral,
            environment,
            architectures,
            package_type,
            code_sha256,
            code_digest,
            code_size,
            last_modified: nimbus_model::lambda_timestamp(chrono::Utc::now()),
            revision_id: uuid::Uuid::new_v4().to_string(),
            version: "$LATEST".into(),
            tags: req.tags,
            layers: req.layers,
            layer_sizes,
            dead_letter_target_arn,
            image: image.map(|(i, _)| i),
        };
        self.persist(&config)?;
        Ok(self.install(config))
    }

    /// Wires the image source of `PackageType=Image` functions (called once by the binary).
    pub fn set_image_resolver(&self, images: Arc<dyn crate::ImageResolver>) {
        let _ = self.images.set(images);
    }

    /// Checks an image function's `ImageUri` now (as Lambda does at create/update) and pins
    /// it to the digest it names; returns the image and that digest.
    fn image_of(
        &self,
        image_uri: Option<&str>,
        overrides: Option<crate::ImageConfigInput>,
    ) -> Result<(nimbus_model::FunctionImage, String), Error> {
        let Some(uri) = image_uri.filter(|u| !u.is_empty()) else {
            return Err(Error::InvalidParameter("Please provide a source for function code.".into()));
        };
        if !self.sandbox.capabilities().image_roots {
            return Err(Error::InvalidParameter(format!(
                "Container image functions (PackageType Image) need the container sandbox (nimbus server --sandbox container); this server runs the {} sandbox, which cannot run images.",
                self.sandbox.name()
            )));
        }
        let Some(images) = self.images.get() else {
            return Err(Error::InvalidParameter(
                "Container image functions (PackageType Image) are not available: this server has no image store."
                    .into(),
            ));
        };
        let digest = images.resolve(uri).map_err(|e| match e {
            crate::ImageSourceError::NotFound(_) => Error::InvalidParameter(format!(
                "Source image {uri} does not exist. Provide a valid source image."
            )),
            crate::ImageSourceError::Invalid(_) => Error::InvalidParameter(format!(
                "Source image {uri} is not valid. Provide a valid source image."
            )),
            crate::ImageSourceError::Failed(m) => Error::Internal(m),
        })?;
        let overrides = overrides.unwrap_or_default();
        let image = nimbus_model::FunctionImage {
            image_uri: uri.to_string(),
            resolved_image_uri: crate::image::pin(uri, &digest),
            entry_point: overrides.entry_point.filter(|v| !v.is_empty()),
            command: overrides.command.filter(|v| !v.is_empty()),
            working_directory: overrides.working_directory.filter(|w| !w.is_empty()),
        };
        Ok((image, digest))
    }

    /// Read-modify-write of a function's configuration under the write lock,
    /// honouring `RevisionId` preconditions.
    fn modify(
        &self,
        scope: &Scope,
        function: &str,
        revision_id: Option<&str>,
        change: impl FnOnce(&mut FunctionConfig) -> Result<(), Error>,
    ) -> Result<Arc<FunctionConfig>, Error> {
        let _w = self.writes.lock();
        let entry = self.entry(scope, function, None)?;
        if let Some(rev) = revision_id
            && rev != entry.config.revision_id
        {
            return Err(Error::PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".into(),
                ));
        }
        let mut config = (*entry.config).clone();
        change(&mut config)?;
        config.last_modified = nimbus_model::lambda_timestamp(chrono::Utc::now());
        config.revision_id = uuid::Uuid::new_v4().to_string();
        self.persist(&config)?;
        Ok(self.install(config))
    }

    pub fn update_configuration(
        &self,
        scope: &Scope,
        function: &str,
        req: UpdateConfiguration,
    ) -> Result<Arc<FunctionConfig>, Error> {
        self.modify(scope, function, req.revision_id.as_deref(), |c| {
            if let Some(r) = &req.runtime {
                c.runtime = Some(Runtime::parse(r)?);
            }
            if let Some(h) = &req.handler {
                validate_handler(h)?;
                c.handler = Some(h.clone());
            }
            if let Some(role) = &req.role {
                validate_role(role)?;
                c.role = role.clone();
            }
            if let Some(d) = &req.description {
                c.description = d.clone();
            }
            if let Some(m) = req.memory_mb {
                validate_memory(m)?;
                c.memory_mb = m;
            }
            if let Some(t) = req.timeout_secs {
                validate_timeout(t)?;
                c.timeout_secs = t;
            }
            if let Some(e) = req.ephemeral_storage_mb {
                validate_ephemeral_storage(e)?;
                c.ephemeral_storage_mb = e;
            }
            if let Some(env) = &req.environment {
                check_environment(env)?;
                c.environment = env.clone();
            }
            if let Some(layers) = &req.layers {
                c.layer_sizes = self.resolve_layers(layers)?.iter().map(|l| l.code_size).collect();
                c.layers = layers.clone();
            }
            if let Some(arn) = &req.dead_letter_target_arn {
                if !arn.is_empty() {
                    self.validate_dead_letter_target(scope, arn)?;
                }
                c.dead_letter_target_arn = Some(arn.clone()).filter(|a| !a.is_empty());
            }
            if let Some(ic) = &req.image_config {
                let Some(image) = c.image.as_mut() else {
                    return Err(Error::InvalidParameter(
                        "ImageConfig is only supported for functions with PackageType Image.".into(),
                    ));
                };
                image.entry_point = ic.entry_point.clone().filter(|v| !v.is_empty());
                image.command = ic.command.clone().filter(|v| !v.is_empty());
                image.working_directory = ic.working_directory.clone().filter(|w| !w.is_empty());
            }
            Ok(())
        })
    }

    pub fn update_code(
        &self,
        scope: &Scope,
        function: &str,
        req: UpdateCode,
    ) -> Result<Arc<FunctionConfig>, Error> {
        let current = self.entry(scope, function, None)?;
        if let Some(image) = &current.config.image {
            if req.image_uri.as_deref().unwrap_or("").is_empty() {
                return Err(Error::InvalidParameter(
                    "Please provide ImageUri when updating a function with packageType Image.".into(),
                ));
            }
            let overrides = crate::ImageConfigInput {
                entry_point: image.entry_point.clone(),
                command: image.command.clone(),
                working_directory: image.working_directory.clone(),
            };
            let (image, digest) = self.image_of(req.image_uri.as_deref(), Some(overrides))?;
            if req.dry_run {
                return Ok(current.config.clone());
            }
            return self.modify(scope, function, req.revision_id.as_deref(), |c| {
                c.image = Some(image);
                c.code_sha256 = digest.trim_start_matches("sha256:").to_string();
                Ok(())
            });
        }
        if req.image_uri.is_some() {
            return Err(Error::InvalidParameter(
                "Please don't provide ImageUri when updating a function with packageType Zip.".into(),
            ));
        }
        if req.dry_run {
            code::validate(&req.zip)?;
            return self.get_function(scope, function, None);
        }
        let (digest, sha, size) = self.ingest_zip(&req.zip)?;
        self.modify(scope, function, req.revision_id.as_deref(), |c| {
            c.code_digest = digest;
            c.code_sha256 = sha;
            c.code_size = size;
            Ok(())
        })
    }

    /// Deletes the function (all versions and aliases), or one published version.
    pub fn delete_function(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(), Error> {
        let _w = self.writes.lock();
        let (r, k) = self.resolve(scope, function)?;
        let latest = self.entry(scope, function, None)?;
        match qualifier.or(r.qualifier.as_deref()) {
            None | Some("$LATEST") => {
                let prefix = format!("{k}:");
                let doomed: Vec<String> =
                    self.functions.read().keys().filter(|key| key.starts_with(&prefix)).cloned().collect();
                for key in doomed {
                    self.store.delete(COLLECTION, &key)?;
                    if let Some(e) = self.functions.write().remove(&key) {
                        e.retire();
                    }
                }
                let aliases: Vec<String> =
                    self.aliases.read().keys().filter(|key| key.starts_with(&prefix)).cloned().collect();
                for key in aliases {
                    self.store.delete(ALIASES, &key)?;
                    self.aliases.write().remove(&key);
                }
                self.store.delete(VERSION_COUNTERS, &k)?;
                self.store.delete(RESERVED, &k)?;
                self.reserved.write().remove(&k);
                self.store.delete(TAGS, &latest.config.arn())?;
                self.tags.write().remove(&latest.config.arn());
                let urls: Vec<String> = self
                    .url_configs
                    .read()
                    .values()
                    .filter(|u| {
                        u.account == latest.config.account
                            && u.region == latest.config.region
                            && u.function_name == latest.config.name
                    })
                    .map(|u| u.url_id.clone())
                    .collect();
                for id in urls {
                    self.store.delete(crate::urls::URL_CONFIGS, &id)?;
                    self.url_configs.write().remove(&id);
                }
                for (key, _) in self.store.list(crate::async_queue::INVOKE_CONFIGS)? {
                    if key == k || key.starts_with(&prefix) {
                        self.store.delete(crate::async_queue::INVOKE_CONFIGS, &key)?;
                    }
                }
                self.store.delete(COLLECTION, &k)?;
                self.functions.write().remove(&k);
                latest.retire();
            }
            Some(q) if q.chars().all(|c| c.is_ascii_digit()) => {
                let vk = format!("{k}:{q}");
                let version = self
                    .functions
                    .read()
                    .get(&vk)
                    .cloned()
                    .ok_or_else(|| not_found(&format!("{}:{q}", latest.config.arn())))?;
                let users: Vec<String> = self
                    .aliases
                    .read()
                    .values()
                    .filter(|a| {
                        a.function_name == latest.config.name
                            && a.account == latest.config.account
                            && (a.function_version == q || a.additional_version_weights.contains_key(q))
                    })
                    .map(|a| a.arn())
                    .collect();
                if !users.is_empty() {
                    return Err(Error::Conflict(format!(
                        "Unable to delete version because the following aliases reference it: [{}]",
                        users.join(", ")
                    )));
                }
                self.store.delete(COLLECTION, &vk)?;
                self.functions.write().remove(&vk);
                version.retire();
            }
            Some(_) => {
                return Err(Error::InvalidParameter(
                    "Deletion of aliases is not supported through DeleteFunction; use DeleteAlias.".into(),
                ));
            }
        }
        Ok(())
    }

    /// PublishVersion: an immutable snapshot of `$LATEST`. Publishing an unchanged
    /// `$LATEST` again returns the latest version, as Lambda does.
    pub fn publish_version(
        &self,
        scope: &Scope,
        function: &str,
        code_sha256: Option<&str>,
        description: Option<String>,
        revision_id: Option<&str>,
    ) -> Result<Arc<FunctionConfig>, Error> {
        let _w = self.writes.lock();
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        if let Some(rev) = revision_id
            && rev != c.revision_id
        {
            return Err(Error::PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".into(),
            ));
        }
        if let Some(sha) = code_sha256
            && sha != c.code_sha256
        {
            return Err(Error::InvalidParameter(format!(
                "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try publishing again.",
                c.code_sha256
            )));
        }
        let k = key(&c.account, &c.region, &c.name);
        let last: u32 = self
            .store
            .get(VERSION_COUNTERS, &k)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if last > 0
            && let Some(prev) = self.functions.read().get(&format!("{k}:{last}"))
        {
            let same = |a: &FunctionConfig, b: &FunctionConfig| {
                let mut a = a.clone();
                a.version = b.version.clone();
                a.revision_id = b.revision_id.clone();
                a.last_modified = b.last_modified.clone();
                a.description = b.description.clone();
                a == *b
            };
            if same(c, &prev.config) {
                return Ok(prev.config.clone());
            }
        }
        let n = last + 1;
        self.store.put(VERSION_COUNTERS, &k, n.to_string().as_bytes())?;
        let mut version = (**c).clone();
        version.version = n.to_string();
        version.revision_id = uuid::Uuid::new_v4().to_string();
        version.last_modified = nimbus_model::lambda_timestamp(chrono::Utc::now());
        if let Some(d) = description {
            version.description = d;
        }
        self.persist(&version)?;
        Ok(self.install(version))
    }

    /// `$LATEST` followed by the published versions in order.
    pub fn list_versions(&self, scope: &Scope, function: &str) -> Result<Vec<Arc<FunctionConfig>>, Error> {
        let latest = self.entry(scope, function, None)?;
        let prefix = format!("{}:", key(&latest.config.account, &latest.config.region, &latest.config.name));
        let mut versions: Vec<Arc<FunctionConfig>> = self
            .functions
            .read()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, e)| e.config.clone())
            .collect();
        versions.sort_by_key(|c| c.version.parse::<u64>().unwrap_or(0));
        versions.insert(0, latest.config.clone());
        Ok(versions)
    }

    fn check_alias_target(
        &self,
        k: &str,
        arn: &str,
        version: &str,
        weights: &BTreeMap<String, f64>,
    ) -> Result<(), Error> {
        let exists = |v: &str| v == "$LATEST" || self.functions.read().contains_key(&format!("{k}:{v}"));
        if !exists(version) {
            return Err(Error::NotFound(format!("Function not found: {arn}:{version}")));
        }
        if weights.len() > 1 {
            return Err(Error::InvalidParameter(
                "Number of items in AdditionalVersionWeights cannot be greater than 1".into(),
            ));
        }
        for (v, w) in weights {
            if !(0.0..=1.0).contains(w) {
                return Err(Error::InvalidParameter(format!(
                    "Invalid weight {w} for version {v}: weights are between 0.0 and 1.0"
                )));
            }
            if version == "$LATEST" || v == "$LATEST" {
                return Err(Error::InvalidParameter(
                    "$LATEST is not supported for an alias pointing to more than 1 version".into(),
                ));
            }
            if v == version {
                return Err(Error::InvalidParameter(format!(
                    "Invalid function version {v}. Function version {v} is already included in routing configuration."
                )));
            }
            if !exists(v) {
                return Err(Error::NotFound(format!("Function not found: {arn}:{v}")));
            }
        }
        Ok(())
    }

    pub fn create_alias(
        &self,
        scope: &Scope,
        function: &str,
        name: &str,
        version: &str,
        description: Option<String>,
        weights: BTreeMap<String, f64>,
    ) -> Result<Arc<Alias>, Error> {
        nimbus_model::function::validate_alias_name(name)?;
        let _w = self.writes.lock();
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        let k = key(&c.account, &c.region, &c.name);
        self.check_alias_target(&k, &c.arn(), version, &weights)?;
        let ak = format!("{k}:{name}");
        if self.aliases.read().contains_key(&ak) {
            return Err(Error::Conflict(format!("Alias already exists: {}:{name}", c.arn())));
        }
        let alias = Alias {
            name: name.to_string(),
            function_name: c.name.clone(),
            account: c.account.clone(),
            region: c.region.clone(),
            function_version: version.to_string(),
            description: description.unwrap_or_default(),
            additional_version_weights: weights,
            revision_id: uuid::Uuid::new_v4().to_string(),
        };
        self.save_alias(ak, alias)
    }

    fn save_alias(&self, ak: String, alias: Alias) -> Result<Arc<Alias>, Error> {
        let bytes = serde_json::to_vec(&alias).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.put(ALIASES, &ak, &bytes)?;
        let alias = Arc::new(alias);
        self.aliases.write().insert(ak, alias.clone());
        Ok(alias)
    }

    fn alias_key(
        &self,
        scope: &Scope,
        function: &str,
        name: &str,
    ) -> Result<(String, Arc<FunctionEntry>), Error> {
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        Ok((format!("{}:{name}", key(&c.account, &c.region, &c.name)), latest))
    }

    pub fn get_alias(&self, scope: &Scope, function: &str, name: &str) -> Result<Arc<Alias>, Error> {
        let (ak, latest) = self.alias_key(scope, function, name)?;
        self.aliases
            .read()
            .get(&ak)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("Cannot find alias arn: {}:{name}", latest.config.arn())))
    }

    /// UpdateAlias: only the given fields change.
    #[allow(clippy::too_many_arguments)]
    pub fn update_alias(
        &self,
        scope: &Scope,
        function: &str,
        name: &str,
        version: Option<String>,
        description: Option<String>,
        weights: Option<BTreeMap<String, f64>>,
        revision_id: Option<&str>,
    ) -> Result<Arc<Alias>, Error> {
        let _w = self.writes.lock();
        let current = self.get_alias(scope, function, name)?;
        if let Some(rev) = revision_id
            && rev != current.revision_id
        {
            return Err(Error::PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".into(),
            ));
        }
        let (ak, latest) = self.alias_key(scope, function, name)?;
        let mut alias = (*current).clone();
        if let Some(v) = version {
            alias.function_version = v;
        }
        if let Some(d) = description {
            alias.description = d;
        }
        if let Some(w) = weights {
            alias.additional_version_weights = w;
        }
        let k = key(&latest.config.account, &latest.config.region, &latest.config.name);
        self.check_alias_target(
            &k,
            &latest.config.arn(),
            &alias.function_version,
            &alias.additional_version_weights,
        )?;
        alias.revision_id = uuid::Uuid::new_v4().to_string();
        self.save_alias(ak, alias)
    }

    pub fn delete_alias(&self, scope: &Scope, function: &str, name: &str) -> Result<(), Error> {
        let _w = self.writes.lock();
        let (ak, _) = self.alias_key(scope, function, name)?;
        self.store.delete(ALIASES, &ak)?;
        self.aliases.write().remove(&ak);
        Ok(())
    }

    /// Aliases of a function, optionally only those pointing at `version`.
    pub fn list_aliases(
        &self,
        scope: &Scope,
        function: &str,
        version: Option<&str>,
    ) -> Result<Vec<Arc<Alias>>, Error> {
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        let mut out: Vec<Arc<Alias>> = self
            .aliases
            .read()
            .values()
            .filter(|a| a.function_name == c.name && a.account == c.account && a.region == c.region)
            .filter(|a| version.is_none_or(|v| a.function_version == v))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Takes one unit of concurrency: from the function's reservation if it has one,
    /// else from the account's unreserved pool (the limit minus all reservations).
    fn acquire_slot(&self, config: &FunctionConfig) -> Result<ConcurrencySlot, Error> {
        let fk = key(&config.account, &config.region, &config.name);
        let (counter_key, limit, reason) = match self.reserved.read().get(&fk) {
            Some(n) => (fk, *n, "ReservedFunctionConcurrentInvocationLimitExceeded"),
            None => (
                config.account.clone(),
                self.unreserved(&config.account),
                "ConcurrentInvocationLimitExceeded",
            ),
        };
        let counter = self.concurrency.lock().entry(counter_key).or_default().clone();
        let before = counter.fetch_add(1, Ordering::SeqCst);
        let slot = ConcurrencySlot(counter);
        if before >= limit {
            return Err(Error::TooManyRequests { reason, message: "Rate Exceeded.".into() });
        }
        Ok(slot)
    }

    fn unreserved(&self, account: &str) -> usize {
        let prefix = format!("{account}:");
        let reserved: usize =
            self.reserved.read().iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(_, n)| *n).sum();
        self.cfg.max_concurrency.saturating_sub(reserved)
    }

    /// PutFunctionConcurrency. Lambda keeps at least 100 (here: at most the whole limit)
    /// unreserved for the rest of the account.
    pub fn put_reserved_concurrency(&self, scope: &Scope, function: &str, n: usize) -> Result<usize, Error> {
        let _w = self.writes.lock();
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        let fk = key(&c.account, &c.region, &c.name);
        let current = self.reserved.read().get(&fk).copied().unwrap_or(0);
        let floor = 100.min(self.cfg.max_concurrency);
        if self.unreserved(&c.account) + current < n + floor {
            return Err(Error::InvalidParameter(format!(
                "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{floor}]."
            )));
        }
        self.store.put(RESERVED, &fk, n.to_string().as_bytes())?;
        self.reserved.write().insert(fk, n);
        Ok(n)
    }

    pub fn reserved_concurrency(&self, scope: &Scope, function: &str) -> Result<Option<usize>, Error> {
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        Ok(self.reserved.read().get(&key(&c.account, &c.region, &c.name)).copied())
    }

    pub fn delete_reserved_concurrency(&self, scope: &Scope, function: &str) -> Result<(), Error> {
        let _w = self.writes.lock();
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        let fk = key(&c.account, &c.region, &c.name);
        self.store.delete(RESERVED, &fk)?;
        self.reserved.write().remove(&fk);
        Ok(())
    }

    /// PutProvisionedConcurrencyConfig: initialise `n` environments of a version (or of
    /// an alias's version) now and keep them warm; invokes use them before cold-starting.
    pub fn put_provisioned_concurrency(
        self: &Arc<Self>,
        scope: &Scope,
        function: &str,
        qualifier: &str,
        n: usize,
    ) -> Result<Arc<ProvisionedState>, Error> {
        if n == 0 {
            return Err(Error::InvalidParameter(
                "ProvisionedConcurrentExecutions must be at least 1.".into(),
            ));
        }
        let state = self.provision(scope, function, qualifier, n)?;
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        let doc = ProvisionedDoc {
            account: c.account.clone(),
            region: c.region.clone(),
            function: c.name.clone(),
            qualifier: qualifier.to_string(),
            requested: n,
        };
        let bytes = serde_json::to_vec(&doc).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.put(
            PROVISIONED,
            &format!("{}:{qualifier}", key(&c.account, &c.region, &c.name)),
            &bytes,
        )?;
        Ok(state)
    }

    fn provision(
        self: &Arc<Self>,
        scope: &Scope,
        function: &str,
        qualifier: &str,
        n: usize,
    ) -> Result<Arc<ProvisionedState>, Error> {
        if qualifier == "$LATEST" {
            return Err(Error::InvalidParameter(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions.".into(),
            ));
        }
        let entry = self.entry(scope, function, Some(qualifier))?;
        let c = &entry.config;
        let pk = format!("{}:{qualifier}", key(&c.account, &c.region, &c.name));
        if let Some(old) = self.provisioned.lock().remove(&pk) {
            drop(old);
            for env in entry.idle.lock().iter() {
                env.provisioned.store(false, Ordering::SeqCst);
            }
        }
        let state = Arc::new(ProvisionedState {
            qualified_arn: format!("{}:{qualifier}", c.arn()),
            requested: n,
            allocated: AtomicUsize::new(0),
            failed: Mutex::new(None),
            last_modified: nimbus_model::lambda_timestamp(chrono::Utc::now()),
        });
        self.provisioned.lock().insert(pk, state.clone());
        for _ in 0..n {
            let (engine, entry, state) = (self.clone(), entry.clone(), state.clone());
            tokio::spawn(async move {
                match engine.start_environment(&entry, true).await {
                    Ok((env, _)) => {
                        env.park();
                        entry.idle.lock().push(env);
                        state.allocated.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(StartError::Init { body, .. }) => {
                        *state.failed.lock() = Some(String::from_utf8_lossy(&body).into_owned());
                    }
                    Err(StartError::Internal(m)) => *state.failed.lock() = Some(m),
                }
            });
        }
        Ok(state)
    }

    pub fn provisioned_concurrency(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: &str,
    ) -> Result<Arc<ProvisionedState>, Error> {
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        self.provisioned
            .lock()
            .get(&format!("{}:{qualifier}", key(&c.account, &c.region, &c.name)))
            .cloned()
            .ok_or_else(|| {
                Error::ProvisionedConfigNotFound(format!(
                    "No Provisioned Concurrency Config found for this function: {}:{qualifier}",
                    c.arn()
                ))
            })
    }

    pub fn list_provisioned_concurrency(
        &self,
        scope: &Scope,
        function: &str,
    ) -> Result<Vec<Arc<ProvisionedState>>, Error> {
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        let prefix = format!("{}:", key(&c.account, &c.region, &c.name));
        let mut out: Vec<(String, Arc<ProvisionedState>)> = self
            .provisioned
            .lock()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    pub fn delete_provisioned_concurrency(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: &str,
    ) -> Result<(), Error> {
        self.provisioned_concurrency(scope, function, qualifier)?;
        let latest = self.entry(scope, function, None)?;
        let c = &latest.config;
        let pk = format!("{}:{qualifier}", key(&c.account, &c.region, &c.name));
        self.store.delete(PROVISIONED, &pk)?;
        self.provisioned.lock().remove(&pk);
        // The environments stay warm and are reaped like any other once idle.
        if let Ok(entry) = self.entry(scope, function, Some(qualifier)) {
            for env in entry.idle.lock().iter() {
                env.provisioned.store(false, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Tags of a function, by its (unqualified) ARN.
    pub fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>, Error> {
        let (scope, name) = self.function_by_arn(arn)?;
        let latest = self.entry(&scope, &name, None)?;
        Ok(self.tags.read().get(&latest.config.arn()).cloned().unwrap_or_else(|| latest.config.tags.clone()))
    }

    pub fn tag_resource(&self, arn: &str, add: BTreeMap<String, String>) -> Result<(), Error> {
        let _w = self.writes.lock();
        let mut tags = self.tags(arn)?;
        tags.extend(add);
        if tags.len() > 50 {
            return Err(Error::InvalidParameter("A function can have at most 50 tags.".into()));
        }
        self.save_tags(arn, &tags)
    }

    pub fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<(), Error> {
        let _w = self.writes.lock();
        let mut tags = self.tags(arn)?;
        for k in keys {
            tags.remove(k);
        }
        self.save_tags(arn, &tags)
    }

    fn save_tags(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), Error> {
        let (scope, name) = self.function_by_arn(arn)?;
        let latest = self.entry(&scope, &name, None)?;
        let bytes = serde_json::to_vec(tags).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.put(TAGS, &latest.config.arn(), &bytes)?;
        self.tags.write().insert(latest.config.arn(), tags.clone());
        Ok(())
    }

    /// Tagging APIs take a function ARN; anything else is refused as Lambda does.
    fn function_by_arn(&self, arn: &str) -> Result<(Scope, String), Error> {
        let r = FunctionRef::parse(arn)?;
        match (r.account, r.region) {
            (Some(a), Some(region)) if r.qualifier.is_none() => Ok((Scope::new(a, region), r.name)),
            _ => Err(Error::InvalidParameter(format!("Invalid ARN for tagging: {arn}"))),
        }
    }

    /// GetAccountSettings' figures for an account: (function count, total code bytes, limit).
    pub fn account_usage(&self, account: &str) -> (usize, u64, usize) {
        let functions = self.functions.read();
        let mine =
            functions.values().filter(|e| e.config.account == account && e.config.version == "$LATEST");
        let (count, bytes) = mine.fold((0, 0), |(n, b), e| (n + 1, b + e.config.code_size));
        (count, bytes, self.cfg.max_concurrency)
    }

    /// Unreserved concurrency left for an account (GetAccountSettings).
    pub fn unreserved_concurrency(&self, account: &str) -> usize {
        self.unreserved(account)
    }

    /// Concurrent executions in flight for an account.
    pub fn concurrent_executions(&self, account: &str) -> usize {
        self.concurrency.lock().get(account).map(|c| c.load(Ordering::SeqCst)).unwrap_or(0)
    }

    pub async fn invoke(self: &Arc<Self>, mut req: InvokeRequest) -> Result<InvokeResult, Error> {
        if req.qualifier.is_none() {
            // `name:qualifier` and qualified ARNs name the qualifier too.
            req.qualifier = FunctionRef::parse(&req.function)?.qualifier;
        }
        let entry =
            self.entry_routed(&req.scope, &req.function, req.qualifier.as_deref(), Some(fastrand::f64()))?;
        let version = entry.config.version.clone();
        let no_payload = |status| InvokeResult {
            status,
            payload: Bytes::new(),
            function_error: None,
            log_tail: None,
            executed_version: version.clone(),
        };
        match req.invocation_type {
            InvocationType::DryRun => Ok(no_payload(204)),
            InvocationType::Event => {
                if req.payload.len() > limits::ASYNC_PAYLOAD_BYTES {
                    return Err(Error::RequestTooLarge(format!(
                        "Request must be smaller than {} bytes for the InvokeAsync operation",
                        limits::ASYNC_PAYLOAD_BYTES
                    )));
                }
                self.enqueue_event(crate::async_queue::QueuedEvent::new(&req))?;
                Ok(no_payload(202))
            }
            InvocationType::RequestResponse => {
                if req.payload.len() > limits::SYNC_PAYLOAD_BYTES {
                    return Err(Error::RequestTooLarge(format!(
                        "Request must be smaller than {} bytes for the InvokeFunction operation",
                        limits::SYNC_PAYLOAD_BYTES
                    )));
                }
                self.invoke_sync(entry, req).await
            }
        }
    }

    async fn start_environment(
        &self,
        entry: &FunctionEntry,
        provisioned: bool,
    ) -> Result<(Arc<Environment>, Duration), StartError> {
        if entry.config.image.is_none() && !entry.code_dir.join(".nimbus-unpacked").exists() {
            // Restarted with a fresh code cache: unpack again from the blob store.
            let zip = self
                .blobs
                .get(&entry.config.code_digest)
                .map_err(|e| StartError::Internal(e.to_string()))?
                .ok_or_else(|| {
                    StartError::Internal("deployment package is missing from the blob store".into())
                })?;
            code::unpack_once(&zip, &entry.code_dir).map_err(|e| StartError::Internal(e.to_string()))?;
        }
        let layers = self
            .resolve_layers(&entry.config.layers)
            .map_err(|e| StartError::Internal(e.to_string()))?
            .iter()
            .map(|l| self.layer_dir(&l.code_digest))
            .collect();
        let (python, node) = match entry.config.runtime.as_ref().map(|r| r.family()) {
            Some(nimbus_model::RuntimeFamily::Python) => {
                (self.cfg.python.settled_path().await, PathBuf::new())
            }
            Some(nimbus_model::RuntimeFamily::Node) => (PathBuf::new(), self.cfg.node.settled_path().await),
            _ => (PathBuf::new(), PathBuf::new()),
        };
        Environment::start(StartParams {
            config: &entry.config,
            code_dir: entry.code_dir.clone(),
            runtimes_dir: &self.runtimes_dir,
            python: &python,
            node: &node,
            envs_dir: &self.cfg.data_dir.join("envs"),
            endpoint_url: &self.cfg.endpoint_url,
            sandbox: self.sandbox.as_ref(),
            logs: self.logs.clone(),
            freeze: self.cfg.freeze_idle,
            provisioned,
            python_sdk: self.cfg.python_sdk.get().cloned(),
            layers,
            function_secret: &self.cfg.function_secret,
            images: self.images.get().cloned(),
        })
        .await
    }

    async fn invoke_sync(
        &self,
        entry: Arc<FunctionEntry>,
        req: InvokeRequest,
    ) -> Result<InvokeResult, Error> {
        let _slot = self.acquire_slot(&entry.config)?;
        let config = entry.config.clone();
        let request_id = req.request_id.clone();
        let warm = entry.idle.lock().pop();
        let (env, init) = match warm {
            Some(env) => (env, None),
            None => match self.start_environment(&entry, false).await {
                Ok((env, init)) => (env, Some(init)),
                Err(StartError::Init { body, init, env }) => {
                    return Ok(self.init_failure(&config, &request_id, body, init, env, req.tail_log));
                }
                Err(StartError::Internal(msg)) => return Err(Error::Internal(msg)),
            },
        };
        if req.tail_log {
            *env.shared.tail.lock() = Some(String::new());
        }
        env.log(&format!("START RequestId: {request_id} Version: {}", config.version));
        let timeout = Duration::from_secs(config.timeout_secs as u64);
        let now_ms = chrono::Utc::now().timestamp_millis() as u64;
        let started = Instant::now();
        let rx = env.dispatch(Invocation {
            request_id: request_id.clone(),
            // Lambda hands an empty invoke payload to the function as `{}`.
            payload: if req.payload.is_empty() { Bytes::from_static(b"{}") } else { req.payload },
            deadline_ms: now_ms + timeout.as_millis() as u64,
            function_arn: match &req.qualifier {
                Some(q) => format!("{}:{q}", config.arn()),
                None => config.arn(),
            },
            trace_id: trace_id(),
            client_context: req.client_context,
        });
        let outcome = tokio::time::timeout(timeout, rx).await;
        let duration = started.elapsed();
        env.pipe.drain(true);
        let mut healthy = true;
        let mut status_note = String::new();
        let (payload, function_error) = match outcome {
            Ok(Ok(Outcome::Response(body))) => (body, None),
            Ok(Ok(Outcome::Error { body })) => (body, Some("Unhandled")),
            Ok(Ok(Outcome::Exited(status))) => {
                healthy = false;
                let message = format!("RequestId: {request_id} Error: Runtime exited with error: {status}");
                env.log(&message);
                env.log("Runtime.ExitError");
                status_note = "\tStatus: error\tError Type: Runtime.ExitError".into();
                let body = serde_json::json!({"errorType": "Runtime.ExitError", "errorMessage": message});
                (Bytes::from(body.to_string()), Some("Unhandled"))
            }
            Ok(Err(_)) => {
                healthy = false;
                let body = serde_json::json!({"errorType": "Runtime.Unknown", "errorMessage": format!("RequestId: {request_id} Error: Unknown application error occurred")});
                (Bytes::from(body.to_string()), Some("Unhandled"))
            }
            Err(_) => {
                healthy = false;
                env.destroy();
                let secs = format!("{:.2}", timeout.as_secs_f64());
                env.log(&format!(
                    "{} {request_id} Task timed out after {secs} seconds",
                    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
                ));
                status_note = "\tStatus: timeout".into();
                let body = serde_json::json!({
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": format!("RequestId: {request_id} Error: Task timed out after {secs} seconds"),
                });
                (Bytes::from(body.to_string()), Some("Unhandled"))
            }
        };
        let peak = env.peak_memory_mb();
        env.log(&format!("END RequestId: {request_id}"));
        env.log(&report_line(&request_id, duration, config.memory_mb, peak, init, &status_note));
        self.report_usage(&config, duration, init, function_error.is_some());
        let log_tail = env.shared.tail.lock().take().map(|t| tail_base64(&t));
        if healthy && !env.is_dead() && !entry.retired.load(Ordering::SeqCst) {
            env.park();
            entry.idle.lock().push(env);
            // An update may have retired the entry while we were parking.
            if entry.retired.load(Ordering::SeqCst) {
                entry.retire();
            }
        } else {
            env.destroy();
        }
        Ok(InvokeResult {
            status: 200,
            payload,
            function_error,
            log_tail,
            executed_version: config.version.clone(),
        })
    }

    fn init_failure(
        &self,
        config: &FunctionConfig,
        request_id: &str,
        body: Bytes,
        init: Duration,
        env: Option<Arc<Environment>>,
        tail: bool,
    ) -> InvokeResult {
        let error_type = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("errorType").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_else(|| "Runtime.Unknown".into());
        let mut text = String::new();
        if let Some(env) = env {
            let lines = [
                format!("START RequestId: {request_id} Version: {}", config.version),
                format!("END RequestId: {request_id}"),
                report_line(
                    request_id,
                    Duration::ZERO,
                    config.memory_mb,
                    0,
                    Some(init),
                    &format!("\tStatus: error\tError Type: {error_type}"),
                ),
            ];
            for l in lines {
                env.log(&l);
            }
            self.report_usage(config, Duration::ZERO, Some(init), true);
            // The tail captured init output, then these lines.
            text = env.shared.tail.lock().take().unwrap_or_default();
        }
        InvokeResult {
            status: 200,
            payload: body,
            function_error: Some("Unhandled"),
            log_tail: tail.then(|| tail_base64(&text)),
            executed_version: config.version.clone(),
        }
    }
}

/// Lambda's REPORT line (tab-separated, as AWS writes it).
fn report_line(
    request_id: &str,
    duration: Duration,
    memory_mb: u32,
    peak_mb: u64,
    init: Option<Duration>,
    note: &str,
) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    let billed = (ms.ceil() as u64).max(1);
    let mut line = format!(
        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {peak_mb} MB"
    );
    if let Some(init) = init {
        line.push_str(&format!("\tInit Duration: {:.2} ms", init.as_secs_f64() * 1000.0));
    }
    line.push_str(note);
    line.push('\t');
    line
}

/// The last 4 KB of an invocation's log, base64 (`X-Amz-Log-Result`).
fn tail_base64(text: &str) -> String {
    let bytes = text.as_bytes();
    let start = bytes.len().saturating_sub(limits::LOG_TAIL_BYTES);
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

/// An X-Ray trace header, as Lambda passes to runtimes.
fn trace_id() -> String {
    let secs = chrono::Utc::now().timestamp();
    format!(
        "Root=1-{secs:08x}-{:024x};Parent={:016x};Sampled=0",
        fastrand::u128(..) & ((1u128 << 96) - 1),
        fastrand::u64(..)
    )
}

/// Writes the per-language bootstraps shipped inside the binary where runtimes can run them.
fn install_runtimes(dir: &std::path::Path) -> Result<(), Error> {
    const FILES: &[(&str, &str)] = &[
        ("python/bootstrap.py", include_str!("../../../runtimes/python/bootstrap.py")),
        ("node/bootstrap.js", include_str!("../../../runtimes/node/bootstrap.js")),
    ];
    for (rel, content) in FILES {
        let path = dir.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(*content) {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, content)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_has_lambdas_fields() {
        let l = report_line("abc", Duration::from_micros(1500), 128, 20, Some(Duration::from_millis(12)), "");
        assert_eq!(
            l,
            "REPORT RequestId: abc\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\tInit Duration: 12.00 ms\t"
        );
        let l = report_line("abc", Duration::from_micros(100), 128, 20, None, "");
        assert!(!l.contains("Init Duration"));
    }

    #[test]
    fn tail_is_last_4k() {
        let text = "x".repeat(5000) + "END";
        let decoded = base64::engine::general_purpose::STANDARD.decode(tail_base64(&text)).unwrap();
        assert_eq!(decoded.len(), 4096);
        assert!(decoded.ends_with(b"END"));
    }
}
