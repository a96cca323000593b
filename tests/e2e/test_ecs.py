"""ECS end to end: clusters, task definitions and tasks running real containers (busybox
images built from files, imported through /_nimbus/images/import), driven by the AWS CLI and
boto3 against the real `nimbus` binary."""
import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from oci_images import busybox_image

pytestmark = pytest.mark.timeout(300)

EXEC_ROLE = "arn:aws:iam::000000000000:role/ecsTaskExecutionRole"


def wait_for(fn, timeout=60.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def import_image(server, tmp_path, image, ref):
    path = image.write_docker_save(tmp_path / f"{uuid.uuid4().hex[:8]}.tar", repo_tags=[ref])
    status, _, body = server.http("POST", "/_nimbus/images/import", body=path.read_bytes(), timeout=120)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture(scope="module")
def ecs_server(tmp_path_factory):
    from nimbus_e2e import NimbusServer

    base = tmp_path_factory.mktemp("nimbus-ecs")
    s = NimbusServer(base / "data", base / "logs").start()
    img_dir = base / "images"
    img_dir.mkdir()
    import_image(s, img_dir, busybox_image(), "busybox:latest")
    yield s
    s.stop()


@pytest.fixture
def ecs(ecs_server):
    return ecs_server.client("ecs")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def task_of(ecs, cluster, arn):
    r = ecs.describe_tasks(cluster=cluster, tasks=[arn], include=["TAGS"])
    assert not r["failures"], r["failures"]
    return r["tasks"][0]


def wait_status(ecs, cluster, arn, status, timeout=60):
    return wait_for(lambda: (t := task_of(ecs, cluster, arn))["lastStatus"] == status and t,
                    timeout=timeout, what=f"task {arn} {status}")


def register(ecs, family, containers, **kw):
    return ecs.register_task_definition(family=family, containerDefinitions=containers, **kw)["taskDefinition"]


def test_cluster_crud_through_the_cli(ecs_server):
    out = ecs_server.aws_json("ecs", "create-cluster", "--cluster-name", "myECSCluster")
    c = out["cluster"]
    assert c["clusterName"] == "myECSCluster"
    assert c["status"] == "ACTIVE"
    assert c["clusterArn"] == "arn:aws:ecs:us-east-1:000000000000:cluster/myECSCluster"
    # The local node registered itself as a container instance of the new cluster.
    assert c["registeredContainerInstancesCount"] == 1
    listed = ecs_server.aws_json("ecs", "list-clusters")["clusterArns"]
    assert c["clusterArn"] in listed
    d = ecs_server.aws_json("ecs", "describe-clusters", "--clusters", "myECSCluster", "nope")
    assert [x["clusterName"] for x in d["clusters"]] == ["myECSCluster"]
    assert d["failures"] == [{"arn": "arn:aws:ecs:us-east-1:000000000000:cluster/nope", "reason": "MISSING"}]
    gone = ecs_server.aws_json("ecs", "delete-cluster", "--cluster", "myECSCluster")["cluster"]
    assert gone["status"] == "INACTIVE"
    assert c["clusterArn"] not in ecs_server.aws_json("ecs", "list-clusters")["clusterArns"]
    p = ecs_server.aws("ecs", "delete-cluster", "--cluster", "myECSCluster", check=False)
    assert p.returncode != 0 and "ClusterNotFoundException" in p.stderr


def test_task_definition_revisions_and_forms(ecs):
    fam = unique("td")
    c = [{"name": "app", "image": "busybox", "memory": 64, "command": ["true"]}]
    r1 = register(ecs, fam, c, cpu="0.25 vCPU", memory="0.5 GB")
    r2 = register(ecs, fam, c)
    assert (r1["revision"], r2["revision"]) == (1, 2)
    assert r1["cpu"] == "256" and r1["memory"] == "512"
    assert r1["taskDefinitionArn"].endswith(f":task-definition/{fam}:1")
    cd = r1["containerDefinitions"][0]
    assert cd["essential"] is True and cd["cpu"] == 0 and cd["portMappings"] == []
    assert ecs.describe_task_definition(taskDefinition=fam)["taskDefinition"]["revision"] == 2
    assert ecs.describe_task_definition(taskDefinition=f"{fam}:1")["taskDefinition"]["revision"] == 1
    assert ecs.describe_task_definition(taskDefinition=r1["taskDefinitionArn"])["taskDefinition"]["revision"] == 1
    arns = ecs.list_task_definitions(familyPrefix=fam)["taskDefinitionArns"]
    assert [a.rsplit(":", 1)[1] for a in arns] == ["1", "2"]
    arns = ecs.list_task_definitions(familyPrefix=fam, sort="DESC")["taskDefinitionArns"]
    assert [a.rsplit(":", 1)[1] for a in arns] == ["2", "1"]
    assert fam in ecs.list_task_definition_families(familyPrefix=fam[:6])["families"]
    d = ecs.deregister_task_definition(taskDefinition=f"{fam}:2")["taskDefinition"]
    assert d["status"] == "INACTIVE"
    assert ecs.describe_task_definition(taskDefinition=fam)["taskDefinition"]["revision"] == 1
    inactive = ecs.list_task_definitions(familyPrefix=fam, status="INACTIVE")["taskDefinitionArns"]
    assert [a.rsplit(":", 1)[1] for a in inactive] == ["2"]
    with pytest.raises(ClientError) as e:
        ecs.describe_task_definition(taskDefinition=f"{fam}:9")
    assert e.value.response["Error"]["Code"] == "ClientException"
    with pytest.raises(ClientError) as e:
        register(ecs, unique("td"), [{"name": "app", "image": "busybox"}])
    assert e.value.response["Error"]["Code"] == "ClientException"
    assert "memoryReservation" in e.value.response["Error"]["Message"]


@pytest.mark.parametrize("cpu,memory,ok", [
    ("256", "512", True), ("256", "2048", True), ("256", "4096", False), ("512", "3072", True),
    ("1024", "1024", False), ("4096", "30720", True), ("4096", "31744", False),
    ("8192", "20480", True), ("8192", "18432", False), ("16384", "122880", True),
])
def test_fargate_cpu_memory_combinations(ecs, cpu, memory, ok):
    kw = dict(requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu=cpu, memory=memory)
    c = [{"name": "app", "image": "busybox"}]
    if ok:
        td = register(ecs, unique("fg"), c, **kw)
        assert "FARGATE" in td["compatibilities"]
    else:
        with pytest.raises(ClientError) as e:
            register(ecs, unique("fg"), c, **kw)
        assert e.value.response["Error"]["Code"] == "ClientException"
        assert "No Fargate configuration exists for given values" in e.value.response["Error"]["Message"]


def test_fargate_requires_awsvpc_and_refuses_privileged(ecs):
    c = [{"name": "app", "image": "busybox"}]
    with pytest.raises(ClientError) as e:
        register(ecs, unique("fg"), c, requiresCompatibilities=["FARGATE"], networkMode="bridge", cpu="256",
                 memory="512")
    assert e.value.response["Error"]["Message"] == "Fargate only supports network mode 'awsvpc'."
    with pytest.raises(ClientError) as e:
        register(ecs, unique("fg"), [{"name": "app", "image": "busybox", "privileged": True}],
                 requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512")
    assert e.value.response["Error"]["Code"] == "ClientException"


def test_seed_commands_verbatim(ecs_server, ecs):
    ecs_server.aws_json("ecs", "create-cluster", "--cluster-name", "FargateCluster")
    register(ecs, "HelloWorld", [{"name": "hello", "image": "busybox", "essential": True,
                                  "command": ["sh", "-c", "echo hello from fargate; sleep 30"]}],
             requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512")
    out = ecs_server.aws_json(
        "ecs", "run-task", "--cluster", "FargateCluster", "--task-definition", "HelloWorld",
        "--launch-type", "FARGATE", "--count", "1", "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-0abc123d4ef56789a],securityGroups=[sg-0abc123d4ef56789a]}")
    assert out["failures"] == []
    [t] = out["tasks"]
    assert t["launchType"] == "FARGATE" and t["desiredStatus"] == "RUNNING"
    assert t["group"] == "family:HelloWorld"
    running = wait_status(ecs, "FargateCluster", t["taskArn"], "RUNNING")
    eni = running["attachments"][0]
    assert eni["type"] == "ElasticNetworkInterface"
    details = {d["name"]: d["value"] for d in eni["details"]}
    assert details["subnetId"] == "subnet-0abc123d4ef56789a" and details["privateIPv4Address"]
    assert running["containers"][0]["lastStatus"] == "RUNNING"
    ecs.stop_task(cluster="FargateCluster", task=t["taskArn"])
    stopped = wait_status(ecs, "FargateCluster", t["taskArn"], "STOPPED")
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == "Task stopped by user"


def test_essential_exit_code_and_awslogs(ecs_server, ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("exit3")
    group = f"/ecs/{fam}"
    register(ecs, fam, [{
        "name": "app", "image": "busybox", "memory": 64,
        "command": ["sh", "-c", "echo hello; echo to-stderr >&2; exit 3"],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "ecs",
            "awslogs-create-group": "true"}},
    }])
    r = ecs.run_task(cluster=cluster, taskDefinition=fam, startedBy="pytest", tags=[{"key": "k", "value": "v"}])
    [t] = r["tasks"]
    assert t["lastStatus"] == "PROVISIONING"
    stopped = wait_status(ecs, cluster, t["taskArn"], "STOPPED")
    c = stopped["containers"][0]
    assert c["exitCode"] == 3 and c["lastStatus"] == "STOPPED"
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert stopped["startedBy"] == "pytest"
    assert stopped["tags"] == [{"key": "k", "value": "v"}]
    for k in ("createdAt", "pullStartedAt", "pullStoppedAt", "stoppingAt", "stoppedAt"):
        assert k in stopped, k
    task_id = t["taskArn"].rsplit("/", 1)[1]
    logs = ecs_server.client("logs")
    stream = f"ecs/app/{task_id}"

    def messages():
        ev = logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]
        return [e["message"] for e in ev]

    msgs = wait_for(lambda: (m := messages()) and len(m) >= 2 and m, timeout=20, what="log events")
    assert "hello" in msgs and "to-stderr" in msgs
    # ListTasks filters: stopped tasks only with desiredStatus STOPPED.
    assert t["taskArn"] not in ecs.list_tasks(cluster=cluster)["taskArns"]
    assert t["taskArn"] in ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED", family=fam)["taskArns"]
    assert t["taskArn"] in ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED", startedBy="pytest")["taskArns"]
    # The stopped task reported its usage period (usage accounting, /_nimbus/usage).
    def usage():
        status, _, body = ecs_server.http("GET", "/_nimbus/usage")
        return status == 200 and f"{cluster}/{fam}" in body.decode() and body

    wait_for(usage, timeout=20, what="task usage recorded")


def test_missing_image_fails_to_start(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("noimg")
    register(ecs, fam, [{"name": "app", "image": "does-not-exist:1", "memory": 32}])
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam)["tasks"]
    stopped = wait_status(ecs, cluster, t["taskArn"], "STOPPED")
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("CannotPullContainerError: ")


def test_default_cluster_and_errors(ecs_server, ecs):
    fam = unique("dflt")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["true"]}])
    # No default cluster yet in this server's account (other tests name theirs).
    if "arn:aws:ecs:us-east-1:000000000000:cluster/default" not in ecs.list_clusters()["clusterArns"]:
        with pytest.raises(ClientError) as e:
            ecs.run_task(taskDefinition=fam)
        assert e.value.response["Error"]["Code"] == "ClusterNotFoundException"
    c = ecs.create_cluster()["cluster"]
    assert c["clusterName"] == "default"
    [t] = ecs.run_task(taskDefinition=fam)["tasks"]
    assert t["clusterArn"].endswith(":cluster/default")
    with pytest.raises(ClientError) as e:
        ecs.run_task(cluster="default", taskDefinition=unique("nope"))
    assert e.value.response["Error"]["Code"] == "ClientException"
    with pytest.raises(ClientError) as e:
        ecs.stop_task(cluster="default", task="0123456789abcdef0123456789abcdef")
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    r = ecs.describe_tasks(cluster="default", tasks=["0123456789abcdef0123456789abcdef"])
    assert r["failures"][0]["reason"] == "MISSING"


def test_stop_task_sigterm_then_sigkill_after_stop_timeout(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("stop")
    # Two containers: one traps SIGTERM and exits 0 at once; one ignores it (pid 1 of its
    # namespace with no handler) and is killed after stopTimeout.
    register(ecs, fam, [
        {"name": "polite", "image": "busybox", "memory": 32, "essential": False,
         "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]},
        {"name": "stubborn", "image": "busybox", "memory": 32, "stopTimeout": 3,
         "command": ["sh", "-c", "while true; do sleep 0.1; done"]},
    ])
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam)["tasks"]
    wait_status(ecs, cluster, t["taskArn"], "RUNNING")
    started = time.monotonic()
    resp = ecs.stop_task(cluster=cluster, task=t["taskArn"], reason="because")
    assert resp["task"]["desiredStatus"] == "STOPPED"
    stopped = wait_status(ecs, cluster, t["taskArn"], "STOPPED", timeout=60)
    took = time.monotonic() - started
    codes = {c["name"]: c.get("exitCode") for c in stopped["containers"]}
    assert codes["polite"] == 0
    assert codes["stubborn"] == 137
    assert took >= 2.5, took
    assert stopped["stoppedReason"] == "because"
    assert stopped["stopCode"] == "UserInitiated"


def test_depends_on_and_overrides(ecs_server, ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("deps")
    group = f"/ecs/{fam}"
    log = {"logDriver": "awslogs", "options": {"awslogs-group": group, "awslogs-stream-prefix": "p",
                                               "awslogs-create-group": "true"}}
    register(ecs, fam, [
        {"name": "init", "image": "busybox", "memory": 32, "essential": False,
         "command": ["sh", "-c", "echo init-done"], "logConfiguration": log},
        {"name": "app", "image": "busybox", "memory": 32,
         "command": ["sh", "-c", "echo app-$GREETING"], "environment": [{"name": "GREETING", "value": "def"}],
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}], "logConfiguration": log},
    ])
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam, overrides={"containerOverrides": [
        {"name": "app", "environment": [{"name": "GREETING", "value": "overridden"}]}]})["tasks"]
    stopped = wait_status(ecs, cluster, t["taskArn"], "STOPPED")
    codes = {c["name"]: c.get("exitCode") for c in stopped["containers"]}
    assert codes == {"init": 0, "app": 0}
    task_id = t["taskArn"].rsplit("/", 1)[1]
    logs = ecs_server.client("logs")
    app = wait_for(lambda: logs.get_log_events(logGroupName=group, logStreamName=f"p/app/{task_id}")["events"],
                   timeout=20, what="app logs")
    assert app[0]["message"] == "app-overridden"
    assert stopped["overrides"]["containerOverrides"][0]["name"] == "app"


def test_health_check_makes_task_healthy(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("hc")
    register(ecs, fam, [{
        "name": "app", "image": "busybox", "memory": 32,
        "command": ["sh", "-c", "touch /tmp/ready; sleep 120"],
        "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/ready"], "interval": 5, "timeout": 2, "retries": 1},
    }])
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam)["tasks"]
    healthy = wait_for(lambda: (x := task_of(ecs, cluster, t["taskArn"]))["healthStatus"] == "HEALTHY" and x,
                       timeout=60, what="HEALTHY")
    assert healthy["containers"][0]["healthStatus"] == "HEALTHY"
    ecs.stop_task(cluster=cluster, task=t["taskArn"])


def test_unhealthy_container(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("hcbad")
    register(ecs, fam, [{
        "name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "120"],
        "healthCheck": {"command": ["CMD", "false"], "interval": 5, "timeout": 2, "retries": 1},
    }])
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam)["tasks"]
    wait_for(lambda: task_of(ecs, cluster, t["taskArn"])["healthStatus"] == "UNHEALTHY", timeout=60,
             what="UNHEALTHY")
    ecs.stop_task(cluster=cluster, task=t["taskArn"])


def test_cli_waiters(ecs_server, ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("wait")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "3"]}])
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam)["tasks"]
    ecs_server.aws("ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", t["taskArn"])
    ecs_server.aws("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", t["taskArn"])
    assert task_of(ecs, cluster, t["taskArn"])["containers"][0]["exitCode"] == 0


def test_tags_on_clusters_task_definitions_and_tasks(ecs):
    cluster = unique("c")
    c = ecs.create_cluster(clusterName=cluster, tags=[{"key": "team", "value": "a"}])["cluster"]
    arn = c["clusterArn"]
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "team", "value": "a"}]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "team", "value": "b"}, {"key": "env", "value": "dev"}])
    tags = {t["key"]: t["value"] for t in ecs.list_tags_for_resource(resourceArn=arn)["tags"]}
    assert tags == {"team": "b", "env": "dev"}
    ecs.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "env", "value": "dev"}]
    d = ecs.describe_clusters(clusters=[cluster], include=["TAGS"])["clusters"][0]
    assert d["tags"] == [{"key": "env", "value": "dev"}]
    td = register(ecs, unique("tagged"), [{"name": "a", "image": "busybox", "memory": 16}],
                  tags=[{"key": "k", "value": "v"}])
    assert ecs.list_tags_for_resource(resourceArn=td["taskDefinitionArn"])["tags"] == [{"key": "k", "value": "v"}]
    with pytest.raises(ClientError) as e:
        ecs.list_tags_for_resource(resourceArn="arn:aws:ecs:us-east-1:000000000000:cluster/nope")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_scratch_volume_shared_and_read_only_mounts(ecs):
    # A volume without `host` is a scratch directory of the task: empty at start, shared by
    # the containers that mount it; readOnly (on the mount point or on volumesFrom) refuses writes.
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("vol")
    register(ecs, fam, [
        {"name": "writer", "image": "busybox", "memory": 32, "essential": False,
         "command": ["sh", "-c", "test -z \"$(ls -A /shared)\" || exit 5; echo payload > /shared/f"],
         "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/shared"}]},
        {"name": "reader", "image": "busybox", "memory": 32, "essential": False,
         "command": ["sh", "-c", "test \"$(cat /in/deep/f)\" = payload || exit 3; "
                                 "if echo x > /in/deep/g; then exit 4; fi; exit 0"],
         "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/in/deep", "readOnly": True}],
         "dependsOn": [{"containerName": "writer", "condition": "SUCCESS"}]},
        {"name": "inherit", "image": "busybox", "memory": 32, "essential": True,
         "command": ["sh", "-c", "test \"$(cat /shared/f)\" = payload || exit 3; "
                                 "if echo x > /shared/g; then exit 4; fi; exit 0"],
         "volumesFrom": [{"sourceContainer": "writer", "readOnly": True}],
         "dependsOn": [{"containerName": "reader", "condition": "COMPLETE"}]},
    ], volumes=[{"name": "scratch"}])
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam, launchType="EC2")["tasks"]
    stopped = wait_status(ecs, cluster, t["taskArn"], "STOPPED", timeout=120)
    codes = {c["name"]: c.get("exitCode") for c in stopped["containers"]}
    assert codes == {"writer": 0, "reader": 0, "inherit": 0}, stopped["containers"]
    # A second task of the same definition gets a fresh, empty scratch volume (writer exit 5 otherwise).
    [t2] = ecs.run_task(cluster=cluster, taskDefinition=fam, launchType="EC2")["tasks"]
    stopped = wait_status(ecs, cluster, t2["taskArn"], "STOPPED", timeout=120)
    assert {c["name"]: c.get("exitCode") for c in stopped["containers"]}["writer"] == 0, stopped["containers"]


def test_host_volume_on_ec2_and_refused_on_fargate(ecs, tmp_path):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    host_dir = tmp_path / "hostvol"
    host_dir.mkdir()
    (host_dir / "in").write_text("from-host\n")
    fam = unique("hostvol")
    register(ecs, fam, [
        {"name": "app", "image": "busybox", "memory": 32,
         "command": ["sh", "-c", "cat /data/in > /data/out && echo written >> /data/out"],
         "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]},
    ], volumes=[{"name": "data", "host": {"sourcePath": str(host_dir)}}])
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam, launchType="EC2")["tasks"]
    stopped = wait_status(ecs, cluster, t["taskArn"], "STOPPED", timeout=120)
    assert stopped["containers"][0].get("exitCode") == 0, stopped["containers"]
    # The host directory outlives the task, with what the container wrote.
    assert (host_dir / "out").read_text() == "from-host\nwritten\n"

    fargate = dict(requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512")
    with pytest.raises(ClientError) as e:
        register(ecs, unique("fgvol"), [
            {"name": "app", "image": "busybox", "mountPoints": [{"sourceVolume": "data", "containerPath": "/d"}]},
        ], volumes=[{"name": "data", "host": {"sourcePath": "/tmp"}}], **fargate)
    assert e.value.response["Error"]["Code"] == "ClientException"
    assert "sourcePath" in e.value.response["Error"]["Message"]
    # A scratch volume is fine on Fargate.
    register(ecs, unique("fgvol"), [
        {"name": "app", "image": "busybox", "mountPoints": [{"sourceVolume": "data", "containerPath": "/d"}]},
    ], volumes=[{"name": "data"}], **fargate)
    # A mount point must name a volume of the task definition.
    with pytest.raises(ClientError) as e:
        register(ecs, unique("badvol"), [
            {"name": "app", "image": "busybox", "memory": 32,
             "mountPoints": [{"sourceVolume": "nope", "containerPath": "/d"}]}])
    assert e.value.response["Error"]["Code"] == "ClientException"


def test_run_task_client_token_is_idempotent_per_cluster(ecs):
    # [docs ECS_Idempotency] the same clientToken and parameters return the original tasks;
    # the same token with other parameters → ConflictException naming those tasks; tokens are
    # per cluster.
    cluster, other = unique("c"), unique("c")
    ecs.create_cluster(clusterName=cluster)
    ecs.create_cluster(clusterName=other)
    fam = unique("idem")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 16, "command": ["sleep", "30"]}])
    token = uuid.uuid4().hex
    first = ecs.run_task(cluster=cluster, taskDefinition=fam, count=2, clientToken=token)["tasks"]
    again = ecs.run_task(cluster=cluster, taskDefinition=fam, count=2, clientToken=token)["tasks"]
    arns = sorted(t["taskArn"] for t in first)
    assert len(arns) == 2 and sorted(t["taskArn"] for t in again) == arns
    listed = ecs.list_tasks(cluster=cluster, family=fam)["taskArns"]
    assert sorted(listed) == arns, "a retry started no new task"
    with pytest.raises(ClientError) as e:
        ecs.run_task(cluster=cluster, taskDefinition=fam, count=1, clientToken=token)
    assert e.value.response["Error"]["Code"] == "ConflictException"
    assert sorted(e.value.response.get("resourceIds", [])) == arns, e.value.response
    # Another cluster: a separate request.
    [o] = ecs.run_task(cluster=other, taskDefinition=fam, clientToken=token)["tasks"]
    assert o["taskArn"] not in arns
    # Without a token of its own boto3 sends a fresh one each call: two calls, two tasks.
    ecs.run_task(cluster=other, taskDefinition=fam)
    assert len(ecs.list_tasks(cluster=other, family=fam)["taskArns"]) == 2
    with pytest.raises(ClientError) as e:
        ecs.run_task(cluster=cluster, taskDefinition=fam, clientToken="x" * 65)
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    for c in (cluster, other):
        for arn in ecs.list_tasks(cluster=c)["taskArns"]:
            ecs.stop_task(cluster=c, task=arn)


def test_task_size_is_one_limit_for_all_containers(ecs, tmp_path):
    # [docs] task-level cpu/memory is the task size: a hard limit for all its containers
    # together. Nimbus puts the containers' cgroups under one task cgroup holding the limit.
    # Each container records its cgroups (host paths) into a host volume for the test to read.
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    out = tmp_path / "cg"
    out.mkdir()
    fam = unique("size")
    mounts = [{"sourceVolume": "out", "containerPath": "/out"}]
    register(ecs, fam, [
        {"name": "a", "image": "busybox", "essential": False, "mountPoints": mounts,
         "command": ["sh", "-c", "cat /proc/self/cgroup > /out/a"]},
        {"name": "b", "image": "busybox", "mountPoints": mounts,
         "command": ["sh", "-c", "cat /proc/self/cgroup > /out/b; while [ ! -e /out/done ]; do sleep 0.1; done"]},
    ], volumes=[{"name": "out", "host": {"sourcePath": str(out)}}], cpu="512", memory="256")
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam, launchType="EC2")["tasks"]
    # b stays up until the test has read the limit (the task's cgroup goes with the task).
    wait_for(lambda: (out / "a").exists() and (out / "b").exists() and (out / "b").read_text(), timeout=90,
             what="both containers wrote their cgroups")

    def memory_cgroup(name):
        for line in (out / name).read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(",") or controllers == "":
                return controllers, path
        raise AssertionError((out / name).read_text())

    (ctrl_a, a), (_, b) = memory_cgroup("a"), memory_cgroup("b")
    parent = a.rsplit("/", 1)[0]
    assert b.rsplit("/", 1)[0] == parent and a != b, (a, b)
    if ctrl_a == "":  # cgroup v2
        limit = (f"/sys/fs/cgroup{parent}/memory.max", str(256 << 20))
    else:
        limit = (f"/sys/fs/cgroup/memory{parent}/memory.limit_in_bytes", str(256 << 20))
    got = open(limit[0]).read().strip()
    (out / "done").write_text("")
    assert got == limit[1], (limit, got)
    stopped = wait_status(ecs, cluster, t["taskArn"], "STOPPED", timeout=120)
    assert all(c.get("exitCode") == 0 for c in stopped["containers"]), stopped["containers"]
