//! One retry-delay policy for every retry loop in tradewind.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Exponential retry delay: `initial` doubling up to `max`, never giving up, with [`Backoff::reset`]
/// after a success. One policy for every retry loop in tradewind (the ingest's source reconnects, the
/// engine's MySQL retries).
///
/// The delays come from backon's [`ExponentialBuilder`]; the loops themselves stay with their
/// callers rather than backon's `Retryable`, because an attempt there is a whole websocket session or
/// a commit that must be interruptible by shutdown and must report readiness while it waits, and the
/// ingest resets the delay after a session that delivered data.
#[derive(Debug)]
pub struct Backoff {
    policy: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `initial`, doubling, capped at `max`, never giving up.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let policy = ExponentialBuilder::new()
            .with_min_delay(initial)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times();
        Backoff {
            policy,
            delays: policy.build(),
            max,
        }
    }

    /// The delay to wait now; doubles the following one (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        // Without a retry limit the policy never ends; the cap is the safe answer if it did.
        self.delays.next().unwrap_or(self.max)
    }

    /// Back to the initial delay (after a success, e.g. a session that delivered data).
    pub fn reset(&mut self) {
        self.delays = self.policy.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(125), Duration::from_secs(60));
        let seq: Vec<u64> = (0..12).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            seq,
            [125, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(125));
        // A cap that is not a power-of-two multiple of the start is reached exactly.
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let seq: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(seq, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }
}
