//! Lambda's REST-JSON API (2015-03-31): wire shapes ⇄ typed engine calls.
use crate::AppState;
use crate::auth::RequestContext;
use crate::error::{ApiError, Protocol};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use nimbus_functions::{CreateFunction, InvocationType, InvokeRequest, UpdateCode, UpdateConfiguration};
use nimbus_model::FunctionConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A Lambda API error response.
struct LambdaError(ApiError);

impl<E: Into<ApiError>> From<E> for LambdaError {
    fn from(e: E) -> Self {
        LambdaError(e.into())
    }
}

impl IntoResponse for LambdaError {
    fn into_response(self) -> Response {
        self.0.render(Protocol::RestJson)
    }
}

type LambdaResult = Result<Response, LambdaError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/2015-03-31/functions", get(list_functions).post(create_function))
        .route("/2015-03-31/functions/", get(list_functions).post(create_function))
        .route("/2015-03-31/functions/{name}", get(get_function).delete(delete_function))
        .route("/2015-03-31/functions/{name}/configuration", get(get_configuration).put(update_configuration))
        .route("/2015-03-31/functions/{name}/code", axum::routing::put(update_code))
        .route("/2015-03-31/functions/{name}/invocations", axum::routing::post(invoke))
        .route("/_nimbus/code/{digest}", get(download_code))
        .route("/2015-03-31/functions/{name}/versions", get(list_versions).post(publish_version))
        .route("/2015-03-31/functions/{name}/aliases", get(list_aliases).post(create_alias))
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(get_alias).put(update_alias).delete(delete_alias),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            axum::routing::put(put_concurrency).delete(delete_concurrency),
        )
        .route("/2019-09-30/functions/{name}/concurrency", get(get_concurrency))
        .route("/2017-03-31/tags/{arn}", get(list_tags).post(tag_resource).delete(untag_resource))
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            get(get_invoke_config)
                .put(write_invoke_config)
                .post(write_invoke_config)
                .delete(delete_invoke_config),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            get(get_provisioned).put(put_provisioned).delete(delete_provisioned),
        )
        .route("/2018-10-31/layers", get(list_layers))
        .route("/2018-10-31/layers/{layer}/versions", get(list_layer_versions).post(publish_layer_version))
        .route(
            "/2018-10-31/layers/{layer}/versions/{version}",
            get(get_layer_version).delete(delete_layer_version),
        )
        .route("/2016-08-19/account-settings", get(account_settings))
        .route("/2016-08-19/account-settings/", get(account_settings))
}

async fn account_settings(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
) -> LambdaResult {
    let (functions, code_bytes, limit) = s.functions.account_usage(&ctx.scope.account);
    Ok(json_response(
        StatusCode::OK,
        serde_json::json!({
            "AccountLimit": {
                "TotalCodeSize": 80_530_636_800u64,
                "CodeSizeUnzipped": nimbus_model::limits::UNZIPPED_CODE_BYTES,
                "CodeSizeZipped": 52_428_800u64,
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": s.functions.unreserved_concurrency(&ctx.scope.account),
            },
            "AccountUsage": {"TotalCodeSize": code_bytes, "FunctionCount": functions},
        }),
    ))
}

/// Any path or method no service claims: AWS's error shape rather than an empty 404/405,
/// so SDKs report a real error code.
pub async fn unknown_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ApiError::new(404, "UnknownOperationException", format!("No operation matches {method} {}", uri.path()))
        .render(Protocol::RestJson)
}

/// Lambda answers unparseable bodies with `InvalidRequestContentException`.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {e}"),
        )
    })
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| {
        ApiError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn decode_zip(b64: &str) -> Result<Vec<u8>, ApiError> {
    // AWS bounds the request (the zip as base64 JSON), not the decoded zip.
    const REQUEST_LIMIT: usize = 69_905_067;
    if b64.len() > REQUEST_LIMIT {
        return Err(ApiError::new(
            413,
            "RequestEntityTooLargeException",
            format!("Request must be smaller than {REQUEST_LIMIT} bytes for the CreateFunction operation"),
        ));
    }
    let zip = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| {
        ApiError::new(
            400,
            "InvalidRequestContentException",
            "Could not parse request body into json: ZipFile is not valid base64",
        )
    })?;
    Ok(zip)
}

fn s3_unsupported() -> ApiError {
    ApiError::invalid_parameter("Nimbus has no S3: upload the deployment package as ZipFile.")
}

/// `FunctionConfiguration` exactly as Lambda returns it. A borrowed, derived shape: the
/// control-plane reads serialise straight from the engine's config without building a
/// `serde_json::Value` (most of a GetFunction's cost otherwise).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigurationOut<'a> {
    function_name: &'a str,
    function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<&'a str>,
    role: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    handler: Option<&'a str>,
    code_size: u64,
    description: &'a str,
    timeout: u32,
    memory_size: u32,
    last_modified: &'a str,
    code_sha256: &'a str,
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<EnvironmentOut<'a>>,
    tracing_config: ModeOut,
    revision_id: &'a str,
    state: &'static str,
    last_update_status: &'static str,
    package_type: &'static str,
    architectures: &'a [String],
    ephemeral_storage: SizeOut,
    snap_start: SnapStartOut,
    logging_config: LoggingOut,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    layers: Vec<LayerRefOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter_config: Option<DeadLetterOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_config_response: Option<ImageConfigResponseOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageConfigResponseOut<'a> {
    image_config: ImageConfigOut<'a>,
}

/// `ImageConfig`, both ways (an image function's ENTRYPOINT / CMD / WORKDIR overrides).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageConfigOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_point: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_directory: Option<&'a str>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ImageConfigInput {
    entry_point: Option<Vec<String>>,
    command: Option<Vec<String>>,
    working_directory: Option<String>,
}

impl From<ImageConfigInput> for nimbus_functions::ImageConfigInput {
    fn from(i: ImageConfigInput) -> Self {
        nimbus_functions::ImageConfigInput {
            entry_point: i.entry_point,
            command: i.command,
            working_directory: i.working_directory,
        }
    }
}

fn image_config_response(c: &FunctionConfig) -> Option<ImageConfigResponseOut<'_>> {
    let i = c.image.as_ref()?;
    if i.entry_point.is_none() && i.command.is_none() && i.working_directory.is_none() {
        return None;
    }
    Some(ImageConfigResponseOut {
        image_config: ImageConfigOut {
            entry_point: i.entry_point.as_deref(),
            command: i.command.as_deref(),
            working_directory: i.working_directory.as_deref(),
        },
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeadLetterOut<'a> {
    target_arn: &'a str,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DeadLetterInput {
    target_arn: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LayerRefOut<'a> {
    arn: &'a str,
    code_size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentOut<'a> {
    variables: &'a BTreeMap<String, String>,
}
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ModeOut {
    mode: &'static str,
}
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SizeOut {
    size: u32,
}
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SnapStartOut {
    apply_on: &'static str,
    optimization_status: &'static str,
}
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LoggingOut {
    log_format: &'static str,
    log_group: String,
}

fn configuration(c: &FunctionConfig) -> ConfigurationOut<'_> {
    ConfigurationOut {
        function_name: &c.name,
        function_arn: c.version_arn(),
        runtime: c.runtime.as_ref().map(|r| r.as_str()),
        role: &c.role,
        handler: c.handler.as_deref(),
        code_size: c.code_size,
        description: &c.description,
        timeout: c.timeout_secs,
        memory_size: c.memory_mb,
        last_modified: &c.last_modified,
        code_sha256: &c.code_sha256,
        version: &c.version,
        environment: (!c.environment.is_empty()).then_some(EnvironmentOut { variables: &c.environment }),
        tracing_config: ModeOut { mode: "PassThrough" },
        revision_id: &c.revision_id,
        state: "Active",
        last_update_status: "Successful",
        package_type: match c.package_type {
            nimbus_model::PackageType::Zip => "Zip",
            nimbus_model::PackageType::Image => "Image",
        },
        architectures: &c.architectures,
        ephemeral_storage: SizeOut { size: c.ephemeral_storage_mb },
        snap_start: SnapStartOut { apply_on: "None", optimization_status: "Off" },
        logging_config: LoggingOut { log_format: "Text", log_group: c.log_group() },
        layers: c
            .layers
            .iter()
            .enumerate()
            .map(|(i, arn)| LayerRefOut { arn, code_size: c.layer_sizes.get(i).copied().unwrap_or(0) })
            .collect(),
        dead_letter_config: c
            .dead_letter_target_arn
            .as_deref()
            .map(|target_arn| DeadLetterOut { target_arn }),
        image_config_response: image_config_response(c),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetFunctionOut<'a> {
    configuration: ConfigurationOut<'a>,
    code: CodeLocationOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency: Option<ConcurrencyOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConcurrencyOut {
    reserved_concurrent_executions: usize,
}
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CodeLocationOut {
    repository_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_image_uri: Option<String>,
}
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListFunctionsOut<'a> {
    functions: Vec<ConfigurationOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

fn json_response(status: StatusCode, v: impl Serialize) -> Response {
    match serde_json::to_vec(&v) {
        Ok(body) => (status, [("content-type", "application/json")], body).into_response(),
        Err(e) => ApiError::new(500, "ServiceException", e.to_string()).render(Protocol::RestJson),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CodeInput {
    zip_file: Option<String>,
    s3_bucket: Option<String>,
    image_uri: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentInput {
    variables: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct EphemeralInput {
    size: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateFunctionInput {
    function_name: Option<String>,
    runtime: Option<String>,
    role: Option<String>,
    handler: Option<String>,
    code: Option<CodeInput>,
    description: Option<String>,
    timeout: Option<u32>,
    memory_size: Option<u32>,
    environment: Option<EnvironmentInput>,
    ephemeral_storage: Option<EphemeralInput>,
    architectures: Option<Vec<String>>,
    package_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    publish: Option<bool>,
    layers: Option<Vec<String>>,
    dead_letter_config: Option<DeadLetterInput>,
    image_config: Option<ImageConfigInput>,
}

async fn create_function(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Bytes,
) -> LambdaResult {
    let input: CreateFunctionInput = parse_body(&body)?;
    let name = required(input.function_name, "functionName")?;
    let role = required(input.role, "role")?;
    let code = required(input.code, "code")?;
    if code.s3_bucket.is_some() {
        return Err(s3_unsupported().into());
    }
    let zip = match (&code.zip_file, &code.image_uri) {
        (Some(z), _) => decode_zip(z)?,
        (None, Some(_)) => Vec::new(),
        (None, None) => {
            return Err(ApiError::invalid_parameter("Please provide a source for function code.").into());
        }
    };
    let package_type = input.package_type.or_else(|| code.image_uri.as_ref().map(|_| "Image".to_string()));
    let config = s.functions.create_function(
        &ctx.scope,
        CreateFunction {
            name,
            runtime: input.runtime,
            handler: input.handler,
            role,
            zip,
            description: input.description,
            memory_mb: input.memory_size,
            timeout_secs: input.timeout,
            environment: input.environment.and_then(|e| e.variables).or(Some(BTreeMap::new())),
            ephemeral_storage_mb: input.ephemeral_storage.and_then(|e| e.size),
            architectures: input.architectures,
            package_type,
            tags: input.tags.unwrap_or_default(),
            layers: input.layers.unwrap_or_default(),
            dead_letter_target_arn: input.dead_letter_config.and_then(|d| d.target_arn),
            image_uri: code.image_uri,
            image_config: input.image_config.map(Into::into),
        },
    )?;
    let config = if input.publish.unwrap_or(false) {
        s.functions.publish_version(&ctx.scope, &config.name, None, None, None)?
    } else {
        config
    };
    Ok(json_response(StatusCode::CREATED, configuration(&config)))
}

#[derive(Deserialize)]
struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

async fn get_function(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> LambdaResult {
    let c = s.functions.get_function(&ctx.scope, &name, q.qualifier.as_deref())?;
    Ok(json_response(
        StatusCode::OK,
        GetFunctionOut {
            configuration: configuration(&c),
            code: match &c.image {
                Some(image) => CodeLocationOut {
                    repository_type: "ECR",
                    location: None,
                    image_uri: Some(image.image_uri.clone()),
                    resolved_image_uri: Some(image.resolved_image_uri.clone()),
                },
                None => CodeLocationOut {
                    repository_type: "S3",
                    location: Some(format!("{}/_nimbus/code/{}", s.endpoint_url, c.code_digest)),
                    image_uri: None,
                    resolved_image_uri: None,
                },
            },
            tags: Some(s.functions.tags(&c.arn())?).filter(|t| !t.is_empty()),
            concurrency: s
                .functions
                .reserved_concurrency(&ctx.scope, &name)?
                .map(|n| ConcurrencyOut { reserved_concurrent_executions: n }),
        },
    ))
}

async fn get_configuration(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> LambdaResult {
    let c = s.functions.get_function(&ctx.scope, &name, q.qualifier.as_deref())?;
    Ok(json_response(StatusCode::OK, configuration(&c)))
}

async fn download_code(State(s): State<AppState>, Path(digest): Path<String>) -> LambdaResult {
    match s.functions.code_package(&digest)? {
        Some(bytes) => Ok(([("content-type", "application/zip")], bytes).into_response()),
        None => Err(ApiError::not_found("No such code package").into()),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<String>,
}

async fn list_functions(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<ListQuery>,
) -> LambdaResult {
    let max_items = match q.max_items.as_deref() {
        None => None,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Some(n),
            _ => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{m}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000"
                ))
                .into());
            }
        },
    };
    let page = s.functions.list_functions(&ctx.scope, q.marker.as_deref(), max_items)?;
    Ok(json_response(
        StatusCode::OK,
        ListFunctionsOut {
            functions: page.functions.iter().map(|c| configuration(c)).collect(),
            next_marker: page.next_marker,
        },
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateConfigurationInput {
    runtime: Option<String>,
    role: Option<String>,
    handler: Option<String>,
    description: Option<String>,
    timeout: Option<u32>,
    memory_size: Option<u32>,
    environment: Option<EnvironmentInput>,
    ephemeral_storage: Option<EphemeralInput>,
    layers: Option<Vec<String>>,
    dead_letter_config: Option<DeadLetterInput>,
    revision_id: Option<String>,
    image_config: Option<ImageConfigInput>,
}

async fn update_configuration(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    body: Bytes,
) -> LambdaResult {
    let input: UpdateConfigurationInput = parse_body(&body)?;
    let c = s.functions.update_configuration(
        &ctx.scope,
        &name,
        UpdateConfiguration {
            runtime: input.runtime,
            handler: input.handler,
            role: input.role,
            description: input.description,
            memory_mb: input.memory_size,
            timeout_secs: input.timeout,
            environment: input.environment.map(|e| e.variables.unwrap_or_default()),
            ephemeral_storage_mb: input.ephemeral_storage.and_then(|e| e.size),
            layers: input.layers,
            // `DeadLetterConfig: {}` (no TargetArn) removes it, as on Lambda.
            dead_letter_target_arn: input.dead_letter_config.map(|d| d.target_arn.unwrap_or_default()),
            revision_id: input.revision_id,
            image_config: input.image_config.map(Into::into),
        },
    )?;
    Ok(json_response(StatusCode::OK, configuration(&c)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateCodeInput {
    zip_file: Option<String>,
    image_uri: Option<String>,
    s3_bucket: Option<String>,
    revision_id: Option<String>,
    dry_run: Option<bool>,
    publish: Option<bool>,
}

async fn update_code(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    body: Bytes,
) -> LambdaResult {
    let input: UpdateCodeInput = parse_body(&body)?;
    if input.s3_bucket.is_some() {
        return Err(s3_unsupported().into());
    }
    // An image function takes a new ImageUri instead of a package (the engine checks which).
    let zip = match (&input.zip_file, &input.image_uri) {
        (None, Some(_)) => Vec::new(),
        _ => decode_zip(&required(input.zip_file, "zipFile")?)?,
    };
    let c = s.functions.update_code(
        &ctx.scope,
        &name,
        UpdateCode {
            zip,
            image_uri: input.image_uri,
            revision_id: input.revision_id,
            dry_run: input.dry_run.unwrap_or(false),
        },
    )?;
    let c = if input.publish.unwrap_or(false) && !input.dry_run.unwrap_or(false) {
        s.functions.publish_version(&ctx.scope, &name, None, None, None)?
    } else {
        c
    };
    Ok(json_response(StatusCode::OK, configuration(&c)))
}

async fn delete_function(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> LambdaResult {
    s.functions.delete_function(&ctx.scope, &name, q.qualifier.as_deref())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn invoke(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> LambdaResult {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let invocation_type = match header("x-amz-invocation-type") {
        None | Some("RequestResponse") => InvocationType::RequestResponse,
        Some("Event") => InvocationType::Event,
        Some("DryRun") => InvocationType::DryRun,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
            ))
            .into());
        }
    };
    let tail_log = match header("x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]"
            ))
            .into());
        }
    };
    if invocation_type == InvocationType::RequestResponse
        && !body.is_empty()
        && body.len() <= nimbus_model::limits::SYNC_PAYLOAD_BYTES
        && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err()
    {
        return Err(ApiError::new(
            400,
            "InvalidRequestContentException",
            "Could not parse request body into json: Could not parse payload into json: Unexpected character",
        )
        .into());
    }
    let client_context = header("x-amz-client-context").map(|cc| {
        base64::engine::general_purpose::STANDARD
            .decode(cc)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| cc.to_string())
    });
    let result = s
        .functions
        .invoke(InvokeRequest {
            scope: ctx.scope,
            request_id: ctx.request_id,
            function: name,
            qualifier: q.get("Qualifier").cloned(),
            payload: body,
            invocation_type,
            tail_log,
            client_context,
        })
        .await?;
    let mut resp =
        (StatusCode::from_u16(result.status).unwrap_or(StatusCode::OK), result.payload).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&result.executed_version) {
        h.insert("x-amz-executed-version", v);
    }
    if let Some(fe) = result.function_error {
        h.insert("x-amz-function-error", HeaderValue::from_static(fe));
    }
    if let Some(tail) = result.log_tail.and_then(|t| HeaderValue::from_str(&t).ok()) {
        h.insert("x-amz-log-result", tail);
    }
    Ok(resp)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct PublishVersionInput {
    code_sha256: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
}

fn parse_optional<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { parse_body(body) }
}

async fn publish_version(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    body: Bytes,
) -> LambdaResult {
    let input: PublishVersionInput = parse_optional(&body)?;
    let c = s.functions.publish_version(
        &ctx.scope,
        &name,
        input.code_sha256.as_deref(),
        input.description,
        input.revision_id.as_deref(),
    )?;
    Ok(json_response(StatusCode::CREATED, configuration(&c)))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListVersionsOut<'a> {
    versions: Vec<ConfigurationOut<'a>>,
}

async fn list_versions(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> LambdaResult {
    let versions = s.functions.list_versions(&ctx.scope, &name)?;
    Ok(json_response(
        StatusCode::OK,
        ListVersionsOut { versions: versions.iter().map(|c| configuration(c)).collect() },
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RoutingConfigInput {
    additional_version_weights: Option<BTreeMap<String, f64>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct AliasInput {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingConfigInput>,
    revision_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AliasOut<'a> {
    alias_arn: String,
    name: &'a str,
    function_version: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    routing_config: Option<RoutingOut<'a>>,
    revision_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingOut<'a> {
    additional_version_weights: &'a BTreeMap<String, f64>,
}

fn alias_out(a: &nimbus_model::Alias) -> AliasOut<'_> {
    AliasOut {
        alias_arn: a.arn(),
        name: &a.name,
        function_version: &a.function_version,
        description: &a.description,
        routing_config: (!a.additional_version_weights.is_empty())
            .then_some(RoutingOut { additional_version_weights: &a.additional_version_weights }),
        revision_id: &a.revision_id,
    }
}

async fn create_alias(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    body: Bytes,
) -> LambdaResult {
    let input: AliasInput = parse_body(&body)?;
    let alias_name = required(input.name, "name")?;
    let version = required(input.function_version, "functionVersion")?;
    let a = s.functions.create_alias(
        &ctx.scope,
        &name,
        &alias_name,
        &version,
        input.description,
        input.routing_config.and_then(|r| r.additional_version_weights).unwrap_or_default(),
    )?;
    Ok(json_response(StatusCode::CREATED, alias_out(&a)))
}

async fn get_alias(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, alias)): Path<(String, String)>,
) -> LambdaResult {
    let a = s.functions.get_alias(&ctx.scope, &name, &alias)?;
    Ok(json_response(StatusCode::OK, alias_out(&a)))
}

async fn update_alias(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, alias)): Path<(String, String)>,
    body: Bytes,
) -> LambdaResult {
    let input: AliasInput = parse_optional(&body)?;
    let a = s.functions.update_alias(
        &ctx.scope,
        &name,
        &alias,
        input.function_version,
        input.description,
        input.routing_config.map(|r| r.additional_version_weights.unwrap_or_default()),
        input.revision_id.as_deref(),
    )?;
    Ok(json_response(StatusCode::OK, alias_out(&a)))
}

async fn delete_alias(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((name, alias)): Path<(String, String)>,
) -> LambdaResult {
    s.functions.delete_alias(&ctx.scope, &name, &alias)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct ListAliasesQuery {
    #[serde(rename = "FunctionVersion")]
    function_version: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListAliasesOut<'a> {
    aliases: Vec<AliasOut<'a>>,
}

async fn list_aliases(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<ListAliasesQuery>,
) -> LambdaResult {
    let aliases = s.functions.list_aliases(&ctx.scope, &name, q.function_version.as_deref())?;
    Ok(json_response(
        StatusCode::OK,
        ListAliasesOut { aliases: aliases.iter().map(|a| alias_out(a)).collect() },
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConcurrencyInput {
    reserved_concurrent_executions: Option<i64>,
}

async fn put_concurrency(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    body: Bytes,
) -> LambdaResult {
    let input: ConcurrencyInput = parse_body(&body)?;
    let n = required(input.reserved_concurrent_executions, "reservedConcurrentExecutions")?;
    let n = usize::try_from(n).map_err(|_| {
        ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0"
        ))
    })?;
    let n = s.functions.put_reserved_concurrency(&ctx.scope, &name, n)?;
    Ok(json_response(StatusCode::OK, ConcurrencyOut { reserved_concurrent_executions: n }))
}

async fn get_concurrency(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> LambdaResult {
    Ok(match s.functions.reserved_concurrency(&ctx.scope, &name)? {
        Some(n) => json_response(StatusCode::OK, ConcurrencyOut { reserved_concurrent_executions: n }),
        None => json_response(StatusCode::OK, serde_json::json!({})),
    })
}

async fn delete_concurrency(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> LambdaResult {
    s.functions.delete_reserved_concurrency(&ctx.scope, &name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagsInput {
    tags: Option<BTreeMap<String, String>>,
}

async fn list_tags(State(s): State<AppState>, Path(arn): Path<String>) -> LambdaResult {
    Ok(json_response(StatusCode::OK, serde_json::json!({"Tags": s.functions.tags(&arn)?})))
}

async fn tag_resource(State(s): State<AppState>, Path(arn): Path<String>, body: Bytes) -> LambdaResult {
    let input: TagsInput = parse_body(&body)?;
    s.functions.tag_resource(&arn, required(input.tags, "tags")?)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn untag_resource(
    State(s): State<AppState>,
    Path(arn): Path<String>,
    uri: axum::http::Uri,
) -> LambdaResult {
    // `tagKeys` repeats (`?tagKeys=a&tagKeys=b`), which a map extractor would collapse.
    let keys: Vec<String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "tagKeys")
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned()
        })
        .collect();
    s.functions.untag_resource(&arn, &keys)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct EventInvokeConfigInput {
    maximum_retry_attempts: Option<u32>,
    maximum_event_age_in_seconds: Option<u32>,
    destination_config: Option<serde_json::Value>,
}

fn invoke_config_out(c: &nimbus_functions::EventInvokeConfig) -> serde_json::Value {
    let destination = |d: &Option<String>| match d {
        Some(arn) => serde_json::json!({"Destination": arn}),
        None => serde_json::json!({}),
    };
    let mut v = serde_json::json!({
        "FunctionArn": c.function_arn,
        "LastModified": c.last_modified_ms as f64 / 1000.0,
        "DestinationConfig": {"OnSuccess": destination(&c.on_success), "OnFailure": destination(&c.on_failure)},
    });
    if let Some(n) = c.maximum_retry_attempts {
        v["MaximumRetryAttempts"] = n.into();
    }
    if let Some(n) = c.maximum_event_age_secs {
        v["MaximumEventAgeInSeconds"] = n.into();
    }
    v
}

/// PUT replaces the config (PutFunctionEventInvokeConfig); POST merges into it
/// (UpdateFunctionEventInvokeConfig).
async fn write_invoke_config(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    method: axum::http::Method,
    body: Bytes,
) -> LambdaResult {
    let merge = method == axum::http::Method::POST;
    let input: EventInvokeConfigInput = parse_optional(&body)?;
    let destination = |key: &str| {
        input
            .destination_config
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|x| x.get("Destination"))
            .and_then(|a| a.as_str())
            .map(str::to_string)
    };
    let c = s.functions.put_event_invoke_config(
        &ctx.scope,
        &name,
        q.qualifier.as_deref(),
        nimbus_functions::EventInvokeConfigInput {
            maximum_retry_attempts: input.maximum_retry_attempts,
            maximum_event_age_secs: input.maximum_event_age_in_seconds,
            on_success: destination("OnSuccess"),
            on_failure: destination("OnFailure"),
        },
        merge,
    )?;
    Ok(json_response(StatusCode::OK, invoke_config_out(&c)))
}

async fn get_invoke_config(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> LambdaResult {
    match s.functions.get_event_invoke_config(&ctx.scope, &name, q.qualifier.as_deref())? {
        Some(c) => Ok(json_response(StatusCode::OK, invoke_config_out(&c))),
        None => {
            let arn = s.functions.get_function(&ctx.scope, &name, None)?.arn();
            Err(ApiError::not_found(format!("The function {arn} doesn't have an EventInvokeConfig")).into())
        }
    }
}

async fn delete_invoke_config(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> LambdaResult {
    s.functions.delete_event_invoke_config(&ctx.scope, &name, q.qualifier.as_deref())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn provisioned_out(p: &nimbus_functions::ProvisionedState, with_arn: bool) -> serde_json::Value {
    let allocated = p.allocated.load(std::sync::atomic::Ordering::SeqCst).min(p.requested);
    let mut v = serde_json::json!({
        "RequestedProvisionedConcurrentExecutions": p.requested,
        "AvailableProvisionedConcurrentExecutions": allocated,
        "AllocatedProvisionedConcurrentExecutions": allocated,
        "Status": p.status(),
        "LastModified": p.last_modified,
    });
    if let Some(reason) = p.failed.lock().as_ref() {
        v["StatusReason"] = reason.clone().into();
    }
    if with_arn {
        v["FunctionArn"] = p.qualified_arn.clone().into();
    }
    v
}

#[derive(Deserialize)]
struct ProvisionedQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
    #[serde(rename = "List")]
    list: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProvisionedInput {
    provisioned_concurrent_executions: Option<usize>,
}

fn qualifier_required(q: Option<String>) -> Result<String, ApiError> {
    required(q, "qualifier")
}

async fn put_provisioned(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<ProvisionedQuery>,
    body: Bytes,
) -> LambdaResult {
    let qualifier = qualifier_required(q.qualifier)?;
    let input: ProvisionedInput = parse_body(&body)?;
    let n = required(input.provisioned_concurrent_executions, "provisionedConcurrentExecutions")?;
    let p = s.functions.put_provisioned_concurrency(&ctx.scope, &name, &qualifier, n)?;
    Ok(json_response(StatusCode::ACCEPTED, provisioned_out(&p, false)))
}

async fn get_provisioned(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<ProvisionedQuery>,
) -> LambdaResult {
    if q.list.is_some() {
        let all = s.functions.list_provisioned_concurrency(&ctx.scope, &name)?;
        let configs: Vec<serde_json::Value> = all.iter().map(|p| provisioned_out(p, true)).collect();
        return Ok(json_response(
            StatusCode::OK,
            serde_json::json!({"ProvisionedConcurrencyConfigs": configs}),
        ));
    }
    let qualifier = qualifier_required(q.qualifier)?;
    let p = s.functions.provisioned_concurrency(&ctx.scope, &name, &qualifier)?;
    Ok(json_response(StatusCode::OK, provisioned_out(&p, false)))
}

async fn delete_provisioned(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<ProvisionedQuery>,
) -> LambdaResult {
    let qualifier = qualifier_required(q.qualifier)?;
    s.functions.delete_provisioned_concurrency(&ctx.scope, &name, &qualifier)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishLayerInput {
    content: Option<CodeInput>,
    description: Option<String>,
    compatible_runtimes: Option<Vec<String>>,
    compatible_architectures: Option<Vec<String>>,
    license_info: Option<String>,
}

fn layer_out(s: &AppState, l: &nimbus_model::LayerVersion) -> serde_json::Value {
    let mut v = serde_json::json!({
        "Content": {
            "Location": format!("{}/_nimbus/code/{}", s.endpoint_url, l.code_digest),
            "CodeSha256": l.code_sha256,
            "CodeSize": l.code_size,
        },
        "LayerArn": l.layer_arn(),
        "LayerVersionArn": l.version_arn(),
        "Description": l.description,
        "CreatedDate": l.created_date,
        "Version": l.version,
        "CompatibleRuntimes": l.compatible_runtimes,
        "CompatibleArchitectures": l.compatible_architectures,
    });
    if let Some(li) = &l.license_info {
        v["LicenseInfo"] = li.clone().into();
    }
    v
}

/// The shape ListLayers/ListLayerVersions use (no `Content`).
fn layer_list_item(l: &nimbus_model::LayerVersion) -> serde_json::Value {
    serde_json::json!({
        "LayerVersionArn": l.version_arn(),
        "Version": l.version,
        "Description": l.description,
        "CreatedDate": l.created_date,
        "CompatibleRuntimes": l.compatible_runtimes,
        "CompatibleArchitectures": l.compatible_architectures,
    })
}

async fn publish_layer_version(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(layer): Path<String>,
    body: Bytes,
) -> LambdaResult {
    let input: PublishLayerInput = parse_body(&body)?;
    let content = required(input.content, "content")?;
    if content.s3_bucket.is_some() {
        return Err(s3_unsupported().into());
    }
    let zip = decode_zip(&required(content.zip_file, "content.zipFile")?)?;
    let l = s.functions.publish_layer_version(
        &ctx.scope,
        nimbus_functions::PublishLayer {
            name: layer,
            zip,
            description: input.description,
            compatible_runtimes: input.compatible_runtimes.unwrap_or_default(),
            compatible_architectures: input.compatible_architectures.unwrap_or_default(),
            license_info: input.license_info,
        },
    )?;
    Ok(json_response(StatusCode::CREATED, layer_out(&s, &l)))
}

fn layer_version_number(v: &str) -> Result<u64, ApiError> {
    v.parse().map_err(|_| ApiError::invalid_parameter(format!("Invalid layer version number: {v}")))
}

async fn get_layer_version(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((layer, version)): Path<(String, String)>,
) -> LambdaResult {
    let l = s.functions.get_layer_version(&ctx.scope, &layer, layer_version_number(&version)?)?;
    Ok(json_response(StatusCode::OK, layer_out(&s, &l)))
}

async fn delete_layer_version(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path((layer, version)): Path<(String, String)>,
) -> LambdaResult {
    s.functions.delete_layer_version(&ctx.scope, &layer, layer_version_number(&version)?)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_layer_versions(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(layer): Path<String>,
) -> LambdaResult {
    let mut all = s.functions.layer_versions(&ctx.scope, Some(&layer))?;
    all.reverse(); // newest first, as Lambda lists them
    let items: Vec<serde_json::Value> = all.iter().map(layer_list_item).collect();
    Ok(json_response(StatusCode::OK, serde_json::json!({"LayerVersions": items})))
}

async fn list_layers(State(s): State<AppState>, Extension(ctx): Extension<RequestContext>) -> LambdaResult {
    let all = s.functions.layer_versions(&ctx.scope, None)?;
    // The latest version of each layer (versions are listed oldest first).
    let mut latest: BTreeMap<String, &nimbus_model::LayerVersion> = BTreeMap::new();
    for l in &all {
        latest.insert(l.layer_name.clone(), l);
    }
    let items: Vec<serde_json::Value> = latest
        .values()
        .map(|l| {
            serde_json::json!({
                "LayerName": l.layer_name,
                "LayerArn": l.layer_arn(),
                "LatestMatchingVersion": layer_list_item(l),
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, serde_json::json!({"Layers": items})))
}
