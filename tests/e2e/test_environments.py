"""Execution environments: cold then warm, one environment per concurrent invoke, the
account concurrency limit, pausing idle environments, reaping, and retiring on update."""
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import (create_function, error_code, http_status, invoke, make_zip, ok,
                        proc_gone, proc_state, python_zip, rust_echo_zip, unique_name,
                        wait_until, wait_updated)


@pytest.fixture
def server(process_server):
    """These tests tell environments apart by their host pid and watch their SIGSTOP state
    from the host, so they run on the process backend; the container backend's equivalents
    (cgroup freezer, tree kill, isolation) are in test_sandbox_container.py."""
    return process_server


def test_cold_then_warm_report(server):
    name = unique_name("coldwarm")
    create_function(server.lam, name, python_zip())
    cold = invoke(server.lam, name, {}, tail=True)
    warm = invoke(server.lam, name, {}, tail=True)
    ok(cold), ok(warm)
    assert re.search(r"Init Duration: \d+(\.\d+)? ms", cold.log), cold.log
    assert "REPORT RequestId" in warm.log and "Init Duration" not in warm.log, warm.log
    assert warm.payload["invocations"] == 2


def _parallel(fn, n):
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=10)
        return fn(i)

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(run, range(n)))


def test_concurrent_invokes_get_separate_environments(server):
    lam = server.lam
    name = unique_name("conc")
    create_function(lam, name, rust_echo_zip(), runtime="provided.al2023")
    t0 = time.monotonic()
    outs = _parallel(lambda i: ok(invoke(lam, name, {"sleep_ms": 500, "i": i})), 8)
    wall = time.monotonic() - t0
    assert sorted(o["echo"]["i"] for o in outs) == list(range(8))
    assert len({o["pid"] for o in outs}) == 8, [o["pid"] for o in outs]
    assert len({o["request_id"] for o in outs}) == 8
    assert wall < 2.5, f"8 concurrent 500 ms invokes took {wall:.2f}s: not run in parallel"
    # Afterwards the warm environments are reused, not started anew.
    again = _parallel(lambda i: ok(invoke(lam, name, {"sleep_ms": 300})), 4)
    assert {o["pid"] for o in again} <= {o["pid"] for o in outs}


def test_each_environment_has_its_own_runtime_api(server):
    lam = server.lam
    name = unique_name("concpy")
    create_function(lam, name, python_zip())
    outs = _parallel(lambda i: ok(invoke(lam, name, {"sleep": 0.7})), 3)
    assert len({o["pid"] for o in outs}) == 3
    assert len({o["env"]["AWS_LAMBDA_RUNTIME_API"] for o in outs}) == 3, \
        [o["env"]["AWS_LAMBDA_RUNTIME_API"] for o in outs]
    assert len({o["env"]["AWS_LAMBDA_LOG_STREAM_NAME"] for o in outs}) == 3


def test_account_concurrency_limit(nimbus):
    s = nimbus("--max-concurrency", "2")
    lam = s.lam
    name = unique_name("limit")
    create_function(lam, name, rust_echo_zip(), runtime="provided.al2023")
    results = []

    def slow(i):
        results.append(ok(invoke(lam, name, {"sleep_ms": 2000})))

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.7)                  # both are running now
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=name, Payload=b'{"third": true}')
    assert error_code(e.value) == "TooManyRequestsException"
    assert http_status(e.value) == 429
    assert e.value.response.get("Reason") == "ConcurrentInvocationLimitExceeded", e.value.response
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2
    # Capacity is back once they finish.
    assert ok(invoke(lam, name, {"after": 1}))["echo"] == {"after": 1}
    s.assert_serving()


def test_idle_environment_is_paused_and_resumed(server):
    lam = server.lam
    name = unique_name("pause")
    create_function(lam, name, rust_echo_zip(), runtime="provided.al2023")
    pid = ok(invoke(lam, name, {}))["pid"]
    wait_until(lambda: proc_state(pid) == "T", 3, what=f"env {pid} stopped (SIGSTOP) while idle")
    out = ok(invoke(lam, name, {"resumed": True}))
    assert out["pid"] == pid and out["invocations_in_this_environment"] == 2
    wait_until(lambda: proc_state(pid) == "T", 3, what=f"env {pid} stopped again")


def test_idle_environment_is_reaped(nimbus):
    s = nimbus("--sandbox", "process", "--env-idle-timeout", "1")
    name = unique_name("reap")
    create_function(s.lam, name, rust_echo_zip(), runtime="provided.al2023")
    pid = ok(invoke(s.lam, name, {}))["pid"]
    wait_until(lambda: proc_gone(pid), 10, interval=0.2, what=f"idle env {pid} reaped")
    nxt = invoke(s.lam, name, {}, tail=True)
    out = ok(nxt)
    assert out["pid"] != pid and out["invocations_in_this_environment"] == 1
    assert "Init Duration" in nxt.log, nxt.log


def test_update_configuration_retires_environments(server):
    lam = server.lam
    name = unique_name("retire")
    create_function(lam, name, rust_echo_zip(), runtime="provided.al2023")
    before = ok(invoke(lam, name, {}))
    assert before["memory_size"] == "128"
    lam.update_function_configuration(FunctionName=name, MemorySize=256)
    wait_updated(lam, name)
    nxt = invoke(lam, name, {}, tail=True)
    after = ok(nxt)
    assert after["memory_size"] == "256"
    assert after["pid"] != before["pid"] and after["invocations_in_this_environment"] == 1
    assert "Init Duration" in nxt.log and "Memory Size: 256 MB" in nxt.log, nxt.log
    wait_until(lambda: proc_gone(before["pid"]), 5, what="old environment stopped")


def test_update_environment_variables_visible(server):
    lam = server.lam
    name = unique_name("envupd")
    create_function(lam, name, python_zip(), Environment={"Variables": {"USER_COLOR": "red"}})
    first = ok(invoke(lam, name, {}))
    assert first["env"]["USER_COLOR"] == "red"
    lam.update_function_configuration(FunctionName=name,
                                      Environment={"Variables": {"USER_COLOR": "blue"}})
    wait_updated(lam, name)
    second = ok(invoke(lam, name, {}))
    assert second["env"]["USER_COLOR"] == "blue"
    assert second["invocations"] == 1 and second["pid"] != first["pid"]


def test_update_code_retires_environments(server):
    lam = server.lam
    name = unique_name("codeupd")
    v = "import os\nN=[0]\ndef handler(e, c):\n    N[0]+=1\n    return ['{}', N[0], os.getpid()]\n"
    create_function(lam, name, make_zip({"lambda_function.py": v.format("v1")}))
    assert ok(invoke(lam, name, {}))[:2] == ["v1", 1]
    assert ok(invoke(lam, name, {}))[:2] == ["v1", 2]
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"lambda_function.py": v.format("v2")}))
    wait_updated(lam, name)
    assert ok(invoke(lam, name, {}))[:2] == ["v2", 1]


def test_delete_function_stops_its_environments(server):
    lam = server.lam
    name = unique_name("delenv")
    create_function(lam, name, rust_echo_zip(), runtime="provided.al2023")
    pid = ok(invoke(lam, name, {}))["pid"]
    lam.delete_function(FunctionName=name)
    wait_until(lambda: proc_gone(pid), 5, what=f"env {pid} of the deleted function gone")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Payload=b"{}")
