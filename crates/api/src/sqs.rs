//! Amazon SQS (JSON 1.0, `AmazonSQS`, `awsQueryCompatible`): wire shapes ↔ the typed
//! `nimbus-queues` engine. Queue URLs are `<endpoint>/<account>/<name>`.
use crate::auth::RequestContext;
use crate::error::ApiError;
use crate::json_rpc::{BoxFuture, JsonService, parse, unknown_operation};
use axum::body::Bytes;
use base64::Engine as _;
use nimbus_queues::{
    MessageAttributeValue, QueueRef, QueuesEngine, ReceiveOptions, ReceivedMessage, SendMessage,
    validate_batch_ids,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct SqsService {
    pub queues: Arc<QueuesEngine>,
    pub endpoint_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateQueue {
    queue_name: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default, rename = "tags")]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueUrl {
    queue_name: String,
    #[serde(rename = "QueueOwnerAWSAccountId")]
    queue_owner_aws_account_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListQueues {
    queue_name_prefix: Option<String>,
    next_token: Option<String>,
    max_results: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrlOnly {
    queue_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributes {
    queue_url: String,
    #[serde(default)]
    attribute_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetQueueAttributes {
    queue_url: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireAttributeValue {
    data_type: String,
    string_value: Option<String>,
    /// base64 (a JSON-protocol blob).
    binary_value: Option<String>,
    string_list_values: Option<Vec<String>>,
    binary_list_values: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageInput {
    queue_url: String,
    #[serde(flatten)]
    entry: SendEntry,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendEntry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message_body: String,
    delay_seconds: Option<u32>,
    #[serde(default)]
    message_attributes: BTreeMap<String, WireAttributeValue>,
    #[serde(default)]
    message_system_attributes: BTreeMap<String, WireAttributeValue>,
    message_deduplication_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatch {
    queue_url: String,
    #[serde(default)]
    entries: Vec<SendEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessage {
    queue_url: String,
    #[serde(default)]
    attribute_names: Vec<String>,
    #[serde(default)]
    message_system_attribute_names: Vec<String>,
    #[serde(default)]
    message_attribute_names: Vec<String>,
    max_number_of_messages: Option<u32>,
    visibility_timeout: Option<u32>,
    wait_time_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteMessage {
    queue_url: String,
    receipt_handle: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchEntry {
    id: String,
    receipt_handle: String,
    visibility_timeout: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchInput {
    queue_url: String,
    #[serde(default)]
    entries: Vec<BatchEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeVisibility {
    queue_url: String,
    receipt_handle: String,
    visibility_timeout: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagQueue {
    queue_url: String,
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagQueue {
    queue_url: String,
    tag_keys: Vec<String>,
}

impl SqsService {
    fn url(&self, r: &QueueRef) -> String {
        format!("{}/{}/{}", self.endpoint_url.trim_end_matches('/'), r.account, r.name)
    }

    /// `http(s)://host[:port]/<account>/<name>` (any host: AWS-style URLs work too).
    fn queue_ref(&self, ctx: &RequestContext, url: &str) -> Result<QueueRef, ApiError> {
        let path = url.split_once("://").map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            [account, name] if !account.is_empty() && !name.is_empty() => {
                Ok(QueueRef::new(*account, ctx.scope.region.clone(), *name))
            }
            _ => Err(nimbus_queues::Error::QueueDoesNotExist.into()),
        }
    }
}

fn attribute_value(name: &str, v: WireAttributeValue) -> Result<MessageAttributeValue, ApiError> {
    if v.string_list_values.is_some_and(|l| !l.is_empty())
        || v.binary_list_values.is_some_and(|l| !l.is_empty())
    {
        return Err(nimbus_queues::Error::InvalidParameterValue(format!(
            "Message attribute '{name}': list values are not implemented by SQS."
        ))
        .into());
    }
    let binary_value = match v.binary_value {
        Some(b) => Some(base64::engine::general_purpose::STANDARD.decode(b.as_bytes()).map_err(|_| {
            ApiError::new(
                400,
                "SerializationException",
                format!("Message attribute '{name}': BinaryValue is not base64."),
            )
        })?),
        None => None,
    };
    Ok(MessageAttributeValue { data_type: v.data_type, string_value: v.string_value, binary_value })
}

fn attribute_map(
    m: BTreeMap<String, WireAttributeValue>,
) -> Result<BTreeMap<String, MessageAttributeValue>, ApiError> {
    m.into_iter().map(|(k, v)| attribute_value(&k, v).map(|v| (k, v))).collect()
}

fn attribute_json(v: &MessageAttributeValue) -> Value {
    let mut o = Map::new();
    o.insert("DataType".into(), json!(v.data_type));
    if let Some(s) = &v.string_value {
        o.insert("StringValue".into(), json!(s));
    }
    if let Some(b) = &v.binary_value {
        o.insert("BinaryValue".into(), json!(base64::engine::general_purpose::STANDARD.encode(b)));
    }
    Value::Object(o)
}

fn send_message(entry: SendEntry) -> Result<SendMessage, ApiError> {
    if entry.message_deduplication_id.is_some() {
        return Err(nimbus_queues::Error::InvalidParameterValue(
            "The request include parameter that is not valid for this queue type".into(),
        )
        .into());
    }
    Ok(SendMessage {
        body: entry.message_body,
        delay_seconds: entry.delay_seconds,
        message_attributes: attribute_map(entry.message_attributes)?,
        system_attributes: attribute_map(entry.message_system_attributes)?,
    })
}

/// `All`, `.*`, exact names and `prefix.*` patterns, as ReceiveMessage accepts them.
fn wanted(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        p == "All"
            || p == ".*"
            || p == name
            || p.strip_suffix(".*")
                .is_some_and(|prefix| name.starts_with(prefix) && name[prefix.len()..].starts_with('.'))
    })
}

fn message_json(m: &ReceivedMessage, system: &[String], user: &[String]) -> Value {
    let mut o = Map::new();
    o.insert("MessageId".into(), json!(m.message_id));
    o.insert("ReceiptHandle".into(), json!(m.receipt_handle));
    o.insert("MD5OfBody".into(), json!(m.md5_of_body));
    o.insert("Body".into(), json!(m.body));
    let attrs: Map<String, Value> = m
        .system_attributes()
        .into_iter()
        .filter(|(k, _)| wanted(system, k))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    if !attrs.is_empty() {
        o.insert("Attributes".into(), Value::Object(attrs));
    }
    let selected: BTreeMap<String, MessageAttributeValue> = m
        .message_attributes
        .iter()
        .filter(|(k, _)| wanted(user, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !selected.is_empty() {
        // The digest covers the attributes returned, as on SQS.
        if let Some(md5) = nimbus_queues::md5_of_message_attributes(&selected) {
            o.insert("MD5OfMessageAttributes".into(), json!(md5));
        }
        let v: Map<String, Value> = selected.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect();
        o.insert("MessageAttributes".into(), Value::Object(v));
    }
    Value::Object(o)
}

fn failed_entry(id: &str, e: ApiError) -> Value {
    json!({"Id": id, "SenderFault": !e.status.is_server_error(), "Code": e.batch_code(), "Message": e.message})
}

/// Runs a batch operation entry by entry, as SQS does: a client error fails only that
/// entry (listed under `Failed`), a server error fails the whole call.
fn run_batch<E>(
    entries: Vec<E>,
    id: impl Fn(&E) -> String,
    mut op: impl FnMut(E) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry_id = id(&entry);
        match op(entry) {
            Ok(v) => ok.push(v),
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => failed.push(failed_entry(&entry_id, e)),
        }
    }
    Ok(json!({"Successful": ok, "Failed": failed}))
}

impl SqsService {
    async fn call_op(&self, ctx: &RequestContext, operation: &str, input: &[u8]) -> Result<Value, ApiError> {
        let q = &self.queues;
        let (account, region) = (&ctx.scope.account, &ctx.scope.region);
        Ok(match operation {
            "CreateQueue" => {
                let i: CreateQueue = parse(input)?;
                let r =
                    q.create_queue(&QueueRef::new(account, region, i.queue_name), &i.attributes, i.tags)?;
                json!({"QueueUrl": self.url(&r)})
            }
            "GetQueueUrl" => {
                let i: GetQueueUrl = parse(input)?;
                let owner = i.queue_owner_aws_account_id.unwrap_or_else(|| account.clone());
                let r = q.get_queue(&QueueRef::new(owner, region, i.queue_name))?;
                json!({"QueueUrl": self.url(&r)})
            }
            "ListQueues" => {
                let i: ListQueues = parse(input)?;
                let page = q.list_queues(
                    account,
                    region,
                    i.queue_name_prefix.as_deref(),
                    i.max_results,
                    i.next_token.as_deref(),
                )?;
                let mut o = Map::new();
                if !page.queues.is_empty() {
                    o.insert(
                        "QueueUrls".into(),
                        json!(page.queues.iter().map(|r| self.url(r)).collect::<Vec<_>>()),
                    );
                }
                if let Some(t) = page.next_token {
                    o.insert("NextToken".into(), json!(t));
                }
                Value::Object(o)
            }
            "DeleteQueue" => {
                let i: QueueUrlOnly = parse(input)?;
                q.delete_queue(&self.queue_ref(ctx, &i.queue_url)?)?;
                json!({})
            }
            "PurgeQueue" => {
                let i: QueueUrlOnly = parse(input)?;
                q.purge_queue(&self.queue_ref(ctx, &i.queue_url)?)?;
                json!({})
            }
            "GetQueueAttributes" => {
                let i: GetQueueAttributes = parse(input)?;
                let attrs =
                    q.get_queue_attributes(&self.queue_ref(ctx, &i.queue_url)?, &i.attribute_names)?;
                if attrs.is_empty() { json!({}) } else { json!({"Attributes": attrs}) }
            }
            "SetQueueAttributes" => {
                let i: SetQueueAttributes = parse(input)?;
                q.set_queue_attributes(&self.queue_ref(ctx, &i.queue_url)?, &i.attributes)?;
                json!({})
            }
            "ListQueueTags" => {
                let i: QueueUrlOnly = parse(input)?;
                let tags = q.list_queue_tags(&self.queue_ref(ctx, &i.queue_url)?)?;
                if tags.is_empty() { json!({}) } else { json!({"Tags": tags}) }
            }
            "TagQueue" => {
                let i: TagQueue = parse(input)?;
                q.tag_queue(&self.queue_ref(ctx, &i.queue_url)?, i.tags)?;
                json!({})
            }
            "UntagQueue" => {
                let i: UntagQueue = parse(input)?;
                q.untag_queue(&self.queue_ref(ctx, &i.queue_url)?, &i.tag_keys)?;
                json!({})
            }
            "SendMessage" => {
                let i: SendMessageInput = parse(input)?;
                let r = self.queue_ref(ctx, &i.queue_url)?;
                let sent = q.send_message(&r, send_message(i.entry)?)?;
                let mut o = Map::new();
                o.insert("MessageId".into(), json!(sent.message_id));
                o.insert("MD5OfMessageBody".into(), json!(sent.md5_of_body));
                if let Some(m) = sent.md5_of_message_attributes {
                    o.insert("MD5OfMessageAttributes".into(), json!(m));
                }
                if let Some(m) = sent.md5_of_system_attributes {
                    o.insert("MD5OfMessageSystemAttributes".into(), json!(m));
                }
                Value::Object(o)
            }
            "SendMessageBatch" => {
                let i: SendMessageBatch = parse(input)?;
                let r = self.queue_ref(ctx, &i.queue_url)?;
                validate_batch_ids(i.entries.iter().map(|e| e.id.as_str()))?;
                let max = q.queue_attributes(&r)?.maximum_message_size;
                let total: usize = i.entries.iter().map(|e| e.message_body.len()).sum();
                if total > max as usize {
                    return Err(nimbus_queues::Error::BatchRequestTooLong(max).into());
                }
                run_batch(
                    i.entries,
                    |e| e.id.clone(),
                    |entry| {
                        let id = entry.id.clone();
                        let sent = send_message(entry)
                            .and_then(|m| q.send_message(&r, m).map_err(ApiError::from))?;
                        let mut o = Map::new();
                        o.insert("Id".into(), json!(id));
                        o.insert("MessageId".into(), json!(sent.message_id));
                        o.insert("MD5OfMessageBody".into(), json!(sent.md5_of_body));
                        if let Some(m) = sent.md5_of_message_attributes {
                            o.insert("MD5OfMessageAttributes".into(), json!(m));
                        }
                        if let Some(m) = sent.md5_of_system_attributes {
                            o.insert("MD5OfMessageSystemAttributes".into(), json!(m));
                        }
                        Ok(Value::Object(o))
                    },
                )?
            }
            "ReceiveMessage" => {
                let i: ReceiveMessage = parse(input)?;
                let r = self.queue_ref(ctx, &i.queue_url)?;
                if i.wait_time_seconds.is_some_and(|w| w > 20) {
                    return Err(nimbus_queues::Error::InvalidParameterValue(
                        "Value for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
                            .into(),
                    )
                    .into());
                }
                let got = q
                    .receive_message(
                        &r,
                        ReceiveOptions {
                            max_messages: i.max_number_of_messages.unwrap_or(1),
                            wait: i.wait_time_seconds.map(Duration::from_secs),
                            visibility_timeout: i.visibility_timeout,
                        },
                    )
                    .await?;
                let mut system = i.attribute_names;
                system.extend(i.message_system_attribute_names);
                if got.is_empty() {
                    json!({})
                } else {
                    let msgs: Vec<Value> =
                        got.iter().map(|m| message_json(m, &system, &i.message_attribute_names)).collect();
                    json!({"Messages": msgs})
                }
            }
            "DeleteMessage" => {
                let i: DeleteMessage = parse(input)?;
                q.delete_message(&self.queue_ref(ctx, &i.queue_url)?, &i.receipt_handle)?;
                json!({})
            }
            "DeleteMessageBatch" => {
                let i: BatchInput = parse(input)?;
                let r = self.queue_ref(ctx, &i.queue_url)?;
                validate_batch_ids(i.entries.iter().map(|e| e.id.as_str()))?;
                run_batch(
                    i.entries,
                    |e| e.id.clone(),
                    |e| {
                        q.delete_message(&r, &e.receipt_handle)?;
                        Ok(json!({"Id": e.id}))
                    },
                )?
            }
            "ChangeMessageVisibility" => {
                let i: ChangeVisibility = parse(input)?;
                q.change_message_visibility(
                    &self.queue_ref(ctx, &i.queue_url)?,
                    &i.receipt_handle,
                    i.visibility_timeout,
                )?;
                json!({})
            }
            "ChangeMessageVisibilityBatch" => {
                let i: BatchInput = parse(input)?;
                let r = self.queue_ref(ctx, &i.queue_url)?;
                validate_batch_ids(i.entries.iter().map(|e| e.id.as_str()))?;
                run_batch(
                    i.entries,
                    |e| e.id.clone(),
                    |e| {
                        q.change_message_visibility(
                            &r,
                            &e.receipt_handle,
                            e.visibility_timeout.unwrap_or(0),
                        )?;
                        Ok(json!({"Id": e.id}))
                    },
                )?
            }
            _ => return Err(unknown_operation(&format!("AmazonSQS.{operation}"))),
        })
    }
}

impl JsonService for SqsService {
    fn target_prefix(&self) -> &'static str {
        "AmazonSQS"
    }

    fn call<'a>(
        &'a self,
        ctx: &'a RequestContext,
        operation: &'a str,
        input: Bytes,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move { self.call_op(ctx, operation, &input).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_name_account_and_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = nimbus_store::SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let svc = SqsService {
            queues: QueuesEngine::open(Arc::new(store)).unwrap(),
            endpoint_url: "http://127.0.0.1:4566".into(),
        };
        let ctx = RequestContext {
            scope: nimbus_model::Scope::new("000000000000", "eu-west-1"),
            access_key: None,
            request_id: String::new(),
        };
        let r = svc.queue_ref(&ctx, "http://127.0.0.1:4566/123456789012/jobs").unwrap();
        assert_eq!(r, QueueRef::new("123456789012", "eu-west-1", "jobs"));
        assert_eq!(svc.url(&r), "http://127.0.0.1:4566/123456789012/jobs");
        let aws = svc.queue_ref(&ctx, "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs").unwrap();
        assert_eq!(aws, r);
        assert!(svc.queue_ref(&ctx, "http://127.0.0.1:4566/jobs").is_err());
        assert!(svc.queue_ref(&ctx, "").is_err());
    }

    #[test]
    fn attribute_name_patterns() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wanted(&p(&["All"]), "x"));
        assert!(wanted(&p(&[".*"]), "x"));
        assert!(wanted(&p(&["trace.*"]), "trace.id"));
        assert!(!wanted(&p(&["trace.*"]), "tracer"));
        assert!(!wanted(&p(&["a"]), "b"));
        assert!(!wanted(&[], "a"));
    }
}
