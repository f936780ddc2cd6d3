//! The one place that reads wall time.
//!
//! The routing core takes time as an argument; the shell asks this module for
//! it. Nothing else in the crate may call `SystemTime::now()` or
//! `Instant::now()`, so that time is easy to find, fake and reason about.
//! This module must never hold state or block.

use crate::routing::Millis;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A monotonic instant, for measuring latencies and idle time only.
pub fn instant() -> Instant {
    Instant::now()
}

/// Seconds elapsed since `start`, as a float (for histograms).
pub fn elapsed_secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_2020_and_monotonic_helper_moves_forward() {
        assert!(now_ms() > 1_577_836_800_000);
        let start = instant();
        assert!(elapsed_secs(start) >= 0.0);
    }
}
