"""pytest fixtures for Nimbus's end-to-end tests.

`server`: one `nimbus server` per test session (per xdist worker) with default flags.
`nimbus`: a factory for servers with their own flags and data dir, stopped after the test.
On a test failure, the stderr each server wrote during the test is attached to the report.
"""
import os
import uuid

import pytest

from nimbus_e2e import ALL_SERVERS, NimbusServer

# Hermetic AWS client settings (scripts/test.sh sets the same; this covers a bare `pytest`).
for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1", "AWS_PAGER": "",
             "AWS_EC2_METADATA_DISABLED": "true"}.items():
    os.environ.setdefault(k, v)
os.environ["AWS_CONFIG_FILE"] = "/nonexistent/nimbus-e2e-aws-config"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/nimbus-e2e-aws-credentials"
for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA"):
    os.environ.pop(k, None)

_stderr_marks = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("nimbus-session")
    s = NimbusServer(base / "data", base / "logs").start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def process_server(tmp_path_factory):
    """A server on the process backend, for tests that look at environments from the host
    (their pids, SIGSTOP state) or run host programs (the test venv's python) as a
    `provided` bootstrap — things an isolated container sandbox rightly hides."""
    base = tmp_path_factory.mktemp("nimbus-process")
    s = NimbusServer(base / "data", base / "logs", ("--sandbox", "process")).start()
    yield s
    s.stop()


@pytest.fixture
def nimbus(tmp_path):
    """Factory: nimbus("--max-concurrency", "2") starts a fresh server with those flags."""
    started = []

    def start(*args, env=None, use_flags=True, data_dir=None):
        d = tmp_path / f"srv-{uuid.uuid4().hex[:6]}"
        s = NimbusServer(data_dir or d / "data", d / "logs", args, env=env, use_flags=use_flags)
        started.append(s)
        return s.start()

    yield start
    for s in started:
        s.stop()


@pytest.fixture(autouse=True)
def _remember_server_logs(request):
    request.node.stash[_stderr_marks] = {
        id(s): s.stderr_path.stat().st_size if s.stderr_path.exists() else 0
        for s in ALL_SERVERS}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    marks = item.stash.get(_stderr_marks, {})
    for s in ALL_SERVERS:
        if not s.stderr_path.exists():
            continue
        data = s.stderr_path.read_bytes()[marks.get(id(s), 0):]
        died = s.died_unexpectedly()
        if data or died:
            text = data[-4000:].decode(errors="replace") if data else s.stderr_tail()
            rep.sections.append(
                (f"nimbus server stderr ({s.endpoint or s.data_dir}) [{rep.when}]",
                 (f"*** {died} ***\n" if died else "") + text))


def pytest_sessionfinish(session, exitstatus):
    for s in ALL_SERVERS:
        try:
            s.stop()
        except Exception:  # noqa: BLE001
            pass
