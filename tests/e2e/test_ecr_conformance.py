"""ECR conformance: the ECR control API as AWS documents it, driven by boto3 / the AWS CLI
against Nimbus — error codes and HTTP statuses, response shapes and types, ARNs and
repository URIs, pagination, image failures, tag mutability, lifecycle policies, tokens.

Sources, per assertion (in comments):
  [docs]      the ECR API Reference / CLI reference / User Guide text (checked with the docs
              search while writing these tests).
  [model]     botocore's ecr/2015-09-21/service-2.json only (shapes, enums, the errors an
              operation declares); wording not verified.
  [observed]  messages real AWS returns as quoted in public user reports.

Images are built from files (busybox, `oci_images.py`) and pushed through Nimbus's OCI
registry listener (the ECR data plane), as `docker push` would.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re

import pytest

from ecs_e2e import expect_error, is_ts, run_image_task, wait_running
from nimbus_e2e import unique_name, wait_until
from oci_images import OCI_MANIFEST, busybox_image

ACCOUNT = "000000000000"
REGION = "us-east-1"
ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}"
HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
DIGEST_RE = r"sha256:[0-9a-f]{64}"


COUNT_POLICY = {"rules": [{"rulePriority": 1, "description": "keep one",
                           "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                         "countNumber": 1},
                           "action": {"type": "expire"}}]}


def ecr(server):
    return server.client("ecr")


def repo_name(prefix="conf") -> str:
    return unique_name(prefix).lower()


def new_repo(server, **kw) -> str:
    name = repo_name()
    ecr(server).create_repository(repositoryName=name, **kw)
    return name


def push(server, repo: str, tag: str = "latest", marker: str = "") -> str:
    """Pushes a small busybox image (distinct per `marker`) through the OCI registry."""
    assert server.registry_addr, "the server printed no registry listener address"
    img = busybox_image({"/marker.txt": (marker or tag).encode()})
    return img.push(f"http://{server.registry_addr}", repo, tag)


# -- repositories -------------------------------------------------------------------------
def test_create_repository_cli_shape(server):
    # [docs] CLI reference example output of `aws ecr create-repository`.
    name = repo_name("project-a/nginx-web-app")
    out = server.aws_json("ecr", "create-repository", "--repository-name", name)
    r = out["repository"]
    assert r["repositoryArn"] == f"{ARN}:repository/{name}"
    assert r["registryId"] == ACCOUNT
    assert r["repositoryName"] == name
    # [docs] repositoryUri "<account>.dkr.ecr.<region>.amazonaws.com/<name>".
    assert r["repositoryUri"] == f"{HOST}/{name}"
    assert isinstance(r["createdAt"], (int, float)), r["createdAt"]  # CLI prints epoch seconds
    # [docs] imageTagMutability defaults to MUTABLE; scanOnPush false; AES256 encryption.
    assert r["imageTagMutability"] == "MUTABLE"
    assert r["imageScanningConfiguration"] == {"scanOnPush": False}
    assert r["encryptionConfiguration"] == {"encryptionType": "AES256"}


def test_create_repository_options(server):
    name = repo_name()
    r = ecr(server).create_repository(
        repositoryName=name, imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        tags=[{"Key": "team", "Value": "a"}])["repository"]
    assert is_ts(r["createdAt"])
    assert r["imageTagMutability"] == "IMMUTABLE"
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}
    got = ecr(server).list_tags_for_resource(resourceArn=r["repositoryArn"])["tags"]
    assert got == [{"Key": "team", "Value": "a"}]


def test_create_repository_twice(server):
    name = new_repo(server)
    # [model] RepositoryAlreadyExistsException; [observed] "The repository with name '<n>'
    # already exists in the registry with id '<account>'" (metaps/genova #164).
    expect_error(ecr(server).create_repository, "RepositoryAlreadyExistsException",
                 message=f"The repository with name '{name}' already exists in the registry with id '{ACCOUNT}'",
                 repositoryName=name)


@pytest.mark.parametrize("name", ["UpperCase", "has space", "-lead", "trail-", "a//b", "x/", "bad$"])
def test_create_repository_invalid_name(server, name):
    # [docs] "The repository name must start with a letter and can only contain lowercase
    # letters, numbers, hyphens, underscores, and forward slashes"; pattern in [model].
    # [observed] InvalidParameterException "Invalid parameter at 'repositoryName' failed to
    # satisfy constraint: 'must satisfy regular expression ...'".
    expect_error(ecr(server).create_repository, "InvalidParameterException", repositoryName=name)


def test_describe_repositories(server):
    names = sorted(new_repo(server) for _ in range(3))
    r = ecr(server).describe_repositories(repositoryNames=names)["repositories"]
    assert sorted(x["repositoryName"] for x in r) == names
    for x in r:
        assert x["repositoryUri"] == f"{HOST}/{x['repositoryName']}"
        assert is_ts(x["createdAt"])
    # pagination over all repositories
    seen, token, n = [], None, 0
    while True:
        kw = {"maxResults": 1}
        if token:
            kw["nextToken"] = token
        page = ecr(server).describe_repositories(**kw)
        assert len(page["repositories"]) <= 1
        seen += [x["repositoryName"] for x in page["repositories"]]
        n += 1
        token = page.get("nextToken")
        if not token:
            break
        assert n < 1000
    assert set(names) <= set(seen) and len(seen) == len(set(seen))


def test_describe_unknown_repository(server):
    missing = repo_name("nope")
    # [model] RepositoryNotFoundException; [observed] "The repository with name '<n>' does not
    # exist in the registry with id '<account>'" (turbot/steampipe-plugin-aws #1938).
    expect_error(ecr(server).describe_repositories, "RepositoryNotFoundException",
                 message=f"The repository with name '{missing}' does not exist in the registry with id '{ACCOUNT}'",
                 repositoryNames=[missing])
    # One unknown name among known ones fails the whole call.
    expect_error(ecr(server).describe_repositories, "RepositoryNotFoundException",
                 repositoryNames=[new_repo(server), missing])


@pytest.mark.parametrize("op,kw", [
    ("list_images", {}),
    ("describe_images", {}),
    ("batch_get_image", {"imageIds": [{"imageTag": "latest"}]}),
    ("batch_delete_image", {"imageIds": [{"imageTag": "latest"}]}),
    ("put_image_tag_mutability", {"imageTagMutability": "IMMUTABLE"}),
    ("get_lifecycle_policy", {}),
    ("put_lifecycle_policy", {"lifecyclePolicyText": json.dumps(COUNT_POLICY)}),
    ("delete_repository", {}),
    ("get_repository_policy", {}),
])
def test_unknown_repository_is_not_found(server, op, kw):
    # [model] each of these declares RepositoryNotFoundException.
    expect_error(getattr(ecr(server), op), "RepositoryNotFoundException",
                 repositoryName=repo_name("nope"), **kw)


def test_delete_repository(server):
    name = new_repo(server)
    r = ecr(server).delete_repository(repositoryName=name)["repository"]
    assert r["repositoryName"] == name and r["repositoryArn"] == f"{ARN}:repository/{name}"
    expect_error(ecr(server).describe_repositories, "RepositoryNotFoundException",
                 repositoryNames=[name])


def test_delete_repository_with_images_needs_force(server):
    name = new_repo(server)
    push(server, name, "v1")
    # [model] RepositoryNotEmptyException; [docs] "If the repository isn't empty, you must
    # either delete the contents of the repository or use the force option"; [observed]
    # message (brentley/appmeshworkshop #31, nitrictech/cli #273).
    expect_error(ecr(server).delete_repository, "RepositoryNotEmptyException",
                 message=f"The repository with name '{name}' in registry with id '{ACCOUNT}' cannot be "
                         "deleted because it still contains images",
                 repositoryName=name)
    r = ecr(server).delete_repository(repositoryName=name, force=True)["repository"]
    assert r["repositoryName"] == name
    expect_error(ecr(server).list_images, "RepositoryNotFoundException", repositoryName=name)


# -- images -------------------------------------------------------------------------------
def test_list_and_describe_images(server):
    name = new_repo(server)
    d1 = push(server, name, "v1", "one")
    d2 = push(server, name, "v2", "two")
    ids = ecr(server).list_images(repositoryName=name)["imageIds"]
    assert sorted((i["imageDigest"], i.get("imageTag")) for i in ids) == sorted([(d1, "v1"), (d2, "v2")])
    details = ecr(server).describe_images(repositoryName=name)["imageDetails"]
    by = {d["imageDigest"]: d for d in details}
    assert set(by) == {d1, d2}
    d = by[d1]
    assert d["registryId"] == ACCOUNT and d["repositoryName"] == name
    assert d["imageTags"] == ["v1"]
    assert isinstance(d["imageSizeInBytes"], int) and d["imageSizeInBytes"] > 0
    assert is_ts(d["imagePushedAt"])
    assert d["imageManifestMediaType"] == OCI_MANIFEST
    # [docs] artifactMediaType: the artifact's config media type.
    assert d.get("artifactMediaType") == "application/vnd.oci.image.config.v1+json", d
    one = ecr(server).describe_images(repositoryName=name, imageIds=[{"imageTag": "v2"}])["imageDetails"]
    assert [x["imageDigest"] for x in one] == [d2]
    by_digest = ecr(server).describe_images(repositoryName=name, imageIds=[{"imageDigest": d1}])
    assert [x["imageTags"] for x in by_digest["imageDetails"]] == [["v1"]]


def test_describe_images_unknown_image(server):
    name = new_repo(server)
    push(server, name, "v1")
    # [model] ImageNotFoundException; [observed] "The image with imageId {imageDigest:'null',
    # imageTag:'nope'} does not exist within the repository with name '<n>' in the registry
    # with id '<account>'".
    e = expect_error(ecr(server).describe_images, "ImageNotFoundException", repositoryName=name,
                     imageIds=[{"imageTag": "nope"}])
    assert "nope" in e.response["Error"]["Message"]


def test_list_images_filter_and_pagination(server):
    name = new_repo(server)
    d1 = push(server, name, "a", "one")
    push(server, name, "b", "two")
    push(server, name, "c", "three")
    # re-pointing tag "a" leaves d1 untagged
    push(server, name, "a", "four")
    untagged = ecr(server).list_images(repositoryName=name, filter={"tagStatus": "UNTAGGED"})["imageIds"]
    assert untagged == [{"imageDigest": d1}], untagged
    tagged = ecr(server).list_images(repositoryName=name, filter={"tagStatus": "TAGGED"})["imageIds"]
    assert sorted(i["imageTag"] for i in tagged) == ["a", "b", "c"]
    seen, token = [], None
    for _ in range(20):
        kw = {"repositoryName": name, "maxResults": 1}
        if token:
            kw["nextToken"] = token
        page = ecr(server).list_images(**kw)
        assert len(page["imageIds"]) <= 1
        seen += page["imageIds"]
        token = page.get("nextToken")
        if not token:
            break
    assert len(seen) == 4, seen


def test_batch_get_image(server):
    name = new_repo(server)
    img = busybox_image({"/marker.txt": b"bgi"})
    digest = img.push(f"http://{server.registry_addr}", name, "v1")
    r = ecr(server).batch_get_image(repositoryName=name,
                                    imageIds=[{"imageTag": "v1"}, {"imageTag": "missing"}])
    [got] = r["images"]
    assert got["registryId"] == ACCOUNT and got["repositoryName"] == name
    assert got["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    # the manifest is returned verbatim (its digest must still verify)
    assert got["imageManifest"].encode() == img.manifest_bytes
    assert got["imageManifestMediaType"] == OCI_MANIFEST
    # [model] ImageFailureCode enum; [observed] failureReason "Requested image not found"
    # (aws/aws-cli #6424 shows the raw BatchDeleteImage body).
    assert r["failures"] == [{"imageId": {"imageTag": "missing"}, "failureCode": "ImageNotFound",
                              "failureReason": "Requested image not found"}], r["failures"]
    by_digest = ecr(server).batch_get_image(repositoryName=name, imageIds=[{"imageDigest": digest}])
    assert by_digest["images"][0]["imageId"]["imageDigest"] == digest and by_digest["failures"] == []


def test_batch_delete_image(server):
    name = new_repo(server)
    d1 = push(server, name, "v1", "one")
    d2 = push(server, name, "v2", "two")
    r = ecr(server).batch_delete_image(repositoryName=name,
                                       imageIds=[{"imageTag": "v1"}, {"imageTag": "nope"}])
    assert r["imageIds"] == [{"imageDigest": d1, "imageTag": "v1"}], r
    assert r["failures"] == [{"imageId": {"imageTag": "nope"}, "failureCode": "ImageNotFound",
                              "failureReason": "Requested image not found"}], r["failures"]
    r = ecr(server).batch_delete_image(repositoryName=name, imageIds=[{"imageDigest": d2}])
    assert r["imageIds"] and r["imageIds"][0]["imageDigest"] == d2 and r["failures"] == []
    assert ecr(server).list_images(repositoryName=name)["imageIds"] == []
    # an invalid digest is reported as such ([model] failureCode InvalidImageDigest)
    r = ecr(server).batch_delete_image(repositoryName=name, imageIds=[{"imageDigest": "sha256:zz"}])
    assert r["failures"][0]["failureCode"] == "InvalidImageDigest", r


def test_put_image_api(server):
    name = new_repo(server)
    img = busybox_image({"/marker.txt": b"putimage"})
    img.push(f"http://{server.registry_addr}", name, "base")
    manifest = img.manifest_bytes.decode()
    r = ecr(server).put_image(repositoryName=name, imageManifest=manifest, imageTag="v2")["image"]
    assert r["imageId"] == {"imageDigest": img.manifest_digest, "imageTag": "v2"}
    assert r["repositoryName"] == name and r["registryId"] == ACCOUNT
    assert r["imageManifest"] == manifest
    # [model] ImageAlreadyExistsException: same manifest, same tag again.
    expect_error(ecr(server).put_image, "ImageAlreadyExistsException", repositoryName=name,
                 imageManifest=manifest, imageTag="v2")
    # [model] ImageDigestDoesNotMatchException: imageDigest given and not the manifest's.
    expect_error(ecr(server).put_image, "ImageDigestDoesNotMatchException", repositoryName=name,
                 imageManifest=manifest, imageTag="v3", imageDigest="sha256:" + "0" * 64)
    ok = ecr(server).put_image(repositoryName=name, imageManifest=manifest, imageTag="v3",
                               imageDigest=img.manifest_digest)["image"]
    assert ok["imageId"] == {"imageDigest": img.manifest_digest, "imageTag": "v3"}
    # [model] LayersNotFoundException: a manifest whose blobs were never uploaded.
    doc = json.loads(manifest)
    doc["layers"][0]["digest"] = "sha256:" + "0" * 64
    expect_error(ecr(server).put_image, "LayersNotFoundException", repositoryName=name,
                 imageManifest=json.dumps(doc), imageTag="broken")


def test_image_tag_mutability(server):
    name = new_repo(server)
    out = ecr(server).put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
    assert out["repositoryName"] == name and out["registryId"] == ACCOUNT
    assert out["imageTagMutability"] == "IMMUTABLE"
    r = ecr(server).describe_repositories(repositoryNames=[name])["repositories"][0]
    assert r["imageTagMutability"] == "IMMUTABLE"
    first = busybox_image({"/marker.txt": b"first"})
    first.push(f"http://{server.registry_addr}", name, "v1")
    second = busybox_image({"/marker.txt": b"second"})
    second.push(f"http://{server.registry_addr}", name, "other")
    # [docs] IMMUTABLE: "all image tags within the repository will be immutable which will
    # prevent them from being overwritten"; [model] ImageTagAlreadyExistsException.
    expect_error(ecr(server).put_image, "ImageTagAlreadyExistsException", repositoryName=name,
                 imageManifest=second.manifest_bytes.decode(), imageTag="v1")
    # and through the registry (docker push): refused, tag unchanged. [observed] docker shows
    # "tag invalid: The image tag 'v1' already exists in the '<repo>' repository and cannot be
    # overwritten because the repository is immutable." (aws/containers-roadmap #862,
    # moby/buildkit #3776) — OCI error code TAG_INVALID.
    with pytest.raises(RuntimeError) as ei:
        second.push(f"http://{server.registry_addr}", name, "v1")
    assert "TAG_INVALID" in str(ei.value) and "cannot be overwritten because the repository is immutable" \
        in str(ei.value), ei.value
    got = ecr(server).batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageId"]["imageDigest"] == first.manifest_digest
    # back to MUTABLE: re-tagging works.
    ecr(server).put_image_tag_mutability(repositoryName=name, imageTagMutability="MUTABLE")
    ecr(server).put_image(repositoryName=name, imageManifest=second.manifest_bytes.decode(), imageTag="v1")
    got = ecr(server).batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageId"]["imageDigest"] == second.manifest_digest
    # [model] enum MUTABLE | IMMUTABLE (| *_WITH_EXCLUSION); anything else is refused.
    expect_error(ecr(server).put_image_tag_mutability, "InvalidParameterException",
                 repositoryName=name, imageTagMutability="SOMETIMES")


# -- lifecycle and repository policies ------------------------------------------------------
def test_lifecycle_policy_crud(server):
    name = new_repo(server)
    # [model] LifecyclePolicyNotFoundException; [observed] "Lifecycle policy does not exist for
    # the repository with name '<n>' in the registry with id '<account>'".
    expect_error(ecr(server).get_lifecycle_policy, "LifecyclePolicyNotFoundException", repositoryName=name)
    expect_error(ecr(server).delete_lifecycle_policy, "LifecyclePolicyNotFoundException", repositoryName=name)
    text = json.dumps(COUNT_POLICY)
    put = ecr(server).put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=text)
    assert put["repositoryName"] == name and put["registryId"] == ACCOUNT
    assert json.loads(put["lifecyclePolicyText"]) == COUNT_POLICY
    got = ecr(server).get_lifecycle_policy(repositoryName=name)
    assert json.loads(got["lifecyclePolicyText"]) == COUNT_POLICY and got["repositoryName"] == name
    dele = ecr(server).delete_lifecycle_policy(repositoryName=name)
    assert json.loads(dele["lifecyclePolicyText"]) == COUNT_POLICY
    expect_error(ecr(server).get_lifecycle_policy, "LifecyclePolicyNotFoundException", repositoryName=name)


# (botocore enforces the [model]'s 100-character minimum client-side: texts are padded.)
@pytest.mark.parametrize("text", [
    "not json" + " " * 100,
    json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any"}, "action": {"type": "expire"}}]}, indent=4),
    json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged", "countType": "imageCountMoreThan",
                                                            "countNumber": 1}, "action": {"type": "expire"}}]}),
])
def test_lifecycle_policy_invalid(server, text):
    # [docs] lifecycle policy rules: countType is required; tagStatus "tagged" needs
    # tagPrefixList or tagPatternList. [observed] InvalidParameterException "Invalid parameter
    # at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation
    # failure: ...'".
    expect_error(ecr(server).put_lifecycle_policy, "InvalidParameterException",
                 repositoryName=new_repo(server), lifecyclePolicyText=text)


def test_lifecycle_policy_count_is_applied(server):
    name = new_repo(server)
    ecr(server).put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(COUNT_POLICY))
    push(server, name, "old", "old")
    newest = push(server, name, "new", "new")
    # [docs] imageCountMoreThan: the oldest images beyond the count expire (AWS applies it
    # eventually; Nimbus after a push).
    wait_until(lambda: [i["imageDigest"] for i in ecr(server).list_images(repositoryName=name)["imageIds"]]
               == [newest], 30, 0.2, "lifecycle policy to expire the older image")


def test_repository_policy(server):
    name = new_repo(server)
    # [model] RepositoryPolicyNotFoundException.
    expect_error(ecr(server).get_repository_policy, "RepositoryPolicyNotFoundException", repositoryName=name)
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "pull", "Effect": "Allow",
                                                      "Principal": "*", "Action": ["ecr:BatchGetImage"]}]}
    out = ecr(server).set_repository_policy(repositoryName=name, policyText=json.dumps(policy))
    assert out["repositoryName"] == name and json.loads(out["policyText"]) == policy
    got = ecr(server).get_repository_policy(repositoryName=name)
    assert json.loads(got["policyText"]) == policy
    ecr(server).delete_repository_policy(repositoryName=name)
    expect_error(ecr(server).get_repository_policy, "RepositoryPolicyNotFoundException", repositoryName=name)


# -- tokens and tags ----------------------------------------------------------------------
def test_get_authorization_token(server):
    r = ecr(server).get_authorization_token()
    [a] = r["authorizationData"]
    user, _, password = base64.b64decode(a["authorizationToken"]).decode().partition(":")
    # [docs] "a base64-encoded string that contains authorization data ... user name AWS".
    assert user == "AWS" and password
    # [docs] "The authorization token is valid for 12 hours."
    assert is_ts(a["expiresAt"])
    left = a["expiresAt"] - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(hours=11) < left <= dt.timedelta(hours=12, minutes=5), left
    assert re.match(r"https?://", a["proxyEndpoint"]), a["proxyEndpoint"]
    # the CLI's get-login-password prints the same kind of password
    out = server.aws("ecr", "get-login-password").stdout.strip()
    assert out and ":" not in out


def test_repository_tags(server):
    name = new_repo(server)
    arn = f"{ARN}:repository/{name}"
    ecr(server).tag_resource(resourceArn=arn, tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    tags = ecr(server).list_tags_for_resource(resourceArn=arn)["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "1"), ("b", "2")]
    ecr(server).untag_resource(resourceArn=arn, tagKeys=["a"])
    assert ecr(server).list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "b", "Value": "2"}]


def test_image_scanning_configuration(server):
    name = new_repo(server)
    out = ecr(server).put_image_scanning_configuration(
        repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
    assert out["imageScanningConfiguration"] == {"scanOnPush": True} and out["repositoryName"] == name
    r = ecr(server).describe_repositories(repositoryNames=[name])["repositories"][0]
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}


# -- ECR → ECS: the repositoryUri as a task's image ------------------------------------------
def test_ecs_task_runs_from_repository_uri(server):
    """Issue 7 item 5: `<account>.dkr.ecr.<region>.amazonaws.com/<name>:<tag>` in a task
    definition resolves to this registry; the task runs."""
    name = new_repo(server)
    img = busybox_image(cmd=["sleep", "300"])
    img.push(f"http://{server.registry_addr}", name, "v1")
    uri = ecr(server).describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
    ecs, cluster, arn = run_image_task(server, f"{uri}:v1", "ecr-ecs", "fromecr")
    x = wait_running(ecs, cluster, arn, "task from the ECR image RUNNING")
    # [model] Container.imageDigest: the digest actually run.
    assert x["containers"][0].get("imageDigest") == img.manifest_digest, x["containers"][0]
    ecs.stop_task(cluster=cluster, task=arn)


def test_ecs_task_runs_from_local_registry_uri(server):
    """Issue 7 item 3: the local form `<registry host:port>/<name>:<tag>` also resolves."""
    name = new_repo(server)
    img = busybox_image({"/m": b"local"}, cmd=["sleep", "300"])
    img.push(f"http://{server.registry_addr}", name, "v1")
    ecs, cluster, arn = run_image_task(server, f"{server.registry_addr}/{name}:v1", "ecr-local", "fromlocal")
    wait_running(ecs, cluster, arn, "task from the local registry URI RUNNING")
    ecs.stop_task(cluster=cluster, task=arn)


def test_ecs_task_missing_ecr_tag_cannot_pull(server):
    # Issue 7 item 5 / [docs] ECS troubleshooting: a missing image → the task STOPPED with
    # "CannotPullContainerError" as the container's reason.
    name = new_repo(server)
    uri = f"{HOST}/{name}:does-not-exist"
    ecs, cluster, arn = run_image_task(server, uri, "ecr-miss", "miss")

    def stopped():
        x = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        return x if x["lastStatus"] == "STOPPED" else None
    x = wait_until(stopped, 60, 0.2, "task STOPPED")
    assert x["stopCode"] == "TaskFailedToStart"
    assert x["containers"][0]["reason"].startswith("CannotPullContainerError"), x["containers"][0]


def test_layer_availability_and_download_url(server):
    # [model] BatchCheckLayerAvailability / GetDownloadUrlForLayer (used by older docker
    # credential helpers and by tools that mirror ECR).
    name = new_repo(server)
    img = busybox_image({"/m": b"layers"})
    img.push(f"http://{server.registry_addr}", name, "v1")
    layer = img.layers[0].digest
    missing = "sha256:" + "1" * 64
    r = ecr(server).batch_check_layer_availability(repositoryName=name, layerDigests=[layer, missing])
    by = {x["layerDigest"]: x for x in r["layers"]}
    assert by[layer]["layerAvailability"] == "AVAILABLE"
    assert isinstance(by[layer]["layerSize"], int) and by[layer]["layerSize"] > 0
    # A missing layer: AWS's exact answer is not documented — a MissingLayerDigest failure
    # ([model] LayerFailureCode) or an UNAVAILABLE entry are both accepted.
    missing_ok = ([f.get("failureCode") for f in r["failures"] if f.get("layerDigest") == missing] == ["MissingLayerDigest"]
                  or by.get(missing, {}).get("layerAvailability") == "UNAVAILABLE")
    assert missing_ok, r
    u = ecr(server).get_download_url_for_layer(repositoryName=name, layerDigest=layer)
    assert u["layerDigest"] == layer and u["downloadUrl"].startswith("http")
    # [observed] LayersNotFoundException "The layer with digest <d> does not exist within the
    # repository with name '<repo>' in the registry with id '<account>'" (monken/aws-ecr-public #11).
    expect_error(ecr(server).get_download_url_for_layer, "LayersNotFoundException",
                 message="does not exist within the repository with name", repositoryName=name,
                 layerDigest=missing)


def test_describe_images_cli(server):
    name = new_repo(server)
    d = push(server, name, "v1")
    out = server.aws_json("ecr", "describe-images", "--repository-name", name, "--image-ids", "imageTag=v1")
    [img] = out["imageDetails"]
    assert img["imageDigest"] == d and img["imageTags"] == ["v1"]
    assert isinstance(img["imagePushedAt"], (int, float)), img["imagePushedAt"]
    out = server.aws_json("ecr", "list-images", "--repository-name", name)
    assert out["imageIds"] == [{"imageDigest": d, "imageTag": "v1"}]


def test_registry_push_to_missing_repository(server):
    # ECR never creates repositories on push: [observed] docker reports "name unknown: The
    # repository with name '<n>' does not exist in the registry with id '<account>'"
    # (actions/starter-workflows #2647) — OCI NAME_UNKNOWN, HTTP 404.
    name = repo_name("never-created")
    img = busybox_image({"/m": b"nope"})
    with pytest.raises(RuntimeError) as ei:
        img.push(f"http://{server.registry_addr}", name, "v1")
    assert "NAME_UNKNOWN" in str(ei.value), ei.value
    expect_error(ecr(server).describe_repositories, "RepositoryNotFoundException", repositoryNames=[name])


# -- the AWS CLI reference examples (awscli/examples/ecr/*.rst) ----------------------------
def test_cli_examples_multi_tag_batch_ops(server):
    name = new_repo(server)
    d = push(server, name, "prod", "multi")
    ecr(server).put_image(repositoryName=name, imageTag="team1",
                          imageManifest=ecr(server).batch_get_image(
                              repositoryName=name, imageIds=[{"imageTag": "prod"}])["images"][0]["imageManifest"])
    # ListImages lists one imageId per tag; DescribeImages one detail per image with all tags.
    ids = ecr(server).list_images(repositoryName=name)["imageIds"]
    assert sorted((i["imageDigest"], i.get("imageTag")) for i in ids) == [(d, "prod"), (d, "team1")], ids
    [detail] = ecr(server).describe_images(repositoryName=name)["imageDetails"]
    assert sorted(detail["imageTags"]) == ["prod", "team1"]
    got = server.aws_json("ecr", "batch-get-image", "--repository-name", name, "--image-ids",
                          "imageTag=prod", "imageTag=team1")
    assert sorted(i["imageId"]["imageTag"] for i in got["images"]) == ["prod", "team1"]
    assert {i["imageId"]["imageDigest"] for i in got["images"]} == {d} and got["failures"] == []
    out = server.aws_json("ecr", "batch-delete-image", "--repository-name", name, "--image-ids",
                          "imageTag=prod", "imageTag=team1")
    assert sorted((i["imageDigest"], i["imageTag"]) for i in out["imageIds"]) == [(d, "prod"), (d, "team1")]
    assert out["failures"] == []


def test_cli_examples_lifecycle_policy_preview(server, tmp_path):
    name = new_repo(server)
    push(server, name, "v1")
    policy = {"rules": [{"rulePriority": 1, "description": "Expire images older than 14 days",
                         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                       "countUnit": "days", "countNumber": 14},
                         "action": {"type": "expire"}}]}
    (tmp_path / "policy.json").write_text(json.dumps(policy, indent=4))
    put = server.aws_json("ecr", "put-lifecycle-policy", "--repository-name", name,
                          "--lifecycle-policy-text", "file://policy.json", cwd=tmp_path)
    assert json.loads(put["lifecyclePolicyText"]) == policy and put["registryId"] == ACCOUNT
    start = server.aws_json("ecr", "start-lifecycle-policy-preview", "--repository-name", name,
                            "--lifecycle-policy-text", "file://policy.json", cwd=tmp_path)
    assert start["status"] in ("IN_PROGRESS", "COMPLETE") and start["repositoryName"] == name

    def complete():
        p = server.aws_json("ecr", "get-lifecycle-policy-preview", "--repository-name", name)
        return p if p["status"] == "COMPLETE" else None
    p = wait_until(complete, 30, 0.3, "lifecycle policy preview COMPLETE")
    # [docs example] nothing is older than 14 days: no results, a zero summary.
    assert p["previewResults"] == [] and p["summary"] == {"expiringImageTotalCount": 0}, p


def test_layer_upload_api(server):
    """InitiateLayerUpload → UploadLayerPart → CompleteLayerUpload → PutImage: the ECR API's own
    push path (CLI reference examples initiate-layer-upload / upload-layer-part /
    complete-layer-upload)."""
    name = new_repo(server)
    img = busybox_image({"/m": b"api-push"})
    for digest, data in img.blobs().items():
        init = ecr(server).initiate_layer_upload(repositoryName=name)
        assert init["uploadId"] and isinstance(init["partSize"], int)
        part = ecr(server).upload_layer_part(repositoryName=name, uploadId=init["uploadId"],
                                             partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data)
        assert part["lastByteReceived"] == len(data) - 1
        done = ecr(server).complete_layer_upload(repositoryName=name, uploadId=init["uploadId"],
                                                 layerDigests=[digest])
        assert done["layerDigest"] == digest
    r = ecr(server).put_image(repositoryName=name, imageManifest=img.manifest_bytes.decode(), imageTag="api")
    assert r["image"]["imageId"]["imageDigest"] == img.manifest_digest
    # [model] LayerAlreadyExistsException: "The image layer already exists in the associated
    # repository." — completing an upload of a layer the repository already holds.
    digest, data = next(iter(img.blobs().items()))
    init = ecr(server).initiate_layer_upload(repositoryName=name)
    ecr(server).upload_layer_part(repositoryName=name, uploadId=init["uploadId"], partFirstByte=0,
                                  partLastByte=len(data) - 1, layerPartBlob=data)
    expect_error(ecr(server).complete_layer_upload, "LayerAlreadyExistsException", repositoryName=name,
                 uploadId=init["uploadId"], layerDigests=[digest])
    # [model] UploadNotFoundException for an unknown upload id.
    expect_error(ecr(server).upload_layer_part, "UploadNotFoundException", repositoryName=name,
                 uploadId="00000000-0000-0000-0000-000000000000", partFirstByte=0, partLastByte=0,
                 layerPartBlob=b"x")


def test_image_scan_api(server):
    # CLI reference examples start-image-scan / describe-image-scan-findings and the
    # `image-scan-complete` waiter (waiters-2.json: imageScanStatus.status COMPLETE).
    # Issue 7 only asks that scanning configuration be accepted; a scan that completes with no
    # findings is enough for clients that wait on it.
    name = new_repo(server, imageScanningConfiguration={"scanOnPush": True})
    d = push(server, name, "v1")
    started = ecr(server).start_image_scan(repositoryName=name, imageId={"imageDigest": d})
    assert started["imageId"]["imageDigest"] == d
    assert started["imageScanStatus"]["status"] in ("IN_PROGRESS", "COMPLETE"), started
    ecr(server).get_waiter("image_scan_complete").wait(
        repositoryName=name, imageId={"imageDigest": d}, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    f = ecr(server).describe_image_scan_findings(repositoryName=name, imageId={"imageDigest": d})
    assert f["imageScanStatus"]["status"] == "COMPLETE"
    assert isinstance(f["imageScanFindings"].get("findings", []), list)


def test_lifecycle_policy_tag_prefix_and_untagged(server):
    # [docs] lifecycle policy rules: a `tagged` rule with tagPrefixList only selects images with
    # a matching tag; imageCountMoreThan keeps the newest N of those; an `untagged` rule only
    # selects untagged images (countNumber must be positive — 0 is refused, as AWS does).
    name = new_repo(server)
    policy = {"rules": [
        {"rulePriority": 1, "description": "keep one release",
         "selection": {"tagStatus": "tagged", "tagPrefixList": ["rel"], "countType": "imageCountMoreThan",
                       "countNumber": 1},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "description": "keep one untagged",
         "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
         "action": {"type": "expire"}}]}
    ecr(server).put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps(policy))
    dev = push(server, name, "dev-1", "dev")
    push(server, name, "rel-1", "rel1")
    rel2 = push(server, name, "rel-2", "rel2")
    push(server, name, "tmp", "tmp1")
    newer_untagged = push(server, name, "tmp", "tmp2")  # the first "tmp" image is now untagged
    tmp3 = push(server, name, "tmp", "tmp3")            # ... and so is tmp2 (newer)

    def state():
        return sorted((i["imageDigest"], i.get("imageTag")) for i in
                      ecr(server).list_images(repositoryName=name)["imageIds"])
    want = sorted([(dev, "dev-1"), (rel2, "rel-2"), (tmp3, "tmp"), (newer_untagged, None)])
    wait_until(lambda: state() == want, 30, 0.3, f"lifecycle result {want}")


def test_ecs_task_runs_from_repository_uri_by_digest(server):
    # An image pinned by digest (`<repositoryUri>@sha256:…`, as ECR console "Copy URI" and
    # CDK produce) resolves too.
    name = new_repo(server)
    img = busybox_image({"/m": b"by-digest"}, cmd=["sleep", "300"])
    digest = img.push(f"http://{server.registry_addr}", name, "v1")
    ecs, cluster, arn = run_image_task(server, f"{HOST}/{name}@{digest}", "ecr-digest", "bydigest")
    x = wait_running(ecs, cluster, arn, "task from the image digest RUNNING")
    assert x["containers"][0].get("imageDigest") == digest
    ecs.stop_task(cluster=cluster, task=arn)


def test_region_in_repository_arn_and_uri(server):
    eu = server.client("ecr", region="eu-west-1")
    name = repo_name("eu")
    r = eu.create_repository(repositoryName=name)["repository"]
    assert r["repositoryArn"] == f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/{name}"
    assert r["repositoryUri"] == f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/{name}"
    expect_error(ecr(server).describe_repositories, "RepositoryNotFoundException", repositoryNames=[name])


def test_registry_token_auth_with_login_password(nimbus):
    """`aws ecr get-login-password | docker login --username AWS --password-stdin`: with token
    auth on, the registry refuses anonymous pushes with 401 + a Basic challenge and accepts
    Basic AWS:<password> ([docs] ECR registry authentication)."""
    s = nimbus("--registry-auth", "token")
    name = repo_name("auth")
    ecr(s).create_repository(repositoryName=name)
    img = busybox_image({"/m": b"auth"})
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://{s.registry_addr}/v2/", method="GET")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=10)
    assert ei.value.code == 401
    assert ei.value.headers.get("WWW-Authenticate", "").lower().startswith("basic"), dict(ei.value.headers)
    with pytest.raises(RuntimeError):
        img.push(f"http://{s.registry_addr}", name, "v1")
    password = s.aws("ecr", "get-login-password").stdout.strip()
    auth = "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()
    assert img.push(f"http://{s.registry_addr}", name, "v1", headers={"Authorization": auth}) == img.manifest_digest
    wrong = "Basic " + base64.b64encode(b"AWS:not-the-token").decode()
    with pytest.raises(RuntimeError):
        busybox_image({"/m": b"auth2"}).push(f"http://{s.registry_addr}", name, "v2", headers={"Authorization": wrong})
