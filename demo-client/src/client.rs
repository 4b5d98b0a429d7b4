//! Builds the podtls material, the TLS configuration and the HTTP client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use podtls::http::{HttpsConnector, TlsConnection};
use podtls::{parse_spiffe_id, parse_trust_domain, Authorizer, ClientTls, PodTls, ServerAuth};

use crate::args::{parse_resolve, ConnArgs};

/// The HTTP client used by both modes.
pub type HttpClient = Client<CountingConnector, Full<Bytes>>;

/// Everything a mode needs.
pub struct Setup {
    /// Keeps the watchers alive.
    pub pod: PodTls,
    /// The connector (counts connections, i.e. full TLS handshakes).
    pub connector: CountingConnector,
    /// Per-request deadline.
    pub timeout: std::time::Duration,
    /// The URL.
    pub url: Uri,
    /// Pool idle timeout.
    pub pool_idle_timeout: std::time::Duration,
}

impl Setup {
    /// Validates flags, loads files, builds the client configuration.
    ///
    /// # Errors
    /// Bad flag combinations, bad values, or files that are missing or
    /// invalid (after `--wait-for-credentials`).
    pub async fn new(args: &ConnArgs) -> Result<Setup> {
        let url: Uri = args
            .fetch_url
            .parse()
            .with_context(|| format!("--fetch-url {:?}", args.fetch_url))?;
        if url.scheme_str() != Some("https") || url.host().is_none() {
            bail!(
                "--fetch-url {:?}: must be an https:// URL with a host",
                args.fetch_url
            );
        }
        let overrides = args
            .resolve
            .iter()
            .map(|spec| parse_resolve(spec))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let spiffe_mode = args.server_spiffe_id.is_some() || args.server_trust_domain.is_some();
        let mut builder = PodTls::builder().timing(podtls::reload::ReloadTiming::default());
        let mut server_td = None;
        let folder = args.credential_folder.is_some();
        if let Some(folder) = &args.credential_folder {
            builder = builder.credential_folder(folder);
        } else if spiffe_mode {
            let Some(bundle) = &args.spiffe_trust_bundle else {
                bail!(
                    "--server-spiffe-id / --server-trust-domain need --spiffe-trust-bundle <file>"
                );
            };
            let td = if let Some(id) = &args.server_spiffe_id {
                parse_spiffe_id(id)
                    .with_context(|| format!("--server-spiffe-id {id:?}"))?
                    .trust_domain()
                    .clone()
            } else {
                let td = args.server_trust_domain.as_deref().unwrap_or_default();
                parse_trust_domain(td).with_context(|| format!("--server-trust-domain {td:?}"))?
            };
            builder = builder.spiffe_bundle(td.clone(), bundle);
            server_td = Some(td);
        } else {
            let Some(roots) = &args.server_trust_bundle else {
                bail!("give --server-trust-bundle <file> (DNS verification) or --server-spiffe-id / --server-trust-domain with --spiffe-trust-bundle (full SPIFFE)");
            };
            builder = builder.roots(roots);
        }
        if let Some(creds) = &args.client_cred_bundle {
            builder = builder.credential_bundle(creds);
        }
        if folder {
            server_td = match (&args.server_spiffe_id, &args.server_trust_domain) {
                (Some(id), _) => Some(
                    parse_spiffe_id(id)
                        .with_context(|| format!("--server-spiffe-id {id:?}"))?
                        .trust_domain()
                        .clone(),
                ),
                (None, Some(td)) => Some(
                    parse_trust_domain(td)
                        .with_context(|| format!("--server-trust-domain {td:?}"))?,
                ),
                (None, None) => None,
            };
        }
        let pod = builder.start()?;
        podtls_bin_support::readiness::wait_until_ready(&pod, args.wait_for_credentials).await?;
        let server_auth = match (server_td, &args.server_spiffe_id) {
            // A folder without a server policy: any server whose chain
            // verifies against its own trust domain's bundle in the folder.
            (None, _) if folder => {
                ServerAuth::Spiffe(pod.spiffe_bundles().clone(), Authorizer::any())
            }
            (Some(_), Some(id)) => ServerAuth::Spiffe(
                pod.spiffe_bundles().clone(),
                Authorizer::exact(parse_spiffe_id(id)?),
            ),
            (Some(td), None) => {
                ServerAuth::Spiffe(pod.spiffe_bundles().clone(), Authorizer::member_of([td]))
            }
            (None, _) => ServerAuth::Dns(pod.roots().context("roots configured")?.clone()),
        };
        let mut tls = ClientTls::builder(server_auth).alpn(&[b"h2", b"http/1.1"]);
        if let Some(creds) = pod.credentials() {
            tls = tls.client_credentials(creds.clone());
        }
        let mut connector = HttpsConnector::new(tls.build()?).connect_timeout(args.timeout);
        for (host, port, addr) in overrides {
            connector = connector.resolve(&host, port, addr);
        }
        Ok(Setup {
            pod,
            connector: CountingConnector {
                inner: connector,
                connections: Arc::default(),
            },
            timeout: args.timeout,
            url,
            pool_idle_timeout: args.pool_idle_timeout,
        })
    }

    /// A client; `reuse = false` opens a new connection for every request.
    pub fn client(&self, reuse: bool) -> HttpClient {
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(self.pool_idle_timeout);
        if !reuse {
            b.pool_max_idle_per_host(0);
        }
        b.build(self.connector.clone())
    }
}

/// Wraps the podtls connector to count the connections it opens.
#[derive(Clone, Debug)]
pub struct CountingConnector {
    inner: HttpsConnector,
    /// Connections opened (each one a full or resumed TLS handshake).
    pub connections: Arc<AtomicU64>,
}

impl tower_service::Service<Uri> for CountingConnector {
    type Response = TlsConnection;
    type Error = std::io::Error;
    type Future = <HttpsConnector as tower_service::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.inner.call(uri)
    }
}
