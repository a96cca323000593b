//! The ECS engine's errors; `crates/api/src/error.rs` maps each to its AWS exception.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `ClientException`: the request is invalid for this resource (AWS's catch-all).
    #[error("{0}")]
    Client(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    ClusterNotFound(String),
    #[error("{0}")]
    ServiceNotFound(String),
    #[error("{0}")]
    ServiceNotActive(String),
    #[error("{0}")]
    ClusterContainsServices(String),
    #[error("{0}")]
    ClusterContainsTasks(String),
    #[error("{0}")]
    ClusterContainsContainerInstances(String),
    #[error("{0}")]
    PlatformUnknown(String),
    #[error("{0}")]
    UnsupportedFeature(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    TargetNotFound(String),
    /// `ConflictException`: a client token reused with different parameters; names what the
    /// token already made.
    #[error("{message}")]
    Conflict { message: String, resource_ids: Vec<String> },
    #[error(transparent)]
    Store(#[from] nimbus_store::StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn client(m: impl Into<String>) -> Error {
        Error::Client(m.into())
    }
    pub fn invalid(m: impl Into<String>) -> Error {
        Error::InvalidParameter(m.into())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Internal(format!("stored ECS record: {e}"))
    }
}
