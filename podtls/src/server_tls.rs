//! The server side: [`ServerTls`], its builder and client authentication.

use std::sync::Arc;
use std::time::Duration;

use rustls::server::ServerSessionMemoryCache;
use rustls::{HandshakeKind, ServerConfig, ServerConnection, SupportedProtocolVersion};
use rustls_pki_types::UnixTime;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::authorizer::Authorizer;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::handshake::{run, HandshakeError, DEFAULT_HANDSHAKE_TIMEOUT};
use crate::peer_verification::{verify_spiffe_peer, PeerAuth, PeerIdentity, PeerRole, VerifyError};
use crate::rustls_adapters::{CredentialResolver, ServerHooks, ServerTweaks, SpiffeClientVerifier};
use crate::session::{Generation, PerGeneration, SESSION_CACHE_SIZE};
use crate::spiffe_bundles::SpiffeBundles;
use crate::store::Store;

/// Whether a SPIFFE client certificate is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    /// No certificate, or a certificate that fails verification or policy:
    /// the handshake fails.
    Required,
    /// The certificate is requested but the handshake succeeds without it, and
    /// verification is *deferred*: the server application gets a
    /// [`crate::PeerAuth`] (`Anonymous`, `Verified` or `Rejected` with the
    /// reason) from [`crate::ServerTls::peer_auth`] or the tokio / hyper helpers. Use it
    /// when the application wants to answer "401, because ..." instead of
    /// dropping the connection. Never read `peer_certificates()` directly in
    /// this mode: they are not verified.
    Optional,
}

/// SPIFFE client authentication on a server.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    bundles: SpiffeBundles,
    authorizer: Authorizer,
    mode: ClientCertMode,
}

impl ClientAuth {
    /// Clients must present an X509-SVID that verifies against `bundles` and
    /// passes `authorizer`; otherwise the handshake fails.
    pub fn required(bundles: SpiffeBundles, authorizer: Authorizer) -> Self {
        ClientAuth {
            bundles,
            authorizer,
            mode: ClientCertMode::Required,
        }
    }

    /// Clients may present an X509-SVID; the verdict is reported to the
    /// application as a [`PeerAuth`] (see [`ClientCertMode::Optional`]).
    pub fn optional(bundles: SpiffeBundles, authorizer: Authorizer) -> Self {
        ClientAuth {
            bundles,
            authorizer,
            mode: ClientCertMode::Optional,
        }
    }

    /// The mode.
    pub fn mode(&self) -> ClientCertMode {
        self.mode
    }
}

/// A TLS server configuration serving live credentials, plus what is needed
/// to tell the application who the client is.
///
/// Take connections through [`ServerTls::accept`] (or [`crate::serve`] /
/// [`crate::http::serve_http`], which do): it applies the handshake deadline,
/// resumes sessions safely and verifies resumed clients again.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Resumption off: for acceptors of the application's own.
    config: Arc<ServerConfig>,
    /// `Some` when resumption is on: the configuration of the current
    /// generation, for [`ServerTls::accept`].
    resuming: Option<Arc<PerGeneration<ServerConfig>>>,
    credentials: Store<Credentials>,
    client_auth: Option<ClientAuth>,
    handshake_timeout: Duration,
}

/// Builds a [`ServerTls`].
#[derive(Debug)]
pub struct ServerTlsBuilder {
    credentials: Store<Credentials>,
    client_auth: Option<ClientAuth>,
    alpn: Vec<Vec<u8>>,
    resumption: bool,
    handshake_timeout: Duration,
    versions: Option<Vec<&'static SupportedProtocolVersion>>,
    provider: Option<Arc<rustls::crypto::CryptoProvider>>,
    hooks: ServerHooks,
}

impl ServerTls {
    /// Starts a server configuration presenting `credentials`.
    pub fn builder(credentials: Store<Credentials>) -> ServerTlsBuilder {
        ServerTlsBuilder {
            credentials,
            client_auth: None,
            alpn: Vec::new(),
            resumption: true,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            versions: None,
            provider: None,
            hooks: ServerHooks::default(),
        }
    }

    /// A rustls configuration for an acceptor of your own
    /// (`tokio_rustls::TlsAcceptor::from`). Session resumption is **off** in
    /// it: rustls resumes without consulting any verifier, so only
    /// [`ServerTls::accept`], which verifies every resumed client again,
    /// resumes. Such an acceptor also has no handshake deadline unless you
    /// add one ([`ServerTls::handshake_timeout`]).
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// An owned copy of [`ServerTls::config`], for libraries that take the
    /// configuration by value. It shares podtls' live certificate resolver
    /// and client verifier; resumption is off, as in [`ServerTls::config`].
    pub fn owned_config(&self) -> ServerConfig {
        (*self.config).clone()
    }

    /// The live credentials this server presents.
    pub fn credentials(&self) -> &Store<Credentials> {
        &self.credentials
    }

    /// The deadline [`ServerTls::accept`] gives a whole handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The same server with another handshake deadline.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The client-auth policy, if any.
    pub fn client_auth(&self) -> Option<&ClientAuth> {
        self.client_auth.as_ref()
    }

    pub(crate) fn handshake_config(&self) -> Arc<ServerConfig> {
        match &self.resuming {
            Some(per) => per.current(),
            None => self.config.clone(),
        }
    }

    pub(crate) fn client_auth_required(&self) -> bool {
        self.client_auth
            .as_ref()
            .is_some_and(|a| a.mode == ClientCertMode::Required)
    }

    pub(crate) fn purge_sessions(&self) {
        if let Some(per) = &self.resuming {
            per.purge();
        }
    }

    /// Who the client of a finished handshake is.
    ///
    /// Without client auth: always `Anonymous`. Required mode, full
    /// handshake: the identity rustls verified. Optional mode, and every
    /// *resumed* handshake: verified now, against the current bundles and
    /// policy (a resumed session carries the chain of the handshake that
    /// created it; this is what makes it worth no more than a full handshake
    /// now).
    pub fn peer_auth(&self, conn: &ServerConnection) -> PeerAuth {
        let Some(auth) = &self.client_auth else {
            return PeerAuth::Anonymous;
        };
        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let Some((leaf, intermediates)) = conn.peer_certificates().and_then(|c| c.split_first())
        else {
            return match (auth.mode, resumed) {
                (ClientCertMode::Required, true) => {
                    PeerAuth::Rejected(Arc::new(VerifyError::NoCertificate))
                }
                _ => PeerAuth::Anonymous,
            };
        };
        match (auth.mode, resumed) {
            // rustls' client verifier (ours) verified this chain during the handshake.
            (ClientCertMode::Required, false) => match PeerIdentity::from_verified_leaf(leaf) {
                Ok(identity) => PeerAuth::Verified(Arc::new(identity)),
                Err(e) => PeerAuth::Rejected(Arc::new(e)),
            },
            _ => match verify_spiffe_peer(
                leaf,
                intermediates,
                &auth.bundles,
                &auth.authorizer,
                PeerRole::Client,
                UnixTime::now(),
            ) {
                Ok(id) => PeerAuth::Verified(Arc::new(id)),
                Err(e) => PeerAuth::Rejected(Arc::new(e)),
            },
        }
    }
}

impl ServerTlsBuilder {
    /// Adds SPIFFE client authentication.
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = Some(client_auth);
        self
    }

    /// ALPN protocols to offer, most preferred first (for example `h2`, `http/1.1`).
    pub fn alpn(mut self, protocols: &[&[u8]]) -> Self {
        self.alpn = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// Enables (default) or disables session resumption on
    /// [`ServerTls::accept`]. A session is resumed only within the generation
    /// of the material it was made with, and the client of every resumed
    /// session is verified again as a full handshake would verify it now.
    pub fn resumption(mut self, enabled: bool) -> Self {
        self.resumption = enabled;
        self
    }

    /// The deadline of a whole handshake in [`ServerTls::accept`] (default
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
    /// rustls' aws-lc-rs provider. To restrict cipher suites, pass a copy of
    /// it with a shorter `cipher_suites` list; for FIPS, build rustls with
    /// its `fips` feature and pass `rustls::crypto::default_fips_provider()`
    /// (then `config().fips()` tells whether the result is FIPS-approved).
    /// Keys are always loaded with podtls' aws-lc-rs provider.
    pub fn crypto_provider(mut self, provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Adjusts the rustls configuration after podtls has built it (ALPN, key
    /// log, fragment size, ...; see [`ServerTweaks`]). Hooks run in the
    /// order given, on every configuration podtls derives (with and without
    /// resumption). They cannot reach the certificate resolver, the client
    /// verifier or session resumption: those stay podtls' live ones.
    pub fn tweak(mut self, hook: impl FnOnce(&mut ServerTweaks<'_>) + Send + 'static) -> Self {
        self.hooks.0.push(Box::new(hook));
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    /// [`Error::Config`] for client auth without any trust domain;
    /// [`Error::Tls`] if rustls rejects the protocol setup.
    pub fn build(self) -> Result<ServerTls, Error> {
        let provider = self.provider.clone().unwrap_or_else(crate::provider);
        let builder = ServerConfig::builder_with_provider(provider);
        let builder = match &self.versions {
            Some(v) => builder.with_protocol_versions(v)?,
            None => builder.with_safe_default_protocol_versions()?,
        };
        let builder = match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some(auth) => {
                if auth.bundles.is_empty() {
                    return Err(Error::Config(
                        "SPIFFE client auth needs at least one trust domain bundle".into(),
                    ));
                }
                builder.with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(
                    auth.bundles.clone(),
                    auth.authorizer.clone(),
                    auth.mode,
                )))
            }
        };
        let credentials = self.credentials.clone();
        let mut config =
            builder.with_cert_resolver(Arc::new(CredentialResolver::new(self.credentials.clone())));
        config.alpn_protocols = self.alpn;
        for hook in self.hooks.0 {
            hook(&mut ServerTweaks::new(&mut config));
        }
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let resuming = self.resumption.then(|| {
            let bundles = self.client_auth.as_ref().map(|a| a.bundles.clone());
            let generation: Generation = Arc::new(move || {
                bundles.as_ref().map_or(0, SpiffeBundles::generation) + credentials.generation()
            });
            let base = config.clone();
            Arc::new(PerGeneration::new(generation, move || {
                let mut c = base.clone();
                c.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
                c.send_tls13_tickets = 2;
                c
            }))
        });
        Ok(ServerTls {
            config: Arc::new(config),
            resuming,
            credentials: self.credentials,
            client_auth: self.client_auth,
            handshake_timeout: self.handshake_timeout,
        })
    }
}

impl ServerTls {
    /// Performs the server side of a TLS handshake on `io` with the
    /// configured deadline, and reports who the client is.
    ///
    /// This is the path [`crate::serve`] and [`crate::http::serve_http`] take;
    /// an acceptor of your own should take it too. It resumes sessions
    /// (unless disabled) and verifies the client of every resumed session
    /// again, now: in required mode a client that no longer verifies is
    /// refused, in optional mode it is reported as [`PeerAuth::Rejected`].
    ///
    /// # Errors
    /// [`HandshakeError`]: deadline, rejected client certificate (full or
    /// resumed handshake), other TLS failures.
    pub async fn accept<IO>(
        &self,
        io: IO,
    ) -> Result<(tokio_rustls::server::TlsStream<IO>, PeerAuth), HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.handshake_config();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let stream = run(self.handshake_timeout(), acceptor.accept(io)).await?;
        let conn = stream.get_ref().1;
        let peer = self.peer_auth(conn);
        if conn.handshake_kind() == Some(HandshakeKind::Resumed) {
            if let (PeerAuth::Rejected(e), true) = (&peer, self.client_auth_required()) {
                self.purge_sessions();
                return Err(HandshakeError::ResumedPeerRejected(e.clone()));
            }
        }
        Ok((stream, peer))
    }
}
