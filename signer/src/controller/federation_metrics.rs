//! The federation metrics (part of [`Metrics`](super::Metrics), same registry):
//!
//! - `podtls_signer_federation_refreshes_total{trust_domain, outcome}`: bundle refreshes
//!   of a peer trust domain; outcome `ok`, `unchanged` or the error kind (`fetch`,
//!   `parse`, `rejected`, `config`);
//! - `podtls_signer_federation_anchors{trust_domain}`: authorities in the peer bundle in use;
//! - `podtls_signer_federation_sequence{trust_domain}`: its `spiffe_sequence` (-1 if none);
//! - `podtls_signer_federation_last_success_seconds{trust_domain}`: Unix time of the last
//!   successful refresh;
//! - `podtls_signer_federation_bundle_writes_total{operation, outcome}`: ClusterTrustBundle
//!   applies and deletes of the federation (`apply`/`delete`, `ok`/`error`).

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The federation metrics.
#[derive(Debug, Default)]
pub struct FederationMetrics {
    refreshes: Family<Labels, Counter>,
    anchors: Family<Labels, Gauge>,
    sequence: Family<Labels, Gauge>,
    last_success: Family<Labels, Gauge>,
    bundle_writes: Family<Labels, Counter>,
}

impl FederationMetrics {
    /// Registers the federation metrics in `registry`.
    pub fn register(registry: &mut Registry) -> FederationMetrics {
        let m = FederationMetrics::default();
        registry.register(
            "federation_refreshes",
            "Bundle refreshes of a peer trust domain, by outcome",
            m.refreshes.clone(),
        );
        registry.register(
            "federation_anchors",
            "X.509 authorities in the peer trust domain's bundle in use",
            m.anchors.clone(),
        );
        registry.register(
            "federation_sequence",
            "spiffe_sequence of the peer trust domain's bundle in use (-1: none)",
            m.sequence.clone(),
        );
        registry.register(
            "federation_last_success_seconds",
            "Unix time of the last successful refresh of the peer trust domain's bundle",
            m.last_success.clone(),
        );
        registry.register(
            "federation_bundle_writes",
            "ClusterTrustBundle applies and deletes of the federation, by outcome",
            m.bundle_writes.clone(),
        );
        m
    }

    /// Counts a refresh of `trust_domain` with `outcome`.
    pub fn refresh(&self, trust_domain: &str, outcome: &str) {
        self.refreshes
            .get_or_create(&labels(&[
                ("trust_domain", trust_domain),
                ("outcome", outcome),
            ]))
            .inc();
    }

    /// Records the bundle in use for `trust_domain`.
    pub fn bundle(
        &self,
        trust_domain: &str,
        anchors: usize,
        sequence: Option<u64>,
        at: SystemTime,
    ) {
        let l = labels(&[("trust_domain", trust_domain)]);
        self.anchors
            .get_or_create(&l)
            .set(i64::try_from(anchors).unwrap_or(i64::MAX));
        self.sequence
            .get_or_create(&l)
            .set(sequence.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX)));
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.last_success
            .get_or_create(&l)
            .set(i64::try_from(secs).unwrap_or(i64::MAX));
    }

    /// Forgets a peer trust domain no longer configured.
    pub fn forget(&self, trust_domain: &str) {
        let l = labels(&[("trust_domain", trust_domain)]);
        self.anchors.remove(&l);
        self.sequence.remove(&l);
        self.last_success.remove(&l);
    }

    /// Counts a ClusterTrustBundle write.
    pub fn bundle_write(&self, operation: &str, ok: bool) {
        self.bundle_writes
            .get_or_create(&labels(&[
                ("operation", operation),
                ("outcome", if ok { "ok" } else { "error" }),
            ]))
            .inc();
    }
}
