//! Strict SPIFFE ID and trust-domain parsing.
//!
//! The [`spiffe`] crate's types are used as the validated representation; this
//! module adds the parts of the SPIFFE-ID specification that it is lenient
//! about: the scheme and the trust domain must already be lowercase (the spec
//! forbids uppercase rather than normalising it, and so does go-spiffe), and
//! the whole ID must fit in 2048 bytes.

pub use spiffe::{SpiffeId, TrustDomain};

/// The SPIFFE spec's maximum SPIFFE ID length in bytes.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Why a SPIFFE ID or trust domain was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The ID does not start with the lowercase `spiffe://` scheme.
    #[error("scheme must be \"spiffe://\" (lowercase)")]
    Scheme,
    /// The trust domain contains uppercase letters.
    #[error("trust domain must be lowercase")]
    UppercaseTrustDomain,
    /// The ID is longer than the spec allows.
    #[error("SPIFFE ID is {len} bytes, longer than the {MAX_SPIFFE_ID_LEN}-byte limit")]
    TooLong {
        /// The ID's length.
        len: usize,
    },
    /// Any other violation, as reported by the `spiffe` crate.
    #[error("{0}")]
    Syntax(#[from] spiffe::SpiffeIdError),
}

/// Parses a SPIFFE ID such as `spiffe://example.org/ns/default/sa/web`, strictly.
pub fn parse_spiffe_id(id: &str) -> Result<SpiffeId, SpiffeIdError> {
    if id.len() > MAX_SPIFFE_ID_LEN {
        return Err(SpiffeIdError::TooLong { len: id.len() });
    }
    let rest = id.strip_prefix("spiffe://").ok_or(SpiffeIdError::Scheme)?;
    let td = rest.split('/').next().unwrap_or_default();
    if td.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(SpiffeIdError::UppercaseTrustDomain);
    }
    Ok(SpiffeId::new(id)?)
}

/// Parses a trust domain name such as `example.org`, strictly (lowercase only).
///
/// A `spiffe://example.org` form is accepted too, for configuration convenience.
pub fn parse_trust_domain(name: &str) -> Result<TrustDomain, SpiffeIdError> {
    let bare = name.strip_prefix("spiffe://").unwrap_or(name);
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(SpiffeIdError::UppercaseTrustDomain);
    }
    if bare.contains('/') || bare.is_empty() {
        return Err(SpiffeIdError::Syntax(if bare.is_empty() {
            spiffe::SpiffeIdError::MissingTrustDomain
        } else {
            spiffe::SpiffeIdError::BadTrustDomainChar
        }));
    }
    Ok(TrustDomain::new(bare)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Examples taken from the SPIFFE-ID specification and go-spiffe's test table.
    #[test]
    fn accepts_valid_ids_from_the_spec() {
        for id in [
            "spiffe://example.org",
            "spiffe://example.org/ns/default/sa/web",
            "spiffe://staging.example.com/payments/mysql",
            "spiffe://k8s-west.example.com/ns/staging/sa/default",
            "spiffe://a_b.c-d/A.b-C_0/x",
            "spiffe://example.org/..a/b..",
        ] {
            let parsed = parse_spiffe_id(id).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(parsed.to_string(), id, "Display round-trips");
        }
    }

    #[test]
    fn rejects_invalid_ids_from_the_spec() {
        let long = format!("spiffe://example.org/{}", "a".repeat(2048));
        for id in [
            "",
            "example.org/path",
            "http://example.org/path",
            "SPIFFE://example.org/path",
            "spiffe:/example.org/path",
            "spiffe:///path",
            "spiffe://Example.org/path",
            "spiffe://exa mple.org/path",
            "spiffe://example.org:8080/path",
            "spiffe://user@example.org/path",
            "spiffe://example.org/",
            "spiffe://example.org/path/",
            "spiffe://example.org//path",
            "spiffe://example.org/./path",
            "spiffe://example.org/path/..",
            "spiffe://example.org/pa th",
            "spiffe://example.org/path?query",
            "spiffe://example.org/path#fragment",
            "spiffe://example.org/pa%20th",
            long.as_str(),
        ] {
            assert!(parse_spiffe_id(id).is_err(), "{id:?} must be rejected");
        }
    }

    #[test]
    fn rejects_overlong_id_with_a_length_error() {
        let long = format!("spiffe://example.org/{}", "a".repeat(2100));
        assert!(matches!(
            parse_spiffe_id(&long),
            Err(SpiffeIdError::TooLong { .. })
        ));
    }

    #[test]
    fn parses_trust_domains_strictly() {
        assert_eq!(
            parse_trust_domain("example.org").unwrap().as_str(),
            "example.org"
        );
        assert_eq!(
            parse_trust_domain("spiffe://cluster.local")
                .unwrap()
                .as_str(),
            "cluster.local"
        );
        for bad in ["", "Example.org", "example.org/x", "exa$mple", "spiffe://"] {
            assert!(parse_trust_domain(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
