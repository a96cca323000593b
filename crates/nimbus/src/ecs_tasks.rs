//! ECS as a trigger target: Step Functions' `ecs:runTask` (request/response, `.sync`,
//! `.waitForTaskToken`) and EventBridge targets with `EcsParameters`, over the containers
//! engine. Step Functions and EventBridge open (and resume executions) before ECS does, so
//! they hold an [`EcsHandle`] that `main` fills once the ECS engine is open.
use crate::task_invoker::LambdaTasks;
use nimbus_api::service_integrations::{
    events_run_task, sfn_describe_tasks, sfn_run_task, started_task_arns,
};
use nimbus_containers::{ContainerState, EcsEngine, Scope, Task};
use nimbus_stepfunctions::{
    BoxFuture, EcsRunTask, LambdaInvocation, LambdaOutcome, TaskFailure, TaskInvoker,
};
use nimbus_store::Store;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// `.sync` runs in flight, by idempotency key: a resumed execution re-issuing its task
/// waits on the task(s) it already started instead of starting new ones.
const RUNS: &str = "stepfunctions.ecs_runs";
/// How often a `.sync` wait looks at its tasks.
const POLL: Duration = Duration::from_millis(250);
/// How long a trigger waits for the ECS engine to open (executions resume before it does).
const ENGINE_WAIT: Duration = Duration::from_secs(120);

/// The ECS engine, once open.
#[derive(Default)]
pub struct EcsHandle(OnceLock<Arc<EcsEngine>>);

impl EcsHandle {
    pub fn set(&self, engine: Arc<EcsEngine>) {
        let _ = self.0.set(engine);
    }

    async fn engine(&self) -> Option<Arc<EcsEngine>> {
        let deadline = tokio::time::Instant::now() + ENGINE_WAIT;
        loop {
            if let Some(e) = self.0.get() {
                return Some(e.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct RunRecord {
    cluster: String,
    task_arns: Vec<String>,
}

impl RunRecord {
    fn encode(&self) -> Vec<u8> {
        json!({"cluster": self.cluster, "taskArns": self.task_arns}).to_string().into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<RunRecord> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let arns = v.get("taskArns")?.as_array()?;
        Some(RunRecord {
            cluster: v.get("cluster")?.as_str()?.to_string(),
            task_arns: arns.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        })
    }
}

fn task_failure(error: impl Into<String>, cause: impl Into<String>) -> TaskFailure {
    TaskFailure { error: error.into(), cause: cause.into() }
}

/// An ECS API error as Step Functions names it (`ECS.<error code>`), with the SDK's cause text.
fn api_failure(e: nimbus_api::ApiError) -> TaskFailure {
    let cause = format!(
        "{} (Service: AmazonECS; Status Code: {}; Error Code: {}; Request ID: {}; Proxy: null)",
        e.message,
        e.status.as_u16(),
        e.code,
        uuid::Uuid::new_v4()
    );
    task_failure(format!("ECS.{}", e.code), cause)
}

/// Step Functions' tasks: Lambda through the functions engine, ECS through this module.
pub struct StepTasks {
    pub lambda: LambdaTasks,
    pub ecs: Arc<EcsHandle>,
    pub store: Arc<dyn Store>,
}

impl TaskInvoker for StepTasks {
    fn invoke_lambda(&self, inv: LambdaInvocation) -> BoxFuture<'static, Result<LambdaOutcome, TaskFailure>> {
        self.lambda.invoke_lambda(inv)
    }

    fn run_ecs_task(&self, run: EcsRunTask) -> BoxFuture<'static, Result<Value, TaskFailure>> {
        let (handle, store) = (self.ecs.clone(), self.store.clone());
        Box::pin(async move {
            let engine = handle
                .engine()
                .await
                .ok_or_else(|| task_failure("States.TaskFailed", "the ECS engine is not available"))?;
            let scope = Scope::new(&run.account, &run.region);
            let existing = match store.get(RUNS, &run.idempotency_key) {
                Ok(Some(bytes)) if run.wait => RunRecord::decode(&bytes),
                _ => None,
            };
            let record = match existing {
                Some(r) => r,
                None => {
                    let response = sfn_run_task(&engine, &run.account, &run.region, &run.parameters)
                        .await
                        .map_err(api_failure)?;
                    if !run.wait {
                        return Ok(response);
                    }
                    let failures =
                        response.get("Failures").and_then(Value::as_array).filter(|f| !f.is_empty());
                    let task_arns = started_task_arns(&response);
                    if let Some(f) = failures {
                        return Err(task_failure("AmazonECS.Unknown", Value::Array(f.clone()).to_string()));
                    }
                    if task_arns.is_empty() {
                        return Err(task_failure("AmazonECS.Unknown", "RunTask started no task"));
                    }
                    let cluster = response
                        .pointer("/Tasks/0/ClusterArn")
                        .and_then(Value::as_str)
                        .unwrap_or("default")
                        .to_string();
                    let record = RunRecord { cluster, task_arns };
                    if let Err(e) = store.put(RUNS, &run.idempotency_key, &record.encode()) {
                        tracing::warn!("ecs:runTask.sync {}: not recorded ({e})", run.idempotency_key);
                    }
                    record
                }
            };
            let result = wait_stopped(&engine, &scope, &run, &record).await;
            let _ = store.delete(RUNS, &run.idempotency_key);
            result
        })
    }

    fn stop_ecs_task(&self, account: String, region: String, key: String) -> BoxFuture<'static, ()> {
        let (handle, store) = (self.ecs.clone(), self.store.clone());
        Box::pin(async move {
            let Ok(Some(bytes)) = store.get(RUNS, &key) else { return };
            let _ = store.delete(RUNS, &key);
            let (Some(engine), Some(record)) = (handle.engine().await, RunRecord::decode(&bytes)) else {
                return;
            };
            let scope = Scope::new(&account, &region);
            for arn in &record.task_arns {
                let reason = Some("Step Functions execution ended");
                if let Err(e) = engine.stop_task(&scope, Some(&record.cluster), arn, reason) {
                    tracing::warn!("stopping {arn} of an ended execution: {e}");
                }
            }
        })
    }
}

/// `.sync`: polls until every task is STOPPED, then answers with the task's description
/// (an array for several tasks) — a `States.TaskFailed` carrying it when an essential
/// container did not exit 0 (or never ran).
async fn wait_stopped(
    engine: &Arc<EcsEngine>,
    scope: &Scope,
    run: &EcsRunTask,
    record: &RunRecord,
) -> Result<Value, TaskFailure> {
    let tasks = loop {
        let (tasks, missing) = engine
            .describe_tasks(scope, Some(&record.cluster), &record.task_arns)
            .map_err(|e| task_failure("States.TaskFailed", e.to_string()))?;
        if let Some(m) = missing.first() {
            let what = m.arn.clone().unwrap_or_default();
            return Err(task_failure("States.TaskFailed", format!("task {what} is {}", m.reason)));
        }
        if tasks.iter().all(Task::is_stopped) {
            break tasks;
        }
        tokio::time::sleep(POLL).await;
    };
    let described = sfn_describe_tasks(engine, &run.account, &run.region, &record.cluster, &record.task_arns)
        .await
        .map_err(api_failure)?;
    let output = match <[Value; 1]>::try_from(described) {
        Ok([one]) => one,
        Err(many) => Value::Array(many),
    };
    if tasks.iter().all(|t| succeeded(&t.containers)) {
        Ok(output)
    } else {
        Err(task_failure("States.TaskFailed", output.to_string()))
    }
}

/// Every essential container of a task ran and exited 0.
fn succeeded(containers: &[ContainerState]) -> bool {
    let essential: Vec<_> = containers.iter().filter(|c| c.essential).collect();
    !essential.is_empty() && essential.iter().all(|c| c.exit_code == Some(0))
}

/// An EventBridge ECS target: RunTask on its cluster, started by `events-rule/<rule>`.
pub async fn run_for_rule(
    handle: &EcsHandle,
    account: &str,
    region: &str,
    launch: nimbus_eventbridge::EcsLaunch,
) -> Result<(), String> {
    let engine = handle.engine().await.ok_or("the ECS engine is not available")?;
    let arns = events_run_task(
        &engine,
        account,
        region,
        &launch.cluster_arn,
        &launch.rule_name,
        &launch.parameters,
        launch.overrides.as_deref(),
    )
    .await?;
    tracing::debug!("rule {} started {arns:?}", launch.rule_name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(essential: bool, exit_code: Option<i32>) -> ContainerState {
        ContainerState {
            name: "c".into(),
            arn: "a".into(),
            image: "i".into(),
            image_digest: None,
            runtime_id: None,
            last_status: "STOPPED".into(),
            exit_code,
            reason: None,
            network_bindings: vec![],
            health_status: None,
            cpu: 0,
            memory: None,
            memory_reservation: None,
            essential,
            pid: None,
        }
    }

    #[test]
    fn run_records_round_trip() {
        let r = RunRecord {
            cluster: "arn:aws:ecs:r:a:cluster/c".into(),
            task_arns: vec!["t1".into(), "t2".into()],
        };
        let back = RunRecord::decode(&r.encode()).unwrap();
        assert_eq!((back.cluster, back.task_arns), (r.cluster, r.task_arns));
        assert!(RunRecord::decode(b"{}").is_none());
    }

    #[test]
    fn success_means_every_essential_container_exited_zero() {
        assert!(succeeded(&[container(true, Some(0)), container(false, Some(1))]));
        assert!(!succeeded(&[container(true, Some(0)), container(true, Some(3))]));
        assert!(!succeeded(&[container(true, None)]), "never ran");
        assert!(!succeeded(&[]));
    }
}
