//! Percentiles and the JSON shape of a reported figure.
use serde_json::{Value, json};
use std::time::Duration;

/// Sorted samples (in the unit chosen by the caller) with nearest-rank percentiles.
pub struct Samples {
    sorted: Vec<f64>,
}

impl Samples {
    pub fn new(mut values: Vec<f64>) -> Self {
        values.sort_by(|a, b| a.total_cmp(b));
        Samples { sorted: values }
    }

    /// Durations converted with `unit` (e.g. `as_ms`).
    pub fn from_durations(d: &[Duration], unit: fn(Duration) -> f64) -> Self {
        Self::new(d.iter().copied().map(unit).collect())
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Nearest-rank percentile: the smallest sample with at least `p`% of samples ≤ it.
    pub fn pct(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(f64::NAN)
    }

    pub fn mean(&self) -> f64 {
        self.sorted.iter().sum::<f64>() / self.sorted.len() as f64
    }
}

pub fn as_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn as_us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Rounds to 3 significant decimals so the JSON stays readable.
fn round(v: f64) -> f64 {
    if !v.is_finite() {
        return v;
    }
    (v * 1000.0).round() / 1000.0
}

/// How a figure is compared against its target.
#[derive(Clone, Copy)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

/// Every figure in the report is `{value, unit}`, plus `{target, met}` when it has one.
/// Figures with a target are also collected so the report can end with a summary.
#[derive(Default)]
pub struct Report {
    checks: Vec<Value>,
}

/// A figure without a target.
pub fn fig(value: f64, unit: &str) -> Value {
    json!({ "value": round(value), "unit": unit })
}

impl Report {
    /// A figure checked against `target`; `name` identifies it in the summary.
    pub fn checked(&mut self, name: &str, value: f64, unit: &str, target: Target) -> Value {
        let (text, met) = match target {
            Target::AtMost(t) => (format!("<= {t} {unit}"), value <= t),
            Target::AtLeast(t) => (format!(">= {t} {unit}"), value >= t),
        };
        self.checks
            .push(json!({ "figure": name, "value": round(value), "unit": unit, "target": text, "met": met }));
        json!({ "value": round(value), "unit": unit, "target": text, "met": met })
    }

    pub fn summary(&self) -> Value {
        let met = self.checks.iter().filter(|c| c["met"] == true).count();
        json!({ "targets_met": met, "targets_checked": self.checks.len(), "figures": self.checks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s = Samples::new((1..=100).map(f64::from).rev().collect());
        assert_eq!(s.pct(50.0), 50.0);
        assert_eq!(s.pct(99.0), 99.0);
        assert_eq!(s.pct(100.0), 100.0);
        assert_eq!(s.max(), 100.0);
        let one = Samples::new(vec![7.0]);
        assert_eq!(one.pct(50.0), 7.0);
        assert_eq!(one.pct(99.0), 7.0);
    }
}
