"""EventBridge end to end: buses, rules and targets through the AWS CLI and boto3; PutEvents
routed by pattern to Lambda targets (shaped by Input / InputPath / InputTransformer); a
`rate(1 minute)` schedule firing a function; AWS's validation errors."""
import json
import time

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import create_function, make_zip, unique_name, wait_until

ACCOUNT = "000000000000"
RECORDER = '''
import json
def handler(event, context):
    print("EVENT " + json.dumps(event, sort_keys=True))
    return "ok"
'''


def recorder(srv) -> tuple[str, str]:
    name = unique_name("evrec")
    arn = create_function(srv.lam, name, make_zip({"app.py": RECORDER}), handler="app.handler")["FunctionArn"]
    return name, arn


def received(srv, fn: str) -> list:
    try:
        out = srv.logs.filter_log_events(logGroupName=f"/aws/lambda/{fn}", filterPattern='"EVENT "')
    except ClientError:
        return []
    return [json.loads(e["message"].split("EVENT ", 1)[1]) for e in out["events"]]


def test_rules_and_targets_through_the_cli(server):
    rule = unique_name("cli-rule")
    _, arn = recorder(server)
    out = server.aws_json("events", "put-rule", "--name", rule, "--event-pattern", '{"source":["my.app"]}')
    assert out["RuleArn"] == f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{rule}"
    d = server.aws_json("events", "describe-rule", "--name", rule)
    assert d["State"] == "ENABLED" and d["EventBusName"] == "default" and d["EventPattern"] == '{"source":["my.app"]}'
    out = server.aws_json("events", "put-targets", "--rule", rule, "--targets", f"Id=t1,Arn={arn}")
    assert out == {"FailedEntryCount": 0, "FailedEntries": []}
    targets = server.aws_json("events", "list-targets-by-rule", "--rule", rule)["Targets"]
    assert targets == [{"Id": "t1", "Arn": arn}]
    names = [r["Name"] for r in server.aws_json("events", "list-rules", "--name-prefix", rule)["Rules"]]
    assert names == [rule]
    server.aws("events", "disable-rule", "--name", rule)
    assert server.aws_json("events", "describe-rule", "--name", rule)["State"] == "DISABLED"
    # A rule with targets cannot be deleted.
    p = server.aws("events", "delete-rule", "--name", rule, check=False)
    assert p.returncode != 0 and "ValidationException" in p.stderr and "has targets" in p.stderr
    server.aws("events", "remove-targets", "--rule", rule, "--ids", "t1")
    server.aws("events", "delete-rule", "--name", rule)
    p = server.aws("events", "describe-rule", "--name", rule, check=False)
    assert "ResourceNotFoundException" in p.stderr


def test_put_events_reach_matching_rules_targets_shaped_by_input(server):
    ev = server.client("events")
    fn, arn = recorder(server)
    source = unique_name("src")
    ev.put_rule(Name=unique_name("big"), EventPattern=json.dumps(
        {"source": [source], "detail": {"amount": [{"numeric": [">", 100]}]}}))
    big = ev.list_rules(NamePrefix="big")["Rules"]
    rule = [r for r in big if source in r["EventPattern"]][0]["Name"]
    ev.put_targets(Rule=rule, Targets=[
        {"Id": "whole", "Arn": arn},
        {"Id": "path", "Arn": arn, "InputPath": "$.detail"},
        {"Id": "xf", "Arn": arn, "InputTransformer": {
            "InputPathsMap": {"amt": "$.detail.amount", "who": "$.detail.customer"},
            "InputTemplate": '{"text": "<who> spent <amt>", "amount": <amt>}'}},
    ])
    out = ev.put_events(Entries=[
        {"Source": source, "DetailType": "order", "Detail": json.dumps({"amount": 150, "customer": "ada"})},
        {"Source": source, "DetailType": "order", "Detail": json.dumps({"amount": 5, "customer": "bob"})},
        {"Source": source, "DetailType": "order", "Detail": "not json"},
    ])
    assert out["FailedEntryCount"] == 1
    assert "EventId" in out["Entries"][0] and "EventId" in out["Entries"][1]
    assert out["Entries"][2]["ErrorCode"] == "MalformedDetail"
    got = wait_until(lambda: (lambda r: r if len(r) >= 3 else None)(received(server, fn)), 30,
                     what="three deliveries of the matching event")
    time.sleep(0.5)
    got = received(server, fn)
    assert len(got) == 3, got
    whole = [g for g in got if "detail-type" in g][0]
    assert whole["source"] == source and whole["detail"] == {"amount": 150, "customer": "ada"}
    assert whole["account"] == ACCOUNT and whole["region"] == "us-east-1" and whole["version"] == "0"
    assert whole["id"] == out["Entries"][0]["EventId"]
    assert {"amount": 150, "customer": "ada"} in got
    assert {"text": "ada spent 150", "amount": 150} in got


def test_custom_bus_and_validation_errors(server):
    ev = server.client("events")
    bus = unique_name("bus")
    arn = ev.create_event_bus(Name=bus)["EventBusArn"]
    assert arn == f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/{bus}"
    with pytest.raises(ClientError) as e:
        ev.create_event_bus(Name=bus)
    assert e.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    assert bus in [b["Name"] for b in ev.list_event_buses()["EventBuses"]]
    rule_arn = ev.put_rule(Name="r1", EventBusName=bus, EventPattern='{"source":["x"]}')["RuleArn"]
    assert rule_arn == f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{bus}/r1"
    with pytest.raises(ClientError) as e:
        ev.put_rule(Name="r2", EventBusName=bus, ScheduleExpression="rate(5 minutes)")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as e:
        ev.put_rule(Name="r3", EventPattern='{"source": "not-an-array"}')
    assert e.value.response["Error"]["Code"] == "InvalidEventPatternException"
    with pytest.raises(ClientError) as e:
        ev.put_rule(Name="r4", ScheduleExpression="rate(0 minutes)")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as e:
        ev.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}] * 11)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as e:
        ev.describe_rule(Name="nope")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    ev.delete_rule(Name="r1", EventBusName=bus)
    ev.delete_event_bus(Name=bus)
    assert bus not in [b["Name"] for b in ev.list_event_buses()["EventBuses"]]


def test_rate_schedule_fires_its_target(server):
    ev = server.client("events")
    fn, arn = recorder(server)
    rule = unique_name("every-minute")
    t0 = time.time()
    rule_arn = ev.put_rule(Name=rule, ScheduleExpression="rate(1 minute)")["RuleArn"]
    ev.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": arn}])
    got = wait_until(lambda: received(server, fn), 75, interval=0.5, what="the scheduled event")
    fired = time.time()
    event = got[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"] == [rule_arn] and event["detail"] == {}
    # rate(1 minute) counts from the rule's creation: the first tick is ~60 s later.
    assert 55 <= fired - t0 <= 75, fired - t0
    ev.remove_targets(Rule=rule, Ids=["fn"])
    ev.delete_rule(Name=rule)


def test_sqs_targets_and_dead_letter_queues(server):
    """An SQS queue as a target gets the event; a target that keeps failing (a function that
    does not exist) is retried per its RetryPolicy, then the event goes to its DLQ."""
    ev, sqs = server.client("events"), server.client("sqs")
    target_q = sqs.create_queue(QueueName=unique_name("evq"))["QueueUrl"]
    dlq = sqs.create_queue(QueueName=unique_name("evdlq"))["QueueUrl"]
    arn = lambda url: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = unique_name("to-sqs")
    source = unique_name("sqs-src")
    ev.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    missing_fn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{unique_name('nope')}"
    ev.put_targets(Rule=rule, Targets=[
        {"Id": "q", "Arn": arn(target_q), "InputPath": "$.detail"},
        {"Id": "gone", "Arn": missing_fn, "RetryPolicy": {"MaximumRetryAttempts": 1},
         "DeadLetterConfig": {"Arn": arn(dlq)}},
    ])
    ev.put_events(Entries=[{"Source": source, "DetailType": "d", "Detail": json.dumps({"k": "v"})}])
    msgs = wait_until(lambda: sqs.receive_message(QueueUrl=target_q, WaitTimeSeconds=1).get("Messages"), 15,
                      what="the event in the target queue")
    assert json.loads(msgs[0]["Body"]) == {"k": "v"}
    dead = wait_until(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"), 20,
                      what="the undeliverable event in the DLQ")
    assert json.loads(dead[0]["Body"])["source"] == source


def test_state_machine_target_starts_an_execution_with_the_event(server):
    ev, sfn = server.client("events"), server.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=unique_name("evsm"), roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    source = unique_name("sm-src")
    rule = unique_name("to-sm")
    ev.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    ev.put_targets(Rule=rule, Targets=[{"Id": "sm", "Arn": machine, "InputPath": "$.detail"}])
    ev.put_events(Entries=[{"Source": source, "DetailType": "d", "Detail": json.dumps({"order": 7})}])
    execs = wait_until(lambda: sfn.list_executions(stateMachineArn=machine)["executions"], 15,
                       what="an execution started by the rule")
    arn = execs[0]["executionArn"]
    done = wait_until(lambda: (lambda d: d if d["status"] != "RUNNING" else None)(
        sfn.describe_execution(executionArn=arn)), 15, what="the execution finished")
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["input"]) == {"order": 7}
