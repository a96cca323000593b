"""Functions (configuration + code) survive `kill -9` of the server and a restart."""
from nimbus_e2e import (create_function, invoke, node_zip, ok, proc_gone, python_zip,
                        rust_echo_zip, sha256_b64, unique_name, wait_until, wait_updated)


def test_functions_survive_kill_9(nimbus):
    # Process backend: the test checks from the host that orphaned runtimes are gone by pid.
    s = nimbus("--sandbox", "process")
    lam = s.lam
    py, rs, nd, gone = (unique_name(p) for p in ("durpy", "durrs", "durnode", "durgone"))
    py_code, rs_code = python_zip(), rust_echo_zip()
    create_function(lam, py, py_code, Environment={"Variables": {"USER_COLOR": "teal"}})
    create_function(lam, rs, rs_code, runtime="provided.al2023", MemorySize=333)
    create_function(lam, nd, node_zip("node/async"), runtime="nodejs20.x")
    create_function(lam, gone, python_zip())
    lam.update_function_configuration(FunctionName=py, Timeout=11)
    before = wait_updated(lam, py)
    lam.delete_function(FunctionName=gone)
    env_pid = ok(invoke(lam, rs, {"warm": 1}))["pid"]   # leave a live (paused) environment behind

    s.kill9()
    # Environments do not outlive a crashed server (no orphaned, stopped processes).
    wait_until(lambda: proc_gone(env_pid), 5, what=f"orphaned env {env_pid} gone")
    s.restart()
    lam = s.lam

    names = {f["FunctionName"] for f in lam.get_paginator("list_functions").paginate()
             .build_full_result()["Functions"]}
    assert names == {py, rs, nd}
    conf = lam.get_function(FunctionName=py)["Configuration"]
    assert conf["CodeSha256"] == sha256_b64(py_code) and conf["CodeSize"] == len(py_code)
    assert conf["Timeout"] == 11 and conf["RevisionId"] == before["RevisionId"]
    assert conf["Environment"]["Variables"] == {"USER_COLOR": "teal"}
    assert conf["State"] == "Active"
    assert lam.get_function(FunctionName=rs)["Configuration"]["CodeSha256"] == sha256_b64(rs_code)

    out = ok(invoke(lam, py, {"after": "restart"}))
    assert out["event"] == {"after": "restart"} and out["env"]["USER_COLOR"] == "teal"
    rs_out = ok(invoke(lam, rs, {"after": "restart"}))
    assert rs_out["echo"] == {"after": "restart"} and rs_out["memory_size"] == "333"
    assert ok(invoke(lam, nd, {"n": 1}))["style"] == "async"

    # The restarted server takes new work normally, and a second crash loses nothing.
    new = unique_name("durnew")
    create_function(lam, new, python_zip())
    s.kill9()
    s.restart()
    assert ok(invoke(s.lam, new, {"again": 1}))["event"] == {"again": 1}
    assert ok(invoke(s.lam, py, {}))["env"]["USER_COLOR"] == "teal"
