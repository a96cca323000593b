"""An ECS service behind an HTTP API: the service's tasks are the targets of an ELBv2 target
group, and an HTTP_PROXY integration whose IntegrationUri is that target group (a private
integration, ConnectionType VPC_LINK) sends each request to one healthy target, round-robin.
No healthy target → 503 {"message": "Service Unavailable"}; a stopped task stops receiving
requests and its replacement joins the rotation."""
import time

import pytest
from botocore.exceptions import ClientError

from apigw_e2e import call
from ecs_e2e import ACCOUNT, busybox_server, register, target_group_arn, unique, wait_for, web_container

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def lb_server(tmp_path_factory):
    with busybox_server(tmp_path_factory, "nimbus-ecs-lb") as s:
        yield s


def private_api(gw, tg_arn, name):
    """An HTTP API whose $default route goes to the target group (auto-deployed $default stage)."""
    api_id = gw.create_api(Name=unique(name), ProtocolType="HTTP")["ApiId"]
    iid = gw.create_integration(
        ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY", IntegrationUri=tg_arn,
        ConnectionType="VPC_LINK", ConnectionId="vl-nimbus", PayloadFormatVersion="1.0")["IntegrationId"]
    gw.create_route(ApiId=api_id, RouteKey="$default", Target=f"integrations/{iid}")
    gw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    return api_id, iid


def test_private_integration_control_plane_and_no_targets(server):
    gw = server.client("apigatewayv2")
    tg = target_group_arn(unique("empty"))
    api_id, iid = private_api(gw, tg, "tg-empty")
    i = gw.get_integration(ApiId=api_id, IntegrationId=iid)
    assert (i["IntegrationUri"], i["ConnectionType"], i["ConnectionId"]) == (tg, "VPC_LINK", "vl-nimbus")
    # Nothing is registered in the target group: API Gateway's own 503.
    r = call(server, api_id, "GET", "/")
    assert (r.status, r.json()) == (503, {"message": "Service Unavailable"}), r
    # A listener ARN needs ELBv2's listener rules, which this build does not have.
    listener = f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}:listener/app/lb/50dc6c495c0c9188/0467ef3c8400ae65"
    with pytest.raises(ClientError) as e:
        gw.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY",
                              IntegrationUri=listener, ConnectionType="VPC_LINK", ConnectionId="vl-nimbus")
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    # VPC_LINK with a plain URL is refused too.
    with pytest.raises(ClientError) as e:
        gw.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY",
                              IntegrationUri="http://127.0.0.1:9/", ConnectionType="VPC_LINK",
                              ConnectionId="vl-nimbus")
    assert e.value.response["Error"]["Code"] == "BadRequestException"


def get_body(server, api_id, path="/"):
    """(status, body) through the API; connection-level trouble counts as status 0."""
    try:
        r = call(server, api_id, "GET", path, timeout=10)
    except OSError as err:
        return 0, repr(err)
    return r.status, r.body.decode(errors="replace").strip()


def running_task_arns(ecs, cluster, service):
    arns = ecs.list_tasks(cluster=cluster, serviceName=service)["taskArns"]
    if not arns:
        return []
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
    return sorted(t["taskArn"] for t in tasks if t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING")


def test_service_tasks_behind_an_http_api_round_robin(lb_server):
    ecs = lb_server.client("ecs")
    gw = lb_server.client("apigatewayv2")
    cluster = unique("c")
    ecs.create_cluster(clusterName=cluster)
    fam = unique("web")
    # Each task answers with its own hostname (unique per task).
    register(ecs, fam, [web_container()], networkMode="bridge")
    tg = target_group_arn(unique("web"))
    svc = ecs.create_service(
        cluster=cluster, serviceName="web", taskDefinition=fam, desiredCount=2,
        loadBalancers=[{"targetGroupArn": tg, "containerName": "web", "containerPort": 8080}])["service"]
    assert svc["loadBalancers"][0]["targetGroupArn"] == tg
    api_id, _ = private_api(gw, tg, "tg-web")

    # Both tasks come up and answer through the API.
    wait_for(lambda: len(running_task_arns(ecs, cluster, "web")) == 2, timeout=120, what="2 running tasks")
    seen = set()

    def both_seen():
        status, body = get_body(lb_server, api_id)
        if status == 200:
            seen.add(body)
        return len(seen) == 2

    wait_for(both_seen, timeout=60, what=f"answers from both tasks (seen {seen})")
    # Round-robin: with two healthy targets, consecutive requests go to different tasks.
    bodies = []
    for _ in range(6):
        status, body = get_body(lb_server, api_id, "/index.html")
        assert status == 200, (status, body)
        bodies.append(body)
    assert set(bodies) == seen, bodies
    assert all(a != b for a, b in zip(bodies, bodies[1:])), bodies

    # Stop one task: it leaves the rotation at once; the other keeps serving until the
    # service's replacement is RUNNING and joins.
    [first, second] = running_task_arns(ecs, cluster, "web")
    stopped_body = hostname_of(first, seen)
    assert hostname_of(second, seen) != stopped_body
    ecs.stop_task(cluster=cluster, task=first, reason="load balancing test")
    after = []
    deadline = time.monotonic() + 120
    replacement = None
    while time.monotonic() < deadline:
        status, body = get_body(lb_server, api_id)
        after.append((status, body))
        assert status == 200, (status, body, after[-10:])
        assert body != stopped_body, f"the stopped task still got a request: {after[-10:]}"
        if body not in seen:
            replacement = body
            break
        time.sleep(0.05)
    assert replacement, f"the replacement task never answered: {after[-10:]}"
    # The rotation is again the remaining task and the replacement.
    bodies = [get_body(lb_server, api_id) for _ in range(6)]
    assert all(s == 200 for s, _ in bodies), bodies
    assert {b for _, b in bodies} == (seen - {stopped_body}) | {replacement}, bodies
    ecs.update_service(cluster=cluster, service="web", desiredCount=0)
    ecs.delete_service(cluster=cluster, service="web", force=True)
    # No task left: 503 again once the service's tasks are gone.
    wait_for(lambda: get_body(lb_server, api_id)[0] == 503, timeout=120, what="503 after the service is gone")


def hostname_of(task_arn, seen):
    """The body a task answers with: its hostname, which for a bridge-mode task without a
    `hostname` in its definition is a prefix of its task id (as Docker's container id)."""
    task_id = task_arn.rsplit("/", 1)[-1]
    [body] = [b for b in seen if b and task_id.startswith(b)] or [None]
    assert body, f"no answer names task {task_id}: {seen}"
    return body
