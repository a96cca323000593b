//! Asynchronous (`Event`) invocations: persisted before the 202 is returned, so a crash
//! never loses one; run at least once; retried on function errors as Lambda does
//! (two retries by default, the delay growing with each attempt).
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
        let failed = match outcome {
            Ok(r) if r.function_error.is_none() => false,
            Ok(_) => true,
            // Throttled: Lambda keeps the event and tries again later without using up a retry.
            Err(Error::TooManyRequests { .. }) => {
                self.schedule_event(event, Duration::from_secs(1));
                return;
            }
            Err(Error::NotFound(_)) => {
                tracing::warn!("dropping event {}: function {} no longer exists", event.request_id, event.function);
                false
            }
            Err(e) => {
                tracing::warn!("event {} failed: {e}", event.request_id);
                true
            }
        };
        if failed && event.attempts < MAX_RETRIES {
            event.attempts += 1;
            let delay = self.async_retry_delay() * event.attempts;
            if let Err(e) = self.persist_event(&event) {
                tracing::error!("could not persist retry of event {}: {e}", event.request_id);
            }
            self.schedule_event(event, delay);
            return;
        }
        if failed {
            tracing::warn!(
                "event {} for {} failed after {} retries; no on-failure destination is configured",
                event.request_id,
                event.function,
                event.attempts
            );
        }
        if let Err(e) = self.store().delete(COLLECTION, &event.request_id) {
            tracing::error!("could not remove finished event {}: {e}", event.request_id);
        }
    }
}
