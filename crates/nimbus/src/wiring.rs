//! Adapters that connect engines without making them depend on each other.
use nimbus_functions::{DestinationSink, SinkAttribute};
use nimbus_queues::{MessageAttributeValue, QueueRef, QueuesEngine, SendMessage};
use std::sync::Arc;

/// Lambda destinations and dead-letter queues deliver through the SQS engine.
pub struct QueueSink(pub Arc<QueuesEngine>);

impl DestinationSink for QueueSink {
    fn queue_exists(&self, queue_arn: &str) -> bool {
        QueueRef::from_arn(queue_arn).is_some_and(|r| self.0.queue_exists(&r))
    }

    fn send(
        &self,
        queue_arn: &str,
        body: String,
        attributes: Vec<(String, SinkAttribute)>,
    ) -> Result<(), String> {
        let message_attributes = attributes
            .into_iter()
            .map(|(k, a)| {
                let v = MessageAttributeValue {
                    data_type: a.data_type.to_string(),
                    string_value: Some(a.value),
                    binary_value: None,
                };
                (k, v)
            })
            .collect();
        self.0
            .send_message_by_arn(queue_arn, SendMessage { body, message_attributes, ..Default::default() })
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
