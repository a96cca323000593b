//! Lambda layers: published, immutable zips that functions list in `Layers`. Each layer
//! version is unpacked once (content-addressed) and put on the runtime's search paths
//! in order, later layers first, so later layers win as when AWS merges them into /opt.
use crate::engine::FunctionsEngine;
use crate::{Error, code};
use base64::Engine as _;
use nimbus_model::{LayerVersion, Scope};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) const LAYERS: &str = "lambda.layer-versions";
const COUNTERS: &str = "lambda.layer-counters";

fn layer_key(account: &str, region: &str, name: &str, version: u64) -> String {
    // Zero-padded so the store's key order is version order.
    format!("{account}:{region}:{name}:{version:010}")
}

fn check_layer_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() > 140
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Validation(nimbus_model::ValidationError::Constraint {
            field: "layerName",
            value: name.to_string(),
            constraint: "Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+".into(),
        }));
    }
    Ok(())
}

/// What PublishLayerVersion takes.
#[derive(Debug, Clone, Default)]
pub struct PublishLayer {
    pub name: String,
    pub zip: Vec<u8>,
    pub description: Option<String>,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub license_info: Option<String>,
}

impl FunctionsEngine {
    pub(crate) fn layer_dir(&self, digest: &str) -> PathBuf {
        self.data_dir().join("layers").join(digest)
    }

    pub fn publish_layer_version(
        &self,
        scope: &Scope,
        req: PublishLayer,
    ) -> Result<Arc<LayerVersion>, Error> {
        check_layer_name(&req.name)?;
        if req.zip.is_empty() {
            return Err(Error::InvalidParameter("Please provide a source for the layer content.".into()));
        }
        code::validate(&req.zip)?;
        let digest = self.blobs().put(&req.zip)?;
        code::unpack_once(&req.zip, &self.layer_dir(&digest))?;
        let counter = format!("{}:{}:{}", scope.account, scope.region, req.name);
        let next: u64 = self
            .store()
            .get(COUNTERS, &counter)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
            + 1;
        self.store().put(COUNTERS, &counter, next.to_string().as_bytes())?;
        let layer = LayerVersion {
            layer_name: req.name.clone(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            version: next,
            description: req.description.unwrap_or_default(),
            compatible_runtimes: req.compatible_runtimes,
            compatible_architectures: req.compatible_architectures,
            license_info: req.license_info,
            code_sha256: base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&req.zip)),
            code_digest: digest,
            code_size: req.zip.len() as u64,
            created_date: nimbus_model::lambda_timestamp(chrono::Utc::now()),
        };
        let bytes = serde_json::to_vec(&layer).map_err(|e| Error::Internal(e.to_string()))?;
        self.store().put(LAYERS, &layer_key(&scope.account, &scope.region, &req.name, next), &bytes)?;
        Ok(Arc::new(layer))
    }

    /// All versions of one layer (or of every layer), oldest first.
    pub fn layer_versions(&self, scope: &Scope, name: Option<&str>) -> Result<Vec<LayerVersion>, Error> {
        let prefix = match name {
            Some(n) => format!("{}:{}:{n}:", scope.account, scope.region),
            None => format!("{}:{}:", scope.account, scope.region),
        };
        self.store()
            .list(LAYERS)?
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| Error::Internal(e.to_string())))
            .collect()
    }

    pub fn get_layer_version(&self, scope: &Scope, name: &str, version: u64) -> Result<LayerVersion, Error> {
        let v = self
            .store()
            .get(LAYERS, &layer_key(&scope.account, &scope.region, name, version))?
            .ok_or_else(|| Error::NotFound("The resource you requested does not exist.".into()))?;
        serde_json::from_slice(&v).map_err(|e| Error::Internal(e.to_string()))
    }

    pub fn delete_layer_version(&self, scope: &Scope, name: &str, version: u64) -> Result<(), Error> {
        // Deleting a missing version succeeds, as Lambda does; functions keep their copy.
        self.store().delete(LAYERS, &layer_key(&scope.account, &scope.region, name, version))?;
        Ok(())
    }

    /// Resolves `Layers` ARNs of a function configuration: at most 5, each an existing
    /// layer version. Returns their unpacked directories in order.
    pub(crate) fn resolve_layers(&self, arns: &[String]) -> Result<Vec<LayerVersion>, Error> {
        if arns.len() > 5 {
            return Err(Error::InvalidParameter("Cannot reference more than 5 layers.".into()));
        }
        arns.iter()
            .map(|arn| {
                let parts: Vec<&str> = arn.split(':').collect();
                let bad = || Error::InvalidParameter(format!("Layer version {arn} does not exist."));
                match parts.as_slice() {
                    ["arn", _, "lambda", region, account, "layer", name, version] => {
                        let version: u64 = version.parse().map_err(|_| bad())?;
                        self.get_layer_version(&Scope::new(*account, *region), name, version)
                            .map_err(|_| bad())
                    }
                    _ => Err(bad()),
                }
            })
            .collect()
    }
}
