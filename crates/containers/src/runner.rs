//! Runs one task: images → rootfs per container, one network namespace per task (held by a
//! tiny "pause" sandbox, as AWS's awsvpc pause container), containers started in dependsOn
//! order, health checks, port forwarding, awslogs, then the stop sequence (SIGTERM, SIGKILL
//! after stopTimeout) and the task's STOPPED record.
//!
//! Health checks run as a separate sandbox joining the task's network namespace, on a fresh
//! overlay whose top lower layer is the container's own upper directory: the check sees the
//! image plus what the container wrote (a snapshot), and its writes go to a throw-away upper.
use crate::engine::{Control, EcsEngine, ImageFailure, PreparedImage, Scope, TaskUsage, now_ms};
use crate::types::*;
use nimbus_sandbox::{ExitStatus, FsView, ImageRoot, Instance, Limits, SandboxGroup, SandboxSpec};
use nimbus_store::LogEvent;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often a running task reports a usage period (and once more when it stops).
const USAGE_PERIOD: Duration = Duration::from_secs(60);

enum Event {
    Exited(usize, ExitStatus),
    Health(usize, bool),
}

/// One container while the task runs.
struct Slot {
    def: ContainerDefinition,
    image: Option<PreparedImage>,
    dir: PathBuf,
    instance: Option<Arc<dyn Instance>>,
    started_at: Option<Instant>,
    exited: Option<i32>,
    health: Option<HealthStatus>,
    failures: u32,
    log: Option<LogTarget>,
    checker: Option<JoinHandle<()>>,
    /// CPU time the container used (latest cgroup sample).
    cpu_ns: u64,
}

#[derive(Clone)]
struct LogTarget {
    scope: Arc<str>,
    group: Arc<str>,
    stream: Arc<str>,
}

struct Runner {
    engine: Arc<EcsEngine>,
    arn: String,
    task: Task,
    slots: Vec<Slot>,
    events_tx: mpsc::UnboundedSender<Event>,
    pause: Option<Arc<dyn Instance>>,
    /// Host pid whose network namespace is the task's (0 until known): the pause process,
    /// or for a one-container task the container itself.
    netns: Arc<AtomicU32>,
    /// Whether the task gets its own network namespace (bridge/awsvpc/none in an isolating backend).
    own_netns: bool,
    /// Whether the metadata endpoint is serving in the task's namespace.
    metadata: bool,
    forwarders: Vec<JoinHandle<()>>,
    host_ports: Vec<u16>,
    stopping: bool,
    running_since: Option<Instant>,
    peak_memory: u64,
    /// Running time already reported to the usage sink, and when.
    reported_ms: u64,
    reported_cpu_ns: u64,
    last_report: Instant,
    /// The task definition's volumes, and where each lives on the host.
    volumes: Vec<(Volume, PathBuf)>,
    /// The task size (task-level cpu/memory) as one limit over all its containers, where the
    /// backend can group sandboxes; last, so it drops after the containers.
    group: Option<Arc<dyn SandboxGroup>>,
}

pub(crate) async fn run(engine: Arc<EcsEngine>, arn: String, mut control: mpsc::UnboundedReceiver<Control>) {
    let Some(task) = engine.task(&arn) else { return };
    let scope = Scope::new(&task.account, &task.region);
    let Some(td) = engine.find_task_definition(&scope, &task.task_definition_arn) else {
        finish_unstarted(&engine, &arn, "TaskFailedToStart", "TaskDefinition not found.");
        return;
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let dir = engine.task_dir(&task.id);
    let slots = td
        .containers
        .iter()
        .map(|def| {
            let mut def = def.clone();
            if let Some(o) = task.overrides.container_overrides.iter().find(|o| o.name == def.name) {
                if let Some(cmd) = &o.command {
                    def.command = cmd.clone();
                }
                for (k, v) in &o.environment {
                    def.environment.retain(|(n, _)| n != k);
                    def.environment.push((k.clone(), v.clone()));
                }
                def.cpu = o.cpu.unwrap_or(def.cpu);
                def.memory = o.memory.or(def.memory);
                def.memory_reservation = o.memory_reservation.or(def.memory_reservation);
            }
            Slot {
                dir: dir.join(&def.name),
                health: def.health_check.as_ref().map(|_| HealthStatus::Unknown),
                def,
                image: None,
                instance: None,
                started_at: None,
                exited: None,
                failures: 0,
                log: None,
                checker: None,
                cpu_ns: 0,
            }
        })
        .collect();
    let mut r = Runner {
        engine: engine.clone(),
        arn: arn.clone(),
        task,
        slots,
        events_tx,
        pause: None,
        netns: Arc::new(AtomicU32::new(0)),
        own_netns: false,
        metadata: false,
        forwarders: Vec::new(),
        host_ports: Vec::new(),
        stopping: false,
        running_since: None,
        peak_memory: 0,
        reported_ms: 0,
        reported_cpu_ns: 0,
        last_report: Instant::now(),
        volumes: td
            .volumes
            .iter()
            .map(|v| {
                // Scratch volumes live in the task's directory (".volumes" cannot be a
                // container name), so they go when the task's directory does.
                let host = match &v.host_source_path {
                    Some(p) => PathBuf::from(p),
                    None => dir.join(".volumes").join(&v.name),
                };
                (v.clone(), host)
            })
            .collect(),
        group: None,
    };
    r.group = r.task_group();
    if let Err((code, reason)) = r.provision(&mut control).await {
        r.fail_start(&code, &reason);
    } else {
        r.drive(&mut events, &mut control).await;
    }
    r.finish().await;
}

/// A task that never got a runner state (its definition vanished).
fn finish_unstarted(engine: &Arc<EcsEngine>, arn: &str, code: &str, reason: &str) {
    let now = now_ms();
    engine.update_task(arn, |t| {
        t.last_status = "STOPPED".into();
        t.desired_status = "STOPPED".into();
        t.stop_code = Some(code.into());
        t.stopped_reason = Some(reason.into());
        t.stopping_ms.get_or_insert(now);
        t.stopped_ms = Some(now);
        t.execution_stopped_ms = Some(now);
        for c in &mut t.containers {
            c.last_status = "STOPPED".into();
        }
    });
    engine.live.lock().remove(arn);
    engine.wake.notify_one();
}

fn exit_code(s: ExitStatus) -> i32 {
    match s {
        ExitStatus::Code(c) => c,
        // Docker's convention: 128 + signal (137 for SIGKILL).
        ExitStatus::Signal(sig) => 128 + sig,
    }
}

impl Runner {
    fn update(&mut self, f: impl FnOnce(&mut Task)) {
        if let Some(t) = self.engine.update_task(&self.arn, f) {
            self.task = t;
        }
    }

    fn scope_str(&self) -> String {
        format!("{}:{}", self.task.account, self.task.region)
    }

    /// PROVISIONING → PENDING: images, rootfs, log groups, the task's network namespace.
    async fn provision(
        &mut self,
        control: &mut mpsc::UnboundedReceiver<Control>,
    ) -> Result<(), (String, String)> {
        let now = now_ms();
        self.update(|t| {
            t.last_status = "PENDING".into();
            t.pull_started_ms = Some(now);
            for a in &mut t.attachments {
                a.status = "ATTACHING".into();
            }
        });
        for i in 0..self.slots.len() {
            let images = self.engine.images.clone();
            let reference = self.slots[i].def.image.clone();
            let dir = self.slots[i].dir.join("rootfs");
            let prepared = tokio::task::spawn_blocking(move || {
                let _ = std::fs::create_dir_all(&dir);
                images.prepare(&reference, &dir)
            })
            .await
            .map_err(|e| ("TaskFailedToStart".to_string(), format!("CannotPullContainerError: {e}")))?;
            match prepared {
                Ok(p) => self.slots[i].image = Some(p),
                Err(ImageFailure::NotFound(what)) => {
                    let image = &self.slots[i].def.image;
                    return Err((
                        "TaskFailedToStart".into(),
                        format!(
                            "CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref {image}: {what}: not found"
                        ),
                    ));
                }
                Err(ImageFailure::Failed(why)) => {
                    return Err(("TaskFailedToStart".into(), format!("CannotPullContainerError: {why}")));
                }
            }
            if let Ok(Control::Stop { code, reason }) = control.try_recv() {
                return Err((code, reason));
            }
        }
        let digests: Vec<Option<String>> =
            self.slots.iter().map(|s| s.image.as_ref().map(|p| p.digest.clone())).collect();
        let now = now_ms();
        self.update(|t| {
            t.pull_stopped_ms = Some(now);
            for (c, d) in t.containers.iter_mut().zip(digests) {
                c.image_digest = d;
            }
        });
        // awslogs: the group must exist unless the task may create it (awslogs-create-group).
        let scope = self.scope_str();
        for i in 0..self.slots.len() {
            let Some(lc) = self.slots[i].def.log_configuration.clone() else { continue };
            if lc.log_driver != "awslogs" {
                continue;
            }
            let Some(group) = lc.options.get("awslogs-group").cloned() else {
                return Err((
                    "TaskFailedToStart".into(),
                    "ResourceInitializationError: failed to validate logger args: awslogs-group is required"
                        .into(),
                ));
            };
            let create =
                lc.options.get("awslogs-create-group").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let logs = self.engine.logs.clone();
            let exists = logs.group_exists(&scope, &group).unwrap_or(false);
            if !exists {
                if create {
                    let _ = logs.create_group(&scope, &group);
                } else {
                    return Err((
                        "TaskFailedToStart".into(),
                        "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 times: failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log group does not exist. : exit status 1".into(),
                    ));
                }
            }
            let stream = match lc.options.get("awslogs-stream-prefix") {
                Some(p) => format!("{p}/{}/{}", self.slots[i].def.name, self.task.id),
                None => self.task.id.clone(),
            };
            let _ = logs.create_stream(&scope, &group, &stream);
            self.slots[i].log =
                Some(LogTarget { scope: scope.clone().into(), group: group.into(), stream: stream.into() });
        }
        // One network namespace per task (bridge/awsvpc/none), held by a pause process so it
        // exists before any container (the metadata endpoint listens in it) and outlives each.
        self.own_netns = self.task.network_mode != NetworkMode::Host
            && self.engine.sandbox.capabilities().filesystem_isolation;
        if self.own_netns {
            let spec = SandboxSpec {
                program: PathBuf::from("/bin/sleep"),
                args: vec!["2147483647".into()],
                cwd: PathBuf::from("/"),
                env: vec![("PATH".into(), "/usr/bin:/bin".into())],
                limits: Limits { memory_mb: Some(16), pids_max: Some(4), ..Limits::default() },
                fs: FsView { tmp_mb: 1, ..FsView::default() },
                isolate_network: true,
                ..SandboxSpec::default()
            };
            let sandbox = self.engine.sandbox.clone();
            match tokio::task::spawn_blocking(move || sandbox.start(spec)).await {
                Ok(Ok(inst)) => {
                    let inst: Arc<dyn Instance> = Arc::from(inst);
                    self.netns.store(inst.inspect().pid, Ordering::SeqCst);
                    self.pause = Some(inst);
                }
                Ok(Err(e)) => {
                    return Err((
                        "TaskFailedToStart".into(),
                        format!("ResourceInitializationError: network namespace: {e}"),
                    ));
                }
                Err(e) => {
                    return Err(("TaskFailedToStart".into(), format!("ResourceInitializationError: {e}")));
                }
            }
        }
        // The task metadata endpoint lives in the task's namespace, up before any container.
        if let Some(pid) = self.netns_pid() {
            match crate::metadata::serve(self.engine.clone(), self.arn.clone(), pid).await {
                Ok(h) => {
                    self.forwarders.push(h);
                    self.metadata = true;
                }
                Err(e) => tracing::warn!("ecs: task metadata endpoint for {}: {e}", self.arn),
            }
        }
        self.setup_ports().await?;
        Ok(())
    }

    /// Host-side listeners for the task's port mappings.
    async fn setup_ports(&mut self) -> Result<(), (String, String)> {
        let task_ip = self
            .task
            .attachments
            .iter()
            .flat_map(|a| a.details.iter())
            .find(|(k, _)| k == "privateIPv4Address")
            .map(|(_, v)| v.clone());
        let mut bindings: Vec<Vec<NetworkBinding>> = vec![Vec::new(); self.slots.len()];
        let mappings: Vec<Vec<PortMapping>> =
            self.slots.iter().map(|s| s.def.port_mappings.clone()).collect();
        for (i, mine) in mappings.into_iter().enumerate() {
            for p in mine {
                match self.task.network_mode {
                    NetworkMode::Host => bindings[i].push(NetworkBinding {
                        bind_ip: "0.0.0.0".into(),
                        container_port: p.container_port,
                        host_port: p.container_port,
                        protocol: p.protocol.clone(),
                    }),
                    NetworkMode::None => {}
                    NetworkMode::Awsvpc => {
                        // Reachable at the task's own address, as an ENI's private IP.
                        if p.protocol != "tcp" {
                            continue;
                        }
                        let Some(ip) = task_ip.clone() else { continue };
                        let listener = tokio::net::TcpListener::bind((ip.as_str(), p.container_port))
                            .await
                            .map_err(|e| {
                            (
                                "TaskFailedToStart".to_string(),
                                format!("CannotStartContainerError: binding {ip}:{}: {e}", p.container_port),
                            )
                        })?;
                        self.spawn_forwarder(listener, p.container_port);
                    }
                    NetworkMode::Bridge => {
                        if p.protocol != "tcp" {
                            continue;
                        }
                        let (listener, host_port) = match p.host_port.filter(|h| *h != 0) {
                            Some(h) => {
                                let l = tokio::net::TcpListener::bind(("0.0.0.0", h)).await.map_err(|e| {
                                    (
                                        "TaskFailedToStart".to_string(),
                                        format!("CannotStartContainerError: Error response from daemon: driver failed programming external connectivity: Bind for 0.0.0.0:{h} failed: port is already allocated ({e})"),
                                    )
                                })?;
                                (l, h)
                            }
                            None => self.dynamic_port().await.ok_or_else(|| {
                                (
                                    "TaskFailedToStart".to_string(),
                                    "RESOURCE:PORTS: no free dynamic host port".to_string(),
                                )
                            })?,
                        };
                        self.host_ports.push(host_port);
                        self.spawn_forwarder(listener, p.container_port);
                        bindings[i].push(NetworkBinding {
                            bind_ip: "0.0.0.0".into(),
                            container_port: p.container_port,
                            host_port,
                            protocol: p.protocol.clone(),
                        });
                    }
                }
            }
        }
        self.update(|t| {
            for (c, b) in t.containers.iter_mut().zip(bindings) {
                c.network_bindings = b;
            }
        });
        Ok(())
    }

    /// A host port in Docker's ephemeral range 32768–60999 that no task holds and that binds.
    async fn dynamic_port(&self) -> Option<(tokio::net::TcpListener, u16)> {
        for _ in 0..200 {
            let port = fastrand::u16(32768..=60999);
            if !self.engine.ports.lock().insert(port) {
                continue;
            }
            match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
                Ok(l) => return Some((l, port)),
                Err(_) => {
                    self.engine.ports.lock().remove(&port);
                }
            }
        }
        None
    }

    fn netns_pid(&self) -> Option<u32> {
        let pid = self.netns.load(Ordering::SeqCst);
        (pid != 0).then_some(pid)
    }

    fn spawn_forwarder(&mut self, listener: tokio::net::TcpListener, container_port: u16) {
        let (netns, own) = (self.netns.clone(), self.own_netns);
        self.forwarders.push(tokio::spawn(async move {
            loop {
                let mut inbound = match listener.accept().await {
                    Ok((c, _)) => c,
                    Err(_) => {
                        // e.g. out of file descriptors: back off instead of spinning.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let pid = netns.load(Ordering::SeqCst);
                if own && pid == 0 {
                    // The container is not up yet: refuse, as a closed port would.
                    continue;
                }
                tokio::spawn(async move {
                    let outbound = match own.then_some(pid) {
                        Some(pid) => tokio::task::spawn_blocking(move || {
                            nimbus_sandbox::connect_in_netns(pid, container_port)
                        })
                        .await
                        .map_err(std::io::Error::other)
                        .and_then(|r| r)
                        .and_then(|s| {
                            s.set_nonblocking(true)?;
                            tokio::net::TcpStream::from_std(s)
                        }),
                        None => tokio::net::TcpStream::connect(("127.0.0.1", container_port)).await,
                    };
                    if let Ok(mut outbound) = outbound {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Starts containers whose dependencies are met; handles exits, health and stop requests.
    async fn drive(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        control: &mut mpsc::UnboundedReceiver<Control>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if !self.stopping {
                self.start_ready().await;
            }
            self.refresh_status();
            if self.slots.iter().all(|s| s.exited.is_some() || (s.instance.is_none() && self.stopping)) {
                return;
            }
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(Event::Exited(i, status)) => self.on_exit(i, status),
                    Some(Event::Health(i, ok)) => self.on_health(i, ok),
                    None => return,
                },
                c = control.recv() => match c {
                    Some(Control::Stop { code, reason }) => self.begin_stop(&code, &reason),
                    None => {}
                },
                _ = tick.tick() => {
                    self.sample_stats();
                    if self.last_report.elapsed() >= USAGE_PERIOD {
                        self.report_usage();
                    }
                }
            }
        }
    }

    fn sample_stats(&mut self) {
        for s in &mut self.slots {
            if let Some(i) = &s.instance {
                let st = i.stats();
                self.peak_memory = self.peak_memory.max(st.peak_memory_bytes);
                // Monotonic per instance; an exited sandbox's cgroup reads 0, so keep the max.
                s.cpu_ns = s.cpu_ns.max(st.cpu_usage_ns);
            }
        }
    }

    /// Whether container `i` may start now: Some(true) yes, Some(false) not yet, None never.
    fn deps_ready(&self, i: usize) -> Result<bool, String> {
        for d in &self.slots[i].def.depends_on {
            let Some(dep) = self.slots.iter().find(|s| s.def.name == d.container_name) else { continue };
            let started = dep.started_at.is_some() || dep.exited.is_some();
            match d.condition.as_str() {
                "START" if dep.started_at.is_none() && dep.exited.is_some() => {
                    return Err(format!("dependency container {} never started", dep.def.name));
                }
                "START" if !started => return Ok(false),
                "COMPLETE" if dep.exited.is_none() => return Ok(false),
                "SUCCESS" => match dep.exited {
                    None => return Ok(false),
                    Some(0) => {}
                    Some(code) => {
                        return Err(format!(
                            "dependency container {} exited with code {code}, SUCCESS condition not met",
                            dep.def.name
                        ));
                    }
                },
                "HEALTHY" => match dep.health {
                    Some(HealthStatus::Healthy) => {}
                    Some(HealthStatus::Unhealthy) => {
                        return Err(format!("dependency container {} is unhealthy", dep.def.name));
                    }
                    _ if dep.exited.is_some() => {
                        return Err(format!(
                            "dependency container {} exited before becoming healthy",
                            dep.def.name
                        ));
                    }
                    _ => return Ok(false),
                },
                _ => {}
            }
        }
        Ok(true)
    }

    async fn start_ready(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.slots.len() {
                if self.stopping || self.slots[i].instance.is_some() || self.slots[i].exited.is_some() {
                    continue;
                }
                match self.deps_ready(i) {
                    Ok(false) => {}
                    Ok(true) => {
                        progressed = true;
                        if let Err(why) = self.start_container(i).await {
                            self.container_never_ran(i, &format!("CannotStartContainerError: {why}"));
                            if self.slots[i].def.essential {
                                self.begin_stop(
                                    "TaskFailedToStart",
                                    &format!("CannotStartContainerError: {why}"),
                                );
                            }
                        }
                    }
                    Err(why) => {
                        progressed = true;
                        self.container_never_ran(i, &format!("DependencyError: {why}"));
                        if self.slots[i].def.essential {
                            self.begin_stop("EssentialContainerExited", "Essential container in task exited");
                        }
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn container_never_ran(&mut self, i: usize, reason: &str) {
        self.slots[i].exited = Some(-1);
        let name = self.slots[i].def.name.clone();
        let reason = reason.to_string();
        self.update(|t| {
            if let Some(c) = t.containers.iter_mut().find(|c| c.name == name) {
                c.last_status = "STOPPED".into();
                c.reason = Some(reason);
            }
        });
        self.slots[i].exited = Some(i32::MIN);
    }

    async fn start_container(&mut self, i: usize) -> Result<(), String> {
        let Some(image) = self.slots[i].image.clone() else { return Err("image not prepared".into()) };
        let def = self.slots[i].def.clone();
        let (program, args) = command_line(&def, &image)?;
        let mut env = environment(&def, &image, &self.task);
        if self.metadata {
            let uri = format!(
                "http://127.0.0.1:{}/v4/{}",
                crate::metadata::PORT,
                crate::metadata::container_id(&self.task, &def.name)
            );
            env.push(("ECS_CONTAINER_METADATA_URI".into(), uri.replace("/v4/", "/v3/")));
            env.push(("ECS_CONTAINER_METADATA_URI_V4".into(), uri));
        }
        let cwd =
            def.working_directory.clone().or(image.defaults.working_dir.clone()).filter(|d| !d.is_empty());
        let user = match def.user.clone().or(image.defaults.user.clone()).filter(|u| !u.is_empty()) {
            Some(u) => Some(resolve_user(&u, &image.root)?),
            None => None,
        };
        let (mut task_memory, mut task_cpu) = self.task_size();
        if self.group.is_some() {
            // The group enforces the task size across all containers together (as AWS does);
            // a container's own cpu/memory still caps it within that.
            (task_memory, task_cpu) = (None, None);
        }
        let limits = Limits {
            memory_mb: def.memory.map(u64::from).or(task_memory),
            nofile: def.ulimits.iter().find(|u| u.name == "nofile").map(|u| u.hard_limit.max(0) as u64),
            fsize_mb: None,
            cpu_millis: if def.cpu > 0 {
                Some(def.cpu as u64 * 1000 / 1024)
            } else {
                task_cpu.map(|c| c * 1000 / 1024)
            }
            .map(|m| m.max(10)),
            pids_max: Some(4096),
        };
        let (reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
        let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).map_err(|e| e.to_string())?;
        let hostname = def.hostname.clone().or_else(|| {
            self.task
                .attachments
                .iter()
                .flat_map(|a| a.details.iter())
                .find(|(k, _)| k == "privateDnsName")
                .map(|(_, v)| v.split('.').next().unwrap_or(v).to_string())
                .or_else(|| Some(self.task.id[..12].to_string()))
        });
        let netns = self.netns_pid();
        let binds = self.binds(i)?;
        let group = self.group.clone();
        let spec = SandboxSpec {
            program: PathBuf::from(program),
            args,
            cwd: PathBuf::from(cwd.unwrap_or_else(|| "/".into())),
            env,
            output: Some(writer.into()),
            limits,
            fs: FsView { image_root: Some(image.root.clone()), binds, ..FsView::default() },
            isolate_network: netns.is_none() && self.task.network_mode != NetworkMode::Host,
            user,
            hostname,
            join_netns_of: netns,
            group,
        };
        let sandbox = self.engine.sandbox.clone();
        let inst: Arc<dyn Instance> = match tokio::task::spawn_blocking(move || sandbox.start(spec)).await {
            Ok(Ok(inst)) => Arc::from(inst),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        };
        // Output → CloudWatch Logs (awslogs) or nowhere; the pipe is always drained.
        let log = self.slots[i].log.clone();
        let logs = self.engine.logs.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(rx).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(l) = &log {
                    logs.append(LogEvent {
                        scope: l.scope.clone(),
                        group: l.group.clone(),
                        stream: l.stream.clone(),
                        timestamp_ms: now_ms(),
                        message: line,
                    });
                }
            }
        });
        let waiter = inst.clone();
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let status = waiter.wait().await;
            let _ = tx.send(Event::Exited(i, status));
        });
        let pid = inst.inspect().pid;
        if self.own_netns && netns.is_none() {
            self.netns.store(pid, Ordering::SeqCst);
        }
        if let Some(hc) = def.health_check.clone() {
            self.slots[i].checker = Some(self.spawn_health_checker(i, hc, &image, netns.unwrap_or(pid)));
        }
        self.slots[i].instance = Some(inst);
        self.slots[i].started_at = Some(Instant::now());
        let name = def.name.clone();
        let runtime_id = format!("{}-{}", self.task.id, pid);
        self.update(|t| {
            if let Some(c) = t.containers.iter_mut().find(|c| c.name == name) {
                c.last_status = "RUNNING".into();
                c.pid = Some(pid);
                c.runtime_id = Some(runtime_id);
            }
        });
        Ok(())
    }

    /// The volumes container `i` sees: its own mountPoints, then those of the containers it
    /// names in volumesFrom (read-only there when volumesFrom says so). Host directories are
    /// made on first use: scratch volumes empty, host paths as Docker makes a missing one.
    fn binds(&self, i: usize) -> Result<Vec<nimbus_sandbox::Bind>, String> {
        let def = &self.slots[i].def;
        let mut points: Vec<(&MountPoint, bool)> = def.mount_points.iter().map(|m| (m, false)).collect();
        for f in &def.volumes_from {
            if let Some(src) = self.slots.iter().find(|s| s.def.name == f.source_container) {
                points.extend(src.def.mount_points.iter().map(|m| (m, f.read_only)));
            }
        }
        let mut binds: Vec<nimbus_sandbox::Bind> = Vec::new();
        for (m, force_ro) in points {
            let Some((_, host)) = self.volumes.iter().find(|(v, _)| v.name == m.source_volume) else {
                return Err(format!("mount point {}: unknown volume {}", m.container_path, m.source_volume));
            };
            if binds.iter().any(|b| b.inside == Path::new(&m.container_path)) {
                continue; // the container's own mount point wins over an inherited one
            }
            std::fs::create_dir_all(host)
                .map_err(|e| format!("volume {}: cannot create {}: {e}", m.source_volume, host.display()))?;
            binds.push(nimbus_sandbox::Bind {
                host: host.clone(),
                inside: PathBuf::from(&m.container_path),
                read_only: m.read_only || force_ro,
            });
        }
        // Parents first, so a nested mount point is not hidden by its parent's bind.
        binds.sort_by_key(|b| b.inside.components().count());
        Ok(binds)
    }

    /// Task-level memory (MiB) and cpu (units), where the task has them.
    fn task_size(&self) -> (Option<u64>, Option<u64>) {
        let memory = self.task.memory.as_deref().and_then(|m| m.parse::<u64>().ok()).filter(|m| *m > 0);
        let cpu = self.task.cpu.as_deref().and_then(|c| c.parse::<u64>().ok()).filter(|c| *c > 0);
        (memory, cpu)
    }

    /// A sandbox group holding the task size, when the task has one and the backend groups;
    /// otherwise each container without its own limits gets the task's (see start_container).
    fn task_group(&self) -> Option<Arc<dyn SandboxGroup>> {
        let (memory, cpu) = self.task_size();
        if memory.is_none() && cpu.is_none() {
            return None;
        }
        let limits = Limits {
            memory_mb: memory,
            cpu_millis: cpu.map(|c| (c * 1000 / 1024).max(10)),
            ..Limits::default()
        };
        match self.engine.sandbox.create_group(&limits) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(
                    "ecs task {}: no task-level cgroup ({e}); limiting each container instead",
                    self.arn
                );
                None
            }
        }
    }

    fn spawn_health_checker(
        &self,
        i: usize,
        hc: HealthCheck,
        image: &PreparedImage,
        netns: u32,
    ) -> JoinHandle<()> {
        let tx = self.events_tx.clone();
        let sandbox = self.engine.sandbox.clone();
        let root = image.root.clone();
        let dir = self.slots[i].dir.clone();
        let env = environment(&self.slots[i].def, image, &self.task);
        let binds = self.binds(i).unwrap_or_default();
        tokio::spawn(async move {
            let interval = Duration::from_secs(hc.interval.max(1) as u64);
            let timeout = Duration::from_secs(hc.timeout.max(1) as u64);
            let (program, args) = match hc.command.first().map(String::as_str) {
                Some("CMD-SHELL") => {
                    ("/bin/sh".to_string(), vec!["-c".to_string(), hc.command[1..].join(" ")])
                }
                Some("CMD") if hc.command.len() > 1 => (hc.command[1].clone(), hc.command[2..].to_vec()),
                Some("NONE") | None => return,
                _ => ("/bin/sh".to_string(), vec!["-c".to_string(), hc.command.join(" ")]),
            };
            // Whether the container's upper dir can serve as a lower layer (overlayfs may
            // refuse an in-use upper); after one refusal, checks run on the image alone.
            let mut with_upper = true;
            loop {
                tokio::time::sleep(interval).await;
                let view = match health_root(&root, &dir, with_upper) {
                    Ok(v) => v,
                    Err(_) => {
                        let _ = tx.send(Event::Health(i, false));
                        continue;
                    }
                };
                let spec = SandboxSpec {
                    program: PathBuf::from(&program),
                    args: args.clone(),
                    cwd: PathBuf::from("/"),
                    env: env.clone(),
                    limits: Limits { memory_mb: Some(128), pids_max: Some(64), ..Limits::default() },
                    fs: FsView { image_root: Some(view), binds: binds.clone(), ..FsView::default() },
                    join_netns_of: Some(netns),
                    ..SandboxSpec::default()
                };
                let sb = sandbox.clone();
                let ok = match tokio::task::spawn_blocking(move || sb.start(spec)).await {
                    Ok(Err(nimbus_sandbox::SandboxError::Setup(why))) if with_upper => {
                        tracing::debug!(
                            "ecs health check: overlay over the container's upper refused ({why}); using the image"
                        );
                        with_upper = false;
                        continue;
                    }
                    Ok(Ok(inst)) => match tokio::time::timeout(timeout, inst.wait()).await {
                        Ok(ExitStatus::Code(0)) => true,
                        Ok(_) => false,
                        Err(_) => {
                            inst.destroy();
                            let _ = inst.wait().await;
                            false
                        }
                    },
                    _ => false,
                };
                if tx.send(Event::Health(i, ok)).is_err() {
                    return;
                }
            }
        })
    }

    fn on_health(&mut self, i: usize, ok: bool) {
        if self.slots[i].exited.is_some() {
            return;
        }
        let hc = self.slots[i].def.health_check.clone();
        let Some(hc) = hc else { return };
        let in_grace = self.slots[i]
            .started_at
            .is_some_and(|s| s.elapsed() < Duration::from_secs(hc.start_period.unwrap_or(0) as u64));
        let before = self.slots[i].health;
        if ok {
            self.slots[i].failures = 0;
            self.slots[i].health = Some(HealthStatus::Healthy);
        } else if !in_grace {
            self.slots[i].failures += 1;
            if self.slots[i].failures >= hc.retries {
                self.slots[i].health = Some(HealthStatus::Unhealthy);
            }
        }
        if self.slots[i].health != before {
            self.publish_health();
        }
    }

    fn publish_health(&mut self) {
        let per: BTreeMap<String, Option<HealthStatus>> =
            self.slots.iter().map(|s| (s.def.name.clone(), s.health)).collect();
        let essential_checked: Vec<HealthStatus> =
            self.slots.iter().filter(|s| s.def.essential).filter_map(|s| s.health).collect();
        let task_health = if essential_checked.contains(&HealthStatus::Unhealthy) {
            HealthStatus::Unhealthy
        } else if !essential_checked.is_empty()
            && essential_checked.iter().all(|h| *h == HealthStatus::Healthy)
        {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unknown
        };
        self.update(|t| {
            for c in &mut t.containers {
                if let Some(h) = per.get(&c.name) {
                    c.health_status = h.or(Some(HealthStatus::Unknown));
                }
            }
            t.health_status = task_health;
        });
        self.engine.wake.notify_one();
    }

    fn on_exit(&mut self, i: usize, status: ExitStatus) {
        let code = exit_code(status);
        self.sample_stats();
        self.slots[i].exited = Some(code);
        if let Some(c) = self.slots[i].checker.take() {
            c.abort();
        }
        let name = self.slots[i].def.name.clone();
        self.update(|t| {
            if let Some(c) = t.containers.iter_mut().find(|c| c.name == name) {
                c.last_status = "STOPPED".into();
                c.exit_code = Some(code);
                c.pid = None;
            }
        });
        if self.slots[i].def.essential && !self.stopping {
            self.begin_stop("EssentialContainerExited", "Essential container in task exited");
        }
    }

    /// desiredStatus STOPPED: SIGTERM every running container, SIGKILL after its stopTimeout.
    fn begin_stop(&mut self, code: &str, reason: &str) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        let now = now_ms();
        let (code, reason) = (code.to_string(), reason.to_string());
        let unstarted: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.instance.is_none() && s.exited.is_none())
            .map(|s| s.def.name.clone())
            .collect();
        self.update(|t| {
            t.desired_status = "STOPPED".into();
            t.stopping_ms.get_or_insert(now);
            // StopTask already recorded the user's reason.
            if t.stop_code.is_none() {
                t.stop_code = Some(code);
                t.stopped_reason = Some(reason);
            }
            if t.last_status != "STOPPED" {
                t.last_status = "DEPROVISIONING".into();
            }
            for c in &mut t.containers {
                if unstarted.contains(&c.name) {
                    c.last_status = "STOPPED".into();
                }
            }
        });
        for s in &mut self.slots {
            if let Some(c) = s.checker.take() {
                c.abort();
            }
            if s.exited.is_none()
                && let Some(inst) = &s.instance
            {
                let grace = Duration::from_secs(s.def.stop_timeout.unwrap_or(30).min(120) as u64);
                let _ = inst.stop(15, grace);
            }
            if s.instance.is_none() && s.exited.is_none() {
                s.exited = Some(i32::MIN);
            }
        }
    }

    /// PENDING → RUNNING once every container has started (or finished).
    fn refresh_status(&mut self) {
        if self.stopping || self.task.last_status == "RUNNING" {
            return;
        }
        let none_pending = self.slots.iter().all(|s| s.started_at.is_some() || s.exited.is_some());
        let any_running = self.slots.iter().any(|s| s.instance.is_some() && s.exited.is_none());
        if none_pending && any_running {
            let now = now_ms();
            self.running_since = Some(Instant::now());
            self.update(|t| {
                t.last_status = "RUNNING".into();
                t.started_ms = Some(now);
                t.connectivity_ms = Some(now);
                for a in &mut t.attachments {
                    a.status = "ATTACHED".into();
                }
            });
            self.engine.wake.notify_one();
        }
    }

    fn fail_start(&mut self, code: &str, reason: &str) {
        let (code, reason) = (code.to_string(), reason.to_string());
        let now = now_ms();
        self.stopping = true;
        self.update(|t| {
            t.desired_status = "STOPPED".into();
            t.stopping_ms.get_or_insert(now);
            if t.stop_code.is_none() {
                t.stop_code = Some(code.clone());
                t.stopped_reason = Some(reason.clone());
            }
            for c in &mut t.containers {
                c.last_status = "STOPPED".into();
                if code == "TaskFailedToStart" && reason.starts_with("CannotPullContainerError") {
                    c.reason = Some(reason.clone());
                }
            }
        });
    }

    /// Tears down what the task held and records it STOPPED.
    async fn finish(&mut self) {
        for s in &mut self.slots {
            if let Some(c) = s.checker.take() {
                c.abort();
            }
            if let Some(inst) = &s.instance {
                inst.destroy();
            }
        }
        for f in &self.forwarders {
            f.abort();
        }
        // An aborted forwarder drops its listener only once the runtime gets to it; wait for
        // that, or the task's address could be handed out again while <ip>:<port> is still bound.
        for f in self.forwarders.drain(..) {
            let _ = f.await;
        }
        if let Some(p) = self.pause.take() {
            p.destroy();
            let _ = p.wait().await;
        }
        {
            let mut ports = self.engine.ports.lock();
            for p in &self.host_ports {
                ports.remove(p);
            }
        }
        for (k, v) in self.task.attachments.iter().flat_map(|a| a.details.iter()) {
            if k == "privateIPv4Address" {
                self.engine.release_task_ip(v);
            }
        }
        let now = now_ms();
        self.update(|t| {
            t.last_status = "STOPPED".into();
            t.desired_status = "STOPPED".into();
            t.stopping_ms.get_or_insert(now);
            t.execution_stopped_ms = Some(now);
            t.stopped_ms = Some(now);
            for c in &mut t.containers {
                c.last_status = "STOPPED".into();
                c.pid = None;
                c.network_bindings.clear();
            }
            for a in &mut t.attachments {
                a.status = "DELETED".into();
            }
        });
        self.engine.live.lock().remove(&self.arn);
        self.engine.wake.notify_one();
        self.report_usage();
        let dir = self.engine.task_dir(&self.task.id);
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(dir);
        });
    }

    /// One usage period: the running time since the last report, reservations, peak memory.
    fn report_usage(&mut self) {
        self.last_report = Instant::now();
        let total = self.running_since.map(|s| s.elapsed().as_millis() as u64).unwrap_or(0);
        let running_ms = total.saturating_sub(self.reported_ms);
        self.reported_ms = total;
        let cpu_total: u64 = self.slots.iter().map(|s| s.cpu_ns).sum();
        let cpu_ms = cpu_total.saturating_sub(self.reported_cpu_ns) / 1_000_000;
        self.reported_cpu_ns = cpu_total;
        if let Some(sink) = self.engine.usage.get() {
            let t = &self.task;
            let now = now_ms();
            sink.task_usage(TaskUsage {
                account: t.account.clone(),
                region: t.region.clone(),
                cluster: t.cluster.clone(),
                service: t.service.clone(),
                task_arn: t.arn.clone(),
                family: t.family.clone(),
                launch_type: t.launch_type.as_str(),
                cpu_units: t.cpu.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0),
                memory_mib: t.memory.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0),
                running_ms,
                cpu_ms,
                peak_memory_bytes: self.peak_memory,
                at_ms: now,
            });
        }
    }
}

/// Docker's rules: the definition's entryPoint replaces the image's ENTRYPOINT (and drops its
/// CMD); the definition's command replaces CMD.
fn command_line(def: &ContainerDefinition, image: &PreparedImage) -> Result<(String, Vec<String>), String> {
    let (entry, cmd) = if !def.entry_point.is_empty() {
        (def.entry_point.clone(), def.command.clone())
    } else if !def.command.is_empty() {
        (image.defaults.entrypoint.clone(), def.command.clone())
    } else {
        (image.defaults.entrypoint.clone(), image.defaults.cmd.clone())
    };
    let mut argv: Vec<String> = entry.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err("Error response from daemon: No command specified".into());
    }
    let program = argv.remove(0);
    Ok((program, argv))
}

fn environment(def: &ContainerDefinition, image: &PreparedImage, task: &Task) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        env.retain(|(n, _)| n != k);
        env.push((k.to_string(), v.to_string()));
    };
    set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for kv in &image.defaults.env {
        if let Some((k, v)) = kv.split_once('=') {
            set(k, v);
        }
    }
    set("HOSTNAME", def.hostname.as_deref().unwrap_or(&task.id[..12]));
    set("AWS_REGION", &task.region);
    set("AWS_DEFAULT_REGION", &task.region);
    set(
        "AWS_EXECUTION_ENV",
        if task.launch_type == LaunchType::Fargate { "AWS_ECS_FARGATE" } else { "AWS_ECS_EC2" },
    );
    for (k, v) in &def.environment {
        set(k, v);
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), "/root".into()));
    }
    env
}

/// "uid", "uid:gid", "name" or "name:group" (names from the image's /etc/passwd and /etc/group).
fn resolve_user(user: &str, root: &ImageRoot) -> Result<(u32, u32), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let read = |rel: &str| -> Option<String> {
        let dirs: Vec<PathBuf> = match root {
            ImageRoot::Dir(d) => vec![d.clone()],
            ImageRoot::Overlay { lower, upper, .. } => {
                std::iter::once(upper.clone()).chain(lower.iter().rev().cloned()).collect()
            }
        };
        dirs.iter().find_map(|d| std::fs::read_to_string(d.join(rel)).ok())
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        read(file)?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || f[0] != name {
                return None;
            }
            Some((f[2].parse().ok()?, f[3].parse().unwrap_or(0)))
        })
    };
    let (uid, default_gid) = match u.parse::<u32>() {
        Ok(n) => (n, lookup_uid_gid(&read, n).unwrap_or(n)),
        Err(_) if u == "root" => (0, 0),
        Err(_) => lookup("etc/passwd", u)
            .ok_or_else(|| format!("unable to find user {u}: no matching entries in passwd file"))?,
    };
    let gid = match g {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read("etc/group")
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() >= 3 && f[0] == g).then(|| f[2].parse().ok()).flatten()
                    })
                })
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    Ok((uid, gid))
}

fn lookup_uid_gid(read: &dyn Fn(&str) -> Option<String>, uid: u32) -> Option<u32> {
    read("etc/passwd")?.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[3].parse().ok()).flatten()
    })
}

/// The root a health check runs in (see the module docs).
fn health_root(root: &ImageRoot, dir: &Path, with_upper: bool) -> std::io::Result<ImageRoot> {
    match root {
        ImageRoot::Dir(d) => Ok(ImageRoot::Dir(d.clone())),
        ImageRoot::Overlay { lower, upper, .. } => {
            let hc = dir.join("healthcheck");
            let _ = std::fs::remove_dir_all(&hc);
            let (u, w) = (hc.join("upper"), hc.join("work"));
            std::fs::create_dir_all(&u)?;
            std::fs::create_dir_all(&w)?;
            let mut lowers = lower.clone();
            if with_upper {
                lowers.push(upper.clone());
            }
            Ok(ImageRoot::Overlay { lower: lowers, upper: u, work: w })
        }
    }
}
