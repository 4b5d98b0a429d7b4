//! The Kubernetes half: a kube-rs controller per enabled signer that watches its
//! PodCertificateRequests, decides them with [`issue`](crate::issue) against watch-cache
//! snapshots, and writes one terminal status per request; the signers'
//! ClusterTrustBundles (and deleting those no enabled signer wants); CA pool hot reload; sharding between replicas; metrics and probes.
//! With CSR signing on, also one controller per signer for `certificates.k8s.io/v1`
//! CertificateSigningRequests ([`reconcile_csr`], deciding with
//! [`crate::csr_policy::decide`]) and the trust bundle ConfigMaps of opted-in namespaces.
//!
//! Shape (kube-rs `controller-rs`): [`Context`], [`reconcile`], a pure [`error_policy`],
//! and an [`Error`] whose variants name the failed step ([`Error::step`] is the metric
//! label). [`run`] wires it all to a [`kube::Client`] from any kubeconfig.

mod admin;
mod api_types;
mod bundle_configmaps;
mod bundle_endpoint;
mod bundle_fetch;
mod bundle_sequence;
mod ca_status;
mod cluster_view;
mod csr_signing;
mod discovery;
mod error;
mod federation;
mod federation_bundles;
mod federation_crd;
mod federation_metrics;
mod federation_sources;
mod injection_server;
mod injection_webhook;
mod issuer_discovery;
mod metrics;
mod pool_watch;
mod reconcile;
mod replica;
mod requester_policy;
mod run;
mod service_cache;
mod sharding;
mod spiffe_domains;
mod trust_bundle_gc;
mod trust_bundles;

#[cfg(test)]
mod tests;

pub use admin::{respond as admin_respond, serve as serve_admin, ReadinessCheck};
pub use api_types::{
    denied_status, failed_status, issuance_request, issued_status, k8s_time, system_time,
    terminal_condition, PodCertificateRequest, PodCertificateRequestSpec,
    PodCertificateRequestStatus, CONDITION_DENIED, CONDITION_FAILED, CONDITION_ISSUED,
};
pub use bundle_configmaps::{
    configmap_data as trust_bundle_configmap_data, write_for as trust_bundle_configmap_write,
    KnownBundles, Write as ConfigMapWrite, CONFIGMAP_NAME as TRUST_BUNDLE_CONFIGMAP, MANAGED_BY,
    MANAGED_BY_LABEL, POD_IDENTITY_KEY, SERVICE_DNS_KEY,
};
pub use bundle_endpoint::{
    respond as bundle_endpoint_respond, run as run_bundle_endpoint, serve as serve_bundle_endpoint,
    BundleEndpointConfig, ServingProfile,
};
pub use bundle_fetch::{
    fetch as fetch_bundle, web_roots, EndpointAuth, FetchError, FetchLimits, DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
};
pub use bundle_sequence::{
    bundle_digest, next_sequence, own_bundle, sync_sequence, DIGEST_ANNOTATION,
    SEQUENCE_ANNOTATION, SEQUENCE_FIELD_MANAGER,
};
pub use ca_status::{ExpiryLog, DEFAULT_CA_EXPIRY_WARNING, EXPIRY_RELOG_PERIOD};
pub use cluster_view::{pod_info, read_live, strip_pod, ClusterView, MIRROR_POD_ANNOTATION};
pub use csr_signing::{csr_fields, reconcile_csr, CONFLICT_RETRY};
pub use discovery::{discover, pick as pick_served_apis, ServedApis};
pub use error::Error;
pub use federation::FederationSettings;
pub use federation_bundles::{
    federation_bundle_name, own_bundle_name, pair_labels, CANARYING_LABEL, MANAGED_LABEL,
    PEER_TRUST_DOMAIN_LABEL, WORKLOAD_TRUST_DOMAIN_LABEL,
};
pub use federation_crd::{
    crd_yaml as federation_crd_yaml, BundleEndpointProfile, BundleSource, BundleSourceKind,
    ClusterFederatedTrustDomain, ClusterFederatedTrustDomainSpec,
    ClusterFederatedTrustDomainStatus, EndpointProfileType, FEDERATION_GROUP,
};
pub use federation_metrics::FederationMetrics;
pub use federation_sources::parse_bundle_content;
pub use injection_server::{
    ca_bundle_patch, run as run_injection_webhook, InjectionServerConfig, InjectionSetup,
    MAX_REVIEW_BYTES, REVIEW_PATH, SERVING_BUNDLE_FILE,
};
pub use injection_webhook::{InjectionWebhook, Outcome as InjectionOutcome, TrustDomainOf};
pub use issuer_discovery::{issuer_of, IssuerSource, OPENID_CONFIGURATION_PATH};
pub use metrics::Metrics;
pub use pool_watch::{spawn as watch_pool, PoolState, DEFAULT_RELOAD_PERIOD};
pub use reconcile::{
    error_policy, reconcile, snapshot, Clock, Context, API_ERROR_RETRY, PENDING_RECHECK,
    SIGNER_ERROR_RETRY,
};
pub use requester_policy::{PolicyState, REQUESTER_POLICY_BINDING};
pub use run::{run, ControllerConfig, SignerSetup};
pub use service_cache::{
    maintain as maintain_service_cache, service_cache, service_info, ServiceCache,
    ServiceCacheWriter,
};
pub use sharding::{
    assigned_replica, desired_lease, fnv1_64, live_replicas, release_preconditions, Released,
    Sharding, ShardingConfig, LEASE_DURATION, LEASE_RENEWAL_PERIOD, MEMBERSHIP_CHECK_PERIOD,
};
pub use spiffe_domains::{TrustDomains, TrustDomainsConfig};
pub use trust_bundle_gc::{
    collect as collect_trust_bundles, unwanted as unwanted_trust_bundles, ExistingBundle,
};
pub use trust_bundles::{bundle_body, bundle_labels, bundle_name, FIELD_MANAGER};

/// How often the injection webhook asks the API server again whether it serves
/// PodCertificateRequests (with CSR signing on).
pub const INJECTION_PATH_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// Re-exported: [`kube`] and [`k8s_openapi`] types appear in this module's API.
pub use k8s_openapi;
pub use kube;
