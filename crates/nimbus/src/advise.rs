//! Usage accounting wiring (the functions engine's `UsageSink` over the usage `Recorder`;
//! ECS tasks are wired in `ecs_wiring.rs`) and `nimbus advise`, which asks a running server for its cost-and-fit advice.
use anyhow::Context;
use nimbus_usage::{Accounting, Advice, InvocationRecord, PriceTable, Recorder};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Opens usage accounting over the server's Store with the price table (`--prices FILE`
/// or the built-in one).
pub fn open_accounting(
    prices: Option<&Path>,
    store: Arc<dyn nimbus_store::Store>,
) -> anyhow::Result<Accounting> {
    let prices = match prices {
        Some(p) => PriceTable::load(p).context("--prices")?,
        None => PriceTable::default_table(),
    };
    Ok(Accounting::new(Recorder::open(store, Duration::from_secs(1)), Arc::new(prices)))
}

/// The gateway → service join for usage reports: a route's integration, if it is an
/// `HTTP_PROXY` to an ELBv2 target group, sends its requests to the tasks of every ACTIVE ECS
/// service whose `loadBalancers` name that group. Uses the APIs and services as configured
/// now (a route re-pointed since is credited to its current target).
pub struct GatewayRouting {
    pub gateway: Arc<nimbus_gateway::GatewayEngine>,
    pub ecs: Arc<nimbus_containers::EcsEngine>,
}

impl GatewayRouting {
    /// The target group `route_key` of `api_id` proxies to: the draft route first, else the
    /// newest deployment that has it (what a stage may still serve).
    fn target_group(&self, api_id: &str, route_key: &str) -> Option<(String, String, String)> {
        let live = self.gateway.live(api_id)?;
        let api = &live.api;
        let configs = std::iter::once((&api.routes, &api.integrations))
            .chain(api.deployments.iter().rev().map(|d| (&d.snapshot.routes, &d.snapshot.integrations)));
        for (routes, integrations) in configs {
            let Some(route) = routes.iter().find(|r| r.route_key == route_key) else { continue };
            let id = route.target.as_deref()?.strip_prefix("integrations/")?;
            let uri = integrations.iter().find(|i| i.integration_id == id)?.integration_uri.as_deref()?;
            let tg = nimbus_gateway::elb_target_group_of(uri)?;
            return Some((tg.to_string(), api.account.clone(), api.region.clone()));
        }
        None
    }
}

impl nimbus_usage::RequestRouting for GatewayRouting {
    fn services_behind(&self, api_id: &str, route_key: &str) -> Vec<String> {
        let Some((tg, api_account, api_region)) = self.target_group(api_id, route_key) else {
            return Vec::new();
        };
        // The target group's ARN names its account and region; the API's are the fallback.
        let mut arn = tg.splitn(6, ':').skip(3);
        let (region, account) = (arn.next().unwrap_or_default(), arn.next().unwrap_or_default());
        let mut scopes = vec![nimbus_containers::Scope::new(account, region)];
        if (account, region) != (api_account.as_str(), api_region.as_str()) {
            scopes.push(nimbus_containers::Scope::new(&api_account, &api_region));
        }
        let mut out = Vec::new();
        for scope in &scopes {
            for cluster in self.ecs.list_clusters(scope) {
                let Ok(arns) = self.ecs.list_services(scope, Some(&cluster), None) else { continue };
                let Ok((services, _)) = self.ecs.describe_services(scope, Some(&cluster), &arns) else {
                    continue;
                };
                out.extend(
                    services
                        .into_iter()
                        .filter(|s| s.status == "ACTIVE")
                        .filter(|s| {
                            s.load_balancers.iter().any(|l| l.target_group_arn.as_deref() == Some(&tg))
                        })
                        // The usage recorder's name for a service (see `record_task_usage`).
                        .map(|s| format!("{}/{}", s.cluster, s.name)),
                );
            }
            if !out.is_empty() {
                break;
            }
        }
        out
    }
}

/// Lambda invocations → usage records.
pub struct UsageBridge(pub Recorder);

impl nimbus_functions::UsageSink for UsageBridge {
    fn invocation(&self, u: nimbus_functions::InvocationUsage) {
        self.0.record_invocation(InvocationRecord {
            function_arn: u.function_arn,
            function_name: u.function_name,
            account: u.account,
            region: u.region,
            memory_mb: u.memory_mb,
            architecture: u.architecture,
            billed_ms: u.billed_ms,
            duration_ms: u.duration_ms,
            init_ms: u.init_ms,
            cold: u.cold,
            error: u.error,
            at_ms: u.ended_at_ms,
        });
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutputArg {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct AdviseArgs {
    /// The Nimbus server to ask.
    #[arg(long, env = "NIMBUS_ENDPOINT", default_value = "http://127.0.0.1:4566")]
    endpoint: String,
    /// Usage window to project from: all, or e.g. 1h, 24h, 7d.
    #[arg(long, default_value = "all")]
    window: String,
    /// What-if traffic multiplier, e.g. 10x or 0.5x.
    #[arg(long, default_value = "1x")]
    scale: String,
    /// How the traffic is spread: measured, steady, spiky, business-hours.
    #[arg(long, default_value = "measured")]
    profile: String,
    /// Subtract Lambda's monthly free tier (1M requests, 400,000 GB-s).
    #[arg(long)]
    free_tier: bool,
    /// A workload (function or service name) holding long-lived connections (repeatable).
    #[arg(long = "long-lived")]
    long_lived: Vec<String>,
    /// A workload that needs a GPU (repeatable).
    #[arg(long)]
    gpu: Vec<String>,
    #[arg(long, value_enum, default_value = "table")]
    output: OutputArg,
}

pub async fn run(args: AdviseArgs) -> anyhow::Result<()> {
    // Validate locally so a typo fails before any request.
    nimbus_usage::parse_window(&args.window)?;
    nimbus_usage::parse_scale(&args.scale)?;
    args.profile.parse::<nimbus_usage::Profile>()?;
    let mut query = format!(
        "window={}&scale={}&profile={}&free_tier={}",
        enc(&args.window),
        enc(&args.scale),
        enc(&args.profile),
        args.free_tier
    );
    if !args.long_lived.is_empty() {
        query.push_str(&format!("&long_lived={}", enc(&args.long_lived.join(","))));
    }
    if !args.gpu.is_empty() {
        query.push_str(&format!("&gpu={}", enc(&args.gpu.join(","))));
    }
    // Signed with the environment's AWS credentials, if any (`--auth strict` servers).
    let body =
        crate::cli_http::Http::new().api_get(&args.endpoint, &format!("/_nimbus/advise?{query}")).await?;
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputArg::Json => {
            out.write_all(&body)?;
            out.write_all(b"\n")?;
        }
        OutputArg::Table => {
            let advice: Advice = serde_json::from_slice(&body).context("reading the server's advice")?;
            out.write_all(render(&advice).as_bytes())?;
        }
    }
    Ok(())
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn money(v: f64) -> String {
    if v >= 1000.0 {
        format!("${v:.0}")
    } else if v >= 0.01 || v == 0.0 {
        format!("${v:.2}")
    } else {
        format!("${v:.4}")
    }
}

/// Small measured quantities keep four significant digits.
fn small(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        big(v)
    } else {
        let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
        format!("{v:.digits$}")
    }
}

fn big(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1}B", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Plain aligned text: one row per workload, its reasons under it.
pub fn render(a: &Advice) -> String {
    let mut s = format!(
        "window {} · scale {}x · profile {} · {} h/month · prices {} ({}, {}){}\n\n",
        human_ms(a.window_ms),
        a.scale,
        a.profile,
        a.hours_per_month,
        a.price_table.version,
        a.price_table.region,
        a.price_table.date,
        if a.free_tier { " · Lambda free tier applied" } else { "" }
    );
    let header = [
        "WORKLOAD",
        "KIND",
        "MEASURED",
        "MONTHLY",
        "LAMBDA/MO",
        "FARGATE/MO",
        "EC2/MO",
        "BREAK-EVEN/MO",
        "ADVICE",
    ];
    let mut rows: Vec<[String; 9]> = Vec::new();
    for w in &a.workloads {
        let cost = |model: &str| {
            w.options
                .iter()
                .find(|o| o.model == model)
                .map(|o| if o.allowed { money(o.monthly_usd) } else { "ruled out".into() })
                .unwrap_or_default()
        };
        let (measured, monthly) = if w.kind == "function" {
            (
                format!("{} inv, {} GB-s", w.measured.invocations, small(w.measured.gb_seconds)),
                format!("{} inv", big(w.monthly.invocations)),
            )
        } else {
            (
                format!(
                    "{} task-s, {:.0} % CPU",
                    big(w.measured.task_seconds),
                    w.measured.cpu_utilization * 100.0
                ),
                format!("{} task-h", big(w.monthly.task_hours)),
            )
        };
        rows.push([
            w.name.clone(),
            w.kind.clone(),
            measured,
            monthly,
            cost("Lambda"),
            cost("Fargate"),
            cost("EC2"),
            w.break_even_invocations_per_month
                .map(|n| format!("{} inv", big(n)))
                .unwrap_or_else(|| "-".into()),
            w.recommendation.clone(),
        ]);
    }
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            // Numbers right-aligned, words left-aligned.
            if (4..=7).contains(&i) {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            }
            l.push_str("  ");
        }
        l.trim_end().to_string() + "\n"
    };
    if rows.is_empty() {
        s.push_str("no functions or services ran in this window\n");
    } else {
        s.push_str(&line(&header.map(String::from)));
        for (r, w) in rows.iter().zip(&a.workloads) {
            s.push_str(&line(r));
            for reason in &w.reasons {
                s.push_str(&format!("    - {reason}\n"));
            }
            for o in &w.options {
                if o.allowed && !o.config.is_empty() {
                    s.push_str(&format!("      {}: {}\n", o.model, o.config));
                }
            }
        }
    }
    if !a.apis.is_empty() {
        s.push('\n');
        for api in &a.apis {
            s.push_str(&format!(
                "API {}: {} requests ({}/month) → HTTP API {}/month\n",
                api.api_id,
                api.requests,
                big(api.requests_per_month),
                money(api.http_api_monthly_usd)
            ));
            for r in &api.routes {
                s.push_str(&format!("    {}  {}\n", r.route_key, r.requests));
            }
        }
    }
    s.push_str(&format!(
        "\ntotal on the recommended options: {}/month\n",
        money(a.total_recommended_monthly_usd)
    ));
    s
}

fn human_ms(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if s >= 86_400.0 {
        format!("{:.1} d", s / 86_400.0)
    } else if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table_with_reasons() {
        let prices = PriceTable::default_table();
        let report = nimbus_usage::UsageReport {
            from_ms: 0,
            to_ms: 3_600_000,
            window_ms: 3_600_000,
            functions: vec![nimbus_usage::FunctionUsage {
                function_name: "hello".into(),
                function_arn: "arn:aws:lambda:us-east-1:000000000000:function:hello".into(),
                memory_mb: 128,
                architecture: "x86_64".into(),
                invocations: 10,
                gb_seconds: 0.125,
                idle_fraction: 0.99,
                peak_concurrency: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&nimbus_usage::advise(&report, &prices, &nimbus_usage::AdviseOptions::default()));
        assert!(text.contains("WORKLOAD"), "{text}");
        assert!(text.contains("hello"), "{text}");
        assert!(text.contains("spiky, idle 99 % of the time: Lambda"), "{text}");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(enc("a b,c"), "a%20b%2Cc");
        assert_eq!(enc("10x"), "10x");
    }
}
