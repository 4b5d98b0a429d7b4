//! Federation, the pure part: which (own trust domain, peer trust domain) relationships
//! exist, whether a newly obtained peer bundle replaces the last good one, when to fetch
//! next, and which ClusterTrustBundles the spiffe signer should hold.
//!
//! Rules (each has a test):
//! - a relationship is per workload trust domain: a federation naming own trust domains
//!   A and B federates exactly those two; C, also served, gets nothing;
//! - an own trust domain the signer does not serve is reported and ignored; a peer equal
//!   to the workload trust domain is refused (the own bundle comes from the CA pool only);
//!   two federations for one peer trust domain: the first by name is used, the other
//!   reports the conflict;
//! - a candidate bundle replaces the last good one only if it holds at least one
//!   authority and its `spiffe_sequence` does not go backwards; otherwise the last good
//!   bundle stays and the error is reported;
//! - refresh after the peer's `spiffe_refresh_hint`, bounded to [`RefreshPolicy`]'s
//!   `min..=max` (default 5 min without a hint, as the spec suggests); after an error,
//!   exponential backoff from `min`, capped at `max`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use spiffe::TrustDomain;

use crate::bundle_document::BundleDocument;
use crate::parse_trust_domain;

/// A peer's bundle in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBundle {
    /// The X.509 authorities (DER).
    pub authorities: Vec<Vec<u8>>,
    /// Its `spiffe_sequence`, if it had one.
    pub sequence: Option<u64>,
    /// Its `spiffe_refresh_hint`, if it had one.
    pub refresh_hint: Option<Duration>,
    /// When it was obtained.
    pub obtained_at: SystemTime,
}

/// Why a candidate bundle was not taken (the last good one stays).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleRejection {
    /// The candidate holds no X.509 authority: taking it would de-federate silently.
    #[error("the bundle holds no X.509 authority; keeping the last good bundle")]
    Empty,
    /// The candidate's `spiffe_sequence` is lower than the one in use.
    #[error("spiffe_sequence went backwards from {current} to {candidate}; keeping the last good bundle")]
    SequenceBackwards {
        /// The sequence in use.
        current: u64,
        /// The candidate's.
        candidate: u64,
    },
}

/// Decides whether `candidate` replaces `current`.
pub fn accept(
    current: Option<&PeerBundle>,
    candidate: BundleDocument,
    now: SystemTime,
) -> Result<PeerBundle, BundleRejection> {
    if candidate.x509_authorities.is_empty() {
        return Err(BundleRejection::Empty);
    }
    if let (Some(cur), Some(new)) = (current.and_then(|c| c.sequence), candidate.sequence) {
        if new < cur {
            return Err(BundleRejection::SequenceBackwards {
                current: cur,
                candidate: new,
            });
        }
    }
    Ok(PeerBundle {
        authorities: candidate.x509_authorities,
        sequence: candidate.sequence,
        refresh_hint: candidate.refresh_hint,
        obtained_at: now,
    })
}

/// Bounds of the refresh period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// The shortest period (and the first backoff step).
    pub min: Duration,
    /// The longest period (and the backoff cap).
    pub max: Duration,
    /// The period when the bundle has no refresh hint.
    pub default: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            min: Duration::from_secs(30),
            max: Duration::from_secs(3600),
            default: Duration::from_secs(300),
        }
    }
}

impl RefreshPolicy {
    /// The wait after a successful fetch of a bundle with `hint`.
    pub fn after_success(&self, hint: Option<Duration>) -> Duration {
        hint.unwrap_or(self.default)
            .clamp(self.min, self.max.max(self.min))
    }

    /// The wait after `consecutive_errors` (>= 1) failed fetches.
    pub fn after_error(&self, consecutive_errors: u32) -> Duration {
        let exp = consecutive_errors.saturating_sub(1).min(16);
        self.min
            .saturating_mul(1u32 << exp)
            .min(self.max.max(self.min))
    }
}

/// One federation resource, as the relationship logic needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationSpec {
    /// The resource's name.
    pub name: String,
    /// `spec.trustDomain`, as written.
    pub peer: String,
    /// `spec.workloadTrustDomains`, as written.
    pub workload_trust_domains: Vec<String>,
}

/// The relationships of one federation resource and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Relationships {
    /// The peer trust domain, if valid.
    pub peer: Option<TrustDomain>,
    /// The own trust domains federating with the peer.
    pub workloads: BTreeSet<String>,
    /// Configuration problems (shown in the status).
    pub problems: Vec<String>,
}

/// The relationships of every federation resource, by resource name. `own` are the
/// trust domains the signer serves.
pub fn relationships(
    specs: &[FederationSpec],
    own: &[TrustDomain],
) -> BTreeMap<String, Relationships> {
    let mut sorted: Vec<&FederationSpec> = specs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for spec in sorted {
        let mut rel = Relationships::default();
        match parse_trust_domain(&spec.peer) {
            Err(e) => rel.problems.push(format!("spec.trustDomain: {e}")),
            Ok(peer) => match claimed.get(peer.as_str()) {
                Some(first) => rel.problems.push(format!(
                    "trust domain {peer} is already federated by ClusterFederatedTrustDomain {first}; this one is ignored"
                )),
                None => {
                    claimed.insert(peer.to_string(), spec.name.clone());
                    rel.peer = Some(peer);
                }
            },
        }
        for workload in &spec.workload_trust_domains {
            if !own.iter().any(|td| td.as_str() == workload) {
                rel.problems.push(format!(
                    "spec.workloadTrustDomains: {workload:?} is not a trust domain this signer serves ({}); ignored",
                    own.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            if rel.peer.as_ref().is_some_and(|p| p.as_str() == workload) {
                rel.problems.push(format!(
                    "spec.workloadTrustDomains: {workload} cannot federate with itself; its own bundle comes from its CA pool"
                ));
                continue;
            }
            rel.workloads.insert(workload.clone());
        }
        if rel.peer.is_none() {
            rel.workloads.clear();
        }
        out.insert(spec.name.clone(), rel);
    }
    out
}

#[cfg(test)]
#[path = "federation_tests.rs"]
mod tests;
