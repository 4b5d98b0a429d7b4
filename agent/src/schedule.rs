//! When to renew and how long to wait after a failure (pure: the caller passes
//! `now` and the randomness).
//!
//! Like kubelet's pod-certificate manager, a certificate is renewed at a
//! jittered point of its validity so that pods started together do not renew
//! together: uniformly between 50% and 75% of `notBefore..notAfter`. Failed
//! attempts are retried with capped exponential backoff while the last good
//! credentials keep being served.

use std::time::{Duration, SystemTime};

/// The earliest point of the validity at which a certificate is renewed.
pub const RENEW_FROM_FRACTION: f64 = 0.50;
/// The latest point of the validity at which a certificate is renewed.
pub const RENEW_UNTIL_FRACTION: f64 = 0.75;

/// When to renew a certificate valid from `not_before` to `not_after`.
///
/// `jitter` is a uniform random number in `[0, 1)` (values outside are
/// clamped); the result lies between [`RENEW_FROM_FRACTION`] and
/// [`RENEW_UNTIL_FRACTION`] of the validity. `renew_after` (a test-only
/// override, see `--renew-after`) replaces it by a fixed delay after
/// `received` (when the agent got the certificate: signers backdate
/// notBefore), never later than the jittered point. A validity that is empty
/// or reversed renews at `not_before`.
pub fn renewal_time(
    not_before: SystemTime,
    not_after: SystemTime,
    received: SystemTime,
    jitter: f64,
    renew_after: Option<Duration>,
) -> SystemTime {
    let validity = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let fraction = RENEW_FROM_FRACTION + (RENEW_UNTIL_FRACTION - RENEW_FROM_FRACTION) * jitter;
    let jittered = not_before + validity.mul_f64(fraction);
    match renew_after {
        Some(d) => (received + d).min(jittered),
        None => jittered,
    }
}

/// Capped exponential backoff for failed issuance attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 = the first), doubled
    /// per failure up to [`Backoff::max`], then jittered down by up to a quarter
    /// (`jitter` in `[0, 1)`) so that agents that failed together spread out.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        let base = self
            .initial
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        base.mul_f64(1.0 - 0.25 * jitter)
    }
}

/// A uniform random number in `[0, 1)` from the system's CSPRNG (aws-lc-rs).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    // The CSPRNG only fails if the system has no entropy source; then no jitter.
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return 0.0;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renews_between_half_and_three_quarters_of_the_validity() {
        let (nb, na) = (t(1000), t(1000 + 86_400));
        assert_eq!(renewal_time(nb, na, t(0), 0.0, None), t(1000 + 43_200));
        assert_eq!(renewal_time(nb, na, t(0), 1.0, None), t(1000 + 64_800));
        let mid = renewal_time(nb, na, t(0), 0.5, None);
        assert_eq!(mid, t(1000 + 54_000));
        for j in [0.0, 0.1, 0.33, 0.999_999] {
            let at = renewal_time(nb, na, t(0), j, None);
            assert!(at >= t(1000 + 43_200) && at <= t(1000 + 64_800), "{j}");
        }
    }

    #[test]
    fn out_of_range_or_nan_jitter_never_moves_renewal_past_three_quarters() {
        let (nb, na) = (t(0), t(1000));
        assert_eq!(renewal_time(nb, na, t(0), 7.0, None), t(750));
        assert_eq!(renewal_time(nb, na, t(0), -3.0, None), t(500));
        assert_eq!(renewal_time(nb, na, t(0), f64::NAN, None), t(500));
        assert_eq!(renewal_time(nb, na, t(0), f64::INFINITY, None), t(500));
    }

    #[test]
    fn reversed_validity_renews_at_not_before() {
        assert_eq!(renewal_time(t(500), t(100), t(0), 0.5, None), t(500));
    }

    #[test]
    fn renew_after_override_counts_from_receipt_and_is_capped_by_the_jittered_point() {
        let (nb, na) = (t(0), t(600));
        // notBefore backdated: the override counts from receipt, not from notBefore.
        assert_eq!(
            renewal_time(nb, na, t(100), 0.5, Some(Duration::from_secs(5))),
            t(105)
        );
        assert_eq!(
            renewal_time(nb, na, t(0), 0.5, Some(Duration::from_secs(5))),
            t(5)
        );
        // An override later than the jittered point cannot push renewal toward expiry.
        assert_eq!(
            renewal_time(nb, na, t(0), 0.0, Some(Duration::from_secs(10_000))),
            t(300)
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(6, 0.0), Duration::from_secs(32));
        assert_eq!(b.delay(7, 0.0), Duration::from_secs(60));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(60));
        assert_eq!(b.delay(0, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(7, 1.0), Duration::from_secs(45));
    }

    #[test]
    fn random_unit_stays_in_range() {
        for _ in 0..1000 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
