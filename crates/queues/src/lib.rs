//! Nimbus's SQS engine: standard queues with delays, visibility timeouts, long polling,
//! retention and redrive to dead-letter queues, durable in the `Store` (a send, receive,
//! delete or visibility change is written through before it is acknowledged). Takes typed
//! requests and knows no AWS wire; other engines (Lambda destinations, event source
//! mappings) use the same typed API by queue ARN.
#![forbid(unsafe_code)]

mod attributes;
mod digest;
mod engine;

pub use attributes::{QueueAttributes, RedrivePolicy};
pub use digest::{md5_hex, md5_of_message_attributes};
pub use engine::{ListQueuesPage, QueuesEngine};

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("The specified queue does not exist.")]
    QueueDoesNotExist,
    #[error("{0}")]
    QueueNameExists(String),
    #[error("{0}")]
    InvalidAttributeName(String),
    #[error("{0}")]
    InvalidAttributeValue(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidMessageContents(String),
    #[error("{0}")]
    ReceiptHandleIsInvalid(String),
    #[error("{0}")]
    MessageNotInflight(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("There should be at least one entry in the request.")]
    EmptyBatchRequest,
    #[error("Maximum number of entries per request are 10. You have sent {0}.")]
    TooManyEntriesInBatchRequest(usize),
    #[error("Id {0} repeated.")]
    BatchEntryIdsNotDistinct(String),
    #[error(
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long."
    )]
    InvalidBatchEntryId,
    #[error("Batch requests cannot be longer than {0} bytes.")]
    BatchRequestTooLong(u32),
    #[error("store: {0}")]
    Store(#[from] nimbus_store::StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A queue by account, region and name (what both its URL and its ARN name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef {
    pub account: String,
    pub region: String,
    pub name: String,
}

impl QueueRef {
    pub fn new(account: impl Into<String>, region: impl Into<String>, name: impl Into<String>) -> QueueRef {
        QueueRef { account: account.into(), region: region.into(), name: name.into() }
    }

    pub fn arn(&self) -> String {
        format!("arn:aws:sqs:{}:{}:{}", self.region, self.account, self.name)
    }

    /// `arn:aws:sqs:<region>:<account>:<name>`.
    pub fn from_arn(arn: &str) -> Option<QueueRef> {
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            ["arn", _partition, "sqs", region, account, name]
                if !region.is_empty() && !account.is_empty() && !name.is_empty() =>
            {
                Some(QueueRef::new(*account, *region, *name))
            }
            _ => None,
        }
    }

    pub(crate) fn key(&self) -> String {
        format!("{}:{}:{}", self.account, self.region, self.name)
    }
}

/// The value of one message attribute: `String`, `Number` or `Binary` (optionally with a
/// custom suffix such as `Number.int`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageAttributeValue {
    pub data_type: String,
    pub string_value: Option<String>,
    pub binary_value: Option<Vec<u8>>,
}

impl MessageAttributeValue {
    pub fn string(value: impl Into<String>) -> MessageAttributeValue {
        MessageAttributeValue {
            data_type: "String".into(),
            string_value: Some(value.into()),
            binary_value: None,
        }
    }
}

/// SendMessage, typed.
#[derive(Debug, Clone, Default)]
pub struct SendMessage {
    pub body: String,
    /// Overrides the queue's `DelaySeconds` (0–900).
    pub delay_seconds: Option<u32>,
    pub message_attributes: BTreeMap<String, MessageAttributeValue>,
    /// `AWSTraceHeader` is the only one SQS defines.
    pub system_attributes: BTreeMap<String, MessageAttributeValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SendResult {
    pub message_id: String,
    pub md5_of_body: String,
    pub md5_of_message_attributes: Option<String>,
    pub md5_of_system_attributes: Option<String>,
}

/// ReceiveMessage, typed.
#[derive(Debug, Clone, Default)]
pub struct ReceiveOptions {
    /// 1–10.
    pub max_messages: u32,
    /// `None`: the queue's `ReceiveMessageWaitTimeSeconds`. At most 20 s.
    pub wait: Option<Duration>,
    /// `None`: the queue's `VisibilityTimeout`.
    pub visibility_timeout: Option<u32>,
}

/// One delivered message with its system attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    pub md5_of_message_attributes: Option<String>,
    pub message_attributes: BTreeMap<String, MessageAttributeValue>,
    pub sent_timestamp_ms: i64,
    pub approximate_receive_count: u32,
    pub approximate_first_receive_timestamp_ms: i64,
    pub sender_id: String,
    pub aws_trace_header: Option<String>,
    /// Set on a message a redrive policy moved here.
    pub dead_letter_queue_source_arn: Option<String>,
}

impl ReceivedMessage {
    /// Every system attribute by its SQS name (`SentTimestamp`, `ApproximateReceiveCount`…).
    pub fn system_attributes(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert("SenderId", self.sender_id.clone());
        m.insert("SentTimestamp", self.sent_timestamp_ms.to_string());
        m.insert("ApproximateReceiveCount", self.approximate_receive_count.to_string());
        m.insert("ApproximateFirstReceiveTimestamp", self.approximate_first_receive_timestamp_ms.to_string());
        if let Some(t) = &self.aws_trace_header {
            m.insert("AWSTraceHeader", t.clone());
        }
        if let Some(s) = &self.dead_letter_queue_source_arn {
            m.insert("DeadLetterQueueSourceArn", s.clone());
        }
        m
    }
}

/// Checks the ids of a batch request: 1–10 entries, distinct, `[A-Za-z0-9_-]{1,80}`.
pub fn validate_batch_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<(), Error> {
    let ids: Vec<&str> = ids.into_iter().collect();
    if ids.is_empty() {
        return Err(Error::EmptyBatchRequest);
    }
    if ids.len() > 10 {
        return Err(Error::TooManyEntriesInBatchRequest(ids.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if id.is_empty()
            || id.len() > 80
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::InvalidBatchEntryId);
        }
        if !seen.insert(id) {
            return Err(Error::BatchEntryIdsNotDistinct(id.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_round_trip() {
        let r = QueueRef::new("123456789012", "eu-west-1", "jobs");
        assert_eq!(r.arn(), "arn:aws:sqs:eu-west-1:123456789012:jobs");
        assert_eq!(QueueRef::from_arn(&r.arn()), Some(r));
        assert_eq!(QueueRef::from_arn("arn:aws:lambda:us-east-1:1:function:f"), None);
        assert_eq!(QueueRef::from_arn("arn:aws:sqs:us-east-1:1"), None);
    }

    #[test]
    fn batch_ids_are_checked() {
        assert!(validate_batch_ids(["a", "b-1", "c_2"]).is_ok());
        assert!(matches!(validate_batch_ids([]), Err(Error::EmptyBatchRequest)));
        assert!(matches!(validate_batch_ids(["a", "a"]), Err(Error::BatchEntryIdsNotDistinct(_))));
        assert!(matches!(validate_batch_ids(["a b"]), Err(Error::InvalidBatchEntryId)));
        let many: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert!(matches!(
            validate_batch_ids(many.iter().map(String::as_str)),
            Err(Error::TooManyEntriesInBatchRequest(11))
        ));
    }
}
