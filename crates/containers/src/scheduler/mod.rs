//! The pure ECS scheduler: task placement and service reconciliation.
//!
//! Nothing in here does I/O, reads a clock or draws from a global random source: the
//! engine passes everything in (instances, observed tasks, `now_ms`, a `seed`) and gets a
//! plan back, so every decision can be replayed and tested with mock fleets.
//!
//! # Final signatures (the contract the ECS engine codes against)
//!
//! ```text
//! pub type DeploymentId = String;
//!
//! // ---- placement ----
//! pub struct InstanceView { pub id: String, pub cpu_registered: u32, pub memory_registered: u64 /* MiB */,
//!     pub cpu_used: u32, pub memory_used: u64, pub ports_used: BTreeSet<u16>,
//!     pub attributes: BTreeMap<String, String> /* "ecs.availability-zone", "ecs.instance-type", "ec2InstanceId", custom */,
//!     pub active: bool /* status ACTIVE (DRAINING/INACTIVE → false) */,
//!     pub task_groups: Vec<String> /* group of each task already on it, e.g. "service:web", "family:x" */ }
//! pub struct TaskDemand { pub cpu: u32, pub memory: u64, pub static_host_ports: Vec<u16>, pub group: String }
//! pub enum BinpackField { Cpu, Memory }
//! pub enum PlacementStrategy { Binpack(BinpackField), Spread(String /* "instanceId" | "host" | "attribute:K" */), Random }
//! pub enum PlacementConstraint { DistinctInstance, MemberOf(String /* cluster query language */) }
//! pub fn place(demand: &TaskDemand, count: usize, instances: &[InstanceView],
//!              strategies: &[PlacementStrategy], constraints: &[PlacementConstraint], seed: u64) -> Placement;
//! pub struct Placement { pub assignments: Vec<String> /* instance id per placed task, in order */,
//!     pub failures: Vec<PlacementFailure> /* one per task that could not be placed */,
//!     pub no_container_instances: bool /* no ACTIVE instance at all: AWS answers RunTask with
//!         InvalidParameterException "No Container Instances were found in your cluster." */ }
//! pub struct PlacementFailure { pub reason: String /* REASON_* below */, pub instance_id: Option<String>
//!     /* the closest matching instance (AWS puts its ARN in Failure.arn) */, pub detail: Option<String> }
//! pub const REASON_CPU = "RESOURCE:CPU", REASON_MEMORY = "RESOURCE:MEMORY", REASON_PORTS = "RESOURCE:PORTS",
//!     REASON_MEMBER_OF = "MemberOf", REASON_DISTINCT_INSTANCE = "DistinctInstance",
//!     REASON_NO_CONTAINER_INSTANCES = "NO_CONTAINER_INSTANCES", NO_CONTAINER_INSTANCES_MESSAGE;
//! pub fn validate_expression(expr: &str) -> Result<(), ExpressionError>;   // for API-side validation of memberOf
//! pub fn matches_expression(expr: &str, instance: &InstanceView) -> Result<bool, ExpressionError>;
//!
//! // ---- service reconciliation ----
//! pub struct CircuitBreaker { pub enable: bool, pub rollback: bool }
//! pub struct ServiceSpec { pub desired_count: u32, pub minimum_healthy_percent: u32, pub maximum_percent: u32,
//!     pub primary: DeploymentId, pub circuit_breaker: Option<CircuitBreaker>, pub failure_threshold: u32 }
//! pub fn failure_threshold(desired_count: u32) -> u32;      // AWS: clamp(ceil(0.5 × desired), 3, 200)
//! pub enum ObservedState { Pending, Running, Stopping, Stopped }
//! pub struct ObservedTask { pub id: String, pub deployment: DeploymentId, pub state: ObservedState,
//!     pub healthy: Option<bool> /* None = no health check / still UNKNOWN */, pub started_at_ms: Option<u64> }
//! pub enum DeploymentState { Primary, Active, Inactive }
//! pub enum RolloutState { InProgress, Completed, Failed }
//! pub struct DeploymentView { pub id: DeploymentId, pub task_definition: String, pub failed_tasks: u32,
//!     pub state: DeploymentState, pub rollout: RolloutState, pub created_at_ms: u64 }
//! pub fn reconcile(spec: &ServiceSpec, deployments: &[DeploymentView], observed: &[ObservedTask], now_ms: u64) -> ServicePlan;
//! pub struct ServicePlan { pub start: Vec<(DeploymentId, u32)>, pub stop: Vec<String /* task ids */>,
//!     pub deployment_updates: Vec<DeploymentUpdate> }
//! impl ServicePlan { pub fn is_empty(&self) -> bool }
//! pub enum DeploymentUpdate {
//!     RolloutCompleted { deployment: DeploymentId },              // rolloutState COMPLETED
//!     RolloutFailed { deployment: DeploymentId, reason: String },  // circuit breaker: rolloutState FAILED
//!     RollBack { from: DeploymentId, to: DeploymentId },           // engine makes `to` PRIMARY (IN_PROGRESS) again
//!     Inactive { deployment: DeploymentId },                       // non-primary deployment drained → INACTIVE
//! }
//! ```
//!
//! Engine obligations that keep `reconcile` a fixed point:
//! - apply `start` by placing (`place`) and creating tasks in state `Pending` for that
//!   deployment (tasks that cannot be placed are simply retried on the next pass);
//! - apply `stop` by moving the tasks to `Stopping` (then `Stopped`); a `Stopping` task still
//!   holds its instance's cpu/memory/ports and group in the `InstanceView`s given to `place`;
//! - apply every `DeploymentUpdate`; on `RollBack` make `to` PRIMARY with rollout
//!   IN_PROGRESS and `failed_tasks` 0 (AWS rolls back with a fresh deployment), `from` ACTIVE;
//! - pass every deployment, INACTIVE ones included (a COMPLETED one is a rollback target);
//! - count in `failed_tasks` each task of a deployment that stopped before becoming RUNNING
//!   or because it went unhealthy (the circuit breaker input).
//!
//! Behaviour worth knowing: the circuit breaker only watches an IN_PROGRESS primary; when it
//! trips without rollback (or with no COMPLETED deployment to return to) the rollout is
//! FAILED and the scheduler stops launching tasks for it and stops draining older tasks —
//! the old revision keeps serving. Running tasks reported unhealthy are stopped (and so
//! replaced). Placement with no strategies takes the lowest instance id first; random
//! ranks depend only on (seed, task index, instance id). With rounding that leaves no
//! slack (e.g. min 100 % / max 100 %) a rollout cannot move, as in ECS.

mod placement;
mod query;
mod reconcile;
mod rng;

use std::collections::{BTreeMap, BTreeSet};

pub use placement::place;
pub use query::{ExpressionError, matches_expression, validate_expression};
pub use reconcile::{failure_threshold, reconcile};

/// Deployment ids are the engine's (`ecs-svc/<digits>` in AWS); the scheduler only compares them.
pub type DeploymentId = String;

/// AWS `Failure.reason` when the instance lacked CPU units.
pub const REASON_CPU: &str = "RESOURCE:CPU";
/// AWS `Failure.reason` when the instance lacked memory.
pub const REASON_MEMORY: &str = "RESOURCE:MEMORY";
/// AWS `Failure.reason` when a static host port was already taken.
pub const REASON_PORTS: &str = "RESOURCE:PORTS";
/// A memberOf constraint excluded every instance.
pub const REASON_MEMBER_OF: &str = "MemberOf";
/// distinctInstance excluded every instance (each already runs a task of the group).
pub const REASON_DISTINCT_INSTANCE: &str = "DistinctInstance";
/// No ACTIVE container instance exists; see [`NO_CONTAINER_INSTANCES_MESSAGE`].
pub const REASON_NO_CONTAINER_INSTANCES: &str = "NO_CONTAINER_INSTANCES";
/// AWS's RunTask answer (an `InvalidParameterException`, not a `failures` entry) when the
/// cluster has no container instances.
pub const NO_CONTAINER_INSTANCES_MESSAGE: &str = "No Container Instances were found in your cluster.";

/// One container instance as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceView {
    pub id: String,
    pub cpu_registered: u32,
    /// MiB.
    pub memory_registered: u64,
    pub cpu_used: u32,
    pub memory_used: u64,
    pub ports_used: BTreeSet<u16>,
    /// `ecs.availability-zone`, `ecs.instance-type`, `ec2InstanceId`, custom attributes.
    pub attributes: BTreeMap<String, String>,
    /// Status ACTIVE; DRAINING and INACTIVE instances get no new tasks.
    pub active: bool,
    /// The group (`service:<name>`, `family:<name>` or RunTask's `group`) of each task on it.
    pub task_groups: Vec<String>,
}

/// What one task needs from an instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskDemand {
    pub cpu: u32,
    /// MiB.
    pub memory: u64,
    /// Host ports fixed in the task definition (hostPort ≠ 0); dynamic ports never conflict.
    pub static_host_ports: Vec<u16>,
    pub group: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinpackField {
    Cpu,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementStrategy {
    /// Fill the instance with the least remaining amount of the field first.
    Binpack(BinpackField),
    /// `instanceId` (or `host`) or `attribute:<name>`: the value with the fewest tasks of the group first.
    Spread(String),
    /// Seeded shuffle.
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementConstraint {
    /// No two tasks of the same group on one instance.
    DistinctInstance,
    /// Cluster query language expression every chosen instance must satisfy.
    MemberOf(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// The instance id for each placed task, in placement order.
    pub assignments: Vec<String>,
    /// One entry per task that could not be placed.
    pub failures: Vec<PlacementFailure>,
    /// True when there was no ACTIVE instance to consider at all.
    pub no_container_instances: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementFailure {
    /// One of the `REASON_*` constants.
    pub reason: String,
    /// The closest matching instance (AWS reports its ARN in `Failure.arn`).
    pub instance_id: Option<String>,
    pub detail: Option<String>,
}

/// `deploymentCircuitBreaker` of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub desired_count: u32,
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
    /// The newest deployment: the one whose task definition the service should run.
    pub primary: DeploymentId,
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Failed tasks of the primary deployment that trip the breaker; see [`failure_threshold`].
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObservedState {
    /// PROVISIONING / PENDING / ACTIVATING: started but not RUNNING yet.
    Pending,
    Running,
    /// desiredStatus STOPPED but not yet STOPPED (DEACTIVATING / STOPPING / DEPROVISIONING).
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTask {
    pub id: String,
    pub deployment: DeploymentId,
    pub state: ObservedState,
    /// `None`: no health check, or still UNKNOWN (start period).
    pub healthy: Option<bool>,
    pub started_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    Primary,
    Active,
    Inactive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentView {
    pub id: DeploymentId,
    pub task_definition: String,
    /// Tasks of this deployment that failed to start or went unhealthy (circuit breaker input).
    pub failed_tasks: u32,
    pub state: DeploymentState,
    pub rollout: RolloutState,
    /// Orders deployments: the rollback target is the newest COMPLETED one.
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentUpdate {
    /// The primary reached its desired count, healthy, with no older tasks left.
    RolloutCompleted { deployment: DeploymentId },
    /// The circuit breaker tripped; `reason` is AWS's `rolloutStateReason`.
    RolloutFailed { deployment: DeploymentId, reason: String },
    /// Circuit breaker rollback: the engine makes `to` the primary deployment again.
    RollBack { from: DeploymentId, to: DeploymentId },
    /// A non-primary deployment has no tasks left.
    Inactive { deployment: DeploymentId },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicePlan {
    /// Tasks to start per deployment (in practice only the primary).
    pub start: Vec<(DeploymentId, u32)>,
    /// Task ids to stop.
    pub stop: Vec<String>,
    pub deployment_updates: Vec<DeploymentUpdate>,
}

impl ServicePlan {
    pub fn is_empty(&self) -> bool {
        self.start.is_empty() && self.stop.is_empty() && self.deployment_updates.is_empty()
    }
}
