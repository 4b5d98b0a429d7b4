//! `podtls-agent`: pod certificates on clusters without the Pod Certificates API.
//!
//! Runs in the pod (a native sidecar: an init container with
//! `restartPolicy: Always`), generates a private key in memory, files a
//! `certificates.k8s.io/v1` CertificateSigningRequest for a podtls signer name
//! authenticated with the pod's own pod-bound ServiceAccount token, waits for
//! the signer (`signer --enable-csr-signing=true`) to approve and sign it, and
//! writes a SPIFFE credential folder in kubelet's atomic-writer layout. It
//! renews at a jittered 50-75% of the validity with a new key, keeps the last
//! good credentials on failure, and rewrites the folder when the signer's
//! trust-bundle ConfigMap (projected into `--trust-bundle-dir`) changes.
//!
//! What it does NOT do: decide the identity (the request carries no names; the
//! signer issues what the pod is entitled to), or write the key anywhere but the
//! credential folder.
//!
//! ```no_run
//! # fn main() -> Result<(), podtls_agent::AgentError> {
//! let key = podtls_agent::KeyType::EcdsaP256.generate()?;
//! let pkcs10 = podtls_agent::pkcs10_pem(&key)?;
//! # let _ = pkcs10; Ok(()) }
//! ```

mod agent;
pub mod atomic_dir;
mod credential_folder;
mod error;
mod issued;
mod kube_api;
mod request;
mod schedule;
mod token;
mod trust_bundles;

pub use crate::agent::{run, AgentConfig, RenewalReport};
pub use crate::credential_folder::{payload, probe, write as write_folder, ProbeError};
pub use crate::error::{AgentError, CertificateProblem};
pub use crate::issued::{check as check_issued, Issued};
pub use crate::kube_api::{client, file_and_wait, ApiEndpoint, Filed};
pub use crate::request::{
    csr_object, outcome, pkcs10_pem, spki_der, KeyType, Outcome, RequestSpec, AGENT_LABEL,
    MIN_EXPIRATION_SECONDS,
};
pub use crate::schedule::{
    random_unit, renewal_time, Backoff, RENEW_FROM_FRACTION, RENEW_UNTIL_FRACTION,
};
pub use crate::token::{pod_from_claims, read as read_token};
pub use crate::trust_bundles::{read as read_trust_bundles, Bundles, MAX_BUNDLE_BYTES};
