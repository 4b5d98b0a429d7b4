//! # signer
//!
//! The pure core of a Kubernetes PodCertificateRequest signer for the signers
//! `row-major.net/service-dns`, `row-major.net/spiffe` and `row-major.net/pod-identity`
//! (names configurable), compatible with the original Go `meshtool` (signer names, CA
//! pool JSON, Secret key `pool`). What each puts in a certificate: `signer/README.md`.
//!
//! What it does:
//! - [`issue`]: request + [`SignerConfig`] + [`SigningCa`] + [`PodSnapshot`] + `now` →
//!   an [`Issued`] certificate (chain, notBefore, notAfter, beginRefreshAt that
//!   kube-apiserver accepts) or a [`NotIssued`] outcome: `Denied` / `Failed` (terminal
//!   conditions with a CamelCase reason), `Pending` (wait for a cache, the pod or a
//!   Service; never turns into a denial by itself) or `Error` (the signer's own problem:
//!   retry).
//! - [`check_entitlement`]: every request is checked against the live pod, Node and
//!   ServiceAccount ([`PodSnapshot`]) before anything is issued.
//! - Service DNS names ([`DnsNameOptions`]): `<svc>.<ns>.svc`, suffixed and fully
//!   qualified forms, per-pod names of headless Services, narrowed to the Services the pod
//!   chose ([`SERVICES_ANNOTATION`]); the PodIdentity extension ([`PodIdentity`]) and the
//!   issuing cluster ([`IssuingCluster`]) in the certificate.
//! - Requester keys from `pkixPublicKey` + `proofOfPossession` (certificates.k8s.io/v1beta1
//!   in 1.35) or `stubPKCS10Request` (1.36+, v1), verified as kube-apiserver does
//!   ([`RequestedKey`]); every Kubernetes key type ([`KeyType`]).
//! - [`CaPool`]: parse/write the meshtool pool JSON, pick the signing CA, build the trust
//!   bundle, [`generate_ca`]; the CA lifecycle with its rules ([`CaPool::add_ca`],
//!   [`CaPool::promote`], [`CaPool::retire`] refusing a CA whose certificates may still be
//!   valid, [`CaPool::describe`], [`CaPool::signing_ca_expiry`]), all with an explicit `now`.
//!
//! - [`csr_policy`]: the CertificateSigningRequest path of clusters without Pod
//!   Certificates: a CSR filed by an in-pod agent with its pod's own token becomes the
//!   request the pod's kubelet would have filed, and gets the same certificate.
//!
//! The issuance core above does not talk to Kubernetes, read files, or read the clock.
//! The [`controller`] module does (kube-rs controller, ClusterTrustBundle apply, CA pool
//! file watch, sharding Leases, metrics) and feeds the core bytes and an explicit `now`.
//!
//! ```no_run
//! use std::time::{Duration, SystemTime};
//! use signer::{issue, CaPool, IssuanceRequest, KeyMaterial, PodSnapshot, SignerConfig};
//!
//! # fn snapshot_from_the_cluster(_: &IssuanceRequest) -> PodSnapshot { PodSnapshot::default() }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = CaPool::from_json(&std::fs::read("/var/run/ca-pool/pool")?)?;
//! let config = SignerConfig::spiffe(signer::parse_trust_domain("cluster.local")?);
//! let request = IssuanceRequest {
//!     namespace: "default".into(),
//!     name: "pcr-1".into(),
//!     signer_name: config.name.clone(),
//!     pod_name: "web-0".into(),
//!     pod_uid: "0b6c7c9e-1c1e-4c52-9d7e-4a1f2f0c7f10".into(),
//!     service_account_name: "web".into(),
//!     service_account_uid: "5f0c3b9e-4c6e-4f43-8a51-1f5a2c9d0e11".into(),
//!     node_name: "node-1".into(),
//!     node_uid: "9a1d2e3f-0b4c-4d5e-8f60-7a8b9c0d1e2f".into(),
//!     max_expiration_seconds: Some(86_400),
//!     key_material: KeyMaterial::StubPkcs10 { csr: vec![/* spec.stubPKCS10Request */] },
//!     unverified_user_annotations: Default::default(),
//! };
//! // The pod, Node and ServiceAccount the request names, as the cluster has them.
//! let snapshot = snapshot_from_the_cluster(&request);
//! match issue(&request, &config, pool.signing_ca(), &snapshot, SystemTime::now()) {
//!     Ok(issued) => println!("{}", issued.certificate_chain),
//!     Err(outcome) => eprintln!("{outcome}"),
//! }
//! # Ok(()) }
//! ```

mod bundle_document;
mod ca_lifecycle;
mod ca_pool;
pub mod controller;
pub mod csr_policy;
mod denial;
mod dns_names;
mod endpoint_svid;
mod entitlement;
mod error;
mod federation;
pub mod injection;
mod issuer;
mod key_type;
mod pem;
mod pod_identity;
mod request;
mod requested_key;
mod service_index;
mod serving_certificate;
mod signer_config;
mod signing_ca;
mod snapshot;
mod trust_domain_map;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use bundle_document::{
    parse as parse_bundle_document, render as render_bundle_document, BundleDocument,
    BundleDocumentError, MAX_KEYS as MAX_BUNDLE_KEYS,
};
pub use ca_lifecycle::{CaExpiry, CaSummary, LeafHorizon, Promotion, Retirement, RETIRE_ALLOWANCE};
pub use ca_pool::{generate_ca, CaPool, DEFAULT_CA_VALIDITY};
pub use denial::{
    Denial, DenialReason, Failure, FailureReason, NotIssued, Pending, PendingReason,
    MAX_MESSAGE_BYTES,
};
pub use dns_names::{DnsNameOptions, MAX_DNS_NAME_LEN, SERVICES_ANNOTATION};
pub use endpoint_svid::{issue_endpoint_svid, EndpointSvid, ENDPOINT_SVID_LIFETIME};
pub use entitlement::check_entitlement;
pub use error::Error;
pub use federation::{
    accept as accept_peer_bundle, relationships, BundleRejection, FederationSpec, PeerBundle,
    RefreshPolicy, Relationships,
};
pub use issuer::{
    issue, Issued, BACKDATE, MAX_COMMON_NAME_LEN, MIN_LIFETIME, REFRESH_BEFORE_EXPIRY,
    REFRESH_MARGIN,
};
pub use key_type::{KeyType, UnknownKeyType};
pub use request::{IssuanceRequest, DEFAULT_MAX_EXPIRATION_SECONDS};
pub use requested_key::{KeyMaterial, RequestedKey, MAX_KEY_MATERIAL_SIZE};
pub use service_index::ServiceIndex;
pub use serving_certificate::{issue_serving_certificate, ServingCredential};
pub use signer_config::{
    parse_trust_domain, SignerConfig, SignerKind, DEFAULT_MAX_LIFETIME, MAX_LABEL_VALUE_LEN,
    POD_IDENTITY_SIGNER_NAME, SERVICE_DNS_SIGNER_NAME, SPIFFE_SIGNER_NAME,
};
pub use signing_ca::SigningCa;
pub use snapshot::{
    CertificateSource, ObjectIdentity, PodInfo, PodSnapshot, ServiceInfo, ServiceType,
};
pub use trust_domain_map::{NamespaceAssignment, TrustDomainMap};

/// Re-exported: [`spiffe::TrustDomain`] appears in [`SignerKind`].
pub use spiffe;

/// Re-exported from podtls: the identity extensions the signers write.
pub use podtls::{IssuingCluster, PodIdentity};
