//! Layer unpacking: compression, modes, whiteouts (both forms), path safety, dedup, rootfs.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::*;
use nimbus_images::{ImageError, ImageStore, RootfsMode, RootfsView};

fn meta(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

#[test]
fn unpacks_gzip_zstd_and_plain_once() {
    let (_d, s) = open_store();
    let img = TestImage::new(vec![
        gzip(&layer_tar(&[E::Dir("bin"), E::File("bin/tool", b"#!/bin/sh\necho hi\n", 0o4755)])),
        zstd(&layer_tar(&[E::File("/etc/conf", b"x=1", 0o600), E::Symlink("etc/link", "/etc/conf")])),
        layer_tar(&[
            E::File("./data/f", b"data", 0o644),
            E::Hardlink("data/g", "data/f"),
            E::CharDev("dev/null"),
        ]),
    ]);
    img.push(&s, "app", "v1");
    let image = s.resolve("app:v1").unwrap();
    let dirs = s.unpack(&image).unwrap();
    assert_eq!(dirs.len(), 3);
    assert_eq!(std::fs::read(dirs[0].join("bin/tool")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(meta(&dirs[0].join("bin/tool")).mode() & 0o7777, 0o4755, "set-id bits kept");
    assert_eq!(meta(&dirs[0].join("bin/tool")).mtime(), 1_700_000_000);
    assert_eq!(std::fs::read(dirs[1].join("etc/conf")).unwrap(), b"x=1", "absolute path made relative");
    assert_eq!(meta(&dirs[1].join("etc/conf")).mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::read_link(dirs[1].join("etc/link")).unwrap(),
        Path::new("/etc/conf"),
        "symlinks as-is"
    );
    assert_eq!(meta(&dirs[2].join("data/f")).ino(), meta(&dirs[2].join("data/g")).ino(), "hard link kept");
    assert!(!dirs[2].join("dev/null").exists(), "device nodes are not created");
    assert_eq!(s.layers_unpacked(), 3);
    assert_eq!(s.unpack(&image).unwrap(), dirs);
    assert_eq!(s.layers_unpacked(), 3, "second unpack reuses the layers");
    for (l, d) in image.layers.iter().zip(&dirs) {
        assert_eq!(s.layer_dir(&l.digest).as_ref(), Some(d));
        assert!(d.ends_with(&l.digest[7..]));
    }
}

#[test]
fn concurrent_unpacks_happen_once() {
    let (_d, s) = open_store();
    let files: Vec<(String, Vec<u8>)> = (0..300).map(|i| (format!("f/{i}"), vec![i as u8; 4096])).collect();
    let entries: Vec<E<'_>> = files.iter().map(|(p, b)| E::File(p, b, 0o644)).collect();
    let img = TestImage::new(vec![gzip(&layer_tar(&entries)), layer_tar(&[E::File("x", b"x", 0o644)])]);
    img.push(&s, "app", "v1");
    let image = s.resolve("app:v1").unwrap();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s: ImageStore = s.clone();
                let image = image.clone();
                scope.spawn(move || s.unpack(&image))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(s.layers_unpacked(), 2, "each layer unpacked exactly once");
    assert_eq!(std::fs::read_dir(results[0][0].join("f")).unwrap().count(), 300);
    let leftovers: Vec<_> = std::fs::read_dir(s.root().join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

fn whiteout_image() -> TestImage {
    TestImage::new(vec![
        gzip(&layer_tar(&[
            E::File("etc/a", b"a", 0o644),
            E::File("etc/b", b"b", 0o644),
            E::File("etc/d/x", b"x", 0o644),
            E::File("opq/old", b"old", 0o644),
            E::File("opq/sub/deep", b"deep", 0o644),
            E::Symlink("lnk", "etc"),
            E::File(".wh.root-level-ok", b"", 0o644),
        ])),
        layer_tar(&[
            E::File("etc/.wh.a", b"", 0o644),
            E::File("etc/.wh.d", b"", 0o644),
            E::File("opq/.wh..wh..opq", b"", 0o644),
            E::File("opq/new", b"new", 0o644),
            E::File("lnk/.wh.b", b"", 0o644),
        ]),
        layer_tar(&[E::File("etc/a", b"again", 0o644)]),
    ])
}

#[test]
fn whiteouts_are_stored_in_overlay_form_and_recorded() {
    let (_d, s) = open_store();
    let img = whiteout_image();
    img.push(&s, "wh", "v1");
    let image = s.resolve("wh:v1").unwrap();
    let dirs = s.unpack(&image).unwrap();
    let wh = s.layer_whiteouts(&image.layers[1].digest).unwrap();
    assert_eq!(wh.whiteouts, vec!["etc/a", "etc/d", "lnk/b"]);
    assert_eq!(wh.opaque, vec!["opq"]);
    assert!(!dirs[1].join("etc/.wh.a").exists(), "the .wh. file itself is not kept");
    assert!(!dirs[1].join("opq/.wh..wh..opq").exists());
    if running_as_root() {
        let m = meta(&dirs[1].join("etc/a"));
        assert!(m.file_type().is_char_device() && m.rdev() == 0, "whiteout is a 0:0 char device");
        assert_eq!(
            xattr::get(dirs[1].join("opq"), "trusted.overlay.opaque").unwrap().as_deref(),
            Some(&b"y"[..])
        );
    }
}

fn check_merged_view(root: &Path) {
    assert_eq!(std::fs::read(root.join("etc/a")).unwrap(), b"again", "re-added above the whiteout");
    assert_eq!(std::fs::read(root.join("etc/b")).unwrap(), b"b");
    assert!(!root.join("etc/d").exists(), "whited-out directory gone");
    assert!(!root.join("opq/old").exists(), "opaque dir hides lower entries");
    assert!(!root.join("opq/sub").exists());
    assert_eq!(std::fs::read(root.join("opq/new")).unwrap(), b"new");
    // `lnk/.wh.b` implies a directory `lnk` in that layer, which replaces the lower symlink
    // (as overlayfs does); the whiteout was not applied through the symlink to etc/b.
    assert!(meta(&root.join("lnk")).is_dir());
    assert!(!root.join("root-level-ok").exists());
}

#[test]
fn copy_rootfs_applies_whiteouts() {
    let (d, s) = open_store();
    let img = whiteout_image();
    img.push(&s, "wh", "v1");
    let image = s.resolve("wh:v1").unwrap();
    let target = d.path().join("task1");
    let view = s.prepare_rootfs_with(&image, &target, RootfsMode::Copy).unwrap();
    let RootfsView::Dir(root) = view else { panic!("copy mode gives a dir") };
    assert_eq!(root, target.join("rootfs"));
    check_merged_view(&root);
    // Private: writing to the copy leaves the shared layer untouched.
    std::fs::write(root.join("etc/b"), b"changed").unwrap();
    let layer0 = s.layer_dir(&image.layers[0].digest).unwrap();
    assert_eq!(std::fs::read(layer0.join("etc/b")).unwrap(), b"b");
}

#[test]
fn overlay_rootfs_when_supported() {
    let (d, s) = open_store();
    let img = whiteout_image();
    img.push(&s, "wh", "v1");
    let image = s.resolve("wh:v1").unwrap();
    let target = d.path().join("task2");
    let view = s.prepare_rootfs_with(&image, &target, RootfsMode::Auto).unwrap();
    eprintln!("rootfs view: {view:?}");
    match view {
        RootfsView::Overlay { lower, upper, work } => {
            assert!(s.overlay_supported(&target));
            assert_eq!(lower.len(), 3);
            assert!(upper.is_dir() && work.is_dir());
            // Mount it as the sandbox would and check the kernel honours our whiteouts.
            let merged = target.join("merged");
            std::fs::create_dir(&merged).unwrap();
            let lowers: Vec<String> = lower.iter().rev().map(|p| p.display().to_string()).collect();
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                lowers.join(":"),
                upper.display(),
                work.display()
            );
            nix::mount::mount(
                Some("overlay"),
                &merged,
                Some("overlay"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            )
            .unwrap();
            let result = std::panic::catch_unwind(|| check_merged_view(&merged));
            nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).unwrap();
            result.unwrap();
        }
        RootfsView::Dir(root) => {
            assert!(!s.overlay_supported(&target));
            check_merged_view(&root);
        }
    }
}

fn assert_refused(s: &ImageStore, name: &str, layer: Vec<u8>) {
    let img = TestImage::new(vec![layer]);
    img.push(s, name, "v1");
    let image = s.resolve(&format!("{name}:v1")).unwrap();
    match s.unpack(&image) {
        Err(ImageError::UnsafePath(_)) => {}
        other => panic!("{name}: expected UnsafePath, got {other:?}"),
    }
    assert!(s.layer_dir(&image.layers[0].digest).is_none(), "{name}: no half-unpacked layer");
    let leftovers = std::fs::read_dir(s.root().join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(leftovers, 0, "{name}: temp dir cleaned up");
}

#[test]
fn malicious_layers_are_refused() {
    let (d, s) = open_store();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let out_s = outside.display().to_string();
    let evil_name = format!("nimbus-evil-{}", std::process::id());
    let etc_evil = format!("a/{evil_name}");

    assert_refused(&s, "dotdot", layer_tar(&[E::File("../evil", b"x", 0o644)]));
    assert_refused(&s, "deepdotdot", layer_tar(&[E::File("a/../../../../evil", b"x", 0o644)]));
    assert_refused(&s, "symlinketc", layer_tar(&[E::Symlink("a", "/etc"), E::File(&etc_evil, b"x", 0o644)]));
    assert_refused(&s, "symlinkabs", layer_tar(&[E::Symlink("a", &out_s), E::File("a/passwd", b"x", 0o644)]));
    assert_refused(
        &s,
        "symlinkrel",
        layer_tar(&[E::Symlink("b", "../../../../../../../../.."), E::File("b/tmp/evil", b"x", 0o644)]),
    );
    assert_refused(&s, "symlinkdir", layer_tar(&[E::Symlink("c", &out_s), E::Dir("c/sub")]));
    assert_refused(
        &s,
        "symlinkwhiteout",
        layer_tar(&[E::Symlink("w", &out_s), E::File("w/.wh.victim", b"", 0o644)]),
    );
    assert_refused(&s, "hardlinkup", layer_tar(&[E::Hardlink("h", "../../../../etc/passwd")]));
    assert_refused(&s, "hardlinkvia", layer_tar(&[E::Symlink("s", "/etc"), E::Hardlink("h", "s/passwd")]));
    assert_refused(&s, "hardlinkmissing", layer_tar(&[E::Hardlink("h", "/etc/passwd")]));

    assert!(!Path::new("/etc").join(&evil_name).exists());
    assert!(!d.path().join("evil").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written outside");
    assert!(!Path::new("/tmp/evil").exists() || meta(Path::new("/tmp/evil")).mtime() != 1_700_000_000);
}

#[test]
fn later_entries_replace_earlier_ones_without_following_symlinks() {
    let (d, s) = open_store();
    let outside = d.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("target"), b"keep").unwrap();
    let out_t = outside.join("target").display().to_string();
    // A symlink to a host file, then a regular file at the same path: the symlink is
    // replaced, the host file is untouched.
    let img = TestImage::new(vec![layer_tar(&[E::Symlink("f", &out_t), E::File("f", b"mine", 0o644)])]);
    img.push(&s, "replace", "v1");
    let dirs = s.unpack(&s.resolve("replace:v1").unwrap()).unwrap();
    assert_eq!(std::fs::read(dirs[0].join("f")).unwrap(), b"mine");
    assert!(meta(&dirs[0].join("f")).is_file());
    assert_eq!(std::fs::read(outside.join("target")).unwrap(), b"keep");
}

#[test]
fn missing_layer_blob() {
    let (_d, s) = open_store();
    let img = TestImage::new(vec![layer_tar(&[E::File("a", b"1", 0o644)])]);
    img.push(&s, "app", "v1");
    let image = s.resolve("app:v1").unwrap();
    s.delete_blob(&image.layers[0].digest).unwrap();
    assert!(matches!(s.unpack(&image), Err(ImageError::ManifestBlobUnknown(_))));
}
