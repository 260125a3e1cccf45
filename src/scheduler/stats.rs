//! Run counters since start, for `GET /api/v1/stats` and `GET /metrics`.
//!
//! Layer: pure (memory only). Owns the counts of fired, succeeded, failed, missed and skipped
//! runs and the fire lateness (scheduled time to the first attempt). Written by the scheduler
//! driver and by the handler queue's driver (`tasks`) when a handler run ends; read by the API.

use std::collections::VecDeque;

/// Lateness samples kept for the stats endpoint.
const LATENESS_SAMPLES: usize = 4096;

/// Counters since start, for `/api/v1/stats`.
#[derive(Default, Debug)]
pub struct RunStats {
    /// Runs started (webhooks executed, handler calls queued).
    pub fired: u64,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed after their last attempt.
    pub failed: u64,
    /// Fires recorded as missed (outside `misfire_grace`).
    pub missed: u64,
    /// Fires recorded as skipped (`max_instances` runs were going).
    pub skipped: u64,
    /// Milliseconds from scheduled time to the start of the first attempt, scheduled runs only.
    lateness_ms: VecDeque<u64>,
    /// The same, all of them since start, as a histogram for `GET /metrics`.
    pub lateness: Lateness,
}

/// Fire lateness (scheduled time to first attempt) in seconds, as a histogram.
#[derive(Debug, Clone)]
pub struct Lateness(pub crate::metrics::HistogramData);

impl Default for Lateness {
    fn default() -> Self {
        Lateness(crate::metrics::HistogramData::new(
            crate::metrics::LATENESS_BUCKETS,
        ))
    }
}

impl RunStats {
    /// Counts one scheduled run that started `ms` milliseconds after its scheduled time.
    pub(crate) fn lateness(&mut self, ms: u64) {
        if self.lateness_ms.len() == LATENESS_SAMPLES {
            self.lateness_ms.pop_front();
        }
        self.lateness_ms.push_back(ms);
        self.lateness.0.observe(ms as f64 / 1000.0);
    }

    /// (p50, p99, samples) of recent lateness.
    pub fn lateness_percentiles(&self) -> Option<(u64, u64, usize)> {
        if self.lateness_ms.is_empty() {
            return None;
        }
        let mut v: Vec<u64> = self.lateness_ms.iter().copied().collect();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        Some((at(0.50), at(0.99), v.len()))
    }
}
