//! Amazon ECS (JSON 1.1, `AmazonEC2ContainerServiceV20141113`): clusters, task definitions,
//! tasks, container instances and services, mapped onto `nimbus-containers`.
use crate::auth::RequestContext;
use crate::error::ApiError;
use crate::json_rpc::{BoxFuture, JsonService, parse, unknown_operation};
use axum::body::Bytes;
use nimbus_containers as ecs;
use nimbus_containers::{EcsEngine, Scope};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct EcsService {
    pub engine: Arc<EcsEngine>,
}

impl JsonService for EcsService {
    fn target_prefix(&self) -> &'static str {
        "AmazonEC2ContainerServiceV20141113"
    }

    fn call<'a>(
        &'a self,
        ctx: &'a RequestContext,
        operation: &'a str,
        input: Bytes,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let scope = Scope::new(&ctx.scope.account, &ctx.scope.region);
            let e = &self.engine;
            match operation {
                "CreateCluster" => create_cluster(e, &scope, parse(&input)?),
                "DescribeClusters" => describe_clusters(e, &scope, parse(&input)?),
                "ListClusters" => {
                    let p: PageInput = parse(&input)?;
                    page("clusterArns", e.list_clusters(&scope), &p)
                }
                "DeleteCluster" => {
                    let i: ClusterRef = parse(&input)?;
                    let v = e.delete_cluster(&scope, i.cluster.as_deref().unwrap_or("default"))?;
                    Ok(json!({"cluster": cluster_json(&v, false)}))
                }
                "RegisterTaskDefinition" => register_task_definition(e, &scope, parse(&input)?),
                "DescribeTaskDefinition" => {
                    let i: TaskDefRef = parse(&input)?;
                    let td = e.describe_task_definition(&scope, &i.task_definition)?;
                    let mut out = json!({"taskDefinition": task_definition_json(&td)});
                    if i.include.iter().any(|x| x == "TAGS") {
                        out["tags"] = tags_json(&td.tags);
                    }
                    Ok(out)
                }
                "ListTaskDefinitions" => {
                    let i: ListTaskDefsInput = parse(&input)?;
                    let arns = e.list_task_definitions(
                        &scope,
                        i.family_prefix.as_deref(),
                        i.status.as_deref(),
                        i.sort.as_deref() == Some("DESC"),
                    );
                    page("taskDefinitionArns", arns, &i.page)
                }
                "ListTaskDefinitionFamilies" => {
                    let i: ListTaskDefsInput = parse(&input)?;
                    let fams = e.list_task_definition_families(
                        &scope,
                        i.family_prefix.as_deref(),
                        i.status.as_deref(),
                    );
                    page("families", fams, &i.page)
                }
                "DeregisterTaskDefinition" => {
                    let i: TaskDefRef = parse(&input)?;
                    let td = e.deregister_task_definition(&scope, &i.task_definition)?;
                    Ok(json!({"taskDefinition": task_definition_json(&td)}))
                }
                "RunTask" => run_task(e, &scope, parse(&input)?),
                "StopTask" => {
                    let i: StopTaskInput = parse(&input)?;
                    let t = e.stop_task(&scope, i.cluster.as_deref(), &i.task, i.reason.as_deref())?;
                    Ok(json!({"task": task_json(&t, false)}))
                }
                "DescribeTasks" => {
                    let i: DescribeInput = parse(&input)?;
                    describe_list_bounds("Tasks", &i.tasks, 100)?;
                    let (tasks, failures) = e.describe_tasks(&scope, i.cluster.as_deref(), &i.tasks)?;
                    let tags = i.include.iter().any(|x| x == "TAGS");
                    Ok(json!({
                        "tasks": tasks.iter().map(|t| task_json(t, tags)).collect::<Vec<_>>(),
                        "failures": failures_json(&failures),
                    }))
                }
                "ListTasks" => list_tasks(e, &scope, parse(&input)?),
                "RegisterContainerInstance" => register_instance(e, &scope, parse(&input)?),
                "DeregisterContainerInstance" => {
                    let i: DeregisterInstanceInput = parse(&input)?;
                    let v = e.deregister_container_instance(
                        &scope,
                        i.cluster.as_deref(),
                        &i.container_instance,
                        i.force.unwrap_or(false),
                    )?;
                    Ok(json!({"containerInstance": instance_json(&v, false)}))
                }
                "ListContainerInstances" => {
                    let i: ListInstancesInput = parse(&input)?;
                    let arns = e.list_container_instances(
                        &scope,
                        i.cluster.as_deref(),
                        i.status.as_deref(),
                        i.filter.as_deref(),
                    )?;
                    page("containerInstanceArns", arns, &i.page)
                }
                "DescribeContainerInstances" => {
                    let i: DescribeInput = parse(&input)?;
                    let (found, failures) =
                        e.describe_container_instances(&scope, i.cluster.as_deref(), &i.container_instances)?;
                    let tags = i.include.iter().any(|x| x == "TAGS");
                    Ok(json!({
                        "containerInstances": found.iter().map(|v| instance_json(v, tags)).collect::<Vec<_>>(),
                        "failures": failures_json(&failures),
                    }))
                }
                "UpdateContainerInstancesState" => {
                    let i: UpdateInstancesInput = parse(&input)?;
                    let (found, failures) = e.update_container_instances_state(
                        &scope,
                        i.cluster.as_deref(),
                        &i.container_instances,
                        &i.status,
                    )?;
                    Ok(json!({
                        "containerInstances": found.iter().map(|v| instance_json(v, false)).collect::<Vec<_>>(),
                        "failures": failures_json(&failures),
                    }))
                }
                "CreateService" => create_service(e, &scope, parse(&input)?),
                "UpdateService" => update_service(e, &scope, parse(&input)?),
                "DeleteService" => {
                    let i: DeleteServiceInput = parse(&input)?;
                    let s =
                        e.delete_service(&scope, i.cluster.as_deref(), &i.service, i.force.unwrap_or(false))?;
                    Ok(json!({"service": service_json(&s, false)}))
                }
                "DescribeServices" => {
                    let i: DescribeInput = parse(&input)?;
                    describe_list_bounds("Services", &i.services, 10)?;
                    let (found, failures) = e.describe_services(&scope, i.cluster.as_deref(), &i.services)?;
                    let tags = i.include.iter().any(|x| x == "TAGS");
                    Ok(json!({
                        "services": found.iter().map(|s| service_json(s, tags)).collect::<Vec<_>>(),
                        "failures": failures_json(&failures),
                    }))
                }
                "ListServices" => {
                    let i: ListServicesInput = parse(&input)?;
                    let arns = e.list_services_filtered(
                        &scope,
                        i.cluster.as_deref(),
                        i.launch_type.as_deref(),
                        i.scheduling_strategy.as_deref(),
                    )?;
                    page("serviceArns", arns, &i.page)
                }
                "TagResource" => {
                    let i: TagInput = parse(&input)?;
                    e.tag_resource(&scope, &i.resource_arn, tags_in(i.tags))?;
                    Ok(json!({}))
                }
                "UntagResource" => {
                    let i: TagInput = parse(&input)?;
                    e.untag_resource(&scope, &i.resource_arn, &i.tag_keys)?;
                    Ok(json!({}))
                }
                "ListTagsForResource" => {
                    let i: TagInput = parse(&input)?;
                    Ok(json!({"tags": tags_json(&e.list_tags_for_resource(&scope, &i.resource_arn)?)}))
                }
                "PutAccountSetting" | "PutAccountSettingDefault" => {
                    let i: AccountSettingInput = parse(&input)?;
                    e.put_account_setting(&scope, &i.name, &i.value)?;
                    let principal = format!("arn:aws:iam::{}:root", scope.account);
                    Ok(
                        json!({"setting": {"name": i.name, "value": i.value, "principalArn": principal, "type": "user"}}),
                    )
                }
                "ListAccountSettings" => {
                    let i: AccountSettingInput = parse(&input)?;
                    let name = Some(i.name.as_str()).filter(|n| !n.is_empty());
                    let principal = format!("arn:aws:iam::{}:root", scope.account);
                    let settings: Vec<Value> = e
                        .list_account_settings(&scope, name)?
                        .into_iter()
                        .map(|(n, v)| json!({"name": n, "value": v, "principalArn": principal, "type": "user"}))
                        .collect();
                    Ok(json!({"settings": settings}))
                }
                "UpdateClusterSettings" | "UpdateCluster" => {
                    let i: UpdateClusterInput = parse(&input)?;
                    let v = e.update_cluster_settings(&scope, &i.cluster, kv_in(i.settings))?;
                    Ok(json!({"cluster": cluster_json(&v, true)}))
                }
                "PutClusterCapacityProviders" => {
                    let i: PutCapacityProvidersInput = parse(&input)?;
                    let v = e.put_cluster_capacity_providers(
                        &scope,
                        &i.cluster,
                        i.capacity_providers,
                        strategy_in(i.default_capacity_provider_strategy),
                    )?;
                    Ok(json!({"cluster": cluster_json(&v, true)}))
                }
                "DeleteTaskDefinitions" => {
                    let i: DeleteTaskDefinitionsInput = parse(&input)?;
                    let (done, failures) = e.delete_task_definitions(&scope, &i.task_definitions)?;
                    Ok(json!({
                        "taskDefinitions": done.iter().map(task_definition_json).collect::<Vec<_>>(),
                        "failures": failures_json(&failures),
                    }))
                }
                "PutAttributes" | "DeleteAttributes" => {
                    let i: AttributesInput = parse(&input)?;
                    let attrs = i
                        .attributes
                        .into_iter()
                        .map(|a| {
                            if a.target_type.as_deref().is_some_and(|t| t != "container-instance") {
                                return Err(ApiError::from(ecs::Error::invalid(
                                    "targetType must be container-instance.",
                                )));
                            }
                            let target = a.target_id.ok_or_else(|| {
                                ApiError::from(ecs::Error::invalid(
                                    "targetId is required for container-instance attributes.",
                                ))
                            })?;
                            Ok((a.name, a.value, target))
                        })
                        .collect::<Result<Vec<_>, ApiError>>()?;
                    let done = e.put_attributes(
                        &scope,
                        i.cluster.as_deref(),
                        attrs,
                        operation == "DeleteAttributes",
                    )?;
                    Ok(json!({"attributes": attributes_json(&done)}))
                }
                "ListAttributes" => {
                    let i: ListAttributesInput = parse(&input)?;
                    if i.target_type != "container-instance" {
                        return Err(ecs::Error::invalid("targetType must be container-instance.").into());
                    }
                    let found = e.list_attributes(
                        &scope,
                        i.cluster.as_deref(),
                        i.attribute_name.as_deref(),
                        i.attribute_value.as_deref(),
                    )?;
                    Ok(json!({"attributes": attributes_json(&found)}))
                }
                "StartTask" => {
                    let i: StartTaskInput = parse(&input)?;
                    if i.task_definition.is_empty() {
                        return Err(ecs::Error::invalid("taskDefinition can not be blank.").into());
                    }
                    let (tasks, failures) = e.start_task(
                        &scope,
                        &i.container_instances,
                        ecs::RunTask {
                            cluster: i.cluster,
                            task_definition: i.task_definition,
                            count: 1,
                            overrides: overrides_in(i.overrides),
                            started_by: i.started_by,
                            group: i.group,
                            tags: tags_in(i.tags),
                            network_configuration: network_in(i.network_configuration),
                            enable_execute_command: i.enable_execute_command,
                            ..Default::default()
                        },
                    )?;
                    Ok(json!({
                        "tasks": tasks.iter().map(|t| task_json(t, true)).collect::<Vec<_>>(),
                        "failures": failures_json(&failures),
                    }))
                }
                _ => Err(unknown_operation(&format!("{}.{operation}", self.target_prefix()))),
            }
        })
    }
}

// ------------------------------------------------------------------ helpers

fn ts(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn tags_json(tags: &[(String, String)]) -> Value {
    json!(tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>())
}

fn tags_in(tags: Vec<TagIn>) -> Vec<(String, String)> {
    tags.into_iter().map(|t| (t.key, t.value.unwrap_or_default())).collect()
}

fn failures_json(f: &[ecs::Failure]) -> Value {
    json!(
        f.iter()
            .map(|f| {
                let mut m = Map::new();
                if let Some(a) = &f.arn {
                    m.insert("arn".into(), json!(a));
                }
                m.insert("reason".into(), json!(f.reason));
                if let Some(d) = &f.detail {
                    m.insert("detail".into(), json!(d));
                }
                Value::Object(m)
            })
            .collect::<Vec<_>>()
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PageInput {
    next_token: Option<String>,
    max_results: Option<usize>,
}

/// Lists page by offset; the token is the offset of the next item.
fn page(key: &str, items: Vec<String>, p: &PageInput) -> Result<Value, ApiError> {
    if p.max_results.is_some_and(|m| !(1..=100).contains(&m)) {
        return Err(ecs::Error::invalid("maxResults must be between 1 and 100.").into());
    }
    let start = p.next_token.as_deref().and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
    let max = p.max_results.unwrap_or(100);
    let end = (start + max).min(items.len());
    let slice = items.get(start.min(items.len())..end).unwrap_or(&[]).to_vec();
    let mut out = json!({ key: slice });
    if end < items.len() {
        out["nextToken"] = json!(end.to_string());
    }
    Ok(out)
}

fn insert_opt<T: serde::Serialize>(m: &mut Map<String, Value>, k: &str, v: &Option<T>) {
    if let Some(v) = v {
        m.insert(k.into(), json!(v));
    }
}

fn insert_ts(m: &mut Map<String, Value>, k: &str, v: Option<i64>) {
    if let Some(v) = v {
        m.insert(k.into(), ts(v));
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AccountSettingInput {
    name: String,
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateClusterInput {
    cluster: String,
    settings: Vec<KeyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DeleteTaskDefinitionsInput {
    task_definitions: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TagInput {
    resource_arn: String,
    tags: Vec<TagIn>,
    tag_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagIn {
    key: String,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyValue {
    name: Option<String>,
    value: Option<String>,
}

fn kv_in(v: Vec<KeyValue>) -> Vec<(String, String)> {
    v.into_iter().filter_map(|kv| Some((kv.name?, kv.value.unwrap_or_default()))).collect()
}

fn kv_json(v: &[(String, String)]) -> Value {
    json!(v.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>())
}

// ------------------------------------------------------------------ clusters

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateClusterInput {
    cluster_name: Option<String>,
    tags: Vec<TagIn>,
    settings: Vec<KeyValue>,
    capacity_providers: Vec<String>,
    default_capacity_provider_strategy: Vec<StrategyItemIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StrategyItemIn {
    capacity_provider: String,
    weight: Option<u32>,
    base: Option<u32>,
}

fn strategy_in(v: Vec<StrategyItemIn>) -> Vec<ecs::CapacityProviderStrategyItem> {
    v.into_iter()
        .map(|i| ecs::CapacityProviderStrategyItem {
            capacity_provider: i.capacity_provider,
            weight: i.weight.unwrap_or(0),
            base: i.base.unwrap_or(0),
        })
        .collect()
}

fn strategy_json(v: &[ecs::CapacityProviderStrategyItem]) -> Value {
    json!(
        v.iter()
            .map(|i| json!({"capacityProvider": i.capacity_provider, "weight": i.weight, "base": i.base}))
            .collect::<Vec<_>>()
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PutCapacityProvidersInput {
    cluster: String,
    capacity_providers: Vec<String>,
    default_capacity_provider_strategy: Vec<StrategyItemIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ClusterRef {
    cluster: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DescribeClustersInput {
    clusters: Vec<String>,
    include: Vec<String>,
}

fn create_cluster(e: &EcsEngine, scope: &Scope, i: CreateClusterInput) -> Result<Value, ApiError> {
    let mut v = e.create_cluster(scope, i.cluster_name.as_deref(), tags_in(i.tags), kv_in(i.settings))?;
    if !i.capacity_providers.is_empty() || !i.default_capacity_provider_strategy.is_empty() {
        v = e.put_cluster_capacity_providers(
            scope,
            &v.cluster.name,
            i.capacity_providers,
            strategy_in(i.default_capacity_provider_strategy),
        )?;
    }
    Ok(json!({"cluster": cluster_json(&v, true)}))
}

fn describe_clusters(e: &EcsEngine, scope: &Scope, i: DescribeClustersInput) -> Result<Value, ApiError> {
    let (found, failures) = e.describe_clusters(scope, &i.clusters);
    let tags = i.include.iter().any(|x| x == "TAGS");
    let settings = i.include.iter().any(|x| x == "SETTINGS");
    let stats = i.include.iter().any(|x| x == "STATISTICS");
    let clusters: Vec<Value> = found
        .iter()
        .map(|c| {
            let mut v = cluster_json(c, tags);
            if !settings && let Some(o) = v.as_object_mut() {
                o.remove("settings");
            }
            if stats {
                v["statistics"] = kv_json(&c.statistics);
            }
            v
        })
        .collect();
    Ok(json!({"clusters": clusters, "failures": failures_json(&failures)}))
}

fn cluster_json(v: &ecs::ClusterView, tags: bool) -> Value {
    let c = &v.cluster;
    let mut out = json!({
        "clusterArn": c.arn,
        "clusterName": c.name,
        "status": c.status,
        "registeredContainerInstancesCount": v.registered_container_instances,
        "runningTasksCount": v.running_tasks,
        "pendingTasksCount": v.pending_tasks,
        "activeServicesCount": v.active_services,
        "statistics": [],
        "settings": kv_json(&c.settings),
        "capacityProviders": c.capacity_providers,
        "defaultCapacityProviderStrategy": strategy_json(&c.default_capacity_provider_strategy),
    });
    if tags {
        out["tags"] = tags_json(&c.tags);
    }
    out
}

// ------------------------------------------------------------------ task definitions

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TaskDefRef {
    task_definition: String,
    include: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListTaskDefsInput {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    #[serde(flatten)]
    page: PageInput,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RegisterTaskDefinitionInput {
    family: String,
    task_role_arn: Option<String>,
    execution_role_arn: Option<String>,
    network_mode: Option<String>,
    container_definitions: Vec<ContainerDefinitionIn>,
    requires_compatibilities: Vec<String>,
    cpu: Option<String>,
    memory: Option<String>,
    tags: Vec<TagIn>,
    pid_mode: Option<String>,
    ipc_mode: Option<String>,
    placement_constraints: Vec<PlacementConstraintIn>,
    /// runtimePlatform, ephemeralStorage, volumes, …: accepted and echoed.
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ContainerDefinitionIn {
    name: Option<String>,
    image: Option<String>,
    cpu: Option<i64>,
    memory: Option<i64>,
    memory_reservation: Option<i64>,
    port_mappings: Vec<PortMappingIn>,
    essential: Option<bool>,
    entry_point: Vec<String>,
    command: Vec<String>,
    environment: Vec<KeyValue>,
    depends_on: Vec<DependencyIn>,
    health_check: Option<HealthCheckIn>,
    log_configuration: Option<LogConfigurationIn>,
    working_directory: Option<String>,
    user: Option<String>,
    ulimits: Vec<UlimitIn>,
    stop_timeout: Option<i64>,
    start_timeout: Option<i64>,
    privileged: Option<bool>,
    hostname: Option<String>,
    readonly_root_filesystem: Option<bool>,
    docker_labels: BTreeMap<String, String>,
    disable_networking: Option<bool>,
    /// Everything else of the shape (dnsServers, linuxParameters, mountPoints, …): echoed.
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PortMappingIn {
    container_port: Option<i64>,
    host_port: Option<i64>,
    protocol: Option<String>,
    name: Option<String>,
    app_protocol: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DependencyIn {
    container_name: String,
    condition: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthCheckIn {
    command: Vec<String>,
    interval: Option<u32>,
    timeout: Option<u32>,
    retries: Option<u32>,
    start_period: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogConfigurationIn {
    log_driver: String,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UlimitIn {
    name: String,
    soft_limit: i64,
    hard_limit: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PlacementConstraintIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    expression: Option<String>,
    field: Option<String>,
}

fn port(v: i64, what: &str) -> Result<u16, ApiError> {
    u16::try_from(v).map_err(|_| ecs::Error::client(format!("Invalid {what}: {v}")).into())
}

fn container_in(c: ContainerDefinitionIn) -> Result<ecs::ContainerDefinition, ApiError> {
    let nonneg = |v: Option<i64>, what: &str| -> Result<Option<u32>, ApiError> {
        v.map(|v| {
            u32::try_from(v)
                .map_err(|_| ApiError::from(ecs::Error::client(format!("Invalid '{what}' value: {v}"))))
        })
        .transpose()
    };
    Ok(ecs::ContainerDefinition {
        name: c.name.unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        cpu: nonneg(c.cpu, "cpu")?.unwrap_or(0),
        memory: nonneg(c.memory, "memory")?,
        memory_reservation: nonneg(c.memory_reservation, "memoryReservation")?,
        port_mappings: c
            .port_mappings
            .into_iter()
            .map(|p| {
                Ok(ecs::PortMapping {
                    container_port: port(p.container_port.unwrap_or(0), "containerPort")?,
                    host_port: p.host_port.map(|h| port(h, "hostPort")).transpose()?,
                    protocol: p.protocol.unwrap_or_else(|| "tcp".into()),
                    name: p.name,
                    app_protocol: p.app_protocol,
                })
            })
            .collect::<Result<_, ApiError>>()?,
        essential: c.essential.unwrap_or(true),
        entry_point: c.entry_point,
        command: c.command,
        environment: kv_in(c.environment),
        depends_on: c
            .depends_on
            .into_iter()
            .map(|d| ecs::ContainerDependency { container_name: d.container_name, condition: d.condition })
            .collect(),
        health_check: c.health_check.map(|h| ecs::HealthCheck {
            command: h.command,
            interval: h.interval.unwrap_or(30),
            timeout: h.timeout.unwrap_or(5),
            retries: h.retries.unwrap_or(3),
            start_period: h.start_period,
        }),
        log_configuration: c
            .log_configuration
            .map(|l| ecs::LogConfiguration { log_driver: l.log_driver, options: l.options }),
        working_directory: c.working_directory,
        user: c.user,
        ulimits: c
            .ulimits
            .into_iter()
            .map(|u| ecs::Ulimit { name: u.name, soft_limit: u.soft_limit, hard_limit: u.hard_limit })
            .collect(),
        stop_timeout: nonneg(c.stop_timeout, "stopTimeout")?,
        start_timeout: nonneg(c.start_timeout, "startTimeout")?,
        privileged: c.privileged,
        hostname: c.hostname,
        readonly_root_filesystem: c.readonly_root_filesystem,
        docker_labels: c.docker_labels,
        disable_networking: c.disable_networking,
        mount_points: member_list::<MountPointIn>(&c.extra, "mountPoints")?
            .into_iter()
            .map(|m| ecs::MountPoint {
                source_volume: m.source_volume.unwrap_or_default(),
                container_path: m.container_path.unwrap_or_default(),
                read_only: m.read_only.unwrap_or(false),
            })
            .collect(),
        volumes_from: member_list::<VolumeFromIn>(&c.extra, "volumesFrom")?
            .into_iter()
            .map(|f| ecs::VolumeFrom {
                source_container: f.source_container.unwrap_or_default(),
                read_only: f.read_only.unwrap_or(false),
            })
            .collect(),
        unmodelled: c.extra,
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct VolumeIn {
    name: Option<String>,
    host: Option<HostVolumeIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct HostVolumeIn {
    source_path: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MountPointIn {
    source_volume: Option<String>,
    container_path: Option<String>,
    read_only: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct VolumeFromIn {
    source_container: Option<String>,
    read_only: Option<bool>,
}

/// A list member that is also echoed as given (kept in `extra`), read into its typed shape.
fn member_list<T: serde::de::DeserializeOwned>(
    extra: &BTreeMap<String, Value>,
    key: &str,
) -> Result<Vec<T>, ApiError> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| ecs::Error::client(format!("Invalid '{key}' value: {e}")).into()),
    }
}

fn register_task_definition(
    e: &EcsEngine,
    scope: &Scope,
    i: RegisterTaskDefinitionInput,
) -> Result<Value, ApiError> {
    let containers = i.container_definitions.into_iter().map(container_in).collect::<Result<Vec<_>, _>>()?;
    let volumes = member_list::<VolumeIn>(&i.extra, "volumes")?
        .into_iter()
        .map(|v| ecs::Volume {
            name: v.name.unwrap_or_default(),
            // An empty sourcePath is "let Docker choose": a scratch volume.
            host_source_path: v.host.and_then(|h| h.source_path).filter(|p| !p.is_empty()),
        })
        .collect();
    let td = e.register_task_definition(
        scope,
        ecs::RegisterTaskDefinition {
            family: i.family,
            containers,
            task_role_arn: i.task_role_arn,
            execution_role_arn: i.execution_role_arn,
            network_mode: i.network_mode,
            requires_compatibilities: i.requires_compatibilities,
            cpu: i.cpu,
            memory: i.memory,
            pid_mode: i.pid_mode,
            ipc_mode: i.ipc_mode,
            placement_constraints: constraints_in(i.placement_constraints),
            tags: tags_in(i.tags),
            volumes,
            unmodelled: i.extra,
        },
    )?;
    let tags = tags_json(&td.tags);
    Ok(json!({"taskDefinition": task_definition_json(&td), "tags": tags}))
}

fn constraints_in(v: Vec<PlacementConstraintIn>) -> Vec<ecs::PlacementConstraintDef> {
    v.into_iter()
        .map(|c| ecs::PlacementConstraintDef { kind: c.kind.unwrap_or_default(), expression: c.expression })
        .collect()
}

fn strategies_in(v: Vec<PlacementConstraintIn>) -> Vec<ecs::PlacementStrategyDef> {
    v.into_iter()
        .map(|c| ecs::PlacementStrategyDef { kind: c.kind.unwrap_or_default(), field: c.field })
        .collect()
}

fn container_definition_json(c: &ecs::ContainerDefinition) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(c.name));
    m.insert("image".into(), json!(c.image));
    m.insert("cpu".into(), json!(c.cpu));
    insert_opt(&mut m, "memory", &c.memory);
    insert_opt(&mut m, "memoryReservation", &c.memory_reservation);
    m.insert(
        "portMappings".into(),
        json!(
            c.port_mappings
                .iter()
                .map(|p| {
                    let mut pm = Map::new();
                    pm.insert("containerPort".into(), json!(p.container_port));
                    insert_opt(&mut pm, "hostPort", &p.host_port);
                    pm.insert("protocol".into(), json!(p.protocol));
                    insert_opt(&mut pm, "name", &p.name);
                    insert_opt(&mut pm, "appProtocol", &p.app_protocol);
                    Value::Object(pm)
                })
                .collect::<Vec<_>>()
        ),
    );
    m.insert("essential".into(), json!(c.essential));
    if !c.entry_point.is_empty() {
        m.insert("entryPoint".into(), json!(c.entry_point));
    }
    if !c.command.is_empty() {
        m.insert("command".into(), json!(c.command));
    }
    m.insert("environment".into(), kv_json(&c.environment));
    for (k, v) in &c.unmodelled {
        m.insert(k.clone(), v.clone());
    }
    m.entry("mountPoints").or_insert_with(|| json!([]));
    m.entry("volumesFrom").or_insert_with(|| json!([]));
    if !c.depends_on.is_empty() {
        m.insert(
            "dependsOn".into(),
            json!(
                c.depends_on
                    .iter()
                    .map(|d| json!({"containerName": d.container_name, "condition": d.condition}))
                    .collect::<Vec<_>>()
            ),
        );
    }
    insert_opt(&mut m, "startTimeout", &c.start_timeout);
    insert_opt(&mut m, "stopTimeout", &c.stop_timeout);
    insert_opt(&mut m, "hostname", &c.hostname);
    insert_opt(&mut m, "user", &c.user);
    insert_opt(&mut m, "workingDirectory", &c.working_directory);
    insert_opt(&mut m, "disableNetworking", &c.disable_networking);
    insert_opt(&mut m, "privileged", &c.privileged);
    insert_opt(&mut m, "readonlyRootFilesystem", &c.readonly_root_filesystem);
    if !c.docker_labels.is_empty() {
        m.insert("dockerLabels".into(), json!(c.docker_labels));
    }
    if !c.ulimits.is_empty() {
        m.insert(
            "ulimits".into(),
            json!(
                c.ulimits
                    .iter()
                    .map(|u| json!({"name": u.name, "softLimit": u.soft_limit, "hardLimit": u.hard_limit}))
                    .collect::<Vec<_>>()
            ),
        );
    }
    if let Some(l) = &c.log_configuration {
        m.insert(
            "logConfiguration".into(),
            json!({"logDriver": l.log_driver, "options": l.options, "secretOptions": []}),
        );
    }
    if let Some(h) = &c.health_check {
        let mut hc =
            json!({"command": h.command, "interval": h.interval, "timeout": h.timeout, "retries": h.retries});
        if let Some(s) = h.start_period {
            hc["startPeriod"] = json!(s);
        }
        m.insert("healthCheck".into(), hc);
    }
    m.entry("systemControls").or_insert_with(|| json!([]));
    Value::Object(m)
}

fn task_definition_json(td: &ecs::TaskDefinition) -> Value {
    let mut m = Map::new();
    m.insert("taskDefinitionArn".into(), json!(td.arn));
    m.insert(
        "containerDefinitions".into(),
        json!(td.containers.iter().map(container_definition_json).collect::<Vec<_>>()),
    );
    m.insert("family".into(), json!(td.family));
    insert_opt(&mut m, "taskRoleArn", &td.task_role_arn);
    insert_opt(&mut m, "executionRoleArn", &td.execution_role_arn);
    if let Some(n) = td.network_mode {
        m.insert("networkMode".into(), json!(n.as_str()));
    }
    m.insert("revision".into(), json!(td.revision));
    for (k, v) in &td.unmodelled {
        m.insert(k.clone(), v.clone());
    }
    m.entry("volumes").or_insert_with(|| json!([]));
    m.insert(
        "status".into(),
        json!(match td.status {
            ecs::TaskDefinitionStatus::Active => "ACTIVE",
            ecs::TaskDefinitionStatus::Inactive => "INACTIVE",
            ecs::TaskDefinitionStatus::DeleteInProgress => "DELETE_IN_PROGRESS",
        }),
    );
    m.insert(
        "requiresAttributes".into(),
        json!(td.requires_attributes.iter().map(|a| json!({"name": a})).collect::<Vec<_>>()),
    );
    m.insert(
        "placementConstraints".into(),
        json!(
            td.placement_constraints
                .iter()
                .map(|c| {
                    let mut v = json!({"type": c.kind});
                    if let Some(e) = &c.expression {
                        v["expression"] = json!(e);
                    }
                    v
                })
                .collect::<Vec<_>>()
        ),
    );
    m.insert("compatibilities".into(), json!(td.compatibilities));
    if !td.requires_compatibilities.is_empty() {
        m.insert("requiresCompatibilities".into(), json!(td.requires_compatibilities));
    }
    insert_opt(&mut m, "cpu", &td.cpu);
    insert_opt(&mut m, "memory", &td.memory);
    insert_opt(&mut m, "pidMode", &td.pid_mode);
    insert_opt(&mut m, "ipcMode", &td.ipc_mode);
    m.insert("registeredAt".into(), ts(td.registered_ms));
    insert_ts(&mut m, "deregisteredAt", td.deregistered_ms);
    insert_opt(&mut m, "registeredBy", &td.registered_by);
    Value::Object(m)
}

// ------------------------------------------------------------------ tasks

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct NetworkConfigurationIn {
    awsvpc_configuration: Option<AwsVpcIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AwsVpcIn {
    subnets: Vec<String>,
    security_groups: Vec<String>,
    assign_public_ip: Option<String>,
}

fn network_in(n: Option<NetworkConfigurationIn>) -> Option<ecs::AwsVpcConfiguration> {
    n.and_then(|n| n.awsvpc_configuration).map(|a| ecs::AwsVpcConfiguration {
        subnets: a.subnets,
        security_groups: a.security_groups,
        assign_public_ip: a.assign_public_ip,
    })
}

fn network_json(n: &ecs::AwsVpcConfiguration) -> Value {
    json!({"awsvpcConfiguration": {
        "subnets": n.subnets,
        "securityGroups": n.security_groups,
        "assignPublicIp": n.assign_public_ip.as_deref().unwrap_or("DISABLED"),
    }})
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct OverridesIn {
    container_overrides: Vec<ContainerOverrideIn>,
    cpu: Option<String>,
    memory: Option<String>,
    task_role_arn: Option<String>,
    execution_role_arn: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ContainerOverrideIn {
    name: Option<String>,
    command: Option<Vec<String>>,
    environment: Vec<KeyValue>,
    cpu: Option<u32>,
    memory: Option<u32>,
    memory_reservation: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RunTaskInput {
    cluster: Option<String>,
    task_definition: String,
    count: Option<u32>,
    launch_type: Option<String>,
    overrides: Option<OverridesIn>,
    started_by: Option<String>,
    group: Option<String>,
    tags: Vec<TagIn>,
    network_configuration: Option<NetworkConfigurationIn>,
    placement_constraints: Vec<PlacementConstraintIn>,
    placement_strategy: Vec<PlacementConstraintIn>,
    platform_version: Option<String>,
    enable_execute_command: bool,
    propagate_tags: Option<String>,
    capacity_provider_strategy: Vec<StrategyItemIn>,
    client_token: Option<String>,
}

fn overrides_in(o: Option<OverridesIn>) -> ecs::TaskOverrides {
    let o = o.unwrap_or_default();
    ecs::TaskOverrides {
        container_overrides: o
            .container_overrides
            .into_iter()
            .map(|c| ecs::ContainerOverride {
                name: c.name.unwrap_or_default(),
                command: c.command,
                environment: kv_in(c.environment),
                cpu: c.cpu,
                memory: c.memory,
                memory_reservation: c.memory_reservation,
            })
            .collect(),
        cpu: o.cpu,
        memory: o.memory,
        task_role_arn: o.task_role_arn,
        execution_role_arn: o.execution_role_arn,
    }
}

fn overrides_json(o: &ecs::TaskOverrides) -> Value {
    let mut m = Map::new();
    m.insert(
        "containerOverrides".into(),
        json!(
            o.container_overrides
                .iter()
                .map(|c| {
                    let mut co = Map::new();
                    co.insert("name".into(), json!(c.name));
                    insert_opt(&mut co, "command", &c.command);
                    if !c.environment.is_empty() {
                        co.insert("environment".into(), kv_json(&c.environment));
                    }
                    insert_opt(&mut co, "cpu", &c.cpu);
                    insert_opt(&mut co, "memory", &c.memory);
                    insert_opt(&mut co, "memoryReservation", &c.memory_reservation);
                    Value::Object(co)
                })
                .collect::<Vec<_>>()
        ),
    );
    insert_opt(&mut m, "cpu", &o.cpu);
    insert_opt(&mut m, "memory", &o.memory);
    insert_opt(&mut m, "taskRoleArn", &o.task_role_arn);
    insert_opt(&mut m, "executionRoleArn", &o.execution_role_arn);
    m.insert("inferenceAcceleratorOverrides".into(), json!([]));
    Value::Object(m)
}

/// DescribeTasks / DescribeServices take 1..=`max` references (AWS's wording for both ends).
fn describe_list_bounds(what: &str, refs: &[String], max: usize) -> Result<(), ApiError> {
    if refs.is_empty() {
        return Err(ecs::Error::invalid(format!("{what} cannot be empty.")).into());
    }
    if refs.len() > max {
        return Err(ecs::Error::invalid(format!("{what} cannot have more than {max} elements.")).into());
    }
    Ok(())
}

fn run_task(e: &Arc<EcsEngine>, scope: &Scope, i: RunTaskInput) -> Result<Value, ApiError> {
    if i.task_definition.is_empty() {
        return Err(ecs::Error::invalid("taskDefinition can not be blank.").into());
    }
    let (tasks, failures) = e.run_task(
        scope,
        ecs::RunTask {
            cluster: i.cluster,
            task_definition: i.task_definition,
            count: i.count.unwrap_or(1),
            launch_type: i.launch_type,
            overrides: overrides_in(i.overrides),
            started_by: i.started_by,
            group: i.group,
            tags: tags_in(i.tags),
            network_configuration: network_in(i.network_configuration),
            placement_constraints: constraints_in(i.placement_constraints),
            placement_strategy: strategies_in(i.placement_strategy),
            platform_version: i.platform_version,
            enable_execute_command: i.enable_execute_command,
            propagate_tags: i.propagate_tags,
            capacity_provider_strategy: strategy_in(i.capacity_provider_strategy),
            client_token: i.client_token,
        },
    )?;
    Ok(json!({
        "tasks": tasks.iter().map(|t| task_json(t, true)).collect::<Vec<_>>(),
        "failures": failures_json(&failures),
    }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StopTaskInput {
    cluster: Option<String>,
    task: String,
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DescribeInput {
    cluster: Option<String>,
    tasks: Vec<String>,
    services: Vec<String>,
    container_instances: Vec<String>,
    include: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListTasksInput {
    cluster: Option<String>,
    container_instance: Option<String>,
    family: Option<String>,
    started_by: Option<String>,
    service_name: Option<String>,
    desired_status: Option<String>,
    launch_type: Option<String>,
    #[serde(flatten)]
    page: PageInput,
}

fn list_tasks(e: &EcsEngine, scope: &Scope, i: ListTasksInput) -> Result<Value, ApiError> {
    let arns = e.list_tasks(
        scope,
        &ecs::ListTasks {
            cluster: i.cluster,
            container_instance: i.container_instance,
            family: i.family,
            started_by: i.started_by,
            service_name: i.service_name,
            desired_status: i.desired_status,
            launch_type: i.launch_type,
        },
    )?;
    page("taskArns", arns, &i.page)
}

fn task_json(t: &ecs::Task, tags: bool) -> Value {
    let mut m = Map::new();
    m.insert(
        "attachments".into(),
        json!(
            t.attachments
                .iter()
                .map(|a| json!({
                    "id": a.id,
                    "type": a.kind,
                    "status": a.status,
                    "details": kv_json(&a.details),
                }))
                .collect::<Vec<_>>()
        ),
    );
    let arch = if std::env::consts::ARCH == "aarch64" { "arm64" } else { "x86_64" };
    m.insert("attributes".into(), json!([{"name": "ecs.cpu-architecture", "value": arch}]));
    m.insert("availabilityZone".into(), json!(t.availability_zone));
    m.insert("clusterArn".into(), json!(t.cluster_arn));
    if t.connectivity_ms.is_some() {
        m.insert("connectivity".into(), json!("CONNECTED"));
    }
    insert_ts(&mut m, "connectivityAt", t.connectivity_ms);
    insert_opt(&mut m, "containerInstanceArn", &t.container_instance_arn);
    insert_opt(&mut m, "capacityProviderName", &t.capacity_provider_name);
    let eni_ip = t
        .attachments
        .iter()
        .flat_map(|a| a.details.iter().map(move |d| (a, d)))
        .find(|(_, (k, _))| k == "privateIPv4Address")
        .map(|(a, (_, v))| (a.id.clone(), v.clone()));
    m.insert(
        "containers".into(),
        json!(
            t.containers
                .iter()
                .map(|c| {
                    let mut cm = Map::new();
                    cm.insert("containerArn".into(), json!(c.arn));
                    cm.insert("taskArn".into(), json!(t.arn));
                    cm.insert("name".into(), json!(c.name));
                    cm.insert("image".into(), json!(c.image));
                    insert_opt(&mut cm, "imageDigest", &c.image_digest);
                    insert_opt(&mut cm, "runtimeId", &c.runtime_id);
                    cm.insert("lastStatus".into(), json!(c.last_status));
                    insert_opt(&mut cm, "exitCode", &c.exit_code);
                    insert_opt(&mut cm, "reason", &c.reason);
                    cm.insert(
                        "networkBindings".into(),
                        json!(
                            c.network_bindings
                                .iter()
                                .map(|b| json!({
                                    "bindIP": b.bind_ip,
                                    "containerPort": b.container_port,
                                    "hostPort": b.host_port,
                                    "protocol": b.protocol,
                                }))
                                .collect::<Vec<_>>()
                        ),
                    );
                    cm.insert(
                        "networkInterfaces".into(),
                        match &eni_ip {
                            Some((id, ip)) => json!([{"attachmentId": id, "privateIpv4Address": ip}]),
                            None => json!([]),
                        },
                    );
                    if let Some(h) = c.health_status {
                        cm.insert("healthStatus".into(), json!(h.as_str()));
                    }
                    cm.insert("cpu".into(), json!(c.cpu.to_string()));
                    if let Some(mem) = c.memory {
                        cm.insert("memory".into(), json!(mem.to_string()));
                    }
                    if let Some(mem) = c.memory_reservation {
                        cm.insert("memoryReservation".into(), json!(mem.to_string()));
                    }
                    Value::Object(cm)
                })
                .collect::<Vec<_>>()
        ),
    );
    insert_opt(&mut m, "cpu", &t.cpu);
    m.insert("createdAt".into(), ts(t.created_ms));
    m.insert("desiredStatus".into(), json!(t.desired_status));
    m.insert("enableExecuteCommand".into(), json!(t.enable_execute_command));
    insert_ts(&mut m, "executionStoppedAt", t.execution_stopped_ms);
    m.insert("group".into(), json!(t.group));
    m.insert("healthStatus".into(), json!(t.health_status.as_str()));
    m.insert("lastStatus".into(), json!(t.last_status));
    m.insert("launchType".into(), json!(t.launch_type.as_str()));
    insert_opt(&mut m, "memory", &t.memory);
    m.insert("overrides".into(), overrides_json(&t.overrides));
    if let Some(p) = &t.platform_version {
        m.insert("platformVersion".into(), json!(p));
        m.insert("platformFamily".into(), json!("Linux"));
    }
    insert_ts(&mut m, "pullStartedAt", t.pull_started_ms);
    insert_ts(&mut m, "pullStoppedAt", t.pull_stopped_ms);
    insert_ts(&mut m, "startedAt", t.started_ms);
    insert_opt(&mut m, "startedBy", &t.started_by);
    insert_opt(&mut m, "stopCode", &t.stop_code);
    insert_ts(&mut m, "stoppedAt", t.stopped_ms);
    insert_opt(&mut m, "stoppedReason", &t.stopped_reason);
    insert_ts(&mut m, "stoppingAt", t.stopping_ms);
    if tags {
        m.insert("tags".into(), tags_json(&t.tags));
    }
    m.insert("taskArn".into(), json!(t.arn));
    m.insert("taskDefinitionArn".into(), json!(t.task_definition_arn));
    m.insert("version".into(), json!(t.version));
    if t.launch_type == ecs::LaunchType::Fargate {
        m.insert("ephemeralStorage".into(), json!({"sizeInGiB": 20}));
        m.insert("fargateEphemeralStorage".into(), json!({"sizeInGiB": 20}));
    }
    Value::Object(m)
}

// ------------------------------------------------------------------ container instances

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ResourceIn {
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    integer_value: Option<i64>,
    long_value: Option<i64>,
    double_value: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AttributeIn {
    name: String,
    value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RegisterInstanceInput {
    cluster: Option<String>,
    total_resources: Vec<ResourceIn>,
    attributes: Vec<AttributeIn>,
    tags: Vec<TagIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AttributeTargetIn {
    name: String,
    value: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AttributesInput {
    cluster: Option<String>,
    attributes: Vec<AttributeTargetIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListAttributesInput {
    cluster: Option<String>,
    target_type: String,
    attribute_name: Option<String>,
    attribute_value: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StartTaskInput {
    cluster: Option<String>,
    container_instances: Vec<String>,
    task_definition: String,
    overrides: Option<OverridesIn>,
    started_by: Option<String>,
    group: Option<String>,
    tags: Vec<TagIn>,
    network_configuration: Option<NetworkConfigurationIn>,
    enable_execute_command: bool,
}

fn attributes_json(v: &[(String, Option<String>, String)]) -> Value {
    json!(
        v.iter()
            .map(|(name, value, target)| {
                let mut a = json!({"name": name, "targetType": "container-instance", "targetId": target});
                if let Some(val) = value {
                    a["value"] = json!(val);
                }
                a
            })
            .collect::<Vec<_>>()
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DeregisterInstanceInput {
    cluster: Option<String>,
    container_instance: String,
    force: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListInstancesInput {
    cluster: Option<String>,
    status: Option<String>,
    filter: Option<String>,
    #[serde(flatten)]
    page: PageInput,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateInstancesInput {
    cluster: Option<String>,
    container_instances: Vec<String>,
    status: String,
}

fn register_instance(e: &EcsEngine, scope: &Scope, i: RegisterInstanceInput) -> Result<Value, ApiError> {
    let value = |name: &str| {
        i.total_resources.iter().find(|r| r.name == name).and_then(|r| {
            let _ = &r.kind;
            r.integer_value.or(r.long_value).or(r.double_value.map(|d| d as i64))
        })
    };
    let cpu = value("CPU").map(|v| v.max(0) as u32);
    let memory = value("MEMORY").map(|v| v.max(0) as u64);
    let attributes = i.attributes.into_iter().map(|a| (a.name, a.value)).collect();
    let v =
        e.register_container_instance(scope, i.cluster.as_deref(), cpu, memory, attributes, tags_in(i.tags))?;
    Ok(json!({"containerInstance": instance_json(&v, false)}))
}

fn resources_json(cpu: i64, memory: i64, ports: &[u16]) -> Value {
    let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    json!([
        {"name": "CPU", "type": "INTEGER", "doubleValue": 0.0, "longValue": 0, "integerValue": cpu},
        {"name": "MEMORY", "type": "INTEGER", "doubleValue": 0.0, "longValue": 0, "integerValue": memory},
        {"name": "PORTS", "type": "STRINGSET", "doubleValue": 0.0, "longValue": 0, "integerValue": 0, "stringSetValue": ports},
        {"name": "PORTS_UDP", "type": "STRINGSET", "doubleValue": 0.0, "longValue": 0, "integerValue": 0, "stringSetValue": []},
    ])
}

fn instance_json(v: &ecs::InstanceView, tags: bool) -> Value {
    let i = &v.instance;
    let reserved: Vec<u16> = i.reserved_ports.clone();
    let mut out = json!({
        "containerInstanceArn": i.arn,
        "ec2InstanceId": i.ec2_instance_id,
        "version": i.version,
        "versionInfo": {"agentVersion": "1.86.0", "agentHash": "nimbus", "dockerVersion": "DockerVersion: 25.0.0"},
        "remainingResources": resources_json(v.remaining_cpu, v.remaining_memory, &v.ports_used),
        "registeredResources": resources_json(i.cpu as i64, i.memory_mib as i64, &reserved),
        "status": i.status,
        "agentConnected": i.agent_connected,
        "runningTasksCount": v.running_tasks,
        "pendingTasksCount": v.pending_tasks,
        "attributes": i.attributes.iter().map(|(k, val)| {
            let mut a = json!({"name": k});
            if let Some(val) = val { a["value"] = json!(val); }
            a
        }).collect::<Vec<_>>(),
        "registeredAt": ts(i.registered_ms),
        "attachments": [],
    });
    if tags {
        out["tags"] = tags_json(&i.tags);
    }
    out
}

// ------------------------------------------------------------------ services

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DeploymentConfigurationIn {
    maximum_percent: Option<u32>,
    minimum_healthy_percent: Option<u32>,
    deployment_circuit_breaker: Option<CircuitBreakerIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CircuitBreakerIn {
    enable: bool,
    rollback: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LoadBalancerIn {
    target_group_arn: Option<String>,
    load_balancer_name: Option<String>,
    container_name: Option<String>,
    container_port: Option<u16>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateServiceInput {
    cluster: Option<String>,
    service_name: String,
    task_definition: Option<String>,
    load_balancers: Vec<LoadBalancerIn>,
    desired_count: Option<i64>,
    launch_type: Option<String>,
    platform_version: Option<String>,
    role: Option<String>,
    deployment_configuration: Option<DeploymentConfigurationIn>,
    placement_constraints: Vec<PlacementConstraintIn>,
    placement_strategy: Vec<PlacementConstraintIn>,
    network_configuration: Option<NetworkConfigurationIn>,
    health_check_grace_period_seconds: Option<u32>,
    scheduling_strategy: Option<String>,
    tags: Vec<TagIn>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    propagate_tags: Option<String>,
    enable_execute_command: bool,
    capacity_provider_strategy: Vec<StrategyItemIn>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateServiceInput {
    cluster: Option<String>,
    service: String,
    desired_count: Option<i64>,
    task_definition: Option<String>,
    deployment_configuration: Option<DeploymentConfigurationIn>,
    network_configuration: Option<NetworkConfigurationIn>,
    placement_constraints: Option<Vec<PlacementConstraintIn>>,
    placement_strategy: Option<Vec<PlacementConstraintIn>>,
    platform_version: Option<String>,
    force_new_deployment: bool,
    health_check_grace_period_seconds: Option<u32>,
    load_balancers: Option<Vec<LoadBalancerIn>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DeleteServiceInput {
    cluster: Option<String>,
    service: String,
    force: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListServicesInput {
    cluster: Option<String>,
    launch_type: Option<String>,
    scheduling_strategy: Option<String>,
    #[serde(flatten)]
    page: PageInput,
}

/// desiredCount is an Integer on the wire; AWS answers a negative one itself.
fn desired_count(v: Option<i64>) -> Result<Option<u32>, ApiError> {
    match v {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| ecs::Error::invalid("The desired count must be zero or greater.").into()),
    }
}

fn deployment_config_in(d: Option<DeploymentConfigurationIn>) -> ecs::DeploymentConfigurationInput {
    let d = d.unwrap_or_default();
    ecs::DeploymentConfigurationInput {
        maximum_percent: d.maximum_percent,
        minimum_healthy_percent: d.minimum_healthy_percent,
        circuit_breaker: d.deployment_circuit_breaker.map(|c| (c.enable, c.rollback)),
    }
}

fn load_balancers_in(v: Vec<LoadBalancerIn>) -> Vec<ecs::LoadBalancerRef> {
    v.into_iter()
        .map(|l| ecs::LoadBalancerRef {
            target_group_arn: l.target_group_arn,
            load_balancer_name: l.load_balancer_name,
            container_name: l.container_name,
            container_port: l.container_port,
        })
        .collect()
}

fn create_service(e: &Arc<EcsEngine>, scope: &Scope, i: CreateServiceInput) -> Result<Value, ApiError> {
    let s = e.create_service(
        scope,
        ecs::CreateService {
            cluster: i.cluster,
            service_name: i.service_name,
            task_definition: i.task_definition,
            load_balancers: load_balancers_in(i.load_balancers),
            desired_count: desired_count(i.desired_count)?,
            launch_type: i.launch_type,
            platform_version: i.platform_version,
            role: i.role,
            deployment_configuration: deployment_config_in(i.deployment_configuration),
            placement_constraints: constraints_in(i.placement_constraints),
            placement_strategy: strategies_in(i.placement_strategy),
            network_configuration: network_in(i.network_configuration),
            health_check_grace_period_seconds: i.health_check_grace_period_seconds,
            scheduling_strategy: i.scheduling_strategy,
            tags: tags_in(i.tags),
            enable_ecs_managed_tags: i.enable_ecs_managed_tags,
            propagate_tags: i.propagate_tags,
            enable_execute_command: i.enable_execute_command,
            capacity_provider_strategy: strategy_in(i.capacity_provider_strategy),
        },
    )?;
    Ok(json!({"service": service_json(&s, true)}))
}

fn update_service(e: &Arc<EcsEngine>, scope: &Scope, i: UpdateServiceInput) -> Result<Value, ApiError> {
    let s = e.update_service(
        scope,
        ecs::UpdateService {
            cluster: i.cluster,
            service: i.service,
            desired_count: desired_count(i.desired_count)?,
            task_definition: i.task_definition,
            deployment_configuration: i.deployment_configuration.map(|d| deployment_config_in(Some(d))),
            network_configuration: network_in(i.network_configuration),
            placement_constraints: i.placement_constraints.map(constraints_in),
            placement_strategy: i.placement_strategy.map(strategies_in),
            platform_version: i.platform_version,
            force_new_deployment: i.force_new_deployment,
            health_check_grace_period_seconds: i.health_check_grace_period_seconds,
            load_balancers: i.load_balancers.map(load_balancers_in),
        },
    )?;
    Ok(json!({"service": service_json(&s, false)}))
}

fn service_json(s: &ecs::Service, tags: bool) -> Value {
    let mut m = Map::new();
    m.insert("serviceArn".into(), json!(s.arn));
    m.insert("serviceName".into(), json!(s.name));
    m.insert("clusterArn".into(), json!(s.cluster_arn));
    m.insert(
        "loadBalancers".into(),
        json!(
            s.load_balancers
                .iter()
                .map(|l| {
                    let mut lb = Map::new();
                    insert_opt(&mut lb, "targetGroupArn", &l.target_group_arn);
                    insert_opt(&mut lb, "loadBalancerName", &l.load_balancer_name);
                    insert_opt(&mut lb, "containerName", &l.container_name);
                    insert_opt(&mut lb, "containerPort", &l.container_port);
                    Value::Object(lb)
                })
                .collect::<Vec<_>>()
        ),
    );
    m.insert("serviceRegistries".into(), json!([]));
    m.insert("status".into(), json!(s.status));
    m.insert("desiredCount".into(), json!(s.desired_count));
    m.insert("runningCount".into(), json!(s.running_count));
    m.insert("pendingCount".into(), json!(s.pending_count));
    if !s.capacity_provider_strategy.is_empty() {
        m.insert("capacityProviderStrategy".into(), strategy_json(&s.capacity_provider_strategy));
    } else if let Some(l) = s.launch_type {
        m.insert("launchType".into(), json!(l.as_str()));
    }
    insert_opt(&mut m, "platformVersion", &s.platform_version);
    if s.platform_version.is_some() {
        m.insert("platformFamily".into(), json!("Linux"));
    }
    m.insert("taskDefinition".into(), json!(s.task_definition));
    let dc = &s.deployment_configuration;
    m.insert(
        "deploymentConfiguration".into(),
        json!({
            "deploymentCircuitBreaker": {"enable": dc.circuit_breaker_enable, "rollback": dc.circuit_breaker_rollback},
            "maximumPercent": dc.maximum_percent,
            "minimumHealthyPercent": dc.minimum_healthy_percent,
        }),
    );
    m.insert(
        "deployments".into(),
        json!(
            s.deployments
                .iter()
                .filter(|d| d.status != "INACTIVE")
                .map(|d| {
                    let mut dm = Map::new();
                    dm.insert("id".into(), json!(d.id));
                    dm.insert("status".into(), json!(d.status));
                    dm.insert("taskDefinition".into(), json!(d.task_definition));
                    dm.insert("desiredCount".into(), json!(d.desired_count));
                    dm.insert("pendingCount".into(), json!(d.pending_count));
                    dm.insert("runningCount".into(), json!(d.running_count));
                    dm.insert("failedTasks".into(), json!(d.failed_tasks));
                    dm.insert("createdAt".into(), ts(d.created_ms));
                    dm.insert("updatedAt".into(), ts(d.updated_ms));
                    if let Some(l) = d.launch_type {
                        dm.insert("launchType".into(), json!(l.as_str()));
                    }
                    insert_opt(&mut dm, "platformVersion", &d.platform_version);
                    if let Some(n) = &d.network_configuration {
                        dm.insert("networkConfiguration".into(), network_json(n));
                    }
                    dm.insert("rolloutState".into(), json!(d.rollout_state));
                    dm.insert("rolloutStateReason".into(), json!(d.rollout_state_reason));
                    Value::Object(dm)
                })
                .collect::<Vec<_>>()
        ),
    );
    insert_opt(&mut m, "roleArn", &s.role_arn);
    m.insert(
        "events".into(),
        json!(
            s.events
                .iter()
                .rev()
                .take(100)
                .map(|ev| json!({"id": ev.id, "createdAt": ts(ev.created_ms), "message": ev.message}))
                .collect::<Vec<_>>()
        ),
    );
    m.insert("createdAt".into(), ts(s.created_ms));
    m.insert(
        "placementConstraints".into(),
        json!(
            s.placement_constraints
                .iter()
                .map(|c| {
                    let mut v = json!({"type": c.kind});
                    if let Some(e) = &c.expression {
                        v["expression"] = json!(e);
                    }
                    v
                })
                .collect::<Vec<_>>()
        ),
    );
    m.insert(
        "placementStrategy".into(),
        json!(
            s.placement_strategy
                .iter()
                .map(|c| {
                    let mut v = json!({"type": c.kind});
                    if let Some(f) = &c.field {
                        v["field"] = json!(f);
                    }
                    v
                })
                .collect::<Vec<_>>()
        ),
    );
    if let Some(n) = &s.network_configuration {
        m.insert("networkConfiguration".into(), network_json(n));
    }
    insert_opt(&mut m, "healthCheckGracePeriodSeconds", &s.health_check_grace_period_seconds);
    m.insert("schedulingStrategy".into(), json!(s.scheduling_strategy));
    m.insert("deploymentController".into(), json!({"type": "ECS"}));
    if tags {
        m.insert("tags".into(), tags_json(&s.tags));
    }
    insert_opt(&mut m, "createdBy", &s.created_by);
    m.insert("enableECSManagedTags".into(), json!(s.enable_ecs_managed_tags));
    m.insert("propagateTags".into(), json!(s.propagate_tags.as_deref().unwrap_or("NONE")));
    m.insert("enableExecuteCommand".into(), json!(s.enable_execute_command));
    Value::Object(m)
}
