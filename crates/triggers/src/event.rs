//! Lambda's SQS event: the batch of messages a function receives from a mapping.
use base64::Engine as _;
use nimbus_queues::ReceivedMessage;
use serde_json::{Map, Value, json};

/// `{"Records": [...]}` with one record per message, as Lambda builds it.
pub fn sqs_event(queue_arn: &str, region: &str, messages: &[ReceivedMessage]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: Map<String, Value> = m
                .system_attributes()
                .into_iter()
                .filter(|(k, _)| *k != "DeadLetterQueueSourceArn")
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            let message_attributes: Map<String, Value> = m
                .message_attributes
                .iter()
                .map(|(k, v)| {
                    let mut a = Map::new();
                    if let Some(s) = &v.string_value {
                        a.insert("stringValue".into(), json!(s));
                    }
                    if let Some(b) = &v.binary_value {
                        a.insert(
                            "binaryValue".into(),
                            json!(base64::engine::general_purpose::STANDARD.encode(b)),
                        );
                    }
                    a.insert("stringListValues".into(), json!([]));
                    a.insert("binaryListValues".into(), json!([]));
                    a.insert("dataType".into(), json!(v.data_type));
                    (k.clone(), Value::Object(a))
                })
                .collect();
            let mut r = Map::new();
            r.insert("messageId".into(), json!(m.message_id));
            r.insert("receiptHandle".into(), json!(m.receipt_handle));
            r.insert("body".into(), json!(m.body));
            r.insert("attributes".into(), Value::Object(attributes));
            r.insert("messageAttributes".into(), Value::Object(message_attributes));
            r.insert("md5OfBody".into(), json!(m.md5_of_body));
            if let Some(md5) = &m.md5_of_message_attributes {
                r.insert("md5OfMessageAttributes".into(), json!(md5));
            }
            r.insert("eventSource".into(), json!("aws:sqs"));
            r.insert("eventSourceARN".into(), json!(queue_arn));
            r.insert("awsRegion".into(), json!(region));
            Value::Object(r)
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_queues::MessageAttributeValue;

    #[test]
    fn records_have_lambdas_shape() {
        let m = ReceivedMessage {
            message_id: "id-1".into(),
            receipt_handle: "rh".into(),
            body: "hi".into(),
            md5_of_body: "49f68a5c8493ec2c0bf489821c21fc3b".into(),
            md5_of_message_attributes: Some("x".into()),
            message_attributes: [("k".to_string(), MessageAttributeValue::string("v"))].into(),
            sent_timestamp_ms: 5,
            approximate_receive_count: 1,
            approximate_first_receive_timestamp_ms: 6,
            sender_id: "000000000000".into(),
            aws_trace_header: None,
            dead_letter_queue_source_arn: None,
        };
        let e = sqs_event("arn:aws:sqs:us-east-1:000000000000:q", "us-east-1", &[m]);
        let r = &e["Records"][0];
        assert_eq!(r["messageId"], "id-1");
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(r["eventSourceARN"], "arn:aws:sqs:us-east-1:000000000000:q");
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
        assert_eq!(r["attributes"]["SentTimestamp"], "5");
        assert_eq!(r["messageAttributes"]["k"]["stringValue"], "v");
        assert_eq!(r["messageAttributes"]["k"]["dataType"], "String");
        assert_eq!(r["md5OfMessageAttributes"], "x");
    }
}
