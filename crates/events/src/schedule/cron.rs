//! AWS's six-field cron: minutes hours day-of-month month day-of-week year, Quartz-flavoured
//! (`?`, `L`, `W`, `#`), day-of-week 1=SUN … 7=SAT, years 1970–2199, UTC.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, TimeZone, Timelike, Utc};

use super::ScheduleError;

const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2199;
const MONTHS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A parsed `cron(...)` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    source: String,
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    months: BTreeSet<u32>,
    years: BTreeSet<u32>,
    days: Days,
}

/// AWS requires `?` in exactly one of day-of-month and day-of-week; the other one rules.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Days {
    OfMonth(Vec<DayOfMonth>),
    OfWeek(Vec<DayOfWeek>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfMonth {
    Days(BTreeSet<u32>),
    /// `L`
    Last,
    /// `LW`
    LastWeekday,
    /// `nW`: the weekday nearest to day n, without leaving the month.
    NearestWeekday(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DayOfWeek {
    Days(BTreeSet<u32>),
    /// `nL`: the last such weekday of the month.
    Last(u32),
    /// `n#k`: the k-th such weekday of the month.
    Nth(u32, u32),
}

fn bad(reason: impl Into<String>) -> ScheduleError {
    ScheduleError::Cron { reason: reason.into() }
}

impl Cron {
    pub(super) fn parse_inner(inner: &str) -> Result<Cron, ScheduleError> {
        let fields: Vec<&str> = inner.split(' ').collect();
        if fields.len() != 6 || fields.iter().any(|f| f.is_empty()) {
            return Err(bad("expected six fields separated by single spaces"));
        }
        let minutes = field_values(fields[0], "minutes", 0, 59, &[])?;
        let hours = field_values(fields[1], "hours", 0, 23, &[])?;
        let months = field_values(fields[3], "month", 1, 12, &MONTHS)?;
        let years = field_values(fields[5], "year", FIRST_YEAR as u32, LAST_YEAR as u32, &[])?;
        let days = match (fields[2], fields[4]) {
            ("?", "?") => return Err(bad("only one of day-of-month and day-of-week may be ?")),
            ("?", dow) => Days::OfWeek(day_of_week(dow)?),
            (dom, "?") => Days::OfMonth(day_of_month(dom)?),
            _ => return Err(bad("one of day-of-month and day-of-week must be ?")),
        };
        Ok(Cron { source: format!("cron({inner})"), minutes, hours, months, years, days })
    }

    /// The first minute strictly after `t` that the expression selects, if any before 2200.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let floor = t.with_second(0)?.with_nanosecond(0)?;
        let start = floor.checked_add_signed(TimeDelta::minutes(1))?;
        let from = (start.year(), start.month(), start.day(), start.hour(), start.minute());
        for year in from.0.max(FIRST_YEAR)..=LAST_YEAR {
            if !self.years.contains(&(year as u32)) {
                continue;
            }
            for &month in &self.months {
                if (year, month) < (from.0, from.1) {
                    continue;
                }
                let last = days_in_month(year, month)?;
                for day in 1..=last {
                    if (year, month, day) < (from.0, from.1, from.2)
                        || !self.day_selected(year, month, day)?
                    {
                        continue;
                    }
                    let today = (year, month, day) == (from.0, from.1, from.2);
                    for &hour in &self.hours {
                        if today && hour < from.3 {
                            continue;
                        }
                        let this_hour = today && hour == from.3;
                        if let Some(&minute) = self.minutes.iter().find(|&&m| !this_hour || m >= from.4) {
                            return Utc.with_ymd_and_hms(year, month, day, hour, minute, 0).single();
                        }
                    }
                }
            }
        }
        None
    }

    fn day_selected(&self, year: i32, month: u32, day: u32) -> Option<bool> {
        let last = days_in_month(year, month)?;
        let weekday =
            |d: u32| NaiveDate::from_ymd_opt(year, month, d).map(|n| n.weekday().number_from_sunday());
        Some(match &self.days {
            Days::OfMonth(items) => {
                let mut any = false;
                for item in items {
                    any |= match item {
                        DayOfMonth::Days(set) => set.contains(&day),
                        DayOfMonth::Last => day == last,
                        DayOfMonth::LastWeekday => day == nearest_weekday(last, last, weekday(last)?),
                        DayOfMonth::NearestWeekday(n) => {
                            *n <= last && day == nearest_weekday(*n, last, weekday(*n)?)
                        }
                    };
                }
                any
            }
            Days::OfWeek(items) => {
                let wd = weekday(day)?;
                items.iter().any(|item| match item {
                    DayOfWeek::Days(set) => set.contains(&wd),
                    DayOfWeek::Last(d) => wd == *d && day + 7 > last,
                    DayOfWeek::Nth(d, k) => wd == *d && (day - 1) / 7 + 1 == *k,
                })
            }
        })
    }
}

/// Quartz's `W`: Saturday moves to Friday and Sunday to Monday, unless that leaves the month.
fn nearest_weekday(n: u32, last: u32, weekday: u32) -> u32 {
    match weekday {
        7 if n == 1 => 3,
        7 => n - 1,
        1 if n == last => n - 2,
        1 => n + 1,
        _ => n,
    }
}

fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    u32::try_from((next - first).num_days()).ok()
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A number or (for month and day-of-week) a three-letter name, case-insensitively.
fn value(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, ScheduleError> {
    let v = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u32>().map_err(|_| bad(format!("{name}: {text} is out of range")))?
    } else if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        min + i as u32
    } else {
        return Err(bad(format!("{name}: {text:?} is not a value")));
    };
    if v < min || v > max {
        return Err(bad(format!("{name}: {v} is outside {min}-{max}")));
    }
    Ok(v)
}

/// One comma-separated item: `*`, `v`, `a-b`, each optionally `/step` (`*/s`, `v/s`, `a-b/s`).
/// Ranges may wrap (`FRI-MON`, `22-2`), as in Quartz.
fn item_values(
    item: &str,
    name: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<BTreeSet<u32>, ScheduleError> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => {
            let s = if !step.is_empty() && step.bytes().all(|b| b.is_ascii_digit()) {
                step.parse::<u32>().ok()
            } else {
                None
            };
            // Quartz refuses increments beyond the field's largest value; years take any.
            match s {
                Some(s) if s >= 1 && (s <= max || name == "year") => (base, s),
                _ => return Err(bad(format!("{name}: bad increment {step:?}"))),
            }
        }
        None => (item, 1),
    };
    let explicit_step = item.contains('/');
    let (from, to) = if base == "*" {
        (min, max)
    } else if let Some((a, b)) = base.split_once('-') {
        (value(a, name, min, max, names)?, value(b, name, min, max, names)?)
    } else {
        let v = value(base, name, min, max, names)?;
        // `v/s` runs from v to the end of the field; a bare `v` is just v.
        (v, if explicit_step { max } else { v })
    };
    let span = max - min + 1;
    let length = (to + span - from) % span + 1;
    Ok((0..length).step_by(step as usize).map(|k| min + (from - min + k) % span).collect())
}

fn field_values(
    field: &str,
    name: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<BTreeSet<u32>, ScheduleError> {
    let mut out = BTreeSet::new();
    for item in field.split(',') {
        out.extend(item_values(item, name, min, max, names)?);
    }
    Ok(out)
}

fn day_of_month(field: &str) -> Result<Vec<DayOfMonth>, ScheduleError> {
    let mut items = Vec::new();
    for item in field.split(',') {
        items.push(match item {
            "L" => DayOfMonth::Last,
            "LW" => DayOfMonth::LastWeekday,
            _ => match item.strip_suffix('W') {
                Some(n) => DayOfMonth::NearestWeekday(value(n, "day-of-month", 1, 31, &[])?),
                None => DayOfMonth::Days(item_values(item, "day-of-month", 1, 31, &[])?),
            },
        });
    }
    Ok(items)
}

fn day_of_week(field: &str) -> Result<Vec<DayOfWeek>, ScheduleError> {
    if let Some((d, k)) = field.split_once('#') {
        // AWS: with `#`, the field holds that one expression only.
        let d = value(d, "day-of-week", 1, 7, &DAYS)?;
        let k = value(k, "day-of-week instance", 1, 5, &[])?;
        return Ok(vec![DayOfWeek::Nth(d, k)]);
    }
    let mut items = Vec::new();
    for item in field.split(',') {
        items.push(match item {
            // `L` alone is the last day of the week: Saturday.
            "L" => DayOfWeek::Days(BTreeSet::from([7])),
            _ => match item.strip_suffix('L') {
                Some(d) => DayOfWeek::Last(value(d, "day-of-week", 1, 7, &DAYS)?),
                None => DayOfWeek::Days(item_values(item, "day-of-week", 1, 7, &DAYS)?),
            },
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::super::Schedule;
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
    }

    fn next(expr: &str, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Schedule::Cron(c) = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {}", e.reason()))
        else {
            panic!("{expr} is not a cron");
        };
        c.next_after(t)
    }

    /// The examples of EventBridge's "Schedule expressions for rules" page.
    #[test]
    fn documented_examples() {
        // 10:00 every day.
        assert_eq!(next("cron(0 10 * * ? *)", at(2024, 1, 1, 9, 59, 59)), Some(at(2024, 1, 1, 10, 0, 0)));
        assert_eq!(next("cron(0 10 * * ? *)", at(2024, 1, 1, 10, 0, 0)), Some(at(2024, 1, 2, 10, 0, 0)));
        // 12:15 every day.
        assert_eq!(next("cron(15 12 * * ? *)", at(2024, 3, 10, 12, 15, 0)), Some(at(2024, 3, 11, 12, 15, 0)));
        // 18:00 Monday to Friday: from Friday 2024-01-05 evening to Monday.
        assert_eq!(
            next("cron(0 18 ? * MON-FRI *)", at(2024, 1, 5, 18, 0, 0)),
            Some(at(2024, 1, 8, 18, 0, 0))
        );
        // 08:00 on the first of the month.
        assert_eq!(next("cron(0 8 1 * ? *)", at(2024, 1, 1, 8, 0, 0)), Some(at(2024, 2, 1, 8, 0, 0)));
        // Every 15 minutes.
        assert_eq!(next("cron(0/15 * * * ? *)", at(2024, 1, 1, 0, 7, 30)), Some(at(2024, 1, 1, 0, 15, 0)));
        assert_eq!(next("cron(0/15 * * * ? *)", at(2024, 1, 1, 23, 45, 0)), Some(at(2024, 1, 2, 0, 0, 0)));
        // Every 10 minutes, weekdays: Friday 23:55 goes to Monday 00:00.
        assert_eq!(
            next("cron(0/10 * ? * MON-FRI *)", at(2024, 1, 5, 23, 55, 0)),
            Some(at(2024, 1, 8, 0, 0, 0))
        );
        // Every 5 minutes 08:00–17:55, weekdays.
        assert_eq!(
            next("cron(0/5 8-17 ? * MON-FRI *)", at(2024, 1, 8, 17, 55, 0)),
            Some(at(2024, 1, 9, 8, 0, 0))
        );
        assert_eq!(
            next("cron(0/5 8-17 ? * MON-FRI *)", at(2024, 1, 8, 12, 31, 0)),
            Some(at(2024, 1, 8, 12, 35, 0))
        );
        // 09:00 on the first Monday of the month (2024-01-01 was one; next is 2024-02-05).
        assert_eq!(next("cron(0 9 ? * 2#1 *)", at(2024, 1, 1, 9, 0, 0)), Some(at(2024, 2, 5, 9, 0, 0)));
        // Every 30 minutes, 20:00–23:59 and 00:00–02:59 weekdays.
        assert_eq!(
            next("cron(0/30 20-23 ? * MON-FRI *)", at(2024, 1, 8, 23, 30, 0)),
            Some(at(2024, 1, 9, 20, 0, 0))
        );
        assert_eq!(
            next("cron(0/30 0-2 ? * MON-FRI *)", at(2024, 1, 6, 12, 0, 0)),
            Some(at(2024, 1, 8, 0, 0, 0))
        );
    }

    #[test]
    fn last_weekday_and_nth() {
        // L: last day of February in a leap year.
        assert_eq!(next("cron(0 0 L * ? *)", at(2024, 2, 1, 0, 0, 0)), Some(at(2024, 2, 29, 0, 0, 0)));
        assert_eq!(next("cron(0 0 L * ? *)", at(2023, 2, 1, 0, 0, 0)), Some(at(2023, 2, 28, 0, 0, 0)));
        // LW: 2024-03-31 is a Sunday, so the last weekday is Friday the 29th.
        assert_eq!(next("cron(0 0 LW * ? *)", at(2024, 3, 1, 0, 0, 0)), Some(at(2024, 3, 29, 0, 0, 0)));
        // 15W: 2024-06-15 is a Saturday, so Friday the 14th.
        assert_eq!(next("cron(0 0 15W * ? *)", at(2024, 6, 1, 0, 0, 0)), Some(at(2024, 6, 14, 0, 0, 0)));
        // 1W: 2024-06-01 is a Saturday; W does not leave the month, so Monday the 3rd.
        assert_eq!(next("cron(0 0 1W * ? *)", at(2024, 5, 31, 0, 0, 0)), Some(at(2024, 6, 3, 0, 0, 0)));
        // 6L: the last Friday (6=FRI) of January 2024 is the 26th.
        assert_eq!(next("cron(0 0 ? * 6L *)", at(2024, 1, 1, 0, 0, 0)), Some(at(2024, 1, 26, 0, 0, 0)));
        assert_eq!(next("cron(0 0 ? * FRIL *)", at(2024, 1, 1, 0, 0, 0)), Some(at(2024, 1, 26, 0, 0, 0)));
        // 3#2: the second Tuesday of January 2024 is the 9th.
        assert_eq!(next("cron(0 0 ? * 3#2 *)", at(2024, 1, 1, 0, 0, 0)), Some(at(2024, 1, 9, 0, 0, 0)));
        // L in day-of-week alone is Saturday.
        assert_eq!(next("cron(0 0 ? * L *)", at(2024, 1, 1, 0, 0, 0)), Some(at(2024, 1, 6, 0, 0, 0)));
        // A fifth Monday only exists in some months: April 2024 has none, July 2024 does.
        assert_eq!(next("cron(0 0 ? * MON#5 *)", at(2024, 4, 1, 0, 0, 0)), Some(at(2024, 4, 29, 0, 0, 0)));
        assert_eq!(next("cron(0 0 ? * MON#5 *)", at(2024, 4, 30, 0, 0, 0)), Some(at(2024, 7, 29, 0, 0, 0)));
    }

    #[test]
    fn lists_ranges_steps_names_years() {
        assert_eq!(
            next("cron(0 10,15 ? * SAT,SUN *)", at(2024, 1, 6, 10, 0, 0)),
            Some(at(2024, 1, 6, 15, 0, 0))
        );
        assert_eq!(next("cron(*/20 * * * ? *)", at(2024, 1, 1, 0, 41, 0)), Some(at(2024, 1, 1, 1, 0, 0)));
        assert_eq!(next("cron(5-15/5 * * * ? *)", at(2024, 1, 1, 0, 15, 0)), Some(at(2024, 1, 1, 1, 5, 0)));
        assert_eq!(next("cron(0 22-2 * * ? *)", at(2024, 1, 1, 2, 30, 0)), Some(at(2024, 1, 1, 22, 0, 0)));
        assert_eq!(next("cron(0 0 1 jan ? *)", at(2024, 6, 1, 0, 0, 0)), Some(at(2025, 1, 1, 0, 0, 0)));
        assert_eq!(next("cron(0 0 29 2 ? *)", at(2024, 3, 1, 0, 0, 0)), Some(at(2028, 2, 29, 0, 0, 0)));
        assert_eq!(next("cron(0 12 1 1 ? 2025-2026)", at(2026, 1, 1, 12, 0, 0)), None);
        assert_eq!(next("cron(0 12 1 1 ? 2025/2)", at(2025, 6, 1, 0, 0, 0)), Some(at(2027, 1, 1, 12, 0, 0)));
        assert_eq!(next("cron(0 0 30 2 ? *)", at(2024, 1, 1, 0, 0, 0)), None);
        assert_eq!(next("cron(59 23 31 12 ? 2199)", at(2199, 12, 31, 23, 59, 0)), None);
        // Before 1970 the search starts in 1970.
        assert_eq!(next("cron(0 0 1 1 ? *)", at(1960, 5, 5, 0, 0, 0)), Some(at(1970, 1, 1, 0, 0, 0)));
    }

    #[test]
    fn invalid_expressions() {
        for bad in [
            "cron(0 10 * * * *)",      // neither day field is ?
            "cron(0 10 ? * ? *)",      // both are
            "cron(0 10 * * ?)",        // five fields
            "cron(0 10 * * ? * *)",    // seven fields
            "cron(60 10 * * ? *)",     // minute out of range
            "cron(0 24 * * ? *)",      // hour out of range
            "cron(0 0 32 * ? *)",      // day out of range
            "cron(0 0 0 * ? *)",       // days start at 1
            "cron(0 0 1 13 ? *)",      // month out of range
            "cron(0 0 ? * 8 *)",       // day-of-week out of range
            "cron(0 0 ? * 0 *)",       // day-of-week starts at 1 (SUN)
            "cron(0 0 1 * ? 1969)",    // year out of range
            "cron(0 0 1 * ? 2200)",    // year out of range
            "cron(0 0 ? * 3#1,6#3 *)", // one # expression only
            "cron(0 0 ? * 3#6 *)",     // no sixth weekday
            "cron(0 0 1#1 * ? *)",     // # only in day-of-week
            "cron(0 0 ? * 5W *)",      // W only in day-of-month
            "cron(L 0 1 * ? *)",       // L only in day fields
            "cron(0/0 * * * ? *)",     // zero increment
            "cron(0/60 * * * ? *)",    // increment past the field
            "cron(0 0 1 FOO ? *)",     // unknown name
            "cron(0 ? 1 * ? *)",       // ? only in day fields
            "cron(0  10 * * ? *)",     // double space
            "cron( 0 10 * * ? *)",
            "cron(0 10 * * ? *) ",
            "CRON(0 10 * * ? *)",
            "cron()",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
