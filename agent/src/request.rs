//! The CertificateSigningRequest the agent files (pure): key generation, the
//! PKCS#10 request without names, the object's spec and labels, and reading
//! its status.
//!
//! The request carries no subject and no subjectAltName: the signer issues
//! exactly what the requesting pod is entitled to (it reads the pod from the
//! CSR's `spec.extra`, which kube-apiserver fills from the pod-bound token), so
//! nothing the pod asks for can widen its identity.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec, CertificateSigningRequestStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, PublicKeyData as _};

use crate::error::AgentError;

/// The label on every CSR the agent files.
pub const AGENT_LABEL: &str = "podtls.row-major.net/agent";

/// The private key types the signers issue for (same names as the signer's `--key-types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256 with SHA-256.
    EcdsaP256,
    /// ECDSA P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA 3072 with PKCS#1 v1.5 SHA-256.
    Rsa3072,
    /// RSA 4096 with PKCS#1 v1.5 SHA-256.
    Rsa4096,
}

impl KeyType {
    /// Every key type, in CLI order.
    pub const ALL: [KeyType; 5] = [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Ed25519,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    /// The name on the command line (`ECDSAP256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ECDSAP256",
            KeyType::EcdsaP384 => "ECDSAP384",
            KeyType::Ed25519 => "ED25519",
            KeyType::Rsa3072 => "RSA3072",
            KeyType::Rsa4096 => "RSA4096",
        }
    }

    /// A new key of this type, generated in memory.
    pub fn generate(self) -> Result<KeyPair, AgentError> {
        let fail = |e: rcgen::Error| AgentError::KeyGeneration {
            key_type: self.as_str().to_string(),
            reason: e.to_string(),
        };
        match self {
            KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyType::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeyType::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
            }
            KeyType::Rsa4096 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
            }
        }
        .map_err(fail)
    }

    /// `spec.usages`: signing, server and client auth (plus key encipherment for RSA,
    /// whose TLS 1.2 key exchange may use it).
    pub fn usages(self) -> Vec<String> {
        let mut u = vec!["digital signature"];
        if matches!(self, KeyType::Rsa3072 | KeyType::Rsa4096) {
            u.push("key encipherment");
        }
        u.extend(["server auth", "client auth"]);
        u.into_iter().map(String::from).collect()
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown key type {s:?} (want ECDSAP256, ECDSAP384, ED25519, RSA3072 or RSA4096)")
            })
    }
}

/// A PEM PKCS#10 request for `key` with an empty subject and no extensions.
pub fn pkcs10_pem(key: &KeyPair) -> Result<String, AgentError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| AgentError::Request(e.to_string()))
}

/// The SubjectPublicKeyInfo (DER) of `key`, to compare with the issued leaf's.
pub fn spki_der(key: &KeyPair) -> Vec<u8> {
    key.subject_public_key_info()
}

/// What the CSR object is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// `spec.signerName`.
    pub signer_name: String,
    /// The requesting pod's namespace (for the generated name only).
    pub namespace: String,
    /// The requesting pod's name (for the generated name only).
    pub pod_name: String,
    /// The key type (for `spec.usages`).
    pub key_type: KeyType,
    /// `spec.expirationSeconds` (the API's minimum is 600).
    pub expiration_seconds: i32,
}

/// The smallest `spec.expirationSeconds` kube-apiserver accepts
/// (pkg/apis/certificates/validation: "may not specify a duration less than 600 seconds").
pub const MIN_EXPIRATION_SECONDS: i32 = 600;

/// The CertificateSigningRequest object for `pkcs10` (PEM).
pub fn csr_object(spec: &RequestSpec, pkcs10: &str) -> CertificateSigningRequest {
    // generateName is at most 253 characters with the random suffix (5); keep it short.
    let mut prefix = format!("podtls-{}-{}", spec.namespace, spec.pod_name);
    prefix.truncate(200);
    prefix.push('-');
    CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            labels: Some(BTreeMap::from([(
                AGENT_LABEL.to_string(),
                "true".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            signer_name: spec.signer_name.clone(),
            request: ByteString(pkcs10.as_bytes().to_vec()),
            usages: Some(spec.key_type.usages()),
            expiration_seconds: Some(spec.expiration_seconds),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    }
}

/// Where a CSR stands, from its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Neither issued nor refused yet (or approved but not signed yet).
    Pending,
    /// `status.certificate` is set (PEM chain).
    Issued(Vec<u8>),
    /// A `Denied` condition: final for this CSR.
    Denied {
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// A `Failed` condition: final for this CSR.
    Failed {
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
}

/// Reads a CSR's status. `Denied` and `Failed` win over a certificate (the API
/// forbids both together; if it happened, the refusal is the safe reading).
pub fn outcome(status: Option<&CertificateSigningRequestStatus>) -> Outcome {
    let Some(status) = status else {
        return Outcome::Pending;
    };
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            continue;
        }
        let reason = c.reason.clone().unwrap_or_default();
        let message = c.message.clone().unwrap_or_default();
        match c.type_.as_str() {
            "Denied" => return Outcome::Denied { reason, message },
            "Failed" => return Outcome::Failed { reason, message },
            _ => {}
        }
    }
    match &status.certificate {
        Some(c) if !c.0.is_empty() => Outcome::Issued(c.0.clone()),
        _ => Outcome::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition;
    use x509_parser::prelude::FromDer as _;

    fn cond(type_: &str, status: &str) -> CertificateSigningRequestCondition {
        CertificateSigningRequestCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(format!("{type_}Reason")),
            message: Some("msg".into()),
            ..Default::default()
        }
    }

    #[test]
    fn request_has_no_subject_and_no_extensions() {
        for kt in [KeyType::EcdsaP256, KeyType::Ed25519] {
            let key = kt.generate().unwrap();
            let pem = pkcs10_pem(&key).unwrap();
            let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
                .map(|d: rustls_pki_types::CertificateSigningRequestDer<'static>| d)
                .unwrap();
            let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(
                der.as_ref(),
            )
            .unwrap();
            assert_eq!(req.certification_request_info.subject.iter().count(), 0);
            assert!(req
                .requested_extensions()
                .is_none_or(|mut e| e.next().is_none()));
            assert_eq!(
                req.certification_request_info.subject_pki.raw,
                spki_der(&key).as_slice()
            );
            req.verify_signature().unwrap();
        }
    }

    #[test]
    fn csr_object_names_signer_usages_expiry_and_label() {
        let spec = RequestSpec {
            signer_name: "row-major.net/spiffe".into(),
            namespace: "ns".into(),
            pod_name: "p".into(),
            key_type: KeyType::Rsa3072,
            expiration_seconds: 600,
        };
        let csr = csr_object(&spec, "PEM");
        assert_eq!(csr.metadata.generate_name.as_deref(), Some("podtls-ns-p-"));
        assert_eq!(csr.metadata.name, None);
        assert_eq!(
            csr.metadata.labels.unwrap()[AGENT_LABEL],
            "true".to_string()
        );
        assert_eq!(csr.spec.signer_name, "row-major.net/spiffe");
        assert_eq!(csr.spec.expiration_seconds, Some(600));
        assert_eq!(
            csr.spec.usages.unwrap(),
            vec![
                "digital signature",
                "key encipherment",
                "server auth",
                "client auth"
            ]
        );
        assert_eq!(
            KeyType::EcdsaP256.usages(),
            vec!["digital signature", "server auth", "client auth"]
        );
    }

    #[test]
    fn long_pod_names_keep_generate_name_within_limits() {
        let spec = RequestSpec {
            signer_name: "s/x".into(),
            namespace: "n".repeat(63),
            pod_name: "p".repeat(253),
            key_type: KeyType::EcdsaP256,
            expiration_seconds: 600,
        };
        let name = csr_object(&spec, "").metadata.generate_name.unwrap();
        assert!(name.len() <= 201 && name.ends_with('-'));
    }

    #[test]
    fn key_type_names_round_trip() {
        for kt in KeyType::ALL {
            assert_eq!(kt.as_str().parse::<KeyType>().unwrap(), kt);
        }
        assert!("ecdsap256".parse::<KeyType>().is_err());
    }

    #[test]
    fn status_reading() {
        assert_eq!(outcome(None), Outcome::Pending);
        let mut st = CertificateSigningRequestStatus::default();
        assert_eq!(outcome(Some(&st)), Outcome::Pending);
        st.conditions = Some(vec![cond("Approved", "True")]);
        assert_eq!(outcome(Some(&st)), Outcome::Pending);
        st.certificate = Some(ByteString(b"CERT".to_vec()));
        assert_eq!(outcome(Some(&st)), Outcome::Issued(b"CERT".to_vec()));
        // An empty certificate is not an issuance.
        st.certificate = Some(ByteString(vec![]));
        assert_eq!(outcome(Some(&st)), Outcome::Pending);
    }

    #[test]
    fn denied_or_failed_wins_over_a_certificate() {
        let mut st = CertificateSigningRequestStatus {
            certificate: Some(ByteString(b"CERT".to_vec())),
            conditions: Some(vec![cond("Approved", "True"), cond("Denied", "True")]),
        };
        assert!(
            matches!(outcome(Some(&st)), Outcome::Denied { reason, .. } if reason == "DeniedReason")
        );
        st.conditions = Some(vec![cond("Failed", "True")]);
        assert!(matches!(outcome(Some(&st)), Outcome::Failed { .. }));
        // A condition that is not True does not count.
        st.conditions = Some(vec![cond("Denied", "False")]);
        assert_eq!(outcome(Some(&st)), Outcome::Issued(b"CERT".to_vec()));
    }
}
