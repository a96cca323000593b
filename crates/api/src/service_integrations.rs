//! Other services' integrations with ECS, in their wire shapes: Step Functions' optimized
//! `ecs:runTask` (PascalCase parameters and output) and EventBridge targets with
//! `EcsParameters`. Both go through the ECS API's own request parsing and rendering
//! (`ecs::EcsService`), so a task a trigger starts is validated and described exactly as
//! one started by RunTask — there is one RunTask parser, not three.
use crate::auth::RequestContext;
use crate::ecs::EcsService;
use crate::error::ApiError;
use crate::json_rpc::JsonService;
use axum::body::Bytes;
use nimbus_containers::EcsEngine;
use nimbus_eventbridge::EcsParameters;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The `startedBy` Step Functions gives the tasks it starts (unless Parameters name one).
pub const STEP_FUNCTIONS_STARTED_BY: &str = "AWS Step Functions";

async fn call(
    engine: &Arc<EcsEngine>,
    account: &str,
    region: &str,
    op: &str,
    body: Value,
) -> Result<Value, ApiError> {
    let service = EcsService { engine: engine.clone() };
    let ctx = RequestContext {
        scope: nimbus_model::Scope { account: account.into(), region: region.into() },
        access_key: None,
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    service.call(&ctx, op, Bytes::from(body.to_string())).await
}

/// `ecs:runTask`'s Parameters (PascalCase) → RunTask → its response as Step Functions
/// returns it: PascalCase, timestamps in epoch milliseconds, with the SDK's HTTP metadata.
pub async fn sfn_run_task(
    engine: &Arc<EcsEngine>,
    account: &str,
    region: &str,
    parameters: &Value,
) -> Result<Value, ApiError> {
    let mut body = camel_keys(parameters);
    if let Value::Object(m) = &mut body {
        m.entry("startedBy").or_insert_with(|| json!(STEP_FUNCTIONS_STARTED_BY));
    }
    let response = call(engine, account, region, "RunTask", body).await?;
    let mut out = sdk_shape(&response);
    if let Value::Object(m) = &mut out {
        let request_id = uuid::Uuid::new_v4().to_string();
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let headers = json!({
            "Content-Type": "application/x-amz-json-1.1",
            "Date": date,
            "x-amzn-RequestId": request_id,
        });
        let all: Map<String, Value> = headers
            .as_object()
            .map(|h| h.iter().map(|(k, v)| (k.clone(), json!([v]))).collect())
            .unwrap_or_default();
        m.insert(
            "SdkHttpMetadata".into(),
            json!({"AllHttpHeaders": all, "HttpHeaders": headers, "HttpStatusCode": 200}),
        );
        m.insert("SdkResponseMetadata".into(), json!({"RequestId": request_id}));
    }
    Ok(out)
}

/// The task ARNs a RunTask response (either shape) started.
pub fn started_task_arns(response: &Value) -> Vec<String> {
    let tasks = response.get("Tasks").or_else(|| response.get("tasks")).and_then(Value::as_array);
    tasks
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("TaskArn").or_else(|| t.get("taskArn")).and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// Tasks as DescribeTasks shows them, in Step Functions' shape (what `ecs:runTask.sync`
/// outputs). Tasks ECS no longer knows are left out.
pub async fn sfn_describe_tasks(
    engine: &Arc<EcsEngine>,
    account: &str,
    region: &str,
    cluster: &str,
    task_arns: &[String],
) -> Result<Vec<Value>, ApiError> {
    let body = json!({"cluster": cluster, "tasks": task_arns, "include": ["TAGS"]});
    let response = call(engine, account, region, "DescribeTasks", body).await?;
    let tasks = response.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default();
    Ok(tasks.iter().map(sdk_shape).collect())
}

/// An EventBridge target's RunTask on cluster `cluster_arn`. `overrides` is the target's
/// Input / InputPath / InputTransformer result, which for ECS targets is RunTask's
/// `overrides` object (EventBridge does not otherwise hand the event to the task).
/// Returns the started task ARNs; a launch that started nothing is an error (retried).
pub async fn events_run_task(
    engine: &Arc<EcsEngine>,
    account: &str,
    region: &str,
    cluster_arn: &str,
    rule_name: &str,
    p: &EcsParameters,
    overrides: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut body = Map::new();
    body.insert("cluster".into(), json!(cluster_arn));
    body.insert("taskDefinition".into(), json!(p.task_definition_arn));
    body.insert("count".into(), json!(p.task_count.unwrap_or(1)));
    body.insert("startedBy".into(), json!(format!("events-rule/{rule_name}")));
    let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    };
    opt(&mut body, "launchType", &p.launch_type);
    opt(&mut body, "platformVersion", &p.platform_version);
    opt(&mut body, "group", &p.group);
    opt(&mut body, "propagateTags", &p.propagate_tags);
    opt(&mut body, "referenceId", &p.reference_id);
    if let Some(n) = &p.network_configuration {
        let mut vpc = Map::new();
        vpc.insert("subnets".into(), json!(n.subnets));
        vpc.insert("securityGroups".into(), json!(n.security_groups));
        opt(&mut vpc, "assignPublicIp", &n.assign_public_ip);
        body.insert("networkConfiguration".into(), json!({"awsvpcConfiguration": vpc}));
    }
    let placement = |v: &[(String, Option<String>)], k: &str| -> Value {
        v.iter()
            .map(|(t, x)| {
                let mut m = Map::new();
                m.insert("type".into(), json!(t));
                if let Some(x) = x {
                    m.insert(k.into(), json!(x));
                }
                Value::Object(m)
            })
            .collect()
    };
    if !p.placement_constraints.is_empty() {
        body.insert("placementConstraints".into(), placement(&p.placement_constraints, "expression"));
    }
    if !p.placement_strategy.is_empty() {
        body.insert("placementStrategy".into(), placement(&p.placement_strategy, "field"));
    }
    if !p.tags.is_empty() {
        let tags: Vec<Value> = p.tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        body.insert("tags".into(), json!(tags));
    }
    body.insert("enableECSManagedTags".into(), json!(p.enable_ecs_managed_tags));
    body.insert("enableExecuteCommand".into(), json!(p.enable_execute_command));
    if let Some(text) = overrides {
        let o: Value = serde_json::from_str(text)
            .map_err(|e| format!("the target's input is not a JSON task override: {e}"))?;
        if !o.is_object() {
            return Err("the target's input must be a JSON object (a task override)".into());
        }
        body.insert("overrides".into(), o);
    }
    let response = call(engine, account, region, "RunTask", Value::Object(body))
        .await
        .map_err(|e| format!("{}: {}", e.code, e.message))?;
    let arns = started_task_arns(&response);
    if arns.is_empty() {
        let failures = response.get("failures").cloned().unwrap_or(Value::Null);
        return Err(format!("RunTask started no task: {failures}"));
    }
    Ok(arns)
}

/// Step Functions' PascalCase parameter names → the ECS API's camelCase ones (nested).
fn camel_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (first_char(k, false), camel_keys(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(camel_keys).collect()),
        other => other.clone(),
    }
}

/// An ECS API answer → the Java SDK object Step Functions serialises: PascalCase names,
/// `…At` timestamps as epoch milliseconds.
fn sdk_shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::Number(n) if k.ends_with("At") => n
                            .as_f64()
                            .map(|s| json!((s * 1000.0).round() as i64))
                            .unwrap_or_else(|| v.clone()),
                        other => sdk_shape(other),
                    };
                    (first_char(k, true), value)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(sdk_shape).collect()),
        other => other.clone(),
    }
}

fn first_char(k: &str, upper: bool) -> String {
    let mut chars = k.chars();
    match chars.next() {
        Some(c) if upper => c.to_uppercase().chain(chars).collect(),
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_camel_case() {
        let p = json!({
            "Cluster": "c",
            "TaskDefinition": "td:1",
            "EnableECSManagedTags": true,
            "NetworkConfiguration": {"AwsvpcConfiguration": {"Subnets": ["s"], "AssignPublicIp": "ENABLED"}},
            "Overrides": {"ContainerOverrides": [{"Name": "app", "Command": ["Sh"], "Environment": [{"Name": "K", "Value": "V"}]}]},
        });
        let c = camel_keys(&p);
        assert_eq!(c["cluster"], "c");
        assert_eq!(c["enableECSManagedTags"], true);
        assert_eq!(c["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"], "ENABLED");
        let o = &c["overrides"]["containerOverrides"][0];
        assert_eq!((o["name"].as_str(), o["command"][0].as_str()), (Some("app"), Some("Sh")));
        assert_eq!(o["environment"][0], json!({"name": "K", "value": "V"}));
    }

    #[test]
    fn answers_become_sdk_shaped() {
        let t = json!({"tasks": [{"taskArn": "a", "createdAt": 1700000000.5, "containers": [{"exitCode": 0, "bindIP": "x"}], "version": 3}], "failures": []});
        let s = sdk_shape(&t);
        assert_eq!(s["Tasks"][0]["TaskArn"], "a");
        assert_eq!(s["Tasks"][0]["CreatedAt"], 1_700_000_000_500i64);
        assert_eq!(s["Tasks"][0]["Containers"][0]["ExitCode"], 0);
        assert_eq!(s["Tasks"][0]["Containers"][0]["BindIP"], "x");
        assert_eq!(s["Tasks"][0]["Version"], 3);
        assert_eq!(started_task_arns(&s), vec!["a".to_string()]);
        assert_eq!(started_task_arns(&t), vec!["a".to_string()]);
    }
}
