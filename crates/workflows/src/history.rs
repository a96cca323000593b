//! Execution history events, named and shaped as GetExecutionHistory returns them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One history event. `details` is the body of AWS's `<kind>EventDetails` member
/// (`details_key` names it), so `to_aws_json` is a direct rendering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub id: u64,
    pub previous_event_id: u64,
    #[serde(with = "crate::timestamp")]
    pub timestamp: DateTime<Utc>,
    /// AWS's event type, e.g. `TaskStateEntered`, `LambdaFunctionScheduled`.
    pub event_type: String,
    /// E.g. `stateEnteredEventDetails`; `None` for events without details.
    pub details_key: Option<String>,
    pub details: Value,
}

impl HistoryEvent {
    /// The event as one entry of GetExecutionHistory's `events` array.
    pub fn to_aws_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            "timestamp".into(),
            Value::String(self.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        m.insert("type".into(), Value::String(self.event_type.clone()));
        m.insert("id".into(), json!(self.id));
        m.insert("previousEventId".into(), json!(self.previous_event_id));
        if let Some(key) = &self.details_key {
            m.insert(key.clone(), self.details.clone());
        }
        Value::Object(m)
    }
}

/// How AWS names task events for a resource: Lambda function ARNs and activities have
/// their own families; everything else (service integrations) is `Task*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskFamily {
    Lambda,
    Activity,
    Service,
}

impl TaskFamily {
    pub(crate) fn of(resource: &str) -> TaskFamily {
        let parts: Vec<&str> = resource.splitn(7, ':').collect();
        match parts.as_slice() {
            ["arn", _, "lambda", _, _, "function", ..] => TaskFamily::Lambda,
            ["arn", _, "states", _, _, "activity", ..] => TaskFamily::Activity,
            _ => TaskFamily::Service,
        }
    }

    /// Event type and details key for a task event `what` (Scheduled, Started,
    /// Succeeded, Failed, TimedOut).
    pub(crate) fn names(self, what: &str) -> (String, String) {
        let (prefix, key) = match self {
            TaskFamily::Lambda => ("LambdaFunction", "lambdaFunction"),
            TaskFamily::Activity => ("Activity", "activity"),
            TaskFamily::Service => ("Task", "task"),
        };
        (format!("{prefix}{what}"), format!("{key}{what}EventDetails"))
    }
}

/// Splits a service-integration ARN into AWS's `resourceType` and `resource`
/// (`arn:aws:states:::sqs:sendMessage` → `sqs`, `sendMessage`;
/// `arn:aws:states:::aws-sdk:s3:listBuckets` → `aws-sdk:s3`, `listBuckets`).
pub(crate) fn resource_parts(resource: &str) -> (String, String) {
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    if let ["arn", _, "states", _, _, rest] = parts.as_slice() {
        if let Some(sdk) = rest.strip_prefix("aws-sdk:")
            && let Some((service, action)) = sdk.split_once(':')
        {
            return (format!("aws-sdk:{service}"), action.to_string());
        }
        if let Some((ty, action)) = rest.split_once(':') {
            return (ty.to_string(), action.to_string());
        }
    }
    (String::new(), resource.to_string())
}

pub(crate) fn payload(v: &Value) -> Value {
    // AWS gives inputs and outputs as JSON text, with a truncation flag.
    Value::String(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_parts() {
        assert_eq!(TaskFamily::of("arn:aws:lambda:us-east-1:1:function:f"), TaskFamily::Lambda);
        assert_eq!(TaskFamily::of("arn:aws:states:us-east-1:1:activity:a"), TaskFamily::Activity);
        assert_eq!(TaskFamily::of("arn:aws:states:::lambda:invoke"), TaskFamily::Service);
        assert_eq!(TaskFamily::Lambda.names("Scheduled").0, "LambdaFunctionScheduled");
        assert_eq!(TaskFamily::Service.names("Succeeded").1, "taskSucceededEventDetails");
        assert_eq!(resource_parts("arn:aws:states:::lambda:invoke"), ("lambda".into(), "invoke".into()));
        assert_eq!(
            resource_parts("arn:aws:states:::aws-sdk:s3:listBuckets"),
            ("aws-sdk:s3".into(), "listBuckets".into())
        );
    }
}
