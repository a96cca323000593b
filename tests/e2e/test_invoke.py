"""Invoke semantics: payloads, handler errors, timeouts, init crashes, log tails, limits,
invocation types."""
import base64
import json
import re

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import (create_function, error_code, http_status, invoke, make_zip, node_zip, ok,
                        proc_gone, python_zip, report_re, rust_echo_zip, shell_bootstrap_zip,
                        unique_name, wait_until)


def test_payload_round_trip(server):
    name = unique_name("payload")
    create_function(server.lam, name, rust_echo_zip(), runtime="provided.al2023")
    event = {"s": "héllo ✓ \u2603 \"quoted\"", "n": 1.5, "big": 2**53, "l": [None, True, False],
             "deep": {"a": {"b": {"c": []}}}, "blob": "x" * 200_000}
    assert ok(invoke(server.lam, name, event))["echo"] == event
    # Non-object JSON events are fine too.
    assert ok(invoke(server.lam, name, raw=b'"just a string"'))["echo"] == "just a string"
    assert ok(invoke(server.lam, name, raw=b"[1,2,3]"))["echo"] == [1, 2, 3]


def test_python_handler_error(server):
    name = unique_name("pyerr")
    create_function(server.lam, name, python_zip())
    inv = invoke(server.lam, name, {"fail": "kaboom 42"})
    assert inv.status == 200 and inv.function_error == "Unhandled", inv
    body = inv.payload
    assert body["errorMessage"] == "kaboom 42"
    assert body["errorType"] == "ValueError"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    assert any("lambda_function.py" in line for line in body["stackTrace"])
    # An error does not kill the warm environment: module state is still there.
    assert ok(invoke(server.lam, name, {}))["invocations"] == 2


def test_node_handler_error(server):
    name = unique_name("nodeerr")
    create_function(server.lam, name, node_zip("node/async"), runtime="nodejs20.x")
    inv = invoke(server.lam, name, {"fail": "node went wrong"})
    assert inv.status == 200 and inv.function_error == "Unhandled", inv
    assert inv.payload["errorMessage"] == "node went wrong"
    assert inv.payload["errorType"] == "Error"
    trace = inv.payload.get("trace") or inv.payload.get("stackTrace")
    assert isinstance(trace, list) and trace, inv.payload


def test_timeout_destroys_environment(process_server):
    server = process_server
    lam = server.lam
    name = unique_name("timeout")
    create_function(lam, name, rust_echo_zip(), runtime="provided.al2023", Timeout=1)
    before = ok(invoke(lam, name, {}))
    inv = invoke(lam, name, {"sleep_ms": 5000}, tail=True)
    assert inv.status == 200 and inv.function_error == "Unhandled", inv
    assert re.search(r"Task timed out after 1\.00 seconds", inv.payload["errorMessage"]), inv
    # Enforced within 100 ms of the limit (the client adds a little on top).
    assert 0.95 <= inv.elapsed < 1.25, inv.elapsed
    duration = re.search(r"REPORT RequestId: \S+\s+Duration: (\d+(?:\.\d+)?) ms", inv.log)
    assert duration and 1000 <= float(duration.group(1)) < 1100, inv.log
    # The environment is destroyed: its process goes away, the next invoke is a cold start.
    wait_until(lambda: proc_gone(before["pid"]), 5, what=f"timed-out env pid {before['pid']} gone")
    nxt = invoke(lam, name, {"after": "timeout"}, tail=True)
    after = ok(nxt)
    assert after["pid"] != before["pid"] and after["invocations_in_this_environment"] == 1
    assert "Init Duration" in nxt.log, nxt.log


def test_python_timeout_message(server):
    name = unique_name("pytimeout")
    create_function(server.lam, name, python_zip(), Timeout=2)
    inv = invoke(server.lam, name, {"sleep": 10}, tail=True)
    assert inv.function_error == "Unhandled", inv
    assert "Task timed out after 2.00 seconds" in inv.payload["errorMessage"]
    assert 1.95 <= inv.elapsed < 3.0, inv.elapsed
    assert "Task timed out after 2.00 seconds" in inv.log or "REPORT RequestId" in inv.log
    assert ok(invoke(server.lam, name, {}))["invocations"] == 1     # fresh environment


def test_init_crash_exit_error(server):
    name = unique_name("crash")
    create_function(server.lam, name, shell_bootstrap_zip(
        "#!/bin/sh\necho 'bootstrap is about to crash' >&2\nexit 1\n"), runtime="provided.al2023")
    for _ in range(2):
        inv = invoke(server.lam, name, {})
        assert inv.status == 200 and inv.function_error == "Unhandled", inv
        assert inv.payload["errorType"] in ("Runtime.ExitError", "Runtime.InitError"), inv
        assert inv.elapsed < 10
    # What the bootstrap printed before dying is in the function's log group.
    group = f"/aws/lambda/{name}"

    def crash_logged():
        for st in server.logs.describe_log_streams(logGroupName=group)["logStreams"]:
            for e in server.logs.get_log_events(logGroupName=group, logStreamName=st["logStreamName"],
                                                startFromHead=True)["events"]:
                if "bootstrap is about to crash" in e["message"]:
                    return True
    wait_until(crash_logged, 10, interval=0.2, what="crash output in the log group")
    server.assert_serving()


def test_missing_bootstrap(server):
    name = unique_name("nobootstrap")
    create_function(server.lam, name, make_zip({"readme.txt": "no bootstrap here"}),
                    runtime="provided.al2023")
    inv = invoke(server.lam, name, {})
    assert inv.function_error == "Unhandled", inv
    assert inv.payload["errorType"].startswith("Runtime."), inv
    server.assert_serving()


def test_python_import_error(server):
    name = unique_name("pyimport")
    create_function(server.lam, name, python_zip("python/import_error"))
    inv = invoke(server.lam, name, {})
    assert inv.status == 200 and inv.function_error == "Unhandled", inv
    assert inv.payload["errorType"] == "Runtime.ImportModuleError", inv
    assert inv.payload["errorMessage"].startswith("Unable to import module 'lambda_function'")
    assert "nimbus_no_such_module_xyz" in inv.payload["errorMessage"]


def test_python_handler_not_found(server):
    name = unique_name("pynohandler")
    create_function(server.lam, name, python_zip(), handler="lambda_function.nope")
    inv = invoke(server.lam, name, {})
    assert inv.function_error == "Unhandled", inv
    assert inv.payload["errorType"] == "Runtime.HandlerNotFound", inv


def test_node_import_error(server):
    name = unique_name("nodeimport")
    create_function(server.lam, name, node_zip("node/import_error"), runtime="nodejs20.x")
    inv = invoke(server.lam, name, {})
    assert inv.status == 200 and inv.function_error == "Unhandled", inv
    assert inv.payload["errorType"] == "Runtime.ImportModuleError", inv
    assert "nimbus-no-such-module-xyz" in inv.payload["errorMessage"]


def test_log_type_tail(server, tmp_path):
    name = unique_name("tail")
    create_function(server.lam, name, python_zip())
    out = server.aws_json("lambda", "invoke", "--function-name", name, "--log-type", "Tail",
                          "--payload", '{"print": "tail marker 7f3a"}', "out.json", cwd=tmp_path)
    log = base64.b64decode(out["LogResult"]).decode()
    rid = re.search(r"START RequestId: (\S+) Version: \$LATEST", log)
    assert rid, log
    rid = rid.group(1)
    assert "tail marker 7f3a" in log
    assert f"END RequestId: {rid}" in log
    assert re.search(report_re(rid), log), log
    assert log.index("START") < log.index("tail marker 7f3a") < log.index("END") < log.index("REPORT")
    # Only the last 4 KB come back.
    big = invoke(server.lam, name, {"print": "y" * 10_000}, tail=True)
    assert len(big.log.encode()) <= 4096, len(big.log.encode())
    assert "REPORT RequestId" in big.log and "yyyy" in big.log
    # Without --log-type Tail there is no LogResult.
    assert "LogResult" not in invoke(server.lam, name, {}).resp


def test_payload_over_6mb_is_rejected(server):
    name = unique_name("big")
    # 1,024 MB: CPU is proportional to memory, and echoing 5 MB is real work at 128 MB.
    create_function(server.lam, name, rust_echo_zip(), runtime="provided.al2023", MemorySize=1024)
    big = json.dumps({"data": "z" * (6 * 1024 * 1024 + 1024)}).encode()
    with pytest.raises(ClientError) as e:
        server.lam.invoke(FunctionName=name, Payload=big)
    assert error_code(e.value) == "RequestTooLargeException"
    assert http_status(e.value) == 413
    # Just under the limit is fine.
    under = json.dumps({"data": "z" * (5 * 1024 * 1024)}).encode()
    inv = invoke(server.lam, name, raw=under)
    assert inv.status == 200 and inv.function_error is None
    server.assert_serving()


def test_response_over_6mb_is_an_error(server):
    name = unique_name("bigresp")
    code = make_zip({"lambda_function.py":
                     "def handler(event, context):\n    return 'r' * (7 * 1024 * 1024)\n"})
    create_function(server.lam, name, code)
    inv = invoke(server.lam, name, {})
    assert inv.function_error == "Unhandled", inv
    assert inv.payload["errorType"] in ("Function.ResponseSizeTooLarge",
                                        "Runtime.ResponseSizeTooLarge"), inv.payload
    server.assert_serving()


def test_dry_run(server, tmp_path):
    name = unique_name("dryrun")
    create_function(server.lam, name, rust_echo_zip(), runtime="provided.al2023")
    resp = server.lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert resp["StatusCode"] == 204
    assert resp["Payload"].read() == b""
    out = server.aws_json("lambda", "invoke", "--function-name", name, "--invocation-type",
                          "DryRun", "out.json", cwd=tmp_path)
    assert out["StatusCode"] == 204
    # A dry run of a missing function is still a 404.
    with pytest.raises(server.lam.exceptions.ResourceNotFoundException):
        server.lam.invoke(FunctionName=unique_name("nope"), InvocationType="DryRun")
    # DryRun does not start an environment: the first real invoke is a cold start.
    first = invoke(server.lam, name, {}, tail=True)
    assert ok(first)["invocations_in_this_environment"] == 1 and "Init Duration" in first.log


def test_invalid_json_payload(server):
    name = unique_name("badjson")
    create_function(server.lam, name, rust_echo_zip(), runtime="provided.al2023")
    with pytest.raises(ClientError) as e:
        server.lam.invoke(FunctionName=name, Payload=b"{not json")
    assert error_code(e.value) == "InvalidRequestContentException"
    assert http_status(e.value) == 400
    assert ok(invoke(server.lam, name, {"ok": 1}))["echo"] == {"ok": 1}


def test_invoke_by_arn_and_qualifier(server):
    name = unique_name("byarn")
    arn = create_function(server.lam, name, rust_echo_zip(), runtime="provided.al2023")["FunctionArn"]
    assert ok(invoke(server.lam, arn, {"a": 1}))["echo"] == {"a": 1}
    assert ok(invoke(server.lam, name, {"b": 2}, Qualifier="$LATEST"))["echo"] == {"b": 2}
    assert ok(invoke(server.lam, f"{name}:$LATEST", {"c": 3}))["echo"] == {"c": 3}
    resp = server.lam.invoke(FunctionName=name, Payload=b"{}")
    assert resp["ExecutedVersion"] == "$LATEST"
