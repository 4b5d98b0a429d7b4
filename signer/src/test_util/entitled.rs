//! A cluster snapshot in which a request's pod is entitled to its certificate.

use crate::{CertificateSource, IssuanceRequest, KeyType, ObjectIdentity, PodInfo, PodSnapshot};

/// The snapshot a request made by the pod's own kubelet is checked against: the pod
/// (labels `labels`) bound to the request's node, running as its ServiceAccount, with a
/// `podCertificate` source for the request's signer with each key type (a pod may
/// mount several); the Node and the ServiceAccount with the request's UIDs; no
/// Services.
pub fn entitled_snapshot(request: &IssuanceRequest, labels: &[(&str, &str)]) -> PodSnapshot {
    PodSnapshot {
        pod: Some(PodInfo {
            namespace: request.namespace.clone(),
            name: request.pod_name.clone(),
            uid: request.pod_uid.clone(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            service_account_name: request.service_account_name.clone(),
            node_name: Some(request.node_name.clone()),
            terminating: false,
            mirror: false,
            certificate_sources: KeyType::ALL
                .iter()
                .map(|t| CertificateSource {
                    signer_name: request.signer_name.clone(),
                    key_type: t.as_str().to_string(),
                })
                .collect(),
            hostname: None,
            subdomain: None,
        }),
        node: Some(ObjectIdentity {
            name: request.node_name.clone(),
            uid: request.node_uid.clone(),
        }),
        service_account: Some(ObjectIdentity {
            name: request.service_account_name.clone(),
            uid: request.service_account_uid.clone(),
        }),
        services: Vec::new(),
    }
}
