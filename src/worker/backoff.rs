//! Retry delays: exponential in the attempt number, capped, with jitter so a burst of
//! failures (a forge outage) does not come back as a burst.

use std::time::Duration;

const CAP: Duration = Duration::from_secs(15 * 60);

/// `jitter` in `[0, 1)` maps to ±20 % of the delay.
pub fn delay(base: Duration, attempt: i32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).clamp(0, 20) as u32;
    let raw = base.saturating_mul(2u32.saturating_pow(exp)).min(CAP);
    raw.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_attempt_and_is_capped() {
        let base = Duration::from_secs(10);
        assert_eq!(delay(base, 1, 0.5), Duration::from_secs(10));
        assert_eq!(delay(base, 2, 0.5), Duration::from_secs(20));
        assert_eq!(delay(base, 3, 0.5), Duration::from_secs(40));
        assert_eq!(delay(base, 50, 0.5), CAP);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let base = Duration::from_secs(10);
        assert_eq!(delay(base, 1, 0.0), Duration::from_secs(8));
        assert!(delay(base, 1, 0.999) < Duration::from_secs(12));
    }
}
