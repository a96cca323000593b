//! Task states: what each resource does, timeouts, heartbeats and task tokens.
use crate::driver::ExecEntry;
use crate::engine::StepFunctionsEngine;
use crate::{EcsRunTask, ExecutionInfo, LambdaInvocation, LambdaOutcome, StartExecution, TaskFailure};
use nimbus_workflows::{Action, Event, ExecutionStatus};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A task token handed out by a `.waitForTaskToken` task.
pub(crate) struct TokenEntry {
    pub execution: Arc<ExecEntry>,
    pub task_id: u64,
    pub last_heartbeat: Instant,
}

/// How a resource ARN's suffix says to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    /// Request/response: the API call's answer is the result.
    Response,
    /// `.sync`: run the job to completion.
    Sync,
    /// `.sync:2`: as `.sync`, with JSON (not string) output.
    Sync2,
    /// `.waitForTaskToken`: the result comes from SendTaskSuccess/Failure.
    Token,
}

fn split_resource(resource: &str) -> (&str, Pattern) {
    if let Some(base) = resource.strip_suffix(".waitForTaskToken") {
        (base, Pattern::Token)
    } else if let Some(base) = resource.strip_suffix(".sync:2") {
        (base, Pattern::Sync2)
    } else if let Some(base) = resource.strip_suffix(".sync") {
        (base, Pattern::Sync)
    } else {
        (resource, Pattern::Response)
    }
}

/// A task's result: done, failed, or waiting for SendTask*.
enum Outcome {
    Done(Value),
    Failed(TaskFailure),
    AwaitToken,
}

fn failure(error: &str, cause: impl Into<String>) -> Outcome {
    Outcome::Failed(TaskFailure { error: error.to_string(), cause: cause.into() })
}

impl StepFunctionsEngine {
    pub(crate) fn spawn_task(self: &Arc<Self>, entry: &Arc<ExecEntry>, action: Action) {
        let Action::InvokeTask {
            task_id,
            resource,
            input,
            timeout_seconds,
            heartbeat_seconds,
            task_token,
            ..
        } = action
        else {
            return;
        };
        let engine = self.clone();
        let entry = entry.clone();
        tokio::spawn(async move {
            entry.send(Event::TaskStarted { task_id });
            if let Some(token) = &task_token {
                engine.tokens.lock().insert(
                    token.clone(),
                    TokenEntry { execution: entry.clone(), task_id, last_heartbeat: Instant::now() },
                );
                if let Some(secs) = timeout_seconds {
                    engine.arm_token_timer(token.clone(), Duration::from_secs(secs), false);
                }
                if let Some(secs) = heartbeat_seconds {
                    engine.arm_token_timer(token.clone(), Duration::from_secs(secs), true);
                }
            }
            let (base, pattern) = split_resource(&resource);
            let run = engine.run_task(&entry, task_id, base, pattern, input);
            // Token tasks time out through their token timer (the wait outlasts the call).
            let outcome = match timeout_seconds.filter(|_| task_token.is_none()) {
                Some(secs) => match tokio::time::timeout(Duration::from_secs(secs), run).await {
                    Ok(o) => o,
                    Err(_) => {
                        // A `.sync` ECS task that outlived its state is stopped, not orphaned.
                        if base == "arn:aws:states:::ecs:runTask" && pattern == Pattern::Sync {
                            let (region, account) = machine_scope(&entry);
                            let key = ecs_key(&entry, task_id);
                            engine.invoker.stop_ecs_task(account, region, key).await;
                        }
                        entry.send(Event::TaskTimedOut { task_id, heartbeat: false });
                        return;
                    }
                },
                None => run.await,
            };
            match outcome {
                Outcome::Done(output) => entry.send(Event::TaskSucceeded { task_id, output }),
                Outcome::Failed(f) => {
                    if let Some(token) = &task_token {
                        engine.tokens.lock().remove(token);
                    }
                    entry.send(Event::TaskFailed { task_id, error: f.error, cause: f.cause })
                }
                Outcome::AwaitToken => {}
            }
        });
    }

    /// Fires `TaskTimedOut` when a token task runs past its timeout, or goes `period`
    /// without a heartbeat.
    fn arm_token_timer(self: &Arc<Self>, token: String, period: Duration, heartbeat: bool) {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut deadline = Instant::now() + period;
            loop {
                tokio::time::sleep_until(deadline.into()).await;
                let mut tokens = engine.tokens.lock();
                let Some(t) = tokens.get(&token) else { return };
                if heartbeat && t.last_heartbeat + period > Instant::now() {
                    deadline = t.last_heartbeat + period;
                    continue;
                }
                if let Some(t) = tokens.remove(&token) {
                    t.execution.send(Event::TaskTimedOut { task_id: t.task_id, heartbeat });
                }
                return;
            }
        });
    }

    async fn run_task(
        self: &Arc<Self>,
        entry: &Arc<ExecEntry>,
        task_id: u64,
        resource: &str,
        pattern: Pattern,
        input: Value,
    ) -> Outcome {
        let (region, account) = machine_scope(entry);
        let token = pattern == Pattern::Token;
        match resource {
            "arn:aws:states:::lambda:invoke" if matches!(pattern, Pattern::Response | Pattern::Token) => {
                let Some(function) = input.get("FunctionName").and_then(Value::as_str) else {
                    return failure(
                        "States.Runtime",
                        "The field 'FunctionName' is required for lambda:invoke",
                    );
                };
                let payload = match input.get("Payload") {
                    None => b"{}".to_vec(),
                    Some(p) => p.to_string().into_bytes(),
                };
                let invocation = LambdaInvocation {
                    account,
                    region,
                    function: function.to_string(),
                    qualifier: input.get("Qualifier").and_then(Value::as_str).map(str::to_string),
                    payload: payload.into(),
                    asynchronous: input.get("InvocationType").and_then(Value::as_str) == Some("Event"),
                };
                match self.invoker.invoke_lambda(invocation).await {
                    Ok(out) if out.function_error.is_some() => function_failure(&out),
                    Ok(_) if token => Outcome::AwaitToken,
                    Ok(out) => Outcome::Done(lambda_envelope(&out)),
                    Err(f) => Outcome::Failed(f),
                }
            }
            r if r.starts_with("arn:aws:lambda:") && pattern == Pattern::Response => {
                let invocation = LambdaInvocation {
                    account,
                    region,
                    function: r.to_string(),
                    qualifier: None,
                    payload: input.to_string().into_bytes().into(),
                    asynchronous: false,
                };
                match self.invoker.invoke_lambda(invocation).await {
                    Ok(out) if out.function_error.is_some() => function_failure(&out),
                    Ok(out) => Outcome::Done(payload_value(&out.payload)),
                    Err(f) => Outcome::Failed(f),
                }
            }
            "arn:aws:states:::states:startExecution" => self.nested(entry, task_id, pattern, input).await,
            "arn:aws:states:::ecs:runTask" if pattern != Pattern::Sync2 => {
                let run = EcsRunTask {
                    account,
                    region,
                    parameters: input,
                    idempotency_key: ecs_key(entry, task_id),
                    wait: pattern == Pattern::Sync,
                };
                self.ecs_run_task(entry, pattern, run).await
            }
            other => failure(
                "States.TaskFailed",
                format!("The resource '{other}' is not supported by this Nimbus build"),
            ),
        }
    }

    /// `ecs:runTask`: the binary starts the task(s); `.sync` also waits for them to stop.
    async fn ecs_run_task(
        self: &Arc<Self>,
        entry: &Arc<ExecEntry>,
        pattern: Pattern,
        run: EcsRunTask,
    ) -> Outcome {
        let (account, region, key) = (run.account.clone(), run.region.clone(), run.idempotency_key.clone());
        let result = tokio::select! {
            r = self.invoker.run_ecs_task(run) => r,
            // An execution that ends first (stopped, timed out) takes its `.sync` task with it.
            () = entry.wait(), if pattern == Pattern::Sync => {
                self.invoker.stop_ecs_task(account, region, key).await;
                return Outcome::AwaitToken;
            }
        };
        match result {
            Err(f) => Outcome::Failed(f),
            Ok(response) => match pattern {
                // Request/response returns RunTask's answer even with Failures; the token
                // pattern fails on them, as Step Functions' optimized ECS integration does.
                Pattern::Token => match ecs_failures(&response) {
                    Some(failures) => failure("AmazonECS.Unknown", failures),
                    None => Outcome::AwaitToken,
                },
                _ => Outcome::Done(response),
            },
        }
    }

    /// `states:startExecution`: a child execution, started idempotently (a resumed
    /// parent re-issuing the task finds the child it already started).
    async fn nested(
        self: &Arc<Self>,
        entry: &Arc<ExecEntry>,
        task_id: u64,
        pattern: Pattern,
        input: Value,
    ) -> Outcome {
        let Some(machine_arn) = input.get("StateMachineArn").and_then(Value::as_str) else {
            return failure(
                "States.Runtime",
                "The field 'StateMachineArn' is required for states:startExecution",
            );
        };
        let child_input = match input.get("Input") {
            None => "{}".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        let name = match input.get("Name").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => derived_name(&entry.arn, task_id),
        };
        let request = StartExecution {
            state_machine_arn: machine_arn.to_string(),
            name: Some(name),
            input: Some(child_input),
        };
        let child = match self.start_child(request) {
            Ok(c) => c,
            Err(e) => return failure("StepFunctions.AWSStepFunctionsException", e.to_string()),
        };
        let started = child.state.lock().record.start_date;
        match pattern {
            Pattern::Response => Outcome::Done(json!({
                "ExecutionArn": child.arn,
                "StartDate": started.timestamp_millis(),
            })),
            Pattern::Token => Outcome::AwaitToken,
            Pattern::Sync | Pattern::Sync2 => {
                // A parent that ends first (stopped, timed out, failed elsewhere) takes
                // its `.sync` child with it, as Step Functions does.
                tokio::select! {
                    () = child.wait() => {}
                    () = entry.wait() => {
                        let cause = format!("The parent execution {} ended", entry.arn);
                        let _ = self.stop_execution(&child.arn, Some("States.Aborted".into()), Some(cause)).await;
                        return Outcome::AwaitToken;
                    }
                }
                let info = child.state.lock().info();
                let ok = info.status == ExecutionStatus::Succeeded;
                let described = describe_output(&info, pattern == Pattern::Sync2);
                if ok {
                    Outcome::Done(described)
                } else {
                    failure("States.TaskFailed", described.to_string())
                }
            }
        }
    }
}

/// `arn:aws:states:REGION:ACCOUNT:stateMachine:NAME`: tasks run in the machine's account.
fn machine_scope(entry: &ExecEntry) -> (String, String) {
    let st = entry.state.lock();
    let mut parts = st.record.machine.arn.split(':').skip(3);
    (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string())
}

/// One attempt of one task state: task ids are never reused within an execution and
/// survive a restart, so a resumed execution finds the ECS task(s) it already started.
fn ecs_key(entry: &ExecEntry, task_id: u64) -> String {
    format!("{}#{task_id}", entry.arn)
}

/// RunTask's non-empty `Failures`, as the cause text.
fn ecs_failures(response: &Value) -> Option<String> {
    response
        .get("Failures")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
        .map(|f| Value::Array(f.clone()).to_string())
}

/// A function error becomes a task failure named by the function's `errorType`, with
/// the whole error payload as the cause (as Step Functions reports it).
fn function_failure(out: &LambdaOutcome) -> Outcome {
    let error = serde_json::from_slice::<Value>(&out.payload)
        .ok()
        .and_then(|v| v.get("errorType").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "Lambda.Unknown".to_string());
    failure(&error, String::from_utf8_lossy(&out.payload).into_owned())
}

fn payload_value(payload: &[u8]) -> Value {
    if payload.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

/// `lambda:invoke`'s output: the Invoke API response as the SDK sees it.
fn lambda_envelope(out: &LambdaOutcome) -> Value {
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let length = out.payload.len().to_string();
    let headers = [
        ("Connection", "keep-alive"),
        ("Content-Length", length.as_str()),
        ("Content-Type", "application/json"),
        ("Date", date.as_str()),
        ("X-Amz-Executed-Version", out.executed_version.as_str()),
        ("x-amzn-Remapped-Content-Length", "0"),
        ("x-amzn-RequestId", out.request_id.as_str()),
    ];
    let all: Map<String, Value> = headers.iter().map(|(k, v)| (k.to_string(), json!([v]))).collect();
    let single: Map<String, Value> = headers.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({
        "ExecutedVersion": out.executed_version,
        "Payload": payload_value(&out.payload),
        "SdkHttpMetadata": {"AllHttpHeaders": all, "HttpHeaders": single, "HttpStatusCode": out.status},
        "SdkResponseMetadata": {"RequestId": out.request_id},
        "StatusCode": out.status,
    })
}

/// `startExecution.sync` output: DescribeExecution's answer, capitalised.
fn describe_output(info: &ExecutionInfo, json_output: bool) -> Value {
    let mut m = Map::new();
    m.insert("ExecutionArn".into(), json!(info.arn));
    m.insert("Input".into(), json!(info.input));
    m.insert("InputDetails".into(), json!({"Included": true}));
    m.insert("Name".into(), json!(info.name));
    if let Some(out) = &info.output {
        let v = if json_output { serde_json::from_str(out).unwrap_or(Value::Null) } else { json!(out) };
        m.insert("Output".into(), v);
        m.insert("OutputDetails".into(), json!({"Included": true}));
    }
    if let Some(e) = &info.error {
        m.insert("Error".into(), json!(e));
    }
    if let Some(c) = &info.cause {
        m.insert("Cause".into(), json!(c));
    }
    m.insert("StartDate".into(), json!(info.start_date.timestamp_millis()));
    m.insert("StateMachineArn".into(), json!(info.state_machine_arn));
    m.insert("Status".into(), json!(status_name(info.status)));
    if let Some(s) = info.stop_date {
        m.insert("StopDate".into(), json!(s.timestamp_millis()));
    }
    Value::Object(m)
}

pub fn status_name(s: ExecutionStatus) -> &'static str {
    match s {
        ExecutionStatus::Running => "RUNNING",
        ExecutionStatus::Succeeded => "SUCCEEDED",
        ExecutionStatus::Failed => "FAILED",
        ExecutionStatus::TimedOut => "TIMED_OUT",
        ExecutionStatus::Aborted => "ABORTED",
    }
}

/// A stable child execution name for (parent, task): UUID-shaped, like AWS's.
fn derived_name(parent: &str, task_id: u64) -> String {
    let fnv = |seed: u64| {
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
        for b in parent.bytes().chain(task_id.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h
    };
    uuid::Uuid::from_u64_pair(fnv(1), fnv(2)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_split() {
        assert_eq!(split_resource("arn:aws:states:::states:startExecution.sync:2").1, Pattern::Sync2);
        assert_eq!(
            split_resource("arn:aws:states:::lambda:invoke.waitForTaskToken").0,
            "arn:aws:states:::lambda:invoke"
        );
        assert_eq!(split_resource("arn:aws:states:::ecs:runTask.sync").1, Pattern::Sync);
    }

    #[test]
    fn function_errors_are_named_by_error_type() {
        let out = |p: &str| LambdaOutcome {
            status: 200,
            payload: p.as_bytes().to_vec().into(),
            function_error: Some("Unhandled".into()),
            executed_version: "$LATEST".into(),
            request_id: "r".into(),
        };
        let Outcome::Failed(f) = function_failure(&out(r#"{"errorType":"ValueError","errorMessage":"x"}"#))
        else {
            panic!()
        };
        assert_eq!(f.error, "ValueError");
        assert!(f.cause.contains("errorMessage"));
        let Outcome::Failed(f) = function_failure(&out("boom")) else { panic!() };
        assert_eq!((f.error.as_str(), f.cause.as_str()), ("Lambda.Unknown", "boom"));
    }

    #[test]
    fn ecs_failures_only_when_present() {
        assert_eq!(ecs_failures(&json!({"Tasks": [], "Failures": []})), None);
        assert_eq!(ecs_failures(&json!({"Tasks": []})), None);
        let f = ecs_failures(&json!({"Failures": [{"Reason": "RESOURCE:MEMORY"}]})).unwrap();
        assert!(f.contains("RESOURCE:MEMORY"));
    }

    #[test]
    fn child_names_are_stable() {
        assert_eq!(derived_name("a", 1), derived_name("a", 1));
        assert_ne!(derived_name("a", 1), derived_name("a", 2));
    }
}
