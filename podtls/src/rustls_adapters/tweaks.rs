//! The customization hook of [`crate::ServerTlsBuilder::tweak`] and
//! [`crate::ClientTlsBuilder::tweak`]: adjust the rustls configuration
//! podtls builds without being able to lose what makes it podtls.
//!
//! The hook is handed a view of the configuration, not the configuration:
//! the settings that cannot weaken authentication are writable (ALPN, key
//! log, fragment size, extended master secret, SNI, secret extraction for
//! kTLS); everything else is read-only. Replacing the certificate resolver
//! or verifier, turning on resumption outside podtls' handshake path, or
//! enabling 0-RTT data is impossible by type, not refused at run time:
//!
//! ```compile_fail,E0616
//! # use std::sync::Arc;
//! # fn attack(t: &mut podtls::rustls_adapters::ServerTweaks<'_>, r: Arc<dyn rustls::server::ResolvesServerCert>) {
//! t.config.cert_resolver = r; // private field: does not compile
//! # }
//! ```
//!
//! ```compile_fail,E0596
//! # use std::sync::Arc;
//! # fn attack(t: &mut podtls::rustls_adapters::ClientTweaks<'_>, v: Arc<dyn rustls::client::danger::ServerCertVerifier>) {
//! // `config()` is read-only: no `dangerous()` verifier swap.
//! t.config().dangerous().set_certificate_verifier(v);
//! # }
//! ```
//!
//! (The same two lines against a `&mut ClientConfig` compile: it is the
//! view that stops them.)
//!
//! TLS versions and cipher suites are builder settings
//! (`protocol_versions`, `crypto_provider`), because rustls fixes them when
//! the configuration is built.

use std::sync::Arc;

use rustls::{ClientConfig, KeyLog, ServerConfig};

/// The adjustable part of a server's rustls configuration; see
/// [`crate::ServerTlsBuilder::tweak`].
#[derive(Debug)]
pub struct ServerTweaks<'a> {
    config: &'a mut ServerConfig,
}

impl<'a> ServerTweaks<'a> {
    pub(crate) fn new(config: &'a mut ServerConfig) -> Self {
        ServerTweaks { config }
    }

    /// The configuration as built so far (read-only).
    pub fn config(&self) -> &ServerConfig {
        self.config
    }

    /// ALPN protocols offered, most preferred first (replaces
    /// [`crate::ServerTlsBuilder::alpn`]'s list).
    pub fn alpn_protocols(&mut self) -> &mut Vec<Vec<u8>> {
        &mut self.config.alpn_protocols
    }

    /// Where session secrets are logged (for example
    /// [`rustls::KeyLogFile`], which honours `SSLKEYLOGFILE`). Debugging only:
    /// the log decrypts every session.
    pub fn key_log(&mut self, key_log: Arc<dyn KeyLog>) -> &mut Self {
        self.config.key_log = key_log;
        self
    }

    /// The largest TLS record fragment to send (`None`: rustls' default).
    pub fn max_fragment_size(&mut self, size: Option<usize>) -> &mut Self {
        self.config.max_fragment_size = size;
        self
    }

    /// Choose the cipher suite by the server's preference instead of the
    /// client's.
    pub fn ignore_client_order(&mut self, ignore: bool) -> &mut Self {
        self.config.ignore_client_order = ignore;
        self
    }

    /// Refuse TLS 1.2 clients that do not support the extended master
    /// secret (rustls' default: refused in FIPS mode only).
    pub fn require_ems(&mut self, require: bool) -> &mut Self {
        self.config.require_ems = require;
        self
    }

    /// Allow extracting the traffic secrets after the handshake (kernel TLS
    /// offload).
    pub fn enable_secret_extraction(&mut self, enable: bool) -> &mut Self {
        self.config.enable_secret_extraction = enable;
        self
    }
}

/// The adjustable part of a client's rustls configuration; see
/// [`crate::ClientTlsBuilder::tweak`].
#[derive(Debug)]
pub struct ClientTweaks<'a> {
    config: &'a mut ClientConfig,
}

impl<'a> ClientTweaks<'a> {
    pub(crate) fn new(config: &'a mut ClientConfig) -> Self {
        ClientTweaks { config }
    }

    /// The configuration as built so far (read-only).
    pub fn config(&self) -> &ClientConfig {
        self.config
    }

    /// ALPN protocols offered, most preferred first (replaces
    /// [`crate::ClientTlsBuilder::alpn`]'s list).
    pub fn alpn_protocols(&mut self) -> &mut Vec<Vec<u8>> {
        &mut self.config.alpn_protocols
    }

    /// Where session secrets are logged (for example
    /// [`rustls::KeyLogFile`], which honours `SSLKEYLOGFILE`). Debugging only:
    /// the log decrypts every session.
    pub fn key_log(&mut self, key_log: Arc<dyn KeyLog>) -> &mut Self {
        self.config.key_log = key_log;
        self
    }

    /// The largest TLS record fragment to send (`None`: rustls' default).
    pub fn max_fragment_size(&mut self, size: Option<usize>) -> &mut Self {
        self.config.max_fragment_size = size;
        self
    }

    /// Whether to send the server name (SNI; default on). SPIFFE server
    /// verification does not depend on it; DNS verification still checks
    /// the name.
    pub fn enable_sni(&mut self, enable: bool) -> &mut Self {
        self.config.enable_sni = enable;
        self
    }

    /// Refuse TLS 1.2 servers that do not support the extended master
    /// secret (rustls' default: refused in FIPS mode only).
    pub fn require_ems(&mut self, require: bool) -> &mut Self {
        self.config.require_ems = require;
        self
    }

    /// Allow extracting the traffic secrets after the handshake (kernel TLS
    /// offload).
    pub fn enable_secret_extraction(&mut self, enable: bool) -> &mut Self {
        self.config.enable_secret_extraction = enable;
        self
    }
}

/// The hooks a builder collects, applied in order at `build`
/// (`F` is `dyn FnOnce(&mut ServerTweaks<'_>) + Send` or the client's).
pub(crate) struct Hooks<F: ?Sized>(pub(crate) Vec<Box<F>>);

/// A server builder's hooks.
pub(crate) type ServerHooks = Hooks<dyn FnOnce(&mut ServerTweaks<'_>) + Send>;
/// A client builder's hooks.
pub(crate) type ClientHooks = Hooks<dyn FnOnce(&mut ClientTweaks<'_>) + Send>;

impl<F: ?Sized> Default for Hooks<F> {
    fn default() -> Self {
        Hooks(Vec::new())
    }
}

impl<F: ?Sized> std::fmt::Debug for Hooks<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} hook(s)", self.0.len())
    }
}
