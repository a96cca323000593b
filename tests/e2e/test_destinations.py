"""Destinations and dead-letter queues of asynchronous invocations: records in AWS's shape
delivered to SQS queues and Lambda functions, the original event to the DLQ with AWS's
message attributes, and clear errors for targets Nimbus cannot deliver to."""
import json

import pytest

from nimbus_e2e import create_function, make_zip, unique_name, wait_until

HANDLER = """
import json, os
def handler(event, context):
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], context.aws_request_id), "w") as f:
            json.dump(event, f)
    if event.get("fail"):
        raise ValueError("bad input " + str(event.get("n")))
    return {"doubled": event.get("n", 0) * 2}
"""


def _queue(sqs, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _receive_one(sqs, url, timeout=30):
    def got():
        r = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, MessageAttributeNames=["All"])
        return r.get("Messages", [None])[0]
    return wait_until(got, timeout, what=f"a message on {url}")


def test_destination_targets_are_validated(server):
    lam, sqs = server.lam, server.client("sqs")
    name = unique_name("dstval")
    create_function(lam, name, make_zip({"lambda_function.py": HANDLER}))
    for bad in ("arn:aws:sns:us-east-1:000000000000:topic", "arn:aws:events:us-east-1:000000000000:event-bus/default",
                "arn:aws:sqs:us-east-1:000000000000:" + unique_name("missing")):
        with pytest.raises(lam.exceptions.InvalidParameterValueException):
            lam.put_function_event_invoke_config(FunctionName=name,
                                                 DestinationConfig={"OnFailure": {"Destination": bad}})
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_configuration(FunctionName=name,
                                          DeadLetterConfig={"TargetArn": "arn:aws:sns:us-east-1:000000000000:t"})
    _, arn = _queue(sqs, unique_name("dstok"))
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnSuccess": {"Destination": arn}})
    cfg = lam.get_function_event_invoke_config(FunctionName=name)
    assert cfg["DestinationConfig"] == {"OnSuccess": {"Destination": arn}, "OnFailure": {}}
    # Update merges: the on-success destination stays.
    lam.update_function_event_invoke_config(FunctionName=name,
                                            DestinationConfig={"OnFailure": {"Destination": arn}})
    cfg = lam.get_function_event_invoke_config(FunctionName=name)
    assert cfg["DestinationConfig"] == {"OnSuccess": {"Destination": arn}, "OnFailure": {"Destination": arn}}
    assert cfg["MaximumRetryAttempts"] == 0


def test_success_and_failure_records_reach_sqs_destinations(server):
    lam, sqs = server.lam, server.client("sqs")
    name = unique_name("dstsqs")
    create_function(lam, name, make_zip({"lambda_function.py": HANDLER}))
    ok_url, ok_arn = _queue(sqs, f"{name}-ok")
    bad_url, bad_arn = _queue(sqs, f"{name}-bad")
    lam.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": ok_arn}, "OnFailure": {"Destination": bad_arn}})

    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 21}))
    rid = r["ResponseMetadata"]["RequestId"]
    record = json.loads(_receive_one(sqs, ok_url)["Body"])
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    assert record["requestContext"] == {
        "requestId": rid, "functionArn": f"arn:aws:lambda:us-east-1:000000000000:function:{name}:$LATEST",
        "condition": "Success", "approximateInvokeCount": 1}
    assert record["requestPayload"] == {"n": 21}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"doubled": 42}

    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 7, "fail": True}))
    rid = r["ResponseMetadata"]["RequestId"]
    record = json.loads(_receive_one(sqs, bad_url)["Body"])
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"n": 7, "fail": True}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST",
                                         "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["responsePayload"]["errorMessage"] == "bad input 7"
    # Nothing went to the success queue for the failure.
    assert "Messages" not in sqs.receive_message(QueueUrl=ok_url)


def test_lambda_function_destination_receives_the_record(process_server, tmp_path):
    # The destination function records to a host file: process backend.
    server = process_server
    lam = server.lam
    name, target = unique_name("dstsrc"), unique_name("dsttgt")
    out = tmp_path / "target-out"
    out.mkdir()
    create_function(lam, name, make_zip({"lambda_function.py": HANDLER}))
    create_function(lam, target, make_zip({"lambda_function.py": HANDLER}),
                    Environment={"Variables": {"OUT": str(out)}})
    target_arn = lam.get_function(FunctionName=target)["Configuration"]["FunctionArn"]
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnSuccess": {"Destination": target_arn}})
    lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 5}))
    files = wait_until(lambda: list(out.iterdir()), 30, what="the destination function to run")
    record = json.loads(files[0].read_text())
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestPayload"] == {"n": 5} and record["responsePayload"] == {"doubled": 10}


def test_dead_letter_queue_gets_the_event_after_retries(nimbus):
    s = nimbus("--async-retry-delay", "0.2")
    lam, sqs = s.lam, s.client("sqs")
    name = unique_name("dlq")
    dlq_url, dlq_arn = _queue(sqs, f"{name}-dlq")
    fail_url, fail_arn = _queue(sqs, f"{name}-onfail")
    created = create_function(lam, name, make_zip({"lambda_function.py": HANDLER}),
                              DeadLetterConfig={"TargetArn": dlq_arn})
    assert created["DeadLetterConfig"] == {"TargetArn": dlq_arn}
    assert lam.get_function_configuration(FunctionName=name)["DeadLetterConfig"] == {"TargetArn": dlq_arn}
    lam.put_function_event_invoke_config(FunctionName=name,
                                         DestinationConfig={"OnFailure": {"Destination": fail_arn}})

    event = {"n": 3, "fail": True}
    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(event))
    rid = r["ResponseMetadata"]["RequestId"]
    m = _receive_one(sqs, dlq_url)
    assert json.loads(m["Body"]) == event
    attrs = m["MessageAttributes"]
    assert attrs["RequestID"] == {"DataType": "String", "StringValue": rid}
    assert attrs["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert attrs["ErrorMessage"] == {"DataType": "String", "StringValue": "bad input 3"}
    # The on-failure destination gets its record too, after the default two retries.
    record = json.loads(_receive_one(sqs, fail_url)["Body"])
    assert record["requestContext"]["approximateInvokeCount"] == 3

    # Successful events never reach the DLQ; removing the DLQ works.
    lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 1}))
    updated = lam.update_function_configuration(FunctionName=name, DeadLetterConfig={})
    assert "DeadLetterConfig" not in updated
    assert "Messages" not in sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1)
