//! The engine through its public API, with a fake Lambda.
use nimbus_stepfunctions::*;
use nimbus_store::SqliteStore;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Counts invocations per function; `fail-*` functions raise, others echo with a mark.
#[derive(Default)]
struct FakeLambda {
    calls: parking_lot::Mutex<HashMap<String, usize>>,
}

impl TaskInvoker for FakeLambda {
    fn invoke_lambda(&self, inv: LambdaInvocation) -> BoxFuture<'static, Result<LambdaOutcome, TaskFailure>> {
        let name = inv.function.rsplit(':').next().unwrap_or_default().to_string();
        *self.calls.lock().entry(name.clone()).or_default() += 1;
        Box::pin(async move {
            if name == "missing" {
                return Err(TaskFailure {
                    error: "Lambda.ResourceNotFoundException".into(),
                    cause: "gone".into(),
                });
            }
            if name == "slow" {
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            let event: Value = serde_json::from_slice(&inv.payload).unwrap_or(Value::Null);
            let (payload, function_error) = if name.starts_with("fail") {
                (json!({"errorType": "ValueError", "errorMessage": "bad"}), Some("Unhandled".to_string()))
            } else {
                (json!({"fn": name, "event": event}), None)
            };
            Ok(LambdaOutcome {
                status: 200,
                payload: payload.to_string().into_bytes().into(),
                function_error,
                executed_version: "$LATEST".into(),
                request_id: "req-1".into(),
            })
        })
    }
}

fn machine(engine: &StepFunctionsEngine, name: &str, definition: Value, express: bool) -> String {
    engine
        .create_state_machine(CreateStateMachine {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            name: name.into(),
            definition: definition.to_string(),
            role_arn: "arn:aws:iam::123456789012:role/sfn".into(),
            machine_type: if express { StateMachineType::Express } else { StateMachineType::Standard },
            logging: None,
            tracing_enabled: false,
            tags: vec![],
        })
        .unwrap()
        .arn
}

async fn wait_done(engine: &StepFunctionsEngine, arn: &str) -> ExecutionInfo {
    for _ in 0..500 {
        let info = engine.describe_execution(arn).unwrap();
        if info.status != Status::Running {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("execution {arn} did not finish");
}

fn open(dir: &std::path::Path, lambda: Arc<FakeLambda>) -> Arc<StepFunctionsEngine> {
    let store = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
    StepFunctionsEngine::open(store, lambda).unwrap()
}

#[tokio::test]
async fn tasks_retry_catch_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let lambda = Arc::new(FakeLambda::default());
    let engine = open(dir.path(), lambda.clone());
    let def = json!({
        "StartAt": "Call",
        "States": {
            "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                     "Parameters": {"FunctionName": "hello", "Payload.$": "$"},
                     "ResultSelector": {"p.$": "$.Payload", "code.$": "$.StatusCode"}, "ResultPath": "$.r",
                     "Next": "Bare"},
            "Bare": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:fail-x",
                     "Retry": [{"ErrorEquals": ["ValueError"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                     "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Done"}],
                     "End": true},
            "Done": {"Type": "Pass", "End": true}
        }
    });
    let arn = machine(&engine, "flow", def, false);
    let (exec, _) = engine
        .start_execution(StartExecution {
            state_machine_arn: arn,
            name: Some("e1".into()),
            input: Some(r#"{"a":1}"#.into()),
        })
        .unwrap();
    let info = wait_done(&engine, &exec).await;
    assert_eq!(info.status, Status::Succeeded, "{info:?}");
    let out: Value = serde_json::from_str(info.output.as_deref().unwrap()).unwrap();
    assert_eq!(out["r"], json!({"p": {"fn": "hello", "event": {"a": 1}}, "code": 200}));
    assert_eq!(out["err"]["Error"], "ValueError");
    assert_eq!(lambda.calls.lock()["fail-x"], 2, "one try and one retry");
    let history =
        engine.execution_history(HistoryQuery { execution_arn: exec, ..Default::default() }).unwrap();
    let types: Vec<&str> = history.items.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types[0], "ExecutionStarted");
    assert_eq!(*types.last().unwrap(), "ExecutionSucceeded");
    assert!(types.contains(&"TaskScheduled") && types.contains(&"LambdaFunctionFailed"), "{types:?}");
    let ids: Vec<u64> = history.items.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn errors_and_express() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), Arc::new(FakeLambda::default()));
    let bad = engine.create_state_machine(CreateStateMachine {
        account: "1".into(),
        region: "us-east-1".into(),
        name: "bad".into(),
        definition: r#"{"StartAt":"Nope","States":{}}"#.into(),
        role_arn: "arn:aws:iam::1:role/r".into(),
        machine_type: StateMachineType::Standard,
        logging: None,
        tracing_enabled: false,
        tags: vec![],
    });
    assert!(matches!(bad, Err(Error::InvalidDefinition(_))), "{bad:?}");
    let pass = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 7, "End": true}}});
    let arn = machine(&engine, "express", pass.clone(), true);
    let r = engine
        .start_sync_execution(StartExecution { state_machine_arn: arn.clone(), name: None, input: None })
        .await
        .unwrap();
    assert_eq!(r.execution.output.as_deref(), Some("7"));
    assert!(matches!(
        engine.list_executions(&arn, None, None, None),
        Err(Error::StateMachineTypeNotSupported(_))
    ));
    let std_arn = machine(&engine, "std", pass, false);
    let again = engine.create_state_machine(CreateStateMachine {
        account: "123456789012".into(),
        region: "us-east-1".into(),
        name: "std".into(),
        definition: r#"{"StartAt":"P","States":{"P":{"Type":"Succeed"}}}"#.into(),
        role_arn: "arn:aws:iam::123456789012:role/sfn".into(),
        machine_type: StateMachineType::Standard,
        logging: None,
        tracing_enabled: false,
        tags: vec![],
    });
    assert!(matches!(again, Err(Error::StateMachineAlreadyExists(_))));
    let start = |name: &str, input: &str| {
        engine.start_execution(StartExecution {
            state_machine_arn: std_arn.clone(),
            name: Some(name.into()),
            input: Some(input.into()),
        })
    };
    assert!(matches!(start("x y", "{}"), Err(Error::InvalidName(_))));
    assert!(matches!(start("ok", "{not json"), Err(Error::InvalidExecutionInput(_))));
    start("ok", "{}").unwrap();
    assert!(matches!(start("ok", "{}"), Err(Error::ExecutionAlreadyExists(_))), "closed: not idempotent");
    assert!(matches!(
        engine.describe_execution("arn:aws:states:us-east-1:1:execution:std:none"),
        Err(Error::ExecutionDoesNotExist(_))
    ));
}

/// A crash (the runtime dropped mid-Wait) and a reopen: the first task is not re-run.
#[test]
fn resumes_after_a_crash_without_rerunning_completed_states() {
    let dir = tempfile::tempdir().unwrap();
    let lambda = Arc::new(FakeLambda::default());
    let def = json!({
        "StartAt": "First",
        "States": {
            "First": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:first", "Next": "Nap"},
            "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Second"},
            "Second": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:second", "End": true}
        }
    });
    let exec = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let exec = rt.block_on(async {
            let engine = open(dir.path(), lambda.clone());
            let arn = machine(&engine, "durable", def, false);
            let (exec, _) = engine
                .start_execution(StartExecution {
                    state_machine_arn: arn,
                    name: Some("d1".into()),
                    input: None,
                })
                .unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            exec
        });
        drop(rt); // the "kill -9": every task of the engine vanishes mid-Wait
        exec
    };
    assert_eq!(lambda.calls.lock().get("first"), Some(&1));
    assert_eq!(lambda.calls.lock().get("second"), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = open(dir.path(), lambda.clone());
        let info = wait_done(&engine, &exec).await;
        assert_eq!(info.status, Status::Succeeded, "{info:?}");
        let history =
            engine.execution_history(HistoryQuery { execution_arn: exec, ..Default::default() }).unwrap();
        let waits = history.items.iter().filter(|e| e.event_type == "WaitStateEntered").count();
        assert_eq!(waits, 1, "the Wait was entered once and resumed");
    });
    assert_eq!(lambda.calls.lock().get("first"), Some(&1), "completed task not re-run");
    assert_eq!(lambda.calls.lock().get("second"), Some(&1));
}

#[tokio::test]
async fn nested_sync_stop_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), Arc::new(FakeLambda::default()));
    let child = machine(
        &engine,
        "child",
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"x": 1}, "End": true}}}),
        false,
    );
    let parent = machine(
        &engine,
        "parent",
        json!({"StartAt": "Run", "States": {"Run": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
            "Parameters": {"StateMachineArn": child}, "OutputPath": "$.Output", "End": true}}}),
        false,
    );
    let (exec, _) = engine
        .start_execution(StartExecution { state_machine_arn: parent, name: None, input: None })
        .unwrap();
    let info = wait_done(&engine, &exec).await;
    assert_eq!(info.output.as_deref(), Some(r#"{"x":1}"#), "{info:?}");

    // Stopping a parent stops its `.sync` child.
    let slow_child = machine(
        &engine,
        "slow-child",
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 300, "End": true}}}),
        false,
    );
    let slow_parent = machine(
        &engine,
        "slow-parent",
        json!({"StartAt": "Run", "States": {"Run": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync",
            "Parameters": {"StateMachineArn": slow_child}, "End": true}}}),
        false,
    );
    let (exec, _) = engine
        .start_execution(StartExecution { state_machine_arn: slow_parent, name: None, input: None })
        .unwrap();
    let child_exec = loop {
        if let Some(c) = engine.list_executions(&slow_child, None, None, None).unwrap().items.pop() {
            break c.arn;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    engine.stop_execution(&exec, None, None).await.unwrap();
    let child = wait_done(&engine, &child_exec).await;
    assert_eq!((child.status, child.error.as_deref()), (Status::Aborted, Some("States.Aborted")));

    let waiting = machine(
        &engine,
        "waiting",
        json!({"StartAt": "W", "States": {"W": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "cb", "Payload": {"token.$": "$$.Task.Token"}}, "End": true}}}),
        false,
    );
    let (exec, _) = engine
        .start_execution(StartExecution { state_machine_arn: waiting.clone(), name: None, input: None })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(engine.send_task_success("nope", "{}"), Err(Error::TaskDoesNotExist(_))));
    let stop = engine.stop_execution(&exec, Some("Halt".into()), Some("by test".into())).await.unwrap();
    let info = engine.describe_execution(&exec).unwrap();
    assert_eq!((info.status, info.stop_date), (Status::Aborted, Some(stop)));
    assert_eq!(info.error.as_deref(), Some("Halt"));
}

/// Scaling probe (not a CI test): `cargo test --release -p nimbus-stepfunctions --test engine map_scaling -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn map_scaling() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), Arc::new(FakeLambda::default()));
    let def = json!({"StartAt": "Each", "States": {"Each": {
        "Type": "Map", "MaxConcurrency": 100, "ItemsPath": "$.items", "ResultPath": null,
        "ItemProcessor": {"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:slow",
            "ResultPath": null, "End": true}}}, "End": true}}});
    for (kind, express) in [("express", true), ("standard", false)] {
        let arn = machine(&engine, kind, def.clone(), express);
        for n in [10000usize] {
            let input = json!({"items": (0..n).collect::<Vec<_>>()}).to_string();
            let t = std::time::Instant::now();
            if express {
                engine
                    .start_sync_execution(StartExecution {
                        state_machine_arn: arn.clone(),
                        name: None,
                        input: Some(input),
                    })
                    .await
                    .unwrap();
            } else {
                let (ex, _) = engine
                    .start_execution(StartExecution {
                        state_machine_arn: arn.clone(),
                        name: None,
                        input: Some(input),
                    })
                    .unwrap();
                while engine.describe_execution(&ex).unwrap().status == Status::Running {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let secs = t.elapsed().as_secs_f64();
            println!("{kind} n={n}: {secs:.3}s, {:.0} items/s", n as f64 / secs);
        }
    }
}

#[tokio::test]
async fn task_and_execution_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), Arc::new(FakeLambda::default()));
    let run = |def: Value, name: &'static str| {
        let engine = engine.clone();
        async move {
            let arn = machine(&engine, name, def, false);
            let (exec, _) = engine
                .start_execution(StartExecution { state_machine_arn: arn, name: None, input: None })
                .unwrap();
            wait_done(&engine, &exec).await
        }
    };
    let token_task = |extra: Value| {
        let mut state = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "cb", "Payload": {"t.$": "$$.Task.Token"}}, "End": true});
        state.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"StartAt": "T", "States": {"T": state}})
    };
    let info = run(token_task(json!({"TimeoutSeconds": 1})), "token-timeout").await;
    assert_eq!((info.status, info.error.as_deref()), (Status::Failed, Some("States.Timeout")));
    let info = run(token_task(json!({"TimeoutSeconds": 30, "HeartbeatSeconds": 1})), "heartbeat").await;
    assert_eq!((info.status, info.error.as_deref()), (Status::Failed, Some("States.HeartbeatTimeout")));
    let slow_lambda = json!({"StartAt": "T", "States": {"T": {"Type": "Task",
        "Resource": "arn:aws:lambda:us-east-1:123456789012:function:slow", "TimeoutSeconds": 0.5, "End": true}}});
    // TimeoutSeconds must be a positive integer: refused at creation.
    assert!(matches!(
        engine.create_state_machine(CreateStateMachine {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            name: "frac".into(),
            definition: slow_lambda.to_string(),
            role_arn: "arn:aws:iam::123456789012:role/sfn".into(),
            machine_type: StateMachineType::Standard,
            logging: None,
            tracing_enabled: false,
            tags: vec![],
        }),
        Err(Error::InvalidDefinition(_))
    ));
    let whole = json!({"TimeoutSeconds": 1, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": true}}});
    let info = run(whole, "machine-timeout").await;
    assert_eq!((info.status, info.error.as_deref()), (Status::TimedOut, Some("States.Timeout")));
}
