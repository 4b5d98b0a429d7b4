//! The crate's error type.

use std::time::SystemTime;

use crate::KeyType;

/// Errors of the signer library: a malformed CA pool, a CA that cannot sign right now,
/// bad configuration, or an internal signing failure.
///
/// Issuance outcomes that concern the *request* (denials, failures, pending) are not
/// errors; they are [`NotIssued`](crate::NotIssued) variants. An `Error` during issuance
/// is always the signer's own problem and is retried, never written as `Failed`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CA pool is not valid JSON of the expected shape.
    #[error("CA pool: not valid pool JSON: {source}")]
    PoolJson {
        /// The JSON error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The CA pool holds no CAs, so nothing can sign.
    #[error("CA pool: holds no CAs (\"CAs\" is empty or null)")]
    EmptyPool,
    /// Two CAs in the pool share an ID.
    #[error("CA pool: CA ID {ca_id:?} appears more than once")]
    DuplicateCaId {
        /// The repeated ID.
        ca_id: String,
    },
    /// A byte field of a CA is not standard base64.
    #[error("CA pool: CA {ca_id:?}: field {field} is not standard base64: {source}")]
    Base64 {
        /// The CA's ID.
        ca_id: String,
        /// The JSON field name, e.g. `SigningKeyPKCS8`.
        field: &'static str,
        /// The decoding error.
        #[source]
        source: base64::DecodeError,
    },
    /// A CA field is missing (`null` or absent) or empty.
    #[error("CA pool: CA {ca_id:?}: field {field} is missing or empty")]
    MissingField {
        /// The CA's ID.
        ca_id: String,
        /// The JSON field name.
        field: &'static str,
    },
    /// A CA's signing key is not a supported PKCS#8 private key.
    #[error("CA pool: CA {ca_id:?}: SigningKeyPKCS8 is not a supported PKCS#8 private key (Ed25519, ECDSA P-256/P-384/P-521, RSA): {reason}")]
    SigningKey {
        /// The CA's ID.
        ca_id: String,
        /// What is wrong.
        reason: String,
    },
    /// A CA certificate does not parse, or is not usable as a CA.
    #[error("CA pool: CA {ca_id:?}: {field}: {reason}")]
    Certificate {
        /// The CA's ID.
        ca_id: String,
        /// The JSON field name, with an index for intermediates.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A CA's signing key is not the key of its root certificate.
    #[error("CA pool: CA {ca_id:?}: SigningKeyPKCS8 does not match the public key of RootCertificateDER")]
    KeyDoesNotMatchRoot {
        /// The CA's ID.
        ca_id: String,
    },
    /// `ActiveForSigning` names no CA of the pool.
    #[error("CA pool: ActiveForSigning is {ca_id:?}, which is not the ID of any CA in the pool")]
    UnknownActiveCa {
        /// The ID that was named.
        ca_id: String,
    },
    /// An operation named a CA ID the pool does not hold.
    #[error("CA pool: no CA with ID {ca_id:?}")]
    NoSuchCa {
        /// The ID that was named.
        ca_id: String,
    },
    /// Generating a CA key or certificate failed.
    #[error("generating a {key_type} CA {ca_id:?}: {reason}")]
    CaGeneration {
        /// The CA's ID.
        ca_id: String,
        /// The requested key type.
        key_type: KeyType,
        /// What failed.
        reason: String,
    },
    /// The signing CA's certificate is not valid at the issuance time.
    #[error("signing CA {ca_id:?} is not valid at {now:?} (valid {not_before:?} to {not_after:?}); rotate the CA pool")]
    CaNotValidNow {
        /// The CA's ID.
        ca_id: String,
        /// The issuance time.
        now: SystemTime,
        /// The CA certificate's notBefore.
        not_before: SystemTime,
        /// The CA certificate's notAfter.
        not_after: SystemTime,
    },
    /// The signing CA expires so soon that a leaf would live less than one hour.
    #[error("signing CA {ca_id:?} expires at {not_after:?}, too soon for a leaf of at least one hour; rotate the CA pool")]
    CaExpiresTooSoon {
        /// The CA's ID.
        ca_id: String,
        /// The CA certificate's notAfter.
        not_after: SystemTime,
    },
    /// A request was handed to a signer it does not name.
    #[error("request names signer {requested:?} but this signer is {configured:?}")]
    SignerMismatch {
        /// The signer the request names.
        requested: String,
        /// The signer it was handed to.
        configured: String,
    },
    /// rcgen refused to build or sign the leaf.
    #[error("signing the leaf with CA {ca_id:?}: {source}")]
    Signing {
        /// The CA's ID.
        ca_id: String,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// The signed leaf failed the post-issuance self-check (it is never handed out).
    #[error("issued certificate failed its self-check: {reason}")]
    SelfCheck {
        /// What did not match.
        reason: String,
    },
    /// `--spiffe-trust-domain` (or its configuration equivalent) is not a valid trust domain name.
    #[error("invalid SPIFFE trust domain {given:?}: {reason}")]
    InvalidTrustDomain {
        /// The configured value.
        given: String,
        /// What is wrong.
        reason: String,
    },
}
