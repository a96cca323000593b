"""Provisioned concurrency: N environments initialised ahead of traffic (IN_PROGRESS → READY),
used first by invokes (no Init Duration), restored after a restart."""
import threading

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import create_function, error_code, invoke, ok, python_zip, unique_name, wait_until


def test_provisioned_environments_serve_without_cold_starts(nimbus):
    s = nimbus()
    lam = s.lam
    name = unique_name("prov")
    create_function(lam, name, python_zip())
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    with pytest.raises(ClientError) as e:
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="$LATEST",
                                               ProvisionedConcurrentExecutions=1)
    assert error_code(e.value) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as e:
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert error_code(e.value) == "ProvisionedConcurrencyConfigNotFoundException"

    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live",
                                                 ProvisionedConcurrentExecutions=3)
    assert put["RequestedProvisionedConcurrentExecutions"] == 3
    assert put["Status"] in ("IN_PROGRESS", "READY")
    wait_until(lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")[
        "Status"] == "READY", 20, what="READY")

    results = []

    def call():
        results.append(invoke(lam, name, {"sleep": 0.5}, tail=True, Qualifier="live"))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        ok(r)
        assert "Init Duration" not in r.log, r.log
        assert r.payload["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "provisioned-concurrency"
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["live"]

    s.kill9()
    s.restart()
    lam = s.lam
    wait_until(lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")[
        "Status"] == "READY", 20, what="READY after restart")
    r = invoke(lam, name, {}, tail=True, Qualifier="live")
    assert "Init Duration" not in r.log, r.log
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    with pytest.raises(ClientError) as e:
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert error_code(e.value) == "ProvisionedConcurrencyConfigNotFoundException"
