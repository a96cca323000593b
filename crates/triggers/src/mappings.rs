//! Event source mappings: durable configurations (written to the store before they are
//! acknowledged) and the pollers of the enabled ones.
use crate::Error;
use nimbus_functions::FunctionsEngine;
use nimbus_model::{FunctionRef, Scope};
use nimbus_queues::{QueueRef, QueuesEngine};
use nimbus_store::Store;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

const COLLECTION: &str = "lambda.event-source-mappings";
/// Lambda's default and maximum batch sizes for SQS.
const DEFAULT_BATCH_SIZE: u32 = 10;
const MAX_BATCH_SIZE: u32 = 10_000;
const MAX_BATCHING_WINDOW_SECS: u32 = 300;
/// Concurrent batches per mapping when `ScalingConfig.MaximumConcurrency` is not set
/// (Lambda starts with five pollers for a queue).
pub(crate) const DEFAULT_CONCURRENCY: u32 = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSourceMapping {
    pub uuid: String,
    pub account: String,
    pub region: String,
    pub event_source_arn: String,
    /// The function's ARN, qualified when the mapping names a version or alias.
    pub function_arn: String,
    pub batch_size: u32,
    pub maximum_batching_window_secs: u32,
    /// `FunctionResponseTypes: ["ReportBatchItemFailures"]`.
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency` (2–1000).
    pub maximum_concurrency: Option<u32>,
    pub enabled: bool,
    pub last_modified_ms: i64,
    /// `FilterCriteria.Filters[].Pattern`: EventBridge patterns; a message is processed if
    /// any matches (all when empty), and deleted unprocessed otherwise.
    #[serde(default)]
    pub filters: Vec<String>,
}

impl EventSourceMapping {
    pub fn arn(&self) -> String {
        format!("arn:aws:lambda:{}:{}:event-source-mapping:{}", self.region, self.account, self.uuid)
    }

    /// The steady state (`Enabled`/`Disabled`); operations report transitions themselves.
    pub fn state(&self) -> &'static str {
        if self.enabled { "Enabled" } else { "Disabled" }
    }
}

/// CreateEventSourceMapping, typed.
#[derive(Debug, Clone, Default)]
pub struct CreateMapping {
    pub event_source_arn: String,
    pub function_name: String,
    pub enabled: Option<bool>,
    pub batch_size: Option<u32>,
    pub maximum_batching_window_secs: Option<u32>,
    pub function_response_types: Vec<String>,
    pub maximum_concurrency: Option<u32>,
    pub filters: Vec<String>,
}

/// UpdateEventSourceMapping: only the fields given change.
#[derive(Debug, Clone, Default)]
pub struct UpdateMapping {
    pub function_name: Option<String>,
    pub enabled: Option<bool>,
    pub batch_size: Option<u32>,
    pub maximum_batching_window_secs: Option<u32>,
    pub function_response_types: Option<Vec<String>>,
    pub maximum_concurrency: Option<u32>,
    /// `Some(vec![])` removes the filters.
    pub filters: Option<Vec<String>>,
}

/// One page of ListEventSourceMappings.
#[derive(Debug, Clone)]
pub struct MappingPage {
    pub mappings: Vec<(EventSourceMapping, String)>,
    pub next_marker: Option<String>,
}

struct Entry {
    config: EventSourceMapping,
    /// Dropping (or sending `true` on) this stops the mapping's poller.
    poller: Option<watch::Sender<bool>>,
}

pub struct Triggers {
    store: Arc<dyn Store>,
    pub(crate) functions: Arc<FunctionsEngine>,
    pub(crate) queues: Arc<QueuesEngine>,
    mappings: RwLock<HashMap<String, Entry>>,
    /// `LastProcessingResult` by mapping (not durable, as it is only a status).
    pub(crate) results: Mutex<HashMap<String, &'static str>>,
    writes: Mutex<()>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParameter(msg.into())
}

fn check_batching(batch_size: u32, window: u32) -> Result<(), Error> {
    if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
        return Err(invalid(format!(
            "BatchSize {batch_size} is out of range: for SQS it must be between 1 and {MAX_BATCH_SIZE}."
        )));
    }
    if window > MAX_BATCHING_WINDOW_SECS {
        return Err(invalid(format!(
            "MaximumBatchingWindowInSeconds must be between 0 and {MAX_BATCHING_WINDOW_SECS}."
        )));
    }
    if batch_size > 10 && window == 0 {
        return Err(invalid(
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
        ));
    }
    Ok(())
}

fn response_types(types: &[String]) -> Result<bool, Error> {
    let mut report = false;
    for t in types {
        match t.as_str() {
            "ReportBatchItemFailures" => report = true,
            other => return Err(invalid(format!("Unsupported FunctionResponseType: {other}"))),
        }
    }
    Ok(report)
}

/// Lambda's default quota: 5 filters per event source mapping.
const MAX_FILTERS: usize = 5;

fn check_filters(filters: &[String]) -> Result<(), Error> {
    if filters.len() > MAX_FILTERS {
        return Err(invalid(format!("FilterCriteria may contain at most {MAX_FILTERS} filters.")));
    }
    for f in filters {
        nimbus_events::Pattern::parse(f)
            .map_err(|e| invalid(format!("Invalid filter pattern definition. {e}")))?;
    }
    Ok(())
}

fn check_concurrency(c: Option<u32>) -> Result<(), Error> {
    if c.is_some_and(|c| !(2..=1000).contains(&c)) {
        return Err(invalid("ScalingConfig.MaximumConcurrency must be between 2 and 1000."));
    }
    Ok(())
}

impl Triggers {
    /// Opens the mappings and starts the pollers of the enabled ones.
    pub fn open(
        store: Arc<dyn Store>,
        functions: Arc<FunctionsEngine>,
        queues: Arc<QueuesEngine>,
    ) -> Result<Arc<Triggers>, Error> {
        let mut mappings = HashMap::new();
        for (k, v) in store.list(COLLECTION)? {
            let config: EventSourceMapping = serde_json::from_slice(&v).map_err(|e| {
                Error::Internal(format!("stored event source mapping {k} is unreadable: {e}"))
            })?;
            mappings.insert(k, Entry { config, poller: None });
        }
        let t = Arc::new(Triggers {
            store,
            functions,
            queues,
            mappings: RwLock::new(mappings),
            results: Mutex::new(HashMap::new()),
            writes: Mutex::new(()),
        });
        let enabled: Vec<String> =
            t.mappings.read().values().filter(|e| e.config.enabled).map(|e| e.config.uuid.clone()).collect();
        for uuid in enabled {
            t.restart_poller(&uuid);
        }
        Ok(t)
    }

    /// The current configuration of a mapping (pollers re-read it on every batch).
    pub(crate) fn config(&self, uuid: &str) -> Option<EventSourceMapping> {
        self.mappings.read().get(uuid).map(|e| e.config.clone())
    }

    fn restart_poller(self: &Arc<Self>, uuid: &str) {
        let enabled = self.config(uuid).is_some_and(|c| c.enabled);
        let sender = enabled.then(|| crate::poller::spawn(self, uuid.to_string()));
        if let Some(e) = self.mappings.write().get_mut(uuid) {
            if let Some(old) = e.poller.take() {
                let _ = old.send(true);
            }
            e.poller = sender;
        }
    }

    fn persist(&self, m: &EventSourceMapping) -> Result<(), Error> {
        let bytes = serde_json::to_vec(m).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.put(COLLECTION, &m.uuid, &bytes)?;
        Ok(())
    }

    fn last_result(&self, uuid: &str) -> String {
        self.results.lock().get(uuid).copied().unwrap_or("No records processed").to_string()
    }

    /// Resolves `FunctionName` (name, ARN, `name:qualifier`) to the ARN the mapping invokes.
    fn function_arn(&self, scope: &Scope, function: &str) -> Result<(String, u32), Error> {
        let r = FunctionRef::parse(function).map_err(|e| invalid(e.to_string()))?;
        let config = self.functions.get_function(scope, function, None)?;
        let arn = match r.qualifier.as_deref() {
            Some(q) if q != "$LATEST" => {
                let q_config = self.functions.get_function(scope, function, Some(q))?;
                return Ok((format!("{}:{q}", config.arn()), q_config.timeout_secs));
            }
            _ => config.arn(),
        };
        Ok((arn, config.timeout_secs))
    }

    /// Lambda refuses a queue whose visibility timeout is shorter than the function's
    /// timeout: messages would reappear while still being processed.
    fn check_queue(&self, queue_arn: &str, function_timeout: u32) -> Result<(), Error> {
        if queue_arn.split(':').nth(2) != Some("sqs") {
            return Err(invalid(format!(
                "Unsupported event source {queue_arn}: Nimbus maps SQS queues to functions (Kinesis, DynamoDB streams and Kafka are not available)."
            )));
        }
        let r = QueueRef::from_arn(queue_arn)
            .ok_or_else(|| invalid(format!("Invalid EventSourceArn {queue_arn}")))?;
        let attrs = self.queues.queue_attributes(&r).map_err(|_| {
            invalid(format!(
                "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue {queue_arn} does not exist."
            ))
        })?;
        if attrs.visibility_timeout < function_timeout {
            return Err(invalid(format!(
                "Queue visibility timeout: {} seconds is less than Function timeout: {function_timeout} seconds",
                attrs.visibility_timeout
            )));
        }
        Ok(())
    }

    pub fn create(
        self: &Arc<Self>,
        scope: &Scope,
        req: CreateMapping,
    ) -> Result<(EventSourceMapping, String), Error> {
        let (function_arn, timeout) = self.function_arn(scope, &req.function_name)?;
        self.check_queue(&req.event_source_arn, timeout)?;
        let batch_size = req.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        let window = req.maximum_batching_window_secs.unwrap_or(0);
        check_batching(batch_size, window)?;
        check_concurrency(req.maximum_concurrency)?;
        check_filters(&req.filters)?;
        let report = response_types(&req.function_response_types)?;
        let _w = self.writes.lock();
        if let Some(existing) = self.mappings.read().values().find(|e| {
            e.config.event_source_arn == req.event_source_arn && e.config.function_arn == function_arn
        }) {
            return Err(Error::Conflict(format!(
                "An event source mapping with SQS arn (\" {} \") and function (\" {} \") already exists. Please update or delete the existing mapping with UUID {}",
                req.event_source_arn, function_arn, existing.config.uuid
            )));
        }
        let m = EventSourceMapping {
            uuid: uuid::Uuid::new_v4().to_string(),
            account: scope.account.clone(),
            region: scope.region.clone(),
            event_source_arn: req.event_source_arn,
            function_arn,
            batch_size,
            maximum_batching_window_secs: window,
            report_batch_item_failures: report,
            maximum_concurrency: req.maximum_concurrency,
            enabled: req.enabled.unwrap_or(true),
            last_modified_ms: chrono::Utc::now().timestamp_millis(),
            filters: req.filters,
        };
        self.persist(&m)?;
        self.mappings.write().insert(m.uuid.clone(), Entry { config: m.clone(), poller: None });
        self.restart_poller(&m.uuid);
        Ok((m, "No records processed".into()))
    }

    fn owned(&self, scope: &Scope, uuid: &str) -> Result<EventSourceMapping, Error> {
        self.config(uuid)
            .filter(|m| m.account == scope.account && m.region == scope.region)
            .ok_or_else(|| Error::NotFound(format!("The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})")))
    }

    pub fn get(&self, scope: &Scope, uuid: &str) -> Result<(EventSourceMapping, String), Error> {
        let m = self.owned(scope, uuid)?;
        let result = self.last_result(uuid);
        Ok((m, result))
    }

    pub fn update(
        self: &Arc<Self>,
        scope: &Scope,
        uuid: &str,
        req: UpdateMapping,
    ) -> Result<(EventSourceMapping, String), Error> {
        let _w = self.writes.lock();
        let mut m = self.owned(scope, uuid)?;
        if let Some(f) = &req.function_name {
            let (arn, timeout) = self.function_arn(scope, f)?;
            self.check_queue(&m.event_source_arn, timeout)?;
            m.function_arn = arn;
        }
        let batch_size = req.batch_size.unwrap_or(m.batch_size);
        let window = req.maximum_batching_window_secs.unwrap_or(m.maximum_batching_window_secs);
        check_batching(batch_size, window)?;
        check_concurrency(req.maximum_concurrency)?;
        m.batch_size = batch_size;
        m.maximum_batching_window_secs = window;
        if let Some(types) = &req.function_response_types {
            m.report_batch_item_failures = response_types(types)?;
        }
        if req.maximum_concurrency.is_some() {
            m.maximum_concurrency = req.maximum_concurrency;
        }
        if let Some(filters) = req.filters {
            check_filters(&filters)?;
            m.filters = filters;
        }
        if let Some(e) = req.enabled {
            m.enabled = e;
        }
        m.last_modified_ms = chrono::Utc::now().timestamp_millis();
        self.persist(&m)?;
        if let Some(e) = self.mappings.write().get_mut(uuid) {
            e.config = m.clone();
        }
        self.restart_poller(uuid);
        let result = self.last_result(uuid);
        Ok((m, result))
    }

    pub fn delete(&self, scope: &Scope, uuid: &str) -> Result<(EventSourceMapping, String), Error> {
        let _w = self.writes.lock();
        let m = self.owned(scope, uuid)?;
        self.store.delete(COLLECTION, uuid)?;
        if let Some(e) = self.mappings.write().remove(uuid)
            && let Some(p) = e.poller
        {
            let _ = p.send(true);
        }
        let result = self.last_result(uuid);
        self.results.lock().remove(uuid);
        Ok((m, result))
    }

    /// ListEventSourceMappings, optionally by queue and/or function; `marker` is an offset.
    pub fn list(
        &self,
        scope: &Scope,
        event_source_arn: Option<&str>,
        function_name: Option<&str>,
        marker: Option<&str>,
        max_items: Option<usize>,
    ) -> Result<MappingPage, Error> {
        let function_arn = match function_name {
            Some(f) => Some(self.function_arn(scope, f)?.0),
            None => None,
        };
        let start: usize = match marker {
            Some(m) => m.parse().map_err(|_| invalid("Invalid Marker"))?,
            None => 0,
        };
        let max = max_items.unwrap_or(100).clamp(1, 10_000);
        let mut all: Vec<EventSourceMapping> = self
            .mappings
            .read()
            .values()
            .map(|e| e.config.clone())
            .filter(|m| m.account == scope.account && m.region == scope.region)
            .filter(|m| event_source_arn.is_none_or(|a| m.event_source_arn == a))
            .filter(|m| function_arn.as_deref().is_none_or(|f| m.function_arn == f))
            .collect();
        all.sort_by(|a, b| (a.last_modified_ms, &a.uuid).cmp(&(b.last_modified_ms, &b.uuid)));
        let total = all.len();
        let mappings: Vec<(EventSourceMapping, String)> = all
            .into_iter()
            .skip(start)
            .take(max)
            .map(|m| {
                let r = self.last_result(&m.uuid);
                (m, r)
            })
            .collect();
        let next = start + mappings.len();
        Ok(MappingPage { mappings, next_marker: (next < total).then(|| next.to_string()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batching_limits_follow_lambda() {
        assert!(check_batching(10, 0).is_ok());
        assert!(check_batching(100, 1).is_ok());
        assert!(check_batching(100, 0).is_err());
        assert!(check_batching(0, 0).is_err());
        assert!(check_batching(10_001, 5).is_err());
        assert!(check_batching(5, 301).is_err());
    }

    #[test]
    fn filters_are_patterns() {
        assert!(check_filters(&[r#"{"body": {"kind": ["a"]}}"#.into()]).is_ok());
        assert!(check_filters(&["not json".into()]).is_err());
        assert!(check_filters(&vec![r#"{"a": ["b"]}"#.to_string(); 6]).is_err());
    }

    #[test]
    fn only_report_batch_item_failures_is_a_response_type() {
        assert!(!response_types(&[]).unwrap());
        assert!(response_types(&["ReportBatchItemFailures".into()]).unwrap());
        assert!(response_types(&["Other".into()]).is_err());
    }
}
