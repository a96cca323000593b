//! A mapping's poller: long-polls the queue, gathers a batch (up to `BatchSize`, waiting
//! at most `MaximumBatchingWindowInSeconds`), and hands each batch to a task that invokes
//! the function and deletes what succeeded. Failed messages are left alone: they come
//! back after the visibility timeout, and the queue's redrive policy moves poison ones.
use crate::event::sqs_event;
use crate::mappings::{DEFAULT_CONCURRENCY, EventSourceMapping, Triggers};
use nimbus_functions::{Error as FnError, InvocationType, InvokeRequest};
use nimbus_model::Scope;
use nimbus_queues::{ReceiveOptions, ReceivedMessage};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Longest single receive (SQS's maximum long poll).
const LONG_POLL: Duration = Duration::from_secs(20);

pub(crate) fn spawn(triggers: &Arc<Triggers>, uuid: String) -> watch::Sender<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(run(Arc::downgrade(triggers), uuid, rx));
    tx
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn run(triggers: Weak<Triggers>, uuid: String, mut stop: watch::Receiver<bool>) {
    let mut permits: Option<(u32, Arc<Semaphore>)> = None;
    loop {
        let Some(t) = triggers.upgrade() else { return };
        let Some(m) = t.config(&uuid).filter(|m| m.enabled) else { return };
        let limit = m.maximum_concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        let sem = match &permits {
            Some((n, s)) if *n == limit => s.clone(),
            _ => {
                let s = Arc::new(Semaphore::new(limit as usize));
                permits = Some((limit, s.clone()));
                s
            }
        };
        // A free slot first, so no message is held while waiting for one.
        let permit = tokio::select! {
            p = sem.acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stopped(&mut stop) => return,
        };
        let batch = tokio::select! {
            b = collect_batch(&t, &m) => b,
            _ = stopped(&mut stop) => return,
        };
        match batch {
            Ok(msgs) if msgs.is_empty() => {}
            Ok(msgs) => {
                if *stop.borrow() {
                    release(&t, &m, &msgs);
                    return;
                }
                let t = t.clone();
                tokio::spawn(async move {
                    process(&t, &m, msgs).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(
                    "event source mapping {uuid}: cannot receive from {}: {e}",
                    m.event_source_arn
                );
                t.results.lock().insert(uuid.clone(), "PROBLEM: Unable to receive messages from the queue");
                drop(t);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    }
}

/// Up to `batch_size` messages: one long poll, then, with a batching window, more
/// receives until the batch is full or the window has passed.
async fn collect_batch(
    t: &Triggers,
    m: &EventSourceMapping,
) -> Result<Vec<ReceivedMessage>, nimbus_queues::Error> {
    let want = m.batch_size as usize;
    let receive = |n: usize, wait: Duration| {
        t.queues.receive_by_arn(
            &m.event_source_arn,
            ReceiveOptions { max_messages: n.min(10) as u32, wait: Some(wait), visibility_timeout: None },
        )
    };
    let mut batch = receive(want, LONG_POLL).await?;
    if batch.is_empty() || m.maximum_batching_window_secs == 0 {
        return Ok(batch);
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(u64::from(m.maximum_batching_window_secs));
    while batch.len() < want {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let more = receive(want - batch.len(), left.min(LONG_POLL)).await?;
        for m in more {
            // A window longer than the visibility timeout can return a message twice:
            // keep one copy, with the newest receipt handle.
            match batch.iter_mut().find(|b| b.message_id == m.message_id) {
                Some(existing) => *existing = m,
                None => batch.push(m),
            }
        }
    }
    Ok(batch)
}

/// Makes messages a stopped poller took visible again at once.
fn release(t: &Triggers, m: &EventSourceMapping, msgs: &[ReceivedMessage]) {
    for msg in msgs {
        let _ = t.queues.change_message_visibility_by_arn(&m.event_source_arn, &msg.receipt_handle, 0);
    }
}

/// The message ids a `ReportBatchItemFailures` response names; `None` when the response
/// is malformed, which Lambda treats as the whole batch failing.
fn reported_failures(payload: &[u8], msgs: &[ReceivedMessage]) -> Option<HashSet<String>> {
    let v: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(_) => return Some(HashSet::new()),
    };
    let items = match v.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(HashSet::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return None,
    };
    let ids: HashSet<&str> = msgs.iter().map(|m| m.message_id.as_str()).collect();
    let mut failed = HashSet::new();
    for item in items {
        let id = item.get("itemIdentifier").and_then(Value::as_str).filter(|id| ids.contains(id))?;
        failed.insert(id.to_string());
    }
    Some(failed)
}

/// Whether a message passes the mapping's filters. Patterns see the event record, with
/// `body` parsed when it is JSON (as Lambda filters SQS messages).
fn passes(filters: &[nimbus_events::Pattern], record: &Value) -> bool {
    if filters.is_empty() {
        return true;
    }
    let mut view = record.clone();
    if let Some(body) = record.get("body").and_then(Value::as_str)
        && let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(body)
    {
        view["body"] = parsed;
    }
    filters.iter().any(|f| f.matches(&view))
}

async fn process(t: &Triggers, m: &EventSourceMapping, msgs: Vec<ReceivedMessage>) {
    let msgs = if m.filters.is_empty() {
        msgs
    } else {
        let filters: Vec<nimbus_events::Pattern> =
            m.filters.iter().filter_map(|f| nimbus_events::Pattern::parse(f).ok()).collect();
        let records = sqs_event(&m.event_source_arn, &m.region, &msgs);
        let mut kept = Vec::new();
        for (msg, record) in msgs.into_iter().zip(records["Records"].as_array().cloned().unwrap_or_default())
        {
            if passes(&filters, &record) {
                kept.push(msg);
            } else if let Err(e) = t.queues.delete_message_by_arn(&m.event_source_arn, &msg.receipt_handle) {
                // Filtered-out messages are deleted, as Lambda does.
                tracing::warn!("event source mapping {}: could not delete filtered message: {e}", m.uuid);
            }
        }
        if kept.is_empty() {
            return;
        }
        kept
    };
    let event = sqs_event(&m.event_source_arn, &m.region, &msgs);
    let req = InvokeRequest {
        scope: Scope::new(m.account.clone(), m.region.clone()),
        request_id: uuid::Uuid::new_v4().to_string(),
        function: m.function_arn.clone(),
        qualifier: None,
        payload: event.to_string().into_bytes().into(),
        invocation_type: InvocationType::RequestResponse,
        tail_log: false,
        client_context: None,
    };
    let failed: Option<HashSet<String>> = match t.functions.invoke(req).await {
        Ok(r) if r.function_error.is_none() => {
            if m.report_batch_item_failures {
                reported_failures(&r.payload, &msgs)
            } else {
                Some(HashSet::new())
            }
        }
        Ok(_) => None,
        Err(FnError::TooManyRequests { .. }) => {
            // Throttled: hand the batch back so it is retried soon, as Lambda backs off and retries.
            release(t, m, &msgs);
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        Err(e) => {
            tracing::warn!("event source mapping {}: invoking {} failed: {e}", m.uuid, m.function_arn);
            None
        }
    };
    let result = if failed.is_some() { "OK" } else { "PROBLEM: Function call failed" };
    t.results.lock().insert(m.uuid.clone(), result);
    // A failed batch stays in the queue: each message comes back after its visibility timeout.
    let Some(failed) = failed else { return };
    for msg in msgs.iter().filter(|msg| !failed.contains(&msg.message_id)) {
        if let Err(e) = t.queues.delete_message_by_arn(&m.event_source_arn, &msg.receipt_handle) {
            tracing::warn!(
                "event source mapping {}: could not delete message {}: {e}",
                m.uuid,
                msg.message_id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> ReceivedMessage {
        ReceivedMessage {
            message_id: id.into(),
            receipt_handle: String::new(),
            body: String::new(),
            md5_of_body: String::new(),
            md5_of_message_attributes: None,
            message_attributes: Default::default(),
            sent_timestamp_ms: 0,
            approximate_receive_count: 1,
            approximate_first_receive_timestamp_ms: 0,
            sender_id: String::new(),
            aws_trace_header: None,
            dead_letter_queue_source_arn: None,
        }
    }

    #[test]
    fn filters_see_the_body_as_json() {
        let p = |s: &str| vec![nimbus_events::Pattern::parse(s).unwrap()];
        let rec = serde_json::json!({"body": "{\"kind\": \"order\"}", "attributes": {"SenderId": "1"}});
        assert!(passes(&p(r#"{"body": {"kind": ["order"]}}"#), &rec));
        assert!(!passes(&p(r#"{"body": {"kind": ["refund"]}}"#), &rec));
        assert!(passes(&[], &rec));
        let plain = serde_json::json!({"body": "hello"});
        assert!(passes(&p(r#"{"body": ["hello"]}"#), &plain));
    }

    #[test]
    fn batch_item_failures_are_read_as_lambda_does() {
        let msgs = [msg("a"), msg("b")];
        let f = |p: &str| reported_failures(p.as_bytes(), &msgs);
        assert_eq!(f("null"), Some(HashSet::new()));
        assert_eq!(f(r#"{"batchItemFailures": []}"#), Some(HashSet::new()));
        assert_eq!(f(r#"{"batchItemFailures": [{"itemIdentifier": "b"}]}"#), Some(["b".to_string()].into()));
        // An unknown or missing identifier fails the whole batch.
        assert_eq!(f(r#"{"batchItemFailures": [{"itemIdentifier": "zzz"}]}"#), None);
        assert_eq!(f(r#"{"batchItemFailures": [{}]}"#), None);
        assert_eq!(f(r#"{"batchItemFailures": "x"}"#), None);
    }
}
