//! The key types Kubernetes allows in a PodCertificateRequest: podtls' one
//! [`KeyType`](podtls::certificate::KeyType), shared with the test certificate
//! factory and the tools.

pub use podtls::certificate::KeyType;
pub use podtls::error::UnknownKeyType;

/// Formats a list of key types as `ECDSAP256, ED25519` for messages.
pub(crate) fn list(types: &[KeyType]) -> String {
    KeyType::list(types)
}
