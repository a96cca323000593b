//! ECS resources as typed values (AWS vocabulary). Serialised with serde for the `Store`
//! only; the wire shapes live in `crates/api/src/ecs.rs`.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type Tags = Vec<(String, String)>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub arn: String,
    pub account: String,
    pub region: String,
    /// ACTIVE or INACTIVE (deleted clusters stay describable as INACTIVE, as AWS).
    pub status: String,
    pub tags: Tags,
    pub settings: Vec<(String, String)>,
    pub created_ms: i64,
    /// Associated capacity providers (FARGATE, FARGATE_SPOT) and the default strategy.
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CapacityProviderStrategyItem {
    pub capacity_provider: String,
    pub weight: u32,
    pub base: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum NetworkMode {
    Bridge,
    Host,
    Awsvpc,
    None,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::Awsvpc => "awsvpc",
            NetworkMode::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<NetworkMode> {
        Some(match s {
            "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "awsvpc" => NetworkMode::Awsvpc,
            "none" => NetworkMode::None,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PortMapping {
    pub container_port: u16,
    /// None or 0 → a dynamic host port (bridge); equal to the container port (awsvpc, host).
    pub host_port: Option<u16>,
    /// tcp or udp.
    pub protocol: String,
    pub name: Option<String>,
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthCheck {
    /// `["CMD", …]` or `["CMD-SHELL", "…"]`, as in the task definition.
    pub command: Vec<String>,
    pub interval: u32,
    pub timeout: u32,
    pub retries: u32,
    pub start_period: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogConfiguration {
    pub log_driver: String,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerDependency {
    pub container_name: String,
    /// START, COMPLETE, SUCCESS or HEALTHY.
    pub condition: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ulimit {
    pub name: String,
    pub soft_limit: i64,
    pub hard_limit: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ContainerDefinition {
    pub name: String,
    pub image: String,
    pub cpu: u32,
    pub memory: Option<u32>,
    pub memory_reservation: Option<u32>,
    pub port_mappings: Vec<PortMapping>,
    pub essential: bool,
    pub entry_point: Vec<String>,
    pub command: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub depends_on: Vec<ContainerDependency>,
    pub health_check: Option<HealthCheck>,
    pub log_configuration: Option<LogConfiguration>,
    pub working_directory: Option<String>,
    pub user: Option<String>,
    pub ulimits: Vec<Ulimit>,
    pub stop_timeout: Option<u32>,
    pub start_timeout: Option<u32>,
    pub privileged: Option<bool>,
    pub hostname: Option<String>,
    pub readonly_root_filesystem: Option<bool>,
    pub docker_labels: BTreeMap<String, String>,
    pub disable_networking: Option<bool>,
    /// Task volumes shown inside this container (also echoed from `unmodelled` as given).
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    /// Containers whose mount points this container gets too.
    #[serde(default)]
    pub volumes_from: Vec<VolumeFrom>,
    /// Container definition fields Nimbus accepts but does not act on (dnsServers,
    /// linuxParameters, mountPoints, …), kept as given so Describe echoes them.
    #[serde(default)]
    pub unmodelled: BTreeMap<String, serde_json::Value>,
}

/// A task definition volume. Without a host path it is a scratch volume: an empty
/// directory made for each task, shared by the task's containers, gone when the task stops.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Volume {
    pub name: String,
    /// `host.sourcePath`: a directory of the container instance (EC2 only), kept after the task.
    pub host_source_path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct MountPoint {
    pub source_volume: String,
    pub container_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct VolumeFrom {
    pub source_container: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum TaskDefinitionStatus {
    Active,
    Inactive,
    /// DeleteTaskDefinitions was called on an INACTIVE revision.
    DeleteInProgress,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlacementConstraintDef {
    /// distinctInstance or memberOf.
    pub kind: String,
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskDefinition {
    pub family: String,
    pub revision: u32,
    pub arn: String,
    pub account: String,
    pub region: String,
    pub containers: Vec<ContainerDefinition>,
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
    pub network_mode: Option<NetworkMode>,
    pub requires_compatibilities: Vec<String>,
    pub compatibilities: Vec<String>,
    /// CPU units as a string ("256"), normalised from "0.25 vCPU".
    pub cpu: Option<String>,
    /// MiB as a string ("512"), normalised from "0.5 GB".
    pub memory: Option<String>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub placement_constraints: Vec<PlacementConstraintDef>,
    pub requires_attributes: Vec<String>,
    pub status: TaskDefinitionStatus,
    pub registered_ms: i64,
    pub deregistered_ms: Option<i64>,
    pub registered_by: Option<String>,
    pub tags: Tags,
    /// What `volumes` says (also echoed from `unmodelled` as given).
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Task definition fields accepted but not acted on (runtimePlatform, ephemeralStorage,
    /// volumes, …), echoed as given.
    #[serde(default)]
    pub unmodelled: BTreeMap<String, serde_json::Value>,
}

impl TaskDefinition {
    pub fn effective_network_mode(&self) -> NetworkMode {
        self.network_mode.unwrap_or(NetworkMode::Bridge)
    }
    pub fn task_cpu_units(&self) -> Option<u32> {
        self.cpu.as_deref().and_then(|c| c.parse().ok())
    }
    pub fn task_memory_mib(&self) -> Option<u64> {
        self.memory.as_deref().and_then(|c| c.parse().ok())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum LaunchType {
    Ec2,
    Fargate,
    External,
}

impl LaunchType {
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchType::Ec2 => "EC2",
            LaunchType::Fargate => "FARGATE",
            LaunchType::External => "EXTERNAL",
        }
    }
    pub fn parse(s: &str) -> Option<LaunchType> {
        Some(match s {
            "EC2" => LaunchType::Ec2,
            "FARGATE" => LaunchType::Fargate,
            "EXTERNAL" => LaunchType::External,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ContainerOverride {
    pub name: String,
    pub command: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub memory_reservation: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TaskOverrides {
    pub container_overrides: Vec<ContainerOverride>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct AwsVpcConfiguration {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkBinding {
    pub bind_ip: String,
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Unknown => "UNKNOWN",
        }
    }
}

/// One container of a task, as DescribeTasks shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerState {
    pub name: String,
    pub arn: String,
    pub image: String,
    pub image_digest: Option<String>,
    pub runtime_id: Option<String>,
    /// PENDING, RUNNING or STOPPED.
    pub last_status: String,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub network_bindings: Vec<NetworkBinding>,
    pub health_status: Option<HealthStatus>,
    pub cpu: u32,
    pub memory: Option<u32>,
    pub memory_reservation: Option<u32>,
    pub essential: bool,
    /// Host pid of the container's init process while it runs (not on the wire).
    #[serde(default)]
    pub pid: Option<u32>,
}

/// The ElasticNetworkInterface attachment of an awsvpc task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub details: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Task {
    pub id: String,
    pub arn: String,
    pub cluster: String,
    pub cluster_arn: String,
    pub account: String,
    pub region: String,
    pub task_definition_arn: String,
    pub family: String,
    pub container_instance_arn: Option<String>,
    pub launch_type: LaunchType,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub containers: Vec<ContainerState>,
    pub created_ms: i64,
    pub pull_started_ms: Option<i64>,
    pub pull_stopped_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub stopping_ms: Option<i64>,
    pub stopped_ms: Option<i64>,
    pub execution_stopped_ms: Option<i64>,
    pub connectivity_ms: Option<i64>,
    /// RUNNING or STOPPED.
    pub desired_status: String,
    /// PROVISIONING, PENDING, ACTIVATING, RUNNING, DEACTIVATING, STOPPING, DEPROVISIONING, STOPPED.
    pub last_status: String,
    pub health_status: HealthStatus,
    pub group: String,
    pub started_by: Option<String>,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub tags: Tags,
    pub overrides: TaskOverrides,
    pub version: u64,
    pub attachments: Vec<Attachment>,
    pub availability_zone: String,
    pub platform_version: Option<String>,
    pub network_mode: NetworkMode,
    pub network_configuration: Option<AwsVpcConfiguration>,
    /// The service that started this task, and which of its deployments.
    pub service: Option<String>,
    pub deployment_id: Option<String>,
    pub enable_execute_command: bool,
    /// The capacity provider the task was launched through (FARGATE, FARGATE_SPOT).
    #[serde(default)]
    pub capacity_provider_name: Option<String>,
}

impl Task {
    pub fn is_stopped(&self) -> bool {
        self.last_status == "STOPPED"
    }
}

/// A resource of a container instance (CPU, MEMORY, PORTS, PORTS_UDP).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceResource {
    pub name: String,
    /// INTEGER or STRINGSET.
    pub kind: String,
    pub integer_value: i64,
    pub string_set_value: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerInstance {
    pub id: String,
    pub arn: String,
    pub cluster: String,
    pub account: String,
    pub region: String,
    pub ec2_instance_id: String,
    /// ACTIVE, DRAINING, INACTIVE.
    pub status: String,
    pub agent_connected: bool,
    pub cpu: u32,
    pub memory_mib: u64,
    /// Host ports reserved by the agent (22, 2375, 2376, 51678, 51679), as AWS.
    pub reserved_ports: Vec<u16>,
    pub attributes: Vec<(String, Option<String>)>,
    pub registered_ms: i64,
    /// True for the machine Nimbus runs on; false for capacity-only instances registered by API.
    pub local: bool,
    pub version: u64,
    pub tags: Tags,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadBalancerRef {
    pub target_group_arn: Option<String>,
    pub load_balancer_name: Option<String>,
    pub container_name: Option<String>,
    pub container_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlacementStrategyDef {
    /// random, spread or binpack.
    pub kind: String,
    pub field: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deployment {
    pub id: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: String,
    pub task_definition: String,
    pub desired_count: u32,
    pub pending_count: u32,
    pub running_count: u32,
    pub failed_tasks: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub launch_type: Option<LaunchType>,
    pub platform_version: Option<String>,
    pub network_configuration: Option<AwsVpcConfiguration>,
    /// COMPLETED, FAILED or IN_PROGRESS.
    pub rollout_state: String,
    pub rollout_state_reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceEvent {
    pub id: String,
    pub created_ms: i64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeploymentConfiguration {
    pub maximum_percent: u32,
    pub minimum_healthy_percent: u32,
    pub circuit_breaker_enable: bool,
    pub circuit_breaker_rollback: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Service {
    pub name: String,
    pub arn: String,
    pub cluster: String,
    pub cluster_arn: String,
    pub account: String,
    pub region: String,
    /// ACTIVE, DRAINING or INACTIVE.
    pub status: String,
    pub desired_count: u32,
    pub launch_type: Option<LaunchType>,
    pub platform_version: Option<String>,
    pub task_definition: String,
    pub deployment_configuration: DeploymentConfiguration,
    pub deployments: Vec<Deployment>,
    pub events: Vec<ServiceEvent>,
    pub created_ms: i64,
    pub placement_constraints: Vec<PlacementConstraintDef>,
    pub placement_strategy: Vec<PlacementStrategyDef>,
    pub network_configuration: Option<AwsVpcConfiguration>,
    pub health_check_grace_period_seconds: Option<u32>,
    /// REPLICA or DAEMON.
    pub scheduling_strategy: String,
    pub load_balancers: Vec<LoadBalancerRef>,
    pub tags: Tags,
    pub enable_ecs_managed_tags: bool,
    pub propagate_tags: Option<String>,
    pub enable_execute_command: bool,
    pub role_arn: Option<String>,
    pub created_by: Option<String>,
    /// Counters derived from the service's tasks (kept up to date by the reconciler).
    pub running_count: u32,
    pub pending_count: u32,
    /// Whether "has reached a steady state" was said since the last change.
    #[serde(default)]
    pub steady: bool,
    #[serde(default)]
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
}

/// One entry of a `failures` list (RunTask, Describe*).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub arn: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
}
