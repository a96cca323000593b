"""`nimbus advise` over real ECS work: a standalone task and a service's task run as
containers; the task-seconds the advisor reports are the time they actually ran."""
import json
import subprocess
import time

import pytest

from ecs_e2e import import_busybox, register, target_group_arn, task_of, unique, web_container
from nimbus_e2e import NIMBUS_BIN, wait_until

pytestmark = pytest.mark.timeout(300)

FARGATE = dict(requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512")
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0abc123d4ef56789a"]}}


def advise_json(server, *args):
    out = subprocess.run([str(NIMBUS_BIN), "advise", "--endpoint", server.endpoint, "--output", "json",
                          *args], capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)


def ran_seconds(t) -> float:
    return (t["stoppedAt"] - t["startedAt"]).total_seconds()


def service_task_running(ecs, cluster, service, what):
    """The ARN of the service's (first) task once it is RUNNING."""
    def running():
        arns = ecs.list_tasks(cluster=cluster, serviceName=service)["taskArns"]
        return arns and task_of(ecs, cluster, arns[0])["lastStatus"] == "RUNNING" and arns[0]
    return wait_until(running, 90, interval=0.2, what=what)


@pytest.fixture
def ecs_server(nimbus, tmp_path):
    s = nimbus()
    import_busybox(s, tmp_path)
    return s


def test_task_and_service_seconds_are_what_ran(ecs_server):
    s = ecs_server
    ecs = s.client("ecs")
    cluster = unique("adv")
    ecs.create_cluster(clusterName=cluster)
    batch = unique("batch")
    ecs.register_task_definition(family=batch, containerDefinitions=[
        {"name": "job", "image": "busybox", "essential": True, "command": ["sh", "-c", "sleep 3"]}], **FARGATE)
    [t] = ecs.run_task(cluster=cluster, taskDefinition=batch, launchType="FARGATE",
                       networkConfiguration=NETWORK)["tasks"]
    done = wait_until(lambda: (x := task_of(ecs, cluster, t["taskArn"]))["lastStatus"] == "STOPPED" and x,
                      60, interval=0.2, what="batch task stopped")

    web = unique("web")
    ecs.register_task_definition(family=web, containerDefinitions=[
        {"name": "web", "image": "busybox", "essential": True, "command": ["sleep", "3600"]}], **FARGATE)
    svc = unique("svc")
    ecs.create_service(cluster=cluster, serviceName=svc, taskDefinition=web, desiredCount=1,
                       launchType="FARGATE", networkConfiguration=NETWORK)

    svc_task = service_task_running(ecs, cluster, svc, what="service task RUNNING")
    time.sleep(2)  # let the service's task accumulate measurable running time
    ecs.update_service(cluster=cluster, service=svc, desiredCount=0)
    svc_done = wait_until(lambda: (x := task_of(ecs, cluster, svc_task))["lastStatus"] == "STOPPED" and x,
                          90, interval=0.2, what="service task stopped")

    advice = advise_json(s)
    by_id = {w["id"]: w for w in advice["workloads"]}
    b = by_id[f"{cluster}/{batch}"]
    assert b["kind"] == "task" and b["name"] == batch
    assert b["measured"]["task_seconds"] == pytest.approx(ran_seconds(done), abs=1.5), (b, done)
    assert b["measured"]["memory_mb"] == 512
    fargate = b["options"][1]
    assert fargate["model"] == "Fargate" and "0.25 vCPU / 0.5 GB" in fargate["config"]
    # Fargate's price is the projected task-hours at 0.25 vCPU and 0.5 GB.
    assert fargate["monthly_usd"] == pytest.approx(
        b["monthly"]["task_hours"] * (0.25 * 0.04048 + 0.5 * 0.004445), rel=1e-9)

    w = by_id[f"{cluster}/{svc}"]
    assert w["kind"] == "service" and w["name"] == svc
    assert w["measured"]["task_seconds"] == pytest.approx(ran_seconds(svc_done), abs=1.5), (w, svc_done)
    assert w["measured"]["peak_tasks"] == 1
    assert w["recommendation"] in ("Lambda", "Fargate", "EC2") and w["reasons"]


def test_gateway_requests_are_credited_to_the_service_behind_the_target_group(ecs_server):
    """Usage accounting joins gateway route counts to the ECS service a private integration
    (HTTP_PROXY to an ELBv2 target group) sends them to; a service no API fronts gets none."""
    from apigw_e2e import call

    s = ecs_server
    ecs, gw = s.client("ecs"), s.client("apigatewayv2")
    cluster = unique("advgw")
    ecs.create_cluster(clusterName=cluster)
    web = unique("web")
    register(ecs, web, [web_container("echo hi", essential=True)], networkMode="bridge")
    tg = target_group_arn(unique("tg"))
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=web, desiredCount=1,
                       loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 8080}])
    # A second service, fronted by nothing.
    ecs.create_service(cluster=cluster, serviceName="quiet", taskDefinition=web, desiredCount=1)

    api_id = gw.create_api(Name=unique("adv-api"), ProtocolType="HTTP")["ApiId"]
    iid = gw.create_integration(
        ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY", IntegrationUri=tg,
        ConnectionType="VPC_LINK", ConnectionId="vl-nimbus", PayloadFormatVersion="1.0")["IntegrationId"]
    gw.create_route(ApiId=api_id, RouteKey="GET /ready", Target=f"integrations/{iid}")
    gw.create_route(ApiId=api_id, RouteKey="GET /index.html", Target=f"integrations/{iid}")
    gw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

    def ready():
        try:
            return call(s, api_id, "GET", "/ready", timeout=10).status == 404  # httpd: no such file
        except OSError:
            return False

    wait_until(ready, 120, interval=0.2, what="the service answering through the API")
    counted = 7
    for _ in range(counted):
        r = call(s, api_id, "GET", "/index.html", timeout=10)
        assert (r.status, r.body.strip()) == (200, b"hi"), r

    def usage():
        status, _, body = s.http("GET", "/_nimbus/usage")
        assert status == 200, body
        u = json.loads(body)
        routes = {(r["api_id"], r["route_key"]): r["requests"] for r in u["routes"]}
        services = {x["name"]: x for x in u["services"]}
        want = (api_id, "GET /index.html")
        return routes.get(want) == counted and f"{cluster}/web" in services and \
            f"{cluster}/quiet" in services and (routes, services)

    # Service usage appears once its task reports (at the latest when it stops).
    ecs.update_service(cluster=cluster, service="web", desiredCount=0)
    ecs.update_service(cluster=cluster, service="quiet", desiredCount=0)
    routes, services = wait_until(usage, 120, interval=0.5, what="route and service usage")
    api_total = sum(n for (a, _), n in routes.items() if a == api_id)
    assert api_total >= counted + 1, routes
    assert services[f"{cluster}/web"]["requests"] == api_total, (services, routes)
    assert services[f"{cluster}/quiet"]["requests"] == 0, services

    advice = advise_json(s)
    by_id = {w["id"]: w for w in advice["workloads"]}
    w = by_id[f"{cluster}/web"]
    assert w["measured"]["invocations"] == api_total, w
    lam = w["options"][0]
    assert lam["model"] == "Lambda" and " req" in lam["config"], lam
    assert by_id[f"{cluster}/quiet"]["measured"]["invocations"] == 0


def test_measured_cpu_of_a_spinning_service(ecs_server):
    """The sandbox's cgroup CPU time reaches the advisor: a task that spins shows high
    utilisation of its reservation, and the advice no longer says CPU was unmeasured."""
    s = ecs_server
    ecs = s.client("ecs")
    cluster = unique("advcpu")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("spin")
    ecs.register_task_definition(family=fam, containerDefinitions=[
        {"name": "spin", "image": "busybox", "essential": True,
         "command": ["sh", "-c", "while :; do :; done"]}], **FARGATE)
    ecs.create_service(cluster=cluster, serviceName="spin", taskDefinition=fam, desiredCount=1,
                       launchType="FARGATE", networkConfiguration=NETWORK)

    arn = service_task_running(ecs, cluster, "spin", what="spinning task RUNNING")
    time.sleep(3)  # let it accrue CPU time; the stop reports the final period
    ecs.update_service(cluster=cluster, service="spin", desiredCount=0)
    wait_until(lambda: task_of(ecs, cluster, arn)["lastStatus"] == "STOPPED", 90, interval=0.2, what="stopped")

    def measured():
        w = {w["id"]: w for w in advise_json(s)["workloads"]}.get(f"{cluster}/spin")
        return w and w["measured"]["task_seconds"] > 0 and w

    w = wait_until(measured, 60, interval=0.5, what="service usage")
    # A spinning shell keeps at least a good share of its 0.25 vCPU busy even on a loaded
    # machine (more where the reservation is not enforced as a cap).
    assert w["measured"]["cpu_utilization"] > 0.3, w
    assert not any("CPU use was not measured" in r for r in w["reasons"]), w["reasons"]
