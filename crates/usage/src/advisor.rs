//! The advisor: pure functions from measured usage and a price table to monthly
//! projections on Lambda, Fargate and EC2, break-even traffic, and a recommendation with
//! its reasons. No I/O, no clock: every figure can be recomputed by hand.
use crate::UsageError;
use crate::prices::{Ec2InstanceType, FargateRate, PriceTable};
use crate::record::{FunctionUsage, ServiceUsage, UsageReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Lambda's hard limits (AWS quotas that cannot be raised).
pub const LAMBDA_MAX_RUNTIME_MS: f64 = 900_000.0;
pub const LAMBDA_MAX_MEMORY_MB: f64 = 10_240.0;
pub const LAMBDA_MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Lambda gives a function one full vCPU at 1,769 MB; CPU scales with memory.
pub const LAMBDA_MB_PER_VCPU: f64 = 1769.0;
/// Largest Fargate task.
pub const FARGATE_MAX_VCPU: f64 = 16.0;
pub const FARGATE_MAX_GB: f64 = 120.0;
/// Hours a business-hours workload runs: 10 h × 22 working days.
pub const BUSINESS_HOURS_PER_MONTH: f64 = 220.0;
/// EC2 must beat Fargate by more than this share to be recommended over it: below that
/// the saving does not pay for managing instances.
pub const EC2_MIN_SAVING: f64 = 0.25;

/// How the same monthly volume is spread over time (what containers must be sized for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// As measured: peak concurrency scaled with the traffic.
    #[default]
    Measured,
    /// Evenly spread: containers sized for the average concurrency.
    Steady,
    /// Bursts: containers sized for ten times the average (or the measured peak).
    Spiky,
    /// All traffic within 220 h a month; containers are scheduled off outside them.
    BusinessHours,
}

impl std::str::FromStr for Profile {
    type Err = UsageError;
    fn from_str(s: &str) -> Result<Profile, UsageError> {
        match s.to_ascii_lowercase().as_str() {
            "" | "measured" => Ok(Profile::Measured),
            "steady" => Ok(Profile::Steady),
            "spiky" => Ok(Profile::Spiky),
            "business-hours" | "business_hours" | "businesshours" => Ok(Profile::BusinessHours),
            other => Err(UsageError::InvalidOption(format!(
                "unknown profile {other:?} (expected measured, steady, spiky or business-hours)"
            ))),
        }
    }
}

impl Profile {
    pub fn as_str(&self) -> &'static str {
        match self {
            Profile::Measured => "measured",
            Profile::Steady => "steady",
            Profile::Spiky => "spiky",
            Profile::BusinessHours => "business-hours",
        }
    }
}

/// Parses a what-if scale: `10x`, `10`, `0.5x`, `x3`.
pub fn parse_scale(s: &str) -> Result<f64, UsageError> {
    let t = s.trim().trim_end_matches(['x', 'X']).trim_start_matches(['x', 'X']);
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(UsageError::InvalidOption(format!("invalid scale {s:?} (expected e.g. 10x or 0.5x)"))),
    }
}

/// Parses a window: `all` (None), or a number with a unit: `90s`, `30m`, `1h`, `24h`, `7d`.
pub fn parse_window(s: &str) -> Result<Option<u64>, UsageError> {
    let t = s.trim().to_ascii_lowercase();
    if t == "all" || t.is_empty() {
        return Ok(None);
    }
    let bad = || {
        UsageError::InvalidOption(format!("invalid window {s:?} (expected all, or e.g. 30m, 1h, 24h, 7d)"))
    };
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "s" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        "w" => 604_800_000.0,
        _ => return Err(bad()),
    };
    if !(n > 0.0 && n.is_finite()) {
        return Err(bad());
    }
    Ok(Some((n * ms) as u64))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdviseOptions {
    pub scale: f64,
    pub profile: Profile,
    /// Subtract Lambda's monthly free tier.
    pub free_tier: bool,
    /// Workloads (function or service names) that hold long-lived connections.
    pub long_lived_connections: Vec<String>,
    /// Workloads that need a GPU.
    pub gpu: Vec<String>,
    /// Image sizes of workloads (bytes), where known.
    pub image_bytes: BTreeMap<String, u64>,
}

impl Default for AdviseOptions {
    fn default() -> AdviseOptions {
        AdviseOptions {
            scale: 1.0,
            profile: Profile::Measured,
            free_tier: false,
            long_lived_connections: Vec::new(),
            gpu: Vec::new(),
            image_bytes: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    pub window_ms: u64,
    pub scale: f64,
    pub profile: String,
    pub free_tier: bool,
    pub hours_per_month: f64,
    pub price_table: PriceTableRef,
    pub workloads: Vec<WorkloadAdvice>,
    pub apis: Vec<ApiAdvice>,
    /// Σ of each workload's recommended option, plus API Gateway.
    pub total_recommended_monthly_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTableRef {
    pub version: String,
    pub date: String,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadAdvice {
    /// `function`, `service` or `task` (tasks outside a service).
    pub kind: String,
    pub name: String,
    /// Function ARN, or `cluster/service`.
    pub id: String,
    /// What was measured in the window (unscaled).
    pub measured: Measured,
    /// The month projected from it (scaled, per profile).
    pub monthly: MonthlyUsage,
    /// Lambda, Fargate, EC2 — in that order.
    pub options: Vec<ComputeOption>,
    /// Invocations per month at which Lambda costs what the Fargate option costs.
    pub break_even_invocations_per_month: Option<f64>,
    /// `Lambda`, `Fargate`, `EC2`, or `none` when every option is ruled out.
    pub recommendation: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub invocations: u64,
    pub gb_seconds: f64,
    pub billed_ms: u64,
    pub memory_mb: u64,
    pub peak_concurrency: u32,
    pub avg_concurrency: f64,
    pub idle_fraction: f64,
    pub cold_starts: u64,
    pub task_seconds: f64,
    pub cpu_utilization: f64,
    pub peak_memory_mb: f64,
    pub peak_tasks: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonthlyUsage {
    pub invocations: f64,
    pub gb_seconds: f64,
    /// Concurrent executions (functions) or tasks (services) containers are sized for.
    pub sized_for: f64,
    /// Hours containers run in the month.
    pub container_hours: f64,
    pub task_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeOption {
    pub model: String,
    pub monthly_usd: f64,
    pub allowed: bool,
    pub ruled_out: Option<String>,
    /// What was priced, e.g. `2 × t3.micro` or `1 task × 0.25 vCPU / 0.5 GB`.
    pub config: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiAdvice {
    pub api_id: String,
    pub requests: u64,
    pub requests_per_month: f64,
    pub http_api_monthly_usd: f64,
    pub routes: Vec<RouteCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteCount {
    pub route_key: String,
    pub requests: u64,
}

/// A valid Fargate task size (and how many such tasks).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FargateSize {
    pub tasks: u32,
    pub vcpu: f64,
    pub memory_gb: f64,
}

/// Fargate's CPU/memory combinations: (vCPU, min GB, max GB, GB step).
const FARGATE_SIZES: &[(f64, f64, f64, f64)] = &[
    (0.25, 0.5, 2.0, 0.0), // 0.5, 1, 2
    (0.5, 1.0, 4.0, 1.0),
    (1.0, 2.0, 8.0, 1.0),
    (2.0, 4.0, 16.0, 1.0),
    (4.0, 8.0, 30.0, 1.0),
    (8.0, 16.0, 60.0, 4.0),
    (16.0, 32.0, 120.0, 8.0),
];

fn fit_one(vcpu: f64, gb: f64) -> Option<(f64, f64)> {
    for &(cpu, min, max, step) in FARGATE_SIZES {
        if cpu + 1e-9 < vcpu {
            continue;
        }
        let mem = if step == 0.0 {
            match [0.5, 1.0, 2.0].into_iter().find(|m| *m + 1e-9 >= gb) {
                Some(m) => m,
                None => continue,
            }
        } else {
            let m = gb.max(min);
            (((m - 1e-9) / step).ceil() * step).max(min)
        };
        if mem <= max + 1e-9 {
            return Some((cpu, mem));
        }
    }
    None
}

/// The smallest valid Fargate size holding `vcpu` and `gb` (at least 0.25 vCPU / 0.5 GB),
/// split over several equal tasks when one task cannot hold it.
pub fn fargate_size(vcpu: f64, gb: f64) -> FargateSize {
    let (vcpu, gb) = (vcpu.max(0.25), gb.max(0.5));
    let mut tasks = ((vcpu / FARGATE_MAX_VCPU).ceil().max((gb / FARGATE_MAX_GB).ceil())).max(1.0) as u32;
    loop {
        if let Some((cpu, mem)) = fit_one(vcpu / tasks as f64, gb / tasks as f64) {
            return FargateSize { tasks, vcpu: cpu, memory_gb: mem };
        }
        tasks += 1;
    }
}

/// Monthly Fargate cost of `task_count` tasks (fractional: per-second billing) of `size`
/// running `hours`.
pub fn fargate_monthly(size: &FargateSize, rate: &FargateRate, task_count: f64, hours: f64) -> f64 {
    task_count
        * size.tasks as f64
        * hours
        * (size.vcpu * rate.vcpu_hour.value + size.memory_gb * rate.gb_hour.value)
}

/// Lambda's monthly charge for `invocations` and `gb_seconds`.
pub fn lambda_monthly(
    prices: &PriceTable,
    architecture: &str,
    invocations: f64,
    gb_seconds: f64,
    free_tier: bool,
) -> f64 {
    let (free_req, free_gbs) = if free_tier {
        (prices.lambda.free_tier.requests.value, prices.lambda.free_tier.gb_seconds.value)
    } else {
        (0.0, 0.0)
    };
    (invocations - free_req).max(0.0) / 1e6 * prices.lambda.requests_per_million.value
        + (gb_seconds - free_gbs).max(0.0) * prices.lambda_gb_second(architecture)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ec2Fit {
    pub instance_type: String,
    pub count: u32,
    pub per_instance: u32,
    pub monthly_usd: f64,
}

/// Bin-packs `items` equal items of (`vcpu`, `gib`) onto each listed instance type and
/// returns the cheapest: equal items pack exactly as ⌊capacity / item⌋ per instance.
pub fn ec2_fit(types: &[Ec2InstanceType], vcpu: f64, gib: f64, items: u32, hours: f64) -> Option<Ec2Fit> {
    let items = items.max(1);
    let mut best: Option<Ec2Fit> = None;
    for t in types {
        let by_cpu = if vcpu > 0.0 { (t.vcpu / vcpu + 1e-9).floor() } else { f64::INFINITY };
        let by_mem = if gib > 0.0 { (t.memory_gib / gib + 1e-9).floor() } else { f64::INFINITY };
        let per = by_cpu.min(by_mem).min(u32::MAX as f64);
        if per < 1.0 {
            continue;
        }
        let per = per as u32;
        let count = items.div_ceil(per);
        let monthly = count as f64 * t.hourly.value * hours;
        let better = match &best {
            None => true,
            Some(b) => {
                monthly < b.monthly_usd - 1e-12 || (monthly - b.monthly_usd).abs() <= 1e-12 && count < b.count
            }
        };
        if better {
            best = Some(Ec2Fit {
                instance_type: t.instance_type.clone(),
                count,
                per_instance: per,
                monthly_usd: monthly,
            });
        }
    }
    best
}

/// Invocations per month at which Lambda's bill equals `target_usd`, with each
/// invocation costing `gb_seconds_per_invocation` (None if Lambda is free per invocation).
pub fn break_even_invocations(
    prices: &PriceTable,
    architecture: &str,
    gb_seconds_per_invocation: f64,
    target_usd: f64,
    free_tier: bool,
) -> Option<f64> {
    let cost = |n: f64| lambda_monthly(prices, architecture, n, n * gb_seconds_per_invocation, free_tier);
    let per = prices.lambda.requests_per_million.value / 1e6
        + gb_seconds_per_invocation * prices.lambda_gb_second(architecture);
    if per.is_nan() || per <= 0.0 || target_usd.is_nan() || target_usd < 0.0 {
        return None;
    }
    if !free_tier {
        return Some(target_usd / per);
    }
    // Piecewise linear and increasing: bisect.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while cost(hi) < target_usd {
        hi *= 2.0;
        if hi > 1e18 {
            return None;
        }
    }
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if cost(mid) < target_usd { lo = mid } else { hi = mid }
    }
    Some(hi)
}

fn month_factor(prices: &PriceTable, window_ms: u64) -> f64 {
    prices.hours_per_month * 3_600_000.0 / (window_ms.max(1) as f64)
}

fn container_hours(prices: &PriceTable, profile: Profile) -> f64 {
    match profile {
        Profile::BusinessHours => BUSINESS_HOURS_PER_MONTH.min(prices.hours_per_month),
        _ => prices.hours_per_month,
    }
}

fn usd(v: f64) -> String {
    if v >= 100.0 { format!("${v:.0}") } else { format!("${v:.2}") }
}

fn pct(v: f64) -> String {
    format!("{:.0} %", (v * 100.0).clamp(0.0, 100.0))
}

fn count(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1}B", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn gb_label(gb: f64) -> String {
    if (gb - gb.round()).abs() < 1e-9 { format!("{gb:.0} GB") } else { format!("{gb} GB") }
}

fn option(model: &str, monthly: f64, ruled_out: Option<String>, config: String) -> ComputeOption {
    ComputeOption {
        model: model.into(),
        monthly_usd: monthly,
        allowed: ruled_out.is_none(),
        ruled_out,
        config,
    }
}

/// The EC2 option: the cheapest bin-packed fit, or ruled out when no listed instance type
/// holds one `item`.
fn ec2_option(fit: Option<&Ec2Fit>, item: &str, config: impl FnOnce(&Ec2Fit) -> String) -> ComputeOption {
    match fit {
        Some(fit) => option("EC2", fit.monthly_usd, None, config(fit)),
        None => option("EC2", 0.0, Some(format!("no listed instance type fits one {item}")), String::new()),
    }
}

/// Lambda's hard limits common to functions and containers, checked in this order after
/// the workload-specific ones: memory (`shown_gb` is what the reason quotes), long-lived
/// connections, image size. `None`: Lambda can run it.
fn lambda_limits(
    memory_mb: f64,
    shown_gb: f64,
    long_lived: bool,
    image_name: &str,
    opts: &AdviseOptions,
) -> Option<String> {
    if memory_mb > LAMBDA_MAX_MEMORY_MB {
        Some(format!("needs {} memory (> 10 GB): not Lambda", gb_label(shown_gb)))
    } else if long_lived {
        Some("holds long-lived connections: not Lambda".into())
    } else if opts.image_bytes.get(image_name).is_some_and(|b| *b > LAMBDA_MAX_IMAGE_BYTES) {
        Some("image > 10 GB: not Lambda".into())
    } else {
        None
    }
}

/// Every option a hard limit ruled out gives its reason, in option order.
fn push_ruled_out(options: &[&ComputeOption], reasons: &mut Vec<String>) {
    reasons.extend(options.iter().filter_map(|o| o.ruled_out.clone()));
}

/// Picks the recommended option and says why, in plain words.
fn decide(
    options: &[ComputeOption],
    reasons: &mut Vec<String>,
    describe: &dyn Fn(&str, &str, f64) -> String,
) -> String {
    let allowed: Vec<&ComputeOption> = options.iter().filter(|o| o.allowed).collect();
    let Some(mut best) = allowed.iter().copied().min_by(|a, b| a.monthly_usd.total_cmp(&b.monthly_usd))
    else {
        reasons.push("every compute model is ruled out by a hard limit".into());
        return "none".into();
    };
    let fargate = allowed.iter().copied().find(|o| o.model == "Fargate");
    if best.model == "EC2"
        && let Some(f) = fargate
        && best.monthly_usd >= f.monthly_usd * (1.0 - EC2_MIN_SAVING)
    {
        let saving = if f.monthly_usd > 0.0 { 1.0 - best.monthly_usd / f.monthly_usd } else { 0.0 };
        reasons.push(format!(
            "EC2 ({}) would save only {} over Fargate: not worth managing instances",
            best.config,
            pct(saving)
        ));
        best = f;
    }
    // Compare with the cheapest alternative of the other kind (Lambda vs containers).
    let other = allowed
        .iter()
        .copied()
        .filter(|o| (o.model == "Lambda") != (best.model == "Lambda"))
        .min_by(|a, b| a.monthly_usd.total_cmp(&b.monthly_usd));
    let comparison = match other {
        Some(o) if best.monthly_usd > 0.0 => {
            format!("{} is {:.1}× cheaper than {}", best.model, o.monthly_usd / best.monthly_usd, o.model)
        }
        Some(o) => {
            format!("{} costs nothing (free tier) vs {} {}/month", best.model, o.model, usd(o.monthly_usd))
        }
        None => format!("{} is the only option left", best.model),
    };
    reasons.insert(0, describe(&best.model, &comparison, best.monthly_usd));
    best.model.clone()
}

/// Advice for one function.
pub fn advise_function(
    f: &FunctionUsage,
    window_ms: u64,
    prices: &PriceTable,
    opts: &AdviseOptions,
) -> WorkloadAdvice {
    let factor = month_factor(prices, window_ms) * opts.scale;
    let arch = f.architecture.as_str();
    let invocations = f.invocations as f64 * factor;
    let gb_seconds = f.gb_seconds * factor;
    let hours = container_hours(prices, opts.profile);
    let avg = f.avg_concurrency * opts.scale;
    let sized_for = match opts.profile {
        Profile::Measured => f.peak_concurrency as f64 * opts.scale,
        Profile::Steady => avg,
        Profile::Spiky => (f.peak_concurrency as f64).max(f.avg_concurrency * 10.0) * opts.scale,
        Profile::BusinessHours => avg * prices.hours_per_month / hours,
    }
    .ceil()
    .max(1.0);
    let memory_mb = f.memory_mb.max(128) as f64;
    let mut reasons = Vec::new();
    let named = |list: &[String]| list.iter().any(|n| n == &f.function_name || n == &f.function_arn);

    // Lambda
    let lambda_cost = lambda_monthly(prices, arch, invocations, gb_seconds, opts.free_tier);
    let lambda_out = if f.max_duration_ms > LAMBDA_MAX_RUNTIME_MS {
        Some(format!("runs > 15 min (longest {:.1} min): not Lambda", f.max_duration_ms / 60_000.0))
    } else {
        lambda_limits(
            memory_mb,
            memory_mb / 1024.0,
            named(&opts.long_lived_connections),
            &f.function_name,
            opts,
        )
    };
    let lambda = option(
        "Lambda",
        lambda_cost,
        lambda_out,
        format!("{} req + {} GB-s, {} MB {}", count(invocations), count(gb_seconds), memory_mb, arch),
    );

    // Fargate: tasks that hold the concurrency Lambda ran, with Lambda's CPU share.
    let vcpu = sized_for * memory_mb / LAMBDA_MB_PER_VCPU;
    let gb = sized_for * memory_mb / 1024.0;
    let size = fargate_size(vcpu, gb);
    let rate = prices.fargate_rate(arch);
    let fargate_cost = fargate_monthly(&size, rate, 1.0, hours);
    let gpu = named(&opts.gpu);
    let fargate = option(
        "Fargate",
        fargate_cost,
        gpu.then(|| "needs a GPU: not Fargate".to_string()),
        format!(
            "{} × {} vCPU / {}, {hours:.0} h",
            plural(size.tasks as f64, "task"),
            size.vcpu,
            gb_label(size.memory_gb)
        ),
    );

    // EC2: one slot per concurrent execution.
    let fit =
        ec2_fit(&prices.ec2, memory_mb / LAMBDA_MB_PER_VCPU, memory_mb / 1024.0, sized_for as u32, hours);
    let ec2 = ec2_option(fit.as_ref(), "execution", |fit| {
        format!("{} × {} ({} per instance), {hours:.0} h", fit.count, fit.instance_type, fit.per_instance)
    });
    push_ruled_out(&[&lambda, &fargate, &ec2], &mut reasons);
    if gpu {
        reasons.push("needs a GPU: not Lambda either; EC2 with a GPU instance type (not priced here)".into());
    }
    let per_inv = if f.invocations > 0 { f.gb_seconds / f.invocations as f64 } else { 0.0 };
    let break_even = if f.invocations > 0 {
        break_even_invocations(prices, arch, per_inv, fargate_cost, opts.free_tier)
    } else {
        None
    };
    let options = vec![lambda, fargate, ec2];
    // Busy share at the projected traffic (more traffic fills more of the idle time).
    let busy_share = ((1.0 - f.idle_fraction) * opts.scale).clamp(0.0, 1.0);
    let idle = 1.0 - busy_share;
    let invocations_none = f.invocations == 0;
    let describe = move |model: &str, comparison: &str, _cost: f64| -> String {
        if invocations_none {
            return format!("no invocations in the window: {comparison}");
        }
        if model == "Lambda" {
            if idle >= 0.5 {
                format!("spiky, idle {} of the time: {comparison}", pct(idle))
            } else {
                format!("busy {} of the time, but {comparison}", pct(busy_share))
            }
        } else {
            format!(
                "steady, busy {} of the time ({avg:.1} in flight on average): {comparison}",
                pct(busy_share)
            )
        }
    };
    let mut reasons_out = reasons;
    let recommendation = decide(&options, &mut reasons_out, &describe);
    if let Some(n) = break_even {
        reasons_out.push(format!(
            "break-even with Fargate at {} invocations/month (projected {})",
            count(n),
            count(invocations)
        ));
    }
    if opts.free_tier {
        reasons_out
            .push("Lambda free tier applied (1M requests, 400,000 GB-s per month, account-wide)".into());
    }
    WorkloadAdvice {
        kind: "function".into(),
        name: f.function_name.clone(),
        id: f.function_arn.clone(),
        measured: Measured {
            invocations: f.invocations,
            gb_seconds: f.gb_seconds,
            billed_ms: f.billed_ms,
            memory_mb: f.memory_mb as u64,
            peak_concurrency: f.peak_concurrency,
            avg_concurrency: f.avg_concurrency,
            idle_fraction: f.idle_fraction,
            cold_starts: f.cold_starts,
            ..Measured::default()
        },
        monthly: MonthlyUsage { invocations, gb_seconds, sized_for, container_hours: hours, task_hours: 0.0 },
        options,
        break_even_invocations_per_month: break_even,
        recommendation,
        reasons: reasons_out,
    }
}

/// Advice for one ECS service (or the standalone tasks of one family).
pub fn advise_service(
    s: &ServiceUsage,
    window_ms: u64,
    prices: &PriceTable,
    opts: &AdviseOptions,
) -> WorkloadAdvice {
    let factor = month_factor(prices, window_ms) * opts.scale;
    let arch = if s.architecture.is_empty() { "x86_64" } else { s.architecture.as_str() };
    let hours = container_hours(prices, opts.profile);
    let vcpu = if s.vcpu > 0.0 { s.vcpu } else { 0.25 };
    let gb = if s.memory_mb > 0 { s.memory_mb as f64 / 1024.0 } else { 0.5 };
    let name = s.service.clone().unwrap_or_else(|| s.family.clone());
    let named = |list: &[String]| list.iter().any(|n| n == &name || n == &s.name);
    let mut reasons = Vec::new();

    // Tasks the month needs (per-second billing: fractional task counts are real).
    let tasks = match opts.profile {
        Profile::Spiky => (s.peak_tasks.max(1) as f64 * opts.scale).ceil(),
        _ => s.avg_tasks * opts.scale,
    };
    let task_hours_month = match opts.profile {
        Profile::Measured => s.task_seconds / 3600.0 * factor,
        _ => tasks * hours,
    };

    // Fargate: the reservation rounded to a valid size.
    let size = fargate_size(vcpu, gb);
    let rate = prices.fargate_rate(arch);
    let fargate_cost = task_hours_month
        * size.tasks as f64
        * (size.vcpu * rate.vcpu_hour.value + size.memory_gb * rate.gb_hour.value);
    let gpu = s.gpu > 0 || named(&opts.gpu);
    let mut fargate_out = None;
    if gpu {
        fargate_out = Some("needs a GPU: not Fargate".to_string());
    } else if gb > FARGATE_MAX_GB || vcpu > FARGATE_MAX_VCPU {
        fargate_out = Some("a task needs more than Fargate's 16 vCPU / 120 GB: not Fargate".to_string());
    }
    let fargate = option(
        "Fargate",
        fargate_cost,
        fargate_out,
        format!(
            "{} × {} vCPU / {}, {:.0} task-h",
            plural(tasks_label(task_hours_month, hours) * size.tasks as f64, "task"),
            size.vcpu,
            gb_label(size.memory_gb),
            task_hours_month
        ),
    );

    // Lambda: the same CPU work at Lambda's memory-proportional CPU share, billed only
    // while computing — a lower bound (Lambda also bills waiting on I/O).
    let lambda_mb = (s.memory_mb as f64).max((vcpu * LAMBDA_MB_PER_VCPU).ceil()).max(128.0);
    let lambda_vcpu = lambda_mb / LAMBDA_MB_PER_VCPU;
    // Without a CPU measurement, Lambda is priced for the whole running time (an upper bound).
    let cpu_known = s.cpu_seconds > 0.0;
    let busy_s_month =
        if cpu_known { s.cpu_seconds * factor / lambda_vcpu } else { task_hours_month * 3600.0 };
    let gbs_month = busy_s_month * lambda_mb / 1024.0;
    let requests_month = s.requests as f64 * factor;
    let lambda_cost = lambda_monthly(prices, arch, requests_month, gbs_month, opts.free_tier);
    let lambda_out = if gpu {
        Some("needs a GPU: not Lambda".to_string())
    } else if s.service.is_none() && s.longest_task_ms as f64 > LAMBDA_MAX_RUNTIME_MS {
        Some(format!(
            "runs > 15 min (longest task {:.0} min): not Lambda",
            s.longest_task_ms as f64 / 60_000.0
        ))
    } else {
        lambda_limits(
            lambda_mb,
            (lambda_mb / 1024.0).ceil(),
            named(&opts.long_lived_connections),
            &name,
            opts,
        )
    };
    let lambda = option(
        "Lambda",
        lambda_cost,
        lambda_out,
        format!(
            "{} GB-s at {lambda_mb:.0} MB while computing{}",
            count(gbs_month),
            if s.requests > 0 { format!(" + {} req", count(requests_month)) } else { String::new() }
        ),
    );

    // EC2: the measured peak (CPU used, peak memory; reservations where nothing was measured).
    let used_vcpu =
        if s.task_seconds > 0.0 && s.cpu_seconds > 0.0 { s.cpu_seconds / s.task_seconds } else { vcpu };
    let used_gib =
        if s.peak_memory_bytes > 0 { s.peak_memory_bytes as f64 / (1u64 << 30) as f64 } else { gb };
    let ec2_items = match opts.profile {
        Profile::Measured => (s.peak_tasks.max(1) as f64 * opts.scale).ceil(),
        _ => tasks.ceil().max(1.0),
    } as u32;
    // Instances run while tasks need them: the average share of the peak (autoscaled
    // capacity, per-second billing), the full month for an always-on service.
    let avg_month = match opts.profile {
        Profile::Spiky => tasks,
        _ => s.avg_tasks * opts.scale,
    };
    let ec2_hours = hours * (avg_month / ec2_items.max(1) as f64).clamp(0.0, 1.0);
    let fit = ec2_fit(&prices.ec2, used_vcpu, used_gib, ec2_items, ec2_hours);
    let ec2 = ec2_option(fit.as_ref(), "task", |fit| {
        format!(
            "{} × {} for {} task(s) of {used_vcpu:.2} vCPU / {used_gib:.2} GiB measured, {ec2_hours:.0} h",
            fit.count, fit.instance_type, ec2_items
        )
    });
    push_ruled_out(&[&lambda, &fargate, &ec2], &mut reasons);
    if gpu {
        reasons.push("needs a GPU: EC2 with a GPU instance type (not priced here)".into());
    }
    let util = s.cpu_utilization;
    let always_on = opts.profile != Profile::BusinessHours && s.avg_tasks >= 0.9;
    let kind = if s.service.is_some() { "service" } else { "task" };
    let avg_tasks = s.avg_tasks * opts.scale;
    let describe = move |model: &str, comparison: &str, _cost: f64| -> String {
        let when = if always_on { " 24/7" } else { "" };
        if !cpu_known {
            format!("{} running{when} (CPU not measured): {comparison}", plural(avg_tasks, "task"))
        } else if model == "Lambda" {
            format!("mostly idle ({} CPU){when}: {comparison} (if the work can be request-driven)", pct(util))
        } else {
            format!("steady {} CPU{when}: {comparison}", pct(util))
        }
    };
    let recommendation = decide(&[lambda.clone(), fargate.clone(), ec2.clone()], &mut reasons, &describe);
    if !cpu_known {
        reasons.push(
            "CPU use was not measured: Lambda priced for the whole running time (an upper bound)".into(),
        );
    } else if s.service.is_some() {
        reasons.push("Lambda priced for the measured CPU time only (a lower bound: Lambda also bills time spent waiting)".into());
    }
    // Fronted by an API: its requests are what Lambda would be invoked for, so the CPU time
    // per request gives Lambda's cost per invocation and a break-even traffic.
    let break_even = if s.requests > 0 && cpu_known && requests_month > 0.0 {
        break_even_invocations(prices, arch, gbs_month / requests_month, fargate.monthly_usd, opts.free_tier)
    } else {
        None
    };
    if s.requests > 0 {
        reasons.push(format!(
            "fronted by API Gateway: {} requests measured ({}/month), priced as Lambda invocations",
            s.requests,
            count(requests_month)
        ));
    }
    if let Some(n) = break_even {
        reasons.push(format!(
            "break-even with Fargate at {} requests/month (projected {})",
            count(n),
            count(requests_month)
        ));
    }
    WorkloadAdvice {
        kind: kind.into(),
        name,
        id: s.name.clone(),
        measured: Measured {
            memory_mb: s.memory_mb,
            task_seconds: s.task_seconds,
            cpu_utilization: s.cpu_utilization,
            peak_memory_mb: s.peak_memory_bytes as f64 / (1u64 << 20) as f64,
            peak_tasks: s.peak_tasks,
            invocations: s.requests,
            ..Measured::default()
        },
        monthly: MonthlyUsage {
            invocations: requests_month,
            gb_seconds: gbs_month,
            sized_for: tasks,
            container_hours: hours,
            task_hours: task_hours_month,
        },
        options: vec![lambda, fargate, ec2],
        break_even_invocations_per_month: break_even,
        recommendation,
        reasons,
    }
}

fn plural(n: f64, word: &str) -> String {
    let shown = if (n - n.round()).abs() < 1e-9 { format!("{n:.0}") } else { format!("{n:.2}") };
    if shown == "1" { format!("1 {word}") } else { format!("{shown} {word}s") }
}

fn tasks_label(task_hours: f64, hours: f64) -> f64 {
    if hours > 0.0 { task_hours / hours } else { 0.0 }
}

/// Advice for everything in a report.
pub fn advise(report: &UsageReport, prices: &PriceTable, opts: &AdviseOptions) -> Advice {
    let mut workloads: Vec<WorkloadAdvice> =
        report.functions.iter().map(|f| advise_function(f, report.window_ms, prices, opts)).collect();
    workloads.extend(report.services.iter().map(|s| advise_service(s, report.window_ms, prices, opts)));
    let factor = month_factor(prices, report.window_ms) * opts.scale;
    let mut by_api: BTreeMap<String, ApiAdvice> = BTreeMap::new();
    for r in &report.routes {
        let a = by_api.entry(r.api_id.clone()).or_insert_with(|| ApiAdvice {
            api_id: r.api_id.clone(),
            requests: 0,
            requests_per_month: 0.0,
            http_api_monthly_usd: 0.0,
            routes: Vec::new(),
        });
        a.requests += r.requests;
        a.routes.push(RouteCount { route_key: r.route_key.clone(), requests: r.requests });
    }
    let apis: Vec<ApiAdvice> = by_api
        .into_values()
        .map(|mut a| {
            a.requests_per_month = a.requests as f64 * factor;
            a.http_api_monthly_usd = prices.http_api_cost(a.requests_per_month);
            a
        })
        .collect();
    let total = workloads
        .iter()
        .filter_map(|w| w.options.iter().find(|o| o.model == w.recommendation).map(|o| o.monthly_usd))
        .sum::<f64>()
        + apis.iter().map(|a| a.http_api_monthly_usd).sum::<f64>();
    Advice {
        window_ms: report.window_ms,
        scale: opts.scale,
        profile: opts.profile.as_str().into(),
        free_tier: opts.free_tier,
        hours_per_month: prices.hours_per_month,
        price_table: PriceTableRef {
            version: prices.version.clone(),
            date: prices.date.clone(),
            region: prices.region.clone(),
        },
        workloads,
        apis,
        total_recommended_monthly_usd: total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RouteUsage;

    const HOUR_MS: u64 = 3_600_000;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{a} != {b}");
    }

    fn prices() -> PriceTable {
        PriceTable::default_table()
    }

    fn service(vcpu: f64, memory_mb: u64, avg_tasks: f64, util: f64, window_ms: u64) -> ServiceUsage {
        let task_seconds = avg_tasks * window_ms as f64 / 1000.0;
        ServiceUsage {
            name: "default/web".into(),
            cluster: "default".into(),
            service: Some("web".into()),
            family: "web".into(),
            launch_type: "FARGATE".into(),
            architecture: "x86_64".into(),
            vcpu,
            memory_mb,
            running_ms: (task_seconds * 1000.0) as u64,
            task_seconds,
            cpu_seconds: task_seconds * vcpu * util,
            cpu_utilization: util,
            peak_memory_bytes: memory_mb << 19, // half the reservation
            peak_tasks: avg_tasks.ceil() as u32,
            avg_tasks,
            tasks_seen: 1,
            longest_task_ms: window_ms,
            ..ServiceUsage::default()
        }
    }

    fn function(
        memory_mb: u32,
        invocations: u64,
        billed_ms: u64,
        window_ms: u64,
        peak: u32,
    ) -> FunctionUsage {
        let busy = (invocations * billed_ms) as f64;
        FunctionUsage {
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            function_name: "f".into(),
            account: "000000000000".into(),
            region: "us-east-1".into(),
            memory_mb,
            architecture: "x86_64".into(),
            invocations,
            billed_ms: invocations * billed_ms,
            gb_seconds: (invocations * billed_ms) as f64 * memory_mb as f64 / 1024.0 / 1000.0,
            duration_ms: busy,
            max_duration_ms: billed_ms as f64,
            busy_ms: busy.min(window_ms as f64),
            idle_ms: (window_ms as f64 - busy).max(0.0),
            idle_fraction: ((window_ms as f64 - busy) / window_ms as f64).max(0.0),
            peak_concurrency: peak,
            avg_concurrency: busy / window_ms as f64,
            ..FunctionUsage::default()
        }
    }

    fn opt<'a>(w: &'a WorkloadAdvice, model: &str) -> &'a ComputeOption {
        w.options.iter().find(|o| o.model == model).unwrap()
    }

    /// The seeds' example: a web application running 24/7 with 1 vCPU and 2 GB on Fargate:
    /// 730 h × ($0.04048 + 2 × $0.004445) = 730 × $0.04937 = $36.0401 a month.
    #[test]
    fn seeds_web_app_24_7_one_vcpu_two_gb_on_fargate() {
        let p = prices();
        let size = fargate_size(1.0, 2.0);
        assert_eq!(size, FargateSize { tasks: 1, vcpu: 1.0, memory_gb: 2.0 });
        close(fargate_monthly(&size, p.fargate_rate("x86_64"), 1.0, 730.0), 36.0401);
        // The same figure from measured usage: one task for a whole hour, projected.
        let w =
            advise_service(&service(1.0, 2048, 1.0, 0.7, HOUR_MS), HOUR_MS, &p, &AdviseOptions::default());
        close(opt(&w, "Fargate").monthly_usd, 36.0401);
        close(w.monthly.task_hours, 730.0);
        // And a day's worth gives the same month.
        let w = advise_service(
            &service(1.0, 2048, 1.0, 0.7, 24 * HOUR_MS),
            24 * HOUR_MS,
            &p,
            &AdviseOptions::default(),
        );
        close(opt(&w, "Fargate").monthly_usd, 36.0401);
        // arm64: 730 × (0.03238 + 2 × 0.00356) = 730 × 0.0395 = $28.835
        close(fargate_monthly(&size, p.fargate_rate("arm64"), 1.0, 730.0), 28.835);
    }

    /// AWS's Lambda pricing page, example 1: 512 MB, 3M invocations of 1 s, free tier:
    /// (1.5M − 0.4M) GB-s × $0.0000166667 + (3M − 1M) × $0.20/M = $18.73337.
    #[test]
    fn lambda_pricing_page_examples() {
        let p = prices();
        close(lambda_monthly(&p, "x86_64", 3e6, 3e6 * 0.5, true), 18.73337);
        // Example 2: 128 MB, 30M invocations of 200 ms: (750,000 − 400,000) GB-s and 29M requests.
        close(lambda_monthly(&p, "x86_64", 30e6, 30e6 * 0.2 * 0.125, true), 11.633345);
        // No free tier, arm64: 1M × 0.5 GB-s × $0.0000133334 + $0.20.
        close(lambda_monthly(&p, "arm64", 1e6, 0.5e6, false), 6.6667 + 0.2);
        // Billing is per 1 ms: 1M invocations of 1 ms at 128 MB = 125 GB-s.
        close(lambda_monthly(&p, "x86_64", 1e6, 1e6 * 0.001 * 0.125, false), 0.2 + 125.0 * 0.0000166667);
    }

    #[test]
    fn fargate_sizes_are_valid_combinations() {
        let s = |v, g| fargate_size(v, g);
        assert_eq!(s(0.07, 0.125), FargateSize { tasks: 1, vcpu: 0.25, memory_gb: 0.5 });
        assert_eq!(s(0.25, 0.6), FargateSize { tasks: 1, vcpu: 0.25, memory_gb: 1.0 });
        assert_eq!(s(0.25, 3.0), FargateSize { tasks: 1, vcpu: 0.5, memory_gb: 3.0 });
        assert_eq!(s(1.0, 2.5), FargateSize { tasks: 1, vcpu: 1.0, memory_gb: 3.0 });
        assert_eq!(s(1.2, 2.0), FargateSize { tasks: 1, vcpu: 2.0, memory_gb: 4.0 });
        assert_eq!(s(5.0, 10.0), FargateSize { tasks: 1, vcpu: 8.0, memory_gb: 16.0 });
        assert_eq!(s(8.0, 17.0), FargateSize { tasks: 1, vcpu: 8.0, memory_gb: 20.0 });
        assert_eq!(s(20.0, 40.0), FargateSize { tasks: 2, vcpu: 16.0, memory_gb: 32.0 });
        assert_eq!(s(1.0, 200.0), FargateSize { tasks: 2, vcpu: 16.0, memory_gb: 104.0 });
        // 0.25 vCPU / 0.5 GB for a month: 730 × (0.25 × 0.04048 + 0.5 × 0.004445) = $9.010025
        close(fargate_monthly(&s(0.1, 0.1), prices().fargate_rate("x86_64"), 1.0, 730.0), 9.010025);
    }

    #[test]
    fn ec2_bin_packs_onto_the_cheapest_type_that_fits() {
        let p = prices();
        // 3 × (0.5 vCPU, 1.5 GiB): t3.micro (1 GiB) cannot hold one; t3.small holds one
        // each: 3 × $0.0208 × 730 = $45.552, cheaper than 2 × t3.medium or 1 × t3.large ($60.736).
        let fit = ec2_fit(&p.ec2, 0.5, 1.5, 3, 730.0).unwrap();
        assert_eq!((fit.instance_type.as_str(), fit.count, fit.per_instance), ("t3.small", 3, 1));
        close(fit.monthly_usd, 45.552);
        // 6 × (1 vCPU, 6 GiB): r5.large holds 2 (16 GiB, 2 vCPU): 3 × 0.126 × 730 = $275.94;
        // t3.xlarge holds 2 (16 GiB): 3 × 0.1664 × 730 = $364.416; t3.large holds 1: 6 × 0.0832 × 730 = $364.416.
        let fit = ec2_fit(&p.ec2, 1.0, 6.0, 6, 730.0).unwrap();
        assert_eq!((fit.instance_type.as_str(), fit.count), ("r5.large", 3));
        close(fit.monthly_usd, 275.94);
        // Nothing listed holds 40 GiB in one piece.
        assert!(ec2_fit(&p.ec2, 1.0, 40.0, 1, 730.0).is_none());
    }

    #[test]
    fn break_even_traffic() {
        let p = prices();
        // 128 MB × 100 ms = 0.0125 GB-s per invocation: $2e-7 + 0.0125 × $0.0000166667 each;
        // against 0.25 vCPU / 0.5 GB on Fargate ($9.010025): 22,065,344.8 invocations/month.
        let n = break_even_invocations(&p, "x86_64", 0.0125, 9.010025, false).unwrap();
        close(n, 22_065_344.831280787);
        // With the free tier the break-even moves out and Lambda at N costs exactly the target.
        let m = break_even_invocations(&p, "x86_64", 0.0125, 9.010025, true).unwrap();
        assert!(m > n);
        close(lambda_monthly(&p, "x86_64", m, m * 0.0125, true), 9.010025);
        let w = advise_function(&function(128, 100, 100, HOUR_MS, 1), HOUR_MS, &p, &AdviseOptions::default());
        close(w.break_even_invocations_per_month.unwrap(), 22_065_344.831280787);
    }

    #[test]
    fn spiky_function_stays_on_lambda() {
        let p = prices();
        // 1h window: 100 invocations × 100 ms at 128 MB; busy 10 s of 3600 s.
        let f = function(128, 100, 100, HOUR_MS, 1);
        let w = advise_function(&f, HOUR_MS, &p, &AdviseOptions::default());
        // Month: 73,000 invocations, 912.5 GB-s: 0.0146 + 912.5 × 0.0000166667.
        close(w.monthly.invocations, 73_000.0);
        close(w.monthly.gb_seconds, 912.5);
        close(opt(&w, "Lambda").monthly_usd, 0.0146 + 912.5 * 0.0000166667);
        close(opt(&w, "Fargate").monthly_usd, 9.010025);
        assert_eq!(w.recommendation, "Lambda");
        assert!(w.reasons[0].starts_with("spiky, idle 100 % of the time: Lambda is"), "{:?}", w.reasons);
        // Idle 92 %: the wording.
        let mut f92 = f.clone();
        f92.idle_fraction = 0.92;
        let w = advise_function(&f92, HOUR_MS, &p, &AdviseOptions::default());
        assert!(w.reasons[0].starts_with("spiky, idle 92 % of the time: Lambda is"), "{:?}", w.reasons);
        // With the free tier it costs nothing.
        let w =
            advise_function(&f, HOUR_MS, &p, &AdviseOptions { free_tier: true, ..AdviseOptions::default() });
        assert_eq!(opt(&w, "Lambda").monthly_usd, 0.0);
        assert!(w.reasons[0].contains("costs nothing"), "{:?}", w.reasons);
    }

    #[test]
    fn steady_service_goes_to_containers_with_the_ratio_in_words() {
        let p = prices();
        // 1 vCPU / 2 GB at 70 % CPU, 24/7. Lambda for the same CPU work at 2048 MB
        // (1.1577 vCPU): 0.7 × 2,628,000 s / (2048/1769) × 2 GB = 3,177,890 GB-s.
        let s = service(1.0, 2048, 1.0, 0.7, HOUR_MS);
        let w = advise_service(&s, HOUR_MS, &p, &AdviseOptions::default());
        let gbs = 0.7 * 2_628_000.0 / (2048.0 / 1769.0) * 2.0;
        close(w.monthly.gb_seconds, gbs);
        close(opt(&w, "Lambda").monthly_usd, gbs * 0.0000166667);
        assert_ne!(w.recommendation, "Lambda");
        let chosen = opt(&w, &w.recommendation).monthly_usd;
        let ratio = opt(&w, "Lambda").monthly_usd / chosen;
        assert!(
            w.reasons[0].starts_with(&format!(
                "steady 70 % CPU 24/7: {} is {ratio:.1}× cheaper than Lambda",
                w.recommendation
            )),
            "{:?}",
            w.reasons
        );
    }

    #[test]
    fn gateway_requests_price_lambda_invocations_and_give_a_break_even() {
        let p = prices();
        // 0.25 vCPU / 512 MB, one task all hour at 10 % CPU, 3,600 requests in the hour.
        // Month: ×730 → 2,628,000 requests; CPU 0.025 vCPU-s/s × 3600 × 730 = 65,700 s at
        // Lambda's 512 MB (0.2894 vCPU) → 65,700 / (512/1769) s × 0.5 GB.
        let mut s = service(0.25, 512, 1.0, 0.1, HOUR_MS);
        s.requests = 3600;
        let w = advise_service(&s, HOUR_MS, &p, &AdviseOptions::default());
        let gbs = 65_700.0 / (512.0 / 1769.0) * 0.5;
        let requests = 2_628_000.0;
        close(w.monthly.invocations, requests);
        close(w.monthly.gb_seconds, gbs);
        close(opt(&w, "Lambda").monthly_usd, requests / 1e6 * 0.20 + gbs * 0.0000166667);
        // Lambda == Fargate ($9.010025) at n requests: n × (0.20e-6 + gbs/requests × 0.0000166667).
        let per = 0.20 / 1e6 + gbs / requests * 0.0000166667;
        close(w.break_even_invocations_per_month.unwrap(), 9.010025 / per);
        assert_eq!(w.measured.invocations, 3600);
        assert!(
            w.reasons
                .iter()
                .any(|r| r.starts_with("fronted by API Gateway: 3600 requests measured (2.6M/month)")),
            "{:?}",
            w.reasons
        );
        assert!(w.reasons.iter().any(|r| r.starts_with("break-even with Fargate at ")), "{:?}", w.reasons);
        // Not fronted: no break-even.
        let w =
            advise_service(&service(0.25, 512, 1.0, 0.1, HOUR_MS), HOUR_MS, &p, &AdviseOptions::default());
        assert_eq!(w.break_even_invocations_per_month, None);
        assert!(!w.reasons.iter().any(|r| r.contains("API Gateway")));
    }

    #[test]
    fn unmeasured_cpu_prices_lambda_for_the_running_time() {
        let p = prices();
        // 1 vCPU / 2 GB, one task for the window, no CPU figure: Lambda at 2048 MB for all
        // 730 h: 2,628,000 s × 2 GB × $0.0000166667.
        let mut s = service(1.0, 2048, 1.0, 0.0, HOUR_MS);
        s.cpu_seconds = 0.0;
        let w = advise_service(&s, HOUR_MS, &p, &AdviseOptions::default());
        close(opt(&w, "Lambda").monthly_usd, 2_628_000.0 * 2.0 * 0.0000166667);
        assert!(w.reasons[0].starts_with("1 task running 24/7 (CPU not measured): "), "{:?}", w.reasons);
        assert!(w.reasons.iter().any(|r| r.contains("not measured")));
        assert_ne!(w.recommendation, "Lambda");
    }

    #[test]
    fn ec2_must_save_enough_to_beat_fargate() {
        let p = prices();
        // 0.25 vCPU / 0.5 GB task using 0.4 GiB: t3.micro $7.592 vs Fargate $9.010025 —
        // a 16 % saving, below the 25 % bar: Fargate.
        let mut s = service(0.25, 512, 1.0, 0.9, HOUR_MS);
        s.peak_memory_bytes = 400 << 20;
        let w = advise_service(&s, HOUR_MS, &p, &AdviseOptions::default());
        close(opt(&w, "EC2").monthly_usd, 0.0104 * 730.0);
        close(opt(&w, "Fargate").monthly_usd, 9.010025);
        assert_eq!(w.recommendation, "Fargate");
        assert!(w.reasons.iter().any(|r| r.contains("would save only 16 %")), "{:?}", w.reasons);
    }

    #[test]
    fn hard_limits_rule_options_out() {
        let p = prices();
        // A standalone task running 20 minutes: not Lambda.
        let mut t = service(1.0, 2048, 1.0, 0.1, HOUR_MS);
        t.service = None;
        t.longest_task_ms = 20 * 60_000;
        let w = advise_service(&t, HOUR_MS, &p, &AdviseOptions::default());
        assert!(!opt(&w, "Lambda").allowed);
        assert!(
            w.reasons.iter().any(|r| r == "runs > 15 min (longest task 20 min): not Lambda"),
            "{:?}",
            w.reasons
        );
        assert_ne!(w.recommendation, "Lambda");
        // 12 GB of memory: not Lambda.
        let big = service(2.0, 12 * 1024, 1.0, 0.01, HOUR_MS);
        let w = advise_service(&big, HOUR_MS, &p, &AdviseOptions::default());
        assert_eq!(opt(&w, "Lambda").ruled_out.as_deref(), Some("needs 12 GB memory (> 10 GB): not Lambda"));
        // A GPU: neither Fargate nor Lambda.
        let mut g = service(1.0, 2048, 1.0, 0.5, HOUR_MS);
        g.gpu = 1;
        let w = advise_service(&g, HOUR_MS, &p, &AdviseOptions::default());
        assert!(!opt(&w, "Fargate").allowed && !opt(&w, "Lambda").allowed);
        assert_eq!(w.recommendation, "EC2");
        // Long-lived connections and a function whose runs exceed 15 min.
        let mut f = function(512, 10, 1000, HOUR_MS, 1);
        let opts = AdviseOptions { long_lived_connections: vec!["f".into()], ..AdviseOptions::default() };
        let w = advise_function(&f, HOUR_MS, &p, &opts);
        assert_eq!(opt(&w, "Lambda").ruled_out.as_deref(), Some("holds long-lived connections: not Lambda"));
        assert_ne!(w.recommendation, "Lambda");
        f.max_duration_ms = 16.0 * 60_000.0;
        let w = advise_function(&f, HOUR_MS, &p, &AdviseOptions::default());
        assert_eq!(
            opt(&w, "Lambda").ruled_out.as_deref(),
            Some("runs > 15 min (longest 16.0 min): not Lambda")
        );
    }

    #[test]
    fn what_if_scale_and_profiles() {
        let p = prices();
        let f = function(1024, 3600, 500, HOUR_MS, 2); // avg concurrency 0.5, peak 2
        let base = advise_function(&f, HOUR_MS, &p, &AdviseOptions::default());
        let x10 =
            advise_function(&f, HOUR_MS, &p, &AdviseOptions { scale: 10.0, ..AdviseOptions::default() });
        close(x10.monthly.invocations, base.monthly.invocations * 10.0);
        close(opt(&x10, "Lambda").monthly_usd, opt(&base, "Lambda").monthly_usd * 10.0);
        assert_eq!(base.monthly.sized_for, 2.0);
        assert_eq!(x10.monthly.sized_for, 20.0);
        let steady = advise_function(
            &f,
            HOUR_MS,
            &p,
            &AdviseOptions { profile: Profile::Steady, ..AdviseOptions::default() },
        );
        assert_eq!(steady.monthly.sized_for, 1.0);
        close(opt(&steady, "Lambda").monthly_usd, opt(&base, "Lambda").monthly_usd);
        let spiky = advise_function(
            &f,
            HOUR_MS,
            &p,
            &AdviseOptions { profile: Profile::Spiky, ..AdviseOptions::default() },
        );
        assert_eq!(spiky.monthly.sized_for, 5.0);
        let bh = advise_function(
            &f,
            HOUR_MS,
            &p,
            &AdviseOptions { profile: Profile::BusinessHours, ..AdviseOptions::default() },
        );
        // 0.5 average over 730 h squeezed into 220 h: ⌈1.66⌉ = 2, running 220 h.
        assert_eq!(bh.monthly.sized_for, 2.0);
        assert_eq!(bh.monthly.container_hours, 220.0);
        // A service in business hours: 220 task-hours.
        let s = advise_service(
            &service(1.0, 2048, 1.0, 0.7, HOUR_MS),
            HOUR_MS,
            &p,
            &AdviseOptions { profile: Profile::BusinessHours, ..AdviseOptions::default() },
        );
        close(opt(&s, "Fargate").monthly_usd, 220.0 * 0.04937);
        assert_eq!(parse_window("1h").unwrap(), Some(3_600_000));
        assert_eq!(parse_window("7d").unwrap(), Some(604_800_000));
        assert_eq!(parse_window("all").unwrap(), None);
        assert!(parse_window("7y").is_err() && parse_window("h").is_err());
        assert_eq!(parse_scale("10x").unwrap(), 10.0);
        assert_eq!(parse_scale("0.5").unwrap(), 0.5);
        assert!(parse_scale("ten").is_err() && parse_scale("-2x").is_err());
        assert_eq!("business-hours".parse::<Profile>().unwrap(), Profile::BusinessHours);
        assert!("bursty".parse::<Profile>().is_err());
    }

    #[test]
    fn advise_totals_and_api_gateway() {
        let p = prices();
        let report = UsageReport {
            from_ms: 0,
            to_ms: HOUR_MS,
            window_ms: HOUR_MS,
            functions: vec![function(128, 100, 100, HOUR_MS, 1)],
            services: vec![service(1.0, 2048, 1.0, 0.7, HOUR_MS)],
            routes: vec![
                RouteUsage { api_id: "a1".into(), route_key: "GET /".into(), requests: 600 },
                RouteUsage { api_id: "a1".into(), route_key: "POST /x".into(), requests: 400 },
            ],
        };
        let a = advise(&report, &p, &AdviseOptions::default());
        assert_eq!(a.workloads.len(), 2);
        assert_eq!(a.apis.len(), 1);
        // 1000 requests an hour → 730,000 a month → $0.73 on HTTP APIs.
        close(a.apis[0].requests_per_month, 730_000.0);
        close(a.apis[0].http_api_monthly_usd, 0.73);
        let expect: f64 =
            a.workloads.iter().map(|w| opt(w, &w.recommendation).monthly_usd).sum::<f64>() + 0.73;
        close(a.total_recommended_monthly_usd, expect);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["price_table"]["region"], "us-east-1");
    }
}
