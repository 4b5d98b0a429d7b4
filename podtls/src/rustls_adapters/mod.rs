//! The rustls side of podtls: the trait implementations [`ServerTls`] and
//! [`ClientTls`] are built from, and the views their `tweak` hooks get.
//!
//! A service does not need this module: [`ServerTls`] / [`ClientTls`] (and
//! [`crate::serve`], [`crate::http`], [`crate::connect_tcp`] on top of them)
//! assemble these for it, with podtls' handshake path around them (deadline,
//! resumption that is never worth more than a full handshake, typed
//! rejections). They are public for code that assembles a rustls
//! configuration of its own, the way rustls fences its `danger` API: a
//! configuration built from them directly must leave resumption off, since
//! rustls resumes without asking any verifier.
//!
//! - [`CredentialResolver`]: `ResolvesServerCert` and `ResolvesClientCert`
//!   over live [`Credentials`](crate::Credentials).
//! - [`SpiffeClientVerifier`], [`SpiffeServerVerifier`], [`DnsServerVerifier`]:
//!   `ClientCertVerifier` / `ServerCertVerifier` over live bundles, thin
//!   adapters over [`crate::verification`].
//! - [`ServerTweaks`], [`ClientTweaks`]: what
//!   [`ServerTlsBuilder::tweak`](crate::ServerTlsBuilder::tweak) /
//!   [`ClientTlsBuilder::tweak`](crate::ClientTlsBuilder::tweak) hooks may
//!   change in the rustls configuration.
//!
//! [`ServerTls`]: crate::ServerTls
//! [`ClientTls`]: crate::ClientTls

mod resolver;
mod tweaks;
mod verifiers;

pub use resolver::CredentialResolver;
pub use tweaks::{ClientTweaks, ServerTweaks};
pub use verifiers::{DnsServerVerifier, SpiffeClientVerifier, SpiffeServerVerifier};

pub(crate) use tweaks::{ClientHooks, ServerHooks};
