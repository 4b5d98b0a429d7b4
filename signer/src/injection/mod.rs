//! Identity injection: which pods opt in, and the smallest JSON patch that gives an
//! opted-in pod a SPIFFE credential folder (the draft SPIFFE Filesystem Delivery
//! standard's layout) without anyone writing volumes by hand.
//!
//! Pure: the admission webhook (`controller::webhook`) hands in the Pod of an
//! `AdmissionReview` and the trust domain the pod's namespace belongs to, and gets back
//! what to do: nothing, a patch, or a refusal whose message the API server shows to
//! whoever created the pod.
//!
//! What an injected pod gets, on a cluster with Pod Certificates:
//!
//! - one projected volume, [`VOLUME_NAME`], holding
//!   - a `podCertificate` source for the chosen signer and key type, written as
//!     [`CREDENTIAL_BUNDLE_FILE`];
//!   - one `clusterTrustBundle` source per trust domain the workload may talk to (its
//!     own and every one it federates with), selected by the `k8s.spiffe.io/*` labels
//!     and written as `<trust domain>.spiffe-trust-bundle.x509.pem`, each `optional`
//!     so that a relationship removed later (its bundle deleted) de-federates the pod
//!     instead of stopping it from starting;
//! - that volume mounted read-only at [`MOUNT_PATH`] in every container, init
//!   containers included;
//! - [`CREDENTIAL_FOLDER_ENV`] set to [`MOUNT_PATH`] in every container;
//! - the annotation [`INJECTED_ANNOTATION`] naming the signer.
//!
//! On a cluster without Pod Certificates the same folder is written by an in-pod agent
//! that files a CertificateSigningRequest ([`agent_patch_for`]); the webhook picks the
//! path by what the API server serves, so one opt-in label works on both.

mod agent_patch;
mod opt_in;
mod patch;

pub use agent_patch::{
    agent_args, agent_patch_for, AgentSettings, AGENT_COMMAND, AGENT_CONTAINER,
    CREDENTIAL_FOLDER_SIZE, TOKEN_EXPIRATION_SECONDS, TOKEN_PATH, TOKEN_VOLUME,
    TRUST_BUNDLES_CONFIGMAP, TRUST_BUNDLES_PATH, TRUST_BUNDLES_VOLUME,
};

pub use opt_in::{
    decide, Decision, InjectionSettings, Skip, FEDERATES_WITH_ANNOTATION, INJECT_LABEL,
    KEY_TYPE_ANNOTATION, SIGNER_ANNOTATION, SPIRE_FEDERATES_WITH_ANNOTATION,
};
pub use patch::{patch_for, Refusal};

/// The projected volume injection adds.
pub const VOLUME_NAME: &str = "podtls-spiffe-credentials";

/// Where every container sees the credential folder (the draft's example path).
pub const MOUNT_PATH: &str = "/run/workload-spiffe-credentials";

/// The environment variable naming the credential folder (podtls' convention).
pub const CREDENTIAL_FOLDER_ENV: &str = "SPIFFE_CREDENTIAL_FOLDER";

/// The credential bundle's file name in the folder (the draft's current name).
pub const CREDENTIAL_BUNDLE_FILE: &str = "credential-bundle.private-key.x509.pem";

/// The suffix of a trust domain's bundle file in the folder.
pub const TRUST_BUNDLE_SUFFIX: &str = ".spiffe-trust-bundle.x509.pem";

/// Set on every pod injection changed; its value is the signer name.
pub const INJECTED_ANNOTATION: &str = "podtls.row-major.net/injected";

/// The ClusterTrustBundle labels of the draft's appendix B.
pub mod labels {
    /// `live` or `preview`; injected pods select `live`.
    pub const CANARYING: &str = "k8s.spiffe.io/canarying";
    /// The workload's own trust domain.
    pub const WORKLOAD_TRUST_DOMAIN: &str = "k8s.spiffe.io/workload-trust-domain";
    /// The peer's trust domain the bundle is for.
    pub const PEER_TRUST_DOMAIN: &str = "k8s.spiffe.io/peer-trust-domain";
}

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "agent_tests.rs"]
mod agent_tests;
