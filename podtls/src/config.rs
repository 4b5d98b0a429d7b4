//! Builders for the common rustls configurations.

use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ServerConfig, ServerConnection};
use rustls_pki_types::UnixTime;

use crate::authorizer::Authorizer;
use crate::cert_info::CertInfo;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::resolver::CredentialResolver;
use crate::session::{GenerationalClientSessions, GenerationalServerSessions};
use crate::spiffe_bundles::SpiffeBundles;
use crate::store::Store;
use crate::trust_bundle::TrustBundle;
use crate::verifier::{
    ClientCertMode, DnsServerVerifier, SpiffeClientVerifier, SpiffeServerVerifier,
};
use crate::verify::{verify_spiffe_peer, PeerAuth, PeerIdentity, PeerRole, VerifyError};

const SESSION_CACHE_SIZE: usize = 1024;

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
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    client_auth: Option<ClientAuth>,
}

/// Builds a [`ServerTls`].
#[derive(Debug)]
pub struct ServerTlsBuilder {
    credentials: Store<Credentials>,
    client_auth: Option<ClientAuth>,
    alpn: Vec<Vec<u8>>,
    /// `Some(quiet period)` when resumption is on.
    resumption: Option<Duration>,
}

impl ServerTls {
    /// Starts a server configuration presenting `credentials`.
    pub fn builder(credentials: Store<Credentials>) -> ServerTlsBuilder {
        ServerTlsBuilder {
            credentials,
            client_auth: None,
            alpn: Vec::new(),
            resumption: Some(crate::session::QUIET_PERIOD),
        }
    }

    /// The rustls configuration (for `tokio_rustls::TlsAcceptor::from`).
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// The client-auth policy, if any.
    pub fn client_auth(&self) -> Option<&ClientAuth> {
        self.client_auth.as_ref()
    }

    /// Who the client of a finished handshake is.
    ///
    /// Without client auth: always `Anonymous`. Required: the (already
    /// verified) identity. Optional: the deferred verification runs now
    /// against the current bundles and policy.
    pub fn peer_auth(&self, conn: &ServerConnection) -> PeerAuth {
        let Some(auth) = &self.client_auth else {
            return PeerAuth::Anonymous;
        };
        let Some((leaf, intermediates)) = conn.peer_certificates().and_then(|c| c.split_first())
        else {
            return PeerAuth::Anonymous;
        };
        match auth.mode {
            ClientCertMode::Required => match CertInfo::from_der(leaf) {
                Ok(certificate) => PeerAuth::Verified(Arc::new(PeerIdentity { certificate })),
                Err(e) => PeerAuth::Rejected(Arc::new(VerifyError::Svid(
                    crate::svid::SvidError::Malformed(e),
                ))),
            },
            ClientCertMode::Optional => match verify_spiffe_peer(
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

    /// Enables (default) or disables session resumption. When enabled,
    /// sessions are tied to the generation of the trust bundles and
    /// credentials in use (see [`crate::session`]).
    pub fn resumption(mut self, enabled: bool) -> Self {
        self.resumption = enabled.then_some(crate::session::QUIET_PERIOD);
        self
    }

    /// Enables resumption with a quiet period other than the default
    /// [`QUIET_PERIOD`](crate::session::QUIET_PERIOD): for that long after a
    /// rotation no new session is cached. It must be at least the handshake
    /// deadline (sessions of handshakes begun before a rotation must not be
    /// cached after it).
    pub fn resumption_quiet_period(mut self, quiet: Duration) -> Self {
        self.resumption = Some(quiet);
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    /// [`Error::Config`] for client auth without any trust domain;
    /// [`Error::Tls`] if rustls rejects the protocol setup.
    pub fn build(self) -> Result<ServerTls, Error> {
        let builder = ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?;
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
            builder.with_cert_resolver(Arc::new(CredentialResolver::new(self.credentials)));
        config.alpn_protocols = self.alpn;
        if let Some(quiet) = self.resumption {
            let bundles = self.client_auth.as_ref().map(|a| a.bundles.clone());
            config.session_storage = Arc::new(GenerationalServerSessions::new(
                SESSION_CACHE_SIZE,
                Arc::new(move || {
                    bundles.as_ref().map_or(0, SpiffeBundles::generation) + credentials.generation()
                }),
                quiet,
            ));
        } else {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(ServerTls {
            config: Arc::new(config),
            client_auth: self.client_auth,
        })
    }
}

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

/// Builds a client [`ClientConfig`].
#[derive(Debug)]
pub struct ClientTlsBuilder {
    server_auth: ServerAuth,
    credentials: Option<Store<Credentials>>,
    alpn: Vec<Vec<u8>>,
    /// `Some(quiet period)` when resumption is on.
    resumption: Option<Duration>,
}

/// Client-side configuration entry point.
pub struct ClientTls;

impl ClientTls {
    /// Starts a client configuration that verifies servers with `server_auth`.
    pub fn builder(server_auth: ServerAuth) -> ClientTlsBuilder {
        ClientTlsBuilder {
            server_auth,
            credentials: None,
            alpn: Vec::new(),
            resumption: Some(crate::session::QUIET_PERIOD),
        }
    }
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

    /// Enables (default) or disables session resumption (tied to the
    /// generation of the trust bundles and credentials in use when enabled).
    pub fn resumption(mut self, enabled: bool) -> Self {
        self.resumption = enabled.then_some(crate::session::QUIET_PERIOD);
        self
    }

    /// Enables resumption with a quiet period other than the default
    /// [`QUIET_PERIOD`](crate::session::QUIET_PERIOD): for that long after a
    /// rotation no new session is cached. It must be at least the longest
    /// handshake.
    pub fn resumption_quiet_period(mut self, quiet: Duration) -> Self {
        self.resumption = Some(quiet);
        self
    }

    /// Builds the configuration.
    ///
    /// # Errors
    /// [`Error::Config`] for SPIFFE verification without bundles;
    /// [`Error::Tls`] if rustls rejects the protocol setup.
    pub fn build(self) -> Result<Arc<ClientConfig>, Error> {
        let builder = ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?;
        let mut generation: crate::session::Generation;
        let builder = match self.server_auth {
            ServerAuth::Dns(roots) => {
                let r = roots.clone();
                generation = Arc::new(move || r.generation());
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(DnsServerVerifier::new(roots)))
            }
            ServerAuth::Spiffe(bundles, authorizer) => {
                if bundles.is_empty() {
                    return Err(Error::Config(
                        "SPIFFE server verification needs at least one trust domain bundle".into(),
                    ));
                }
                let b = bundles.clone();
                generation = Arc::new(move || b.generation());
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(
                        bundles, authorizer,
                    )))
            }
        };
        let mut config = match &self.credentials {
            Some(creds) => {
                builder.with_client_cert_resolver(Arc::new(CredentialResolver::new(creds.clone())))
            }
            None => builder.with_no_client_auth(),
        };
        if let Some(creds) = self.credentials {
            let trust = generation;
            generation = Arc::new(move || trust() + creds.generation());
        }
        config.alpn_protocols = self.alpn;
        config.resumption = match self.resumption {
            Some(quiet) => rustls::client::Resumption::store(Arc::new(
                GenerationalClientSessions::new(SESSION_CACHE_SIZE, generation, quiet),
            )),
            None => rustls::client::Resumption::disabled(),
        };
        Ok(Arc::new(config))
    }
}
