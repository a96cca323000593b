//! The ECS engine: clusters, task definitions, tasks, services and container instances; a pure scheduler (placement and service reconciliation) and the runtime that runs tasks in sandboxes.
//!
//! - `engine`: the control plane — clusters (the local machine registers itself in each as a
//!   container instance), task definitions, container instances, RunTask/StartTask/StopTask,
//!   tags, account settings; in memory, every write in the `Store` first.
//! - `runner`: one tokio task per ECS task — image → rootfs per container (`ImageProvider`),
//!   a pause sandbox holding the task's network namespace, containers in dependsOn order,
//!   health checks, host-port forwarding, awslogs, SIGTERM → SIGKILL after stopTimeout.
//! - `services`: the service scheduler loop around the pure `scheduler::reconcile`, events,
//!   deployments and the circuit breaker; target-group lookups for load balancing.
//! - `metadata`: the task metadata endpoint (v4) inside each task's network namespace.
//! - `scheduler`: pure placement and reconciliation (no I/O, no clock).
#![forbid(unsafe_code)]
pub mod scheduler;

mod engine;
mod error;
mod metadata;
pub mod resources;
mod runner;
mod services;
mod types;

pub use engine::{
    ClusterView, Config, EcsEngine, ImageDefaults, ImageFailure, ImageProvider, InstanceView, ListTasks,
    NodeCapacity, PreparedImage, RESERVED_PORTS, RegisterTaskDefinition, RunTask, Scope, TaskUsage,
    UsageSink,
};
pub use error::Error;
pub use services::{CreateService, DeploymentConfigurationInput, UpdateService};
pub use types::*;
