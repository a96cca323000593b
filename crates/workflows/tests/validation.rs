//! Validation rules beyond the corpus: each definition must be refused with a diagnostic
//! containing the given text (or accepted).

use nimbus_workflows::StateMachine;
use serde_json::{Value, json};

fn machine(states: Value) -> String {
    json!({"StartAt": "A", "States": states}).to_string()
}

fn refused(definition: &str, expected: &str) {
    match StateMachine::parse(definition) {
        Ok(_) => panic!("accepted, expected {expected:?}: {definition}"),
        Err(e) => assert!(e.to_string().contains(expected), "expected {expected:?} in {e}"),
    }
}

fn accepted(definition: &str) {
    if let Err(e) = StateMachine::parse(definition) {
        panic!("refused: {e}\n{definition}");
    }
}

#[test]
fn json_level() {
    refused("{", "INVALID_JSON_DESCRIPTION");
    refused(
        r#"{"StartAt":"A","StartAt":"A","States":{}}"#,
        "INVALID_JSON_DESCRIPTION: Duplicate field 'StartAt' at /",
    );
    refused(
        r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true,"End":true}}}"#,
        "Duplicate field 'End' at /States/A",
    );
    refused("[]", "Expected value of type Object");
}

#[test]
fn top_level() {
    refused(r#"{"States":{"A":{"Type":"Succeed"}}}"#, "These fields are required: [StartAt] at /");
    refused(r#"{"StartAt":"A","States":{}}"#, "'States' must contain at least one state");
    refused(
        r#"{"StartAt":"A","States":{"A":{"Type":"Succeed"}},"Foo":1}"#,
        "Field 'Foo' is not supported at /",
    );
    refused(r#"{"StartAt":"A","TimeoutSeconds":0,"States":{"A":{"Type":"Succeed"}}}"#, "TimeoutSeconds");
    refused(r#"{"StartAt":"B","States":{"A":{"Type":"Succeed"}}}"#, "Missing 'Next' target: B at /StartAt");
    accepted(
        r#"{"StartAt":"A","Version":"1.0","TimeoutSeconds":60,"QueryLanguage":"JSONPath","States":{"A":{"Type":"Succeed"}}}"#,
    );
}

#[test]
fn state_fields() {
    refused(
        &machine(json!({"A": {"Type": "Nope", "End": true}})),
        "'Nope' is not a valid state Type at /States/A/Type",
    );
    refused(&machine(json!({"A": {"End": true}})), "These fields are required: [Type]");
    refused(
        &machine(json!({"A": {"Type": "Pass", "Retry": [], "End": true}})),
        "Field 'Retry' is not supported at /States/A",
    );
    refused(
        &machine(json!({"A": {"Type": "Wait", "Seconds": 1, "TimeoutSeconds": 5, "End": true}})),
        "Field 'TimeoutSeconds' is not supported",
    );
    refused(&machine(json!({"A": {"Type": "Succeed", "End": true}})), "Field 'End' is not supported");
    refused(&machine(json!({"A": {"Type": "Fail", "InputPath": "$"}})), "Field 'InputPath' is not supported");
    refused(&machine(json!({"A": {"Type": "Pass"}})), "These fields are required: [Next or End]");
    refused(&machine(json!({"A": {"Type": "Pass", "End": "yes"}})), "Expected value of type Boolean");
    refused(
        &machine(json!({"A": {"Type": "Pass", "Comment": 5, "End": true}})),
        "Expected value of type String but found Number at /States/A/Comment",
    );
    refused(
        &machine(json!({"A": {"Type": "Pass", "Result": 1, "QueryLanguage": "SQL", "End": true}})),
        "QueryLanguage",
    );
}

#[test]
fn paths_and_templates() {
    refused(
        &machine(json!({"A": {"Type": "Pass", "InputPath": "$.a[", "End": true}})),
        "'InputPath' must be a valid JSONPath",
    );
    refused(
        &machine(json!({"A": {"Type": "Pass", "ResultPath": "$.a[*]", "End": true}})),
        "'ResultPath' must be a valid ReferencePath",
    );
    refused(
        &machine(json!({"A": {"Type": "Pass", "ResultPath": "$$.Execution", "End": true}})),
        "ReferencePath into the state input",
    );
    refused(
        &machine(json!({"A": {"Type": "Pass", "Parameters": {"a.$": 1}, "End": true}})),
        "'a.$' must be a STRING",
    );
    refused(
        &machine(json!({"A": {"Type": "Pass", "Parameters": {"a.$": "States.Nope()"}, "End": true}})),
        "unknown intrinsic function",
    );
    refused(
        &machine(
            json!({"A": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "ResultSelector": [], "End": true}}),
        ),
        "Expected value of type Object",
    );
    accepted(&machine(
        json!({"A": {"Type": "Pass", "InputPath": "$..book[?(@.price < 10)].title", "OutputPath": "$[0]", "End": true}}),
    ));
    accepted(&machine(
        json!({"A": {"Type": "Pass", "Parameters": {"a.$": "$var.x", "b.$": "$$.Map.Item.Value", "c": {"d.$": "States.UUID()"}}, "End": true}}),
    ));
}

#[test]
fn task_rules() {
    let task = |extra: Value| {
        let mut t = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                t[k] = v;
            }
        }
        machine(json!({"A": t}))
    };
    refused(&machine(json!({"A": {"Type": "Task", "End": true}})), "These fields are required: [Resource]");
    refused(&task(json!({"Resource": "nope"})), "Value is not a valid resource ARN");
    refused(&task(json!({"TimeoutSeconds": 0})), "TimeoutSeconds");
    refused(
        &task(json!({"TimeoutSeconds": 10, "HeartbeatSeconds": 10})),
        "HeartbeatSeconds must be smaller than TimeoutSeconds",
    );
    refused(&task(json!({"TimeoutSecondsPath": "$.a[*]"})), "must be a valid ReferencePath");
    refused(&task(json!({"Retry": [{"ErrorEquals": []}]})), "must contain at least one error name");
    refused(
        &task(json!({"Retry": [{"ErrorEquals": ["States.ALL", "X"]}]})),
        "'States.ALL' must appear alone",
    );
    refused(
        &task(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]})),
        "'States.ALL' must be in the last Retrier",
    );
    refused(&task(json!({"Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]})), "BackoffRate");
    refused(&task(json!({"Retry": [{"ErrorEquals": ["X"], "IntervalSeconds": 0}]})), "IntervalSeconds");
    refused(&task(json!({"Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "HALF"}]})), "JitterStrategy");
    refused(&task(json!({"Retry": {"ErrorEquals": ["X"]}})), "Expected value of type Array");
    refused(&task(json!({"Catch": [{"ErrorEquals": ["X"]}]})), "These fields are required: [Next]");
    refused(&task(json!({"Catch": [{"ErrorEquals": ["X"], "Next": "A", "ResultPath": "x"}]})), "ResultPath");
    refused(
        &task(json!({"Catch": [{"ErrorEquals": ["X"], "Next": "Nowhere"}]})),
        "Missing 'Next' target: Nowhere at /States/A/Catch[0]/Next",
    );
    accepted(&task(json!({
        "TimeoutSeconds": 30, "HeartbeatSeconds": 10, "Credentials": {"RoleArn.$": "$.role"},
        "Retry": [{"ErrorEquals": ["X"], "IntervalSeconds": 3, "MaxAttempts": 0, "BackoffRate": 1.5, "MaxDelaySeconds": 10, "JitterStrategy": "FULL"}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "A", "ResultPath": null}]
    })));
}

#[test]
fn choice_rules() {
    let choice = |rule: Value| {
        machine(json!({"A": {"Type": "Choice", "Choices": [rule], "Default": "B"}, "B": {"Type": "Succeed"}}))
    };
    refused(
        &machine(json!({"A": {"Type": "Choice", "Choices": []}})),
        "must contain at least one choice rule",
    );
    refused(&choice(json!({"Variable": "$.a", "Next": "B"})), "exactly one comparison operator");
    refused(
        &choice(json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1, "Next": "B"})),
        "exactly one comparison operator",
    );
    refused(
        &choice(json!({"Variable": "$.a", "StringEquals": 1, "Next": "B"})),
        "'StringEquals' must be a String",
    );
    refused(
        &choice(json!({"Variable": "$.a", "NumericEquals": "1", "Next": "B"})),
        "'NumericEquals' must be a Number",
    );
    refused(
        &choice(json!({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "B"})),
        "valid timestamp",
    );
    refused(
        &choice(json!({"Variable": "$.a", "IsNull": "yes", "Next": "B"})),
        "Expected value of type Boolean",
    );
    refused(
        &choice(json!({"Variable": "$.a", "StringEqualsPath": "nope", "Next": "B"})),
        "'StringEqualsPath' must be a valid ReferencePath",
    );
    refused(
        &choice(json!({"Variable": "$.a[*]", "IsNull": true, "Next": "B"})),
        "'Variable' must be a valid ReferencePath",
    );
    refused(&choice(json!({"StringEquals": "x", "Next": "B"})), "These fields are required: [Variable]");
    refused(
        &choice(json!({"Not": {"Variable": "$.a", "IsNull": true, "Next": "B"}, "Next": "B"})),
        "Field 'Next' is not supported at /States/A/Choices[0]/Not",
    );
    refused(&choice(json!({"And": [], "Next": "B"})), "'And' must contain at least one choice rule");
    refused(
        &choice(json!({"Variable": "$.a", "StringFoo": "x", "Next": "B"})),
        "Field 'StringFoo' is not supported",
    );
    refused(&choice(json!({"Variable": "$.a", "IsNull": true})), "These fields are required: [Next]");
    refused(
        &choice(json!({"Variable": "$.a", "IsNull": true, "Next": "Z"})),
        "Missing 'Next' target: Z at /States/A/Choices[0]/Next",
    );
    accepted(&choice(json!({"Or": [
        {"Variable": "$.a", "StringMatches": "x*"},
        {"Not": {"Variable": "$$.Execution.Name", "StringEquals": "n"}},
        {"And": [{"Variable": "$v", "IsPresent": true}, {"Variable": "$.t", "TimestampLessThanEqualsPath": "$.u"}]}
    ], "Next": "B", "Assign": {"x": 1}})));
}

#[test]
fn wait_fail_parallel_map() {
    refused(
        &machine(json!({"A": {"Type": "Wait", "End": true}})),
        "Exactly one of these fields must be specified",
    );
    refused(
        &machine(json!({"A": {"Type": "Wait", "Timestamp": "2024-01-01", "End": true}})),
        "valid RFC 3339 timestamp",
    );
    refused(
        &machine(json!({"A": {"Type": "Wait", "Seconds": -1, "End": true}})),
        "Expected value of type Integer",
    );
    refused(
        &machine(json!({"A": {"Type": "Fail", "ErrorPath": "States.Nope()"}})),
        "valid intrinsic function call",
    );
    refused(
        &machine(json!({"A": {"Type": "Parallel", "Branches": [], "End": true}})),
        "'Branches' must contain at least one branch",
    );
    refused(
        &machine(
            json!({"A": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "A"}}}]}}),
        ),
        "Missing 'Next' target: A at /States/A/Branches[0]/States/X/Next",
    );
    let map = |extra: Value| {
        let mut m = json!({"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}});
        if let Value::Object(e) = extra {
            for (k, v) in e {
                m[k] = v;
            }
        }
        machine(json!({"A": m}))
    };
    refused(
        &map(json!({"Iterator": {"StartAt": "Y", "States": {"Y": {"Type": "Succeed"}}}})),
        "[ItemProcessor, Iterator]",
    );
    refused(&map(json!({"ItemSelector": {}, "Parameters": {}})), "[ItemSelector, Parameters]");
    refused(&map(json!({"ItemsPath": "items"})), "'ItemsPath' must be a valid ReferencePath");
    refused(&map(json!({"MaxConcurrency": -1})), "MaxConcurrency");
    refused(
        &map(
            json!({"ItemProcessor": {"ProcessorConfig": {"Mode": "FAST"}, "StartAt": "X", "States": {"X": {"Type": "Succeed"}}}}),
        ),
        "not a valid Mode",
    );
    refused(
        &map(json!({"ItemProcessor": {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}, "Bogus": 1}})),
        "Field 'Bogus' is not supported at /States/A/ItemProcessor",
    );
    accepted(&map(
        json!({"ItemsPath": "$.items", "MaxConcurrencyPath": "$.max", "ToleratedFailurePercentagePath": "$.p", "ItemSelector": {"v.$": "$$.Map.Item.Value"}}),
    ));
}

#[test]
fn graph_rules() {
    refused(
        &machine(json!({"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}})),
        "MISSING_END_STATE: Workflow has no terminal state",
    );
    // With no terminal state, AWS does not also report unreachable states.
    let err = StateMachine::parse(&machine(
        json!({"A": {"Type": "Pass", "Next": "A"}, "C": {"Type": "Pass", "Next": "C"}}),
    ))
    .unwrap_err();
    assert_eq!(err.diagnostics.len(), 1, "{err}");
    refused(
        &machine(json!({"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}})),
        "MISSING_TRANSITION_TARGET: State \"B\" is not reachable. at /States/B",
    );
    refused(
        &machine(
            json!({"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": true}, "Iter": {"Type": "Succeed"}}),
        ),
        "\"Iter\" is not reachable",
    );
    let long = "x".repeat(81);
    refused(
        &json!({"StartAt": long, "States": {long.clone(): {"Type": "Succeed"}}}).to_string(),
        "longer than 80 characters",
    );
    accepted(
        &json!({"StartAt": "x".repeat(80), "States": {"x".repeat(80): {"Type": "Succeed"}}}).to_string(),
    );
    // Catch targets make states reachable.
    accepted(&machine(json!({
        "A": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}]},
        "H": {"Type": "Fail"}
    })));
}
