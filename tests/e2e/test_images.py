"""`nimbus image …`, the human CLI: import (OCI layout dir, OCI archive, docker-save tar, with
and without --tag), ls, rm, and push/pull through the registry listener."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile

import pytest

from nimbus_e2e import NIMBUS_BIN
from test_registry import Registry, create_repo, repo_name, small_image

IMPORTED_RE = re.compile(r"imported (\S+?)(?::([\w][\w.-]*))?@(sha256:[0-9a-f]{64})")


def cli(server, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "NIMBUS_ENDPOINT": server.endpoint,
           "NIMBUS_REGISTRY": f"http://{server.registry_addr}"}
    p = subprocess.run([str(NIMBUS_BIN), "image", *args], capture_output=True, text=True, env=env,
                       timeout=120, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"nimbus image {' '.join(args)} failed ({p.returncode}):\n{p.stderr}\n{p.stdout}")
    return p


def imported(p: subprocess.CompletedProcess) -> list[tuple[str, str | None, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in IMPORTED_RE.finditer(p.stdout)]


def head_digest(server, repo: str, ref: str) -> str | None:
    st, h, _ = Registry(server).req("HEAD", f"/v2/{repo}/manifests/{ref}")
    return h.get("docker-content-digest") if st == 200 else None


def test_import_oci_layout_dir_with_tag(server, tmp_path):
    img = small_image(b"layout dir\n")
    layout = img.write_oci_layout(tmp_path / "layout", ref_name="ignored")
    name = repo_name("imp-dir")
    out = imported(cli(server, "import", str(layout), "--tag", f"{name}:v1"))
    assert out == [(name, "v1", img.manifest_digest)]
    assert head_digest(server, name, "v1") == img.manifest_digest
    # The import created an ECR repository that lists the image.
    details = server.client("ecr").describe_images(repositoryName=name)["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in details] == [(img.manifest_digest, ["v1"])]


def test_import_oci_archive_uses_its_ref_name(server, tmp_path):
    img = small_image(b"oci archive\n")
    name = repo_name("imp-arch")
    archive = img.write_oci_archive(tmp_path / "img.tar", ref_name=f"{name}:v2")
    out = imported(cli(server, "import", str(archive)))
    assert out == [(name, "v2", img.manifest_digest)]
    assert head_digest(server, name, "v2") == img.manifest_digest


@pytest.mark.parametrize("with_tag", [False, True])
def test_import_docker_save_tarball(server, tmp_path, with_tag):
    img = small_image(b"docker save\n")
    own = repo_name("imp-docker")
    archive = img.write_docker_save(tmp_path / "img.tar", repo_tags=[f"{own}:v3"])
    if with_tag:
        name, tag = repo_name("imp-retag"), "custom"
        out = imported(cli(server, "import", str(archive), "--tag", f"{name}:{tag}"))
    else:
        name, tag = own, "v3"
        out = imported(cli(server, "import", str(archive)))
    assert len(out) == 1 and out[0][:2] == (name, tag)
    assert head_digest(server, name, tag) == out[0][2]
    # The stored image has the archive's config and layers.
    st, _, body = Registry(server).req("GET", f"/v2/{name}/manifests/{tag}")
    manifest = json.loads(body)
    assert manifest["config"]["digest"] == img.config_digest
    assert len(manifest["layers"]) == len(img.layers)


def test_import_of_garbage_fails_with_a_message(server, tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar archive at all" * 100)
    p = cli(server, "import", str(bad), "--tag", f"{repo_name('bad')}:v1", check=False)
    assert p.returncode != 0 and "import failed" in p.stderr


def test_ls_and_rm(server, tmp_path):
    img = small_image(b"ls rm\n")
    name = repo_name("lsrm")
    cli(server, "import", str(img.write_oci_archive(tmp_path / "a.tar", ref_name="x")), "--tag", f"{name}:one")
    cli(server, "import", str(img.write_oci_archive(tmp_path / "b.tar", ref_name="x")), "--tag", f"{name}:two")
    rows = [l.split() for l in cli(server, "ls").stdout.splitlines()]
    assert rows[0] == ["REPOSITORY", "TAG", "DIGEST"]
    assert [name, "one", img.manifest_digest] in rows and [name, "two", img.manifest_digest] in rows
    cli(server, "rm", f"{name}:one")
    rows = [l.split() for l in cli(server, "ls").stdout.splitlines()]
    assert [name, "one", img.manifest_digest] not in rows and [name, "two", img.manifest_digest] in rows
    cli(server, "rm", f"{name}@{img.manifest_digest}")
    assert head_digest(server, name, "two") is None
    p = cli(server, "rm", f"{name}:two", check=False)
    assert p.returncode != 0


def test_pull_and_push(server, tmp_path):
    img = small_image(b"pull push\n")
    src = repo_name("pull")
    cli(server, "import", str(img.write_oci_archive(tmp_path / "in.tar", ref_name="x")), "--tag", f"{src}:v1")
    out = tmp_path / "pulled.tar"
    cli(server, "pull", f"{server.registry_addr}/{src}:v1", "-o", str(out))
    with tarfile.open(out) as tf:
        members = {m.name.removeprefix("./"): m for m in tf.getmembers()}
        index = json.load(tf.extractfile(members["index.json"]))
        names = set(members)
        manifest = tf.extractfile(members[f"blobs/sha256/{img.manifest_digest[7:]}"]).read()
    assert index["manifests"][0]["digest"] == img.manifest_digest
    assert hashlib.sha256(manifest).hexdigest() == img.manifest_digest[7:]
    for d in img.blobs():
        assert f"blobs/sha256/{d[7:]}" in names
    # Push the pulled archive to another repository (it must exist, as on ECR).
    dest = repo_name("push")
    p = cli(server, "push", str(out), f"{dest}:copy", check=False)
    assert p.returncode != 0 and "NAME_UNKNOWN" in p.stderr
    create_repo(server, dest)
    cli(server, "push", str(out), f"{dest}:copy")
    assert head_digest(server, dest, "copy") == img.manifest_digest
    # Registry to registry (blobs mounted): an image already there under a new name.
    third = repo_name("copy")
    create_repo(server, third)
    cli(server, "push", f"{src}:v1", f"{third}:again")
    assert head_digest(server, third, "again") == img.manifest_digest


def test_cli_signs_requests_for_a_strict_auth_server(nimbus, tmp_path):
    """`nimbus image import` and `nimbus advise` sign with the environment's AWS credentials
    (SigV4), so they work against `--auth strict`; without credentials, or with a wrong
    secret, the server refuses them."""
    s = nimbus("--auth", "strict", "--access-key", "CLIKEY:cli-secret")
    archive = small_image(b"strict import\n").write_oci_archive(tmp_path / "img.tar", ref_name="v1")
    name = repo_name("strict")
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    good = {**base, "AWS_ACCESS_KEY_ID": "CLIKEY", "AWS_SECRET_ACCESS_KEY": "cli-secret",
            "AWS_REGION": "us-east-1"}
    bad_secret = {**good, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}

    def run(env, *args):
        return subprocess.run([str(NIMBUS_BIN), *args], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL,
                              env={**env, "NIMBUS_ENDPOINT": s.endpoint,
                                   "NIMBUS_REGISTRY": f"http://{s.registry_addr}"})

    def import_(env):
        return run(env, "image", "import", str(archive), "--tag", f"{name}:v1")

    for env in (base, bad_secret):
        p = import_(env)
        assert p.returncode != 0 and "import failed (403)" in p.stderr, p.stderr
        p = run(env, "advise", "--output", "json")
        assert p.returncode != 0 and "403" in p.stderr, p.stderr
    assert head_digest(s, name, "v1") is None, "a refused import stored nothing"

    p = import_(good)
    assert p.returncode == 0, p.stderr
    [(repo, tag, digest)] = imported(p)
    assert (repo, tag) == (name, "v1")
    assert head_digest(s, name, "v1") == digest
    p = run(good, "advise", "--output", "json")
    assert p.returncode == 0, p.stderr
    advice = json.loads(p.stdout)
    assert isinstance(advice, dict) and advice, advice
