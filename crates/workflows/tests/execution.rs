//! Interpreter tests driven by a scripted engine: InvokeTask actions are answered by a
//! closure, Wait actions by moving a fake clock.

use chrono::{DateTime, Duration, TimeZone, Utc};
use nimbus_workflows::execution::error_matches;
use nimbus_workflows::{
    Action, Event, Execution, ExecutionContext, ExecutionError, ExecutionStatus, HistoryEvent, StateMachine,
};
use serde_json::{Value, json};
use std::collections::VecDeque;

type Reply = Result<Value, (&'static str, &'static str)>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).single().unwrap()
}

fn context(seed: u64) -> ExecutionContext {
    ExecutionContext {
        execution_arn: "arn:aws:states:us-east-1:123456789012:execution:sm:run-1".into(),
        execution_name: "run-1".into(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:sm".into(),
        state_machine_name: "sm".into(),
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        start_time: t0(),
        seed,
    }
}

/// A scripted engine.
struct Harness {
    machine: StateMachine,
    exec: Execution,
    now: DateTime<Utc>,
    history: Vec<HistoryEvent>,
    /// Every InvokeTask seen, in order: (state, resource, input, attempt).
    invoked: Vec<(String, String, Value, u64)>,
    /// Every Wait seen, as seconds from the moment it was requested.
    waits: Vec<f64>,
    queue: VecDeque<Action>,
}

impl Harness {
    fn new(definition: Value, input: Value) -> Harness {
        let machine = StateMachine::parse(&definition.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let mut exec = Execution::new(&machine, input, context(42));
        let step = exec.start(&machine).unwrap();
        Harness {
            machine,
            exec,
            now: t0(),
            history: step.history,
            invoked: Vec::new(),
            waits: Vec::new(),
            queue: step.actions.into(),
        }
    }

    fn feed(&mut self, event: Event) {
        let step = self.exec.advance(&self.machine, self.now, event).unwrap();
        self.history.extend(step.history);
        self.queue.extend(step.actions);
    }

    /// Answers actions until the execution ends (or `limit` actions), FIFO.
    fn run(&mut self, mut reply: impl FnMut(&str, &str, &Value, u64) -> Reply) -> &mut Self {
        let mut budget = 10_000;
        while let Some(action) = self.queue.pop_front() {
            if self.exec.is_finished() {
                // Actions of cancelled siblings may still be queued; a real engine drops them.
                break;
            }
            budget -= 1;
            assert!(budget > 0, "runaway execution");
            match action {
                Action::InvokeTask { task_id, state, resource, input, attempt, .. } => {
                    self.invoked.push((state.clone(), resource.clone(), input.clone(), attempt));
                    self.feed(Event::TaskStarted { task_id });
                    match reply(&state, &resource, &input, attempt) {
                        Ok(output) => self.feed(Event::TaskSucceeded { task_id, output }),
                        Err(("TIMEOUT", _)) => self.feed(Event::TaskTimedOut { task_id, heartbeat: false }),
                        Err((error, cause)) => {
                            self.feed(Event::TaskFailed { task_id, error: error.into(), cause: cause.into() })
                        }
                    }
                }
                Action::Wait { timer_id, until } => {
                    self.waits.push((until - self.now).num_milliseconds() as f64 / 1000.0);
                    if until > self.now {
                        self.now = until;
                    }
                    self.feed(Event::TimerFired { timer_id });
                }
                Action::Succeed { .. } | Action::Fail { .. } => {}
            }
        }
        self
    }

    fn output(&self) -> Value {
        assert_eq!(self.exec.status(), ExecutionStatus::Succeeded, "error: {:?}", self.exec.error());
        self.exec.output().cloned().unwrap()
    }

    fn failure(&self) -> (String, String) {
        assert_eq!(self.exec.status(), ExecutionStatus::Failed, "output: {:?}", self.exec.output());
        let (e, c) = self.exec.error().unwrap();
        (e.to_string(), c.to_string())
    }

    fn types(&self) -> Vec<&str> {
        self.history.iter().map(|e| e.event_type.as_str()).collect()
    }
}

fn echo(_: &str, _: &str, input: &Value, _: u64) -> Reply {
    Ok(input.clone())
}

#[test]
fn hello_world_and_history() {
    let mut h = Harness::new(
        json!({"StartAt": "Hello", "States": {"Hello": {"Type": "Pass", "Result": "Hello World!", "End": true}}}),
        json!({}),
    );
    h.run(echo);
    assert_eq!(h.output(), json!("Hello World!"));
    assert_eq!(h.types(), ["ExecutionStarted", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]);
    let ids: Vec<(u64, u64)> = h.history.iter().map(|e| (e.id, e.previous_event_id)).collect();
    assert_eq!(ids, [(1, 0), (2, 1), (3, 2), (4, 3)]);
    let aws = h.history[1].to_aws_json();
    assert_eq!(aws["type"], "PassStateEntered");
    assert_eq!(aws["stateEnteredEventDetails"]["name"], "Hello");
    assert_eq!(aws["stateEnteredEventDetails"]["input"], "{}");
    assert_eq!(aws["timestamp"], "2024-01-02T03:04:05.000Z");
}

#[test]
fn result_path_examples_from_docs() {
    // "ResultPath" page: the input is {"comment": "This is a test of the input and output of a Task state.", "details": "Default example", "who": "AWS Step Functions"}.
    let input = json!({"comment": "This is a test of the input and output of a Task state.", "details": "Default example", "who": "AWS Step Functions"});
    let lambda = |_: &str, _: &str, input: &Value, _: u64| -> Reply {
        Ok(json!(format!("Hello, {}!", input["who"].as_str().unwrap())))
    };
    let run = |result_path: Value| {
        let mut state = json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:HelloFunction", "End": true});
        state["ResultPath"] = result_path;
        let mut h = Harness::new(json!({"StartAt": "T", "States": {"T": state}}), input.clone());
        h.run(lambda);
        h.output()
    };
    assert_eq!(run(json!("$")), json!("Hello, AWS Step Functions!"));
    assert_eq!(run(Value::Null), input);
    let mut with_taskresult = input.clone();
    with_taskresult["taskresult"] = json!("Hello, AWS Step Functions!");
    assert_eq!(run(json!("$.taskresult")), with_taskresult);
    let mut nested = input.clone();
    nested["strings"] = json!({"lambdaresult": "Hello, AWS Step Functions!"});
    assert_eq!(run(json!("$.strings.lambdaresult")), nested);
}

#[test]
fn input_parameters_result_selector_output() {
    let def = json!({
        "StartAt": "T",
        "States": {"T": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "InputPath": "$.library",
            "Parameters": {"FunctionName": "f", "Payload": {"movies.$": "$.movies", "first.$": "$.movies[0]", "ctx.$": "$$.Execution.Name", "n.$": "States.ArrayLength($.movies)"}},
            "ResultSelector": {"body.$": "$.Payload", "code.$": "$.StatusCode"},
            "ResultPath": "$.lib.result",
            "OutputPath": "$.lib",
            "End": true
        }}
    });
    let mut h = Harness::new(def, json!({"library": {"movies": ["a", "b"]}, "lib": {"keep": 1}}));
    h.run(|_, resource, input, _| {
        assert_eq!(resource, "arn:aws:states:::lambda:invoke");
        assert_eq!(input, &json!({"FunctionName": "f", "Payload": {"movies": ["a", "b"], "first": "a", "ctx": "run-1", "n": 2}}));
        Ok(json!({"Payload": {"ok": true}, "StatusCode": 200, "ExecutedVersion": "$LATEST"}))
    });
    assert_eq!(h.output(), json!({"keep": 1, "result": {"body": {"ok": true}, "code": 200}}));
    assert!(h.types().contains(&"TaskScheduled"));
    let scheduled = h.history.iter().find(|e| e.event_type == "TaskScheduled").unwrap();
    assert_eq!(scheduled.details["resourceType"], "lambda");
    assert_eq!(scheduled.details["resource"], "invoke");
}

#[test]
fn lambda_arn_uses_lambda_function_events() {
    let mut h = Harness::new(
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:f", "TimeoutSeconds": 30, "End": true}}}),
        json!({"x": 1}),
    );
    h.run(echo);
    assert_eq!(
        h.types(),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(h.history[2].details["timeoutInSeconds"], 30);
}

#[test]
fn null_input_and_output_paths() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "InputPath": null, "ResultPath": "$.r", "Result": 1, "Next": "B"},
        "B": {"Type": "Pass", "OutputPath": null, "End": true}
    }});
    let mut h = Harness::new(def, json!({"big": true}));
    h.run(echo);
    assert_eq!(h.output(), json!({}));
}

fn choice_machine(rule: Value) -> Value {
    let mut rule = rule;
    rule["Next"] = json!("Yes");
    json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [rule], "Default": "No"},
        "Yes": {"Type": "Pass", "Result": "yes", "End": true},
        "No": {"Type": "Pass", "Result": "no", "End": true}
    }})
}

fn decide(rule: Value, input: Value) -> bool {
    let mut h = Harness::new(choice_machine(rule), input);
    h.run(echo);
    h.output() == json!("yes")
}

#[test]
fn choice_operators() {
    let input = json!({
        "s": "abc", "n": 5, "f": 2.5, "b": true, "t": "2024-01-01T00:00:00Z", "t2": "2024-06-01T00:00:00Z",
        "null": null, "o": {"k": 1}, "other": "abd", "five": 5, "file": "log-2024.txt"
    });
    let cases = [
        (json!({"Variable": "$.s", "StringEquals": "abc"}), true),
        (json!({"Variable": "$.s", "StringEquals": "x"}), false),
        (json!({"Variable": "$.s", "StringLessThan": "abd"}), true),
        (json!({"Variable": "$.s", "StringGreaterThan": "abd"}), false),
        (json!({"Variable": "$.s", "StringLessThanEquals": "abc"}), true),
        (json!({"Variable": "$.s", "StringGreaterThanEquals": "abc"}), true),
        (json!({"Variable": "$.s", "StringEqualsPath": "$.other"}), false),
        (json!({"Variable": "$.s", "StringLessThanPath": "$.other"}), true),
        (json!({"Variable": "$.file", "StringMatches": "log-*.txt"}), true),
        (json!({"Variable": "$.file", "StringMatches": "log-\\*.txt"}), false),
        (json!({"Variable": "$.n", "NumericEquals": 5}), true),
        (json!({"Variable": "$.n", "NumericEquals": 5.0}), true),
        (json!({"Variable": "$.n", "NumericLessThan": 6}), true),
        (json!({"Variable": "$.n", "NumericGreaterThan": 6}), false),
        (json!({"Variable": "$.f", "NumericLessThanEquals": 2.5}), true),
        (json!({"Variable": "$.f", "NumericGreaterThanEquals": 3}), false),
        (json!({"Variable": "$.n", "NumericEqualsPath": "$.five"}), true),
        (json!({"Variable": "$.f", "NumericLessThanPath": "$.five"}), true),
        (json!({"Variable": "$.s", "NumericEquals": 5}), false),
        (json!({"Variable": "$.b", "BooleanEquals": true}), true),
        (json!({"Variable": "$.b", "BooleanEqualsPath": "$.b"}), true),
        (json!({"Variable": "$.t", "TimestampEquals": "2024-01-01T00:00:00Z"}), true),
        (json!({"Variable": "$.t", "TimestampLessThan": "2024-03-01T00:00:00Z"}), true),
        (json!({"Variable": "$.t", "TimestampGreaterThanEquals": "2024-03-01T00:00:00Z"}), false),
        (json!({"Variable": "$.t", "TimestampLessThanPath": "$.t2"}), true),
        (json!({"Variable": "$.t", "TimestampGreaterThanPath": "$.t2"}), false),
        (json!({"Variable": "$.null", "IsNull": true}), true),
        (json!({"Variable": "$.s", "IsNull": true}), false),
        (json!({"Variable": "$.missing", "IsPresent": false}), true),
        (json!({"Variable": "$.s", "IsPresent": true}), true),
        (json!({"Variable": "$.n", "IsNumeric": true}), true),
        (json!({"Variable": "$.s", "IsString": true}), true),
        (json!({"Variable": "$.b", "IsBoolean": true}), true),
        (json!({"Variable": "$.t", "IsTimestamp": true}), true),
        (json!({"Variable": "$.s", "IsTimestamp": true}), false),
        (
            json!({"And": [{"Variable": "$.n", "NumericGreaterThan": 1}, {"Variable": "$.s", "StringEquals": "abc"}]}),
            true,
        ),
        (
            json!({"And": [{"Variable": "$.n", "NumericGreaterThan": 1}, {"Variable": "$.s", "StringEquals": "x"}]}),
            false,
        ),
        (
            json!({"Or": [{"Variable": "$.n", "NumericGreaterThan": 10}, {"Variable": "$.s", "StringEquals": "abc"}]}),
            true,
        ),
        (json!({"Not": {"Variable": "$.s", "StringEquals": "abc"}}), false),
        (json!({"Not": {"Variable": "$.missing", "IsPresent": true}}), true),
        (json!({"Variable": "$$.Execution.Name", "StringEquals": "run-1"}), true),
    ];
    for (rule, expected) in cases {
        assert_eq!(decide(rule.clone(), input.clone()), expected, "{rule}");
    }
}

#[test]
fn choice_failures() {
    // A missing Variable is a runtime error, not "false".
    let mut h = Harness::new(choice_machine(json!({"Variable": "$.nope", "StringEquals": "x"})), json!({}));
    h.run(echo);
    let (e, c) = h.failure();
    assert_eq!(e, "States.Runtime");
    assert!(c.contains("Invalid path '$.nope'"), "{c}");
    // No match and no Default.
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": 1, "Next": "D"}]},
        "D": {"Type": "Succeed"}
    }});
    let mut h = Harness::new(def, json!({"x": 2}));
    h.run(echo);
    assert_eq!(h.failure().0, "States.NoChoiceMatched");
    assert_eq!(h.types(), ["ExecutionStarted", "ChoiceStateEntered", "ExecutionFailed"]);
}

#[test]
fn wait_variants() {
    let def = json!({"StartAt": "S", "States": {
        "S": {"Type": "Wait", "Seconds": 10, "Next": "SP"},
        "SP": {"Type": "Wait", "SecondsPath": "$.secs", "Next": "T"},
        "T": {"Type": "Wait", "Timestamp": "2024-01-02T03:10:00Z", "Next": "TP"},
        "TP": {"Type": "Wait", "TimestampPath": "$.when", "End": true}
    }});
    let mut h = Harness::new(def, json!({"secs": 5, "when": "2024-01-02T04:00:00Z"}));
    h.run(echo);
    assert_eq!(h.waits, [10.0, 5.0, 340.0, 3000.0]);
    assert_eq!(h.now, Utc.with_ymd_and_hms(2024, 1, 2, 4, 0, 0).single().unwrap());
    assert_eq!(h.output(), json!({"secs": 5, "when": "2024-01-02T04:00:00Z"}));
    assert!(h.types().contains(&"WaitStateExited"));
}

#[test]
fn fail_state_variants() {
    let def =
        json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "MyError", "Cause": "because"}}});
    let mut h = Harness::new(def, json!({}));
    h.run(echo);
    assert_eq!(h.failure(), ("MyError".into(), "because".into()));
    assert_eq!(h.types(), ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]);
    let def = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('code {}', $.code)"}}});
    let mut h = Harness::new(def, json!({"e": "Dyn", "code": 7}));
    h.run(echo);
    assert_eq!(h.failure(), ("Dyn".into(), "code 7".into()));
}

fn flaky(failures: u64, error: &'static str) -> impl FnMut(&str, &str, &Value, u64) -> Reply {
    move |_, _, input, attempt| if attempt < failures { Err((error, "boom")) } else { Ok(input.clone()) }
}

#[test]
fn retry_with_backoff_then_success() {
    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
        "Retry": [
            {"ErrorEquals": ["Other"], "MaxAttempts": 5},
            {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 3.0}
        ]
    }}});
    let mut h = Harness::new(def, json!({"v": 1}));
    h.run(flaky(3, "Lambda.Unknown"));
    assert_eq!(h.output(), json!({"v": 1}));
    assert_eq!(h.waits, [2.0, 6.0, 18.0]);
    assert_eq!(h.invoked.iter().map(|i| i.3).collect::<Vec<_>>(), [0, 1, 2, 3]);
    // One TaskStateEntered: retries do not re-enter the state.
    assert_eq!(h.types().iter().filter(|t| **t == "TaskStateEntered").count(), 1);
}

#[test]
fn retry_max_delay_and_jitter() {
    let def = |jitter: &str| {
        json!({"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 10, "MaxAttempts": 4, "BackoffRate": 4.0, "MaxDelaySeconds": 100, "JitterStrategy": jitter}]
        }}})
    };
    let mut h = Harness::new(def("NONE"), json!({}));
    h.run(flaky(4, "E"));
    assert_eq!(h.waits, [10.0, 40.0, 100.0, 100.0]);
    let mut h = Harness::new(def("FULL"), json!({}));
    h.run(flaky(4, "E"));
    for (w, cap) in h.waits.iter().zip([10.0, 40.0, 100.0, 100.0]) {
        assert!((0.0..=cap).contains(w), "{w} > {cap}");
    }
    assert_ne!(h.waits, [10.0, 40.0, 100.0, 100.0]);
    // Deterministic: the same seed gives the same jitter.
    let mut again = Harness::new(def("FULL"), json!({}));
    again.run(flaky(4, "E"));
    assert_eq!(h.waits, again.waits);
}

#[test]
fn retries_exhausted_then_catch() {
    let def = json!({"StartAt": "T", "States": {
        "T": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Done",
            "Retry": [{"ErrorEquals": ["Custom"], "IntervalSeconds": 1, "MaxAttempts": 2}],
            "Catch": [
                {"ErrorEquals": ["Nope"], "Next": "Done"},
                {"ErrorEquals": ["Custom"], "ResultPath": "$.error", "Next": "Handler"}
            ]
        },
        "Handler": {"Type": "Pass", "End": true},
        "Done": {"Type": "Succeed"}
    }});
    let mut h = Harness::new(def, json!({"keep": true}));
    h.run(flaky(99, "Custom"));
    assert_eq!(h.invoked.len(), 3);
    assert_eq!(h.output(), json!({"keep": true, "error": {"Error": "Custom", "Cause": "boom"}}));
}

#[test]
fn max_attempts_zero_never_retries() {
    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}]
    }}});
    let mut h = Harness::new(def, json!({}));
    h.run(flaky(1, "E"));
    assert_eq!(h.invoked.len(), 1);
    assert_eq!(h.failure(), ("E".into(), "boom".into()));
}

#[test]
fn reserved_error_matching() {
    assert!(error_matches("States.ALL", "Anything"));
    assert!(error_matches("States.ALL", "States.Timeout"));
    assert!(!error_matches("States.ALL", "States.Runtime"));
    assert!(error_matches("States.TaskFailed", "Lambda.ServiceException"));
    assert!(!error_matches("States.TaskFailed", "States.Timeout"));
    assert!(error_matches("States.Timeout", "States.Timeout"));
    assert!(!error_matches("Custom", "Other"));

    // A timeout is not caught by States.TaskFailed but is by States.Timeout.
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
              "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Failed"}, {"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}]},
        "Failed": {"Type": "Pass", "Result": "failed", "End": true},
        "TimedOut": {"Type": "Pass", "Result": "timedout", "End": true}
    }});
    let mut h = Harness::new(def, json!({}));
    h.run(|_, _, _, _| Err(("TIMEOUT", "")));
    assert_eq!(h.output(), json!("timedout"));
    assert!(h.types().contains(&"TaskTimedOut"));

    // A data-flow failure (States.Runtime) is not caught by States.ALL.
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true, "OutputPath": "$.missing",
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
        "Caught": {"Type": "Succeed"}
    }});
    let mut h = Harness::new(def, json!({}));
    h.run(echo);
    let (e, c) = h.failure();
    assert_eq!(e, "States.Runtime");
    assert!(
        c.starts_with("An error occurred while executing the state 'T' (entered at the event id #2)."),
        "{c}"
    );
}

#[test]
fn parameters_path_failure_message() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"foo.$": "$.foo"}, "End": true}}});
    let mut h = Harness::new(def, json!({}));
    h.run(echo);
    let (e, c) = h.failure();
    assert_eq!(e, "States.Runtime");
    assert!(
        c.contains(
            "The JSONPath '$.foo' specified for the field 'foo.$' could not be found in the input '{}'"
        ),
        "{c}"
    );
}

#[test]
fn parallel_branches_and_failure() {
    let def = json!({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "ResultPath": "$.results", "Next": "Done", "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"which": "a", "x.$": "$.x"}, "End": true}}},
            {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": "b", "Next": "B2"}, "B2": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true}}}
        ]},
        "Done": {"Type": "Succeed"}
    }});
    let mut h = Harness::new(def.clone(), json!({"x": 1}));
    // Both branches' tasks are outstanding together.
    assert_eq!(h.queue.len(), 2);
    h.run(echo);
    assert_eq!(h.output(), json!({"x": 1, "results": [{"which": "a", "x": 1}, "b"]}));
    let types = h.types();
    assert!(types.contains(&"ParallelStateStarted") && types.contains(&"ParallelStateSucceeded"));

    // One branch failing fails the Parallel state, which its Catch handles.
    let mut def = def;
    def["States"]["P"]["Catch"] =
        json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Done"}]);
    let mut h = Harness::new(def, json!({"x": 1}));
    h.run(
        |_, _, input, _| {
            if input == &json!("b") { Err(("BranchBoom", "b failed")) } else { Ok(input.clone()) }
        },
    );
    assert_eq!(h.output(), json!({"x": 1, "err": {"Error": "BranchBoom", "Cause": "b failed"}}));
    assert!(h.types().contains(&"ParallelStateFailed"));
}

#[test]
fn parallel_branch_fail_state_propagates() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/parallel-fail.json"))
        .unwrap();
    let mut h = Harness::new(serde_json::from_str(&text).unwrap(), json!({}));
    h.run(echo);
    assert_eq!(h.failure(), ("BranchError".into(), "branch B failed".into()));
}

#[test]
fn map_with_item_selector_and_concurrency() {
    let def = json!({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1, "ResultPath": "$.out", "End": true,
        "ItemSelector": {"index.$": "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value", "tag.$": "$.tag"},
        "ItemProcessor": {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true}}}
    }}});
    let mut h = Harness::new(def, json!({"items": ["a", "b", "c"], "tag": "t"}));
    // MaxConcurrency 1: one task at a time.
    assert_eq!(h.queue.len(), 1);
    let mut max_outstanding = 0;
    while let Some(action) = h.queue.pop_front() {
        max_outstanding = max_outstanding.max(h.exec.outstanding().len());
        if let Action::InvokeTask { task_id, input, .. } = action {
            h.feed(Event::TaskSucceeded {
                task_id,
                output: json!(format!("{}{}", input["value"].as_str().unwrap(), input["index"])),
            });
        }
    }
    assert_eq!(max_outstanding, 1);
    assert_eq!(h.output(), json!({"items": ["a", "b", "c"], "tag": "t", "out": ["a0", "b1", "c2"]}));
    let iterations = h.history.iter().filter(|e| e.event_type == "MapIterationSucceeded").count();
    assert_eq!(iterations, 3);
}

#[test]
fn map_failure_tolerance() {
    let def = |tolerance: Value| {
        let mut m = json!({
            "Type": "Map", "End": true,
            "ItemProcessor": {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true}}}
        });
        if let Value::Object(t) = tolerance {
            for (k, v) in t {
                m[k] = v;
            }
        }
        json!({"StartAt": "M", "States": {"M": m}})
    };
    let odd_fails = |_: &str, _: &str, input: &Value, _: u64| -> Reply {
        if input.as_i64().unwrap() % 2 == 1 { Err(("Odd", "odd item")) } else { Ok(input.clone()) }
    };
    // No tolerance: the first failure fails the Map with the item's error.
    let mut h = Harness::new(def(json!({})), json!([0, 1, 2, 3]));
    h.run(odd_fails);
    assert_eq!(h.failure().0, "Odd");
    // 50% tolerated: two of four fail, still succeeds; failed items carry their error.
    let mut h = Harness::new(def(json!({"ToleratedFailurePercentage": 50})), json!([0, 1, 2, 3]));
    h.run(odd_fails);
    assert_eq!(h.output()[0], json!(0));
    assert_eq!(h.output()[1], json!({"Error": "Odd", "Cause": "odd item"}));
    // Count 1 tolerated: the second failure exceeds it.
    let mut h = Harness::new(def(json!({"ToleratedFailureCount": 1})), json!([0, 1, 2, 3]));
    h.run(odd_fails);
    assert_eq!(h.failure().0, "States.ExceedToleratedFailureThreshold");
    // Empty input: an empty result.
    let mut h = Harness::new(def(json!({})), json!([]));
    h.run(odd_fails);
    assert_eq!(h.output(), json!([]));
}

#[test]
fn nested_map_in_parallel() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "Iterator": {"StartAt": "Double", "States": {
            "Double": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($.n, $.n)"}, "OutputPath": "$.v", "End": true}
        }}}}},
        {"StartAt": "X", "States": {"X": {"Type": "Pass", "Result": "x", "End": true}}}
    ]}}});
    let mut h = Harness::new(def, json!([{"n": 1}, {"n": 2}, {"n": 3}]));
    h.run(echo);
    assert_eq!(h.output(), json!([[2, 4, 6], "x"]));
}

#[test]
fn variables_assign_and_read() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": {"n": 41}, "Assign": {"count.$": "$.n", "label": "fixed"}, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"next.$": "States.MathAdd($count, 1)", "label.$": "$label"}, "End": true}
    }});
    let mut h = Harness::new(def, json!({}));
    h.run(echo);
    assert_eq!(h.output(), json!({"next": 42, "label": "fixed"}));
}

#[test]
fn wait_for_task_token_and_context() {
    let def = json!({"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": true,
        "Parameters": {"MessageBody": {"token.$": "$$.Task.Token", "state.$": "$$.State.Name", "sm.$": "$$.StateMachine.Name", "start.$": "$$.Execution.StartTime"}}
    }}});
    let machine = StateMachine::parse(&def.to_string()).unwrap();
    let mut exec = Execution::new(&machine, json!({}), context(1));
    let step = exec.start(&machine).unwrap();
    let Some(Action::InvokeTask { task_token: Some(token), input, .. }) = step.actions.first() else {
        panic!("expected a task: {:?}", step.actions)
    };
    assert_eq!(token.len(), 64);
    assert_eq!(input["MessageBody"]["token"], json!(token));
    assert_eq!(input["MessageBody"]["state"], "T");
    assert_eq!(input["MessageBody"]["sm"], "sm");
    assert_eq!(input["MessageBody"]["start"], "2024-01-02T03:04:05.000Z");
}

#[test]
fn intrinsics_are_deterministic_per_seed() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Parameters": {"id.$": "States.UUID()", "r.$": "States.MathRandom(1, 1000)"}, "End": true}}});
    let run = |seed| {
        let machine = StateMachine::parse(&def.to_string()).unwrap();
        let mut exec = Execution::new(&machine, json!({}), context(seed));
        exec.start(&machine).unwrap();
        exec.output().cloned().unwrap()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn persist_and_resume_without_rerunning() {
    let def = json!({"StartAt": "First", "States": {
        "First": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "ResultPath": "$.first", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 60, "Next": "Second"},
        "Second": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "ResultPath": "$.second", "End": true}
    }});
    let machine = StateMachine::parse(&def.to_string()).unwrap();
    let mut exec = Execution::new(&machine, json!({}), context(3));
    let step = exec.start(&machine).unwrap();
    let Some(Action::InvokeTask { task_id, .. }) = step.actions.first().cloned() else { panic!() };
    let step = exec.advance(&machine, t0(), Event::TaskSucceeded { task_id, output: json!(1) }).unwrap();
    let Some(Action::Wait { timer_id, until }) = step.actions.first().cloned() else { panic!() };

    // "Crash": persist, drop, restore with a freshly parsed machine.
    let saved = serde_json::to_string(&exec).unwrap();
    drop(exec);
    let machine = StateMachine::parse(&def.to_string()).unwrap();
    let mut exec: Execution = serde_json::from_str(&saved).unwrap();
    assert_eq!(exec.outstanding(), vec![Action::Wait { timer_id, until }]);

    // A duplicate answer for the completed task is ignored.
    let dup = exec.advance(&machine, until, Event::TaskSucceeded { task_id, output: json!(99) }).unwrap();
    assert!(dup.actions.is_empty() && dup.history.is_empty());

    let step = exec.advance(&machine, until, Event::TimerFired { timer_id }).unwrap();
    let Some(Action::InvokeTask { task_id: second, state, .. }) = step.actions.first().cloned() else {
        panic!()
    };
    assert_eq!(state, "Second");
    // Persist again mid-task and finish.
    let mut exec: Execution = serde_json::from_str(&serde_json::to_string(&exec).unwrap()).unwrap();
    assert!(
        matches!(exec.outstanding().as_slice(), [Action::InvokeTask { task_id, .. }] if *task_id == second)
    );
    let step =
        exec.advance(&machine, until, Event::TaskSucceeded { task_id: second, output: json!(2) }).unwrap();
    assert_eq!(step.actions, vec![Action::Succeed { output: json!({"first": 1, "second": 2}) }]);
    assert_eq!(exec.advance(&machine, until, Event::TimedOut), Err(ExecutionError::Finished));
}

#[test]
fn api_misuse() {
    let a = StateMachine::parse(r#"{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}"#).unwrap();
    let b = StateMachine::parse(r#"{"StartAt":"B","States":{"B":{"Type":"Succeed"}}}"#).unwrap();
    let mut exec = Execution::new(&a, json!({}), context(0));
    assert_eq!(exec.advance(&a, t0(), Event::TimedOut), Err(ExecutionError::NotStarted));
    assert_eq!(exec.start(&b), Err(ExecutionError::MachineMismatch));
    exec.start(&a).unwrap();
    assert_eq!(exec.start(&a), Err(ExecutionError::AlreadyStarted));
    assert_eq!(exec.output(), Some(&json!({})));
}

#[test]
fn stop_and_timeout() {
    let def = json!({"StartAt": "W", "TimeoutSeconds": 5, "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}});
    let machine = StateMachine::parse(&def.to_string()).unwrap();
    assert_eq!(machine.timeout_seconds, Some(5));
    let mut exec = Execution::new(&machine, json!({}), context(0));
    exec.start(&machine).unwrap();
    let step = exec.advance(&machine, t0() + Duration::seconds(5), Event::TimedOut).unwrap();
    assert_eq!(step.history[0].event_type, "ExecutionTimedOut");
    assert_eq!(exec.status(), ExecutionStatus::TimedOut);
    assert!(exec.outstanding().is_empty());

    let mut exec = Execution::new(&machine, json!({}), context(0));
    exec.start(&machine).unwrap();
    exec.advance(&machine, t0(), Event::Stop { error: Some("Cancelled".into()), cause: None }).unwrap();
    assert_eq!(exec.status(), ExecutionStatus::Aborted);
    assert_eq!(exec.error(), Some(("Cancelled", "")));
}

#[test]
fn hundred_state_pass_choice_machine() {
    // S0..S99: even states are Pass states adding to a counter; odd states are Choice
    // states that route on the counter's parity to the next state via one of two paths.
    let mut states = serde_json::Map::new();
    for i in 0..100 {
        let name = format!("S{i}");
        let next = if i == 99 { "Done".to_string() } else { format!("S{}", i + 1) };
        let state = if i % 2 == 0 {
            json!({"Type": "Pass", "Parameters": {"count.$": "States.MathAdd($.count, 1)", "trail.$": "States.Array($.trail, $.count)"}, "Next": next})
        } else {
            json!({"Type": "Choice", "Choices": [
                {"And": [{"Variable": "$.count", "IsNumeric": true}, {"Variable": "$.count", "NumericGreaterThanEquals": 0}], "Next": next}
            ], "Default": "Bad"})
        };
        states.insert(name, state);
    }
    states.insert("Done".into(), json!({"Type": "Pass", "OutputPath": "$.count", "End": true}));
    states.insert("Bad".into(), json!({"Type": "Fail", "Error": "Bad"}));
    let def = json!({"StartAt": "S0", "States": states});
    let mut h = Harness::new(def, json!({"count": 0, "trail": null}));
    h.run(echo);
    assert_eq!(h.output(), json!(50));
    assert_eq!(h.history.len(), 1 + 2 * 101 + 1);
    assert_eq!(h.history.last().map(|e| e.id), Some(204));
}

#[test]
fn persist_mid_parallel_and_map() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 2, "End": true, "ItemProcessor": {"StartAt": "W", "States": {
            "W": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true}
        }}}}},
        {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1}]}}}
    ]}}});
    let machine = StateMachine::parse(&def.to_string()).unwrap();
    let mut exec = Execution::new(&machine, json!([1, 2, 3]), context(9));
    let mut queue: VecDeque<Action> = exec.start(&machine).unwrap().actions.into();
    assert_eq!(queue.len(), 3, "two map iterations and the branch task");
    let mut now = t0();
    let mut failed_once = false;
    let mut rounds = 0;
    while let Some(action) = queue.pop_front() {
        rounds += 1;
        assert!(rounds < 100);
        // Persist and restore before every answer.
        exec = serde_json::from_str(&serde_json::to_string(&exec).unwrap()).unwrap();
        let event = match action {
            Action::InvokeTask { task_id, state, input, .. } => {
                if state == "T" && !failed_once {
                    failed_once = true;
                    Event::TaskFailed { task_id, error: "Flaky".into(), cause: "once".into() }
                } else {
                    let out = if state == "W" { json!(input.as_i64().unwrap() * 10) } else { json!("t") };
                    Event::TaskSucceeded { task_id, output: out }
                }
            }
            Action::Wait { timer_id, until } => {
                now = until;
                Event::TimerFired { timer_id }
            }
            Action::Succeed { .. } | Action::Fail { .. } => break,
        };
        queue.extend(exec.advance(&machine, now, event).unwrap().actions);
    }
    assert!(failed_once);
    assert_eq!(exec.output(), Some(&json!([[10, 20, 30], "t"])));
}
