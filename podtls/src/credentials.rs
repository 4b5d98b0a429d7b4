//! A pod's own key and certificate chain, validated.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::cert_info::CertInfo;
use crate::error::{rfc3339, Error, Origin};
use crate::pem;

/// What kind of leaf certificate the credentials must carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeafKind {
    /// Any end-entity certificate (for example `service-dns` certificates).
    #[default]
    Any,
    /// A valid X509-SVID (for `spiffe` certificates).
    SpiffeSvid,
}

/// A validated private key and certificate chain, ready to hand to rustls.
///
/// Construction guarantees: exactly one private key, at least one
/// certificate, every certificate parses, the key matches the leaf, the leaf
/// is not a CA and is inside its validity window at load time, and (with
/// [`LeafKind::SpiffeSvid`]) the leaf is a valid X509-SVID.
#[derive(Debug)]
pub struct Credentials {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

impl Credentials {
    /// Parses a kubelet credential bundle: one PEM text holding a private key
    /// (PKCS#8 `PRIVATE KEY`; SEC1 and PKCS#1 are accepted too) and the chain,
    /// leaf first.
    pub fn from_bundle_pem(
        pem: &[u8],
        origin: &Origin,
        kind: LeafKind,
        now: SystemTime,
    ) -> Result<Self, Error> {
        let blocks = pem::parse_blocks(pem, origin)?;
        let key = pem::single_key(blocks.keys, origin)?;
        if blocks.certs.is_empty() {
            return Err(Error::MissingCertificate {
                origin: origin.clone(),
            });
        }
        Self::from_der(blocks.certs, key, origin, kind, now)
    }

    /// Parses a separate private key PEM and certificate chain PEM.
    pub fn from_key_and_chain_pem(
        key_pem: &[u8],
        key_origin: &Origin,
        chain_pem: &[u8],
        chain_origin: &Origin,
        kind: LeafKind,
        now: SystemTime,
    ) -> Result<Self, Error> {
        let key = pem::single_key(pem::parse_blocks(key_pem, key_origin)?.keys, key_origin)?;
        let chain = pem::parse_certs(chain_pem, chain_origin)?;
        Self::from_der(chain, key, chain_origin, kind, now)
    }

    /// Validates DER material. `origin` names it in errors.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        origin: &Origin,
        kind: LeafKind,
        now: SystemTime,
    ) -> Result<Self, Error> {
        let Some(leaf_der) = chain.first() else {
            return Err(Error::MissingCertificate {
                origin: origin.clone(),
            });
        };
        for (index, cert) in chain.iter().enumerate().skip(1) {
            x509_parser::parse_x509_certificate(cert).map_err(|e| Error::Certificate {
                origin: origin.clone(),
                index,
                source: Box::new(e),
            })?;
        }
        let (_, leaf) =
            x509_parser::parse_x509_certificate(leaf_der).map_err(|e| Error::Certificate {
                origin: origin.clone(),
                index: 0,
                source: Box::new(e),
            })?;
        let info = CertInfo::from_parsed(&leaf);
        check_leaf(&leaf, &info, origin, kind, now)?;

        let provider = crate::provider();
        let signing_key =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| Error::PrivateKey {
                    origin: origin.clone(),
                    source: e,
                })?;
        let key = CertifiedKey::new(chain, signing_key);
        // An `Unknown` answer (a key that cannot report its public half) is
        // treated as a mismatch: we never serve a key we could not check.
        key.keys_match().map_err(|_| Error::KeyMismatch {
            origin: origin.clone(),
        })?;
        Ok(Credentials {
            key: Arc::new(key),
            info,
        })
    }

    /// The key and chain in the form rustls' resolvers return.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.key
    }

    /// The leaf certificate's summary.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }
}

fn check_leaf(
    leaf: &x509_parser::certificate::X509Certificate<'_>,
    info: &CertInfo,
    origin: &Origin,
    kind: LeafKind,
    now: SystemTime,
) -> Result<(), Error> {
    if now < info.not_before {
        return Err(Error::NotYetValid {
            origin: origin.clone(),
            serial: info.serial.clone(),
            not_before: rfc3339(info.not_before),
        });
    }
    if now > info.not_after {
        return Err(Error::Expired {
            origin: origin.clone(),
            serial: info.serial.clone(),
            not_after: rfc3339(info.not_after),
        });
    }
    let is_ca = leaf
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if is_ca {
        return Err(Error::LeafIsCa {
            origin: origin.clone(),
            serial: info.serial.clone(),
        });
    }
    if kind == LeafKind::SpiffeSvid {
        crate::svid::validate_svid_leaf(leaf).map_err(|reason| Error::InvalidSvid {
            origin: origin.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// The crypto provider podtls uses everywhere: rustls' aws-lc-rs provider
/// (it supports every key type kubelet generates, including ECDSA P-521).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}
