//! Profiling aid: runs a 100-state Pass/Choice machine in a loop (`cargo run --release
//! -p nimbus-workflows --example pass_choice [seconds]`) and prints transitions/s.
use nimbus_workflows::{Execution, ExecutionContext, StateMachine};
use serde_json::json;
use std::time::{Duration, Instant};

fn main() {
    let secs: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut states = serde_json::Map::new();
    for i in 0..100 {
        let next = format!("S{}", i + 1);
        let state = match i {
            99 => json!({"Type": "Succeed"}),
            _ if i % 2 == 0 => {
                json!({"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}, "Next": next})
            }
            _ => {
                json!({"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThanEquals": 0, "Next": next}], "Default": "Bad"})
            }
        };
        states.insert(format!("S{i}"), state);
    }
    states.insert("Bad".into(), json!({"Type": "Fail"}));
    let machine =
        StateMachine::parse(&json!({"StartAt": "S0", "States": states}).to_string()).expect("valid");
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let context = ExecutionContext {
            execution_arn: "arn:aws:states:us-east-1:1:execution:m:e".into(),
            execution_name: "e".into(),
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:m".into(),
            state_machine_name: "m".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
            start_time: chrono::Utc::now(),
            seed: runs,
        };
        let mut execution = Execution::new(&machine, json!({"n": 0}), context);
        execution.start(&machine).expect("starts");
        runs += 1;
    }
    println!("{:.0} transitions/s", runs as f64 * 100.0 / start.elapsed().as_secs_f64());
}
