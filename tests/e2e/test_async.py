"""Asynchronous (`Event`) invocations: 202 at once, durable across `kill -9`, retried twice
on function errors (Lambda's default), run at least once."""
import json
import time

from nimbus_e2e import create_function, make_zip, unique_name, wait_until

SINK = """
import json, os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    path = os.path.join(os.environ["OUT"], event["id"])
    with open(path, "a") as f:
        f.write(context.aws_request_id + "\\n")
    if event.get("fail"):
        raise RuntimeError("failing on purpose")
    return {"ok": True}
"""


def _sink(s, tmp_path, name):
    # The sink counts attempts in files on the host: its servers use the process backend.
    out = tmp_path / f"out-{name}"
    out.mkdir()
    create_function(s.lam, name, make_zip({"lambda_function.py": SINK}),
                    Environment={"Variables": {"OUT": str(out)}}, Timeout=30)
    return out


def test_event_invocations_survive_kill_9(nimbus, tmp_path):
    s = nimbus("--sandbox", "process")
    name = unique_name("asyncdur")
    out = _sink(s, tmp_path, name)
    ids = [f"e{i}" for i in range(12)]
    for i in ids:
        r = s.lam.invoke(FunctionName=name, InvocationType="Event",
                         Payload=json.dumps({"id": i, "sleep": 1.5}).encode())
        assert r["StatusCode"] == 202
    s.kill9()                      # every event is in flight or queued, none finished
    assert not any((out / i).exists() for i in ids)
    s.restart()
    wait_until(lambda: all((out / i).exists() for i in ids), 60, what="all events processed")


def test_failed_event_is_retried_twice_with_the_same_request_id(nimbus, tmp_path):
    s = nimbus("--sandbox", "process", "--async-retry-delay", "0.3")
    name = unique_name("asyncretry")
    out = _sink(s, tmp_path, name)
    r = s.lam.invoke(FunctionName=name, InvocationType="Event",
                     Payload=json.dumps({"id": "bad", "fail": True}).encode())
    assert r["StatusCode"] == 202
    request_id = r["ResponseMetadata"]["RequestId"]
    wait_until(lambda: (out / "bad").exists() and len((out / "bad").read_text().split()) == 3, 20,
               what="three attempts")
    time.sleep(1.5)                # the retry delays were 0.3 s and 0.6 s: no fourth attempt comes
    attempts = (out / "bad").read_text().split()
    assert attempts == [request_id] * 3, attempts


def test_event_payload_over_256_kb_is_refused(server):
    name = unique_name("asyncbig")
    create_function(server.lam, name, make_zip({"lambda_function.py": SINK}))
    try:
        server.lam.invoke(FunctionName=name, InvocationType="Event",
                          Payload=json.dumps({"id": "x", "pad": "a" * 300_000}).encode())
        raise AssertionError("expected RequestTooLargeException")
    except server.lam.exceptions.RequestTooLargeException as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_event_invoke_config_limits_retries(nimbus, tmp_path):
    s = nimbus("--sandbox", "process", "--async-retry-delay", "0.2")
    name = unique_name("asynccfg")
    out = _sink(s, tmp_path, name)
    cfg = s.lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert cfg["MaximumRetryAttempts"] == 0 and cfg["FunctionArn"].endswith(f":function:{name}")
    assert s.lam.get_function_event_invoke_config(FunctionName=name)["MaximumRetryAttempts"] == 0
    s.lam.update_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=120)
    got = s.lam.get_function_event_invoke_config(FunctionName=name)
    assert (got["MaximumRetryAttempts"], got["MaximumEventAgeInSeconds"]) == (0, 120)
    s.lam.invoke(FunctionName=name, InvocationType="Event",
                 Payload=json.dumps({"id": "once", "fail": True}).encode())
    wait_until(lambda: (out / "once").exists(), 20, what="first attempt")
    time.sleep(1.5)
    assert len((out / "once").read_text().split()) == 1, "MaximumRetryAttempts=0: no retry"
    s.lam.delete_function_event_invoke_config(FunctionName=name)
    try:
        s.lam.get_function_event_invoke_config(FunctionName=name)
        raise AssertionError("expected ResourceNotFoundException")
    except s.lam.exceptions.ResourceNotFoundException:
        pass
