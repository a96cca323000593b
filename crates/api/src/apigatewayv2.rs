//! API Gateway v2 (HTTP APIs): the REST-JSON control API under `/v2/apis…` (camelCase
//! members, AWS's error names) mapped onto `nimbus_gateway::GatewayEngine`. The data
//! plane lives in `apigateway_data`.
use crate::AppState;
use crate::auth::RequestContext;
use crate::error::{ApiError, Protocol};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use nimbus_gateway as gw;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

struct GwError(ApiError);

impl<E: Into<ApiError>> From<E> for GwError {
    fn from(e: E) -> Self {
        GwError(e.into())
    }
}

impl IntoResponse for GwError {
    fn into_response(self) -> Response {
        self.0.render(Protocol::RestJson)
    }
}

type GwResult = Result<Response, GwError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/apis", get(get_apis).post(create_api))
        .route("/v2/apis/{api}", get(get_api).patch(update_api).delete(delete_api))
        .route("/v2/apis/{api}/cors", delete(delete_cors))
        .route("/v2/apis/{api}/routes", get(get_routes).post(create_route))
        .route("/v2/apis/{api}/routes/{id}", get(get_route).patch(update_route).delete(delete_route))
        .route("/v2/apis/{api}/integrations", get(get_integrations).post(create_integration))
        .route(
            "/v2/apis/{api}/integrations/{id}",
            get(get_integration).patch(update_integration).delete(delete_integration),
        )
        .route("/v2/apis/{api}/authorizers", get(get_authorizers).post(create_authorizer))
        .route(
            "/v2/apis/{api}/authorizers/{id}",
            get(get_authorizer).patch(update_authorizer).delete(delete_authorizer),
        )
        .route("/v2/apis/{api}/stages", get(get_stages).post(create_stage))
        .route("/v2/apis/{api}/stages/{id}", get(get_stage).patch(update_stage).delete(delete_stage))
        .route("/v2/apis/{api}/stages/{id}/routesettings/{key}", delete(delete_route_settings))
        .route("/v2/apis/{api}/deployments", get(get_deployments).post(create_deployment))
        .route(
            "/v2/apis/{api}/deployments/{id}",
            get(get_deployment).patch(update_deployment).delete(delete_deployment),
        )
}

fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "BadRequestException", format!("Invalid request body: {e}")))
}

fn reply(status: StatusCode, v: Value) -> Response {
    (status, [("content-type", "application/json")], v.to_string()).into_response()
}

/// Drops `null` members: AWS omits unset members.
fn compact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct PageQuery {
    #[serde(rename = "maxResults")]
    max_results: Option<String>,
    #[serde(rename = "nextToken")]
    next_token: Option<String>,
}

fn items<T: Clone>(all: &[T], q: &PageQuery, out: impl Fn(&T) -> Value) -> GwResult {
    let max = match &q.max_results {
        Some(m) => Some(
            m.parse::<usize>()
                .map_err(|_| ApiError::new(400, "BadRequestException", format!("Invalid maxResults {m}")))?,
        ),
        None => None,
    };
    let (page, next) = gw::page(all, q.next_token.as_deref(), max)?;
    let mut v = json!({ "items": page.iter().map(out).collect::<Vec<_>>() });
    if let Some(t) = next {
        v["nextToken"] = json!(t);
    }
    Ok(reply(StatusCode::OK, v))
}

// ---------- wire shapes ----------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CorsIn {
    allow_credentials: Option<bool>,
    allow_headers: Option<Vec<String>>,
    allow_methods: Option<Vec<String>>,
    allow_origins: Option<Vec<String>>,
    expose_headers: Option<Vec<String>>,
    max_age: Option<i64>,
}

impl From<CorsIn> for gw::Cors {
    fn from(c: CorsIn) -> gw::Cors {
        gw::Cors {
            allow_credentials: c.allow_credentials,
            allow_headers: c.allow_headers.unwrap_or_default(),
            allow_methods: c.allow_methods.unwrap_or_default(),
            allow_origins: c.allow_origins.unwrap_or_default(),
            expose_headers: c.expose_headers.unwrap_or_default(),
            max_age: c.max_age.and_then(|a| u32::try_from(a).ok()),
        }
    }
}

fn cors_out(c: &gw::Cors) -> Value {
    let mut v = json!({
        "allowHeaders": c.allow_headers,
        "allowMethods": c.allow_methods,
        "allowOrigins": c.allow_origins,
        "exposeHeaders": c.expose_headers,
    });
    if let Some(a) = c.allow_credentials {
        v["allowCredentials"] = json!(a);
    }
    if let Some(a) = c.max_age {
        v["maxAge"] = json!(a);
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiIn {
    name: Option<String>,
    protocol_type: Option<String>,
    description: Option<String>,
    version: Option<String>,
    route_selection_expression: Option<String>,
    api_key_selection_expression: Option<String>,
    disable_execute_api_endpoint: Option<bool>,
    cors_configuration: Option<CorsIn>,
    tags: Option<BTreeMap<String, String>>,
    target: Option<String>,
    route_key: Option<String>,
}

impl From<ApiIn> for gw::ApiInput {
    fn from(a: ApiIn) -> gw::ApiInput {
        gw::ApiInput {
            name: a.name,
            protocol_type: a.protocol_type,
            description: a.description,
            version: a.version,
            route_selection_expression: a.route_selection_expression,
            api_key_selection_expression: a.api_key_selection_expression,
            disable_execute_api_endpoint: a.disable_execute_api_endpoint,
            cors: a.cors_configuration.map(gw::Cors::from),
            tags: a.tags,
            target: a.target,
            route_key: a.route_key,
        }
    }
}

/// `http://{apiId}.execute-api.localhost:{port}`: `*.localhost` resolves to loopback.
pub(crate) fn api_endpoint(s: &AppState, api_id: &str) -> String {
    let port = s.endpoint_url.rsplit(':').next().unwrap_or("4566");
    format!("http://{api_id}.execute-api.localhost:{port}")
}

fn api_out(s: &AppState, a: &gw::Api) -> Value {
    compact(json!({
        "apiEndpoint": api_endpoint(s, &a.api_id),
        "apiId": a.api_id,
        "apiKeySelectionExpression": a.api_key_selection_expression,
        "corsConfiguration": a.cors.as_ref().map(cors_out),
        "createdDate": a.created_date,
        "description": a.description,
        "disableExecuteApiEndpoint": a.disable_execute_api_endpoint,
        "ipAddressType": "ipv4",
        "name": a.name,
        "protocolType": a.protocol_type,
        "routeSelectionExpression": a.route_selection_expression,
        "tags": a.tags,
        "version": a.version,
    }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RouteIn {
    route_key: Option<String>,
    target: Option<String>,
    authorization_type: Option<String>,
    authorizer_id: Option<String>,
    authorization_scopes: Option<Vec<String>>,
    api_key_required: Option<bool>,
    operation_name: Option<String>,
}

impl From<RouteIn> for gw::RouteInput {
    fn from(r: RouteIn) -> gw::RouteInput {
        gw::RouteInput {
            route_key: r.route_key,
            target: r.target,
            authorization_type: r.authorization_type,
            authorizer_id: r.authorizer_id,
            authorization_scopes: r.authorization_scopes,
            api_key_required: r.api_key_required,
            operation_name: r.operation_name,
        }
    }
}

fn route_out(r: &gw::Route) -> Value {
    let mut v = compact(json!({
        "apiGatewayManaged": r.api_gateway_managed.then_some(true),
        "apiKeyRequired": r.api_key_required,
        "authorizationType": r.authorization_type,
        "authorizerId": r.authorizer_id,
        "operationName": r.operation_name,
        "routeId": r.route_id,
        "routeKey": r.route_key,
        "target": r.target,
    }));
    if !r.authorization_scopes.is_empty() {
        v["authorizationScopes"] = json!(r.authorization_scopes);
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IntegrationIn {
    integration_type: Option<String>,
    integration_uri: Option<String>,
    integration_method: Option<String>,
    payload_format_version: Option<String>,
    timeout_in_millis: Option<u32>,
    connection_type: Option<String>,
    connection_id: Option<String>,
    description: Option<String>,
    request_parameters: Option<BTreeMap<String, String>>,
}

impl From<IntegrationIn> for gw::IntegrationInput {
    fn from(i: IntegrationIn) -> gw::IntegrationInput {
        gw::IntegrationInput {
            integration_type: i.integration_type,
            integration_uri: i.integration_uri,
            integration_method: i.integration_method,
            payload_format_version: i.payload_format_version,
            timeout_in_millis: i.timeout_in_millis,
            connection_type: i.connection_type,
            connection_id: i.connection_id,
            description: i.description,
            request_parameters: i.request_parameters,
        }
    }
}

fn integration_out(i: &gw::Integration) -> Value {
    let mut v = compact(json!({
        "apiGatewayManaged": i.api_gateway_managed.then_some(true),
        "connectionId": i.connection_id,
        "connectionType": i.connection_type,
        "description": i.description,
        "integrationId": i.integration_id,
        "integrationMethod": i.integration_method,
        "integrationType": i.integration_type,
        "integrationUri": i.integration_uri,
        "payloadFormatVersion": i.payload_format_version,
        "timeoutInMillis": i.timeout_in_millis,
    }));
    if !i.request_parameters.is_empty() {
        v["requestParameters"] = json!(i.request_parameters);
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JwtIn {
    audience: Option<Vec<String>>,
    issuer: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AuthorizerIn {
    name: Option<String>,
    authorizer_type: Option<String>,
    authorizer_uri: Option<String>,
    authorizer_payload_format_version: Option<String>,
    authorizer_result_ttl_in_seconds: Option<u32>,
    enable_simple_responses: Option<bool>,
    identity_source: Option<Vec<String>>,
    jwt_configuration: Option<JwtIn>,
}

impl From<AuthorizerIn> for gw::AuthorizerInput {
    fn from(a: AuthorizerIn) -> gw::AuthorizerInput {
        let (jwt_issuer, jwt_audience) = match a.jwt_configuration {
            Some(j) => (j.issuer, j.audience),
            None => (None, None),
        };
        gw::AuthorizerInput {
            name: a.name,
            authorizer_type: a.authorizer_type,
            authorizer_uri: a.authorizer_uri,
            authorizer_payload_format_version: a.authorizer_payload_format_version,
            authorizer_result_ttl_in_seconds: a.authorizer_result_ttl_in_seconds,
            enable_simple_responses: a.enable_simple_responses,
            identity_source: a.identity_source,
            jwt_issuer,
            jwt_audience,
        }
    }
}

fn authorizer_out(a: &gw::Authorizer) -> Value {
    let mut v = compact(json!({
        "authorizerId": a.authorizer_id,
        "authorizerType": a.authorizer_type,
        "authorizerUri": a.authorizer_uri,
        "authorizerPayloadFormatVersion": a.authorizer_payload_format_version,
        "identitySource": a.identity_source,
        "name": a.name,
    }));
    if a.authorizer_type == "REQUEST" {
        v["authorizerResultTtlInSeconds"] = json!(a.authorizer_result_ttl_in_seconds);
        v["enableSimpleResponses"] = json!(a.enable_simple_responses);
    }
    if let Some(issuer) = &a.jwt_issuer {
        v["jwtConfiguration"] = json!({"issuer": issuer, "audience": a.jwt_audience});
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RouteSettingsIn {
    throttling_burst_limit: Option<u32>,
    throttling_rate_limit: Option<f64>,
    detailed_metrics_enabled: Option<bool>,
    logging_level: Option<String>,
    data_trace_enabled: Option<bool>,
}

impl From<RouteSettingsIn> for gw::RouteSettings {
    fn from(r: RouteSettingsIn) -> gw::RouteSettings {
        gw::RouteSettings {
            throttling_burst_limit: r.throttling_burst_limit,
            throttling_rate_limit: r.throttling_rate_limit,
            detailed_metrics_enabled: r.detailed_metrics_enabled,
            logging_level: r.logging_level,
            data_trace_enabled: r.data_trace_enabled,
        }
    }
}

fn route_settings_out(r: &gw::RouteSettings) -> Value {
    compact(json!({
        "dataTraceEnabled": r.data_trace_enabled,
        "detailedMetricsEnabled": r.detailed_metrics_enabled.unwrap_or(false),
        "loggingLevel": r.logging_level,
        "throttlingBurstLimit": r.throttling_burst_limit,
        "throttlingRateLimit": r.throttling_rate_limit,
    }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccessLogIn {
    destination_arn: Option<String>,
    format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StageIn {
    stage_name: Option<String>,
    description: Option<String>,
    auto_deploy: Option<bool>,
    deployment_id: Option<String>,
    stage_variables: Option<BTreeMap<String, String>>,
    default_route_settings: Option<RouteSettingsIn>,
    route_settings: Option<BTreeMap<String, RouteSettingsIn>>,
    access_log_settings: Option<AccessLogIn>,
    tags: Option<BTreeMap<String, String>>,
}

impl From<StageIn> for gw::StageInput {
    fn from(s: StageIn) -> gw::StageInput {
        gw::StageInput {
            stage_name: s.stage_name,
            description: s.description,
            auto_deploy: s.auto_deploy,
            deployment_id: s.deployment_id,
            stage_variables: s.stage_variables,
            default_route_settings: s.default_route_settings.map(gw::RouteSettings::from),
            route_settings: s
                .route_settings
                .map(|m| m.into_iter().map(|(k, v)| (k, gw::RouteSettings::from(v))).collect()),
            access_log_settings: s
                .access_log_settings
                .map(|a| gw::AccessLogSettings { destination_arn: a.destination_arn, format: a.format }),
            tags: s.tags,
        }
    }
}

fn stage_out(s: &gw::Stage) -> Value {
    let settings: Map<String, Value> =
        s.route_settings.iter().map(|(k, v)| (k.clone(), route_settings_out(v))).collect();
    compact(json!({
        "accessLogSettings": s.access_log_settings.as_ref().map(|a| compact(json!({
            "destinationArn": a.destination_arn, "format": a.format,
        }))),
        "apiGatewayManaged": s.api_gateway_managed.then_some(true),
        "autoDeploy": s.auto_deploy,
        "createdDate": s.created_date,
        "defaultRouteSettings": route_settings_out(&s.default_route_settings),
        "deploymentId": s.deployment_id,
        "description": s.description,
        "lastUpdatedDate": s.last_updated_date,
        "routeSettings": settings,
        "stageName": s.stage_name,
        "stageVariables": s.stage_variables,
        "tags": s.tags,
    }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeploymentIn {
    description: Option<String>,
    stage_name: Option<String>,
}

fn deployment_out(d: &gw::Deployment) -> Value {
    compact(json!({
        "autoDeployed": d.auto_deployed,
        "createdDate": d.created_date,
        "deploymentId": d.deployment_id,
        "deploymentStatus": "DEPLOYED",
        "description": d.description,
    }))
}

// ---------- handlers ----------

type Ctx = Extension<RequestContext>;

async fn create_api(State(s): State<AppState>, Extension(c): Ctx, body: Bytes) -> GwResult {
    let input: ApiIn = parse(&body)?;
    let api = s.gateway.create_api(&c.scope, input.into())?;
    Ok(reply(StatusCode::CREATED, api_out(&s, &api)))
}

async fn get_apis(State(s): State<AppState>, Extension(c): Ctx, Query(q): Query<PageQuery>) -> GwResult {
    items(&s.gateway.list_apis(&c.scope), &q, |a| api_out(&s, a))
}

async fn get_api(State(s): State<AppState>, Extension(c): Ctx, Path(api): Path<String>) -> GwResult {
    Ok(reply(StatusCode::OK, api_out(&s, &s.gateway.get_api(&c.scope, &api)?)))
}

async fn update_api(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    body: Bytes,
) -> GwResult {
    let input: ApiIn = parse(&body)?;
    Ok(reply(StatusCode::OK, api_out(&s, &s.gateway.update_api(&c.scope, &api, input.into())?)))
}

async fn delete_api(State(s): State<AppState>, Extension(c): Ctx, Path(api): Path<String>) -> GwResult {
    s.gateway.delete_api(&c.scope, &api)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_cors(State(s): State<AppState>, Extension(c): Ctx, Path(api): Path<String>) -> GwResult {
    s.gateway.delete_cors(&c.scope, &api)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_route(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    body: Bytes,
) -> GwResult {
    let input: RouteIn = parse(&body)?;
    Ok(reply(StatusCode::CREATED, route_out(&s.gateway.create_route(&c.scope, &api, input.into())?)))
}

async fn get_routes(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    Query(q): Query<PageQuery>,
) -> GwResult {
    items(&s.gateway.get_api(&c.scope, &api)?.routes, &q, route_out)
}

async fn get_route(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    Ok(reply(StatusCode::OK, route_out(&s.gateway.get_route(&c.scope, &api, &id)?)))
}

async fn update_route(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
    body: Bytes,
) -> GwResult {
    let input: RouteIn = parse(&body)?;
    Ok(reply(StatusCode::OK, route_out(&s.gateway.update_route(&c.scope, &api, &id, input.into())?)))
}

async fn delete_route(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    s.gateway.delete_route(&c.scope, &api, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_integration(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    body: Bytes,
) -> GwResult {
    let input: IntegrationIn = parse(&body)?;
    let i = s.gateway.create_integration(&c.scope, &api, input.into())?;
    Ok(reply(StatusCode::CREATED, integration_out(&i)))
}

async fn get_integrations(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    Query(q): Query<PageQuery>,
) -> GwResult {
    items(&s.gateway.get_api(&c.scope, &api)?.integrations, &q, integration_out)
}

async fn get_integration(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    Ok(reply(StatusCode::OK, integration_out(&s.gateway.get_integration(&c.scope, &api, &id)?)))
}

async fn update_integration(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
    body: Bytes,
) -> GwResult {
    let input: IntegrationIn = parse(&body)?;
    let i = s.gateway.update_integration(&c.scope, &api, &id, input.into())?;
    Ok(reply(StatusCode::OK, integration_out(&i)))
}

async fn delete_integration(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    s.gateway.delete_integration(&c.scope, &api, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_authorizer(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    body: Bytes,
) -> GwResult {
    let input: AuthorizerIn = parse(&body)?;
    let a = s.gateway.create_authorizer(&c.scope, &api, input.into())?;
    Ok(reply(StatusCode::CREATED, authorizer_out(&a)))
}

async fn get_authorizers(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    Query(q): Query<PageQuery>,
) -> GwResult {
    items(&s.gateway.get_api(&c.scope, &api)?.authorizers, &q, authorizer_out)
}

async fn get_authorizer(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    Ok(reply(StatusCode::OK, authorizer_out(&s.gateway.get_authorizer(&c.scope, &api, &id)?)))
}

async fn update_authorizer(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
    body: Bytes,
) -> GwResult {
    let input: AuthorizerIn = parse(&body)?;
    let a = s.gateway.update_authorizer(&c.scope, &api, &id, input.into())?;
    Ok(reply(StatusCode::OK, authorizer_out(&a)))
}

async fn delete_authorizer(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    s.gateway.delete_authorizer(&c.scope, &api, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_stage(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    body: Bytes,
) -> GwResult {
    let input: StageIn = parse(&body)?;
    Ok(reply(StatusCode::CREATED, stage_out(&s.gateway.create_stage(&c.scope, &api, input.into())?)))
}

async fn get_stages(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    Query(q): Query<PageQuery>,
) -> GwResult {
    items(&s.gateway.get_api(&c.scope, &api)?.stages, &q, stage_out)
}

async fn get_stage(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    Ok(reply(StatusCode::OK, stage_out(&s.gateway.get_stage(&c.scope, &api, &id)?)))
}

async fn update_stage(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
    body: Bytes,
) -> GwResult {
    let input: StageIn = parse(&body)?;
    Ok(reply(StatusCode::OK, stage_out(&s.gateway.update_stage(&c.scope, &api, &id, input.into())?)))
}

async fn delete_stage(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    s.gateway.delete_stage(&c.scope, &api, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_route_settings(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id, key)): Path<(String, String, String)>,
) -> GwResult {
    s.gateway.delete_route_settings(&c.scope, &api, &id, &key)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_deployment(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    body: Bytes,
) -> GwResult {
    let input: DeploymentIn = parse(&body)?;
    let d = s.gateway.create_deployment(&c.scope, &api, input.stage_name.as_deref(), input.description)?;
    Ok(reply(StatusCode::CREATED, deployment_out(&d)))
}

async fn get_deployments(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path(api): Path<String>,
    Query(q): Query<PageQuery>,
) -> GwResult {
    items(&s.gateway.get_api(&c.scope, &api)?.deployments, &q, deployment_out)
}

async fn get_deployment(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    Ok(reply(StatusCode::OK, deployment_out(&s.gateway.get_deployment(&c.scope, &api, &id)?)))
}

async fn update_deployment(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
    body: Bytes,
) -> GwResult {
    let input: DeploymentIn = parse(&body)?;
    let d = s.gateway.update_deployment(&c.scope, &api, &id, input.description)?;
    Ok(reply(StatusCode::OK, deployment_out(&d)))
}

async fn delete_deployment(
    State(s): State<AppState>,
    Extension(c): Ctx,
    Path((api, id)): Path<(String, String)>,
) -> GwResult {
    s.gateway.delete_deployment(&c.scope, &api, &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
