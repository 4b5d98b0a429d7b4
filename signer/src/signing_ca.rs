//! One certificate authority of a pool: its key, root certificate and intermediates.

use std::fmt;
use std::time::SystemTime;

use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::requested_key::key_type_of;
use crate::{Error, KeyType};

/// A parsed, checked CA: it can sign.
///
/// As in the original meshtool's `localca`, a leaf is signed by `SigningKeyPKCS8` with
/// `RootCertificateDER` as its issuer, the chain handed out is the leaf followed by
/// `IntermediateCertificatesDER`, and the trust bundle carries `RootCertificateDER`.
pub struct SigningCa {
    id: String,
    key_type: KeyType,
    issuer: Issuer<'static, KeyPair>,
    root_der: Vec<u8>,
    root_subject_raw: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
    intermediates_der: Vec<Vec<u8>>,
}

impl fmt::Debug for SigningCa {
    // Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningCa")
            .field("id", &self.id)
            .field("key_type", &self.key_type)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("intermediates", &self.intermediates_der.len())
            .finish_non_exhaustive()
    }
}

impl SigningCa {
    /// Builds a CA from its pool fields, checking that the key is a supported PKCS#8 key,
    /// the root parses, is a CA (basic constraints `cA` true, as ClusterTrustBundle
    /// validation requires) and carries the key's public key, and that intermediates parse.
    pub fn from_parts(
        id: &str,
        signing_key_pkcs8: &[u8],
        root_certificate_der: &[u8],
        intermediate_certificates_der: Vec<Vec<u8>>,
    ) -> Result<SigningCa, Error> {
        let key_err = |reason: String| Error::SigningKey {
            ca_id: id.to_string(),
            reason,
        };
        let cert_err = |field: String, reason: String| Error::Certificate {
            ca_id: id.to_string(),
            field,
            reason,
        };

        match PrivateKeyDer::try_from(signing_key_pkcs8) {
            Ok(PrivateKeyDer::Pkcs8(_)) => {}
            Ok(_) => {
                return Err(key_err(
                    "the key is not in PKCS#8 form (found PKCS#1 or SEC1)".into(),
                ))
            }
            Err(e) => return Err(key_err(e.to_string())),
        }
        let key = KeyPair::try_from(signing_key_pkcs8).map_err(|e| key_err(e.to_string()))?;

        let (rest, root) = X509Certificate::from_der(root_certificate_der).map_err(|e| {
            cert_err(
                "RootCertificateDER".into(),
                format!("not a DER X.509 certificate: {e}"),
            )
        })?;
        if !rest.is_empty() {
            return Err(cert_err(
                "RootCertificateDER".into(),
                format!("{} trailing bytes after the certificate", rest.len()),
            ));
        }
        let is_ca = matches!(root.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        if !is_ca {
            return Err(cert_err(
                "RootCertificateDER".into(),
                "not a CA certificate (basic constraints cA is not true)".into(),
            ));
        }
        let root_spki = root.public_key();
        if root_spki.raw != key.subject_public_key_info().as_slice() {
            return Err(Error::KeyDoesNotMatchRoot {
                ca_id: id.to_string(),
            });
        }
        let key_type = key_type_of(root_spki)
            .map_err(|what| key_err(format!("{what} cannot sign pod certificates here")))?;
        let not_before = SystemTime::from(root.validity().not_before.to_datetime());
        let not_after = SystemTime::from(root.validity().not_after.to_datetime());
        let root_subject_raw = root.subject().as_raw().to_vec();

        for (i, der) in intermediate_certificates_der.iter().enumerate() {
            match X509Certificate::from_der(der) {
                Ok(([], _)) => {}
                Ok((rest, _)) => {
                    return Err(cert_err(
                        format!("IntermediateCertificatesDER[{i}]"),
                        format!("{} trailing bytes after the certificate", rest.len()),
                    ))
                }
                Err(e) => {
                    return Err(cert_err(
                        format!("IntermediateCertificatesDER[{i}]"),
                        format!("not a DER X.509 certificate: {e}"),
                    ))
                }
            }
        }

        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(root_certificate_der), key)
            .map_err(|e| cert_err("RootCertificateDER".into(), e.to_string()))?;

        Ok(SigningCa {
            id: id.to_string(),
            key_type,
            issuer,
            root_der: root_certificate_der.to_vec(),
            root_subject_raw,
            not_before,
            not_after,
            intermediates_der: intermediate_certificates_der,
        })
    }

    /// The CA's ID in the pool.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The CA key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The intermediates appended to every chain (DER).
    pub fn intermediates_der(&self) -> &[Vec<u8>] {
        &self.intermediates_der
    }

    /// The root certificate's notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// The root certificate's notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The signing key as PKCS#8 DER (secret: never log it).
    pub(crate) fn signing_key_pkcs8(&self) -> &[u8] {
        self.issuer.key().serialized_der()
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub(crate) fn root_subject_raw(&self) -> &[u8] {
        &self.root_subject_raw
    }
}
