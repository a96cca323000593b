"""`nimbus server` start-up contract: ready line, health endpoint, env-var configuration."""
import json
import os

from nimbus_e2e import create_function, invoke, ok, python_zip, unique_name


def test_ready_line_and_health(server):
    # auto: the container backend where namespaces and cgroups work (root), else process.
    expected = "container" if os.geteuid() == 0 else "process"
    assert server.sandbox == expected
    out = (server.log_dir / "stdout.1.log").read_text()
    assert f"sandbox backend: {expected} (auto: " in out, out
    status, headers, body = server.http("GET", "/_nimbus/health")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["status"] == "ok"
    assert doc["sandbox"] == expected
    assert isinstance(doc["version"], str) and doc["version"]


def test_listen_and_data_dir_from_environment(nimbus, tmp_path):
    data = tmp_path / "env-data"
    s = nimbus(use_flags=False, env={"NIMBUS_LISTEN": "127.0.0.1:0", "NIMBUS_DATA_DIR": str(data),
                                     "USER_HOST_ONLY_SECRET": "must-not-leak"})
    assert s.healthy()
    name = unique_name("envcfg")
    create_function(s.lam, name, python_zip())
    out = ok(invoke(s.lam, name, {"k": 1}))
    assert out["event"] == {"k": 1}
    # The environment gets its own env (not the server's) and runs in its task root.
    assert "USER_HOST_ONLY_SECRET" not in out["env"], out["env"]
    assert os.path.realpath(out["cwd"]) == os.path.realpath(out["env"]["LAMBDA_TASK_ROOT"])
    # State went to NIMBUS_DATA_DIR, not to ./.nimbus in the working directory.
    assert data.is_dir() and any(data.iterdir())
    assert not (s.log_dir / ".nimbus").exists()
    s.stop()
    # And it is found there again by a restart configured the same way.
    s.restart()
    assert s.lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
