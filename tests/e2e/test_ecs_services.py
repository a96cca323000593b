"""ECS services, container instances, placement and ports end to end: desired count kept
(a killed task is replaced), rolling deployments, the circuit breaker's rollback, dynamic
host ports serving HTTP, placement failures, and services surviving a server restart."""
import os
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest
from botocore.exceptions import ClientError

from ecs_e2e import busybox_server, import_busybox, register, task_of, unique, wait_for, wait_status, web_container

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def ecs_server(tmp_path_factory):
    with busybox_server(tmp_path_factory, "nimbus-ecs-svc") as s:
        yield s


@pytest.fixture
def ecs(ecs_server):
    return ecs_server.client("ecs")


def service(ecs, cluster, name):
    r = ecs.describe_services(cluster=cluster, services=[name])
    assert not r["failures"], r["failures"]
    return r["services"][0]


def running_tasks(ecs, cluster, name):
    arns = ecs.list_tasks(cluster=cluster, serviceName=name)["taskArns"]
    if not arns:
        return []
    return [t for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if t["lastStatus"] == "RUNNING"]


def pids_of(marker):
    p = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split()]


def steady(ecs, cluster, name, td_suffix=None, count=None):
    s = service(ecs, cluster, name)
    deps = s["deployments"]
    ok = (len(deps) == 1 and deps[0]["rolloutState"] == "COMPLETED"
          and s["runningCount"] == s["desiredCount"] and s["pendingCount"] == 0)
    if td_suffix:
        ok = ok and deps[0]["taskDefinition"].endswith(td_suffix)
    if count is not None:
        ok = ok and s["runningCount"] == count
    return ok and s


def test_service_replaces_a_killed_task(ecs_server, ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    marker = f"svc-marker-{uuid.uuid4().hex[:10]}"
    fam = unique("svc")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32,
                         "command": ["sh", "-c", f"while true; do sleep 1; done # {marker}"]}])
    s = ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=fam, desiredCount=2)["service"]
    assert s["status"] == "ACTIVE" and s["desiredCount"] == 2
    assert s["deployments"][0]["status"] == "PRIMARY"
    ecs_server.aws("ecs", "wait", "services-stable", "--cluster", cluster, "--services", "web")
    s = wait_for(lambda: steady(ecs, cluster, "web"), timeout=60, what="steady")
    msgs = [e["message"] for e in s["events"]]
    assert any(m.startswith("(service web) has started 2 tasks: (task ") or m.startswith("(service web) has started 1 tasks")
               for m in msgs), msgs
    assert "(service web) has reached a steady state." in msgs
    before = {t["taskArn"] for t in running_tasks(ecs, cluster, "web")}
    assert len(before) == 2
    pids = wait_for(lambda: pids_of(marker), timeout=10, what="task processes")
    os.kill(min(pids), signal.SIGKILL)
    killed_at = time.monotonic()

    def replaced():
        now = {t["taskArn"] for t in running_tasks(ecs, cluster, "web")}
        return len(now) == 2 and now != before and now

    wait_for(replaced, timeout=60, interval=0.05, what="a replacement task RUNNING")
    print(f"replacement RUNNING {time.monotonic() - killed_at:.2f}s after kill -9")
    stopped = ecs.list_tasks(cluster=cluster, serviceName="web", desiredStatus="STOPPED")["taskArns"]
    [dead] = ecs.describe_tasks(cluster=cluster, tasks=stopped)["tasks"]
    assert dead["stopCode"] == "EssentialContainerExited"
    assert dead["containers"][0]["exitCode"] == 137
    assert dead["startedBy"].startswith("ecs-svc/")
    # Scale to zero and delete.
    ecs.update_service(cluster=cluster, service="web", desiredCount=0)
    wait_for(lambda: not running_tasks(ecs, cluster, "web"), timeout=60, what="scaled to zero")
    d = ecs.delete_service(cluster=cluster, service="web")["service"]
    assert d["status"] in ("DRAINING", "INACTIVE")
    # DRAINING until its tasks are STOPPED: the shell runs as the container's init and ignores
    # SIGTERM, so each stop takes the default 30 s stopTimeout before SIGKILL.
    wait_for(lambda: service(ecs, cluster, "web")["status"] == "INACTIVE", timeout=90, what="INACTIVE")
    assert ecs.list_services(cluster=cluster)["serviceArns"] == []


def test_service_errors(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("svc")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "60"]}])
    ecs.create_service(cluster=cluster, serviceName="s1", taskDefinition=fam, desiredCount=1)
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName="s1", taskDefinition=fam, desiredCount=1)
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster=cluster, service="nope", desiredCount=1)
    assert e.value.response["Error"]["Code"] == "ServiceNotFoundException"
    with pytest.raises(ClientError) as e:
        ecs.delete_service(cluster=cluster, service="s1")
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecs.delete_cluster(cluster=cluster)
    assert e.value.response["Error"]["Code"] == "ClusterContainsServicesException"
    r = ecs.describe_services(cluster=cluster, services=["nope"])
    assert r["failures"][0]["reason"] == "MISSING"
    ecs.delete_service(cluster=cluster, service="s1", force=True)
    fg = unique("fg")
    register(ecs, fg, [{"name": "app", "image": "busybox"}], requiresCompatibilities=["FARGATE"],
             networkMode="awsvpc", cpu="256", memory="512")
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName="d", taskDefinition=fg, launchType="FARGATE",
                           schedulingStrategy="DAEMON",
                           networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-1"]}})
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecs.run_task(cluster=cluster, taskDefinition=fg, launchType="FARGATE")
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "Network Configuration must be provided" in e.value.response["Error"]["Message"]


def test_rolling_deployment(ecs_server, ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("roll")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "300"]}])
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "301"]}])
    ecs.create_service(cluster=cluster, serviceName="roll", taskDefinition=f"{fam}:1", desiredCount=3,
                       deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 100})
    wait_for(lambda: steady(ecs, cluster, "roll", f"{fam}:1"), timeout=60, what="v1 steady")
    s = ecs.update_service(cluster=cluster, service="roll", taskDefinition=f"{fam}:2")["service"]
    statuses = sorted(d["status"] for d in s["deployments"])
    assert statuses == ["ACTIVE", "PRIMARY"], s["deployments"]
    primary = next(d for d in s["deployments"] if d["status"] == "PRIMARY")
    assert primary["rolloutState"] == "IN_PROGRESS" and primary["taskDefinition"].endswith(f"{fam}:2"), primary
    # maximumPercent 100: never more than 3 tasks live during the rollout.
    peak = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        cur = service(ecs, cluster, "roll")
        peak = max(peak, cur["runningCount"] + cur["pendingCount"])
        if steady(ecs, cluster, "roll", f"{fam}:2"):
            break
        time.sleep(0.1)
    final = wait_for(lambda: steady(ecs, cluster, "roll", f"{fam}:2", count=3), timeout=30, what="v2 steady")
    assert peak <= 3, peak
    assert final["taskDefinition"].endswith(f"{fam}:2"), final
    tds = {t["taskDefinitionArn"] for t in running_tasks(ecs, cluster, "roll")}
    assert {a.rsplit(":", 1)[1] for a in tds} == {"2"}, (tds, final)
    ecs_server.aws("ecs", "wait", "services-stable", "--cluster", cluster, "--services", "roll")
    ecs.delete_service(cluster=cluster, service="roll", force=True)


def test_circuit_breaker_rolls_back(ecs, ecs_server):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("cb")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "300"]}])
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["sh", "-c", "exit 1"]}])
    ecs.create_service(cluster=cluster, serviceName="cb", taskDefinition=f"{fam}:1", desiredCount=1,
                       deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True},
                                                "maximumPercent": 200, "minimumHealthyPercent": 100})
    wait_for(lambda: steady(ecs, cluster, "cb", f"{fam}:1"), timeout=60, what="v1 steady")
    ecs.update_service(cluster=cluster, service="cb", taskDefinition=f"{fam}:2")

    def rolled_back():
        s = service(ecs, cluster, "cb")
        msgs = [e["message"] for e in s["events"]]
        return any("deployment failed: tasks failed to start." in m for m in msgs) and s

    s = wait_for(rolled_back, timeout=120, what="circuit breaker")
    msgs = [e["message"] for e in s["events"]]
    assert any(m.startswith("(service cb) rolling back to deployment ecs-svc/") for m in msgs), msgs
    s = wait_for(lambda: steady(ecs, cluster, "cb", f"{fam}:1"), timeout=90, what="rolled back to v1")
    assert s["taskDefinition"].endswith(f"{fam}:1")
    ecs.delete_service(cluster=cluster, service="cb", force=True)


def test_dynamic_host_ports_serve_http(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("web")
    register(ecs, fam, [web_container()], networkMode="bridge")
    tasks = ecs.run_task(cluster=cluster, taskDefinition=fam, count=2)["tasks"]
    ports = []
    for t in tasks:
        running = wait_status(ecs, cluster, t["taskArn"], "RUNNING")
        [b] = running["containers"][0]["networkBindings"]
        assert b["containerPort"] == 8080 and 32768 <= b["hostPort"] <= 60999
        ports.append(b["hostPort"])
    assert ports[0] != ports[1]

    def get(port):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                return r.read().decode().strip()
        except OSError:
            return None

    bodies = [wait_for(lambda p=p: get(p), timeout=30, what=f"http on {p}") for p in ports]
    assert bodies[0] != bodies[1]  # each task answers with its own hostname
    for t in tasks:
        ecs.stop_task(cluster=cluster, task=t["taskArn"])


def test_awsvpc_task_reachable_at_its_eni_address(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("fgweb")
    register(ecs, fam, [{
        "name": "web", "image": "busybox",
        "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
        "command": ["sh", "-c", "mkdir -p /www && echo fargate-ok > /www/index.html && exec httpd -f -p 8080 -h /www"],
    }], networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512")
    [t] = ecs.run_task(cluster=cluster, taskDefinition=fam, launchType="FARGATE",
                       networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-1"]}})["tasks"]
    running = wait_status(ecs, cluster, t["taskArn"], "RUNNING")
    ip = running["containers"][0]["networkInterfaces"][0]["privateIpv4Address"]

    def get():
        try:
            with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as r:
                return r.read().decode().strip()
        except OSError:
            return None

    assert wait_for(get, timeout=30, what="http on the task's address") == "fargate-ok"
    ecs.stop_task(cluster=cluster, task=t["taskArn"])


def test_container_instances_and_placement(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    [local] = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    ci = ecs.describe_container_instances(cluster=cluster, containerInstances=[local])["containerInstances"][0]
    res = {r["name"]: r for r in ci["registeredResources"]}
    assert res["CPU"]["integerValue"] == os.cpu_count() * 1024
    assert res["MEMORY"]["integerValue"] > 0
    assert "22" in res["PORTS"]["stringSetValue"]
    attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
    assert attrs["ecs.os-type"] == "linux" and attrs["ecs.availability-zone"] == "us-east-1a"
    assert ci["ec2InstanceId"].startswith("i-") and len(ci["ec2InstanceId"]) == 19
    assert ci["agentConnected"] is True and ci["status"] == "ACTIVE"
    small = ecs.register_container_instance(
        cluster=cluster,
        totalResources=[{"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                        {"name": "MEMORY", "type": "INTEGER", "integerValue": 512}],
        attributes=[{"name": "stage", "value": "small"}])["containerInstance"]
    fam = unique("place")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 400, "cpu": 128, "command": ["sleep", "60"]}])
    r = ecs.run_task(cluster=cluster, taskDefinition=fam,
                     placementConstraints=[{"type": "memberOf", "expression": "attribute:stage == small"}])
    [t] = r["tasks"]
    assert t["containerInstanceArn"] == small["containerInstanceArn"]
    ci2 = ecs.describe_container_instances(cluster=cluster, containerInstances=[small["containerInstanceArn"]])
    rem = {x["name"]: x for x in ci2["containerInstances"][0]["remainingResources"]}
    assert rem["MEMORY"]["integerValue"] == 112 and rem["CPU"]["integerValue"] == 1024 - 128
    # A second one does not fit on the small instance: AWS's failure reason.
    r = ecs.run_task(cluster=cluster, taskDefinition=fam,
                     placementConstraints=[{"type": "memberOf", "expression": "attribute:stage == small"}])
    assert r["tasks"] == []
    assert r["failures"][0]["reason"] == "RESOURCE:MEMORY"
    # Too big for any instance.
    huge = unique("huge")
    register(ecs, huge, [{"name": "app", "image": "busybox", "memory": 50_000_000, "command": ["true"]}])
    r = ecs.run_task(cluster=cluster, taskDefinition=huge)
    assert r["tasks"] == [] and r["failures"][0]["reason"] == "RESOURCE:MEMORY"
    # Draining the small instance: no new tasks there.
    ecs.update_container_instances_state(cluster=cluster, containerInstances=[small["containerInstanceArn"]],
                                         status="DRAINING")
    ecs.stop_task(cluster=cluster, task=t["taskArn"])
    wait_status(ecs, cluster, t["taskArn"], "STOPPED")
    r = ecs.run_task(cluster=cluster, taskDefinition=fam,
                     placementConstraints=[{"type": "memberOf", "expression": "attribute:stage == small"}])
    assert r["tasks"] == [] and r["failures"]
    d = ecs.deregister_container_instance(cluster=cluster, containerInstance=small["containerInstanceArn"])
    assert d["containerInstance"]["status"] == "INACTIVE"


def test_services_survive_a_server_restart(nimbus, tmp_path):
    srv = nimbus()
    import_busybox(srv, tmp_path)
    ecs = srv.client("ecs")
    ecs.create_cluster(clusterName="durable")
    register(ecs, "keep", [{"name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "600"]}])
    ecs.create_service(cluster="durable", serviceName="keep", taskDefinition="keep", desiredCount=1)
    wait_for(lambda: steady(ecs, "durable", "keep"), timeout=60, what="steady")
    before = {t["taskArn"] for t in running_tasks(ecs, "durable", "keep")}
    srv.kill9()
    srv.start()
    ecs = srv.client("ecs")
    s = service(ecs, "durable", "keep")
    assert s["desiredCount"] == 1 and s["status"] == "ACTIVE"
    now = wait_for(lambda: (x := {t["taskArn"] for t in running_tasks(ecs, "durable", "keep")}) and x,
                   timeout=60, what="service task after restart")
    assert now != before


def test_target_group_behind_api_gateway_round_robins_healthy_tasks(ecs_server, ecs):
    from apigw_e2e import call

    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("lb")
    tg = f"arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/{fam}/0123456789abcdef"
    register(ecs, fam, [web_container(healthCheck={
        "command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"],
        "interval": 5, "timeout": 2, "retries": 1})], networkMode="bridge")
    ecs.create_service(cluster=cluster, serviceName="lb", taskDefinition=fam, desiredCount=2,
                       loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 8080}])
    gw = ecs_server.client("apigatewayv2")
    api_id = gw.create_api(Name=fam, ProtocolType="HTTP")["ApiId"]
    iid = gw.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY",
                                IntegrationUri=tg, PayloadFormatVersion="1.0")["IntegrationId"]
    gw.create_route(ApiId=api_id, RouteKey="GET /", Target=f"integrations/{iid}")
    gw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

    def both_healthy():
        ts = running_tasks(ecs, cluster, "lb")
        return len(ts) == 2 and all(t["healthStatus"] == "HEALTHY" for t in ts) and ts

    tasks = wait_for(both_healthy, timeout=90, what="two healthy targets")
    seen = set()
    for _ in range(6):
        r = call(ecs_server, api_id, "GET", "/")
        assert r.status == 200, r
        seen.add(r.body.decode().strip())
    assert len(seen) == 2, seen  # round-robin reaches both tasks
    # A stopped task leaves the target group: every answer comes from the other one.
    ecs.update_service(cluster=cluster, service="lb", desiredCount=1)
    wait_for(lambda: len(running_tasks(ecs, cluster, "lb")) == 1, timeout=60, what="scale in")
    answers = {call(ecs_server, api_id, "GET", "/").body.decode().strip() for _ in range(4)}
    assert len(answers) == 1, answers
    assert tasks  # keep the reference for failure output
    ecs.delete_service(cluster=cluster, service="lb", force=True)


def test_unhealthy_service_task_is_replaced(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("sick")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "300"],
                         "stopTimeout": 2,
                         "healthCheck": {"command": ["CMD", "false"], "interval": 5, "timeout": 2, "retries": 1}}])
    ecs.create_service(cluster=cluster, serviceName="sick", taskDefinition=fam, desiredCount=1)

    def replaced():
        stopped = ecs.list_tasks(cluster=cluster, serviceName="sick", desiredStatus="STOPPED")["taskArns"]
        if not stopped:
            return None
        ts = ecs.describe_tasks(cluster=cluster, tasks=stopped)["tasks"]
        return [t for t in ts if t.get("stoppedReason") == "Task failed container health checks"]

    [dead] = wait_for(replaced, timeout=90, what="an unhealthy task replaced")[:1]
    assert dead["stopCode"] == "ServiceSchedulerInitiated"
    msgs = [e["message"] for e in service(ecs, cluster, "sick")["events"]]
    assert any(m.startswith("(service sick) has stopped 1 running tasks: (task ") for m in msgs), msgs
    ecs.delete_service(cluster=cluster, service="sick", force=True)


def test_draining_instance_hands_service_tasks_over(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    [local] = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    spare = ecs.register_container_instance(
        cluster=cluster, totalResources=[{"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                                         {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}])
    spare_arn = spare["containerInstance"]["containerInstanceArn"]
    fam = unique("drain")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "300"],
                         "stopTimeout": 2}])
    # binpack on memory puts the task on the fuller (smaller) spare instance first; drain it.
    ecs.create_service(cluster=cluster, serviceName="mover", taskDefinition=fam, desiredCount=1,
                       placementStrategy=[{"type": "binpack", "field": "memory"}])
    [t] = wait_for(lambda: running_tasks(ecs, cluster, "mover"), timeout=60, what="running")
    assert t["containerInstanceArn"] == spare_arn
    ecs.update_container_instances_state(cluster=cluster, containerInstances=[spare_arn], status="DRAINING")

    def moved():
        ts = running_tasks(ecs, cluster, "mover")
        return len(ts) == 1 and ts[0]["containerInstanceArn"] == local and ts

    wait_for(moved, timeout=90, what="task moved off the draining instance")
    ecs.delete_service(cluster=cluster, service="mover", force=True)


def test_start_task_attributes_and_instance_filter(ecs):
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    extra = ecs.register_container_instance(
        cluster=cluster, totalResources=[{"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                                         {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}])
    arn = extra["containerInstance"]["containerInstanceArn"]
    r = ecs.put_attributes(cluster=cluster, attributes=[
        {"name": "tier", "value": "gold", "targetType": "container-instance", "targetId": arn}])
    assert r["attributes"][0]["targetId"] == arn
    listed = ecs.list_attributes(cluster=cluster, targetType="container-instance", attributeName="tier")
    assert [(a["name"], a["value"], a["targetId"]) for a in listed["attributes"]] == [("tier", "gold", arn)]
    assert ecs.list_container_instances(cluster=cluster, filter="attribute:tier == gold")["containerInstanceArns"] == [arn]
    assert len(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]) == 2
    fam = unique("start")
    register(ecs, fam, [{"name": "app", "image": "busybox", "memory": 32, "command": ["sleep", "30"]}])
    r = ecs.start_task(cluster=cluster, taskDefinition=fam, containerInstances=[arn], startedBy="me")
    [t] = r["tasks"]
    assert t["containerInstanceArn"] == arn and t["startedBy"] == "me"
    wait_status(ecs, cluster, t["taskArn"], "RUNNING")
    assert t["taskArn"] in ecs.list_tasks(cluster=cluster, containerInstance=arn)["taskArns"]
    ecs.delete_attributes(cluster=cluster, attributes=[{"name": "tier", "targetType": "container-instance",
                                                        "targetId": arn}])
    assert ecs.list_container_instances(cluster=cluster, filter="attribute:tier == gold")["containerInstanceArns"] == []
    ecs.stop_task(cluster=cluster, task=t["taskArn"])
