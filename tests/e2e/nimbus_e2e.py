"""Shared helpers for Nimbus's end-to-end tests: start a real `nimbus server`, drive it with
the real AWS CLI v1 (subprocess) and boto3, build deployment packages in memory."""
from __future__ import annotations

import base64
import functools
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
ROLE = "arn:aws:iam::123456789012:role/lambda-role"
DEFAULT_ACCOUNT = "000000000000"
READY_RE = re.compile(r"nimbus listening on (http://127\.0\.0\.1:(\d+)) \(sandbox: ([\w-]+)\)")
REGISTRY_RE = re.compile(r"registry listening on http://(127\.0\.0\.1:(\d+))")
READY_TIMEOUT = 20.0
STREAM_RE = r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}"


def _path_from_env(var: str, default: str) -> Path:
    p = Path(os.environ.get(var) or default)
    return p if p.is_absolute() else ROOT / p


NIMBUS_BIN = _path_from_env("NIMBUS_BIN", "target/debug/nimbus")
RUST_ECHO_BIN = _path_from_env("RUST_ECHO_BIN", "target/debug/rust-echo")

# Every server this process started (for failure reports and final cleanup).
ALL_SERVERS: list["NimbusServer"] = []


def aws_cli() -> str:
    """The AWS CLI v1 next to the running interpreter (the test venv), else the PATH's."""
    beside = Path(sys.executable).parent / "aws"
    if beside.exists():
        return str(beside)
    found = shutil.which("aws")
    assert found, "the AWS CLI (`aws`) is not installed: run scripts/test.sh"
    return found


def client_config(**kw) -> Config:
    # total_max_attempts=1: no retries at all (botocore's max_attempts counts retries).
    return Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=60,
                  connect_timeout=5, max_pool_connections=32, **kw)


class NimbusServer:
    """One `nimbus server` process on an ephemeral port with its own data dir."""

    def __init__(self, data_dir: Path, log_dir: Path, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, use_flags: bool = True):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.args = tuple(args)
        self.env = env or {}
        self.use_flags = use_flags
        self.proc: subprocess.Popen | None = None
        self.pgids: list[int] = []
        self.endpoint = ""
        self.port = 0
        # The OCI registry listener (ECR data plane): "127.0.0.1:<port>" and its port.
        self.registry_addr = ""
        self.registry_port = 0
        self.sandbox = ""
        self.ready_line = ""
        self.starts = 0
        self.expected_exit = False
        self.stderr_path = self.log_dir / "stderr.log"
        self._clients: dict[tuple, Any] = {}
        ALL_SERVERS.append(self)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "NimbusServer":
        assert NIMBUS_BIN.exists(), f"nimbus binary not built: {NIMBUS_BIN}"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        out_path = self.log_dir / f"stdout.{self.starts}.log"
        cmd = [str(NIMBUS_BIN), "server"]
        if self.use_flags:
            cmd += ["--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)]
            if not any(a.startswith("--registry-listen") for a in self.args):
                cmd += ["--registry-listen", "127.0.0.1:0"]
        cmd += list(self.args)
        # Never the fixed default registry port: parallel servers would collide on it.
        env = {**os.environ, "NIMBUS_REGISTRY_LISTEN": "127.0.0.1:0", **self.env}
        with open(out_path, "wb") as out, open(self.stderr_path, "ab") as err:
            err.write(f"\n--- start #{self.starts}: {' '.join(cmd)}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         env=env, cwd=str(self.log_dir), start_new_session=True)
        self.pgids.append(self.proc.pid)
        self.expected_exit = False
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            text = out_path.read_text(errors="replace")
            m = READY_RE.search(text)
            if m:
                self.ready_line = m.group(0)
                self.endpoint, self.port, self.sandbox = m.group(1), int(m.group(2)), m.group(3)
                # The registry's line follows the ready line at once.
                r = REGISTRY_RE.search(text)
                settle = time.monotonic() + 5
                while r is None and time.monotonic() < settle and self.proc.poll() is None:
                    time.sleep(0.01)
                    r = REGISTRY_RE.search(out_path.read_text(errors="replace"))
                if r:
                    self.registry_addr, self.registry_port = r.group(1), int(r.group(2))
                self._clients.clear()
                return self
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"nimbus server exited with {self.proc.returncode} before it was ready;\n"
                    f"stdout: {text[-2000:]}\nstderr tail:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError(
                    f"nimbus server printed no ready line within {READY_TIMEOUT}s;\n"
                    f"stdout: {text[-2000:]}\nstderr tail:\n{self.stderr_tail()}")
            time.sleep(0.01)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; then kill whatever is left in its process groups."""
        self.expected_exit = True
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reap_groups()

    def kill9(self) -> None:
        """Crash the server (SIGKILL, no chance to clean up); its children are left alone."""
        self.expected_exit = True
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=5)

    def restart(self) -> "NimbusServer":
        """Start again on the same data dir (after stop() or kill9()); new ephemeral port."""
        if self.alive():
            self.stop()
        return self.start()

    def _reap_groups(self) -> None:
        for pgid in self.pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def died_unexpectedly(self) -> str | None:
        """A description if the server process ended without stop()/kill9() asking it to."""
        if self.proc is None or self.expected_exit or self.proc.poll() is None:
            return None
        rc = self.proc.returncode
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        return f"nimbus server {self.endpoint} ended unexpectedly ({how})"

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except FileNotFoundError:
            return "<no stderr>"
        return data[-n:].decode(errors="replace")

    # -- clients -------------------------------------------------------------------------
    def client(self, service: str = "lambda", region: str = "us-east-1", key: str = "test",
               secret: str = "test", **config_kw):
        k = (service, region, key, secret, tuple(sorted(config_kw.items())))
        if k not in self._clients:
            self._clients[k] = boto3.session.Session().client(
                service, endpoint_url=self.endpoint, region_name=region,
                aws_access_key_id=key, aws_secret_access_key=secret,
                config=client_config(**config_kw))
        return self._clients[k]

    @property
    def lam(self):
        return self.client("lambda")

    @property
    def logs(self):
        return self.client("logs")

    def aws(self, *args: str, check: bool = True, region: str = "us-east-1",
            env: dict[str, str] | None = None, cwd: str | Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Runs `aws --endpoint-url <server> ARGS` (CLI v1)."""
        cmd = [aws_cli(), "--endpoint-url", self.endpoint, "--region", region, "--output", "json",
               *args]
        full_env = {**os.environ, **(env or {})}
        p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}\n{p.stdout}")
        return p

    def aws_json(self, *args: str, **kw) -> dict:
        out = self.aws(*args, **kw).stdout
        return json.loads(out) if out.strip() else {}

    # -- raw HTTP --------------------------------------------------------------------------
    def http(self, method: str, path: str, body: bytes | str | None = None,
             headers: dict[str, str] | None = None, timeout: float = 30):
        """One raw HTTP request (no signing). Returns (status, lower-cased headers, body)."""
        if isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def healthy(self) -> bool:
        try:
            status, _, body = self.http("GET", "/_nimbus/health", timeout=5)
            return status == 200 and json.loads(body).get("status") == "ok"
        except Exception:
            return False

    def assert_serving(self) -> None:
        """The server still answers both its health check and a real API call."""
        assert self.alive(), f"nimbus server died:\n{self.stderr_tail()}"
        assert self.healthy(), "health check failed"
        assert "Functions" in self.lam.list_functions(MaxItems=1)


def aws_error_code(headers: dict[str, str], body: bytes) -> str | None:
    """The AWS error code of a raw response, the way botocore finds it (REST-JSON)."""
    code = headers.get("x-amzn-errortype")
    if code:
        return code.split(":")[0]
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict):
        code = doc.get("__type") or doc.get("code") or doc.get("Code")
        if code:
            return code.split("#")[-1]
    return None


# -- deployment packages ---------------------------------------------------------------------
EXECUTABLE_NAMES = ("bootstrap",)


def make_zip(files: dict[str, bytes | str], executables=EXECUTABLE_NAMES) -> bytes:
    """A zip built in memory; `executables` (by base name) get mode 0755, others 0644."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if Path(name).name in executables else 0o644
            zi.external_attr = (0o100000 | mode) << 16
            z.writestr(zi, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def fixture_files(rel: str) -> dict[str, bytes]:
    base = FIXTURES / rel
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def python_zip(rel: str = "python/basic") -> bytes:
    return make_zip(fixture_files(rel))


def node_zip(rel: str = "node/async") -> bytes:
    return make_zip(fixture_files(rel))


def _bootstrap_from_template(rel: str) -> dict[str, bytes]:
    files = fixture_files(rel)
    tpl = files.pop("bootstrap.in").decode()
    files["bootstrap"] = tpl.replace("@PYTHON@", sys.executable).encode()
    return files


def raw_runtime_zip() -> bytes:
    """provided.al2023 package whose bootstrap is a raw Runtime API client (Python)."""
    return make_zip(_bootstrap_from_template("python/raw_runtime"))


def ric_zip() -> bytes:
    """provided.al2023 package whose bootstrap runs the pip-installed awslambdaric."""
    return make_zip(_bootstrap_from_template("python/ric"))


@functools.lru_cache(maxsize=None)
def rust_echo_zip() -> bytes:
    """provided.al2023 package: the `lambda_runtime` (crates.io) rust-echo binary as bootstrap."""
    assert RUST_ECHO_BIN.exists(), f"rust-echo not built: {RUST_ECHO_BIN} (cargo build --workspace)"
    return make_zip({"bootstrap": RUST_ECHO_BIN.read_bytes()})


def shell_bootstrap_zip(script: str) -> bytes:
    return make_zip({"bootstrap": script})


@functools.lru_cache(maxsize=None)
def zip_bomb(total_mb: int = 300, per_entry_mb: int = 100) -> bytes:
    """A small (~300 KB) zip whose entries inflate to `total_mb` MB of zeros."""
    buf = io.BytesIO()
    chunk = b"\0" * (1 << 20)
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lambda_function.py", "def handler(e, c):\n    return 1\n")
        for i in range(total_mb // per_entry_mb):
            zi = zipfile.ZipInfo(f"zeros{i}.bin", date_time=(2024, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            with z.open(zi, "w", force_zip64=True) as f:
                for _ in range(per_entry_mb):
                    f.write(chunk)
    return buf.getvalue()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# -- functions -------------------------------------------------------------------------------
def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


RUNTIME_DEFAULT_HANDLER = {"python": "lambda_function.handler", "nodejs": "index.handler",
                           "provided": "bootstrap"}


def create_function(lam, name: str, code: bytes, runtime: str = "python3.12",
                    handler: str | None = None, **kw) -> dict:
    if handler is None:
        handler = next(v for k, v in RUNTIME_DEFAULT_HANDLER.items() if runtime.startswith(k))
    return lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler,
                               Code={"ZipFile": code}, **kw)


def wait_updated(lam, name: str, timeout: float = 15) -> dict:
    """Polls until LastUpdateStatus is Successful (AWS updates may be asynchronous)."""
    def done():
        c = lam.get_function_configuration(FunctionName=name)
        return c if c.get("LastUpdateStatus") == "Successful" else None
    return wait_until(done, timeout, interval=0.1, what=f"{name} LastUpdateStatus Successful")


class Invocation:
    def __init__(self, resp: dict, elapsed: float):
        self.resp = resp
        self.elapsed = elapsed
        self.status = resp["StatusCode"]
        self.function_error = resp.get("FunctionError")
        self.raw = resp["Payload"].read() if "Payload" in resp else b""
        self.log = base64.b64decode(resp["LogResult"]).decode(errors="replace") \
            if resp.get("LogResult") else ""
        self.request_id = resp["ResponseMetadata"].get("RequestId")

    @property
    def payload(self):
        return json.loads(self.raw) if self.raw else None

    def __repr__(self):
        return (f"Invocation(status={self.status}, error={self.function_error}, "
                f"payload={self.raw[:500]!r}, log={self.log[-800:]!r})")


def invoke(lam, name: str, payload: Any = None, tail: bool = False, raw: bytes | None = None,
           **kw) -> Invocation:
    body = raw if raw is not None else json.dumps({} if payload is None else payload).encode()
    if tail:
        kw["LogType"] = "Tail"
    t0 = time.monotonic()
    resp = lam.invoke(FunctionName=name, Payload=body, **kw)
    return Invocation(resp, time.monotonic() - t0)


def ok(inv: Invocation) -> Any:
    assert inv.status == 200 and inv.function_error is None, inv
    return inv.payload


# -- processes and waiting ------------------------------------------------------------------
def proc_state(pid: int) -> str | None:
    """State letter from /proc/PID/stat ('R', 'S', 'T', 'Z', ...) or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2]


def proc_gone(pid: int) -> bool:
    return proc_state(pid) in (None, "Z", "X")


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def error_code(exc) -> str:
    return exc.response["Error"]["Code"]


def http_status(exc) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


def report_re(request_id: str, memory: int = 128) -> str:
    return (rf"REPORT RequestId: {re.escape(request_id)}\s+Duration: \d+(\.\d+)? ms\s+"
            rf"Billed Duration: \d+ ms\s+Memory Size: {memory} MB\s+Max Memory Used: \d+ MB")
