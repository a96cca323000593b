//! Imports of every archive kind and resolution of every reference form.

mod common;

use common::*;
use nimbus_images::{ImageError, host_platform, media_types as mt, sha256_digest};

fn sample() -> TestImage {
    TestImage::new(vec![
        gzip(&layer_tar(&[E::Dir("bin"), E::File("bin/tool", b"#!/bin/sh\n", 0o755)])),
        layer_tar(&[E::File("etc/conf", b"x=1", 0o644)]),
        zstd(&layer_tar(&[E::File("etc/more", b"y=2", 0o600)])),
    ])
}

#[test]
fn import_oci_layout_dir_with_ref_name() {
    let (d, s) = open_store();
    let img = sample();
    let layout = d.path().join("layout");
    write_layout(
        &layout,
        &img.blobs(),
        vec![index_entry(&img.manifest, mt::OCI_MANIFEST, Some("myapp:1.0"))],
    );
    let out = s.import(&layout, None).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].repository, "myapp");
    assert_eq!(out[0].tag.as_deref(), Some("1.0"));
    assert_eq!(out[0].digest, img.digest(), "OCI manifests keep their digest");
    assert!(layout.join("index.json").exists(), "a layout dir is copied, not consumed");
    let got = s.get_manifest("myapp", "1.0").unwrap().unwrap();
    assert_eq!(got.bytes, img.manifest);
    for b in img.blobs() {
        assert!(s.blob_path(&sha256_digest(b)).is_some());
    }
    let image = s.resolve("myapp:1.0").unwrap();
    assert_eq!(image.layers.len(), 3);
    assert_eq!(image.config.entrypoint, vec!["/bin/sh", "-c"]);
    assert_eq!(image.config.cmd, vec!["echo hi"]);
    assert_eq!(image.config.env, vec!["PATH=/bin", "A=1"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/app"));
    assert_eq!(image.config.user.as_deref(), Some("1000:1000"));
    assert_eq!(image.config.exposed_ports, vec!["8080/tcp"]);
}

#[test]
fn import_oci_archive_with_tag_override_and_bare_ref_name() {
    let (d, s) = open_store();
    let img = sample();
    let layout = d.path().join("layout");
    write_layout(&layout, &img.blobs(), vec![index_entry(&img.manifest, mt::OCI_MANIFEST, Some("v7"))]);
    let archive = d.path().join("web-server.tar");
    tar_dir(&layout, &archive);

    // A bare ref name is a tag; the repository comes from the archive's file name.
    let out = s.import(&archive, None).unwrap();
    assert_eq!((out[0].repository.as_str(), out[0].tag.as_deref()), ("web-server", Some("v7")));
    // An explicit tag wins (any registry host dropped).
    let out = s.import(&archive, Some("localhost:4567/other/name:x")).unwrap();
    assert_eq!((out[0].repository.as_str(), out[0].tag.as_deref()), ("other/name", Some("x")));
    let out = s.import(&archive, Some("plain")).unwrap();
    assert_eq!((out[0].repository.as_str(), out[0].tag.as_deref()), ("plain", Some("latest")));
    assert_eq!(s.resolve("plain").unwrap().digest, img.digest());
    // Nothing left behind in the store's tmp.
    assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn import_docker_save_builds_a_proper_manifest() {
    let (d, s) = open_store();
    let l1 = layer_tar(&[E::File("a", b"1", 0o644)]);
    let l2 = layer_tar(&[E::File("b", b"2", 0o644)]);
    let config = config_json(&["/bin/app"], &[]);
    // l1 appears twice: docker stores it once and symlinks the second.
    let path = docker_save(
        &d.path().join("save.tar"),
        &config,
        &[l1.clone(), l2.clone(), l1.clone()],
        Some(vec!["docker.io/library/busybox:latest", "busybox:1.36"]),
    );
    let out = s.import(&path, None).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].repository.as_str(), out[0].tag.as_deref()), ("busybox", Some("latest")));
    assert_eq!((out[1].repository.as_str(), out[1].tag.as_deref()), ("busybox", Some("1.36")));
    assert_eq!(out[0].digest, out[1].digest);

    let m = s.get_manifest("busybox", "latest").unwrap().unwrap();
    assert_eq!(m.media_type, mt::OCI_MANIFEST);
    assert_eq!(m.digest, sha256_digest(&m.bytes));
    let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
    assert_eq!(v["config"]["digest"], sha256_digest(&config));
    assert_eq!(v["config"]["size"], config.len());
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0]["digest"], sha256_digest(&l1));
    assert_eq!(layers[0]["size"], l1.len());
    assert_eq!(layers[0]["mediaType"], mt::OCI_LAYER);
    assert_eq!(layers[2]["digest"], sha256_digest(&l1));
    for l in layers {
        assert!(s.blob_path(l["digest"].as_str().unwrap()).is_some());
    }
    let image = s.resolve("busybox:1.36").unwrap();
    assert_eq!(image.config.entrypoint, vec!["/bin/app"]);
    assert_eq!(image.config_digest, sha256_digest(&config));
    // Re-importing is idempotent.
    assert_eq!(s.import(&path, None).unwrap()[0].digest, out[0].digest);
}

#[test]
fn import_gzipped_docker_save_without_tags() {
    let (d, s) = open_store();
    let config = config_json(&[], &["/bin/sh"]);
    let raw = d.path().join("raw.tar");
    docker_save(&raw, &config, &[gzip(&layer_tar(&[E::File("a", b"1", 0o644)]))], None);
    let gz = d.path().join("My_Image.tar.gz");
    std::fs::write(&gz, gzip(&std::fs::read(&raw).unwrap())).unwrap();
    let out = s.import(&gz, None).unwrap();
    assert_eq!(out[0].repository, "my_image");
    assert_eq!(out[0].tag, None);
    let image = s.resolve(&format!("my_image@{}", out[0].digest)).unwrap();
    assert_eq!(image.layers[0].media_type, mt::OCI_LAYER_GZIP);
    assert!(matches!(s.resolve("my_image"), Err(ImageError::NotFound(_))));
}

#[test]
fn import_refuses_corrupt_and_unknown_archives() {
    let (d, s) = open_store();
    let img = sample();
    let layout = d.path().join("layout");
    write_layout(&layout, &img.blobs(), vec![index_entry(&img.manifest, mt::OCI_MANIFEST, Some("x:1"))]);
    // Corrupt one layer blob: its digest no longer matches.
    let l0 = sha256_digest(&img.layers[0]);
    std::fs::write(layout.join("blobs/sha256").join(&l0[7..]), b"tampered").unwrap();
    assert!(matches!(s.import(&layout, None), Err(ImageError::DigestMismatch { .. })));
    assert!(s.tags("x").is_empty());
    // A missing blob.
    std::fs::remove_file(layout.join("blobs/sha256").join(&l0[7..])).unwrap();
    assert!(matches!(s.import(&layout, None), Err(ImageError::ManifestBlobUnknown(_))));
    let junk = d.path().join("junk.tar");
    std::fs::write(&junk, layer_tar(&[E::File("hello", b"x", 0o644)])).unwrap();
    assert!(matches!(s.import(&junk, None), Err(ImageError::Unsupported(_))));
    assert!(matches!(s.import(&d.path().join("absent.tar"), None), Err(ImageError::NotFound(_))));
}

#[test]
fn resolve_every_reference_form() {
    let (_d, s) = open_store();
    let img = sample();
    let digest = img.push(&s, "app", "v1");
    img.push(&s, "team/svc", "latest");
    let forms = [
        "app:v1".to_string(),
        format!("app@{digest}"),
        "localhost:4567/app:v1".to_string(),
        "127.0.0.1:45123/app:v1".to_string(),
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1".to_string(),
        "team/svc".to_string(),
        "team/svc:latest".to_string(),
        "docker.io/team/svc:latest".to_string(),
        format!("localhost:4567/app:v1@{digest}"),
        digest.clone(),
    ];
    for f in &forms {
        let image = s.resolve(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(image.digest, digest, "{f}");
        assert_eq!(image.manifest_digest, digest);
        assert_eq!(image.layers.len(), 3);
    }
    assert_eq!(s.resolve("app:v1").unwrap().repository, "app");
    img.push(&s, "busybox", "latest");
    assert_eq!(s.resolve("docker.io/library/busybox").unwrap().repository, "busybox");
    assert_eq!(s.resolve("library/busybox:latest").unwrap().repository, "busybox");
    for missing in ["app", "app:v2", "nope:v1", "localhost:4567/nope"] {
        match s.resolve(missing) {
            Err(ImageError::NotFound(r)) => assert_eq!(r, missing),
            other => panic!("{missing}: {other:?}"),
        }
    }
    assert!(matches!(s.resolve("Bad:Ref"), Err(ImageError::InvalidReference(_))));
}

#[test]
fn resolve_index_picks_linux_host_arch() {
    let (d, s) = open_store();
    let (_, arch) = host_platform();
    let native = sample();
    let foreign = TestImage::new(vec![layer_tar(&[E::File("foreign", b"", 0o644)])]);
    let entry = |img: &TestImage, os: &str, arch: &str| {
        serde_json::json!({"mediaType": mt::OCI_MANIFEST, "digest": img.digest(), "size": img.manifest.len(),
                           "platform": {"os": os, "architecture": arch}})
    };
    let other_arch = if arch == "amd64" { "arm64" } else { "amd64" };
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": mt::DOCKER_MANIFEST_LIST,
        "manifests": [entry(&foreign, "linux", other_arch), entry(&foreign, "windows", arch), entry(&native, "linux", arch)]}))
    .unwrap();
    foreign.push(&s, "multi", &foreign.digest());
    native.push(&s, "multi", &native.digest());
    let idx = s.put_manifest("multi", "latest", mt::DOCKER_MANIFEST_LIST, &index).unwrap();
    let image = s.resolve("multi:latest").unwrap();
    assert_eq!(image.digest, idx);
    assert_eq!(image.manifest_digest, native.digest());
    assert_eq!(image.layers.len(), 3);

    // An index without this host's platform.
    let only_foreign =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": mt::OCI_INDEX,
        "manifests": [entry(&foreign, "linux", other_arch)]}))
        .unwrap();
    s.put_manifest("multi", "foreign", mt::OCI_INDEX, &only_foreign).unwrap();
    assert!(matches!(s.resolve("multi:foreign"), Err(ImageError::NotFound(_))));

    // A layout holding the whole index imports all of it; the index keeps its digest.
    let layout = d.path().join("layout");
    let mut blobs = native.blobs();
    blobs.extend(foreign.blobs());
    blobs.push(&index);
    write_layout(
        &layout,
        &blobs,
        vec![index_entry(&index, mt::DOCKER_MANIFEST_LIST, Some("imported/multi:2"))],
    );
    let out = s.import(&layout, None).unwrap();
    assert_eq!(out[0].digest, idx);
    assert_eq!(s.resolve("imported/multi:2").unwrap().manifest_digest, native.digest());

    // A single-platform copy of an index (children absent) imports the host's child.
    let layout2 = d.path().join("layout2");
    let mut blobs2 = native.blobs();
    blobs2.push(&index);
    write_layout(&layout2, &blobs2, vec![index_entry(&index, mt::DOCKER_MANIFEST_LIST, Some("single:1"))]);
    let out = s.import(&layout2, None).unwrap();
    assert_eq!(out[0].digest, native.digest());
}
