"""Lambda control API through the real AWS CLI v1 and boto3: create/get/list/update/delete,
configuration fields as AWS returns them, pagination, ARNs, revision ids and errors."""
import json
import re
import urllib.request
import zipfile

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import (FIXTURES, ROLE, create_function, error_code, http_status, invoke, make_zip, ok,
                        python_zip, rust_echo_zip, sha256_b64, unique_name, wait_updated)

LAST_MODIFIED_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$"


def test_seed_docs_command_verbatim(nimbus, tmp_path):
    """The seed docs' command, verbatim, with a real index.js in function.zip."""
    s = nimbus()
    (tmp_path / "index.js").write_text((FIXTURES / "node/seed/index.js").read_text())
    with zipfile.ZipFile(tmp_path / "function.zip", "w") as z:
        z.write(tmp_path / "index.js", "index.js")
    created = s.aws_json(
        "lambda", "create-function", "--function-name", "myFunction", "--zip-file",
        "fileb://function.zip", "--handler", "index.handler", "--runtime", "nodejs18.x",
        "--role", "arn:aws:iam::123456789012:role/my-execution-role", cwd=tmp_path)
    assert created["FunctionName"] == "myFunction"
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:myFunction"
    assert created["Runtime"] == "nodejs18.x"
    assert created["Handler"] == "index.handler"
    assert created["Role"] == "arn:aws:iam::123456789012:role/my-execution-role"
    assert created["CodeSha256"] == sha256_b64((tmp_path / "function.zip").read_bytes())
    s.aws("lambda", "wait", "function-active", "--function-name", "myFunction")
    out = s.aws_json("lambda", "invoke", "--function-name", "myFunction", "response.json",
                     cwd=tmp_path)
    assert out["StatusCode"] == 200 and "FunctionError" not in out, out
    assert out.get("ExecutedVersion") == "$LATEST"
    assert json.loads((tmp_path / "response.json").read_text()) == {
        "statusCode": 200, "body": '"Hello from Lambda!"'}


def test_cli_lifecycle(server, tmp_path):
    name = unique_name("cli")
    code = python_zip()
    (tmp_path / "v1.zip").write_bytes(code)
    created = server.aws_json(
        "lambda", "create-function", "--function-name", name, "--runtime", "python3.12",
        "--handler", "lambda_function.handler", "--role", ROLE, "--zip-file", "fileb://v1.zip",
        "--environment", "Variables={USER_STAGE=one}", cwd=tmp_path)
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    assert created["CodeSha256"] == sha256_b64(code)
    assert created["CodeSize"] == len(code)
    assert created["Version"] == "$LATEST"
    assert created["MemorySize"] == 128 and created["Timeout"] == 3      # AWS defaults
    assert created["PackageType"] == "Zip"
    assert re.match(LAST_MODIFIED_RE, created["LastModified"]), created["LastModified"]
    assert created["Environment"] == {"Variables": {"USER_STAGE": "one"}}
    assert created["RevisionId"]
    server.aws("lambda", "wait", "function-active", "--function-name", name)

    got = server.aws_json("lambda", "get-function", "--function-name", name)
    conf = got["Configuration"]
    assert conf["State"] == "Active" and conf["LastUpdateStatus"] == "Successful"
    for k in ("FunctionArn", "CodeSha256", "CodeSize", "Runtime", "Handler", "Role", "RevisionId"):
        assert conf[k] == created[k], k
    assert "Code" in got
    gc = server.aws_json("lambda", "get-function-configuration", "--function-name", name)
    assert gc["FunctionArn"] == created["FunctionArn"] and gc["State"] == "Active"

    out = server.aws_json("lambda", "invoke", "--function-name", name, "--payload",
                          '{"hello": "cli"}', "out.json", cwd=tmp_path)
    assert out["StatusCode"] == 200 and "FunctionError" not in out
    body = json.loads((tmp_path / "out.json").read_text())
    assert body["event"] == {"hello": "cli"} and body["env"]["USER_STAGE"] == "one"

    # update-function-code: new hash, size and revision; the new code runs.
    code2 = make_zip({"lambda_function.py": "def handler(event, context):\n    return 'v2'\n",
                      "other.py": "def go(event, context):\n    return 'moved'\n"})
    (tmp_path / "v2.zip").write_bytes(code2)
    upd = server.aws_json("lambda", "update-function-code", "--function-name", name,
                          "--zip-file", "fileb://v2.zip", cwd=tmp_path)
    assert upd["CodeSha256"] == sha256_b64(code2) != created["CodeSha256"]
    assert upd["CodeSize"] == len(code2)
    assert upd["RevisionId"] != created["RevisionId"]
    server.aws("lambda", "wait", "function-updated", "--function-name", name)
    server.aws("lambda", "invoke", "--function-name", name, "out2.json", cwd=tmp_path)
    assert json.loads((tmp_path / "out2.json").read_text()) == "v2"

    # update-function-configuration: every field the issue lists.
    conf2 = server.aws_json(
        "lambda", "update-function-configuration", "--function-name", name,
        "--environment", "Variables={USER_STAGE=two,USER_EXTRA=x}", "--memory-size", "512",
        "--timeout", "30", "--handler", "other.go", "--runtime", "python3.11")
    assert conf2["MemorySize"] == 512 and conf2["Timeout"] == 30
    assert conf2["Runtime"] == "python3.11" and conf2["Handler"] == "other.go"
    assert conf2["Environment"]["Variables"] == {"USER_STAGE": "two", "USER_EXTRA": "x"}
    assert conf2["RevisionId"] != upd["RevisionId"]
    server.aws("lambda", "wait", "function-updated", "--function-name", name)
    gc2 = server.aws_json("lambda", "get-function-configuration", "--function-name", name)
    assert (gc2["MemorySize"], gc2["Timeout"], gc2["Runtime"]) == (512, 30, "python3.11")
    assert gc2["LastUpdateStatus"] == "Successful"
    server.aws("lambda", "invoke", "--function-name", name, "out3.json", cwd=tmp_path)
    assert json.loads((tmp_path / "out3.json").read_text()) == "moved"

    # A stale --revision-id is refused.
    stale = server.aws("lambda", "update-function-configuration", "--function-name", name,
                       "--timeout", "5", "--revision-id", created["RevisionId"], check=False)
    assert stale.returncode != 0 and "PreconditionFailedException" in stale.stderr, stale.stderr
    fresh = server.aws_json("lambda", "update-function-configuration", "--function-name", name,
                            "--timeout", "5", "--revision-id", gc2["RevisionId"])
    assert fresh["Timeout"] == 5

    # Creating it again conflicts; delete; then it is gone.
    dup = server.aws("lambda", "create-function", "--function-name", name, "--runtime",
                     "python3.12", "--handler", "lambda_function.handler", "--role", ROLE,
                     "--zip-file", "fileb://v1.zip", cwd=tmp_path, check=False)
    assert dup.returncode != 0 and "ResourceConflictException" in dup.stderr, dup.stderr
    server.aws("lambda", "delete-function", "--function-name", name)
    gone = server.aws("lambda", "get-function", "--function-name", name, check=False)
    assert gone.returncode != 0 and "ResourceNotFoundException" in gone.stderr, gone.stderr


def test_boto3_errors(server):
    lam = server.lam
    missing = unique_name("missing")
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as e:
        lam.get_function(FunctionName=missing)
    assert http_status(e.value) == 404
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName=missing)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function(FunctionName=missing)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=missing, Payload=b"{}")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.update_function_configuration(FunctionName=missing, Timeout=5)

    name = unique_name("dup")
    first = create_function(lam, name, python_zip())
    with pytest.raises(lam.exceptions.ResourceConflictException) as e:
        create_function(lam, name, python_zip())
    assert http_status(e.value) == 409
    with pytest.raises(lam.exceptions.PreconditionFailedException) as e:
        lam.update_function_code(FunctionName=name, ZipFile=python_zip(), RevisionId="stale-" + first["RevisionId"])
    assert http_status(e.value) == 412
    # Out-of-range values are rejected server-side (botocore checks only the minimums).
    for kw in ({"MemorySize": 20000}, {"Timeout": 901}):
        with pytest.raises(ClientError) as e:
            lam.update_function_configuration(FunctionName=name, **kw)
        assert error_code(e.value) in ("InvalidParameterValueException", "ValidationException"), kw
        assert http_status(e.value) == 400
    conf = lam.get_function_configuration(FunctionName=name)
    assert (conf["MemorySize"], conf["Timeout"]) == (128, 3)
    lam.update_function_configuration(FunctionName=name, MemorySize=10240, Timeout=900)
    conf = wait_updated(lam, name)
    assert (conf["MemorySize"], conf["Timeout"]) == (10240, 900)


def test_function_arn_uses_account_and_region_from_credentials(server):
    lam = server.client("lambda", region="us-west-2", key="123456789012", secret="whatever")
    name = unique_name("acct")
    created = create_function(lam, name, rust_echo_zip(), runtime="provided.al2023")
    arn = f"arn:aws:lambda:us-west-2:123456789012:function:{name}"
    assert created["FunctionArn"] == arn
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"] == arn
    assert ok(invoke(lam, name, {"x": 1}))["invoked_function_arn"] == arn
    # A non-numeric access key id means the default account.
    lam2 = server.client("lambda", region="eu-central-1", key="AKIAIOSFODNN7EXAMPLE", secret="s")
    name2 = unique_name("acct")
    assert create_function(lam2, name2, rust_echo_zip(), runtime="provided.al2023")["FunctionArn"] \
        == f"arn:aws:lambda:eu-central-1:000000000000:function:{name2}"


def _all_pages(lam, max_items):
    names, pages, marker = [], 0, None
    while True:
        kw = {"MaxItems": max_items}
        if marker:
            kw["Marker"] = marker
        page = lam.list_functions(**kw)
        pages += 1
        assert len(page["Functions"]) <= max_items
        names += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            return names, pages
        assert pages < 50, "pagination does not terminate"


def test_list_functions_pagination(nimbus, tmp_path):
    s = nimbus()
    lam = s.lam
    names = sorted(unique_name(f"page{i}") for i in range(5))
    code = python_zip()
    for n in names:
        create_function(lam, n, code)
    listed = lam.list_functions()["Functions"]
    assert sorted(f["FunctionName"] for f in listed) == names
    f0 = next(f for f in listed if f["FunctionName"] == names[0])
    assert f0["FunctionArn"].endswith(":function:" + names[0]) and f0["Runtime"] == "python3.12"

    # boto3 Marker / MaxItems by hand: 2 + 2 + 1, no duplicates, nothing lost.
    got, pages = _all_pages(lam, 2)
    assert sorted(got) == names and pages == 3
    first = lam.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and first["NextMarker"]
    # boto3 paginator.
    pag = lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
    assert sorted(f["FunctionName"] for p in pag for f in p["Functions"]) == names

    # AWS CLI v1: --max-items (CLI NextToken) with --page-size (server MaxItems/Marker).
    out = s.aws_json("lambda", "list-functions", "--max-items", "3", "--page-size", "2")
    assert len(out["Functions"]) == 3 and out["NextToken"]
    rest = s.aws_json("lambda", "list-functions", "--max-items", "3", "--page-size", "2",
                      "--starting-token", out["NextToken"])
    assert "NextToken" not in rest
    assert sorted(f["FunctionName"] for f in out["Functions"] + rest["Functions"]) == names
    # And the CLI's automatic pagination collects everything.
    every = s.aws_json("lambda", "list-functions", "--page-size", "1")
    assert sorted(f["FunctionName"] for f in every["Functions"]) == names

    lam.delete_function(FunctionName=names[0])
    got, _ = _all_pages(lam, 2)
    assert sorted(got) == names[1:]


def test_code_location_serves_the_package(server):
    name = unique_name("codeloc")
    code = python_zip()
    create_function(server.lam, name, code)
    got = server.lam.get_function(FunctionName=name)
    assert got["Code"]["RepositoryType"] == "S3"
    with urllib.request.urlopen(got["Code"]["Location"], timeout=30) as r:
        assert r.read() == code


def test_environment_validation(server):
    lam = server.lam
    name = unique_name("envval")
    create_function(lam, name, python_zip(), Environment={"Variables": {"USER_OK": "1"}})
    for bad in ({"AWS_REGION": "eu-west-1"}, {"AWS_ACCESS_KEY_ID": "x"}, {"USER_BIG": "x" * 5000}):
        with pytest.raises(lam.exceptions.InvalidParameterValueException):
            lam.update_function_configuration(FunctionName=name, Environment={"Variables": bad})
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"1bad": "x"}})
    assert error_code(e.value) in ("ValidationException", "InvalidParameterValueException")
    assert lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == {"USER_OK": "1"}
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        create_function(lam, unique_name("envval"), python_zip(),
                        Environment={"Variables": {"AWS_LAMBDA_RUNTIME_API": "evil:1"}})


def test_get_account_settings_reports_limits_and_usage(nimbus):
    s = nimbus("--max-concurrency", "7")
    code = python_zip()
    create_function(s.lam, unique_name("acct"), code)
    out = s.aws_json("lambda", "get-account-settings")
    assert out["AccountLimit"]["ConcurrentExecutions"] == 7
    assert out["AccountLimit"]["CodeSizeUnzipped"] == 262144000
    assert out["AccountUsage"]["FunctionCount"] == 1
    assert out["AccountUsage"]["TotalCodeSize"] == len(code)
