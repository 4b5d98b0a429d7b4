//! The agent's error type: each variant names the step and the object that
//! failed (file path, CertificateSigningRequest name), never key material.

use std::path::PathBuf;

/// Everything the agent can fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A payload file name that would escape the folder or collide with the
    /// atomic writer's own entries.
    #[error("refusing to write {name:?} into the credential folder: not a plain file name, or starts with \"..\"")]
    BadFileName {
        /// The name.
        name: String,
    },
    /// Writing the credential folder failed (the previous payload stays).
    #[error("{step} ({}): {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        step: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The trust domain's bundle is not in the trust-bundle directory.
    #[error("trust bundle {} is missing (the signer publishes it in the podtls-trust-bundles ConfigMap)", path.display())]
    TrustBundleMissing {
        /// The expected file.
        path: PathBuf,
    },
    /// A trust-bundle file could not be used.
    #[error("trust bundle {}: {reason}", path.display())]
    TrustBundleInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating the private key failed.
    #[error("generating a {key_type} key: {reason}")]
    KeyGeneration {
        /// The key type.
        key_type: String,
        /// rcgen / aws-lc-rs' error.
        reason: String,
    },
    /// Building the PKCS#10 request failed.
    #[error("building the PKCS#10 request: {0}")]
    Request(String),
    /// The ServiceAccount token file could not be read or is unusable.
    #[error("ServiceAccount token {}: {reason}", path.display())]
    Token {
        /// The token file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The issued certificate (chain) is not acceptable; the CSR's result is discarded.
    #[error("certificate issued for CertificateSigningRequest {csr}: {reason}")]
    BadCertificate {
        /// The CSR's name.
        csr: String,
        /// What is wrong with it.
        reason: CertificateProblem,
    },
    /// The signer (or someone with approve rights) denied the request.
    #[error("CertificateSigningRequest {csr} was denied: {reason}: {message}")]
    Denied {
        /// The CSR's name.
        csr: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// The signer reported a failure to sign.
    #[error("CertificateSigningRequest {csr} failed: {reason}: {message}")]
    Failed {
        /// The CSR's name.
        csr: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// No certificate within the wait.
    #[error("CertificateSigningRequest {csr}: no certificate within {waited:?}")]
    Timeout {
        /// The CSR's name.
        csr: String,
        /// How long the agent waited.
        waited: std::time::Duration,
    },
    /// A Kubernetes API call failed.
    #[error("Kubernetes API, {step}: {source}")]
    Kube {
        /// The call.
        step: &'static str,
        /// kube-rs' error.
        #[source]
        source: kube::Error,
    },
    /// The agent's configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

/// Why an issued certificate was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// `status.certificate` holds no PEM certificate, or one that does not parse.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The leaf's public key is not the key this agent generated.
    #[error("the leaf certificate's public key is not ours")]
    NotOurKey,
    /// `now` is outside the leaf's validity.
    #[error("not valid now (valid {not_before} to {not_after})")]
    NotValidNow {
        /// notBefore (RFC 3339).
        not_before: String,
        /// notAfter (RFC 3339).
        not_after: String,
    },
    /// The chain does not verify against the trust domain's bundle (wrong signer).
    #[error("does not chain to the trust bundle of {trust_domain}: {reason}")]
    Untrusted {
        /// The trust domain.
        trust_domain: String,
        /// webpki's reason.
        reason: String,
    },
    /// The leaf is not an X509-SVID of the agent's trust domain.
    #[error("not an X509-SVID of trust domain {expected}: {reason}")]
    NotOurTrustDomain {
        /// The agent's trust domain.
        expected: String,
        /// What the leaf holds instead.
        reason: String,
    },
}
