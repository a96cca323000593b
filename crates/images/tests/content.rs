//! Content store: blobs, manifests, tags, repositories, referrers, persistence.

mod common;

use common::*;
use nimbus_images::{ImageError, media_types as mt, sha256_digest};

#[test]
fn blobs_put_commit_delete() {
    let (_d, s) = open_store();
    let digest = s.put_blob(b"hello").unwrap();
    assert_eq!(digest, sha256_digest(b"hello"));
    assert_eq!(s.blob_size(&digest), Some(5));
    assert_eq!(std::fs::read(s.blob_path(&digest).unwrap()).unwrap(), b"hello");
    assert!(s.blob_path(&sha256_digest(b"other")).is_none());
    assert!(s.blob_path("sha256:../../etc/passwd").is_none());

    // Upload temp files live in upload_dir and are renamed into place.
    let temp = s.upload_dir().join("upload-1");
    std::fs::write(&temp, b"uploaded").unwrap();
    let d2 = s.commit_blob(&temp, &sha256_digest(b"uploaded")).unwrap();
    assert!(!temp.exists());
    assert_eq!(s.blob_size(&d2), Some(8));

    // Digest mismatch: refused, nothing stored, temp consumed.
    let temp = s.upload_dir().join("upload-2");
    std::fs::write(&temp, b"actual").unwrap();
    let wrong = sha256_digest(b"claimed");
    match s.commit_blob(&temp, &wrong) {
        Err(ImageError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, sha256_digest(b"actual"));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(s.blob_path(&wrong).is_none());
    assert!(s.blob_path(&sha256_digest(b"actual")).is_none());

    s.link_blob("app", &digest).unwrap();
    assert!(s.repo_has_blob("app", &digest));
    assert!(!s.repo_has_blob("other", &digest));
    assert!(s.delete_blob(&digest).unwrap());
    assert!(!s.delete_blob(&digest).unwrap());
    assert!(!s.repo_has_blob("app", &digest));
}

#[test]
fn manifests_tags_and_repositories() {
    let (_d, s) = open_store();
    let img = TestImage::new(vec![gzip(&layer_tar(&[E::File("a", b"1", 0o644)]))]);
    let digest = img.push(&s, "team/app", "v1");
    assert_eq!(digest, img.digest());
    assert_eq!(s.tags("team/app"), vec!["v1"]);
    assert_eq!(s.repositories(), vec!["team/app"]);
    for d in img.blobs() {
        assert!(s.repo_has_blob("team/app", &sha256_digest(d)), "blob linked by the manifest");
    }

    let got = s.get_manifest("team/app", "v1").unwrap().unwrap();
    assert_eq!(got.digest, digest);
    assert_eq!(got.media_type, mt::OCI_MANIFEST);
    assert_eq!(got.bytes, img.manifest);
    assert_eq!(s.get_manifest("team/app", &digest).unwrap().unwrap().digest, digest);
    assert!(s.get_manifest("team/app", "nope").unwrap().is_none());
    assert!(s.get_manifest("other", "v1").unwrap().is_none());
    assert!(matches!(s.get_manifest("team/app", "sha256:zz"), Err(ImageError::InvalidReference(_))));

    // By digest: must match the bytes.
    let wrong = sha256_digest(b"x");
    assert!(matches!(
        s.put_manifest("team/app", &wrong, mt::OCI_MANIFEST, &img.manifest),
        Err(ImageError::DigestMismatch { .. })
    ));
    assert_eq!(s.put_manifest("team/app", &digest, "", &img.manifest).unwrap(), digest);

    s.tag_manifest("team/app", "latest", &digest).unwrap();
    assert_eq!(s.tags("team/app"), vec!["latest", "v1"]);
    assert!(matches!(s.tag_manifest("team/app", "x", &wrong), Err(ImageError::NotFound(_))));
    let infos = s.manifests("team/app");
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].tags, vec!["latest", "v1"]);
    assert_eq!(infos[0].size_bytes, img.layers[0].len() as u64);
    assert_eq!(infos[0].artifact_media_type.as_deref(), Some(mt::OCI_CONFIG));

    assert!(s.delete_tag("team/app", "latest").unwrap());
    assert!(!s.delete_tag("team/app", "latest").unwrap());
    assert!(s.delete_manifest("team/app", &digest).unwrap());
    assert!(s.tags("team/app").is_empty(), "tags go with their manifest");
    assert!(s.get_manifest("team/app", &digest).unwrap().is_none());
    assert!(!s.delete_manifest("team/app", &digest).unwrap());

    s.delete_repository("team/app").unwrap();
    assert!(s.repositories().is_empty());
    assert!(matches!(
        s.put_manifest("Bad Name", "v1", "", &img.manifest),
        Err(ImageError::InvalidReference(_))
    ));
}

#[test]
fn manifest_referencing_missing_blob_is_refused() {
    let (_d, s) = open_store();
    let img = TestImage::new(vec![layer_tar(&[E::File("a", b"1", 0o644)])]);
    s.put_blob(&img.config).unwrap();
    // The layer was never uploaded.
    match s.put_manifest("app", "v1", mt::OCI_MANIFEST, &img.manifest) {
        Err(ImageError::ManifestBlobUnknown(d)) => assert_eq!(d, sha256_digest(&img.layers[0])),
        other => panic!("expected ManifestBlobUnknown, got {other:?}"),
    }
    assert!(s.tags("app").is_empty());
    // An index whose child manifest is missing.
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"mediaType":mt::OCI_INDEX,
        "manifests":[{"mediaType":mt::OCI_MANIFEST,"digest":img.digest(),"size":img.manifest.len()}]}))
    .unwrap();
    assert!(matches!(
        s.put_manifest("app", "v1", mt::OCI_INDEX, &index),
        Err(ImageError::ManifestBlobUnknown(_))
    ));
    assert!(matches!(
        s.put_manifest("app", "v1", mt::OCI_MANIFEST, b"not json"),
        Err(ImageError::InvalidManifest(_))
    ));
}

#[test]
fn referrers_and_index_sizes() {
    let (_d, s) = open_store();
    let img = TestImage::new(vec![layer_tar(&[E::File("a", b"1", 0o644)])]);
    let subject = img.push(&s, "app", "v1");
    // An artifact (a signature, say) whose subject is the image.
    let art_config = b"{}".to_vec();
    s.put_blob(&art_config).unwrap();
    let sig = b"signature".to_vec();
    s.put_blob(&sig).unwrap();
    let art = serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"mediaType":mt::OCI_MANIFEST,
        "artifactType":"application/vnd.example.sig",
        "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":sha256_digest(&art_config),"size":2},
        "layers":[{"mediaType":"application/octet-stream","digest":sha256_digest(&sig),"size":sig.len()}],
        "subject":{"mediaType":mt::OCI_MANIFEST,"digest":subject,"size":img.manifest.len()},
        "annotations":{"k":"v"}}))
    .unwrap();
    let art_digest = s.put_manifest("app", &sha256_digest(&art), mt::OCI_MANIFEST, &art).unwrap();
    let refs = s.referrers("app", &subject);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["digest"], art_digest);
    assert_eq!(refs[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(refs[0]["annotations"]["k"], "v");
    assert_eq!(refs[0]["size"], art.len());
    assert!(s.referrers("app", &art_digest).is_empty());

    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"mediaType":mt::OCI_INDEX,
        "manifests":[{"mediaType":mt::OCI_MANIFEST,"digest":subject,"size":img.manifest.len(),
                      "platform":{"os":"linux","architecture":"amd64"}}]}))
    .unwrap();
    let idx = s.put_manifest("app", "multi", mt::OCI_INDEX, &index).unwrap();
    let info = s.manifests("app").into_iter().find(|m| m.digest == idx).unwrap();
    assert_eq!(info.media_type, mt::OCI_INDEX);
    assert_eq!(info.size_bytes, img.layers[0].len() as u64);
}

#[test]
fn metadata_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let img = TestImage::new(vec![layer_tar(&[E::File("a", b"1", 0o644)])]);
    let digest = {
        let s = open_at(dir.path());
        let d = img.push(&s, "app", "v1");
        s.link_blob("other", &sha256_digest(&img.config)).unwrap();
        d
    };
    let s = open_at(dir.path());
    assert_eq!(s.repositories(), vec!["app", "other"]);
    assert_eq!(s.get_manifest("app", "v1").unwrap().unwrap().digest, digest);
    assert!(s.repo_has_blob("other", &sha256_digest(&img.config)));
    assert_eq!(s.manifests("app").len(), 1);
}

#[test]
fn deleting_a_blob_from_one_repository_keeps_it_for_the_others() {
    let (_d, s) = open_store();
    let digest = s.put_blob(b"shared layer").unwrap();
    s.link_blob("a", &digest).unwrap();
    s.link_blob("b", &digest).unwrap();

    assert!(s.delete_repository_blob("a", &digest).unwrap());
    assert!(!s.repo_has_blob("a", &digest));
    assert!(s.repo_has_blob("b", &digest), "b's link and the file survive");
    assert!(!s.delete_repository_blob("a", &digest).unwrap(), "no link left in a");
    assert!(!s.delete_repository_blob("nope", &digest).unwrap());

    // The last link goes: nothing references the file any more, so it goes too — unless it
    // was written moments ago (it may be mid-push elsewhere).
    s.link_blob("b", &digest).unwrap();
    assert!(s.delete_repository_blob("b", &digest).unwrap());
    assert!(s.blob_path(&digest).is_some(), "a fresh blob is left alone");
    s.link_blob("b", &digest).unwrap();
    age(&s.blob_path(&digest).unwrap());
    assert!(s.delete_repository_blob("b", &digest).unwrap());
    assert!(s.blob_path(&digest).is_none());

    // A blob a stored manifest references stays on disk even with no link left.
    let img = TestImage::new(vec![gzip(&layer_tar(&[E::File("x", b"1", 0o644)]))]);
    let m = img.push(&s, "app", "v1");
    let layer = sha256_digest(&img.layers[0]);
    age(&s.blob_path(&layer).unwrap());
    assert!(s.repo_has_blob("app", &layer));
    assert!(s.delete_repository_blob("app", &layer).unwrap());
    assert!(!s.repo_has_blob("app", &layer));
    assert!(s.blob_path(&layer).is_some(), "still referenced by app@{m}");
    // The manifest's own blob is a manifest: never removed through a blob delete.
    s.link_blob("other", &m).unwrap();
    age(&s.blob_path(&m).unwrap());
    assert!(s.delete_repository_blob("other", &m).unwrap());
    assert!(s.blob_path(&m).is_some());
}

/// Backdates a file's mtime past the store's fresh-blob protection.
fn age(path: &std::path::Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).unwrap();
}
