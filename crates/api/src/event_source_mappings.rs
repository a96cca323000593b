//! Lambda's event source mapping routes (`/2015-03-31/event-source-mappings`): wire shapes
//! ⇄ the typed `nimbus-triggers` engine.
use crate::AppState;
use crate::auth::RequestContext;
use crate::error::{ApiError, Protocol};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nimbus_triggers::{CreateMapping, EventSourceMapping, UpdateMapping};
use serde::Deserialize;
use serde_json::{Value, json};

struct EsmError(ApiError);

impl<E: Into<ApiError>> From<E> for EsmError {
    fn from(e: E) -> Self {
        EsmError(e.into())
    }
}

impl IntoResponse for EsmError {
    fn into_response(self) -> Response {
        self.0.render(Protocol::RestJson)
    }
}

type EsmResult = Result<Response, EsmError>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/2015-03-31/event-source-mappings", get(list).post(create))
        .route("/2015-03-31/event-source-mappings/", get(list).post(create))
        .route("/2015-03-31/event-source-mappings/{uuid}", get(get_one).put(update).delete(delete))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ScalingConfig {
    maximum_concurrency: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct MappingInput {
    event_source_arn: Option<String>,
    function_name: Option<String>,
    enabled: Option<bool>,
    batch_size: Option<u32>,
    maximum_batching_window_in_seconds: Option<u32>,
    function_response_types: Option<Vec<String>>,
    scaling_config: Option<ScalingConfig>,
    filter_criteria: Option<Value>,
    starting_position: Option<String>,
    destination_config: Option<Value>,
}

impl MappingInput {
    /// `FilterCriteria.Filters[].Pattern`; `None` when FilterCriteria is absent.
    fn filters(&self) -> Result<Option<Vec<String>>, ApiError> {
        let Some(fc) = &self.filter_criteria else { return Ok(None) };
        let filters = match fc.get("Filters") {
            None | Some(Value::Null) => return Ok(Some(Vec::new())),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(ApiError::invalid_parameter("FilterCriteria.Filters must be a list.")),
        };
        filters
            .iter()
            .map(|f| {
                f.get("Pattern")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::invalid_parameter("Each filter needs a Pattern string."))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Members Lambda accepts for other event sources, or that Nimbus cannot honour yet.
    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        if self.starting_position.is_some() {
            return Err(ApiError::invalid_parameter(
                "StartingPosition is not valid for an SQS event source.",
            ));
        }
        if self
            .destination_config
            .as_ref()
            .is_some_and(|d| d.get("OnFailure").and_then(|o| o.get("Destination")).is_some())
        {
            return Err(ApiError::invalid_parameter(
                "DestinationConfig is not supported for SQS event sources: use the queue's redrive policy.",
            ));
        }
        Ok(())
    }
}

fn parse_input(body: &[u8]) -> Result<MappingInput, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(MappingInput::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {e}"),
        )
    })
}

fn mapping_out(m: &EventSourceMapping, state: &str, last_result: &str) -> Value {
    let mut v = json!({
        "UUID": m.uuid,
        "BatchSize": m.batch_size,
        "MaximumBatchingWindowInSeconds": m.maximum_batching_window_secs,
        "EventSourceArn": m.event_source_arn,
        "FunctionArn": m.function_arn,
        "LastModified": m.last_modified_ms as f64 / 1000.0,
        "LastProcessingResult": last_result,
        "State": state,
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": if m.report_batch_item_failures { json!(["ReportBatchItemFailures"]) } else { json!([]) },
        "EventSourceMappingArn": m.arn(),
    });
    if let Some(c) = m.maximum_concurrency {
        v["ScalingConfig"] = json!({"MaximumConcurrency": c});
    }
    if !m.filters.is_empty() {
        let filters: Vec<Value> = m.filters.iter().map(|p| json!({"Pattern": p})).collect();
        v["FilterCriteria"] = json!({"Filters": filters});
    }
    v
}

fn respond(status: StatusCode, v: Value) -> Response {
    (status, [("content-type", "application/json")], v.to_string()).into_response()
}

async fn create(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    body: Bytes,
) -> EsmResult {
    let input = parse_input(&body)?;
    input.refuse_unsupported()?;
    let filters = input.filters()?.unwrap_or_default();
    let event_source_arn = input.event_source_arn.ok_or_else(|| {
        ApiError::invalid_parameter("EventSourceArn is required for an SQS event source mapping.")
    })?;
    let function_name =
        input.function_name.ok_or_else(|| ApiError::invalid_parameter("FunctionName is required."))?;
    let (m, result) = s.triggers.create(
        &ctx.scope,
        CreateMapping {
            event_source_arn,
            function_name,
            enabled: input.enabled,
            batch_size: input.batch_size,
            maximum_batching_window_secs: input.maximum_batching_window_in_seconds,
            function_response_types: input.function_response_types.unwrap_or_default(),
            maximum_concurrency: input.scaling_config.and_then(|c| c.maximum_concurrency),
            filters,
        },
    )?;
    // The poller starts at once; Lambda still reports the transition state first.
    Ok(respond(StatusCode::ACCEPTED, mapping_out(&m, "Creating", &result)))
}

async fn get_one(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(uuid): Path<String>,
) -> EsmResult {
    let (m, result) = s.triggers.get(&ctx.scope, &uuid)?;
    Ok(respond(StatusCode::OK, mapping_out(&m, m.state(), &result)))
}

async fn update(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> EsmResult {
    let input = parse_input(&body)?;
    input.refuse_unsupported()?;
    let filters = input.filters()?;
    let before = s.triggers.get(&ctx.scope, &uuid)?.0.enabled;
    let (m, result) = s.triggers.update(
        &ctx.scope,
        &uuid,
        UpdateMapping {
            function_name: input.function_name,
            enabled: input.enabled,
            batch_size: input.batch_size,
            maximum_batching_window_secs: input.maximum_batching_window_in_seconds,
            function_response_types: input.function_response_types,
            maximum_concurrency: input.scaling_config.and_then(|c| c.maximum_concurrency),
            filters,
        },
    )?;
    let state = match (before, m.enabled) {
        (true, false) => "Disabling",
        (false, true) => "Enabling",
        _ => "Updating",
    };
    Ok(respond(StatusCode::ACCEPTED, mapping_out(&m, state, &result)))
}

async fn delete(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(uuid): Path<String>,
) -> EsmResult {
    let (m, result) = s.triggers.delete(&ctx.scope, &uuid)?;
    Ok(respond(StatusCode::ACCEPTED, mapping_out(&m, "Deleting", &result)))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(rename = "EventSourceArn")]
    event_source_arn: Option<String>,
    #[serde(rename = "FunctionName")]
    function_name: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
}

async fn list(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Query(q): Query<ListQuery>,
) -> EsmResult {
    let page = s.triggers.list(
        &ctx.scope,
        q.event_source_arn.as_deref(),
        q.function_name.as_deref(),
        q.marker.as_deref(),
        q.max_items,
    )?;
    let items: Vec<Value> = page.mappings.iter().map(|(m, r)| mapping_out(m, m.state(), r)).collect();
    let mut v = json!({"EventSourceMappings": items});
    if let Some(n) = page.next_marker {
        v["NextMarker"] = json!(n);
    }
    Ok(respond(StatusCode::OK, v))
}
