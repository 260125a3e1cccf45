//! The job scheduler: job specs, triggers and the sans-IO scheduling core.
//!
//! Layer: pure logic, below the driver, the API and the store. Owns the job model
//! ([`spec`]: JSON in, valid-only [`JobSpec`] out), trigger time arithmetic including time zones
//! and daylight saving time ([`trigger`]), APScheduler triggers translated for ScheduleZero
//! clients ([`apscheduler`]), and the core that decides which job fires when
//! ([`core`]: `handle_timeout(now)`, `poll_fire()`, `poll_timeout()`). May touch `jiff`,
//! `croner`, `serde_json` and hyper's `Uri`/`Method`/header types; never sockets, files (beyond
//! the time zone database lookup in [`Zone::get`]), clocks or OS randomness: every function
//! that needs the time takes `now`. Contract: tests run under virtual time, and the same inputs
//! always give the same outputs, jitter included.
//!
//! What lives elsewhere: persisting specs and `next_fire_at` (the store, fed by
//! [`Core::take_dirty`]), executing webhooks with retries and timeouts, run history, and the
//! HTTP API. They build on the types re-exported here.

pub mod apscheduler;
pub mod core;
pub mod spec;
pub mod trigger;

#[cfg(test)]
mod tests;

pub use self::core::{Core, Fire, FireKind, Schedule, MAX_LISTED_PER_CALL};
pub use self::spec::{
    check_method_name, format_duration, parse_duration, Action, DurationError, HandlerCall,
    JobDraft, JobId, JobIdError, JobSpec, JsonBody, Retry, SpecError, Webhook,
};
pub use self::trigger::{CronExpr, CronExprError, Trigger, Zone, ZoneError};
