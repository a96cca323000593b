//! The ECS control plane: clusters, task definitions, container instances and tasks in
//! memory, written through to the `Store` before every answer.
use crate::error::Error;
use crate::resources::{parse_cpu, parse_memory, validate_fargate_size};
use crate::scheduler;
use crate::types::*;
use nimbus_sandbox::{ImageRoot, Sandbox};
use nimbus_store::{LogStore, Store};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::sync::{Notify, mpsc};

pub(crate) const CLUSTERS: &str = "ecs.clusters";
pub(crate) const TASKDEFS: &str = "ecs.taskdefs";
pub(crate) const TASKS: &str = "ecs.tasks";
pub(crate) const INSTANCES: &str = "ecs.instances";
pub(crate) const SERVICES: &str = "ecs.services";

/// Ports the ECS agent reserves on every container instance (AWS's defaults).
pub const RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];
/// Stopped tasks stay describable this long, as on AWS (about an hour).
const STOPPED_TASK_RETENTION_MS: i64 = 60 * 60 * 1000;

/// Account and region of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

impl Scope {
    pub fn new(account: &str, region: &str) -> Scope {
        Scope { account: account.into(), region: region.into() }
    }
    fn arn(&self, rest: &str) -> String {
        format!("arn:aws:ecs:{}:{}:{rest}", self.region, self.account)
    }
    fn key(&self, name: &str) -> String {
        format!("{}:{}:{name}", self.account, self.region)
    }
}

/// The defaults an image brings (from its config).
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// A container's root filesystem, ready for the sandbox.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    pub digest: String,
    pub root: ImageRoot,
    pub defaults: ImageDefaults,
}

#[derive(Debug, Clone)]
pub enum ImageFailure {
    /// No such image in the store.
    NotFound(String),
    Failed(String),
}

/// Where tasks get their images (the binary implements it over `nimbus_images::ImageStore`).
pub trait ImageProvider: Send + Sync {
    /// Resolves `reference`, unpacks its layers (once) and prepares a private rootfs under `dir`.
    fn prepare(&self, reference: &str, dir: &Path) -> Result<PreparedImage, ImageFailure>;
}

/// One task's resource use, reported when it stops (the binary forwards it to the usage recorder).
#[derive(Debug, Clone)]
pub struct TaskUsage {
    pub account: String,
    pub region: String,
    pub cluster: String,
    pub service: Option<String>,
    pub task_arn: String,
    pub family: String,
    pub launch_type: &'static str,
    pub cpu_units: u32,
    pub memory_mib: u64,
    pub running_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    pub at_ms: i64,
}

pub trait UsageSink: Send + Sync {
    fn task_usage(&self, usage: TaskUsage);
}

/// What the local machine offers as a container instance.
#[derive(Debug, Clone)]
pub struct NodeCapacity {
    pub cpu: u32,
    pub memory_mib: u64,
    pub architecture: String,
}

impl NodeCapacity {
    pub fn detect() -> NodeCapacity {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        let mem_kb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
            })
            .unwrap_or(2 * 1024 * 1024);
        let architecture = match std::env::consts::ARCH {
            "aarch64" => "arm64".to_string(),
            _ => "x86_64".to_string(),
        };
        NodeCapacity { cpu: cpus * 1024, memory_mib: mem_kb / 1024, architecture }
    }
}

pub struct Config {
    pub data_dir: PathBuf,
    pub node: NodeCapacity,
}

#[derive(Default)]
pub(crate) struct State {
    pub clusters: BTreeMap<String, Cluster>,
    /// scope key of the family → revisions in order (index = revision - 1).
    pub taskdefs: BTreeMap<String, Vec<TaskDefinition>>,
    pub tasks: BTreeMap<String, Task>,
    pub instances: BTreeMap<String, ContainerInstance>,
    pub services: BTreeMap<String, Service>,
}

/// A message to a task's runner.
pub(crate) enum Control {
    Stop { code: String, reason: String },
}

pub struct EcsEngine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sandbox: Arc<dyn Sandbox>,
    pub(crate) images: Arc<dyn ImageProvider>,
    pub(crate) logs: Arc<LogStore>,
    pub(crate) data_dir: PathBuf,
    pub(crate) node: NodeCapacity,
    pub(crate) state: Mutex<State>,
    /// Runners of tasks that are not STOPPED yet, by task ARN.
    pub(crate) live: Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>,
    /// Wakes the service reconciler (a task stopped, a service changed).
    pub(crate) wake: Arc<Notify>,
    pub(crate) usage: OnceLock<Arc<dyn UsageSink>>,
    pub(crate) ports: Mutex<BTreeSet<u16>>,
    /// Loopback addresses handed to awsvpc tasks as their ENI's private IP, each with the
    /// socket that claims it host-wide (see `allocate_task_ip`).
    pub(crate) task_ips: Mutex<BTreeMap<u32, Option<std::net::UdpSocket>>>,
    pub(crate) lb_cursor: std::sync::atomic::AtomicUsize,
    /// Serialises read-modify-write of one task record (runner vs StopTask vs scheduler), so
    /// no update is lost between the read and the Store write.
    pub(crate) task_writes: Mutex<()>,
    /// Serialises service changes: a reconcile pass (read … act … save) never overwrites an
    /// UpdateService/DeleteService that landed meanwhile. Taken before `task_writes`.
    pub(crate) service_writes: Mutex<()>,
    /// RunTask client tokens in their idempotency window, by (cluster ARN, token). In memory:
    /// a restart forgets them (the tasks they made remain).
    pub(crate) client_tokens: Mutex<HashMap<(String, String), ClientTokenUse>>,
}

/// What a RunTask with a client token did, so a retry gets the same tasks back.
pub(crate) struct ClientTokenUse {
    /// The request's other parameters; a retry must repeat them (else ConflictException).
    fingerprint: String,
    task_arns: Vec<String>,
    failures: Vec<Failure>,
    at_ms: i64,
}

/// AWS keeps a RunTask client token for 24 hours.
const CLIENT_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `cluster/name` ARN or a name → the name.
fn cluster_name(raw: Option<&str>) -> String {
    match raw {
        None | Some("") => "default".into(),
        Some(s) => s.rsplit_once(":cluster/").map(|(_, n)| n.to_string()).unwrap_or_else(|| s.to_string()),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A cluster with the counts DescribeClusters reports.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub cluster: Cluster,
    pub registered_container_instances: u32,
    pub running_tasks: u32,
    pub pending_tasks: u32,
    pub active_services: u32,
    /// DescribeClusters STATISTICS: task and service counts by launch type.
    pub statistics: Vec<(String, String)>,
}

/// A container instance with what remains of it.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub instance: ContainerInstance,
    pub remaining_cpu: i64,
    pub remaining_memory: i64,
    pub ports_used: Vec<u16>,
    pub running_tasks: u32,
    pub pending_tasks: u32,
}

#[derive(Debug, Clone, Default)]
pub struct RegisterTaskDefinition {
    pub family: String,
    pub containers: Vec<ContainerDefinition>,
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
    pub network_mode: Option<String>,
    pub requires_compatibilities: Vec<String>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub placement_constraints: Vec<PlacementConstraintDef>,
    pub tags: Tags,
    pub volumes: Vec<Volume>,
    pub unmodelled: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct RunTask {
    pub cluster: Option<String>,
    pub task_definition: String,
    pub count: u32,
    pub launch_type: Option<String>,
    pub overrides: TaskOverrides,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub tags: Tags,
    pub network_configuration: Option<AwsVpcConfiguration>,
    pub placement_constraints: Vec<PlacementConstraintDef>,
    pub placement_strategy: Vec<PlacementStrategyDef>,
    pub platform_version: Option<String>,
    pub enable_execute_command: bool,
    pub propagate_tags: Option<String>,
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    /// Idempotency: the same token and parameters in the same cluster within 24 hours
    /// return the first request's tasks instead of starting new ones.
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListTasks {
    pub cluster: Option<String>,
    pub container_instance: Option<String>,
    pub family: Option<String>,
    pub started_by: Option<String>,
    pub service_name: Option<String>,
    pub desired_status: Option<String>,
    pub launch_type: Option<String>,
}

impl EcsEngine {
    pub fn open(
        config: Config,
        store: Arc<dyn Store>,
        sandbox: Arc<dyn Sandbox>,
        images: Arc<dyn ImageProvider>,
        logs: Arc<LogStore>,
    ) -> Result<Arc<EcsEngine>, Error> {
        let mut state = State::default();
        for (k, v) in store.list(CLUSTERS)? {
            let c: Cluster = serde_json::from_slice(&v)?;
            state.clusters.insert(k, c);
        }
        for (_, v) in store.list(TASKDEFS)? {
            let td: TaskDefinition = serde_json::from_slice(&v)?;
            let key = Scope::new(&td.account, &td.region).key(&td.family);
            state.taskdefs.entry(key).or_default().push(td);
        }
        for revs in state.taskdefs.values_mut() {
            revs.sort_by_key(|t| t.revision);
        }
        for (_, v) in store.list(INSTANCES)? {
            let i: ContainerInstance = serde_json::from_slice(&v)?;
            state.instances.insert(i.arn.clone(), i);
        }
        for (_, v) in store.list(SERVICES)? {
            let s: Service = serde_json::from_slice(&v)?;
            state.services.insert(s.arn.clone(), s);
        }
        let now = now_ms();
        for (_, v) in store.list(TASKS)? {
            let mut t: Task = serde_json::from_slice(&v)?;
            if !t.is_stopped() {
                // Its processes died with the previous server (they never outlive it).
                t.last_status = "STOPPED".into();
                t.desired_status = "STOPPED".into();
                t.stopped_ms = Some(now);
                t.execution_stopped_ms = Some(now);
                t.stopping_ms.get_or_insert(now);
                // What AWS says when a task's instance goes away under it.
                let ec2 = t
                    .container_instance_arn
                    .as_ref()
                    .and_then(|a| state.instances.get(a))
                    .map(|i| i.ec2_instance_id.clone())
                    .unwrap_or_else(|| "i-00000000000000000".into());
                t.stopped_reason
                    .get_or_insert_with(|| format!("Host EC2 (instance {ec2}) stopped/terminated."));
                for c in &mut t.containers {
                    if c.last_status != "STOPPED" {
                        c.last_status = "STOPPED".into();
                        c.pid = None;
                    }
                }
                t.version += 1;
                store.put(TASKS, &t.arn, &serde_json::to_vec(&t)?)?;
            }
            state.tasks.insert(t.arn.clone(), t);
        }
        // The local machine's container instances follow its current capacity.
        for i in state.instances.values_mut() {
            if i.local && (i.cpu != config.node.cpu || i.memory_mib != config.node.memory_mib) {
                i.cpu = config.node.cpu;
                i.memory_mib = config.node.memory_mib;
                store.put(INSTANCES, &i.arn, &serde_json::to_vec(i)?)?;
            }
        }
        // No task survives a restart, so what a killed server left of their root
        // filesystems is garbage.
        let tasks_dir = config.data_dir.join("ecs").join("tasks");
        if let Ok(rd) = std::fs::read_dir(&tasks_dir) {
            for e in rd.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let _ = std::fs::create_dir_all(&tasks_dir);
        Ok(Arc::new(EcsEngine {
            store,
            sandbox,
            images,
            logs,
            data_dir: config.data_dir,
            node: config.node,
            state: Mutex::new(state),
            live: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            usage: OnceLock::new(),
            ports: Mutex::new(BTreeSet::new()),
            task_ips: Mutex::new(BTreeMap::new()),
            lb_cursor: std::sync::atomic::AtomicUsize::new(0),
            task_writes: Mutex::new(()),
            service_writes: Mutex::new(()),
            client_tokens: Mutex::new(HashMap::new()),
        }))
    }

    pub fn set_usage_sink(&self, sink: Arc<dyn UsageSink>) {
        let _ = self.usage.set(sink);
    }

    pub fn sandbox_name(&self) -> &'static str {
        self.sandbox.name()
    }

    pub(crate) fn put<T: serde::Serialize>(&self, collection: &str, key: &str, v: &T) -> Result<(), Error> {
        self.store.put(collection, key, &serde_json::to_vec(v)?)?;
        Ok(())
    }

    // ---------------------------------------------------------------- clusters

    pub fn create_cluster(
        &self,
        scope: &Scope,
        name: Option<&str>,
        tags: Tags,
        settings: Vec<(String, String)>,
    ) -> Result<ClusterView, Error> {
        let name = cluster_name(name);
        if !valid_name(&name) {
            return Err(Error::invalid(
                "Cluster name must be 1-255 characters: letters (upper and lower case), numbers, underscores and hyphens.",
            ));
        }
        let key = scope.key(&name);
        {
            let st = self.state.lock();
            if let Some(c) = st.clusters.get(&key).filter(|c| c.status == "ACTIVE") {
                // CreateCluster is idempotent for an existing active cluster.
                let c = c.clone();
                drop(st);
                return Ok(self.cluster_view(c));
            }
        }
        let cluster = Cluster {
            arn: scope.arn(&format!("cluster/{name}")),
            name: name.clone(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            status: "ACTIVE".into(),
            tags,
            settings: if settings.is_empty() {
                vec![("containerInsights".into(), "disabled".into())]
            } else {
                settings
            },
            created_ms: now_ms(),
            capacity_providers: Vec::new(),
            default_capacity_provider_strategy: Vec::new(),
        };
        self.put(CLUSTERS, &key, &cluster)?;
        self.state.lock().clusters.insert(key, cluster.clone());
        self.register_local_instance(scope, &name)?;
        Ok(self.cluster_view(cluster))
    }

    /// Registers this machine in `cluster` (once) as a container instance.
    fn register_local_instance(&self, scope: &Scope, cluster: &str) -> Result<(), Error> {
        let exists = self.state.lock().instances.values().any(|i| {
            i.local
                && i.cluster == cluster
                && i.account == scope.account
                && i.region == scope.region
                && i.status != "INACTIVE"
        });
        if exists {
            return Ok(());
        }
        let inst = self.new_instance(
            scope,
            cluster,
            self.node.cpu,
            self.node.memory_mib,
            true,
            Vec::new(),
            Vec::new(),
        );
        self.put(INSTANCES, &inst.arn, &inst)?;
        self.state.lock().instances.insert(inst.arn.clone(), inst);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn new_instance(
        &self,
        scope: &Scope,
        cluster: &str,
        cpu: u32,
        memory_mib: u64,
        local: bool,
        extra_attributes: Vec<(String, Option<String>)>,
        tags: Tags,
    ) -> ContainerInstance {
        let id = new_id();
        let ec2 = format!("i-{}", &new_id()[..17]);
        let mut attributes: Vec<(String, Option<String>)> = vec![
            ("ecs.os-type".into(), Some("linux".into())),
            ("ecs.os-family".into(), Some("LINUX".into())),
            ("ecs.cpu-architecture".into(), Some(self.node.architecture.clone())),
            ("ecs.availability-zone".into(), Some(format!("{}a", scope.region))),
            ("ecs.instance-type".into(), Some("nimbus.local".into())),
            ("ecs.ami-id".into(), Some("ami-00000000000000000".into())),
            ("com.amazonaws.ecs.capability.logging-driver.awslogs".into(), None),
            ("com.amazonaws.ecs.capability.docker-remote-api.1.17".into(), None),
            ("com.amazonaws.ecs.capability.docker-remote-api.1.18".into(), None),
            ("com.amazonaws.ecs.capability.docker-remote-api.1.19".into(), None),
            ("ecs.capability.container-health-check".into(), None),
            ("ecs.capability.container-ordering".into(), None),
            ("ecs.capability.task-eni".into(), None),
            ("ecs.capability.execution-role-awslogs".into(), None),
        ];
        for (k, v) in extra_attributes {
            attributes.retain(|(n, _)| *n != k);
            attributes.push((k, v));
        }
        ContainerInstance {
            arn: scope.arn(&format!("container-instance/{cluster}/{id}")),
            id,
            cluster: cluster.into(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            ec2_instance_id: ec2,
            status: "ACTIVE".into(),
            agent_connected: true,
            cpu,
            memory_mib,
            reserved_ports: RESERVED_PORTS.to_vec(),
            attributes,
            registered_ms: now_ms(),
            local,
            version: 1,
            tags,
        }
    }

    fn cluster_view(&self, cluster: Cluster) -> ClusterView {
        let st = self.state.lock();
        let in_cluster =
            |c: &str, a: &str, r: &str| c == cluster.name && a == cluster.account && r == cluster.region;
        let registered = st
            .instances
            .values()
            .filter(|i| in_cluster(&i.cluster, &i.account, &i.region) && i.status != "INACTIVE")
            .count() as u32;
        let (mut running, mut pending) = (0, 0);
        // [running, pending] × [EC2, FARGATE]
        let mut by_launch = [[0u32; 2]; 2];
        for t in st.tasks.values().filter(|t| in_cluster(&t.cluster, &t.account, &t.region)) {
            let l = usize::from(t.launch_type == LaunchType::Fargate);
            match t.last_status.as_str() {
                "RUNNING" => {
                    running += 1;
                    by_launch[0][l] += 1;
                }
                "STOPPED" => {}
                _ => {
                    pending += 1;
                    by_launch[1][l] += 1;
                }
            }
        }
        // [active, draining] × [EC2, FARGATE]
        let mut svc = [[0u32; 2]; 2];
        for s in st.services.values().filter(|s| in_cluster(&s.cluster, &s.account, &s.region)) {
            let l = usize::from(s.launch_type == Some(LaunchType::Fargate));
            match s.status.as_str() {
                "ACTIVE" => svc[0][l] += 1,
                "DRAINING" => svc[1][l] += 1,
                _ => {}
            }
        }
        let services = svc[0][0] + svc[0][1];
        let statistics = [
            ("runningEC2TasksCount", by_launch[0][0]),
            ("runningFargateTasksCount", by_launch[0][1]),
            ("pendingEC2TasksCount", by_launch[1][0]),
            ("pendingFargateTasksCount", by_launch[1][1]),
            ("activeEC2ServiceCount", svc[0][0]),
            ("activeFargateServiceCount", svc[0][1]),
            ("drainingEC2ServiceCount", svc[1][0]),
            ("drainingFargateServiceCount", svc[1][1]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        ClusterView {
            cluster,
            registered_container_instances: registered,
            running_tasks: running,
            pending_tasks: pending,
            active_services: services,
            statistics,
        }
    }

    pub fn describe_clusters(&self, scope: &Scope, names: &[String]) -> (Vec<ClusterView>, Vec<Failure>) {
        let names: Vec<String> = if names.is_empty() { vec!["default".into()] } else { names.to_vec() };
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for raw in names {
            let name = cluster_name(Some(&raw));
            let c = self.state.lock().clusters.get(&scope.key(&name)).cloned();
            match c {
                Some(c) => found.push(self.cluster_view(c)),
                None => failures.push(Failure {
                    arn: Some(scope.arn(&format!("cluster/{name}"))),
                    reason: "MISSING".into(),
                    detail: None,
                }),
            }
        }
        (found, failures)
    }

    pub fn list_clusters(&self, scope: &Scope) -> Vec<String> {
        let prefix = scope.key("");
        self.state
            .lock()
            .clusters
            .iter()
            .filter(|(k, c)| k.starts_with(&prefix) && c.status == "ACTIVE")
            .map(|(_, c)| c.arn.clone())
            .collect()
    }

    pub(crate) fn active_cluster(&self, scope: &Scope, raw: Option<&str>) -> Result<Cluster, Error> {
        let name = cluster_name(raw);
        self.state
            .lock()
            .clusters
            .get(&scope.key(&name))
            .filter(|c| c.status == "ACTIVE")
            .cloned()
            .ok_or_else(|| Error::ClusterNotFound("Cluster not found.".into()))
    }

    pub fn delete_cluster(&self, scope: &Scope, raw: &str) -> Result<ClusterView, Error> {
        let mut cluster = self.active_cluster(scope, Some(raw))?;
        let view = self.cluster_view(cluster.clone());
        if view.active_services > 0 {
            return Err(Error::ClusterContainsServices(
                "The Cluster cannot be deleted while Services are active.".into(),
            ));
        }
        if view.running_tasks + view.pending_tasks > 0 {
            return Err(Error::ClusterContainsTasks(
                "The Cluster cannot be deleted while Tasks are active.".into(),
            ));
        }
        let instances: Vec<ContainerInstance> = self
            .state
            .lock()
            .instances
            .values()
            .filter(|i| {
                i.cluster == cluster.name
                    && i.account == scope.account
                    && i.region == scope.region
                    && i.status != "INACTIVE"
            })
            .cloned()
            .collect();
        if instances.iter().any(|i| !i.local) {
            return Err(Error::ClusterContainsContainerInstances(
                "The Cluster cannot be deleted while Container Instances are active or draining.".into(),
            ));
        }
        for i in instances {
            self.store.delete(INSTANCES, &i.arn)?;
            self.state.lock().instances.remove(&i.arn);
        }
        cluster.status = "INACTIVE".into();
        let key = scope.key(&cluster.name);
        self.put(CLUSTERS, &key, &cluster)?;
        self.state.lock().clusters.insert(key, cluster.clone());
        Ok(self.cluster_view(cluster))
    }

    // ---------------------------------------------------------------- task definitions

    pub fn register_task_definition(
        &self,
        scope: &Scope,
        req: RegisterTaskDefinition,
    ) -> Result<TaskDefinition, Error> {
        if !valid_name(&req.family) {
            return Err(Error::client(if req.family.is_empty() || req.family.len() > 255 {
                "Family must be 1-255 characters: letters (upper and lower case), numbers, underscores and hyphens."
            } else {
                "Family contains invalid characters."
            }));
        }
        if req.containers.is_empty() {
            return Err(Error::client("Container list cannot be empty."));
        }
        let network_mode = match req.network_mode.as_deref() {
            None => None,
            Some(m) => Some(NetworkMode::parse(m).ok_or_else(|| {
                Error::client(format!(
                    "Invalid network mode: {m}. Valid values are bridge, host, awsvpc, none."
                ))
            })?),
        };
        let cpu = req.cpu.as_deref().map(parse_cpu).transpose()?;
        let memory = req.memory.as_deref().map(parse_memory).transpose()?;
        let mut names = BTreeSet::new();
        let mut containers = req.containers;
        for c in &mut containers {
            if c.name.is_empty() {
                return Err(Error::client("Container.name should not be null or empty."));
            }
            if !valid_name(&c.name) {
                return Err(Error::client("Container.name contains invalid characters."));
            }
            if c.image.is_empty() {
                return Err(Error::client("Container.image should not be null or empty."));
            }
            if !names.insert(c.name.clone()) {
                return Err(Error::client(format!("Duplicate container name: {}", c.name)));
            }
            if memory.is_none() && c.memory.is_none() && c.memory_reservation.is_none() {
                return Err(Error::client(format!(
                    "Invalid setting for container '{}'. At least one of 'memory' or 'memoryReservation' must be specified.",
                    c.name
                )));
            }
            if let (Some(task_mem), Some(m)) = (memory, c.memory.or(c.memory_reservation))
                && u64::from(m) > task_mem
            {
                return Err(Error::client(format!(
                    "Invalid setting for container '{}'. The 'memory' setting for container is greater than for the task.",
                    c.name
                )));
            }
            if let (Some(m), Some(r)) = (c.memory, c.memory_reservation)
                && r > m
            {
                return Err(Error::client(format!(
                    "Invalid setting for container '{}'. 'memory' must be greater than or equal to 'memoryReservation'.",
                    c.name
                )));
            }
            for p in &mut c.port_mappings {
                if p.protocol.is_empty() {
                    p.protocol = "tcp".into();
                }
                if p.protocol != "tcp" && p.protocol != "udp" {
                    return Err(Error::client(format!("Invalid protocol: {}", p.protocol)));
                }
                match network_mode {
                    Some(NetworkMode::Awsvpc) | Some(NetworkMode::Host) => match p.host_port {
                        None | Some(0) => p.host_port = Some(p.container_port),
                        Some(h) if h != p.container_port => {
                            let mode = network_mode.map(|m| m.as_str()).unwrap_or("awsvpc");
                            return Err(Error::client(format!(
                                "When networkMode={mode}, the host ports and container ports in port mappings must match."
                            )));
                        }
                        _ => {}
                    },
                    _ => {
                        if p.host_port.is_none() {
                            p.host_port = Some(0);
                        }
                    }
                }
            }
            if let Some(h) = &mut c.health_check {
                if h.command.is_empty() {
                    return Err(Error::client("Health check command cannot be empty."));
                }
                if !matches!(h.command[0].as_str(), "CMD" | "CMD-SHELL" | "NONE") {
                    // Docker treats a bare command as CMD-SHELL; AWS documents CMD/CMD-SHELL.
                    h.command.insert(0, "CMD-SHELL".into());
                }
                if !(5..=300).contains(&h.interval) {
                    return Err(Error::client("Health check interval must be between 5 and 300 seconds."));
                }
                if !(2..=120).contains(&h.timeout) {
                    return Err(Error::client("Health check timeout must be between 2 and 120 seconds."));
                }
                if !(1..=10).contains(&h.retries) {
                    return Err(Error::client("Health check retries must be between 1 and 10."));
                }
                if h.start_period.is_some_and(|s| s > 300) {
                    return Err(Error::client("Health check startPeriod must be between 0 and 300 seconds."));
                }
            }
            if let Some(l) = &c.log_configuration {
                const DRIVERS: &[&str] = &[
                    "json-file",
                    "syslog",
                    "journald",
                    "gelf",
                    "fluentd",
                    "awslogs",
                    "splunk",
                    "awsfirelens",
                ];
                if !DRIVERS.contains(&l.log_driver.as_str()) {
                    return Err(Error::client(format!("Log driver {} is not supported.", l.log_driver)));
                }
            }
        }
        for c in &containers {
            for d in &c.depends_on {
                if !names.contains(&d.container_name) {
                    return Err(Error::client(format!(
                        "Container '{}' has a dependency on a container that does not exist in the task definition: '{}'.",
                        c.name, d.container_name
                    )));
                }
                if !matches!(d.condition.as_str(), "START" | "COMPLETE" | "SUCCESS" | "HEALTHY") {
                    return Err(Error::client(format!("Invalid dependency condition: {}", d.condition)));
                }
                if d.condition == "HEALTHY"
                    && containers.iter().any(|o| o.name == d.container_name && o.health_check.is_none())
                {
                    return Err(Error::client(format!(
                        "Container '{}' has a HEALTHY dependency on container '{}', which has no health check.",
                        c.name, d.container_name
                    )));
                }
            }
        }
        if !containers.iter().any(|c| c.essential) {
            return Err(Error::client("Task definition must have at least one essential container."));
        }
        validate_volumes(&req.volumes, &containers)?;
        for rc in &req.requires_compatibilities {
            if !matches!(rc.as_str(), "EC2" | "FARGATE" | "EXTERNAL") {
                return Err(Error::client(format!("Invalid compatibility: {rc}")));
            }
        }
        let fargate_check = |strict: bool| -> Result<(), Error> {
            if network_mode != Some(NetworkMode::Awsvpc) {
                return Err(Error::client("Fargate only supports network mode 'awsvpc'."));
            }
            let Some(cpu) = cpu else {
                return Err(Error::client("Fargate requires that 'cpu' be defined at the task level."));
            };
            let Some(memory) = memory else {
                return Err(Error::client("Fargate requires that 'memory' be defined at the task level."));
            };
            validate_fargate_size(cpu, memory)?;
            if containers.iter().any(|c| c.privileged == Some(true)) {
                return Err(Error::client("Fargate does not support privileged mode for containers."));
            }
            if req.volumes.iter().any(|v| v.host_source_path.is_some()) {
                return Err(Error::client("Fargate compatible task definitions do not support sourcePath"));
            }
            if strict
                && req.execution_role_arn.is_none()
                && containers
                    .iter()
                    .any(|c| c.log_configuration.as_ref().is_some_and(|l| l.log_driver == "awslogs"))
            {
                return Err(Error::client(
                    "Fargate requires task definition to have execution role ARN to support log driver awslogs.",
                ));
            }
            Ok(())
        };
        if req.requires_compatibilities.iter().any(|c| c == "FARGATE") {
            fargate_check(true)?;
        }
        let mut compatibilities = vec!["EC2".to_string()];
        // ECS Anywhere (EXTERNAL) runs bridge/host/none tasks; Fargate needs a valid awsvpc size.
        if network_mode != Some(NetworkMode::Awsvpc) {
            compatibilities.push("EXTERNAL".into());
        }
        if fargate_check(true).is_ok() {
            compatibilities.push("FARGATE".into());
        }
        let mut requires_attributes = vec!["com.amazonaws.ecs.capability.docker-remote-api.1.18".to_string()];
        if network_mode == Some(NetworkMode::Awsvpc) {
            requires_attributes.push("ecs.capability.task-eni".into());
        }
        if containers.iter().any(|c| c.health_check.is_some()) {
            requires_attributes.push("ecs.capability.container-health-check".into());
        }
        if containers.iter().any(|c| !c.depends_on.is_empty()) {
            requires_attributes.push("ecs.capability.container-ordering".into());
        }
        if containers.iter().any(|c| c.log_configuration.as_ref().is_some_and(|l| l.log_driver == "awslogs"))
        {
            requires_attributes.push("com.amazonaws.ecs.capability.logging-driver.awslogs".into());
            if req.execution_role_arn.is_some() {
                requires_attributes.push("ecs.capability.execution-role-awslogs".into());
            }
        }
        for pc in &req.placement_constraints {
            if pc.kind != "memberOf" {
                return Err(Error::client("Task definition placement constraints only support memberOf."));
            }
            if let Some(e) = &pc.expression {
                scheduler::validate_expression(e).map_err(|e| Error::client(e.to_string()))?;
            }
        }
        let key = scope.key(&req.family);
        let mut st = self.state.lock();
        let revision = st.taskdefs.get(&key).map(|v| v.len() as u32).unwrap_or(0) + 1;
        let td = TaskDefinition {
            arn: scope.arn(&format!("task-definition/{}:{revision}", req.family)),
            family: req.family,
            revision,
            account: scope.account.clone(),
            region: scope.region.clone(),
            containers,
            task_role_arn: req.task_role_arn,
            execution_role_arn: req.execution_role_arn,
            network_mode,
            requires_compatibilities: req.requires_compatibilities,
            compatibilities,
            cpu: cpu.map(|c| c.to_string()),
            memory: memory.map(|m| m.to_string()),
            pid_mode: req.pid_mode,
            ipc_mode: req.ipc_mode,
            placement_constraints: req.placement_constraints,
            requires_attributes,
            status: TaskDefinitionStatus::Active,
            registered_ms: now_ms(),
            deregistered_ms: None,
            registered_by: Some(format!("arn:aws:iam::{}:root", scope.account)),
            tags: req.tags,
            volumes: req.volumes,
            unmodelled: req.unmodelled,
        };
        // Under the lock so two registrations never get the same revision.
        self.put(TASKDEFS, &format!("{key}:{revision:08}"), &td)?;
        st.taskdefs.entry(key).or_default().push(td.clone());
        Ok(td)
    }

    /// `family`, `family:revision` or the ARN → the definition (a bare family: its latest ACTIVE revision).
    pub(crate) fn find_task_definition(&self, scope: &Scope, raw: &str) -> Option<TaskDefinition> {
        let rest = raw.rsplit_once(":task-definition/").map(|(_, r)| r).unwrap_or(raw);
        let st = self.state.lock();
        match rest.rsplit_once(':') {
            Some((family, rev)) => {
                let rev: u32 = rev.parse().ok()?;
                st.taskdefs.get(&scope.key(family))?.iter().find(|t| t.revision == rev).cloned()
            }
            None => st
                .taskdefs
                .get(&scope.key(rest))?
                .iter()
                .rev()
                .find(|t| t.status == TaskDefinitionStatus::Active)
                .cloned(),
        }
    }

    pub fn describe_task_definition(&self, scope: &Scope, raw: &str) -> Result<TaskDefinition, Error> {
        self.find_task_definition(scope, raw)
            .ok_or_else(|| Error::client("Unable to describe task definition."))
    }

    pub fn list_task_definitions(
        &self,
        scope: &Scope,
        family_prefix: Option<&str>,
        status: Option<&str>,
        descending: bool,
    ) -> Vec<String> {
        let want = match status {
            Some("INACTIVE") => TaskDefinitionStatus::Inactive,
            _ => TaskDefinitionStatus::Active,
        };
        let prefix = scope.key("");
        let st = self.state.lock();
        let mut out: Vec<&TaskDefinition> = st
            .taskdefs
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .flat_map(|(_, v)| v.iter())
            // familyPrefix is an exact family match on AWS despite its name.
            .filter(|t| family_prefix.is_none_or(|f| t.family == f))
            .filter(|t| t.status == want)
            .collect();
        out.sort_by(|a, b| a.family.cmp(&b.family).then(a.revision.cmp(&b.revision)));
        if descending {
            out.reverse();
        }
        out.into_iter().map(|t| t.arn.clone()).collect()
    }

    pub fn list_task_definition_families(
        &self,
        scope: &Scope,
        prefix: Option<&str>,
        status: Option<&str>,
    ) -> Vec<String> {
        let scope_prefix = scope.key("");
        let st = self.state.lock();
        st.taskdefs
            .iter()
            .filter(|(k, _)| k.starts_with(&scope_prefix))
            .filter_map(|(_, v)| {
                let family = &v.first()?.family;
                let any_active = v.iter().any(|t| t.status == TaskDefinitionStatus::Active);
                // Without a status, families with ACTIVE or only INACTIVE revisions alike.
                let keep = match status.unwrap_or("ALL") {
                    "ALL" => true,
                    "INACTIVE" => !any_active,
                    _ => any_active,
                };
                (keep && prefix.is_none_or(|p| family.starts_with(p))).then(|| family.clone())
            })
            .collect()
    }

    pub fn deregister_task_definition(&self, scope: &Scope, raw: &str) -> Result<TaskDefinition, Error> {
        let rest = raw.rsplit_once(":task-definition/").map(|(_, r)| r).unwrap_or(raw);
        let Some((family, rev)) = rest.rsplit_once(':') else {
            return Err(Error::client("Invalid revision number. Number: ".to_string() + rest));
        };
        let rev: u32 =
            rev.parse().map_err(|_| Error::client(format!("Invalid revision number. Number: {rev}")))?;
        let key = scope.key(family);
        let mut st = self.state.lock();
        let td = st
            .taskdefs
            .get_mut(&key)
            .and_then(|v| v.iter_mut().find(|t| t.revision == rev))
            .ok_or_else(|| Error::client("The specified task definition does not exist."))?;
        if td.status == TaskDefinitionStatus::Active {
            let mut updated = td.clone();
            updated.status = TaskDefinitionStatus::Inactive;
            updated.deregistered_ms = Some(now_ms());
            self.put(TASKDEFS, &format!("{key}:{rev:08}"), &updated)?;
            *td = updated;
        }
        Ok(td.clone())
    }

    // ---------------------------------------------------------------- container instances

    pub(crate) fn instance_views(&self, scope: &Scope, cluster: &str) -> Vec<InstanceView> {
        let st = self.state.lock();
        st.instances
            .values()
            .filter(|i| i.cluster == cluster && i.account == scope.account && i.region == scope.region)
            .map(|i| view_of(i, &st))
            .collect()
    }

    fn find_instance(&self, scope: &Scope, cluster: &str, raw: &str) -> Option<ContainerInstance> {
        let id = raw.rsplit('/').next().unwrap_or(raw);
        self.state
            .lock()
            .instances
            .values()
            .find(|i| {
                i.id == id && i.cluster == cluster && i.account == scope.account && i.region == scope.region
            })
            .cloned()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn register_container_instance(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        cpu: Option<u32>,
        memory_mib: Option<u64>,
        attributes: Vec<(String, Option<String>)>,
        tags: Tags,
    ) -> Result<InstanceView, Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        let inst = self.new_instance(
            scope,
            &cluster.name,
            cpu.unwrap_or(self.node.cpu),
            memory_mib.unwrap_or(self.node.memory_mib),
            false,
            attributes,
            tags,
        );
        self.put(INSTANCES, &inst.arn, &inst)?;
        let mut st = self.state.lock();
        st.instances.insert(inst.arn.clone(), inst.clone());
        Ok(view_of(&inst, &st))
    }

    pub fn deregister_container_instance(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        raw: &str,
        force: bool,
    ) -> Result<InstanceView, Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        let mut inst = self
            .find_instance(scope, &cluster.name, raw)
            .filter(|i| i.status != "INACTIVE")
            .ok_or_else(|| Error::invalid("The referenced container instance was not found."))?;
        let tasks: Vec<String> = self
            .state
            .lock()
            .tasks
            .values()
            .filter(|t| t.container_instance_arn.as_deref() == Some(&inst.arn) && !t.is_stopped())
            .map(|t| t.arn.clone())
            .collect();
        if !tasks.is_empty() && !force {
            return Err(Error::invalid(
                "Found running tasks on the instance. Use the 'force' flag to deregister the instance.",
            ));
        }
        inst.status = "INACTIVE".into();
        inst.agent_connected = false;
        inst.version += 1;
        self.store.delete(INSTANCES, &inst.arn)?;
        let view = {
            let mut st = self.state.lock();
            st.instances.remove(&inst.arn);
            view_of(&inst, &st)
        };
        for t in tasks {
            self.signal_stop(&t, "TaskFailedToStart", "Container instance deregistration forced by user");
        }
        Ok(view)
    }

    /// `filter` is a cluster query language expression (as memberOf uses).
    pub fn list_container_instances(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        status: Option<&str>,
        filter: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        if let Some(f) = filter {
            scheduler::validate_expression(f).map_err(|e| Error::invalid(e.to_string()))?;
        }
        let views = self.scheduler_views(scope, &cluster.name);
        Ok(self
            .instance_views(scope, &cluster.name)
            .into_iter()
            .filter(|v| status.is_none_or(|s| v.instance.status == s))
            .filter(|v| {
                filter.is_none_or(|f| {
                    views
                        .iter()
                        .find(|sv| sv.id == v.instance.arn)
                        .is_some_and(|sv| scheduler::matches_expression(f, sv).unwrap_or(false))
                })
            })
            .map(|v| v.instance.arn)
            .collect())
    }

    /// PutAttributes (container-instance targets): sets or replaces custom attributes.
    pub fn put_attributes(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        attributes: Vec<(String, Option<String>, String)>,
        delete: bool,
    ) -> Result<Vec<(String, Option<String>, String)>, Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        let mut out = Vec::new();
        for (name, value, target) in attributes {
            let mut inst = self
                .find_instance(scope, &cluster.name, &target)
                .filter(|i| i.status != "INACTIVE")
                .ok_or_else(|| Error::TargetNotFound(format!("Could not find {target}.")))?;
            inst.attributes.retain(|(k, _)| *k != name);
            if !delete {
                inst.attributes.push((name.clone(), value.clone()));
            }
            inst.version += 1;
            self.put(INSTANCES, &inst.arn, &inst)?;
            self.state.lock().instances.insert(inst.arn.clone(), inst.clone());
            out.push((name, value, inst.arn));
        }
        Ok(out)
    }

    /// ListAttributes: (name, value, target ARN) of the cluster's container instances.
    pub fn list_attributes(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        name: Option<&str>,
        value: Option<&str>,
    ) -> Result<Vec<(String, Option<String>, String)>, Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        let mut out = Vec::new();
        for v in self.instance_views(scope, &cluster.name) {
            for (k, val) in &v.instance.attributes {
                if name.is_some_and(|n| n != k) || value.is_some_and(|want| val.as_deref() != Some(want)) {
                    continue;
                }
                out.push((k.clone(), val.clone(), v.instance.arn.clone()));
            }
        }
        Ok(out)
    }

    /// StartTask: one task on each named container instance, no placement decision.
    pub fn start_task(
        self: &Arc<Self>,
        scope: &Scope,
        instances: &[String],
        mut req: RunTask,
    ) -> Result<(Vec<Task>, Vec<Failure>), Error> {
        let cluster = self.active_cluster(scope, req.cluster.as_deref())?;
        let td = self
            .find_task_definition(scope, &req.task_definition)
            .ok_or_else(|| Error::client("TaskDefinition not found."))?;
        if td.status != TaskDefinitionStatus::Active {
            return Err(Error::invalid("TaskDefinition is inactive"));
        }
        if instances.is_empty() || instances.len() > 10 {
            return Err(Error::invalid("containerInstances must list between 1 and 10 container instances."));
        }
        self.validate_launch(&td, LaunchType::Ec2, req.network_configuration.as_ref(), None)?;
        let group = req.group.take().unwrap_or_else(|| format!("family:{}", td.family));
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        for raw in instances {
            let Some(inst) = self.find_instance(scope, &cluster.name, raw).filter(|i| i.status == "ACTIVE")
            else {
                failures.push(Failure { arn: Some(raw.clone()), reason: "MISSING".into(), detail: None });
                continue;
            };
            let task = self.new_task(
                scope,
                &cluster,
                &td,
                LaunchType::Ec2,
                Some(inst.arn),
                group.clone(),
                req.started_by.clone(),
                req.overrides.clone(),
                req.tags.clone(),
                req.network_configuration.clone(),
                None,
                None,
                req.enable_execute_command,
            );
            self.launch(task.clone())?;
            tasks.push(task);
        }
        Ok((tasks, failures))
    }

    pub fn describe_container_instances(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        refs: &[String],
    ) -> Result<(Vec<InstanceView>, Vec<Failure>), Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        let views = self.instance_views(scope, &cluster.name);
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in refs {
            let id = r.rsplit('/').next().unwrap_or(r);
            match views.iter().find(|v| v.instance.id == id) {
                Some(v) => found.push(v.clone()),
                None => failures.push(Failure {
                    arn: Some(if r.starts_with("arn:") {
                        r.clone()
                    } else {
                        scope.arn(&format!("container-instance/{}/{r}", cluster.name))
                    }),
                    reason: "MISSING".into(),
                    detail: None,
                }),
            }
        }
        Ok((found, failures))
    }

    pub fn update_container_instances_state(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        refs: &[String],
        status: &str,
    ) -> Result<(Vec<InstanceView>, Vec<Failure>), Error> {
        if status != "ACTIVE" && status != "DRAINING" {
            return Err(Error::invalid("Container instance status must be ACTIVE or DRAINING."));
        }
        let cluster = self.active_cluster(scope, cluster)?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in refs {
            match self.find_instance(scope, &cluster.name, r) {
                Some(mut inst) => {
                    if inst.status != status {
                        inst.status = status.into();
                        inst.version += 1;
                        self.put(INSTANCES, &inst.arn, &inst)?;
                        self.state.lock().instances.insert(inst.arn.clone(), inst.clone());
                    }
                    let st = self.state.lock();
                    found.push(view_of(&inst, &st));
                }
                None => {
                    failures.push(Failure { arn: Some(r.clone()), reason: "MISSING".into(), detail: None })
                }
            }
        }
        // Draining instances hand their service tasks to the reconciler.
        self.wake.notify_one();
        Ok((found, failures))
    }

    // ---------------------------------------------------------------- tasks

    pub fn run_task(
        self: &Arc<Self>,
        scope: &Scope,
        req: RunTask,
    ) -> Result<(Vec<Task>, Vec<Failure>), Error> {
        let cluster = self.active_cluster(scope, req.cluster.as_deref())?;
        // Held to the end, so a concurrent retry with the same token waits for this one.
        let mut token_guard = None;
        if let Some(token) = &req.client_token {
            if token.is_empty() || token.len() > 64 || !token.bytes().all(|b| (33..=126).contains(&b)) {
                return Err(Error::invalid(
                    "clientToken must be 1-64 characters in the ASCII range 33-126 (inclusive).",
                ));
            }
            // Everything but the token and how the cluster was named (the cluster is the key).
            let fingerprint = format!("{:?}", RunTask { cluster: None, client_token: None, ..req.clone() });
            let key = (cluster.arn.clone(), token.clone());
            let mut tokens = self.client_tokens.lock();
            let now = now_ms();
            tokens.retain(|_, u| now - u.at_ms < CLIENT_TOKEN_TTL_MS);
            if let Some(used) = tokens.get(&key) {
                let tasks: Vec<Task> = used.task_arns.iter().filter_map(|a| self.task(a)).collect();
                // The window also ends once the tasks it made are gone from the records.
                if !tasks.is_empty() || used.task_arns.is_empty() {
                    if used.fingerprint != fingerprint {
                        return Err(Error::Conflict {
                            message:
                                "The specified client token has already been used with different parameters."
                                    .into(),
                            resource_ids: used.task_arns.clone(),
                        });
                    }
                    return Ok((tasks, used.failures.clone()));
                }
            }
            token_guard = Some((tokens, key, fingerprint));
        }
        let td = self
            .find_task_definition(scope, &req.task_definition)
            .ok_or_else(|| Error::client("TaskDefinition not found."))?;
        if td.status != TaskDefinitionStatus::Active {
            return Err(Error::invalid("TaskDefinition is inactive"));
        }
        if req.count == 0 || req.count > 10 {
            return Err(Error::invalid("count must be between 1 and 10."));
        }
        let (launch, provider) =
            self.launch_of(&cluster, req.launch_type.as_deref(), &req.capacity_provider_strategy)?;
        let plan = self.plan_tasks(
            scope,
            &cluster,
            &td,
            launch,
            req.count,
            req.group.clone(),
            &req.overrides,
            req.network_configuration.as_ref(),
            &req.placement_constraints,
            &req.placement_strategy,
            req.platform_version.as_deref(),
        )?;
        let mut tasks = Vec::new();
        for instance in plan.instances {
            let task = self.new_task(
                scope,
                &cluster,
                &td,
                launch,
                instance,
                plan.group.clone(),
                req.started_by.clone(),
                req.overrides.clone(),
                req.tags.clone(),
                req.network_configuration.clone(),
                None,
                None,
                req.enable_execute_command,
            );
            let mut task = task;
            task.capacity_provider_name = provider.clone();
            self.launch(task.clone())?;
            tasks.push(task);
        }
        if let Some((mut tokens, key, fingerprint)) = token_guard {
            tokens.insert(
                key,
                ClientTokenUse {
                    fingerprint,
                    task_arns: tasks.iter().map(|t| t.arn.clone()).collect(),
                    failures: plan.failures.clone(),
                    at_ms: now_ms(),
                },
            );
        }
        Ok((tasks, plan.failures))
    }

    /// Validates a launch and places `count` tasks: the instance (EC2) for each, and failures.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan_tasks(
        &self,
        scope: &Scope,
        cluster: &Cluster,
        td: &TaskDefinition,
        launch: LaunchType,
        count: u32,
        group: Option<String>,
        overrides: &TaskOverrides,
        net: Option<&AwsVpcConfiguration>,
        constraints: &[PlacementConstraintDef],
        strategies: &[PlacementStrategyDef],
        platform_version: Option<&str>,
    ) -> Result<PlannedTasks, Error> {
        self.validate_launch(td, launch, net, platform_version)?;
        self.plan_validated(scope, cluster, td, launch, count, group, overrides, constraints, strategies)
    }

    /// What RunTask and CreateService check about a launch before placing anything.
    pub(crate) fn validate_launch(
        &self,
        td: &TaskDefinition,
        launch: LaunchType,
        net: Option<&AwsVpcConfiguration>,
        platform_version: Option<&str>,
    ) -> Result<(), Error> {
        let mode = td.effective_network_mode();
        if launch == LaunchType::Fargate {
            if !td.compatibilities.iter().any(|c| c == "FARGATE") {
                return Err(Error::invalid("Task definition does not support launch_type FARGATE."));
            }
            match platform_version {
                None | Some("LATEST") | Some("1.4.0") | Some("1.3.0") => {}
                Some(_) => {
                    return Err(Error::PlatformUnknown("The specified platform does not exist.".into()));
                }
            }
        } else if launch == LaunchType::External {
            return Err(Error::invalid(
                "The EXTERNAL launch type is not supported by Nimbus (no external instances).",
            ));
        } else if td.requires_compatibilities.iter().any(|c| c == "FARGATE")
            && !td.compatibilities.iter().any(|c| c == "EC2")
        {
            return Err(Error::invalid("Task definition does not support launch_type EC2."));
        }
        if mode == NetworkMode::Awsvpc {
            let Some(net) = net else {
                return Err(Error::invalid(
                    "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
                ));
            };
            if net.subnets.is_empty() {
                return Err(Error::invalid("subnets can not be empty."));
            }
        } else if net.is_some() {
            return Err(Error::invalid(
                "Network Configuration is not valid for the given networkMode of this task definition.",
            ));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_validated(
        &self,
        scope: &Scope,
        cluster: &Cluster,
        td: &TaskDefinition,
        launch: LaunchType,
        count: u32,
        group: Option<String>,
        overrides: &TaskOverrides,
        constraints: &[PlacementConstraintDef],
        strategies: &[PlacementStrategyDef],
    ) -> Result<PlannedTasks, Error> {
        for o in &overrides.container_overrides {
            if !td.containers.iter().any(|c| c.name == o.name) {
                return Err(Error::invalid(format!(
                    "Override for container named {} is not a container in the TaskDefinition.",
                    o.name
                )));
            }
        }
        if let Some(c) = &overrides.cpu {
            parse_cpu(c)?;
        }
        if let Some(m) = &overrides.memory {
            parse_memory(m)?;
        }
        let group = group.unwrap_or_else(|| format!("family:{}", td.family));
        if launch == LaunchType::Fargate {
            return Ok(PlannedTasks { instances: vec![None; count as usize], failures: Vec::new(), group });
        }
        // EC2: the scheduler places each task on a registered instance with room.
        let instances = self.scheduler_views(scope, &cluster.name);
        let demand = task_demand(td, overrides, &group);
        let strategies: Vec<scheduler::PlacementStrategy> = strategies
            .iter()
            .map(|s| match (s.kind.as_str(), s.field.as_deref()) {
                ("binpack", Some(f)) if f.eq_ignore_ascii_case("cpu") => {
                    Ok(scheduler::PlacementStrategy::Binpack(scheduler::BinpackField::Cpu))
                }
                ("binpack", Some(f)) if f.eq_ignore_ascii_case("memory") => {
                    Ok(scheduler::PlacementStrategy::Binpack(scheduler::BinpackField::Memory))
                }
                ("binpack", _) => {
                    Err(Error::invalid("Invalid placement strategy field: binpack requires cpu or memory."))
                }
                ("spread", Some(f)) => Ok(scheduler::PlacementStrategy::Spread(f.to_string())),
                ("spread", None) => {
                    Err(Error::invalid("Invalid placement strategy field: spread requires a field."))
                }
                ("random", _) => Ok(scheduler::PlacementStrategy::Random),
                (k, _) => Err(Error::invalid(format!("Invalid placement strategy type: {k}"))),
            })
            .collect::<Result<_, _>>()?;
        let mut all_constraints = Vec::new();
        for c in constraints.iter().chain(td.placement_constraints.iter()) {
            match c.kind.as_str() {
                "distinctInstance" => all_constraints.push(scheduler::PlacementConstraint::DistinctInstance),
                "memberOf" => {
                    let e = c.expression.clone().unwrap_or_default();
                    scheduler::validate_expression(&e).map_err(|err| Error::invalid(err.to_string()))?;
                    all_constraints.push(scheduler::PlacementConstraint::MemberOf(e));
                }
                k => return Err(Error::invalid(format!("Invalid placement constraint type: {k}"))),
            }
        }
        let placement = scheduler::place(
            &demand,
            count as usize,
            &instances,
            &strategies,
            &all_constraints,
            fastrand::u64(..),
        );
        if placement.no_container_instances {
            return Err(Error::invalid(scheduler::NO_CONTAINER_INSTANCES_MESSAGE));
        }
        let failures = placement
            .failures
            .into_iter()
            .map(|f| Failure {
                arn: f.instance_id.or_else(|| Some(cluster.arn.clone())),
                reason: f.reason,
                detail: f.detail,
            })
            .collect();
        Ok(PlannedTasks { instances: placement.assignments.into_iter().map(Some).collect(), failures, group })
    }

    /// The cluster's container instances as the pure scheduler sees them.
    fn scheduler_views(&self, scope: &Scope, cluster: &str) -> Vec<scheduler::InstanceView> {
        let views = self.instance_views(scope, cluster);
        let st_groups = self.task_groups_by_instance();
        views
            .iter()
            .map(|v| scheduler::InstanceView {
                id: v.instance.arn.clone(),
                cpu_registered: v.instance.cpu,
                memory_registered: v.instance.memory_mib,
                cpu_used: (v.instance.cpu as i64 - v.remaining_cpu).max(0) as u32,
                memory_used: (v.instance.memory_mib as i64 - v.remaining_memory).max(0) as u64,
                ports_used: v.ports_used.iter().copied().collect(),
                attributes: v
                    .instance
                    .attributes
                    .iter()
                    .map(|(k, val)| (k.clone(), val.clone().unwrap_or_default()))
                    .chain([("ec2InstanceId".to_string(), v.instance.ec2_instance_id.clone())])
                    .collect(),
                active: v.instance.status == "ACTIVE",
                task_groups: st_groups.get(&v.instance.arn).cloned().unwrap_or_default(),
            })
            .collect()
    }

    fn task_groups_by_instance(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for t in self.state.lock().tasks.values().filter(|t| !t.is_stopped()) {
            if let Some(i) = &t.container_instance_arn {
                out.entry(i.clone()).or_default().push(t.group.clone());
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_task(
        &self,
        scope: &Scope,
        cluster: &Cluster,
        td: &TaskDefinition,
        launch: LaunchType,
        instance: Option<String>,
        group: String,
        started_by: Option<String>,
        overrides: TaskOverrides,
        tags: Tags,
        net: Option<AwsVpcConfiguration>,
        service: Option<String>,
        deployment_id: Option<String>,
        enable_execute_command: bool,
    ) -> Task {
        let id = new_id();
        let containers = td
            .containers
            .iter()
            .map(|c| {
                let o = overrides.container_overrides.iter().find(|o| o.name == c.name);
                ContainerState {
                    name: c.name.clone(),
                    arn: scope.arn(&format!("container/{}/{id}/{}", cluster.name, uuid::Uuid::new_v4())),
                    image: c.image.clone(),
                    image_digest: None,
                    runtime_id: None,
                    last_status: "PENDING".into(),
                    exit_code: None,
                    reason: None,
                    network_bindings: Vec::new(),
                    health_status: Some(HealthStatus::Unknown),
                    cpu: o.and_then(|o| o.cpu).unwrap_or(c.cpu),
                    memory: o.and_then(|o| o.memory).or(c.memory),
                    memory_reservation: o.and_then(|o| o.memory_reservation).or(c.memory_reservation),
                    essential: c.essential,
                    pid: None,
                }
            })
            .collect();
        let now = now_ms();
        let mode = td.effective_network_mode();
        let mut attachments = Vec::new();
        if mode == NetworkMode::Awsvpc {
            let ip = self.allocate_task_ip();
            let subnet = net.as_ref().and_then(|n| n.subnets.first().cloned()).unwrap_or_default();
            let hex = new_id();
            attachments.push(Attachment {
                id: uuid::Uuid::new_v4().to_string(),
                kind: "ElasticNetworkInterface".into(),
                status: "PRECREATED".into(),
                details: vec![
                    ("subnetId".into(), subnet),
                    ("networkInterfaceId".into(), format!("eni-{}", &hex[..17])),
                    (
                        "macAddress".into(),
                        format!(
                            "0a:{}:{}:{}:{}:{}",
                            &hex[0..2],
                            &hex[2..4],
                            &hex[4..6],
                            &hex[6..8],
                            &hex[8..10]
                        ),
                    ),
                    ("privateDnsName".into(), format!("ip-{}.ec2.internal", ip.replace('.', "-"))),
                    ("privateIPv4Address".into(), ip),
                ],
            });
        }
        Task {
            arn: scope.arn(&format!("task/{}/{id}", cluster.name)),
            id,
            cluster: cluster.name.clone(),
            cluster_arn: cluster.arn.clone(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            task_definition_arn: td.arn.clone(),
            family: td.family.clone(),
            container_instance_arn: instance,
            launch_type: launch,
            cpu: overrides
                .cpu
                .as_deref()
                .and_then(|c| parse_cpu(c).ok())
                .map(|c| c.to_string())
                .or_else(|| td.cpu.clone())
                .or_else(|| Some(td.containers.iter().map(|c| c.cpu).sum::<u32>().to_string())),
            memory: overrides
                .memory
                .as_deref()
                .and_then(|m| parse_memory(m).ok())
                .map(|m| m.to_string())
                .or_else(|| td.memory.clone())
                .or_else(|| {
                    Some(
                        td.containers
                            .iter()
                            .map(|c| c.memory.or(c.memory_reservation).unwrap_or(0))
                            .sum::<u32>()
                            .to_string(),
                    )
                }),
            containers,
            created_ms: now,
            pull_started_ms: None,
            pull_stopped_ms: None,
            started_ms: None,
            stopping_ms: None,
            stopped_ms: None,
            execution_stopped_ms: None,
            connectivity_ms: None,
            desired_status: "RUNNING".into(),
            last_status: "PROVISIONING".into(),
            health_status: HealthStatus::Unknown,
            group,
            started_by,
            stop_code: None,
            stopped_reason: None,
            tags,
            overrides,
            version: 1,
            attachments,
            availability_zone: format!("{}a", scope.region),
            platform_version: (launch == LaunchType::Fargate).then(|| "1.4.0".to_string()),
            network_mode: mode,
            network_configuration: net,
            service,
            deployment_id,
            enable_execute_command,
            capacity_provider_name: None,
        }
    }

    /// The launch type (and capacity provider) of a RunTask/CreateService: an explicit
    /// launchType, else the request's capacity provider strategy, else the cluster's default
    /// strategy, else EC2.
    pub(crate) fn launch_of(
        &self,
        cluster: &Cluster,
        launch_type: Option<&str>,
        strategy: &[CapacityProviderStrategyItem],
    ) -> Result<(LaunchType, Option<String>), Error> {
        if let Some(l) = launch_type {
            if !strategy.is_empty() {
                return Err(Error::invalid(
                    "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
                ));
            }
            let l =
                LaunchType::parse(l).ok_or_else(|| Error::invalid(format!("Invalid launch type: {l}")))?;
            return Ok((l, None));
        }
        let strategy =
            if strategy.is_empty() { &cluster.default_capacity_provider_strategy[..] } else { strategy };
        if strategy.is_empty() {
            return Ok((LaunchType::Ec2, None));
        }
        for item in strategy {
            if !cluster.capacity_providers.contains(&item.capacity_provider) {
                return Err(Error::invalid(format!(
                    "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again. ({})",
                    item.capacity_provider
                )));
            }
        }
        // base first, then weight (a weighted draw).
        let chosen = strategy.iter().find(|i| i.base > 0).or_else(|| {
            let total: u32 = strategy.iter().map(|i| i.weight).sum();
            if total == 0 {
                return strategy.first();
            }
            let mut pick = fastrand::u32(0..total);
            strategy.iter().find(|i| {
                if pick < i.weight {
                    true
                } else {
                    pick -= i.weight;
                    false
                }
            })
        });
        let name = chosen.map(|c| c.capacity_provider.clone()).unwrap_or_default();
        Ok((LaunchType::Fargate, Some(name)))
    }

    /// PutClusterCapacityProviders (and CreateCluster's capacityProviders): only AWS's
    /// Fargate providers exist here.
    pub fn put_cluster_capacity_providers(
        &self,
        scope: &Scope,
        cluster: &str,
        providers: Vec<String>,
        default_strategy: Vec<CapacityProviderStrategyItem>,
    ) -> Result<ClusterView, Error> {
        let mut c = self.active_cluster(scope, Some(cluster))?;
        for p in &providers {
            if p != "FARGATE" && p != "FARGATE_SPOT" {
                return Err(Error::invalid(format!(
                    "The specified capacity provider {p} does not exist. Specify a valid capacity provider and try again."
                )));
            }
        }
        for item in &default_strategy {
            if !providers.contains(&item.capacity_provider) {
                return Err(Error::invalid(
                    "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.",
                ));
            }
        }
        c.capacity_providers = providers;
        c.default_capacity_provider_strategy = default_strategy;
        let key = scope.key(&c.name);
        self.put(CLUSTERS, &key, &c)?;
        self.state.lock().clusters.insert(key, c.clone());
        Ok(self.cluster_view(c))
    }

    fn allocate_task_ip(&self) -> String {
        // 127.16.0.0/12 of loopback: every awsvpc task gets its own address, reachable from the host.
        // Other nimbus processes on the host (parallel test workers, a second server) hand out
        // the same range, and two tasks binding <ip>:<containerPort> in the host's namespace
        // would collide (EADDRINUSE, TaskFailedToStart). So an address is claimed host-wide by
        // binding a UDP socket on its CLAIM_PORT (UDP binds don't share without SO_REUSEADDR);
        // one another process holds is skipped.
        const CLAIM_PORT: u16 = 65535;
        let mut ips = self.task_ips.lock();
        let base: u32 = (127 << 24) | (16 << 16);
        let mut fallback = None;
        for n in 2u32..(1 << 20) {
            if ips.contains_key(&n) || n.is_multiple_of(256) || n % 256 == 255 {
                continue;
            }
            let a = std::net::Ipv4Addr::from(base + n);
            match std::net::UdpSocket::bind((a, CLAIM_PORT)) {
                Ok(claim) => {
                    ips.insert(n, Some(claim));
                    return a.to_string();
                }
                // Held by another process: try the next address.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                // Claims don't work here at all (no such address?): first free address, unclaimed.
                Err(_) => {
                    fallback = Some(n);
                    break;
                }
            }
        }
        let n = fallback.unwrap_or(2);
        ips.insert(n, None);
        std::net::Ipv4Addr::from(base + n).to_string()
    }

    pub(crate) fn release_task_ip(&self, ip: &str) {
        let parts: Vec<u32> = ip.split('.').filter_map(|p| p.parse().ok()).collect();
        if parts.len() == 4 {
            let a = (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3];
            let base: u32 = (127 << 24) | (16 << 16);
            self.task_ips.lock().remove(&a.wrapping_sub(base));
        }
    }

    /// Persists a new task and starts its runner.
    pub(crate) fn launch(self: &Arc<Self>, task: Task) -> Result<(), Error> {
        self.put(TASKS, &task.arn, &task)?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.state.lock().tasks.insert(task.arn.clone(), task.clone());
        self.live.lock().insert(task.arn.clone(), tx);
        let engine = self.clone();
        tokio::spawn(crate::runner::run(engine, task.arn, rx));
        Ok(())
    }

    /// Changes a task (store first, then memory); returns the new value.
    pub(crate) fn update_task(&self, arn: &str, f: impl FnOnce(&mut Task)) -> Option<Task> {
        let _serial = self.task_writes.lock();
        let mut t = self.state.lock().tasks.get(arn)?.clone();
        f(&mut t);
        t.version += 1;
        if let Err(e) = self.put(TASKS, arn, &t) {
            tracing::error!("ecs: saving task {arn}: {e}");
        }
        self.state.lock().tasks.insert(arn.to_string(), t.clone());
        Some(t)
    }

    pub(crate) fn task(&self, arn: &str) -> Option<Task> {
        self.state.lock().tasks.get(arn).cloned()
    }

    fn find_task(&self, scope: &Scope, cluster: &Cluster, raw: &str) -> Option<Task> {
        let id = raw.rsplit('/').next().unwrap_or(raw);
        let arn = scope.arn(&format!("task/{}/{id}", cluster.name));
        self.task(&arn)
    }

    /// Asks a task's runner to stop it; false when it is not running here.
    pub(crate) fn signal_stop(&self, arn: &str, code: &str, reason: &str) -> bool {
        match self.live.lock().get(arn) {
            Some(tx) => tx.send(Control::Stop { code: code.into(), reason: reason.into() }).is_ok(),
            None => false,
        }
    }

    pub fn stop_task(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        task: &str,
        reason: Option<&str>,
    ) -> Result<Task, Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        let t = self
            .find_task(scope, &cluster, task)
            .ok_or_else(|| Error::invalid("The referenced task was not found."))?;
        if t.is_stopped() || t.desired_status == "STOPPED" {
            return Ok(t);
        }
        let reason = reason.filter(|r| !r.is_empty()).unwrap_or("Task stopped by user");
        let now = now_ms();
        let updated = self
            .update_task(&t.arn, |t| {
                // It may have stopped on its own since it was read: keep that record as is.
                if t.is_stopped() || t.desired_status == "STOPPED" {
                    return;
                }
                t.desired_status = "STOPPED".into();
                t.stopping_ms.get_or_insert(now);
                t.stop_code = Some("UserInitiated".into());
                t.stopped_reason = Some(reason.to_string());
            })
            .unwrap_or(t);
        self.signal_stop(&updated.arn, "UserInitiated", reason);
        Ok(updated)
    }

    pub fn describe_tasks(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        refs: &[String],
    ) -> Result<(Vec<Task>, Vec<Failure>), Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in refs {
            match self.find_task(scope, &cluster, r) {
                Some(t) => found.push(t),
                None => failures.push(Failure {
                    arn: Some(if r.starts_with("arn:") {
                        r.clone()
                    } else {
                        scope.arn(&format!("task/{}/{r}", cluster.name))
                    }),
                    reason: "MISSING".into(),
                    detail: None,
                }),
            }
        }
        Ok((found, failures))
    }

    pub fn list_tasks(&self, scope: &Scope, q: &ListTasks) -> Result<Vec<String>, Error> {
        let cluster = self.active_cluster(scope, q.cluster.as_deref())?;
        let instance = match &q.container_instance {
            Some(raw) => Some(
                self.find_instance(scope, &cluster.name, raw)
                    .map(|i| i.arn)
                    .ok_or_else(|| Error::invalid("The referenced container instance was not found."))?,
            ),
            None => None,
        };
        if let Some(f) = &q.family
            && !valid_name(f)
        {
            return Err(Error::invalid("family must match ^[a-zA-Z0-9\\-_]+$"));
        }
        if let Some(name) = &q.service_name {
            let arn = scope.arn(&format!("service/{}/{name}", cluster.name));
            if !self.state.lock().services.contains_key(&arn) {
                return Err(Error::ServiceNotFound("Service not found.".into()));
            }
        }
        let want_status = q.desired_status.as_deref().unwrap_or("RUNNING");
        let st = self.state.lock();
        let mut tasks: Vec<&Task> = st
            .tasks
            .values()
            .filter(|t| t.cluster == cluster.name && t.account == scope.account && t.region == scope.region)
            .filter(|t| match want_status {
                // PENDING/RUNNING both mean "not yet told to stop" on AWS's list.
                "STOPPED" => t.desired_status == "STOPPED",
                _ => t.desired_status == "RUNNING",
            })
            .filter(|t| q.family.as_ref().is_none_or(|f| &t.family == f))
            .filter(|t| q.started_by.as_ref().is_none_or(|s| t.started_by.as_ref() == Some(s)))
            .filter(|t| q.service_name.as_ref().is_none_or(|s| t.service.as_ref() == Some(s)))
            .filter(|t| instance.as_ref().is_none_or(|i| t.container_instance_arn.as_ref() == Some(i)))
            .filter(|t| q.launch_type.as_ref().is_none_or(|l| t.launch_type.as_str() == l))
            .collect();
        tasks.sort_by_key(|t| t.created_ms);
        Ok(tasks.into_iter().map(|t| t.arn.clone()).collect())
    }

    /// Forgets tasks that stopped over an hour ago (AWS stops showing them too).
    pub(crate) fn prune_stopped(&self) {
        let cutoff = now_ms() - STOPPED_TASK_RETENTION_MS;
        let old: Vec<String> = self
            .state
            .lock()
            .tasks
            .values()
            .filter(|t| t.is_stopped() && t.stopped_ms.is_some_and(|s| s < cutoff))
            .map(|t| t.arn.clone())
            .collect();
        for arn in old {
            if self.store.delete(TASKS, &arn).is_ok() {
                self.state.lock().tasks.remove(&arn);
            }
        }
    }

    pub(crate) fn task_dir(&self, task_id: &str) -> PathBuf {
        self.data_dir.join("ecs").join("tasks").join(task_id)
    }
}

pub(crate) struct PlannedTasks {
    pub instances: Vec<Option<String>>,
    pub failures: Vec<Failure>,
    pub group: String,
}

/// CPU/memory/ports one task takes from an EC2 instance.
pub(crate) fn task_demand(
    td: &TaskDefinition,
    overrides: &TaskOverrides,
    group: &str,
) -> scheduler::TaskDemand {
    let (cpu, memory) = demand_of(td, overrides);
    let static_host_ports = match td.effective_network_mode() {
        NetworkMode::Awsvpc => Vec::new(),
        _ => td
            .containers
            .iter()
            .flat_map(|c| c.port_mappings.iter())
            .filter_map(|p| p.host_port.filter(|h| *h != 0))
            .collect(),
    };
    scheduler::TaskDemand { cpu, memory, static_host_ports, group: group.to_string() }
}

fn demand_of(td: &TaskDefinition, overrides: &TaskOverrides) -> (u32, u64) {
    let cpu =
        overrides.cpu.as_deref().and_then(|c| parse_cpu(c).ok()).or(td.task_cpu_units()).unwrap_or_else(
            || {
                td.containers
                    .iter()
                    .map(|c| {
                        overrides
                            .container_overrides
                            .iter()
                            .find(|o| o.name == c.name)
                            .and_then(|o| o.cpu)
                            .unwrap_or(c.cpu)
                    })
                    .sum()
            },
        );
    let memory = overrides
        .memory
        .as_deref()
        .and_then(|m| parse_memory(m).ok())
        .or(td.task_memory_mib())
        .unwrap_or_else(|| {
            td.containers
                .iter()
                .map(|c| {
                    let o = overrides.container_overrides.iter().find(|o| o.name == c.name);
                    o.and_then(|o| o.memory.or(o.memory_reservation))
                        .or(c.memory.or(c.memory_reservation))
                        .unwrap_or(0) as u64
                })
                .sum()
        });
    (cpu, memory)
}

fn view_of(i: &ContainerInstance, st: &State) -> InstanceView {
    let mut cpu_used: i64 = 0;
    let mut mem_used: i64 = 0;
    let mut ports: BTreeSet<u16> = i.reserved_ports.iter().copied().collect();
    let (mut running, mut pending) = (0, 0);
    for t in
        st.tasks.values().filter(|t| t.container_instance_arn.as_deref() == Some(&i.arn) && !t.is_stopped())
    {
        if t.last_status == "RUNNING" {
            running += 1;
        } else {
            pending += 1;
        }
        cpu_used += t.cpu.as_deref().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
        mem_used += t.memory.as_deref().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
        for c in &t.containers {
            for b in &c.network_bindings {
                ports.insert(b.host_port);
            }
        }
        if let Some(td) = st
            .taskdefs
            .get(&Scope::new(&t.account, &t.region).key(&t.family))
            .and_then(|v| v.iter().find(|d| d.arn == t.task_definition_arn))
            && td.effective_network_mode() != NetworkMode::Awsvpc
        {
            for p in td.containers.iter().flat_map(|c| c.port_mappings.iter()) {
                if let Some(h) = p.host_port.filter(|h| *h != 0) {
                    ports.insert(h);
                }
            }
        }
    }
    InstanceView {
        instance: i.clone(),
        remaining_cpu: i.cpu as i64 - cpu_used,
        remaining_memory: i.memory_mib as i64 - mem_used,
        ports_used: ports.into_iter().collect(),
        running_tasks: running,
        pending_tasks: pending,
    }
}

/// Which resource a tagging ARN names.
enum Tagged {
    Cluster(String),
    TaskDefinition(String, u32),
    Task(String),
    Service(String),
    Instance(String),
}

impl EcsEngine {
    fn tagged(&self, scope: &Scope, arn: &str) -> Result<Tagged, Error> {
        let prefix = scope.arn("");
        let not_found = || Error::ResourceNotFound("The specified resource could not be found.".into());
        let rest = arn.strip_prefix(&prefix).ok_or_else(not_found)?;
        let st = self.state.lock();
        if let Some(name) = rest.strip_prefix("cluster/") {
            st.clusters.get(&scope.key(name)).filter(|c| c.status == "ACTIVE").ok_or_else(not_found)?;
            return Ok(Tagged::Cluster(scope.key(name)));
        }
        if let Some(fr) = rest.strip_prefix("task-definition/") {
            let (family, rev) = fr.rsplit_once(':').ok_or_else(not_found)?;
            let rev: u32 = rev.parse().map_err(|_| not_found())?;
            st.taskdefs
                .get(&scope.key(family))
                .and_then(|v| v.iter().find(|t| t.revision == rev))
                .ok_or_else(not_found)?;
            return Ok(Tagged::TaskDefinition(scope.key(family), rev));
        }
        if rest.starts_with("task/") {
            st.tasks.get(arn).ok_or_else(not_found)?;
            return Ok(Tagged::Task(arn.into()));
        }
        if rest.starts_with("service/") {
            st.services.get(arn).filter(|s| s.status != "INACTIVE").ok_or_else(not_found)?;
            return Ok(Tagged::Service(arn.into()));
        }
        if rest.starts_with("container-instance/") {
            st.instances.get(arn).ok_or_else(not_found)?;
            return Ok(Tagged::Instance(arn.into()));
        }
        Err(not_found())
    }

    /// Applies `f` to the resource's tags (store first, then memory) and returns them.
    fn with_tags(&self, scope: &Scope, arn: &str, f: impl FnOnce(&mut Tags)) -> Result<Tags, Error> {
        let target = self.tagged(scope, arn)?;
        let _services = self.service_writes.lock();
        let _tasks = self.task_writes.lock();
        let mut st = self.state.lock();
        let missing = || Error::ResourceNotFound("The specified resource could not be found.".into());
        match target {
            Tagged::Cluster(key) => {
                let c = st.clusters.get_mut(&key).ok_or_else(missing)?;
                self.retag(CLUSTERS, &key, c, |c| &mut c.tags, f)
            }
            Tagged::TaskDefinition(key, rev) => {
                let td = st
                    .taskdefs
                    .get_mut(&key)
                    .and_then(|v| v.iter_mut().find(|t| t.revision == rev))
                    .ok_or_else(missing)?;
                self.retag(TASKDEFS, &format!("{key}:{rev:08}"), td, |t| &mut t.tags, f)
            }
            Tagged::Task(arn) => {
                let t = st.tasks.get_mut(&arn).ok_or_else(missing)?;
                self.retag(TASKS, &arn, t, |t| &mut t.tags, f)
            }
            Tagged::Service(arn) => {
                let sv = st.services.get_mut(&arn).ok_or_else(missing)?;
                self.retag(SERVICES, &arn, sv, |s| &mut s.tags, f)
            }
            Tagged::Instance(arn) => {
                let i = st.instances.get_mut(&arn).ok_or_else(missing)?;
                self.retag(INSTANCES, &arn, i, |i| &mut i.tags, f)
            }
        }
    }

    /// One resource's tag change: the updated copy goes to the store first, then replaces
    /// the in-memory record.
    fn retag<T: Clone + serde::Serialize>(
        &self,
        collection: &str,
        key: &str,
        item: &mut T,
        tags_of: fn(&mut T) -> &mut Tags,
        f: impl FnOnce(&mut Tags),
    ) -> Result<Tags, Error> {
        let mut updated = item.clone();
        f(tags_of(&mut updated));
        self.put(collection, key, &updated)?;
        *item = updated;
        Ok(tags_of(item).clone())
    }

    pub fn tag_resource(&self, scope: &Scope, arn: &str, tags: Tags) -> Result<(), Error> {
        self.with_tags(scope, arn, |have| {
            for (k, v) in tags {
                match have.iter_mut().find(|(hk, _)| *hk == k) {
                    Some(slot) => slot.1 = v,
                    None => have.push((k, v)),
                }
            }
        })?;
        Ok(())
    }

    pub fn untag_resource(&self, scope: &Scope, arn: &str, keys: &[String]) -> Result<(), Error> {
        self.with_tags(scope, arn, |have| have.retain(|(k, _)| !keys.contains(k)))?;
        Ok(())
    }

    pub fn list_tags_for_resource(&self, scope: &Scope, arn: &str) -> Result<Tags, Error> {
        self.with_tags(scope, arn, |_| {})
    }
}

const ACCOUNT_SETTINGS: &str = "ecs.account-settings";

impl EcsEngine {
    /// UpdateClusterSettings / UpdateCluster: replaces the named settings.
    pub fn update_cluster_settings(
        &self,
        scope: &Scope,
        cluster: &str,
        settings: Vec<(String, String)>,
    ) -> Result<ClusterView, Error> {
        let mut c = self.active_cluster(scope, Some(cluster))?;
        for (k, v) in settings {
            if k != "containerInsights" {
                return Err(Error::invalid(format!("Invalid cluster setting name: {k}")));
            }
            match c.settings.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = v,
                None => c.settings.push((k, v)),
            }
        }
        let key = scope.key(&c.name);
        self.put(CLUSTERS, &key, &c)?;
        self.state.lock().clusters.insert(key, c.clone());
        Ok(self.cluster_view(c))
    }

    /// PutAccountSetting(Default): an account-level setting (stored, reported back; Nimbus
    /// does not change behaviour on them).
    pub fn put_account_setting(&self, scope: &Scope, name: &str, value: &str) -> Result<(), Error> {
        self.store.put(ACCOUNT_SETTINGS, &scope.key(name), value.as_bytes())?;
        Ok(())
    }

    /// (name, value) of the account's settings, optionally one name.
    pub fn list_account_settings(
        &self,
        scope: &Scope,
        name: Option<&str>,
    ) -> Result<Vec<(String, String)>, Error> {
        let prefix = scope.key("");
        Ok(self
            .store
            .list(ACCOUNT_SETTINGS)?
            .into_iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix(&prefix)?.to_string();
                name.is_none_or(|want| want == n).then(|| (n, String::from_utf8_lossy(&v).into_owned()))
            })
            .collect())
    }

    /// DeleteTaskDefinitions: INACTIVE revisions become DELETE_IN_PROGRESS; others are failures.
    pub fn delete_task_definitions(
        &self,
        scope: &Scope,
        refs: &[String],
    ) -> Result<(Vec<TaskDefinition>, Vec<Failure>), Error> {
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for raw in refs {
            let rest = raw.rsplit_once(":task-definition/").map(|(_, r)| r).unwrap_or(raw);
            let parsed =
                rest.rsplit_once(':').and_then(|(f, r)| Some((f.to_string(), r.parse::<u32>().ok()?)));
            let Some((family, rev)) = parsed else {
                failures.push(Failure {
                    arn: Some(raw.clone()),
                    reason: "The specified task definition identifier is invalid. Specify a valid name or ARN and try again.".into(),
                    detail: None,
                });
                continue;
            };
            let key = scope.key(&family);
            let mut st = self.state.lock();
            let Some(td) = st.taskdefs.get_mut(&key).and_then(|v| v.iter_mut().find(|t| t.revision == rev))
            else {
                failures.push(Failure {
                    arn: Some(scope.arn(&format!("task-definition/{family}:{rev}"))),
                    reason: "The specified task definition does not exist. Specify a valid account, family, revision and try again.".into(),
                    detail: None,
                });
                continue;
            };
            if td.status == TaskDefinitionStatus::Active {
                failures.push(Failure {
                    arn: Some(td.arn.clone()),
                    reason: "The specified task definition is still in ACTIVE status. Please deregister the target and try again.".into(),
                    detail: None,
                });
                continue;
            }
            let mut updated = td.clone();
            updated.status = TaskDefinitionStatus::DeleteInProgress;
            self.put(TASKDEFS, &format!("{key}:{rev:08}"), &updated)?;
            *td = updated.clone();
            done.push(updated);
        }
        Ok((done, failures))
    }
}

/// Volume names as AWS allows them, unique; every mount point names one of them and every
/// volumesFrom an existing other container.
fn validate_volumes(volumes: &[Volume], containers: &[ContainerDefinition]) -> Result<(), Error> {
    let mut names = BTreeSet::new();
    for v in volumes {
        if !valid_name(&v.name) {
            return Err(Error::client(
                "Volume name must be 1-255 characters: letters (upper and lower case), numbers, underscores and hyphens.",
            ));
        }
        if !names.insert(v.name.as_str()) {
            return Err(Error::client(format!("Duplicate volume name: {}", v.name)));
        }
        if v.host_source_path.as_deref().is_some_and(|p| !p.starts_with('/')) {
            return Err(Error::client(format!(
                "Invalid host.sourcePath for volume '{}': must be absolute.",
                v.name
            )));
        }
    }
    for c in containers {
        for m in &c.mount_points {
            if !names.contains(m.source_volume.as_str()) {
                return Err(Error::client(format!(
                    "Invalid 'mountPoints' setting for container '{}'. Unknown volume '{}'.",
                    c.name, m.source_volume
                )));
            }
            if !m.container_path.starts_with('/') {
                return Err(Error::client(format!(
                    "Invalid 'mountPoints' setting for container '{}'. containerPath must be absolute: '{}'.",
                    c.name, m.container_path
                )));
            }
        }
        for f in &c.volumes_from {
            if f.source_container == c.name || !containers.iter().any(|o| o.name == f.source_container) {
                return Err(Error::client(format!(
                    "Invalid 'volumesFrom' setting for container '{}'. Unknown container '{}'.",
                    c.name, f.source_container
                )));
            }
        }
    }
    Ok(())
}
