//! EventBridge (JSON 1.1, `AWSEvents`): event buses, rules, targets, PutEvents and
//! TestEventPattern, mapped onto `nimbus-eventbridge` (routing, schedules, delivery) and
//! `nimbus-events` (the pattern language).
use crate::auth::RequestContext;
use crate::error::ApiError;
use crate::json_rpc::{BoxFuture, JsonService, parse, unknown_operation};
use axum::body::Bytes;
use chrono::Utc;
use nimbus_eventbridge::{
    EcsNetworkConfiguration, EcsParameters, EntryResult, EventBridgeEngine, EventBus, EventEntry,
    InputTransformer, PutRule, RetryPolicy, Rule, RuleState, Target,
};
use nimbus_events::Pattern;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct EventsService {
    pub engine: Arc<EventBridgeEngine>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TestEventPattern {
    event_pattern: String,
    event: String,
}

fn test_event_pattern(input: TestEventPattern) -> Result<Value, ApiError> {
    let pattern = Pattern::parse(&input.event_pattern)
        .map_err(|e| ApiError::new(400, "InvalidEventPatternException", e.to_string()))?;
    let event: Value = serde_json::from_str(&input.event)
        .map_err(|_| ApiError::invalid_parameter_exception("Parameter Event is not valid."))?;
    // TestEventPattern requires the envelope fields every EventBridge event carries.
    let envelope = ["id", "account", "source", "time", "region", "detail-type"];
    if !event.is_object() || envelope.iter().any(|k| event.get(k).is_none()) {
        return Err(ApiError::invalid_parameter_exception("Parameter Event is not valid."));
    }
    Ok(json!({"Result": pattern.matches(&event)}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RuleInput {
    name: String,
    event_bus_name: Option<String>,
    event_pattern: Option<String>,
    schedule_expression: Option<String>,
    state: Option<String>,
    description: Option<String>,
    role_arn: Option<String>,
    name_prefix: Option<String>,
    next_token: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetInput {
    id: String,
    arn: String,
    role_arn: Option<String>,
    input: Option<String>,
    input_path: Option<String>,
    input_transformer: Option<TransformerInput>,
    retry_policy: Option<RetryPolicyInput>,
    dead_letter_config: Option<DeadLetterInput>,
    ecs_parameters: Option<EcsParametersInput>,
}

/// `EcsParameters` (botocore `events` model: PascalCase, except the nested
/// `awsvpcConfiguration` and the placement structures, which ECS's own casing).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EcsParametersInput {
    task_definition_arn: String,
    task_count: Option<u32>,
    launch_type: Option<String>,
    network_configuration: Option<EcsNetworkInput>,
    platform_version: Option<String>,
    group: Option<String>,
    #[serde(rename = "EnableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    enable_execute_command: bool,
    placement_constraints: Vec<PlacementInput>,
    placement_strategy: Vec<PlacementInput>,
    propagate_tags: Option<String>,
    reference_id: Option<String>,
    tags: Vec<TagInput>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EcsNetworkInput {
    #[serde(rename = "awsvpcConfiguration")]
    awsvpc_configuration: Option<AwsVpcInput>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AwsVpcInput {
    subnets: Vec<String>,
    security_groups: Vec<String>,
    assign_public_ip: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PlacementInput {
    #[serde(rename = "type")]
    kind: String,
    expression: Option<String>,
    field: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TagInput {
    key: String,
    value: String,
}

fn ecs_parameters_in(p: EcsParametersInput) -> EcsParameters {
    EcsParameters {
        task_definition_arn: p.task_definition_arn,
        task_count: p.task_count,
        launch_type: p.launch_type,
        network_configuration: p.network_configuration.and_then(|n| n.awsvpc_configuration).map(|a| {
            EcsNetworkConfiguration {
                subnets: a.subnets,
                security_groups: a.security_groups,
                assign_public_ip: a.assign_public_ip,
            }
        }),
        platform_version: p.platform_version,
        group: p.group,
        enable_ecs_managed_tags: p.enable_ecs_managed_tags,
        enable_execute_command: p.enable_execute_command,
        placement_constraints: p.placement_constraints.into_iter().map(|c| (c.kind, c.expression)).collect(),
        placement_strategy: p.placement_strategy.into_iter().map(|c| (c.kind, c.field)).collect(),
        propagate_tags: p.propagate_tags,
        reference_id: p.reference_id,
        tags: p.tags.into_iter().map(|t| (t.key, t.value)).collect(),
    }
}

fn ecs_parameters_json(p: &EcsParameters) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("TaskDefinitionArn".into(), json!(p.task_definition_arn));
    m.insert("TaskCount".into(), json!(p.task_count.unwrap_or(1)));
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    };
    opt("LaunchType", &p.launch_type);
    opt("PlatformVersion", &p.platform_version);
    opt("Group", &p.group);
    opt("PropagateTags", &p.propagate_tags);
    opt("ReferenceId", &p.reference_id);
    if let Some(n) = &p.network_configuration {
        let mut vpc = serde_json::Map::new();
        vpc.insert("Subnets".into(), json!(n.subnets));
        if !n.security_groups.is_empty() {
            vpc.insert("SecurityGroups".into(), json!(n.security_groups));
        }
        if let Some(a) = &n.assign_public_ip {
            vpc.insert("AssignPublicIp".into(), json!(a));
        }
        m.insert("NetworkConfiguration".into(), json!({"awsvpcConfiguration": vpc}));
    }
    m.insert("EnableECSManagedTags".into(), json!(p.enable_ecs_managed_tags));
    m.insert("EnableExecuteCommand".into(), json!(p.enable_execute_command));
    let placement = |v: &[(String, Option<String>)], k: &str| -> Value {
        v.iter()
            .map(|(t, x)| match x {
                Some(x) => json!({"type": t, k: x}),
                None => json!({"type": t}),
            })
            .collect()
    };
    if !p.placement_constraints.is_empty() {
        m.insert("PlacementConstraints".into(), placement(&p.placement_constraints, "expression"));
    }
    if !p.placement_strategy.is_empty() {
        m.insert("PlacementStrategy".into(), placement(&p.placement_strategy, "field"));
    }
    if !p.tags.is_empty() {
        let tags: Vec<Value> = p.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
        m.insert("Tags".into(), json!(tags));
    }
    Value::Object(m)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransformerInput {
    #[serde(default)]
    input_paths_map: BTreeMap<String, String>,
    input_template: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetryPolicyInput {
    maximum_retry_attempts: Option<u32>,
    maximum_event_age_in_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeadLetterInput {
    arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutTargetsInput {
    rule: String,
    event_bus_name: Option<String>,
    targets: Vec<TargetInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoveTargetsInput {
    rule: String,
    event_bus_name: Option<String>,
    ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTargetsInput {
    rule: String,
    event_bus_name: Option<String>,
    next_token: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutEventsInput {
    entries: Vec<EntryInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EntryInput {
    time: Option<f64>,
    source: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    detail_type: Option<String>,
    detail: Option<String>,
    event_bus_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct BusInput {
    name: Option<String>,
    description: Option<String>,
    name_prefix: Option<String>,
    next_token: Option<String>,
    limit: Option<usize>,
}

fn rule_json(r: &Rule, with_created_by: bool) -> Value {
    let mut v = json!({
        "Name": r.name,
        "Arn": r.arn,
        "State": match r.state { RuleState::Enabled => "ENABLED", RuleState::Disabled => "DISABLED" },
        "EventBusName": r.event_bus_name,
    });
    let o = v.as_object_mut().expect("object literal");
    for (k, val) in [
        ("EventPattern", &r.event_pattern),
        ("ScheduleExpression", &r.schedule_expression),
        ("Description", &r.description),
        ("RoleArn", &r.role_arn),
    ] {
        if let Some(val) = val {
            o.insert(k.into(), json!(val));
        }
    }
    if with_created_by {
        o.insert("CreatedBy".into(), json!(r.account));
    }
    v
}

fn target_json(t: &Target) -> Value {
    let mut v = json!({"Id": t.id, "Arn": t.arn});
    let o = v.as_object_mut().expect("object literal");
    if let Some(x) = &t.role_arn {
        o.insert("RoleArn".into(), json!(x));
    }
    if let Some(x) = &t.input {
        o.insert("Input".into(), json!(x));
    }
    if let Some(x) = &t.input_path {
        o.insert("InputPath".into(), json!(x));
    }
    if let Some(x) = &t.input_transformer {
        o.insert(
            "InputTransformer".into(),
            json!({"InputPathsMap": x.input_paths_map, "InputTemplate": x.input_template}),
        );
    }
    if let Some(p) = &t.retry_policy {
        let mut rp = serde_json::Map::new();
        if let Some(n) = p.maximum_retry_attempts {
            rp.insert("MaximumRetryAttempts".into(), json!(n));
        }
        if let Some(n) = p.maximum_event_age_in_seconds {
            rp.insert("MaximumEventAgeInSeconds".into(), json!(n));
        }
        o.insert("RetryPolicy".into(), Value::Object(rp));
    }
    if let Some(d) = &t.dead_letter_arn {
        o.insert("DeadLetterConfig".into(), json!({"Arn": d}));
    }
    if let Some(p) = &t.ecs_parameters {
        o.insert("EcsParameters".into(), ecs_parameters_json(p));
    }
    v
}

fn bus_json(b: &EventBus) -> Value {
    let mut v = json!({"Name": b.name, "Arn": b.arn});
    if let Some(d) = &b.description {
        v["Description"] = json!(d);
    }
    if b.created_ms > 0 {
        v["CreationTime"] = json!(b.created_ms as f64 / 1000.0);
        v["LastModifiedTime"] = json!(b.created_ms as f64 / 1000.0);
    }
    v
}

fn offset(token: Option<&str>) -> Result<usize, ApiError> {
    match token {
        None => Ok(0),
        Some(t) => t.parse().map_err(|_| ApiError::validation("The NextToken provided is invalid.")),
    }
}

/// One page of `items` from `NextToken`, `Limit` (max 100).
fn page<T>(
    items: Vec<T>,
    token: Option<&str>,
    limit: Option<usize>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = offset(token)?;
    let limit = limit.unwrap_or(100).clamp(1, 100);
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next = (start + out.len() < total).then(|| (start + out.len()).to_string());
    Ok((out, next))
}

fn rule_state(s: Option<&str>) -> Result<Option<RuleState>, ApiError> {
    match s {
        None => Ok(None),
        Some("ENABLED") | Some("ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS") => {
            Ok(Some(RuleState::Enabled))
        }
        Some("DISABLED") => Ok(Some(RuleState::Disabled)),
        Some(other) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{other}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]"
        ))),
    }
}

fn failed_entries(failed: Vec<(String, &'static str, String)>) -> Value {
    json!({
        "FailedEntryCount": failed.len(),
        "FailedEntries": failed.into_iter().map(|(id, code, msg)| json!({"TargetId": id, "ErrorCode": code, "ErrorMessage": msg})).collect::<Vec<_>>(),
    })
}

impl EventsService {
    fn put_events(&self, a: &str, r: &str, input: PutEventsInput) -> Result<Value, ApiError> {
        if input.entries.is_empty() || input.entries.len() > nimbus_eventbridge::MAX_PUT_EVENTS_ENTRIES {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length less than or equal to {} and greater than or equal to 1",
                nimbus_eventbridge::MAX_PUT_EVENTS_ENTRIES
            )));
        }
        // AWS's entry size: source + detail-type + detail + resources (+ 14 bytes for a time).
        let size: usize = input
            .entries
            .iter()
            .map(|e| {
                e.source.as_deref().map_or(0, str::len)
                    + e.detail_type.as_deref().map_or(0, str::len)
                    + e.detail.as_deref().map_or(0, str::len)
                    + e.resources.iter().map(String::len).sum::<usize>()
                    + if e.time.is_some() { 14 } else { 0 }
            })
            .sum();
        if size > nimbus_eventbridge::MAX_PUT_EVENTS_BYTES {
            return Err(ApiError::validation("Total size of the entries in the request is over the limit."));
        }
        let entries = input
            .entries
            .into_iter()
            .map(|e| EventEntry {
                source: e.source,
                detail_type: e.detail_type,
                detail: e.detail,
                resources: e.resources,
                time: e.time.and_then(|t| chrono::DateTime::from_timestamp_millis((t * 1000.0) as i64)),
                event_bus_name: e.event_bus_name,
            })
            .collect();
        let results = self.engine.put_events(a, r, entries, Utc::now());
        let failed = results.iter().filter(|e| matches!(e, EntryResult::Failed { .. })).count();
        let entries: Vec<Value> = results
            .into_iter()
            .map(|e| match e {
                EntryResult::Accepted { event_id } => json!({"EventId": event_id}),
                EntryResult::Failed { code, message } => json!({"ErrorCode": code, "ErrorMessage": message}),
            })
            .collect();
        Ok(json!({"FailedEntryCount": failed, "Entries": entries}))
    }

    fn put_targets(&self, a: &str, r: &str, input: PutTargetsInput) -> Result<Value, ApiError> {
        if input.targets.is_empty() || input.targets.len() > 10 {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'targets' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1",
            ));
        }
        let targets = input
            .targets
            .into_iter()
            .map(|t| Target {
                id: t.id,
                arn: t.arn,
                role_arn: t.role_arn,
                input: t.input,
                input_path: t.input_path,
                input_transformer: t.input_transformer.map(|x| InputTransformer {
                    input_paths_map: x.input_paths_map,
                    input_template: x.input_template,
                }),
                retry_policy: t.retry_policy.map(|p| RetryPolicy {
                    maximum_retry_attempts: p.maximum_retry_attempts,
                    maximum_event_age_in_seconds: p.maximum_event_age_in_seconds,
                }),
                dead_letter_arn: t.dead_letter_config.and_then(|d| d.arn),
                ecs_parameters: t.ecs_parameters.map(ecs_parameters_in),
            })
            .collect();
        let failed = self.engine.put_targets(a, r, input.event_bus_name.as_deref(), &input.rule, targets)?;
        Ok(failed_entries(failed))
    }

    async fn call_inner(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Bytes,
    ) -> Result<Value, ApiError> {
        let (a, r) = (ctx.scope.account.as_str(), ctx.scope.region.as_str());
        let eb = &self.engine;
        match operation {
            "TestEventPattern" => test_event_pattern(parse(&input)?),
            "PutRule" => {
                let i: RuleInput = parse(&input)?;
                let req = PutRule {
                    name: i.name,
                    event_bus_name: i.event_bus_name,
                    event_pattern: i.event_pattern,
                    schedule_expression: i.schedule_expression,
                    state: rule_state(i.state.as_deref())?,
                    description: i.description,
                    role_arn: i.role_arn,
                };
                Ok(json!({"RuleArn": eb.put_rule(a, r, req, Utc::now())?}))
            }
            "DescribeRule" => {
                let i: RuleInput = parse(&input)?;
                Ok(rule_json(&eb.describe_rule(a, r, i.event_bus_name.as_deref(), &i.name)?, true))
            }
            "ListRules" => {
                let i: RuleInput = parse(&input)?;
                let rules = eb.list_rules(a, r, i.event_bus_name.as_deref(), i.name_prefix.as_deref())?;
                let (rules, next) = page(rules, i.next_token.as_deref(), i.limit)?;
                let mut out = json!({"Rules": rules.iter().map(|r| rule_json(r, false)).collect::<Vec<_>>()});
                if let Some(n) = next {
                    out["NextToken"] = json!(n);
                }
                Ok(out)
            }
            "DeleteRule" => {
                let i: RuleInput = parse(&input)?;
                eb.delete_rule(a, r, i.event_bus_name.as_deref(), &i.name)?;
                Ok(json!({}))
            }
            "EnableRule" | "DisableRule" => {
                let i: RuleInput = parse(&input)?;
                let state = if operation == "EnableRule" { RuleState::Enabled } else { RuleState::Disabled };
                eb.set_rule_state(a, r, i.event_bus_name.as_deref(), &i.name, state, Utc::now())?;
                Ok(json!({}))
            }
            "PutTargets" => self.put_targets(a, r, parse(&input)?),
            "RemoveTargets" => {
                let i: RemoveTargetsInput = parse(&input)?;
                Ok(failed_entries(eb.remove_targets(a, r, i.event_bus_name.as_deref(), &i.rule, &i.ids)?))
            }
            "ListTargetsByRule" => {
                let i: ListTargetsInput = parse(&input)?;
                let targets = eb.list_targets(a, r, i.event_bus_name.as_deref(), &i.rule)?;
                let (targets, next) = page(targets, i.next_token.as_deref(), i.limit)?;
                let mut out = json!({"Targets": targets.iter().map(target_json).collect::<Vec<_>>()});
                if let Some(n) = next {
                    out["NextToken"] = json!(n);
                }
                Ok(out)
            }
            "PutEvents" => self.put_events(a, r, parse(&input)?),
            "CreateEventBus" => {
                let i: BusInput = parse(&input)?;
                let name = i.name.ok_or_else(|| ApiError::validation("Name is required."))?;
                let bus = eb.create_event_bus(a, r, &name, i.description, Utc::now())?;
                Ok(json!({"EventBusArn": bus.arn}))
            }
            "DescribeEventBus" => {
                let i: BusInput = parse(&input)?;
                Ok(bus_json(&eb.describe_event_bus(a, r, i.name.as_deref())?))
            }
            "ListEventBuses" => {
                let i: BusInput = parse(&input)?;
                let buses = eb.list_event_buses(a, r, i.name_prefix.as_deref());
                let (buses, next) = page(buses, i.next_token.as_deref(), i.limit)?;
                let mut out = json!({"EventBuses": buses.iter().map(bus_json).collect::<Vec<_>>()});
                if let Some(n) = next {
                    out["NextToken"] = json!(n);
                }
                Ok(out)
            }
            "DeleteEventBus" => {
                let i: BusInput = parse(&input)?;
                let name = i.name.ok_or_else(|| ApiError::validation("Name is required."))?;
                eb.delete_event_bus(a, r, &name)?;
                Ok(json!({}))
            }
            _ => Err(unknown_operation(&format!("AWSEvents.{operation}"))),
        }
    }
}

impl JsonService for EventsService {
    fn target_prefix(&self) -> &'static str {
        "AWSEvents"
    }

    fn call<'a>(
        &'a self,
        ctx: &'a RequestContext,
        operation: &'a str,
        input: Bytes,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(self.call_inner(ctx, operation, input))
    }
}
