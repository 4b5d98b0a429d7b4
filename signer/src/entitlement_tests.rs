//! Every field a request claims, attacked one at a time: a lagging cache is pending, a
//! definite mismatch is denied, and nothing but the exact pod passes.

use std::collections::BTreeMap;

use super::*;
use crate::test_util::entitled_snapshot;
use crate::{CertificateSource, KeyMaterial, SPIFFE_SIGNER_NAME};

fn request() -> IssuanceRequest {
    IssuanceRequest {
        namespace: "shop".into(),
        name: "req-1".into(),
        signer_name: SPIFFE_SIGNER_NAME.into(),
        pod_name: "web-0".into(),
        pod_uid: "pod-uid".into(),
        service_account_name: "web".into(),
        service_account_uid: "sa-uid".into(),
        node_name: "node-1".into(),
        node_uid: "node-uid".into(),
        max_expiration_seconds: None,
        key_material: KeyMaterial::StubPkcs10 { csr: vec![] },
        unverified_user_annotations: BTreeMap::new(),
    }
}

/// The snapshot of the request's own pod, with one source: the signer, ED25519.
fn own_pod() -> PodSnapshot {
    let mut snap = entitled_snapshot(&request(), &[]);
    if let Some(pod) = snap.pod.as_mut() {
        pod.certificate_sources = vec![CertificateSource {
            signer_name: SPIFFE_SIGNER_NAME.into(),
            key_type: "ED25519".into(),
        }];
    }
    snap
}

fn check(req: &IssuanceRequest, snap: &PodSnapshot) -> Result<String, NotIssued> {
    check_entitlement(req, KeyType::Ed25519, snap).map(|p| p.uid.clone())
}

fn denied(req: &IssuanceRequest, snap: &PodSnapshot) -> Denial {
    match check(req, snap) {
        Err(NotIssued::Denied(d)) => {
            assert!(d.reason.depends_on_cluster_state(), "{d}");
            d
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn pending(req: &IssuanceRequest, snap: &PodSnapshot) -> PendingReason {
    match check(req, snap) {
        Err(NotIssued::Pending(p)) => p.reason,
        other => panic!("expected pending, got {other:?}"),
    }
}

fn pod_mut(snap: &mut PodSnapshot) -> &mut PodInfo {
    snap.pod.as_mut().expect("pod")
}

#[test]
fn the_pods_own_kubelet_request_passes_and_returns_the_pod() {
    assert_eq!(
        check(&request(), &own_pod()).ok().as_deref(),
        Some("pod-uid")
    );
}

#[test]
fn a_pod_missing_from_the_cache_is_pending_not_denied() {
    let mut snap = own_pod();
    snap.pod = None;
    assert_eq!(pending(&request(), &snap), PendingReason::PodNotInSnapshot);
    // A pod of the same name in another namespace is not the pod.
    let mut elsewhere = own_pod();
    pod_mut(&mut elsewhere).namespace = "other".into();
    assert_eq!(
        pending(&request(), &elsewhere),
        PendingReason::PodNotInSnapshot
    );
}

#[test]
fn another_pod_uid_is_denied() {
    let mut req = request();
    req.pod_uid = "uid-of-a-deleted-pod".into();
    let d = denied(&req, &own_pod());
    assert_eq!(d.reason, DenialReason::PodUidMismatch);
    assert!(d.message.contains("uid-of-a-deleted-pod"), "{d}");
}

#[test]
fn a_terminating_pod_is_denied() {
    let mut snap = own_pod();
    pod_mut(&mut snap).terminating = true;
    assert_eq!(
        denied(&request(), &snap).reason,
        DenialReason::PodTerminating
    );
}

#[test]
fn a_mirror_pod_is_denied() {
    let mut snap = own_pod();
    pod_mut(&mut snap).mirror = true;
    assert_eq!(denied(&request(), &snap).reason, DenialReason::MirrorPod);
}

#[test]
fn another_service_account_name_is_denied() {
    // The attacker claims a privileged ServiceAccount for a pod running as "web".
    let mut req = request();
    req.service_account_name = "admin".into();
    let mut snap = own_pod();
    snap.service_account = Some(ObjectIdentity {
        name: "admin".into(),
        uid: "sa-uid".into(),
    });
    let d = denied(&req, &snap);
    assert_eq!(d.reason, DenialReason::ServiceAccountMismatch);
    assert!(
        d.message.contains("\"web\"") && d.message.contains("\"admin\""),
        "{d}"
    );
}

#[test]
fn another_service_account_uid_is_denied_and_a_missing_one_is_pending() {
    let mut req = request();
    req.service_account_uid = "uid-of-a-deleted-sa".into();
    assert_eq!(
        denied(&req, &own_pod()).reason,
        DenialReason::ServiceAccountUidMismatch
    );
    let mut snap = own_pod();
    snap.service_account = None;
    assert_eq!(
        pending(&request(), &snap),
        PendingReason::ServiceAccountNotInSnapshot
    );
    // A ServiceAccount of another name is not the one the request names.
    let mut other = own_pod();
    other.service_account = Some(ObjectIdentity {
        name: "default".into(),
        uid: "sa-uid".into(),
    });
    assert_eq!(
        pending(&request(), &other),
        PendingReason::ServiceAccountNotInSnapshot
    );
}

#[test]
fn another_node_name_is_denied_and_an_unbound_pod_is_pending() {
    let mut req = request();
    req.node_name = "node-2".into();
    let mut snap = own_pod();
    snap.node = Some(ObjectIdentity {
        name: "node-2".into(),
        uid: "node-uid".into(),
    });
    assert_eq!(denied(&req, &snap).reason, DenialReason::NodeMismatch);
    let mut unbound = own_pod();
    pod_mut(&mut unbound).node_name = None;
    assert_eq!(pending(&request(), &unbound), PendingReason::PodNotBound);
}

#[test]
fn another_node_uid_is_denied_and_a_missing_node_is_pending() {
    let mut req = request();
    req.node_uid = "uid-of-a-replaced-node".into();
    assert_eq!(
        denied(&req, &own_pod()).reason,
        DenialReason::NodeUidMismatch
    );
    let mut snap = own_pod();
    snap.node = None;
    assert_eq!(pending(&request(), &snap), PendingReason::NodeNotInSnapshot);
}

#[test]
fn a_pod_without_a_source_for_this_signer_and_key_type_is_denied() {
    // No podCertificate source at all.
    let mut none = own_pod();
    pod_mut(&mut none).certificate_sources.clear();
    let d = denied(&request(), &none);
    assert_eq!(d.reason, DenialReason::NoPodCertificateSource);
    assert!(d.message.contains("no podCertificate"), "{d}");
    // A source for another signer only.
    let mut other_signer = own_pod();
    pod_mut(&mut other_signer).certificate_sources[0].signer_name =
        "row-major.net/service-dns".into();
    assert_eq!(
        denied(&request(), &other_signer).reason,
        DenialReason::NoPodCertificateSource
    );
    // A source for this signer with another key type.
    let snap = own_pod();
    match check_entitlement(&request(), KeyType::EcdsaP256, &snap) {
        Err(NotIssued::Denied(d)) => {
            assert_eq!(d.reason, DenialReason::NoPodCertificateSource);
            assert!(
                d.message.contains("ED25519") && d.message.contains("ECDSAP256"),
                "{d}"
            );
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn definite_mismatches_win_over_missing_cache_entries() {
    // Node and ServiceAccount not cached yet, but the pod runs as another
    // ServiceAccount: that can never heal, deny now.
    let mut req = request();
    req.service_account_name = "admin".into();
    let mut snap = own_pod();
    snap.node = None;
    snap.service_account = None;
    assert_eq!(
        denied(&req, &snap).reason,
        DenialReason::ServiceAccountMismatch
    );
}

#[test]
fn only_the_exact_pod_passes_every_single_field_changed_fails() {
    type Mutation = fn(&mut IssuanceRequest);
    let mutations: [(&str, Mutation); 6] = [
        ("pod name", |r| r.pod_name = "web-1".into()),
        ("pod uid", |r| r.pod_uid = "x".into()),
        ("sa name", |r| r.service_account_name = "x".into()),
        ("sa uid", |r| r.service_account_uid = "x".into()),
        ("node name", |r| r.node_name = "x".into()),
        ("node uid", |r| r.node_uid = "x".into()),
    ];
    for (what, mutate) in mutations {
        let mut req = request();
        mutate(&mut req);
        assert!(
            check(&req, &own_pod()).is_err(),
            "changing the {what} still passed"
        );
    }
}
