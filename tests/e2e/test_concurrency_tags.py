"""Reserved concurrency (PutFunctionConcurrency) and tags, through boto3."""
import threading
import time

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import create_function, error_code, invoke, ok, python_zip, rust_echo_zip, unique_name


def test_reserved_concurrency_throttles_and_is_reported(server):
    lam = server.lam
    name = unique_name("reserved")
    create_function(lam, name, rust_echo_zip(), runtime="provided.al2023")
    assert lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)[
        "ReservedConcurrentExecutions"] == 0
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert error_code(e.value) == "TooManyRequestsException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert e.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"

    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 1
    assert lam.get_function(FunctionName=name)["Concurrency"]["ReservedConcurrentExecutions"] == 1
    settings = lam.get_account_settings()["AccountLimit"]
    assert settings["UnreservedConcurrentExecutions"] == settings["ConcurrentExecutions"] - 1
    t = threading.Thread(target=lambda: ok(invoke(lam, name, {"sleep_ms": 1500})))
    t.start()
    time.sleep(0.6)
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert error_code(e.value) == "TooManyRequestsException"
    t.join()
    with pytest.raises(ClientError) as e:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=100_000)
    assert error_code(e.value) == "InvalidParameterValueException"
    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    ok(invoke(lam, name, {}))


def test_tags(server):
    lam = server.lam
    name = unique_name("tags")
    arn = create_function(lam, name, python_zip(), Tags={"team": "a"})["FunctionArn"]
    assert lam.list_tags(Resource=arn)["Tags"] == {"team": "a"}
    lam.tag_resource(Resource=arn, Tags={"env": "dev", "cost": "x"})
    lam.untag_resource(Resource=arn, TagKeys=["team", "cost"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"env": "dev"}
    assert lam.get_function(FunctionName=name)["Tags"] == {"env": "dev"}
