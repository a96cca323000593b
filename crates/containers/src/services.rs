//! ECS services: desired count kept by a reconciler loop around the pure
//! `scheduler::reconcile` (this module does the I/O: starting and stopping tasks, events,
//! deployments), woken by every task state change plus a periodic tick; and the target
//! groups a service's healthy tasks are registered in.
use crate::engine::{EcsEngine, SERVICES, Scope, now_ms};
use crate::error::Error;
use crate::scheduler::{self, DeploymentState, DeploymentUpdate, ObservedState, ObservedTask, RolloutState};
use crate::types::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct DeploymentConfigurationInput {
    pub maximum_percent: Option<u32>,
    pub minimum_healthy_percent: Option<u32>,
    /// (enable, rollback)
    pub circuit_breaker: Option<(bool, bool)>,
}

#[derive(Debug, Clone, Default)]
pub struct CreateService {
    pub cluster: Option<String>,
    pub service_name: String,
    pub task_definition: Option<String>,
    pub load_balancers: Vec<LoadBalancerRef>,
    pub desired_count: Option<u32>,
    pub launch_type: Option<String>,
    pub platform_version: Option<String>,
    pub role: Option<String>,
    pub deployment_configuration: DeploymentConfigurationInput,
    pub placement_constraints: Vec<PlacementConstraintDef>,
    pub placement_strategy: Vec<PlacementStrategyDef>,
    pub network_configuration: Option<AwsVpcConfiguration>,
    pub health_check_grace_period_seconds: Option<u32>,
    pub scheduling_strategy: Option<String>,
    pub tags: Tags,
    pub enable_ecs_managed_tags: bool,
    pub propagate_tags: Option<String>,
    pub enable_execute_command: bool,
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateService {
    pub cluster: Option<String>,
    pub service: String,
    pub desired_count: Option<u32>,
    pub task_definition: Option<String>,
    pub deployment_configuration: Option<DeploymentConfigurationInput>,
    pub network_configuration: Option<AwsVpcConfiguration>,
    pub placement_constraints: Option<Vec<PlacementConstraintDef>>,
    pub placement_strategy: Option<Vec<PlacementStrategyDef>>,
    pub platform_version: Option<String>,
    pub force_new_deployment: bool,
    pub health_check_grace_period_seconds: Option<u32>,
    pub load_balancers: Option<Vec<LoadBalancerRef>>,
}

fn deployment_id() -> String {
    format!("ecs-svc/{}", (0..19).map(|_| char::from(b'0' + fastrand::u8(0..10))).collect::<String>())
}

fn short_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

const MAX_EVENTS: usize = 100;
/// AWS's stoppedReason for a task the scheduler replaced because a container health check failed.
const UNHEALTHY_REASON: &str = "Task failed container health checks";

fn push_event(s: &mut Service, message: String) {
    let now = now_ms();
    // The scheduler repeats a placement failure at most once a minute, as AWS throttles it.
    if let Some(last) = s.events.last()
        && last.message == message
        && now - last.created_ms < 60_000
    {
        return;
    }
    s.events.push(ServiceEvent { id: uuid::Uuid::new_v4().to_string(), created_ms: now, message });
    if s.events.len() > MAX_EVENTS {
        let extra = s.events.len() - MAX_EVENTS;
        s.events.drain(..extra);
    }
}

impl EcsEngine {
    fn find_service(&self, scope: &Scope, cluster: &str, raw: &str) -> Option<Service> {
        let name = short_id(raw);
        let arn = format!("arn:aws:ecs:{}:{}:service/{cluster}/{name}", scope.region, scope.account);
        self.state.lock().services.get(&arn).cloned()
    }

    fn save_service(&self, s: &Service) -> Result<(), Error> {
        self.put(SERVICES, &s.arn, s)?;
        self.state.lock().services.insert(s.arn.clone(), s.clone());
        Ok(())
    }

    pub fn create_service(self: &Arc<Self>, scope: &Scope, req: CreateService) -> Result<Service, Error> {
        let _serial = self.service_writes.lock();
        let cluster = self.active_cluster(scope, req.cluster.as_deref())?;
        if req.service_name.is_empty()
            || req.service_name.len() > 255
            || !req.service_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::invalid(
                "Service name must be 1-255 characters: letters (upper and lower case), numbers, underscores and hyphens.",
            ));
        }
        if let Some(existing) = self.find_service(scope, &cluster.name, &req.service_name)
            && existing.status != "INACTIVE"
        {
            return Err(Error::invalid("Creation of service was not idempotent."));
        }
        let Some(td_ref) = req.task_definition.as_deref().filter(|t| !t.is_empty()) else {
            return Err(Error::invalid("TaskDefinition must be specified."));
        };
        let td = self
            .find_task_definition(scope, td_ref)
            .ok_or_else(|| Error::client("TaskDefinition not found."))?;
        if td.status != TaskDefinitionStatus::Active {
            return Err(Error::invalid("TaskDefinition is inactive"));
        }
        // Without a launch type (and no capacity provider strategy) a service runs on EC2.
        let (launch_type, _) =
            self.launch_of(&cluster, req.launch_type.as_deref(), &req.capacity_provider_strategy)?;
        let launch = Some(launch_type);
        let strategy = req.scheduling_strategy.clone().unwrap_or_else(|| "REPLICA".into());
        if strategy != "REPLICA" && strategy != "DAEMON" {
            return Err(Error::invalid(format!("Invalid scheduling strategy: {strategy}")));
        }
        if strategy == "DAEMON" && launch == Some(LaunchType::Fargate) {
            return Err(Error::invalid(
                "The DAEMON scheduling strategy is not supported with the FARGATE launch type.",
            ));
        }
        if strategy == "REPLICA" && req.desired_count.is_none() {
            return Err(Error::invalid(
                "desiredCount is required for services with the REPLICA scheduling strategy.",
            ));
        }
        if strategy == "DAEMON" && req.desired_count.is_some_and(|d| d > 0) {
            return Err(Error::invalid(
                "The daemon scheduling strategy does not support a desired count for services.",
            ));
        }
        self.validate_launch(
            &td,
            launch_type,
            req.network_configuration.as_ref(),
            req.platform_version.as_deref(),
        )?;
        for lb in &req.load_balancers {
            if let Some(name) = &lb.container_name
                && !td.containers.iter().any(|c| &c.name == name)
            {
                return Err(Error::invalid(format!(
                    "The container {name} does not exist in the task definition."
                )));
            }
        }
        let dc = &req.deployment_configuration;
        let (default_max, default_min) = if strategy == "DAEMON" { (100, 0) } else { (200, 100) };
        let now = now_ms();
        let dep = Deployment {
            id: deployment_id(),
            status: "PRIMARY".into(),
            task_definition: td.arn.clone(),
            desired_count: req.desired_count.unwrap_or(0),
            pending_count: 0,
            running_count: 0,
            failed_tasks: 0,
            created_ms: now,
            updated_ms: now,
            launch_type: launch,
            platform_version: (launch == Some(LaunchType::Fargate))
                .then(|| req.platform_version.clone().unwrap_or_else(|| "1.4.0".into())),
            network_configuration: req.network_configuration.clone(),
            rollout_state: "IN_PROGRESS".into(),
            rollout_state_reason: "ECS deployment ecs-svc/ in progress.".into(),
        };
        let mut dep = dep;
        dep.rollout_state_reason = format!("ECS deployment {} in progress.", dep.id);
        let service = Service {
            name: req.service_name.clone(),
            arn: scope_arn(scope, &format!("service/{}/{}", cluster.name, req.service_name)),
            cluster: cluster.name.clone(),
            cluster_arn: cluster.arn.clone(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            status: "ACTIVE".into(),
            desired_count: req.desired_count.unwrap_or(0),
            launch_type: launch,
            platform_version: dep.platform_version.clone(),
            task_definition: td.arn.clone(),
            deployment_configuration: DeploymentConfiguration {
                maximum_percent: dc.maximum_percent.unwrap_or(default_max),
                minimum_healthy_percent: dc.minimum_healthy_percent.unwrap_or(default_min),
                circuit_breaker_enable: dc.circuit_breaker.is_some_and(|c| c.0),
                circuit_breaker_rollback: dc.circuit_breaker.is_some_and(|c| c.1),
            },
            deployments: vec![dep],
            events: Vec::new(),
            created_ms: now,
            placement_constraints: req.placement_constraints,
            placement_strategy: req.placement_strategy,
            network_configuration: req.network_configuration,
            health_check_grace_period_seconds: req.health_check_grace_period_seconds,
            scheduling_strategy: strategy,
            load_balancers: req.load_balancers,
            tags: req.tags,
            enable_ecs_managed_tags: req.enable_ecs_managed_tags,
            propagate_tags: req.propagate_tags,
            enable_execute_command: req.enable_execute_command,
            role_arn: req.role,
            created_by: Some(format!("arn:aws:iam::{}:root", scope.account)),
            running_count: 0,
            pending_count: 0,
            steady: false,
            capacity_provider_strategy: req.capacity_provider_strategy.clone(),
        };
        self.save_service(&service)?;
        self.wake.notify_one();
        Ok(service)
    }

    pub fn update_service(self: &Arc<Self>, scope: &Scope, req: UpdateService) -> Result<Service, Error> {
        let _serial = self.service_writes.lock();
        let cluster = self.active_cluster(scope, req.cluster.as_deref())?;
        let mut s = self
            .find_service(scope, &cluster.name, &req.service)
            .ok_or_else(|| Error::ServiceNotFound("Service not found.".into()))?;
        if s.status != "ACTIVE" {
            return Err(Error::ServiceNotActive("Service was not ACTIVE.".into()));
        }
        if let Some(d) = req.desired_count {
            if s.scheduling_strategy == "DAEMON" {
                return Err(Error::invalid(
                    "The daemon scheduling strategy does not support a desired count for services.",
                ));
            }
            s.desired_count = d;
            s.steady = false;
        }
        if let Some(dc) = &req.deployment_configuration {
            if let Some(m) = dc.maximum_percent {
                s.deployment_configuration.maximum_percent = m;
            }
            if let Some(m) = dc.minimum_healthy_percent {
                s.deployment_configuration.minimum_healthy_percent = m;
            }
            if let Some((e, r)) = dc.circuit_breaker {
                s.deployment_configuration.circuit_breaker_enable = e;
                s.deployment_configuration.circuit_breaker_rollback = r;
            }
        }
        if let Some(pc) = req.placement_constraints {
            s.placement_constraints = pc;
        }
        if let Some(ps) = req.placement_strategy {
            s.placement_strategy = ps;
        }
        if let Some(g) = req.health_check_grace_period_seconds {
            s.health_check_grace_period_seconds = Some(g);
        }
        if let Some(lbs) = req.load_balancers {
            s.load_balancers = lbs;
        }
        let mut new_td = None;
        if let Some(raw) = req.task_definition.as_deref().filter(|t| !t.is_empty()) {
            let td = self
                .find_task_definition(scope, raw)
                .ok_or_else(|| Error::client("TaskDefinition not found."))?;
            // An existing service can't be moved to an INACTIVE revision.
            if td.status != TaskDefinitionStatus::Active {
                return Err(Error::invalid("TaskDefinition is inactive"));
            }
            new_td = Some(td);
        }
        let net = req.network_configuration.clone().or_else(|| s.network_configuration.clone());
        let td_changed = new_td.as_ref().is_some_and(|td| td.arn != s.task_definition);
        let net_changed =
            req.network_configuration.is_some() && req.network_configuration != s.network_configuration;
        if td_changed || net_changed || req.force_new_deployment || req.platform_version.is_some() {
            let td = match new_td {
                Some(td) => td,
                None => self
                    .find_task_definition(scope, &s.task_definition)
                    .ok_or_else(|| Error::client("TaskDefinition not found."))?,
            };
            self.validate_launch(
                &td,
                s.launch_type.unwrap_or(LaunchType::Ec2),
                net.as_ref(),
                req.platform_version.as_deref(),
            )?;
            let now = now_ms();
            for d in &mut s.deployments {
                if d.status == "PRIMARY" {
                    d.status = "ACTIVE".into();
                    d.updated_ms = now;
                }
            }
            let id = deployment_id();
            s.deployments.push(Deployment {
                rollout_state_reason: format!("ECS deployment {id} in progress."),
                id,
                status: "PRIMARY".into(),
                task_definition: td.arn.clone(),
                desired_count: s.desired_count,
                pending_count: 0,
                running_count: 0,
                failed_tasks: 0,
                created_ms: now,
                updated_ms: now,
                launch_type: s.launch_type,
                platform_version: s.launch_type.filter(|l| *l == LaunchType::Fargate).map(|_| {
                    req.platform_version.clone().filter(|p| p != "LATEST").unwrap_or_else(|| "1.4.0".into())
                }),
                network_configuration: net.clone(),
                rollout_state: "IN_PROGRESS".into(),
            });
            // Keep the history bounded; INACTIVE ones are only kept as rollback targets.
            while s.deployments.len() > 10 {
                if let Some(pos) = s.deployments.iter().position(|d| d.status == "INACTIVE") {
                    s.deployments.remove(pos);
                } else {
                    break;
                }
            }
            s.task_definition = td.arn;
            s.network_configuration = net;
            s.steady = false;
        }
        self.save_service(&s)?;
        self.wake.notify_one();
        Ok(s)
    }

    pub fn delete_service(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        raw: &str,
        force: bool,
    ) -> Result<Service, Error> {
        let _serial = self.service_writes.lock();
        let cluster = self.active_cluster(scope, cluster)?;
        let mut s = self
            .find_service(scope, &cluster.name, raw)
            .filter(|s| s.status != "INACTIVE")
            .ok_or_else(|| Error::ServiceNotFound("Service not found.".into()))?;
        if s.status == "DRAINING" {
            return Ok(s);
        }
        if s.desired_count > 0 && !force && s.scheduling_strategy == "REPLICA" {
            return Err(Error::invalid("The service cannot be stopped while it is scaled above 0."));
        }
        s.status = "DRAINING".into();
        s.desired_count = 0;
        self.save_service(&s)?;
        self.wake.notify_one();
        Ok(s)
    }

    pub fn describe_services(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        refs: &[String],
    ) -> Result<(Vec<Service>, Vec<Failure>), Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for r in refs {
            match self.find_service(scope, &cluster.name, r) {
                Some(s) => found.push(s),
                None => failures.push(Failure {
                    arn: Some(if r.starts_with("arn:") {
                        r.clone()
                    } else {
                        scope_arn(scope, &format!("service/{}/{r}", cluster.name))
                    }),
                    reason: "MISSING".into(),
                    detail: None,
                }),
            }
        }
        Ok((found, failures))
    }

    pub fn list_services(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        launch_type: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        self.list_services_filtered(scope, cluster, launch_type, None)
    }

    /// ListServices with its schedulingStrategy filter too.
    pub fn list_services_filtered(
        &self,
        scope: &Scope,
        cluster: Option<&str>,
        launch_type: Option<&str>,
        scheduling_strategy: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        let cluster = self.active_cluster(scope, cluster)?;
        let st = self.state.lock();
        Ok(st
            .services
            .values()
            .filter(|s| s.cluster == cluster.name && s.account == scope.account && s.region == scope.region)
            // AWS: a deleted service that is DRAINING "is no longer visible … in the
            // ListServices API operation" (DescribeServices still shows it).
            .filter(|s| s.status == "ACTIVE")
            .filter(|s| launch_type.is_none_or(|l| s.launch_type.map(|x| x.as_str()) == Some(l)))
            .filter(|s| scheduling_strategy.is_none_or(|x| s.scheduling_strategy == x))
            .map(|s| s.arn.clone())
            .collect())
    }

    /// Starts the service scheduler: reconciles every service on each wake-up (a task changed
    /// state, a service changed) and at least once a second.
    pub fn start_scheduler(self: &Arc<Self>) {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut last_prune = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = engine.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let arns: Vec<String> = engine
                    .state
                    .lock()
                    .services
                    .values()
                    .filter(|s| s.status != "INACTIVE")
                    .map(|s| s.arn.clone())
                    .collect();
                for arn in arns {
                    if let Err(e) = engine.reconcile_service(&arn) {
                        tracing::warn!("ecs: reconciling {arn}: {e}");
                    }
                }
                if last_prune.elapsed() > Duration::from_secs(60) {
                    engine.prune_stopped();
                    last_prune = std::time::Instant::now();
                }
            }
        });
    }

    fn reconcile_service(self: &Arc<Self>, arn: &str) -> Result<(), Error> {
        let _serial = self.service_writes.lock();
        let Some(mut s) = self.state.lock().services.get(arn).cloned() else { return Ok(()) };
        let before = s.clone();
        let name = s.name.clone();
        let scope = Scope::new(&s.account, &s.region);
        let tasks: Vec<Task> = self
            .state
            .lock()
            .tasks
            .values()
            .filter(|t| {
                t.service.as_deref() == Some(&s.name)
                    && t.cluster == s.cluster
                    && t.account == s.account
                    && t.region == s.region
            })
            .cloned()
            .collect();
        let draining_instances: Vec<String> = self
            .state
            .lock()
            .instances
            .values()
            .filter(|i| i.cluster == s.cluster && i.status == "DRAINING")
            .map(|i| i.arn.clone())
            .collect();
        // The breaker's input: tasks of a deployment that failed to start or exited on their own.
        for d in &mut s.deployments {
            d.failed_tasks = tasks
                .iter()
                .filter(|t| t.deployment_id.as_deref() == Some(&d.id) && t.is_stopped())
                .filter(|t| {
                    matches!(
                        t.stop_code.as_deref(),
                        Some("TaskFailedToStart") | Some("EssentialContainerExited")
                    ) || t.stopped_reason.as_deref() == Some(UNHEALTHY_REASON)
                })
                .count() as u32;
        }
        if s.scheduling_strategy == "DAEMON" && s.status == "ACTIVE" {
            s.desired_count = self
                .state
                .lock()
                .instances
                .values()
                .filter(|i| {
                    i.cluster == s.cluster
                        && i.account == s.account
                        && i.region == s.region
                        && i.status == "ACTIVE"
                })
                .count() as u32;
        }
        let observed: Vec<ObservedTask> = tasks
            .iter()
            .filter(|t| !t.is_stopped())
            .map(|t| ObservedTask {
                id: t.arn.clone(),
                // Tasks on a DRAINING instance are replaced elsewhere, as AWS does: to the
                // scheduler they belong to no deployment, so they drain within min/max percent.
                deployment: if t
                    .container_instance_arn
                    .as_ref()
                    .is_some_and(|i| draining_instances.contains(i))
                {
                    format!("draining:{}", t.deployment_id.clone().unwrap_or_default())
                } else {
                    t.deployment_id.clone().unwrap_or_default()
                },
                state: if t.desired_status == "STOPPED" {
                    ObservedState::Stopping
                } else if t.last_status == "RUNNING" {
                    ObservedState::Running
                } else {
                    ObservedState::Pending
                },
                healthy: match t.health_status {
                    HealthStatus::Healthy => Some(true),
                    // healthCheckGracePeriodSeconds: an unhealthy verdict is ignored that long
                    // after the task started.
                    HealthStatus::Unhealthy
                        if s.health_check_grace_period_seconds.is_some_and(|g| {
                            t.started_ms.is_some_and(|st| now_ms() - st < i64::from(g) * 1000)
                        }) =>
                    {
                        None
                    }
                    HealthStatus::Unhealthy => Some(false),
                    HealthStatus::Unknown => None,
                },
                started_at_ms: t.started_ms.map(|m| m as u64),
            })
            .collect();
        let Some(primary) = s.deployments.iter().find(|d| d.status == "PRIMARY").cloned() else {
            return Ok(());
        };
        let views: Vec<scheduler::DeploymentView> = s
            .deployments
            .iter()
            .map(|d| scheduler::DeploymentView {
                id: d.id.clone(),
                task_definition: d.task_definition.clone(),
                failed_tasks: d.failed_tasks,
                state: match d.status.as_str() {
                    "PRIMARY" => DeploymentState::Primary,
                    "ACTIVE" => DeploymentState::Active,
                    _ => DeploymentState::Inactive,
                },
                rollout: match d.rollout_state.as_str() {
                    "COMPLETED" => RolloutState::Completed,
                    "FAILED" => RolloutState::Failed,
                    _ => RolloutState::InProgress,
                },
                created_at_ms: d.created_ms as u64,
            })
            .collect();
        let dc = &s.deployment_configuration;
        let spec = scheduler::ServiceSpec {
            desired_count: s.desired_count,
            minimum_healthy_percent: dc.minimum_healthy_percent,
            maximum_percent: dc.maximum_percent,
            primary: primary.id.clone(),
            circuit_breaker: Some(scheduler::CircuitBreaker {
                enable: dc.circuit_breaker_enable,
                rollback: dc.circuit_breaker_rollback,
            }),
            failure_threshold: scheduler::failure_threshold(s.desired_count),
        };
        let plan = scheduler::reconcile(&spec, &views, &observed, now_ms() as u64);
        let now = now_ms();

        // Stops first (they free capacity for the starts).
        if !plan.stop.is_empty() {
            let mut stopped = Vec::new();
            for task_arn in &plan.stop {
                let Some(t) = tasks.iter().find(|t| &t.arn == task_arn) else { continue };
                let reason = if t.health_status == HealthStatus::Unhealthy {
                    UNHEALTHY_REASON.to_string()
                } else {
                    format!(
                        "Scaling activity initiated by (deployment {})",
                        t.deployment_id.as_deref().unwrap_or(&primary.id)
                    )
                };
                self.update_task(task_arn, |t| {
                    t.desired_status = "STOPPED".into();
                    t.stopping_ms.get_or_insert(now);
                    if t.stop_code.is_none() {
                        t.stop_code = Some("ServiceSchedulerInitiated".into());
                        t.stopped_reason = Some(reason.clone());
                    }
                });
                self.signal_stop(task_arn, "ServiceSchedulerInitiated", &reason);
                stopped.push(format!("(task {})", short_id(task_arn)));
            }
            if !stopped.is_empty() {
                push_event(
                    &mut s,
                    format!(
                        "(service {}) has stopped {} running tasks: {}.",
                        name,
                        stopped.len(),
                        stopped.join(" ")
                    ),
                );
            }
        }
        for (dep_id, n) in &plan.start {
            let Some(dep) = s.deployments.iter().find(|d| &d.id == dep_id).cloned() else { continue };
            let Some(td) = self.find_task_definition(&scope, &dep.task_definition) else { continue };
            let Ok(cluster) = self.active_cluster(&scope, Some(&s.cluster)) else { continue };
            let launch = s.launch_type.unwrap_or(LaunchType::Ec2);
            let mut constraints = s.placement_constraints.clone();
            if s.scheduling_strategy == "DAEMON" {
                constraints
                    .push(PlacementConstraintDef { kind: "distinctInstance".into(), expression: None });
            }
            let planned = self.plan_tasks(
                &scope,
                &cluster,
                &td,
                launch,
                *n,
                Some(format!("service:{}", name)),
                &TaskOverrides::default(),
                dep.network_configuration.as_ref(),
                &constraints,
                &s.placement_strategy,
                dep.platform_version.as_deref(),
            );
            let planned = match planned {
                Ok(p) => p,
                Err(e) => {
                    push_event(
                        &mut s,
                        format!(
                            "(service {}) was unable to place a task because no container instance met all of its requirements. Reason: {e}",
                            name
                        ),
                    );
                    continue;
                }
            };
            if let Some(f) = planned.failures.first() {
                let what = match f.reason.as_str() {
                    scheduler::REASON_MEMORY => "has insufficient memory available",
                    scheduler::REASON_CPU => "has insufficient CPU units available",
                    scheduler::REASON_PORTS => "is already using a port required by your task",
                    _ => "encountered error \"MemberOf\" placement constraint",
                };
                let closest = f.arn.as_deref().map(short_id).unwrap_or("");
                push_event(
                    &mut s,
                    format!(
                        "(service {}) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance {closest}) {what}. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
                        name
                    ),
                );
            }
            let mut started = Vec::new();
            for instance in planned.instances {
                let tags =
                    if s.propagate_tags.as_deref() == Some("SERVICE") { s.tags.clone() } else { Vec::new() };
                let task = self.new_task(
                    &scope,
                    &cluster,
                    &td,
                    launch,
                    instance,
                    planned.group.clone(),
                    Some(dep.id.clone()),
                    TaskOverrides::default(),
                    tags,
                    dep.network_configuration.clone(),
                    Some(s.name.clone()),
                    Some(dep.id.clone()),
                    s.enable_execute_command,
                );
                let mut task = task;
                if !s.capacity_provider_strategy.is_empty() {
                    task.capacity_provider_name = self
                        .launch_of(&cluster, None, &s.capacity_provider_strategy)
                        .ok()
                        .and_then(|(_, p)| p);
                }
                let id = task.id.clone();
                if self.launch(task).is_ok() {
                    started.push(format!("(task {id})"));
                }
            }
            if !started.is_empty() {
                push_event(
                    &mut s,
                    format!("(service {}) has started {} tasks: {}.", name, started.len(), started.join(" ")),
                );
                s.steady = false;
            }
        }
        for u in &plan.deployment_updates {
            match u {
                DeploymentUpdate::RolloutCompleted { deployment } => {
                    if let Some(d) = s.deployments.iter_mut().find(|d| &d.id == deployment) {
                        d.rollout_state = "COMPLETED".into();
                        d.rollout_state_reason = format!("ECS deployment {deployment} completed.");
                        d.updated_ms = now;
                    }
                    push_event(
                        &mut s,
                        format!("(service {}) (deployment {deployment}) deployment completed.", name),
                    );
                }
                DeploymentUpdate::RolloutFailed { deployment, reason } => {
                    if let Some(d) = s.deployments.iter_mut().find(|d| &d.id == deployment) {
                        d.rollout_state = "FAILED".into();
                        d.rollout_state_reason = reason.clone();
                        d.updated_ms = now;
                    }
                    push_event(
                        &mut s,
                        format!(
                            "(service {}) (deployment {deployment}) deployment failed: tasks failed to start.",
                            name
                        ),
                    );
                }
                DeploymentUpdate::RollBack { from, to } => {
                    let mut td = None;
                    for d in &mut s.deployments {
                        if &d.id == from {
                            d.status = "ACTIVE".into();
                            d.updated_ms = now;
                        } else if &d.id == to {
                            d.status = "PRIMARY".into();
                            d.rollout_state = "IN_PROGRESS".into();
                            d.rollout_state_reason =
                                format!("ECS deployment circuit breaker: rolling back to deploymentId {to}.");
                            d.updated_ms = now;
                            d.failed_tasks = 0;
                            td = Some(d.task_definition.clone());
                        } else if d.status == "PRIMARY" {
                            d.status = "ACTIVE".into();
                        }
                    }
                    if let Some(td) = td {
                        s.task_definition = td;
                    }
                    push_event(&mut s, format!("(service {}) rolling back to deployment {to}.", name));
                }
                DeploymentUpdate::Inactive { deployment } => {
                    if let Some(d) = s.deployments.iter_mut().find(|d| &d.id == deployment) {
                        d.status = "INACTIVE".into();
                        d.updated_ms = now;
                    }
                }
            }
        }
        // Counters as DescribeServices reports them.
        let live: Vec<Task> = self
            .state
            .lock()
            .tasks
            .values()
            .filter(|t| {
                t.service.as_deref() == Some(&s.name)
                    && t.cluster == s.cluster
                    && t.account == s.account
                    && t.region == s.region
                    && !t.is_stopped()
            })
            .cloned()
            .collect();
        // Tasks being stopped count as neither running nor pending, as on AWS.
        let live: Vec<Task> = live.into_iter().filter(|t| t.desired_status == "RUNNING").collect();
        s.running_count = live.iter().filter(|t| t.last_status == "RUNNING").count() as u32;
        s.pending_count = live.iter().filter(|t| t.last_status != "RUNNING").count() as u32;
        let desired = s.desired_count;
        for d in &mut s.deployments {
            let mine: Vec<&Task> =
                live.iter().filter(|t| t.deployment_id.as_deref() == Some(&d.id)).collect();
            d.running_count = mine.iter().filter(|t| t.last_status == "RUNNING").count() as u32;
            d.pending_count = mine.iter().filter(|t| t.last_status != "RUNNING").count() as u32;
            d.desired_count = if d.status == "PRIMARY" { desired } else { d.running_count + d.pending_count };
        }
        let any_left = self.state.lock().tasks.values().any(|t| {
            t.service.as_deref() == Some(&s.name)
                && t.cluster == s.cluster
                && t.account == s.account
                && !t.is_stopped()
        });
        if s.status == "DRAINING" && !any_left {
            s.status = "INACTIVE".into();
            for d in &mut s.deployments {
                d.status = "INACTIVE".into();
            }
        }
        let active_deployments = s.deployments.iter().filter(|d| d.status != "INACTIVE").count();
        let steady_now = s.status == "ACTIVE"
            && plan.start.is_empty()
            && plan.stop.is_empty()
            && s.deployments.iter().any(|d| d.status == "PRIMARY" && d.rollout_state == "COMPLETED")
            && active_deployments == 1
            && s.running_count == s.desired_count
            && s.pending_count == 0;
        if steady_now && !s.steady {
            push_event(&mut s, format!("(service {}) has reached a steady state.", name));
        }
        s.steady = steady_now;
        if s != before {
            self.save_service(&s)?;
        }
        Ok(())
    }

    /// Healthy RUNNING targets of a target group (from every service that names it), as
    /// host-reachable addresses.
    pub fn targets(&self, target_group_arn: &str) -> Vec<SocketAddr> {
        let st = self.state.lock();
        let mut out = Vec::new();
        for s in st.services.values().filter(|s| s.status == "ACTIVE") {
            for lb in
                s.load_balancers.iter().filter(|l| l.target_group_arn.as_deref() == Some(target_group_arn))
            {
                for t in st.tasks.values().filter(|t| {
                    t.service.as_deref() == Some(&s.name)
                        && t.cluster == s.cluster
                        && t.account == s.account
                        && t.last_status == "RUNNING"
                        && t.desired_status == "RUNNING"
                        && t.health_status != HealthStatus::Unhealthy
                }) {
                    let Some(c) =
                        t.containers.iter().find(|c| lb.container_name.as_ref().is_none_or(|n| n == &c.name))
                    else {
                        continue;
                    };
                    let port = lb.container_port;
                    match t.network_mode {
                        NetworkMode::Awsvpc => {
                            let ip = t
                                .attachments
                                .iter()
                                .flat_map(|a| a.details.iter())
                                .find(|(k, _)| k == "privateIPv4Address")
                                .and_then(|(_, v)| v.parse().ok());
                            if let (Some(ip), Some(p)) = (ip, port) {
                                out.push(SocketAddr::new(ip, p));
                            }
                        }
                        _ => {
                            if let Some(b) =
                                c.network_bindings.iter().find(|b| port.is_none_or(|p| p == b.container_port))
                            {
                                out.push(SocketAddr::from(([127, 0, 0, 1], b.host_port)));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Round-robin over a target group's healthy targets (None: no healthy target).
    pub fn pick_target(&self, target_group_arn: &str) -> Option<SocketAddr> {
        let targets = self.targets(target_group_arn);
        if targets.is_empty() {
            return None;
        }
        let n = self.lb_cursor.fetch_add(1, Ordering::Relaxed);
        Some(targets[n % targets.len()])
    }
}

fn scope_arn(scope: &Scope, rest: &str) -> String {
    format!("arn:aws:ecs:{}:{}:{rest}", scope.region, scope.account)
}
