//! The `mock` backend: runs nothing, records what it was asked, and exits when a test says
//! so — for unit tests of the code that drives sandboxes (schedulers, environment pools).
use crate::{
    Capabilities, ExitStatus, FsView, Instance, InstanceInfo, Limits, Sandbox, SandboxError, SandboxSpec,
    Stats,
};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One recorded call on a mock instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MockCall {
    Pause,
    Resume,
    Stop(i32),
    Destroy,
    UpdateLimits,
}

#[derive(Default)]
pub struct MockSandbox {
    started: Mutex<Vec<MockInstanceHandle>>,
    /// When set, `start` fails with this message (to test error paths).
    pub fail_next: Mutex<Option<String>>,
}

/// What a test holds of a mock instance: what it was started with, its calls, and a way to
/// end it.
#[derive(Clone)]
pub struct MockInstanceHandle {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    pub cwd: std::path::PathBuf,
    pub fs: FsView,
    pub isolate_network: bool,
    pub user: Option<(u32, u32)>,
    pub hostname: Option<String>,
    pub join_netns_of: Option<u32>,
    calls: Arc<Mutex<Vec<MockCall>>>,
    exit: Arc<watch::Sender<Option<ExitStatus>>>,
    peak: Arc<Mutex<u64>>,
    cpu_ns: Arc<Mutex<u64>>,
}

impl MockInstanceHandle {
    pub fn calls(&self) -> Vec<MockCall> {
        self.calls.lock().clone()
    }
    pub fn exit(&self, status: ExitStatus) {
        let _ = self.exit.send(Some(status));
    }
    pub fn set_peak_memory(&self, bytes: u64) {
        *self.peak.lock() = bytes;
    }
    /// Scripts the cumulative CPU time `stats()` reports from now on.
    pub fn set_cpu_usage_ns(&self, ns: u64) {
        *self.cpu_ns.lock() = ns;
    }
}

impl MockSandbox {
    pub fn started(&self) -> Vec<MockInstanceHandle> {
        self.started.lock().clone()
    }
}

impl Sandbox for MockSandbox {
    fn name(&self) -> &'static str {
        "mock"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            memory_limit: true,
            filesystem_isolation: false,
            pid_isolation: true,
            freezer: true,
            image_roots: true,
        }
    }
    fn fingerprint(&self) -> String {
        "mock sandboxes (nothing runs)".into()
    }
    fn start(&self, spec: SandboxSpec) -> Result<Box<dyn Instance>, SandboxError> {
        if let Some(msg) = self.fail_next.lock().take() {
            return Err(SandboxError::Setup(msg));
        }
        let (tx, rx) = watch::channel(None);
        let handle = MockInstanceHandle {
            program: spec.program.display().to_string(),
            args: spec.args,
            env: spec.env,
            limits: spec.limits,
            cwd: spec.cwd,
            fs: spec.fs,
            isolate_network: spec.isolate_network,
            user: spec.user,
            hostname: spec.hostname,
            join_netns_of: spec.join_netns_of,
            calls: Arc::default(),
            exit: Arc::new(tx),
            peak: Arc::default(),
            cpu_ns: Arc::default(),
        };
        let id = {
            let mut started = self.started.lock();
            started.push(handle.clone());
            started.len() as u32
        };
        Ok(Box::new(MockInstance { id, handle, exited: rx }))
    }
}

struct MockInstance {
    id: u32,
    handle: MockInstanceHandle,
    exited: watch::Receiver<Option<ExitStatus>>,
}

impl MockInstance {
    fn record(&self, call: MockCall) {
        self.handle.calls.lock().push(call);
    }
}

impl Instance for MockInstance {
    fn id(&self) -> u32 {
        self.id
    }
    fn pause(&self) -> Result<(), SandboxError> {
        self.record(MockCall::Pause);
        Ok(())
    }
    fn resume(&self) -> Result<(), SandboxError> {
        self.record(MockCall::Resume);
        Ok(())
    }
    fn stop(&self, signal: i32, _grace: Duration) -> Result<(), SandboxError> {
        self.record(MockCall::Stop(signal));
        self.handle.exit(ExitStatus::Signal(signal));
        Ok(())
    }
    fn destroy(&self) {
        self.record(MockCall::Destroy);
        if self.exited.borrow().is_none() {
            self.handle.exit(ExitStatus::Signal(9));
        }
    }
    fn wait(&self) -> std::pin::Pin<Box<dyn Future<Output = ExitStatus> + Send + '_>> {
        crate::wait_exited(&self.exited)
    }
    fn stats(&self) -> Stats {
        Stats { peak_memory_bytes: *self.handle.peak.lock(), cpu_usage_ns: *self.handle.cpu_ns.lock() }
    }
    fn inspect(&self) -> InstanceInfo {
        let paused = self.handle.calls.lock().iter().rev().find_map(|c| match c {
            MockCall::Pause => Some(true),
            MockCall::Resume => Some(false),
            _ => None,
        });
        let state = crate::state_of(&self.exited, paused == Some(true));
        InstanceInfo { pid: self.id, state, cgroup: None }
    }
    fn update_limits(&self, _limits: &Limits) -> Result<(), SandboxError> {
        self.record(MockCall::UpdateLimits);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_calls_and_exits_on_command() {
        let sb = MockSandbox::default();
        let spec = SandboxSpec {
            program: "/bin/runtime".into(),
            args: vec!["a".into()],
            cwd: "/".into(),
            env: vec![("K".into(), "V".into())],
            output: None,
            limits: Limits { memory_mb: Some(128), ..Default::default() },
            fs: Default::default(),
            isolate_network: false,
            hostname: Some("h".into()),
            ..Default::default()
        };
        let i = sb.start(spec).unwrap();
        i.pause().unwrap();
        assert_eq!(i.inspect().state, crate::InstanceState::Paused);
        i.resume().unwrap();
        let h = &sb.started()[0];
        assert_eq!(h.program, "/bin/runtime");
        assert_eq!(h.limits.memory_mb, Some(128));
        assert_eq!(h.hostname.as_deref(), Some("h"));
        h.exit(ExitStatus::Code(3));
        assert_eq!(i.wait().await, ExitStatus::Code(3));
        assert_eq!(h.calls(), vec![MockCall::Pause, MockCall::Resume]);
        assert_eq!(i.stats().cpu_usage_ns, 0);
        h.set_cpu_usage_ns(1_500_000);
        h.set_peak_memory(64 << 20);
        assert_eq!(i.stats().cpu_usage_ns, 1_500_000, "scripted CPU time");
        assert_eq!(i.stats().peak_memory_bytes, 64 << 20);
        *sb.fail_next.lock() = Some("no".into());
        assert!(
            sb.start(SandboxSpec {
                program: "x".into(),
                args: vec![],
                cwd: "/".into(),
                env: vec![],
                output: None,
                limits: Limits::default(),
                fs: Default::default(),
                isolate_network: false,
                ..Default::default()
            })
            .is_err()
        );
    }
}
