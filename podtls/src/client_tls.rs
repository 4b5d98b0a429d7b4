//! The client side: [`ClientTls`], its builder and server authentication.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::ClientSessionMemoryCache;
use rustls::{ClientConfig, HandshakeKind, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::authorizer::Authorizer;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::handshake::{run, HandshakeError, DEFAULT_HANDSHAKE_TIMEOUT};
use crate::peer_verification::{check_dns_server, verify_spiffe_peer, PeerRole, VerifyError};
use crate::rustls_adapters::{
    ClientHooks, ClientTweaks, CredentialResolver, DnsServerVerifier, SpiffeServerVerifier,
};
use crate::session::{Generation, PerGeneration, SESSION_CACHE_SIZE};
use crate::spiffe_bundles::SpiffeBundles;
use crate::store::Store;
use crate::trust_bundle::TrustBundle;

/// How a client verifies the server.
#[derive(Debug, Clone)]
pub enum ServerAuth {
    /// WebPKI: the server name (DNS) against these reloadable roots
    /// (the `service-dns` signer's flow).
    Dns(Store<TrustBundle>),
    /// Full SPIFFE: the server's X509-SVID against the bundle of its trust
    /// domain, then the authorizer; the DNS name is not checked.
    Spiffe(SpiffeBundles, Authorizer),
}

impl ServerAuth {
    fn generation(&self) -> u64 {
        match self {
            ServerAuth::Dns(roots) => roots.generation(),
            ServerAuth::Spiffe(bundles, _) => bundles.generation(),
        }
    }

    /// Verifies a server chain as a full handshake would at `now` (what a
    /// resumed session's stored chain is checked with).
    pub(crate) fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), VerifyError> {
        match self {
            ServerAuth::Dns(roots) => {
                let bundle = roots.current().ok_or_else(|| VerifyError::RootsNotLoaded {
                    what: roots.status().name.to_string(),
                })?;
                check_dns_server(end_entity, intermediates, server_name, &bundle, now)
            }
            ServerAuth::Spiffe(bundles, authorizer) => verify_spiffe_peer(
                end_entity,
                intermediates,
                bundles,
                authorizer,
                PeerRole::Server,
                now,
            )
            .map(|_| ()),
        }
    }
}

/// A TLS client configuration over live trust bundles (and, optionally,
/// live client credentials).
///
/// Connect through [`ClientTls::connect`] (or [`crate::http::HttpsConnector`],
/// which does): it applies the handshake deadline, resumes sessions safely
/// and verifies resumed servers again. [`ClientTls::config`] is for clients
/// of your own (reqwest, tonic, a plain `TlsConnector`): resumption is off
/// there.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    resuming: Option<Arc<PerGeneration<ClientConfig>>>,
    server_auth: ServerAuth,
    credentials: Option<Store<Credentials>>,
    generation: Generation,
    handshake_timeout: Duration,
}

/// Builds a [`ClientTls`].
#[derive(Debug)]
pub struct ClientTlsBuilder {
    server_auth: ServerAuth,
    credentials: Option<Store<Credentials>>,
    alpn: Vec<Vec<u8>>,
    resumption: bool,
    handshake_timeout: Duration,
    versions: Option<Vec<&'static SupportedProtocolVersion>>,
    provider: Option<Arc<rustls::crypto::CryptoProvider>>,
    hooks: ClientHooks,
}

impl ClientTls {
    /// Starts a client configuration that verifies servers with `server_auth`.
    pub fn builder(server_auth: ServerAuth) -> ClientTlsBuilder {
        ClientTlsBuilder {
            server_auth,
            credentials: None,
            alpn: Vec::new(),
            resumption: true,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            versions: None,
            provider: None,
            hooks: ClientHooks::default(),
        }
    }

    /// A rustls configuration for clients of your own. Session resumption is
    /// **off** in it: rustls resumes without consulting any verifier, so only
    /// [`ClientTls::connect`], which verifies every resumed server again,
    /// resumes.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// An owned copy of [`ClientTls::config`], for libraries that take the
    /// configuration by value: reqwest's
    /// `ClientBuilder::tls_backend_preconfigured` (formerly
    /// `use_preconfigured_tls`) recognises only an owned
    /// `rustls::ClientConfig`; given `Arc<ClientConfig>` it builds nothing
    /// and `build()` fails with a bare "builder error".
    ///
    /// The copy shares podtls' live verifier and client-certificate
    /// resolver, so every *new* connection made with it sees the current
    /// certificates and bundles. Connections the library pools keep the
    /// certificates they were made with: give it an idle timeout well below
    /// the certificate lifetime (reqwest: `pool_idle_timeout`). Resumption is
    /// off, as in [`ClientTls::config`].
    pub fn owned_config(&self) -> ClientConfig {
        (*self.config).clone()
    }

    /// How servers are verified.
    pub fn server_auth(&self) -> &ServerAuth {
        &self.server_auth
    }

    /// The live credentials presented when a server asks for a client
    /// certificate, if any.
    pub fn client_credentials(&self) -> Option<&Store<Credentials>> {
        self.credentials.as_ref()
    }

    /// The deadline [`ClientTls::connect`] gives a whole handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The same client with another handshake deadline.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The same client offering `protocols` by ALPN.
    pub fn with_alpn(self, protocols: &[&[u8]]) -> Self {
        let mut base = (*self.config).clone();
        base.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        let resuming = self
            .resuming
            .is_some()
            .then(|| Arc::new(per_generation(&base, self.generation.clone())));
        ClientTls {
            config: Arc::new(base),
            resuming,
            ..self
        }
    }

    pub(crate) fn handshake_config(&self) -> Arc<ClientConfig> {
        match &self.resuming {
            Some(per) => per.current(),
            None => self.config.clone(),
        }
    }

    pub(crate) fn purge_sessions(&self) {
        if let Some(per) = &self.resuming {
            per.purge();
        }
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_auth", &self.server_auth)
            .field("credentials", &self.credentials)
            .field("resuming", &self.resuming)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

fn per_generation(base: &ClientConfig, generation: Generation) -> PerGeneration<ClientConfig> {
    let base = base.clone();
    PerGeneration::new(generation, move || {
        let mut c = base.clone();
        c.resumption = rustls::client::Resumption::store(Arc::new(ClientSessionMemoryCache::new(
            SESSION_CACHE_SIZE,
        )));
        c
    })
}

impl ClientTlsBuilder {
    /// Presents these live credentials when the server asks for a client
    /// certificate. New connections use a rotated certificate immediately.
    pub fn client_credentials(mut self, credentials: Store<Credentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// ALPN protocols to offer, most preferred first.
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// Enables (default) or disables session resumption on
    /// [`ClientTls::connect`]. A session is resumed only within the generation
    /// of the material it was made with, and the server of every resumed
    /// session is verified again as a full handshake would verify it now.
    pub fn resumption(mut self, enabled: bool) -> Self {
        self.resumption = enabled;
        self
    }

    /// The deadline of a whole handshake in [`ClientTls::connect`] (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Restricts the TLS versions (default: TLS 1.3 and 1.2).
    pub fn protocol_versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> Self {
        self.versions = Some(versions.to_vec());
        self
    }

    /// The crypto provider (cipher suites, key exchange groups, signature
    /// algorithms for the handshake). Default: [`crate::provider()`],
    /// rustls' aws-lc-rs provider; see [`crate::ServerTlsBuilder::crypto_provider`]
    /// for restricting cipher suites and FIPS.
    pub fn crypto_provider(mut self, provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Adjusts the rustls configuration after podtls has built it (ALPN, key
    /// log, SNI, ...; see [`ClientTweaks`]). Hooks run in the order given,
    /// on every configuration podtls derives. They cannot reach the server
    /// verifier, the client-certificate resolver or session resumption:
    /// those stay podtls' live ones.
    pub fn tweak(mut self, hook: impl FnOnce(&mut ClientTweaks<'_>) + Send + 'static) -> Self {
        self.hooks.0.push(Box::new(hook));
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    /// [`Error::Config`] for SPIFFE verification without bundles;
    /// [`Error::Tls`] if rustls rejects the protocol setup.
    pub fn build(self) -> Result<ClientTls, Error> {
        let provider = self.provider.clone().unwrap_or_else(crate::provider);
        let builder = ClientConfig::builder_with_provider(provider);
        let builder = match &self.versions {
            Some(v) => builder.with_protocol_versions(v)?,
            None => builder.with_safe_default_protocol_versions()?,
        };
        let builder = match &self.server_auth {
            ServerAuth::Dns(roots) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(DnsServerVerifier::new(roots.clone()))),
            ServerAuth::Spiffe(bundles, authorizer) => {
                if bundles.is_empty() {
                    return Err(Error::Config(
                        "SPIFFE server verification needs at least one trust domain bundle".into(),
                    ));
                }
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(
                        bundles.clone(),
                        authorizer.clone(),
                    )))
            }
        };
        let mut config = match &self.credentials {
            Some(creds) => {
                builder.with_client_cert_resolver(Arc::new(CredentialResolver::new(creds.clone())))
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        for hook in self.hooks.0 {
            hook(&mut ClientTweaks::new(&mut config));
        }
        config.resumption = rustls::client::Resumption::disabled();
        let auth = self.server_auth.clone();
        let creds = self.credentials.clone();
        let generation: Generation =
            Arc::new(move || auth.generation() + creds.as_ref().map_or(0, Store::generation));
        let resuming = self
            .resumption
            .then(|| Arc::new(per_generation(&config, generation.clone())));
        Ok(ClientTls {
            config: Arc::new(config),
            resuming,
            server_auth: self.server_auth,
            credentials: self.credentials,
            generation,
            handshake_timeout: self.handshake_timeout,
        })
    }
}

impl ClientTls {
    /// Performs the client side of a TLS handshake on `io` for `server_name`
    /// with the configured deadline.
    ///
    /// Sessions are resumed (unless disabled), and the server of every
    /// resumed session is verified again, now, against the current bundles
    /// and authorizer; one that no longer verifies is refused and every
    /// cached session dropped, so the next connection does a full handshake
    /// ([`crate::http::HttpsConnector`] retries it at once).
    ///
    /// # Errors
    /// [`HandshakeError`]: deadline, rejected server certificate (full or
    /// resumed handshake), other TLS failures.
    pub async fn connect<IO>(
        &self,
        server_name: ServerName<'static>,
        io: IO,
    ) -> Result<tokio_rustls::client::TlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.handshake_config();
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = run(
            self.handshake_timeout(),
            connector.connect(server_name.clone(), io),
        )
        .await?;
        let conn = stream.get_ref().1;
        if conn.handshake_kind() == Some(HandshakeKind::Resumed) {
            let chain = conn.peer_certificates().unwrap_or_default();
            let verdict = match chain.split_first() {
                Some((leaf, intermediates)) => {
                    self.server_auth()
                        .verify(leaf, intermediates, &server_name, UnixTime::now())
                }
                None => Err(VerifyError::NoCertificate),
            };
            if let Err(e) = verdict {
                self.purge_sessions();
                return Err(HandshakeError::ResumedPeerRejected(Arc::new(e)));
            }
        }
        Ok(stream)
    }
}
