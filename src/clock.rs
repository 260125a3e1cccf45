//! The wall clock of the scheduler and the task queue, read in one place.
//!
//! Layer: driver. The scheduler's driver ([`crate::scheduler`]) and the task queue's driver
//! ([`crate::tasks`]) read the time only through a [`Clock`] they are handed, and pass it to
//! their sans-IO cores ([`crate::sched::Core`], [`crate::queue::Core`]) as `now`. Tests hand
//! both one virtual clock and move it by hand, so fire times, lease expiry and retries run
//! under virtual time. Sleeping (how long to wait in real time) stays with each driver.
#![allow(clippy::disallowed_methods)] // the one reader of the wall clock for these drivers

#[cfg(test)]
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

/// Where a driver gets `now` from.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system's wall clock.
    System,
    /// A virtual clock that tests set by hand.
    #[cfg(test)]
    Virtual(Arc<Mutex<Timestamp>>),
}

impl Clock {
    /// The current time on this clock.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            #[cfg(test)]
            Clock::Virtual(t) => *t.lock().unwrap(),
        }
    }
}
