//! Step Functions (JSON 1.0, `AWSStepFunctions`): state machines, executions, history and
//! task tokens over `nimbus-stepfunctions`. Timestamps are epoch seconds (JSON numbers).
use crate::auth::RequestContext;
use crate::error::ApiError;
use crate::json_rpc::{BoxFuture, JsonService, parse, unknown_operation};
use axum::body::Bytes;
use chrono::{DateTime, Utc};
use nimbus_stepfunctions::{
    CreateStateMachine, ExecutionInfo, HistoryQuery, LoggingConfiguration, StartExecution, StateMachineInfo,
    StateMachineType, Status, StepFunctionsEngine, UpdateStateMachine,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub struct StepFunctionsService {
    pub engine: Arc<StepFunctionsEngine>,
}

fn epoch(t: DateTime<Utc>) -> Value {
    json!(t.timestamp_millis() as f64 / 1000.0)
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Running => "RUNNING",
        Status::Succeeded => "SUCCEEDED",
        Status::Failed => "FAILED",
        Status::TimedOut => "TIMED_OUT",
        Status::Aborted => "ABORTED",
    }
}

fn parse_status(s: &str) -> Result<Status, ApiError> {
    Ok(match s {
        "RUNNING" => Status::Running,
        "SUCCEEDED" => Status::Succeeded,
        "FAILED" => Status::Failed,
        "TIMED_OUT" => Status::TimedOut,
        "ABORTED" => Status::Aborted,
        "PENDING_REDRIVE" => {
            return Err(ApiError::validation("statusFilter PENDING_REDRIVE is not supported"));
        }
        other => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'statusFilter' failed to satisfy constraint: \
                 Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE]"
            )));
        }
    })
}

#[derive(Deserialize)]
struct Tag {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogGroup {
    log_group_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogDestination {
    cloud_watch_logs_log_group: Option<LogGroup>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Logging {
    level: Option<String>,
    include_execution_data: Option<bool>,
    #[serde(default)]
    destinations: Vec<LogDestination>,
}

impl From<Logging> for LoggingConfiguration {
    fn from(l: Logging) -> LoggingConfiguration {
        LoggingConfiguration {
            level: l.level.unwrap_or_else(|| "OFF".into()),
            include_execution_data: l.include_execution_data.unwrap_or(false),
            destinations: l
                .destinations
                .into_iter()
                .filter_map(|d| d.cloud_watch_logs_log_group.and_then(|g| g.log_group_arn))
                .collect(),
        }
    }
}

#[derive(Deserialize)]
struct Tracing {
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateInput {
    name: String,
    definition: String,
    role_arn: String,
    #[serde(rename = "type")]
    machine_type: Option<String>,
    logging_configuration: Option<Logging>,
    #[serde(default)]
    tags: Vec<Tag>,
    tracing_configuration: Option<Tracing>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MachineArn {
    state_machine_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateInput {
    state_machine_arn: String,
    definition: Option<String>,
    role_arn: Option<String>,
    logging_configuration: Option<Logging>,
    tracing_configuration: Option<Tracing>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    state_machine_arn: Option<String>,
    status_filter: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartInput {
    state_machine_arn: String,
    name: Option<String>,
    input: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionArn {
    execution_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopInput {
    execution_arn: String,
    error: Option<String>,
    cause: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryInput {
    execution_arn: String,
    max_results: Option<i64>,
    reverse_order: Option<bool>,
    next_token: Option<String>,
    include_execution_data: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagInput {
    resource_arn: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenInput {
    task_token: String,
    output: Option<String>,
    error: Option<String>,
    cause: Option<String>,
}

/// `maxResults`: 0..=1000 (0 = the default).
fn max_results(v: Option<i64>) -> Result<Option<usize>, ApiError> {
    match v {
        None => Ok(None),
        Some(n) if (0..=1000).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: \
             Member must have value less than or equal to 1000"
        ))),
    }
}

fn logging_json(l: &LoggingConfiguration) -> Value {
    let destinations: Vec<Value> =
        l.destinations.iter().map(|a| json!({"cloudWatchLogsLogGroup": {"logGroupArn": a}})).collect();
    let mut v = json!({"level": l.level, "includeExecutionData": l.include_execution_data});
    if !destinations.is_empty() {
        v["destinations"] = json!(destinations);
    }
    v
}

fn describe_machine(m: &StateMachineInfo) -> Value {
    let mut v = json!({
        "stateMachineArn": m.arn,
        "name": m.name,
        "status": "ACTIVE",
        "definition": m.definition,
        "roleArn": m.role_arn,
        "type": m.machine_type.as_str(),
        "creationDate": epoch(m.creation_date),
        "loggingConfiguration": logging_json(&m.logging),
        "tracingConfiguration": {"enabled": m.tracing_enabled},
        "revisionId": m.revision_id,
    });
    if let Some(d) = &m.description {
        v["description"] = json!(d);
    }
    v
}

fn execution_item(e: &ExecutionInfo) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("executionArn".into(), json!(e.arn));
    m.insert("stateMachineArn".into(), json!(e.state_machine_arn));
    m.insert("name".into(), json!(e.name));
    m.insert("status".into(), json!(status_name(e.status)));
    m.insert("startDate".into(), epoch(e.start_date));
    if let Some(s) = e.stop_date {
        m.insert("stopDate".into(), epoch(s));
    }
    m
}

/// DescribeExecution / StartSyncExecution members beyond the list item.
fn execution_detail(e: &ExecutionInfo) -> Map<String, Value> {
    let mut m = execution_item(e);
    m.insert("input".into(), json!(e.input));
    m.insert("inputDetails".into(), json!({"included": true}));
    if let Some(o) = &e.output {
        m.insert("output".into(), json!(o));
        m.insert("outputDetails".into(), json!({"included": true}));
    }
    if let Some(err) = &e.error {
        m.insert("error".into(), json!(err));
    }
    if let Some(c) = &e.cause {
        m.insert("cause".into(), json!(c));
    }
    m
}

fn tags_json(tags: impl IntoIterator<Item = (String, String)>) -> Value {
    Value::Array(tags.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect())
}

fn machine_type(t: Option<&str>) -> Result<StateMachineType, ApiError> {
    match t.unwrap_or("STANDARD") {
        "STANDARD" => Ok(StateMachineType::Standard),
        "EXPRESS" => Ok(StateMachineType::Express),
        other => Err(ApiError::validation(format!(
            "1 validation error detected: Value '{other}' at 'type' failed to satisfy constraint: \
             Member must satisfy enum value set: [STANDARD, EXPRESS]"
        ))),
    }
}

impl StepFunctionsService {
    async fn call_inner(&self, ctx: &RequestContext, op: &str, input: &[u8]) -> Result<Value, ApiError> {
        let sfn = &self.engine;
        Ok(match op {
            "CreateStateMachine" => {
                let i: CreateInput = parse(input)?;
                let info = sfn.create_state_machine(CreateStateMachine {
                    account: ctx.scope.account.clone(),
                    region: ctx.scope.region.clone(),
                    name: i.name,
                    definition: i.definition,
                    role_arn: i.role_arn,
                    machine_type: machine_type(i.machine_type.as_deref())?,
                    logging: i.logging_configuration.map(Into::into),
                    tracing_enabled: i.tracing_configuration.and_then(|t| t.enabled).unwrap_or(false),
                    tags: i.tags.into_iter().map(|t| (t.key, t.value)).collect(),
                })?;
                json!({"stateMachineArn": info.arn, "creationDate": epoch(info.creation_date)})
            }
            "DescribeStateMachine" => {
                let i: MachineArn = parse(input)?;
                describe_machine(&sfn.describe_state_machine(&i.state_machine_arn)?)
            }
            "UpdateStateMachine" => {
                let i: UpdateInput = parse(input)?;
                let info = sfn.update_state_machine(UpdateStateMachine {
                    arn: i.state_machine_arn,
                    definition: i.definition,
                    role_arn: i.role_arn,
                    logging: i.logging_configuration.map(Into::into),
                    tracing_enabled: i.tracing_configuration.and_then(|t| t.enabled),
                })?;
                json!({"updateDate": epoch(info.update_date.unwrap_or(info.creation_date)), "revisionId": info.revision_id})
            }
            "DeleteStateMachine" => {
                let i: MachineArn = parse(input)?;
                sfn.delete_state_machine(&i.state_machine_arn)?;
                json!({})
            }
            "ListStateMachines" => {
                let i: ListInput = parse(input)?;
                let page = sfn.list_state_machines(
                    &ctx.scope.account,
                    &ctx.scope.region,
                    max_results(i.max_results)?,
                    i.next_token.as_deref(),
                )?;
                let items: Vec<Value> = page
                    .items
                    .iter()
                    .map(|m| {
                        json!({"stateMachineArn": m.arn, "name": m.name, "type": m.machine_type.as_str(),
                               "creationDate": epoch(m.creation_date)})
                    })
                    .collect();
                with_token(json!({"stateMachines": items}), page.next)
            }
            "StartExecution" => {
                let i: StartInput = parse(input)?;
                let (arn, start) = sfn.start_execution(StartExecution {
                    state_machine_arn: i.state_machine_arn,
                    name: i.name,
                    input: i.input,
                })?;
                json!({"executionArn": arn, "startDate": epoch(start)})
            }
            "StartSyncExecution" => {
                let i: StartInput = parse(input)?;
                let r = sfn
                    .start_sync_execution(StartExecution {
                        state_machine_arn: i.state_machine_arn,
                        name: i.name,
                        input: i.input,
                    })
                    .await?;
                let mut m = execution_detail(&r.execution);
                m.insert(
                    "billingDetails".into(),
                    json!({"billedMemoryUsedInMB": r.billed_memory_mb,
                           "billedDurationInMilliseconds": r.billed_duration_ms}),
                );
                Value::Object(m)
            }
            "DescribeExecution" => {
                let i: ExecutionArn = parse(input)?;
                let e = sfn.describe_execution(&i.execution_arn)?;
                let mut m = execution_detail(&e);
                m.insert("redriveCount".into(), json!(0));
                m.insert("redriveStatus".into(), json!("NOT_REDRIVABLE"));
                Value::Object(m)
            }
            "DescribeStateMachineForExecution" => {
                let i: ExecutionArn = parse(input)?;
                let m = sfn.describe_state_machine_for_execution(&i.execution_arn)?;
                json!({
                    "stateMachineArn": m.state_machine_arn,
                    "name": m.name,
                    "definition": m.definition,
                    "roleArn": m.role_arn,
                    "updateDate": epoch(m.update_date),
                    "loggingConfiguration": logging_json(&m.logging),
                    "tracingConfiguration": {"enabled": m.tracing_enabled},
                    "revisionId": m.revision_id,
                })
            }
            "ListExecutions" => {
                let i: ListInput = parse(input)?;
                let Some(arn) = i.state_machine_arn else {
                    return Err(ApiError::validation("Must provide a StateMachine ARN or a MapRun ARN"));
                };
                let status = i.status_filter.as_deref().map(parse_status).transpose()?;
                let page =
                    sfn.list_executions(&arn, status, max_results(i.max_results)?, i.next_token.as_deref())?;
                let items: Vec<Value> = page.items.iter().map(|e| Value::Object(execution_item(e))).collect();
                with_token(json!({"executions": items}), page.next)
            }
            "StopExecution" => {
                let i: StopInput = parse(input)?;
                let stopped = sfn.stop_execution(&i.execution_arn, i.error, i.cause).await?;
                json!({"stopDate": epoch(stopped)})
            }
            "GetExecutionHistory" => {
                let i: HistoryInput = parse(input)?;
                let include_data = i.include_execution_data.unwrap_or(true);
                let page = sfn.execution_history(HistoryQuery {
                    execution_arn: i.execution_arn,
                    max_results: max_results(i.max_results)?,
                    reverse_order: i.reverse_order.unwrap_or(false),
                    next_token: i.next_token,
                })?;
                let events: Vec<Value> = page
                    .items
                    .iter()
                    .map(|e| {
                        let mut v = e.to_aws_json();
                        v["timestamp"] = epoch(e.timestamp);
                        if !include_data
                            && let Some(key) = &e.details_key
                            && let Some(d) = v.get_mut(key.as_str()).and_then(Value::as_object_mut)
                        {
                            for k in ["input", "output", "inputDetails", "outputDetails", "parameters"] {
                                d.remove(k);
                            }
                        }
                        v
                    })
                    .collect();
                with_token(json!({"events": events}), page.next)
            }
            "TagResource" => {
                let i: TagInput = parse(input)?;
                sfn.tag_resource(&i.resource_arn, i.tags.into_iter().map(|t| (t.key, t.value)).collect())?;
                json!({})
            }
            "UntagResource" => {
                let i: TagInput = parse(input)?;
                sfn.untag_resource(&i.resource_arn, &i.tag_keys)?;
                json!({})
            }
            "ListTagsForResource" => {
                let i: TagInput = parse(input)?;
                json!({"tags": tags_json(sfn.list_tags(&i.resource_arn)?)})
            }
            "SendTaskSuccess" => {
                let i: TokenInput = parse(input)?;
                let Some(output) = i.output else {
                    return Err(ApiError::validation("1 validation error detected: output must not be null"));
                };
                sfn.send_task_success(&i.task_token, &output)?;
                json!({})
            }
            "SendTaskFailure" => {
                let i: TokenInput = parse(input)?;
                sfn.send_task_failure(&i.task_token, i.error, i.cause)?;
                json!({})
            }
            "SendTaskHeartbeat" => {
                let i: TokenInput = parse(input)?;
                sfn.send_task_heartbeat(&i.task_token)?;
                json!({})
            }
            _ => return Err(unknown_operation(&format!("AWSStepFunctions.{op}"))),
        })
    }
}

fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(t) = next {
        v["nextToken"] = json!(t);
    }
    v
}

impl JsonService for StepFunctionsService {
    fn target_prefix(&self) -> &'static str {
        "AWSStepFunctions"
    }

    fn call<'a>(
        &'a self,
        ctx: &'a RequestContext,
        operation: &'a str,
        input: Bytes,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move { self.call_inner(ctx, operation, &input).await })
    }
}
