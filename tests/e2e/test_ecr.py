"""The ECR control API (JSON 1.1) through boto3 and the AWS CLI: repositories, images pushed
through the registry listener, tag immutability, lifecycle expiry, policies, tags, tokens."""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import DEFAULT_ACCOUNT, error_code
from oci_images import OCI_MANIFEST
from test_registry import DOCKER_MANIFEST, Registry, oci_error, push_image, repo_name, small_image


@pytest.fixture
def ecr(server):
    return server.client("ecr")


@pytest.fixture
def reg(server):
    return Registry(server)


def test_create_describe_delete_repository(server, ecr):
    name = f"team/{repo_name('repo')}"
    repo = ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True},
                                 tags=[{"Key": "env", "Value": "test"}])["repository"]
    assert repo["repositoryArn"] == f"arn:aws:ecr:us-east-1:{DEFAULT_ACCOUNT}:repository/{name}"
    assert repo["registryId"] == DEFAULT_ACCOUNT
    assert repo["repositoryUri"] == f"{DEFAULT_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{name}"
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert repo["createdAt"].timestamp() == pytest.approx(time.time(), abs=60)
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name)
    assert error_code(e.value) == "RepositoryAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName="Bad Name")
    assert error_code(e.value) == "InvalidParameterException"
    got = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert [r["repositoryName"] for r in got] == [name]
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[repo_name("missing")])
    assert error_code(e.value) == "RepositoryNotFoundException"
    assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [
        {"Key": "env", "Value": "test"}]
    ecr.tag_resource(resourceArn=repo["repositoryArn"], tags=[{"Key": "team", "Value": "a"}])
    ecr.untag_resource(resourceArn=repo["repositoryArn"], tagKeys=["env"])
    assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [
        {"Key": "team", "Value": "a"}]
    deleted = ecr.delete_repository(repositoryName=name)["repository"]
    assert deleted["repositoryName"] == name
    with pytest.raises(ClientError) as e:
        ecr.delete_repository(repositoryName=name)
    assert error_code(e.value) == "RepositoryNotFoundException"


def test_describe_repositories_pages(ecr):
    names = sorted(repo_name("page") for _ in range(5))
    for n in names:
        ecr.create_repository(repositoryName=n)
    seen, token = [], None
    while True:
        kw = {"maxResults": 2, **({"nextToken": token} if token else {})}
        page = ecr.describe_repositories(**kw)
        assert len(page["repositories"]) <= 2
        seen += [r["repositoryName"] for r in page["repositories"]]
        token = page.get("nextToken")
        if not token:
            break
    assert set(names) <= set(seen) and len(seen) == len(set(seen))
    paginated = [r["repositoryName"] for p in ecr.get_paginator("describe_repositories").paginate(
        PaginationConfig={"PageSize": 3}) for r in p["repositories"]]
    assert paginated == seen


def test_images_list_describe_get_and_delete(server, ecr, reg):
    name = repo_name("images")
    ecr.create_repository(repositoryName=name)
    one = push_image(reg, name, "v1", b"one\n")
    reg.put_manifest(name, "latest", one.manifest_bytes)
    two = push_image(reg, name, "v2", b"two\n")
    untagged = small_image(b"untagged\n")
    for data in untagged.blobs().values():
        reg.push_blob(name, data)
    assert reg.put_manifest(name, untagged.manifest_digest, untagged.manifest_bytes)[0] == 201

    ids = ecr.list_images(repositoryName=name)["imageIds"]
    assert sorted((i["imageDigest"], i.get("imageTag")) for i in ids) == sorted([
        (one.manifest_digest, "latest"), (one.manifest_digest, "v1"), (two.manifest_digest, "v2"),
        (untagged.manifest_digest, None)])
    only_untagged = ecr.list_images(repositoryName=name, filter={"tagStatus": "UNTAGGED"})["imageIds"]
    assert only_untagged == [{"imageDigest": untagged.manifest_digest}]
    paged = [i for p in ecr.get_paginator("list_images").paginate(
        repositoryName=name, PaginationConfig={"PageSize": 1}) for i in p["imageIds"]]
    assert len(paged) == 4

    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName=name)["imageDetails"]}
    d1 = details[one.manifest_digest]
    assert sorted(d1["imageTags"]) == ["latest", "v1"]
    assert d1["imageSizeInBytes"] == sum(len(l.blob) for l in one.layers)
    assert d1["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert d1["artifactMediaType"] == "application/vnd.oci.image.config.v1+json"
    assert d1["imagePushedAt"].timestamp() == pytest.approx(time.time(), abs=120)
    assert d1["registryId"] == DEFAULT_ACCOUNT and d1["repositoryName"] == name
    assert "imageTags" not in details[untagged.manifest_digest]
    by_tag = ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": "v2"}])["imageDetails"]
    assert [d["imageDigest"] for d in by_tag] == [two.manifest_digest]
    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": "nope"}])
    assert error_code(e.value) == "ImageNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.list_images(repositoryName=repo_name("missing"))
    assert error_code(e.value) == "RepositoryNotFoundException"

    got = ecr.batch_get_image(repositoryName=name, imageIds=[
        {"imageTag": "v1"}, {"imageTag": "nope"},
        {"imageTag": "v2", "imageDigest": one.manifest_digest}])
    assert len(got["images"]) == 1
    img = got["images"][0]
    assert img["imageManifest"].encode() == one.manifest_bytes
    assert img["imageId"] == {"imageDigest": one.manifest_digest, "imageTag": "v1"}
    assert img["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"
    codes = sorted(f["failureCode"] for f in got["failures"])
    assert codes == ["ImageNotFound", "ImageTagDoesNotMatchDigest"]

    # Deleting one of two tags keeps the image; deleting by digest removes it and its tags.
    out = ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "latest"}])
    assert out["imageIds"] == [{"imageDigest": one.manifest_digest, "imageTag": "latest"}]
    assert reg.req("GET", f"/v2/{name}/manifests/v1")[0] == 200
    out = ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageDigest": two.manifest_digest},
                                                               {"imageTag": "gone"}])
    assert out["imageIds"] == [{"imageDigest": two.manifest_digest, "imageTag": "v2"}]
    assert out["failures"][0]["failureCode"] == "ImageNotFound"
    assert reg.req("GET", f"/v2/{name}/manifests/v2")[0] == 404

    with pytest.raises(ClientError) as e:
        ecr.delete_repository(repositoryName=name)
    assert error_code(e.value) == "RepositoryNotEmptyException"
    ecr.delete_repository(repositoryName=name, force=True)
    st, _, body = reg.req("GET", f"/v2/{name}/tags/list")
    assert st == 404 and oci_error(body) == "NAME_UNKNOWN"


def test_put_image_and_tag_immutability(server, ecr, reg):
    name = repo_name("putimg")
    ecr.create_repository(repositoryName=name)
    one = push_image(reg, name, "v1", b"put one\n")
    two = push_image(reg, name, "v2", b"put two\n")
    # PutImage re-tags an existing manifest.
    out = ecr.put_image(repositoryName=name, imageManifest=one.manifest_bytes.decode(), imageTag="release")
    assert out["image"]["imageId"] == {"imageDigest": one.manifest_digest, "imageTag": "release"}
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=name, imageManifest=one.manifest_bytes.decode(), imageTag="release")
    assert error_code(e.value) == "ImageAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=name, imageManifest=one.manifest_bytes.decode(), imageTag="x",
                      imageDigest=two.manifest_digest)
    assert error_code(e.value) == "ImageDigestDoesNotMatchException"
    broken = json.loads(one.manifest_bytes)
    broken["layers"][0]["digest"] = "sha256:" + "0" * 64
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=name, imageManifest=json.dumps(broken), imageTag="broken")
    assert error_code(e.value) == "LayersNotFoundException"

    # Mutable: moving a tag works.
    ecr.put_image(repositoryName=name, imageManifest=two.manifest_bytes.decode(), imageTag="release")
    out = ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
    assert out == {**out, "repositoryName": name, "imageTagMutability": "IMMUTABLE",
                   "registryId": DEFAULT_ACCOUNT}
    assert ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["imageTagMutability"] \
        == "IMMUTABLE"
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=name, imageManifest=one.manifest_bytes.decode(), imageTag="release")
    assert error_code(e.value) == "ImageTagAlreadyExistsException"
    # The registry refuses the same re-tag on the wire.
    st, _, body = reg.put_manifest(name, "release", one.manifest_bytes)
    assert st == 400 and oci_error(body) == "TAG_INVALID"
    # New tags are fine; so is re-pushing the same digest under the same tag.
    assert reg.put_manifest(name, "release", two.manifest_bytes)[0] == 201
    ecr.put_image(repositoryName=name, imageManifest=one.manifest_bytes.decode(), imageTag="new")
    with pytest.raises(ClientError) as e:
        ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="SOMETIMES")
    assert error_code(e.value) in ("InvalidParameterException", "ValidationException")


LIFECYCLE_KEEP_2 = {"rules": [{"rulePriority": 1, "description": "keep two",
                               "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                             "countNumber": 2},
                               "action": {"type": "expire"}}]}


def test_lifecycle_policy_expires_images(server, ecr, reg):
    name = repo_name("life")
    ecr.create_repository(repositoryName=name)
    pushed = []
    for i in range(3):
        pushed.append(push_image(reg, name, f"v{i}", f"life {i}\n".encode()))
        time.sleep(0.02)  # distinct push times (ordering, not synchronisation)
    text = json.dumps(LIFECYCLE_KEEP_2)
    out = ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=text)
    assert out["repositoryName"] == name and json.loads(out["lifecyclePolicyText"]) == LIFECYCLE_KEEP_2
    digests = {d["imageDigest"] for d in ecr.describe_images(repositoryName=name)["imageDetails"]}
    assert digests == {pushed[1].manifest_digest, pushed[2].manifest_digest}
    # Applied after each push too.
    time.sleep(0.02)
    newest = push_image(reg, name, "v3", b"life 3\n")
    digests = {d["imageDigest"] for d in ecr.describe_images(repositoryName=name)["imageDetails"]}
    assert digests == {pushed[2].manifest_digest, newest.manifest_digest}
    got = ecr.get_lifecycle_policy(repositoryName=name)
    assert json.loads(got["lifecyclePolicyText"]) == LIFECYCLE_KEEP_2
    assert got["lastEvaluatedAt"].timestamp() == pytest.approx(time.time(), abs=120)
    ecr.delete_lifecycle_policy(repositoryName=name)
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy(repositoryName=name)
    assert error_code(e.value) == "LifecyclePolicyNotFoundException"
    bad = {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged", "countType": "imageCountMoreThan",
                                                       "countNumber": 1}, "action": {"type": "expire"}}]}
    with pytest.raises(ClientError) as e:
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(bad))
    assert error_code(e.value) == "InvalidParameterException"


def test_lifecycle_untagged_and_prefix_rules(server, ecr, reg):
    name = repo_name("life2")
    ecr.create_repository(repositoryName=name)
    prod = [push_image(reg, name, f"prod-{i}", f"prod {i}\n".encode()) for i in range(2)]
    dev = push_image(reg, name, "dev-1", b"dev\n")
    loose = small_image(b"loose\n")
    for data in loose.blobs().values():
        reg.push_blob(name, data)
    reg.put_manifest(name, loose.manifest_digest, loose.manifest_bytes)
    policy = {"rules": [
        {"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                          "countUnit": "days", "countNumber": 1}, "action": {"type": "expire"}},
        {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"],
                                          "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}}]}
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(policy))
    left = {d["imageDigest"] for d in ecr.describe_images(repositoryName=name)["imageDetails"]}
    # The untagged image is younger than a day; only one prod image is kept; dev is untouched.
    assert left == {prod[1].manifest_digest, dev.manifest_digest, loose.manifest_digest}


def test_repository_policy(ecr):
    name = repo_name("policy")
    ecr.create_repository(repositoryName=name)
    with pytest.raises(ClientError) as e:
        ecr.get_repository_policy(repositoryName=name)
    assert error_code(e.value) == "RepositoryPolicyNotFoundException"
    doc = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "pull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"]}]})
    assert ecr.set_repository_policy(repositoryName=name, policyText=doc)["policyText"] == doc
    assert ecr.get_repository_policy(repositoryName=name)["policyText"] == doc
    assert ecr.delete_repository_policy(repositoryName=name)["policyText"] == doc
    with pytest.raises(ClientError) as e:
        ecr.delete_repository_policy(repositoryName=name)
    assert error_code(e.value) == "RepositoryPolicyNotFoundException"


def test_authorization_token(server, ecr):
    data = ecr.get_authorization_token()["authorizationData"]
    assert len(data) == 1
    user, _, token = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")
    assert user == "AWS" and token
    assert data[0]["proxyEndpoint"] == f"http://{server.registry_addr}"
    assert data[0]["expiresAt"].timestamp() == pytest.approx(time.time() + 12 * 3600, abs=120)
    # The CLI's get-login-password prints the token part.
    password = server.aws("ecr", "get-login-password").stdout.strip()
    assert password and password != token


def test_aws_cli_flow(server, reg):
    name = repo_name("cli")
    created = server.aws_json("ecr", "create-repository", "--repository-name", name,
                              "--image-tag-mutability", "IMMUTABLE")
    assert created["repository"]["imageTagMutability"] == "IMMUTABLE"
    img = push_image(reg, name, "v1", b"cli\n")
    listed = server.aws_json("ecr", "list-images", "--repository-name", name)
    assert listed["imageIds"] == [{"imageDigest": img.manifest_digest, "imageTag": "v1"}]
    described = server.aws_json("ecr", "describe-images", "--repository-name", name,
                                "--image-ids", "imageTag=v1")
    assert described["imageDetails"][0]["imageSizeInBytes"] == sum(len(l.blob) for l in img.layers)
    other = small_image(b"cli other\n")
    for data in other.blobs().values():
        reg.push_blob(name, data)
    p = server.aws("ecr", "put-image", "--repository-name", name, "--image-tag", "v1",
                   "--image-manifest", other.manifest_bytes.decode(), check=False)
    assert p.returncode != 0 and "ImageTagAlreadyExistsException" in p.stderr
    server.aws("ecr", "delete-repository", "--repository-name", name, "--force")
    repos = server.aws_json("ecr", "describe-repositories")["repositories"]
    assert name not in [r["repositoryName"] for r in repos]


def test_accounts_are_separate(server):
    other = server.client("ecr", key="111122223333")
    name = repo_name("acct")
    repo = other.create_repository(repositoryName=name)["repository"]
    assert repo["registryId"] == "111122223333"
    assert repo["repositoryUri"].startswith("111122223333.dkr.ecr.us-east-1.amazonaws.com/")
    with pytest.raises(ClientError) as e:
        server.client("ecr").describe_repositories(repositoryNames=[name])
    assert error_code(e.value) == "RepositoryNotFoundException"
    other.delete_repository(repositoryName=name)


def test_lifecycle_policy_preview_expires_nothing(server, ecr, reg):
    name = repo_name("preview")
    ecr.create_repository(repositoryName=name)
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy_preview(repositoryName=name)
    assert error_code(e.value) == "LifecyclePolicyPreviewNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.start_lifecycle_policy_preview(repositoryName=name)
    assert error_code(e.value) == "LifecyclePolicyNotFoundException"
    pushed = []
    for i in range(3):
        pushed.append(push_image(reg, name, f"p{i}", f"preview {i}\n".encode()))
        time.sleep(0.02)
    keep_one = dict(LIFECYCLE_KEEP_2, rules=[dict(LIFECYCLE_KEEP_2["rules"][0], selection=dict(
        LIFECYCLE_KEEP_2["rules"][0]["selection"], countNumber=1))])
    started = ecr.start_lifecycle_policy_preview(repositoryName=name, lifecyclePolicyText=json.dumps(keep_one))
    assert started["status"] == "IN_PROGRESS"
    preview = ecr.get_lifecycle_policy_preview(repositoryName=name)
    assert preview["status"] == "COMPLETE"
    assert preview["summary"]["expiringImageTotalCount"] == 2
    assert sorted(r["imageDigest"] for r in preview["previewResults"]) == sorted(
        p.manifest_digest for p in pushed[:2])
    assert all(r["action"]["type"] == "EXPIRE" and r["appliedRulePriority"] == 1 for r in preview["previewResults"])
    # A dry run: every image is still there.
    assert len(ecr.describe_images(repositoryName=name)["imageDetails"]) == 3


def test_layer_availability_and_download_url(server, ecr, reg):
    name = repo_name("layers")
    ecr.create_repository(repositoryName=name)
    img = push_image(reg, name, "v1", b"layers\n")
    layer = img.layers[-1]
    missing = "sha256:" + "1" * 64
    out = ecr.batch_check_layer_availability(repositoryName=name,
                                             layerDigests=[layer.digest, missing, "nope"])
    by_digest = {l["layerDigest"]: l for l in out["layers"]}
    assert by_digest[layer.digest]["layerAvailability"] == "AVAILABLE"
    assert by_digest[layer.digest]["layerSize"] == len(layer.blob)
    assert missing not in by_digest
    assert sorted(out["failures"], key=lambda f: f["layerDigest"]) == [
        {"layerDigest": "nope", "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"},
        {"layerDigest": missing, "failureCode": "MissingLayerDigest", "failureReason": "Could not find layer"}]
    url = ecr.get_download_url_for_layer(repositoryName=name, layerDigest=layer.digest)["downloadUrl"]
    assert url == f"http://{server.registry_addr}/v2/{name}/blobs/{layer.digest}"
    st, _, body = reg.req("GET", url.split(server.registry_addr, 1)[1])
    assert st == 200 and body == layer.blob
    with pytest.raises(ClientError) as e:
        ecr.get_download_url_for_layer(repositoryName=name, layerDigest=missing)
    assert error_code(e.value) == "LayersNotFoundException"


def upload_layer(ecr, name: str, data: bytes, part: int = 64 * 1024) -> str:
    """Pushes `data` through InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload."""
    up = ecr.initiate_layer_upload(repositoryName=name)
    assert up["partSize"] > 0
    uid = up["uploadId"]
    for first in range(0, len(data), part):
        chunk = data[first:first + part]
        r = ecr.upload_layer_part(repositoryName=name, uploadId=uid, partFirstByte=first,
                                  partLastByte=first + len(chunk) - 1, layerPartBlob=chunk)
        assert r["lastByteReceived"] == first + len(chunk) - 1
        assert r["uploadId"] == uid and r["repositoryName"] == name
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    done = ecr.complete_layer_upload(repositoryName=name, uploadId=uid, layerDigests=[digest])
    assert done["layerDigest"] == digest and done["uploadId"] == uid
    return digest


def test_push_an_image_purely_through_the_ecr_api(server, ecr, reg, tmp_path):
    """Config + layer via the layer-upload API, manifest via PutImage: the registry serves
    the image (raw GETs, and `skopeo inspect` when installed)."""
    name = repo_name("ecr-push")
    ecr.create_repository(repositoryName=name)
    img = small_image(b"pushed through the ECR API\n")
    for digest, data in img.blobs().items():  # config and layers
        assert upload_layer(ecr, name, data) == digest
    avail = ecr.batch_check_layer_availability(repositoryName=name, layerDigests=[img.config_digest])
    assert avail["layers"][0]["layerAvailability"] == "AVAILABLE"
    manifest = img.manifest_bytes.decode()
    put = ecr.put_image(repositoryName=name, imageManifest=manifest, imageTag="v1",
                        imageManifestMediaType=OCI_MANIFEST)
    assert put["image"]["imageId"]["imageDigest"] == img.manifest_digest

    st, h, body = reg.req("GET", f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert st == 200 and body == img.manifest_bytes
    for digest, data in img.blobs().items():
        st, _, got = reg.req("GET", f"/v2/{name}/blobs/{digest}")
        assert st == 200 and got == data, digest
    if shutil.which("skopeo"):
        out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                              f"docker://{server.registry_addr}/{name}:v1"],
                             capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout == img.manifest_bytes
        out = subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                              f"docker://{server.registry_addr}/{name}:v1", f"dir:{tmp_path / 'out'}"],
                             capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr
        for digest, data in img.blobs().items():
            assert (tmp_path / "out" / digest[7:]).read_bytes() == data

    # The same layer again: LayerAlreadyExistsException.
    layer = img.layers[-1]
    with pytest.raises(ClientError) as e:
        upload_layer(ecr, name, img.blobs()[layer.digest])
    assert error_code(e.value) == "LayerAlreadyExistsException"


def test_layer_upload_errors(server, ecr):
    name = repo_name("ecr-parts")
    ecr.create_repository(repositoryName=name)
    data = bytes(range(256)) * 100
    uid = ecr.initiate_layer_upload(repositoryName=name)["uploadId"]

    # Parts must follow on from the last byte received, and match their length.
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=name, uploadId=uid, partFirstByte=100, partLastByte=199,
                              layerPartBlob=data[100:200])
    assert error_code(e.value) == "InvalidLayerPartException"
    ecr.upload_layer_part(repositoryName=name, uploadId=uid, partFirstByte=0, partLastByte=999,
                          layerPartBlob=data[:1000])
    for first, last, chunk in [(0, 999, data[:1000]),          # a repeat
                               (2000, 2999, data[2000:3000]),  # a gap
                               (1000, 1999, data[1000:1500])]:  # range longer than the bytes
        with pytest.raises(ClientError) as e:
            ecr.upload_layer_part(repositoryName=name, uploadId=uid, partFirstByte=first,
                                  partLastByte=last, layerPartBlob=chunk)
        assert error_code(e.value) == "InvalidLayerPartException", (first, last)
    r = ecr.upload_layer_part(repositoryName=name, uploadId=uid, partFirstByte=1000,
                              partLastByte=len(data) - 1, layerPartBlob=data[1000:])
    assert r["lastByteReceived"] == len(data) - 1

    # A wrong digest: InvalidLayerException, and the upload is gone.
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=name, uploadId=uid, layerDigests=[wrong])
    assert error_code(e.value) == "InvalidLayerException"
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=name, uploadId=uid, layerDigests=[wrong])
    assert error_code(e.value) == "UploadNotFoundException"
    avail = ecr.batch_check_layer_availability(repositoryName=name, layerDigests=[wrong])
    assert avail["layers"] == [] and avail["failures"][0]["failureCode"] == "MissingLayerDigest"

    # No parts: EmptyUploadException.
    empty = ecr.initiate_layer_upload(repositoryName=name)["uploadId"]
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=name, uploadId=empty,
                                  layerDigests=["sha256:" + hashlib.sha256(b"").hexdigest()])
    assert error_code(e.value) == "EmptyUploadException"

    # An upload id belongs to its repository; unknown ids are UploadNotFoundException.
    other = repo_name("ecr-other")
    ecr.create_repository(repositoryName=other)
    uid2 = ecr.initiate_layer_upload(repositoryName=name)["uploadId"]
    for repo, u in [(other, uid2), (name, "00000000-0000-4000-8000-000000000000")]:
        with pytest.raises(ClientError) as e:
            ecr.upload_layer_part(repositoryName=repo, uploadId=u, partFirstByte=0, partLastByte=0,
                                  layerPartBlob=b"x")
        assert error_code(e.value) == "UploadNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.initiate_layer_upload(repositoryName=repo_name("missing"))
    assert error_code(e.value) == "RepositoryNotFoundException"


def test_invalid_layer_part_carries_the_last_valid_byte(server):
    """The error's extra members (lastValidByteReceived, uploadId, …) as on the wire."""
    name = repo_name("ecr-lvb")
    server.client("ecr").create_repository(repositoryName=name)
    ecr = server.client("ecr")
    uid = ecr.initiate_layer_upload(repositoryName=name)["uploadId"]
    ecr.upload_layer_part(repositoryName=name, uploadId=uid, partFirstByte=0, partLastByte=9,
                          layerPartBlob=b"0123456789")
    body = json.dumps({"repositoryName": name, "uploadId": uid, "partFirstByte": 20, "partLastByte": 29,
                       "layerPartBlob": base64.b64encode(b"x" * 10).decode()}).encode()
    req = urllib.request.Request(server.endpoint + "/", data=body, method="POST", headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.UploadLayerPart",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/ecr/aws4_request, "
                         "SignedHeaders=host, Signature=00"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400
    err = json.loads(e.value.read())
    assert err["__type"].endswith("InvalidLayerPartException"), err
    assert err["lastValidByteReceived"] == 9 and err["uploadId"] == uid
    assert err["repositoryName"] == name and err["registryId"] == DEFAULT_ACCOUNT


def test_batch_get_image_accepted_media_types(server, ecr, reg):
    name = repo_name("ecr-accept")
    ecr.create_repository(repositoryName=name)
    img = push_image(reg, name, "v1", b"accepted media types\n")
    ids = [{"imageTag": "v1"}]
    got = ecr.batch_get_image(repositoryName=name, imageIds=ids, acceptedMediaTypes=[OCI_MANIFEST])
    assert [i["imageId"]["imageDigest"] for i in got["images"]] == [img.manifest_digest]
    assert got["images"][0]["imageManifestMediaType"] == OCI_MANIFEST
    assert got["images"][0]["imageManifest"].encode() == img.manifest_bytes
    got = ecr.batch_get_image(repositoryName=name, imageIds=ids,
                              acceptedMediaTypes=[DOCKER_MANIFEST])
    assert got["images"] == []
    assert [(f["imageId"], f["failureCode"]) for f in got["failures"]] == [
        ({"imageTag": "v1"}, "UnsupportedImageType")]
    # Without acceptedMediaTypes: whatever was pushed.
    got = ecr.batch_get_image(repositoryName=name, imageIds=ids)
    assert len(got["images"]) == 1 and got["failures"] == []


def test_image_scan_completes_without_findings(server, ecr, reg):
    name = repo_name("ecr-scan")
    ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
    img = push_image(reg, name, "v1", b"scan me\n")
    r = ecr.start_image_scan(repositoryName=name, imageId={"imageTag": "v1"})
    assert r["imageId"] == {"imageDigest": img.manifest_digest, "imageTag": "v1"}
    assert r["imageScanStatus"]["status"] == "COMPLETE"
    ecr.get_waiter("image_scan_complete").wait(repositoryName=name, imageId={"imageTag": "v1"},
                                                WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    f = ecr.describe_image_scan_findings(repositoryName=name, imageId={"imageDigest": img.manifest_digest})
    assert f["imageScanFindings"]["findings"] == [] and f["imageScanFindings"]["findingSeverityCounts"] == {}
    with pytest.raises(ClientError) as e:
        ecr.start_image_scan(repositoryName=name, imageId={"imageTag": "nope"})
    assert error_code(e.value) == "ImageNotFoundException"
    assert "nope" in e.value.response["Error"]["Message"]
