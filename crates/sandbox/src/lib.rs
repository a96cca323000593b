//! Sandboxes that execution environments and tasks run in: one driver trait
//! (start, wait, stop, destroy, pause/resume, inspect/stats, fingerprint) with
//! interchangeable backends — `container` (namespaces + cgroups, Linux, root), `process`
//! (a plain child process; any Unix) and `mock` (scripted, for tests of what drives them).
#![deny(unsafe_code)]

pub mod cgroups;
#[allow(unsafe_code)]
mod container;
mod mock;
mod process;

pub use container::{ContainerSandbox, SANDBOX_GID, SANDBOX_UID};
pub use mock::{MockInstanceHandle, MockSandbox};
pub use process::{ProcessSandbox, die_with_parent};

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("signal failed: {0}")]
    Signal(#[from] nix::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Namespaces, mounts or cgroups could not be set up; says which step failed.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
}

/// What to run and under which limits.
#[derive(Debug)]
pub struct SandboxSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment: nothing is inherited from the server.
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go (one pipe keeps their lines in order).
    pub output: Option<OwnedFd>,
    pub limits: Limits,
    /// What the sandbox sees of the filesystem (backends with filesystem isolation only;
    /// the process backend runs in the host's filesystem).
    pub fs: FsView,
    /// Give the sandbox its own, empty network namespace (loopback only).
    pub isolate_network: bool,
}

/// The filesystem of an isolated sandbox: a read-only system root plus these.
#[derive(Debug, Clone, Default)]
pub struct FsView {
    /// Host directory shown read-only at `/var/task`.
    pub code: Option<PathBuf>,
    /// Host directories merged read-only at `/opt`, later ones winning (Lambda layers).
    pub layers: Vec<PathBuf>,
    /// Size of the private, writable `/tmp`.
    pub tmp_mb: u64,
    /// Host paths shown read-only inside, as (host, inside) pairs (interpreters, runtime
    /// bootstraps, SDKs).
    pub expose: Vec<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    /// Open files (Lambda: 1,024).
    pub nofile: Option<u64>,
    /// Largest file the sandbox may write (a stand-in for the /tmp quota in the process backend).
    pub fsize_mb: Option<u64>,
    /// CPU cap in thousandths of a vCPU (Lambda: memory / 1,769 MB).
    pub cpu_millis: Option<u64>,
    /// Processes and threads.
    pub pids_max: Option<u64>,
}

/// How the sandbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    /// Lambda's wording: `exit status 1`, `signal: killed`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal(9) => write!(f, "signal: killed"),
            ExitStatus::Signal(15) => write!(f, "signal: terminated"),
            ExitStatus::Signal(6) => write!(f, "signal: aborted"),
            ExitStatus::Signal(11) => write!(f, "signal: segmentation fault"),
            ExitStatus::Signal(s) => write!(f, "signal: {s}"),
        }
    }
}

/// Point-in-time usage of a running sandbox.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Peak resident memory in bytes.
    pub peak_memory_bytes: u64,
}

/// What a backend can enforce, so callers can refuse what it cannot give.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub memory_limit: bool,
    pub filesystem_isolation: bool,
    pub pid_isolation: bool,
    pub freezer: bool,
}

/// What a sandbox is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Running,
    Paused,
    Exited(ExitStatus),
}

#[derive(Debug, Clone)]
pub struct InstanceInfo {
    pub pid: u32,
    pub state: InstanceState,
    /// The sandbox's cgroup, where it has one.
    pub cgroup: Option<String>,
}

/// Resolves when a backend's exit watcher has published the exit status.
pub(crate) fn wait_exited(
    rx: &tokio::sync::watch::Receiver<Option<ExitStatus>>,
) -> std::pin::Pin<Box<dyn Future<Output = ExitStatus> + Send + 'static>> {
    let mut rx = rx.clone();
    Box::pin(async move {
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or(ExitStatus::Code(-1)),
            Err(_) => ExitStatus::Code(-1),
        }
    })
}

/// The state `inspect` reports, from the exit watcher and whether the sandbox is paused.
pub(crate) fn state_of(rx: &tokio::sync::watch::Receiver<Option<ExitStatus>>, paused: bool) -> InstanceState {
    match *rx.borrow() {
        Some(s) => InstanceState::Exited(s),
        None if paused => InstanceState::Paused,
        None => InstanceState::Running,
    }
}

/// A backend (the driver). Chosen once at start.
pub trait Sandbox: Send + Sync + 'static {
    /// `process`, `container`, `mock`…
    fn name(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    /// Why this backend was chosen / what it found on the host.
    fn fingerprint(&self) -> String;
    fn start(&self, spec: SandboxSpec) -> Result<Box<dyn Instance>, SandboxError>;
}

/// One running sandbox.
pub trait Instance: Send + Sync {
    fn id(&self) -> u32;
    /// Freeze every process in the sandbox (idle execution environments).
    fn pause(&self) -> Result<(), SandboxError>;
    fn resume(&self) -> Result<(), SandboxError>;
    /// Send `signal` to the sandbox's processes; after `grace`, kill them all.
    fn stop(&self, signal: i32, grace: Duration) -> Result<(), SandboxError>;
    /// Kill everything at once and release resources; idempotent.
    fn destroy(&self);
    /// Resolves when the sandbox's main process has exited.
    fn wait(&self) -> std::pin::Pin<Box<dyn Future<Output = ExitStatus> + Send + '_>>;
    fn stats(&self) -> Stats;
    fn inspect(&self) -> InstanceInfo;
    /// Changes limits of a running sandbox (backends without cgroups ignore what they cannot apply).
    fn update_limits(&self, limits: &Limits) -> Result<(), SandboxError>;
}
