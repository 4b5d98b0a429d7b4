//! The parts of a PodCertificateRequest the issuer looks at.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::requested_key::KeyMaterial;

/// A PodCertificateRequest as the issuer sees it, independent of the API version that
/// served it (certificates.k8s.io/v1beta1 or v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuanceRequest {
    /// `metadata.namespace`: the pod's namespace.
    pub namespace: String,
    /// `metadata.name`, for messages.
    pub name: String,
    /// `metadata.creationTimestamp`, if known: starts the grace period after which a
    /// missing pod or Service turns from pending into a denial.
    pub created_at: Option<SystemTime>,
    /// `spec.signerName`.
    pub signer_name: String,
    /// `spec.podName`.
    pub pod_name: String,
    /// `spec.podUID`: also the message signed by the proof of possession.
    pub pod_uid: String,
    /// `spec.serviceAccountName`.
    pub service_account_name: String,
    /// `spec.maxExpirationSeconds`; the API server defaults it to 86400.
    pub max_expiration_seconds: Option<i32>,
    /// `spec.pkixPublicKey` + `spec.proofOfPossession`, or `spec.stubPKCS10Request`.
    pub key_material: KeyMaterial,
    /// `spec.unverifiedUserAnnotations`.
    pub unverified_user_annotations: BTreeMap<String, String>,
}

/// The API server's default for `spec.maxExpirationSeconds` (24 hours).
pub const DEFAULT_MAX_EXPIRATION_SECONDS: i32 = 86_400;
