"""Versions and aliases: PublishVersion snapshots, qualified invokes, weighted aliases,
ExecutedVersion, and their durability."""
import json
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import create_function, error_code, make_zip, unique_name, wait_updated

SRC = """
import os
def handler(event, context):
    return {"version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "mark": os.environ.get("MARK"),
            "arn": context.invoked_function_arn}
"""


def _invoke(lam, name, qualifier=None):
    kw = {"Qualifier": qualifier} if qualifier else {}
    r = lam.invoke(FunctionName=name, Payload=b"{}", **kw)
    return r["ExecutedVersion"], json.loads(r["Payload"].read())


def test_versions_aliases_and_weighted_routing(nimbus):
    s = nimbus()
    lam = s.lam
    name = unique_name("ver")
    create_function(lam, name, make_zip({"lambda_function.py": SRC}),
                    Environment={"Variables": {"MARK": "a"}})
    v1 = lam.publish_version(FunctionName=name, Description="first")
    assert v1["Version"] == "1" and v1["FunctionArn"].endswith(f":function:{name}:1")
    assert v1["Description"] == "first"
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"MARK": "b"}})
    wait_updated(lam, name)
    v2 = lam.publish_version(FunctionName=name)
    assert v2["Version"] == "2"
    assert lam.publish_version(FunctionName=name)["Version"] == "2", "unchanged $LATEST: no new version"
    with pytest.raises(ClientError) as e:
        lam.publish_version(FunctionName=name, CodeSha256="bm90IHRoZSBzaGE=")
    assert error_code(e.value) == "InvalidParameterValueException"
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert versions == ["$LATEST", "1", "2"]

    assert _invoke(lam, name, "1")[0] == "1" and _invoke(lam, name, "1")[1]["mark"] == "a"
    executed, out = _invoke(lam, name, "2")
    assert (executed, out["mark"], out["version"]) == ("2", "b", "2")
    assert _invoke(lam, name)[0] == "$LATEST"

    alias = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    assert alias["AliasArn"].endswith(f":function:{name}:live")
    counts = Counter(_invoke(lam, name, "live")[0] for _ in range(1000))
    assert set(counts) == {"1", "2"}, counts
    assert abs(counts["2"] / 1000 - 0.3) < 0.06, counts        # ~4 standard deviations
    _, out = _invoke(lam, f"{alias['AliasArn']}")
    assert out["arn"].endswith(":live")

    with pytest.raises(ClientError) as e:
        lam.delete_function(FunctionName=name, Qualifier="2")
    assert error_code(e.value) == "ResourceConflictException"

    lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RoutingConfig={"AdditionalVersionWeights": {}})
    assert {_invoke(lam, name, "live")[0] for _ in range(20)} == {"2"}
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]] == ["live"]

    s.kill9()
    s.restart()
    lam = s.lam
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"
    assert _invoke(lam, name, "1")[1]["mark"] == "a"
    lam.delete_alias(FunctionName=name, Name="live")
    with pytest.raises(ClientError) as e:
        lam.get_alias(FunctionName=name, Name="live")
    assert error_code(e.value) == "ResourceNotFoundException"
    lam.delete_function(FunctionName=name, Qualifier="1")
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "2"]
    with pytest.raises(ClientError) as e:
        _invoke(lam, name, "1")
    assert error_code(e.value) == "ResourceNotFoundException"


def test_create_function_with_publish_returns_version_1(server):
    name = unique_name("pub")
    out = create_function(server.lam, name, make_zip({"lambda_function.py": SRC}), Publish=True)
    assert out["Version"] == "1"
    assert _invoke(server.lam, name, "1")[0] == "1"
