//! Queue attributes: SQS's names, defaults and limits.
use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where messages go after `max_receive_count` receives without a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedrivePolicy {
    pub dead_letter_target_arn: String,
    pub max_receive_count: u32,
}

impl RedrivePolicy {
    /// The attribute's JSON text, as SQS returns it.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "deadLetterTargetArn": self.dead_letter_target_arn,
            "maxReceiveCount": self.max_receive_count,
        })
        .to_string()
    }

    /// Parses `{"deadLetterTargetArn": "...", "maxReceiveCount": 5}` (the count may be a
    /// string, as the console writes it).
    pub fn parse(text: &str) -> Result<RedrivePolicy, Error> {
        let invalid = |why: &str| {
            Error::InvalidAttributeValue(format!(
                "Value {text} for parameter RedrivePolicy is invalid. Reason: {why}"
            ))
        };
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|_| invalid("Redrive policy is not a valid JSON map."))?;
        let arn = v.get("deadLetterTargetArn").and_then(|a| a.as_str()).ok_or_else(|| {
            invalid("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
        })?;
        let count = match v.get("maxReceiveCount") {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            None => {
                return Err(invalid("Redrive policy does not contain mandatory attribute: maxReceiveCount."));
            }
            _ => None,
        }
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| invalid("Invalid value for maxReceiveCount: must be an integer from 1 to 1000."))?;
        if crate::QueueRef::from_arn(arn).is_none() {
            return Err(invalid("Invalid value for deadLetterTargetArn."));
        }
        Ok(RedrivePolicy { dead_letter_target_arn: arn.to_string(), max_receive_count: count as u32 })
    }
}

/// The settable attributes of a standard queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueAttributes {
    pub visibility_timeout: u32,
    pub message_retention_period: u32,
    pub delay_seconds: u32,
    pub receive_message_wait_time_seconds: u32,
    pub maximum_message_size: u32,
    pub redrive_policy: Option<RedrivePolicy>,
    pub redrive_allow_policy: Option<String>,
    pub policy: Option<String>,
    pub kms_master_key_id: Option<String>,
    pub kms_data_key_reuse_period_seconds: u32,
    pub sqs_managed_sse_enabled: bool,
}

impl Default for QueueAttributes {
    fn default() -> Self {
        QueueAttributes {
            visibility_timeout: 30,
            message_retention_period: 345_600,
            delay_seconds: 0,
            receive_message_wait_time_seconds: 0,
            maximum_message_size: 262_144,
            redrive_policy: None,
            redrive_allow_policy: None,
            policy: None,
            kms_master_key_id: None,
            kms_data_key_reuse_period_seconds: 300,
            sqs_managed_sse_enabled: true,
        }
    }
}

/// Attribute names GetQueueAttributes knows (besides `All`).
pub(crate) const READABLE: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "DelaySeconds",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
    // FIFO-only attributes: known names, never present on a standard queue.
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

fn number(name: &str, value: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, Error> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| Error::InvalidAttributeValue(format!("Invalid value for the parameter {name}.")))
}

impl QueueAttributes {
    /// Applies CreateQueue/SetQueueAttributes input. A redrive policy's target is checked
    /// by the engine (it needs the registry).
    pub fn apply(&mut self, attrs: &BTreeMap<String, String>) -> Result<(), Error> {
        for (name, value) in attrs {
            match name.as_str() {
                "VisibilityTimeout" => self.visibility_timeout = number(name, value, 0..=43_200)?,
                "MessageRetentionPeriod" => {
                    self.message_retention_period = number(name, value, 60..=1_209_600)?
                }
                "DelaySeconds" => self.delay_seconds = number(name, value, 0..=900)?,
                "ReceiveMessageWaitTimeSeconds" => {
                    self.receive_message_wait_time_seconds = number(name, value, 0..=20)?
                }
                "MaximumMessageSize" => self.maximum_message_size = number(name, value, 1_024..=1_048_576)?,
                "KmsDataKeyReusePeriodSeconds" => {
                    self.kms_data_key_reuse_period_seconds = number(name, value, 60..=86_400)?
                }
                "RedrivePolicy" => {
                    self.redrive_policy =
                        if value.trim().is_empty() { None } else { Some(RedrivePolicy::parse(value)?) }
                }
                "RedriveAllowPolicy" => {
                    self.redrive_allow_policy = Some(value.clone()).filter(|v| !v.is_empty())
                }
                "Policy" => self.policy = Some(value.clone()).filter(|v| !v.is_empty()),
                "KmsMasterKeyId" => self.kms_master_key_id = Some(value.clone()).filter(|v| !v.is_empty()),
                "SqsManagedSseEnabled" => {
                    self.sqs_managed_sse_enabled = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(Error::InvalidAttributeValue(
                                "Invalid value for the parameter SqsManagedSseEnabled.".into(),
                            ));
                        }
                    }
                }
                "FifoQueue" if value == "false" => {}
                "FifoQueue" | "ContentBasedDeduplication" | "DeduplicationScope" | "FifoThroughputLimit" => {
                    return Err(Error::UnsupportedOperation(format!(
                        "FIFO queues are not supported by Nimbus yet (attribute {name}); use a standard queue."
                    )));
                }
                _ => return Err(Error::InvalidAttributeName(format!("Unknown Attribute {name}."))),
            }
        }
        Ok(())
    }

    /// The settable attributes as SQS spells them (only those that have a value).
    pub(crate) fn render(&self, out: &mut BTreeMap<String, String>) {
        let mut put = |k: &str, v: String| {
            out.insert(k.to_string(), v);
        };
        put("VisibilityTimeout", self.visibility_timeout.to_string());
        put("MessageRetentionPeriod", self.message_retention_period.to_string());
        put("DelaySeconds", self.delay_seconds.to_string());
        put("ReceiveMessageWaitTimeSeconds", self.receive_message_wait_time_seconds.to_string());
        put("MaximumMessageSize", self.maximum_message_size.to_string());
        put("SqsManagedSseEnabled", self.sqs_managed_sse_enabled.to_string());
        if let Some(r) = &self.redrive_policy {
            put("RedrivePolicy", r.to_json());
        }
        if let Some(p) = &self.redrive_allow_policy {
            put("RedriveAllowPolicy", p.clone());
        }
        if let Some(p) = &self.policy {
            put("Policy", p.clone());
        }
        if let Some(k) = &self.kms_master_key_id {
            put("KmsMasterKeyId", k.clone());
            put("KmsDataKeyReusePeriodSeconds", self.kms_data_key_reuse_period_seconds.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn limits_and_names_are_enforced() {
        let mut a = QueueAttributes::default();
        a.apply(&attrs(&[("VisibilityTimeout", "5"), ("DelaySeconds", "900")])).unwrap();
        assert_eq!((a.visibility_timeout, a.delay_seconds), (5, 900));
        assert!(matches!(a.apply(&attrs(&[("DelaySeconds", "901")])), Err(Error::InvalidAttributeValue(_))));
        assert!(matches!(a.apply(&attrs(&[("Bogus", "1")])), Err(Error::InvalidAttributeName(_))));
        assert!(matches!(a.apply(&attrs(&[("FifoQueue", "true")])), Err(Error::UnsupportedOperation(_))));
    }

    #[test]
    fn redrive_policy_parses_both_count_spellings() {
        let p = RedrivePolicy::parse(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:dlq","maxReceiveCount":"3"}"#,
        )
        .unwrap();
        assert_eq!(p.max_receive_count, 3);
        assert_eq!(RedrivePolicy::parse(&p.to_json()).unwrap(), p);
        assert!(RedrivePolicy::parse(r#"{"deadLetterTargetArn":"x","maxReceiveCount":3}"#).is_err());
        assert!(
            RedrivePolicy::parse(r#"{"deadLetterTargetArn":"arn:aws:sqs:r:1:d","maxReceiveCount":0}"#)
                .is_err()
        );
    }
}
