//! The queue registry and message state. Each queue keeps its messages in memory (ordered
//! by arrival) and writes every change through to the store before answering, so a
//! `kill -9` loses nothing that was acknowledged.
use crate::attributes::READABLE;
use crate::digest::{md5_hex, md5_of_message_attributes};
use crate::{
    Error, MessageAttributeValue, QueueAttributes, QueueRef, ReceiveOptions, ReceivedMessage, SendMessage,
    SendResult,
};
use base64::Engine as _;
use nimbus_store::Store;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const QUEUES: &str = "sqs.queues";
const MESSAGES: &str = "sqs.messages";
/// SQS's limit on message attributes per message.
const MAX_MESSAGE_ATTRIBUTES: usize = 10;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueueDoc {
    /// Unique per incarnation: message keys are prefixed with it, so a re-created queue
    /// never sees an old queue's messages or receipt handles.
    id: String,
    account: String,
    region: String,
    name: String,
    created_ms: i64,
    last_modified_ms: i64,
    attributes: QueueAttributes,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredMessage {
    seq: u64,
    id: String,
    body: String,
    md5_of_body: String,
    md5_of_attributes: Option<String>,
    attributes: BTreeMap<String, MessageAttributeValue>,
    trace_header: Option<String>,
    sender_id: String,
    sent_ms: i64,
    visible_at_ms: i64,
    receive_count: u32,
    first_receive_ms: Option<i64>,
    dead_letter_source: Option<String>,
}

struct QueueState {
    doc: QueueDoc,
    messages: BTreeMap<u64, StoredMessage>,
    next_seq: u64,
    deleted: bool,
}

struct Queue {
    r: QueueRef,
    id: String,
    state: Mutex<QueueState>,
    /// Wakes long polls when a message arrives or becomes visible again.
    arrivals: Notify,
}

fn message_key(queue_id: &str, seq: u64) -> String {
    format!("{queue_id}/{seq:016x}")
}

/// One page of ListQueues.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQueuesPage {
    pub queues: Vec<QueueRef>,
    pub next_token: Option<String>,
}

/// Counts behind the `ApproximateNumberOfMessages*` attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    visible: usize,
    in_flight: usize,
    delayed: usize,
}

pub struct QueuesEngine {
    store: Arc<dyn Store>,
    /// By `QueueRef::key`.
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// Serialises control-plane writes (create/delete/set attributes).
    writes: Mutex<()>,
}

impl Queue {
    fn persist(&self, store: &dyn Store, m: &StoredMessage) -> Result<(), Error> {
        let bytes = serde_json::to_vec(m).map_err(|e| Error::Internal(e.to_string()))?;
        store.put(MESSAGES, &message_key(&self.id, m.seq), &bytes)?;
        Ok(())
    }
}

fn receipt_handle(queue_id: &str, m: &StoredMessage) -> String {
    let raw = format!("{queue_id}/{}/{}/{}", m.seq, m.id, uuid::Uuid::new_v4().simple());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// `(queue id, seq, message id)` of a receipt handle.
fn parse_receipt(handle: &str) -> Option<(String, u64, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(handle.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let mut parts = raw.split('/');
    let (q, seq, id, _nonce) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((q.to_string(), seq.parse().ok()?, id.to_string()))
}

fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Characters SQS accepts in a message body (XML 1.0's character range).
fn valid_body_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn validate_attributes(attrs: &BTreeMap<String, MessageAttributeValue>, what: &str) -> Result<usize, Error> {
    if attrs.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(Error::InvalidParameterValue(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}].",
            attrs.len()
        )));
    }
    let mut size = 0;
    for (name, v) in attrs {
        let lower = name.to_ascii_lowercase();
        if name.is_empty()
            || name.len() > 256
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
            || lower.starts_with("aws.")
            || lower.starts_with("amazon.")
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(Error::InvalidParameterValue(format!("{what} attribute name '{name}' is invalid.")));
        }
        let base = v.data_type.split('.').next().unwrap_or_default();
        let ok = match base {
            "String" | "Number" => v.string_value.as_deref().is_some_and(|s| !s.is_empty()),
            "Binary" => v.binary_value.as_deref().is_some_and(|b| !b.is_empty()),
            _ => {
                return Err(Error::InvalidParameterValue(format!(
                    "The type of {what} attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
                )));
            }
        };
        if !ok {
            return Err(Error::InvalidParameterValue(format!(
                "{what} attribute '{name}' must contain a non-empty value of message attribute type '{base}'."
            )));
        }
        if base == "Number" && v.string_value.as_deref().is_some_and(|s| s.trim().parse::<f64>().is_err()) {
            return Err(Error::InvalidParameterValue(format!(
                "Can't cast the value of message ({what}) attribute '{name}' to a number."
            )));
        }
        size += name.len()
            + v.data_type.len()
            + v.string_value.as_ref().map_or(0, String::len)
            + v.binary_value.as_ref().map_or(0, Vec::len);
    }
    Ok(size)
}

impl QueuesEngine {
    /// Opens the engine over durable state, reloading every queue and message.
    pub fn open(store: Arc<dyn Store>) -> Result<Arc<QueuesEngine>, Error> {
        let mut by_id: HashMap<String, Arc<Queue>> = HashMap::new();
        let mut queues = HashMap::new();
        for (k, v) in store.list(QUEUES)? {
            let doc: QueueDoc = serde_json::from_slice(&v)
                .map_err(|e| Error::Internal(format!("stored queue {k} is unreadable: {e}")))?;
            let r = QueueRef::new(&doc.account, &doc.region, &doc.name);
            let q = Arc::new(Queue {
                r: r.clone(),
                id: doc.id.clone(),
                state: Mutex::new(QueueState { doc, messages: BTreeMap::new(), next_seq: 0, deleted: false }),
                arrivals: Notify::new(),
            });
            by_id.insert(q.id.clone(), q.clone());
            queues.insert(r.key(), q);
        }
        let mut orphans = Vec::new();
        for (k, v) in store.list(MESSAGES)? {
            let queue_id = k.split('/').next().unwrap_or_default();
            let (Some(q), Ok(m)) = (by_id.get(queue_id), serde_json::from_slice::<StoredMessage>(&v)) else {
                orphans.push(k);
                continue;
            };
            let mut st = q.state.lock();
            st.next_seq = st.next_seq.max(m.seq + 1);
            st.messages.insert(m.seq, m);
        }
        // Messages of deleted queues (a crash during DeleteQueue/PurgeQueue) or unreadable ones.
        for k in orphans {
            store.delete(MESSAGES, &k)?;
        }
        Ok(Arc::new(QueuesEngine { store, queues: RwLock::new(queues), writes: Mutex::new(()) }))
    }

    fn queue(&self, r: &QueueRef) -> Result<Arc<Queue>, Error> {
        self.queues.read().get(&r.key()).cloned().ok_or(Error::QueueDoesNotExist)
    }

    fn save_doc(&self, doc: &QueueDoc) -> Result<(), Error> {
        let bytes = serde_json::to_vec(doc).map_err(|e| Error::Internal(e.to_string()))?;
        let r = QueueRef::new(&doc.account, &doc.region, &doc.name);
        self.store.put(QUEUES, &r.key(), &bytes)?;
        Ok(())
    }

    fn check_redrive_target(&self, attrs: &QueueAttributes, own: &QueueRef) -> Result<(), Error> {
        if let Some(p) = &attrs.redrive_policy {
            let target = QueueRef::from_arn(&p.dead_letter_target_arn);
            let exists =
                target.as_ref().is_some_and(|t| t != own && self.queues.read().contains_key(&t.key()));
            if !exists {
                return Err(Error::InvalidAttributeValue(format!(
                    "Value {} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.",
                    p.to_json()
                )));
            }
        }
        Ok(())
    }

    /// CreateQueue: idempotent when the attributes match, `QueueNameExists` otherwise.
    pub fn create_queue(
        &self,
        r: &QueueRef,
        attributes: &BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<QueueRef, Error> {
        if r.name.ends_with(".fifo") {
            return Err(Error::UnsupportedOperation(
                "FIFO queues are not supported by Nimbus yet; use a standard queue.".into(),
            ));
        }
        if !valid_queue_name(&r.name) {
            return Err(Error::InvalidParameterValue(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length".into(),
            ));
        }
        let mut attrs = QueueAttributes::default();
        attrs.apply(attributes)?;
        self.check_redrive_target(&attrs, r)?;
        let _w = self.writes.lock();
        if let Some(existing) = self.queues.read().get(&r.key()) {
            let st = existing.state.lock();
            let mut given = st.doc.attributes.clone();
            given.apply(attributes)?;
            if given != st.doc.attributes {
                return Err(Error::QueueNameExists(format!(
                    "A queue already exists with the same name and a different value for attribute(s) {}",
                    attributes.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            return Ok(r.clone());
        }
        let now = now_ms();
        let doc = QueueDoc {
            id: uuid::Uuid::new_v4().simple().to_string(),
            account: r.account.clone(),
            region: r.region.clone(),
            name: r.name.clone(),
            created_ms: now,
            last_modified_ms: now,
            attributes: attrs,
            tags,
        };
        self.save_doc(&doc)?;
        let q = Arc::new(Queue {
            r: r.clone(),
            id: doc.id.clone(),
            state: Mutex::new(QueueState { doc, messages: BTreeMap::new(), next_seq: 0, deleted: false }),
            arrivals: Notify::new(),
        });
        self.queues.write().insert(r.key(), q);
        Ok(r.clone())
    }

    /// GetQueueUrl's check: the queue exists.
    pub fn get_queue(&self, r: &QueueRef) -> Result<QueueRef, Error> {
        Ok(self.queue(r)?.r.clone())
    }

    pub fn queue_exists(&self, r: &QueueRef) -> bool {
        self.queues.read().contains_key(&r.key())
    }

    /// ListQueues of one account and region, by name; `next_token` is the last name of
    /// the previous page.
    pub fn list_queues(
        &self,
        account: &str,
        region: &str,
        prefix: Option<&str>,
        max_results: Option<usize>,
        next_token: Option<&str>,
    ) -> Result<ListQueuesPage, Error> {
        if max_results.is_some_and(|n| !(1..=1000).contains(&n)) {
            return Err(Error::InvalidParameterValue(
                "Value for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000."
                    .into(),
            ));
        }
        let mut refs: Vec<QueueRef> = self
            .queues
            .read()
            .values()
            .map(|q| q.r.clone())
            .filter(|r| r.account == account && r.region == region)
            .filter(|r| prefix.is_none_or(|p| r.name.starts_with(p)))
            .filter(|r| next_token.is_none_or(|t| r.name.as_str() > t))
            .collect();
        refs.sort();
        // Without MaxResults SQS returns up to 1,000 queues and no token.
        let limit = max_results.unwrap_or(1000);
        let more = refs.len() > limit;
        refs.truncate(limit);
        let next_token =
            if more && max_results.is_some() { refs.last().map(|r| r.name.clone()) } else { None };
        Ok(ListQueuesPage { queues: refs, next_token })
    }

    pub fn delete_queue(&self, r: &QueueRef) -> Result<(), Error> {
        let _w = self.writes.lock();
        let q = self.queue(r)?;
        self.store.delete(QUEUES, &r.key())?;
        self.queues.write().remove(&r.key());
        let seqs: Vec<u64> = {
            let mut st = q.state.lock();
            st.deleted = true;
            std::mem::take(&mut st.messages).into_keys().collect()
        };
        for seq in seqs {
            self.store.delete(MESSAGES, &message_key(&q.id, seq))?;
        }
        q.arrivals.notify_waiters();
        Ok(())
    }

    pub fn purge_queue(&self, r: &QueueRef) -> Result<(), Error> {
        let q = self.queue(r)?;
        let mut st = q.state.lock();
        for seq in std::mem::take(&mut st.messages).into_keys() {
            self.store.delete(MESSAGES, &message_key(&q.id, seq))?;
        }
        Ok(())
    }

    /// The queue's typed attributes (destinations and pollers read `VisibilityTimeout`).
    pub fn queue_attributes(&self, r: &QueueRef) -> Result<QueueAttributes, Error> {
        Ok(self.queue(r)?.state.lock().doc.attributes.clone())
    }

    /// GetQueueAttributes: `names` may include `All`; unknown names are an error.
    pub fn get_queue_attributes(
        &self,
        r: &QueueRef,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, Error> {
        for n in names {
            if n != "All" && !READABLE.contains(&n.as_str()) {
                return Err(Error::InvalidAttributeName(format!("Unknown Attribute {n}.")));
            }
        }
        let q = self.queue(r)?;
        let mut all = BTreeMap::new();
        let now = now_ms();
        let mut st = q.state.lock();
        self.expire(&q, &mut st, now);
        let c = counts(&st, now);
        st.doc.attributes.render(&mut all);
        all.insert("QueueArn".into(), r.arn());
        all.insert("CreatedTimestamp".into(), (st.doc.created_ms / 1000).to_string());
        all.insert("LastModifiedTimestamp".into(), (st.doc.last_modified_ms / 1000).to_string());
        all.insert("ApproximateNumberOfMessages".into(), c.visible.to_string());
        all.insert("ApproximateNumberOfMessagesNotVisible".into(), c.in_flight.to_string());
        all.insert("ApproximateNumberOfMessagesDelayed".into(), c.delayed.to_string());
        if names.iter().any(|n| n == "All") {
            return Ok(all);
        }
        Ok(all.into_iter().filter(|(k, _)| names.contains(k)).collect())
    }

    pub fn set_queue_attributes(
        &self,
        r: &QueueRef,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let _w = self.writes.lock();
        let q = self.queue(r)?;
        let mut attrs = q.state.lock().doc.attributes.clone();
        attrs.apply(attributes)?;
        self.check_redrive_target(&attrs, r)?;
        let mut st = q.state.lock();
        let mut doc = st.doc.clone();
        doc.attributes = attrs;
        doc.last_modified_ms = now_ms();
        self.save_doc(&doc)?;
        st.doc = doc;
        Ok(())
    }

    pub fn list_queue_tags(&self, r: &QueueRef) -> Result<BTreeMap<String, String>, Error> {
        Ok(self.queue(r)?.state.lock().doc.tags.clone())
    }

    pub fn tag_queue(&self, r: &QueueRef, tags: BTreeMap<String, String>) -> Result<(), Error> {
        self.update_tags(r, |t| t.extend(tags))
    }

    pub fn untag_queue(&self, r: &QueueRef, keys: &[String]) -> Result<(), Error> {
        self.update_tags(r, |t| t.retain(|k, _| !keys.contains(k)))
    }

    fn update_tags(&self, r: &QueueRef, f: impl FnOnce(&mut BTreeMap<String, String>)) -> Result<(), Error> {
        let q = self.queue(r)?;
        let mut st = q.state.lock();
        let mut doc = st.doc.clone();
        f(&mut doc.tags);
        if doc.tags.len() > 50 {
            return Err(Error::InvalidParameterValue(
                "Too many tags added for queue (the limit is 50).".into(),
            ));
        }
        self.save_doc(&doc)?;
        st.doc = doc;
        Ok(())
    }

    /// SendMessage: durable when this returns.
    pub fn send_message(&self, r: &QueueRef, msg: SendMessage) -> Result<SendResult, Error> {
        self.send_message_from(r, msg, None)
    }

    /// SendMessage to a queue named by ARN (Lambda destinations and dead-letter queues).
    pub fn send_message_by_arn(&self, arn: &str, msg: SendMessage) -> Result<SendResult, Error> {
        let r = QueueRef::from_arn(arn).ok_or(Error::QueueDoesNotExist)?;
        self.send_message(&r, msg)
    }

    fn send_message_from(
        &self,
        r: &QueueRef,
        msg: SendMessage,
        sender: Option<&str>,
    ) -> Result<SendResult, Error> {
        if msg.body.is_empty() {
            return Err(Error::MissingParameter(
                "The request must contain the parameter MessageBody.".into(),
            ));
        }
        if !msg.body.chars().all(valid_body_char) {
            return Err(Error::InvalidMessageContents(
                "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
                    .into(),
            ));
        }
        if msg.delay_seconds.is_some_and(|d| d > 900) {
            return Err(Error::InvalidParameterValue(format!(
                "Value {} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900.",
                msg.delay_seconds.unwrap_or_default()
            )));
        }
        let attr_size = validate_attributes(&msg.message_attributes, "Message (user)")?;
        for name in msg.system_attributes.keys() {
            if name != "AWSTraceHeader" {
                return Err(Error::InvalidParameterValue(format!(
                    "Message system attribute name '{name}' is invalid."
                )));
            }
        }
        let q = self.queue(r)?;
        let mut st = q.state.lock();
        if st.deleted {
            return Err(Error::QueueDoesNotExist);
        }
        let max = st.doc.attributes.maximum_message_size as usize;
        if msg.body.len() + attr_size > max {
            return Err(Error::InvalidParameterValue(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {max} bytes."
            )));
        }
        let now = now_ms();
        let delay = msg.delay_seconds.unwrap_or(st.doc.attributes.delay_seconds);
        let seq = st.next_seq;
        let m = StoredMessage {
            seq,
            id: uuid::Uuid::new_v4().to_string(),
            md5_of_body: md5_hex(msg.body.as_bytes()),
            md5_of_attributes: md5_of_message_attributes(&msg.message_attributes),
            body: msg.body,
            attributes: msg.message_attributes,
            trace_header: msg.system_attributes.get("AWSTraceHeader").and_then(|v| v.string_value.clone()),
            sender_id: sender.unwrap_or(&r.account).to_string(),
            sent_ms: now,
            visible_at_ms: now + i64::from(delay) * 1000,
            receive_count: 0,
            first_receive_ms: None,
            dead_letter_source: None,
        };
        q.persist(self.store.as_ref(), &m)?;
        st.next_seq += 1;
        let result = SendResult {
            message_id: m.id.clone(),
            md5_of_body: m.md5_of_body.clone(),
            md5_of_message_attributes: m.md5_of_attributes.clone(),
            md5_of_system_attributes: md5_of_message_attributes(&msg.system_attributes),
        };
        st.messages.insert(seq, m);
        drop(st);
        q.arrivals.notify_waiters();
        Ok(result)
    }

    /// Drops messages older than the queue's retention period. Messages are kept in arrival
    /// order, so only the oldest prefix is looked at (every receive calls this); a message
    /// a redrive moved here keeps its original timestamp and expires once it is the oldest.
    fn expire(&self, q: &Queue, st: &mut QueueState, now: i64) {
        let cutoff = now - i64::from(st.doc.attributes.message_retention_period) * 1000;
        let old: Vec<u64> = st.messages.values().take_while(|m| m.sent_ms < cutoff).map(|m| m.seq).collect();
        for seq in old {
            if let Err(e) = self.store.delete(MESSAGES, &message_key(&q.id, seq)) {
                tracing::error!("could not drop an expired message of {}: {e}", q.r.name);
                continue;
            }
            st.messages.remove(&seq);
        }
    }

    /// ReceiveMessage: long-polls up to the wait time for at least one message.
    pub async fn receive_message(
        &self,
        r: &QueueRef,
        opts: ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>, Error> {
        if !(1..=10).contains(&opts.max_messages) {
            return Err(Error::InvalidParameterValue(format!(
                "Value {} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.",
                opts.max_messages
            )));
        }
        if opts.wait.is_some_and(|w| w > Duration::from_secs(20)) {
            return Err(Error::InvalidParameterValue(
                "Value for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.".into(),
            ));
        }
        if opts.visibility_timeout.is_some_and(|v| v > 43_200) {
            return Err(Error::InvalidParameterValue(
                "Value for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided."
                    .into(),
            ));
        }
        let q = self.queue(r)?;
        let wait = opts.wait.unwrap_or_else(|| {
            Duration::from_secs(u64::from(q.state.lock().doc.attributes.receive_message_wait_time_seconds))
        });
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let arrival = q.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let (got, next_visible_ms) = self.try_receive(&q, &opts)?;
            if !got.is_empty() {
                return Ok(got);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(got);
            }
            let mut wake = deadline;
            if let Some(at) = next_visible_ms {
                let until =
                    Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0).saturating_add(1));
                wake = wake.min(now + until);
            }
            tokio::select! {
                _ = &mut arrival => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Receive from a queue named by ARN (event source mappings).
    pub async fn receive_by_arn(
        &self,
        arn: &str,
        opts: ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>, Error> {
        let r = QueueRef::from_arn(arn).ok_or(Error::QueueDoesNotExist)?;
        self.receive_message(&r, opts).await
    }

    /// One non-blocking pass: delivers up to `max_messages` visible messages, moving those
    /// past the redrive policy's `maxReceiveCount` to the dead-letter queue. Also returns
    /// when the next invisible message becomes visible.
    fn try_receive(
        &self,
        q: &Queue,
        opts: &ReceiveOptions,
    ) -> Result<(Vec<ReceivedMessage>, Option<i64>), Error> {
        let now = now_ms();
        let mut out = Vec::new();
        let mut next_visible: Option<i64> = None;
        let mut redrive = Vec::new();
        {
            let mut st = q.state.lock();
            if st.deleted {
                return Err(Error::QueueDoesNotExist);
            }
            self.expire(q, &mut st, now);
            let vis = i64::from(opts.visibility_timeout.unwrap_or(st.doc.attributes.visibility_timeout));
            let dlq = st.doc.attributes.redrive_policy.as_ref().and_then(|p| {
                let target = QueueRef::from_arn(&p.dead_letter_target_arn)?;
                let target = self.queues.read().get(&target.key()).cloned()?;
                Some((target, p.max_receive_count))
            });
            let mut seqs = Vec::new();
            for m in st.messages.values() {
                if m.visible_at_ms > now {
                    next_visible = Some(next_visible.map_or(m.visible_at_ms, |n| n.min(m.visible_at_ms)));
                    continue;
                }
                if seqs.len() == opts.max_messages as usize {
                    break;
                }
                seqs.push(m.seq);
            }
            for seq in seqs {
                let Some(m) = st.messages.get(&seq) else { continue };
                if let Some((target, max)) = &dlq
                    && m.receive_count >= *max
                {
                    redrive.push((target.clone(), m.clone()));
                    continue;
                }
                let mut m = m.clone();
                m.receive_count += 1;
                m.first_receive_ms.get_or_insert(now);
                m.visible_at_ms = now + vis * 1000;
                q.persist(self.store.as_ref(), &m)?;
                out.push(ReceivedMessage {
                    message_id: m.id.clone(),
                    receipt_handle: receipt_handle(&q.id, &m),
                    body: m.body.clone(),
                    md5_of_body: m.md5_of_body.clone(),
                    md5_of_message_attributes: m.md5_of_attributes.clone(),
                    message_attributes: m.attributes.clone(),
                    sent_timestamp_ms: m.sent_ms,
                    approximate_receive_count: m.receive_count,
                    approximate_first_receive_timestamp_ms: m.first_receive_ms.unwrap_or(now),
                    sender_id: m.sender_id.clone(),
                    aws_trace_header: m.trace_header.clone(),
                    dead_letter_queue_source_arn: m.dead_letter_source.clone(),
                });
                if vis > 0 {
                    next_visible = Some(next_visible.map_or(m.visible_at_ms, |n| n.min(m.visible_at_ms)));
                }
                st.messages.insert(seq, m);
            }
            for (_, m) in &redrive {
                st.messages.remove(&m.seq);
            }
        }
        // Outside the source's lock (two queues may be each other's dead-letter queue):
        // durable in the target first, then gone from the source — at least once.
        for (target, mut m) in redrive {
            let source_key = message_key(&q.id, m.seq);
            {
                let mut ts = target.state.lock();
                m.seq = ts.next_seq;
                m.receive_count = 0;
                m.first_receive_ms = None;
                m.visible_at_ms = now;
                m.dead_letter_source = Some(q.r.arn());
                target.persist(self.store.as_ref(), &m)?;
                ts.next_seq += 1;
                ts.messages.insert(m.seq, m);
            }
            target.arrivals.notify_waiters();
            self.store.delete(MESSAGES, &source_key)?;
        }
        Ok((out, next_visible))
    }

    /// Finds the message a receipt handle names; `Ok(None)` when it is gone (deleted or
    /// moved), which DeleteMessage treats as success.
    fn locate(&self, q: &Queue, handle: &str) -> Result<Option<u64>, Error> {
        let invalid = || {
            Error::ReceiptHandleIsInvalid(format!(
                "The input receipt handle \"{handle}\" is not a valid receipt handle."
            ))
        };
        let (queue_id, seq, id) = parse_receipt(handle).ok_or_else(invalid)?;
        if queue_id != q.id {
            return Err(invalid());
        }
        let st = q.state.lock();
        Ok(st.messages.get(&seq).filter(|m| m.id == id).map(|m| m.seq))
    }

    pub fn delete_message(&self, r: &QueueRef, receipt_handle: &str) -> Result<(), Error> {
        let q = self.queue(r)?;
        if let Some(seq) = self.locate(&q, receipt_handle)? {
            let mut st = q.state.lock();
            if st.messages.remove(&seq).is_some() {
                self.store.delete(MESSAGES, &message_key(&q.id, seq))?;
            }
        }
        Ok(())
    }

    pub fn delete_message_by_arn(&self, arn: &str, receipt_handle: &str) -> Result<(), Error> {
        let r = QueueRef::from_arn(arn).ok_or(Error::QueueDoesNotExist)?;
        self.delete_message(&r, receipt_handle)
    }

    /// ChangeMessageVisibility: the message must be in flight; 0 makes it visible now.
    pub fn change_message_visibility(
        &self,
        r: &QueueRef,
        receipt_handle: &str,
        visibility_timeout: u32,
    ) -> Result<(), Error> {
        if visibility_timeout > 43_200 {
            return Err(Error::InvalidParameterValue(format!(
                "Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200."
            )));
        }
        let q = self.queue(r)?;
        let now = now_ms();
        let gone = || {
            Error::InvalidParameterValue(format!(
                "Value {receipt_handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change."
            ))
        };
        let seq = self.locate(&q, receipt_handle)?.ok_or_else(gone)?;
        {
            let mut st = q.state.lock();
            let m = st.messages.get_mut(&seq).ok_or_else(gone)?;
            if m.receive_count == 0 || m.visible_at_ms <= now {
                return Err(Error::MessageNotInflight("The message referred to is not in flight.".into()));
            }
            let mut updated = m.clone();
            updated.visible_at_ms = now + i64::from(visibility_timeout) * 1000;
            q.persist(self.store.as_ref(), &updated)?;
            *m = updated;
        }
        if visibility_timeout == 0 {
            q.arrivals.notify_waiters();
        }
        Ok(())
    }

    pub fn change_message_visibility_by_arn(
        &self,
        arn: &str,
        receipt_handle: &str,
        visibility_timeout: u32,
    ) -> Result<(), Error> {
        let r = QueueRef::from_arn(arn).ok_or(Error::QueueDoesNotExist)?;
        self.change_message_visibility(&r, receipt_handle, visibility_timeout)
    }
}

fn counts(st: &QueueState, now: i64) -> Counts {
    let mut c = Counts::default();
    for m in st.messages.values() {
        if m.visible_at_ms <= now {
            c.visible += 1;
        } else if m.receive_count > 0 {
            c.in_flight += 1;
        } else {
            c.delayed += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_store::SqliteStore;

    fn engine(dir: &std::path::Path) -> Arc<QueuesEngine> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("state.db")).unwrap());
        QueuesEngine::open(store).unwrap()
    }

    fn q(name: &str) -> QueueRef {
        QueueRef::new("000000000000", "us-east-1", name)
    }

    fn send(e: &QueuesEngine, r: &QueueRef, body: &str) -> SendResult {
        e.send_message(r, SendMessage { body: body.into(), ..Default::default() }).unwrap()
    }

    fn opts(max: u32, vis: Option<u32>) -> ReceiveOptions {
        ReceiveOptions { max_messages: max, wait: Some(Duration::ZERO), visibility_timeout: vis }
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[tokio::test]
    async fn messages_and_in_flight_state_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let r = q("jobs");
        {
            let e = engine(dir.path());
            e.create_queue(&r, &BTreeMap::new(), BTreeMap::new()).unwrap();
            send(&e, &r, "one");
            send(&e, &r, "two");
            let got = e.receive_message(&r, opts(1, Some(600))).await.unwrap();
            assert_eq!(got[0].body, "one");
        }
        let e = engine(dir.path());
        let got = e.receive_message(&r, opts(10, None)).await.unwrap();
        // "one" is still invisible after the restart; "two" was never received.
        assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["two"]);
        assert_eq!(got[0].approximate_receive_count, 1);
        let a = e.get_queue_attributes(&r, &["All".into()]).unwrap();
        assert_eq!(a["ApproximateNumberOfMessagesNotVisible"], "2");
        // A new message after reopening gets a fresh sequence number (no overwrite).
        send(&e, &r, "three");
        assert_eq!(e.get_queue_attributes(&r, &["ApproximateNumberOfMessages".into()]).unwrap().len(), 1);
        assert_eq!(
            e.get_queue_attributes(&r, &["ApproximateNumberOfMessages".into()]).unwrap()["ApproximateNumberOfMessages"],
            "1"
        );
    }

    #[tokio::test]
    async fn visibility_timeout_delete_and_change_visibility() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let r = q("v");
        e.create_queue(&r, &attrs(&[("VisibilityTimeout", "60")]), BTreeMap::new()).unwrap();
        let sent = send(&e, &r, "hello");
        assert_eq!(sent.md5_of_body, md5_hex(b"hello"));
        let got = e.receive_message(&r, opts(10, None)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(e.receive_message(&r, opts(10, None)).await.unwrap().is_empty());
        e.change_message_visibility(&r, &got[0].receipt_handle, 0).unwrap();
        let again = e.receive_message(&r, opts(10, None)).await.unwrap();
        assert_eq!(again[0].approximate_receive_count, 2);
        assert_eq!(
            again[0].approximate_first_receive_timestamp_ms,
            got[0].approximate_first_receive_timestamp_ms
        );
        // The old receipt handle still deletes, as on SQS.
        e.delete_message(&r, &got[0].receipt_handle).unwrap();
        e.change_message_visibility(&r, &again[0].receipt_handle, 0).unwrap_err();
        assert!(matches!(e.delete_message(&r, "garbage"), Err(Error::ReceiptHandleIsInvalid(_))));
        assert_eq!(e.get_queue_attributes(&r, &["All".into()]).unwrap()["ApproximateNumberOfMessages"], "0");
    }

    #[tokio::test]
    async fn long_poll_is_woken_by_a_send() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let r = q("lp");
        e.create_queue(&r, &BTreeMap::new(), BTreeMap::new()).unwrap();
        let started = std::time::Instant::now();
        let (e2, r2) = (e.clone(), r.clone());
        let waiter = tokio::spawn(async move {
            e2.receive_message(
                &r2,
                ReceiveOptions {
                    max_messages: 1,
                    wait: Some(Duration::from_secs(10)),
                    visibility_timeout: None,
                },
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&e, &r, "wake");
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got[0].body, "wake");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn delayed_and_invisible_messages_become_visible_within_a_long_poll() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let r = q("d");
        e.create_queue(&r, &BTreeMap::new(), BTreeMap::new()).unwrap();
        e.send_message(
            &r,
            SendMessage { body: "later".into(), delay_seconds: Some(1), ..Default::default() },
        )
        .unwrap();
        assert_eq!(
            e.get_queue_attributes(&r, &["All".into()]).unwrap()["ApproximateNumberOfMessagesDelayed"],
            "1"
        );
        let got = e
            .receive_message(
                &r,
                ReceiveOptions {
                    max_messages: 1,
                    wait: Some(Duration::from_secs(5)),
                    visibility_timeout: Some(1),
                },
            )
            .await
            .unwrap();
        assert_eq!(got[0].body, "later");
        let got = e
            .receive_message(
                &r,
                ReceiveOptions {
                    max_messages: 1,
                    wait: Some(Duration::from_secs(5)),
                    visibility_timeout: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(got[0].approximate_receive_count, 2);
    }

    #[tokio::test]
    async fn redrive_moves_a_message_after_max_receive_count() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let (src, dlq) = (q("src"), q("src-dlq"));
        e.create_queue(&dlq, &BTreeMap::new(), BTreeMap::new()).unwrap();
        let policy = format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":2}}"#, dlq.arn());
        let bad = format!(r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":2}}"#, q("nope").arn());
        assert!(matches!(
            e.create_queue(&src, &attrs(&[("RedrivePolicy", &bad)]), BTreeMap::new()),
            Err(Error::InvalidAttributeValue(_))
        ));
        e.create_queue(&src, &attrs(&[("RedrivePolicy", &policy)]), BTreeMap::new()).unwrap();
        let sent = send(&e, &src, "poison");
        for _ in 0..2 {
            assert_eq!(e.receive_message(&src, opts(1, Some(0))).await.unwrap().len(), 1);
        }
        assert!(e.receive_message(&src, opts(1, Some(0))).await.unwrap().is_empty());
        let moved = e.receive_message(&dlq, opts(1, None)).await.unwrap();
        assert_eq!(moved[0].message_id, sent.message_id);
        assert_eq!(moved[0].dead_letter_queue_source_arn.as_deref(), Some(src.arn().as_str()));
        // Durable: the move survives a reopen (no copy left in the source).
        drop(e);
        let e = engine(dir.path());
        assert_eq!(
            e.get_queue_attributes(&src, &["All".into()]).unwrap()["ApproximateNumberOfMessages"],
            "0"
        );
    }

    #[tokio::test]
    async fn messages_past_the_retention_period_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let r = q("ret");
        {
            let e = engine(dir.path());
            e.create_queue(&r, &attrs(&[("MessageRetentionPeriod", "60")]), BTreeMap::new()).unwrap();
            send(&e, &r, "old");
            send(&e, &r, "new");
            // Age the first message past the retention period, on disk too.
            let queue = e.queue(&r).unwrap();
            let mut st = queue.state.lock();
            let m = st.messages.values_mut().next().unwrap();
            m.sent_ms -= 61_000;
            queue.persist(e.store.as_ref(), m).unwrap();
        }
        let e = engine(dir.path());
        let got = e.receive_message(&r, opts(10, None)).await.unwrap();
        assert_eq!(got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["new"]);
        drop(e);
        // Dropped from the store as well.
        let e = engine(dir.path());
        assert_eq!(
            e.get_queue_attributes(&r, &["All".into()]).unwrap()["ApproximateNumberOfMessagesNotVisible"],
            "1"
        );
        assert_eq!(e.get_queue_attributes(&r, &["All".into()]).unwrap()["ApproximateNumberOfMessages"], "0");
    }

    #[tokio::test]
    async fn queue_lifecycle_listing_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        for n in ["a1", "a2", "b1"] {
            e.create_queue(&q(n), &BTreeMap::new(), BTreeMap::new()).unwrap();
        }
        // Idempotent with the same attributes, a conflict with different ones.
        e.create_queue(&q("a1"), &BTreeMap::new(), BTreeMap::new()).unwrap();
        assert!(matches!(
            e.create_queue(&q("a1"), &attrs(&[("VisibilityTimeout", "1")]), BTreeMap::new()),
            Err(Error::QueueNameExists(_))
        ));
        assert!(matches!(
            e.create_queue(&q("x.fifo"), &BTreeMap::new(), BTreeMap::new()),
            Err(Error::UnsupportedOperation(_))
        ));
        assert!(matches!(
            e.create_queue(&q("bad name"), &BTreeMap::new(), BTreeMap::new()),
            Err(Error::InvalidParameterValue(_))
        ));
        let page = e.list_queues("000000000000", "us-east-1", Some("a"), Some(1), None).unwrap();
        assert_eq!(page.queues, [q("a1")]);
        let page2 = e
            .list_queues("000000000000", "us-east-1", Some("a"), Some(1), page.next_token.as_deref())
            .unwrap();
        assert_eq!(page2.queues, [q("a2")]);
        assert_eq!(page2.next_token, None);
        e.delete_queue(&q("a1")).unwrap();
        assert!(matches!(
            e.send_message(&q("a1"), SendMessage { body: "x".into(), ..Default::default() }),
            Err(Error::QueueDoesNotExist)
        ));
        assert!(matches!(e.send_message(&q("a2"), SendMessage::default()), Err(Error::MissingParameter(_))));
        assert!(matches!(
            e.send_message(&q("a2"), SendMessage { body: "\u{1}".into(), ..Default::default() }),
            Err(Error::InvalidMessageContents(_))
        ));
        e.tag_queue(&q("a2"), [("k".to_string(), "v".to_string())].into()).unwrap();
        e.untag_queue(&q("a2"), &["nope".into()]).unwrap();
        assert_eq!(e.list_queue_tags(&q("a2")).unwrap().len(), 1);
    }
}
