//! rustls certificate resolvers over live credentials.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use crate::credentials::Credentials;
use crate::store::Store;

/// Serves whatever credentials are current at each handshake (one atomic
/// load, no lock). Before the first good load it resolves nothing, so
/// handshakes fail: closed, never with a stale or absent identity.
#[derive(Debug, Clone)]
pub struct CredentialResolver {
    credentials: Store<Credentials>,
}

impl CredentialResolver {
    /// A resolver over `credentials`.
    pub fn new(credentials: Store<Credentials>) -> Self {
        CredentialResolver { credentials }
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.credentials
            .guard()
            .as_ref()
            .map(|c| c.certified_key().clone())
    }
}

impl ResolvesServerCert for CredentialResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for CredentialResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}
