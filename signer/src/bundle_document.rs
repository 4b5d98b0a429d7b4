//! The SPIFFE bundle document: a trust domain's bundle as the JWK Set of the SPIFFE Trust
//! Domain and Bundle specification (§4), as a bundle endpoint serves it and SPIRE and
//! go-spiffe read and write it.
//!
//! ```json
//! {"keys": [{"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "..", "y": "..",
//!            "x5c": ["<base64 DER of a CA certificate>"]}],
//!  "spiffe_sequence": 3, "spiffe_refresh_hint": 300}
//! ```
//!
//! Pure: bytes in, bytes out. The rules checked when parsing, each a typed
//! [`BundleDocumentError`] naming the key index:
//! - the document is a JSON object whose `keys` is an array (at most [`MAX_KEYS`]);
//! - every key has a `use`; unknown `use` values are ignored (spec §4.2.2), and so are
//!   `jwt-svid` keys (this signer federates X.509 SVIDs only);
//! - an `x509-svid` key has exactly one `x5c` element (X509-SVID spec §6.1), standard
//!   base64 of a DER certificate that parses, is a CA (basicConstraints CA=true), and
//!   whose public key is the one the key's `kty` (and, if present, `crv`/`x`/`y` or
//!   `n`/`e`) describe: a document whose JWK parameters and certificate disagree is refused
//!   (go-jose refuses it too);
//! - a CA certificate that names a SPIFFE trust domain in a URI SAN must name the
//!   expected one ([`BundleDocumentError::ForeignTrustDomain`]): a peer's endpoint
//!   serving another trust domain's bundle is refused where it can be told. A CA without
//!   a SPIFFE URI SAN (as this signer's and meshtool's) cannot be attributed and is
//!   accepted: the trust domain is bound to the endpoint by configuration (spec §6.1);
//! - `spiffe_sequence` is an unsigned 64-bit integer, `spiffe_refresh_hint` a positive
//!   integer number of seconds, if present.
//!
//! An empty set of X.509 authorities parses (it is a valid document); whether it may be
//! used is the caller's decision (the federation fetcher refuses it: it would
//! de-federate silently).

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use spiffe::TrustDomain;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};
use x509_parser::public_key::PublicKey;

/// The most keys a document may hold.
pub const MAX_KEYS: usize = 1000;

/// A trust domain's X.509 bundle, as a document carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleDocument {
    /// The X.509 authorities (DER CA certificates), in document order, without duplicates.
    pub x509_authorities: Vec<Vec<u8>>,
    /// `spiffe_sequence`.
    pub sequence: Option<u64>,
    /// `spiffe_refresh_hint`.
    pub refresh_hint: Option<Duration>,
}

/// Why a bundle document was refused or could not be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleDocumentError {
    /// Not JSON, or not a JSON object.
    #[error("bundle document: not a JSON object: {reason}")]
    Json {
        /// The parser's message.
        reason: String,
    },
    /// A top-level field has the wrong type or value.
    #[error("bundle document: field {field}: {reason}")]
    Field {
        /// `keys`, `spiffe_sequence` or `spiffe_refresh_hint`.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// More than [`MAX_KEYS`] keys.
    #[error("bundle document: {count} keys, at most {MAX_KEYS} accepted")]
    TooManyKeys {
        /// How many.
        count: usize,
    },
    /// A key is malformed.
    #[error("bundle document: keys[{index}]: {reason}")]
    Key {
        /// The key's index in `keys`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A CA certificate names another SPIFFE trust domain than the expected one.
    #[error("bundle document: keys[{index}]: the CA certificate names trust domain {found}, not {expected}")]
    ForeignTrustDomain {
        /// The key's index in `keys`.
        index: usize,
        /// The trust domain in the certificate's URI SAN.
        found: String,
        /// The trust domain the document was fetched for.
        expected: String,
    },
    /// A certificate to render cannot be expressed as a JWK.
    #[error("bundle document: certificate {index} cannot be written as a JWK: {reason}")]
    Render {
        /// The certificate's index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Writes the document of `authorities` (DER CA certificates), as a bundle endpoint
/// serves it. Duplicates are written once.
pub fn render(
    authorities: &[&[u8]],
    sequence: Option<u64>,
    refresh_hint: Option<Duration>,
) -> Result<String, BundleDocumentError> {
    let mut keys = Vec::new();
    let mut seen: Vec<&[u8]> = Vec::new();
    for (index, der) in authorities.iter().enumerate() {
        if seen.contains(der) {
            continue;
        }
        seen.push(der);
        let render = |reason: String| BundleDocumentError::Render { index, reason };
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| render(format!("does not parse: {e}")))?;
        let mut key = jwk_params(&cert).map_err(render)?;
        key.insert("use".into(), json!("x509-svid"));
        key.insert("x5c".into(), json!([STANDARD.encode(der)]));
        keys.push(Value::Object(key));
    }
    let mut doc = Map::new();
    doc.insert("keys".into(), Value::Array(keys));
    if let Some(seq) = sequence {
        doc.insert("spiffe_sequence".into(), json!(seq));
    }
    if let Some(hint) = refresh_hint {
        doc.insert("spiffe_refresh_hint".into(), json!(hint.as_secs().max(1)));
    }
    serde_json::to_string_pretty(&Value::Object(doc)).map_err(|e| BundleDocumentError::Render {
        index: 0,
        reason: e.to_string(),
    })
}

/// Parses a document fetched for `trust_domain` (see the module docs for the rules).
pub fn parse(
    bytes: &[u8],
    trust_domain: &TrustDomain,
) -> Result<BundleDocument, BundleDocumentError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| BundleDocumentError::Json {
        reason: e.to_string(),
    })?;
    let Value::Object(doc) = value else {
        return Err(BundleDocumentError::Json {
            reason: "the top level is not an object".into(),
        });
    };
    let field = |field: &'static str, reason: &str| BundleDocumentError::Field {
        field,
        reason: reason.to_string(),
    };
    let keys = match doc.get("keys") {
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err(field("keys", "not an array")),
        None => return Err(field("keys", "missing")),
    };
    if keys.len() > MAX_KEYS {
        return Err(BundleDocumentError::TooManyKeys { count: keys.len() });
    }
    let sequence = match doc.get("spiffe_sequence") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| field("spiffe_sequence", "not an unsigned 64-bit integer"))?,
        ),
    };
    let refresh_hint = match doc.get("spiffe_refresh_hint") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(secs) if secs > 0 => Some(Duration::from_secs(secs)),
            _ => return Err(field("spiffe_refresh_hint", "not a positive integer")),
        },
    };
    let mut x509_authorities: Vec<Vec<u8>> = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let bad = |reason: String| BundleDocumentError::Key { index, reason };
        let Value::Object(key) = key else {
            return Err(bad("not an object".into()));
        };
        match key.get("use") {
            Some(Value::String(u)) if u == "x509-svid" => {}
            Some(Value::String(_)) => continue, // jwt-svid and unknown uses: ignored
            Some(_) => return Err(bad("use is not a string".into())),
            None => return Err(bad("use is missing".into())),
        }
        let der = x509_authority(key).map_err(bad)?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| bad(format!("x5c[0] is not a DER certificate: {e}")))?;
        if !cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca)
        {
            return Err(bad(
                "x5c[0] is not a CA certificate (basicConstraints CA=true)".into(),
            ));
        }
        check_params_match(key, &cert).map_err(bad)?;
        if let Some(found) = spiffe_trust_domain(&cert) {
            if found != trust_domain.as_str() {
                return Err(BundleDocumentError::ForeignTrustDomain {
                    index,
                    found,
                    expected: trust_domain.to_string(),
                });
            }
        }
        if !x509_authorities.contains(&der) {
            x509_authorities.push(der);
        }
    }
    Ok(BundleDocument {
        x509_authorities,
        sequence,
        refresh_hint,
    })
}

/// The one DER certificate of an `x509-svid` key.
fn x509_authority(key: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let x5c = match key.get("x5c") {
        Some(Value::Array(x5c)) => x5c,
        Some(_) => return Err("x5c is not an array".into()),
        None => return Err("an x509-svid key has no x5c".into()),
    };
    if x5c.len() != 1 {
        return Err(format!(
            "an x509-svid key has exactly one x5c element, this one has {}",
            x5c.len()
        ));
    }
    let b64 = x5c[0].as_str().ok_or("x5c[0] is not a string")?;
    STANDARD
        .decode(b64)
        .map_err(|e| format!("x5c[0] is not standard base64: {e}"))
}

/// The JWK parameters (`kty` and the public key) of a certificate's key.
fn jwk_params(cert: &X509Certificate<'_>) -> Result<Map<String, Value>, String> {
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    let mut key = Map::new();
    match oid.as_str() {
        "1.3.101.112" => {
            key.insert("kty".into(), json!("OKP"));
            key.insert("crv".into(), json!("Ed25519"));
            key.insert(
                "x".into(),
                json!(URL_SAFE_NO_PAD.encode(spki.subject_public_key.data.as_ref())),
            );
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let (crv, len) = match curve.as_str() {
                "1.2.840.10045.3.1.7" => ("P-256", 32),
                "1.3.132.0.34" => ("P-384", 48),
                "1.3.132.0.35" => ("P-521", 66),
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let point = spki.subject_public_key.data.as_ref();
            if point.len() != 1 + 2 * len || point[0] != 4 {
                return Err("the EC point is not an uncompressed point of its curve".into());
            }
            key.insert("kty".into(), json!("EC"));
            key.insert("crv".into(), json!(crv));
            key.insert(
                "x".into(),
                json!(URL_SAFE_NO_PAD.encode(&point[1..1 + len])),
            );
            key.insert("y".into(), json!(URL_SAFE_NO_PAD.encode(&point[1 + len..])));
        }
        "1.2.840.113549.1.1.1" => {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err("the RSA public key does not parse".into());
            };
            key.insert("kty".into(), json!("RSA"));
            key.insert(
                "n".into(),
                json!(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.modulus))),
            );
            key.insert(
                "e".into(),
                json!(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.exponent))),
            );
        }
        other => return Err(format!("unsupported public key algorithm {other}")),
    }
    Ok(key)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// The key's `kty` must be set and equal the certificate's; every public-key parameter
/// the key carries must equal the certificate's.
fn check_params_match(key: &Map<String, Value>, cert: &X509Certificate<'_>) -> Result<(), String> {
    let expected = jwk_params(cert).map_err(|e| format!("x5c[0]: {e}"))?;
    let kty = key
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("kty is missing or not a string")?;
    if Some(kty) != expected["kty"].as_str() {
        return Err(format!(
            "kty is {kty:?}, but the x5c certificate's key is {}",
            expected["kty"]
        ));
    }
    for (name, want) in &expected {
        if name == "kty" {
            continue;
        }
        if let Some(got) = key.get(name) {
            if got != want {
                return Err(format!(
                    "{name} does not match the x5c certificate's public key"
                ));
            }
        }
    }
    Ok(())
}

/// The trust domain of the certificate's SPIFFE URI SAN, if it has one.
fn spiffe_trust_domain(cert: &X509Certificate<'_>) -> Option<String> {
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::URI(uri) = name {
                    if let Some(rest) = uri.strip_prefix("spiffe://") {
                        let td = rest.split('/').next().unwrap_or("");
                        return Some(td.to_ascii_lowercase());
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
#[path = "bundle_document_tests.rs"]
mod tests;
