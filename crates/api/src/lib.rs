//! Nimbus's AWS wire layer: SigV4, the generic JSON-1.0/1.1 `X-Amz-Target` dispatcher,
//! REST-JSON routing, AWS error shapes, and one module per service mapping wire shapes to
//! typed engine calls. The only crate that knows what AWS requests look like.
#![forbid(unsafe_code)]

mod apigateway_data;
mod apigatewayv2;
mod auth;
mod ecr;
mod ecs;
mod error;
mod event_source_mappings;
mod events;
mod function_urls;
mod images_import;
mod json_rpc;
mod lambda;
mod logs;
pub mod service_integrations;
pub mod sigv4;
mod sqs;
mod stepfunctions;
mod usage_http;

pub use auth::{AuthConfig, AuthMode, RequestContext};
pub use error::{ApiError, Protocol};
pub use json_rpc::JsonService;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use nimbus_functions::FunctionsEngine;
use nimbus_gateway::GatewayEngine;
use nimbus_queues::QueuesEngine;
use nimbus_store::LogStore;
use nimbus_triggers::Triggers;
use std::sync::Arc;

/// Everything the HTTP layer needs.
#[derive(Clone)]
pub struct AppState {
    pub functions: Arc<FunctionsEngine>,
    pub gateway: Arc<GatewayEngine>,
    pub logs: Arc<LogStore>,
    pub eventbridge: Arc<nimbus_eventbridge::EventBridgeEngine>,
    pub queues: Arc<QueuesEngine>,
    pub triggers: Arc<Triggers>,
    pub stepfunctions: Arc<nimbus_stepfunctions::StepFunctionsEngine>,
    pub auth: Arc<AuthConfig>,
    /// Usage accounting and the price table (`/_nimbus/usage`, `/_nimbus/advise`); `None` = off.
    pub usage: Option<nimbus_usage::Accounting>,
    /// The one image store (registry, ECR, ECS tasks, image functions share it).
    pub images: nimbus_images::ImageStore,
    pub ecr: Arc<nimbus_registry::EcrEngine>,
    pub ecs: Arc<nimbus_containers::EcsEngine>,
    pub version: &'static str,
    /// Base URL clients reach this server at (for `Code.Location` links).
    pub endpoint_url: String,
}

/// The single listener's router: health, REST-JSON services by path, and every
/// JSON-1.x service through one dispatcher.
pub fn router(state: AppState) -> Router {
    let services: Vec<Arc<dyn JsonService>> = vec![
        Arc::new(logs::LogsService { logs: state.logs.clone() }),
        Arc::new(events::EventsService { engine: state.eventbridge.clone() }),
        Arc::new(sqs::SqsService { queues: state.queues.clone(), endpoint_url: state.endpoint_url.clone() }),
        Arc::new(stepfunctions::StepFunctionsService { engine: state.stepfunctions.clone() }),
        Arc::new(ecr::EcrService { engine: state.ecr.clone() }),
        Arc::new(ecs::EcsService { engine: state.ecs.clone() }),
    ];
    let dispatcher = Arc::new(json_rpc::Dispatcher::new(services));
    Router::new()
        .route("/_nimbus/health", axum::routing::get(health))
        .route("/_nimbus/usage", axum::routing::get(usage_http::usage))
        .route("/_nimbus/advise", axum::routing::get(usage_http::advise))
        .route("/_nimbus/images/import", axum::routing::post(images_import::import))
        .merge(lambda::routes())
        .merge(apigatewayv2::routes())
        .merge(event_source_mappings::routes())
        .route(
            "/2021-10-31/functions/{name}/url",
            axum::routing::get(function_urls::get)
                .post(function_urls::create)
                .put(function_urls::update)
                .delete(function_urls::delete),
        )
        .route("/2021-10-31/functions/{name}/urls", axum::routing::get(function_urls::list))
        .route("/", axum::routing::post(json_rpc::dispatch))
        .fallback(lambda::unknown_route)
        .method_not_allowed_fallback(lambda::unknown_route)
        .layer(axum::Extension(dispatcher))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        // Function URL requests are not AWS API calls: they bypass SigV4 handling.
        .layer(axum::middleware::from_fn_with_state(state.clone(), function_urls::intercept))
        // So are API Gateway invocations (`{apiId}.execute-api.…` or `/_aws/execute-api/…`).
        .layer(axum::middleware::from_fn_with_state(state.clone(), apigateway_data::intercept))
        // Bodies are bounded per operation inside the handlers (6 MB invoke, 50 MB zip
        // as base64 JSON), so AWS's own error can be returned rather than axum's.
        .layer(axum::extract::DefaultBodyLimit::max(80 * 1024 * 1024))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": state.version,
        "sandbox": state.functions.sandbox_name(),
        "python_sdk": if state.functions.python_sdk_ready() { "ready" } else { "pending" },
    }))
}
