//! ECR (JSON 1.1, `AmazonEC2ContainerRegistry_V20150921`): repositories, images, tag
//! mutability, lifecycle and repository policies, resource tags and authorization tokens,
//! mapped onto `nimbus-registry`'s `EcrEngine` (images live in the shared image store and
//! are pushed through the registry listener).
use crate::auth::RequestContext;
use crate::error::ApiError;
use crate::json_rpc::{BoxFuture, JsonService, parse, unknown_operation};
use axum::body::Bytes;
use base64::Engine as _;
use nimbus_images::ManifestInfo;
use nimbus_model::Scope;
use nimbus_registry::{
    CreateRepository, EcrEngine, FetchedImage, ImageFailure, ImageId, MutabilityExclusion, Repository,
    TagMutability, TagStatusFilter,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub struct EcrService {
    pub engine: Arc<EcrEngine>,
}

impl JsonService for EcrService {
    fn target_prefix(&self) -> &'static str {
        "AmazonEC2ContainerRegistry_V20150921"
    }
    fn call<'a>(
        &'a self,
        ctx: &'a RequestContext,
        operation: &'a str,
        input: Bytes,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        let engine = self.engine.clone();
        let scope = ctx.scope.clone();
        let op = operation.to_string();
        Box::pin(async move {
            // Engine calls write SQLite and may delete files (lifecycle expiry, force delete).
            tokio::task::spawn_blocking(move || handle(&engine, &scope, &op, &input))
                .await
                .map_err(|e| ApiError::new(500, "ServerException", e.to_string()))?
        })
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn repo_json(r: &Repository) -> Value {
    let mut v = json!({
        "repositoryArn": r.arn(),
        "registryId": r.account,
        "repositoryName": r.name,
        "repositoryUri": r.uri(),
        "createdAt": secs(r.created_at_ms),
        "imageTagMutability": r.tag_mutability.as_str(),
        "imageScanningConfiguration": {"scanOnPush": r.scan_on_push},
        "encryptionConfiguration": {"encryptionType": r.encryption_type},
    });
    if let Some(k) = &r.kms_key {
        v["encryptionConfiguration"]["kmsKey"] = json!(k);
    }
    if !r.mutability_exclusions.is_empty() {
        v["imageTagMutabilityExclusionFilters"] = exclusions_json(&r.mutability_exclusions);
    }
    v
}

fn exclusions_json(e: &[MutabilityExclusion]) -> Value {
    e.iter().map(|x| json!({"filterType": x.filter_type, "filter": x.filter})).collect()
}

fn image_id_json(id: &ImageId) -> Value {
    let mut v = json!({});
    if let Some(d) = &id.digest {
        v["imageDigest"] = json!(d);
    }
    if let Some(t) = &id.tag {
        v["imageTag"] = json!(t);
    }
    v
}

fn failure_json(f: &ImageFailure) -> Value {
    json!({"imageId": image_id_json(&f.id), "failureCode": f.code.as_str(), "failureReason": f.reason})
}

fn image_json(scope: &Scope, name: &str, img: &FetchedImage) -> Value {
    json!({
        "registryId": scope.account,
        "repositoryName": name,
        "imageId": image_id_json(&img.id),
        "imageManifest": img.manifest,
        "imageManifestMediaType": img.media_type,
    })
}

fn detail_json(scope: &Scope, name: &str, m: &ManifestInfo) -> Value {
    let mut v = json!({
        "registryId": scope.account,
        "repositoryName": name,
        "imageDigest": m.digest,
        "imageSizeInBytes": m.size_bytes,
        "imagePushedAt": secs(m.pushed_at.timestamp_millis()),
        "imageManifestMediaType": m.media_type,
    });
    if !m.tags.is_empty() {
        v["imageTags"] = json!(m.tags);
    }
    if let Some(a) = &m.artifact_media_type {
        v["artifactMediaType"] = json!(a);
    }
    v
}

#[derive(Deserialize)]
struct TagInput {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExclusionInput {
    filter_type: String,
    filter: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanningInput {
    #[serde(default)]
    scan_on_push: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionInput {
    encryption_type: String,
    kms_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FilterInput {
    tag_status: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct ImageIdInput {
    image_digest: Option<String>,
    image_tag: Option<String>,
}

impl From<ImageIdInput> for ImageId {
    fn from(i: ImageIdInput) -> ImageId {
        ImageId { digest: i.image_digest, tag: i.image_tag }
    }
}

/// One struct for every operation's input: ECR's member names do not collide.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Input {
    registry_id: Option<String>,
    registry_ids: Option<Vec<String>>,
    repository_name: Option<String>,
    repository_names: Option<Vec<String>>,
    tags: Option<Vec<TagInput>>,
    tag_keys: Option<Vec<String>>,
    resource_arn: Option<String>,
    image_tag_mutability: Option<String>,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionInput>>,
    image_scanning_configuration: Option<ScanningInput>,
    encryption_configuration: Option<EncryptionInput>,
    force: Option<bool>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<FilterInput>,
    image_ids: Option<Vec<ImageIdInput>>,
    accepted_media_types: Option<Vec<String>>,
    upload_id: Option<String>,
    image_id: Option<ImageIdInput>,
    part_first_byte: Option<i64>,
    part_last_byte: Option<i64>,
    /// A blob: base64 on the wire.
    layer_part_blob: Option<String>,
    image_manifest: Option<String>,
    image_manifest_media_type: Option<String>,
    image_tag: Option<String>,
    image_digest: Option<String>,
    lifecycle_policy_text: Option<String>,
    policy_text: Option<String>,
    layer_digests: Option<Vec<String>>,
    layer_digest: Option<String>,
}

fn required<'a, T>(v: &'a Option<T>, name: &str) -> Result<&'a T, ApiError> {
    v.as_ref().ok_or_else(|| {
        ApiError::invalid_parameter_exception(format!("Invalid parameter: '{name}' is required"))
    })
}

fn tag_status(f: &Option<FilterInput>) -> Result<TagStatusFilter, ApiError> {
    match f.as_ref().and_then(|f| f.tag_status.as_deref()) {
        None | Some("ANY") => Ok(TagStatusFilter::Any),
        Some("TAGGED") => Ok(TagStatusFilter::Tagged),
        Some("UNTAGGED") => Ok(TagStatusFilter::Untagged),
        Some(other) => Err(ApiError::invalid_parameter_exception(format!("Invalid tagStatus '{other}'"))),
    }
}

fn mutability(s: &str) -> Result<TagMutability, ApiError> {
    TagMutability::parse(s).ok_or_else(|| {
        ApiError::invalid_parameter_exception(format!(
            "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]', got '{s}'"
        ))
    })
}

/// `nextToken` is the offset into the (stable, sorted) result; `maxResults` 1..=1000.
fn page<T: Clone>(
    items: &[T],
    token: &Option<String>,
    max: Option<i64>,
    default: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = match max {
        Some(m) if !(1..=1000).contains(&m) => {
            return Err(ApiError::invalid_parameter_exception(
                "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 1000'",
            ));
        }
        Some(m) => m as usize,
        None => default,
    };
    let start = match token {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| ApiError::invalid_parameter_exception("Invalid parameter: nextToken is invalid"))?,
        None => 0,
    };
    let end = (start + max).min(items.len());
    let slice = items.get(start.min(items.len())..end).unwrap_or_default().to_vec();
    Ok((slice, (end < items.len()).then(|| end.to_string())))
}

fn handle(engine: &EcrEngine, caller: &Scope, op: &str, input: &[u8]) -> Result<Value, ApiError> {
    let i: Input = parse(input)?;
    // registryId (an account id) addresses another registry; default: the caller's.
    let scope = match &i.registry_id {
        Some(id) => Scope::new(id.clone(), caller.region.clone()),
        None => caller.clone(),
    };
    let name = || required(&i.repository_name, "repositoryName").map(String::as_str);
    let ids =
        || -> Vec<ImageId> { i.image_ids.clone().unwrap_or_default().into_iter().map(Into::into).collect() };
    match op {
        "CreateRepository" => {
            let req = CreateRepository {
                name: name()?.to_string(),
                tag_mutability: i.image_tag_mutability.as_deref().map(mutability).transpose()?,
                mutability_exclusions: exclusions(&i),
                scan_on_push: i.image_scanning_configuration.as_ref().is_some_and(|s| s.scan_on_push),
                encryption_type: i.encryption_configuration.as_ref().map(|e| e.encryption_type.clone()),
                kms_key: i.encryption_configuration.as_ref().and_then(|e| e.kms_key.clone()),
                tags: i
                    .tags
                    .as_ref()
                    .map(|t| t.iter().map(|t| (t.key.clone(), t.value.clone())).collect())
                    .unwrap_or_default(),
            };
            let repo = engine.create_repository(&scope, req)?;
            Ok(json!({"repository": repo_json(&repo)}))
        }
        "DescribeRepositories" => {
            let repos = engine.describe_repositories(&scope, i.repository_names.as_deref())?;
            if i.repository_names.is_some() && (i.next_token.is_some() || i.max_results.is_some()) {
                return Err(ApiError::invalid_parameter_exception(
                    "Invalid parameter: maxResults and nextToken cannot be used with repositoryNames",
                ));
            }
            let (page, next) = page(&repos, &i.next_token, i.max_results, 100)?;
            let mut out = json!({"repositories": page.iter().map(repo_json).collect::<Vec<_>>()});
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            Ok(out)
        }
        "DeleteRepository" => {
            let repo = engine.delete_repository(&scope, name()?, i.force.unwrap_or(false))?;
            Ok(json!({"repository": repo_json(&repo)}))
        }
        "ListImages" => {
            let status = tag_status(&i.filter)?;
            let mut entries = Vec::new();
            for m in engine.list_images(&scope, name()?)? {
                if !nimbus_registry::ecr::tag_status_matches(status, &m) {
                    continue;
                }
                if m.tags.is_empty() {
                    entries.push(json!({"imageDigest": m.digest}));
                }
                for t in &m.tags {
                    entries.push(json!({"imageDigest": m.digest, "imageTag": t}));
                }
            }
            let (page, next) = page(&entries, &i.next_token, i.max_results, 100)?;
            let mut out = json!({"imageIds": page});
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            Ok(out)
        }
        "DescribeImages" => {
            let status = tag_status(&i.filter)?;
            let repo = name()?;
            let wanted = i.image_ids.as_ref().map(|_| ids());
            let details: Vec<Value> = engine
                .describe_images(&scope, repo, wanted.as_deref())?
                .iter()
                .filter(|m| nimbus_registry::ecr::tag_status_matches(status, m))
                .map(|m| detail_json(&scope, repo, m))
                .collect();
            let (page, next) = page(&details, &i.next_token, i.max_results, 100)?;
            let mut out = json!({"imageDetails": page});
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            Ok(out)
        }
        "BatchGetImage" => {
            let repo = name()?;
            required(&i.image_ids, "imageIds")?;
            let accepted = i.accepted_media_types.as_deref();
            if accepted.is_some_and(|a| a.is_empty() || a.len() > 100) {
                return Err(ApiError::invalid_parameter_exception(
                    "Invalid parameter at 'acceptedMediaTypes' failed to satisfy constraint: 'Member must have length between 1 and 100'",
                ));
            }
            let (images, failures) = engine.batch_get_image(&scope, repo, &ids(), accepted)?;
            Ok(json!({
                "images": images.iter().map(|img| image_json(&scope, repo, img)).collect::<Vec<_>>(),
                "failures": failures.iter().map(failure_json).collect::<Vec<_>>(),
            }))
        }
        "BatchDeleteImage" => {
            let repo = name()?;
            required(&i.image_ids, "imageIds")?;
            let (deleted, failures) = engine.batch_delete_image(&scope, repo, &ids())?;
            Ok(json!({
                "imageIds": deleted.iter().map(image_id_json).collect::<Vec<_>>(),
                "failures": failures.iter().map(failure_json).collect::<Vec<_>>(),
            }))
        }
        "PutImage" => {
            let repo = name()?;
            let manifest = required(&i.image_manifest, "imageManifest")?;
            let img = engine.put_image(
                &scope,
                repo,
                manifest,
                i.image_manifest_media_type.as_deref(),
                i.image_tag.as_deref(),
                i.image_digest.as_deref(),
            )?;
            Ok(json!({"image": image_json(&scope, repo, &img)}))
        }
        "PutImageTagMutability" => {
            let m = mutability(required(&i.image_tag_mutability, "imageTagMutability")?)?;
            let repo = engine.set_tag_mutability(&scope, name()?, m, exclusions(&i))?;
            let mut out = json!({
                "registryId": repo.account,
                "repositoryName": repo.name,
                "imageTagMutability": repo.tag_mutability.as_str(),
            });
            if !repo.mutability_exclusions.is_empty() {
                out["imageTagMutabilityExclusionFilters"] = exclusions_json(&repo.mutability_exclusions);
            }
            Ok(out)
        }
        "PutImageScanningConfiguration" => {
            let scan = i.image_scanning_configuration.as_ref().is_some_and(|s| s.scan_on_push);
            let repo = engine.set_scanning(&scope, name()?, scan)?;
            Ok(json!({
                "registryId": repo.account,
                "repositoryName": repo.name,
                "imageScanningConfiguration": {"scanOnPush": repo.scan_on_push},
            }))
        }
        "GetAuthorizationToken" => {
            let registries = i.registry_ids.clone().unwrap_or_else(|| vec![caller.account.clone()]);
            let mut data = Vec::new();
            for account in registries {
                let (token, expires) =
                    engine.authorization_token(&Scope::new(account, caller.region.clone()))?;
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"));
                data.push(json!({
                    "authorizationToken": encoded,
                    "expiresAt": secs(expires.timestamp_millis()),
                    "proxyEndpoint": engine.registry_endpoint(),
                }));
            }
            Ok(json!({"authorizationData": data}))
        }
        "PutLifecyclePolicy" => {
            let text = required(&i.lifecycle_policy_text, "lifecyclePolicyText")?;
            let repo = engine.put_lifecycle_policy(&scope, name()?, text)?;
            Ok(json!({"registryId": repo.account, "repositoryName": repo.name, "lifecyclePolicyText": text}))
        }
        "GetLifecyclePolicy" | "DeleteLifecyclePolicy" => {
            let repo = if op == "GetLifecyclePolicy" {
                engine.get_lifecycle_policy(&scope, name()?)?
            } else {
                engine.delete_lifecycle_policy(&scope, name()?)?
            };
            let mut out = json!({
                "registryId": repo.account,
                "repositoryName": repo.name,
                "lifecyclePolicyText": repo.lifecycle_policy,
            });
            if let Some(t) = repo.lifecycle_evaluated_at_ms {
                out["lastEvaluatedAt"] = json!(secs(t));
            }
            Ok(out)
        }
        "StartLifecyclePolicyPreview" => {
            let text = engine.start_lifecycle_preview(&scope, name()?, i.lifecycle_policy_text.as_deref())?;
            Ok(json!({
                "registryId": scope.account,
                "repositoryName": name()?,
                "lifecyclePolicyText": text,
                "status": "IN_PROGRESS",
            }))
        }
        "GetLifecyclePolicyPreview" => {
            let repo = name()?;
            let (text, results) = engine.lifecycle_preview(&scope, repo)?;
            let status = tag_status(&i.filter)?;
            let results: Vec<Value> = results
                .iter()
                .filter(|(m, _)| nimbus_registry::ecr::tag_status_matches(status, m))
                .map(|(m, priority)| {
                    let mut v = json!({
                        "imageDigest": m.digest,
                        "imagePushedAt": secs(m.pushed_at.timestamp_millis()),
                        "action": {"type": "EXPIRE"},
                        "appliedRulePriority": priority,
                    });
                    if !m.tags.is_empty() {
                        v["imageTags"] = json!(m.tags);
                    }
                    v
                })
                .collect();
            let total = results.len();
            let (page, next) = page(&results, &i.next_token, i.max_results, 100)?;
            let mut out = json!({
                "registryId": scope.account,
                "repositoryName": repo,
                "lifecyclePolicyText": text,
                "status": "COMPLETE",
                "previewResults": page,
                "summary": {"expiringImageTotalCount": total},
            });
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            Ok(out)
        }
        "BatchCheckLayerAvailability" => {
            let repo = name()?;
            let digests = required(&i.layer_digests, "layerDigests")?;
            let (valid, invalid): (Vec<String>, Vec<String>) =
                digests.iter().cloned().partition(|d| nimbus_images::is_valid_digest(d));
            let sizes = engine.layer_sizes(&scope, repo, &valid)?;
            // A layer the repository lacks is a failure (LayerFailureCode MissingLayerDigest),
            // not an UNAVAILABLE entry.
            let mut layers = Vec::new();
            let mut failures: Vec<Value> = invalid
                .iter()
                .map(|d| json!({"layerDigest": d, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"}))
                .collect();
            for (d, size) in valid.iter().zip(sizes) {
                match size {
                    Some(n) => layers
                        .push(json!({"layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": n,
                                                  "mediaType": "application/vnd.oci.image.layer.v1.tar"})),
                    None => failures.push(json!({"layerDigest": d, "failureCode": "MissingLayerDigest",
                                                 "failureReason": "Could not find layer"})),
                }
            }
            Ok(json!({"layers": layers, "failures": failures}))
        }
        // Basic scanning without a vulnerability database: every scan completes at once with
        // no findings, so clients that start a scan and wait on it (the `image_scan_complete`
        // waiter) go on; any existing image counts as scanned.
        "StartImageScan" | "DescribeImageScanFindings" => {
            let repo = name()?;
            let wanted: ImageId = required(&i.image_id, "imageId")?.clone().into();
            let found = engine.describe_images(&scope, repo, Some(std::slice::from_ref(&wanted)))?;
            let Some(m) = found.first() else {
                return Err(ApiError::new(400, "ImageNotFoundException", "Requested image not found"));
            };
            let image_id = image_id_json(&ImageId {
                digest: Some(m.digest.clone()),
                tag: wanted.tag.clone().or_else(|| m.tags.first().cloned()),
            });
            let mut out = json!({
                "registryId": scope.account,
                "repositoryName": repo,
                "imageId": image_id,
                "imageScanStatus": {"status": "COMPLETE", "description": "The scan was completed successfully."},
            });
            if op == "DescribeImageScanFindings" {
                let at = secs(m.pushed_at.timestamp_millis());
                out["imageScanFindings"] = json!({"imageScanCompletedAt": at, "vulnerabilitySourceUpdatedAt": at,
                                                  "findingSeverityCounts": {}, "findings": []});
            }
            Ok(out)
        }
        "InitiateLayerUpload" => {
            let (upload_id, part_size) = engine.initiate_layer_upload(&scope, name()?)?;
            Ok(json!({"uploadId": upload_id, "partSize": part_size}))
        }
        "UploadLayerPart" => {
            let repo = name()?;
            let upload_id = required(&i.upload_id, "uploadId")?;
            let byte = |v: &Option<i64>, n: &str| -> Result<u64, ApiError> {
                u64::try_from(*required(v, n)?).map_err(|_| {
                    ApiError::invalid_parameter_exception(format!(
                        "Invalid parameter at '{n}' failed to satisfy constraint: 'Member must have value greater than or equal to 0'"
                    ))
                })
            };
            let (first, last) =
                (byte(&i.part_first_byte, "partFirstByte")?, byte(&i.part_last_byte, "partLastByte")?);
            let blob = base64::engine::general_purpose::STANDARD
                .decode(required(&i.layer_part_blob, "layerPartBlob")?)
                .map_err(|_| ApiError::new(400, "SerializationException", "layerPartBlob: invalid base64"))?;
            let last_received = engine.upload_layer_part(&scope, repo, upload_id, first, last, &blob)?;
            Ok(json!({"registryId": scope.account, "repositoryName": repo, "uploadId": upload_id,
                      "lastByteReceived": last_received}))
        }
        "CompleteLayerUpload" => {
            let repo = name()?;
            let upload_id = required(&i.upload_id, "uploadId")?;
            let digests = required(&i.layer_digests, "layerDigests")?;
            let digest = engine.complete_layer_upload(&scope, repo, upload_id, digests)?;
            Ok(json!({"registryId": scope.account, "repositoryName": repo, "uploadId": upload_id,
                      "layerDigest": digest}))
        }
        "GetDownloadUrlForLayer" => {
            let digest = required(&i.layer_digest, "layerDigest")?;
            let url = engine.layer_download_url(&scope, name()?, digest)?;
            Ok(json!({"downloadUrl": url, "layerDigest": digest}))
        }
        "SetRepositoryPolicy" => {
            let text = required(&i.policy_text, "policyText")?;
            let repo = engine.set_repository_policy(&scope, name()?, text)?;
            Ok(json!({"registryId": repo.account, "repositoryName": repo.name, "policyText": text}))
        }
        "GetRepositoryPolicy" | "DeleteRepositoryPolicy" => {
            let repo = if op == "GetRepositoryPolicy" {
                engine.get_repository_policy(&scope, name()?)?
            } else {
                engine.delete_repository_policy(&scope, name()?)?
            };
            Ok(json!({"registryId": repo.account, "repositoryName": repo.name, "policyText": repo.policy}))
        }
        "TagResource" => {
            let arn = required(&i.resource_arn, "resourceArn")?;
            let tags: Vec<(String, String)> =
                required(&i.tags, "tags")?.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
            engine.tag_resource(arn, &tags)?;
            Ok(json!({}))
        }
        "UntagResource" => {
            let arn = required(&i.resource_arn, "resourceArn")?;
            engine.untag_resource(arn, required(&i.tag_keys, "tagKeys")?)?;
            Ok(json!({}))
        }
        "ListTagsForResource" => {
            let tags = engine.list_tags(required(&i.resource_arn, "resourceArn")?)?;
            Ok(json!({"tags": tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()}))
        }
        "DescribeRegistry" => {
            Ok(json!({"registryId": scope.account, "replicationConfiguration": {"rules": []}}))
        }
        _ => Err(unknown_operation(&format!("AmazonEC2ContainerRegistry_V20150921.{op}"))),
    }
}

fn exclusions(i: &Input) -> Vec<MutabilityExclusion> {
    i.image_tag_mutability_exclusion_filters
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|e| MutabilityExclusion { filter_type: e.filter_type.clone(), filter: e.filter.clone() })
                .collect()
        })
        .unwrap_or_default()
}
