"""The OCI registry (ECR's data plane) on its own listener, driven by real clients (skopeo,
podman, the AWS CLI for login) and by raw HTTP for the distribution API's details."""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from nimbus_e2e import aws_cli
from oci_images import OCI_INDEX, OCI_MANIFEST, busybox_image, host_arch

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def repo_name(prefix: str = "reg") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Registry:
    """Raw HTTP to a server's registry listener."""

    def __init__(self, server, auth: str | None = None):
        self.server = server
        self.auth = auth

    @property
    def addr(self) -> str:
        return self.server.registry_addr

    @property
    def url(self) -> str:
        return f"http://{self.server.registry_addr}"

    def req(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        h = dict(headers or {})
        if self.auth:
            h.setdefault("Authorization", self.auth)
        conn = http.client.HTTPConnection("127.0.0.1", self.server.registry_port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def push_blob(self, repo: str, data: bytes) -> str:
        d = sha(data)
        st, h, b = self.req("POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data)
        assert st == 201, (st, b)
        return d

    def put_manifest(self, repo: str, ref: str, doc: dict | bytes, media_type: str = OCI_MANIFEST):
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return self.req("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": media_type})


def oci_error(body: bytes) -> str:
    doc = json.loads(body)
    assert isinstance(doc["errors"], list) and doc["errors"], doc
    e = doc["errors"][0]
    assert "message" in e, doc
    return e["code"]


def create_repo(server, name: str, **kw) -> dict:
    return server.client("ecr").create_repository(repositoryName=name, **kw)["repository"]


@pytest.fixture
def reg(server):
    return Registry(server)


def small_image(payload: bytes = b"hello\n"):
    return busybox_image({"/hello.txt": payload}, cmd=["cat", "/hello.txt"])


# -- real clients ------------------------------------------------------------------------------

def run(cmd: list[str], timeout: float = 180, input: str | None = None, env: dict | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                       env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}\n{p.stdout}")
    return p


@needs_skopeo
def test_skopeo_copy_into_the_registry_and_back_is_byte_identical(server, tmp_path):
    name = repo_name("skopeo")
    create_repo(server, name)
    img = small_image(b"skopeo round trip\n")
    archive = img.write_oci_archive(tmp_path / "in.tar", ref_name="v1")
    dest = f"docker://{server.registry_addr}/{name}:v1"
    run(["skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{archive}:v1", dest])
    # Out again, to an OCI layout and to a dir:
    run(["skopeo", "copy", "--src-tls-verify=false", dest, f"oci:{tmp_path / 'out'}:v1"])
    run(["skopeo", "copy", "--src-tls-verify=false", dest, f"dir:{tmp_path / 'dir'}"])
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == img.manifest_digest
    manifest = (tmp_path / "dir" / "manifest.json").read_bytes()
    assert sha(manifest) == img.manifest_digest
    for digest, data in img.blobs().items():
        assert (tmp_path / "dir" / digest[7:]).read_bytes() == data
        assert (tmp_path / "out" / "blobs" / "sha256" / digest[7:]).read_bytes() == data
    raw = run(["skopeo", "inspect", "--tls-verify=false", "--raw", dest]).stdout.encode()
    assert sha(raw) == img.manifest_digest
    # ECR sees the pushed image.
    details = server.client("ecr").describe_images(repositoryName=name)["imageDetails"]
    assert [d["imageDigest"] for d in details] == [img.manifest_digest]
    assert details[0]["imageTags"] == ["v1"]


@needs_skopeo
def test_skopeo_push_to_a_missing_repository_is_refused(server, tmp_path):
    img = small_image(b"nowhere\n")
    archive = img.write_oci_archive(tmp_path / "in.tar", ref_name="v1")
    p = run(["skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{archive}:v1",
             f"docker://{server.registry_addr}/{repo_name('missing')}:v1"], check=False)
    assert p.returncode != 0
    assert "name unknown" in p.stderr.lower() or "name_unknown" in p.stderr.lower(), p.stderr


class Podman:
    """podman with its own storage (vfs) and auth file, so the host is never touched."""

    def __init__(self, base: Path):
        self.base = base
        # podman refuses a runroot path longer than 50 characters.
        self.runroot = Path(tempfile.mkdtemp(prefix="pm-", dir="/tmp"))
        self.auth = base / "auth.json"
        self.auth.write_text("{}")
        conf = base / "registries.conf"
        conf.write_text('unqualified-search-registries = []\n')
        self.env = {"REGISTRY_AUTH_FILE": str(self.auth), "CONTAINERS_REGISTRIES_CONF": str(conf)}

    def __call__(self, *args: str, check: bool = True, input: str | None = None, retries: int = 1):
        cmd = ["podman", "--root", str(self.base / "root"), "--runroot", str(self.runroot),
               "--storage-driver", "vfs", *args]
        for attempt in range(retries):
            p = run(cmd, input=input, env=self.env, check=False)
            if p.returncode == 0 or attempt == retries - 1:
                break
            time.sleep(1)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}\n{p.stdout}")
        return p

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)


@pytest.fixture
def podman(tmp_path):
    pm = Podman(tmp_path)
    yield pm
    pm.close()


@needs_podman
def test_podman_push_and_pull(server, tmp_path, podman):
    name = repo_name("podman")
    create_repo(server, name)
    img = small_image(b"podman push\n")
    archive = img.write_docker_save(tmp_path / "img.tar", repo_tags=[f"localhost/{name}:src"])
    pm = podman
    pm("load", "-i", str(archive))
    ref = f"{server.registry_addr}/{name}:v1"
    pm("tag", f"localhost/{name}:src", ref)
    # Bounded retries around the network step only (podman is slow under load).
    pm("push", "--tls-verify=false", ref, retries=3)
    tags = json.loads(Registry(server).req("GET", f"/v2/{name}/tags/list")[2])
    assert tags == {"name": name, "tags": ["v1"]}
    pm("rmi", ref)
    pm("rmi", f"localhost/{name}:src")
    pm("pull", "--tls-verify=false", ref, retries=3)
    inspected = json.loads(pm("image", "inspect", ref).stdout)[0]
    # podman converts the docker-save layers; the image it pushed is what it pulls back.
    st, h, _ = Registry(server).req("HEAD", f"/v2/{name}/manifests/v1",
                                    headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"})
    assert st == 200
    assert inspected["Digest"] == h["docker-content-digest"]
    assert inspected["Config"]["Cmd"] == ["cat", "/hello.txt"]


@needs_podman
def test_token_mode_requires_ecr_login(nimbus, tmp_path, podman):
    s = nimbus("--registry-auth", "token")
    name = repo_name("login")
    create_repo(s, name)
    r = Registry(s)
    st, h, body = r.req("GET", "/v2/")
    assert st == 401 and oci_error(body) == "UNAUTHORIZED"
    assert h["www-authenticate"].startswith("Basic realm=")
    img = small_image(b"login\n")
    archive = img.write_oci_archive(tmp_path / "img.tar", ref_name="v1")
    pm = podman
    pm("pull", f"oci-archive:{archive}:v1")
    loaded = pm("images", "-q").stdout.split()[0]
    ref = f"{s.registry_addr}/{name}:v1"
    # Without login: refused.
    p = pm("push", "--tls-verify=false", loaded, f"docker://{ref}", check=False)
    assert p.returncode != 0 and "unauthorized" in p.stderr.lower(), p.stderr
    # aws ecr get-login-password | podman login --username AWS --password-stdin
    password = s.aws("ecr", "get-login-password").stdout.strip()
    assert password
    pm("login", "--tls-verify=false", "--username", "AWS", "--password-stdin", s.registry_addr,
       input=password)
    pm("push", "--tls-verify=false", loaded, f"docker://{ref}", retries=3)
    details = s.client("ecr").describe_images(repositoryName=name)["imageDetails"]
    assert details and details[0]["imageTags"] == ["v1"]
    # A wrong password is refused; a right one works for raw clients too.
    bad = "Basic " + base64.b64encode(b"AWS:not-a-token").decode()
    assert Registry(s, bad).req("GET", "/v2/")[0] == 401
    good = "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()
    assert Registry(s, good).req("GET", f"/v2/{name}/tags/list")[0] == 200


# -- the distribution API over raw HTTP ------------------------------------------------------------

def test_base_endpoint_and_error_format(reg):
    st, h, body = reg.req("GET", "/v2/")
    assert st == 200 and h["docker-distribution-api-version"] == "registry/2.0"
    st, h, body = reg.req("GET", f"/v2/{repo_name('nope')}/tags/list")
    assert st == 404 and oci_error(body) == "NAME_UNKNOWN"
    assert h["content-type"].startswith("application/json")
    st, _, body = reg.req("GET", "/v2/Bad_Name/tags/list")
    assert st == 400 and oci_error(body) == "NAME_INVALID"


def test_pushing_to_a_missing_repository_is_name_unknown(reg):
    st, _, body = reg.req("POST", f"/v2/{repo_name('absent')}/blobs/uploads/")
    assert st == 404 and oci_error(body) == "NAME_UNKNOWN"


def test_chunked_upload_with_status_and_out_of_order_chunk(server, reg):
    name = f"team/{repo_name('chunk')}"
    create_repo(server, name)
    data = os.urandom(300_000)
    st, h, _ = reg.req("POST", f"/v2/{name}/blobs/uploads/")
    assert st == 202 and h["range"] == "0-0" and h["docker-upload-uuid"]
    loc = h["location"]
    assert loc.startswith(f"/v2/{name}/blobs/uploads/")
    st, h, _ = reg.req("PATCH", loc, data[:100_000], {"Content-Range": "0-99999",
                                                      "Content-Type": "application/octet-stream"})
    assert st == 202 and h["range"] == "0-99999"
    # Out of order: 416, and the session is intact.
    st, h, body = reg.req("PATCH", loc, data[200_000:], {"Content-Range": "200000-299999"})
    assert st == 416, body
    st, h, _ = reg.req("GET", loc)
    assert st == 204 and h["range"] == "0-99999"
    # A chunk without Content-Range (docker streams that way) is appended.
    st, h, _ = reg.req("PATCH", loc, data[100_000:200_000])
    assert st == 202 and h["range"] == "0-199999"
    # Wrong digest: DIGEST_INVALID.
    st, h2, _ = reg.req("POST", f"/v2/{name}/blobs/uploads/")
    bad_loc = h2["location"]
    st, _, body = reg.req("PUT", f"{bad_loc}?digest={sha(b'other')}", b"something else")
    assert st == 400 and oci_error(body) == "DIGEST_INVALID"
    st, _, body = reg.req("GET", bad_loc)
    assert st == 404 and oci_error(body) == "BLOB_UPLOAD_UNKNOWN"
    # Finish with the last chunk in the PUT.
    digest = sha(data)
    st, h, _ = reg.req("PUT", f"{loc}?digest={digest}", data[200_000:])
    assert st == 201 and h["docker-content-digest"] == digest
    assert h["location"] == f"/v2/{name}/blobs/{digest}"
    st, h, body = reg.req("GET", f"/v2/{name}/blobs/{digest}")
    assert st == 200 and body == data and h["docker-content-digest"] == digest
    # Cancelled uploads are gone.
    st, h, _ = reg.req("POST", f"/v2/{name}/blobs/uploads/")
    assert reg.req("DELETE", h["location"])[0] == 204
    assert reg.req("GET", h["location"])[0] == 404


def test_blob_head_range_delete_and_mount(server, reg):
    a, b = repo_name("blob-a"), repo_name("blob-b")
    create_repo(server, a)
    create_repo(server, b)
    data = bytes(range(256)) * 40
    digest = reg.push_blob(a, data)
    st, h, body = reg.req("HEAD", f"/v2/{a}/blobs/{digest}")
    assert st == 200 and body == b"" and int(h["content-length"]) == len(data)
    assert h["docker-content-digest"] == digest
    st, h, body = reg.req("GET", f"/v2/{a}/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert st == 206 and body == data[10:20] and h["content-range"] == f"bytes 10-19/{len(data)}"
    st, h, body = reg.req("GET", f"/v2/{a}/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert st == 206 and body == data[-5:]
    st, h, _ = reg.req("GET", f"/v2/{a}/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
    assert st == 416
    # Mount into another repository: 201 without upload.
    st, h, _ = reg.req("POST", f"/v2/{b}/blobs/uploads/?mount={digest}&from={a}")
    assert st == 201 and h["docker-content-digest"] == digest
    # Mount of an unknown blob: an upload session instead (202).
    st, h, _ = reg.req("POST", f"/v2/{b}/blobs/uploads/?mount={sha(b'unknown')}&from={a}")
    assert st == 202 and "/blobs/uploads/" in h["location"]
    # Unknown blob → BLOB_UNKNOWN; bad digest → DIGEST_INVALID.
    st, _, body = reg.req("GET", f"/v2/{a}/blobs/{sha(b'missing')}")
    assert st == 404 and oci_error(body) == "BLOB_UNKNOWN"
    st, _, body = reg.req("GET", f"/v2/{a}/blobs/sha256:xyz")
    assert st == 400 and oci_error(body) == "DIGEST_INVALID"
    other = reg.push_blob(a, b"to be deleted")
    assert reg.req("DELETE", f"/v2/{a}/blobs/{other}")[0] == 202
    st, _, body = reg.req("HEAD", f"/v2/{a}/blobs/{other}")
    assert st == 404


def test_blob_delete_unlinks_one_repository_only(server, reg, tmp_path):
    """DELETE /v2/<name>/blobs/<digest> removes that repository's link; the same layer pushed
    to another repository still serves that repository's image."""
    a, b = repo_name("share-a"), repo_name("share-b")
    create_repo(server, a)
    create_repo(server, b)
    img = push_image(reg, a, "v1", b"shared between repositories\n")
    push_image(reg, b, "v1", b"shared between repositories\n")
    layer = img.layers[-1].digest
    st, _, body = reg.req("DELETE", f"/v2/{a}/blobs/{layer}")
    assert st == 202, body
    st, _, body = reg.req("GET", f"/v2/{a}/blobs/{layer}")
    assert st == 404 and oci_error(body) == "BLOB_UNKNOWN"
    st, _, body = reg.req("DELETE", f"/v2/{a}/blobs/{layer}")
    assert st == 404 and oci_error(body) == "BLOB_UNKNOWN"
    # b still pulls, every blob byte-identical.
    st, _, manifest = reg.req("GET", f"/v2/{b}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert st == 200 and sha(manifest) == img.manifest_digest
    for digest, data in img.blobs().items():
        st, _, got = reg.req("GET", f"/v2/{b}/blobs/{digest}")
        assert st == 200 and got == data, digest
    if shutil.which("skopeo"):
        run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{server.registry_addr}/{b}:v1",
             f"dir:{tmp_path / 'out'}"])
        assert (tmp_path / "out" / layer[7:]).read_bytes() == img.blobs()[layer]


def push_image(reg: Registry, repo: str, tag: str, payload: bytes):
    img = small_image(payload)
    for data in img.blobs().values():
        reg.push_blob(repo, data)
    st, h, body = reg.put_manifest(repo, tag, img.manifest_bytes)
    assert st == 201, body
    assert h["docker-content-digest"] == img.manifest_digest
    return img


def test_manifests_by_tag_and_digest_with_negotiation(server, reg):
    name = repo_name("man")
    create_repo(server, name)
    img = push_image(reg, name, "v1", b"manifests\n")
    d = img.manifest_digest
    for ref in ("v1", d):
        st, h, body = reg.req("GET", f"/v2/{name}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert st == 200 and body == img.manifest_bytes
        assert h["content-type"] == OCI_MANIFEST and h["docker-content-digest"] == d
    st, h, body = reg.req("HEAD", f"/v2/{name}/manifests/v1")
    assert st == 200 and body == b"" and int(h["content-length"]) == len(img.manifest_bytes)
    # A client that only takes Docker manifests cannot get an OCI one.
    st, _, body = reg.req("GET", f"/v2/{name}/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert st == 404 and oci_error(body) == "MANIFEST_UNKNOWN"
    # Push by digest; digest mismatch refused.
    st, _, body = reg.put_manifest(name, sha(b"x"), img.manifest_bytes)
    assert st == 400 and oci_error(body) == "DIGEST_INVALID"
    st, h, _ = reg.put_manifest(name, d, img.manifest_bytes)
    assert st == 201 and h["location"] == f"/v2/{name}/manifests/{d}"
    # Missing blobs → MANIFEST_BLOB_UNKNOWN; garbage → MANIFEST_INVALID.
    doc = json.loads(img.manifest_bytes)
    doc["layers"][0]["digest"] = sha(b"not pushed")
    st, _, body = reg.put_manifest(name, "broken", doc)
    assert st == 400 and oci_error(body) == "MANIFEST_BLOB_UNKNOWN"
    st, _, body = reg.put_manifest(name, "garbage", b"not json")
    assert st == 400 and oci_error(body) == "MANIFEST_INVALID"
    st, _, body = reg.put_manifest(name, "bad%21tag", img.manifest_bytes)
    assert st == 400 and oci_error(body) == "TAG_INVALID"
    # Delete the tag, then the manifest.
    reg.put_manifest(name, "v2", img.manifest_bytes)
    assert reg.req("DELETE", f"/v2/{name}/manifests/v2")[0] == 202
    assert reg.req("GET", f"/v2/{name}/manifests/v2")[0] == 404
    assert reg.req("DELETE", f"/v2/{name}/manifests/{d}")[0] == 202
    st, _, body = reg.req("GET", f"/v2/{name}/manifests/v1")
    assert st == 404 and oci_error(body) == "MANIFEST_UNKNOWN"


def test_docker_schema2_manifest_and_list(server, reg):
    name = repo_name("docker")
    create_repo(server, name)
    img = small_image(b"docker schema 2\n")
    for data in img.blobs().values():
        reg.push_blob(name, data)
    layer = img.layers[0]
    manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": DOCKER_CONFIG, "digest": img.config_digest,
                           "size": len(img.config_bytes)},
                "layers": [{"mediaType": DOCKER_LAYER, "digest": l.digest, "size": len(l.blob)}
                           for l in img.layers]}
    mbytes = json.dumps(manifest).encode()
    st, h, body = reg.put_manifest(name, "amd", mbytes, DOCKER_MANIFEST)
    assert st == 201, body
    assert layer.digest
    mlist = {"schemaVersion": 2, "mediaType": DOCKER_LIST,
             "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha(mbytes), "size": len(mbytes),
                            "platform": {"os": "linux", "architecture": host_arch()}}]}
    lbytes = json.dumps(mlist).encode()
    st, h, body = reg.put_manifest(name, "multi", lbytes, DOCKER_LIST)
    assert st == 201, body
    st, h, body = reg.req("GET", f"/v2/{name}/manifests/multi",
                          headers={"Accept": f"{DOCKER_LIST}, {DOCKER_MANIFEST}"})
    assert st == 200 and h["content-type"] == DOCKER_LIST and body == lbytes
    # A client that cannot take a list gets the host platform's manifest.
    st, h, body = reg.req("GET", f"/v2/{name}/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert st == 200 and h["content-type"] == DOCKER_MANIFEST and body == mbytes
    # An index whose child is missing is refused.
    bad = dict(mlist, manifests=[dict(mlist["manifests"][0], digest=sha(b"absent"))])
    st, _, body = reg.put_manifest(name, "badlist", json.dumps(bad).encode(), DOCKER_LIST)
    assert st == 400 and oci_error(body) == "MANIFEST_BLOB_UNKNOWN"


def test_oci_index_push_and_get(server, reg):
    name = repo_name("index")
    create_repo(server, name)
    img = push_image(reg, name, "single", b"index child\n")
    idx = img.index_bytes()
    st, h, body = reg.put_manifest(name, "idx", idx, OCI_INDEX)
    assert st == 201, body
    st, h, body = reg.req("GET", f"/v2/{name}/manifests/idx")
    assert st == 200 and h["content-type"] == OCI_INDEX and body == idx


def test_tags_and_catalog_pagination(server, reg):
    name = repo_name("tags")
    create_repo(server, name)
    img = push_image(reg, name, "a", b"tags\n")
    for t in ("b", "c", "d"):
        assert reg.put_manifest(name, t, img.manifest_bytes)[0] == 201
    st, h, body = reg.req("GET", f"/v2/{name}/tags/list")
    assert json.loads(body) == {"name": name, "tags": ["a", "b", "c", "d"]} and "link" not in h
    st, h, body = reg.req("GET", f"/v2/{name}/tags/list?n=2")
    assert json.loads(body)["tags"] == ["a", "b"]
    assert h["link"] == f'</v2/{name}/tags/list?n=2&last=b>; rel="next"'
    st, h, body = reg.req("GET", f"/v2/{name}/tags/list?n=2&last=b")
    assert json.loads(body)["tags"] == ["c", "d"] and "link" not in h
    st, h, body = reg.req("GET", f"/v2/{name}/tags/list?last=d")
    assert json.loads(body)["tags"] == []
    second = repo_name("tags")
    create_repo(server, second)
    st, h, body = reg.req("GET", "/v2/_catalog")
    repos = json.loads(body)["repositories"]
    assert name in repos and second in repos and repos == sorted(repos)
    st, h, body = reg.req("GET", "/v2/_catalog?n=1")
    assert len(json.loads(body)["repositories"]) == 1 and 'rel="next"' in h["link"]


def test_referrers_api(server, reg):
    name = repo_name("refs")
    create_repo(server, name)
    img = push_image(reg, name, "v1", b"subject\n")
    empty = b"{}"
    empty_digest = reg.push_blob(name, empty)
    sig_blob = reg.push_blob(name, b"a signature")

    def artifact(kind: str) -> bytes:
        return json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sig_blob, "size": 11}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": img.manifest_digest,
                        "size": len(img.manifest_bytes)},
        }).encode()

    sig, sbom = artifact("application/vnd.example.sig"), artifact("application/vnd.example.sbom")
    for doc in (sig, sbom):
        st, h, body = reg.put_manifest(name, sha(doc), doc)
        assert st == 201, body
        assert h["oci-subject"] == img.manifest_digest
    st, h, body = reg.req("GET", f"/v2/{name}/referrers/{img.manifest_digest}")
    assert st == 200 and h["content-type"] == OCI_INDEX
    index = json.loads(body)
    assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    assert sorted(m["digest"] for m in index["manifests"]) == sorted([sha(sig), sha(sbom)])
    st, h, body = reg.req("GET", f"/v2/{name}/referrers/{img.manifest_digest}"
                                 "?artifactType=application/vnd.example.sig")
    index = json.loads(body)
    assert [m["digest"] for m in index["manifests"]] == [sha(sig)]
    assert index["manifests"][0]["artifactType"] == "application/vnd.example.sig"
    assert h["oci-filters-applied"] == "artifactType"
    st, h, body = reg.req("GET", f"/v2/{name}/referrers/{sha(b'nothing refers')}")
    assert st == 200 and json.loads(body)["manifests"] == []


def test_immutable_tags_refused_on_the_wire(server, reg):
    name = repo_name("immut")
    create_repo(server, name, imageTagMutability="IMMUTABLE")
    push_image(reg, name, "v1", b"first\n")
    other = small_image(b"second\n")
    for data in other.blobs().values():
        reg.push_blob(name, data)
    st, _, body = reg.put_manifest(name, "v1", other.manifest_bytes)
    assert st == 400 and oci_error(body) == "TAG_INVALID"
    assert "immutable" in json.loads(body)["errors"][0]["message"]
    # A new tag is fine.
    assert reg.put_manifest(name, "v2", other.manifest_bytes)[0] == 201
