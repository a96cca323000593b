//! Nimbus's own (non-AWS) usage endpoints, for `nimbus advise` and the console:
//! `GET /_nimbus/usage?from=&to=` (raw usage over a window, epoch ms) and
//! `GET /_nimbus/advise?window=1h|24h|7d|all&scale=10x&profile=steady&free_tier=true`.
use crate::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_usage::{AdviseOptions, Profile, UsageError, UsageReport};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    from: Option<u64>,
    to: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AdviseQuery {
    window: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    scale: Option<String>,
    profile: Option<String>,
    free_tier: Option<bool>,
    /// Comma-separated workload names holding long-lived connections.
    long_lived: Option<String>,
    /// Comma-separated workload names needing a GPU.
    gpu: Option<String>,
}

fn message(status: StatusCode, text: impl std::fmt::Display) -> Response {
    (status, axum::Json(serde_json::json!({ "message": text.to_string() }))).into_response()
}

fn error(e: UsageError) -> Response {
    match e {
        UsageError::InvalidOption(_) | UsageError::Prices(_) => message(StatusCode::BAD_REQUEST, e),
        other => message(StatusCode::INTERNAL_SERVER_ERROR, other),
    }
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

fn names(list: &Option<String>) -> Vec<String> {
    list.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads usage off the async workers (it lists Store collections), with gateway requests
/// credited to the services behind them.
async fn read_usage(acc: nimbus_usage::Accounting, from: u64, to: u64) -> Result<UsageReport, UsageError> {
    match tokio::task::spawn_blocking(move || acc.report(from, to)).await {
        Ok(r) => r,
        Err(e) => Err(UsageError::Corrupt(format!("usage query failed: {e}"))),
    }
}

pub async fn usage(State(s): State<AppState>, Query(q): Query<UsageQuery>) -> Response {
    let Some(acc) = s.usage.clone() else {
        return message(StatusCode::NOT_FOUND, "usage accounting is not enabled on this server");
    };
    let to = q.to.unwrap_or_else(now_ms);
    match read_usage(acc, q.from.unwrap_or(0), to).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => error(e),
    }
}

pub async fn advise(State(s): State<AppState>, Query(q): Query<AdviseQuery>) -> Response {
    let Some(acc) = s.usage.clone() else {
        return message(StatusCode::NOT_FOUND, "usage accounting is not enabled on this server");
    };
    let opts = match options(&q) {
        Ok(o) => o,
        Err(e) => return error(e),
    };
    let to = q.to.unwrap_or_else(now_ms);
    let from = match (q.from, q.window.as_deref().map(nimbus_usage::parse_window)) {
        (Some(f), _) => f,
        (None, Some(Err(e))) => return error(e),
        (None, Some(Ok(Some(w)))) => to.saturating_sub(w),
        (None, Some(Ok(None))) | (None, None) => 0,
    };
    let prices = acc.prices.clone();
    match read_usage(acc, from, to).await {
        Ok(report) => axum::Json(nimbus_usage::advise(&report, &prices, &opts)).into_response(),
        Err(e) => error(e),
    }
}

fn options(q: &AdviseQuery) -> Result<AdviseOptions, UsageError> {
    Ok(AdviseOptions {
        scale: match q.scale.as_deref() {
            Some(s) => nimbus_usage::parse_scale(s)?,
            None => 1.0,
        },
        profile: match q.profile.as_deref() {
            Some(p) => p.parse::<Profile>()?,
            None => Profile::Measured,
        },
        free_tier: q.free_tier.unwrap_or(false),
        long_lived_connections: names(&q.long_lived),
        gpu: names(&q.gpu),
        ..AdviseOptions::default()
    })
}
