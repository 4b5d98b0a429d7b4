//! The signer's side of the identity extensions: the PodIdentity extension of the
//! pod-identity signer and the issuing cluster every signer names, as rcgen
//! extensions. The encodings are podtls' ([`podtls::PodIdentity`],
//! [`podtls::IssuingCluster`]), so what the signer writes is exactly what podtls
//! reads back.

use podtls::{
    certificate::POD_IDENTITY_OID_ARCS, certificate::SUBJECT_INFO_ACCESS_OID_ARCS, IssuingCluster,
    PodIdentity,
};
use rcgen::CustomExtension;

use crate::{Error, IssuanceRequest};

/// The PodIdentity of an entitlement-checked request: every field of the request now
/// describes the live pod, its Node and its ServiceAccount.
pub(crate) fn pod_identity_of(request: &IssuanceRequest) -> PodIdentity {
    PodIdentity {
        namespace: request.namespace.clone(),
        service_account_name: request.service_account_name.clone(),
        service_account_uid: request.service_account_uid.clone(),
        pod_name: request.pod_name.clone(),
        pod_uid: request.pod_uid.clone(),
        node_name: request.node_name.clone(),
        node_uid: request.node_uid.clone(),
    }
}

/// The PodIdentity extension (OID `1.3.6.1.4.1.57683.1`, non-critical, as the
/// prototype).
pub(crate) fn pod_identity_extension(identity: &PodIdentity) -> Result<CustomExtension, Error> {
    let mut ext = CustomExtension::from_oid_content(POD_IDENTITY_OID_ARCS, identity.to_der()?);
    ext.set_criticality(false);
    Ok(ext)
}

/// The Subject Information Access extension naming the issuing cluster (non-critical,
/// as RFC 5280 requires).
pub(crate) fn issuing_cluster_extension(
    cluster: &IssuingCluster,
) -> Result<CustomExtension, Error> {
    let mut ext =
        CustomExtension::from_oid_content(SUBJECT_INFO_ACCESS_OID_ARCS, cluster.to_sia_der()?);
    ext.set_criticality(false);
    Ok(ext)
}

#[cfg(test)]
#[path = "pod_identity_tests.rs"]
mod tests;
