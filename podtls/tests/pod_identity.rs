//! The PodIdentity extension and the issuing cluster are read from a peer's leaf only
//! after its chain verified; a trusted chain with a malformed one is refused; pod and
//! issuer rules authorize on them. Pure verification and real handshakes.

mod common;

use std::time::SystemTime;

use common::*;
use podtls::test_util::{CertAuthority, Issued, LeafSpec};
use podtls::{
    certificate::POD_IDENTITY_OID_ARCS, certificate::SUBJECT_INFO_ACCESS_OID_ARCS,
    verification::verify_dns_server, verification::verify_spiffe_peer, verification::PeerRole,
    Authorizer, ClientAuth, ClientTls, IssuingCluster, PeerAuth, PodIdentity, ServerAuth,
    ServerTls, SpiffeBundles, VerifyError,
};
use rustls::pki_types::{ServerName, UnixTime};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap(),
    )
}

fn pod(namespace: &str) -> PodIdentity {
    PodIdentity {
        namespace: namespace.into(),
        service_account_name: "client".into(),
        service_account_uid: "sa-uid-1".into(),
        pod_name: "client-0".into(),
        pod_uid: "pod-uid-1".into(),
        node_name: "node-1".into(),
        node_uid: "node-uid-1".into(),
    }
}

/// A leaf as the pod-identity signer issues it: SPIFFE ID, DNS name, PodIdentity,
/// issuing cluster.
fn pod_leaf(ca: &CertAuthority, namespace: &str) -> Issued {
    ca.issue(
        &LeafSpec::spiffe(&format!("spiffe://{TD}/ns/{namespace}/sa/client"))
            .dns_name("client.demo.svc")
            .extension(
                POD_IDENTITY_OID_ARCS,
                pod(namespace).to_der().unwrap(),
                false,
            )
            .extension(
                SUBJECT_INFO_ACCESS_OID_ARCS,
                IssuingCluster::new(ISSUER).unwrap().to_sia_der().unwrap(),
                false,
            ),
    )
}

fn verify(
    leaf: &Issued,
    bundles: &SpiffeBundles,
    authorizer: &Authorizer,
) -> Result<podtls::PeerIdentity, VerifyError> {
    verify_spiffe_peer(
        &leaf.chain_der[0],
        &leaf.chain_der[1..],
        bundles,
        authorizer,
        PeerRole::Client,
        now(),
    )
}

fn bundles(ca: &CertAuthority) -> SpiffeBundles {
    SpiffeBundles::new([(td(), bundle_store(&[ca]))])
}

#[test]
fn a_verified_leaf_exposes_its_pod_identity_and_issuing_cluster() {
    let ca = CertAuthority::new("ca");
    let peer = verify(
        &pod_leaf(&ca, "payments"),
        &bundles(&ca),
        &Authorizer::any(),
    )
    .unwrap();
    assert_eq!(peer.pod_identity(), Some(&pod("payments")));
    assert_eq!(peer.issuing_cluster().map(|c| c.as_str()), Some(ISSUER));

    // The DNS flow reads them from its verified leaf too.
    let leaf = pod_leaf(&ca, "payments");
    let peer = verify_dns_server(
        &leaf.chain_der[0],
        &leaf.chain_der[1..],
        &ServerName::try_from("client.demo.svc").unwrap(),
        &bundle_store(&[&ca]).current().unwrap(),
        now(),
    )
    .unwrap();
    assert_eq!(peer.pod_identity(), Some(&pod("payments")));

    // A leaf without them: both absent.
    let plain = ca.issue(&LeafSpec::spiffe(&format!("spiffe://{TD}/ns/a/sa/b")));
    let peer = verify(&plain, &bundles(&ca), &Authorizer::any()).unwrap();
    assert_eq!(peer.pod_identity(), None);
    assert_eq!(peer.issuing_cluster(), None);
}

#[test]
fn pod_and_issuer_rules_authorize_on_the_verified_leaf() {
    let ca = CertAuthority::new("ca");
    let b = bundles(&ca);
    let leaf = pod_leaf(&ca, "payments");
    let issuer = IssuingCluster::new(ISSUER).unwrap();
    assert!(verify(&leaf, &b, &Authorizer::pod_namespace("payments")).is_ok());
    assert!(verify(&leaf, &b, &Authorizer::issued_by(issuer.clone())).is_ok());
    let err = verify(&leaf, &b, &Authorizer::pod_namespace("billing")).unwrap_err();
    assert!(matches!(err, VerifyError::Unauthorized(_)), "{err}");
    let other = IssuingCluster::new("https://other-cluster.example").unwrap();
    assert!(verify(&leaf, &b, &Authorizer::issued_by(other)).is_err());
    // The same SPIFFE ID without the extension: the pod rule refuses it.
    let plain = ca.issue(&LeafSpec::spiffe(&format!(
        "spiffe://{TD}/ns/payments/sa/client"
    )));
    assert!(verify(&plain, &b, &Authorizer::pod_namespace("payments")).is_err());
}

#[test]
fn a_pod_identity_under_an_untrusted_ca_is_never_exposed() {
    let trusted = CertAuthority::new("trusted");
    let rogue = CertAuthority::new("rogue");
    let forged = pod_leaf(&rogue, "payments");
    // Even an authorizer that allows everything never sees it: the chain fails first.
    let err = verify(&forged, &bundles(&trusted), &Authorizer::any()).unwrap_err();
    assert!(matches!(err, VerifyError::Chain { .. }), "{err}");
    let err = verify(
        &forged,
        &bundles(&trusted),
        &Authorizer::pod_namespace("payments"),
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::Chain { .. }), "{err}");
}

#[test]
fn a_trusted_chain_with_a_malformed_identity_extension_is_refused() {
    let ca = CertAuthority::new("ca");
    let b = bundles(&ca);
    let id = format!("spiffe://{TD}/ns/payments/sa/client");
    let good = pod("payments").to_der().unwrap();
    // Eight fields (Go's encoding/asn1 would accept them), a truncated value, a
    // PrintableString field, two PodIdentity extensions, a bad issuer URL.
    let mut eight = good.clone();
    eight.extend_from_slice(&[0x0c, 0x01, b'x']);
    eight[1] += 3;
    let mut printable = good.clone();
    printable[2] = 0x13;
    let bad_sia = {
        // SEQUENCE { SEQUENCE { OID <ours>, [6] "no scheme" } }
        let sia = IssuingCluster::new(ISSUER).unwrap().to_sia_der().unwrap();
        let mut v = sia[..sia.len() - ISSUER.len()].to_vec();
        let body = b"no-scheme-at-all";
        let delta = body.len() as isize - ISSUER.len() as isize;
        v.extend_from_slice(body);
        v[1] = (v[1] as isize + delta) as u8;
        v[3] = (v[3] as isize + delta) as u8;
        let loc = v.len() - body.len() - 1;
        v[loc] = body.len() as u8;
        v
    };
    let cases: Vec<(&str, LeafSpec)> = vec![
        (
            "eight fields",
            LeafSpec::spiffe(&id).extension(POD_IDENTITY_OID_ARCS, eight, false),
        ),
        (
            "truncated",
            LeafSpec::spiffe(&id).extension(
                POD_IDENTITY_OID_ARCS,
                good[..good.len() - 2].to_vec(),
                false,
            ),
        ),
        (
            "wrong tag",
            LeafSpec::spiffe(&id).extension(POD_IDENTITY_OID_ARCS, printable, false),
        ),
        (
            "twice",
            LeafSpec::spiffe(&id)
                .extension(POD_IDENTITY_OID_ARCS, good.clone(), false)
                .extension(POD_IDENTITY_OID_ARCS, good.clone(), false),
        ),
        (
            "bad issuer",
            LeafSpec::spiffe(&id).extension(SUBJECT_INFO_ACCESS_OID_ARCS, bad_sia, false),
        ),
    ];
    for (what, spec) in cases {
        let leaf = ca.issue(&spec);
        let err = verify(&leaf, &b, &Authorizer::any())
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        // Refused either by WebPKI (a duplicate extension) or by us; never accepted.
        assert!(
            matches!(
                err,
                VerifyError::Extension { .. } | VerifyError::Chain { .. }
            ),
            "{what}: {err}"
        );
        if what != "twice" {
            assert!(
                matches!(err, VerifyError::Extension { .. }),
                "{what}: {err}"
            );
            assert!(err.to_string().contains(&leaf.serial), "{what}: {err}");
            // The extension's own parse error is the source, naming which one.
            let VerifyError::Extension { source, .. } = &err else {
                unreachable!()
            };
            let expected_issuer = what == "bad issuer";
            assert_eq!(
                matches!(source, podtls::error::ExtensionError::IssuingCluster(_)),
                expected_issuer,
                "{what}: {source:?}"
            );
            assert!(std::error::Error::source(source).is_some(), "{what}");
        }
    }
    // A critical PodIdentity: WebPKI refuses the unknown critical extension.
    let leaf = ca.issue(&LeafSpec::spiffe(&id).extension(POD_IDENTITY_OID_ARCS, good, true));
    assert!(verify(&leaf, &b, &Authorizer::any()).is_err());
}

#[tokio::test]
async fn a_server_sees_the_clients_pod_identity_only_from_a_trusted_chain() {
    let ca = CertAuthority::new("ca");
    let rogue = CertAuthority::new("rogue");
    let server = ca.issue(&LeafSpec::spiffe(&format!(
        "spiffe://{TD}/ns/demo/sa/server"
    )));
    let tls = ServerTls::builder(bundle_creds(&server))
        .client_auth(ClientAuth::optional(bundles(&ca), Authorizer::any()))
        .build()
        .unwrap();
    fn describe_pod(peer: &PeerAuth) -> String {
        match peer.identity() {
            Some(id) => format!(
                "pod={:?} issuer={:?}",
                id.pod_identity()
                    .map(|p| format!("{}/{}", p.namespace, p.pod_name)),
                id.issuing_cluster().map(|c| c.to_string())
            ),
            None => describe(peer),
        }
    }
    let srv = TestServer::start_with(tls, describe_pod).await;
    let client = |leaf: &Issued| {
        ClientTls::builder(ServerAuth::Spiffe(bundles(&ca), Authorizer::any()))
            .client_credentials(bundle_creds(leaf))
            .build()
            .unwrap()
    };
    let seen = connect(srv.addr, client(&pod_leaf(&ca, "payments")), "x")
        .await
        .unwrap();
    assert_eq!(
        seen.line,
        format!("pod=Some(\"payments/client-0\") issuer=Some(\"{ISSUER}\")")
    );
    let seen = connect(srv.addr, client(&pod_leaf(&rogue, "payments")), "x")
        .await
        .unwrap();
    assert!(
        seen.line.starts_with("rejected certificate chain"),
        "{}",
        seen.line
    );
    assert!(!seen.line.contains("pod="), "{}", seen.line);
    srv.stop().await;
}
