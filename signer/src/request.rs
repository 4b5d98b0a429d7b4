//! The parts of a PodCertificateRequest the issuer looks at.

use std::collections::BTreeMap;

use crate::requested_key::KeyMaterial;

/// A PodCertificateRequest as the issuer sees it (every pod, node and ServiceAccount
/// field is a claim until [`check_entitlement`](crate::check_entitlement) passes), independent of the API version that
/// served it (certificates.k8s.io/v1beta1 or v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuanceRequest {
    /// `metadata.namespace`: the pod's namespace.
    pub namespace: String,
    /// `metadata.name`, for messages.
    pub name: String,
    /// `spec.signerName`.
    pub signer_name: String,
    /// `spec.podName`.
    pub pod_name: String,
    /// `spec.podUID`: also the message signed by the proof of possession.
    pub pod_uid: String,
    /// `spec.serviceAccountName`.
    pub service_account_name: String,
    /// `spec.serviceAccountUID`.
    pub service_account_uid: String,
    /// `spec.nodeName`.
    pub node_name: String,
    /// `spec.nodeUID`.
    pub node_uid: String,
    /// `spec.maxExpirationSeconds`; the API server defaults it to 86400.
    pub max_expiration_seconds: Option<i32>,
    /// `spec.pkixPublicKey` + `spec.proofOfPossession`, or `spec.stubPKCS10Request`.
    pub key_material: KeyMaterial,
    /// `spec.unverifiedUserAnnotations`.
    pub unverified_user_annotations: BTreeMap<String, String>,
}

/// The API server's default for `spec.maxExpirationSeconds` (24 hours).
pub const DEFAULT_MAX_EXPIRATION_SECONDS: i32 = 86_400;
