"""Build OCI / Docker test images from files, in pure Python (tarfile, gzip, hashlib, json).

Nothing is pulled: images hold busybox-static (host's /bin/busybox) plus whatever files a
test adds. Output is deterministic (fixed mtimes, owners, ordering, gzip headers), so the
same inputs always give the same digests.

    img = busybox_image({"/app/run.sh": (b"#!/bin/sh\\necho hi\\n", 0o755)},
                        entrypoint=["/app/run.sh"], env={"A": "1"})
    img.write_oci_layout(tmp / "layout", ref_name="myapp:v1")
    img.write_oci_archive(tmp / "app.oci.tar", ref_name="myapp:v1")
    img.write_docker_save(tmp / "app.docker.tar", repo_tags=["myapp:v1"])
    img.push("http://127.0.0.1:4567", "myapp", "v1")          # OCI distribution API
    img.manifest_digest, img.config, img.layers, img.blobs()

Files: ``{path: bytes | (bytes, mode) | Symlink(target) | Dir(mode)}``. A dynamically
linked host binary can be made runnable with ``host_binary(path)`` (adds it and the shared
libraries `ldd` names). Layers are gzip by default; ``compression="none"`` or ``"zstd"``
(zstd via the `zstandard` module or the `zstd` command; ``HAVE_ZSTD`` says if either exists).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

MTIME = 1_700_000_000
BUSYBOX = "/bin/busybox"
BUSYBOX_APPLETS = ["sh", "sleep", "echo", "cat", "ls", "wget", "nc", "httpd", "env", "true", "false",
                   "kill", "id", "hostname", "touch", "mkdir", "rm"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

try:  # optional: only for zstd layers
    import zstandard as _zstandard  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _zstandard = None

HAVE_ZSTD = _zstandard is not None or shutil.which("zstd") is not None


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def host_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755


@dataclass(frozen=True)
class Whiteout:
    """Deletes `path` from the layers below (written as `.wh.<name>`)."""


@dataclass(frozen=True)
class Opaque:
    """Marks the directory opaque (written as `<dir>/.wh..wh..opq`)."""


def _norm(path: str) -> str:
    p = path.strip("/")
    if not p or ".." in p.split("/"):
        raise ValueError(f"bad image path {path!r}")
    return p


def _zstd(data: bytes) -> bytes:
    if _zstandard is not None:
        return _zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)
    exe = shutil.which("zstd")
    if exe is None:
        raise RuntimeError("zstd layers need the zstandard module or the zstd command (see HAVE_ZSTD)")
    return subprocess.run([exe, "-q", "-3", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0, filename="") as g:
        g.write(data)
    return buf.getvalue()


def layer_tar(files: dict) -> bytes:
    """An uncompressed layer tar of `files` (parents created, sorted, fixed metadata)."""
    entries: dict[str, object] = {}

    def add_parents(p: str) -> None:
        parts = p.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), Dir())

    for path, content in files.items():
        p = _norm(path)
        add_parents(p)
        if isinstance(content, Whiteout):
            d, _, base = p.rpartition("/")
            entries[(d + "/" if d else "") + ".wh." + base] = b""
        elif isinstance(content, Opaque):
            entries.setdefault(p, Dir())
            entries[p + "/.wh..wh..opq"] = b""
        else:
            entries[p] = content
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in sorted(entries):
            content = entries[p]
            name = p
            ti = tarfile.TarInfo(name)
            ti.mtime = MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            if isinstance(content, Dir):
                ti.type = tarfile.DIRTYPE
                ti.mode = content.mode
                tf.addfile(ti)
            elif isinstance(content, Symlink):
                ti.type = tarfile.SYMTYPE
                ti.linkname = content.target
                ti.mode = 0o777
                tf.addfile(ti)
            else:
                if isinstance(content, tuple):
                    data, mode = content
                else:
                    data, mode = content, 0o644
                if isinstance(data, str):
                    data = data.encode()
                ti.type = tarfile.REGTYPE
                ti.mode = mode
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class Layer:
    tar: bytes                 # uncompressed (its digest is the config's diff_id)
    blob: bytes                # as stored / pushed
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.blob)

    @property
    def diff_id(self) -> str:
        return sha256(self.tar)

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.blob)}


def make_layer(files: dict, compression: str = "gzip") -> Layer:
    tar = layer_tar(files)
    if compression == "gzip":
        return Layer(tar, _gzip(tar), OCI_LAYER_GZIP)
    if compression == "zstd":
        return Layer(tar, _zstd(tar), OCI_LAYER_ZSTD)
    if compression in ("none", None):
        return Layer(tar, tar, OCI_LAYER)
    raise ValueError(f"unknown compression {compression!r}")


@dataclass
class Image:
    layers: list[Layer]
    config: dict
    config_bytes: bytes = b""
    manifest: dict = field(default_factory=dict)
    manifest_bytes: bytes = b""

    def __post_init__(self) -> None:
        self.config["rootfs"] = {"type": "layers", "diff_ids": [l.diff_id for l in self.layers]}
        self.config["history"] = [{"created": "1970-01-01T00:00:00Z", "created_by": "oci_images.py"}
                                  for _ in self.layers]
        self.config_bytes = json.dumps(self.config, sort_keys=True, separators=(",", ":")).encode()
        self.manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.config_digest, "size": len(self.config_bytes)},
            "layers": [l.descriptor() for l in self.layers],
        }
        self.manifest_bytes = json.dumps(self.manifest, sort_keys=True, separators=(",", ":")).encode()

    @property
    def config_digest(self) -> str:
        return sha256(self.config_bytes)

    @property
    def manifest_digest(self) -> str:
        return sha256(self.manifest_bytes)

    @property
    def digest(self) -> str:
        return self.manifest_digest

    def blobs(self) -> dict[str, bytes]:
        """digest → bytes of config and layers (not the manifest)."""
        out = {self.config_digest: self.config_bytes}
        for l in self.layers:
            out[l.digest] = l.blob
        return out

    def index_bytes(self, ref_name: str | None = None) -> bytes:
        desc = {"mediaType": OCI_MANIFEST, "digest": self.manifest_digest, "size": len(self.manifest_bytes),
                "platform": {"os": "linux", "architecture": self.config.get("architecture", host_arch())}}
        if ref_name:
            desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]},
                          sort_keys=True, separators=(",", ":")).encode()

    # ----- writers -----

    def _layout_files(self, ref_name: str | None) -> dict[str, bytes]:
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": self.index_bytes(ref_name)}
        for d, b in self.blobs().items():
            files["blobs/sha256/" + d[7:]] = b
        files["blobs/sha256/" + self.manifest_digest[7:]] = self.manifest_bytes
        return files

    def write_oci_layout(self, directory, ref_name: str | None = "latest") -> Path:
        """An OCI image layout directory (`ref_name`: "name:tag", a bare tag, or None)."""
        d = Path(directory)
        for rel, data in self._layout_files(ref_name).items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return d

    def write_oci_archive(self, path, ref_name: str | None = "latest") -> Path:
        """A tar of an OCI image layout (what `skopeo copy … oci-archive:` makes)."""
        return _write_tar(Path(path), self._layout_files(ref_name))

    def write_docker_save(self, path, repo_tags: Iterable[str] | None = ("latest",)) -> Path:
        """A legacy `docker save` / `podman save` archive: uncompressed `<id>/layer.tar`s,
        `<config hex>.json`, manifest.json with Config/RepoTags/Layers."""
        files: dict[str, bytes] = {}
        config_name = self.config_digest[7:] + ".json"
        files[config_name] = self.config_bytes
        layer_paths = []
        for l in self.layers:
            rel = l.diff_id[7:] + "/layer.tar"
            files[rel] = l.tar
            layer_paths.append(rel)
        tags = list(repo_tags) if repo_tags else None
        files["manifest.json"] = json.dumps([{"Config": config_name, "RepoTags": tags, "Layers": layer_paths}]).encode()
        return _write_tar(Path(path), files)

    # ----- registry -----

    def push(self, registry: str, repository: str, reference: str = "latest",
             headers: dict[str, str] | None = None) -> str:
        """Pushes blobs (monolithic POST→PUT uploads) and the manifest to an OCI registry at
        `registry` (e.g. "http://127.0.0.1:4567"); returns the manifest digest."""
        base = registry.rstrip("/")
        hdrs = dict(headers or {})
        for digest, data in self.blobs().items():
            status, _, _ = _http("HEAD", f"{base}/v2/{repository}/blobs/{digest}", headers=hdrs)
            if status == 200:
                continue
            status, resp_headers, body = _http("POST", f"{base}/v2/{repository}/blobs/uploads/", headers=hdrs)
            if status != 202:
                raise RuntimeError(f"upload start: {status} {body[:300]!r}")
            location = resp_headers.get("Location") or resp_headers.get("location")
            url = urllib.parse.urljoin(base + "/", location)
            sep = "&" if "?" in url else "?"
            status, _, body = _http("PUT", f"{url}{sep}digest={urllib.parse.quote(digest)}", data,
                                    {**hdrs, "Content-Type": "application/octet-stream"})
            if status != 201:
                raise RuntimeError(f"upload of {digest}: {status} {body[:300]!r}")
        status, _, body = _http("PUT", f"{base}/v2/{repository}/manifests/{reference}", self.manifest_bytes,
                                {**hdrs, "Content-Type": OCI_MANIFEST})
        if status != 201:
            raise RuntimeError(f"manifest put: {status} {body[:300]!r}")
        return self.manifest_digest


def _http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _write_tar(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, len(p.split("/")))})
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.mtime = MTIME
            tf.addfile(ti)
        for p in sorted(files):
            ti = tarfile.TarInfo(p)
            ti.size = len(files[p])
            ti.mode = 0o644
            ti.mtime = MTIME
            tf.addfile(ti, io.BytesIO(files[p]))
    return path


def _busybox_files() -> dict:
    files: dict = {"/bin/busybox": (Path(BUSYBOX).read_bytes(), 0o755)}
    for applet in BUSYBOX_APPLETS:
        files[f"/bin/{applet}"] = Symlink("busybox")
    files.update({"/tmp": Dir(0o1777), "/etc": Dir(), "/root": Dir(0o700), "/var": Dir(),
                  "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
                  "/etc/group": b"root:x:0:\nnobody:x:65534:\n"})
    return files


def host_binary(path: str | os.PathLike, at: str | None = None) -> dict:
    """Files that make a host executable runnable in an image: the binary (at `at`, default
    its host path) and, for a dynamically linked one, the loader and libraries `ldd` lists."""
    src = Path(path)
    files: dict = {at or str(src): (src.read_bytes(), 0o755)}
    out = subprocess.run(["ldd", str(src)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in out.stdout.splitlines():
        line = line.strip()
        lib = None
        if "=>" in line:
            rhs = line.split("=>", 1)[1].strip().split(" ")[0]
            lib = rhs if rhs.startswith("/") else None
        elif line.startswith("/"):
            lib = line.split(" ")[0]
        if lib and Path(lib).exists():
            files[lib] = (Path(lib).read_bytes(), 0o755)
    return files


def build_image(files: dict | None = None, entrypoint=None, cmd=None, env=None, workdir=None, user=None,
                layers: int = 2, compression: str = "gzip", busybox: bool = True,
                exposed_ports: Iterable[str] | None = None, extra_layers: Iterable[dict] | None = None,
                arch: str | None = None) -> Image:
    """An image of busybox (first layer, when `busybox`) and `files` (spread over the
    remaining `layers - 1` layers in path order; all in one layer when `layers` is 1).
    `env` is a dict or a list of "K=V"; `extra_layers` appends layers verbatim (use
    `Whiteout()` / `Opaque()` values there to test deletions)."""
    files = dict(files or {})
    layer_files: list[dict] = []
    base = _busybox_files() if busybox else {}
    if layers <= 1:
        layer_files.append({**base, **files})
    else:
        if base:
            layer_files.append(base)
        n = max(1, layers - len(layer_files))
        keys = sorted(files)
        chunks = [dict() for _ in range(n)]
        for i, k in enumerate(keys):
            chunks[min(i * n // max(1, len(keys)), n - 1)][k] = files[k]
        layer_files.extend(c for c in chunks if c or not layer_files)
    layer_files.extend(extra_layers or [])
    built = [make_layer(f, compression) for f in layer_files]
    if isinstance(env, dict):
        env_list = [f"{k}={v}" for k, v in env.items()]
    else:
        env_list = list(env or [])
    if not any(e.startswith("PATH=") for e in env_list):
        env_list.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    cfg: dict = {"Env": env_list}
    if entrypoint is not None:
        cfg["Entrypoint"] = list(entrypoint) if not isinstance(entrypoint, str) else [entrypoint]
    if cmd is not None:
        cfg["Cmd"] = list(cmd) if not isinstance(cmd, str) else [cmd]
    if workdir:
        cfg["WorkingDir"] = workdir
    if user:
        cfg["User"] = user
    if exposed_ports:
        cfg["ExposedPorts"] = {p if "/" in p else f"{p}/tcp": {} for p in exposed_ports}
    config = {"architecture": arch or host_arch(), "os": "linux", "created": "1970-01-01T00:00:00Z",
              "config": cfg}
    return Image(layers=built, config=config)


def busybox_image(extra_files: dict | None = None, **config) -> Image:
    """busybox-static plus `extra_files`; `config` as for `build_image` (default cmd: sh
    when no entrypoint is given)."""
    if config.get("entrypoint") is None:
        config.setdefault("cmd", ["/bin/sh"])
    return build_image(extra_files or {}, **config)


if __name__ == "__main__":  # quick manual check: python oci_images.py OUTDIR
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "oci-images-out")
    img = busybox_image({"/hello.txt": b"hello\n"}, cmd=["cat", "/hello.txt"])
    img.write_oci_layout(out / "layout", ref_name="hello:v1")
    img.write_oci_archive(out / "hello.oci.tar", ref_name="hello:v1")
    img.write_docker_save(out / "hello.docker.tar", repo_tags=["hello:v1"])
    print(img.manifest_digest)
