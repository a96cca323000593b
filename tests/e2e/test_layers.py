"""Layers: PublishLayerVersion / List / Get / Delete, and functions importing layer code
(python/ on sys.path, nodejs/node_modules on NODE_PATH, bin/ on PATH; later layers win)."""
import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import create_function, error_code, invoke, make_zip, ok, unique_name

PY = """
import helperlib, shutil
def handler(event, context):
    return {"greeting": helperlib.greet(), "tool": shutil.which("layer-tool") is not None}
"""
NODE = """
const helper = require('nodehelper');
exports.handler = async () => ({greeting: helper.greet()});
"""


def test_layers_publish_list_and_use(server):
    lam = server.lam
    l1, l2 = unique_name("libone"), unique_name("libtwo")
    v1 = lam.publish_layer_version(
        LayerName=l1, Description="base", CompatibleRuntimes=["python3.12", "nodejs20.x"],
        Content={"ZipFile": make_zip({
            "python/helperlib.py": "def greet():\n    return 'from layer one'\n",
            "bin/layer-tool": "#!/bin/sh\necho tool\n",
            "nodejs/node_modules/nodehelper/index.js": "exports.greet = () => 'node layer';\n",
        }, executables={"layer-tool"})})
    assert v1["Version"] == 1 and v1["LayerVersionArn"].endswith(f":layer:{l1}:1")
    assert v1["Content"]["CodeSize"] > 0 and v1["CompatibleRuntimes"] == ["python3.12", "nodejs20.x"]
    v2 = lam.publish_layer_version(LayerName=l2, Content={"ZipFile": make_zip({
        "python/helperlib.py": "def greet():\n    return 'from layer two'\n"})})

    name = unique_name("withlayers")
    conf = create_function(lam, name, make_zip({"lambda_function.py": PY}),
                           Layers=[v1["LayerVersionArn"], v2["LayerVersionArn"]])
    assert [l["Arn"] for l in conf["Layers"]] == [v1["LayerVersionArn"], v2["LayerVersionArn"]]
    assert conf["Layers"][0]["CodeSize"] == v1["Content"]["CodeSize"]
    out = ok(invoke(lam, name, {}))
    assert out == {"greeting": "from layer two", "tool": True}, out

    lam.update_function_configuration(FunctionName=name, Layers=[v1["LayerVersionArn"]])
    assert ok(invoke(lam, name, {}))["greeting"] == "from layer one"

    node = unique_name("nodelayers")
    create_function(lam, node, make_zip({"index.js": NODE}), runtime="nodejs20.x",
                    Layers=[v1["LayerVersionArn"]])
    assert ok(invoke(lam, node, {}))["greeting"] == "node layer"

    assert [v["Version"] for v in lam.list_layer_versions(LayerName=l1)["LayerVersions"]] == [1]
    names = {l["LayerName"] for l in lam.list_layers()["Layers"]}
    assert {l1, l2} <= names
    assert lam.get_layer_version(LayerName=l1, VersionNumber=1)["Description"] == "base"
    with pytest.raises(ClientError) as e:
        create_function(lam, unique_name("badlayer"), make_zip({"lambda_function.py": PY}),
                        Layers=[v1["LayerVersionArn"].rsplit(":", 1)[0] + ":99"])
    assert error_code(e.value) == "InvalidParameterValueException"
    lam.delete_layer_version(LayerName=l2, VersionNumber=1)
    with pytest.raises(ClientError) as e:
        lam.get_layer_version(LayerName=l2, VersionNumber=1)
    assert error_code(e.value) == "ResourceNotFoundException"
