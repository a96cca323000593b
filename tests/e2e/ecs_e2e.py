"""Helpers shared by the ECS / ECR end-to-end tests: unique names, polling, importing images
built from files (`oci_images.py`) through `POST /_nimbus/images/import`, a server with
busybox already imported, task definitions and tasks."""
from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import NimbusServer, error_code, http_status, unique_name, wait_until
from oci_images import busybox_image

ACCOUNT = "000000000000"


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(fn, timeout=60.0, interval=0.1, what="condition"):
    """Polls `fn` until it returns something truthy and returns that. Unlike
    `nimbus_e2e.wait_until`, an exception from `fn` fails at once."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def import_image(server, directory, image, ref, tag_param=False):
    """Imports `image` as a docker-save archive whose RepoTags is `ref`; the import answer.
    `tag_param`: also name `ref` in the request (`?tag=`), the explicit-tag form."""
    path = image.write_docker_save(directory / f"{uuid.uuid4().hex[:8]}.tar", repo_tags=[ref])
    url = f"/_nimbus/images/import?tag={ref}" if tag_param else "/_nimbus/images/import"
    status, _, body = server.http("POST", url, body=path.read_bytes(), timeout=120)
    assert status == 200, body[:500]
    return json.loads(body)


def import_busybox(server, directory):
    """`busybox:latest` (what task definitions name as `"image": "busybox"`)."""
    return import_image(server, directory, busybox_image(), "busybox:latest")


@contextmanager
def busybox_server(tmp_path_factory, name):
    """A server of its own (for module fixtures) with `busybox:latest` imported."""
    base = tmp_path_factory.mktemp(name)
    s = NimbusServer(base / "data", base / "logs").start()
    try:
        img_dir = base / "images"
        img_dir.mkdir()
        import_busybox(s, img_dir)
        yield s
    finally:
        s.stop()


def target_group_arn(name):
    """An ELBv2 target group ARN in the tests' account and region."""
    return f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}:targetgroup/{name}/73e2d6bc24d8a067"


def register(ecs, family, containers, **kw):
    return ecs.register_task_definition(family=family, containerDefinitions=containers, **kw)["taskDefinition"]


def web_container(page="hostname", **extra):
    """A busybox httpd container "web" on port 8080 (a dynamic host port in bridge mode)
    serving `/index.html`, written by the shell command `page` (default: the task's hostname,
    so every task answers differently)."""
    return {
        "name": "web", "image": "busybox", "memory": 32,
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
        "command": ["sh", "-c", f"mkdir -p /www && {page} > /www/index.html && exec httpd -f -p 8080 -h /www"],
        **extra,
    }


def task_of(ecs, cluster, arn):
    r = ecs.describe_tasks(cluster=cluster, tasks=[arn], include=["TAGS"])
    assert not r["failures"], r["failures"]
    return r["tasks"][0]


def wait_status(ecs, cluster, arn, status, timeout=60):
    return wait_for(lambda: (t := task_of(ecs, cluster, arn))["lastStatus"] == status and t,
                    timeout=timeout, what=f"task {arn} {status}")


def run_image_task(server, image, cluster_prefix, family_prefix):
    """A new cluster, a one-container EC2 task definition for `image`, and one task of it
    started: (ecs client, cluster name, task ARN)."""
    ecs = server.client("ecs")
    cluster = unique_name(cluster_prefix)
    ecs.create_cluster(clusterName=cluster)
    td = register(ecs, unique_name(family_prefix), [{"name": "app", "image": image, "memory": 64}])
    [t] = ecs.run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="EC2")["tasks"]
    return ecs, cluster, t["taskArn"]


def wait_running(ecs, cluster, arn, what):
    """The task once RUNNING; a task that stopped instead keeps being reported as the last
    error until the wait times out."""
    def running():
        x = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        assert x["lastStatus"] != "STOPPED", (x.get("stoppedReason"), x["containers"])
        return x if x["lastStatus"] == "RUNNING" else None
    return wait_until(running, 60, 0.1, what)


def is_ts(v) -> bool:
    """botocore parses `timestamp` members into aware datetimes."""
    return isinstance(v, dt.datetime)


def expect_error(call, code: str, status: int = 400, message: str | None = None, **kw) -> ClientError:
    """Calls `call(**kw)`; asserts the AWS error code (as botocore parses it), the HTTP status
    and, when given, a substring of the message."""
    with pytest.raises(ClientError) as ei:
        call(**kw)
    e = ei.value
    assert error_code(e) == code, (e.response["Error"], kw)
    assert http_status(e) == status, (http_status(e), e.response["Error"])
    if message is not None:
        assert message in e.response["Error"].get("Message", ""), e.response["Error"]
    return e
