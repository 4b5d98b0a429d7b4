//! The controller's error type: each variant names the step that failed; [`Error::step`]
//! is the `step` label of the reconcile-error metric.

/// A controller error. None of these is ever written to a request as `Failed`: they are
/// the signer's own problems and are retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// API discovery of a certificates.k8s.io version failed.
    #[error("discovering {group_version}: {source}")]
    Discovery {
        /// The group/version asked for.
        group_version: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The cluster serves no PodCertificateRequest (or ClusterTrustBundle) API.
    #[error("the cluster serves neither certificates.k8s.io/v1 nor v1beta1 podcertificaterequests (with status) and clustertrustbundles; on 1.35/1.36 enable the PodCertificateRequest and ClusterTrustBundle feature gates and the v1beta1 runtime-config")]
    NotServed,
    /// The signer has no CA pool (never loaded).
    #[error("signer {signer}: no CA pool: {reason}")]
    PoolUnavailable {
        /// The signer.
        signer: String,
        /// Why (from the pool watch).
        reason: String,
    },
    /// The issuer reported a problem of the signer's own (e.g. the CA is expired).
    #[error("signer {signer}: issuing for {request}: {source}")]
    Issue {
        /// The signer.
        signer: String,
        /// `namespace/name` of the request.
        request: String,
        /// The issuer's error.
        #[source]
        source: Box<crate::Error>,
    },
    /// Writing the status of a request failed (other than a conflict or a deleted request).
    #[error("writing the status of PodCertificateRequest {request}: {source}")]
    WriteStatus {
        /// `namespace/name` of the request.
        request: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Re-reading a request after a 409 failed.
    #[error("re-reading PodCertificateRequest {request} after a conflict: {source}")]
    Reread {
        /// `namespace/name` of the request.
        request: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading a pod, Node or ServiceAccount live (to confirm a denial) failed.
    #[error("reading the {what} of {request}'s request live, to confirm a denial: {source}")]
    ReadLive {
        /// `pod`, `node` or `serviceaccount`.
        what: &'static str,
        /// `namespace/name` of the pod the request names.
        request: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing a CertificateSigningRequest's approval or status failed (other than a
    /// conflict or a deleted CSR).
    #[error("writing CertificateSigningRequest {csr}: {source}")]
    WriteCsr {
        /// `metadata.name` of the CSR.
        csr: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Publishing the trust bundle ConfigMap of a namespace failed.
    #[error("publishing ConfigMap {namespace}/{name}: {source}")]
    PublishBundles {
        /// The namespace.
        namespace: String,
        /// The ConfigMap.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The status write conflicted again after a re-read.
    #[error("PodCertificateRequest {request}: status write conflicted twice; retrying later")]
    ConflictPersists {
        /// `namespace/name` of the request.
        request: String,
    },
    /// Applying a ClusterTrustBundle failed.
    #[error("applying ClusterTrustBundle {name}: {source}")]
    ApplyTrustBundle {
        /// The bundle's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Listing ClusterTrustBundles (to delete unwanted ones) failed.
    #[error("listing ClusterTrustBundles: {source}")]
    ListTrustBundles {
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an unwanted ClusterTrustBundle failed.
    #[error("deleting ClusterTrustBundle {name}: {source}")]
    DeleteTrustBundle {
        /// The bundle's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Renewing this replica's sharding Lease failed.
    #[error("renewing sharding Lease {name}: {source}")]
    Lease {
        /// The Lease's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting this replica's own sharding Lease at shutdown failed.
    #[error("deleting sharding Lease {name} at shutdown: {source}")]
    ReleaseLease {
        /// The Lease's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The admin endpoint could not be served.
    #[error("admin endpoint {addr}: {source}")]
    Admin {
        /// The listen address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA pool file's watcher could not start.
    #[error("watching the CA pool {path}: {source}")]
    WatchPool {
        /// The pool file.
        path: std::path::PathBuf,
        /// podtls' watcher error.
        #[source]
        source: podtls::Error,
    },
    /// The controller configuration is inconsistent (refused at start-up).
    #[error("configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The injection webhook was asked for without the service-dns signer, whose CA
    /// signs its serving certificate.
    #[error("the injection webhook needs the service-dns signer (its CA signs the webhook's serving certificate): add --enable-service-dns-signer")]
    InjectionWithoutServiceDns,
    /// A watch cache never became ready.
    #[error("the {what} watch cache stopped before it was ready")]
    CacheNotReady {
        /// Which cache.
        what: &'static str,
    },
}

impl Error {
    /// The failed step, as a metric label.
    pub fn step(&self) -> &'static str {
        match self {
            Error::Discovery { .. } | Error::NotServed => "discovery",
            Error::PoolUnavailable { .. } | Error::WatchPool { .. } => "ca_pool",
            Error::Issue { .. } => "issue",
            Error::WriteStatus { .. } => "write_status",
            Error::WriteCsr { .. } => "write_csr",
            Error::PublishBundles { .. } => "publish_bundles",
            Error::Reread { .. } => "reread_after_conflict",
            Error::ReadLive { .. } => "read_live",
            Error::ConflictPersists { .. } => "conflict",
            Error::ApplyTrustBundle { .. } => "apply_trust_bundle",
            Error::ListTrustBundles { .. } | Error::DeleteTrustBundle { .. } => {
                "delete_trust_bundle"
            }
            Error::Lease { .. } | Error::ReleaseLease { .. } => "lease",
            Error::Admin { .. } => "admin",
            Error::InjectionWithoutServiceDns => "injection",
            Error::CacheNotReady { .. } => "cache",
            Error::Config { .. } => "config",
        }
    }
}
