//! The `container` backend: each sandbox is a process tree in its own mount, pid, ipc and
//! uts namespaces (net when asked) and its own cgroup (memory, cpu, pids, freezer), seeing a
//! read-only system root, its code at `/var/task`, layers at `/opt`, a private tmpfs `/tmp`
//! and its own `/proc`, running as an unprivileged user. With `FsView.image_root` the root
//! is a container image's instead (an overlay of its layers, or a private copy), writable,
//! with `/proc`, a `/dev` tmpfs and generated `/etc/{hosts,hostname,resolv.conf}`; root inside
//! keeps only Docker's default capabilities. A sandbox may get a new network namespace (its
//! `lo` brought up in the child) or join another sandbox's (`join_netns_of`).
//!
//! Why not an OCI runtime: `runc run` costs ~37 ms per start on this class of host, more
//! than twice the cold-start budget. Namespaces are set up here directly with one
//! `clone(2)` (vfork-style, so the server's address space is not copied) and a short,
//! allocation-free child that mounts, pivots, drops privileges and execs.
use crate::cgroups::{Cgroup, CgroupLimits, Cgroups, HostFs};
use crate::{
    Capabilities, ExitStatus, ImageRoot, Instance, InstanceInfo, Limits, Sandbox, SandboxError, SandboxSpec,
    Stats,
};
use std::collections::BTreeSet;
use std::ffi::{CString, c_char, c_int, c_void};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The user functions run as (AWS's `sbx_user1051`: uid 993, gid 990).
pub const SANDBOX_UID: u32 = 993;
pub const SANDBOX_GID: u32 = 990;
/// Processes and threads per sandbox (Lambda's limit is 1,024).
pub const DEFAULT_PIDS_MAX: u64 = 1024;

/// Host paths every sandbox sees read-only (where they exist); symlinks are recreated.
const SYSTEM_PATHS: [&str; 7] = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"];
/// The parts of the host's `/etc` programs need (resolver, TLS roots, time zone, linker).
const ETC_ESSENTIALS: [&str; 17] = [
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "localtime",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "alternatives",
    "mime.types",
    "protocols",
    "services",
];
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];
/// Device nodes a container image root gets in its `/dev` tmpfs (as OCI runtimes give).
const IMAGE_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// The capabilities a root user in an image root keeps (Docker's default set: chown,
/// dac_override, fowner, fsetid, kill, setgid, setuid, setpcap, net_bind_service, net_raw,
/// sys_chroot, mknod, audit_write, setfcap); everything else (sys_admin, sys_module,
/// net_admin, sys_ptrace, …) is dropped from the bounding, effective and permitted sets.
const IMAGE_ROOT_CAPS: u32 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 10)
    | (1 << 13)
    | (1 << 18)
    | (1 << 27)
    | (1 << 29)
    | (1 << 31);

pub struct ContainerSandbox {
    cgroups: Arc<Cgroups>,
    /// An empty directory each sandbox mounts its private root on (in its own mount namespace).
    root: PathBuf,
    /// Generated `/etc/passwd` and `/etc/group` naming the sandbox user.
    etc_dir: PathBuf,
    next_id: AtomicU64,
}

impl std::fmt::Debug for ContainerSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSandbox").field("cgroups", &self.cgroups).finish()
    }
}

impl ContainerSandbox {
    /// Checks that this host can run the backend — root, cgroups with the needed controllers,
    /// namespaces and mounts — by preparing cgroups and starting one real sandbox. The error
    /// says what is missing.
    pub fn probe(state_dir: &Path) -> Result<ContainerSandbox, String> {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root (namespaces, mounts and cgroups); running as an unprivileged user".into());
        }
        let fs = Arc::new(HostFs);
        let hierarchy = crate::cgroups::detect(Path::new("/"), fs.as_ref()).map_err(|e| e.to_string())?;
        let cgroups = Cgroups::prepare(fs, hierarchy, &std::process::id().to_string())
            .map_err(|e| format!("cannot create cgroups: {e}"))?;
        let sandbox =
            ContainerSandbox::with_cgroups(state_dir, Arc::new(cgroups)).map_err(|e| e.to_string())?;
        sandbox.self_test()?;
        Ok(sandbox)
    }

    fn with_cgroups(state_dir: &Path, cgroups: Arc<Cgroups>) -> std::io::Result<ContainerSandbox> {
        let root = state_dir.join("root");
        let etc_dir = state_dir.join("etc");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(&etc_dir)?;
        std::fs::write(
            etc_dir.join("passwd"),
            format!(
                "root:x:0:0:root:/root:/sbin/nologin\nsbx_user1051:x:{SANDBOX_UID}:{SANDBOX_GID}::/home/sbx_user1051:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
            ),
        )?;
        std::fs::write(
            etc_dir.join("group"),
            format!("root:x:0:\nsbx_user1051:x:{SANDBOX_GID}:\nnogroup:x:65534:\n"),
        )?;
        Ok(ContainerSandbox { cgroups, root, etc_dir, next_id: AtomicU64::new(0) })
    }

    /// Runs `/bin/sh -c 'test -w /tmp && ! test -w /usr'` in a sandbox: proves clone,
    /// mounts, the pivot, cgroup membership and the exec all work before the server says so.
    fn self_test(&self) -> Result<(), String> {
        let spec = SandboxSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "test -w /tmp && ! test -w /usr && test -r /proc/1/status".into()],
            cwd: "/".into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            output: None,
            limits: Limits { memory_mb: Some(64), pids_max: Some(16), ..Default::default() },
            fs: crate::FsView { tmp_mb: 1, ..Default::default() },
            isolate_network: true,
            ..Default::default()
        };
        let mut instance =
            self.spawn(spec, false).map_err(|e| format!("a test sandbox did not start: {e}"))?;
        let status = instance.wait_blocking();
        match status {
            ExitStatus::Code(0) => Ok(()),
            other => Err(format!("a test sandbox ran but failed its checks ({other})")),
        }
    }

    fn spawn(&self, spec: SandboxSpec, watch_exit: bool) -> Result<ContainerInstance, SandboxError> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = format!("sb-{n}");
        let limits = CgroupLimits {
            memory_bytes: spec.limits.memory_mb.map(|m| m << 20),
            // The CPU cap is applied when the runtime is ready (see `update_limits`), so
            // initialisation runs unthrottled as AWS's init phase does.
            cpu_millis: None,
            pids_max: Some(spec.limits.pids_max.unwrap_or(DEFAULT_PIDS_MAX)),
        };
        let group =
            match &spec.group {
                Some(g) => Some(g.as_any().downcast_ref::<ContainerGroup>().ok_or_else(|| {
                    SandboxError::Setup("the sandbox group belongs to another backend".into())
                })?),
                None => None,
            };
        let cgroup = match group {
            Some(ContainerGroup { cgroup: Some(g) }) => self.cgroups.create_in(g, &name, &limits),
            Some(_) => return Err(SandboxError::Setup("the sandbox group is gone".into())),
            None => self.cgroups.create(&name, &limits),
        }
        .map_err(|e| SandboxError::Setup(e.to_string()))?;
        let plan = match Plan::build(self, &spec, &cgroup) {
            Ok(p) => p,
            Err(e) => {
                cgroup.remove();
                return Err(e);
            }
        };
        let child = match plan.run() {
            Ok(c) => c,
            Err(e) => {
                cgroup.kill_all();
                cgroup.remove();
                return Err(e);
            }
        };
        Ok(ContainerInstance::new(child, cgroup, watch_exit))
    }
}

impl Sandbox for ContainerSandbox {
    fn name(&self) -> &'static str {
        "container"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            memory_limit: true,
            filesystem_isolation: true,
            pid_isolation: true,
            freezer: true,
            image_roots: true,
        }
    }

    fn fingerprint(&self) -> String {
        format!(
            "Linux namespaces (mount, pid, ipc, uts; net on request) + {}; read-only system root, uid {SANDBOX_UID}",
            self.cgroups.describe()
        )
    }

    fn start(&self, spec: SandboxSpec) -> Result<Box<dyn Instance>, SandboxError> {
        let instance = self.spawn(spec, true)?;
        Ok(Box::new(instance))
    }

    fn create_group(&self, limits: &Limits) -> Result<Option<Arc<dyn crate::SandboxGroup>>, SandboxError> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let l = CgroupLimits {
            memory_bytes: limits.memory_mb.map(|m| m << 20),
            cpu_millis: limits.cpu_millis,
            pids_max: limits.pids_max,
        };
        let cgroup = self
            .cgroups
            .create_group(&format!("group-{n}"), &l)
            .map_err(|e| SandboxError::Setup(e.to_string()))?;
        Ok(Some(Arc::new(ContainerGroup { cgroup: Some(cgroup) })))
    }
}

/// A cgroup its members' cgroups live in (`SandboxSpec.group`); `None` only while dropping.
struct ContainerGroup {
    cgroup: Option<Cgroup>,
}

impl std::fmt::Debug for ContainerGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerGroup").field("cgroup", &self.cgroup.as_ref().map(|c| c.path())).finish()
    }
}

impl crate::SandboxGroup for ContainerGroup {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Drop for ContainerGroup {
    /// Members' cgroups go when they exit (their exit watchers remove them), possibly just
    /// after the last handle to the group is dropped: retry for a while off-thread.
    fn drop(&mut self) {
        let Some(cgroup) = self.cgroup.take() else { return };
        if cgroup.remove() {
            return;
        }
        let _ = std::thread::Builder::new().name("cgroup-group-rm".into()).spawn(move || {
            for _ in 0..300 {
                std::thread::sleep(Duration::from_millis(100));
                if cgroup.remove() {
                    return;
                }
            }
            tracing::warn!(
                "sandbox group cgroup {} still has members; left in place",
                cgroup.path().display()
            );
        });
    }
}

impl Drop for ContainerSandbox {
    fn drop(&mut self) {
        self.cgroups.remove_parents();
    }
}

/// One filesystem operation of the child, with every path already a C string: the child
/// runs without allocating (it shares the server's memory until it execs).
enum Step {
    Mkdir(CString),
    Touch(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
}

/// Everything the child does, prepared by the parent.
pub(crate) struct Plan {
    /// A network namespace to enter first (`/proc/<pid>/ns/net` of another sandbox).
    netns: Option<OwnedFd>,
    cgroup_procs: Vec<CString>,
    steps: Vec<Step>,
    /// The new root to pivot into (isolated sandboxes only).
    root: Option<CString>,
    /// Directories made after the pivot (an image's working directory), so symlinks in the
    /// image resolve inside its root, never on the host.
    post_pivot_dirs: Vec<CString>,
    /// Bring the new network namespace's loopback up.
    lo_up: bool,
    /// Switch to this (uid, gid) (isolated sandboxes only).
    user: Option<(u32, u32)>,
    /// Lead a new process group (so signals reach everything the program forks).
    new_process_group: bool,
    cwd: CString,
    program: CString,
    exec: ExecParts,
    dev_null: CString,
    flags: c_int,
    hostname: CString,
}

fn cstr(s: impl AsRef<std::ffi::OsStr>) -> Result<CString, SandboxError> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| SandboxError::Setup("path or argument contains a NUL byte".into()))
}

/// What every child execs with: argv and envp as C strings with their null-terminated
/// pointer arrays, the output descriptor, and the rlimits every sandbox gets.
struct ExecParts {
    /// Keep the strings the pointer arrays point into alive.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    output: Option<OwnedFd>,
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
}

impl ExecParts {
    fn new(spec: &SandboxSpec) -> Result<ExecParts, SandboxError> {
        let argv: Vec<CString> = std::iter::once(cstr(&spec.program))
            .chain(spec.args.iter().map(cstr))
            .collect::<Result<_, _>>()?;
        let envp: Vec<CString> =
            spec.env.iter().map(|(k, v)| cstr(format!("{k}={v}"))).collect::<Result<_, _>>()?;
        let ptrs = |v: &[CString]| -> Vec<*const c_char> {
            v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
        };
        let mut rlimits = vec![(libc::RLIMIT_CORE, 0)];
        if let Some(n) = spec.limits.nofile {
            rlimits.push((libc::RLIMIT_NOFILE, n));
        }
        let output = match &spec.output {
            Some(fd) => Some(fd.try_clone()?),
            None => None,
        };
        Ok(ExecParts {
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            _argv: argv,
            _envp: envp,
            output,
            rlimits,
        })
    }
}

/// Builds the mount steps under the sandbox root, creating each mount point's parents once.
struct StepBuilder {
    root: PathBuf,
    made: BTreeSet<PathBuf>,
    steps: Vec<Step>,
}

const RO_REMOUNT: libc::c_ulong =
    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

impl StepBuilder {
    fn at(&self, inner: &Path) -> PathBuf {
        self.root.join(inner.strip_prefix("/").unwrap_or(inner))
    }

    fn dirs(&mut self, inner: &Path) -> Result<(), SandboxError> {
        let mut chain: Vec<&Path> = inner.ancestors().filter(|a| *a != Path::new("/")).collect();
        chain.reverse();
        for dir in chain {
            if self.made.insert(dir.to_path_buf()) {
                let p = cstr(self.at(dir))?;
                self.steps.push(Step::Mkdir(p));
            }
        }
        Ok(())
    }

    fn mount_point(&mut self, inner: &Path, is_dir: bool) -> Result<CString, SandboxError> {
        if is_dir {
            self.dirs(inner)?;
        } else {
            if let Some(parent) = inner.parent() {
                self.dirs(parent)?;
            }
            let p = cstr(self.at(inner))?;
            self.steps.push(Step::Touch(p));
        }
        cstr(self.at(inner))
    }

    /// Binds host `src` at `inner`, read-only unless `writable`.
    fn bind(&mut self, src: &Path, inner: &Path, read_only: bool) -> Result<(), SandboxError> {
        let target = self.mount_point(inner, src.is_dir())?;
        self.steps.push(Step::Mount {
            src: Some(cstr(src)?),
            target: target.clone(),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        });
        if read_only {
            self.steps.push(Step::Mount { src: None, target, fstype: None, flags: RO_REMOUNT, data: None });
        }
        Ok(())
    }

    fn symlink(&mut self, target: &Path, inner: &Path) -> Result<(), SandboxError> {
        if let Some(parent) = inner.parent() {
            self.dirs(parent)?;
        }
        self.made.insert(inner.to_path_buf());
        let link = cstr(self.at(inner))?;
        self.steps.push(Step::Symlink { target: cstr(target)?, link });
        Ok(())
    }

    fn fs(
        &mut self,
        inner: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> Result<(), SandboxError> {
        let target = self.mount_point(inner, true)?;
        self.steps.push(Step::Mount {
            src: Some(cstr(fstype)?),
            target,
            fstype: Some(cstr(fstype)?),
            flags,
            data: Some(cstr(data)?),
        });
        Ok(())
    }
}

fn is_system_path(p: &Path) -> bool {
    SYSTEM_PATHS.iter().any(|s| p.starts_with(s))
}

impl Plan {
    fn build(sb: &ContainerSandbox, spec: &SandboxSpec, cgroup: &Cgroup) -> Result<Plan, SandboxError> {
        if let Some(image) = &spec.fs.image_root {
            return Plan::build_image(sb, spec, image, cgroup);
        }
        let mut b = StepBuilder { root: sb.root.clone(), made: BTreeSet::new(), steps: Vec::new() };
        // Nothing mounted here propagates back to the host.
        b.steps.push(Step::Mount {
            src: None,
            target: cstr("/")?,
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        });
        let root = cstr(&sb.root)?;
        b.steps.push(Step::Mount {
            src: Some(cstr("tmpfs")?),
            target: root.clone(),
            fstype: Some(cstr("tmpfs")?),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: Some(cstr("mode=755,size=1m,nr_inodes=4096")?),
        });
        for sys in SYSTEM_PATHS.iter().map(Path::new) {
            match std::fs::symlink_metadata(sys) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(sys)?;
                    b.symlink(&target, sys)?;
                }
                Ok(m) if m.is_dir() => b.bind(sys, sys, true)?,
                _ => {}
            }
        }
        for name in ETC_ESSENTIALS {
            let host = Path::new("/etc").join(name);
            if host.exists() {
                b.bind(&host, &host, true)?;
            }
        }
        for name in ["passwd", "group"] {
            b.bind(&sb.etc_dir.join(name), &Path::new("/etc").join(name), true)?;
        }
        for dev in DEVICES {
            let host = Path::new("/dev").join(dev);
            // Devices stay writable (writing to /dev/null must work); the root's nodev does
            // not apply to a bind of the node itself.
            b.bind(&host, &host, false)?;
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            b.symlink(Path::new(target), &Path::new("/dev").join(link))?;
        }
        b.fs(Path::new("/proc"), "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, "")?;
        let tmp_mb = spec.fs.tmp_mb.max(1);
        b.fs(
            Path::new("/tmp"),
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            &format!("size={tmp_mb}m,mode=1777,uid=0,gid=0"),
        )?;
        if let Some(code) = &spec.fs.code {
            b.bind(code, Path::new("/var/task"), true)?;
        } else {
            b.dirs(Path::new("/var/task"))?;
        }
        match spec.fs.layers.as_slice() {
            [] => b.dirs(Path::new("/opt"))?,
            [one] => b.bind(one, Path::new("/opt"), true)?,
            many => {
                // overlayfs with only lower layers is read-only; the leftmost lower wins, and
                // on AWS later layers overwrite earlier ones.
                let lower: Vec<String> = many.iter().rev().map(|p| p.display().to_string()).collect();
                for l in &lower {
                    if l.contains(':') || l.contains(',') {
                        return Err(SandboxError::Setup(format!("layer path {l} cannot be overlaid")));
                    }
                }
                b.fs(
                    Path::new("/opt"),
                    "overlay",
                    libc::MS_RDONLY,
                    &format!("lowerdir={}", lower.join(":")),
                )?;
            }
        }
        for (host, inside) in &spec.fs.expose {
            let host = std::fs::canonicalize(host)?;
            if !(b.made.contains(inside) || is_system_path(&host) && &host == inside) {
                b.bind(&host, inside, true)?;
            }
        }
        // The root itself read-only: nothing outside /tmp is writable.
        b.steps.push(Step::Mount {
            src: None,
            target: root.clone(),
            fstype: None,
            flags: libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            data: None,
        });

        let (flags, netns, lo_up) = namespaces(spec)?;
        Ok(Plan {
            netns,
            cgroup_procs: cgroup.procs_files().iter().map(cstr).collect::<Result<_, _>>()?,
            steps: b.steps,
            root: Some(root),
            post_pivot_dirs: Vec::new(),
            lo_up,
            user: Some(spec.user.unwrap_or((SANDBOX_UID, SANDBOX_GID))),
            new_process_group: false,
            cwd: cstr(&spec.cwd)?,
            program: cstr(&spec.program)?,
            exec: ExecParts::new(spec)?,
            dev_null: cstr("/dev/null")?,
            flags,
            hostname: cstr(spec.hostname.as_deref().unwrap_or("localhost"))?,
        })
    }

    /// A container image root: the image's layers under an overlay (or its flattened copy)
    /// become the writable root, with `/proc`, a `/dev` tmpfs and generated `/etc` files.
    /// Everything that is resolved before the pivot (`/proc`, `/dev`, `/etc`) is checked
    /// from the host side first, so a symlink in an image never redirects a mount or a write
    /// onto the host's filesystem.
    fn build_image(
        sb: &ContainerSandbox,
        spec: &SandboxSpec,
        image: &ImageRoot,
        cgroup: &Cgroup,
    ) -> Result<Plan, SandboxError> {
        let mut b = StepBuilder { root: sb.root.clone(), made: BTreeSet::new(), steps: Vec::new() };
        b.steps.push(Step::Mount {
            src: None,
            target: cstr("/")?,
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        });
        let root = cstr(&sb.root)?;
        let writable = match image {
            ImageRoot::Overlay { lower, upper, work } => {
                if lower.is_empty() {
                    return Err(SandboxError::Setup("an overlay image root needs at least one layer".into()));
                }
                // overlayfs lists the topmost lower directory first.
                let mut parts: Vec<String> = Vec::with_capacity(lower.len() + 2);
                for p in lower.iter().rev().chain([upper, work]) {
                    let p = p.display().to_string();
                    if p.contains(':') || p.contains(',') {
                        return Err(SandboxError::Setup(format!("layer path {p} cannot be overlaid")));
                    }
                    parts.push(p);
                }
                let (work, upper) = (parts.pop().unwrap_or_default(), parts.pop().unwrap_or_default());
                let data = format!("lowerdir={},upperdir={upper},workdir={work}", parts.join(":"));
                // The kernel reads mount options from a single page.
                if data.len() >= 4000 {
                    return Err(SandboxError::Setup(format!(
                        "the image's {} layers do not fit in one overlay mount's options",
                        lower.len()
                    )));
                }
                b.steps.push(Step::Mount {
                    src: Some(cstr("overlay")?),
                    target: root.clone(),
                    fstype: Some(cstr("overlay")?),
                    flags: 0,
                    data: Some(cstr(data)?),
                });
                PathBuf::from(upper)
            }
            ImageRoot::Dir(dir) => {
                b.steps.push(Step::Mount {
                    src: Some(cstr(dir)?),
                    target: root.clone(),
                    fstype: None,
                    flags: libc::MS_BIND | libc::MS_REC,
                    data: None,
                });
                dir.clone()
            }
        };
        for inner in ["/proc", "/dev", "/etc", "/tmp"] {
            if let Some(m) = image_lookup(image, Path::new(inner))
                && !m.file_type().is_dir()
            {
                return Err(SandboxError::Setup(format!(
                    "the image's {inner} is not a directory (a symlink or file), which is not supported"
                )));
            }
        }
        let hostname = spec.hostname.as_deref().unwrap_or("localhost");
        write_etc_files(&writable, hostname)?;

        b.fs(Path::new("/proc"), "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, "")?;
        if spec.fs.tmp_mb > 0 {
            b.fs(
                Path::new("/tmp"),
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV,
                &format!("size={}m,mode=1777,uid=0,gid=0", spec.fs.tmp_mb),
            )?;
        }
        b.fs(Path::new("/dev"), "tmpfs", libc::MS_NOSUID | libc::MS_STRICTATIME, "mode=755,size=65536k")?;
        for dev in IMAGE_DEVICES {
            let host = Path::new("/dev").join(dev);
            if host.exists() {
                b.bind(&host, &host, false)?;
            }
        }
        b.fs(
            Path::new("/dev/pts"),
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )?;
        b.symlink(Path::new("pts/ptmx"), Path::new("/dev/ptmx"))?;
        b.fs(
            Path::new("/dev/shm"),
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            "mode=1777,size=65536k",
        )?;
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("core", "/proc/kcore"),
        ] {
            b.symlink(Path::new(target), &Path::new("/dev").join(link))?;
        }
        for (n, bind) in spec.fs.binds.iter().enumerate() {
            check_bind_target(image, &spec.fs.binds[..n], &bind.inside)?;
            if !bind.host.is_dir() {
                return Err(SandboxError::Setup(format!(
                    "volume source {} is not a directory",
                    bind.host.display()
                )));
            }
            b.bind(&bind.host, &bind.inside, bind.read_only)?;
        }

        // The working directory is made (as runtimes do) after the pivot, inside the image.
        let mut post_pivot_dirs = Vec::new();
        if spec.cwd.is_absolute() {
            let mut chain: Vec<&Path> = spec.cwd.ancestors().filter(|a| *a != Path::new("/")).collect();
            chain.reverse();
            for dir in chain {
                post_pivot_dirs.push(cstr(dir)?);
            }
        }
        let program = resolve_in_image(image, &spec.program, &spec.env);
        let (flags, netns, lo_up) = namespaces(spec)?;
        Ok(Plan {
            netns,
            cgroup_procs: cgroup.procs_files().iter().map(cstr).collect::<Result<_, _>>()?,
            steps: b.steps,
            root: Some(root),
            post_pivot_dirs,
            lo_up,
            user: Some(spec.user.unwrap_or((0, 0))),
            new_process_group: false,
            cwd: cstr(&spec.cwd)?,
            program: cstr(&program)?,
            exec: ExecParts::new(spec)?,
            dev_null: cstr("/dev/null")?,
            flags,
            hostname: cstr(hostname)?,
        })
    }

    /// A plain child (the process backend): no namespaces, mounts, cgroup or user change —
    /// its own process group, rlimits, stdio, PDEATHSIG and exec, through the same cheap
    /// vfork-style clone (a fork of a large server copies its page tables on every start).
    pub(crate) fn plain(spec: &SandboxSpec) -> Result<Plan, SandboxError> {
        let program = resolve_program(&spec.program, &spec.env);
        let mut exec = ExecParts::new(spec)?;
        if let Some(mb) = spec.limits.fsize_mb {
            // The process backend's stand-in for the /tmp quota.
            exec.rlimits.push((libc::RLIMIT_FSIZE, mb * 1024 * 1024));
        }
        Ok(Plan {
            netns: None,
            cgroup_procs: Vec::new(),
            steps: Vec::new(),
            root: None,
            post_pivot_dirs: Vec::new(),
            lo_up: false,
            user: None,
            new_process_group: true,
            cwd: cstr(&spec.cwd)?,
            program: cstr(&program)?,
            exec,
            dev_null: cstr("/dev/null")?,
            flags: 0,
            hostname: cstr("localhost")?,
        })
    }

    /// Clones the child into its namespaces and waits (vfork-style) until it has exec'd or
    /// failed; a failure comes back over a close-on-exec pipe as (step, errno).
    pub(crate) fn run(self) -> Result<Child, SandboxError> {
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` is a valid two-int array; pipe2 fills it with two new descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: both descriptors were just created by pipe2 and are owned only here.
        let (err_read, err_write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let args = ChildArgs { plan: &self, err_fd: err_write.as_raw_fd() };
        let mut stack = vec![0u8; 256 * 1024];
        // SAFETY: the stack grows down, so the child starts at the (16-byte aligned) top of a
        // buffer that outlives the child's use of it: CLONE_VFORK suspends this thread until
        // the child has exec'd or exited.
        let stack_top = unsafe { stack.as_mut_ptr().add(stack.len()) }.map_addr(|a| a & !15);
        let mut pidfd: c_int = -1;
        // Block every signal so no handler of the server runs on the child's stack; the child
        // restores defaults and an empty mask before exec.
        // SAFETY: sigset_t is a plain bit array; all-zero is a valid (empty) set.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sigset pointers; pthread_sigmask only affects this thread.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        let flags = self.flags | libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
        // SAFETY: `child_main` only performs raw syscalls on memory prepared above (no
        // allocation, no locks, no glibc functions that touch thread state); with CLONE_VM it
        // runs on its own stack and this thread is suspended until it execs or exits, so
        // `args` and `stack` stay valid. CLONE_PIDFD stores the child's pidfd in `pidfd`.
        let pid = unsafe {
            libc::clone(
                child_main,
                stack_top as *mut c_void,
                flags,
                &args as *const ChildArgs as *mut c_void,
                &mut pidfd as *mut c_int,
            )
        };
        let clone_err = std::io::Error::last_os_error();
        // SAFETY: restores this thread's previous mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        drop(stack);
        drop(err_write);
        if pid < 0 {
            return Err(SandboxError::Setup(format!("clone: {clone_err}")));
        }
        // SAFETY: CLONE_PIDFD returned a new descriptor owned by nobody else.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let mut report = [0u8; 8];
        // EOF (0): the child exec'd. A signal interrupting the read must not pass for that.
        let n = loop {
            match nix::unistd::read(&err_read, &mut report) {
                Err(nix::Error::EINTR) => continue,
                r => break r.unwrap_or(0),
            }
        };
        if n == 8 {
            let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
            let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
            // Reap the failed child.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(SandboxError::Setup(format!(
                "{}: {}",
                self.describe(step),
                std::io::Error::from_raw_os_error(errno)
            )));
        }
        Ok(Child { pid, pidfd })
    }

    fn describe(&self, step: u32) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match step {
            STEP_NETNS => "joining the network namespace".into(),
            STEP_LO => "bringing up the loopback interface".into(),
            STEP_CGROUP => "joining the cgroup".into(),
            STEP_PIVOT => "pivot_root".into(),
            STEP_CHDIR => format!("chdir {}", s(&self.cwd)),
            STEP_USER => "dropping privileges".into(),
            STEP_EXEC => format!("exec {}", s(&self.program)),
            STEP_SETUP => "setting up stdio and limits".into(),
            n => match self.steps.get(n as usize) {
                Some(Step::Mkdir(p)) => format!("mkdir {}", s(p)),
                Some(Step::Touch(p)) => format!("creating {}", s(p)),
                Some(Step::Symlink { link, .. }) => format!("symlink {}", s(link)),
                Some(Step::Mount { target, fstype, .. }) => {
                    format!(
                        "mount {} on {}",
                        fstype.as_ref().map(s).unwrap_or_else(|| "bind".into()),
                        s(target)
                    )
                }
                None => format!("step {n}"),
            },
        }
    }
}

const STEP_CGROUP: u32 = 10_000;
const STEP_PIVOT: u32 = 10_001;
const STEP_CHDIR: u32 = 10_002;
const STEP_USER: u32 = 10_003;
const STEP_EXEC: u32 = 10_004;
const STEP_SETUP: u32 = 10_005;
const STEP_NETNS: u32 = 10_006;
const STEP_LO: u32 = 10_007;

/// The namespaces a sandbox is cloned into, and the network namespace it joins instead of
/// getting its own (opened here, in the parent, so the child only calls setns).
fn namespaces(spec: &SandboxSpec) -> Result<(c_int, Option<OwnedFd>, bool), SandboxError> {
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if let Some(pid) = spec.join_netns_of {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| {
            SandboxError::Setup(format!("cannot open the network namespace of pid {pid}: {e}"))
        })?;
        return Ok((flags, Some(OwnedFd::from(ns)), false));
    }
    if spec.isolate_network {
        flags |= libc::CLONE_NEWNET;
    }
    Ok((flags, None, spec.isolate_network))
}

/// Finds `inner` in an image root from the host side: the topmost layer (the upper first)
/// holding an entry decides, and an overlay whiteout (a 0:0 character device) hides it.
fn image_lookup(image: &ImageRoot, inner: &Path) -> Option<std::fs::Metadata> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let rel = inner.strip_prefix("/").unwrap_or(inner);
    let dirs: Vec<&PathBuf> = match image {
        ImageRoot::Dir(d) => vec![d],
        ImageRoot::Overlay { lower, upper, .. } => std::iter::once(upper).chain(lower.iter().rev()).collect(),
    };
    for dir in dirs {
        if let Ok(m) = std::fs::symlink_metadata(dir.join(rel)) {
            if m.file_type().is_char_device() && m.rdev() == 0 {
                return None;
            }
            return Some(m);
        }
    }
    None
}

/// A volume's mount point must be a plain absolute path whose components, where the image
/// already has them, are real directories: the mkdirs and the bind run before the pivot, on
/// host paths, so a symlink in the image (`/data -> /etc`) would otherwise redirect them onto
/// the host. Paths under the generated `/proc` and `/dev` are refused too.
///
/// A mount point inside an earlier bind (a nested volume) is looked up in that bind's host
/// directory instead, which other running containers may write: checked here, but a symlink
/// swapped in between this check and the child's mkdir is not caught (no openat2 yet).
fn check_bind_target(image: &ImageRoot, earlier: &[crate::Bind], inside: &Path) -> Result<(), SandboxError> {
    use std::path::Component;
    let refuse = |why: &str| Err(SandboxError::Setup(format!("mount point {}: {why}", inside.display())));
    if !inside.is_absolute()
        || inside.components().any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return refuse("not a plain absolute path");
    }
    if inside == Path::new("/") || inside.starts_with("/proc") || inside.starts_with("/dev") {
        return refuse("not a path a volume can be mounted at");
    }
    let mut chain: Vec<&Path> = inside.ancestors().filter(|a| *a != Path::new("/")).collect();
    chain.reverse();
    for dir in chain {
        // The innermost earlier bind covering `dir` decides what is there.
        let covering = earlier.iter().rev().find(|b| dir.starts_with(&b.inside) && dir != b.inside);
        let found = match covering {
            Some(b) => {
                std::fs::symlink_metadata(b.host.join(dir.strip_prefix(&b.inside).unwrap_or(dir))).ok()
            }
            None => image_lookup(image, dir),
        };
        match found {
            Some(m) if m.file_type().is_symlink() => return refuse("there is a symlink on the way"),
            Some(m) if !m.is_dir() => return refuse("there is a file on the way"),
            _ => {}
        }
    }
    Ok(())
}

/// Resolves a bare program name on the environment's PATH inside the image (execve does not
/// search); absolute and relative paths are used as they are.
fn resolve_in_image(image: &ImageRoot, program: &Path, env: &[(String, String)]) -> PathBuf {
    if program.components().count() > 1 || program.is_absolute() {
        return program.to_path_buf();
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    std::env::split_paths(path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(program))
        .find(|p| image_lookup(image, p).is_some_and(|m| !m.is_dir()))
        .unwrap_or_else(|| program.to_path_buf())
}

/// Writes `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` into the container's own
/// writable layer (the overlay's upper or the private copy), replacing what the image has.
fn write_etc_files(writable: &Path, hostname: &str) -> Result<(), SandboxError> {
    let etc = writable.join("etc");
    match std::fs::symlink_metadata(&etc) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(SandboxError::Setup(format!("{} is not a directory", etc.display()))),
        Err(_) => std::fs::create_dir_all(&etc)?,
    }
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let hosts = format!(
        "127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    );
    for (name, content) in [("hosts", hosts), ("hostname", format!("{hostname}\n")), ("resolv.conf", resolv)]
    {
        let path = etc.join(name);
        // A symlink in the image would make the write land wherever it points on the host.
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.is_dir() {
                return Err(SandboxError::Setup(format!("{} is a directory", path.display())));
            }
            if !m.is_file() {
                std::fs::remove_file(&path)?;
            }
        }
        std::fs::write(&path, content)?;
    }
    Ok(())
}

/// The header and data of capset(2) (version 3: two 32-bit words per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const CAP_VERSION_3: u32 = 0x2008_0522;

/// `struct ifreq` as SIOCGIFFLAGS / SIOCSIFFLAGS use it (name, flags, padding to 40 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct IfreqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

struct ChildArgs<'a> {
    plan: &'a Plan,
    err_fd: RawFd,
}

/// Reports (step, errno) to the parent and exits. Async-signal-safe.
fn child_fail(err_fd: RawFd, step: u32) -> ! {
    // SAFETY: errno of this thread; write(2) and _exit(2) are async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&step.to_ne_bytes());
        buf[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(err_fd, buf.as_ptr() as *const c_void, 8);
        libc::_exit(127)
    }
}

fn opt_ptr(c: &Option<CString>) -> *const c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// The child: runs in fresh namespaces on its own stack, sharing the server's memory
/// (CLONE_VM) until exec. Only raw syscalls on prepared data; never returns on success.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` points at the parent's `ChildArgs`, alive while the parent is suspended.
    let args = unsafe { &*(arg as *const ChildArgs) };
    let (plan, err) = (args.plan, args.err_fd);
    // SAFETY (whole block): every call is a plain syscall wrapper given pointers to C strings
    // and buffers the parent prepared and keeps alive (or on this stack); no allocation
    // happens here.
    unsafe {
        // First, drop the descriptors this child inherited but does not use: see
        // `close_inherited_fds`.
        close_inherited_fds([
            err,
            plan.netns.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
            plan.exec.output.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
        ]);
        // Enter the shared network namespace before anything else, as the flags promised.
        if let Some(ns) = &plan.netns
            && libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0
        {
            child_fail(err, STEP_NETNS);
        }
        for p in &plan.cgroup_procs {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr() as *const c_void, 1) != 1 {
                child_fail(err, STEP_CGROUP);
            }
            libc::close(fd);
        }
        for (i, step) in plan.steps.iter().enumerate() {
            let ok = match step {
                Step::Mkdir(p) => {
                    libc::mkdir(p.as_ptr(), 0o755) == 0 || *libc::__errno_location() == libc::EEXIST
                }
                Step::Touch(p) => {
                    let fd = libc::open(p.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                    fd >= 0 && libc::close(fd) == 0
                }
                Step::Symlink { target, link } => libc::symlink(target.as_ptr(), link.as_ptr()) == 0,
                Step::Mount { src, target, fstype, flags, data } => {
                    libc::mount(
                        opt_ptr(src),
                        target.as_ptr(),
                        opt_ptr(fstype),
                        *flags,
                        opt_ptr(data) as *const c_void,
                    ) == 0
                }
            };
            if !ok {
                child_fail(err, i as u32);
            }
        }
        if let Some(root) = &plan.root {
            if libc::chdir(root.as_ptr()) != 0 {
                child_fail(err, STEP_PIVOT);
            }
            let dot = c".".as_ptr();
            // pivot_root(".", "."): the old root ends up stacked under the new one; detach it.
            if libc::syscall(libc::SYS_pivot_root, dot, dot) != 0 || libc::umount2(dot, libc::MNT_DETACH) != 0
            {
                child_fail(err, STEP_PIVOT);
            }
            libc::sethostname(plan.hostname.as_ptr(), plan.hostname.as_bytes().len());
            for dir in &plan.post_pivot_dirs {
                if libc::mkdir(dir.as_ptr(), 0o755) != 0 && *libc::__errno_location() != libc::EEXIST {
                    child_fail(err, STEP_CHDIR);
                }
            }
        }
        if plan.lo_up {
            // A new network namespace starts with `lo` down: nothing could reach 127.0.0.1.
            let mut ifr = IfreqFlags { name: [0; 16], flags: 0, _pad: [0; 22] };
            ifr.name[0] = b'l';
            ifr.name[1] = b'o';
            let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if s < 0 || libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut ifr as *mut IfreqFlags) != 0 {
                child_fail(err, STEP_LO);
            }
            ifr.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(s, libc::SIOCSIFFLAGS as _, &ifr as *const IfreqFlags) != 0 {
                child_fail(err, STEP_LO);
            }
            libc::close(s);
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            child_fail(err, STEP_CHDIR);
        }
        if plan.new_process_group && libc::setpgid(0, 0) != 0 {
            child_fail(err, STEP_SETUP);
        }
        let null = libc::open(plan.dev_null.as_ptr(), libc::O_RDWR);
        let out = plan.exec.output.as_ref().map_or(null, |fd| fd.as_raw_fd());
        if null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(out, 1) < 0 || libc::dup2(out, 2) < 0 {
            child_fail(err, STEP_SETUP);
        }
        // Not close-on-exec: the program would inherit it past its stdio.
        if null > 2 {
            libc::close(null);
        }
        for (resource, value) in &plan.exec.rlimits {
            let lim = libc::rlimit { rlim_cur: *value, rlim_max: *value };
            if libc::setrlimit(*resource, &lim) != 0 {
                child_fail(err, STEP_SETUP);
            }
        }
        // Die with the server, even on `kill -9`.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        // Raw syscalls: glibc's setuid family would signal the server's threads (setxid
        // broadcast), which share this memory image.
        if let Some((uid, gid)) = plan.user {
            if uid == 0 {
                // Root inside keeps only Docker's default capabilities: drop the rest from
                // the bounding set (needs CAP_SETPCAP, kept), then from the other sets.
                for cap in 0..64 {
                    if cap >= 32 || IMAGE_ROOT_CAPS & (1u32 << cap) == 0 {
                        let r = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                        // EINVAL: past the kernel's last capability.
                        if r != 0 && *libc::__errno_location() != libc::EINVAL {
                            child_fail(err, STEP_USER);
                        }
                    }
                }
            }
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
                || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            {
                child_fail(err, STEP_USER);
            }
            if uid == 0 {
                let header = CapHeader { version: CAP_VERSION_3, pid: 0 };
                let keep = CapData { effective: IMAGE_ROOT_CAPS, permitted: IMAGE_ROOT_CAPS, inheritable: 0 };
                let data = [keep, CapData { effective: 0, permitted: 0, inheritable: 0 }];
                if libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) != 0 {
                    child_fail(err, STEP_USER);
                }
            }
        }
        // Default dispositions and an empty mask for the new program.
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            8usize,
        );
        // ETXTBSY: the program is open for writing somewhere — typically only for an instant,
        // by another thread's child that was cloned while this server was writing the file
        // (an image layer being unpacked, a copied binary) and has not closed its copy of
        // that descriptor yet. Retry for about a second before reporting it.
        let mut delay_ms: i64 = 1;
        for _ in 0..25 {
            libc::execve(plan.program.as_ptr(), plan.exec.argv_ptrs.as_ptr(), plan.exec.envp_ptrs.as_ptr());
            if *libc::__errno_location() != libc::ETXTBSY {
                break;
            }
            let pause = libc::timespec { tv_sec: 0, tv_nsec: delay_ms * 1_000_000 };
            libc::syscall(
                libc::SYS_clock_nanosleep,
                libc::CLOCK_MONOTONIC,
                0,
                &pause as *const libc::timespec,
                std::ptr::null_mut::<libc::timespec>(),
            );
            delay_ms = (delay_ms * 2).min(50);
        }
        child_fail(err, STEP_EXEC)
    }
}

/// Closes every descriptor from 3 up except `keep` (-1 entries are ignored), in the cloned
/// child before anything else. The child gets a copy of the whole descriptor table at clone
/// time, including descriptors other threads of the server have open just then — another
/// start's error pipe, a file being written. Close-on-exec would only drop them at exec,
/// after this child's mounts, which under load take milliseconds: meanwhile another
/// sandbox's exec of a file this copy holds open for writing fails with ETXTBSY, and the
/// other start's read of its error pipe waits for this child. Descriptors 0–2 are replaced
/// before exec anyway. Best effort: on kernels without close_range(2) (before 5.9) nothing
/// is closed here and close-on-exec still applies.
///
/// # Safety
///
/// Only in the cloned child (its own descriptor table, no CLONE_FILES), where nothing but
/// the kept descriptors is used afterwards.
unsafe fn close_inherited_fds(mut keep: [c_int; 3]) {
    keep.sort_unstable();
    let mut next: c_int = 3;
    for fd in keep {
        if fd < next {
            continue;
        }
        if fd > next {
            // SAFETY: the caller guarantees no descriptor in this range is used afterwards.
            unsafe {
                libc::syscall(libc::SYS_close_range, next as libc::c_uint, (fd - 1) as libc::c_uint, 0)
            };
        }
        next = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next as libc::c_uint, libc::c_uint::MAX, 0) };
}

/// The cloned init process of a sandbox.
pub(crate) struct Child {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
}

/// Resolves a bare program name on the sandbox's PATH (execve does not search).
fn resolve_program(program: &Path, env: &[(String, String)]) -> PathBuf {
    if program.components().count() > 1 || program.is_absolute() {
        return program.to_path_buf();
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or("/usr/bin:/bin");
    std::env::split_paths(path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| program.to_path_buf())
}

/// Resolves with the child's exit status, using its pidfd (no thread per child).
pub(crate) async fn wait_for_exit(child: Child) -> ExitStatus {
    let interest = tokio::io::Interest::READABLE;
    // SAFETY: the AsyncFd takes ownership of the pidfd (an OwnedFd), so the descriptor stays
    // open and unchanged for the AsyncFd's lifetime.
    let registered = unsafe { tokio::io::unix::AsyncFd::register_with_interest(child.pidfd, interest) };
    match registered {
        Ok(fd) => {
            let _ = fd.readable().await;
            reap(child.pid)
        }
        // Not pollable (should not happen on kernels with CLONE_PIDFD): block.
        Err(_) => tokio::task::spawn_blocking(move || reap_blocking(child.pid))
            .await
            .unwrap_or(ExitStatus::Code(-1)),
    }
}

struct ContainerInstance {
    pid: i32,
    cgroup: Arc<Cgroup>,
    exited: watch::Receiver<Option<ExitStatus>>,
    paused: AtomicBool,
    /// Present until the waiter task takes it (or `wait_blocking` uses it).
    child: Option<Child>,
    /// The highest CPU time read so far: the waiter records the final figure before the
    /// cgroup (and its counter) is removed, so `stats()` stays monotonic after exit.
    cpu_seen: Arc<AtomicU64>,
}

impl ContainerInstance {
    fn new(child: Child, cgroup: Cgroup, watch_exit: bool) -> ContainerInstance {
        let (tx, rx) = watch::channel(None);
        let pid = child.pid;
        let cgroup = Arc::new(cgroup);
        let cpu_seen = Arc::new(AtomicU64::new(0));
        let mut me = ContainerInstance {
            pid,
            cgroup: cgroup.clone(),
            exited: rx,
            paused: AtomicBool::new(false),
            child: Some(child),
            cpu_seen: cpu_seen.clone(),
        };
        if let (true, Ok(handle)) = (watch_exit, tokio::runtime::Handle::try_current()) {
            if let Some(child) = me.child.take() {
                handle.spawn(async move {
                    let status = wait_for_exit(child).await;
                    // Whatever the runtime forked dies with it (pid namespace), then the cgroup goes.
                    cgroup.kill_all();
                    cpu_seen.fetch_max(cgroup.cpu_usage_ns(), Ordering::Relaxed);
                    for _ in 0..50 {
                        if cgroup.remove() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let _ = tx.send(Some(status));
                });
            }
        }
        me
    }

    /// For the probe, before the server's runtime exists.
    fn wait_blocking(&mut self) -> ExitStatus {
        let status = match self.child.take() {
            Some(child) => reap_blocking(child.pid),
            None => return ExitStatus::Code(-1),
        };
        self.cgroup.kill_all();
        for _ in 0..50 {
            if self.cgroup.remove() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        status
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig);
    }
}

fn decode(status: nix::sys::wait::WaitStatus) -> ExitStatus {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => ExitStatus::Code(code),
        WaitStatus::Signaled(_, sig, _) => ExitStatus::Signal(sig as i32),
        _ => ExitStatus::Code(-1),
    }
}

fn reap(pid: i32) -> ExitStatus {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(nix::sys::wait::WaitStatus::StillAlive) => reap_blocking(pid),
        Ok(s) => decode(s),
        Err(_) => ExitStatus::Code(-1),
    }
}

fn reap_blocking(pid: i32) -> ExitStatus {
    loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(s) => return decode(s),
            Err(nix::Error::EINTR) => continue,
            Err(_) => return ExitStatus::Code(-1),
        }
    }
}

impl Instance for ContainerInstance {
    fn id(&self) -> u32 {
        self.pid as u32
    }

    fn pause(&self) -> Result<(), SandboxError> {
        self.cgroup.freeze().map_err(|e| SandboxError::Setup(e.to_string()))?;
        self.paused.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn resume(&self) -> Result<(), SandboxError> {
        self.cgroup.thaw().map_err(|e| SandboxError::Setup(e.to_string()))?;
        self.paused.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn stop(&self, signal: i32, grace: Duration) -> Result<(), SandboxError> {
        let _ = self.resume();
        // A pid namespace's init only receives signals it handles; SIGKILL follows anyway.
        if let Ok(sig) = nix::sys::signal::Signal::try_from(signal) {
            self.signal(sig);
        }
        let mut exited = self.exited.clone();
        let (pid, cgroup) = (self.pid, self.cgroup.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(grace, exited.wait_for(Option::is_some)).await;
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            cgroup.kill_all();
        });
        Ok(())
    }

    fn destroy(&self) {
        if self.exited.borrow().is_some() {
            return;
        }
        // Killing the namespace's init kills every process in it; the cgroup catches any
        // process that is mid-fork, and a v1 freezer must be thawed for SIGKILL to land.
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.cgroup.kill_all();
    }

    fn wait(&self) -> std::pin::Pin<Box<dyn Future<Output = ExitStatus> + Send + '_>> {
        crate::wait_exited(&self.exited)
    }

    fn stats(&self) -> Stats {
        let cpu = self.cpu_seen.fetch_max(self.cgroup.cpu_usage_ns(), Ordering::Relaxed);
        Stats {
            peak_memory_bytes: self.cgroup.memory_peak(),
            cpu_usage_ns: cpu.max(self.cpu_seen.load(Ordering::Relaxed)),
        }
    }

    fn inspect(&self) -> InstanceInfo {
        let state = crate::state_of(&self.exited, self.paused.load(Ordering::Relaxed));
        InstanceInfo { pid: self.pid as u32, state, cgroup: Some(self.cgroup.path().display().to_string()) }
    }

    fn update_limits(&self, limits: &Limits) -> Result<(), SandboxError> {
        let l = CgroupLimits {
            memory_bytes: limits.memory_mb.map(|m| m << 20),
            cpu_millis: limits.cpu_millis,
            pids_max: limits.pids_max,
        };
        self.cgroup.set_limits(&l).map_err(|e| SandboxError::Setup(e.to_string()))
    }
}

impl Drop for ContainerInstance {
    fn drop(&mut self) {
        self.destroy();
    }
}
