//! ECR's API-side layer push (what the ECR proxy does for `docker push`): InitiateLayerUpload
//! opens a session, UploadLayerPart appends byte ranges strictly in order, CompleteLayerUpload
//! checks the digest and commits the blob into the shared image store, linked to the
//! repository — so a manifest put with PutImage (or through the registry) can then use it.
//!
//! Parts go to a file in the image store's upload dir; a sidecar file names the repository,
//! so a session survives a server restart (the received size is the file's length).
//! Abandoned files are swept with the registry's other stale uploads.
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use nimbus_images::{ImageError, is_valid_digest};
use nimbus_model::Scope;
use parking_lot::Mutex;

use crate::ecr::Repository;
use crate::{EcrEngine, RegistryError};

/// The part size InitiateLayerUpload advertises (parts of any size are accepted).
pub const PART_SIZE: u64 = 10 * 1024 * 1024;

#[derive(Default)]
pub(crate) struct LayerUploads {
    sessions: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
}

struct Session {
    /// `Repository::key()`: account, region and name.
    repo_key: String,
    path: PathBuf,
    /// Bytes received so far; the next part must start here.
    received: u64,
}

fn file_name(upload_id: &str) -> String {
    format!("ecr-layer-{upload_id}")
}

fn valid_upload_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok() && id.len() == 36
}

impl EcrEngine {
    fn upload_not_found(scope: &Scope, repo: &Repository, upload_id: &str) -> RegistryError {
        RegistryError::UploadNotFound(format!(
            "Upload with id '{upload_id}' is not found for repository with name '{}' in the registry with id '{}'",
            repo.name, scope.account
        ))
    }

    /// The session, from memory or (after a restart) from its files in the upload dir.
    fn layer_session(
        &self,
        scope: &Scope,
        repo: &Repository,
        upload_id: &str,
    ) -> Result<Arc<Mutex<Session>>, RegistryError> {
        let not_found = || Self::upload_not_found(scope, repo, upload_id);
        if !valid_upload_id(upload_id) {
            return Err(not_found());
        }
        let mut sessions = self.layer_uploads.sessions.lock();
        let session = match sessions.get(upload_id) {
            Some(s) => s.clone(),
            None => {
                let dir = self.images().upload_dir();
                let path = dir.join(file_name(upload_id));
                let repo_key = std::fs::read_to_string(dir.join(format!("{}.repo", file_name(upload_id))))
                    .map_err(|_| not_found())?;
                let received = std::fs::metadata(&path).map_err(|_| not_found())?.len();
                let s = Arc::new(Mutex::new(Session { repo_key, path, received }));
                sessions.insert(upload_id.to_string(), s.clone());
                s
            }
        };
        if session.lock().repo_key != repo.key() {
            return Err(not_found());
        }
        Ok(session)
    }

    fn forget_layer_session(&self, upload_id: &str, path: &std::path::Path) {
        self.layer_uploads.sessions.lock().remove(upload_id);
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(path.with_file_name(format!("{}.repo", file_name(upload_id))));
    }

    /// InitiateLayerUpload: a new upload id and the advertised part size.
    pub fn initiate_layer_upload(&self, scope: &Scope, name: &str) -> Result<(String, u64), RegistryError> {
        let repo = self.get_repository(scope, name)?;
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.images().upload_dir();
        std::fs::create_dir_all(&dir).map_err(ImageError::from)?;
        let path = dir.join(file_name(&id));
        std::fs::write(&path, b"").map_err(ImageError::from)?;
        std::fs::write(dir.join(format!("{}.repo", file_name(&id))), repo.key()).map_err(ImageError::from)?;
        self.layer_uploads
            .sessions
            .lock()
            .insert(id.clone(), Arc::new(Mutex::new(Session { repo_key: repo.key(), path, received: 0 })));
        Ok((id, PART_SIZE))
    }

    /// UploadLayerPart: appends `blob` as bytes `first..=last`; the part must start right after
    /// the last byte received and its range must match its length. Returns `lastByteReceived`.
    pub fn upload_layer_part(
        &self,
        scope: &Scope,
        name: &str,
        upload_id: &str,
        first: u64,
        last: u64,
        blob: &[u8],
    ) -> Result<u64, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        let session = self.layer_session(scope, &repo, upload_id)?;
        let mut s = session.lock();
        let fits = !blob.is_empty()
            && first == s.received
            && first.checked_add(blob.len() as u64 - 1).is_some_and(|end| end == last);
        if !fits {
            return Err(RegistryError::InvalidLayerPart {
                message: format!(
                    "The part with first byte {first} and last byte {last} ({} bytes) does not continue upload '{upload_id}', which has received {} bytes",
                    blob.len(),
                    s.received
                ),
                registry_id: scope.account.clone(),
                repository: repo.name.clone(),
                upload_id: upload_id.to_string(),
                last_valid_byte_received: s.received.saturating_sub(1),
            });
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&s.path).map_err(ImageError::from)?;
        // A short write would leave the file ahead of `received`: put it back to the boundary.
        if let Err(e) = f.write_all(blob).and_then(|()| f.sync_data()) {
            let _ = f.set_len(s.received);
            return Err(ImageError::from(e).into());
        }
        s.received += blob.len() as u64;
        Ok(last)
    }

    /// CompleteLayerUpload: checks the bytes against the digest, stores the blob and links it
    /// to the repository. The session ends either way (except for a malformed request).
    pub fn complete_layer_upload(
        &self,
        scope: &Scope,
        name: &str,
        upload_id: &str,
        digests: &[String],
    ) -> Result<String, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        let [digest] = digests else {
            return Err(RegistryError::InvalidParameter(
                "Invalid parameter at 'layerDigests': exactly one layer digest is supported".into(),
            ));
        };
        let session = self.layer_session(scope, &repo, upload_id)?;
        let s = session.lock();
        let path = s.path.clone();
        if s.received == 0 {
            drop(s);
            self.forget_layer_session(upload_id, &path);
            return Err(RegistryError::EmptyUpload(format!(
                "The upload with id '{upload_id}' does not contain any layer parts"
            )));
        }
        if !is_valid_digest(digest) {
            drop(s);
            self.forget_layer_session(upload_id, &path);
            return Err(RegistryError::InvalidLayer(format!("Invalid layer digest '{digest}'")));
        }
        let existed = self.images().repo_has_blob(&repo.name, digest);
        let committed = self.images().commit_blob(&path, digest);
        drop(s);
        self.forget_layer_session(upload_id, &path);
        match committed {
            Ok(_) => {}
            Err(ImageError::DigestMismatch { expected, actual }) => {
                return Err(RegistryError::InvalidLayer(format!(
                    "The calculated digest '{actual}' of the uploaded layer does not match the provided digest '{expected}'"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        if existed {
            return Err(RegistryError::LayerAlreadyExists(format!(
                "The layer '{digest}' already exists in the repository with name '{}' in registry with id '{}'",
                repo.name, scope.account
            )));
        }
        self.images().link_blob(&repo.name, digest)?;
        Ok(digest.clone())
    }
}
