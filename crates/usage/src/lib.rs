//! Usage accounting (per function, service and task, in durable time buckets), the price table as data, and the cost-and-fit advisor that projects measured usage onto Lambda, Fargate and EC2.
#![forbid(unsafe_code)]

pub mod advisor;
pub mod prices;
mod record;
mod recorder;

pub use advisor::{
    Advice, AdviseOptions, ComputeOption, Profile, WorkloadAdvice, advise, parse_scale, parse_window,
};
pub use prices::{DEFAULT_PRICES_JSON, PriceTable};
pub use record::{
    Bucket, FunctionUsage, InvocationRecord, RouteUsage, ServiceUsage, TaskUsageRecord, UsageReport,
};
pub use recorder::Recorder;

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("store: {0}")]
    Store(#[from] nimbus_store::StoreError),
    #[error("stored usage is corrupt: {0}")]
    Corrupt(String),
    #[error("price table {0}")]
    Prices(String),
    #[error("{0}")]
    InvalidOption(String),
}

/// Which services a gateway route sends its requests to, so a service's usage can carry the
/// request count of the API fronting it. The binary implements it by joining the gateway's
/// routes → `HTTP_PROXY` integrations → ELBv2 target groups → the ECS services registered in
/// them (the crates that know those shapes stay out of this one).
pub trait RequestRouting: Send + Sync {
    /// Usage names (`cluster/service`, as in [`ServiceUsage::name`]) of the services behind
    /// `route_key` of `api_id`, as the API is configured now. Empty when it fronts none.
    fn services_behind(&self, api_id: &str, route_key: &str) -> Vec<String>;
}

/// What the HTTP layer serves: the recorder, the prices it projects with, and (once the
/// engines exist) the gateway → service join.
#[derive(Clone)]
pub struct Accounting {
    pub recorder: Recorder,
    pub prices: std::sync::Arc<PriceTable>,
    /// Set once at start-up, after the gateway and ECS engines are open.
    pub routing: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<dyn RequestRouting>>>,
}

impl Accounting {
    pub fn new(recorder: Recorder, prices: std::sync::Arc<PriceTable>) -> Accounting {
        Accounting { recorder, prices, routing: Default::default() }
    }

    /// Installs the gateway → service join (the first call wins).
    pub fn set_routing(&self, routing: std::sync::Arc<dyn RequestRouting>) {
        let _ = self.routing.set(routing);
    }

    /// Usage over `[from_ms, to_ms)`, with each gateway route's requests credited to the
    /// services behind it.
    pub fn report(&self, from_ms: u64, to_ms: u64) -> Result<UsageReport, UsageError> {
        let mut report = self.recorder.usage(from_ms, to_ms)?;
        if let Some(routing) = self.routing.get() {
            report.attach_requests(routing.as_ref());
        }
        Ok(report)
    }
}
