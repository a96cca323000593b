//! The e2e image builder (`tests/e2e/oci_images.py`) and this store agree: every archive
//! kind it writes imports, resolves, unpacks and yields a runnable busybox root. Skipped
//! where python3 or busybox is missing. `NIMBUS_IMAGES_EXTRA_ARCHIVES` (':'-separated
//! paths) adds real-world archives (e.g. `podman save` output) to the same checks.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use nimbus_images::{ImageStore, RootfsMode, RootfsView};

fn builder() -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/oci_images.py");
    let python_ok = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    (python_ok && script.is_file() && Path::new("/bin/busybox").is_file()).then_some(script)
}

fn check_runnable_root(s: &ImageStore, reference: &str, dir: &Path) {
    let image = s.resolve(reference).unwrap_or_else(|e| panic!("{reference}: {e}"));
    let view = s.prepare_rootfs_with(&image, dir, RootfsMode::Copy).unwrap();
    let RootfsView::Dir(root) = view else { panic!("copy mode") };
    assert!(root.join("bin/busybox").is_file(), "{reference}: busybox present");
    assert_eq!(std::fs::read_link(root.join("bin/sh")).unwrap(), Path::new("busybox"));
    let out = Command::new(root.join("bin/busybox")).args(["echo", "ok"]).output().unwrap();
    assert_eq!(out.stdout, b"ok\n");
}

#[test]
fn archives_written_by_the_python_builder_import() {
    let Some(script) = builder() else {
        eprintln!("skipped: python3, busybox or the builder is missing");
        return;
    };
    let (d, s) = open_store();
    let out = d.path().join("built");
    let program = format!(
        r##"
import sys
sys.path.insert(0, {dir:?})
import oci_images as o
out = {out:?}
img = o.busybox_image({{"/hello.txt": b"hello\n", "/app/run.sh": (b"#!/bin/sh\necho hi\n", 0o755)}},
                      entrypoint=["/app/run.sh"], env={{"A": "1"}}, workdir="/app", layers=3)
img.write_oci_layout(out + "/layout", ref_name="py/layout:v1")
img.write_oci_archive(out + "/archive.tar", ref_name="py/archive:v1")
img.write_docker_save(out + "/save.tar", repo_tags=["docker.io/library/pysave:v1"])
plain = o.busybox_image({{"/x": b"x"}}, compression="none", extra_layers=[{{"/x": o.Whiteout(), "/etc": o.Opaque()}}])
plain.write_oci_archive(out + "/plain.tar", ref_name="py/plain:v1")
if o.HAVE_ZSTD:
    o.busybox_image({{"/z": b"z"}}, compression="zstd").write_oci_archive(out + "/zstd.tar", ref_name="py/zstd:v1")
print(img.manifest_digest)
"##,
        dir = script.parent().unwrap().display().to_string(),
        out = out.display().to_string(),
    );
    let run = Command::new("python3").arg("-c").arg(&program).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let digest = String::from_utf8(run.stdout).unwrap().trim().to_string();

    let r = s.import(&out.join("layout"), None).unwrap();
    assert_eq!(
        (r[0].repository.as_str(), r[0].tag.as_deref(), r[0].digest.as_str()),
        ("py/layout", Some("v1"), digest.as_str())
    );
    let r = s.import(&out.join("archive.tar"), None).unwrap();
    assert_eq!((r[0].repository.as_str(), r[0].digest.as_str()), ("py/archive", digest.as_str()));
    let r = s.import(&out.join("save.tar"), None).unwrap();
    assert_eq!((r[0].repository.as_str(), r[0].tag.as_deref()), ("pysave", Some("v1")));
    s.import(&out.join("plain.tar"), None).unwrap();

    let image = s.resolve("py/layout:v1").unwrap();
    assert_eq!(image.config.entrypoint, vec!["/app/run.sh"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/app"));
    assert!(image.config.env.contains(&"A=1".to_string()));
    assert_eq!(s.resolve("pysave:v1").unwrap().config, image.config, "docker-save keeps the config");

    for (i, reference) in ["py/layout:v1", "py/archive:v1", "pysave:v1", "py/plain:v1"].iter().enumerate() {
        check_runnable_root(&s, reference, &d.path().join(format!("root{i}")));
    }
    let plain_root = d.path().join("root3/rootfs");
    assert!(!plain_root.join("x").exists(), "whiteout from the builder honoured");
    assert!(!plain_root.join("etc/passwd").exists(), "opaque dir from the builder honoured");
    if out.join("zstd.tar").exists() {
        s.import(&out.join("zstd.tar"), None).unwrap();
        check_runnable_root(&s, "py/zstd:v1", &d.path().join("rootz"));
        assert!(d.path().join("rootz/rootfs/z").is_file());
    }
}

#[test]
fn extra_real_world_archives() {
    let Ok(paths) = std::env::var("NIMBUS_IMAGES_EXTRA_ARCHIVES") else { return };
    let (d, s) = open_store();
    for (i, p) in paths.split(':').filter(|p| !p.is_empty()).enumerate() {
        let imported = s.import(Path::new(p), None).unwrap_or_else(|e| panic!("{p}: {e}"));
        eprintln!("{p}: {imported:?}");
        let first = &imported[0];
        let reference = match &first.tag {
            Some(t) => format!("{}:{t}", first.repository),
            None => format!("{}@{}", first.repository, first.digest),
        };
        check_runnable_root(&s, &reference, &d.path().join(format!("extra{i}")));
    }
}
