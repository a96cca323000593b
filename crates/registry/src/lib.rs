//! The ECR data plane and control engine: an OCI Distribution v1.1 server over the shared image store, and ECR repositories, tag mutability, lifecycle policies and authorization tokens.
//!
//! - [`oci::router`]: the `/v2/…` listener (blobs, chunked/monolithic/resumable uploads,
//!   mounts, manifests with content negotiation, tags, catalog, referrers), OCI errors.
//! - [`EcrEngine`]: repositories per account/region over the Store; the typed operations
//!   `crates/api/src/ecr.rs` maps the ECR JSON API onto.
//! - [`lifecycle`]: lifecycle policy documents and their (pure) evaluation.
//! - [`layer_upload`]: ECR's API-side layer uploads (Initiate / UploadLayerPart / Complete).
//!
//! Repository metadata is per account and region (ARNs, URIs, mutability, policies), but
//! image content lives in the one `ImageStore`, keyed by repository name: the registry
//! listener has a single namespace. As on ECR, a push to a repository that does not exist is
//! refused (`NAME_UNKNOWN`); `nimbus image import` (and other importers through
//! `EcrEngine::ensure_repository`) create their repository implicitly.
#![forbid(unsafe_code)]

pub mod ecr;
pub mod layer_upload;
pub mod lifecycle;
pub mod oci;

pub use ecr::{
    CreateRepository, EcrEngine, FailureCode, FetchedImage, ImageFailure, ImageId, MutabilityExclusion,
    Repository, TagMutability, TagStatusFilter,
};
pub use oci::{RegistryAuth, router};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    RepositoryNotFound(String),
    #[error("{0}")]
    RepositoryAlreadyExists(String),
    #[error("{0}")]
    RepositoryNotEmpty(String),
    #[error("{0}")]
    ImageNotFound(String),
    #[error("{0}")]
    ImageAlreadyExists(String),
    #[error("{0}")]
    ImageTagAlreadyExists(String),
    #[error("{0}")]
    ImageDigestDoesNotMatch(String),
    #[error("{0}")]
    LayersNotFound(String),
    #[error("{0}")]
    ReferencedImagesNotFound(String),
    #[error("{0}")]
    LifecyclePolicyNotFound(String),
    #[error("{0}")]
    RepositoryPolicyNotFound(String),
    #[error("{0}")]
    LifecyclePolicyPreviewNotFound(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidTagParameter(String),
    #[error("{0}")]
    TooManyTags(String),
    #[error("{0}")]
    UploadNotFound(String),
    /// A part that does not continue the upload where it stands.
    #[error("{message}")]
    InvalidLayerPart {
        message: String,
        registry_id: String,
        repository: String,
        upload_id: String,
        last_valid_byte_received: u64,
    },
    /// The uploaded bytes do not match the digest given (or it is malformed).
    #[error("{0}")]
    InvalidLayer(String),
    #[error("{0}")]
    LayerAlreadyExists(String),
    #[error("{0}")]
    EmptyUpload(String),
    #[error("image store: {0}")]
    Images(#[from] nimbus_images::ImageError),
    #[error("store: {0}")]
    Store(#[from] nimbus_store::StoreError),
    #[error("internal: {0}")]
    Internal(String),
}
