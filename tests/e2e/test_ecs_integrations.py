"""ECS as a trigger target, end to end: Step Functions' optimized `ecs:runTask` integration
(request/response, `.sync`, `.waitForTaskToken`, durable `.sync` across a restart) and
EventBridge rules with `EcsParameters` targets — real busybox tasks on the real binary."""
import functools
import json

import pytest
from botocore.exceptions import ClientError

import ecs_e2e
from ecs_e2e import busybox_server, import_busybox, unique

pytestmark = pytest.mark.timeout(300)

ROLE = "arn:aws:iam::000000000000:role/sfn"
ACCOUNT = "000000000000"
REGION = "us-east-1"

# Step Functions and EventBridge add their own latency on top of the task's: wait longer.
wait_for = functools.partial(ecs_e2e.wait_for, timeout=90.0, interval=0.2)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with busybox_server(tmp_path_factory, "nimbus-ecs-int") as s:
        yield s


def setup_task(server, command, family=None):
    """A cluster and a one-container task definition running `command`."""
    ecs = server.client("ecs")
    cluster = unique("c")
    arn = ecs.create_cluster(clusterName=cluster)["cluster"]["clusterArn"]
    family = family or unique("job")
    td = ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "app", "image": "busybox", "memory": 64, "command": command}])["taskDefinition"]
    return ecs, cluster, arn, td


def machine(sfn, states, name=None):
    definition = {"StartAt": "Run", "States": states}
    return sfn.create_state_machine(name=name or unique("sm"), definition=json.dumps(definition),
                                    roleArn=ROLE)["stateMachineArn"]


def run_state(resource, parameters, **extra):
    return {"Run": {"Type": "Task", "Resource": resource, "Parameters": parameters, "End": True, **extra}}


def wait_execution(sfn, arn, timeout=120):
    return wait_for(lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d,
                    timeout=timeout, what=f"execution {arn} to finish")


def test_run_task_sync_succeeds_with_the_stopped_task(srv):
    ecs, cluster, cluster_arn, td = setup_task(srv, ["sh", "-c", "exit 0"])
    sfn = srv.client("stepfunctions")
    sm = machine(sfn, run_state("arn:aws:states:::ecs:runTask.sync", {
        "Cluster": cluster_arn,
        "TaskDefinition": td["taskDefinitionArn"],
        "LaunchType": "EC2",
        "Overrides": {"ContainerOverrides": [
            {"Name": "app", "Environment": [{"Name": "GREETING", "Value.$": "$.greeting"}]}]},
    }))
    ex = sfn.start_execution(stateMachineArn=sm, input=json.dumps({"greeting": "hi"}))["executionArn"]
    d = wait_execution(sfn, ex)
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    # The task as DescribeTasks shows it, in Step Functions' PascalCase.
    assert out["LastStatus"] == "STOPPED" and out["DesiredStatus"] == "STOPPED"
    assert out["ClusterArn"] == cluster_arn
    assert out["TaskDefinitionArn"] == td["taskDefinitionArn"]
    assert out["Containers"][0]["ExitCode"] == 0
    assert out["Containers"][0]["Name"] == "app"
    assert out["StopCode"] == "EssentialContainerExited"
    assert out["StartedBy"] == "AWS Step Functions"
    assert isinstance(out["CreatedAt"], int) and isinstance(out["StoppedAt"], int)
    env = out["Overrides"]["ContainerOverrides"][0]["Environment"]
    assert env == [{"Name": "GREETING", "Value": "hi"}]
    # ECS agrees: one stopped task, started by Step Functions.
    listed = ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED", startedBy="AWS Step Functions")
    assert listed["taskArns"] == [out["TaskArn"]]


def test_run_task_sync_fails_when_the_essential_container_fails(srv):
    ecs, cluster, cluster_arn, td = setup_task(srv, ["sh", "-c", "exit 0"])
    sfn = srv.client("stepfunctions")
    states = run_state("arn:aws:states:::ecs:runTask.sync", {
        "Cluster": cluster,
        "TaskDefinition": td["family"],
        "Overrides": {"ContainerOverrides": [{"Name": "app", "Command": ["sh", "-c", "exit 3"]}]},
    })
    sm = machine(sfn, states)
    d = wait_execution(sfn, sfn.start_execution(stateMachineArn=sm)["executionArn"])
    assert d["status"] == "FAILED", d
    assert d["error"] == "States.TaskFailed"
    cause = json.loads(d["cause"])
    assert cause["Containers"][0]["ExitCode"] == 3
    assert cause["LastStatus"] == "STOPPED"
    # Catch sees the same error.
    states["Run"]["Catch"] = [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.err", "Next": "Caught"}]
    states["Caught"] = {"Type": "Pass", "End": True}
    sm2 = machine(sfn, states)
    d = wait_execution(sfn, sfn.start_execution(stateMachineArn=sm2)["executionArn"])
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(json.loads(d["output"])["err"]["Cause"])["Containers"][0]["ExitCode"] == 3


def test_run_task_request_response_returns_run_task_answer(srv):
    ecs, cluster, cluster_arn, td = setup_task(srv, ["sleep", "60"])
    sfn = srv.client("stepfunctions")
    sm = machine(sfn, run_state("arn:aws:states:::ecs:runTask", {
        "Cluster": cluster, "TaskDefinition": td["taskDefinitionArn"], "StartedBy": "my-workflow"}))
    d = wait_execution(sfn, sfn.start_execution(stateMachineArn=sm)["executionArn"])
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    assert out["Failures"] == []
    [task] = out["Tasks"]
    assert task["StartedBy"] == "my-workflow" and task["DesiredStatus"] == "RUNNING"
    assert out["SdkHttpMetadata"]["HttpStatusCode"] == 200
    # The task runs on after the state finished (fire and forget).
    assert ecs.list_tasks(cluster=cluster, startedBy="my-workflow")["taskArns"] == [task["TaskArn"]]
    ecs.stop_task(cluster=cluster, task=task["TaskArn"])


def test_run_task_errors_are_named_after_ecs(srv):
    sfn = srv.client("stepfunctions")
    sm = machine(sfn, run_state("arn:aws:states:::ecs:runTask.sync", {
        "Cluster": unique("no-such-cluster"), "TaskDefinition": "nope"}))
    d = wait_execution(sfn, sfn.start_execution(stateMachineArn=sm)["executionArn"])
    assert d["status"] == "FAILED"
    assert d["error"] == "ECS.ClusterNotFoundException", d
    assert "Service: AmazonECS; Status Code: 400; Error Code: ClusterNotFoundException" in d["cause"]


def test_wait_for_task_token_passes_the_token_through_overrides(srv):
    ecs, cluster, cluster_arn, td = setup_task(srv, ["sleep", "60"])
    sfn = srv.client("stepfunctions")
    sm = machine(sfn, run_state("arn:aws:states:::ecs:runTask.waitForTaskToken", {
        "Cluster": cluster, "TaskDefinition": td["taskDefinitionArn"],
        "Overrides": {"ContainerOverrides": [{"Name": "app", "Environment": [
            {"Name": "TASK_TOKEN", "Value.$": "$$.Task.Token"}]}]},
    }))
    ex = sfn.start_execution(stateMachineArn=sm)["executionArn"]
    # The task got the token; whoever holds it (here: the test) reports the result.
    arns = wait_for(lambda: ecs.list_tasks(cluster=cluster)["taskArns"], what="the task")
    task = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"][0]
    env = {e["name"]: e["value"] for e in task["overrides"]["containerOverrides"][0]["environment"]}
    assert sfn.describe_execution(executionArn=ex)["status"] == "RUNNING"
    sfn.send_task_success(taskToken=env["TASK_TOKEN"], output=json.dumps({"done": True}))
    d = wait_execution(sfn, ex)
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == {"done": True}
    ecs.stop_task(cluster=cluster, task=arns[0])


def start_sync_sleeper(server):
    """An execution of a `runTask.sync` state whose task sleeps for two minutes, once its task
    exists: (ecs, cluster, sfn, execution ARN, task ARN)."""
    ecs, cluster, cluster_arn, td = setup_task(server, ["sleep", "120"])
    sfn = server.client("stepfunctions")
    sm = machine(sfn, run_state("arn:aws:states:::ecs:runTask.sync", {
        "Cluster": cluster, "TaskDefinition": td["taskDefinitionArn"]}))
    ex = sfn.start_execution(stateMachineArn=sm)["executionArn"]
    [arn] = wait_for(lambda: ecs.list_tasks(cluster=cluster)["taskArns"], what="the task")
    return ecs, cluster, sfn, ex, arn


def test_stopping_the_execution_stops_its_sync_task(srv):
    ecs, cluster, sfn, ex, arn = start_sync_sleeper(srv)
    sfn.stop_execution(executionArn=ex)
    stopped = wait_for(lambda: (t := ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0])
                       ["lastStatus"] == "STOPPED" and t, what="the task to stop")
    assert stopped["stopCode"] == "UserInitiated"
    assert sfn.describe_execution(executionArn=ex)["status"] == "ABORTED"


def test_sync_wait_resumes_after_a_restart_without_a_second_task(nimbus, tmp_path):
    server = nimbus()
    import_busybox(server, tmp_path)
    ecs, cluster, sfn, ex, arn = start_sync_sleeper(server)
    wait_for(lambda: ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING",
             what="the task to run")
    server.restart()
    ecs, sfn = server.client("ecs"), server.client("stepfunctions")
    # The restart took the task's host down (its containers died with the server); the
    # resumed execution finds that same task stopped and fails on it — it starts no new one.
    d = wait_execution(sfn, ex)
    assert d["status"] == "FAILED", d
    assert d["error"] == "States.TaskFailed"
    assert json.loads(d["cause"])["TaskArn"] == arn
    assert ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"] == [arn]
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []


def test_eventbridge_rule_runs_an_ecs_task(srv):
    ecs, cluster, cluster_arn, td = setup_task(srv, ["sleep", "60"])
    events = srv.client("events")
    rule = unique("rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["jobs"]}))
    # A cluster target without EcsParameters is refused.
    with pytest.raises(ClientError) as e:
        events.put_targets(Rule=rule, Targets=[{"Id": "bare", "Arn": cluster_arn}])
    assert e.value.response["Error"]["Code"] == "ValidationException"
    params = {"TaskDefinitionArn": td["taskDefinitionArn"], "TaskCount": 1, "LaunchType": "EC2",
              "Group": "nightly"}
    r = events.put_targets(Rule=rule, Targets=[
        {"Id": "plain", "Arn": cluster_arn, "RoleArn": ROLE, "EcsParameters": params},
        {"Id": "shaped", "Arn": cluster_arn, "RoleArn": ROLE, "EcsParameters": params,
         "InputTransformer": {
             "InputPathsMap": {"job": "$.detail.job"},
             "InputTemplate": '{"containerOverrides": [{"name": "app", "command": ["echo", <job>]}]}'}},
    ])
    assert r["FailedEntryCount"] == 0, r
    listed = {t["Id"]: t for t in events.list_targets_by_rule(Rule=rule)["Targets"]}
    got = listed["plain"]["EcsParameters"]
    assert got["TaskDefinitionArn"] == td["taskDefinitionArn"]
    assert (got["TaskCount"], got["LaunchType"], got["Group"]) == (1, "EC2", "nightly")
    events.put_events(Entries=[{"Source": "jobs", "DetailType": "run", "Detail": json.dumps({"job": "j-42"})}])
    started_by = f"events-rule/{rule}"

    def tasks():
        arns = (ecs.list_tasks(cluster=cluster, startedBy=started_by)["taskArns"]
                + ecs.list_tasks(cluster=cluster, startedBy=started_by, desiredStatus="STOPPED")["taskArns"])
        return len(arns) == 2 and ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]

    found = wait_for(tasks, what="two tasks started by the rule")
    assert all(t["group"] == "nightly" and t["startedBy"] == started_by for t in found)
    overrides = sorted(json.dumps(t["overrides"]["containerOverrides"]) for t in found)
    # The plain target's task gets no event; the transformer's output is the task override.
    assert json.loads(overrides[0]) == []
    assert json.loads(overrides[1])[0]["command"] == ["echo", "j-42"]
    for t in found:
        ecs.stop_task(cluster=cluster, task=t["taskArn"])


def test_a_timed_out_sync_state_stops_its_task(srv):
    ecs, cluster, cluster_arn, td = setup_task(srv, ["sleep", "120"])
    sfn = srv.client("stepfunctions")
    sm = machine(sfn, run_state("arn:aws:states:::ecs:runTask.sync", {
        "Cluster": cluster, "TaskDefinition": td["taskDefinitionArn"]}, TimeoutSeconds=3))
    d = wait_execution(sfn, sfn.start_execution(stateMachineArn=sm)["executionArn"])
    assert d["status"] == "FAILED" and d["error"] == "States.Timeout", d
    [arn] = ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]
    stopped = wait_for(lambda: (t := ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0])
                       ["lastStatus"] == "STOPPED" and t, what="the task to stop")
    assert stopped["stopCode"] == "UserInitiated"
