"""Container-image Lambda functions (PackageType=Image) end to end: an image built from files
(busybox-static + the `rust-echo` `lambda_runtime` binary with its shared libraries) is pushed
to Nimbus's OCI registry, created as a function through boto3 and invoked; the image's
ENTRYPOINT/CMD/WorkingDir/Env are honoured and ImageConfig overrides them; errors as AWS.

Needs the container sandbox (root): the image's program runs in the image's own root
filesystem, which the process sandbox cannot give — those tests skip elsewhere, saying why.
"""
from __future__ import annotations

import functools
import json
import time

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import (ROLE, RUST_ECHO_BIN, error_code, invoke, ok, unique_name, wait_until)
from oci_images import build_image, host_binary

LAUNCH_SH = b"""#!/bin/sh
# Says how the runtime was started (the function's log shows it), then becomes the runtime.
echo "launch: handler=$_HANDLER args=$* cwd=$(pwd) greeting=$GREETING uid=$(id -u) api=${AWS_LAMBDA_RUNTIME_API:+set}"
exec /app/rust-echo
"""


@functools.lru_cache(maxsize=None)
def _images():
    """Two images over the same layers: ENTRYPOINT rust-echo itself, and ENTRYPOINT a shell
    launcher with a CMD (what Lambda's base images do)."""
    assert RUST_ECHO_BIN.exists(), f"rust-echo not built: {RUST_ECHO_BIN} (cargo build -p rust-echo)"
    files = {**host_binary(RUST_ECHO_BIN, at="/app/rust-echo"), "/app/launch.sh": (LAUNCH_SH, 0o755)}
    env = {"GREETING": "from-image"}
    direct = build_image(files, entrypoint=["/app/rust-echo"], env=env, workdir="/app")
    launcher = build_image(files, entrypoint=["/app/launch.sh"], cmd=["echo.handler"], env=env, workdir="/app")
    return direct, launcher


@pytest.fixture(scope="module")
def image_server(server):
    if server.sandbox != "container":
        pytest.skip(f"image functions need the container sandbox; this server runs {server.sandbox!r}")
    assert server.registry_addr, "the server printed no registry listener"
    direct, launcher = _images()
    repo = unique_name("echo-fn").lower()
    registry = f"http://{server.registry_addr}"
    # As on AWS: the ECR repository exists before anything is pushed to it.
    server.client("ecr").create_repository(repositoryName=repo)
    direct.push(registry, repo, "v1")
    launcher.push(registry, repo, "launcher")
    server.image_repo = repo
    return server


def _create(lam, name: str, image_uri: str, **kw) -> dict:
    return lam.create_function(FunctionName=name, Role=ROLE, PackageType="Image",
                               Code={"ImageUri": image_uri}, Timeout=30, MemorySize=256, **kw)


def _log_lines(server, name: str) -> list[str]:
    logs = server.logs
    try:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    except ClientError:
        return []
    return [e["message"] for e in events]


def test_image_function_runs_its_entrypoint_and_get_function_shows_the_image(image_server):
    s = image_server
    lam = s.lam
    name = unique_name("img")
    uri = f"{s.registry_addr}/{s.image_repo}:v1"
    digest = _images()[0].manifest_digest
    created = _create(lam, name, uri)
    assert created["PackageType"] == "Image"
    assert "Runtime" not in created and "Handler" not in created
    assert created["CodeSha256"] == digest.removeprefix("sha256:")

    out = ok(invoke(lam, name, {"hello": "image"}))
    assert out["echo"] == {"hello": "image"}
    assert out["function_name"] == name
    assert out["memory_size"] == "256"
    again = ok(invoke(lam, name, {"n": 2}))
    assert again["invocations_in_this_environment"] == 2, "the environment is reused warm"

    got = lam.get_function(FunctionName=name)
    assert got["Code"]["RepositoryType"] == "ECR"
    assert got["Code"]["ImageUri"] == uri
    assert got["Code"]["ResolvedImageUri"] == f"{s.registry_addr}/{s.image_repo}@{digest}"
    assert got["Configuration"]["PackageType"] == "Image"
    assert "ImageConfigResponse" not in got["Configuration"]


def test_image_cmd_workdir_env_and_image_config_overrides(image_server):
    s = image_server
    lam = s.lam
    uri = f"{s.registry_addr}/{s.image_repo}:launcher"

    plain = unique_name("img-cmd")
    _create(lam, plain, uri)
    assert ok(invoke(lam, plain, {"a": 1}))["echo"] == {"a": 1}
    line = wait_until(lambda: next((l for l in _log_lines(s, plain) if l.startswith("launch:")), None), 15)
    assert "handler=echo.handler args=echo.handler cwd=/app greeting=from-image" in line, line
    # Lambda's least-privileged user, and the Runtime API address in the environment.
    assert "uid=993 api=set" in line, line

    over = unique_name("img-over")
    created = _create(lam, over, uri, Environment={"Variables": {"GREETING": "from-function"}},
                      ImageConfig={"Command": ["other.handler", "x"], "WorkingDirectory": "/tmp"})
    assert created["ImageConfigResponse"]["ImageConfig"] == {
        "Command": ["other.handler", "x"], "WorkingDirectory": "/tmp"}
    assert ok(invoke(lam, over, {"b": 2}))["echo"] == {"b": 2}
    line = wait_until(lambda: next((l for l in _log_lines(s, over) if l.startswith("launch:")), None), 15)
    assert "handler=other.handler args=other.handler x cwd=/tmp greeting=from-function" in line, line

    # EntryPoint override: straight to the runtime binary of the same image.
    ep = unique_name("img-ep")
    _create(lam, ep, uri, ImageConfig={"EntryPoint": ["/app/rust-echo"]})
    assert ok(invoke(lam, ep, {"c": 3}))["echo"] == {"c": 3}
    assert not any(l.startswith("launch:") for l in _log_lines(s, ep))


def test_ecr_style_image_uri_resolves_to_the_local_registry(image_server):
    s = image_server
    lam = s.lam
    name = unique_name("img-ecr")
    uri = f"000000000000.dkr.ecr.us-east-1.amazonaws.com/{s.image_repo}:v1"
    _create(lam, name, uri)
    assert ok(invoke(lam, name, {"ecr": True}))["echo"] == {"ecr": True}
    got = lam.get_function(FunctionName=name)["Code"]
    assert got["ResolvedImageUri"] == (
        f"000000000000.dkr.ecr.us-east-1.amazonaws.com/{s.image_repo}@{_images()[0].manifest_digest}")


def test_missing_image_is_refused_as_aws_does(image_server):
    s = image_server
    lam = s.lam
    uri = f"{s.registry_addr}/{s.image_repo}:no-such-tag"
    with pytest.raises(ClientError) as e:
        _create(lam, unique_name("img-missing"), uri)
    assert error_code(e.value) == "InvalidParameterValueException"
    assert e.value.response["Error"]["Message"] == (
        f"Source image {uri} does not exist. Provide a valid source image.")
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName=unique_name("img-nouri"), Role=ROLE, PackageType="Image", Code={})
    assert error_code(e.value) == "InvalidParameterValueException"


def test_process_sandbox_refuses_image_functions(process_server):
    lam = process_server.lam
    with pytest.raises(ClientError) as e:
        _create(lam, unique_name("img-proc"), "127.0.0.1:1/whatever:v1")
    assert error_code(e.value) == "InvalidParameterValueException"
    assert "container sandbox" in e.value.response["Error"]["Message"]
