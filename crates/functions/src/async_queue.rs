//! Asynchronous (`Event`) invocations: persisted before the 202 is returned, so a crash
//! never loses one; run at least once; retried on function errors as Lambda does
//! (two retries by default, the delay growing with each attempt).
use crate::destinations::{AttemptOutcome, Condition};
use crate::engine::FunctionsEngine;
use crate::{Error, InvocationType, InvokeRequest};
use base64::Engine as _;
use nimbus_model::Scope;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const COLLECTION: &str = "lambda.async-events";
/// Lambda's default `MaximumRetryAttempts` for asynchronous invocation.
const MAX_RETRIES: u32 = 2;
/// Lambda's default `MaximumEventAgeInSeconds` (6 hours).
const MAX_EVENT_AGE_SECS: u32 = 21_600;
pub(crate) const INVOKE_CONFIGS: &str = "lambda.event-invoke-config";

/// PutFunctionEventInvokeConfig: how asynchronous invocations of a function (or of one
/// of its versions/aliases) are retried.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub function_arn: String,
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_secs: Option<u32>,
    /// `DestinationConfig.OnSuccess.Destination`: an SQS queue or Lambda function ARN.
    #[serde(default)]
    pub on_success: Option<String>,
    /// `DestinationConfig.OnFailure.Destination`.
    #[serde(default)]
    pub on_failure: Option<String>,
    pub last_modified_ms: i64,
}

/// Put/UpdateFunctionEventInvokeConfig input: on update, `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct EventInvokeConfigInput {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_secs: Option<u32>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueuedEvent {
    /// Kept across retries, as Lambda does.
    pub request_id: String,
    pub account: String,
    pub region: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub payload_b64: String,
    pub attempts: u32,
    pub enqueued_ms: i64,
}

impl QueuedEvent {
    pub fn new(req: &InvokeRequest) -> QueuedEvent {
        QueuedEvent {
            request_id: req.request_id.clone(),
            account: req.scope.account.clone(),
            region: req.scope.region.clone(),
            function: req.function.clone(),
            qualifier: req.qualifier.clone(),
            payload_b64: base64::engine::general_purpose::STANDARD.encode(&req.payload),
            attempts: 0,
            enqueued_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    fn request(&self) -> InvokeRequest {
        let payload = base64::engine::general_purpose::STANDARD.decode(&self.payload_b64).unwrap_or_default();
        InvokeRequest {
            scope: Scope::new(self.account.clone(), self.region.clone()),
            request_id: self.request_id.clone(),
            function: self.function.clone(),
            qualifier: self.qualifier.clone(),
            payload: payload.into(),
            invocation_type: InvocationType::RequestResponse,
            tail_log: false,
            client_context: None,
        }
    }
}

impl FunctionsEngine {
    pub(crate) fn event_invoke_config_for(&self, event: &QueuedEvent) -> Option<EventInvokeConfig> {
        let scope = Scope::new(event.account.clone(), event.region.clone());
        self.get_event_invoke_config(&scope, &event.function, event.qualifier.as_deref()).ok().flatten()
    }

    /// Store key and ARN of a function's (or version's/alias's) event invoke config;
    /// unqualified and `$LATEST` share one.
    fn invoke_config_key(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, String), Error> {
        let c = self.get_function(scope, function, None)?;
        let q = match qualifier {
            Some(q) => Some(q.to_string()),
            None => nimbus_model::FunctionRef::parse(function)?.qualifier,
        };
        Ok(match q.filter(|q| q != "$LATEST") {
            Some(q) => {
                self.get_function(scope, function, Some(&q))?;
                (format!("{}:{}:{}:{q}", c.account, c.region, c.name), format!("{}:{q}", c.arn()))
            }
            None => (format!("{}:{}:{}", c.account, c.region, c.name), c.arn()),
        })
    }

    /// Put (replace) or, with `merge`, update the function's event invoke config.
    pub fn put_event_invoke_config(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
        input: EventInvokeConfigInput,
        merge: bool,
    ) -> Result<EventInvokeConfig, Error> {
        let EventInvokeConfigInput { maximum_retry_attempts, maximum_event_age_secs, on_success, on_failure } =
            input;
        for (arn, what) in [(&on_success, "OnSuccess destination"), (&on_failure, "OnFailure destination")] {
            if let Some(arn) = arn {
                self.validate_destination(scope, arn, what)?;
            }
        }
        if maximum_retry_attempts.is_some_and(|n| n > 2) {
            return Err(Error::Validation(nimbus_model::ValidationError::Constraint {
                field: "maximumRetryAttempts",
                value: maximum_retry_attempts.unwrap_or_default().to_string(),
                constraint: "Member must have value less than or equal to 2".into(),
            }));
        }
        if maximum_event_age_secs.is_some_and(|n| !(60..=21_600).contains(&n)) {
            return Err(Error::Validation(nimbus_model::ValidationError::Constraint {
                field: "maximumEventAgeInSeconds",
                value: maximum_event_age_secs.unwrap_or_default().to_string(),
                constraint: "Member must have value between 60 and 21600".into(),
            }));
        }
        let (k, arn) = self.invoke_config_key(scope, function, qualifier)?;
        let mut config = if merge {
            self.get_event_invoke_config(scope, function, qualifier)?.ok_or_else(|| {
                Error::NotFound(format!("The function {arn} doesn't have an EventInvokeConfig"))
            })?
        } else {
            EventInvokeConfig::default()
        };
        config.function_arn = arn;
        if maximum_retry_attempts.is_some() || !merge {
            config.maximum_retry_attempts = maximum_retry_attempts;
        }
        if maximum_event_age_secs.is_some() || !merge {
            config.maximum_event_age_secs = maximum_event_age_secs;
        }
        if on_success.is_some() || !merge {
            config.on_success = on_success;
        }
        if on_failure.is_some() || !merge {
            config.on_failure = on_failure;
        }
        config.last_modified_ms = chrono::Utc::now().timestamp_millis();
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::Internal(e.to_string()))?;
        self.store().put(INVOKE_CONFIGS, &k, &bytes)?;
        Ok(config)
    }

    pub fn get_event_invoke_config(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Option<EventInvokeConfig>, Error> {
        let (k, _) = self.invoke_config_key(scope, function, qualifier)?;
        match self.store().get(INVOKE_CONFIGS, &k)? {
            Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| Error::Internal(e.to_string()))?)),
            None => Ok(None),
        }
    }

    pub fn delete_event_invoke_config(
        &self,
        scope: &Scope,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(), Error> {
        let (k, arn) = self.invoke_config_key(scope, function, qualifier)?;
        if !self.store().delete(INVOKE_CONFIGS, &k)? {
            return Err(Error::NotFound(format!("The function {arn} doesn't have an EventInvokeConfig")));
        }
        Ok(())
    }

    /// Persists the event, then schedules it. Returns once it is durable.
    pub(crate) fn enqueue_event(self: &Arc<Self>, event: QueuedEvent) -> Result<(), Error> {
        self.persist_event(&event)?;
        self.schedule_event(event, Duration::ZERO);
        Ok(())
    }

    fn persist_event(&self, event: &QueuedEvent) -> Result<(), Error> {
        let bytes = serde_json::to_vec(event).map_err(|e| Error::Internal(e.to_string()))?;
        self.store().put(COLLECTION, &event.request_id, &bytes)?;
        Ok(())
    }

    /// Re-schedules every event a previous run accepted but did not finish.
    pub(crate) fn recover_events(self: &Arc<Self>) -> Result<usize, Error> {
        let pending = self.store().list(COLLECTION)?;
        let n = pending.len();
        for (key, bytes) in pending {
            match serde_json::from_slice::<QueuedEvent>(&bytes) {
                Ok(ev) => self.schedule_event(ev, Duration::ZERO),
                Err(e) => {
                    tracing::error!("dropping unreadable queued event {key}: {e}");
                    let _ = self.store().delete(COLLECTION, &key);
                }
            }
        }
        Ok(n)
    }

    fn schedule_event(self: &Arc<Self>, event: QueuedEvent, delay: Duration) {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(engine) = engine.upgrade() {
                engine.run_event(event).await;
            }
        });
    }

    async fn run_event(self: Arc<Self>, mut event: QueuedEvent) {
        let outcome = self.invoke(event.request()).await;
        let mut last = AttemptOutcome::default();
        let mut expired = false;
        let failed = match outcome {
            Ok(r) => {
                last = AttemptOutcome {
                    status: r.status,
                    payload: r.payload.to_vec(),
                    function_error: r.function_error.map(str::to_string),
                    executed_version: r.executed_version,
                };
                r.function_error.is_some()
            }
            // Throttled: Lambda keeps the event and tries again later without using up a retry.
            Err(Error::TooManyRequests { .. }) => {
                let max_age_ms = i64::from(
                    self.event_invoke_config_for(&event)
                        .and_then(|c| c.maximum_event_age_secs)
                        .unwrap_or(MAX_EVENT_AGE_SECS),
                ) * 1000;
                if chrono::Utc::now().timestamp_millis() - event.enqueued_ms <= max_age_ms {
                    self.schedule_event(event, Duration::from_secs(1));
                    return;
                }
                tracing::warn!("event {} expired while throttled", event.request_id);
                last.status = 429;
                expired = true;
                true
            }
            Err(Error::NotFound(_)) => {
                tracing::warn!(
                    "dropping event {}: function {} no longer exists",
                    event.request_id,
                    event.function
                );
                if let Err(e) = self.store().delete(COLLECTION, &event.request_id) {
                    tracing::error!("could not remove event {}: {e}", event.request_id);
                }
                return;
            }
            Err(e) => {
                tracing::warn!("event {} failed: {e}", event.request_id);
                last.status = 500;
                last.function_error = Some("Unhandled".into());
                last.payload =
                    serde_json::json!({"errorType": "ServiceException", "errorMessage": e.to_string()})
                        .to_string()
                        .into_bytes();
                true
            }
        };
        let config = self.event_invoke_config_for(&event);
        let max_retries = config.as_ref().and_then(|c| c.maximum_retry_attempts).unwrap_or(MAX_RETRIES);
        let max_age_ms =
            i64::from(config.as_ref().and_then(|c| c.maximum_event_age_secs).unwrap_or(MAX_EVENT_AGE_SECS))
                * 1000;
        let too_old = expired || chrono::Utc::now().timestamp_millis() - event.enqueued_ms > max_age_ms;
        if failed && event.attempts < max_retries && !too_old {
            event.attempts += 1;
            let delay = self.async_retry_delay() * event.attempts;
            if let Err(e) = self.persist_event(&event) {
                tracing::error!("could not persist retry of event {}: {e}", event.request_id);
            }
            self.schedule_event(event, delay);
            return;
        }
        let condition = match (failed, too_old) {
            (false, _) => Condition::Success,
            (true, true) => Condition::EventAgeExceeded,
            (true, false) => Condition::RetriesExhausted,
        };
        if failed {
            tracing::warn!(
                "event {} for {} failed after {} retries ({})",
                event.request_id,
                event.function,
                event.attempts,
                if too_old { "too old" } else { "retries exhausted" }
            );
        }
        // Delivered before the event leaves the store: a crash in between re-runs the
        // event (at least once) rather than losing its outcome.
        self.deliver_outcome(&event, condition, &last).await;
        if let Err(e) = self.store().delete(COLLECTION, &event.request_id) {
            tracing::error!("could not remove finished event {}: {e}", event.request_id);
        }
    }
}
