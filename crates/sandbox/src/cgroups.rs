//! cgroups behind a narrow trait: one `CgroupFs` seam over the kernel's files (a recording
//! fake in tests), hierarchy detection from an injectable root path, and the v1 and v2
//! layouts of the same five jobs — limit (memory, cpu, pids), freeze/thaw, kill, peak memory,
//! CPU time used.
//!
//! Why files and not a crate: the whole interface is a dozen writes, and both layouts must be
//! testable without root (see DESIGN.md's dependency table).
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups: {0}")]
    Unavailable(String),
    #[error("cgroups: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

/// The only operations cgroup code performs on the kernel.
pub trait CgroupFs: Send + Sync + 'static {
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    fn read(&self, path: &Path) -> io::Result<String>;
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Names of the sub-directories (child cgroups) of `path`.
    fn subdirs(&self, path: &Path) -> Vec<String>;
}

/// The real kernel interface.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostFs;

impl CgroupFs for HostFs {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        std::fs::write(path, value)
    }
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        match std::fs::create_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn subdirs(&self, path: &Path) -> Vec<String> {
        std::fs::read_dir(path)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A fake that records every operation and serves reads from a map: tests assert on the
/// exact writes each layout makes, without root or a real hierarchy.
#[derive(Debug, Default)]
pub struct RecordingFs {
    pub files: Mutex<BTreeMap<PathBuf, String>>,
    pub dirs: Mutex<Vec<PathBuf>>,
    pub ops: Mutex<Vec<String>>,
    /// Writes to these paths fail once with the given errno (then succeed).
    pub fail_once: Mutex<BTreeMap<PathBuf, i32>>,
}

impl RecordingFs {
    pub fn with_files(files: &[(&str, &str)]) -> RecordingFs {
        let fs = RecordingFs::default();
        for (p, v) in files {
            fs.files.lock().insert(PathBuf::from(p), v.to_string());
        }
        fs
    }
    pub fn writes(&self) -> Vec<String> {
        self.ops.lock().iter().filter(|o| o.starts_with("write ")).cloned().collect()
    }
}

impl CgroupFs for RecordingFs {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        if let Some(errno) = self.fail_once.lock().remove(path) {
            self.ops.lock().push(format!("failed {} {}", path.display(), value));
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.ops.lock().push(format!("write {} {}", path.display(), value));
        self.files.lock().insert(path.to_path_buf(), value.to_string());
        Ok(())
    }
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files.lock().get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.ops.lock().push(format!("mkdir {}", path.display()));
        self.dirs.lock().push(path.to_path_buf());
        Ok(())
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.ops.lock().push(format!("rmdir {}", path.display()));
        self.dirs.lock().retain(|d| d != path);
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.files.lock().contains_key(path) || self.dirs.lock().iter().any(|d| d == path)
    }
    fn subdirs(&self, path: &Path) -> Vec<String> {
        let dirs = self.dirs.lock();
        dirs.iter()
            .filter(|d| d.parent() == Some(path))
            .filter_map(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The controllers a sandbox needs.
pub const REQUIRED_CONTROLLERS: [&str; 4] = ["memory", "cpu", "pids", "freezer"];

/// v1 controllers used when mounted, never required: `cpuacct` only measures (CPU time for
/// usage records). When it is co-mounted with `cpu` (`cpu,cpuacct`), the `cpu` directory
/// already carries `cpuacct.usage`, so it is not listed a second time.
pub const OPTIONAL_V1_CONTROLLERS: [&str; 1] = ["cpuacct"];

/// Where this process's cgroups live, found from `/proc/self/mountinfo` and `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One directory per controller (cgroup v1, including hybrid hosts where a controller-less
    /// cgroup2 is mounted beside the v1 hierarchies).
    V1 { controllers: BTreeMap<String, PathBuf> },
    /// The unified hierarchy: one directory, this process's own cgroup in it.
    V2 { own: PathBuf, mount: PathBuf },
}

impl Hierarchy {
    pub fn version(&self) -> CgroupVersion {
        match self {
            Hierarchy::V1 { .. } => CgroupVersion::V1,
            Hierarchy::V2 { .. } => CgroupVersion::V2,
        }
    }
}

/// Detects the hierarchy as seen from `root` (`/` on a real host; a fixture tree in tests).
/// v1 wins when every required controller is mounted as v1 (hybrid hosts); otherwise the
/// unified hierarchy must carry them.
pub fn detect(root: &Path, fs: &dyn CgroupFs) -> Result<Hierarchy, CgroupError> {
    let mountinfo_path = root.join("proc/self/mountinfo");
    let mountinfo = fs.read(&mountinfo_path).map_err(io_err(&mountinfo_path))?;
    let cgroup_path = root.join("proc/self/cgroup");
    let membership = fs.read(&cgroup_path).map_err(io_err(&cgroup_path))?;
    let under_root = |p: &str| root.join(p.trim_start_matches('/'));

    let mut v1_mounts: BTreeMap<String, String> = BTreeMap::new();
    let mut v2_mount: Option<String> = None;
    for line in mountinfo.lines() {
        // "36 25 0:32 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory"
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mount_point = left.split_whitespace().nth(4).unwrap_or_default();
        let mut r = right.split_whitespace();
        let (fstype, _src, opts) = (r.next().unwrap_or(""), r.next(), r.next().unwrap_or(""));
        match fstype {
            "cgroup" => {
                for opt in opts.split(',') {
                    if REQUIRED_CONTROLLERS.contains(&opt) || OPTIONAL_V1_CONTROLLERS.contains(&opt) {
                        v1_mounts.insert(opt.to_string(), mount_point.to_string());
                    }
                }
            }
            "cgroup2" if v2_mount.is_none() => v2_mount = Some(mount_point.to_string()),
            _ => {}
        }
    }
    let mut own_v1: BTreeMap<String, String> = BTreeMap::new();
    let mut own_v2: Option<String> = None;
    for line in membership.lines() {
        // "4:memory:/a/b" (v1) or "0::/a/b" (v2)
        let mut parts = line.splitn(3, ':');
        let (_id, ctrls, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        if ctrls.is_empty() {
            own_v2 = Some(path.to_string());
        }
        for c in ctrls.split(',') {
            own_v1.insert(c.to_string(), path.to_string());
        }
    }

    if REQUIRED_CONTROLLERS.iter().all(|c| v1_mounts.contains_key(*c)) {
        let separate_optional = OPTIONAL_V1_CONTROLLERS
            .iter()
            .filter(|c| v1_mounts.get(**c).is_some_and(|m| m != &v1_mounts["cpu"]));
        let controllers = REQUIRED_CONTROLLERS
            .iter()
            .chain(separate_optional)
            .map(|c| {
                let own = own_v1.get(*c).map(String::as_str).unwrap_or("/");
                (c.to_string(), under_root(&v1_mounts[*c]).join(own.trim_start_matches('/')))
            })
            .collect();
        return Ok(Hierarchy::V1 { controllers });
    }
    let Some(mount) = v2_mount else {
        let missing: Vec<_> = REQUIRED_CONTROLLERS.iter().filter(|c| !v1_mounts.contains_key(**c)).collect();
        return Err(CgroupError::Unavailable(format!(
            "no cgroup2 mount and no v1 hierarchy for {missing:?} in /proc/self/mountinfo"
        )));
    };
    let mount = under_root(&mount);
    let available_path = mount.join("cgroup.controllers");
    let available = fs.read(&available_path).map_err(io_err(&available_path))?;
    // The freezer is core in v2 (cgroup.freeze), not a controller.
    let missing: Vec<_> = ["memory", "cpu", "pids"]
        .into_iter()
        .filter(|c| !available.split_whitespace().any(|a| a == *c))
        .collect();
    if !missing.is_empty() {
        return Err(CgroupError::Unavailable(format!(
            "cgroup2 at {} lacks controllers {missing:?} (they may be bound to a v1 hierarchy)",
            mount.display()
        )));
    }
    let own = own_v2.unwrap_or_else(|| "/".into());
    Ok(Hierarchy::V2 { own: mount.join(own.trim_start_matches('/')), mount })
}

/// Resource limits a cgroup enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_bytes: Option<u64>,
    /// Hard CPU cap in thousandths of a CPU (1,000 = one full vCPU).
    pub cpu_millis: Option<u64>,
    pub pids_max: Option<u64>,
}

/// CFS period for CPU quotas (the kernel default).
const CPU_PERIOD_US: u64 = 100_000;

/// The parent under which every sandbox's cgroup is created, prepared once per server.
pub struct Cgroups {
    fs: Arc<dyn CgroupFs>,
    hierarchy: Hierarchy,
    /// `nimbus-<pid>` directories (one per v1 controller, one for v2) sandboxes live under.
    parents: Vec<PathBuf>,
}

impl std::fmt::Debug for Cgroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroups").field("hierarchy", &self.hierarchy).field("parents", &self.parents).finish()
    }
}

impl Cgroups {
    /// Creates this server's parent cgroups. On v2 the controllers are delegated to a
    /// `nimbus-<id>` subtree; if the server's own cgroup holds processes (the "no internal
    /// processes" rule), the server first moves itself into a `server` leaf.
    pub fn prepare(
        fs: Arc<dyn CgroupFs>,
        mut hierarchy: Hierarchy,
        id: &str,
    ) -> Result<Cgroups, CgroupError> {
        let name = format!("nimbus-{id}");
        remove_stale(fs.as_ref(), &hierarchy);
        let parents = match &mut hierarchy {
            Hierarchy::V1 { controllers } => {
                let mut parents = Vec::new();
                let mut unusable = Vec::new();
                for (controller, dir) in controllers.iter() {
                    let p = dir.join(&name);
                    match fs.create_dir(&p) {
                        Ok(()) => parents.push(p),
                        // A measuring-only controller we cannot use costs CPU figures, not sandboxes.
                        Err(_) if OPTIONAL_V1_CONTROLLERS.contains(&controller.as_str()) => {
                            unusable.push(controller.clone())
                        }
                        Err(e) => return Err(io_err(&p)(e)),
                    }
                }
                for c in unusable {
                    controllers.remove(&c);
                }
                parents
            }
            Hierarchy::V2 { own, .. } => {
                // Delegate what the hierarchy offers (detect() insists on all three for real
                // use; a controller-less v2 mount still gives freeze and kill).
                let offered =
                    fs.read(&own.join("cgroup.controllers")).unwrap_or_else(|_| "memory cpu pids".into());
                let enable: Vec<String> = ["memory", "cpu", "pids"]
                    .into_iter()
                    .filter(|c| offered.split_whitespace().any(|o| o == *c))
                    .map(|c| format!("+{c}"))
                    .collect();
                let enable = enable.join(" ");
                let control = own.join("cgroup.subtree_control");
                if enable.is_empty() {
                    let p = own.join(&name);
                    fs.create_dir(&p).map_err(io_err(&p))?;
                    return Ok(Cgroups { fs, hierarchy, parents: vec![p] });
                }
                let enable = enable.as_str();
                if let Err(e) = fs.write(&control, enable) {
                    // EBUSY: `own` has member processes; move ours into a leaf, then retry.
                    if e.raw_os_error() != Some(16) {
                        return Err(io_err(&control)(e));
                    }
                    let leaf = own.join(format!("{name}-server"));
                    fs.create_dir(&leaf).map_err(io_err(&leaf))?;
                    let procs = leaf.join("cgroup.procs");
                    fs.write(&procs, &std::process::id().to_string()).map_err(io_err(&procs))?;
                    fs.write(&control, enable).map_err(io_err(&control))?;
                }
                let p = own.join(&name);
                fs.create_dir(&p).map_err(io_err(&p))?;
                let sub = p.join("cgroup.subtree_control");
                fs.write(&sub, enable).map_err(io_err(&sub))?;
                vec![p]
            }
        };
        Ok(Cgroups { fs, hierarchy, parents })
    }

    pub fn version(&self) -> CgroupVersion {
        self.hierarchy.version()
    }

    pub fn describe(&self) -> String {
        match &self.hierarchy {
            Hierarchy::V1 { .. } => "cgroup v1 (memory, cpu, pids, freezer)".into(),
            Hierarchy::V2 { mount, .. } => format!("cgroup v2 at {}", mount.display()),
        }
    }

    /// Creates one sandbox's cgroup with `limits` applied.
    pub fn create(self: &Arc<Self>, name: &str, limits: &CgroupLimits) -> Result<Cgroup, CgroupError> {
        let dirs: Vec<PathBuf> = match &self.hierarchy {
            Hierarchy::V1 { controllers } => {
                controllers.keys().zip(&self.parents).map(|(_, p)| p.join(name)).collect()
            }
            Hierarchy::V2 { .. } => vec![self.parents[0].join(name)],
        };
        for d in &dirs {
            self.fs.create_dir(d).map_err(io_err(d))?;
        }
        let cg = Cgroup { owner: self.clone(), dirs };
        if let Err(e) = cg.set_limits(limits) {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    /// Creates a cgroup that holds other sandboxes' cgroups (`create_in`), its limits binding
    /// them together (an ECS task's size). On v2 its controllers are delegated to its children.
    pub fn create_group(self: &Arc<Self>, name: &str, limits: &CgroupLimits) -> Result<Cgroup, CgroupError> {
        let group = self.create(name, limits)?;
        if let Hierarchy::V2 { .. } = &self.hierarchy {
            // The same controllers the server's parent delegates.
            let offered = self.fs.read(&self.parents[0].join("cgroup.subtree_control")).unwrap_or_default();
            let enable: Vec<String> = offered.split_whitespace().map(|c| format!("+{c}")).collect();
            if !enable.is_empty() {
                let sub = group.dirs[0].join("cgroup.subtree_control");
                if let Err(e) = self.fs.write(&sub, &enable.join(" ")) {
                    group.remove();
                    return Err(io_err(&sub)(e));
                }
            }
        }
        Ok(group)
    }

    /// Creates one sandbox's cgroup inside `group` (from `create_group`).
    pub fn create_in(
        self: &Arc<Self>,
        group: &Cgroup,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<Cgroup, CgroupError> {
        let dirs: Vec<PathBuf> = group.dirs.iter().map(|d| d.join(name)).collect();
        for d in &dirs {
            self.fs.create_dir(d).map_err(io_err(d))?;
        }
        let cg = Cgroup { owner: self.clone(), dirs };
        if let Err(e) = cg.set_limits(limits) {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn controller_dir<'a>(&self, dirs: &'a [PathBuf], controller: &str) -> Option<&'a PathBuf> {
        match &self.hierarchy {
            Hierarchy::V1 { controllers } => {
                controllers.keys().position(|c| c == controller).map(|i| &dirs[i])
            }
            Hierarchy::V2 { .. } => dirs.first(),
        }
    }

    /// Removes this server's parent cgroups (at shutdown; children must be gone).
    pub fn remove_parents(&self) {
        for p in &self.parents {
            let _ = self.fs.remove_dir(p);
        }
    }
}

/// Removes the cgroups of servers that are gone (`nimbus-<pid>` whose pid no longer runs):
/// a `kill -9`ed server cannot clean up, and its sandboxes died with it (PDEATHSIG).
fn remove_stale(fs: &dyn CgroupFs, hierarchy: &Hierarchy) {
    let bases: Vec<&PathBuf> = match hierarchy {
        Hierarchy::V1 { controllers } => controllers.values().collect(),
        Hierarchy::V2 { own, .. } => vec![own],
    };
    for base in bases {
        for name in fs.subdirs(base) {
            let Some(pid) = name.strip_prefix("nimbus-").and_then(|r| r.split('-').next()) else { continue };
            let Ok(pid) = pid.parse::<u32>() else { continue };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let dir = base.join(&name);
            for child in fs.subdirs(&dir) {
                // A group (an ECS task) holds its members one level further down.
                for member in fs.subdirs(&dir.join(&child)) {
                    let _ = fs.remove_dir(&dir.join(&child).join(member));
                }
                let _ = fs.remove_dir(&dir.join(child));
            }
            let _ = fs.remove_dir(&dir);
        }
    }
}

/// One sandbox's cgroup (a directory per v1 controller, or one v2 directory).
pub struct Cgroup {
    owner: Arc<Cgroups>,
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    pub fn path(&self) -> &Path {
        &self.dirs[0]
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        let Some(dir) = self.owner.controller_dir(&self.dirs, controller) else { return Ok(()) };
        let p = dir.join(file);
        self.owner.fs.write(&p, value).map_err(io_err(&p))
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        let dir = self.owner.controller_dir(&self.dirs, controller)?;
        self.owner.fs.read(&dir.join(file)).ok()
    }

    fn has(&self, controller: &str, file: &str) -> bool {
        self.owner.controller_dir(&self.dirs, controller).is_some_and(|d| self.owner.fs.exists(&d.join(file)))
    }

    /// Applies (or changes) limits.
    pub fn set_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let v1 = self.owner.version() == CgroupVersion::V1;
        if let Some(bytes) = limits.memory_bytes {
            if v1 {
                self.write("memory", "memory.limit_in_bytes", &bytes.to_string())?;
                // No swap beyond the limit, where the kernel accounts it.
                if self.has("memory", "memory.memsw.limit_in_bytes") {
                    self.write("memory", "memory.memsw.limit_in_bytes", &bytes.to_string())?;
                }
            } else {
                self.write("memory", "memory.max", &bytes.to_string())?;
                if self.has("memory", "memory.swap.max") {
                    self.write("memory", "memory.swap.max", "0")?;
                }
            }
        }
        if let Some(millis) = limits.cpu_millis {
            let quota = (CPU_PERIOD_US * millis / 1000).max(1000);
            if v1 {
                self.write("cpu", "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                self.write("cpu", "cpu.cfs_quota_us", &quota.to_string())?;
                // Shares in proportion too, so contention splits the same way as the caps.
                self.write("cpu", "cpu.shares", &(1024 * millis / 1000).max(2).to_string())?;
            } else {
                self.write("cpu", "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
                self.write("cpu", "cpu.weight", &(100 * millis / 1000).clamp(1, 10_000).to_string())?;
            }
        }
        if let Some(n) = limits.pids_max {
            self.write("pids", "pids.max", &n.to_string())?;
        }
        Ok(())
    }

    /// Lifts the CPU cap (used while a runtime initialises).
    pub fn clear_cpu_limit(&self) -> Result<(), CgroupError> {
        if self.owner.version() == CgroupVersion::V1 {
            self.write("cpu", "cpu.cfs_quota_us", "-1")
        } else {
            self.write("cpu", "cpu.max", &format!("max {CPU_PERIOD_US}"))
        }
    }

    /// The `cgroup.procs` files a process writes `0` into to join this cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.owner.version() {
            CgroupVersion::V1 => self.write("freezer", "freezer.state", "FROZEN"),
            CgroupVersion::V2 => self.write("freezer", "cgroup.freeze", "1"),
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.owner.version() {
            CgroupVersion::V1 => self.write("freezer", "freezer.state", "THAWED"),
            CgroupVersion::V2 => self.write("freezer", "cgroup.freeze", "0"),
        }
    }

    /// Whether every process in the cgroup is frozen.
    pub fn is_frozen(&self) -> bool {
        match self.owner.version() {
            CgroupVersion::V1 => self.read("freezer", "freezer.state").is_some_and(|s| s.trim() == "FROZEN"),
            CgroupVersion::V2 => self
                .read("freezer", "cgroup.events")
                .is_some_and(|s| s.lines().any(|l| l.trim() == "frozen 1")),
        }
    }

    /// Peak memory of everything in the cgroup, in bytes (what REPORT's Max Memory Used shows).
    pub fn memory_peak(&self) -> u64 {
        let file = match self.owner.version() {
            CgroupVersion::V1 => "memory.max_usage_in_bytes",
            CgroupVersion::V2 if self.has("memory", "memory.peak") => "memory.peak",
            CgroupVersion::V2 => "memory.current",
        };
        self.read("memory", file).and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }

    /// CPU time (user + system) consumed by everything in the cgroup so far, in nanoseconds:
    /// v1 `cpuacct.usage` (the `cpuacct` directory, or the `cpu` one when co-mounted), v2
    /// `cpu.stat`'s `usage_usec`. 0 where the kernel does not account it.
    pub fn cpu_usage_ns(&self) -> u64 {
        match self.owner.version() {
            CgroupVersion::V1 => ["cpuacct", "cpu"]
                .into_iter()
                .find_map(|c| self.read(c, "cpuacct.usage"))
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            CgroupVersion::V2 => self
                .read("cpu", "cpu.stat")
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix("usage_usec ").and_then(|v| v.trim().parse::<u64>().ok())
                    })
                })
                .map_or(0, |us| us.saturating_mul(1000)),
        }
    }

    /// Host pids of every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        self.read("pids", "cgroup.procs")
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process in the cgroup: `cgroup.kill` on v2; on v1, SIGKILL to each member
    /// then a thaw, because frozen v1 tasks cannot die until thawed.
    pub fn kill_all(&self) {
        if self.owner.version() == CgroupVersion::V2 && self.has("freezer", "cgroup.kill") {
            let _ = self.write("freezer", "cgroup.kill", "1");
            return;
        }
        for pid in self.pids() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.thaw();
    }

    /// Removes the cgroup's directories; fails (and may be retried) while members remain.
    pub fn remove(&self) -> bool {
        let mut all = true;
        for d in &self.dirs {
            if self.owner.fs.exists(d) && self.owner.fs.remove_dir(d).is_err() {
                all = false;
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "8:pids:/\n6:freezer:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
    /// The v2 layout against a real cgroup2 mount (on hybrid hosts, the controller-less
    /// `/sys/fs/cgroup/unified`): membership, freeze/thaw with `cgroup.events`, kill, removal.
    #[test]
    fn v2_freezes_and_kills_on_a_real_cgroup2_mount() {
        let root_ok =
            std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
        let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].into_iter().map(PathBuf::from).find(|m| {
            m.join("cgroup.freeze").exists()
                || m.join("cgroup.procs").exists() && m.join("cgroup.controllers").exists()
        });
        let (true, Some(mount)) = (root_ok, mount) else {
            eprintln!("skipping: needs root and a cgroup2 mount");
            return;
        };
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string)))
            .unwrap_or_else(|| "/".into());
        let own = mount.join(own.trim_start_matches('/'));
        let hierarchy = Hierarchy::V2 { own, mount };
        let cgs = match Cgroups::prepare(Arc::new(HostFs), hierarchy, &format!("test-{}", std::process::id()))
        {
            Ok(c) => Arc::new(c),
            Err(e) => {
                eprintln!("skipping: cannot create a v2 cgroup here: {e}");
                return;
            }
        };
        let cg = cgs.create("sleeper", &CgroupLimits::default()).unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        std::fs::write(&cg.procs_files()[0], child.id().to_string()).unwrap();
        assert_eq!(cg.pids(), vec![child.id() as i32]);
        cg.freeze().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !cg.is_frozen() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(cg.is_frozen(), "cgroup.events reports frozen 1");
        cg.thaw().unwrap();
        assert!(!cg.is_frozen());
        cg.kill_all();
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
        assert!(cg.remove(), "empty cgroup removed");
        cgs.remove_parents();
    }

    const V2_MOUNTINFO: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn detects_hybrid_as_v1_with_own_paths() {
        let fs = RecordingFs::with_files(&[
            ("/r/proc/self/mountinfo", HYBRID_MOUNTINFO),
            ("/r/proc/self/cgroup", HYBRID_CGROUP),
        ]);
        let h = detect(Path::new("/r"), &fs).unwrap();
        let Hierarchy::V1 { controllers } = h else { panic!("{h:?}") };
        assert_eq!(controllers["memory"], PathBuf::from("/r/sys/fs/cgroup/memory/process_api/abc"));
        assert_eq!(controllers["freezer"], PathBuf::from("/r/sys/fs/cgroup/freezer"));
        assert_eq!(controllers.len(), 4);
    }

    #[test]
    fn detects_v2_and_requires_its_controllers() {
        let files = [
            ("/r/proc/self/mountinfo", V2_MOUNTINFO),
            ("/r/proc/self/cgroup", "0::/user.slice/session-1.scope\n"),
            ("/r/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n"),
        ];
        let fs = RecordingFs::with_files(&files);
        let h = detect(Path::new("/r"), &fs).unwrap();
        assert_eq!(
            h,
            Hierarchy::V2 {
                own: "/r/sys/fs/cgroup/user.slice/session-1.scope".into(),
                mount: "/r/sys/fs/cgroup".into()
            }
        );
        let fs =
            RecordingFs::with_files(&[files[0], files[1], ("/r/sys/fs/cgroup/cgroup.controllers", "io\n")]);
        let err = detect(Path::new("/r"), &fs).unwrap_err().to_string();
        assert!(err.contains("lacks controllers"), "{err}");
        let fs = RecordingFs::with_files(&[("/r/proc/self/mountinfo", ""), ("/r/proc/self/cgroup", "")]);
        assert!(detect(Path::new("/r"), &fs).is_err());
    }

    fn v2() -> Hierarchy {
        Hierarchy::V2 { own: "/cg/app".into(), mount: "/cg".into() }
    }

    #[test]
    fn v2_limits_freeze_peak_and_kill() {
        // memory.peak is present: `exists` sees files in the map.
        let fs = Arc::new(RecordingFs::with_files(&[("/cg/app/nimbus-1/env/memory.peak", "4096\n")]));
        let cgs = Arc::new(Cgroups::prepare(fs.clone(), v2(), "1").unwrap());
        let limits =
            CgroupLimits { memory_bytes: Some(128 << 20), cpu_millis: Some(72), pids_max: Some(1024) };
        let cg = cgs.create("env", &limits).unwrap();
        cg.freeze().unwrap();
        cg.thaw().unwrap();
        assert_eq!(cg.memory_peak(), 4096);
        assert_eq!(cg.procs_files(), vec![PathBuf::from("/cg/app/nimbus-1/env/cgroup.procs")]);
        assert_eq!(
            fs.writes(),
            vec![
                "write /cg/app/cgroup.subtree_control +memory +cpu +pids",
                "write /cg/app/nimbus-1/cgroup.subtree_control +memory +cpu +pids",
                "write /cg/app/nimbus-1/env/memory.max 134217728",
                "write /cg/app/nimbus-1/env/cpu.max 7200 100000",
                "write /cg/app/nimbus-1/env/cpu.weight 7",
                "write /cg/app/nimbus-1/env/pids.max 1024",
                "write /cg/app/nimbus-1/env/cgroup.freeze 1",
                "write /cg/app/nimbus-1/env/cgroup.freeze 0",
            ]
        );
    }

    #[test]
    fn v2_cpu_usage_comes_from_cpu_stat_usage_usec() {
        let fs = Arc::new(RecordingFs::default());
        let cgs = Arc::new(Cgroups::prepare(fs.clone(), v2(), "1").unwrap());
        let cg = cgs.create("env", &CgroupLimits::default()).unwrap();
        assert_eq!(cg.cpu_usage_ns(), 0, "no cpu.stat: unmeasured");
        fs.files.lock().insert(
            "/cg/app/nimbus-1/env/cpu.stat".into(),
            "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 0\n".into(),
        );
        assert_eq!(cg.cpu_usage_ns(), 1_234_567_000);
    }

    fn hybrid_with(extra_mount: &str, cgroup: &str) -> RecordingFs {
        RecordingFs::with_files(&[
            ("/r/proc/self/mountinfo", &format!("{HYBRID_MOUNTINFO}{extra_mount}")),
            ("/r/proc/self/cgroup", cgroup),
        ])
    }

    #[test]
    fn v1_cpu_usage_reads_a_separate_cpuacct_hierarchy() {
        // This host's layout: cpuacct mounted on its own beside cpu.
        let fs = hybrid_with(
            "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n",
            &format!("2:cpuacct:/\n{HYBRID_CGROUP}"),
        );
        let h = detect(Path::new("/r"), &fs).unwrap();
        let Hierarchy::V1 { controllers } = &h else { panic!("{h:?}") };
        assert_eq!(controllers["cpuacct"], PathBuf::from("/r/sys/fs/cgroup/cpuacct"));
        assert_eq!(controllers.len(), 5);
        let fs = Arc::new(fs);
        let cgs = Arc::new(Cgroups::prepare(fs.clone(), h, "7").unwrap());
        let cg = cgs.create("e", &CgroupLimits::default()).unwrap();
        assert!(
            cg.procs_files().contains(&PathBuf::from("/r/sys/fs/cgroup/cpuacct/nimbus-7/e/cgroup.procs")),
            "sandboxes join the cpuacct hierarchy too: {:?}",
            cg.procs_files()
        );
        assert_eq!(cg.path(), Path::new("/r/sys/fs/cgroup/cpu/nimbus-7/e"), "path() is unchanged");
        assert_eq!(cg.cpu_usage_ns(), 0);
        fs.files
            .lock()
            .insert("/r/sys/fs/cgroup/cpuacct/nimbus-7/e/cpuacct.usage".into(), "987654321\n".into());
        assert_eq!(cg.cpu_usage_ns(), 987_654_321);
    }

    #[test]
    fn v1_cpu_usage_reads_the_cpu_directory_when_cpuacct_is_co_mounted() {
        let mountinfo = HYBRID_MOUNTINFO.replace(
            "/sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
            "/sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n",
        );
        let fs = RecordingFs::with_files(&[
            ("/r/proc/self/mountinfo", &mountinfo),
            ("/r/proc/self/cgroup", &HYBRID_CGROUP.replace("1:cpu:/", "1:cpu,cpuacct:/")),
        ]);
        let h = detect(Path::new("/r"), &fs).unwrap();
        let Hierarchy::V1 { controllers } = &h else { panic!("{h:?}") };
        assert_eq!(controllers.len(), 4, "co-mounted cpuacct is not a second directory: {controllers:?}");
        assert_eq!(controllers["cpu"], PathBuf::from("/r/sys/fs/cgroup/cpu,cpuacct"));
        let fs = Arc::new(fs);
        let cgs = Arc::new(Cgroups::prepare(fs.clone(), h, "7").unwrap());
        let cg = cgs.create("e", &CgroupLimits::default()).unwrap();
        assert_eq!(cg.procs_files().len(), 4);
        fs.files
            .lock()
            .insert("/r/sys/fs/cgroup/cpu,cpuacct/nimbus-7/e/cpuacct.usage".into(), "5000\n".into());
        assert_eq!(cg.cpu_usage_ns(), 5000);
    }

    #[test]
    fn an_unusable_cpuacct_hierarchy_costs_cpu_figures_not_sandboxes() {
        struct NoCpuacct(RecordingFs);
        impl CgroupFs for NoCpuacct {
            fn write(&self, p: &Path, v: &str) -> io::Result<()> {
                self.0.write(p, v)
            }
            fn read(&self, p: &Path) -> io::Result<String> {
                self.0.read(p)
            }
            fn create_dir(&self, p: &Path) -> io::Result<()> {
                if p.starts_with("/sys/fs/cgroup/cpuacct") {
                    return Err(io::Error::from_raw_os_error(13));
                }
                self.0.create_dir(p)
            }
            fn remove_dir(&self, p: &Path) -> io::Result<()> {
                self.0.remove_dir(p)
            }
            fn exists(&self, p: &Path) -> bool {
                self.0.exists(p)
            }
            fn subdirs(&self, p: &Path) -> Vec<String> {
                self.0.subdirs(p)
            }
        }
        let controllers: BTreeMap<String, PathBuf> = ["memory", "cpu", "cpuacct", "pids", "freezer"]
            .iter()
            .map(|c| (c.to_string(), PathBuf::from(format!("/sys/fs/cgroup/{c}"))))
            .collect();
        let cgs = Arc::new(
            Cgroups::prepare(Arc::new(NoCpuacct(RecordingFs::default())), Hierarchy::V1 { controllers }, "7")
                .unwrap(),
        );
        let cg = cgs.create("e", &CgroupLimits::default()).unwrap();
        assert_eq!(cg.procs_files().len(), 4);
        assert_eq!(cg.cpu_usage_ns(), 0);
        let controllers: BTreeMap<String, PathBuf> = ["memory", "cpu", "pids", "freezer"]
            .iter()
            .map(|c| (c.to_string(), PathBuf::from(format!("/sys/fs/cgroup/{c}"))))
            .collect();
        let failing = NoCpuacct(RecordingFs::default());
        let mut bad = controllers;
        bad.insert("memory".into(), "/sys/fs/cgroup/cpuacct/memory".into());
        assert!(
            Cgroups::prepare(Arc::new(failing), Hierarchy::V1 { controllers: bad }, "7").is_err(),
            "required ones still fail"
        );
    }

    #[test]
    fn v2_moves_the_server_into_a_leaf_when_its_cgroup_holds_processes() {
        let fs = Arc::new(RecordingFs::default());
        fs.fail_once.lock().insert("/cg/app/cgroup.subtree_control".into(), 16);
        Cgroups::prepare(fs.clone(), v2(), "9").unwrap();
        let pid = std::process::id();
        assert_eq!(
            fs.ops.lock().clone(),
            vec![
                "failed /cg/app/cgroup.subtree_control +memory +cpu +pids".to_string(),
                "mkdir /cg/app/nimbus-9-server".into(),
                format!("write /cg/app/nimbus-9-server/cgroup.procs {pid}"),
                "write /cg/app/cgroup.subtree_control +memory +cpu +pids".into(),
                "mkdir /cg/app/nimbus-9".into(),
                "write /cg/app/nimbus-9/cgroup.subtree_control +memory +cpu +pids".into(),
            ]
        );
    }

    #[test]
    fn stale_cgroups_of_dead_servers_are_removed() {
        let fs = Arc::new(RecordingFs::default());
        let me = std::process::id();
        for d in ["/cg/app/nimbus-999999999", "/cg/app/nimbus-999999999/sb-1", "/cg/app/other"] {
            fs.create_dir(Path::new(d)).unwrap();
        }
        fs.create_dir(Path::new(&format!("/cg/app/nimbus-{me}-server"))).unwrap();
        Cgroups::prepare(fs.clone(), v2(), "x").unwrap();
        let dirs = fs.dirs.lock().clone();
        assert!(!dirs.contains(&PathBuf::from("/cg/app/nimbus-999999999")), "{dirs:?}");
        assert!(!dirs.contains(&PathBuf::from("/cg/app/nimbus-999999999/sb-1")));
        assert!(dirs.contains(&PathBuf::from("/cg/app/other")));
        assert!(dirs.contains(&PathBuf::from(format!("/cg/app/nimbus-{me}-server"))), "live server kept");
    }

    #[test]
    fn v1_writes_each_controller_and_thaws_after_kill() {
        let controllers: BTreeMap<String, PathBuf> = REQUIRED_CONTROLLERS
            .iter()
            .map(|c| (c.to_string(), PathBuf::from(format!("/sys/fs/cgroup/{c}"))))
            .collect();
        let fs = Arc::new(RecordingFs::default());
        let cgs = Arc::new(Cgroups::prepare(fs.clone(), Hierarchy::V1 { controllers }, "7").unwrap());
        let cg = cgs
            .create(
                "e",
                &CgroupLimits { memory_bytes: Some(1 << 30), cpu_millis: Some(1000), pids_max: Some(64) },
            )
            .unwrap();
        cg.freeze().unwrap();
        cg.kill_all();
        assert_eq!(
            fs.writes(),
            vec![
                "write /sys/fs/cgroup/memory/nimbus-7/e/memory.limit_in_bytes 1073741824",
                "write /sys/fs/cgroup/cpu/nimbus-7/e/cpu.cfs_period_us 100000",
                "write /sys/fs/cgroup/cpu/nimbus-7/e/cpu.cfs_quota_us 100000",
                "write /sys/fs/cgroup/cpu/nimbus-7/e/cpu.shares 1024",
                "write /sys/fs/cgroup/pids/nimbus-7/e/pids.max 64",
                "write /sys/fs/cgroup/freezer/nimbus-7/e/freezer.state FROZEN",
                "write /sys/fs/cgroup/freezer/nimbus-7/e/freezer.state THAWED",
            ]
        );
        assert_eq!(cg.procs_files().len(), 4);
    }
}
