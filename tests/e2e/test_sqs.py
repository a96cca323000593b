"""Amazon SQS through boto3 and the AWS CLI: queues, attributes, MD5 digests computed as
AWS does, long polling woken by sends, visibility timeouts, batches, redrive to a
dead-letter queue, awsQueryCompatible errors, and messages surviving `kill -9`."""
import hashlib
import json
import struct
import threading
import time

import pytest

from nimbus_e2e import unique_name


def md5_of_attributes(attrs: dict) -> str:
    """AWS's MD5OfMessageAttributes, written independently of the server's."""
    h = hashlib.md5()
    for name in sorted(attrs):
        v = attrs[name]
        for part in (name.encode(), v["DataType"].encode()):
            h.update(struct.pack(">I", len(part)) + part)
        if "StringValue" in v:
            data = v["StringValue"].encode()
            h.update(b"\x01" + struct.pack(">I", len(data)) + data)
        else:
            data = v["BinaryValue"]
            h.update(b"\x02" + struct.pack(">I", len(data)) + data)
    return h.hexdigest()


@pytest.fixture
def sqs(server):
    return server.client("sqs")


def test_queue_lifecycle_attributes_tags_and_listing(server, sqs):
    prefix = unique_name("lc")
    url = sqs.create_queue(QueueName=f"{prefix}-a", Attributes={"VisibilityTimeout": "45"},
                           tags={"team": "core"})["QueueUrl"]
    assert url == f"{server.endpoint}/000000000000/{prefix}-a"
    # Idempotent with the same attributes; a conflict with different ones.
    assert sqs.create_queue(QueueName=f"{prefix}-a", Attributes={"VisibilityTimeout": "45"})["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName=f"{prefix}-a", Attributes={"VisibilityTimeout": "46"})
    sqs.create_queue(QueueName=f"{prefix}-b")
    sqs.create_queue(QueueName=f"{prefix}-c")
    assert sqs.get_queue_url(QueueName=f"{prefix}-a")["QueueUrl"] == url

    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["QueueArn"] == f"arn:aws:sqs:us-east-1:000000000000:{prefix}-a"
    assert attrs["VisibilityTimeout"] == "45"
    assert attrs["MessageRetentionPeriod"] == "345600"
    assert attrs["ApproximateNumberOfMessages"] == "0"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "3", "ReceiveMessageWaitTimeSeconds": "2"})
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds", "ReceiveMessageWaitTimeSeconds"])
    assert got["Attributes"] == {"DelaySeconds": "3", "ReceiveMessageWaitTimeSeconds": "2"}
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Bogus"])
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "999999"})

    sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}

    listed = sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"]
    assert [u.rsplit("/", 1)[1] for u in listed] == [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
    pages = sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2})
    assert [len(p["QueueUrls"]) for p in pages] == [2, 1]

    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as e:
        sqs.get_queue_url(QueueName=f"{prefix}-a")
    # botocore maps the query-compatible code to the modelled exception.
    assert e.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")


def test_fifo_queues_are_refused_clearly(sqs):
    with pytest.raises(sqs.exceptions.UnsupportedOperation, match="FIFO"):
        sqs.create_queue(QueueName=unique_name("f") + ".fifo", Attributes={"FifoQueue": "true"})


def test_send_receive_digests_attributes_visibility_and_delete(sqs):
    url = sqs.create_queue(QueueName=unique_name("msg"), Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    user_attrs = {
        "color": {"DataType": "String", "StringValue": "blue"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        "trace.id": {"DataType": "String.custom", "StringValue": "t-1"},
    }
    body = "héllo wörld"
    sent = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=user_attrs)
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(user_attrs)

    before = int(time.time() * 1000)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                              MessageAttributeNames=["All"])["Messages"]
    assert len(got) == 1
    m = got[0]
    assert m["Body"] == body and m["MessageId"] == sent["MessageId"]
    assert m["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert m["MessageAttributes"] == user_attrs
    assert m["MD5OfMessageAttributes"] == md5_of_attributes(user_attrs)
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    assert abs(int(m["Attributes"]["SentTimestamp"]) - before) < 10_000
    assert int(m["Attributes"]["ApproximateFirstReceiveTimestamp"]) >= int(m["Attributes"]["SentTimestamp"])

    # Only the selected user attributes come back, with a digest over those.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["trace.*"],
                                MessageSystemAttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert set(again["MessageAttributes"]) == {"trace.id"}
    assert again["MD5OfMessageAttributes"] == md5_of_attributes({"trace.id": user_attrs["trace.id"]})
    assert again["Attributes"] == {"ApproximateReceiveCount": "2"}

    # In flight: invisible to other receivers.
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "1")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")


def test_batches_report_per_entry_results(sqs):
    url = sqs.create_queue(QueueName=unique_name("batch"))["QueueUrl"]
    res = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "one"},
        {"Id": "b", "MessageBody": "two", "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
        {"Id": "c", "MessageBody": "three", "DelaySeconds": 5000},
    ])
    assert sorted(e["Id"] for e in res["Successful"]) == ["a", "b"]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in res["Failed"]] == [("c", "InvalidParameterValue", True)]
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "x", "MessageBody": "1"}, {"Id": "x", "MessageBody": "2"}])
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"i{i}", "MessageBody": "m"} for i in range(11)])

    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["one", "two"]
    vis = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "m0", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 0},
        {"Id": "bad", "ReceiptHandle": "garbage", "VisibilityTimeout": 0},
    ])
    assert [e["Id"] for e in vis["Successful"]] == ["m0"]
    assert vis["Failed"][0]["Id"] == "bad" and vis["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    back = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in back] == [got[0]["Body"]]
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "d0", "ReceiptHandle": back[0]["ReceiptHandle"]},
        {"Id": "d1", "ReceiptHandle": got[1]["ReceiptHandle"]},
    ])
    assert sorted(e["Id"] for e in deleted["Successful"]) == ["d0", "d1"]
    sqs.purge_queue(QueueUrl=url)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_long_poll_is_woken_by_a_send_and_delays_are_honoured(sqs):
    url = sqs.create_queue(QueueName=unique_name("lp"))["QueueUrl"]
    t = threading.Timer(0.8, lambda: sqs.send_message(QueueUrl=url, MessageBody="wake"))
    t.start()
    start = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=15)["Messages"]
    elapsed = time.monotonic() - start
    t.join()
    assert got[0]["Body"] == "wake"
    assert 0.5 < elapsed < 5, elapsed
    # An empty long poll lasts its wait time.
    start = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert time.monotonic() - start >= 0.9
    # A delayed message is invisible until its delay passes.
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=2)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"]
    assert got[0]["Body"] == "later"


def test_redrive_moves_poison_messages_to_the_dead_letter_queue(sqs):
    name = unique_name("rd")
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    got = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
                     ["Attributes"]["RedrivePolicy"])
    assert got == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
    with pytest.raises(sqs.exceptions.InvalidAttributeValue):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn + "-missing", "maxReceiveCount": 2})})
    sent = sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(2):
        m = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
        assert m[0]["Body"] == "poison"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    moved = sqs.receive_message(QueueUrl=dlq_url, AttributeNames=["All"])["Messages"][0]
    assert moved["MessageId"] == sent["MessageId"] and moved["Body"] == "poison"
    assert moved["Attributes"]["DeadLetterQueueSourceArn"].endswith(f":{name}")


def test_aws_cli_round_trip(server):
    name = unique_name("cli")
    url = server.aws_json("sqs", "create-queue", "--queue-name", name)["QueueUrl"]
    server.aws_json("sqs", "send-message", "--queue-url", url, "--message-body", "from the cli",
                    "--message-attributes", '{"k":{"DataType":"String","StringValue":"v"}}')
    got = server.aws_json("sqs", "receive-message", "--queue-url", url, "--message-attribute-names", "All",
                          "--wait-time-seconds", "1")["Messages"]
    assert got[0]["Body"] == "from the cli"
    assert got[0]["MessageAttributes"]["k"]["StringValue"] == "v"
    server.aws("sqs", "delete-message", "--queue-url", url, "--receipt-handle", got[0]["ReceiptHandle"])
    p = server.aws("sqs", "get-queue-url", "--queue-name", name + "-nope", check=False)
    assert p.returncode != 0 and "NonExistentQueue" in p.stderr


def test_messages_survive_kill_9(nimbus):
    s = nimbus()
    sqs = s.client("sqs")
    url = sqs.create_queue(QueueName="durable")["QueueUrl"]
    bodies = [f"m{i}" for i in range(20)]
    for i in range(0, 20, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"e{j}", "MessageBody": b}
                                                      for j, b in enumerate(bodies[i:i + 10])])
    # Two are in flight for a long time, one is deleted: both states must survive too.
    inflight = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=3, VisibilityTimeout=600)["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=inflight[2]["ReceiptHandle"])
    s.kill9()
    s.restart()
    sqs = s.client("sqs")
    url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
    seen = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        seen += [m["Body"] for m in got]
    expected = set(bodies) - {m["Body"] for m in inflight}
    assert sorted(seen) == sorted(expected)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == str(len(expected) + 2)
