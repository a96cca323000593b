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

/// Where EventBridge delivers: Lambda functions get an asynchronous invoke (as on AWS),
/// SQS queues a message, state machines start an execution, ECS clusters run tasks (see
/// `ecs_tasks`); other services' ARNs get a clear delivery error until they exist.
pub struct EventTargets {
    pub functions: Arc<nimbus_functions::FunctionsEngine>,
    pub queues: Arc<QueuesEngine>,
    pub stepfunctions: Arc<nimbus_stepfunctions::StepFunctionsEngine>,
    pub ecs: Arc<crate::ecs_tasks::EcsHandle>,
}

impl nimbus_eventbridge::TargetInvoker for EventTargets {
    fn run_ecs_task<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        launch: nimbus_eventbridge::EcsLaunch,
    ) -> nimbus_eventbridge::BoxFuture<'a, Result<(), String>> {
        Box::pin(crate::ecs_tasks::run_for_rule(&self.ecs, account, region, launch))
    }

    fn deliver<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        target_arn: &'a str,
        input: String,
    ) -> nimbus_eventbridge::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match target_arn.split(':').nth(2).unwrap_or_default() {
                "lambda" => {
                    let req = nimbus_functions::InvokeRequest {
                        scope: nimbus_model::Scope { account: account.into(), region: region.into() },
                        request_id: uuid::Uuid::new_v4().to_string(),
                        function: target_arn.to_string(),
                        qualifier: None,
                        payload: bytes::Bytes::from(input),
                        invocation_type: nimbus_functions::InvocationType::Event,
                        tail_log: false,
                        client_context: None,
                    };
                    self.functions.invoke(req).await.map(|_| ()).map_err(|e| e.to_string())
                }
                "sqs" => self
                    .queues
                    .send_message_by_arn(target_arn, SendMessage { body: input, ..Default::default() })
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "states" => self
                    .stepfunctions
                    .start_execution(nimbus_stepfunctions::StartExecution {
                        state_machine_arn: target_arn.to_string(),
                        name: None,
                        input: Some(input),
                    })
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                other => {
                    Err(format!("{other} targets are not supported by this Nimbus build ({target_arn})"))
                }
            }
        })
    }
}
