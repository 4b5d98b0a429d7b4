//! Requester keys as kubelet makes them: PKIX + proof of possession, or a stub PKCS#10.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaPssSaltLength};

use crate::{KeyMaterial, KeyType};

/// A requester (kubelet-side) key pair.
pub struct RequesterKey {
    key_type: KeyType,
    pkcs8: Vec<u8>,
    spki: Vec<u8>,
}

const RSA_PSS_SHA256_MAX_SALT: signature::RsaSignatureEncoding =
    signature::RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);

impl RequesterKey {
    /// Generates a fresh key. RSA keys take a while; see [`RequesterKey::cached`].
    pub fn generate(key_type: KeyType) -> RequesterKey {
        let (pkcs8, spki) = match key_type {
            KeyType::Ed25519 => {
                let k = Ed25519KeyPair::generate().expect("ed25519 keygen");
                let spki = k.public_key().as_der().expect("spki").as_ref().to_vec();
                (k.to_pkcs8v1().expect("pkcs8").as_ref().to_vec(), spki)
            }
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => {
                let alg = ecdsa_signing_alg(key_type);
                let k = EcdsaKeyPair::generate(alg).expect("ecdsa keygen");
                let spki = k.public_key().as_der().expect("spki").as_ref().to_vec();
                (k.to_pkcs8v1().expect("pkcs8").as_ref().to_vec(), spki)
            }
            KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let size = if key_type == KeyType::Rsa3072 {
                    aws_lc_rs::rsa::KeySize::Rsa3072
                } else {
                    aws_lc_rs::rsa::KeySize::Rsa4096
                };
                let k = aws_lc_rs::rsa::KeyPair::generate(size).expect("rsa keygen");
                let spki = k.public_key().as_der().expect("spki").as_ref().to_vec();
                (k.as_der().expect("pkcs8").as_ref().to_vec(), spki)
            }
        };
        RequesterKey {
            key_type,
            pkcs8,
            spki,
        }
    }

    /// One key per type per process (RSA generation is slow): tests share it.
    pub fn cached(key_type: KeyType) -> &'static RequesterKey {
        static CACHE: OnceLock<Mutex<HashMap<KeyType, &'static RequesterKey>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let mut guard = cache.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .entry(key_type)
            .or_insert_with(|| Box::leak(Box::new(RequesterKey::generate(key_type))))
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The DER SubjectPublicKeyInfo (`spec.pkixPublicKey`).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// A proof of possession over `pod_uid` as kubelet (Go) makes it: Ed25519 over the
    /// bytes, ECDSA ASN.1 over SHA-256 of the bytes on every curve, RSA-PSS SHA-256 with
    /// the maximum salt (`rsa.SignPSS` with nil options).
    pub fn proof_of_possession(&self, pod_uid: &str) -> Vec<u8> {
        let msg = pod_uid.as_bytes();
        match self.key_type {
            KeyType::Ed25519 => Ed25519KeyPair::from_pkcs8(&self.pkcs8)
                .expect("ed25519")
                .sign(msg)
                .as_ref()
                .to_vec(),
            KeyType::EcdsaP256 | KeyType::EcdsaP521 => {
                let alg = if self.key_type == KeyType::EcdsaP256 {
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &signature::ECDSA_P521_SHA256_ASN1_SIGNING
                };
                EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8)
                    .expect("ecdsa")
                    .sign(&SystemRandom::new(), msg)
                    .expect("sign")
                    .as_ref()
                    .to_vec()
            }
            KeyType::EcdsaP384 => {
                // aws-lc-rs has no P-384/SHA-256 signing algorithm. ECDSA uses the digest
                // as an integer, so SHA-256 left-padded with zeros to 48 bytes and signed
                // as a "SHA-384 digest" is the same signature input.
                let k = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                    &self.pkcs8,
                )
                .expect("ecdsa");
                let h = digest::digest(&digest::SHA256, msg);
                let mut padded = [0u8; 48];
                padded[16..].copy_from_slice(h.as_ref());
                let d = digest::Digest::import_less_safe(&padded, &digest::SHA384).expect("digest");
                k.sign_digest(&d).expect("sign").as_ref().to_vec()
            }
            KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let k = aws_lc_rs::rsa::KeyPair::from_pkcs8(&self.pkcs8).expect("rsa");
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(
                    &RSA_PSS_SHA256_MAX_SALT,
                    &SystemRandom::new(),
                    msg,
                    &mut sig,
                )
                .expect("sign");
                sig
            }
        }
    }

    /// A stub PKCS#10 request (DER) self-signed by this key, with an empty subject.
    pub fn stub_csr(&self) -> Vec<u8> {
        let key = rcgen::KeyPair::try_from(self.pkcs8.as_slice()).expect("rcgen key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.serialize_request(&key).expect("csr").der().to_vec()
    }

    /// v1beta1 key material: PKIX key plus proof of possession over `pod_uid`.
    pub fn pkix_material(&self, pod_uid: &str) -> KeyMaterial {
        KeyMaterial::Pkix {
            public_key: self.spki.clone(),
            proof_of_possession: self.proof_of_possession(pod_uid),
        }
    }

    /// 1.36+/v1 key material: a stub PKCS#10 request.
    pub fn csr_material(&self) -> KeyMaterial {
        KeyMaterial::StubPkcs10 {
            csr: self.stub_csr(),
        }
    }
}

fn ecdsa_signing_alg(key_type: KeyType) -> &'static signature::EcdsaSigningAlgorithm {
    match key_type {
        KeyType::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        KeyType::EcdsaP521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        _ => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
    }
}
