//! Usage reporting: every invocation's REPORT figures go to a `UsageSink` the binary wires
//! (usage accounting for the cost advisor). The engine knows nothing of what is done with them.
use crate::FunctionsEngine;
use nimbus_model::FunctionConfig;
use std::sync::Arc;
use std::time::Duration;

/// One invocation as its REPORT line describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationUsage {
    /// Unqualified function ARN.
    pub function_arn: String,
    pub function_name: String,
    pub account: String,
    pub region: String,
    /// `$LATEST` or the version number.
    pub version: String,
    pub memory_mb: u32,
    /// `x86_64` or `arm64`.
    pub architecture: String,
    pub duration_ms: f64,
    /// Billed Duration: the duration rounded up to 1 ms, at least 1 ms.
    pub billed_ms: u64,
    /// Init Duration of a cold start.
    pub init_ms: Option<f64>,
    pub cold: bool,
    /// The invocation failed (function error, timeout, runtime exit, init failure).
    pub error: bool,
    /// When the invocation ended (epoch ms).
    pub ended_at_ms: u64,
}

/// Receives each invocation's usage. Called on the invoke path: must not block.
pub trait UsageSink: Send + Sync {
    fn invocation(&self, usage: InvocationUsage);
}

/// Lambda bills the duration rounded up to the next millisecond, at least 1 ms (the same
/// figure the REPORT line prints).
pub(crate) fn billed_ms(duration: Duration) -> u64 {
    ((duration.as_secs_f64() * 1000.0).ceil() as u64).max(1)
}

impl FunctionsEngine {
    /// Wires usage accounting (called once by the binary, before traffic).
    pub fn set_usage_sink(&self, sink: Arc<dyn UsageSink>) {
        let _ = self.usage.set(sink);
    }

    /// Reports one invocation to the usage sink, if one is wired.
    pub(crate) fn report_usage(
        &self,
        config: &FunctionConfig,
        duration: Duration,
        init: Option<Duration>,
        error: bool,
    ) {
        let Some(sink) = self.usage.get() else { return };
        sink.invocation(InvocationUsage {
            function_arn: config.arn(),
            function_name: config.name.clone(),
            account: config.account.clone(),
            region: config.region.clone(),
            version: config.version.clone(),
            memory_mb: config.memory_mb,
            architecture: config.architectures.first().cloned().unwrap_or_else(|| "x86_64".into()),
            duration_ms: duration.as_secs_f64() * 1000.0,
            billed_ms: billed_ms(duration),
            init_ms: init.map(|d| d.as_secs_f64() * 1000.0),
            cold: init.is_some(),
            error,
            ended_at_ms: chrono::Utc::now().timestamp_millis().max(0) as u64,
        });
    }
}
