//! The ECR control engine: repositories per account and region (written through to the
//! Store), tag mutability, lifecycle and repository policies, resource tags and the
//! authorization tokens the registry accepts. Images themselves live in the shared
//! `ImageStore`, keyed by repository name: one image namespace per node.
use crate::RegistryError;
use crate::lifecycle;
use chrono::{DateTime, TimeZone, Utc};
use nimbus_images::{ImageError, ImageStore, ManifestInfo, is_valid_tag, media_types, sha256_digest};
use nimbus_model::Scope;
use nimbus_store::Store;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

const REPOS: &str = "ecr.repositories";
const TOKENS: &str = "ecr.tokens";
/// ECR authorization tokens are valid for 12 hours.
pub const TOKEN_LIFETIME_HOURS: i64 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TagMutability {
    Mutable,
    Immutable,
    ImmutableWithExclusion,
    MutableWithExclusion,
}

impl TagMutability {
    pub fn parse(s: &str) -> Option<TagMutability> {
        Some(match s {
            "MUTABLE" => TagMutability::Mutable,
            "IMMUTABLE" => TagMutability::Immutable,
            "IMMUTABLE_WITH_EXCLUSION" => TagMutability::ImmutableWithExclusion,
            "MUTABLE_WITH_EXCLUSION" => TagMutability::MutableWithExclusion,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TagMutability::Mutable => "MUTABLE",
            TagMutability::Immutable => "IMMUTABLE",
            TagMutability::ImmutableWithExclusion => "IMMUTABLE_WITH_EXCLUSION",
            TagMutability::MutableWithExclusion => "MUTABLE_WITH_EXCLUSION",
        }
    }
}

/// `imageTagMutabilityExclusionFilters` entry (filterType is always WILDCARD today).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutabilityExclusion {
    pub filter_type: String,
    pub filter: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repository {
    pub account: String,
    pub region: String,
    pub name: String,
    pub created_at_ms: i64,
    pub tag_mutability: TagMutability,
    #[serde(default)]
    pub mutability_exclusions: Vec<MutabilityExclusion>,
    pub scan_on_push: bool,
    pub encryption_type: String,
    pub kms_key: Option<String>,
    pub tags: Vec<(String, String)>,
    pub lifecycle_policy: Option<String>,
    pub lifecycle_evaluated_at_ms: Option<i64>,
    pub policy: Option<String>,
}

impl Repository {
    pub fn arn(&self) -> String {
        format!("arn:aws:ecr:{}:{}:repository/{}", self.region, self.account, self.name)
    }
    /// AWS's form; the registry listener answers to `<listen addr>/<name>` as well.
    pub fn uri(&self) -> String {
        format!("{}.dkr.ecr.{}.amazonaws.com/{}", self.account, self.region, self.name)
    }
    pub fn created_at(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.created_at_ms).single().unwrap_or_default()
    }
    /// Whether pushing `tag` onto a different image is refused.
    pub fn tag_is_immutable(&self, tag: &str) -> bool {
        let excluded = || self.mutability_exclusions.iter().any(|e| lifecycle::tag_matches(&e.filter, tag));
        match self.tag_mutability {
            TagMutability::Mutable => false,
            TagMutability::Immutable => true,
            TagMutability::ImmutableWithExclusion => !excluded(),
            TagMutability::MutableWithExclusion => excluded(),
        }
    }
    pub(crate) fn key(&self) -> String {
        key(&self.account, &self.region, &self.name)
    }
}

fn key(account: &str, region: &str, name: &str) -> String {
    format!("{account}:{region}:{name}")
}

#[derive(Debug, Clone, Default)]
pub struct CreateRepository {
    pub name: String,
    pub tag_mutability: Option<TagMutability>,
    pub mutability_exclusions: Vec<MutabilityExclusion>,
    pub scan_on_push: bool,
    pub encryption_type: Option<String>,
    pub kms_key: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// An image named by digest and/or tag (ECR's `ImageIdentifier`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageId {
    pub digest: Option<String>,
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    InvalidImageDigest,
    InvalidImageTag,
    ImageTagDoesNotMatchDigest,
    ImageNotFound,
    MissingDigestAndTag,
    /// BatchGetImage: the stored manifest's media type is not among `acceptedMediaTypes`.
    UnsupportedImageType,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::InvalidImageDigest => "InvalidImageDigest",
            FailureCode::InvalidImageTag => "InvalidImageTag",
            FailureCode::ImageTagDoesNotMatchDigest => "ImageTagDoesNotMatchDigest",
            FailureCode::ImageNotFound => "ImageNotFound",
            FailureCode::MissingDigestAndTag => "MissingDigestAndTag",
            FailureCode::UnsupportedImageType => "UnsupportedImageType",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImageFailure {
    pub id: ImageId,
    pub code: FailureCode,
    pub reason: String,
}

/// A manifest fetched by BatchGetImage / stored by PutImage.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    pub id: ImageId,
    pub manifest: String,
    pub media_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagStatusFilter {
    Tagged,
    Untagged,
    Any,
}

/// A lifecycle dry run: the policy text and each image it would expire with the priority of
/// the rule that selects it.
pub type LifecyclePreview = (String, Vec<(ManifestInfo, u64)>);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    account: String,
    region: String,
    expires_at_ms: i64,
}

pub struct EcrEngine {
    store: Arc<dyn Store>,
    images: ImageStore,
    repos: RwLock<BTreeMap<String, Repository>>,
    tokens: RwLock<HashMap<String, TokenRecord>>,
    /// Lifecycle dry runs by repository key: (policy text, expiring images with rule priority).
    previews: RwLock<HashMap<String, LifecyclePreview>>,
    /// `http://<registry listen addr>` (GetAuthorizationToken's proxyEndpoint).
    endpoint: RwLock<String>,
    /// ECR API layer uploads in progress (InitiateLayerUpload … CompleteLayerUpload).
    pub(crate) layer_uploads: crate::layer_upload::LayerUploads,
}

fn valid_repo_name(name: &str) -> bool {
    // ECR: (?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*, 2..=256 chars.
    if name.len() < 2 || name.len() > 256 {
        return false;
    }
    name.split('/').all(|comp| {
        let b = comp.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
            && !b.windows(2).any(|w| matches!(w[0], b'.' | b'/') && matches!(w[1], b'.' | b'/'))
    })
}

/// The two per-repository policy documents, which share their get/delete behaviour.
#[derive(Debug, Clone, Copy)]
enum PolicyKind {
    Lifecycle,
    Repository,
}

impl PolicyKind {
    fn label(self) -> &'static str {
        match self {
            PolicyKind::Lifecycle => "Lifecycle",
            PolicyKind::Repository => "Repository",
        }
    }

    fn text(self, repo: &Repository) -> Option<&String> {
        match self {
            PolicyKind::Lifecycle => repo.lifecycle_policy.as_ref(),
            PolicyKind::Repository => repo.policy.as_ref(),
        }
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl EcrEngine {
    pub fn open(store: Arc<dyn Store>, images: ImageStore) -> Result<Arc<EcrEngine>, RegistryError> {
        let mut repos = BTreeMap::new();
        for (k, v) in store.list(REPOS)? {
            match serde_json::from_slice::<Repository>(&v) {
                Ok(r) => {
                    repos.insert(k, r);
                }
                Err(e) => tracing::warn!("ecr: skipping corrupt repository record {k}: {e}"),
            }
        }
        let now = now_ms();
        let mut tokens = HashMap::new();
        for (k, v) in store.list(TOKENS)? {
            match serde_json::from_slice::<TokenRecord>(&v) {
                Ok(t) if t.expires_at_ms > now => {
                    tokens.insert(k, t);
                }
                _ => {
                    let _ = store.delete(TOKENS, &k);
                }
            }
        }
        Ok(Arc::new(EcrEngine {
            store,
            images,
            repos: RwLock::new(repos),
            tokens: RwLock::new(tokens),
            previews: RwLock::default(),
            endpoint: RwLock::new("http://127.0.0.1:4567".into()),
            layer_uploads: Default::default(),
        }))
    }

    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    pub fn set_registry_endpoint(&self, url: String) {
        *self.endpoint.write() = url;
    }
    pub fn registry_endpoint(&self) -> String {
        self.endpoint.read().clone()
    }

    fn save(&self, repo: &Repository) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec(repo).map_err(|e| RegistryError::Internal(e.to_string()))?;
        self.store.put(REPOS, &repo.key(), &bytes)?;
        self.repos.write().insert(repo.key(), repo.clone());
        Ok(())
    }

    fn not_found(scope: &Scope, name: &str) -> RegistryError {
        RegistryError::RepositoryNotFound(format!(
            "The repository with name '{name}' does not exist in the registry with id '{}'",
            scope.account
        ))
    }

    pub fn get_repository(&self, scope: &Scope, name: &str) -> Result<Repository, RegistryError> {
        self.repos
            .read()
            .get(&key(&scope.account, &scope.region, name))
            .cloned()
            .ok_or_else(|| Self::not_found(scope, name))
    }

    pub fn create_repository(
        &self,
        scope: &Scope,
        req: CreateRepository,
    ) -> Result<Repository, RegistryError> {
        if !valid_repo_name(&req.name) {
            return Err(RegistryError::InvalidParameter(
                "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*''"
                .into(),
            ));
        }
        if self.repos.read().contains_key(&key(&scope.account, &scope.region, &req.name)) {
            return Err(RegistryError::RepositoryAlreadyExists(format!(
                "The repository with name '{}' already exists in the registry with id '{}'",
                req.name, scope.account
            )));
        }
        check_tags(&req.tags)?;
        let encryption_type = req.encryption_type.unwrap_or_else(|| "AES256".into());
        if !matches!(encryption_type.as_str(), "AES256" | "KMS" | "KMS_DSSE") {
            return Err(RegistryError::InvalidParameter(format!(
                "Invalid encryptionType '{encryption_type}'"
            )));
        }
        let repo = Repository {
            account: scope.account.clone(),
            region: scope.region.clone(),
            name: req.name,
            created_at_ms: now_ms(),
            tag_mutability: req.tag_mutability.unwrap_or(TagMutability::Mutable),
            mutability_exclusions: req.mutability_exclusions,
            scan_on_push: req.scan_on_push,
            kms_key: if encryption_type == "AES256" { None } else { req.kms_key },
            encryption_type,
            tags: req.tags,
            lifecycle_policy: None,
            lifecycle_evaluated_at_ms: None,
            policy: None,
        };
        self.images.ensure_repository(&repo.name)?;
        self.save(&repo)?;
        Ok(repo)
    }

    /// The repository an import (or another implicit creator) wrote to: created with
    /// defaults when missing, so ECR lists images that `nimbus image import` brought in.
    pub fn ensure_repository(&self, scope: &Scope, name: &str) -> Result<Repository, RegistryError> {
        if let Some(r) = self.find_for_registry(name, Some(scope)) {
            return Ok(r);
        }
        match self.create_repository(scope, CreateRepository { name: name.to_string(), ..Default::default() })
        {
            Err(RegistryError::RepositoryAlreadyExists(_)) => self.get_repository(scope, name),
            other => other,
        }
    }

    /// All repositories of a scope, by name; `names` picks (each must exist).
    pub fn describe_repositories(
        &self,
        scope: &Scope,
        names: Option<&[String]>,
    ) -> Result<Vec<Repository>, RegistryError> {
        let repos = self.repos.read();
        match names {
            Some(names) => names
                .iter()
                .map(|n| {
                    repos
                        .get(&key(&scope.account, &scope.region, n))
                        .cloned()
                        .ok_or_else(|| Self::not_found(scope, n))
                })
                .collect(),
            None => Ok(repos
                .values()
                .filter(|r| r.account == scope.account && r.region == scope.region)
                .cloned()
                .collect()),
        }
    }

    pub fn delete_repository(
        &self,
        scope: &Scope,
        name: &str,
        force: bool,
    ) -> Result<Repository, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        if !force && !self.images.manifests(name).is_empty() {
            return Err(RegistryError::RepositoryNotEmpty(format!(
                "The repository with name '{name}' in registry with id '{}' cannot be deleted because it still contains images",
                scope.account
            )));
        }
        self.store.delete(REPOS, &repo.key())?;
        self.repos.write().remove(&repo.key());
        // The image namespace is per node: keep the content while another account's
        // repository of the same name still uses it.
        if self.repos.read().values().all(|r| r.name != name) {
            self.images.delete_repository(name)?;
        }
        Ok(repo)
    }

    /// The repository a registry request for `name` addresses: the caller's scope first (a
    /// token names it), then the default scope, then any account's.
    pub fn find_for_registry(&self, name: &str, scope: Option<&Scope>) -> Option<Repository> {
        let repos = self.repos.read();
        if let Some(s) = scope
            && let Some(r) = repos.get(&key(&s.account, &s.region, name))
        {
            return Some(r.clone());
        }
        let d = Scope::default();
        if let Some(r) = repos.get(&key(&d.account, &d.region, name)) {
            return Some(r.clone());
        }
        repos.values().find(|r| r.name == name).cloned()
    }

    /// Whether the registry serves `name` (an ECR repository, or one an import created).
    pub fn registry_repository_exists(&self, name: &str) -> bool {
        self.find_for_registry(name, None).is_some() || self.images.repository_exists(name)
    }

    /// Every name the registry's `_catalog` lists.
    pub fn catalog(&self) -> Vec<String> {
        let mut names: Vec<String> = self.repos.read().values().map(|r| r.name.clone()).collect();
        names.extend(self.images.repositories());
        names.sort();
        names.dedup();
        names
    }

    /// Refuses moving an immutable tag to another image (registry PUT and PutImage).
    pub fn check_tag_push(&self, repo: &Repository, tag: &str, digest: &str) -> Result<(), RegistryError> {
        if !repo.tag_is_immutable(tag) {
            return Ok(());
        }
        match self.images.get_manifest(&repo.name, tag)? {
            Some(existing) if existing.digest != digest => {
                Err(RegistryError::ImageTagAlreadyExists(format!(
                    "The image tag '{tag}' already exists in the '{}' repository and cannot be overwritten because the repository is immutable.",
                    repo.name
                )))
            }
            _ => Ok(()),
        }
    }

    pub fn set_tag_mutability(
        &self,
        scope: &Scope,
        name: &str,
        mutability: TagMutability,
        exclusions: Vec<MutabilityExclusion>,
    ) -> Result<Repository, RegistryError> {
        let mut repo = self.get_repository(scope, name)?;
        repo.tag_mutability = mutability;
        repo.mutability_exclusions = exclusions;
        self.save(&repo)?;
        Ok(repo)
    }

    pub fn set_scanning(
        &self,
        scope: &Scope,
        name: &str,
        scan_on_push: bool,
    ) -> Result<Repository, RegistryError> {
        let mut repo = self.get_repository(scope, name)?;
        repo.scan_on_push = scan_on_push;
        self.save(&repo)?;
        Ok(repo)
    }

    // ---- images ----------------------------------------------------------------------

    pub fn list_images(&self, scope: &Scope, name: &str) -> Result<Vec<ManifestInfo>, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        Ok(self.images.manifests(&repo.name))
    }

    /// Looks an `ImageId` up among the repository's manifests.
    fn lookup(&self, name: &str, id: &ImageId) -> Result<ManifestInfo, (FailureCode, String)> {
        if id.digest.is_none() && id.tag.is_none() {
            return Err((
                FailureCode::MissingDigestAndTag,
                "Invalid request parameters: both tag and digest cannot be null".into(),
            ));
        }
        if let Some(d) = &id.digest
            && !nimbus_images::is_valid_digest(d)
        {
            return Err((FailureCode::InvalidImageDigest, "Invalid image digest".into()));
        }
        if let Some(t) = &id.tag
            && !is_valid_tag(t)
        {
            return Err((FailureCode::InvalidImageTag, "Invalid image tag".into()));
        }
        let all = self.images.manifests(name);
        let by_tag = id.tag.as_ref().map(|t| all.iter().find(|m| m.tags.contains(t)));
        let by_digest = id.digest.as_ref().map(|d| all.iter().find(|m| &m.digest == d));
        match (by_digest, by_tag) {
            (Some(Some(d)), Some(Some(t))) if d.digest != t.digest => Err((
                FailureCode::ImageTagDoesNotMatchDigest,
                "Invalid request parameters: given tag does not map to the given digest".into(),
            )),
            (Some(Some(d)), Some(None)) => {
                let _ = d;
                Err((
                    FailureCode::ImageTagDoesNotMatchDigest,
                    "Invalid request parameters: given tag does not map to the given digest".into(),
                ))
            }
            (Some(Some(m)), _) | (None, Some(Some(m))) => Ok(m.clone()),
            _ => Err((FailureCode::ImageNotFound, "Requested image not found".into())),
        }
    }

    pub fn describe_images(
        &self,
        scope: &Scope,
        name: &str,
        ids: Option<&[ImageId]>,
    ) -> Result<Vec<ManifestInfo>, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        match ids {
            None => Ok(self.images.manifests(&repo.name)),
            Some(ids) => {
                let mut out: Vec<ManifestInfo> = Vec::new();
                for id in ids {
                    match self.lookup(&repo.name, id) {
                        Ok(m) => {
                            if !out.iter().any(|o| o.digest == m.digest) {
                                out.push(m);
                            }
                        }
                        Err(_) => {
                            return Err(RegistryError::ImageNotFound(format!(
                                "The image with imageId {{imageDigest:'{}', imageTag:'{}'}} does not exist within the repository with name '{}' in the registry with id '{}'",
                                id.digest.as_deref().unwrap_or("null"),
                                id.tag.as_deref().unwrap_or("null"),
                                repo.name,
                                scope.account
                            )));
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// BatchGetImage. With `accepted` media types, a manifest of another type is a failure
    /// (`UnsupportedImageType`): manifests are served as pushed, never converted.
    pub fn batch_get_image(
        &self,
        scope: &Scope,
        name: &str,
        ids: &[ImageId],
        accepted: Option<&[String]>,
    ) -> Result<(Vec<FetchedImage>, Vec<ImageFailure>), RegistryError> {
        let repo = self.get_repository(scope, name)?;
        let mut images = Vec::new();
        let mut failures = Vec::new();
        for id in ids {
            let found = self.lookup(&repo.name, id).and_then(|m| {
                match self.images.get_manifest(&repo.name, &m.digest) {
                    Ok(Some(sm))
                        if accepted.is_some_and(|a| !a.iter().any(|t| t.trim() == sm.media_type)) =>
                    {
                        Err((FailureCode::UnsupportedImageType, "Invalid image type".into()))
                    }
                    Ok(Some(sm)) => Ok((m, sm)),
                    _ => Err((FailureCode::ImageNotFound, "Requested image not found".into())),
                }
            });
            match found {
                Ok((m, sm)) => images.push(FetchedImage {
                    id: ImageId { digest: Some(m.digest.clone()), tag: id.tag.clone() },
                    manifest: String::from_utf8_lossy(&sm.bytes).into_owned(),
                    media_type: sm.media_type,
                }),
                Err((code, reason)) => failures.push(ImageFailure { id: id.clone(), code, reason }),
            }
        }
        Ok((images, failures))
    }

    /// Deletes images by digest (with all their tags) or tags (the image goes with its last tag).
    pub fn batch_delete_image(
        &self,
        scope: &Scope,
        name: &str,
        ids: &[ImageId],
    ) -> Result<(Vec<ImageId>, Vec<ImageFailure>), RegistryError> {
        let repo = self.get_repository(scope, name)?;
        let mut deleted = Vec::new();
        let mut failures = Vec::new();
        for id in ids {
            let m = match self.lookup(&repo.name, id) {
                Ok(m) => m,
                Err((code, reason)) => {
                    failures.push(ImageFailure { id: id.clone(), code, reason });
                    continue;
                }
            };
            match &id.tag {
                Some(tag) if id.digest.is_none() && m.tags.len() > 1 => {
                    self.images.delete_tag(&repo.name, tag)?;
                    deleted.push(ImageId { digest: Some(m.digest.clone()), tag: Some(tag.clone()) });
                }
                _ => {
                    self.images.delete_manifest(&repo.name, &m.digest)?;
                    if m.tags.is_empty() {
                        deleted.push(ImageId { digest: Some(m.digest.clone()), tag: None });
                    }
                    for t in &m.tags {
                        deleted.push(ImageId { digest: Some(m.digest.clone()), tag: Some(t.clone()) });
                    }
                }
            }
        }
        Ok((deleted, failures))
    }

    /// ECR's PutImage: stores a manifest whose blobs were pushed through the registry.
    pub fn put_image(
        &self,
        scope: &Scope,
        name: &str,
        manifest: &str,
        media_type: Option<&str>,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> Result<FetchedImage, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        let bytes = manifest.as_bytes();
        let actual = sha256_digest(bytes);
        if let Some(d) = digest
            && d != actual
        {
            return Err(RegistryError::ImageDigestDoesNotMatch(format!(
                "Provided digest {d} does not match the digest of the manifest {actual}"
            )));
        }
        let media_type = match media_type {
            Some(m) => m.to_string(),
            None => manifest_media_type(bytes).ok_or_else(|| {
                RegistryError::InvalidParameter("Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Invalid JSON syntax'".into())
            })?,
        };
        if let Some(t) = tag {
            if !is_valid_tag(t) {
                return Err(RegistryError::InvalidParameter(format!(
                    "Invalid parameter at 'imageTag' failed to satisfy constraint: '{t}'"
                )));
            }
            if let Some(existing) = self.images.get_manifest(&repo.name, t)?
                && existing.digest == actual
            {
                return Err(RegistryError::ImageAlreadyExists(format!(
                    "Image with digest '{actual}' and tag '{t}' already exists in the repository with name '{}' in registry with id '{}'",
                    repo.name, scope.account
                )));
            }
            self.check_tag_push(&repo, t, &actual)?;
        } else if self.images.get_manifest(&repo.name, &actual)?.is_some() {
            return Err(RegistryError::ImageAlreadyExists(format!(
                "Image with digest '{actual}' already exists in the repository with name '{}' in registry with id '{}'",
                repo.name, scope.account
            )));
        }
        let reference = tag.unwrap_or(&actual);
        let stored = self.images.put_manifest(&repo.name, reference, &media_type, bytes).map_err(|e| match e {
            ImageError::ManifestBlobUnknown(d) if media_types::is_index(&media_type) => {
                RegistryError::ReferencedImagesNotFound(format!("Some of the referenced images ({d}) do not exist in the repository"))
            }
            ImageError::ManifestBlobUnknown(d) => {
                RegistryError::LayersNotFound(format!("Layers with digests '[{d}]' required for pushing image into repository with name '{}' in the registry with id '{}' do not exist", repo.name, scope.account))
            }
            ImageError::InvalidManifest(m) => RegistryError::InvalidParameter(format!("Invalid parameter at 'imageManifest' failed to satisfy constraint: '{m}'")),
            other => other.into(),
        })?;
        self.after_push(&repo.name);
        Ok(FetchedImage {
            id: ImageId { digest: Some(stored), tag: tag.map(str::to_string) },
            manifest: manifest.to_string(),
            media_type,
        })
    }

    /// BatchCheckLayerAvailability: the size of each blob the repository can serve (None:
    /// unavailable). Digests must be valid (the caller reports invalid ones as failures).
    pub fn layer_sizes(
        &self,
        scope: &Scope,
        name: &str,
        digests: &[String],
    ) -> Result<Vec<Option<u64>>, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        Ok(digests
            .iter()
            .map(|d| self.images.blob_size(d).filter(|_| self.images.repo_has_blob(&repo.name, d)))
            .collect())
    }

    /// GetDownloadUrlForLayer: where the registry listener serves the blob.
    pub fn layer_download_url(
        &self,
        scope: &Scope,
        name: &str,
        digest: &str,
    ) -> Result<String, RegistryError> {
        let sizes = self.layer_sizes(scope, name, &[digest.to_string()])?;
        if sizes.first().copied().flatten().is_none() {
            return Err(RegistryError::LayersNotFound(format!(
                "The layer with digest '{digest}' does not exist within the repository with name '{name}' in the registry with id '{}'",
                scope.account
            )));
        }
        Ok(format!("{}/v2/{name}/blobs/{digest}", self.registry_endpoint()))
    }

    // ---- lifecycle ----------------------------------------------------------------------

    pub fn put_lifecycle_policy(
        &self,
        scope: &Scope,
        name: &str,
        text: &str,
    ) -> Result<Repository, RegistryError> {
        let mut repo = self.get_repository(scope, name)?;
        lifecycle::parse(text).map_err(|why| {
            RegistryError::InvalidParameter(format!(
                "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {why}'"
            ))
        })?;
        repo.lifecycle_policy = Some(text.to_string());
        self.save(&repo)?;
        self.apply_lifecycle(&repo.name);
        self.get_repository(scope, name)
    }

    pub fn get_lifecycle_policy(&self, scope: &Scope, name: &str) -> Result<Repository, RegistryError> {
        self.repository_with_policy(scope, name, PolicyKind::Lifecycle)
    }

    pub fn delete_lifecycle_policy(&self, scope: &Scope, name: &str) -> Result<Repository, RegistryError> {
        self.delete_policy(scope, name, PolicyKind::Lifecycle)
    }

    /// StartLifecyclePolicyPreview: evaluates `text` (or the repository's policy) without
    /// expiring anything; the result is kept for GetLifecyclePolicyPreview.
    pub fn start_lifecycle_preview(
        &self,
        scope: &Scope,
        name: &str,
        text: Option<&str>,
    ) -> Result<String, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        let text = match text.map(str::to_string).or(repo.lifecycle_policy.clone()) {
            Some(t) => t,
            None => {
                return Err(self.get_lifecycle_policy(scope, name).err().unwrap_or_else(|| {
                    RegistryError::LifecyclePolicyNotFound(format!(
                        "Lifecycle policy does not exist for the repository with name '{name}'"
                    ))
                }));
            }
        };
        let policy = lifecycle::parse(&text).map_err(|why| {
            RegistryError::InvalidParameter(format!(
                "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {why}'"
            ))
        })?;
        let (candidates, infos) = self.lifecycle_candidates(name);
        let results = lifecycle::expired_by_rule(&policy, &candidates, Utc::now())
            .into_iter()
            .filter_map(|(d, priority)| infos.iter().find(|m| m.digest == d).map(|m| (m.clone(), priority)))
            .collect();
        self.previews.write().insert(repo.key(), (text.clone(), results));
        Ok(text)
    }

    /// GetLifecyclePolicyPreview: the policy text and (image, rule priority) it would expire.
    pub fn lifecycle_preview(&self, scope: &Scope, name: &str) -> Result<LifecyclePreview, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        self.previews.read().get(&repo.key()).cloned().ok_or_else(|| {
            RegistryError::LifecyclePolicyPreviewNotFound(format!(
                "There is no dry run for the repository with name '{name}' in the registry with id '{}'",
                scope.account
            ))
        })
    }

    /// The images a lifecycle policy may expire: all but the children of an index (they are
    /// part of that image, never expired on their own).
    fn lifecycle_candidates(&self, name: &str) -> (Vec<lifecycle::Candidate>, Vec<ManifestInfo>) {
        let manifests = self.images.manifests(name);
        let mut children = HashSet::new();
        for m in manifests.iter().filter(|m| media_types::is_index(&m.media_type)) {
            if let Ok(Some(sm)) = self.images.get_manifest(name, &m.digest)
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&sm.bytes)
            {
                for c in v["manifests"].as_array().into_iter().flatten() {
                    if let Some(d) = c["digest"].as_str() {
                        children.insert(d.to_string());
                    }
                }
            }
        }
        let candidates = manifests
            .iter()
            .filter(|m| !children.contains(&m.digest))
            .map(|m| lifecycle::Candidate {
                digest: m.digest.clone(),
                tags: m.tags.clone(),
                pushed_at: m.pushed_at,
            })
            .collect();
        (candidates, manifests)
    }

    /// Runs after every push to `name` (registry PUT, PutImage, import).
    pub fn after_push(&self, name: &str) {
        self.apply_lifecycle(name);
    }

    /// Expires what every lifecycle policy on a repository named `name` selects.
    pub fn apply_lifecycle(&self, name: &str) {
        let repos: Vec<Repository> = self
            .repos
            .read()
            .values()
            .filter(|r| r.name == name && r.lifecycle_policy.is_some())
            .cloned()
            .collect();
        for mut repo in repos {
            let Some(Ok(policy)) = repo.lifecycle_policy.as_deref().map(lifecycle::parse) else { continue };
            let (candidates, _) = self.lifecycle_candidates(name);
            for digest in lifecycle::expired(&policy, &candidates, Utc::now()) {
                match self.images.delete_manifest(name, &digest) {
                    Ok(_) => tracing::info!("ecr lifecycle: expired {name}@{digest}"),
                    Err(e) => tracing::warn!("ecr lifecycle: expiring {name}@{digest}: {e}"),
                }
            }
            repo.lifecycle_evaluated_at_ms = Some(now_ms());
            if let Err(e) = self.save(&repo) {
                tracing::warn!("ecr lifecycle: saving evaluation time of {name}: {e}");
            }
        }
    }

    // ---- repository policies -------------------------------------------------------------

    pub fn set_repository_policy(
        &self,
        scope: &Scope,
        name: &str,
        text: &str,
    ) -> Result<Repository, RegistryError> {
        let mut repo = self.get_repository(scope, name)?;
        if serde_json::from_str::<serde_json::Value>(text).map(|v| !v.is_object()).unwrap_or(true) {
            return Err(RegistryError::InvalidParameter(
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'".into(),
            ));
        }
        repo.policy = Some(text.to_string());
        self.save(&repo)?;
        Ok(repo)
    }

    pub fn get_repository_policy(&self, scope: &Scope, name: &str) -> Result<Repository, RegistryError> {
        self.repository_with_policy(scope, name, PolicyKind::Repository)
    }

    pub fn delete_repository_policy(&self, scope: &Scope, name: &str) -> Result<Repository, RegistryError> {
        self.delete_policy(scope, name, PolicyKind::Repository)
    }

    /// Get*Policy: the repository, or the kind's "policy does not exist" error.
    fn repository_with_policy(
        &self,
        scope: &Scope,
        name: &str,
        kind: PolicyKind,
    ) -> Result<Repository, RegistryError> {
        let repo = self.get_repository(scope, name)?;
        if kind.text(&repo).is_none() {
            let message = format!(
                "{} policy does not exist for the repository with name '{name}' in the registry with id '{}'",
                kind.label(),
                scope.account
            );
            return Err(match kind {
                PolicyKind::Lifecycle => RegistryError::LifecyclePolicyNotFound(message),
                PolicyKind::Repository => RegistryError::RepositoryPolicyNotFound(message),
            });
        }
        Ok(repo)
    }

    /// Delete*Policy: clears the policy and answers with the repository as it was (the
    /// response carries the deleted text).
    fn delete_policy(
        &self,
        scope: &Scope,
        name: &str,
        kind: PolicyKind,
    ) -> Result<Repository, RegistryError> {
        let repo = self.repository_with_policy(scope, name, kind)?;
        let mut updated = repo.clone();
        match kind {
            PolicyKind::Lifecycle => {
                updated.lifecycle_policy = None;
                updated.lifecycle_evaluated_at_ms = None;
            }
            PolicyKind::Repository => updated.policy = None,
        }
        self.save(&updated)?;
        Ok(repo)
    }

    // ---- resource tags ---------------------------------------------------------------------

    fn by_arn(&self, arn: &str) -> Result<Repository, RegistryError> {
        let rest = arn.strip_prefix("arn:aws:ecr:").ok_or_else(|| {
            RegistryError::InvalidParameter(format!(
                "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN {arn}'"
            ))
        })?;
        let mut parts = rest.splitn(3, ':');
        let (Some(region), Some(account), Some(res)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(RegistryError::InvalidParameter(format!(
                "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN {arn}'"
            )));
        };
        let name = res.strip_prefix("repository/").ok_or_else(|| {
            RegistryError::InvalidParameter(format!(
                "Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN {arn}'"
            ))
        })?;
        self.get_repository(&Scope::new(account, region), name)
    }

    pub fn tag_resource(&self, arn: &str, tags: &[(String, String)]) -> Result<(), RegistryError> {
        let mut repo = self.by_arn(arn)?;
        check_tags(tags)?;
        for (k, v) in tags {
            match repo.tags.iter_mut().find(|(ek, _)| ek == k) {
                Some(e) => e.1 = v.clone(),
                None => repo.tags.push((k.clone(), v.clone())),
            }
        }
        if repo.tags.len() > 50 {
            return Err(RegistryError::TooManyTags("A repository can have at most 50 tags".into()));
        }
        self.save(&repo)
    }

    pub fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<(), RegistryError> {
        let mut repo = self.by_arn(arn)?;
        repo.tags.retain(|(k, _)| !keys.contains(k));
        self.save(&repo)
    }

    pub fn list_tags(&self, arn: &str) -> Result<Vec<(String, String)>, RegistryError> {
        Ok(self.by_arn(arn)?.tags)
    }

    // ---- authorization -------------------------------------------------------------------

    /// A new registry token for the caller's account and region, and when it expires.
    pub fn authorization_token(&self, scope: &Scope) -> Result<(String, DateTime<Utc>), RegistryError> {
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let expires = Utc::now() + chrono::Duration::hours(TOKEN_LIFETIME_HOURS);
        let rec = TokenRecord {
            account: scope.account.clone(),
            region: scope.region.clone(),
            expires_at_ms: expires.timestamp_millis(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| RegistryError::Internal(e.to_string()))?;
        self.store.put(TOKENS, &token, &bytes)?;
        let now = now_ms();
        let mut tokens = self.tokens.write();
        tokens.retain(|_, t| t.expires_at_ms > now);
        tokens.insert(token.clone(), rec);
        Ok((token, expires))
    }

    /// The scope a still-valid token was issued for.
    pub fn check_token(&self, token: &str) -> Option<Scope> {
        let tokens = self.tokens.read();
        let t = tokens.get(token)?;
        (t.expires_at_ms > now_ms()).then(|| Scope::new(t.account.clone(), t.region.clone()))
    }
}

fn check_tags(tags: &[(String, String)]) -> Result<(), RegistryError> {
    if tags.len() > 50 {
        return Err(RegistryError::TooManyTags("A repository can have at most 50 tags".into()));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
            return Err(RegistryError::InvalidTagParameter(format!("Invalid tag {k:?}")));
        }
    }
    Ok(())
}

/// A manifest's media type from its own `mediaType`, else by shape (OCI manifests may omit it).
pub fn manifest_media_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Some(m.to_string());
    }
    if v.get("manifests").is_some() {
        Some(media_types::OCI_INDEX.to_string())
    } else if v.get("layers").is_some() || v.get("config").is_some() {
        Some(media_types::OCI_MANIFEST.to_string())
    } else {
        None
    }
}

/// Tag-status filter (ListImages / DescribeImages).
pub fn tag_status_matches(filter: TagStatusFilter, m: &ManifestInfo) -> bool {
    match filter {
        TagStatusFilter::Any => true,
        TagStatusFilter::Tagged => !m.tags.is_empty(),
        TagStatusFilter::Untagged => m.tags.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        assert!(valid_repo_name("ab"));
        assert!(valid_repo_name("team/app-1.x_y"));
        assert!(!valid_repo_name("a"));
        assert!(!valid_repo_name("Upper"));
        assert!(!valid_repo_name("a//b"));
        assert!(!valid_repo_name("-ab"));
        assert!(is_valid_tag("v1.0_rc-2"));
        assert!(!is_valid_tag(".hidden"));
        assert!(!is_valid_tag(&"x".repeat(129)));
    }
}
