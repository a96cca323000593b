"""Event source mappings SQS → Lambda: the control API (Create/Get/Update/Delete/List with
Lambda's shapes and states), the poller (Lambda's SQS event, deletes on success, failed
messages redelivered and redriven to the DLQ, ReportBatchItemFailures), disabled mappings
not polling, and mappings surviving a `kill -9`."""
import json
import time

import pytest

from nimbus_e2e import create_function, make_zip, unique_name, wait_until

RECORDER = """
import json, os
def handler(event, context):
    failures = []
    for r in event["Records"]:
        with open(os.path.join(os.environ["OUT"], r["messageId"] + "." + r["attributes"]["ApproximateReceiveCount"]), "w") as f:
            json.dump(r, f)
        if r["body"].startswith("poison"):
            failures.append({"itemIdentifier": r["messageId"]})
    if os.environ.get("MODE") == "raise" and failures:
        raise RuntimeError("poison in batch")
    return {"batchItemFailures": failures}
"""


@pytest.fixture
def server(process_server):
    """The recorder function writes what it received to files on the host, which an
    isolated (container) sandbox rightly cannot: these tests use the process backend."""
    return process_server


def _setup(s, tmp_path, mode="report", timeout=3, queue_attrs=None):
    lam, sqs = s.lam, s.client("sqs")
    name = unique_name("esm")
    out = tmp_path / f"out-{name}"
    out.mkdir()
    create_function(lam, name, make_zip({"lambda_function.py": RECORDER}), Timeout=timeout,
                    Environment={"Variables": {"OUT": str(out), "MODE": mode}})
    url = sqs.create_queue(QueueName=name, Attributes=queue_attrs or {})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return name, out, url, arn


def _processed(out):
    return {p.name.split(".")[0]: json.loads(p.read_text()) for p in out.iterdir()}


def _queue_empty(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return a["ApproximateNumberOfMessages"] == a["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_mapping_control_api(server, tmp_path):
    lam = server.lam
    name, _, _, arn = _setup(server, tmp_path)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="does not exist"):
        lam.create_event_source_mapping(EventSourceArn=arn + "-missing", FunctionName=name)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="batch window"):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=100)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name + "-missing")

    created = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, Enabled=False)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["State"] == "Creating" and created["BatchSize"] == 10
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert created["EventSourceMappingArn"].endswith(f":event-source-mapping:{created['UUID']}")
    uuid = created["UUID"]
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)

    assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Disabled"
    updated = lam.update_event_source_mapping(UUID=uuid, Enabled=True, BatchSize=50,
                                              MaximumBatchingWindowInSeconds=2,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])
    assert updated["State"] == "Enabling"
    got = lam.get_event_source_mapping(UUID=uuid)
    assert (got["State"], got["BatchSize"], got["MaximumBatchingWindowInSeconds"]) == ("Enabled", 50, 2)
    assert got["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    listed = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]
    assert [m["UUID"] for m in lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]] == [uuid]

    assert lam.delete_event_source_mapping(UUID=uuid)["State"] == "Deleting"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_event_source_mapping(UUID=uuid)
    assert lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"] == []


def test_visibility_timeout_shorter_than_function_timeout_is_refused(server, tmp_path):
    name, _, _, arn = _setup(server, tmp_path, timeout=60)
    with pytest.raises(server.lam.exceptions.InvalidParameterValueException, match="visibility timeout"):
        server.lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)


def test_messages_are_delivered_in_lambdas_shape_and_deleted(server, tmp_path):
    lam, sqs = server.lam, server.client("sqs")
    name, out, url, arn = _setup(server, tmp_path)
    sent = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": f"m{i}", "MessageBody": json.dumps({"i": i}),
         "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "test"}}} for i in range(5)])
    ids = {e["MessageId"] for e in sent["Successful"]}
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name,
                                           MaximumBatchingWindowInSeconds=1)["UUID"]
    wait_until(lambda: set(_processed(out)) == ids, 30, what="all messages processed")
    wait_until(lambda: _queue_empty(sqs, url), 10, what="the queue to be empty")
    r = next(iter(_processed(out).values()))
    assert r["eventSource"] == "aws:sqs" and r["eventSourceARN"] == arn and r["awsRegion"] == "us-east-1"
    assert r["messageId"] in ids and r["receiptHandle"]
    assert r["md5OfBody"] == next(e["MD5OfMessageBody"] for e in sent["Successful"] if e["MessageId"] == r["messageId"])
    assert r["attributes"]["ApproximateReceiveCount"] == "1"
    assert set(r["attributes"]) >= {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"}
    assert r["messageAttributes"]["kind"]["stringValue"] == "test"
    assert r["messageAttributes"]["kind"]["dataType"] == "String"
    assert lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"] == "OK"
    lam.delete_event_source_mapping(UUID=uuid)


def test_failures_are_redelivered_then_redriven_and_batch_item_failures_honoured(server, tmp_path):
    lam, sqs = server.lam, server.client("sqs")
    name = unique_name("esmdlq")
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    _, out, url, arn = _setup(server, tmp_path, timeout=1,
                              queue_attrs={"VisibilityTimeout": "2", "RedrivePolicy": policy})
    fn = out.name.removeprefix("out-")
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "good-1"}, {"Id": "b", "MessageBody": "poison-1"},
        {"Id": "c", "MessageBody": "good-2"}])
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                    FunctionResponseTypes=["ReportBatchItemFailures"])
    moved = wait_until(lambda: sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages"), 30,
                       what="the poison message in the DLQ")
    assert moved[0]["Body"] == "poison-1"
    files = sorted(p.name for p in out.iterdir())
    bodies = [json.loads((out / f).read_text())["body"] for f in files]
    # Good messages ran once (deleted after success); the poison one ran maxReceiveCount times.
    assert sorted(bodies) == ["good-1", "good-2", "poison-1", "poison-1"]
    wait_until(lambda: _queue_empty(sqs, url), 10, what="the source queue to be empty")


def test_whole_batch_is_retried_when_the_function_fails(server, tmp_path):
    lam, sqs = server.lam, server.client("sqs")
    name, out, url, arn = _setup(server, tmp_path, mode="raise", timeout=1, queue_attrs={"VisibilityTimeout": "1"})
    sqs.send_message(QueueUrl=url, MessageBody="poison-x")
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)["UUID"]
    wait_until(lambda: len(list(out.iterdir())) >= 2, 20, what="a redelivery after the visibility timeout")
    assert sorted(p.name.split(".")[1] for p in out.iterdir())[:2] == ["1", "2"]
    wait_until(lambda: lam.get_event_source_mapping(UUID=uuid)["LastProcessingResult"].startswith("PROBLEM"),
               10, what="the mapping to report the failure")
    lam.delete_event_source_mapping(UUID=uuid)


def test_disabled_mapping_does_not_poll(server, tmp_path):
    lam, sqs = server.lam, server.client("sqs")
    name, out, url, arn = _setup(server, tmp_path)
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)["UUID"]
    lam.update_event_source_mapping(UUID=uuid, Enabled=False)
    sqs.send_message(QueueUrl=url, MessageBody="wait for me")
    time.sleep(1.5)
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]) == ("1", "0")
    assert list(out.iterdir()) == []
    lam.update_event_source_mapping(UUID=uuid, Enabled=True)
    wait_until(lambda: list(out.iterdir()), 20, what="processing after re-enabling")
    lam.delete_event_source_mapping(UUID=uuid)
    sqs.send_message(QueueUrl=url, MessageBody="after delete")
    time.sleep(1.0)
    assert len(list(out.iterdir())) == 1


def test_mapping_survives_kill_9(nimbus, tmp_path):
    s = nimbus("--sandbox", "process")
    name, out, _, arn = _setup(s, tmp_path)
    uuid = s.lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)["UUID"]
    s.kill9()
    s.restart()
    sqs = s.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="after restart")
    wait_until(lambda: [r["body"] for r in _processed(out).values()] == ["after restart"], 30,
               what="the restored mapping to process the message")
    assert s.lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled"


def test_filter_criteria_process_matching_messages_and_delete_the_rest(server, tmp_path):
    lam, sqs = server.lam, server.client("sqs")
    name, out, url, arn = _setup(server, tmp_path)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="filter pattern"):
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name,
                                        FilterCriteria={"Filters": [{"Pattern": "not json"}]})
    pattern = json.dumps({"body": {"kind": ["order"]}})
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name,
                                           FilterCriteria={"Filters": [{"Pattern": pattern}]})["UUID"]
    assert lam.get_event_source_mapping(UUID=uuid)["FilterCriteria"] == {"Filters": [{"Pattern": pattern}]}
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": json.dumps({"kind": "refund"})},
        {"Id": "b", "MessageBody": "not json at all"},
        {"Id": "c", "MessageBody": json.dumps({"kind": "order", "n": 1})}])
    wait_until(lambda: _queue_empty(sqs, url), 20, what="every message consumed or filtered out")
    wait_until(lambda: list(out.iterdir()), 10, what="the matching message to be processed")
    assert [json.loads(r["body"]) for r in _processed(out).values()] == [{"kind": "order", "n": 1}]
    lam.delete_event_source_mapping(UUID=uuid)
