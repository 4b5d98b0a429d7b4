//! Prometheus metrics: request counts, the accept loop's counters, and the
//! state of every podtls store (read at scrape time).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use podtls::{reload::Summary, PodTls, ServeStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Labels of `demo_server_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route (`/healthz`, `/spiffe-echo`, `other`).
    pub path: &'static str,
    /// The HTTP status code.
    pub code: u16,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests served, by route and status.
    pub requests: Family<RequestLabels, Counter>,
}

impl Metrics {
    /// Registers everything.
    pub fn new(stats: Arc<ServeStats>, pod: PodTls) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "demo_server_requests",
            "HTTP requests served, by route and status code",
            requests.clone(),
        );
        registry.register_collector(Box::new(Live { stats, pod }));
        Metrics { registry, requests }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Reads one gauge value from a store's status.
type StatusGauge = fn(&podtls::reload::Status) -> Option<i64>;
type TdGauge = fn(&podtls::reload::TrustDomainStatus) -> Option<i64>;

#[derive(Debug)]
struct Live {
    stats: Arc<ServeStats>,
    pod: PodTls,
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for Live {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut enc,
            "demo_server_tls_connections_accepted",
            "TCP connections accepted",
            load(&s.accepted),
        )?;
        counter(
            &mut enc,
            "demo_server_tls_handshakes",
            "TLS handshakes completed",
            load(&s.handshakes),
        )?;
        counter(
            &mut enc,
            "demo_server_tls_handshake_failures",
            "TLS handshakes that failed",
            load(&s.handshake_failures),
        )?;
        counter(
            &mut enc,
            "demo_server_tls_handshake_timeouts",
            "TLS handshakes that hit the deadline",
            load(&s.handshake_timeouts),
        )?;
        counter(
            &mut enc,
            "demo_server_accept_errors",
            "accept() errors, including descriptor exhaustion",
            load(&s.accept_errors),
        )?;
        let active = ConstGauge::new(load(&s.active) as i64);
        active.encode(enc.encode_descriptor(
            "demo_server_tls_connections_active",
            "open TLS connections",
            None,
            active.metric_type(),
        )?)?;

        let statuses = self.pod.statuses();
        let gauges: [(&str, &str, StatusGauge); 4] = [
            (
                "podtls_ready",
                "1 when the store holds good material",
                |s| Some(s.is_ready() as i64),
            ),
            (
                "podtls_reload_generation",
                "successful loads of the store",
                |s| Some(s.generation as i64),
            ),
            (
                "podtls_last_reload_failed",
                "1 when the most recent load failed (last good material still served)",
                |s| Some(s.last_error.is_some() as i64),
            ),
            (
                "podtls_certificate_expiry_timestamp_seconds",
                "not-after of the served certificate",
                |s| match &s.summary {
                    Some(Summary::Certificate(c)) => c
                        .not_after
                        .duration_since(UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs() as i64),
                    _ => None,
                },
            ),
        ];
        let trust_domains = self.pod.trust_domain_statuses();
        let td_gauges: [(&str, &str, TdGauge); 4] = [
            (
                "podtls_trust_domain_loaded",
                "1 when anchors of the SPIFFE trust domain are served (its peers can verify)",
                |t| Some(t.loaded as i64),
            ),
            (
                "podtls_trust_domain_anchors",
                "trust anchors served for the SPIFFE trust domain",
                |t| Some(t.anchors as i64),
            ),
            (
                "podtls_trust_domain_de_federated",
                "1 when the trust domain's bundle was removed or emptied: its peers are refused",
                |t| Some(t.is_de_federated() as i64),
            ),
            (
                "podtls_trust_domain_last_change_timestamp_seconds",
                "when the trust domain's anchors last changed (loaded, replaced, withdrawn)",
                |t| {
                    t.last_change
                        .and_then(|c| c.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as i64)
                },
            ),
        ];
        for (name, help, get) in td_gauges {
            let mut family = enc.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for t in &trust_domains {
                if let Some(v) = get(t) {
                    let td = t.trust_domain.to_string();
                    let labels = [
                        ("trust_domain", td.as_str()),
                        ("own", if t.own { "true" } else { "false" }),
                    ];
                    ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        for (name, help, get) in gauges {
            let mut family = enc.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for st in &statuses {
                if let Some(v) = get(st) {
                    let labels = [("source", st.name.as_ref())];
                    ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
