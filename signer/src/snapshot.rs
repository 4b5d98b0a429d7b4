//! What the service-dns signer knows about the cluster at issuance time.

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

/// The pod a request names, as found in the cluster.
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
            ServiceType::ClusterIp | ServiceType::NodePort | ServiceType::LoadBalancer
        ) && !self.selector.is_empty()
    }

    /// Whether this Service selects `pod` by label, as the endpoints controller does:
    /// same namespace, a type that routes to pods (ClusterIP, NodePort, LoadBalancer),
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

/// The cluster state an issuance decision is taken against (from watch caches).
///
/// The spiffe signer ignores it: its identity comes from the request, whose pod and
/// service account fields the API server's node restriction has already vouched for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodSnapshot {
    /// The pod with the request's namespace and name, if the cache has it.
    pub pod: Option<PodInfo>,
    /// Services of the pod's namespace; only those that [select](ServiceInfo::selects)
    /// the pod count (the controller passes just those, from its
    /// [`ServiceIndex`](crate::ServiceIndex)).
    pub services: Vec<ServiceInfo>,
}
