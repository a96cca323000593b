//! What the platform reports (records), what a time bucket accumulates (aggregates) and
//! what a query over a window answers (the report).
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One finished Lambda invocation, as its REPORT line describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Unqualified function ARN (versions of a function are one workload).
    pub function_arn: String,
    pub function_name: String,
    pub account: String,
    pub region: String,
    pub memory_mb: u32,
    /// `x86_64` or `arm64`.
    pub architecture: String,
    /// Billed duration (1 ms units, at least 1).
    pub billed_ms: u64,
    pub duration_ms: f64,
    /// Init Duration of a cold start.
    pub init_ms: Option<f64>,
    pub cold: bool,
    pub error: bool,
    /// When the invocation ended (epoch ms).
    pub at_ms: u64,
}

/// A period of one ECS task's life, reported by the containers engine (periodically and
/// when the task stops): reservations, how long it ran in the period, what it measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskUsageRecord {
    pub cluster: String,
    /// The service that started the task (`None` for RunTask).
    pub service: Option<String>,
    pub task_arn: String,
    /// Task definition family.
    pub family: String,
    /// `FARGATE`, `EC2` or `EXTERNAL`.
    pub launch_type: String,
    /// Reserved CPU units (1024 = 1 vCPU).
    pub cpu_units: u32,
    /// Reserved memory (MiB).
    pub memory_mb: u64,
    /// `x86_64` or `arm64` (task definition runtimePlatform).
    #[serde(default)]
    pub architecture: String,
    /// GPUs the task definition requires.
    #[serde(default)]
    pub gpu: u32,
    /// Milliseconds the task ran during this period.
    pub running_ms: u64,
    /// CPU time the task used during this period (cgroup cpuacct).
    pub cpu_ms: u64,
    /// Peak memory seen so far (bytes).
    pub peak_memory_bytes: u64,
    /// End of the period (epoch ms).
    pub at_ms: u64,
}

/// One minute's (or, after roll-up, one hour's) usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionAgg>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceAgg>,
    #[serde(default)]
    pub routes: BTreeMap<String, RouteAgg>,
    /// Hour buckets: the minute buckets already folded in (so a roll-up interrupted
    /// between writing the hour and deleting the minutes does not count them twice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absorbed: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionAgg {
    pub function_arn: String,
    pub function_name: String,
    pub account: String,
    pub region: String,
    /// Memory size of the latest invocation.
    pub memory_mb: u32,
    pub architecture: String,
    pub invocations: u64,
    pub errors: u64,
    pub billed_ms: u64,
    /// Σ billed_ms × memory_mb: GB-seconds exactly, whatever the memory size was.
    pub mb_ms: u64,
    pub duration_ms: f64,
    pub max_duration_ms: f64,
    pub max_memory_mb: u32,
    pub cold_starts: u64,
    pub init_ms: f64,
    /// Time with at least one invocation in flight.
    pub busy_ms: f64,
    pub peak_concurrency: u32,
    pub first_ms: u64,
    pub last_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceAgg {
    pub cluster: String,
    pub service: Option<String>,
    pub family: String,
    pub launch_type: String,
    pub cpu_units: u32,
    pub memory_mb: u64,
    pub architecture: String,
    pub gpu: u32,
    pub running_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory_bytes: u64,
    /// Distinct tasks that reported in the bucket (an upper bound of tasks running at once).
    pub peak_tasks: u32,
    pub tasks: Vec<String>,
    /// Longest run of one task seen so far.
    pub longest_task_ms: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteAgg {
    pub api_id: String,
    pub route_key: String,
    pub requests: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

fn span(first: &mut u64, last: &mut u64, o_first: u64, o_last: u64) {
    if *first == 0 || (o_first != 0 && o_first < *first) {
        *first = o_first;
    }
    *last = (*last).max(o_last);
}

impl FunctionAgg {
    pub fn merge(&mut self, o: &FunctionAgg) {
        if o.last_ms >= self.last_ms || self.function_arn.is_empty() {
            self.function_arn = o.function_arn.clone();
            self.function_name = o.function_name.clone();
            self.account = o.account.clone();
            self.region = o.region.clone();
            self.memory_mb = o.memory_mb;
            self.architecture = o.architecture.clone();
        }
        self.invocations += o.invocations;
        self.errors += o.errors;
        self.billed_ms += o.billed_ms;
        self.mb_ms += o.mb_ms;
        self.duration_ms += o.duration_ms;
        self.max_duration_ms = self.max_duration_ms.max(o.max_duration_ms);
        self.max_memory_mb = self.max_memory_mb.max(o.max_memory_mb);
        self.cold_starts += o.cold_starts;
        self.init_ms += o.init_ms;
        self.busy_ms += o.busy_ms;
        self.peak_concurrency = self.peak_concurrency.max(o.peak_concurrency);
        span(&mut self.first_ms, &mut self.last_ms, o.first_ms, o.last_ms);
    }
}

/// Distinct task ARNs kept per bucket; beyond this only the count is approximate.
const MAX_TASKS_LISTED: usize = 256;

impl ServiceAgg {
    /// Merges another bucket's aggregate. `same_period`: both describe the same minute
    /// (task sets union and the distinct count is the peak), else peaks take the max.
    pub fn merge(&mut self, o: &ServiceAgg, same_period: bool) {
        if o.last_ms >= self.last_ms || self.cluster.is_empty() {
            self.cluster = o.cluster.clone();
            self.service = o.service.clone();
            self.family = o.family.clone();
            self.launch_type = o.launch_type.clone();
            self.cpu_units = o.cpu_units;
            self.memory_mb = o.memory_mb;
            self.architecture = o.architecture.clone();
            self.gpu = o.gpu;
        }
        self.running_ms += o.running_ms;
        self.cpu_ms += o.cpu_ms;
        self.peak_memory_bytes = self.peak_memory_bytes.max(o.peak_memory_bytes);
        self.longest_task_ms = self.longest_task_ms.max(o.longest_task_ms);
        for t in &o.tasks {
            if !self.tasks.contains(t) && self.tasks.len() < MAX_TASKS_LISTED {
                self.tasks.push(t.clone());
            }
        }
        if same_period {
            self.peak_tasks = self.peak_tasks.max(self.tasks.len() as u32).max(o.peak_tasks);
        } else {
            self.peak_tasks = self.peak_tasks.max(o.peak_tasks);
        }
        span(&mut self.first_ms, &mut self.last_ms, o.first_ms, o.last_ms);
    }
}

impl RouteAgg {
    pub fn merge(&mut self, o: &RouteAgg) {
        if self.api_id.is_empty() {
            self.api_id = o.api_id.clone();
            self.route_key = o.route_key.clone();
        }
        self.requests += o.requests;
        span(&mut self.first_ms, &mut self.last_ms, o.first_ms, o.last_ms);
    }
}

impl Bucket {
    /// Adds `o` into `self`; `same_period` as for [`ServiceAgg::merge`].
    pub fn merge(&mut self, o: &Bucket, same_period: bool) {
        for (k, v) in &o.functions {
            self.functions.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &o.services {
            self.services.entry(k.clone()).or_default().merge(v, same_period);
        }
        for (k, v) in &o.routes {
            self.routes.entry(k.clone()).or_default().merge(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty() && self.services.is_empty() && self.routes.is_empty()
    }
}

/// Usage over a window, with the derived figures the advisor needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    pub from_ms: u64,
    pub to_ms: u64,
    /// The window the figures cover (`to_ms - from_ms`, at least a minute).
    pub window_ms: u64,
    pub functions: Vec<FunctionUsage>,
    pub services: Vec<ServiceUsage>,
    pub routes: Vec<RouteUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionUsage {
    pub function_arn: String,
    pub function_name: String,
    pub account: String,
    pub region: String,
    pub memory_mb: u32,
    pub architecture: String,
    pub invocations: u64,
    pub errors: u64,
    pub billed_ms: u64,
    pub gb_seconds: f64,
    pub duration_ms: f64,
    pub max_duration_ms: f64,
    pub max_memory_mb: u32,
    pub cold_starts: u64,
    pub init_ms: f64,
    pub busy_ms: f64,
    pub idle_ms: f64,
    /// Share of the window with nothing in flight (0–1).
    pub idle_fraction: f64,
    pub peak_concurrency: u32,
    /// Σ duration / window.
    pub avg_concurrency: f64,
    pub first_ms: u64,
    pub last_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceUsage {
    /// `cluster/service` or, for tasks outside a service, `cluster/family`.
    pub name: String,
    pub cluster: String,
    pub service: Option<String>,
    pub family: String,
    pub launch_type: String,
    pub architecture: String,
    /// Reserved per task.
    pub vcpu: f64,
    pub memory_mb: u64,
    pub gpu: u32,
    pub running_ms: u64,
    pub task_seconds: f64,
    pub cpu_seconds: f64,
    /// Measured CPU over reserved CPU while running (0–1+).
    pub cpu_utilization: f64,
    pub peak_memory_bytes: u64,
    pub peak_tasks: u32,
    /// Task-seconds / window.
    pub avg_tasks: f64,
    pub tasks_seen: u32,
    pub longest_task_ms: u64,
    /// Requests the gateway routed to it (when known).
    pub requests: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteUsage {
    pub api_id: String,
    pub route_key: String,
    pub requests: u64,
}

impl UsageReport {
    /// Credits each route's requests to the services behind it (see
    /// [`crate::RequestRouting`]). A route whose target group several services register in
    /// has its requests split evenly between them (the remainder to the first by name), so
    /// the services' counts still add up to the API's. Replaces earlier figures.
    pub fn attach_requests(&mut self, routing: &dyn crate::RequestRouting) {
        let mut credited: BTreeMap<String, u64> = BTreeMap::new();
        for r in &self.routes {
            let mut behind = routing.services_behind(&r.api_id, &r.route_key);
            behind.sort();
            behind.dedup();
            let n = behind.len() as u64;
            for (i, name) in behind.into_iter().enumerate() {
                let share = r.requests / n + u64::from(i == 0) * (r.requests % n);
                *credited.entry(name).or_default() += share;
            }
        }
        for s in &mut self.services {
            s.requests = credited.get(&s.name).copied().unwrap_or(0);
        }
    }
}

/// Minimum window a report covers, so a burst seconds old is not projected as if it
/// repeated thousands of times an hour.
pub const MIN_WINDOW_MS: u64 = 60_000;

impl UsageReport {
    /// Derives the report of a merged bucket over `[from_ms, to_ms)`.
    pub fn from_bucket(b: &Bucket, from_ms: u64, to_ms: u64) -> UsageReport {
        let window_ms = to_ms.saturating_sub(from_ms).max(MIN_WINDOW_MS);
        let w = window_ms as f64;
        let functions = b
            .functions
            .values()
            .map(|f| {
                let busy = f.busy_ms.min(w);
                FunctionUsage {
                    function_arn: f.function_arn.clone(),
                    function_name: f.function_name.clone(),
                    account: f.account.clone(),
                    region: f.region.clone(),
                    memory_mb: f.memory_mb,
                    architecture: f.architecture.clone(),
                    invocations: f.invocations,
                    errors: f.errors,
                    billed_ms: f.billed_ms,
                    gb_seconds: f.mb_ms as f64 / 1024.0 / 1000.0,
                    duration_ms: f.duration_ms,
                    max_duration_ms: f.max_duration_ms,
                    max_memory_mb: f.max_memory_mb,
                    cold_starts: f.cold_starts,
                    init_ms: f.init_ms,
                    busy_ms: busy,
                    idle_ms: w - busy,
                    idle_fraction: (w - busy) / w,
                    peak_concurrency: f.peak_concurrency,
                    avg_concurrency: f.duration_ms / w,
                    first_ms: f.first_ms,
                    last_ms: f.last_ms,
                }
            })
            .collect();
        let services = b
            .services
            .iter()
            .map(|(k, s)| {
                let vcpu = s.cpu_units as f64 / 1024.0;
                let running_s = s.running_ms as f64 / 1000.0;
                let cpu_s = s.cpu_ms as f64 / 1000.0;
                ServiceUsage {
                    name: k.clone(),
                    cluster: s.cluster.clone(),
                    service: s.service.clone(),
                    family: s.family.clone(),
                    launch_type: s.launch_type.clone(),
                    architecture: s.architecture.clone(),
                    vcpu,
                    memory_mb: s.memory_mb,
                    gpu: s.gpu,
                    running_ms: s.running_ms,
                    task_seconds: running_s,
                    cpu_seconds: cpu_s,
                    cpu_utilization: if running_s > 0.0 && vcpu > 0.0 {
                        cpu_s / (running_s * vcpu)
                    } else {
                        0.0
                    },
                    peak_memory_bytes: s.peak_memory_bytes,
                    peak_tasks: s.peak_tasks,
                    avg_tasks: s.running_ms as f64 / w,
                    tasks_seen: s.tasks.len() as u32,
                    longest_task_ms: s.longest_task_ms,
                    requests: 0,
                    first_ms: s.first_ms,
                    last_ms: s.last_ms,
                }
            })
            .collect();
        let routes = b
            .routes
            .values()
            .map(|r| RouteUsage {
                api_id: r.api_id.clone(),
                route_key: r.route_key.clone(),
                requests: r.requests,
            })
            .collect();
        UsageReport { from_ms, to_ms, window_ms, functions, services, routes }
    }
}
