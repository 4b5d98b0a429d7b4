//! The requester's public key: taken from `pkixPublicKey` (+ proof of possession) or from
//! `stubPKCS10Request`, and verified the way kube-apiserver verifies it.
//!
//! kube-apiserver already checks both forms at admission
//! (`pkg/apis/certificates/validation/validation.go`, `ValidatePodCertificateRequestCreate`):
//! the PKIX key parses, its type is one of [`KeyType::ALL`], and the proof of possession is a
//! signature over the ASCII bytes of `spec.podUID`: Ed25519 over the bytes, ECDSA (ASN.1)
//! over SHA-256 of the bytes *whatever the curve*, RSA-PSS with SHA-256 and Go's
//! `rsa.VerifyPSS(..., nil)` (salt length auto-detected). The signer repeats the checks
//! because a certificate is only as good as the key it binds, and because the request may
//! come from a cluster whose admission differs.

use aws_lc_rs::signature::{self, RsaPssSaltLength, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::denial::{Denial, DenialReason};
use crate::KeyType;

/// kube-apiserver's size limit for `pkixPublicKey`, `proofOfPossession` and
/// `stubPKCS10Request` (`certificates.MaxPKIXPublicKeySize` and friends): 10 KiB.
pub const MAX_KEY_MATERIAL_SIZE: usize = 10 * 1024;

/// Where the request's public key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// certificates.k8s.io/v1beta1 in 1.35: `spec.pkixPublicKey` (DER SubjectPublicKeyInfo)
    /// and `spec.proofOfPossession` (signature over the pod UID).
    Pkix {
        /// `spec.pkixPublicKey`.
        public_key: Vec<u8>,
        /// `spec.proofOfPossession`.
        proof_of_possession: Vec<u8>,
    },
    /// 1.36+ (v1beta1) and 1.37 (v1): `spec.stubPKCS10Request`, a DER PKCS#10 request
    /// self-signed by the subject key. Only its public key is used; any SANs the pod
    /// author asked for are ignored.
    StubPkcs10 {
        /// `spec.stubPKCS10Request`.
        csr: Vec<u8>,
    },
}

impl KeyMaterial {
    /// Picks the key source from the spec fields as served (empty = unset).
    ///
    /// Exactly one of `stub_pkcs10_request` and `pkix_public_key` must be set; a proof of
    /// possession goes with the PKIX key only.
    pub fn from_spec_fields(
        pkix_public_key: &[u8],
        proof_of_possession: &[u8],
        stub_pkcs10_request: &[u8],
    ) -> Result<KeyMaterial, Denial> {
        match (
            stub_pkcs10_request.is_empty(),
            pkix_public_key.is_empty(),
            proof_of_possession.is_empty(),
        ) {
            (false, true, true) => Ok(KeyMaterial::StubPkcs10 {
                csr: stub_pkcs10_request.to_vec(),
            }),
            (true, false, _) => Ok(KeyMaterial::Pkix {
                public_key: pkix_public_key.to_vec(),
                proof_of_possession: proof_of_possession.to_vec(),
            }),
            (true, true, _) => Err(Denial::new(
                DenialReason::InvalidKeyMaterial,
                "the request carries no public key: neither spec.stubPKCS10Request nor spec.pkixPublicKey is set",
            )),
            (false, _, _) => Err(Denial::new(
                DenialReason::InvalidKeyMaterial,
                "spec.stubPKCS10Request and spec.pkixPublicKey/proofOfPossession are both set; exactly one key source is allowed",
            )),
        }
    }
}

/// A verified subject public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedKey {
    key_type: KeyType,
    spki_der: Vec<u8>,
}

impl RequestedKey {
    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The DER SubjectPublicKeyInfo, exactly as the requester sent it.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Parses and verifies the key material of a request for pod `pod_uid`.
    ///
    /// `allowed` is the signer's accepted key types: a well-formed key of another type is
    /// denied with `UnsupportedKeyType` before its signature is checked.
    pub fn verify(
        material: &KeyMaterial,
        pod_uid: &str,
        allowed: &[KeyType],
    ) -> Result<RequestedKey, Denial> {
        match material {
            KeyMaterial::Pkix {
                public_key,
                proof_of_possession,
            } => verify_pkix(public_key, proof_of_possession, pod_uid, allowed),
            KeyMaterial::StubPkcs10 { csr } => verify_csr(csr, allowed),
        }
    }
}

fn verify_pkix(
    der: &[u8],
    pop: &[u8],
    pod_uid: &str,
    allowed: &[KeyType],
) -> Result<RequestedKey, Denial> {
    let invalid = |why: String| Denial::new(DenialReason::InvalidPublicKey, why);
    if der.len() > MAX_KEY_MATERIAL_SIZE {
        return Err(invalid(format!(
            "spec.pkixPublicKey is {} bytes, more than the {MAX_KEY_MATERIAL_SIZE}-byte limit",
            der.len()
        )));
    }
    let (rest, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|e| {
        invalid(format!(
            "spec.pkixPublicKey is not a DER SubjectPublicKeyInfo: {e}"
        ))
    })?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "spec.pkixPublicKey has {} trailing bytes after the SubjectPublicKeyInfo",
            rest.len()
        )));
    }
    let key_type = classify(&spki, allowed)?;
    let raw = spki.subject_public_key.data.as_ref();
    let uid = pod_uid.as_bytes();
    let ok = match key_type {
        KeyType::Ed25519 => verifies(&signature::ED25519, raw, uid, pop),
        KeyType::EcdsaP256 => verifies(&signature::ECDSA_P256_SHA256_ASN1, raw, uid, pop),
        KeyType::EcdsaP384 => verifies(&signature::ECDSA_P384_SHA256_ASN1, raw, uid, pop),
        KeyType::EcdsaP521 => verifies(&signature::ECDSA_P521_SHA256_ASN1, raw, uid, pop),
        // Go's VerifyPSS with nil options auto-detects the salt length. Kubelet signs with
        // Go's SignPSS(nil options), whose salt is the maximum; the other common choice is
        // the digest length. Both are accepted.
        KeyType::Rsa3072 | KeyType::Rsa4096 => {
            verifies(&signature::RSA_PSS_2048_8192_SHA256, raw, uid, pop)
                || verifies(&RSA_PSS_SHA256_MAX_SALT, raw, uid, pop)
        }
    };
    if !ok {
        return Err(Denial::new(
            DenialReason::InvalidProofOfPossession,
            format!("spec.proofOfPossession is not a valid {key_type} signature of the pod UID {pod_uid:?} by spec.pkixPublicKey"),
        ));
    }
    Ok(RequestedKey {
        key_type,
        spki_der: der.to_vec(),
    })
}

const RSA_PSS_SHA256_MAX_SALT: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);

fn verify_csr(der: &[u8], allowed: &[KeyType]) -> Result<RequestedKey, Denial> {
    let invalid = |why: String| Denial::new(DenialReason::InvalidStubPkcs10Request, why);
    if der.len() > MAX_KEY_MATERIAL_SIZE {
        return Err(invalid(format!(
            "spec.stubPKCS10Request is {} bytes, more than the {MAX_KEY_MATERIAL_SIZE}-byte limit",
            der.len()
        )));
    }
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|e| {
        invalid(format!(
            "spec.stubPKCS10Request is not a DER PKCS#10 request: {e}"
        ))
    })?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "spec.stubPKCS10Request has {} trailing bytes after the request",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let key_type = classify(spki, allowed)?;
    let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
    let raw = spki.subject_public_key.data.as_ref();
    let msg = info.raw;
    let sig = csr.signature_value.data.as_ref();
    let ok = match (sig_oid.as_str(), key_type) {
        (OID_ED25519, KeyType::Ed25519) => verifies(&signature::ED25519, raw, msg, sig),
        (OID_ECDSA_SHA256, KeyType::EcdsaP256) => verifies(&signature::ECDSA_P256_SHA256_ASN1, raw, msg, sig),
        (OID_ECDSA_SHA384, KeyType::EcdsaP256) => verifies(&signature::ECDSA_P256_SHA384_ASN1, raw, msg, sig),
        (OID_ECDSA_SHA512, KeyType::EcdsaP256) => verifies(&signature::ECDSA_P256_SHA512_ASN1, raw, msg, sig),
        (OID_ECDSA_SHA256, KeyType::EcdsaP384) => verifies(&signature::ECDSA_P384_SHA256_ASN1, raw, msg, sig),
        (OID_ECDSA_SHA384, KeyType::EcdsaP384) => verifies(&signature::ECDSA_P384_SHA384_ASN1, raw, msg, sig),
        (OID_ECDSA_SHA512, KeyType::EcdsaP384) => verifies(&signature::ECDSA_P384_SHA512_ASN1, raw, msg, sig),
        (OID_ECDSA_SHA256, KeyType::EcdsaP521) => verifies(&signature::ECDSA_P521_SHA256_ASN1, raw, msg, sig),
        (OID_ECDSA_SHA384, KeyType::EcdsaP521) => verifies(&signature::ECDSA_P521_SHA384_ASN1, raw, msg, sig),
        (OID_ECDSA_SHA512, KeyType::EcdsaP521) => verifies(&signature::ECDSA_P521_SHA512_ASN1, raw, msg, sig),
        (OID_RSA_SHA256, KeyType::Rsa3072 | KeyType::Rsa4096) => verifies(&signature::RSA_PKCS1_2048_8192_SHA256, raw, msg, sig),
        (OID_RSA_SHA384, KeyType::Rsa3072 | KeyType::Rsa4096) => verifies(&signature::RSA_PKCS1_2048_8192_SHA384, raw, msg, sig),
        (OID_RSA_SHA512, KeyType::Rsa3072 | KeyType::Rsa4096) => verifies(&signature::RSA_PKCS1_2048_8192_SHA512, raw, msg, sig),
        (OID_RSA_PSS, KeyType::Rsa3072 | KeyType::Rsa4096) => verify_csr_pss(&csr, raw, msg, sig),
        _ => {
            return Err(invalid(format!(
                "spec.stubPKCS10Request is signed with algorithm {sig_oid}, which does not fit its {key_type} key or is not supported"
            )))
        }
    };
    if !ok {
        return Err(invalid(format!(
            "the self-signature of spec.stubPKCS10Request does not verify with its own {key_type} public key"
        )));
    }
    Ok(RequestedKey {
        key_type,
        spki_der: spki.raw.to_vec(),
    })
}

fn verify_csr_pss(csr: &X509CertificationRequest<'_>, raw: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use x509_parser::signature_algorithm::RsaSsaPssParams;
    let Some(params) = csr.signature_algorithm.parameters.as_ref() else {
        return false;
    };
    let Ok(params) = RsaSsaPssParams::try_from(params) else {
        return false;
    };
    let hash = params.hash_algorithm_oid().to_id_string();
    let Ok(salt) = u16::try_from(params.salt_length()) else {
        return false;
    };
    let salt = RsaPssSaltLength::Custom(salt);
    // `with_pss_salt_length` needs a `'static` algorithm, so the three digests are spelled out.
    match hash.as_str() {
        "2.16.840.1.101.3.4.2.1" => {
            let alg = signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(salt);
            verify_owned(alg, raw, msg, sig)
        }
        "2.16.840.1.101.3.4.2.2" => {
            let alg = signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(salt);
            verify_owned(alg, raw, msg, sig)
        }
        "2.16.840.1.101.3.4.2.3" => {
            let alg = signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(salt);
            verify_owned(alg, raw, msg, sig)
        }
        _ => false,
    }
}

fn verify_owned(alg: signature::RsaParameters, raw: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    // `UnparsedPublicKey` wants `&'static`; the PSS parameter set is tiny, so leaking is
    // avoided by verifying through the trait object directly.
    VerificationAlgorithm::verify_sig(&alg, raw, msg, sig).is_ok()
}

fn verifies(
    alg: &'static dyn VerificationAlgorithm,
    raw_key: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> bool {
    UnparsedPublicKey::new(alg, raw_key)
        .verify(msg, sig)
        .is_ok()
}

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
const OID_RSA_SHA256: &str = "1.2.840.113549.1.1.11";
const OID_RSA_SHA384: &str = "1.2.840.113549.1.1.12";
const OID_RSA_SHA512: &str = "1.2.840.113549.1.1.13";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";

/// Determines the key type of a SubjectPublicKeyInfo and checks it against `allowed`.
pub(crate) fn classify(
    spki: &SubjectPublicKeyInfo<'_>,
    allowed: &[KeyType],
) -> Result<KeyType, Denial> {
    let unsupported = |what: String| {
        Denial::new(
            DenialReason::UnsupportedKeyType,
            format!(
                "{what} is not supported by this signer; use one of: {}",
                crate::key_type::list(allowed)
            ),
        )
    };
    let key_type = key_type_of(spki).map_err(&unsupported)?;
    if !allowed.contains(&key_type) {
        return Err(unsupported(format!("key type {key_type}")));
    }
    Ok(key_type)
}

/// The Kubernetes key type of a SubjectPublicKeyInfo, or a description of what it is instead.
pub(crate) fn key_type_of(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyType, String> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_ED25519 => Ok(KeyType::Ed25519),
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => Ok(KeyType::EcdsaP256),
                Some(OID_P384) => Ok(KeyType::EcdsaP384),
                Some(OID_P521) => Ok(KeyType::EcdsaP521),
                Some(other) => Err(format!("an ECDSA key on curve {other}")),
                None => Err("an ECDSA key without a named curve".to_string()),
            }
        }
        OID_RSA_ENCRYPTION => {
            let bits = rsa_modulus_bits(spki.subject_public_key.data.as_ref())
                .ok_or_else(|| "a malformed RSA key".to_string())?;
            match bits {
                3072 => Ok(KeyType::Rsa3072),
                4096 => Ok(KeyType::Rsa4096),
                other => Err(format!("an RSA key with a {other}-bit modulus")),
            }
        }
        other => Err(format!("a key of algorithm {other}")),
    }
}

/// The modulus size in bits as Go computes `rsa.PublicKey.Size()*8` (bytes, rounded up).
fn rsa_modulus_bits(pkcs1: &[u8]) -> Option<usize> {
    use x509_parser::public_key::RSAPublicKey;
    let (rest, key) = RSAPublicKey::from_der(pkcs1).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let modulus = key.modulus;
    let first = modulus.iter().position(|b| *b != 0)?;
    Some((modulus.len() - first) * 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_both_key_sources_set() {
        let d = KeyMaterial::from_spec_fields(b"k", b"p", b"csr").unwrap_err();
        assert_eq!(d.reason, DenialReason::InvalidKeyMaterial);
    }

    #[test]
    fn rejects_no_key_source() {
        let d = KeyMaterial::from_spec_fields(b"", b"", b"").unwrap_err();
        assert_eq!(d.reason, DenialReason::InvalidKeyMaterial);
    }

    #[test]
    fn picks_the_stub_csr_when_only_it_is_set() {
        assert_eq!(
            KeyMaterial::from_spec_fields(b"", b"", b"csr"),
            Ok(KeyMaterial::StubPkcs10 {
                csr: b"csr".to_vec()
            })
        );
    }

    #[test]
    fn garbage_public_key_is_denied_as_invalid_public_key() {
        let m = KeyMaterial::Pkix {
            public_key: b"\x30\x03garbage".to_vec(),
            proof_of_possession: vec![1, 2, 3],
        };
        let d = RequestedKey::verify(&m, "uid", &KeyType::ALL).unwrap_err();
        assert_eq!(d.reason, DenialReason::InvalidPublicKey, "{d}");
    }

    #[test]
    fn garbage_csr_is_denied_as_invalid_stub_request() {
        let m = KeyMaterial::StubPkcs10 {
            csr: vec![0x30, 0x82, 0xff, 0xff, 0],
        };
        let d = RequestedKey::verify(&m, "uid", &KeyType::ALL).unwrap_err();
        assert_eq!(d.reason, DenialReason::InvalidStubPkcs10Request, "{d}");
    }

    #[test]
    fn oversized_public_key_is_denied_without_parsing() {
        let m = KeyMaterial::Pkix {
            public_key: vec![0; MAX_KEY_MATERIAL_SIZE + 1],
            proof_of_possession: vec![],
        };
        let d = RequestedKey::verify(&m, "uid", &KeyType::ALL).unwrap_err();
        assert_eq!(d.reason, DenialReason::InvalidPublicKey);
        assert!(d.message.contains("limit"), "{d}");
    }
}
