//! Triggers: what turns outside events into function invocations. Today the event source
//! mappings SQS → Lambda: durable mapping configurations and one poller per enabled
//! mapping that long-polls its queue, invokes the function with Lambda's SQS event
//! (the functions engine owns concurrency), deletes what succeeded and leaves failures
//! to the queue's visibility timeout and redrive policy.
#![forbid(unsafe_code)]

mod event;
mod mappings;
mod poller;

pub use event::sqs_event;
pub use mappings::{CreateMapping, EventSourceMapping, MappingPage, Triggers, UpdateMapping};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Functions(#[from] nimbus_functions::Error),
    #[error("store: {0}")]
    Store(#[from] nimbus_store::StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}
