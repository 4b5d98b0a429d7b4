//! The key types Kubernetes allows in a PodCertificateRequest: one type for
//! the signer (which checks them), the test certificate factory and the
//! tools.

use std::fmt;
use std::str::FromStr;

/// A subject (or CA) key type.
///
/// The set is exactly the one kube-apiserver accepts for a PodCertificateRequest
/// (`pkg/apis/certificates/validation/validation.go`, `ValidatePodCertificateRequestCreate`:
/// Ed25519, ECDSA on P-256/P-384/P-521, RSA with a 3072- or 4096-bit modulus). The string
/// forms are the `keyType` values of the `podCertificate` projected volume source
/// (`RSA3072`, `RSA4096`, `ECDSAP256`, `ECDSAP384`, `ECDSAP521`, `ED25519`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus.
    Rsa4096,
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521.
    EcdsaP521,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Every key type, in the order Kubernetes documents them.
    pub const ALL: [KeyType; 6] = [
        KeyType::Rsa3072,
        KeyType::Rsa4096,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::EcdsaP521,
        KeyType::Ed25519,
    ];

    /// The Kubernetes name of this key type (`ECDSAP256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa3072 => "RSA3072",
            KeyType::Rsa4096 => "RSA4096",
            KeyType::EcdsaP256 => "ECDSAP256",
            KeyType::EcdsaP384 => "ECDSAP384",
            KeyType::EcdsaP521 => "ECDSAP521",
            KeyType::Ed25519 => "ED25519",
        }
    }

    /// Whether this is an RSA key type (RSA leaves also get `keyEncipherment`).
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa3072 | KeyType::Rsa4096)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no key type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type {given:?}; expected one of RSA3072, RSA4096, ECDSAP256, ECDSAP384, ECDSAP521, ED25519")]
pub struct UnknownKeyType {
    /// The string that was given.
    pub given: String,
}

impl FromStr for KeyType {
    type Err = UnknownKeyType;

    /// Parses the Kubernetes name, ignoring ASCII case and `-`/`_` separators, so
    /// `ECDSAP256`, `ecdsa-p256` and `Ed25519` all work.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalized: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str() == normalized)
            .ok_or_else(|| UnknownKeyType {
                given: s.to_string(),
            })
    }
}

impl KeyType {
    /// Formats a list of key types as `ECDSAP256, ED25519` for messages.
    pub fn list(types: &[KeyType]) -> String {
        types
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_through_from_str_for_every_key_type() {
        for k in KeyType::ALL {
            assert_eq!(k.to_string().parse::<KeyType>(), Ok(k));
        }
    }

    #[test]
    fn parses_lowercase_and_dashed_spellings() {
        assert_eq!("ecdsa-p256".parse::<KeyType>(), Ok(KeyType::EcdsaP256));
        assert_eq!("Ed25519".parse::<KeyType>(), Ok(KeyType::Ed25519));
        assert_eq!("rsa_4096".parse::<KeyType>(), Ok(KeyType::Rsa4096));
    }

    #[test]
    fn rejects_rsa2048_naming_the_input() {
        let err = "RSA2048".parse::<KeyType>().unwrap_err();
        assert!(err.to_string().contains("RSA2048"), "{err}");
    }
}
