//! Retry delay: exponential in the attempt number, capped, with full jitter so tasks
//! requeued together (a node died) do not all come back in the same instant.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Capped at 30 s; the base is the coordinator's `--retry-base-ms`.
    pub fn new(base: Duration) -> Self {
        Backoff {
            base,
            max: Duration::from_secs(30),
        }
    }

    /// Delay before attempt `next_attempt` (2 = first retry).
    pub fn delay(&self, next_attempt: u32) -> Duration {
        let exp = next_attempt.saturating_sub(2).min(16);
        let ceiling = self.base.saturating_mul(1u32 << exp).min(self.max);
        // Half fixed, half random: never zero, never more than the ceiling.
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_attempts_and_stays_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let d2 = b.delay(2);
            assert!(d2 >= Duration::from_millis(50) && d2 <= Duration::from_millis(100));
            let d4 = b.delay(4);
            assert!(d4 >= Duration::from_millis(200) && d4 <= Duration::from_millis(400));
            assert!(b.delay(30) <= Duration::from_secs(1));
        }
    }
}
