//! Where asynchronous invocations report their outcome: on-success/on-failure
//! destinations (an SQS queue or another function) and the function's dead-letter queue.
//! Queues are reached through `DestinationSink`, which the binary wires to the queues
//! engine, so this crate does not depend on it.
use crate::async_queue::QueuedEvent;
use crate::engine::FunctionsEngine;
use crate::{Error, InvocationType, InvokeRequest};
use base64::Engine as _;
use nimbus_model::{FunctionRef, Scope};
use serde_json::{Value, json};
use std::sync::Arc;

/// A message attribute of a dead-letter message (`String` or `Number`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkAttribute {
    pub data_type: &'static str,
    pub value: String,
}

/// Delivers messages to queues named by ARN (`arn:aws:sqs:…`).
pub trait DestinationSink: Send + Sync {
    /// Whether the queue exists (checked when a destination or DLQ is configured).
    fn queue_exists(&self, queue_arn: &str) -> bool;
    /// Sends one message; durable when it returns `Ok`.
    fn send(
        &self,
        queue_arn: &str,
        body: String,
        attributes: Vec<(String, SinkAttribute)>,
    ) -> Result<(), String>;
}

/// Why an asynchronous invocation's record is being delivered (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// The last attempt's result, as destination records describe it.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttemptOutcome {
    pub status: u16,
    pub payload: Vec<u8>,
    pub function_error: Option<String>,
    pub executed_version: String,
}

/// The payload as JSON when it is JSON, else as a string (records embed it).
fn embedded(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

impl FunctionsEngine {
    /// Wires queue delivery (called once by the binary, before traffic).
    pub fn set_destination_sink(&self, sink: Arc<dyn DestinationSink>) {
        let _ = self.destinations.set(sink);
    }

    fn sink(&self) -> Option<&Arc<dyn DestinationSink>> {
        self.destinations.get()
    }

    /// Checks that a destination can be delivered to: an existing SQS queue or Lambda
    /// function. SNS, EventBridge and S3 targets are refused (nothing to deliver to yet).
    pub(crate) fn validate_destination(&self, scope: &Scope, arn: &str, what: &str) -> Result<(), Error> {
        let service = arn.split(':').nth(2).unwrap_or_default();
        match service {
            "sqs" => {
                if !self.sink().is_some_and(|s| s.queue_exists(arn)) {
                    return Err(Error::InvalidParameter(format!(
                        "The {what} {arn} does not exist or the function's execution role cannot send to it."
                    )));
                }
                Ok(())
            }
            "lambda" => {
                let r = FunctionRef::parse(arn)?;
                let target = Scope::new(
                    r.account.clone().unwrap_or(scope.account.clone()),
                    r.region.clone().unwrap_or(scope.region.clone()),
                );
                self.get_function(&target, arn, None)
                    .map(|_| ())
                    .map_err(|_| Error::InvalidParameter(format!("The {what} {arn} does not exist.")))
            }
            "sns" | "events" | "s3" => Err(Error::InvalidParameter(format!(
                "The {what} {arn} is an {} target, which Nimbus cannot deliver to yet; use an SQS queue or a Lambda function.",
                match service {
                    "sns" => "SNS",
                    "events" => "EventBridge",
                    _ => "S3",
                }
            ))),
            _ => Err(Error::InvalidParameter(format!("The {what} {arn} is not a valid destination ARN."))),
        }
    }

    /// A dead-letter queue must be an existing SQS queue (SNS topics are refused).
    pub(crate) fn validate_dead_letter_target(&self, scope: &Scope, arn: &str) -> Result<(), Error> {
        if arn.split(':').nth(2) != Some("sqs") {
            return Err(Error::InvalidParameter(format!(
                "DeadLetterConfig.TargetArn {arn}: Nimbus delivers dead letters to SQS queues only."
            )));
        }
        self.validate_destination(scope, arn, "dead-letter queue")
    }

    /// Delivers an event's final outcome: the on-success/on-failure destination's record,
    /// and on failure the original event to the function's dead-letter queue. Errors are
    /// logged: the invocation itself is done either way.
    pub(crate) async fn deliver_outcome(
        self: &Arc<Self>,
        event: &QueuedEvent,
        condition: Condition,
        outcome: &AttemptOutcome,
    ) {
        let config = self.event_invoke_config_for(event);
        let destination = match condition {
            Condition::Success => config.as_ref().and_then(|c| c.on_success.clone()),
            _ => config.as_ref().and_then(|c| c.on_failure.clone()),
        };
        let scope = Scope::new(event.account.clone(), event.region.clone());
        let function = self.get_function(&scope, &event.function, None).ok();
        if let Some(arn) = destination {
            let function_arn = match &function {
                Some(f) => format!("{}:{}", f.arn(), event.qualifier.as_deref().unwrap_or("$LATEST")),
                None => scope.function_arn(&event.function),
            };
            let mut response_context = json!({
                "statusCode": outcome.status,
                "executedVersion": outcome.executed_version,
            });
            if let Some(e) = &outcome.function_error {
                response_context["functionError"] = json!(e);
            }
            let record = json!({
                "version": "1.0",
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "requestContext": {
                    "requestId": event.request_id,
                    "functionArn": function_arn,
                    "condition": condition.as_str(),
                    "approximateInvokeCount": event.attempts + 1,
                },
                "requestPayload": embedded(&event.payload()),
                "responseContext": response_context,
                "responsePayload": embedded(&outcome.payload),
            });
            if let Err(e) = self.send_to_destination(&scope, &arn, record.to_string(), Vec::new()).await {
                tracing::warn!("event {}: could not deliver to destination {arn}: {e}", event.request_id);
            }
        }
        let dead_letter = function.as_ref().and_then(|f| f.dead_letter_target_arn.clone());
        if condition != Condition::Success
            && let Some(dlq) = dead_letter
        {
            let message = match serde_json::from_slice::<Value>(&outcome.payload) {
                Ok(v) => v.get("errorMessage").and_then(Value::as_str).map(str::to_string),
                Err(_) => None,
            }
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| condition.as_str().to_string());
            let attributes = vec![
                (
                    "RequestID".to_string(),
                    SinkAttribute { data_type: "String", value: event.request_id.clone() },
                ),
                (
                    "ErrorCode".to_string(),
                    SinkAttribute { data_type: "Number", value: outcome.status.to_string() },
                ),
                (
                    "ErrorMessage".to_string(),
                    SinkAttribute { data_type: "String", value: message.chars().take(1024).collect() },
                ),
            ];
            let body = String::from_utf8_lossy(&event.payload()).into_owned();
            if let Err(e) = self.send_to_destination(&scope, &dlq, body, attributes).await {
                tracing::warn!(
                    "event {}: could not deliver to dead-letter queue {dlq}: {e}",
                    event.request_id
                );
            }
        }
    }

    async fn send_to_destination(
        self: &Arc<Self>,
        scope: &Scope,
        arn: &str,
        body: String,
        attributes: Vec<(String, SinkAttribute)>,
    ) -> Result<(), String> {
        match arn.split(':').nth(2) {
            Some("sqs") => {
                let sink = self.sink().ok_or("no queue service is wired")?;
                // SQS refuses empty bodies; an empty event is `{}` on the wire anyway.
                let body = if body.is_empty() { "{}".to_string() } else { body };
                sink.send(arn, body, attributes)
            }
            Some("lambda") => {
                let r = FunctionRef::parse(arn).map_err(|e| e.to_string())?;
                let target = Scope::new(
                    r.account.unwrap_or(scope.account.clone()),
                    r.region.unwrap_or(scope.region.clone()),
                );
                let req = InvokeRequest {
                    scope: target,
                    request_id: uuid::Uuid::new_v4().to_string(),
                    function: arn.to_string(),
                    qualifier: None,
                    payload: body.into_bytes().into(),
                    invocation_type: InvocationType::Event,
                    tail_log: false,
                    client_context: None,
                };
                self.invoke(req).await.map(|_| ()).map_err(|e| e.to_string())
            }
            _ => Err(format!("{arn} is not a destination Nimbus can deliver to")),
        }
    }
}

impl QueuedEvent {
    pub(crate) fn payload(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(&self.payload_b64).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_embedded_as_json_when_they_are_json() {
        assert_eq!(embedded(br#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(embedded(b"not json"), json!("not json"));
        assert_eq!(embedded(b""), Value::Null);
    }

    #[test]
    fn conditions_use_lambda_spelling() {
        let all = [Condition::Success, Condition::RetriesExhausted, Condition::EventAgeExceeded];
        assert_eq!(all.map(Condition::as_str), ["Success", "RetriesExhausted", "EventAgeExceeded"]);
    }
}
