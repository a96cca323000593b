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
use std::sync::Arc;
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
#[derive(Debug, Default)]
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
    /// Give the sandbox its own, empty network namespace (loopback only, brought up).
    pub isolate_network: bool,
    /// The user and group to run as; `None` is the sandbox user (uid 993) for the Lambda
    /// view and root for an image root (as a container image's default user).
    pub user: Option<(u32, u32)>,
    /// The hostname inside the sandbox (its own uts namespace); `None` is `localhost`.
    pub hostname: Option<String>,
    /// Join the network namespace of this (host) pid instead of the host's or a new one:
    /// the containers of one task share one network namespace. Takes precedence over
    /// `isolate_network`. The process backend ignores it, as it ignores `isolate_network`.
    pub join_netns_of: Option<u32>,
    /// Start inside this group (from `Sandbox::create_group` of the same backend): the
    /// group's limits apply to all its members together, on top of the sandbox's own.
    pub group: Option<Arc<dyn SandboxGroup>>,
}

/// Sandboxes limited together (an ECS task's cpu and memory across its containers). The
/// backend's resources go when the last handle is dropped and its members have exited.
pub trait SandboxGroup: Send + Sync + std::fmt::Debug {
    /// For the backend that made it, to find its own type again.
    fn as_any(&self) -> &dyn std::any::Any;
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
    /// When set, the sandbox's root is this container image root (writable) instead of the
    /// read-only host system view; `code`, `layers` and `expose` are unused, and `tmp_mb`,
    /// when not 0, puts a private tmpfs of that size at `/tmp` (Lambda image functions).
    /// `/proc`, a `/dev` tmpfs with the usual device nodes, `/dev/shm`, `/dev/pts` and
    /// generated `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` are added; the program is
    /// resolved on the environment's PATH inside the image. Container backend only.
    pub image_root: Option<ImageRoot>,
    /// Host directories bound into an image root (task volumes), mounted after the image's
    /// `/proc`, `/dev` and `/tmp`, in order. Image roots only: the Lambda view ignores them.
    pub binds: Vec<Bind>,
}

/// A host directory shown inside an image root (an ECS task volume's mount point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// An existing host directory.
    pub host: PathBuf,
    /// An absolute path inside the image; components the image already has must be real
    /// directories (a symlink there is refused, so a mount never lands outside the root).
    pub inside: PathBuf,
    pub read_only: bool,
}

/// A container image's root filesystem as the image store prepared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRoot {
    /// Unpacked layers (bottom → top, as listed in the manifest) under an overlay with a
    /// private, writable `upper` and its `work` directory (same filesystem as `upper`).
    Overlay { lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf },
    /// A private, writable copy of the flattened rootfs (where overlayfs is unavailable).
    Dir(PathBuf),
}

/// Connects to `127.0.0.1:port` inside the network namespace of `pid` (a sandbox started
/// with `isolate_network`): a short-lived thread enters the namespace, connects and hands the
/// stream back. A socket belongs to the namespace it was created in, so the stream keeps
/// working from any thread afterwards — used to forward a host port into a container.
pub fn connect_in_netns(pid: u32, port: u16) -> std::io::Result<std::net::TcpStream> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name("netns-connect".into()).spawn(move || {
        let result = (|| {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
            // Only this short-lived thread changes namespace; the server's threads stay put.
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        })();
        let _ = tx.send(result);
    })?;
    rx.recv().unwrap_or_else(|_| Err(std::io::Error::other("the netns connect thread died")))
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
    /// CPU time (user + system) consumed since start, in nanoseconds; monotonic for one
    /// instance, so callers report usage as differences between samples. 0 where unmeasured.
    pub cpu_usage_ns: u64,
}

/// What a backend can enforce, so callers can refuse what it cannot give.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub memory_limit: bool,
    pub filesystem_isolation: bool,
    pub pid_isolation: bool,
    pub freezer: bool,
    /// Runs container image roots (`FsView.image_root`).
    pub image_roots: bool,
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
    /// A group whose `limits` (memory, cpu) bind its members together; `None` where the
    /// backend cannot (callers then give each member the limits itself).
    fn create_group(&self, _limits: &Limits) -> Result<Option<Arc<dyn SandboxGroup>>, SandboxError> {
        Ok(None)
    }
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
