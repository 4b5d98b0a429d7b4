//! Prometheus metrics of the controller (text exposition on `/metrics`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

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
    trust_bundle_deletes: Family<Labels, Counter>,
    csr_decisions: Family<Labels, Counter>,
    csr_issuance_latency: Family<Labels, Histogram>,
    bundle_configmaps: Family<Labels, Counter>,
    ca_not_after: Family<Labels, Gauge>,
    /// The `ca_not_after` label sets last set per signer (removed when a CA leaves).
    ca_labels: Mutex<HashMap<String, Vec<Labels>>>,
    /// The federation metrics.
    pub federation: super::federation_metrics::FederationMetrics,
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
        let trust_bundle_deletes = Family::<Labels, Counter>::default();
        let csr_decisions = Family::<Labels, Counter>::default();
        registry.register(
            "csr_decisions",
            "CertificateSigningRequests decided, by signer, outcome (issued, denied, failed, pending) and reason",
            csr_decisions.clone(),
        );
        let csr_issuance_latency = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.05, 2.0, 14))) as fn() -> Histogram,
        );
        registry.register(
            "csr_issuance_seconds",
            "Time from CertificateSigningRequest creation to the accepted certificate write, by signer",
            csr_issuance_latency.clone(),
        );
        let bundle_configmaps = Family::<Labels, Counter>::default();
        registry.register(
            "trust_bundle_configmaps",
            "Trust bundle ConfigMap writes, by outcome (applied, unchanged, error, conflict: a same-named ConfigMap not managed by the signer, left alone)",
            bundle_configmaps.clone(),
        );
        let ca_not_after = Family::<Labels, Gauge>::default();
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
        registry.register(
            "trust_bundle_deletes",
            "ClusterTrustBundles of this signer deleted because no enabled signer wants them, by result",
            trust_bundle_deletes.clone(),
        );
        registry.register(
            "ca_not_after_seconds",
            "notAfter of each CA in a signer's pool (Unix seconds), by signer, CA ID and whether it signs",
            ca_not_after.clone(),
        );
        let federation = super::federation_metrics::FederationMetrics::register(&mut registry);
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
            trust_bundle_deletes,
            csr_decisions,
            csr_issuance_latency,
            bundle_configmaps,
            ca_not_after,
            ca_labels: Mutex::new(HashMap::new()),
            federation,
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

    /// Counts a CertificateSigningRequest decision (`outcome`: issued, denied, failed,
    /// pending).
    pub fn csr_decision(&self, signer: &str, outcome: &str, reason: &str) {
        self.csr_decisions
            .get_or_create(&labels(&[
                ("signer", signer),
                ("outcome", outcome),
                ("reason", reason),
            ]))
            .inc();
    }

    /// Records how long after its creation a CSR's certificate was written.
    pub fn csr_issued(&self, signer: &str, since_creation: Option<Duration>) {
        if let Some(d) = since_creation {
            self.csr_issuance_latency
                .get_or_create(&labels(&[("signer", signer)]))
                .observe(d.as_secs_f64());
        }
    }

    /// Counts a trust bundle ConfigMap write by outcome.
    pub fn bundle_configmap(&self, outcome: &str) {
        self.bundle_configmaps
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
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

    /// Counts a deletion of an unwanted trust bundle.
    pub fn trust_bundle_delete(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.trust_bundle_deletes
            .get_or_create(&labels(&[("result", result)]))
            .inc();
    }

    /// Sets the `ca_not_after_seconds` gauges of `signer` to `cas` (ID, notAfter,
    /// signing), removing those of CAs (or signing states) no longer in the pool.
    pub fn ca_pool(&self, signer: &str, cas: &[(String, SystemTime, bool)]) {
        let now: Vec<Labels> = cas
            .iter()
            .map(|(id, _, signing)| {
                labels(&[
                    ("signer", signer),
                    ("ca_id", id),
                    ("signing", if *signing { "true" } else { "false" }),
                ])
            })
            .collect();
        let mut last = self.ca_labels.lock().unwrap_or_else(|p| p.into_inner());
        for old in last.get(signer).into_iter().flatten() {
            if !now.contains(old) {
                self.ca_not_after.remove(old);
            }
        }
        for (l, (_, not_after, _)) in now.iter().zip(cas) {
            let secs = match not_after.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
            };
            self.ca_not_after.get_or_create(l).set(secs);
        }
        last.insert(signer.to_string(), now);
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

    #[test]
    fn ca_not_after_gauges_follow_the_pool_and_drop_retired_cas() {
        let m = Metrics::new();
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let s = "row-major.net/spiffe";
        m.ca_pool(
            s,
            &[("1".into(), t(1_000), true), ("2".into(), t(2_000), false)],
        );
        m.ca_pool(
            "row-major.net/service-dns",
            &[("sd".into(), t(3_000), true)],
        );
        let text = m.encode();
        for line in [
            r#"podtls_signer_ca_not_after_seconds{signer="row-major.net/spiffe",ca_id="1",signing="true"} 1000"#,
            r#"podtls_signer_ca_not_after_seconds{signer="row-major.net/spiffe",ca_id="2",signing="false"} 2000"#,
            r#"podtls_signer_ca_not_after_seconds{signer="row-major.net/service-dns",ca_id="sd",signing="true"} 3000"#,
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        // CA 2 promoted, then CA 1 retired: one series per CA, with the current state.
        m.ca_pool(
            s,
            &[("2".into(), t(2_000), true), ("1".into(), t(1_000), false)],
        );
        m.ca_pool(s, &[("2".into(), t(2_000), true)]);
        let text = m.encode();
        assert!(text.contains(r#"ca_id="2",signing="true"} 2000"#), "{text}");
        assert!(!text.contains(r#"ca_id="1""#), "{text}");
        assert!(!text.contains(r#"ca_id="2",signing="false""#), "{text}");
        assert!(
            text.contains(r#"ca_id="sd""#),
            "other signers untouched: {text}"
        );
    }
}
