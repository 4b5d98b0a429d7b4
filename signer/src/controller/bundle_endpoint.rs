//! The signer's SPIFFE bundle endpoint (`--bundle-endpoint-listen`): serves one own trust
//! domain's bundle document (SPIFFE Trust Domain and Bundle §5) over HTTPS, so that
//! another cluster running this signer, SPIRE, or go-spiffe's `federation.FetchBundle`
//! can federate with it.
//!
//! - `https_web`: the operator's serving certificate and key (PEM files, hot-reloaded
//!   with podtls' file watcher: kubelet's `..data` swap included).
//! - `https_spiffe`: an X509-SVID the signer issues to itself from the trust domain's
//!   signing CA ([`issue_endpoint_svid`](crate::issue_endpoint_svid)), re-issued at half
//!   its lifetime and on every pool change (a promoted CA signs the next one).
//!
//! The document is re-rendered on every pool change with the persisted sequence
//! ([`bundle_sequence`](super::bundle_sequence)). Until the first document exists the
//! endpoint answers 503; any method but GET/HEAD gets 405. Every path serves the
//! document (the URL is configuration on the peer's side).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use kube::core::ApiResource;
use kube::Client;
use podtls::{Credentials, LeafKind, PodTls};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use spiffe::{SpiffeId, TrustDomain};
use tokio::sync::watch;

use super::bundle_sequence::sync_sequence;
use super::pool_watch::PoolState;
use super::Error;
use crate::{issue_endpoint_svid, render_bundle_document};

/// How the endpoint authenticates itself.
#[derive(Clone, Debug)]
pub enum ServingProfile {
    /// `https_web`: the operator's certificate.
    Web {
        /// PEM private key.
        key: PathBuf,
        /// PEM chain, leaf first.
        chain: PathBuf,
    },
    /// `https_spiffe`: an SVID with this ID, issued by the signer to itself.
    Spiffe {
        /// The endpoint's SPIFFE ID (in the served trust domain).
        id: SpiffeId,
    },
}

/// The endpoint's configuration.
#[derive(Clone, Debug)]
pub struct BundleEndpointConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The own trust domain served.
    pub trust_domain: TrustDomain,
    /// How the endpoint authenticates itself.
    pub profile: ServingProfile,
    /// `spiffe_refresh_hint` of the served document.
    pub refresh_hint: Duration,
}

/// The serving certificate: the operator's files or the self-issued SVID.
#[derive(Debug)]
struct EndpointCert {
    files: Option<PodTls>,
    own: RwLock<Option<Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for EndpointCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(files) = &self.files {
            return files
                .credentials()
                .and_then(|s| s.current())
                .map(|c| c.certified_key().clone());
        }
        self.own.read().ok().and_then(|k| k.clone())
    }
}

fn roots_of(state: &PoolState) -> Option<Vec<Vec<u8>>> {
    let pool = state.pool.as_ref()?;
    let mut roots: Vec<Vec<u8>> = Vec::new();
    for ca in pool.cas() {
        if !roots.iter().any(|r| r == ca.root_der()) {
            roots.push(ca.root_der().to_vec());
        }
    }
    Some(roots)
}

/// Runs the endpoint until the process ends. Errors at start-up (bind, files) are
/// returned; later problems are logged and retried.
pub async fn run(
    client: Client,
    ctb_api: ApiResource,
    signer_name: String,
    config: BundleEndpointConfig,
    pool: watch::Receiver<PoolState>,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Admin {
            addr: config.listen,
            source,
        })?;
    let files = match &config.profile {
        ServingProfile::Web { key, chain } => Some(
            PodTls::builder()
                .key_and_chain(key, chain)
                .start()
                .map_err(|e| Error::Config {
                    reason: format!("bundle endpoint serving certificate: {e}"),
                })?,
        ),
        ServingProfile::Spiffe { .. } => None,
    };
    let cert = Arc::new(EndpointCert {
        files,
        own: RwLock::new(None),
    });
    let (doc_tx, doc_rx) = watch::channel::<Option<Arc<String>>>(None);

    // The document (and, for https_spiffe, the SVID) follow the pool.
    {
        let cert = cert.clone();
        let config = config.clone();
        let mut pool = pool.clone();
        tokio::spawn(async move {
            let mut renew_at: Option<SystemTime> = None;
            loop {
                let state = pool.borrow_and_update().clone();
                let now = SystemTime::now();
                let mut retry = Duration::from_secs(60);
                if let Some(roots) = roots_of(&state) {
                    match sync_sequence(
                        &client,
                        &ctb_api,
                        &signer_name,
                        config.trust_domain.as_str(),
                        &roots,
                    )
                    .await
                    {
                        Ok(Some(seq)) => {
                            let refs: Vec<&[u8]> = roots.iter().map(Vec::as_slice).collect();
                            match render_bundle_document(
                                &refs,
                                Some(seq),
                                Some(config.refresh_hint),
                            ) {
                                Ok(doc) => {
                                    doc_tx.send_if_modified(|d| {
                                        let changed = d.as_deref() != Some(&doc);
                                        *d = Some(Arc::new(doc));
                                        changed
                                    });
                                }
                                Err(error) => {
                                    tracing::error!(%error, "rendering the bundle document")
                                }
                            }
                        }
                        Ok(None) => {
                            tracing::info!(trust_domain = %config.trust_domain, "own ClusterTrustBundle not there yet; bundle endpoint waits");
                            retry = Duration::from_secs(2);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "reading the bundle sequence failed; retrying");
                            retry = Duration::from_secs(5);
                        }
                    }
                    if let (ServingProfile::Spiffe { id }, Some(p)) = (&config.profile, &state.pool)
                    {
                        let due = renew_at.is_none_or(|t| now >= t)
                            || pool.has_changed().unwrap_or(false);
                        if due || cert.own.read().map(|k| k.is_none()).unwrap_or(true) {
                            match issue_endpoint_svid(p.signing_ca(), id, now).and_then(|svid| {
                                let renew = svid.renew_at;
                                Credentials::from_der(
                                    svid.chain,
                                    svid.key,
                                    &podtls::Origin::memory("bundle endpoint SVID"),
                                    LeafKind::SpiffeSvid,
                                    now,
                                )
                                .map(|c| (c, renew))
                                .map_err(|e| {
                                    crate::Error::SelfCheck {
                                        reason: e.to_string(),
                                    }
                                })
                            }) {
                                Ok((creds, renew)) => {
                                    if let Ok(mut own) = cert.own.write() {
                                        *own = Some(creds.certified_key().clone());
                                    }
                                    renew_at = Some(renew);
                                    tracing::info!(%id, serial = %creds.info().serial, "bundle endpoint SVID issued");
                                }
                                Err(error) => {
                                    tracing::error!(%error, "issuing the bundle endpoint SVID failed; retrying");
                                    retry = retry.min(Duration::from_secs(10));
                                }
                            }
                        }
                        if let Some(t) = renew_at {
                            retry = retry.min(
                                t.duration_since(now)
                                    .unwrap_or_default()
                                    .max(Duration::from_secs(1)),
                            );
                        }
                    }
                }
                tokio::select! {
                    changed = pool.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        });
    }

    tracing::info!(addr = %config.listen, trust_domain = %config.trust_domain, profile = ?config.profile, "SPIFFE bundle endpoint listening");
    serve(listener, cert, doc_rx).await
}

/// Serves `doc` (the current document; `None`: 503) over TLS with `resolver`'s
/// certificate on `listener`, forever. Each handshake has 10 s, each connection 60 s.
pub async fn serve(
    listener: tokio::net::TcpListener,
    resolver: Arc<dyn ResolvesServerCert>,
    doc: watch::Receiver<Option<Arc<String>>>,
) -> Result<(), Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            reason: format!("bundle endpoint TLS: {e}"),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "bundle endpoint accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let doc_rx = doc.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "bundle endpoint handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let doc = doc_rx.borrow().clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(req.method(), doc)) }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

/// The response to one request (pure).
pub fn respond(method: &http::Method, doc: Option<Arc<String>>) -> http::Response<Full<Bytes>> {
    let builder = http::Response::builder();
    if method != http::Method::GET && method != http::Method::HEAD {
        return builder
            .status(http::StatusCode::METHOD_NOT_ALLOWED)
            .header(http::header::ALLOW, "GET, HEAD")
            .body(Full::new(Bytes::new()))
            .unwrap_or_default();
    }
    match doc {
        Some(doc) => builder
            .status(http::StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(doc.as_bytes().to_vec())))
            .unwrap_or_default(),
        None => builder
            .status(http::StatusCode::SERVICE_UNAVAILABLE)
            .body(Full::new(Bytes::from_static(b"bundle not available yet\n")))
            .unwrap_or_default(),
    }
}
