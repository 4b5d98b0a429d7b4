//! What a signer knows about the cluster at issuance time: the pod a request names,
//! its Node and ServiceAccount (for the entitlement checks of every signer), and the
//! Services of its namespace (service-dns).

use std::collections::BTreeMap;

/// A Service's `spec.type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceType {
    /// `ClusterIP` (also what an unset type defaults to).
    ClusterIp,
    /// `NodePort`.
    NodePort,
    /// `LoadBalancer`.
    LoadBalancer,
    /// A headless Service: `ClusterIP` with `spec.clusterIP: None` (selects pods; DNS
    /// answers with the pods' addresses, and with per-pod names for pods whose
    /// `spec.subdomain` is its name).
    Headless,
    /// `ExternalName`: names something outside the cluster, selects no pods.
    ExternalName,
    /// Anything else.
    Other(String),
}

impl From<&str> for ServiceType {
    fn from(s: &str) -> Self {
        match s {
            "" | "ClusterIP" => ServiceType::ClusterIp,
            "NodePort" => ServiceType::NodePort,
            "LoadBalancer" => ServiceType::LoadBalancer,
            "ExternalName" => ServiceType::ExternalName,
            other => ServiceType::Other(other.to_string()),
        }
    }
}

/// The pod a request names, as found in the cluster: what the entitlement checks and
/// the service-dns signer need, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.serviceAccountName` (immutable).
    pub service_account_name: String,
    /// `spec.nodeName`: `None` until the pod is bound (then immutable).
    pub node_name: Option<String>,
    /// `metadata.deletionTimestamp` is set: the pod is terminating.
    pub terminating: bool,
    /// The pod is a static pod's mirror (annotation `kubernetes.io/config.mirror`);
    /// kube-apiserver's node restriction refuses certificates for those too.
    pub mirror: bool,
    /// Every `podCertificate` source of the pod's projected volumes (immutable).
    pub certificate_sources: Vec<CertificateSource>,
    /// `spec.hostname` (immutable; set by StatefulSets to the pod name).
    pub hostname: Option<String>,
    /// `spec.subdomain` (immutable; set by StatefulSets to their `serviceName`).
    pub subdomain: Option<String>,
}

/// One `podCertificate` projected volume source of a pod's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSource {
    /// `signerName`.
    pub signer_name: String,
    /// `keyType` (`RSA3072`, `ECDSAP256`, `ED25519`, ...).
    pub key_type: String,
}

/// A Node or ServiceAccount a request names, as found in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectIdentity {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
}

/// A Service in the pod's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.type`.
    pub service_type: ServiceType,
    /// `spec.selector`.
    pub selector: BTreeMap<String, String>,
}

impl ServiceInfo {
    /// Whether this Service selects any pod at all: a type that routes to pods
    /// (ClusterIP, NodePort, LoadBalancer) and a non-empty selector (an empty one means
    /// "endpoints managed by hand").
    pub fn can_select_pods(&self) -> bool {
        matches!(
            self.service_type,
            ServiceType::ClusterIp
                | ServiceType::NodePort
                | ServiceType::LoadBalancer
                | ServiceType::Headless
        ) && !self.selector.is_empty()
    }

    /// Whether this Service selects `pod` by label, as the endpoints controller does:
    /// same namespace, a type that routes to pods (ClusterIP, headless, NodePort,
    /// LoadBalancer),
    /// a non-empty selector (an empty one means "endpoints managed by hand"), and every
    /// selector pair present in the pod's labels.
    pub fn selects(&self, pod: &PodInfo) -> bool {
        self.can_select_pods()
            && self.namespace == pod.namespace
            && self
                .selector
                .iter()
                .all(|(k, v)| pod.labels.get(k) == Some(v))
    }
}

/// The cluster state an issuance decision is taken against (from watch caches, or read
/// live to confirm a denial).
///
/// Every signer checks the request against it ([`check_entitlement`](crate::check_entitlement)):
/// kube-apiserver's node restriction vouches for requests made by nodes only, so the
/// request's fields are claims until they match the live objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodSnapshot {
    /// The pod with the request's namespace and name, if the cache has it.
    pub pod: Option<PodInfo>,
    /// The Node with the request's `spec.nodeName`, if the cache has it.
    pub node: Option<ObjectIdentity>,
    /// The ServiceAccount with the request's namespace and `spec.serviceAccountName`, if
    /// the cache has it.
    pub service_account: Option<ObjectIdentity>,
    /// Services of the pod's namespace (service-dns only); only those that
    /// [select](ServiceInfo::selects) the pod count (the controller passes just those,
    /// from its [`ServiceIndex`](crate::ServiceIndex)).
    pub services: Vec<ServiceInfo>,
}
