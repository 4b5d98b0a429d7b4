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
    /// A CA's time field (this project's `NotSigningSince`) is not an RFC 3339 time.
    #[error("CA pool: CA {ca_id:?}: {field} {value:?} is not an RFC 3339 time: {reason}")]
    Timestamp {
        /// The CA's ID.
        ca_id: String,
        /// The JSON field name.
        field: &'static str,
        /// The value found.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Retiring the signing CA was asked for; promote another CA first.
    #[error("{}", if *only_ca {
        format!("CA {ca_id:?} is the pool's only CA and signs: add and promote another CA before retiring it")
    } else {
        format!("CA {ca_id:?} is the signing CA: promote another CA before retiring it")
    })]
    RetireSigningCa {
        /// The CA's ID.
        ca_id: String,
        /// Whether it is the only CA of the pool.
        only_ca: bool,
    },
    /// Retiring a CA whose leaves may still be valid: it stopped signing too recently.
    #[error("CA {ca_id:?} stopped signing at {}, so certificates it issued may be valid until {} (its last signing time plus the maximum lifetime {} and a {} allowance); retire it after that, or pass --force if no such certificate is still in use", rfc3339(*not_signing_since), rfc3339(*until), humantime::format_duration(*max_lifetime), humantime::format_duration(crate::RETIRE_ALLOWANCE))]
    MayHaveValidLeaves {
        /// The CA's ID.
        ca_id: String,
        /// When it stopped signing (`NotSigningSince`).
        not_signing_since: SystemTime,
        /// Until when its leaves may be valid.
        until: SystemTime,
        /// The maximum leaf lifetime the judgement assumed.
        max_lifetime: std::time::Duration,
    },
    /// Retiring a CA with no record of when it last signed (a pool from before that was
    /// recorded) while its own certificate is still valid.
    #[error("CA {ca_id:?} has no record of when it last signed (NotSigningSince), so certificates it issued may be valid until its own notAfter {}; retire it after that, or pass --force once its certificates are no longer in use", rfc3339(*not_after))]
    SigningTimeUnknown {
        /// The CA's ID.
        ca_id: String,
        /// The CA certificate's notAfter.
        not_after: SystemTime,
    },
    /// Promoting a CA that cannot sign now (expired, not yet valid, or expiring within
    /// the minimum leaf lifetime).
    #[error("CA {ca_id:?} cannot sign at {}: its certificate is valid from {} to {} and a certificate needs at least {} of it", rfc3339(*now), rfc3339(*not_before), rfc3339(*not_after), humantime::format_duration(crate::MIN_LIFETIME))]
    PromoteNotValid {
        /// The CA's ID.
        ca_id: String,
        /// The time of the promotion.
        now: SystemTime,
        /// The CA certificate's notBefore.
        not_before: SystemTime,
        /// The CA certificate's notAfter.
        not_after: SystemTime,
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
    /// A `--spiffe-namespace-trust-domain` value (`NAMESPACE=TRUST_DOMAIN`) is invalid.
    #[error("namespace to trust domain mapping {given:?}: {reason}")]
    InvalidTrustDomainMapping {
        /// The configured value.
        given: String,
        /// What is wrong.
        reason: String,
    },
    /// A configured DNS suffix or cluster domain (`--dns-suffix`, `--cluster-domain`)
    /// is not a valid DNS name.
    #[error("{flag} {given:?} is not a usable DNS name: {reason}")]
    InvalidDnsName {
        /// The flag (or configuration field).
        flag: &'static str,
        /// The configured value.
        given: String,
        /// What is wrong.
        reason: String,
    },
    /// A configured issuing cluster (`--issuer-url`) or the discovered one is invalid.
    #[error("issuer URL: {0}")]
    InvalidIssuer(#[from] podtls::error::IssuingClusterError),
    /// The PodIdentity extension could not be encoded.
    #[error("PodIdentity extension: {0}")]
    PodIdentity(#[from] podtls::error::PodIdentityError),
}

/// An RFC 3339 UTC time with seconds (`2026-11-30T07:00:00Z`), for messages and the
/// pool's `NotSigningSince`. Certificate times before 1970 format too.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}
