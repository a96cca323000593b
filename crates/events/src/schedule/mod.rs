//! EventBridge schedule expressions: `rate(value unit)` and six-field `cron(...)`, always UTC.

mod cron;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};

pub use cron::Cron;

/// AWS's limit on `ScheduleExpression`.
const MAX_EXPRESSION_LEN: usize = 256;

/// Why a schedule expression was refused. Every variant displays as AWS's
/// `ValidationException` message; [`ScheduleError::reason`] says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Neither `rate(...)` nor `cron(...)`, or longer than AWS allows.
    #[error("Parameter ScheduleExpression is not valid.")]
    Unrecognized { reason: String },
    #[error("Parameter ScheduleExpression is not valid.")]
    Rate { reason: String },
    #[error("Parameter ScheduleExpression is not valid.")]
    Cron { reason: String },
}

impl ScheduleError {
    /// A human explanation (AWS itself gives none).
    pub fn reason(&self) -> &str {
        match self {
            ScheduleError::Unrecognized { reason }
            | ScheduleError::Rate { reason }
            | ScheduleError::Cron { reason } => reason,
        }
    }
}

/// A rule's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Rate(Rate),
    Cron(Cron),
}

impl Schedule {
    /// Parses with AWS's rules: exact `rate(` / `cron(` syntax, no surrounding whitespace.
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(ScheduleError::Unrecognized {
                reason: format!("longer than {MAX_EXPRESSION_LEN} characters"),
            });
        }
        if let Some(inner) = expression.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
            return Rate::parse_inner(inner).map(Schedule::Rate);
        }
        if let Some(inner) = expression.strip_prefix("cron(").and_then(|s| s.strip_suffix(')')) {
            return Cron::parse_inner(inner).map(Schedule::Cron);
        }
        Err(ScheduleError::Unrecognized { reason: "expected rate(...) or cron(...)".into() })
    }

    /// The first fire time strictly after `t`, or `None` if there is none (a cron past its
    /// last year). `anchor` is when a rate schedule started (rule creation or enabling); cron
    /// schedules ignore it.
    pub fn next_after(&self, anchor: DateTime<Utc>, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Rate(r) => r.next_after(anchor, t),
            Schedule::Cron(c) => c.next_after(t),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Rate(r) => r.fmt(f),
            Schedule::Cron(c) => c.fmt(f),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Schedule::parse(&text).map_err(|e| serde::de::Error::custom(format!("{e} ({})", e.reason())))
    }
}

/// The unit of a rate expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateUnit {
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    fn seconds(self) -> i64 {
        match self {
            RateUnit::Minute => 60,
            RateUnit::Hour => 3_600,
            RateUnit::Day => 86_400,
        }
    }

    fn name(self, value: u32) -> &'static str {
        match (self, value == 1) {
            (RateUnit::Minute, true) => "minute",
            (RateUnit::Minute, false) => "minutes",
            (RateUnit::Hour, true) => "hour",
            (RateUnit::Hour, false) => "hours",
            (RateUnit::Day, true) => "day",
            (RateUnit::Day, false) => "days",
        }
    }
}

/// `rate(value unit)`: fires every `value` units, counted from an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    value: u32,
    unit: RateUnit,
}

impl Rate {
    fn parse_inner(inner: &str) -> Result<Rate, ScheduleError> {
        let bad = |reason: &str| ScheduleError::Rate { reason: reason.into() };
        let (value, unit) = inner.split_once(' ').ok_or_else(|| bad("expected `value unit`"))?;
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the value must be a positive whole number"));
        }
        let value: u32 = value.parse().map_err(|_| bad("the value is too large"))?;
        if value == 0 {
            return Err(bad("the value must be a positive whole number"));
        }
        let unit = [RateUnit::Minute, RateUnit::Hour, RateUnit::Day]
            .into_iter()
            .find(|u| u.name(value) == unit)
            .ok_or_else(|| bad("the unit must be minute, hour or day: singular for 1, plural otherwise"))?;
        Ok(Rate { value, unit })
    }

    pub fn value(&self) -> u32 {
        self.value
    }

    pub fn unit(&self) -> RateUnit {
        self.unit
    }

    /// The time between two fires.
    pub fn period(&self) -> TimeDelta {
        TimeDelta::seconds(i64::from(self.value) * self.unit.seconds())
    }

    /// The first of `anchor + k·period` (k ≥ 1) strictly after `t`. A rate first fires one
    /// period after it starts, not at the start.
    pub fn next_after(&self, anchor: DateTime<Utc>, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let period = i64::from(self.value) * self.unit.seconds();
        let elapsed = (t - anchor).num_seconds();
        // num_seconds truncates toward zero, which is floor for the non-negative case; for t
        // before the anchor the first fire is the answer anyway.
        let k = if elapsed < 0 { 1 } else { elapsed / period + 1 };
        let candidate = anchor.checked_add_signed(TimeDelta::try_seconds(k.checked_mul(period)?)?)?;
        if candidate > t {
            Some(candidate)
        } else {
            // Sub-second remainders: `t` sat exactly on (or just past) a fire time.
            candidate.checked_add_signed(TimeDelta::try_seconds(period)?)
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate({} {})", self.value, self.unit.name(self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
    }

    #[test]
    fn rate_syntax() {
        for ok in [
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 hour)",
            "rate(12 hours)",
            "rate(1 day)",
            "rate(7 days)",
        ] {
            assert_eq!(Schedule::parse(ok).unwrap().to_string(), ok);
        }
        // The invalid forms AWS answers with "Parameter ScheduleExpression is not valid."
        for bad in [
            "rate(10 seconds)",
            "rate(10 years)",
            "rate(1 minutes)",
            "rate(1 hours)",
            "rate(1 days)",
            "rate(10 minute)",
            "rate(10 hour)",
            "rate(10 day)",
            "rate()",
            "rate(10)",
            "rate(10 minutess)",
            "rate(foo minutes)",
            "rate(0 minutes)",
            "rate(-10 minutes)",
            "rate(10 MINUTES)",
            "rate( 10 minutes )",
            " rate(10 minutes)",
            "rate(+5 minutes)",
            "rate(5.5 minutes)",
            "rate(5  minutes)",
            "rate(99999999999 minutes)",
            "every 5 minutes",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert_eq!(e.to_string(), "Parameter ScheduleExpression is not valid.", "{bad}");
        }
    }

    #[test]
    fn rate_fires_every_period_after_the_anchor() {
        let anchor = at(2024, 1, 1, 12, 0, 30);
        let r = Schedule::parse("rate(5 minutes)").unwrap();
        assert_eq!(r.next_after(anchor, anchor), Some(at(2024, 1, 1, 12, 5, 30)));
        assert_eq!(r.next_after(anchor, at(2024, 1, 1, 12, 5, 29)), Some(at(2024, 1, 1, 12, 5, 30)));
        assert_eq!(r.next_after(anchor, at(2024, 1, 1, 12, 5, 30)), Some(at(2024, 1, 1, 12, 10, 30)));
        assert_eq!(r.next_after(anchor, at(2023, 12, 31, 0, 0, 0)), Some(at(2024, 1, 1, 12, 5, 30)));
        let t = at(2024, 1, 1, 12, 5, 30) + TimeDelta::milliseconds(1);
        assert_eq!(r.next_after(anchor, t), Some(at(2024, 1, 1, 12, 10, 30)));
        let day = Schedule::parse("rate(1 day)").unwrap();
        assert_eq!(day.next_after(anchor, at(2024, 3, 1, 0, 0, 0)), Some(at(2024, 3, 1, 12, 0, 30)));
        let Schedule::Rate(rate) = Schedule::parse("rate(2 hours)").unwrap() else { panic!() };
        assert_eq!((rate.value(), rate.unit(), rate.period()), (2, RateUnit::Hour, TimeDelta::hours(2)));
    }

    #[test]
    fn serde_as_text() {
        let s = Schedule::parse("cron(0 10 * * ? *)").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""cron(0 10 * * ? *)""#);
        let back: Schedule = serde_json::from_str(r#""rate(1 day)""#).unwrap();
        assert_eq!(back.to_string(), "rate(1 day)");
        assert!(serde_json::from_str::<Schedule>(r#""rate(1 days)""#).is_err());
    }
}
