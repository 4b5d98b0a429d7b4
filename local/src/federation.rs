//! The cross-trust-domain pair's expectations: refused before federation is
//! added, served while it lasts, refused again (fail closed) once it is
//! removed. Requests that complete shortly after a switch are not judged:
//! connections opened before it live on until demo-client recycles them.

use std::time::{Duration, Instant};

/// Where the federation between the two trust domains stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not federated yet: the server has no bundle for the client's trust domain.
    NotYet,
    /// Federated: each side has the other's bundle.
    Federated,
    /// Federation removed: the server's bundle of the client's trust domain
    /// is written empty (kubelet's `optional: true` source matching nothing).
    Removed,
}

/// What one request's outcome means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Served while federated.
    Ok,
    /// Refused while federated: a real failure.
    Failed,
    /// Refused while not federated: fail closed, as it must.
    Refused,
    /// Served while not federated: a trust leak, a real failure.
    Leaked,
    /// Within the grace period after a switch: not judged.
    Transition,
}

/// The cross pair's phase and counts.
#[derive(Debug, Clone)]
pub struct Federation {
    /// The current phase.
    pub phase: Phase,
    since: Instant,
    grace: Duration,
    /// Refusals before federation was added.
    pub refused_before: u64,
    /// Refusals after federation was removed.
    pub refused_after: u64,
    /// Requests completed within the grace period of a switch.
    pub in_transition: u64,
}

impl Federation {
    /// Not federated yet, as of `now`; outcomes within `grace` of a switch
    /// are not judged.
    pub fn new(now: Instant, grace: Duration) -> Self {
        Federation {
            phase: Phase::NotYet,
            since: now,
            grace,
            refused_before: 0,
            refused_after: 0,
            in_transition: 0,
        }
    }

    /// Switches to `phase` at `now`.
    pub fn switch(&mut self, phase: Phase, now: Instant) {
        self.phase = phase;
        self.since = now;
    }

    /// Judges one request that completed at `now`.
    pub fn judge(&mut self, ok: bool, now: Instant) -> Verdict {
        if now.saturating_duration_since(self.since) < self.grace {
            self.in_transition += 1;
            return Verdict::Transition;
        }
        match (self.phase, ok) {
            (Phase::Federated, true) => Verdict::Ok,
            (Phase::Federated, false) => Verdict::Failed,
            (_, true) => Verdict::Leaked,
            (Phase::NotYet, false) => {
                self.refused_before += 1;
                Verdict::Refused
            }
            (Phase::Removed, false) => {
                self.refused_after += 1;
                Verdict::Refused
            }
        }
    }

    /// One line for the display.
    pub fn describe(&self, now: Instant) -> String {
        let since = now.saturating_duration_since(self.since).as_secs();
        match self.phase {
            Phase::NotYet => format!(
                "not federated yet ({since}s): {} refused, as expected (no bundle, no trust)",
                self.refused_before
            ),
            Phase::Federated => format!("federated for {since}s: cross-trust-domain traffic served"),
            Phase::Removed => format!(
                "federation REMOVED {since}s ago: {} refused, as expected (fails closed after de-federation)",
                self.refused_after
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_by_phase_outside_the_grace_period() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(2);
        let mut f = Federation::new(t0, grace);
        let after = |s| t0 + Duration::from_secs(s);
        assert_eq!(f.judge(false, after(1)), Verdict::Transition);
        assert_eq!(f.judge(false, after(3)), Verdict::Refused);
        assert_eq!(f.judge(true, after(3)), Verdict::Leaked);
        f.switch(Phase::Federated, after(4));
        assert_eq!(f.judge(false, after(5)), Verdict::Transition);
        assert_eq!(f.judge(true, after(7)), Verdict::Ok);
        assert_eq!(f.judge(false, after(7)), Verdict::Failed);
        f.switch(Phase::Removed, after(10));
        assert_eq!(f.judge(true, after(11)), Verdict::Transition);
        assert_eq!(f.judge(false, after(13)), Verdict::Refused);
        assert_eq!(f.judge(true, after(13)), Verdict::Leaked);
        assert_eq!(
            (f.refused_before, f.refused_after, f.in_transition),
            (1, 1, 3)
        );
    }
}
