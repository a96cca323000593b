"""Step Functions end to end: state machines and executions through boto3 and the AWS CLI,
Lambda tasks running real python functions, and executions that survive `kill -9`."""
import json
import time

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import create_function, make_zip, unique_name, wait_until

ROLE = "arn:aws:iam::000000000000:role/sfn"
ACCOUNT_REGION = "us-east-1:000000000000"

ADD = """
def handler(event, context):
    print("adding", event)
    return {"n": event["n"] + 1}
"""
FAIL = """
def handler(event, context):
    raise ValueError("no good: " + str(event.get("n")))
"""


def fn_arn(name):
    return f"arn:aws:lambda:{ACCOUNT_REGION}:function:{name}"


@pytest.fixture(scope="module")
def sfn(server):
    return server.client("stepfunctions")


@pytest.fixture(scope="module")
def sync_sfn(server):
    # StartSyncExecution has the `sync-` host prefix in the model: not with --endpoint-url.
    return server.client("stepfunctions", inject_host_prefix=False)


@pytest.fixture(scope="module")
def functions(server):
    add, fail = unique_name("sfn-add"), unique_name("sfn-fail")
    create_function(server.lam, add, make_zip({"lambda_function.py": ADD}))
    create_function(server.lam, fail, make_zip({"lambda_function.py": FAIL}))
    return {"add": add, "fail": fail}


def machine(sfn, definition, name=None, **kw):
    return sfn.create_state_machine(name=name or unique_name("sm"), definition=json.dumps(definition),
                                    roleArn=ROLE, **kw)["stateMachineArn"]


def finished(sfn, arn, timeout=60):
    def done():
        d = sfn.describe_execution(executionArn=arn)
        return d if d["status"] != "RUNNING" else None
    return wait_until(done, timeout, 0.1, what=f"execution {arn} to finish")


def history(sfn, arn, **kw):
    return sfn.get_paginator("get_execution_history").paginate(executionArn=arn, **kw) \
        .build_full_result()["events"]


def test_workflow_with_lambda_choice_parallel_map_retry_catch(sfn, functions):
    add, fail = functions["add"], functions["fail"]
    definition = {
        "StartAt": "Add",
        "States": {
            "Add": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": add, "Payload": {"n.$": "$.n"}},
                    "ResultSelector": {"n.$": "$.Payload.n", "status.$": "$.StatusCode"},
                    "ResultPath": "$.added", "Next": "Big?"},
            "Big?": {"Type": "Choice",
                     "Choices": [{"Variable": "$.added.n", "NumericGreaterThan": 100, "Next": "TooBig"}],
                     "Default": "Fan"},
            "TooBig": {"Type": "Fail", "Error": "Big", "Cause": "too big"},
            "Fan": {"Type": "Parallel", "ResultPath": "$.branches", "Next": "Each",
                    "Branches": [
                        {"StartAt": "B1", "States": {"B1": {
                            "Type": "Task", "Resource": fn_arn(add),
                            "Parameters": {"n.$": "$.added.n"}, "End": True}}},
                        {"StartAt": "B2", "States": {"B2": {"Type": "Pass", "Result": "second",
                                                            "End": True}}}]},
            "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ResultPath": "$.mapped",
                     "ItemSelector": {"n.$": "$$.Map.Item.Value"},
                     "ItemProcessor": {"StartAt": "Inc", "States": {"Inc": {
                         "Type": "Task", "Resource": fn_arn(add), "OutputPath": "$.n", "End": True}}},
                     "Next": "Risky"},
            "Risky": {"Type": "Task", "Resource": fn_arn(fail),
                      "Retry": [{"ErrorEquals": ["ValueError"], "MaxAttempts": 1, "IntervalSeconds": 1}],
                      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.caught", "Next": "Done"}],
                      "End": True},
            "Done": {"Type": "Succeed"},
        },
    }
    arn = machine(sfn, definition)
    ex = sfn.start_execution(stateMachineArn=arn, name="run-1",
                             input=json.dumps({"n": 1, "items": [10, 20, 30]}))["executionArn"]
    assert ex == arn.replace(":stateMachine:", ":execution:") + ":run-1"
    d = finished(sfn, ex)
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    assert out["added"] == {"n": 2, "status": 200}
    assert out["branches"] == [{"n": 3}, "second"]
    assert out["mapped"] == [11, 21, 31]
    assert out["caught"]["Error"] == "ValueError"
    assert json.loads(out["caught"]["Cause"])["errorMessage"] == "no good: 1"

    events = history(sfn, ex)
    types = [e["type"] for e in events]
    assert types[:2] == ["ExecutionStarted", "TaskStateEntered"]
    assert types[-1] == "ExecutionSucceeded"
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["previousEventId"] < e["id"] for e in events)
    for t in ("TaskScheduled", "TaskStarted", "TaskSucceeded", "TaskStateExited", "ChoiceStateEntered",
              "ParallelStateEntered", "MapStateEntered", "MapIterationStarted", "LambdaFunctionScheduled",
              "LambdaFunctionStarted", "LambdaFunctionSucceeded", "SucceedStateEntered"):
        assert t in types, t
    # One failure, one retry after 1 s, caught.
    assert types.count("LambdaFunctionFailed") == 2
    scheduled = next(e for e in events if e["type"] == "TaskScheduled")["taskScheduledEventDetails"]
    assert scheduled["resourceType"] == "lambda" and scheduled["resource"] == "invoke"
    assert json.loads(scheduled["parameters"])["FunctionName"] == add
    failed = next(e for e in events if e["type"] == "LambdaFunctionFailed")
    assert failed["lambdaFunctionFailedEventDetails"]["error"] == "ValueError"
    entered = next(e for e in events if e["type"] == "TaskStateEntered")["stateEnteredEventDetails"]
    assert entered["name"] == "Add" and json.loads(entered["input"])["n"] == 1

    # Paging and ordering of the history.
    page = sfn.get_execution_history(executionArn=ex, maxResults=3, reverseOrder=True)
    assert [e["id"] for e in page["events"]] == [len(events), len(events) - 1, len(events) - 2]
    assert "nextToken" in page
    lean = sfn.get_execution_history(executionArn=ex, maxResults=1, includeExecutionData=False)
    assert "input" not in lean["events"][0]["executionStartedEventDetails"]


def test_lambda_invoke_envelope_and_unhandled_error(sfn, functions):
    arn = machine(sfn, {"StartAt": "Call", "States": {"Call": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": functions["add"], "Payload.$": "$"}, "End": True}}})
    d = finished(sfn, sfn.start_execution(stateMachineArn=arn, input='{"n": 41}')["executionArn"])
    out = json.loads(d["output"])
    assert out["Payload"] == {"n": 42} and out["StatusCode"] == 200
    assert out["ExecutedVersion"] == "$LATEST"
    assert out["SdkHttpMetadata"]["HttpStatusCode"] == 200
    assert out["SdkResponseMetadata"]["RequestId"]

    failing = machine(sfn, {"StartAt": "Call", "States": {"Call": {
        "Type": "Task", "Resource": fn_arn(functions["fail"]), "End": True}}})
    d = finished(sfn, sfn.start_execution(stateMachineArn=failing, input='{"n": 3}')["executionArn"])
    assert d["status"] == "FAILED" and d["error"] == "ValueError"
    assert json.loads(d["cause"])["errorMessage"] == "no good: 3"

    missing = machine(sfn, {"StartAt": "Call", "States": {"Call": {
        "Type": "Task", "Resource": fn_arn("does-not-exist"), "End": True}}})
    d = finished(sfn, sfn.start_execution(stateMachineArn=missing)["executionArn"])
    assert d["error"] == "Lambda.ResourceNotFoundException"

    ecs = machine(sfn, {"StartAt": "Run", "States": {"Run": {
        "Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.sync",
        "Parameters": {"TaskDefinition": "x"}, "End": True}}})
    d = finished(sfn, sfn.start_execution(stateMachineArn=ecs)["executionArn"])
    # ECS exists now (tests/e2e/test_ecs_integrations.py): its API errors are named `ECS.<code>`.
    assert d["error"] == "ECS.ClusterNotFoundException" and "Cluster not found" in d["cause"]


def test_nested_wait_stop_and_listing_with_the_cli(server, sfn):
    child = machine(sfn, {"StartAt": "Nap", "States": {
        "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Say"},
        "Say": {"Type": "Pass", "Parameters": {"got.$": "$.v"}, "End": True}}})
    parent_def = {"StartAt": "Child", "States": {"Child": {
        "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
        "Parameters": {"StateMachineArn": child, "Input": {"v.$": "$.value"}},
        "OutputPath": "$.Output", "End": True}}}
    name = unique_name("parent")
    created = server.aws_json("stepfunctions", "create-state-machine", "--name", name,
                              "--definition", json.dumps(parent_def), "--role-arn", ROLE,
                              "--tags", "key=team,value=core")
    parent = created["stateMachineArn"]
    assert isinstance(created["creationDate"], (int, float))
    ex = server.aws_json("stepfunctions", "start-execution", "--state-machine-arn", parent,
                         "--input", '{"value": "hi"}')["executionArn"]
    d = finished(sfn, ex)
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"got": "hi"}
    child_runs = sfn.list_executions(stateMachineArn=child)["executions"]
    assert len(child_runs) == 1 and child_runs[0]["status"] == "SUCCEEDED"

    # Stop a long Wait.
    sleepy = machine(sfn, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 300, "End": True}}})
    run = sfn.start_execution(stateMachineArn=sleepy)["executionArn"]
    stopped = server.aws_json("stepfunctions", "stop-execution", "--execution-arn", run,
                              "--error", "Manual", "--cause", "test over")
    assert isinstance(stopped["stopDate"], (int, float))
    d = sfn.describe_execution(executionArn=run)
    assert d["status"] == "ABORTED" and d["error"] == "Manual" and d["cause"] == "test over"
    assert history(sfn, run)[-1]["type"] == "ExecutionAborted"
    listed = server.aws_json("stepfunctions", "list-executions", "--state-machine-arn", sleepy,
                             "--status-filter", "ABORTED")["executions"]
    assert [e["executionArn"] for e in listed] == [run]
    assert server.aws_json("stepfunctions", "list-executions", "--state-machine-arn", sleepy,
                           "--status-filter", "RUNNING")["executions"] == []

    hist = server.aws_json("stepfunctions", "get-execution-history", "--execution-arn", ex,
                           "--reverse-order", "--max-items", "2")["events"]
    assert hist[0]["type"] == "ExecutionSucceeded" and len(hist) == 2
    for_ex = sfn.describe_state_machine_for_execution(executionArn=ex)
    assert for_ex["stateMachineArn"] == parent and json.loads(for_ex["definition"]) == parent_def

    # Tags, update (running executions keep their definition) and delete.
    sfn.tag_resource(resourceArn=parent, tags=[{"key": "env", "value": "test"}])
    sfn.untag_resource(resourceArn=parent, tagKeys=["team"])
    assert sfn.list_tags_for_resource(resourceArn=parent)["tags"] == [{"key": "env", "value": "test"}]
    before = sfn.describe_state_machine(stateMachineArn=parent)
    upd = sfn.update_state_machine(stateMachineArn=parent, definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))
    after = sfn.describe_state_machine(stateMachineArn=parent)
    assert upd["revisionId"] == after["revisionId"] != before["revisionId"]
    assert after["status"] == "ACTIVE" and after["type"] == "STANDARD"
    machines = {m["stateMachineArn"] for m in sfn.get_paginator("list_state_machines").paginate()
                .build_full_result()["stateMachines"]}
    assert {parent, child, sleepy} <= machines
    sfn.delete_state_machine(stateMachineArn=sleepy)
    with pytest.raises(ClientError) as e:
        sfn.describe_state_machine(stateMachineArn=sleepy)
    assert e.value.response["Error"]["Code"] == "StateMachineDoesNotExist"


def test_express_start_sync_execution(server, sfn, sync_sfn, functions):
    arn = machine(sfn, {"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": fn_arn(functions["add"]), "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 2, "Next": "Ok"}],
                  "Default": "Bad"},
        "Ok": {"Type": "Succeed"},
        "Bad": {"Type": "Fail", "Error": "Wrong", "Cause": "n was not 2"}}}, type="EXPRESS")
    r = sync_sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 1}')
    assert r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"n": 2}
    assert r["billingDetails"]["billedDurationInMilliseconds"] % 100 == 0
    assert ":express:" in r["executionArn"]
    r = sync_sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 5}')
    assert (r["status"], r["error"], r["cause"]) == ("FAILED", "Wrong", "n was not 2")
    # The AWS CLI with host-prefix injection turned off (see README).
    cli = server.aws_json("stepfunctions", "start-sync-execution", "--state-machine-arn", arn,
                          "--input", '{"n": 1}', env={"AWS_DISABLE_HOST_PREFIX_INJECTION": "true"})
    assert cli["status"] == "SUCCEEDED"
    # StartSyncExecution is for EXPRESS machines only.
    standard = machine(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    with pytest.raises(ClientError) as e:
        sync_sfn.start_sync_execution(stateMachineArn=standard)
    assert e.value.response["Error"]["Code"] == "StateMachineTypeNotSupported"


def code(fn):
    with pytest.raises(ClientError) as e:
        fn()
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_validation_errors(sfn):
    c, msg = code(lambda: machine(sfn, {"StartAt": "Nowhere", "States": {"A": {"Type": "Pass", "End": True}}}))
    assert c == "InvalidDefinition" and "MISSING_TRANSITION_TARGET" in msg, msg
    c, msg = code(lambda: sfn.create_state_machine(name="x", definition="{not json", roleArn=ROLE))
    assert c == "InvalidDefinition" and "INVALID_JSON_DESCRIPTION" in msg, msg
    assert code(lambda: machine(sfn, {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}},
                                name="bad name"))[0] == "InvalidName"
    ok_def = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
    name = unique_name("dup")
    arn = machine(sfn, ok_def, name=name)
    assert machine(sfn, ok_def, name=name) == arn  # same definition: idempotent
    assert code(lambda: machine(sfn, {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}},
                                name=name))[0] == "StateMachineAlreadyExists"
    missing = arn.replace(name, "nope")
    assert code(lambda: sfn.describe_state_machine(stateMachineArn=missing))[0] == "StateMachineDoesNotExist"
    assert code(lambda: sfn.start_execution(stateMachineArn=missing))[0] == "StateMachineDoesNotExist"
    assert code(lambda: sfn.describe_state_machine(stateMachineArn="not-an-arn"))[0] == "InvalidArn"
    assert code(lambda: sfn.start_execution(stateMachineArn=arn, input="{oops"))[0] == "InvalidExecutionInput"
    sfn.start_execution(stateMachineArn=arn, name="once", input="{}")
    assert code(lambda: sfn.start_execution(stateMachineArn=arn, name="once",
                                            input='{"other": 1}'))[0] == "ExecutionAlreadyExists"
    assert code(lambda: sfn.describe_execution(
        executionArn=arn.replace(":stateMachine:", ":execution:") + ":never"))[0] == "ExecutionDoesNotExist"
    assert code(lambda: sfn.send_task_success(taskToken="unknown", output="{}"))[0] == "TaskDoesNotExist"


def start_count(logs, fn):
    try:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{fn}",
                                        filterPattern='"START RequestId"')["events"]
    except ClientError:
        return 0
    return len(events)


def test_execution_survives_kill_9_without_rerunning_completed_states(nimbus):
    s = nimbus()
    first, second = unique_name("sfn-first"), unique_name("sfn-second")
    create_function(s.lam, first, make_zip({"lambda_function.py": ADD}))
    create_function(s.lam, second, make_zip({"lambda_function.py": ADD}))
    sfn = s.client("stepfunctions")
    arn = machine(sfn, {"StartAt": "First", "States": {
        "First": {"Type": "Task", "Resource": fn_arn(first), "Next": "Nap"},
        "Nap": {"Type": "Wait", "Seconds": 3, "Next": "Second"},
        "Second": {"Type": "Task", "Resource": fn_arn(second), "End": True}}})
    ex = sfn.start_execution(stateMachineArn=arn, input='{"n": 1}')["executionArn"]
    wait_until(lambda: any(e["type"] == "WaitStateEntered" for e in history(sfn, ex)), 30,
               what="the Wait state")
    wait_until(lambda: start_count(s.logs, first) == 1, 10, what="first function's START line")
    started = time.monotonic()

    s.kill9()
    s.restart()
    sfn = s.client("stepfunctions")
    assert sfn.describe_execution(executionArn=ex)["status"] in ("RUNNING", "SUCCEEDED")
    d = finished(sfn, ex, timeout=30)
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"n": 3}
    assert time.monotonic() - started < 20
    assert start_count(s.logs, first) == 1, "a completed state ran again after the restart"
    assert start_count(s.logs, second) == 1
    types = [e["type"] for e in history(sfn, ex)]
    assert types.count("WaitStateEntered") == 1 and types.count("LambdaFunctionScheduled") == 2


CALLBACK = """
import json, boto3
def handler(event, context):
    sfn = boto3.client("stepfunctions")
    if event.get("fail"):
        sfn.send_task_failure(taskToken=event["token"], error="Declined", cause="said no")
    else:
        sfn.send_task_heartbeat(taskToken=event["token"])
        sfn.send_task_success(taskToken=event["token"], output=json.dumps({"echo": event["v"]}))
    return "sent"
"""


def test_wait_for_task_token_callbacks_from_a_function(server, sfn):
    def sdk_ready():
        status, _, body = server.http("GET", "/_nimbus/health")
        return json.loads(body).get("python_sdk") == "ready"

    wait_until(sdk_ready, 240, interval=0.5, what="boto3 installed for python functions")
    cb = unique_name("sfn-callback")
    create_function(server.lam, cb, make_zip({"lambda_function.py": CALLBACK}), Timeout=30)
    arn = machine(sfn, {"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": cb,
                       "Payload": {"token.$": "$$.Task.Token", "v.$": "$.v", "fail.$": "$.fail"}},
        "HeartbeatSeconds": 30, "TimeoutSeconds": 60, "End": True}}})
    d = finished(sfn, sfn.start_execution(stateMachineArn=arn, input='{"v": 7, "fail": false}')["executionArn"])
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"echo": 7}, d
    d = finished(sfn, sfn.start_execution(stateMachineArn=arn, input='{"v": 0, "fail": true}')["executionArn"])
    assert (d["status"], d["error"], d["cause"]) == ("FAILED", "Declined", "said no")
