//! When a served connection must close: its maximum age (jittered) or the
//! expiry of the client certificate it authenticated with, whichever comes
//! first.
//!
//! [`close_deadline`] is pure: it takes the accept time, the options, a
//! jitter sample and both clocks' `now` explicitly. [`jitter_sample`] is the
//! only part that is not deterministic.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// Why a served connection is being closed at its [`ConnectionDeadline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The connection reached its maximum age
    /// ([`ServeOptions::max_connection_age`](crate::ServeOptions::max_connection_age),
    /// jittered).
    MaxAge,
    /// The client certificate the connection authenticated with expired.
    PeerExpired,
}

/// When a served connection must close, and why (see [`crate::serve`]).
///
/// At `at` the connection should close gracefully; `drain_timeout` later it
/// is aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionDeadline {
    /// When to begin a graceful close.
    pub at: Instant,
    /// Which limit `at` comes from.
    pub reason: CloseReason,
}

impl ConnectionDeadline {
    /// Completes at [`ConnectionDeadline::at`].
    pub async fn reached(&self) {
        tokio::time::sleep_until(self.at).await;
    }
}

/// Further than any deadline a connection could reasonably be given (about
/// 30 years); used instead of overflowing `Instant` arithmetic.
const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// The deadline of a connection accepted at `accepted_at`.
///
/// - Maximum age: `accepted_at + max_age * (1 - jitter * u)`, where `u` in
///   `[0, 1)` is derived from `sample`; `jitter` is clamped to `[0, 1]` (NaN
///   counts as 0). So connections accepted together do not all close (and
///   reconnect) together, and none lives longer than `max_age`.
/// - Peer expiry: the moment `peer_not_after` is reached, measured from the
///   wall clock `wall_now` and mapped onto the monotonic `now`. Already
///   expired means now.
///
/// The earlier one wins (on a tie, the peer expiry: it is the security
/// reason). Durations too large for `Instant` saturate at about 30 years.
pub(crate) fn close_deadline(
    accepted_at: Instant,
    max_age: Duration,
    jitter: f64,
    sample: u64,
    peer_not_after: Option<SystemTime>,
    now: Instant,
    wall_now: SystemTime,
) -> ConnectionDeadline {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    // The top 53 bits as a fraction in [0, 1).
    let u = (sample >> 11) as f64 / (1u64 << 53) as f64;
    let factor = 1.0 - jitter * u;
    let age = Duration::try_from_secs_f64(max_age.as_secs_f64() * factor)
        .unwrap_or(Duration::MAX)
        .min(max_age)
        .min(FAR);
    let by_age = ConnectionDeadline {
        at: accepted_at + age,
        reason: CloseReason::MaxAge,
    };
    let Some(not_after) = peer_not_after else {
        return by_age;
    };
    let left = not_after
        .duration_since(wall_now)
        .unwrap_or(Duration::ZERO)
        .min(FAR);
    let by_peer = ConnectionDeadline {
        at: now + left,
        reason: CloseReason::PeerExpired,
    };
    if by_peer.at <= by_age.at {
        by_peer
    } else {
        by_age
    }
}

/// A jitter sample for a connection from `remote` accepted at `at`: a hash
/// keyed with the process's random hashing keys, so peers cannot predict or
/// align it. Not cryptographic; it only spreads reconnections out.
pub(crate) fn jitter_sample(remote: SocketAddr, at: SystemTime) -> u64 {
    let nanos = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    RandomState::new().hash_one((remote, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(base: Instant, d: ConnectionDeadline) -> (Duration, CloseReason) {
        (d.at - base, d.reason)
    }

    #[test]
    fn without_jitter_or_peer_the_deadline_is_the_max_age() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let d = close_deadline(t0, HOUR, 0.0, u64::MAX, None, t0, wall);
        assert_eq!(at(t0, d), (HOUR, CloseReason::MaxAge));
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_its_fraction() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut seen = std::collections::BTreeSet::new();
        for sample in [0, 1, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
            let (age, reason) = at(t0, close_deadline(t0, HOUR, 0.1, sample, None, t0, wall));
            assert_eq!(reason, CloseReason::MaxAge);
            assert!(age <= HOUR, "{age:?}");
            assert!(age >= HOUR.mul_f64(0.9), "{age:?}");
            seen.insert(age);
        }
        // Different samples give different deadlines.
        assert!(seen.len() >= 4, "{seen:?}");
        // Sample 0 means no shortening at all; the largest sample almost 10%.
        let (age, _) = at(t0, close_deadline(t0, HOUR, 0.1, 0, None, t0, wall));
        assert_eq!(age, HOUR);
        let (age, _) = at(t0, close_deadline(t0, HOUR, 0.1, u64::MAX, None, t0, wall));
        assert!(age < HOUR.mul_f64(0.9001), "{age:?}");
    }

    #[test]
    fn out_of_range_jitter_is_clamped_never_extending_the_age() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        for jitter in [-5.0, f64::NAN, f64::NEG_INFINITY] {
            let (age, _) = at(
                t0,
                close_deadline(t0, HOUR, jitter, u64::MAX, None, t0, wall),
            );
            assert_eq!(age, HOUR, "jitter {jitter}");
        }
        for jitter in [1.0, 7.0, f64::INFINITY] {
            let (age, _) = at(
                t0,
                close_deadline(t0, HOUR, jitter, u64::MAX, None, t0, wall),
            );
            assert!(age < Duration::from_millis(1), "jitter {jitter}: {age:?}");
        }
    }

    #[test]
    fn the_age_counts_from_the_accept_not_from_now() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let d = close_deadline(t0, HOUR, 0.0, 0, None, now, SystemTime::now());
        assert_eq!(at(t0, d), (HOUR, CloseReason::MaxAge));
    }

    #[test]
    fn a_peer_certificate_expiring_first_wins() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let expiry = wall + Duration::from_secs(90);
        let d = close_deadline(t0, HOUR, 0.1, 42, Some(expiry), t0, wall);
        assert_eq!(
            at(t0, d),
            (Duration::from_secs(90), CloseReason::PeerExpired)
        );
    }

    #[test]
    fn the_max_age_wins_over_a_later_peer_expiry() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let expiry = wall + 2 * HOUR;
        let d = close_deadline(t0, HOUR, 0.0, 0, Some(expiry), t0, wall);
        assert_eq!(at(t0, d), (HOUR, CloseReason::MaxAge));
    }

    #[test]
    fn an_already_expired_peer_closes_now() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(5);
        let wall = SystemTime::now();
        let d = close_deadline(t0, HOUR, 0.0, 0, Some(wall - HOUR), now, wall);
        assert_eq!(d.at, now);
        assert_eq!(d.reason, CloseReason::PeerExpired);
    }

    #[test]
    fn peer_expiry_is_measured_on_the_wall_clock_and_mapped_to_now() {
        // The handshake took 3 s (monotonic); the certificate expires 60 s
        // after the wall-clock now: the deadline is now + 60 s.
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(3);
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let d = close_deadline(
            t0,
            HOUR,
            0.0,
            0,
            Some(wall + Duration::from_secs(60)),
            now,
            wall,
        );
        assert_eq!(d.at, now + Duration::from_secs(60));
    }

    #[test]
    fn huge_ages_and_expiries_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        for jitter in [0.0, 0.1, 1e-300] {
            let d = close_deadline(t0, Duration::MAX, jitter, 0, None, t0, wall);
            assert_eq!(d.at - t0, FAR);
        }
        let far_peer = wall + Duration::from_secs(1 << 40);
        let d = close_deadline(t0, Duration::MAX, 0.0, 0, Some(far_peer), t0, wall);
        assert_eq!(d.at - t0, FAR);
    }

    #[test]
    fn a_zero_age_closes_at_the_accept() {
        let t0 = Instant::now();
        let d = close_deadline(t0, Duration::ZERO, 0.1, 99, None, t0, SystemTime::now());
        assert_eq!(d.at, t0);
    }

    #[test]
    fn jitter_samples_differ_between_connections() {
        let a: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:40001".parse().unwrap();
        let t = SystemTime::now();
        assert_ne!(jitter_sample(a, t), jitter_sample(b, t));
        // Fresh keys per call: even the same peer and time differ.
        assert_ne!(jitter_sample(a, t), jitter_sample(a, t));
    }
}
