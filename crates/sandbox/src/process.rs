//! The `process` backend: no root, any Unix. Isolation is only what a process boundary
//! gives (own working dir, environment, process group, rlimits); the container backend
//! adds namespaces and cgroups.
use crate::{
    Capabilities, ExitStatus, Instance, InstanceInfo, Limits, Sandbox, SandboxError, SandboxSpec, Stats,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Default)]
pub struct ProcessSandbox;

impl Sandbox for ProcessSandbox {
    fn name(&self) -> &'static str {
        "process"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            memory_limit: false,
            filesystem_isolation: false,
            pid_isolation: false,
            freezer: true,
            image_roots: false,
        }
    }

    fn fingerprint(&self) -> String {
        "plain child processes (own process group, working dir, environment, rlimits); pause/resume by SIGSTOP/SIGCONT".into()
    }

    fn start(&self, spec: SandboxSpec) -> Result<Box<dyn Instance>, SandboxError> {
        if spec.fs.image_root.is_some() {
            // Running an image's program on the host's filesystem would be a different
            // program (the host's libraries, paths and files): refuse instead.
            return Err(SandboxError::Setup(
                "a container image root needs the container sandbox (--sandbox container); the process sandbox cannot run images".into(),
            ));
        }
        // One vfork-style clone (see container.rs): the child sets its process group, rlimits,
        // PDEATHSIG and stdio, then execs; the server's page tables are never copied.
        let program = spec.program.display().to_string();
        let child = crate::container::Plan::plain(&spec)?.run().map_err(|e| match e {
            SandboxError::Setup(m) if m.starts_with("exec ") => SandboxError::Spawn {
                program: program.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, m),
            },
            other => other,
        })?;
        let pid = child.pid as u32;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let status = crate::container::wait_for_exit(child).await;
            let _ = tx.send(Some(status));
        });
        // Kept open: re-reading at offset 0 regenerates it, without an open() per invoke.
        let status = std::fs::File::open(format!("/proc/{pid}/status")).ok();
        let stat = std::fs::File::open(format!("/proc/{pid}/stat")).ok();
        Ok(Box::new(ProcessInstance {
            pid,
            exited: rx,
            status,
            stat,
            cpu_seen: AtomicU64::new(0),
            paused: AtomicBool::new(false),
        }))
    }
}

struct ProcessInstance {
    pid: u32,
    exited: watch::Receiver<Option<ExitStatus>>,
    status: Option<std::fs::File>,
    /// `/proc/<pid>/stat`, kept open like `status`, for CPU time.
    stat: Option<std::fs::File>,
    /// Highest CPU time seen: the stat file stops answering once the process is reaped.
    cpu_seen: AtomicU64,
    paused: AtomicBool,
}

impl ProcessInstance {
    fn signal_group(&self, sig: Signal) -> Result<(), SandboxError> {
        match killpg(Pid::from_raw(self.pid as i32), sig) {
            // The group is already gone: nothing left to signal.
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Instance for ProcessInstance {
    fn id(&self) -> u32 {
        self.pid
    }

    fn pause(&self) -> Result<(), SandboxError> {
        self.signal_group(Signal::SIGSTOP)?;
        self.paused.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn resume(&self) -> Result<(), SandboxError> {
        self.signal_group(Signal::SIGCONT)?;
        self.paused.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn stop(&self, signal: i32, grace: Duration) -> Result<(), SandboxError> {
        self.signal_group(Signal::try_from(signal)?)?;
        self.signal_group(Signal::SIGCONT)?;
        let pid = self.pid;
        let mut exited = self.exited.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(grace, exited.wait_for(Option::is_some)).await;
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        });
        Ok(())
    }

    fn destroy(&self) {
        let _ = self.signal_group(Signal::SIGKILL);
    }

    fn wait(&self) -> std::pin::Pin<Box<dyn Future<Output = ExitStatus> + Send + '_>> {
        crate::wait_exited(&self.exited)
    }

    fn stats(&self) -> Stats {
        // VmHWM: the peak resident set of the runtime process.
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 4096];
        let peak = self
            .status
            .as_ref()
            .and_then(|f| f.read_at(&mut buf, 0).ok())
            .and_then(|n| std::str::from_utf8(&buf[..n]).ok())
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .unwrap_or(0);
        let cpu = self
            .stat
            .as_ref()
            .and_then(|f| f.read_at(&mut buf, 0).ok())
            .and_then(|n| std::str::from_utf8(&buf[..n]).ok().and_then(cpu_ticks))
            .map_or(0, |ticks| ticks.saturating_mul(nanos_per_tick()));
        let seen = self.cpu_seen.fetch_max(cpu, Ordering::Relaxed);
        Stats { peak_memory_bytes: peak * 1024, cpu_usage_ns: seen.max(cpu) }
    }

    fn inspect(&self) -> InstanceInfo {
        let state = crate::state_of(&self.exited, self.paused.load(Ordering::Relaxed));
        InstanceInfo { pid: self.pid, state, cgroup: None }
    }

    fn update_limits(&self, _limits: &Limits) -> Result<(), SandboxError> {
        // rlimits are fixed at exec; there is no cgroup to change.
        Ok(())
    }
}

impl Drop for ProcessInstance {
    fn drop(&mut self) {
        let _ = self.signal_group(Signal::SIGKILL);
    }
}

/// utime + stime of the process plus cutime + cstime of the children it has waited for
/// (fields 14–17 of `/proc/<pid>/stat`), in clock ticks. Best effort: children still
/// running, or never waited for, are not counted — the process backend has no cgroup.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces and parentheses: fields resume after the
    // last ')'. Field 3 (state) is then the first.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields.get(11..15)?.iter().map(|f| f.parse::<u64>().ok()).sum()
}

#[allow(unsafe_code)]
fn nanos_per_tick() -> u64 {
    // SAFETY: sysconf(3) only reads a configuration value; no pointers, no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ is 100 on every Linux ABI; the fallback is only for an error return.
    if hz > 0 { 1_000_000_000 / hz as u64 } else { 10_000_000 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str) -> SandboxSpec {
        SandboxSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("X".into(), "42".into())],
            output: None,
            limits: Limits { nofile: Some(64), ..Default::default() },
            fs: Default::default(),
            isolate_network: false,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn reports_exit_codes_and_env() {
        let sb = ProcessSandbox;
        let i = sb.start(spec("test \"$X\" = 42 && exit 7")).unwrap();
        assert_eq!(i.wait().await, ExitStatus::Code(7));
        let i = sb.start(spec("test -z \"$HOME\" && ulimit -n | grep -qx 64 && exit 3")).unwrap();
        assert_eq!(i.wait().await, ExitStatus::Code(3), "environment is not inherited, rlimits applied");
    }

    #[tokio::test]
    async fn pause_resume_and_destroy_reach_the_group() {
        let sb = ProcessSandbox;
        let i = sb.start(spec("sleep 30 & wait")).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        i.pause().unwrap();
        // Signal delivery is asynchronous: give the kernel a moment under load.
        let mut state = String::new();
        for _ in 0..100 {
            state = std::fs::read_to_string(format!("/proc/{}/stat", i.id())).unwrap();
            if state.contains(") T ") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(state.contains(") T "), "{state}");
        i.resume().unwrap();
        i.destroy();
        assert_eq!(i.wait().await, ExitStatus::Signal(9));
        assert_eq!(ExitStatus::Signal(9).to_string(), "signal: killed");
    }

    #[test]
    fn cpu_ticks_sum_own_and_waited_children_after_the_command_name() {
        // The comm field may hold spaces and ')' — parsing resumes after the last ')'.
        let stat = "4242 (a) b (c)) R 1 4242 4242 0 -1 4194304 100 0 0 0 7 3 20 10 20 0 1 0 99 1 1";
        assert_eq!(cpu_ticks(stat), Some(7 + 3 + 20 + 10));
        assert_eq!(cpu_ticks("4242 (x) R 1 2"), None, "truncated");
        assert!(nanos_per_tick() > 0);
    }

    #[tokio::test]
    async fn a_busy_process_reports_cpu_time_that_never_goes_back() {
        let sb = ProcessSandbox;
        let i = sb.start(spec("while :; do :; done")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while i.stats().cpu_usage_ns == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let busy = i.stats().cpu_usage_ns;
        assert!(busy > 0, "a spinning shell accrues CPU time");
        i.destroy();
        assert_eq!(i.wait().await, ExitStatus::Signal(9));
        assert!(i.stats().cpu_usage_ns >= busy, "the last figure survives the process");
    }

    #[tokio::test]
    async fn exec_waits_out_a_program_briefly_open_for_writing() {
        // The server writes an executable (an unpacked layer, a copied binary) and another
        // thread clones a sandbox meanwhile: the clone gets a copy of the writer. The child
        // closes inherited descriptors first and retries exec on ETXTBSY, so the start
        // succeeds once the server closes its writer.
        let dir = std::env::temp_dir().join(format!("nimbus-etxtbsy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("true");
        let mut writer = std::fs::File::create(&exe).unwrap();
        std::io::Write::write_all(&mut writer, &std::fs::read("/bin/true").unwrap()).unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(writer);
        });
        let mut s = spec("");
        s.program = exe.clone();
        s.args = Vec::new();
        let i = ProcessSandbox.start(s).unwrap_or_else(|e| panic!("start failed: {e}"));
        assert_eq!(i.wait().await, ExitStatus::Code(0));
        closer.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_program_inherits_only_its_stdio() {
        // A descriptor the server holds without close-on-exec (as C libraries make them) and
        // the child's own /dev/null handle stay out of the program.
        let unflagged = nix::unistd::dup(std::io::stderr()).unwrap();
        let (reader, writer) = std::io::pipe().unwrap();
        let mut s = spec("exec ls /proc/self/fd");
        s.output = Some(writer.into());
        let i = ProcessSandbox.start(s).unwrap_or_else(|e| panic!("start failed: {e}"));
        assert_eq!(i.wait().await, ExitStatus::Code(0));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(std::os::fd::OwnedFd::from(reader)), &mut out)
            .unwrap();
        let fds: Vec<&str> = out.lines().collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "stdio and ls's own directory handle only ({unflagged:?})");
    }

    #[tokio::test]
    async fn refuses_image_roots() {
        let mut s = spec("exit 0");
        s.fs.image_root = Some(crate::ImageRoot::Dir("/".into()));
        let err = ProcessSandbox.start(s).err().expect("refused").to_string();
        assert!(err.contains("needs the container sandbox"), "{err}");
    }
}

/// Makes a helper command (not a sandbox) die with the thread that spawns it, so probes
/// the server starts never outlive it.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut std::process::Command) {
    // SAFETY: runs in the forked child before exec; prctl(2) is async-signal-safe and
    // the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}
