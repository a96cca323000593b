"""Runtimes: Nimbus's Python and Node bootstraps on the host interpreters, `provided` with a
real `lambda_runtime` (crates.io) binary, the pip `awslambdaric` client, and a raw Runtime
API client that checks the wire details (headers, env vars, /error, /init/error)."""
import re
import time
import uuid

import pytest

from nimbus_e2e import (STREAM_RE, create_function, invoke, make_zip, node_zip, ok, python_zip,
                        raw_runtime_zip, ric_zip, rust_echo_zip, unique_name)

UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
RUNTIME_API_RE = r"^[A-Za-z0-9.\-\[\]:]+:\d+$"


@pytest.mark.parametrize("runtime", ["python3.9", "python3.10", "python3.11", "python3.12",
                                     "python3.13"])
def test_python_runtimes(server, runtime):
    name = unique_name(runtime.replace(".", ""))
    create_function(server.lam, name, python_zip(), runtime=runtime)
    out = ok(invoke(server.lam, name, {"runtime": runtime}))
    assert out["event"] == {"runtime": runtime}


def test_python_warm_state_and_context(server):
    lam = server.lam
    name = unique_name("pystate")
    arn = create_function(lam, name, python_zip(), MemorySize=256, Timeout=7)["FunctionArn"]
    outs = []
    for i in range(3):
        inv = invoke(lam, name, {"i": i})
        outs.append(ok(inv))
        ctx = outs[-1]["context"]
        assert re.match(UUID_RE, ctx["aws_request_id"])
        assert ctx["aws_request_id"] == inv.request_id     # x-amzn-RequestId is the invocation's
    # Module state persisted: the same warm environment answered all three.
    assert [o["invocations"] for o in outs] == [1, 2, 3]
    assert len({o["pid"] for o in outs}) == 1
    assert len({o["context"]["aws_request_id"] for o in outs}) == 3
    ctx = outs[0]["context"]
    assert ctx["function_name"] == name
    assert ctx["function_version"] == "$LATEST"
    assert ctx["memory_limit_in_mb"] == 256
    assert ctx["invoked_function_arn"] == arn
    assert 0 < ctx["remaining_ms"] <= 7000 and ctx["remaining_ms"] > 5000, ctx["remaining_ms"]
    assert ctx["log_group_name"] == f"/aws/lambda/{name}"
    assert re.fullmatch(STREAM_RE, ctx["log_stream_name"]), ctx["log_stream_name"]


def test_runtime_environment_variables(server):
    lam = server.lam
    name = unique_name("pyenv")
    create_function(lam, name, python_zip(), MemorySize=384,
                    Environment={"Variables": {"USER_COLOR": "green", "USER_EMPTY": ""}})
    out = ok(invoke(lam, name))
    env = out["env"]
    assert re.match(RUNTIME_API_RE, env["AWS_LAMBDA_RUNTIME_API"]), env
    assert env["_HANDLER"] == "lambda_function.handler"
    assert env["LAMBDA_TASK_ROOT"] and out["task_root_has_handler"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "384"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert re.fullmatch(STREAM_RE, env["AWS_LAMBDA_LOG_STREAM_NAME"])
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == out["context"]["log_stream_name"]
    assert env["USER_COLOR"] == "green" and env["USER_EMPTY"] == ""


def test_region_comes_from_the_request(server):
    lam = server.client("lambda", region="ap-southeast-2")
    name = unique_name("pyregion")
    create_function(lam, name, python_zip())
    assert ok(invoke(lam, name))["env"]["AWS_REGION"] == "ap-southeast-2"


@pytest.mark.parametrize("runtime", ["nodejs18.x", "nodejs20.x", "nodejs22.x"])
def test_node_async_handler(server, runtime):
    lam = server.lam
    name = unique_name(runtime.replace(".", ""))
    arn = create_function(lam, name, node_zip("node/async"), runtime=runtime, MemorySize=192,
                          Environment={"Variables": {"USER_VAR": "node-env"}})["FunctionArn"]
    first = invoke(lam, name, {"n": [1, 2]})
    out = ok(first)
    assert out["style"] == "async" and out["event"] == {"n": [1, 2]}
    assert out["requestId"] == first.request_id and re.match(UUID_RE, out["requestId"])
    assert out["functionName"] == name and out["invokedFunctionArn"] == arn
    assert out["memoryLimitInMB"] == "192" and out["userVar"] == "node-env"
    assert 0 < out["remainingMs"] <= 3000
    second = ok(invoke(lam, name, {"n": 3}))
    assert second["invocations"] == 2 and second["pid"] == out["pid"]


def test_node_callback_handler(server):
    name = unique_name("nodecb")
    create_function(server.lam, name, node_zip("node/callback"), runtime="nodejs20.x")
    out = ok(invoke(server.lam, name, {"cb": True}))
    assert out["style"] == "callback" and out["event"] == {"cb": True}
    err = invoke(server.lam, name, {"fail": "callback failure"})
    assert err.function_error == "Unhandled", err
    assert err.payload["errorMessage"] == "callback failure"
    assert err.payload["errorType"] == "Error"


def test_node_esm_handler(server):
    name = unique_name("nodeesm")
    create_function(server.lam, name, node_zip("node/esm"), runtime="nodejs22.x")
    out = ok(invoke(server.lam, name, {"esm": 1}))
    assert out["style"] == "esm" and out["event"] == {"esm": 1} and len(out["sha"]) == 64


@pytest.mark.parametrize("runtime", ["provided.al2023", "provided.al2"])
def test_provided_rust_lambda_runtime(server, runtime):
    """A real function built with crates.io `lambda_runtime` runs unchanged as `bootstrap`."""
    lam = server.lam
    name = unique_name("rust")
    arn = create_function(lam, name, rust_echo_zip(), runtime=runtime, MemorySize=256)["FunctionArn"]
    first = invoke(lam, name, {"hello": "rust", "nested": {"a": [1, None, True]}})
    out = ok(first)
    assert out["echo"] == {"hello": "rust", "nested": {"a": [1, None, True]}}
    assert out["request_id"] == first.request_id
    assert out["invoked_function_arn"] == arn
    assert out["function_name"] == name and out["memory_size"] == "256"
    now_ms = time.time() * 1000
    assert now_ms < out["deadline_ms"] <= now_ms + 3000 + 1000
    again = ok(invoke(lam, name, {"again": True}))
    assert again["invocations_in_this_environment"] == 2 and again["pid"] == out["pid"]
    err = invoke(lam, name, {"fail": "rust says no"})
    assert err.function_error == "Unhandled" and err.payload["errorMessage"] == "rust says no"


def test_python_through_awslambdaric(process_server):
    """The pip-installed `awslambdaric` runs unchanged as a provided.al2023 bootstrap."""
    server = process_server
    try:
        import awslambdaric  # noqa: F401  (installed by scripts/test.sh)
    except ImportError:
        pytest.fail("awslambdaric is not installed in the test venv (scripts/test.sh installs it)")
    lam = server.lam
    name = unique_name("ric")
    arn = create_function(lam, name, ric_zip(), runtime="provided.al2023",
                          handler="lambda_function.handler", MemorySize=512)["FunctionArn"]
    first = invoke(lam, name, {"via": "ric"})
    out = ok(first)
    assert out["ric"] is True and out["event"] == {"via": "ric"}
    assert out["request_id"] == first.request_id and out["function_name"] == name
    assert int(out["memory"]) == 512 and out["arn"] == arn
    assert 0 < out["remaining_ms"] <= 3000
    second = ok(invoke(lam, name, {"via": "ric", "n": 2}))
    assert second["n"] == 2 and second["pid"] == out["pid"]
    err = invoke(lam, name, {"fail": "ric failure"})
    assert err.function_error == "Unhandled", err
    assert err.payload["errorMessage"] == "ric failure"
    assert err.payload["errorType"] == "RuntimeError"
    assert isinstance(err.payload.get("stackTrace"), list)


def test_runtime_api_wire_details(process_server):
    """A raw Runtime API client sees AWS's /next headers and env vars."""
    server = process_server
    lam = server.lam
    name = unique_name("raw")
    arn = create_function(lam, name, raw_runtime_zip(), runtime="provided.al2023",
                          handler="my.handler", Timeout=9, MemorySize=640,
                          Environment={"Variables": {"USER_VAR": "raw-env"}})["FunctionArn"]
    before_ms = time.time() * 1000
    inv = invoke(lam, name, {"raw": [1, "two"]})
    out = ok(inv)
    h = out["headers"]
    assert out["next_status"] == 200
    assert out["event"] == {"raw": [1, "two"]}
    assert h["lambda-runtime-aws-request-id"] == inv.request_id
    assert re.match(UUID_RE, h["lambda-runtime-aws-request-id"])
    assert h["lambda-runtime-invoked-function-arn"] == arn
    assert h.get("lambda-runtime-trace-id", "").startswith("Root=1-"), h
    deadline = int(h["lambda-runtime-deadline-ms"])
    assert before_ms + 8000 < deadline <= out["now_ms"] + 9000 + 50, (before_ms, deadline)
    env = out["env"]
    assert re.match(RUNTIME_API_RE, env["AWS_LAMBDA_RUNTIME_API"])
    assert env["_HANDLER"] == "my.handler"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "640"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert re.fullmatch(STREAM_RE, env["AWS_LAMBDA_LOG_STREAM_NAME"])
    assert env["LAMBDA_TASK_ROOT"] and env["USER_VAR"] == "raw-env"

    # POST /invocation/{id}/error: the posted error is the function's error.
    err = invoke(lam, name, {"report_error": True})
    assert err.status == 200 and err.function_error == "Unhandled", err
    assert err.payload["errorType"] == "Custom.Reported"
    assert err.payload["errorMessage"] == "reported by runtime"
    # The same environment keeps serving after reporting an error.
    again = ok(invoke(lam, name, {"x": 1}))
    assert again["pid"] == out["pid"] and again["count"] == 3


def test_runtime_api_init_error(process_server):
    """POST /runtime/init/error then exit: the invoke returns that error, the server lives."""
    server = process_server
    lam = server.lam
    name = unique_name("rawinit")
    create_function(lam, name, raw_runtime_zip(), runtime="provided.al2023",
                    Environment={"Variables": {"INIT_ERROR": "1"}})
    for _ in range(2):
        err = invoke(lam, name, {})
        assert err.status == 200 and err.function_error == "Unhandled", err
        assert err.payload["errorType"] == "Custom.InitFailure", err
        assert err.payload["errorMessage"] == "init went wrong"
        assert err.elapsed < 10
    server.assert_serving()


def test_shell_bootstrap_reads_package_files(process_server):
    """Non-executable data files ride along; a shell-script bootstrap can read them."""
    server = process_server
    token = uuid.uuid4().hex
    script = f"""#!/bin/sh
set -e
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation"
while true; do
  HEADERS=$(mktemp)
  EVENT=$({_curlish()} )
  ID=$(grep -i '^lambda-runtime-aws-request-id:' "$HEADERS" | tr -d '\\r' | cut -d' ' -f2)
  DATA=$(cat "$LAMBDA_TASK_ROOT/data/token.txt")
  printf '{{"data":"%s","event":%s}}' "$DATA" "$EVENT" > "$HEADERS.out"
  {_post()}
done
"""
    name = unique_name("shell")
    create_function(server.lam, name,
                    make_zip({"bootstrap": script, "data/token.txt": token}),
                    runtime="provided.al2023")
    out = ok(invoke(server.lam, name, {"k": "v"}))
    assert out == {"data": token, "event": {"k": "v"}}


def _curlish() -> str:
    # The host's python3 as an HTTP client (no curl dependency): GET /next, headers to file.
    import sys
    return (f"{sys.executable} -c \"import sys,urllib.request as u; "
            f"r=u.urlopen(sys.argv[1]+'/next', timeout=None); "
            f"open(sys.argv[2],'w').write(''.join(k+': '+v+chr(10) for k,v in r.headers.items())); "
            f"sys.stdout.write(r.read().decode())\" \"$API\" \"$HEADERS\"")


def _post() -> str:
    import sys
    return (f"{sys.executable} -c \"import sys,urllib.request as u; "
            f"u.urlopen(u.Request(sys.argv[1]+'/'+sys.argv[2]+'/response', "
            f"data=open(sys.argv[3],'rb').read(), method='POST'))\" \"$API\" \"$ID\" \"$HEADERS.out\"")
