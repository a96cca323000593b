"""Functions call the platform with an unconfigured AWS SDK, as on AWS: every environment
gets AWS_ENDPOINT_URL and credentials, and python runtimes can `import boto3`."""
import json
import urllib.request

from nimbus_e2e import create_function, make_zip, ok, invoke, rust_echo_zip, unique_name, wait_until

ORCHESTRATOR = """
import json, boto3
def handler(event, context):
    lam = boto3.client("lambda")
    out = lam.invoke(FunctionName=event["target"], Payload=json.dumps({"from": context.function_name}))
    return {"status": out["StatusCode"], "payload": json.loads(out["Payload"].read())}
"""


def test_python_function_invokes_another_function_with_boto3(server):
    def sdk_ready():
        with urllib.request.urlopen(server.endpoint + "/_nimbus/health", timeout=5) as r:
            return json.load(r).get("python_sdk") == "ready"

    wait_until(sdk_ready, 240, interval=0.5, what="boto3 installed for python functions")
    lam = server.lam
    target, caller = unique_name("callee"), unique_name("caller")
    create_function(lam, target, rust_echo_zip(), runtime="provided.al2023")
    create_function(lam, caller, make_zip({"lambda_function.py": ORCHESTRATOR}), Timeout=30)
    out = ok(invoke(lam, caller, {"target": target}))
    assert out["status"] == 200
    assert out["payload"]["echo"] == {"from": caller}


def test_functions_can_call_the_platform_under_strict_auth(nimbus):
    s = nimbus("--auth", "strict", "--access-key", "AKIDSTRICT:strictsecret")

    def sdk_ready():
        with urllib.request.urlopen(s.endpoint + "/_nimbus/health", timeout=5) as r:
            return json.load(r).get("python_sdk") == "ready"

    wait_until(sdk_ready, 240, interval=0.5, what="boto3 installed for python functions")
    lam = s.client("lambda", key="AKIDSTRICT", secret="strictsecret")
    target, caller = unique_name("scallee"), unique_name("scaller")
    create_function(lam, target, rust_echo_zip(), runtime="provided.al2023")
    create_function(lam, caller, make_zip({"lambda_function.py": ORCHESTRATOR}), Timeout=30)
    out = ok(invoke(lam, caller, {"target": target}))
    assert out["payload"]["echo"] == {"from": caller}
