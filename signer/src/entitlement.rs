//! Is the pod a request names entitled to a certificate from this signer? The request's
//! fields are claims; they are checked against the live pod, Node and ServiceAccount.
//!
//! kube-apiserver's node restriction admission checks the same fields, but only for
//! requests made by nodes. Anyone else granted `create podcertificaterequests` could
//! otherwise claim any pod's identity. (The project's ValidatingAdmissionPolicy refuses
//! such requests at admission; this check holds without it.)
//!
//! Each check ends in one of three ways:
//! - it passes;
//! - the snapshot lacks something that may still appear (a cache that lags, a pod not
//!   bound yet): [`Pending`], never a denial, so a slow cache never strands a pod;
//! - the snapshot contradicts the request in a way that cannot heal (another pod UID,
//!   another ServiceAccount, a terminating pod, no volume asking for this signer):
//!   [`Denial`]. Such a denial depends on the snapshot
//!   ([`DenialReason::depends_on_cluster_state`]), so a controller confirms it against
//!   objects read live before writing it.

use crate::denial::{Denial, DenialReason, NotIssued, Pending, PendingReason};
use crate::snapshot::{ObjectIdentity, PodInfo, PodSnapshot};
use crate::{IssuanceRequest, KeyType};

/// Checks `request` (for a key of `key_type`) against `snapshot`; on success returns
/// the pod, which every field of the request now describes.
///
/// In order: the pod exists with the request's UID, is no mirror pod, is not
/// terminating, runs as the request's ServiceAccount, is bound to the request's node,
/// and mounts a `podCertificate` source for the request's signer and key type; the Node
/// and the ServiceAccount exist with the request's UIDs.
pub fn check_entitlement<'s>(
    request: &IssuanceRequest,
    key_type: KeyType,
    snapshot: &'s PodSnapshot,
) -> Result<&'s PodInfo, NotIssued> {
    let who = format!("pod {}/{}", request.namespace, request.pod_name);
    let deny = |reason, message: String| Err(NotIssued::Denied(Denial::new(reason, message)));
    let pending = |reason, message: String| Err(NotIssued::Pending(Pending::new(reason, message)));

    let Some(pod) = snapshot
        .pod
        .as_ref()
        .filter(|p| p.namespace == request.namespace && p.name == request.pod_name)
    else {
        return pending(
            PendingReason::PodNotInSnapshot,
            format!("{who} is not in the cluster snapshot"),
        );
    };
    if pod.uid != request.pod_uid {
        return deny(
            DenialReason::PodUidMismatch,
            format!(
                "{who} has UID {}, but the request names UID {}: it is for a pod that no longer exists",
                pod.uid, request.pod_uid
            ),
        );
    }
    if pod.mirror {
        return deny(
            DenialReason::MirrorPod,
            format!("{who} is a mirror pod; mirror pods get no pod certificates"),
        );
    }
    if pod.terminating {
        return deny(
            DenialReason::PodTerminating,
            format!("{who} is terminating"),
        );
    }
    if pod.service_account_name != request.service_account_name {
        return deny(
            DenialReason::ServiceAccountMismatch,
            format!(
                "{who} runs as ServiceAccount {:?}, but the request names {:?}",
                pod.service_account_name, request.service_account_name
            ),
        );
    }
    match pod.node_name.as_deref() {
        None => {
            return pending(
                PendingReason::PodNotBound,
                format!("{who} is not bound to a node in the cluster snapshot"),
            )
        }
        Some(node) if node != request.node_name => {
            return deny(
                DenialReason::NodeMismatch,
                format!(
                    "{who} is bound to node {node:?}, but the request names node {:?}",
                    request.node_name
                ),
            )
        }
        Some(_) => {}
    }
    let sources = || {
        pod.certificate_sources
            .iter()
            .filter(|s| s.signer_name == request.signer_name)
    };
    if !sources().any(|s| s.key_type == key_type.as_str()) {
        let found: Vec<&str> = sources().map(|s| s.key_type.as_str()).collect();
        return deny(
            DenialReason::NoPodCertificateSource,
            if found.is_empty() {
                format!(
                    "{who} mounts no podCertificate volume source for signer {}",
                    request.signer_name
                )
            } else {
                format!(
                    "{who} mounts podCertificate sources for signer {} with key types {}, not {key_type}",
                    request.signer_name,
                    found.join(", ")
                )
            },
        );
    }
    check_object(
        "Node",
        &request.node_name,
        &request.node_uid,
        snapshot.node.as_ref(),
        PendingReason::NodeNotInSnapshot,
        DenialReason::NodeUidMismatch,
    )?;
    check_object(
        "ServiceAccount",
        &format!("{}/{}", request.namespace, request.service_account_name),
        &request.service_account_uid,
        snapshot.service_account.as_ref(),
        PendingReason::ServiceAccountNotInSnapshot,
        DenialReason::ServiceAccountUidMismatch,
    )?;
    Ok(pod)
}

/// A Node or ServiceAccount named by the request (`name`, for a ServiceAccount
/// `namespace/name`): present with the request's UID.
fn check_object(
    kind: &str,
    name: &str,
    uid: &str,
    found: Option<&ObjectIdentity>,
    missing: PendingReason,
    mismatch: DenialReason,
) -> Result<(), NotIssued> {
    let bare_name = name.rsplit('/').next().unwrap_or(name);
    match found.filter(|o| o.name == bare_name) {
        None => Err(NotIssued::Pending(Pending::new(
            missing,
            format!("{kind} {name} is not in the cluster snapshot"),
        ))),
        Some(o) if o.uid != uid => Err(NotIssued::Denied(Denial::new(
            mismatch,
            format!(
                "{kind} {name} has UID {}, but the request names UID {uid}",
                o.uid
            ),
        ))),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
#[path = "entitlement_tests.rs"]
mod tests;
