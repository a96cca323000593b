//! A Lambda function's configuration and the runtimes Nimbus can run.
use crate::{ValidationError, limits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a runtime's environments are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFamily {
    /// Nimbus's Python bootstrap on the host's `python3`.
    Python,
    /// Nimbus's Node.js bootstrap on the host's `node`.
    Node,
    /// The deployment package's own `bootstrap` executable (OS-only runtimes).
    Provided,
}

/// A runtime identifier Nimbus can execute (`python3.12`, `nodejs20.x`, `provided.al2023`…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Runtime(String);

const PYTHON: &[&str] = &["python3.9", "python3.10", "python3.11", "python3.12", "python3.13", "python3.14"];
const NODE: &[&str] = &["nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x"];
const PROVIDED: &[&str] = &["provided", "provided.al2", "provided.al2023"];
/// Runtimes AWS has retired for function creation and updates.
const DEPRECATED: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs4.3-edge",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "ruby2.5",
    "ruby2.7",
    "go1.x",
    "java8",
];
/// Valid AWS runtimes whose language Nimbus does not run yet.
const NOT_YET: &[&str] = &[
    "java8.al2",
    "java11",
    "java17",
    "java21",
    "java25",
    "dotnet6",
    "dotnet8",
    "dotnet10",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "ruby4.0",
];

impl Runtime {
    pub fn parse(s: &str) -> Result<Runtime, ValidationError> {
        if PYTHON.contains(&s) || NODE.contains(&s) || PROVIDED.contains(&s) {
            return Ok(Runtime(s.to_string()));
        }
        let msg = if DEPRECATED.contains(&s) {
            format!(
                "The runtime parameter of {s} is no longer supported for creating or updating AWS Lambda functions. We recommend you use a supported runtime while creating or updating functions."
            )
        } else if NOT_YET.contains(&s) {
            format!(
                "The runtime parameter of {s} is not supported by Nimbus yet. Supported runtimes: {}",
                Self::supported().join(", ")
            )
        } else {
            format!(
                "Value {s} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}] or be a valid ARN",
                Self::supported().join(", ")
            )
        };
        Err(ValidationError::InvalidParameter(msg))
    }

    pub fn supported() -> Vec<&'static str> {
        PYTHON.iter().chain(NODE).chain(PROVIDED).copied().collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn family(&self) -> RuntimeFamily {
        if self.0.starts_with("python") {
            RuntimeFamily::Python
        } else if self.0.starts_with("nodejs") {
            RuntimeFamily::Node
        } else {
            RuntimeFamily::Provided
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageType {
    Zip,
    Image,
}

/// Everything Lambda's `FunctionConfiguration` says about one version of a function
/// (for now always `$LATEST`), plus where its code lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub name: String,
    pub account: String,
    pub region: String,
    pub runtime: Option<Runtime>,
    pub handler: Option<String>,
    pub role: String,
    pub description: String,
    pub memory_mb: u32,
    pub timeout_secs: u32,
    pub ephemeral_storage_mb: u32,
    pub environment: BTreeMap<String, String>,
    pub architectures: Vec<String>,
    pub package_type: PackageType,
    /// base64 SHA-256 of the deployment package, as Lambda reports it.
    pub code_sha256: String,
    /// hex SHA-256: the content address of the package in the blob store.
    pub code_digest: String,
    pub code_size: u64,
    pub last_modified: String,
    pub revision_id: String,
    pub version: String,
    pub tags: BTreeMap<String, String>,
    /// Layer version ARNs, in the order they apply (later ones win).
    #[serde(default)]
    pub layers: Vec<String>,
    /// Code size of each layer in `layers` (FunctionConfiguration reports it).
    #[serde(default)]
    pub layer_sizes: Vec<u64>,
    /// `DeadLetterConfig.TargetArn`: where failed asynchronous events go.
    #[serde(default)]
    pub dead_letter_target_arn: Option<String>,
    /// The container image of a `PackageType=Image` function.
    #[serde(default)]
    pub image: Option<FunctionImage>,
}

/// A container image function's image and its `ImageConfig` overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionImage {
    /// `Code.ImageUri` as given.
    pub image_uri: String,
    /// `Code.ResolvedImageUri`: the repository pinned to the digest the URI named at
    /// create/update time (a later re-tag does not change the function, as on AWS).
    pub resolved_image_uri: String,
    /// `ImageConfig` overrides of the image's ENTRYPOINT, CMD and WORKDIR.
    pub entry_point: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub working_directory: Option<String>,
}

impl FunctionConfig {
    /// The unqualified function ARN.
    pub fn arn(&self) -> String {
        format!("arn:aws:lambda:{}:{}:function:{}", self.region, self.account, self.name)
    }
    /// The ARN Lambda reports for this configuration: unqualified for `$LATEST`,
    /// `…:function:name:N` for a published version.
    pub fn version_arn(&self) -> String {
        if self.version == "$LATEST" { self.arn() } else { format!("{}:{}", self.arn(), self.version) }
    }
    pub fn log_group(&self) -> String {
        format!("/aws/lambda/{}", self.name)
    }
}

pub fn validate_memory(mb: u32) -> Result<(), ValidationError> {
    if !(limits::MEMORY_MB_MIN..=limits::MEMORY_MB_MAX).contains(&mb) {
        return Err(ValidationError::InvalidParameter(format!(
            "'MemorySize' value failed to satisfy constraint: Member must have value less than or equal to {} and greater than or equal to {}",
            limits::MEMORY_MB_MAX,
            limits::MEMORY_MB_MIN
        )));
    }
    Ok(())
}

pub fn validate_timeout(secs: u32) -> Result<(), ValidationError> {
    if !(limits::TIMEOUT_SECS_MIN..=limits::TIMEOUT_SECS_MAX).contains(&secs) {
        return Err(ValidationError::Constraint {
            field: "timeout",
            value: secs.to_string(),
            constraint: format!("Member must have value less than or equal to {}", limits::TIMEOUT_SECS_MAX),
        });
    }
    Ok(())
}

pub fn validate_ephemeral_storage(mb: u32) -> Result<(), ValidationError> {
    if !(limits::EPHEMERAL_MB_MIN..=limits::EPHEMERAL_MB_MAX).contains(&mb) {
        return Err(ValidationError::InvalidParameter(format!(
            "'EphemeralStorage.Size' value failed to satisfy constraint: Member must have value less than or equal to {} and greater than or equal to {}",
            limits::EPHEMERAL_MB_MAX,
            limits::EPHEMERAL_MB_MIN
        )));
    }
    Ok(())
}

pub fn validate_handler(handler: &str) -> Result<(), ValidationError> {
    if handler.len() > 128 || handler.chars().any(char::is_whitespace) || handler.is_empty() {
        return Err(ValidationError::Constraint {
            field: "handler",
            value: handler.to_string(),
            constraint: "Member must satisfy regular expression pattern: [^\\s]+".into(),
        });
    }
    Ok(())
}

pub fn validate_role(role: &str) -> Result<(), ValidationError> {
    // arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+
    let ok = (|| {
        let rest = role.strip_prefix("arn:")?;
        let (partition, rest) = rest.split_once(':')?;
        if !(partition.is_empty() || partition.starts_with("aws")) {
            return None;
        }
        let rest = rest.strip_prefix("iam::")?;
        let (acct, rest) = rest.split_once(':')?;
        if acct.len() != 12 || !acct.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let path = rest.strip_prefix("role")?;
        let path = path.strip_prefix('/').unwrap_or(path);
        (!path.is_empty() && path.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-/".contains(c)))
            .then_some(())
    })();
    ok.ok_or_else(|| ValidationError::Constraint {
        field: "role",
        value: role.to_string(),
        constraint: "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+".into(),
    })
}

/// Environment variable names as Lambda allows them, and the 4 KB total.
pub fn validate_environment(vars: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    let mut total = 0;
    for (k, v) in vars {
        let mut chars = k.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ValidationError::Constraint {
                field: "environment.variables",
                value: k.clone(),
                constraint: "Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+".into(),
            });
        }
        total += k.len() + v.len();
    }
    if total > limits::ENVIRONMENT_BYTES {
        return Err(ValidationError::InvalidParameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {total}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes() {
        assert_eq!(Runtime::parse("python3.12").unwrap().family(), RuntimeFamily::Python);
        assert_eq!(Runtime::parse("nodejs18.x").unwrap().family(), RuntimeFamily::Node);
        assert_eq!(Runtime::parse("provided.al2023").unwrap().family(), RuntimeFamily::Provided);
        assert!(Runtime::parse("python2.7").unwrap_err().to_string().contains("no longer supported"));
        assert!(Runtime::parse("cobol85").is_err());
    }

    #[test]
    fn limits_follow_aws() {
        assert!(validate_memory(127).is_err());
        assert!(validate_memory(128).is_ok());
        assert!(validate_memory(10240).is_ok());
        assert!(validate_memory(10241).is_err());
        assert!(validate_timeout(0).is_err());
        assert!(validate_timeout(900).is_ok());
        assert!(validate_timeout(901).is_err());
        assert!(validate_role("arn:aws:iam::123456789012:role/my-execution-role").is_ok());
        assert!(validate_role("not-a-role").is_err());
        let mut env = BTreeMap::new();
        env.insert("GOOD_NAME".to_string(), "x".to_string());
        assert!(validate_environment(&env).is_ok());
        env.insert("1bad".to_string(), "x".to_string());
        assert!(validate_environment(&env).is_err());
    }
}

/// A function alias: a name for a version, optionally shifting a share of traffic to a
/// second version (`RoutingConfig.AdditionalVersionWeights`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub name: String,
    pub function_name: String,
    pub account: String,
    pub region: String,
    pub function_version: String,
    pub description: String,
    pub additional_version_weights: BTreeMap<String, f64>,
    pub revision_id: String,
}

impl Alias {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}:{}",
            self.region, self.account, self.function_name, self.name
        )
    }

    /// The version an invocation runs, given a uniform random number in [0, 1).
    pub fn route(&self, roll: f64) -> &str {
        let mut acc = 0.0;
        for (version, weight) in &self.additional_version_weights {
            acc += weight;
            if roll < acc {
                return version;
            }
        }
        &self.function_version
    }
}

/// Alias names: 1–128 of `[a-zA-Z0-9-_]`, not all digits (those are versions).
pub fn validate_alias_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Constraint {
            field: "name",
            value: name.to_string(),
            constraint: "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)".into(),
        })
    }
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    #[test]
    fn routes_by_weight() {
        let mut a = Alias {
            name: "live".into(),
            function_name: "f".into(),
            account: "000000000000".into(),
            region: "us-east-1".into(),
            function_version: "1".into(),
            description: String::new(),
            additional_version_weights: BTreeMap::new(),
            revision_id: String::new(),
        };
        assert_eq!(a.route(0.99), "1");
        a.additional_version_weights.insert("2".into(), 0.3);
        assert_eq!(a.route(0.1), "2");
        assert_eq!(a.route(0.29), "2");
        assert_eq!(a.route(0.31), "1");
        assert!(validate_alias_name("live").is_ok());
        assert!(validate_alias_name("123").is_err());
    }
}

/// CORS settings of a function URL, as Lambda's `Cors` shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cors {
    pub allow_credentials: Option<bool>,
    pub allow_headers: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_origins: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u32>,
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    pub fn allowed_origin(&self, origin: &str) -> Option<String> {
        if self.allow_origins.iter().any(|o| o == "*") {
            return Some("*".into());
        }
        self.allow_origins.iter().find(|o| o.eq_ignore_ascii_case(origin)).map(|_| origin.to_string())
    }
}

/// A function URL: a dedicated HTTP endpoint that invokes a function (or alias).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionUrlConfig {
    /// The 32-character id that names the URL's host (`<id>.lambda-url.<region>…`).
    pub url_id: String,
    pub account: String,
    pub region: String,
    pub function_name: String,
    pub qualifier: Option<String>,
    /// `NONE` or `AWS_IAM`.
    pub auth_type: String,
    pub cors: Option<Cors>,
    /// `BUFFERED` or `RESPONSE_STREAM`.
    pub invoke_mode: String,
    pub creation_time: String,
    pub last_modified_time: String,
}

impl FunctionUrlConfig {
    pub fn function_arn(&self) -> String {
        let base = format!("arn:aws:lambda:{}:{}:function:{}", self.region, self.account, self.function_name);
        match &self.qualifier {
            Some(q) => format!("{base}:{q}"),
            None => base,
        }
    }
}

/// One published version of a Lambda layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerVersion {
    pub layer_name: String,
    pub account: String,
    pub region: String,
    pub version: u64,
    pub description: String,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub license_info: Option<String>,
    /// base64 SHA-256 of the zip, as Lambda reports it; `code_digest` is the hex content address.
    pub code_sha256: String,
    pub code_digest: String,
    pub code_size: u64,
    pub created_date: String,
}

impl LayerVersion {
    pub fn layer_arn(&self) -> String {
        format!("arn:aws:lambda:{}:{}:layer:{}", self.region, self.account, self.layer_name)
    }
    pub fn version_arn(&self) -> String {
        format!("{}:{}", self.layer_arn(), self.version)
    }
}
