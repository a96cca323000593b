"""Function logs in Lambda's format, stored per log group /aws/lambda/<name> with one stream
per execution environment, read back through the CloudWatch Logs API (boto3 and CLI)."""
import datetime
import re
import time

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import (STREAM_RE, create_function, error_code, invoke, node_zip, ok, python_zip, report_re,
                        unique_name, wait_until)


def _events(logs, group, stream):
    return [e["message"] for e in logs.get_log_events(
        logGroupName=group, logStreamName=stream, startFromHead=True)["events"]]


def _wait_for_stream_text(logs, group, needle, timeout=10):
    def find():
        streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
        for st in streams:
            msgs = _events(logs, group, st["logStreamName"])
            if any(needle in m for m in msgs):
                return st["logStreamName"], msgs
        return None
    return wait_until(find, timeout, interval=0.2, what=f"{needle!r} in {group}")


def test_python_logs_via_cloudwatch_api(server):
    lam, logs = server.lam, server.logs
    name = unique_name("pylogs")
    create_function(lam, name, python_zip())
    inv1 = invoke(lam, name, {"print": "first line from python 91c2"})
    inv2 = invoke(lam, name, {"print": "second line from python 91c2"})
    ok(inv1), ok(inv2)
    group = f"/aws/lambda/{name}"

    groups = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in groups] == [group]
    assert groups[0]["arn"].startswith(f"arn:aws:logs:us-east-1:000000000000:log-group:{group}")

    stream, msgs = _wait_for_stream_text(logs, group, "second line from python 91c2")
    assert re.fullmatch(STREAM_RE, stream), stream
    today = datetime.datetime.now(datetime.timezone.utc).date()
    day = datetime.date(*map(int, stream[:10].split("/")))
    assert abs((day - today).days) <= 1
    assert stream == inv1.payload["context"]["log_stream_name"]   # one stream per environment

    text = "\n".join(msgs)
    rid1 = inv1.payload["context"]["aws_request_id"]
    for inv in (inv1, inv2):
        rid = inv.payload["context"]["aws_request_id"]
        assert f"START RequestId: {rid} Version: $LATEST" in text, text
        assert f"END RequestId: {rid}" in text
        assert re.search(report_re(rid), text), text
    assert any("first line from python 91c2" in m for m in msgs)
    # Init Duration only on the cold start's REPORT.
    reports = [m for m in msgs if m.startswith("REPORT")]
    assert len(reports) == 2, reports
    used = [int(re.search(r"Max Memory Used: (\d+) MB", r).group(1)) for r in reports]
    assert all(0 < u <= 128 for u in used), reports      # a real measurement of the process
    assert "Init Duration" in reports[0] and "Init Duration" not in reports[1], reports
    # Order: START, the function's output, END, REPORT.
    idx = lambda needle: next(i for i, m in enumerate(msgs) if needle in m)  # noqa: E731
    assert idx(f"START RequestId: {rid1}") < idx("first line from python 91c2") \
        < idx(f"END RequestId: {rid1}") < idx(f"REPORT RequestId: {rid1}")
    events = logs.get_log_events(logGroupName=group, logStreamName=stream,
                                 startFromHead=True)["events"]
    assert all(isinstance(e["timestamp"], int) and e["timestamp"] > 1_600_000_000_000 for e in events)


def test_node_console_log_format(server):
    lam, logs = server.lam, server.logs
    name = unique_name("nodelogs")
    create_function(lam, name, node_zip("node/async"), runtime="nodejs20.x")
    inv = invoke(lam, name, {"log": "node says hi 5d1e"}, tail=True)
    rid = ok(inv)["requestId"]
    line_re = (rf"\d{{4}}-\d{{2}}-\d{{2}}T\d{{2}}:\d{{2}}:\d{{2}}\.\d{{3}}Z\t{re.escape(rid)}"
               rf"\tINFO\tnode says hi 5d1e")
    assert re.search(line_re, inv.log), inv.log
    _, msgs = _wait_for_stream_text(logs, f"/aws/lambda/{name}", "node says hi 5d1e")
    assert any(re.search(line_re, m) for m in msgs), msgs


def test_concurrent_environments_write_separate_streams(server):
    from test_environments import _parallel
    lam, logs = server.lam, server.logs
    name = unique_name("streams")
    create_function(lam, name, python_zip())
    outs = _parallel(lambda i: ok(invoke(lam, name, {"sleep": 0.5, "print": f"env line {i}"})), 2)
    group = f"/aws/lambda/{name}"
    wanted = {o["context"]["log_stream_name"] for o in outs}
    assert len(wanted) == 2

    def streams():
        got = {s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]}
        return got if wanted <= got else None
    wait_until(streams, 10, interval=0.2, what="two log streams")
    for o in outs:
        stream = o["context"]["log_stream_name"]
        msgs = wait_until(lambda: (m := _events(logs, group, stream)) and
                          any(x.startswith("REPORT") for x in m) and m, 10, interval=0.2,
                          what=f"REPORT in {stream}")
        assert any(f"env line {o['event']['print'][-1]}" in m for m in msgs)


def test_logs_with_the_aws_cli(server):
    name = unique_name("clilogs")
    create_function(server.lam, name, python_zip())
    ok(invoke(server.lam, name, {"print": "cli can read this b7"}))
    group = f"/aws/lambda/{name}"
    wait_until(lambda: _wait_for_stream_text(server.logs, group, "cli can read this b7"), 10)
    streams = server.aws_json("logs", "describe-log-streams", "--log-group-name", group)
    stream = streams["logStreams"][0]["logStreamName"]
    events = server.aws_json("logs", "get-log-events", "--log-group-name", group,
                             "--log-stream-name", stream, "--start-from-head")
    assert any("cli can read this b7" in e["message"] for e in events["events"])


def test_missing_log_group(server):
    with pytest.raises(server.logs.exceptions.ResourceNotFoundException):
        server.logs.describe_log_streams(logGroupName=f"/aws/lambda/{unique_name('nolog')}")


def test_logs_api_for_clients_filter_and_retention(server):
    logs = server.logs
    group = f"/app/{unique_name('grp')}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s1")
    logs.create_log_stream(logGroupName=group, logStreamName="s2")
    with pytest.raises(ClientError) as e:
        logs.create_log_stream(logGroupName=group, logStreamName="s1")
    assert error_code(e.value) == "ResourceAlreadyExistsException"
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="s1", logEvents=[
        {"timestamp": now, "message": "ERROR request failed for alice"},
        {"timestamp": now + 1, "message": "ERROR request failed, retry scheduled"},
        {"timestamp": now + 2, "message": "INFO all good"},
    ])
    logs.put_log_events(logGroupName=group, logStreamName="s2", logEvents=[
        {"timestamp": now + 3, "message": "WARN disk almost full"},
    ])

    def messages(pattern, **kw):
        out = logs.filter_log_events(logGroupName=group, filterPattern=pattern, **kw)
        return [ev["message"] for ev in out["events"]]

    assert messages('ERROR "request failed" -retry') == ["ERROR request failed for alice"]
    assert messages("?WARN ?INFO") == ["INFO all good", "WARN disk almost full"]
    assert messages("", logStreamNames=["s2"]) == ["WARN disk almost full"]
    page = logs.filter_log_events(logGroupName=group, limit=2)
    assert len(page["events"]) == 2 and "nextToken" in page
    rest = logs.filter_log_events(logGroupName=group, nextToken=page["nextToken"])
    assert len(rest["events"]) == 2 and "nextToken" not in rest

    logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    g = [g for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]][0]
    assert g["retentionInDays"] == 7
    with pytest.raises(ClientError) as e:
        logs.put_retention_policy(logGroupName=group, retentionInDays=8)
    assert error_code(e.value) == "InvalidParameterException"
    logs.delete_log_group(logGroupName=group)
    with pytest.raises(ClientError) as e:
        logs.describe_log_streams(logGroupName=group)
    assert error_code(e.value) == "ResourceNotFoundException"
