//! EventBridge's two small languages, as pure functions: event patterns (parse, validate and
//! match, with the semantics of AWS's reference matcher aws/event-ruler) and schedule
//! expressions (`rate(...)` / `cron(...)`, next fire time in UTC). No I/O, no clock reads.
#![forbid(unsafe_code)]

pub mod pattern;
pub mod schedule;

pub use pattern::{FlatEvent, Pattern, PatternError};
pub use schedule::{Cron, Rate, RateUnit, Schedule, ScheduleError};
