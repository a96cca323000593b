//! The container backend against the real kernel: namespaces, mounts, cgroup limits and the
//! freezer. Needs root and cgroups; skips (saying why) where the host cannot run it.
use nimbus_sandbox::{
    ContainerSandbox, ExitStatus, FsView, Instance, InstanceState, Limits, Sandbox, SandboxSpec,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn backend() -> Option<&'static ContainerSandbox> {
    static SB: OnceLock<Result<ContainerSandbox, String>> = OnceLock::new();
    let sb = SB.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nimbus-sandbox-test-{}", std::process::id()));
        ContainerSandbox::probe(&dir)
    });
    match sb {
        Ok(sb) => Some(sb),
        Err(why) => {
            eprintln!("skipping: the container backend cannot run here: {why}");
            None
        }
    }
}

fn can_run() -> bool {
    backend().is_some()
}

struct Run {
    instance: Box<dyn Instance>,
    output: std::fs::File,
}

fn start(script: &str, limits: Limits, fs: FsView) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    let spec = SandboxSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: "/tmp".into(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        output: Some(writer.into()),
        limits,
        fs,
        isolate_network: false,
        ..Default::default()
    };
    let program = spec.program.display().to_string();
    let instance =
        backend().unwrap().start(spec).unwrap_or_else(|e| panic!("starting {program} failed: {e}"));
    Run { instance, output: std::fs::File::from(std::os::fd::OwnedFd::from(reader)) }
}

async fn finish(mut run: Run) -> (ExitStatus, String) {
    let status =
        tokio::time::timeout(Duration::from_secs(30), run.instance.wait()).await.expect("sandbox exited");
    drop(run.instance);
    let mut out = String::new();
    run.output.read_to_string(&mut out).unwrap();
    (status, out)
}

fn fs_with(code: &Path, tmp_mb: u64) -> FsView {
    FsView { code: Some(code.to_path_buf()), tmp_mb, ..Default::default() }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nimbus-sbt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn sees_its_own_filesystem_and_processes_only() {
    if !can_run() {
        return;
    }
    let code = scratch("code");
    std::fs::write(code.join("handler.txt"), "mine").unwrap();
    let run = start(
        "set -e; cat /var/task/handler.txt; echo; id -u; \
         ! touch /var/task/x 2>/dev/null && echo task-ro; \
         ! touch /usr/x 2>/dev/null && echo usr-ro; \
         ! touch /x 2>/dev/null && echo root-ro; \
         echo hi > /tmp/f && cat /tmp/f; \
         ls /proc | grep -E '^[0-9]+$' | wc -l; \
         test ! -e /root/.cargo && echo no-host-home; \
         df -m /tmp | tail -1 | awk '{print $2}'",
        Limits::default(),
        fs_with(&code, 64),
    );
    let (status, out) = finish(run).await;
    assert_eq!(status, ExitStatus::Code(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "mine");
    assert_eq!(lines[1], "993", "runs as the sandbox user");
    assert_eq!(&lines[2..6], ["task-ro", "usr-ro", "root-ro", "hi"]);
    // sh, ls, grep, wc (and maybe the subshell): only this sandbox's processes.
    let procs: usize = lines[6].trim().parse().unwrap();
    assert!(procs <= 6, "{out}");
    assert_eq!(lines[7], "no-host-home");
    assert_eq!(lines[8], "64", "/tmp is a 64 MB tmpfs: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_limit_kills_the_sandbox_and_reports_peak() {
    if !can_run() {
        return;
    }
    let code = scratch("mem");
    // Fill memory through a tmpfs-backed string until the cgroup's limit stops it.
    let run = start(
        "x=a; while true; do x=$x$x; done",
        Limits { memory_mb: Some(32), ..Default::default() },
        fs_with(&code, 16),
    );
    let (status, out) = finish(run).await;
    assert_eq!(status, ExitStatus::Signal(9), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pids_limit_contains_a_fork_bomb_and_destroy_kills_the_tree() {
    if !can_run() {
        return;
    }
    let code = scratch("pids");
    let run = start(
        // The inner shell dies when fork fails; the outer one reports and keeps the tree alive.
        "sh -c 'n=0; while [ $n -lt 200 ]; do sleep 60 & n=$((n+1)); done' 2>/dev/null; echo contained; sleep 60",
        Limits { pids_max: Some(32), ..Default::default() },
        fs_with(&code, 16),
    );
    let info = run.instance.inspect();
    let cgroup = info.cgroup.clone().unwrap();
    assert_eq!(info.state, InstanceState::Running);
    let members =
        || std::fs::read_to_string(format!("{cgroup}/cgroup.procs")).unwrap_or_default().lines().count();
    // Give the forks time to run into the limit (a loaded host may take a while to start them).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while members() <= 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let members = members();
    assert!(members > 1 && members <= 32, "{members} processes in the cgroup");
    run.instance.destroy();
    let (status, out) = finish(run).await;
    assert_eq!(status, ExitStatus::Signal(9), "{out}");
    assert!(out.contains("contained"), "{out}");
    // The cgroup is removed once every process in it is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&cgroup).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!Path::new(&cgroup).exists(), "{cgroup} removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn freezer_pauses_and_resumes_everything() {
    if !can_run() {
        return;
    }
    let code = scratch("freeze");
    let run = start(
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; done",
        Limits::default(),
        fs_with(&code, 16),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    run.instance.pause().unwrap();
    let freeze = t.elapsed();
    assert_eq!(run.instance.inspect().state, InstanceState::Paused);
    let pid = run.instance.inspect().pid;
    // utime + stime, in clock ticks (the loop spends much of its time in the kernel).
    let cpu = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = s.rsplit_once(')').unwrap().1;
        let field = |n: usize| -> u64 { after.split_whitespace().nth(n).unwrap().parse().unwrap() };
        field(11) + field(12)
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c1 = cpu(pid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cpu(pid), c1, "no CPU time while frozen");
    run.instance.resume().unwrap();
    // On a loaded host a thawed shell may get less than one tick in a few hundred ms: wait
    // for it to accrue some, within a generous bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cpu(pid) == c1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cpu(pid) > c1, "runs again after thaw");
    assert!(freeze < Duration::from_millis(100), "freeze took {freeze:?}");
    run.instance.destroy();
    finish(run).await;
}

/// CPU time comes from the sandbox's cgroup (v1 `cpuacct.usage`, v2 `cpu.stat`), so it covers
/// children too, and the final figure outlives the cgroup's removal at exit.
#[tokio::test(flavor = "multi_thread")]
async fn cgroup_cpu_time_counts_a_busy_child_and_survives_exit() {
    if !can_run() {
        return;
    }
    let code = scratch("cpu");
    let run = start(
        // A child shell spins; the sandbox's own process only waits for it.
        "sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done' & wait; echo spun",
        Limits::default(),
        fs_with(&code, 16),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while run.instance.stats().cpu_usage_ns == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = run.instance.stats().cpu_usage_ns;
    assert!(during > 0, "a spinning child accrues CPU time in the cgroup");
    let status =
        tokio::time::timeout(Duration::from_secs(60), run.instance.wait()).await.expect("sandbox exited");
    assert_eq!(status, ExitStatus::Code(0));
    let after = run.instance.stats().cpu_usage_ns;
    assert!(after >= during, "monotonic: {after} after exit < {during} while running");
    // 200,000 shell iterations take well over a millisecond of CPU on any machine.
    assert!(after > 1_000_000, "only {after} ns of CPU recorded for the whole spin");
    let (_, out) = finish(run).await;
    assert_eq!(out.trim(), "spun");
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_failures_name_the_step() {
    if !can_run() {
        return;
    }
    let spec = SandboxSpec {
        program: "/nonexistent/runtime".into(),
        args: vec![],
        cwd: "/".into(),
        env: vec![],
        output: None,
        limits: Limits::default(),
        fs: FsView { tmp_mb: 1, ..Default::default() },
        isolate_network: false,
        ..Default::default()
    };
    let err = backend().unwrap().start(spec).err().expect("start fails").to_string();
    assert!(err.contains("exec /nonexistent/runtime") && err.contains("No such file"), "{err}");
}
