//! Prometheus metrics of the controller (text exposition on `/metrics`).

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    issued: Family<Labels, Counter>,
    denied: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
    pending: Family<Labels, Counter>,
    conflicts: Family<Labels, Counter>,
    reconcile_errors: Family<Labels, Counter>,
    issuance_latency: Family<Labels, Histogram>,
    decision_latency: Family<Labels, Histogram>,
    cached_services: Gauge,
    pool_loaded: Family<Labels, Gauge>,
    trust_bundle_applies: Family<Labels, Counter>,
    requester_policy_enforced: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("podtls_signer");
        let issued = Family::<Labels, Counter>::default();
        let denied = Family::<Labels, Counter>::default();
        let failed = Family::<Labels, Counter>::default();
        let pending = Family::<Labels, Counter>::default();
        let conflicts = Family::<Labels, Counter>::default();
        let reconcile_errors = Family::<Labels, Counter>::default();
        let issuance_latency = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.05, 2.0, 14))) as fn() -> Histogram,
        );
        // 20 us to ~2.6 s in steps of 1.5x: a decision is a cache lookup and a signature.
        let decision_latency = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.00002, 1.5, 30))) as fn() -> Histogram,
        );
        let cached_services = Gauge::default();
        let pool_loaded = Family::<Labels, Gauge>::default();
        let trust_bundle_applies = Family::<Labels, Counter>::default();
        let requester_policy_enforced = Gauge::default();
        registry.register(
            "requester_policy_enforced",
            "1 while the ValidatingAdmissionPolicyBinding that lets only a pod's own kubelet request certificates exists and denies",
            requester_policy_enforced.clone(),
        );
        registry.register(
            "issued",
            "PodCertificateRequests issued, by signer",
            issued.clone(),
        );
        registry.register(
            "denied",
            "PodCertificateRequests denied, by signer and reason",
            denied.clone(),
        );
        registry.register(
            "failed",
            "PodCertificateRequests failed, by signer and reason",
            failed.clone(),
        );
        registry.register(
            "pending",
            "Reconciles that left a request pending (pod or Service not seen yet), by signer and reason",
            pending.clone(),
        );
        registry.register(
            "status_conflicts",
            "Status writes answered with 409, by signer and outcome after re-reading (terminal: another writer won; retried)",
            conflicts.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors, by signer and the step that failed",
            reconcile_errors.clone(),
        );
        registry.register(
            "issuance_seconds",
            "Time from PodCertificateRequest creation to the accepted Issued status write, by signer",
            issuance_latency.clone(),
        );
        registry.register(
            "decision_seconds",
            "Time to decide one PodCertificateRequest: snapshot from the watch caches, checks, signing (and, for a denial judged from the caches, the live reads that confirm it), by signer",
            decision_latency.clone(),
        );
        registry.register(
            "cached_services",
            "Services in the watch cache of the service-dns signer",
            cached_services.clone(),
        );
        registry.register(
            "ca_pool_loaded",
            "1 if the signer has a CA pool, 0 before the first good load",
            pool_loaded.clone(),
        );
        registry.register(
            "trust_bundle_applies",
            "ClusterTrustBundle server-side applies, by signer and result",
            trust_bundle_applies.clone(),
        );
        Metrics {
            registry,
            issued,
            denied,
            failed,
            pending,
            conflicts,
            reconcile_errors,
            issuance_latency,
            decision_latency,
            cached_services,
            pool_loaded,
            trust_bundle_applies,
            requester_policy_enforced,
        }
    }

    /// Whether the requester admission policy is in force.
    pub fn requester_policy_enforced(&self, enforced: bool) {
        self.requester_policy_enforced.set(i64::from(enforced));
    }

    /// Counts an issued certificate and how long after creation it was accepted.
    pub fn issued(&self, signer: &str, since_creation: Option<Duration>) {
        let l = labels(&[("signer", signer)]);
        self.issued.get_or_create(&l).inc();
        if let Some(d) = since_creation {
            self.issuance_latency
                .get_or_create(&l)
                .observe(d.as_secs_f64());
        }
    }

    /// Records how long one decision took.
    pub fn decided(&self, signer: &str, took: Duration) {
        self.decision_latency
            .get_or_create(&labels(&[("signer", signer)]))
            .observe(took.as_secs_f64());
    }

    /// Records how many Services the watch cache holds.
    pub fn cached_services(&self, count: usize) {
        self.cached_services
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts a denial.
    pub fn denied(&self, signer: &str, reason: &str) {
        self.denied
            .get_or_create(&labels(&[("signer", signer), ("reason", reason)]))
            .inc();
    }

    /// Counts a failure.
    pub fn failed(&self, signer: &str, reason: &str) {
        self.failed
            .get_or_create(&labels(&[("signer", signer), ("reason", reason)]))
            .inc();
    }

    /// Counts a pending outcome.
    pub fn pending(&self, signer: &str, reason: &str) {
        self.pending
            .get_or_create(&labels(&[("signer", signer), ("reason", reason)]))
            .inc();
    }

    /// Counts a 409 on a status write.
    pub fn conflict(&self, signer: &str, outcome: &str) {
        self.conflicts
            .get_or_create(&labels(&[("signer", signer), ("outcome", outcome)]))
            .inc();
    }

    /// Counts a reconcile error by step ([`Error::step`](super::Error::step)).
    pub fn reconcile_error(&self, signer: &str, step: &str) {
        self.reconcile_errors
            .get_or_create(&labels(&[("signer", signer), ("step", step)]))
            .inc();
    }

    /// Records whether a signer has a pool.
    pub fn pool_loaded(&self, signer: &str, loaded: bool) {
        self.pool_loaded
            .get_or_create(&labels(&[("signer", signer)]))
            .set(i64::from(loaded));
    }

    /// Counts a trust bundle apply.
    pub fn trust_bundle_apply(&self, signer: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.trust_bundle_applies
            .get_or_create(&labels(&[("signer", signer), ("result", result)]))
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counters_with_signer_and_reason_labels() {
        let m = Metrics::new();
        m.issued("row-major.net/spiffe", Some(Duration::from_millis(300)));
        m.denied("row-major.net/spiffe", "UnsupportedKeyType");
        m.reconcile_error("row-major.net/spiffe", "write_status");
        m.decided("row-major.net/spiffe", Duration::from_micros(300));
        m.cached_services(20_000);
        let text = m.encode();
        assert!(
            text.contains(r#"podtls_signer_issued_total{signer="row-major.net/spiffe"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"podtls_signer_denied_total{signer="row-major.net/spiffe",reason="UnsupportedKeyType"} 1"#), "{text}");
        assert!(text.contains(r#"podtls_signer_reconcile_errors_total{signer="row-major.net/spiffe",step="write_status"} 1"#), "{text}");
        assert!(
            text.contains("podtls_signer_issuance_seconds_count"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"podtls_signer_decision_seconds_count{signer="row-major.net/spiffe"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("podtls_signer_cached_services 20000"),
            "{text}"
        );
    }
}
