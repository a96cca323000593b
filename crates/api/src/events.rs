//! EventBridge (JSON 1.1, `AWSEvents`): so far `TestEventPattern`, the pattern language
//! every rule will use (matching lives in `nimbus-events`).
use crate::auth::RequestContext;
use crate::error::ApiError;
use crate::json_rpc::{BoxFuture, JsonService, parse, unknown_operation};
use axum::body::Bytes;
use nimbus_events::Pattern;
use serde::Deserialize;
use serde_json::{Value, json};

pub struct EventsService;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TestEventPattern {
    event_pattern: String,
    event: String,
}

fn test_event_pattern(input: TestEventPattern) -> Result<Value, ApiError> {
    let pattern = Pattern::parse(&input.event_pattern)
        .map_err(|e| ApiError::new(400, "InvalidEventPatternException", e.to_string()))?;
    let event: Value = serde_json::from_str(&input.event)
        .map_err(|_| ApiError::invalid_parameter_exception("Parameter Event is not valid."))?;
    // TestEventPattern requires the envelope fields every EventBridge event carries.
    let envelope = ["id", "account", "source", "time", "region", "detail-type"];
    if !event.is_object() || envelope.iter().any(|k| event.get(k).is_none()) {
        return Err(ApiError::invalid_parameter_exception("Parameter Event is not valid."));
    }
    Ok(json!({"Result": pattern.matches(&event)}))
}

impl JsonService for EventsService {
    fn target_prefix(&self) -> &'static str {
        "AWSEvents"
    }

    fn call<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        operation: &'a str,
        input: Bytes,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            match operation {
                "TestEventPattern" => test_event_pattern(parse(&input)?),
                _ => Err(unknown_operation(&format!("AWSEvents.{operation}"))),
            }
        })
    }
}
