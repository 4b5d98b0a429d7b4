//! The SPIFFE Workload API as an identity source (feature `workload-api`):
//! SPIRE's agent, or any other Workload API server, drives a [`PodTls`].
//!
//! One task streams X.509 contexts (`FetchX509SVID`, through the `spiffe`
//! crate's `WorkloadApiClient`) and publishes each through an
//! [`IdentityPublisher`], so the material passes the checks a file does: the
//! default SVID (the first one) becomes the credentials, every trust domain's
//! bundle (the workload's own and the federated ones) is published, and a
//! trust domain that disappears from the stream is de-federated
//! ([`crate::VerifyError::DeFederated`]). When the stream fails or ends, the
//! error shows in every store's status ([`Error::SourceFailed`]), the last good
//! material stays served, and the task reconnects with exponential backoff.
//!
//! Only the X.509 half of the Workload API is used (no JWT-SVIDs).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::transport::Endpoint;
use spiffe::{WorkloadApiClient, X509Context};

use crate::credentials::LeafKind;
use crate::error::Error;
use crate::pod_tls::PodTls;
use crate::publisher::{IdentityPublisher, PublishError};

/// The environment variable that names the Workload API endpoint
/// (`unix:/run/spire/agent.sock`, `tcp:127.0.0.1:8081`), as SPIRE sets it.
pub const SPIFFE_ENDPOINT_SOCKET_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// How long connecting and opening the stream may take before it counts
/// as a failure (and is retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`PodTls`] fed by the SPIFFE Workload API.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use podtls::{Authorizer, ClientAuth, ServerTls, WorkloadApiSource};
///
/// // SPIFFE_ENDPOINT_SOCKET=unix:/run/spire/agent.sock, as SPIRE sets it.
/// let pod = WorkloadApiSource::from_env().start()?;
/// pod.ready(Duration::from_secs(30)).await?;
/// let td = pod.own_trust_domain().expect("an X509-SVID");
/// let server = ServerTls::builder(pod.credentials().unwrap().clone())
///     .client_auth(ClientAuth::required(
///         pod.spiffe_bundles().clone(),
///         Authorizer::member_of([td]),
///     ))
///     .build()?;
/// # let _ = server; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WorkloadApiSource {
    /// `None`: [`SPIFFE_ENDPOINT_SOCKET_ENV`], read by `start`.
    endpoint: Option<String>,
    initial_backoff: Duration,
    max_backoff: Duration,
    health_interval: Duration,
}

impl WorkloadApiSource {
    /// The Workload API named by `SPIFFE_ENDPOINT_SOCKET` (read by
    /// [`WorkloadApiSource::start`]).
    pub fn from_env() -> Self {
        Self::with_endpoint(None)
    }

    /// The Workload API at `endpoint`: `unix:/path/to/socket`,
    /// `unix:///path/to/socket` or `tcp:127.0.0.1:8081`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self::with_endpoint(Some(endpoint.into()))
    }

    fn with_endpoint(endpoint: Option<String>) -> Self {
        WorkloadApiSource {
            endpoint,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            health_interval: Duration::from_secs(30),
        }
    }

    /// The wait before reconnecting after a failure: `initial`, doubled after
    /// each failure in a row up to `max` (default 200 ms to 15 s); back to
    /// `initial` once a context arrives.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.initial_backoff);
        self
    }

    /// How often the credentials' health (renewal overdue, expired) is
    /// re-evaluated between updates (default 30 s).
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Starts streaming on the current tokio runtime and returns the
    /// [`PodTls`] it feeds: empty (closed) until the first context arrives;
    /// wait with [`PodTls::ready`]. Leaves must be X509-SVIDs. Dropping the
    /// last [`PodTls`] handle stops the stream.
    ///
    /// A Workload API that is not reachable yet does not fail this call:
    /// the task retries, and the stores' status says why.
    ///
    /// # Errors
    /// [`Error::Config`] when `SPIFFE_ENDPOINT_SOCKET` is unset or empty (for
    /// [`WorkloadApiSource::from_env`]), the endpoint is not a valid Workload
    /// API address, or there is no tokio runtime.
    pub fn start(self) -> Result<PodTls, Error> {
        let (text, endpoint) = self.endpoint()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("the Workload API source needs a tokio runtime to run in".into())
        })?;
        let name = format!("SPIFFE Workload API {text}");
        let publisher = IdentityPublisher::new(&name, LeafKind::SpiffeSvid);
        let task = runtime.spawn(run(publisher.clone(), endpoint, self));
        Ok(PodTls::from_source(
            name.into(),
            publisher.credentials().clone(),
            publisher.spiffe_bundles().clone(),
            Some(Arc::new(AbortOnDrop(task))),
        ))
    }

    fn endpoint(&self) -> Result<(String, Endpoint), Error> {
        let (text, what) = match &self.endpoint {
            Some(text) => (text.clone(), "Workload API endpoint".to_string()),
            None => match std::env::var(SPIFFE_ENDPOINT_SOCKET_ENV) {
                Ok(text) if !text.trim().is_empty() => {
                    (text, format!("{SPIFFE_ENDPOINT_SOCKET_ENV} (the Workload API endpoint)"))
                }
                Ok(_) => {
                    return Err(Error::Config(format!(
                        "environment variable {SPIFFE_ENDPOINT_SOCKET_ENV} (the Workload API endpoint) is empty"
                    )))
                }
                Err(e) => {
                    return Err(Error::Config(format!(
                        "environment variable {SPIFFE_ENDPOINT_SOCKET_ENV} (the Workload API endpoint): {e}"
                    )))
                }
            },
        };
        let endpoint = Endpoint::parse(text.trim())
            .map_err(|e| Error::Config(format!("{what} {text:?}: {e}")))?;
        Ok((text.trim().to_string(), endpoint))
    }
}

/// Stops the streaming task when the last [`PodTls`] handle goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Publishes one X.509 context: every trust domain's bundle, then the
/// default SVID; withdraws the trust domains it no longer has. Each refusal
/// is recorded in its store's status (the last good stays) and returned.
pub(crate) fn apply(
    publisher: &IdentityPublisher,
    context: &X509Context,
    now: SystemTime,
) -> Vec<PublishError> {
    let mut errors = Vec::new();
    let mut present = BTreeSet::new();
    for (td, bundle) in context.bundle_set().iter() {
        present.insert(td.clone());
        let anchors = bundle
            .authorities()
            .iter()
            .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
            .collect();
        if let Err(e) = publisher.publish_bundle(td, anchors, now) {
            errors.push(e);
        }
    }
    for td in publisher.spiffe_bundles().trust_domains() {
        if !present.contains(&td) {
            publisher.withdraw_bundle(&td, now);
        }
    }
    // The `spiffe` crate refuses a response without SVIDs; the first is the
    // default one.
    if let Some(svid) = context.default_svid() {
        let chain = svid
            .cert_chain()
            .iter()
            .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            svid.private_key().as_bytes().to_vec(),
        ));
        if let Err(e) = publisher.publish_credentials(chain, key, now) {
            errors.push(e);
        }
    }
    errors
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

async fn run(publisher: IdentityPublisher, endpoint: Endpoint, options: WorkloadApiSource) {
    let mut health = tokio::time::interval(options.health_interval);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = options.initial_backoff;
    loop {
        let cause = stream(&publisher, &endpoint, &mut health, &mut backoff, &options).await;
        publisher.report_error(
            Error::SourceFailed {
                what: publisher.name().to_string(),
                cause,
            },
            SystemTime::now(),
        );
        let wake = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(wake) => break,
                _ = health.tick() => publisher.check_health(SystemTime::now()),
            }
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

/// One connection: streams contexts until it fails; returns why.
async fn stream(
    publisher: &IdentityPublisher,
    endpoint: &Endpoint,
    health: &mut tokio::time::Interval,
    backoff: &mut Duration,
    options: &WorkloadApiSource,
) -> Cause {
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let client = WorkloadApiClient::connect(endpoint.clone()).await?;
        client.stream_x509_contexts().await
    })
    .await;
    let mut contexts = match opened {
        Ok(Ok(contexts)) => contexts,
        Ok(Err(e)) => return Box::new(e),
        Err(_) => return format!("no stream within {CONNECT_TIMEOUT:?}").into(),
    };
    loop {
        tokio::select! {
            item = contexts.next() => match item {
                Some(Ok(context)) => {
                    *backoff = options.initial_backoff;
                    // Refusals are logged and in the stores' status.
                    let _ = apply(publisher, &context, SystemTime::now());
                }
                Some(Err(e)) => return Box::new(e),
                None => return "the Workload API closed the stream".into(),
            },
            _ = health.tick() => publisher.check_health(SystemTime::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_trust_domain;
    use crate::test_util::{CertAuthority, Issued, LeafSpec};
    use spiffe::{X509Bundle, X509BundleSet, X509Svid};

    /// A leaf the `spiffe` crate accepts: it wants basicConstraints (cA
    /// false) present, as SPIRE writes it.
    fn svid(ca: &CertAuthority, id: &str) -> Issued {
        ca.issue(&LeafSpec::spiffe(id).extension(&[2, 5, 29, 19], vec![0x30, 0x00], true))
    }

    fn context(svid: &Issued, bundles: &[(&str, &CertAuthority)]) -> X509Context {
        let chain: Vec<u8> = svid.chain_der.iter().flat_map(|c| c.to_vec()).collect();
        let svid = X509Svid::parse_from_der(&chain, &svid.key_der).unwrap();
        let mut set = X509BundleSet::new();
        for (td, ca) in bundles {
            let td = parse_trust_domain(td).unwrap();
            set.add_bundle(X509Bundle::parse_from_der(td, ca.cert_der()).unwrap());
        }
        X509Context::new([Arc::new(svid)], set)
    }

    #[test]
    fn a_context_publishes_the_svid_and_every_bundle_and_withdraws_what_it_lost() {
        let (a, b) = (CertAuthority::new("a"), CertAuthority::new("b"));
        let leaf = svid(&a, "spiffe://a.example/w");
        let p = IdentityPublisher::new("wl", LeafKind::SpiffeSvid);
        let pod = p.pod_tls();
        let now = SystemTime::now();
        assert!(apply(
            &p,
            &context(&leaf, &[("a.example", &a), ("b.example", &b)]),
            now
        )
        .is_empty());
        assert!(pod.is_ready());
        let served = p.credentials().current().unwrap();
        assert_eq!(served.info().serial, leaf.serial);
        let tdb = parse_trust_domain("b.example").unwrap();
        assert!(p.spiffe_bundles().current(&tdb).is_ok());

        // b.example gone from the stream: de-federated; back: federated.
        assert!(apply(&p, &context(&leaf, &[("a.example", &a)]), now).is_empty());
        assert!(matches!(
            p.spiffe_bundles().current(&tdb),
            Err(crate::VerifyError::DeFederated { .. })
        ));
        assert!(pod.is_ready(), "a peer trust domain does not count");
        apply(
            &p,
            &context(&leaf, &[("a.example", &a), ("b.example", &b)]),
            now,
        );
        assert!(p.spiffe_bundles().current(&tdb).is_ok());
    }

    #[test]
    fn an_expired_svid_in_a_context_is_refused_and_the_last_good_stays() {
        let a = CertAuthority::new("a");
        let good = svid(&a, "spiffe://a.example/w");
        let p = IdentityPublisher::new("wl", LeafKind::SpiffeSvid);
        apply(&p, &context(&good, &[("a.example", &a)]), SystemTime::now());
        let newer = svid(&a, "spiffe://a.example/w");
        let info = crate::cert_info::CertInfo::from_der(&newer.leaf_der).unwrap();
        let errors = apply(
            &p,
            &context(&newer, &[("a.example", &a)]),
            info.not_after + Duration::from_secs(1),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(matches!(errors[0].error(), Error::Expired { .. }));
        assert_eq!(
            p.credentials().current().unwrap().info().serial,
            good.serial
        );
    }

    #[test]
    fn a_bad_endpoint_or_missing_runtime_is_a_config_error() {
        let error = WorkloadApiSource::new("http://nope").start().unwrap_err();
        assert!(
            matches!(&error, Error::Config(m) if m.contains("http://nope")),
            "{error}"
        );
        let error = WorkloadApiSource::new("unix:/tmp/x.sock")
            .start()
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config(m) if m.contains("tokio")),
            "{error}"
        );
    }
}
