"""ECS conformance: where Nimbus must behave as AWS documents (and as real AWS answers) for a
user driving it with boto3 / the AWS CLI: error codes and HTTP statuses, response fields and
their types, ARN formats, pagination, validation of task definitions and launch types.

Sources, per assertion (in comments):
  [docs]      the ECS API Reference / CLI reference / Developer Guide text (verified with the
              docs search while writing these tests).
  [model]     botocore's ecs/2014-11-13/service-2.json only (shapes, member types, the
              errors an operation declares); wording not verified.
  [observed]  messages real AWS returns, as quoted in public user reports (the exact text is
              only asserted where several independent reports agree).

Most checks need no running container: services with desiredCount 0, task definitions,
clusters, errors. A handful run real tasks from an image built from files (busybox) and
imported through `POST /_nimbus/images/import`.
"""
from __future__ import annotations

import json
import re
import uuid

import pytest
from botocore.exceptions import ClientError

import ecs_e2e
from ecs_e2e import expect_error, is_ts
from nimbus_e2e import error_code, http_status, unique_name, wait_until
from oci_images import busybox_image

ACCOUNT = "000000000000"
REGION = "us-east-1"
ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
TASK_ID_RE = r"[0-9a-f]{32}"
MISSING_IMAGE = "nimbus-conformance-missing-image:v1"


# -- helpers ------------------------------------------------------------------------------
def ecs(server):
    return server.client("ecs")


def new_cluster(server, prefix="conf") -> str:
    name = unique_name(prefix)
    ecs(server).create_cluster(clusterName=name)
    return name


def container(name="app", image=MISSING_IMAGE, **kw) -> dict:
    d = {"name": name, "image": image, "memory": 64, "essential": True}
    d.update(kw)
    return d


def register(server, family=None, containers=None, **kw) -> dict:
    family = family or unique_name("fam")
    return ecs(server).register_task_definition(
        family=family, containerDefinitions=containers or [container()], **kw)["taskDefinition"]


def register_fargate(server, family=None, image=MISSING_IMAGE, cpu="256", memory="512", **kw) -> dict:
    family = family or unique_name("fg")
    return ecs(server).register_task_definition(
        family=family, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu=cpu,
        memory=memory, containerDefinitions=[{"name": "app", "image": image, "essential": True}],
        **kw)["taskDefinition"]


AWSVPC = {"awsvpcConfiguration": {"subnets": ["subnet-0abc123d4ef56789a"],
                                  "securityGroups": ["sg-0abc123d4ef56789a"]}}


def pages(call, key: str, **kw) -> tuple[list, int]:
    """All items of a maxResults/nextToken listing; also the number of pages it took."""
    items, token, n = [], None, 0
    while True:
        args = dict(kw)
        if token:
            args["nextToken"] = token
        r = call(**args)
        items += r[key]
        n += 1
        token = r.get("nextToken")
        if not token:
            return items, n
        assert n < 100, "pagination does not end"


# -- clusters -----------------------------------------------------------------------------
def test_create_cluster_cli_shape(server):
    # [docs] CLI reference example of create-cluster: the cluster object with these members.
    name = unique_name("MyCluster")
    out = server.aws_json("ecs", "create-cluster", "--cluster-name", name)
    c = out["cluster"]
    assert c["clusterArn"] == f"{ARN}:cluster/{name}"
    assert c["clusterName"] == name
    assert c["status"] == "ACTIVE"
    for k in ("registeredContainerInstancesCount", "runningTasksCount", "pendingTasksCount",
              "activeServicesCount"):
        assert isinstance(c[k], int), (k, c)
    assert c["runningTasksCount"] == 0 and c["pendingTasksCount"] == 0
    assert c["activeServicesCount"] == 0
    # [model] lists, not absent/null.
    assert isinstance(c.get("statistics"), list) and isinstance(c.get("tags"), list), c


def test_create_cluster_is_idempotent(server):
    # [observed] CreateCluster with an existing name returns the existing cluster (no error).
    name = new_cluster(server)
    again = ecs(server).create_cluster(clusterName=name)["cluster"]
    assert again["clusterArn"] == f"{ARN}:cluster/{name}" and again["status"] == "ACTIVE"
    assert ecs(server).list_clusters()["clusterArns"].count(f"{ARN}:cluster/{name}") == 1


def test_describe_clusters_by_name_and_arn_and_missing(server):
    name = new_cluster(server)
    missing = unique_name("nope")
    r = ecs(server).describe_clusters(clusters=[name, f"{ARN}:cluster/{name}", missing])
    assert [c["clusterName"] for c in r["clusters"]] in ([name, name], [name])
    # [docs] Failure.reason MISSING; [observed] the failure's arn is the full cluster ARN.
    assert r["failures"] == [{"arn": f"{ARN}:cluster/{missing}", "reason": "MISSING"}], r["failures"]


def test_delete_cluster_then_inactive(server):
    name = new_cluster(server)
    c = ecs(server).delete_cluster(cluster=name)["cluster"]
    assert c["clusterArn"] == f"{ARN}:cluster/{name}"
    # [docs] DeleteCluster: "the cluster transitions to INACTIVE"; INACTIVE clusters stay
    # describable but are not listed.
    assert c["status"] == "INACTIVE"
    assert f"{ARN}:cluster/{name}" not in ecs(server).list_clusters()["clusterArns"]
    d = ecs(server).describe_clusters(clusters=[name])
    assert [x["status"] for x in d["clusters"]] == ["INACTIVE"], d


def test_delete_unknown_cluster(server):
    # [model] DeleteCluster declares ClusterNotFoundException.
    expect_error(ecs(server).delete_cluster, "ClusterNotFoundException", cluster=unique_name("nope"))


@pytest.mark.parametrize("op,kw", [
    ("list_tasks", {}),
    ("list_services", {}),
    ("list_container_instances", {}),
    ("run_task", {"taskDefinition": "whatever:1"}),
    ("describe_tasks", {"tasks": [f"{ARN}:task/x/{'0' * 32}"]}),
    ("describe_services", {"services": ["svc"]}),
    ("stop_task", {"task": "0" * 32}),
    ("create_service", {"serviceName": "svc", "taskDefinition": "whatever:1", "desiredCount": 0}),
    ("update_service", {"service": "svc", "desiredCount": 0}),
    ("delete_service", {"service": "svc"}),
])
def test_unknown_cluster_is_cluster_not_found(server, op, kw):
    # [model] each of these operations declares ClusterNotFoundException; [docs] "The specified
    # cluster wasn't found". ECS errors are HTTP 400.
    expect_error(getattr(ecs(server), op), "ClusterNotFoundException",
                 cluster=unique_name("no-such-cluster"), **kw)


def test_list_clusters_pagination(server):
    names = [new_cluster(server, "page") for _ in range(3)]
    arns, n = pages(ecs(server).list_clusters, "clusterArns", maxResults=1)
    assert n >= 3
    for name in names:
        assert f"{ARN}:cluster/{name}" in arns
    assert len(arns) == len(set(arns)), "a cluster listed twice across pages"
    first = ecs(server).list_clusters(maxResults=1)
    assert len(first["clusterArns"]) == 1 and isinstance(first.get("nextToken"), str)


def test_cluster_tags(server):
    name = unique_name("tagged")
    c = ecs(server).create_cluster(clusterName=name, tags=[{"key": "team", "value": "a"}])["cluster"]
    arn = c["clusterArn"]
    assert ecs(server).list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "team", "value": "a"}]
    ecs(server).tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "dev"}])
    tags = ecs(server).list_tags_for_resource(resourceArn=arn)["tags"]
    assert sorted((t["key"], t["value"]) for t in tags) == [("env", "dev"), ("team", "a")]
    ecs(server).untag_resource(resourceArn=arn, tagKeys=["team"])
    assert ecs(server).list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "env", "value": "dev"}]
    # [docs] DescribeClusters returns tags only with include=["TAGS"].
    d = ecs(server).describe_clusters(clusters=[name], include=["TAGS"])["clusters"][0]
    assert d["tags"] == [{"key": "env", "value": "dev"}]


# -- task definitions ---------------------------------------------------------------------
def test_register_task_definition_shape_and_revisions(server):
    family = unique_name("web")
    td = register(server, family, [container(portMappings=[{"containerPort": 8080}],
                                             environment=[{"name": "A", "value": "1"}])])
    assert td["taskDefinitionArn"] == f"{ARN}:task-definition/{family}:1"
    assert td["family"] == family and td["revision"] == 1 and td["status"] == "ACTIVE"
    assert is_ts(td["registeredAt"]), td.get("registeredAt")
    assert "EC2" in td["compatibilities"], td.get("compatibilities")
    c = td["containerDefinitions"][0]
    assert c["name"] == "app" and c["image"] == MISSING_IMAGE and c["memory"] == 64
    assert c["essential"] is True
    # [docs] PortMapping.protocol defaults to tcp (and AWS echoes it).
    assert c["portMappings"][0]["containerPort"] == 8080
    assert c["portMappings"][0]["protocol"] == "tcp"
    assert c["environment"] == [{"name": "A", "value": "1"}]
    td2 = register(server, family)
    assert td2["revision"] == 2 and td2["taskDefinitionArn"].endswith(f"task-definition/{family}:2")
    # describe by family → latest ACTIVE revision; by family:rev and by ARN → that revision.
    assert ecs(server).describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 2
    assert ecs(server).describe_task_definition(taskDefinition=f"{family}:1")["taskDefinition"]["revision"] == 1
    by_arn = ecs(server).describe_task_definition(taskDefinition=td["taskDefinitionArn"])
    assert by_arn["taskDefinition"]["taskDefinitionArn"] == td["taskDefinitionArn"]


def test_register_task_definition_cli(server, tmp_path):
    family = unique_name("cli")
    (tmp_path / "td.json").write_text(json.dumps({
        "family": family,
        "containerDefinitions": [{"name": "web", "image": MISSING_IMAGE, "memory": 128,
                                  "portMappings": [{"containerPort": 80, "hostPort": 0}]}]}))
    out = server.aws_json("ecs", "register-task-definition", "--cli-input-json", "file://td.json",
                          cwd=tmp_path)
    assert out["taskDefinition"]["taskDefinitionArn"] == f"{ARN}:task-definition/{family}:1"
    listed = server.aws_json("ecs", "list-task-definitions", "--family-prefix", family)
    assert listed["taskDefinitionArns"] == [f"{ARN}:task-definition/{family}:1"]


def test_register_with_empty_container_definitions(server):
    # [model] containerDefinitions is required; [observed] an empty list → 400
    # ClientException "Container list cannot be empty." (awsdocs/aws-cloudformation-user-guide
    # PR #454 quotes it).
    expect_error(ecs(server).register_task_definition, "ClientException",
                 message="Container list cannot be empty.",
                 family=unique_name("empty"), containerDefinitions=[])


@pytest.mark.parametrize("cdef,message", [
    ({"name": "app", "memory": 64}, "Container.image should not be null or empty."),
    ({"name": "app", "image": "", "memory": 64}, "Container.image should not be null or empty."),
    ({"name": "has space", "image": MISSING_IMAGE, "memory": 64}, "Container.name contains invalid characters."),
    ({"name": "", "image": MISSING_IMAGE, "memory": 64}, "Container.name should not be null or empty."),
])
def test_register_invalid_container(server, cdef, message):
    # [observed] ClientException with these messages (aws/aws-cli #5924;
    # hashicorp/terraform-provider-aws #5950; hashicorp/terraform #2888).
    expect_error(ecs(server).register_task_definition, "ClientException", message=message,
                 family=unique_name("badc"), containerDefinitions=[cdef])


@pytest.mark.parametrize("family", ["has space", "bad!name", "x" * 256, "dots.are.bad"])
def test_register_invalid_family(server, family):
    # [docs] family: "Up to 255 letters (uppercase and lowercase), numbers, underscores, and
    # hyphens are allowed." [observed] 400 ClientException "Family contains invalid
    # characters." (aws/amazon-ecs-cli #37, #542).
    e = expect_error(ecs(server).register_task_definition, "ClientException",
                     family=family, containerDefinitions=[container()])
    if len(family) <= 255:
        assert e.response["Error"]["Message"] == "Family contains invalid characters.", e.response["Error"]


def test_ec2_container_needs_memory_without_task_memory(server):
    # [docs] ContainerDefinition.memory: "If you're using the EC2 launch type, you must specify
    # either a task-level memory value or a container-level memory value."
    # [observed] ClientException "Invalid setting for container 'app'. At least one of
    # 'memory' or 'memoryReservation' must be specified." (aws/aws-cli #4453)
    expect_error(ecs(server).register_task_definition, "ClientException",
                 message="Invalid setting for container 'app'. At least one of 'memory' or "
                         "'memoryReservation' must be specified.",
                 family=unique_name("nomem"),
                 containerDefinitions=[{"name": "app", "image": MISSING_IMAGE}])
    # With task-level memory it is accepted.
    ecs(server).register_task_definition(
        family=unique_name("taskmem"), memory="256",
        containerDefinitions=[{"name": "app", "image": MISSING_IMAGE}])
    # memoryReservation alone is enough.
    ecs(server).register_task_definition(
        family=unique_name("resv"),
        containerDefinitions=[{"name": "app", "image": MISSING_IMAGE, "memoryReservation": 32}])


@pytest.mark.parametrize("cpu,memory", [
    ("256", "512"), ("256", "1024"), ("256", "2048"), ("512", "1024"), ("512", "4096"),
    ("1024", "2048"), ("1024", "8192"), ("2048", "4096"), ("2048", "16384"), ("4096", "8192"),
    ("4096", "30720"), ("1 vCPU", "2 GB"),
])
def test_fargate_valid_cpu_memory(server, cpu, memory):
    # [docs] Developer Guide "Task CPU and memory" table for Fargate; units like "1 vCPU" /
    # "2 GB" are accepted and converted ([docs] RegisterTaskDefinition cpu/memory).
    td = register_fargate(server, cpu=cpu, memory=memory)
    assert "FARGATE" in td["compatibilities"]
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert td["networkMode"] == "awsvpc"
    # The response carries cpu/memory as strings of CPU units / MiB: [docs] "1 vCPU" is
    # "converted to an integer indicating the CPU units when the task definition is
    # registered" (likewise "2 GB" → MiB).
    units = {"1 vCPU": "1024", "2 GB": "2048"}
    assert td["cpu"] == units.get(cpu, cpu) and td["memory"] == units.get(memory, memory), (td["cpu"], td["memory"])


@pytest.mark.parametrize("cpu,memory", [
    ("256", "4096"), ("512", "512"), ("1024", "1024"), ("2048", "2048"), ("4096", "4096"),
    ("256", "3072"), ("1024", "9216"), ("333", "1024"),
])
def test_fargate_invalid_cpu_memory(server, cpu, memory):
    # [observed] ClientException "No Fargate configuration exists for given values: 1024 CPU,
    # 1024 memory. See the Amazon ECS documentation for the valid values."
    # (aws-games/cloud-game-development-toolkit #737)
    expect_error(register_fargate, "ClientException", server=server, cpu=cpu, memory=memory,
                 message="No Fargate configuration exists for given values")


def test_fargate_requires_awsvpc(server):
    # [docs] "For Amazon ECS tasks on Fargate, the awsvpc network mode is required."
    # [observed] ClientException "Fargate only supports network mode 'awsvpc'."
    for mode in ("bridge", "host"):
        e = expect_error(ecs(server).register_task_definition, "ClientException",
                         family=unique_name("fgnet"), requiresCompatibilities=["FARGATE"],
                         networkMode=mode, cpu="256", memory="512",
                         containerDefinitions=[{"name": "app", "image": MISSING_IMAGE}])
        assert "awsvpc" in e.response["Error"]["Message"], e.response["Error"]


def test_fargate_requires_task_level_cpu(server):
    # [docs] cpu: "This field is required for Fargate." [observed] ClientException
    # "Fargate requires that 'cpu' be defined at the task level."
    expect_error(ecs(server).register_task_definition, "ClientException",
                 family=unique_name("fgcpu"), requiresCompatibilities=["FARGATE"],
                 networkMode="awsvpc", memory="512",
                 containerDefinitions=[{"name": "app", "image": MISSING_IMAGE}])


def test_fargate_awslogs_needs_execution_role(server):
    # [observed] ClientException "Fargate requires task definition to have execution role ARN
    # to support log driver awslogs." (virtual-kubelet/virtual-kubelet #193)
    expect_error(ecs(server).register_task_definition, "ClientException",
                 message="Fargate requires task definition to have execution role ARN to support log driver awslogs.",
                 family=unique_name("fglogs"), requiresCompatibilities=["FARGATE"],
                 networkMode="awsvpc", cpu="256", memory="512",
                 containerDefinitions=[{"name": "app", "image": MISSING_IMAGE, "logConfiguration": {
                     "logDriver": "awslogs", "options": {"awslogs-group": "/ecs/x", "awslogs-region": REGION,
                                                         "awslogs-stream-prefix": "p"}}}])


def test_fargate_refuses_privileged(server):
    # [docs] ContainerDefinition.privileged: "This parameter is not supported for ... tasks
    # run on Fargate." The code is [observed] ClientException.
    expect_error(ecs(server).register_task_definition, "ClientException",
                 family=unique_name("fgpriv"), requiresCompatibilities=["FARGATE"],
                 networkMode="awsvpc", cpu="256", memory="512",
                 containerDefinitions=[{"name": "app", "image": MISSING_IMAGE, "privileged": True}])


def test_awsvpc_port_mappings(server):
    # [docs] PortMapping.hostPort: with awsvpc "the hostPort can either be kept blank or set to
    # the same value as the containerPort"; AWS echoes hostPort == containerPort.
    fam = unique_name("vpcports")
    td = ecs(server).register_task_definition(
        family=fam, requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256",
        memory="512", containerDefinitions=[{"name": "app", "image": MISSING_IMAGE,
                                             "portMappings": [{"containerPort": 8080}]}])["taskDefinition"]
    pm = td["containerDefinitions"][0]["portMappings"][0]
    assert pm["containerPort"] == 8080 and pm["hostPort"] == 8080 and pm["protocol"] == "tcp", pm
    # A different hostPort is refused ([observed] ClientException "When networkMode=awsvpc,
    # the host ports and container ports in port mappings must match.").
    expect_error(ecs(server).register_task_definition, "ClientException",
                 family=unique_name("vpcbad"), networkMode="awsvpc", cpu="256", memory="512",
                 requiresCompatibilities=["FARGATE"],
                 containerDefinitions=[{"name": "app", "image": MISSING_IMAGE,
                                        "portMappings": [{"containerPort": 8080, "hostPort": 9090}]}])


def test_describe_unknown_task_definition(server):
    # [observed] ClientException "Unable to describe task definition." (getmoto/moto PR #5910
    # quotes the AWS CLI)
    expect_error(ecs(server).describe_task_definition, "ClientException",
                 message="Unable to describe task definition.",
                 taskDefinition=f"{unique_name('nofam')}:1")
    expect_error(ecs(server).describe_task_definition, "ClientException",
                 message="Unable to describe task definition.",
                 taskDefinition=unique_name("nofam"))


def test_deregister_task_definition(server):
    family = unique_name("dereg")
    td1 = register(server, family)
    register(server, family)
    out = ecs(server).deregister_task_definition(taskDefinition=f"{family}:1")["taskDefinition"]
    # [docs] "Upon deregistration, the task definition is marked as INACTIVE."
    assert out["status"] == "INACTIVE" and out["revision"] == 1
    assert is_ts(out.get("deregisteredAt")), out.get("deregisteredAt")
    # [docs] INACTIVE task definitions remain discoverable.
    d = ecs(server).describe_task_definition(taskDefinition=td1["taskDefinitionArn"])["taskDefinition"]
    assert d["status"] == "INACTIVE"
    # [docs] ListTaskDefinitions status defaults to ACTIVE.
    active = ecs(server).list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert active == [f"{ARN}:task-definition/{family}:2"]
    inactive = ecs(server).list_task_definitions(familyPrefix=family, status="INACTIVE")["taskDefinitionArns"]
    assert inactive == [f"{ARN}:task-definition/{family}:1"]
    # Describing by family alone resolves the latest ACTIVE revision.
    assert ecs(server).describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 2


def test_deregister_needs_revision(server):
    # [docs] DeregisterTaskDefinition: "You must specify a revision."
    family = unique_name("norev")
    register(server, family)
    expect_error(ecs(server).deregister_task_definition, "ClientException", taskDefinition=family)


def test_inactive_task_definition_cannot_run_or_create_service(server):
    # [docs] DeregisterTaskDefinition: "You can't use an INACTIVE task definition to run new
    # tasks or create new services". [observed] RunTask → HTTP 400 InvalidParameterException
    # "TaskDefinition is inactive" (DefangLabs/defang PR #775 quotes the AWS response);
    # CreateService is assumed to answer the same way.
    cluster = new_cluster(server)
    family = unique_name("gone")
    register(server, family)
    ecs(server).deregister_task_definition(taskDefinition=f"{family}:1")
    expect_error(ecs(server).run_task, "InvalidParameterException", cluster=cluster,
                 message="TaskDefinition is inactive",
                 taskDefinition=f"{family}:1", launchType="EC2")
    expect_error(ecs(server).create_service, "InvalidParameterException", cluster=cluster,
                 serviceName=unique_name("svc"), taskDefinition=f"{family}:1", desiredCount=0)


def test_list_task_definitions_pagination_and_sort(server):
    family = unique_name("many")
    for _ in range(4):
        register(server, family)
    arns, n = pages(ecs(server).list_task_definitions, "taskDefinitionArns",
                    familyPrefix=family, maxResults=1)
    assert arns == [f"{ARN}:task-definition/{family}:{r}" for r in (1, 2, 3, 4)] and n >= 4
    desc = ecs(server).list_task_definitions(familyPrefix=family, sort="DESC")["taskDefinitionArns"]
    assert desc == [f"{ARN}:task-definition/{family}:{r}" for r in (4, 3, 2, 1)]
    fams = ecs(server).list_task_definition_families(familyPrefix=family)["families"]
    assert fams == [family]


def test_task_definition_tags(server):
    family = unique_name("tdtags")
    td = ecs(server).register_task_definition(
        family=family, containerDefinitions=[container()],
        tags=[{"key": "k", "value": "v"}])
    assert td.get("tags") == [{"key": "k", "value": "v"}]
    d = ecs(server).describe_task_definition(taskDefinition=family, include=["TAGS"])
    assert d["tags"] == [{"key": "k", "value": "v"}]
    arn = td["taskDefinition"]["taskDefinitionArn"]
    assert ecs(server).list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "k", "value": "v"}]


# -- tasks (no running container needed) -----------------------------------------------------
def test_describe_tasks_missing(server):
    cluster = new_cluster(server)
    arn = f"{ARN}:task/{cluster}/{uuid.uuid4().hex}"
    r = ecs(server).describe_tasks(cluster=cluster, tasks=[arn])
    # [docs] Failure reasons: MISSING.
    assert r["tasks"] == [] and r["failures"] == [{"arn": arn, "reason": "MISSING"}], r


def test_stop_unknown_task(server):
    # [observed] InvalidParameterException "The referenced task was not found"
    # (griptape-ai/griptape-nodes-engine #1454, wazuh/wazuh #25439)
    cluster = new_cluster(server)
    expect_error(ecs(server).stop_task, "InvalidParameterException", cluster=cluster,
                 message="The referenced task was not found", task=uuid.uuid4().hex)


def test_describe_with_empty_lists(server):
    # [observed] InvalidParameterException "Tasks cannot be empty." (aws/copilot-cli #3551,
    # sil-org/ecs-deploy #63) and "Services cannot be empty." (vend/ecs-cleaner #2).
    cluster = new_cluster(server)
    expect_error(ecs(server).describe_tasks, "InvalidParameterException",
                 message="Tasks cannot be empty.", cluster=cluster, tasks=[])
    expect_error(ecs(server).describe_services, "InvalidParameterException",
                 message="Services cannot be empty.", cluster=cluster, services=[])


def test_list_tasks_invalid_family(server):
    # [observed] InvalidParameterException "family must match ^[a-zA-Z0-9\-_]+$"
    # (aws/amazon-ecs-cli #542, awslabs/ecs-task-kite #6).
    cluster = new_cluster(server)
    expect_error(ecs(server).list_tasks, "InvalidParameterException", message="family must match",
                 cluster=cluster, family="fam:2")


def test_run_task_count_limit(server):
    # [docs] RunTask count: "You can specify up to 10 tasks for each call."
    # The code ([model]-declared) is InvalidParameterException.
    cluster = new_cluster(server)
    td = register(server)
    expect_error(ecs(server).run_task, "InvalidParameterException", cluster=cluster,
                 taskDefinition=td["taskDefinitionArn"], count=11, launchType="EC2")


def test_run_task_unknown_task_definition(server):
    cluster = new_cluster(server)
    # [observed] ClientException "TaskDefinition not found." (Cloud-CV/EvalAI #2419, for
    # CreateService; RunTask answers alike)
    expect_error(ecs(server).run_task, "ClientException", cluster=cluster,
                 message="TaskDefinition not found.", taskDefinition=f"{unique_name('nofam')}:1")
    expect_error(ecs(server).create_service, "ClientException", cluster=cluster,
                 message="TaskDefinition not found.", serviceName=unique_name("svc"),
                 taskDefinition=f"{unique_name('nofam')}:1", desiredCount=0)


def test_fargate_run_task_needs_network_configuration(server):
    # [docs] awsvpc: "you must specify a NetworkConfiguration when you create a service or run
    # a task". [observed] InvalidParameterException "Network Configuration must be provided
    # when networkMode 'awsvpc' is specified."
    cluster = new_cluster(server)
    td = register_fargate(server)
    e = expect_error(ecs(server).run_task, "InvalidParameterException", cluster=cluster,
                     taskDefinition=td["taskDefinitionArn"], launchType="FARGATE")
    assert "Network Configuration" in e.response["Error"]["Message"], e.response["Error"]


def test_launch_type_incompatible_task_definition(server):
    # [observed] InvalidParameterException "Task definition does not support launch_type
    # FARGATE." for a task definition whose compatibilities lack FARGATE (bridge mode)
    # (oranmoshai/ecsServiceRestart #2).
    cluster = new_cluster(server)
    td = register(server)
    assert "FARGATE" not in td["compatibilities"]
    expect_error(ecs(server).run_task, "InvalidParameterException", cluster=cluster,
                 message="Task definition does not support launch_type FARGATE.",
                 taskDefinition=td["taskDefinitionArn"], launchType="FARGATE",
                 networkConfiguration=AWSVPC)


def test_run_task_missing_image_stops_with_cannot_pull(server):
    """An image that is nowhere: RunTask succeeds (placement is fine), the task then stops
    with CannotPullContainerError (issue 7 item 5, as AWS reports pull failures)."""
    cluster = new_cluster(server)
    family = unique_name("nopull")
    td = register(server, family)
    r = ecs(server).run_task(cluster=cluster, taskDefinition=family, launchType="EC2",
                             startedBy="conformance", tags=[{"key": "t", "value": "1"}])
    assert r["failures"] == [], r["failures"]
    [t] = r["tasks"]
    # [docs] new ARN format: arn:aws:ecs:region:account:task/cluster-name/task-id
    assert re.fullmatch(rf"{re.escape(ARN)}:task/{re.escape(cluster)}/{TASK_ID_RE}", t["taskArn"]), t["taskArn"]
    assert t["clusterArn"] == f"{ARN}:cluster/{cluster}"
    assert t["taskDefinitionArn"] == td["taskDefinitionArn"]
    assert t["launchType"] == "EC2" and t["desiredStatus"] == "RUNNING"
    assert t["lastStatus"] in ("PROVISIONING", "PENDING", "RUNNING", "STOPPED")
    assert t["startedBy"] == "conformance"
    # [docs] group defaults to "family:<family>".
    assert t["group"] == f"family:{family}"
    assert is_ts(t["createdAt"]) and isinstance(t["version"], int)
    assert re.fullmatch(rf"{re.escape(ARN)}:container-instance/{re.escape(cluster)}/[0-9a-f]{{32}}",
                        t.get("containerInstanceArn", "")), t.get("containerInstanceArn")
    [c] = t["containers"]
    task_id = t["taskArn"].rsplit("/", 1)[1]
    assert re.fullmatch(rf"{re.escape(ARN)}:container/{re.escape(cluster)}/{task_id}/[0-9a-f-]{{36}}",
                        c["containerArn"]), c["containerArn"]
    assert c["taskArn"] == t["taskArn"] and c["name"] == "app" and c["image"] == MISSING_IMAGE
    # [model] Task.overrides is a structure; AWS returns containerOverrides as a list.
    assert isinstance(t["overrides"].get("containerOverrides"), list), t["overrides"]

    def stopped():
        d = ecs(server).describe_tasks(cluster=cluster, tasks=[t["taskArn"]], include=["TAGS"])
        return d["tasks"][0] if d["tasks"] and d["tasks"][0]["lastStatus"] == "STOPPED" else None
    s = wait_until(stopped, 60, 0.2, "the task with a missing image to stop")
    # [docs] StopCode TaskFailedToStart; container reason "CannotPullContainerError: ...".
    assert s["stopCode"] == "TaskFailedToStart", s.get("stopCode")
    assert s["desiredStatus"] == "STOPPED"
    assert "CannotPullContainerError" in (s.get("stoppedReason", "") + s["containers"][0].get("reason", "")), s
    assert s["containers"][0]["reason"].startswith("CannotPullContainerError"), s["containers"][0]
    assert is_ts(s["stoppedAt"])
    assert s["tags"] == [{"key": "t", "value": "1"}]
    # [docs] DescribeTasks takes "task IDs or full ARN entries".
    by_id = ecs(server).describe_tasks(cluster=cluster, tasks=[task_id])
    assert [x["taskArn"] for x in by_id["tasks"]] == [t["taskArn"]] and by_id["failures"] == []
    # StopTask of an already stopped task answers with the task (no error).
    again = ecs(server).stop_task(cluster=cluster, task=t["taskArn"])["task"]
    assert again["taskArn"] == t["taskArn"] and again["lastStatus"] == "STOPPED"
    # ListTasks: STOPPED tasks are listed only with desiredStatus=STOPPED ([docs]).
    assert t["taskArn"] not in ecs(server).list_tasks(cluster=cluster)["taskArns"]
    assert t["taskArn"] in ecs(server).list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]


def test_run_task_count_and_list_filters(server):
    cluster = new_cluster(server)
    family = unique_name("cnt")
    register(server, family)
    r = ecs(server).run_task(cluster=cluster, taskDefinition=family, count=3, launchType="EC2",
                             startedBy="batch-x", group="grp")
    assert len(r["tasks"]) + len(r["failures"]) == 3
    assert len(r["tasks"]) == 3, r["failures"]
    assert all(t["group"] == "grp" for t in r["tasks"])
    arns = {t["taskArn"] for t in r["tasks"]}
    assert len(arns) == 3
    # (the image is missing: all three stop; filter once they have, so no task moves
    # between the RUNNING and STOPPED listings while we look)
    wait_until(lambda: set(ecs(server).list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]) == arns,
               60, 0.2, "three stopped tasks")
    assert set(ecs(server).list_tasks(cluster=cluster, startedBy="batch-x", desiredStatus="STOPPED")["taskArns"]) == arns
    assert set(ecs(server).list_tasks(cluster=cluster, family=family, desiredStatus="STOPPED")["taskArns"]) == arns
    assert ecs(server).list_tasks(cluster=cluster, startedBy="someone-else", desiredStatus="STOPPED")["taskArns"] == []
    got, n = pages(ecs(server).list_tasks, "taskArns", cluster=cluster, desiredStatus="STOPPED", maxResults=1)
    assert set(got) == arns and n >= 3


# -- container instances --------------------------------------------------------------------
def test_container_instances_shape(server):
    cluster = new_cluster(server)
    arns = ecs(server).list_container_instances(cluster=cluster)["containerInstanceArns"]
    assert arns, "the local node registers as a container instance of every cluster (issue 6)"
    for a in arns:
        assert re.fullmatch(rf"{re.escape(ARN)}:container-instance/{re.escape(cluster)}/[0-9a-f]{{32}}", a), a
    d = ecs(server).describe_container_instances(cluster=cluster, containerInstances=arns)
    assert d["failures"] == []
    ci = d["containerInstances"][0]
    assert ci["status"] == "ACTIVE" and ci["agentConnected"] is True
    assert isinstance(ci["runningTasksCount"], int) and isinstance(ci["pendingTasksCount"], int)
    # [docs] registeredResources / remainingResources: CPU and MEMORY (INTEGER), PORTS and
    # PORTS_UDP (STRINGSET).
    for key in ("registeredResources", "remainingResources"):
        res = {r["name"]: r for r in ci[key]}
        assert {"CPU", "MEMORY", "PORTS", "PORTS_UDP"} <= set(res), (key, ci[key])
        assert res["CPU"]["type"] == "INTEGER" and isinstance(res["CPU"]["integerValue"], int)
        assert res["MEMORY"]["type"] == "INTEGER" and res["MEMORY"]["integerValue"] > 0
        assert res["PORTS"]["type"] == "STRINGSET" and isinstance(res["PORTS"]["stringSetValue"], list)
    # [docs] containerInstances: "container instance IDs or full ARN entries".
    ci_id = arns[0].rsplit("/", 1)[1]
    by_id = ecs(server).describe_container_instances(cluster=cluster, containerInstances=[ci_id])
    assert [c["containerInstanceArn"] for c in by_id["containerInstances"]] == [arns[0]]
    missing = f"{ARN}:container-instance/{cluster}/{uuid.uuid4().hex}"
    d = ecs(server).describe_container_instances(cluster=cluster, containerInstances=[missing])
    assert d["containerInstances"] == [] and d["failures"] == [{"arn": missing, "reason": "MISSING"}]


# -- services (desiredCount 0: no container needed) -------------------------------------------
def create_service(server, cluster, td_arn, name=None, **kw) -> dict:
    name = name or unique_name("svc")
    kw.setdefault("desiredCount", 0)
    return ecs(server).create_service(cluster=cluster, serviceName=name, taskDefinition=td_arn,
                                      **kw)["service"]


def test_create_service_shape(server):
    cluster = new_cluster(server)
    td = register(server)
    name = unique_name("svc")
    s = create_service(server, cluster, td["taskDefinitionArn"], name, launchType="EC2")
    # [docs] new ARN format arn:aws:ecs:region:account:service/cluster-name/service-name
    assert s["serviceArn"] == f"{ARN}:service/{cluster}/{name}"
    assert s["serviceName"] == name and s["clusterArn"] == f"{ARN}:cluster/{cluster}"
    assert s["status"] == "ACTIVE" and s["desiredCount"] == 0
    assert s["runningCount"] == 0 and s["pendingCount"] == 0
    assert s["taskDefinition"] == td["taskDefinitionArn"]
    assert s["launchType"] == "EC2" and s["schedulingStrategy"] == "REPLICA"
    assert is_ts(s["createdAt"])
    # [docs] deploymentConfiguration defaults for REPLICA: maximumPercent 200,
    # minimumHealthyPercent 100.
    dc = s["deploymentConfiguration"]
    assert dc["maximumPercent"] == 200 and dc["minimumHealthyPercent"] == 100, dc
    [dep] = s["deployments"]
    # [docs examples] deployment ids look like "ecs-svc/9223370564341623665".
    assert re.fullmatch(r"ecs-svc/\d{16,19}", dep["id"]), dep["id"]
    assert dep["status"] == "PRIMARY" and dep["taskDefinition"] == td["taskDefinitionArn"]
    for k in ("desiredCount", "pendingCount", "runningCount", "failedTasks"):
        assert isinstance(dep[k], int), (k, dep)
    assert is_ts(dep["createdAt"]) and is_ts(dep["updatedAt"])
    assert dep.get("rolloutState") in ("IN_PROGRESS", "COMPLETED"), dep
    assert isinstance(s["events"], list)
    assert s["deploymentController"] == {"type": "ECS"}, s.get("deploymentController")
    # visible in ListServices and DescribeServices; activeServicesCount counts it.
    assert s["serviceArn"] in ecs(server).list_services(cluster=cluster)["serviceArns"]
    assert ecs(server).describe_clusters(clusters=[cluster])["clusters"][0]["activeServicesCount"] == 1


def test_create_service_duplicate_name(server):
    cluster = new_cluster(server)
    td = register(server)
    name = unique_name("dup")
    create_service(server, cluster, td["taskDefinitionArn"], name)
    # [observed] InvalidParameterException "Creation of service was not idempotent."
    # (hashicorp/terraform-provider-aws #23462 and many others)
    expect_error(ecs(server).create_service, "InvalidParameterException",
                 message="Creation of service was not idempotent.",
                 cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"],
                 desiredCount=1)


def test_service_not_found_errors(server):
    cluster = new_cluster(server)
    # [model] UpdateService / DeleteService declare ServiceNotFoundException.
    expect_error(ecs(server).update_service, "ServiceNotFoundException", cluster=cluster,
                 service=unique_name("nosvc"), desiredCount=1)
    expect_error(ecs(server).delete_service, "ServiceNotFoundException", cluster=cluster,
                 service=unique_name("nosvc"))
    # DescribeServices reports unknown services as failures with reason MISSING.
    name = unique_name("nosvc")
    d = ecs(server).describe_services(cluster=cluster, services=[name])
    assert d["services"] == [] and d["failures"] == [
        {"arn": f"{ARN}:service/{cluster}/{name}", "reason": "MISSING"}], d


def test_delete_service_draining_then_inactive(server):
    cluster = new_cluster(server)
    td = register(server)
    s = create_service(server, cluster, td["taskDefinitionArn"])
    out = ecs(server).delete_service(cluster=cluster, service=s["serviceName"])["service"]
    # [docs] DeleteService: ACTIVE → DRAINING → INACTIVE; no longer in ListServices; still
    # visible to DescribeServices.
    assert out["status"] in ("DRAINING", "INACTIVE") and out["serviceArn"] == s["serviceArn"]
    assert s["serviceArn"] not in ecs(server).list_services(cluster=cluster)["serviceArns"]
    d = ecs(server).describe_services(cluster=cluster, services=[s["serviceName"]])
    assert [x["status"] for x in d["services"]] in (["DRAINING"], ["INACTIVE"]), d
    wait_until(lambda: ecs(server).describe_services(cluster=cluster, services=[s["serviceName"]])
               ["services"][0]["status"] == "INACTIVE", 30, 0.2, "service INACTIVE")
    # [model]/[docs] ServiceNotActiveException: "You can't update a service that's inactive."
    expect_error(ecs(server).update_service, "ServiceNotActiveException", cluster=cluster,
                 service=s["serviceName"], desiredCount=1)
    # [docs] the name may be reused once the old service is INACTIVE.
    again = create_service(server, cluster, td["taskDefinitionArn"], s["serviceName"])
    assert again["status"] == "ACTIVE"


def test_delete_service_scaled_above_zero_needs_force(server):
    cluster = new_cluster(server)
    td = register(server)
    s = create_service(server, cluster, td["taskDefinitionArn"], desiredCount=1)
    # [docs] "If the service is actively maintaining tasks, you can't delete it";
    # [observed] InvalidParameterException "The service cannot be stopped while the primary
    # deployment is scaled above 0." (gist dasgoll/0499e785a5ae068b6659, 2015; the exact
    # middle of the sentence is not asserted).
    e = expect_error(ecs(server).delete_service, "InvalidParameterException", cluster=cluster,
                     message="The service cannot be stopped while", service=s["serviceName"])
    assert "scaled above 0" in e.response["Error"]["Message"]
    out = ecs(server).delete_service(cluster=cluster, service=s["serviceName"], force=True)["service"]
    assert out["status"] in ("DRAINING", "INACTIVE")


def test_delete_cluster_with_service(server):
    cluster = new_cluster(server)
    td = register(server)
    s = create_service(server, cluster, td["taskDefinitionArn"])
    # [model] ClusterContainsServicesException; [observed] "The Cluster cannot be deleted while
    # Services are active." (gist dasgoll/0499e785a5ae068b6659)
    expect_error(ecs(server).delete_cluster, "ClusterContainsServicesException", cluster=cluster,
                 message="The Cluster cannot be deleted while Services are active.")
    ecs(server).delete_service(cluster=cluster, service=s["serviceName"])
    wait_until(lambda: ecs(server).delete_cluster(cluster=cluster)["cluster"]["status"] == "INACTIVE",
               30, 0.3, "cluster deletable once its service is gone")


def test_update_service_shape(server):
    cluster = new_cluster(server)
    family = unique_name("upd")
    td1 = register(server, family)
    s = create_service(server, cluster, td1["taskDefinitionArn"])
    td2 = register(server, family)
    u = ecs(server).update_service(cluster=cluster, service=s["serviceName"],
                                   taskDefinition=family)["service"]
    # "family" alone resolves to the latest ACTIVE revision.
    assert u["taskDefinition"] == td2["taskDefinitionArn"]
    primary = [d for d in u["deployments"] if d["status"] == "PRIMARY"]
    assert len(primary) == 1 and primary[0]["taskDefinition"] == td2["taskDefinitionArn"]
    # unknown task definition on update → ClientException ([observed]).
    expect_error(ecs(server).update_service, "ClientException", cluster=cluster,
                 service=s["serviceName"], taskDefinition=f"{unique_name('nofam')}:1")


def test_list_services_pagination_and_filter(server):
    cluster = new_cluster(server)
    td = register(server)
    made = {create_service(server, cluster, td["taskDefinitionArn"], launchType="EC2")["serviceArn"]
            for _ in range(3)}
    got, n = pages(ecs(server).list_services, "serviceArns", cluster=cluster, maxResults=1)
    assert set(got) == made and len(got) == 3 and n >= 3
    assert set(ecs(server).list_services(cluster=cluster, launchType="EC2")["serviceArns"]) == made
    assert ecs(server).list_services(cluster=cluster, launchType="FARGATE")["serviceArns"] == []


def test_fargate_service_needs_network_configuration(server):
    cluster = new_cluster(server)
    td = register_fargate(server)
    # [observed] InvalidParameterException "Network Configuration must be provided when
    # networkMode 'awsvpc' is specified."
    expect_error(ecs(server).create_service, "InvalidParameterException", cluster=cluster,
                 serviceName=unique_name("fgsvc"), taskDefinition=td["taskDefinitionArn"],
                 desiredCount=0, launchType="FARGATE")


def test_fargate_refuses_daemon_scheduling(server):
    # [docs] "Tasks using the Fargate launch type or the CODE_DEPLOY or EXTERNAL deployment
    # controller types don't support the DAEMON scheduling strategy." Code: [model]
    # InvalidParameterException.
    cluster = new_cluster(server)
    td = register_fargate(server)
    expect_error(ecs(server).create_service, "InvalidParameterException", cluster=cluster,
                 serviceName=unique_name("daemon"), taskDefinition=td["taskDefinitionArn"],
                 launchType="FARGATE", schedulingStrategy="DAEMON", networkConfiguration=AWSVPC)


def test_describe_services_include_tags(server):
    cluster = new_cluster(server)
    td = register(server)
    s = create_service(server, cluster, td["taskDefinitionArn"], tags=[{"key": "a", "value": "b"}])
    d = ecs(server).describe_services(cluster=cluster, services=[s["serviceArn"]], include=["TAGS"])
    assert d["services"][0]["tags"] == [{"key": "a", "value": "b"}]
    assert ecs(server).list_tags_for_resource(resourceArn=s["serviceArn"])["tags"] == [{"key": "a", "value": "b"}]


# -- real tasks (an image built from files) ---------------------------------------------------
@pytest.fixture(scope="module")
def sleeper_image(server, tmp_path_factory):
    """busybox image `conformance-sleeper:v1` whose default command sleeps; imported once."""
    import_image(server, tmp_path_factory.mktemp("img"), "conformance-sleeper:v1", cmd=["sleep", "300"])
    return "conformance-sleeper:v1"


def wait_task(server, cluster, arn, status, timeout=60):
    def done():
        t = ecs(server).describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        if t["lastStatus"] == "STOPPED" and status != "STOPPED":
            raise AssertionError(f"task stopped: {t.get('stoppedReason')} {t['containers']}")
        return t if t["lastStatus"] == status else None
    return wait_until(done, timeout, 0.1, f"task {arn} {status}")


def test_seed_fargate_run_task_verbatim(nimbus, tmp_path):
    """Issue 6's verbatim seed commands: create-cluster FargateCluster, then run-task (on a
    server of its own: the names are fixed)."""
    server = nimbus()
    sleeper_image = "conformance-sleeper:v1"
    import_image(server, tmp_path, sleeper_image, cmd=["sleep", "300"])
    name = "FargateCluster"
    server.aws_json("ecs", "create-cluster", "--cluster-name", name)
    (tmp_path / "td.json").write_text(json.dumps({
        "family": "HelloWorld", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
        "cpu": "256", "memory": "512",
        "containerDefinitions": [{"name": "hello", "image": sleeper_image, "essential": True}]}))
    server.aws_json("ecs", "register-task-definition", "--cli-input-json", "file://td.json", cwd=tmp_path)
    out = server.aws_json(
        "ecs", "run-task", "--cluster", name, "--task-definition", "HelloWorld", "--launch-type",
        "FARGATE", "--count", "1", "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-0abc123d4ef56789a],securityGroups=[sg-0abc123d4ef56789a]}")
    assert out["failures"] == []
    [t] = out["tasks"]
    assert re.fullmatch(rf"{re.escape(ARN)}:task/{name}/{TASK_ID_RE}", t["taskArn"])
    assert t["launchType"] == "FARGATE" and t["cpu"] == "256" and t["memory"] == "512"
    # [docs] Fargate tasks report a platformVersion (LATEST resolves to e.g. "1.4.0") and an
    # ElasticNetworkInterface attachment (awsvpc).
    assert t.get("platformVersion"), t.get("platformVersion")
    assert [a["type"] for a in t.get("attachments", [])] == ["ElasticNetworkInterface"], t.get("attachments")
    assert "containerInstanceArn" not in t, "Fargate tasks have no container instance"
    running = wait_task(server, name, t["taskArn"], "RUNNING")
    assert is_ts(running["startedAt"]) and running["containers"][0]["lastStatus"] == "RUNNING"
    stopped = ecs(server).stop_task(cluster=name, task=t["taskArn"])["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    s = wait_task(server, name, t["taskArn"], "STOPPED")
    # [docs] StopCode UserInitiated; [observed] stoppedReason "Task stopped by user".
    assert s["stopCode"] == "UserInitiated", s.get("stopCode")
    assert s["stoppedReason"] == "Task stopped by user", s.get("stoppedReason")


def test_delete_cluster_with_running_task(server, sleeper_image):
    cluster = new_cluster(server)
    td = register(server, containers=[container(image=sleeper_image)])
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                               launchType="EC2")["tasks"]
    wait_task(server, cluster, t["taskArn"], "RUNNING")
    c = ecs(server).describe_clusters(clusters=[cluster])["clusters"][0]
    assert c["runningTasksCount"] == 1, c
    # [model] ClusterContainsTasksException; [observed] "The Cluster cannot be deleted while
    # Tasks are active."
    expect_error(ecs(server).delete_cluster, "ClusterContainsTasksException", cluster=cluster)
    ecs(server).stop_task(cluster=cluster, task=t["taskArn"], reason="cleanup by test")
    s = wait_task(server, cluster, t["taskArn"], "STOPPED")
    # [docs] StopTask reason: "An optional message specified when a task is stopped" → shows
    # up as stoppedReason.
    assert s["stoppedReason"] == "cleanup by test"
    # the essential container got SIGTERM: an exit code is reported.
    assert isinstance(s["containers"][0].get("exitCode"), int), s["containers"][0]


@pytest.fixture(scope="module")
def shell_image(server, tmp_path_factory):
    """busybox image `conformance-shell:v1` (default command: sh); commands come from the
    container definitions."""
    import_image(server, tmp_path_factory.mktemp("img"), "conformance-shell:v1")
    return "conformance-shell:v1"


def test_essential_container_exit_stops_task(server, shell_image):
    cluster = new_cluster(server)
    td = register(server, containers=[container(image=shell_image, command=["sh", "-c", "exit 3"])])
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                               launchType="EC2")["tasks"]
    s = wait_task(server, cluster, t["taskArn"], "STOPPED")
    # [docs] StopCode EssentialContainerExited; [observed]/issue 6 stoppedReason
    # "Essential container in task exited"; Container.exitCode.
    assert s["stopCode"] == "EssentialContainerExited", s.get("stopCode")
    assert s["stoppedReason"] == "Essential container in task exited", s.get("stoppedReason")
    assert s["containers"][0]["exitCode"] == 3 and s["containers"][0]["lastStatus"] == "STOPPED"
    assert s["desiredStatus"] == "STOPPED"
    for k in ("startedAt", "stoppingAt", "stoppedAt", "executionStoppedAt"):
        assert is_ts(s.get(k)), (k, s.get(k))


def test_non_essential_container_exit_keeps_task(server, shell_image):
    cluster = new_cluster(server)
    td = register(server, containers=[
        container("main", image=shell_image, command=["sleep", "300"]),
        container("sidecar", image=shell_image, command=["sh", "-c", "exit 0"], essential=False)])
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                               launchType="EC2")["tasks"]
    wait_task(server, cluster, t["taskArn"], "RUNNING")

    def sidecar_done():
        x = ecs(server).describe_tasks(cluster=cluster, tasks=[t["taskArn"]])["tasks"][0]
        c = {c["name"]: c for c in x["containers"]}
        return x if c["sidecar"]["lastStatus"] == "STOPPED" else None
    x = wait_until(sidecar_done, 60, 0.1, "the non-essential container to exit")
    c = {c["name"]: c for c in x["containers"]}
    assert x["lastStatus"] == "RUNNING" and c["main"]["lastStatus"] == "RUNNING", x
    assert c["sidecar"]["exitCode"] == 0
    ecs(server).stop_task(cluster=cluster, task=t["taskArn"])


def test_run_task_overrides(server, shell_image):
    cluster = new_cluster(server)
    td = register(server, containers=[container(image=shell_image, command=["sleep", "300"])])
    ov = {"containerOverrides": [{"name": "app", "command": ["sh", "-c", "exit $CODE"],
                                  "environment": [{"name": "CODE", "value": "7"}]}]}
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                               launchType="EC2", overrides=ov)["tasks"]
    # [docs] Task.overrides echoes the overrides given to RunTask.
    co = t["overrides"]["containerOverrides"]
    assert co[0]["name"] == "app" and co[0]["command"] == ["sh", "-c", "exit $CODE"]
    assert co[0]["environment"] == [{"name": "CODE", "value": "7"}]
    s = wait_task(server, cluster, t["taskArn"], "STOPPED")
    assert s["containers"][0]["exitCode"] == 7, s["containers"][0]
    # [model] HealthStatus: UNKNOWN when no container has a health check.
    assert s.get("healthStatus", "UNKNOWN") == "UNKNOWN"


def test_bridge_dynamic_host_port(server, shell_image):
    cluster = new_cluster(server)
    td = register(server, containers=[container(
        image=shell_image, command=["sleep", "300"],
        portMappings=[{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}])])
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                               launchType="EC2")["tasks"]
    x = wait_task(server, cluster, t["taskArn"], "RUNNING")
    [nb] = x["containers"][0]["networkBindings"]
    # [docs] hostPort 0 → a port from the ephemeral range (32768–60999 on Linux).
    assert nb["containerPort"] == 8080 and nb["protocol"] == "tcp", nb
    assert 32768 <= nb["hostPort"] <= 60999, nb
    assert nb.get("bindIP") == "0.0.0.0", nb
    ecs(server).stop_task(cluster=cluster, task=t["taskArn"])
    # [docs example describe-tasks] without health checks both the task and its containers
    # report healthStatus UNKNOWN.
    assert x.get("healthStatus") == "UNKNOWN", x.get("healthStatus")
    assert x["containers"][0].get("healthStatus") == "UNKNOWN", x["containers"][0]


def test_insufficient_memory_is_a_failure(server):
    cluster = new_cluster(server)
    td = register(server, containers=[container(memory=100_000_000)])
    r = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="EC2")
    # [docs] API failure reasons: "RESOURCE:MEMORY" with the container instance's ARN.
    assert r["tasks"] == []
    assert [f["reason"] for f in r["failures"]] == ["RESOURCE:MEMORY"], r["failures"]
    assert re.fullmatch(rf"{re.escape(ARN)}:container-instance/{re.escape(cluster)}/[0-9a-f]{{32}}",
                        r["failures"][0].get("arn", "")), r["failures"]


def test_static_host_port_conflict(server, shell_image):
    cluster = new_cluster(server)
    port = 40000 + (uuid.uuid4().int % 2000)
    td = register(server, containers=[container(
        image=shell_image, command=["sleep", "300"],
        portMappings=[{"containerPort": 8080, "hostPort": port}])])
    r = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], count=2,
                             launchType="EC2")
    # [docs] "RESOURCE:PORTS": the port is already in use on the (only) instance.
    assert len(r["tasks"]) == 1, r
    assert [f["reason"] for f in r["failures"]] == ["RESOURCE:PORTS"], r["failures"]
    ecs(server).stop_task(cluster=cluster, task=r["tasks"][0]["taskArn"])


def test_service_default_circuit_breaker_and_list_tasks_unknown_service(server):
    cluster = new_cluster(server)
    td = register(server)
    s = create_service(server, cluster, td["taskDefinitionArn"])
    # [observed] AWS returns the (disabled) circuit breaker in deploymentConfiguration.
    assert s["deploymentConfiguration"].get("deploymentCircuitBreaker") == {
        "enable": False, "rollback": False}, s["deploymentConfiguration"]
    # [model] ListTasks declares ServiceNotFoundException; [observed] HTTP 400
    # ServiceNotFoundException "Service not found." for an unknown serviceName
    # (turbot/steampipe-plugin-aws #1415).
    expect_error(ecs(server).list_tasks, "ServiceNotFoundException", cluster=cluster,
                 message="Service not found.", serviceName=unique_name("nosvc"))


def test_service_reaches_steady_state(server, shell_image):
    cluster = new_cluster(server)
    td = register(server, containers=[container(image=shell_image, command=["sleep", "300"])])
    name = unique_name("steady")
    s = create_service(server, cluster, td["taskDefinitionArn"], name, desiredCount=1)

    def steady():
        x = ecs(server).describe_services(cluster=cluster, services=[name])["services"][0]
        done = x["runningCount"] == 1 and x["deployments"][0].get("rolloutState") == "COMPLETED"
        return x if done else None
    x = wait_until(steady, 60, 0.2, "service steady")
    [dep] = x["deployments"]
    assert dep["runningCount"] == 1 and dep["desiredCount"] == 1
    [task_arn] = ecs(server).list_tasks(cluster=cluster, serviceName=name)["taskArns"]
    t = ecs(server).describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    # [docs] service tasks: startedBy is the deployment ID; group is "service:<name>".
    assert t["startedBy"] == dep["id"], (t.get("startedBy"), dep["id"])
    assert t["group"] == f"service:{name}"
    # [docs] service event messages: "(service NAME) has started N tasks: (task ID)." and
    # "(service NAME) has reached a steady state."
    msgs = [e["message"] for e in x["events"]]
    task_id = task_arn.rsplit("/", 1)[1]
    assert f"(service {name}) has started 1 tasks: (task {task_id})." in msgs, msgs
    wait_until(lambda: f"(service {name}) has reached a steady state." in
               [e["message"] for e in ecs(server).describe_services(cluster=cluster, services=[name])
                ["services"][0]["events"]], 30, 0.3, "steady-state event")
    for e in x["events"]:
        assert is_ts(e["createdAt"]) and isinstance(e["id"], str)
    ecs(server).update_service(cluster=cluster, service=name, desiredCount=0)
    wait_until(lambda: ecs(server).describe_services(cluster=cluster, services=[name])
               ["services"][0]["runningCount"] == 0, 60, 0.2, "scaled to zero")
    ecs(server).delete_service(cluster=cluster, service=name)


def test_cli_timestamps_are_epoch_numbers(server, tmp_path):
    # JSON 1.1 services send timestamps as epoch seconds; CLI v1 prints the wire value.
    family = unique_name("ts")
    register(server, family)
    out = server.aws_json("ecs", "describe-task-definition", "--task-definition", family)
    assert isinstance(out["taskDefinition"]["registeredAt"], (int, float)), out["taskDefinition"]["registeredAt"]


def test_default_cluster(nimbus):
    # [docs] CreateCluster: "If you don't specify a name for your cluster, you create a cluster
    # that's named default." Operations without `cluster` use the default cluster.
    # (A server of its own: other tests may rely on the shared server having no default.)
    server = nimbus()
    d = ecs(server).describe_clusters()
    assert d["clusters"] == [] and d["failures"] == [{"arn": f"{ARN}:cluster/default", "reason": "MISSING"}], d
    c = ecs(server).create_cluster()["cluster"]
    assert c["clusterName"] == "default" and c["clusterArn"] == f"{ARN}:cluster/default"
    d = ecs(server).describe_clusters()["clusters"]
    assert [x["clusterName"] for x in d] == ["default"], d
    td = register(server)
    # [docs] RunTask without launchType or capacity provider strategy → launchType EC2.
    [t] = ecs(server).run_task(taskDefinition=td["taskDefinitionArn"])["tasks"]
    assert t["clusterArn"] == f"{ARN}:cluster/default" and t["launchType"] == "EC2"
    assert t["taskArn"].startswith(f"{ARN}:task/default/")
    listed = set(ecs(server).list_tasks()["taskArns"]) | set(ecs(server).list_tasks(desiredStatus="STOPPED")["taskArns"])
    assert t["taskArn"] in listed


def test_awslogs_stream_naming(server, shell_image):
    """[docs] awslogs driver: with awslogs-stream-prefix the stream is
    `prefix-name/container-name/ecs-task-id`."""
    cluster = new_cluster(server)
    group = f"/ecs/{unique_name('logs')}"
    server.client("logs").create_log_group(logGroupName=group)
    td = register(server, containers=[container(
        "web", image=shell_image, command=["sh", "-c", "echo hello-from-ecs; echo second line"],
        logConfiguration={"logDriver": "awslogs", "options": {
            "awslogs-group": group, "awslogs-region": REGION, "awslogs-stream-prefix": "pfx"}})])
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                               launchType="EC2")["tasks"]
    wait_task(server, cluster, t["taskArn"], "STOPPED")
    task_id = t["taskArn"].rsplit("/", 1)[1]
    stream = f"pfx/web/{task_id}"

    def logged():
        ev = server.client("logs").get_log_events(logGroupName=group, logStreamName=stream,
                                                  startFromHead=True)["events"]
        return [e["message"] for e in ev] if len(ev) >= 2 else None
    msgs = wait_until(logged, 30, 0.2, f"log events in {group}/{stream}")
    assert msgs[:2] == ["hello-from-ecs", "second line"], msgs


def test_container_health_check(server, shell_image):
    # [docs] HealthCheck: CMD-SHELL; interval 5–300 s; container and task healthStatus
    # HEALTHY once the check passes.
    cluster = new_cluster(server)
    td = register(server, containers=[container(
        image=shell_image, command=["sleep", "300"],
        healthCheck={"command": ["CMD-SHELL", "exit 0"], "interval": 5, "timeout": 2, "retries": 3,
                     "startPeriod": 0})])
    hc = td["containerDefinitions"][0]["healthCheck"]
    assert hc["command"] == ["CMD-SHELL", "exit 0"] and hc["interval"] == 5
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                               launchType="EC2")["tasks"]

    def healthy():
        x = ecs(server).describe_tasks(cluster=cluster, tasks=[t["taskArn"]])["tasks"][0]
        return x if x.get("healthStatus") == "HEALTHY" else None
    x = wait_until(healthy, 60, 0.2, "task HEALTHY")
    assert x["containers"][0]["healthStatus"] == "HEALTHY"
    ecs(server).stop_task(cluster=cluster, task=t["taskArn"])


def test_waiters_cli_and_boto3(server, shell_image):
    """botocore's waiters (waiters-2.json) over DescribeTasks / DescribeServices: the acceptors
    read lastStatus, failures[].reason, deployments and runningCount — the shapes must fit."""
    cluster = new_cluster(server)
    td = register(server, containers=[container(image=shell_image, command=["sleep", "300"])])
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                               launchType="EC2")["tasks"]
    server.aws("ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", t["taskArn"], timeout=120)
    ecs(server).stop_task(cluster=cluster, task=t["taskArn"])
    ecs(server).get_waiter("tasks_stopped").wait(cluster=cluster, tasks=[t["taskArn"]],
                                                 WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    name = unique_name("stable")
    create_service(server, cluster, td["taskDefinitionArn"], name, desiredCount=1)
    ecs(server).get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ecs(server).update_service(cluster=cluster, service=name, desiredCount=0)
    ecs(server).delete_service(cluster=cluster, service=name)
    ecs(server).get_waiter("services_inactive").wait(cluster=cluster, services=[name],
                                                     WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def test_force_new_deployment(server, shell_image):
    # [docs] UpdateService forceNewDeployment: "a new deployment ... with the same task
    # definition"; the old deployment becomes ACTIVE until its tasks are replaced.
    cluster = new_cluster(server)
    td = register(server, containers=[container(image=shell_image, command=["sleep", "300"])])
    name = unique_name("fnd")
    s = create_service(server, cluster, td["taskDefinitionArn"], name, desiredCount=1)
    first = s["deployments"][0]["id"]
    ecs(server).get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    [old_task] = ecs(server).list_tasks(cluster=cluster, serviceName=name)["taskArns"]
    u = ecs(server).update_service(cluster=cluster, service=name, forceNewDeployment=True)["service"]
    primary = [d for d in u["deployments"] if d["status"] == "PRIMARY"]
    assert len(primary) == 1 and primary[0]["id"] != first, u["deployments"]
    assert primary[0]["taskDefinition"] == td["taskDefinitionArn"]
    ecs(server).get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 90})
    [new_task] = ecs(server).list_tasks(cluster=cluster, serviceName=name)["taskArns"]
    assert new_task != old_task
    x = ecs(server).describe_services(cluster=cluster, services=[name])["services"][0]
    assert [d["id"] for d in x["deployments"]] == [primary[0]["id"]]
    assert x["deployments"][0]["rolloutState"] == "COMPLETED"
    # [docs examples] rolloutStateReason "ECS deployment <id> completed."; service events
    # "(service NAME) (deployment <id>) deployment completed." and "(service NAME) has stopped
    # 1 running tasks: (task <id>)." (awscli examples ecs/update-service, describe-services).
    new_id = primary[0]["id"]
    assert x["deployments"][0].get("rolloutStateReason") == f"ECS deployment {new_id} completed.", x["deployments"][0]

    def msgs():
        return [e["message"] for e in ecs(server).describe_services(cluster=cluster, services=[name])
                ["services"][0]["events"]]
    wait_until(lambda: f"(service {name}) (deployment {new_id}) deployment completed." in msgs(), 30, 0.3,
               "deployment completed event")
    old_id = old_task.rsplit("/", 1)[1]
    assert f"(service {name}) has stopped 1 running tasks: (task {old_id})." in msgs(), msgs()
    ecs(server).update_service(cluster=cluster, service=name, desiredCount=0)
    ecs(server).delete_service(cluster=cluster, service=name, force=True)


def test_cluster_settings(server):
    # [docs] CreateCluster settings: containerInsights enabled|disabled, echoed back.
    name = unique_name("ci")
    c = ecs(server).create_cluster(clusterName=name, settings=[{"name": "containerInsights",
                                                                "value": "enabled"}])["cluster"]
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"], c.get("settings")
    d = ecs(server).describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"][0]
    assert {"name": "containerInsights", "value": "enabled"} in d["settings"], d.get("settings")


def test_delete_task_definitions(server):
    # [docs] DeleteTaskDefinitions: only INACTIVE revisions; the status becomes
    # DELETE_IN_PROGRESS. An ACTIVE revision is reported in `failures`.
    family = unique_name("del")
    register(server, family)
    register(server, family)
    ecs(server).deregister_task_definition(taskDefinition=f"{family}:1")
    r = ecs(server).delete_task_definitions(taskDefinitions=[f"{family}:1", f"{family}:2"])
    assert [t["status"] for t in r["taskDefinitions"]] == ["DELETE_IN_PROGRESS"], r
    assert [f["arn"] for f in r["failures"]] == [f"{ARN}:task-definition/{family}:2"], r["failures"]


def test_service_without_launch_type_defaults_to_ec2(server):
    # [docs] "If neither launchType nor capacityProviderStrategy are specified, the
    # defaultCapacityProviderStrategy for the cluster is used" — a cluster without one runs
    # the EC2 launch type, and [observed] DescribeServices reports launchType EC2.
    cluster = new_cluster(server)
    td = register(server)
    s = create_service(server, cluster, td["taskDefinitionArn"])
    assert s.get("launchType") == "EC2", s.get("launchType")


def run_and_collect_logs(server, cluster, image, command, launch_type="EC2", create_group=False,
                         container_kw=None, **td_kw):
    """Runs one container `app` with awslogs; waits for STOPPED; returns (task, log lines)."""
    group = f"/ecs/{unique_name('lg')}"
    opts = {"awslogs-group": group, "awslogs-region": REGION, "awslogs-stream-prefix": "ecs"}
    if create_group:
        opts["awslogs-create-group"] = "true"
    else:
        server.client("logs").create_log_group(logGroupName=group)
    cdef = {"name": "app", "image": image, "essential": True,
            "logConfiguration": {"logDriver": "awslogs", "options": opts}, **(container_kw or {})}
    if command is not None:
        cdef["command"] = command
    if launch_type == "FARGATE":
        td = ecs(server).register_task_definition(
            family=unique_name("logs"), requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
            cpu="256", memory="512", executionRoleArn="arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
            containerDefinitions=[cdef], **td_kw)["taskDefinition"]
        kw = {"networkConfiguration": AWSVPC}
    else:
        cdef["memory"] = 64
        td = ecs(server).register_task_definition(family=unique_name("logs"), containerDefinitions=[cdef],
                                                  **td_kw)["taskDefinition"]
        kw = {}
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                               launchType=launch_type, **kw)["tasks"]
    s = wait_task(server, cluster, t["taskArn"], "STOPPED")
    stream = f"ecs/app/{t['taskArn'].rsplit('/', 1)[1]}"

    def events():
        ev = server.client("logs").get_log_events(logGroupName=group, logStreamName=stream,
                                                  startFromHead=True)["events"]
        return [e["message"] for e in ev] or None
    return s, wait_until(events, 30, 0.2, f"log events in {group}/{stream}")


def test_awslogs_create_group(server, shell_image):
    # [docs] awslogs-create-group "true": the driver creates the log group itself.
    cluster = new_cluster(server)
    s, lines = run_and_collect_logs(server, cluster, shell_image, ["sh", "-c", "echo created-group"],
                                    create_group=True)
    assert lines == ["created-group"], lines
    assert s["containers"][0]["exitCode"] == 0


def test_fargate_task_environment_and_metadata_endpoint(server, shell_image):
    # [docs] "Beginning with Fargate platform version 1.4.0, an environment variable named
    # ECS_CONTAINER_METADATA_URI_V4 is injected into each container in a task";
    # ${ECS_CONTAINER_METADATA_URI_V4}/task returns the task's metadata (TaskARN, Family, ...).
    cluster = new_cluster(server)
    script = ('env | sort; echo ---; wget -qO- "$ECS_CONTAINER_METADATA_URI_V4/task"; echo')
    s, lines = run_and_collect_logs(server, cluster, shell_image, ["sh", "-c", script],
                                    launch_type="FARGATE")
    sep = lines.index("---") if "---" in lines else len(lines)
    env = dict(line.split("=", 1) for line in lines[:sep] if "=" in line)
    assert env.get("AWS_REGION") == REGION and env.get("AWS_DEFAULT_REGION") == REGION, env
    assert env.get("AWS_EXECUTION_ENV") == "AWS_ECS_FARGATE", env
    assert env.get("ECS_CONTAINER_METADATA_URI_V4", "").startswith("http://"), env
    body = "".join(lines[sep + 1:])
    meta = json.loads(body)
    assert meta["TaskARN"] == s["taskArn"] and meta["Cluster"].endswith(cluster), meta


def test_update_service_to_inactive_revision_refused(server):
    # [docs] "you can't update an existing service to reference an INACTIVE task definition".
    # The code is not documented: InvalidParameterException (as RunTask answers) or
    # ClientException are both accepted here.
    cluster = new_cluster(server)
    family = unique_name("updinactive")
    register(server, family)
    register(server, family)
    s = create_service(server, cluster, f"{family}:2")
    ecs(server).deregister_task_definition(taskDefinition=f"{family}:1")
    with pytest.raises(ClientError) as ei:
        ecs(server).update_service(cluster=cluster, service=s["serviceName"], taskDefinition=f"{family}:1")
    assert error_code(ei.value) in ("InvalidParameterException", "ClientException"), ei.value.response["Error"]
    assert http_status(ei.value) == 400


def test_circuit_breaker_rolls_back(server, shell_image):
    # [docs] DeploymentCircuitBreaker: "a service deployment will transition to a failed state
    # and stop launching new tasks ... If rollback is on, when a service deployment fails, the
    # service is rolled back to the last deployment that completed successfully."
    # Deployment.rolloutState FAILED ([model] enum COMPLETED | FAILED | IN_PROGRESS).
    cluster = new_cluster(server)
    family = unique_name("cb")
    good = register(server, family, [container(image=shell_image, command=["sleep", "300"])])
    bad = register(server, family, [container(image=MISSING_IMAGE)])
    name = unique_name("cbsvc")
    create_service(server, cluster, good["taskDefinitionArn"], name, desiredCount=1,
                   deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True},
                                            "maximumPercent": 200, "minimumHealthyPercent": 100})
    ecs(server).get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    u = ecs(server).update_service(cluster=cluster, service=name, taskDefinition=bad["taskDefinitionArn"])["service"]
    bad_dep = [d for d in u["deployments"] if d["status"] == "PRIMARY"][0]
    assert bad_dep["taskDefinition"] == bad["taskDefinitionArn"]

    def rolled_back():
        x = ecs(server).describe_services(cluster=cluster, services=[name])["services"][0]
        primary = [d for d in x["deployments"] if d["status"] == "PRIMARY"]
        ok = (x["taskDefinition"] == good["taskDefinitionArn"] and primary
              and primary[0]["taskDefinition"] == good["taskDefinitionArn"] and x["runningCount"] == 1)
        return x if ok else None
    x = wait_until(rolled_back, 180, 0.5, "circuit breaker rollback to the good revision")
    by_id = {d["id"]: d for d in x["deployments"]}
    if bad_dep["id"] in by_id:
        assert by_id[bad_dep["id"]]["rolloutState"] == "FAILED", by_id[bad_dep["id"]]
        assert by_id[bad_dep["id"]]["failedTasks"] >= 3, by_id[bad_dep["id"]]
    ecs(server).update_service(cluster=cluster, service=name, desiredCount=0)
    ecs(server).delete_service(cluster=cluster, service=name, force=True)


# -- the AWS CLI reference examples (awscli/examples/ecs/*.rst), as a user would replay them ----
def import_image(server, tmp_path, tag, **config):
    """A busybox image (`oci_images.busybox_image(**config)`) imported as `tag`."""
    ecs_e2e.import_image(server, tmp_path, busybox_image(**config), tag, tag_param=True)


def test_cli_examples_sleep360_lifecycle(nimbus, tmp_path):
    """register-task-definition (sleep360.json) → run-task --cluster default --client-token →
    wait tasks-running → stop-task (default cluster) → deregister → delete-task-definitions,
    as in the CLI reference examples, on a fresh server."""
    s = nimbus()
    import_image(s, tmp_path, "busybox:latest")
    c = s.aws_json("ecs", "create-cluster")["cluster"]
    assert c["clusterName"] == "default"
    (tmp_path / "sleep360.json").write_text(json.dumps({
        "containerDefinitions": [{"name": "sleep", "image": "busybox", "cpu": 10,
                                  "command": ["sleep", "360"], "memory": 10, "essential": True}],
        "family": "sleep360"}))
    td = s.aws_json("ecs", "register-task-definition", "--cli-input-json", "file://sleep360.json",
                    cwd=tmp_path)["taskDefinition"]
    assert td["taskDefinitionArn"] == f"{ARN}:task-definition/sleep360:1" and td["revision"] == 1
    cdef = td["containerDefinitions"][0]
    assert cdef["cpu"] == 10 and cdef["memory"] == 10 and cdef["command"] == ["sleep", "360"]
    out = s.aws_json("ecs", "run-task", "--cluster", "default", "--task-definition", "sleep360:1",
                     "--client-token", "550e8400-e29b-41d4-a716-446655440000")
    [t] = out["tasks"]
    assert t["group"] == "family:sleep360" and t["launchType"] == "EC2"
    assert t["cpu"] == "10" and t["memory"] == "10", (t["cpu"], t["memory"])
    assert t["containers"][0]["cpu"] == "10" and t["containers"][0]["memory"] == "10"
    task_id = t["taskArn"].rsplit("/", 1)[1]
    s.aws("ecs", "wait", "tasks-running", "--cluster", "default", "--tasks", t["taskArn"], timeout=120)
    ci = s.aws_json("ecs", "list-container-instances", "--cluster", "default")["containerInstanceArns"][0]
    on_ci = s.aws_json("ecs", "list-tasks", "--cluster", "default", "--container-instance",
                       ci.rsplit("/", 1)[1])["taskArns"]
    assert t["taskArn"] in on_ci
    stopped = s.aws_json("ecs", "stop-task", "--task", task_id)["task"]
    assert stopped["taskArn"] == t["taskArn"] and stopped["desiredStatus"] == "STOPPED"
    s.aws("ecs", "wait", "tasks-stopped", "--cluster", "default", "--tasks", task_id, timeout=120)
    d = s.aws_json("ecs", "describe-tasks", "--cluster", "default", "--tasks", task_id)["tasks"][0]
    assert d["stopCode"] == "UserInitiated" and d["lastStatus"] == "STOPPED"
    dereg = s.aws_json("ecs", "deregister-task-definition", "--task-definition", "sleep360:1")
    assert dereg["taskDefinition"]["status"] == "INACTIVE"
    deleted = s.aws_json("ecs", "delete-task-definitions", "--task-definitions", "sleep360:1")
    assert [x["status"] for x in deleted["taskDefinitions"]] == ["DELETE_IN_PROGRESS"]
    assert deleted["failures"] == []
    # [docs example] compatibilities ["EXTERNAL", "EC2"] for a task definition without
    # requiresCompatibilities (bridge network mode). Checked last: a minor difference.
    assert sorted(td["compatibilities"]) == ["EC2", "EXTERNAL"], td["compatibilities"]


def test_cli_examples_cluster_settings_and_tags(server):
    name = unique_name("MyCluster")
    c = server.aws_json("ecs", "create-cluster", "--cluster-name", name, "--settings",
                        "name=containerInsights,value=enhanced")["cluster"]
    assert c["settings"] == [{"name": "containerInsights", "value": "enhanced"}], c.get("settings")
    arn = c["clusterArn"]
    server.aws("ecs", "tag-resource", "--resource-arn", arn, "--tags", "key=key1,value=value1",
               "key=key2,value=value2", "key=key3,value=value3")
    # (the CLI reference writes `--tag-keys key1,key2`, but the CLI sends that as the single
    # key "key1,key2"; space-separated is the list form)
    server.aws("ecs", "untag-resource", "--resource-arn", arn, "--tag-keys", "key1", "key2")
    tags = server.aws_json("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"]
    assert tags == [{"key": "key3", "value": "value3"}], tags
    # update-cluster-settings / update-cluster: the CLI reference examples.
    u = server.aws_json("ecs", "update-cluster-settings", "--cluster", name, "--settings",
                        "name=containerInsights,value=disabled")["cluster"]
    assert u["settings"] == [{"name": "containerInsights", "value": "disabled"}], u.get("settings")
    u = server.aws_json("ecs", "update-cluster", "--cluster", name, "--settings",
                        "name=containerInsights,value=enabled")["cluster"]
    assert u["settings"] == [{"name": "containerInsights", "value": "enabled"}], u.get("settings")


def test_cli_examples_account_settings(server):
    # put-account-setting / list-account-settings --effective-settings (CLI reference).
    out = server.aws_json("ecs", "put-account-setting", "--name", "containerInsights", "--value", "enhanced")
    assert out["setting"]["name"] == "containerInsights" and out["setting"]["value"] == "enhanced"
    got = server.aws_json("ecs", "list-account-settings", "--effective-settings", "--name", "containerInsights")
    assert [(x["name"], x["value"]) for x in got["settings"]] == [("containerInsights", "enhanced")], got


def test_cli_examples_attributes_and_member_of(server):
    """put-attributes on the container instance, list-attributes, then a memberOf placement
    constraint that uses the custom attribute ([docs] cluster query language)."""
    cluster = new_cluster(server)
    ci = ecs(server).list_container_instances(cluster=cluster)["containerInstanceArns"][0]
    server.aws("ecs", "put-attributes", "--cluster", cluster, "--attributes",
               f"name=stack,value=production,targetId={ci}")
    got = server.aws_json("ecs", "list-attributes", "--cluster", cluster, "--target-type",
                          "container-instance", "--attribute-name", "stack", "--attribute-value", "production")
    assert got["attributes"] == [{"name": "stack", "value": "production", "targetType": "container-instance",
                                  "targetId": ci}], got
    td = register(server)
    ok = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="EC2",
                              placementConstraints=[{"type": "memberOf",
                                                     "expression": "attribute:stack == production"}])
    assert len(ok["tasks"]) == 1, ok["failures"]
    no = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="EC2",
                              placementConstraints=[{"type": "memberOf",
                                                     "expression": "attribute:stack == staging"}])
    # [docs] API failure reasons: "MemberOf" when no instance satisfies the constraint.
    assert no["tasks"] == [] and [f["reason"] for f in no["failures"]] == ["MemberOf"], no


def test_cli_examples_start_task(server):
    # start-task --task-definition sleep360 --container-instances <id> (CLI reference).
    cluster = new_cluster(server)
    family = unique_name("start")
    register(server, family)
    ci = ecs(server).list_container_instances(cluster=cluster)["containerInstanceArns"][0]
    out = server.aws_json("ecs", "start-task", "--cluster", cluster, "--task-definition", family,
                          "--container-instances", ci.rsplit("/", 1)[1])
    [t] = out["tasks"]
    assert t["containerInstanceArn"] == ci and t["group"] == f"family:{family}"


def test_fargate_capacity_provider_strategy(server, shell_image):
    # [docs] "The AWS Fargate capacity providers are available to all accounts and only need to
    # be associated with a cluster to be used." With a default strategy, RunTask without a
    # launch type runs on FARGATE and reports capacityProviderName.
    name = unique_name("cp")
    c = ecs(server).create_cluster(clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"],
                                   defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
    td = register_fargate(server, image=shell_image)
    [t] = ecs(server).run_task(cluster=name, taskDefinition=td["taskDefinitionArn"],
                               networkConfiguration=AWSVPC)["tasks"]
    assert t.get("capacityProviderName") == "FARGATE", t.get("capacityProviderName")
    assert t["launchType"] == "FARGATE"
    [t2] = ecs(server).run_task(cluster=name, taskDefinition=td["taskDefinitionArn"], networkConfiguration=AWSVPC,
                                capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}])["tasks"]
    assert t2.get("capacityProviderName") == "FARGATE_SPOT" and t2["launchType"] == "FARGATE"
    for x in (t, t2):
        ecs(server).stop_task(cluster=name, task=x["taskArn"])
    # [docs] the cluster reports its capacity providers and default strategy.
    assert c["cluster"]["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"], c["cluster"]
    assert c["cluster"]["defaultCapacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE", "weight": 1, "base": 0}], c["cluster"]


# -- documented limits and constraints (the error code is not documented for these: any 400
# ClientException / InvalidParameterException is accepted) ---------------------------------
def expect_client_error(call, **kw):
    with pytest.raises(ClientError) as ei:
        call(**kw)
    assert http_status(ei.value) == 400, ei.value.response
    assert error_code(ei.value) in ("InvalidParameterException", "ClientException"), ei.value.response["Error"]
    return ei.value


@pytest.mark.parametrize("case", ["describe_tasks_101", "list_clusters_101", "service_without_desired_count",
                                  "launch_type_and_capacity_provider"])
def test_documented_limits(server, case):
    cluster = new_cluster(server)
    td = register(server)
    if case == "describe_tasks_101":
        # [model docs] DescribeTasks.tasks: "A list of up to 100 task IDs or full ARN entries."
        expect_client_error(ecs(server).describe_tasks, cluster=cluster,
                            tasks=[uuid.uuid4().hex for _ in range(101)])
    elif case == "list_clusters_101":
        # [model docs] ListClusters.maxResults: "This value can be between 1 and 100."
        expect_client_error(ecs(server).list_clusters, maxResults=101)
    elif case == "service_without_desired_count":
        # [model docs] CreateService.desiredCount: "This is required if schedulingStrategy is
        # REPLICA or isn't specified."
        expect_client_error(ecs(server).create_service, cluster=cluster, serviceName=unique_name("nodesired"),
                            taskDefinition=td["taskDefinitionArn"])
    else:
        # [docs] RunTask: "If a capacityProviderStrategy is specified, the launchType parameter
        # must be omitted."
        expect_client_error(ecs(server).run_task, cluster=cluster, taskDefinition=td["taskDefinitionArn"],
                            launchType="EC2",
                            capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])


def test_container_memory_above_task_memory(server):
    # [model docs] ContainerDefinition.memory: "The total amount of memory reserved for all
    # containers within a task must be lower than the task memory value, if one is specified."
    # [observed] ClientException "The 'memory' setting for container is greater than for the
    # task" (Harness ECS troubleshooting docs quote it).
    expect_error(ecs(server).register_task_definition, "ClientException", message="greater than for the task",
                 family=unique_name("memover"), memory="64",
                 containerDefinitions=[{"name": "a", "image": MISSING_IMAGE, "memory": 128}])


def test_negative_desired_count_is_an_aws_error(server):
    # A negative desiredCount must come back as an AWS error (InvalidParameterException), not
    # a JSON deserializer's message.
    cluster = new_cluster(server)
    td = register(server)
    e = expect_error(ecs(server).create_service, "InvalidParameterException", cluster=cluster,
                     serviceName=unique_name("neg"), taskDefinition=td["taskDefinitionArn"], desiredCount=-1)
    assert "u32" not in e.response["Error"]["Message"], e.response["Error"]


@pytest.mark.parametrize("container_kw,expected", [
    ({}, "img-ep img-cmd"),
    ({"command": ["td-cmd"]}, "img-ep td-cmd"),
    ({"entryPoint": ["echo", "td-ep"]}, "td-ep"),
    ({"entryPoint": ["echo", "td-ep"], "command": ["td-cmd"]}, "td-ep td-cmd"),
])
def test_entrypoint_and_command_semantics(server, tmp_path, container_kw, expected):
    # [docs] ContainerDefinition.entryPoint / command map to Docker's Entrypoint / Cmd: command
    # replaces the image's CMD, entryPoint replaces its ENTRYPOINT — and, as with
    # `docker run --entrypoint`, an overridden entrypoint does not inherit the image's CMD.
    tag = "conformance-ep:v1"
    import_image(server, tmp_path, tag, entrypoint=["echo", "img-ep"], cmd=["img-cmd"])
    cluster = new_cluster(server)
    _, lines = run_and_collect_logs(server, cluster, tag, None, container_kw=container_kw)
    assert lines == [expected], lines


def test_working_directory_user_and_environment(server, tmp_path):
    # [docs] workingDirectory, user and environment (merged over the image's Env) reach the
    # process.
    tag = "conformance-env:v1"
    import_image(server, tmp_path, tag, env={"FROM_IMAGE": "img", "OVERRIDDEN": "img"}, workdir="/")
    cluster = new_cluster(server)
    _, lines = run_and_collect_logs(
        server, cluster, tag, ["sh", "-c", 'echo "$(pwd) $(id -u) $FROM_IMAGE $OVERRIDDEN $EXTRA"'],
        container_kw={"workingDirectory": "/tmp", "user": "1000",
                      "environment": [{"name": "OVERRIDDEN", "value": "td"}, {"name": "EXTRA", "value": "x"}]})
    assert lines == ["/tmp 1000 img td x"], lines


# -- reaching a task's ports, as a client would ------------------------------------------------
def http_get(url: str, timeout: float = 2.0) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


@pytest.fixture(scope="module")
def web_image(server, tmp_path_factory):
    """busybox httpd serving /www/hello.txt on port 8080 (from the image's CMD)."""
    tag = "conformance-web:v1"
    import_image(server, tmp_path_factory.mktemp("web"), tag,
                 extra_files={"/www/hello.txt": b"hello-from-task\n"},
                 cmd=["httpd", "-f", "-p", "8080", "-h", "/www"])
    return tag


def test_bridge_host_port_is_reachable(server, web_image):
    # [docs] bridge mode with hostPort 0: the task's networkBindings give the host port that
    # forwards to the containerPort.
    cluster = new_cluster(server)
    td = register(server, containers=[container(image=web_image,
                                                portMappings=[{"containerPort": 8080, "hostPort": 0}])])
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="EC2")["tasks"]
    x = wait_task(server, cluster, t["taskArn"], "RUNNING")
    port = x["containers"][0]["networkBindings"][0]["hostPort"]
    body = wait_until(lambda: http_get(f"http://127.0.0.1:{port}/hello.txt"), 30, 0.2, "httpd via hostPort")
    assert body == "hello-from-task\n"
    ecs(server).stop_task(cluster=cluster, task=t["taskArn"])


def test_fargate_task_ip_is_reachable(server, web_image):
    # [docs] awsvpc: the task's ENI attachment reports privateIPv4Address; clients connect to
    # <privateIPv4Address>:<containerPort>.
    cluster = new_cluster(server)
    td = ecs(server).register_task_definition(
        family=unique_name("fgweb"), requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256",
        memory="512", containerDefinitions=[{"name": "web", "image": web_image,
                                             "portMappings": [{"containerPort": 8080}]}])["taskDefinition"]
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="FARGATE",
                               networkConfiguration=AWSVPC)["tasks"]
    x = wait_task(server, cluster, t["taskArn"], "RUNNING")
    [eni] = [a for a in x["attachments"] if a["type"] == "ElasticNetworkInterface"]
    details = {d["name"]: d["value"] for d in eni["details"]}
    ip = details["privateIPv4Address"]
    assert x["containers"][0]["networkInterfaces"][0]["privateIpv4Address"] == ip
    body = wait_until(lambda: http_get(f"http://{ip}:8080/hello.txt"), 30, 0.2, "httpd via the task IP")
    assert body == "hello-from-task\n"
    ecs(server).stop_task(cluster=cluster, task=t["taskArn"])


def test_awsvpc_containers_share_localhost(server, web_image):
    # [docs] awsvpc: "containers that belong to the same task can communicate over the
    # localhost interface".
    cluster = new_cluster(server)
    probe = ('i=0; while [ $i -lt 100 ]; do wget -qO- http://127.0.0.1:8080/hello.txt && exit 0; '
             'i=$((i+1)); sleep 0.2; done; exit 1')
    td = ecs(server).register_task_definition(
        family=unique_name("lo"), requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256",
        memory="512", containerDefinitions=[
            {"name": "web", "image": web_image, "essential": False},
            {"name": "client", "image": web_image, "essential": True, "command": ["sh", "-c", probe],
             "dependsOn": [{"containerName": "web", "condition": "START"}]}])["taskDefinition"]
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="FARGATE",
                               networkConfiguration=AWSVPC)["tasks"]
    s = wait_task(server, cluster, t["taskArn"], "STOPPED", timeout=90)
    c = {c["name"]: c for c in s["containers"]}
    assert c["client"]["exitCode"] == 0, s["containers"]
    assert s["stopCode"] == "EssentialContainerExited"


def test_region_in_arns_and_isolation(server):
    # ECS resources are regional: ARNs carry the request's region, and a cluster made in one
    # region is not visible from another ([docs] ClusterNotFoundException: "Amazon ECS clusters
    # are Region specific").
    eu = server.client("ecs", region="eu-west-1")
    name = unique_name("eu")
    c = eu.create_cluster(clusterName=name)["cluster"]
    assert c["clusterArn"] == f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/{name}"
    td = eu.register_task_definition(family=unique_name("eufam"), containerDefinitions=[container()])["taskDefinition"]
    assert td["taskDefinitionArn"].startswith(f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task-definition/")
    assert f"{ARN}:cluster/{name}" not in ecs(server).list_clusters()["clusterArns"]
    d = ecs(server).describe_clusters(clusters=[name])
    assert d["clusters"] == [] and d["failures"][0]["reason"] == "MISSING"
    expect_error(ecs(server).describe_task_definition, "ClientException", taskDefinition=td["family"])


def test_list_services_scheduling_strategy_filter(server):
    # [docs] ListServices schedulingStrategy: "The scheduling strategy to use when filtering the
    # ListServices results."
    cluster = new_cluster(server)
    td = register(server)
    replica = create_service(server, cluster, td["taskDefinitionArn"])["serviceArn"]
    assert ecs(server).list_services(cluster=cluster, schedulingStrategy="DAEMON")["serviceArns"] == []
    assert ecs(server).list_services(cluster=cluster, schedulingStrategy="REPLICA")["serviceArns"] == [replica]


def test_daemon_service_runs_one_task_per_instance(server, shell_image):
    # [docs] DAEMON: "deploys exactly one task on each active container instance that meets
    # all of the task placement constraints"; desiredCount is computed by the scheduler.
    cluster = new_cluster(server)
    td = register(server, containers=[container(image=shell_image, command=["sleep", "300"])])
    name = unique_name("daemon")
    s = ecs(server).create_service(cluster=cluster, serviceName=name, taskDefinition=td["taskDefinitionArn"],
                                   schedulingStrategy="DAEMON", launchType="EC2")["service"]
    assert s["schedulingStrategy"] == "DAEMON"
    instances = len(ecs(server).list_container_instances(cluster=cluster)["containerInstanceArns"])

    def placed():
        x = ecs(server).describe_services(cluster=cluster, services=[name])["services"][0]
        return x if x["desiredCount"] == instances and x["runningCount"] == instances else None
    wait_until(placed, 60, 0.2, f"daemon service running {instances} task(s)")
    # [docs] DAEMON services: "the deployment configuration ... maximumPercent 100,
    # minimumHealthyPercent 0" are the defaults.
    x = ecs(server).describe_services(cluster=cluster, services=[name])["services"][0]
    dc = x["deploymentConfiguration"]
    assert dc["maximumPercent"] == 100 and dc["minimumHealthyPercent"] == 0, dc
    ecs(server).delete_service(cluster=cluster, service=name, force=True)


def test_list_container_instances_filter(server):
    # [docs] ListContainerInstances filter: "You can filter the results ... with cluster query
    # language statements", e.g. attribute:ecs.os-type == linux.
    cluster = new_cluster(server)
    every = ecs(server).list_container_instances(cluster=cluster)["containerInstanceArns"]
    assert every
    linux = ecs(server).list_container_instances(cluster=cluster, filter="attribute:ecs.os-type == linux")
    assert linux["containerInstanceArns"] == every
    windows = ecs(server).list_container_instances(cluster=cluster, filter="attribute:ecs.os-type == windows")
    assert windows["containerInstanceArns"] == [], windows
    # a malformed expression is a client error (the code is not documented)
    expect_client_error(ecs(server).list_container_instances, cluster=cluster, filter="attribute:(((")


def test_newer_optional_parameters_are_accepted_and_echoed(server):
    # Current SDKs send newer optional members; they must be accepted (and, where the model
    # has them in the response, echoed).
    cluster = new_cluster(server)
    td = ecs(server).register_task_definition(
        family=unique_name("newer"), requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256",
        memory="512", runtimePlatform={"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        ephemeralStorage={"sizeInGiB": 30}, enableFaultInjection=False, pidMode="task",
        containerDefinitions=[{"name": "app", "image": MISSING_IMAGE, "essential": True,
                               "versionConsistency": "disabled", "restartPolicy": {"enabled": False}}],
        tags=[{"key": "k", "value": "v"}])["taskDefinition"]
    s = ecs(server).create_service(
        cluster=cluster, serviceName=unique_name("newer"), taskDefinition=td["taskDefinitionArn"], desiredCount=0,
        launchType="FARGATE", networkConfiguration=AWSVPC, enableECSManagedTags=True,
        propagateTags="SERVICE", enableExecuteCommand=True, availabilityZoneRebalancing="DISABLED")["service"]
    # [model] these members are part of the Service / TaskDefinition responses.
    got = {"service.enableECSManagedTags": s.get("enableECSManagedTags"),
           "service.propagateTags": s.get("propagateTags"),
           "service.enableExecuteCommand": s.get("enableExecuteCommand"),
           "taskDefinition.runtimePlatform": td.get("runtimePlatform"),
           "taskDefinition.ephemeralStorage": td.get("ephemeralStorage"),
           "taskDefinition.pidMode": td.get("pidMode")}
    want = {"service.enableECSManagedTags": True, "service.propagateTags": "SERVICE",
            "service.enableExecuteCommand": True,
            "taskDefinition.runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
            "taskDefinition.ephemeralStorage": {"sizeInGiB": 30}, "taskDefinition.pidMode": "task"}
    assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}


def test_container_definition_fields_round_trip(server):
    # [model] ContainerDefinition: what RegisterTaskDefinition accepts, DescribeTaskDefinition
    # returns (AWS stores the definition as given, adding defaults only).
    cdef = {
        "name": "app", "image": MISSING_IMAGE, "cpu": 128, "memory": 256, "memoryReservation": 128,
        "essential": True, "entryPoint": ["sh", "-c"], "command": ["echo hi"],
        "environment": [{"name": "A", "value": "1"}],
        "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp", "name": "web"}],
        "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 3, "retries": 2, "startPeriod": 5},
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/g", "awslogs-region": REGION,
                                                                  "awslogs-stream-prefix": "p"}},
        "workingDirectory": "/tmp", "user": "1000:1000", "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
        "stopTimeout": 20, "startTimeout": 30, "hostname": "box", "readonlyRootFilesystem": False,
        "dockerLabels": {"team": "a"}, "dnsServers": ["10.0.0.2"], "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.3"}],
        "linuxParameters": {"initProcessEnabled": True}, "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch",
                                                                          "readOnly": False}],
        "interactive": False, "pseudoTerminal": False, "privileged": False,
    }
    td = ecs(server).register_task_definition(
        family=unique_name("rt"), volumes=[{"name": "scratch"}], containerDefinitions=[cdef])["taskDefinition"]
    back = ecs(server).describe_task_definition(taskDefinition=td["taskDefinitionArn"])["taskDefinition"]
    got = dict(back["containerDefinitions"][0])
    # AWS itself adds "secretOptions": [] to logConfiguration (describe-task-definition output).
    if isinstance(got.get("logConfiguration"), dict) and got["logConfiguration"].get("secretOptions") == []:
        got["logConfiguration"] = {k: v for k, v in got["logConfiguration"].items() if k != "secretOptions"}
    diff = {k: (got.get(k), v) for k, v in cdef.items() if got.get(k) != v}
    assert diff == {}, "not echoed as given: " + "; ".join(f"{k}: got {g!r}" for k, (g, _) in sorted(diff.items()))
    assert [v["name"] for v in back["volumes"]] == ["scratch"], back["volumes"]


def test_task_scratch_volume_shared_between_containers(server, shell_image):
    # [docs] task definition `volumes` with no host path: a bind mount "managed by the Docker
    # daemon" that containers of the task share through mountPoints (Fargate and EC2).
    cluster = new_cluster(server)
    td = ecs(server).register_task_definition(
        family=unique_name("vol"), volumes=[{"name": "scratch"}],
        containerDefinitions=[
            {"name": "writer", "image": shell_image, "memory": 32, "essential": False,
             "command": ["sh", "-c", "echo shared > /scratch/file"],
             "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch"}]},
            {"name": "reader", "image": shell_image, "memory": 32, "essential": True,
             "command": ["sh", "-c", 'test "$(cat /data/file)" = shared'],
             "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/data", "readOnly": True}],
             "dependsOn": [{"containerName": "writer", "condition": "SUCCESS"}]}])["taskDefinition"]
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="EC2")["tasks"]
    s = wait_task(server, cluster, t["taskArn"], "STOPPED", timeout=90)
    c = {c["name"]: c for c in s["containers"]}
    assert c["writer"]["exitCode"] == 0 and c["reader"]["exitCode"] == 0, s["containers"]


def test_stop_timeout_sigterm_then_sigkill(server, shell_image):
    # [docs] StopTask: "a SIGTERM value is sent ... If the container handles the SIGTERM value
    # gracefully and exits within 30 seconds ... Otherwise a SIGKILL value is sent";
    # stopTimeout shortens that wait. Killed → exit code 137 (128 + 9), as Docker reports it.
    cluster = new_cluster(server)
    td = register(server, containers=[
        container("stubborn", image=shell_image, stopTimeout=2,
                  command=["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]),
        container("polite", image=shell_image,
                  command=["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"])])
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="EC2")["tasks"]
    wait_task(server, cluster, t["taskArn"], "RUNNING")
    ecs(server).stop_task(cluster=cluster, task=t["taskArn"])
    s = wait_task(server, cluster, t["taskArn"], "STOPPED", timeout=60)
    c = {c["name"]: c for c in s["containers"]}
    assert c["polite"]["exitCode"] == 0, c["polite"]
    assert c["stubborn"]["exitCode"] == 137, c["stubborn"]


def test_describe_clusters_statistics(server):
    # [model docs] DescribeClusters include=["STATISTICS"]: "the task and service count is
    # included, separated by launch type" — runningEC2TasksCount, runningFargateTasksCount,
    # pendingEC2TasksCount, pendingFargateTasksCount, activeEC2ServiceCount,
    # activeFargateServiceCount, drainingEC2ServiceCount, drainingFargateServiceCount
    # (name/value pairs, values as strings).
    cluster = new_cluster(server)
    td = register(server)
    create_service(server, cluster, td["taskDefinitionArn"], launchType="EC2")
    c = ecs(server).describe_clusters(clusters=[cluster], include=["STATISTICS"])["clusters"][0]
    stats = {kv["name"]: kv["value"] for kv in c["statistics"]}
    for k in ("runningEC2TasksCount", "runningFargateTasksCount", "pendingEC2TasksCount",
              "pendingFargateTasksCount", "activeEC2ServiceCount", "activeFargateServiceCount",
              "drainingEC2ServiceCount", "drainingFargateServiceCount"):
        assert k in stats, (k, c["statistics"])
    assert stats["activeEC2ServiceCount"] == "1" and stats["activeFargateServiceCount"] == "0", stats


def test_task_level_overrides(server, shell_image):
    # [model/docs] TaskOverride cpu / memory / taskRoleArn: the task reports the overridden
    # values; containerOverrides cpu/memory likewise on the container.
    cluster = new_cluster(server)
    td = register_fargate(server, image=shell_image)
    ov = {"cpu": "512", "memory": "1024", "taskRoleArn": "arn:aws:iam::000000000000:role/other",
          "containerOverrides": [{"name": "app", "command": ["sleep", "300"]}]}
    [t] = ecs(server).run_task(cluster=cluster, taskDefinition=td["taskDefinitionArn"], launchType="FARGATE",
                               networkConfiguration=AWSVPC, overrides=ov)["tasks"]
    assert t["cpu"] == "512" and t["memory"] == "1024", (t["cpu"], t["memory"])
    assert t["overrides"]["cpu"] == "512" and t["overrides"]["memory"] == "1024", t["overrides"]
    assert t["overrides"].get("taskRoleArn") == ov["taskRoleArn"], t["overrides"]
    wait_task(server, cluster, t["taskArn"], "RUNNING")
    ecs(server).stop_task(cluster=cluster, task=t["taskArn"])


def test_family_prefix_semantics(server):
    # [model docs] ListTaskDefinitions.familyPrefix is "The full family name" (exact match);
    # ListTaskDefinitionFamilies.familyPrefix matches names that "begin with" it. Families
    # default to ACTIVE and INACTIVE; status=INACTIVE lists families with no ACTIVE revision.
    base = unique_name("pfx")
    register(server, base)
    register(server, base + "-long")
    arns = ecs(server).list_task_definitions(familyPrefix=base)["taskDefinitionArns"]
    assert arns == [f"{ARN}:task-definition/{base}:1"], arns
    fams = ecs(server).list_task_definition_families(familyPrefix=base)["families"]
    assert sorted(fams) == [base, base + "-long"], fams
    ecs(server).deregister_task_definition(taskDefinition=f"{base}-long:1")
    assert ecs(server).list_task_definition_families(familyPrefix=base, status="INACTIVE")["families"] == [base + "-long"]
    assert ecs(server).list_task_definition_families(familyPrefix=base, status="ACTIVE")["families"] == [base]
    assert sorted(ecs(server).list_task_definition_families(familyPrefix=base)["families"]) == [base, base + "-long"]


def test_update_desired_count_only_keeps_the_deployment(server):
    # [docs] UpdateService: changing only desiredCount scales the current deployment; a new
    # deployment starts only for changes such as the task definition or forceNewDeployment.
    cluster = new_cluster(server)
    td = register(server)
    s = create_service(server, cluster, td["taskDefinitionArn"])
    first = s["deployments"][0]["id"]
    u = ecs(server).update_service(cluster=cluster, service=s["serviceName"], desiredCount=0,
                                   taskDefinition=td["taskDefinitionArn"])["service"]
    assert [d["id"] for d in u["deployments"]] == [first], u["deployments"]
    u = ecs(server).update_service(cluster=cluster, service=s["serviceName"], desiredCount=2)["service"]
    assert u["desiredCount"] == 2
    assert [d["id"] for d in u["deployments"]] == [first], u["deployments"]
    # Deployment.desiredCount follows (the scheduler may take a moment).
    wait_until(lambda: ecs(server).describe_services(cluster=cluster, services=[s["serviceName"]])
               ["services"][0]["deployments"][0]["desiredCount"] == 2, 30, 0.2, "deployment desiredCount 2")
    ecs(server).update_service(cluster=cluster, service=s["serviceName"], desiredCount=0)
    ecs(server).delete_service(cluster=cluster, service=s["serviceName"], force=True)


def test_draining_service_is_not_listed(server, shell_image):
    # [docs] DeleteService: "the service status moves from ACTIVE to DRAINING, and the service
    # is no longer visible in the console or in the ListServices API operation". A task that
    # ignores SIGTERM (stopTimeout 5) keeps the service DRAINING long enough to look.
    cluster = new_cluster(server)
    td = register(server, containers=[container(image=shell_image, stopTimeout=5,
                                                command=["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"])])
    name = unique_name("drain")
    s = create_service(server, cluster, td["taskDefinitionArn"], name, desiredCount=1)
    ecs(server).get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    out = ecs(server).delete_service(cluster=cluster, service=name, force=True)["service"]
    assert out["status"] == "DRAINING", out["status"]
    assert s["serviceArn"] not in ecs(server).list_services(cluster=cluster)["serviceArns"]
    assert ecs(server).describe_services(cluster=cluster, services=[name])["services"][0]["status"] in (
        "DRAINING", "INACTIVE")
    ecs(server).get_waiter("services_inactive").wait(cluster=cluster, services=[name],
                                                     WaiterConfig={"Delay": 1, "MaxAttempts": 60})
