//! Sets of CA certificates to verify peers against.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::error::{Error, Origin};
use crate::pem;

/// A deduplicated set of CA certificates, as projected by kubelet from
/// ClusterTrustBundles (order is not meaningful).
///
/// A bundle is never empty: an empty PEM file is an error
/// ([`Error::EmptyTrustBundle`]), so an empty projection keeps the last good
/// bundle, and before the first good one every verification fails (closed).
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    /// Prebuilt once per bundle so a handshake never builds a verifier.
    server_verifier: Arc<WebPkiServerVerifier>,
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("authorities", &self.certs.len())
            .finish()
    }
}

impl TrustBundle {
    /// Parses a PEM file of CA certificates.
    pub fn from_pem(pem: &[u8], origin: &Origin) -> Result<Self, Error> {
        let blocks = pem::parse_blocks(pem, origin)?;
        Self::from_der(blocks.certs, origin)
    }

    /// Builds a bundle from DER certificates (duplicates are dropped).
    pub fn from_der(certs: Vec<CertificateDer<'static>>, origin: &Origin) -> Result<Self, Error> {
        let mut seen = BTreeSet::new();
        let certs: Vec<_> = certs
            .into_iter()
            .filter(|c| seen.insert(c.as_ref().to_vec()))
            .collect();
        if certs.is_empty() {
            return Err(Error::EmptyTrustBundle {
                origin: origin.clone(),
            });
        }
        let mut anchors = Vec::with_capacity(certs.len());
        for (index, cert) in certs.iter().enumerate() {
            let anchor =
                webpki::anchor_from_trusted_cert(cert).map_err(|e| Error::TrustAnchor {
                    origin: origin.clone(),
                    index,
                    detail: format!("{e:?}"),
                })?;
            anchors.push(anchor.to_owned());
        }
        let roots = RootCertStore {
            roots: anchors.clone(),
        };
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::provider())
                .build()
                .map_err(|e| Error::TrustAnchor {
                    origin: origin.clone(),
                    index: 0,
                    detail: e.to_string(),
                })?;
        Ok(TrustBundle {
            certs,
            anchors,
            server_verifier,
        })
    }

    /// The CA certificates.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The trust anchors derived from the certificates.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// A WebPKI (DNS name) server verifier over exactly these roots.
    pub fn server_verifier(&self) -> &Arc<WebPkiServerVerifier> {
        &self.server_verifier
    }

    /// The number of distinct CA certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Always false: bundles are never empty. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}
