//! The CA pool: the original meshtool JSON format, the signing CA, the trust bundle,
//! and generating / appending CAs for rotation.
//!
//! Wire format (Go `encoding/json` of meshtool's `localca` types; `[]byte` fields are
//! standard base64 with padding, a nil slice is `null`):
//!
//! ```json
//! {"CAs":[{"ID":"1","SigningKeyPKCS8":"MC4C...","RootCertificateDER":"MIIB...","IntermediateCertificatesDER":null}],
//!  "ActiveForSigning":"1"}
//! ```
//!
//! Which CA signs: the original `meshtool` (`lib/servicednssigner`, `lib/spiffesigner`)
//! always signs with `CAs[0]`; its successor `localca.ConcretePool` added an optional
//! `ActiveForSigning` ID, falling back to `CAs[0]` when it is empty. This module does the
//! same, and when it writes a pool it keeps the signing CA first, so a reader of either
//! generation picks the same CA. Every CA's root is trusted.
//!
//! Rotation, as `localca` documents it: append a new CA (trusted, not signing), wait for
//! the trust bundle to reach every client, make it the signing CA, wait for the old
//! leaves to expire, remove the old CA. The steps and their rules are in
//! `ca_lifecycle.rs` ([`CaPool::add_ca`], [`CaPool::promote`], [`CaPool::retire`]).
//!
//! One field is this project's addition, per CA: `"NotSigningSince"`, an RFC 3339 UTC
//! time (`"2026-11-30T07:00:00Z"`) from which the CA has certainly not been the signing
//! CA. It is recorded when a CA is added as a non-signing CA (the time it was added) and
//! when a CA stops being the signing CA because another is promoted (the time of the
//! promotion); it is removed when the CA is promoted again, and never written for the
//! signing CA ("signing now"). It is written only when known: a CA without it (a pool
//! written by the original meshtool, which drops fields it does not know when it
//! rewrites a pool, or edited by hand) has an unknown last signing time, and retiring it
//! is refused unless forced. Go's `encoding/json` ignores unknown fields, so the original
//! meshtool still reads pools that carry it. Hand edits that change `ActiveForSigning`
//! must remove the new signing CA's `NotSigningSince` and cannot record the old one's:
//! use the commands.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{Error, KeyType, SigningCa};

/// A parsed, checked pool of CAs with one signing CA. Never empty.
#[derive(Debug)]
pub struct CaPool {
    cas: Vec<SigningCa>,
    active: Option<String>,
    /// `NotSigningSince` by CA ID; never holds the signing CA.
    not_signing_since: BTreeMap<String, SystemTime>,
}

#[derive(Deserialize, Serialize)]
struct WirePool {
    #[serde(rename = "CAs", default)]
    cas: Option<Vec<WireCa>>,
    #[serde(
        rename = "ActiveForSigning",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    active_for_signing: Option<String>,
}

#[derive(Deserialize, Serialize)]
struct WireCa {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "SigningKeyPKCS8", default)]
    signing_key_pkcs8: Option<String>,
    #[serde(rename = "RootCertificateDER", default)]
    root_certificate_der: Option<String>,
    #[serde(rename = "IntermediateCertificatesDER", default)]
    intermediate_certificates_der: Option<Vec<String>>,
    #[serde(
        rename = "NotSigningSince",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    not_signing_since: Option<String>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn decode_field(ca_id: &str, field: &'static str, value: Option<&str>) -> Result<Vec<u8>, Error> {
    let value = value.unwrap_or_default();
    // Go's base64 decoder skips CR and LF; so does this one.
    let cleaned: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let bytes = b64().decode(cleaned).map_err(|source| Error::Base64 {
        ca_id: ca_id.to_string(),
        field,
        source,
    })?;
    if bytes.is_empty() {
        return Err(Error::MissingField {
            ca_id: ca_id.to_string(),
            field,
        });
    }
    Ok(bytes)
}

impl CaPool {
    /// Parses pool JSON. Every CA is checked (see [`SigningCa::from_parts`]); errors name
    /// the CA ID and the field. An empty pool, duplicate IDs and an `ActiveForSigning`
    /// that names no CA are errors.
    pub fn from_json(bytes: &[u8]) -> Result<CaPool, Error> {
        let wire: WirePool =
            serde_json::from_slice(bytes).map_err(|source| Error::PoolJson { source })?;
        let mut cas = Vec::new();
        let mut not_signing_since = BTreeMap::new();
        for w in wire.cas.unwrap_or_default() {
            let key = decode_field(&w.id, "SigningKeyPKCS8", w.signing_key_pkcs8.as_deref())?;
            let root = decode_field(
                &w.id,
                "RootCertificateDER",
                w.root_certificate_der.as_deref(),
            )?;
            let mut intermediates = Vec::new();
            for i in w.intermediate_certificates_der.unwrap_or_default() {
                intermediates.push(decode_field(
                    &w.id,
                    "IntermediateCertificatesDER",
                    Some(&i),
                )?);
            }
            if cas.iter().any(|c: &SigningCa| c.id() == w.id) {
                return Err(Error::DuplicateCaId { ca_id: w.id });
            }
            if let Some(value) = w.not_signing_since.as_deref() {
                let at = humantime::parse_rfc3339(value).map_err(|e| Error::Timestamp {
                    ca_id: w.id.clone(),
                    field: "NotSigningSince",
                    value: value.to_string(),
                    reason: e.to_string(),
                })?;
                not_signing_since.insert(w.id.clone(), at);
            }
            cas.push(SigningCa::from_parts(&w.id, &key, &root, intermediates)?);
        }
        let active = wire.active_for_signing.filter(|a| !a.is_empty());
        let mut pool = CaPool::new(cas, active)?;
        // A record on the signing CA is stale (a hand edit): it is signing now.
        let signing = pool.signing_ca().id().to_string();
        not_signing_since.remove(&signing);
        pool.not_signing_since = not_signing_since;
        Ok(pool)
    }

    fn new(cas: Vec<SigningCa>, active: Option<String>) -> Result<CaPool, Error> {
        if cas.is_empty() {
            return Err(Error::EmptyPool);
        }
        if let Some(a) = &active {
            if !cas.iter().any(|c| c.id() == a) {
                return Err(Error::UnknownActiveCa { ca_id: a.clone() });
            }
        }
        Ok(CaPool {
            cas,
            active,
            not_signing_since: BTreeMap::new(),
        })
    }

    /// A pool of one CA, which signs.
    pub fn single(ca: SigningCa) -> CaPool {
        let id = ca.id().to_string();
        CaPool {
            cas: vec![ca],
            active: Some(id),
            not_signing_since: BTreeMap::new(),
        }
    }

    /// Serializes to the wire format, signing CA first, with `ActiveForSigning` set.
    pub fn to_json(&self) -> Vec<u8> {
        let signing_id = self.signing_ca().id().to_string();
        let mut ordered: Vec<&SigningCa> = Vec::with_capacity(self.cas.len());
        ordered.push(self.signing_ca());
        ordered.extend(self.cas.iter().filter(|c| c.id() != signing_id));
        let wire = WirePool {
            cas: Some(
                ordered
                    .into_iter()
                    .map(|c| WireCa {
                        id: c.id().to_string(),
                        signing_key_pkcs8: Some(b64().encode(c.signing_key_pkcs8())),
                        root_certificate_der: Some(b64().encode(c.root_der())),
                        intermediate_certificates_der: if c.intermediates_der().is_empty() {
                            None
                        } else {
                            Some(
                                c.intermediates_der()
                                    .iter()
                                    .map(|d| b64().encode(d))
                                    .collect(),
                            )
                        },
                        not_signing_since: self
                            .not_signing_since(c.id())
                            .map(crate::error::rfc3339),
                    })
                    .collect(),
            ),
            active_for_signing: Some(signing_id),
        };
        // Serializing plain strings and options into a Vec cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// The CA that signs: the one named by `ActiveForSigning`, else the first.
    pub fn signing_ca(&self) -> &SigningCa {
        self.active
            .as_deref()
            .and_then(|a| self.cas.iter().find(|c| c.id() == a))
            .unwrap_or(&self.cas[0])
    }

    /// Every CA, in pool order.
    pub fn cas(&self) -> &[SigningCa] {
        &self.cas
    }

    /// The CA with this ID, if the pool holds it.
    pub fn ca(&self, ca_id: &str) -> Option<&SigningCa> {
        self.cas.iter().find(|c| c.id() == ca_id)
    }

    /// The recorded time from which this CA has not been the signing CA
    /// (`NotSigningSince`, see the module docs); `None` for the signing CA, an unknown
    /// ID, and a CA without a record.
    pub fn not_signing_since(&self, ca_id: &str) -> Option<SystemTime> {
        self.not_signing_since.get(ca_id).copied()
    }

    /// Appends a CA that does not sign, recording `not_signing_since`. Its ID must be new.
    pub(crate) fn push_not_signing(
        &mut self,
        ca: SigningCa,
        not_signing_since: SystemTime,
    ) -> Result<(), Error> {
        if self.ca(ca.id()).is_some() {
            return Err(Error::DuplicateCaId {
                ca_id: ca.id().to_string(),
            });
        }
        if self.active.is_none() {
            // Pin the current signer before the order can change.
            self.active = Some(self.signing_ca().id().to_string());
        }
        self.not_signing_since
            .insert(ca.id().to_string(), not_signing_since);
        self.cas.push(ca);
        Ok(())
    }

    /// Makes `ca_id` the signing CA at `now`, recording `now` as the previous signing
    /// CA's `NotSigningSince`. The ID must be in the pool.
    pub(crate) fn switch_signing(&mut self, ca_id: &str, now: SystemTime) -> Result<(), Error> {
        if self.ca(ca_id).is_none() {
            return Err(Error::NoSuchCa {
                ca_id: ca_id.to_string(),
            });
        }
        let previous = self.signing_ca().id().to_string();
        if previous != ca_id {
            self.not_signing_since.insert(previous, now);
            self.not_signing_since.remove(ca_id);
        }
        self.active = Some(ca_id.to_string());
        Ok(())
    }

    /// Removes a CA that does not sign. The ID must be in the pool and not the signing
    /// CA's (so the pool never becomes empty).
    pub(crate) fn remove_not_signing(&mut self, ca_id: &str) -> Result<(), Error> {
        if self.signing_ca().id() == ca_id {
            return Err(Error::RetireSigningCa {
                ca_id: ca_id.to_string(),
                only_ca: self.cas.len() == 1,
            });
        }
        if self.active.is_none() {
            self.active = Some(self.signing_ca().id().to_string());
        }
        let before = self.cas.len();
        self.cas.retain(|c| c.id() != ca_id);
        if self.cas.len() == before {
            return Err(Error::NoSuchCa {
                ca_id: ca_id.to_string(),
            });
        }
        self.not_signing_since.remove(ca_id);
        Ok(())
    }

    /// The trust bundle: every CA's root certificate once (deduplicated by DER, pool
    /// order), as PEM `CERTIFICATE` blocks without headers, as ClusterTrustBundle
    /// validation requires (no duplicates, only CA certificates).
    pub fn trust_bundle_pem(&self) -> String {
        let mut seen: Vec<&[u8]> = Vec::new();
        let mut out = String::new();
        for ca in &self.cas {
            if !seen.contains(&ca.root_der()) {
                seen.push(ca.root_der());
                crate::pem::push_certificate(&mut out, ca.root_der());
            }
        }
        out
    }
}

/// The default validity of a generated CA: 365 days, as meshtool's.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Generates a self-signed root CA with a fresh key of `key_type`, valid from five minutes
/// before `now` (tolerating clock skew) for `validity`.
///
/// The key is stored as PKCS#8 v1 so that Go's `x509.ParsePKCS8PrivateKey` (the original
/// meshtool) reads it too. The subject is a CommonName with the CA ID and a random
/// suffix, so that two generations of CA "1" have distinct names.
pub fn generate_ca(
    ca_id: &str,
    key_type: KeyType,
    now: SystemTime,
    validity: Duration,
) -> Result<SigningCa, Error> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair};

    let fail = |reason: String| Error::CaGeneration {
        ca_id: ca_id.to_string(),
        key_type,
        reason,
    };
    let pkcs8: Vec<u8> = match key_type {
        KeyType::Ed25519 => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map(|d| d.as_ref().to_vec()),
        KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => {
            let alg = match key_type {
                KeyType::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                KeyType::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                _ => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
            };
            EcdsaKeyPair::generate(alg)
                .and_then(|k| k.to_pkcs8v1())
                .map(|d| d.as_ref().to_vec())
        }
        KeyType::Rsa3072 | KeyType::Rsa4096 => {
            let size = if key_type == KeyType::Rsa3072 {
                aws_lc_rs::rsa::KeySize::Rsa3072
            } else {
                aws_lc_rs::rsa::KeySize::Rsa4096
            };
            aws_lc_rs::rsa::KeyPair::generate(size)
                .and_then(|k| k.as_der())
                .map(|d| d.as_ref().to_vec())
        }
    }
    .map_err(|e| fail(format!("key generation failed: {e}")))?;
    let key = rcgen::KeyPair::try_from(pkcs8.as_slice()).map_err(|e| fail(e.to_string()))?;

    let mut suffix = [0u8; 4];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|e| fail(e.to_string()))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();

    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("podtls signer CA {ca_id} {suffix}"),
    );
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let start = now - Duration::from_secs(5 * 60);
    params.not_before = time::OffsetDateTime::from(start);
    params.not_after = time::OffsetDateTime::from(now + validity);
    let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
    SigningCa::from_parts(ca_id, &pkcs8, cert.der(), Vec::new())
}

#[cfg(test)]
#[path = "ca_pool_tests.rs"]
mod tests;
