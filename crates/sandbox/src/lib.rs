//! Sandboxes that execution environments and tasks run in: one driver trait
//! (start, wait, stop, destroy, pause/resume, inspect/stats, fingerprint) with
//! interchangeable backends. This crate ships the `process` backend: a plain child
//! process in its own process group, working dir, environment and rlimits.
#![deny(unsafe_code)]

mod process;

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
}

#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    /// Open files (Lambda: 1,024).
    pub nofile: Option<u64>,
    /// Largest file the sandbox may write (a stand-in for the /tmp quota in the process backend).
    pub fsize_mb: Option<u64>,
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
    fn stop(&self, grace: Duration) -> Result<(), SandboxError>;
    /// Kill everything at once and release resources; idempotent.
    fn destroy(&self);
    /// Resolves when the sandbox's main process has exited.
    fn wait(&self) -> std::pin::Pin<Box<dyn Future<Output = ExitStatus> + Send + '_>>;
    fn stats(&self) -> Stats;
}
