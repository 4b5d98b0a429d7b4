//! Fetching a peer's SPIFFE bundle document from its bundle endpoint (SPIFFE Trust
//! Domain and Bundle §5): one HTTPS GET, authenticated per the endpoint profile, with a
//! size and a time limit. The bytes go to [`parse_bundle_document`](crate::parse_bundle_document)
//! and [`accept_peer_bundle`](crate::accept_peer_bundle); this module only transports.
//!
//! - `https_web`: the server's chain must verify against the Web PKI roots
//!   (`webpki-root-certs`, Mozilla's) plus any operator-supplied CA, for the URL's host
//!   (rustls' WebPKI verifier: name, validity, EKU).
//! - `https_spiffe`: the server must present an X509-SVID of the peer trust domain that
//!   verifies against the peer's *current* bundle (the last good one, or the initial one)
//!   with exactly the configured `endpointSPIFFEID` (podtls' `SpiffeServerVerifier` with
//!   `Authorizer::exact`). The URL's host is used for SNI only.
//!
//! Limits: the whole exchange (connect, handshake, headers, body) within
//! [`FetchLimits::timeout`]; at most [`FetchLimits::max_bytes`] of body, counted as it
//! arrives (a peer streaming forever is cut off, never buffered). Only status 200 is
//! accepted; redirects are not followed (the endpoint is configuration).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use podtls::{
    rustls_adapters::SpiffeServerVerifier, Authorizer, SpiffeBundles, Store, TrustBundle,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};
use spiffe::SpiffeId;

/// The default size limit of a bundle document (1 MiB; a bundle of a few dozen CAs is a
/// few tens of KiB).
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;
/// The default time limit of one fetch.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Size and time limits of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The largest body accepted.
    pub max_bytes: usize,
    /// The longest a fetch may take, from connect to the last body byte.
    pub timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// How the endpoint is authenticated.
#[derive(Clone)]
pub enum EndpointAuth {
    /// Web PKI roots (and operator CAs).
    Web(Arc<RootCertStore>),
    /// The peer's current authorities (DER) and the endpoint's exact SPIFFE ID.
    Spiffe {
        /// The endpoint's SPIFFE ID.
        id: SpiffeId,
        /// The peer trust domain's current X.509 authorities.
        authorities: Vec<Vec<u8>>,
    },
}

impl std::fmt::Debug for EndpointAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointAuth::Web(roots) => write!(f, "https_web ({} roots)", roots.len()),
            EndpointAuth::Spiffe { id, authorities } => {
                write!(f, "https_spiffe ({id}, {} authorities)", authorities.len())
            }
        }
    }
}

/// The Web PKI roots (`webpki-root-certs`) plus `extra` (operator CAs, DER).
pub fn web_roots(extra: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .cloned()
            .chain(extra.iter().cloned()),
    );
    roots
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not an `https://host[:port]/path` URL.
    #[error("bundle endpoint URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The verifier could not be built (e.g. the peer's current bundle is unusable).
    #[error("bundle endpoint {url}: cannot authenticate it: {reason}")]
    Auth {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting, the TLS handshake (including the endpoint's authentication) or the
    /// HTTP exchange failed.
    #[error("bundle endpoint {url}: {step}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// `connect`, `tls` or `http`.
        step: &'static str,
        /// The error.
        reason: String,
    },
    /// The endpoint answered with another status than 200.
    #[error("bundle endpoint {url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than the limit.
    #[error("bundle endpoint {url}: the response is larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The fetch did not complete in time.
    #[error("bundle endpoint {url}: no complete response within {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        after: Duration,
    },
}

/// Fetches the document at `url`, authenticating the endpoint with `auth`.
pub async fn fetch(
    url: &str,
    auth: &EndpointAuth,
    limits: FetchLimits,
) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(limits.timeout, fetch_inner(url, auth, limits.max_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout {
            url: url.to_string(),
            after: limits.timeout,
        }),
    }
}

async fn fetch_inner(
    url: &str,
    auth: &EndpointAuth,
    max_bytes: usize,
) -> Result<Vec<u8>, FetchError> {
    let bad_url = |reason: &str| FetchError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad_url("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad_url("the scheme must be https"));
    }
    let host = uri.host().ok_or_else(|| bad_url("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| bad_url("the host is not a DNS name or IP address"))?;
    let verifier = verifier(auth).map_err(|reason| FetchError::Auth {
        url: url.to_string(),
        reason,
    })?;
    let transport = |step: &'static str| {
        move |e: &dyn std::fmt::Display| FetchError::Transport {
            url: url.to_string(),
            step,
            reason: e.to_string(),
        }
    };

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| transport("tls")(&e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| transport("connect")(&e))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name.to_owned(), tcp)
        .await
        .map_err(|e| transport("tls")(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| transport("http")(&e))?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| transport("http")(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| transport("http")(&e))?;
    if response.status() != http::StatusCode::OK {
        conn.abort();
        return Err(FetchError::Status {
            url: url.to_string(),
            status: response.status().as_u16(),
        });
    }
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: max_bytes,
    };
    if let Some(len) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max_bytes as u64 {
            conn.abort();
            return Err(too_large());
        }
    }
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| transport("http")(&e))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > max_bytes {
                conn.abort();
                return Err(too_large());
            }
            out.extend_from_slice(data);
        }
    }
    conn.abort();
    Ok(out)
}

/// The rustls verifier of the profile.
fn verifier(auth: &EndpointAuth) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    match auth {
        EndpointAuth::Web(roots) => {
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map(|v| v as Arc<dyn ServerCertVerifier>)
                .map_err(|e| format!("Web PKI roots: {e}"))
        }
        EndpointAuth::Spiffe { id, authorities } => {
            let certs: Vec<CertificateDer<'static>> = authorities
                .iter()
                .map(|d| CertificateDer::from(d.clone()))
                .collect();
            let origin =
                podtls::Origin::memory(&format!("current bundle of {}", id.trust_domain()));
            let bundle = TrustBundle::from_der(certs, &origin).map_err(|e| e.to_string())?;
            let bundles = SpiffeBundles::new([(
                id.trust_domain().clone(),
                Store::fixed(format!("bundle of {}", id.trust_domain()), bundle),
            )]);
            Ok(Arc::new(SpiffeServerVerifier::new(
                bundles,
                Authorizer::exact(id.clone()),
            )))
        }
    }
}

#[cfg(test)]
#[path = "bundle_fetch_tests.rs"]
mod tests;
