//! Nimbus's ground floor: plain domain types in AWS's vocabulary (functions, runtimes,
//! ARNs), their limits and validation. No I/O, no wire shapes.
#![forbid(unsafe_code)]

pub mod arn;
pub mod filter_pattern;
pub mod function;
pub mod limits;

pub use arn::{FunctionRef, Scope};
pub use function::{
    Alias, Cors, FunctionConfig, FunctionImage, FunctionUrlConfig, LayerVersion, PackageType, Runtime,
    RuntimeFamily,
};

/// Why a value was refused. The API layer decides which AWS error each becomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A value that breaks a length/pattern/range constraint of the wire model
    /// (AWS answers these with `ValidationException`).
    #[error(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    )]
    Constraint { field: &'static str, value: String, constraint: String },
    /// A well-formed value that the service refuses (`InvalidParameterValueException`).
    #[error("{0}")]
    InvalidParameter(String),
}

/// Current time as AWS's ISO-8601 with milliseconds and `+0000`, as Lambda's
/// `LastModified` (`2024-01-01T12:00:00.000+0000`).
pub fn lambda_timestamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}
