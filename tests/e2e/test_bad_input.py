"""Bad input gets an AWS-style 4xx with an AWS error code, and the server keeps serving."""
import base64
import io
import json
import os
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import (ROLE, aws_error_code, create_function, error_code, http_status, invoke,
                        make_zip, ok, python_zip, unique_name, zip_bomb)

FUNCTIONS = "/2015-03-31/functions"
JSON = {"Content-Type": "application/json"}


def _raw(server, method, path, body=None, headers=JSON):
    status, hdrs, data = server.http(method, path, body, headers)
    return status, aws_error_code(hdrs, data), data


def test_malformed_json_body(server):
    for body in (b'{"FunctionName": "x", ', b"not json at all", b"[1, 2", b"\xff\xfe\x00"):
        status, code, data = _raw(server, "POST", FUNCTIONS, body)
        assert status == 400, (body, status, data)
        assert code in ("InvalidRequestContentException", "SerializationException",
                        "ValidationException", "InvalidParameterValueException"), (body, code, data)
    server.assert_serving()


def test_missing_required_fields(server):
    name = unique_name("missing")
    code_b64 = base64.b64encode(python_zip()).decode()
    full = {"FunctionName": name, "Runtime": "python3.12", "Role": ROLE,
            "Handler": "lambda_function.handler", "Code": {"ZipFile": code_b64}}
    for drop in ("FunctionName", "Role", "Code"):
        body = {k: v for k, v in full.items() if k != drop}
        status, code, data = _raw(server, "POST", FUNCTIONS, json.dumps(body))
        assert 400 <= status < 500, (drop, status, data)
        assert code in ("ValidationException", "InvalidParameterValueException"), (drop, code, data)
    status, code, data = _raw(server, "POST", FUNCTIONS, b"{}")
    assert status == 400 and code, data
    # A zip function needs a runtime and a handler.
    for drop in ("Runtime", "Handler"):
        body = {k: v for k, v in full.items() if k != drop}
        status, code, data = _raw(server, "POST", FUNCTIONS, json.dumps(body))
        assert status == 400 and code == "InvalidParameterValueException", (drop, status, data)
    with pytest.raises(server.lam.exceptions.ResourceNotFoundException):
        server.lam.get_function(FunctionName=name)
    # Wrong JSON types are 4xx too, not 500.
    body = dict(full, MemorySize="lots", Timeout={"x": 1})
    status, code, data = _raw(server, "POST", FUNCTIONS, json.dumps(body))
    assert 400 <= status < 500 and code, (status, data)
    server.assert_serving()


def test_unknown_runtime(server):
    lam = server.lam
    for runtime in ("cobol85", "python2.7", "python3.7"):
        with pytest.raises(lam.exceptions.InvalidParameterValueException) as e:
            create_function(lam, unique_name("rt"), python_zip(), runtime=runtime,
                            handler="lambda_function.handler")
        assert http_status(e.value) == 400
    name = unique_name("rtupd")
    create_function(lam, name, python_zip())
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_configuration(FunctionName=name, Runtime="cobol85")
    assert lam.get_function_configuration(FunctionName=name)["Runtime"] == "python3.12"
    server.assert_serving()


def _files_named(root, needle):
    hits = []
    for dirpath, dirnames, filenames in os.walk(root):
        hits += [os.path.join(dirpath, f) for f in filenames + dirnames if needle in f]
    return hits


def test_zip_slip(server):
    marker = uuid.uuid4().hex
    outside = f"/tmp/nimbus-zipslip-{marker}"
    evil = make_zip({
        "lambda_function.py": "def handler(e, c):\n    return 'slipped'\n",
        f"../evil-{marker}.txt": "escaped one level",
        f"../../../../../../../../../../tmp/nimbus-zipslip-{marker}": "escaped to /tmp",
    })
    name = unique_name("slip")
    with pytest.raises(server.lam.exceptions.InvalidParameterValueException) as e:
        create_function(server.lam, name, evil)
    assert http_status(e.value) == 400
    assert not os.path.exists(outside)
    assert _files_named(server.data_dir.parent, marker) == []
    with pytest.raises(server.lam.exceptions.ResourceNotFoundException):
        server.lam.get_function(FunctionName=name)
    # UpdateFunctionCode is guarded the same way, and the old code keeps working.
    good = unique_name("slipupd")
    create_function(server.lam, good, python_zip())
    with pytest.raises(server.lam.exceptions.InvalidParameterValueException):
        server.lam.update_function_code(FunctionName=good, ZipFile=evil)
    assert ok(invoke(server.lam, good, {"still": "ok"}))["event"] == {"still": "ok"}
    assert not os.path.exists(outside)
    assert _files_named(server.data_dir.parent, marker) == []
    server.assert_serving()


def test_absolute_path_entry(server):
    marker = uuid.uuid4().hex
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("lambda_function.py", "def handler(e, c):\n    return 1\n")
        zi = zipfile.ZipInfo("placeholder")
        zi.filename = f"/tmp/nimbus-abs-{marker}"          # zipfile would strip the slash
        z.writestr(zi, "absolute")
    name = unique_name("abs")
    try:
        create_function(server.lam, name, buf.getvalue())
        created = True
    except ClientError as e:
        assert error_code(e) == "InvalidParameterValueException"
        created = False
    if created:                                           # if accepted, it must stay inside
        ok(invoke(server.lam, name, {}))
    assert not os.path.exists(f"/tmp/nimbus-abs-{marker}")
    server.assert_serving()


def test_zip_bomb(server):
    bomb = zip_bomb()
    assert len(bomb) < 2 * 1024 * 1024
    name = unique_name("bomb")
    with pytest.raises(server.lam.exceptions.InvalidParameterValueException) as e:
        create_function(server.lam, name, bomb)
    msg = e.value.response["Error"]["Message"]
    assert "unzipped size" in msg.lower(), msg
    assert http_status(e.value) == 400
    # Extraction stopped: nothing near 250 MB was left on disk.
    total = sum(os.path.getsize(os.path.join(d, f))
                for d, _, fs in os.walk(server.data_dir) for f in fs
                if os.path.exists(os.path.join(d, f)))
    assert total < 100 * 1024 * 1024, total
    server.assert_serving()


def test_not_a_zip(server):
    lam = server.lam
    for blob in (b"this is not a zip file", b"PK\x03\x04 truncated zip header", os.urandom(4096)):
        with pytest.raises(lam.exceptions.InvalidParameterValueException) as e:
            create_function(lam, unique_name("notzip"), blob)
        assert http_status(e.value) == 400
    # And via the CLI, with a base64 error that is not even base64 at the HTTP level.
    status, code, data = _raw(server, "POST", FUNCTIONS, json.dumps({
        "FunctionName": unique_name("notb64"), "Runtime": "python3.12", "Role": ROLE,
        "Handler": "lambda_function.handler", "Code": {"ZipFile": "%%% not base64 %%%"}}))
    assert 400 <= status < 500 and code, (status, data)
    server.assert_serving()


def test_function_name_too_long_or_invalid(server):
    lam = server.lam
    for bad in ("a" * 65, "has space", "bad/slash", "émoji"):
        with pytest.raises(ClientError) as e:
            create_function(lam, bad, python_zip())
        assert error_code(e.value) in ("ValidationException", "InvalidParameterValueException"), bad
        assert 400 <= http_status(e.value) < 500
    ok_name = "a" * 64
    create_function(lam, ok_name, python_zip())
    assert lam.get_function(FunctionName=ok_name)["Configuration"]["FunctionName"] == ok_name
    lam.delete_function(FunctionName=ok_name)
    server.assert_serving()


def test_oversized_upload(server):
    big = make_zip({"lambda_function.py": "def handler(e, c):\n    return 1\n",
                    "blob.bin": os.urandom(51 * 1024 * 1024)})
    with pytest.raises(ClientError) as e:
        create_function(server.lam, unique_name("huge"), big)
    assert error_code(e.value) == "RequestEntityTooLargeException"
    assert http_status(e.value) == 413
    server.assert_serving()


def test_unknown_routes_and_methods(server):
    """Errors carry an AWS error code even for routes that do not exist, so SDKs can parse them."""
    status, code, data = _raw(server, "GET", "/2015-03-31/nothing-here")
    assert 400 <= status < 500 and code, (status, data)
    status, code, data = _raw(server, "PATCH", FUNCTIONS + "/x")
    assert 400 <= status < 500 and code, (status, data)
    status, code, data = _raw(server, "POST", "/", b"{}", {
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "NoSuchService.NoSuchOp"})
    assert 400 <= status < 500 and code, data
    server.assert_serving()
