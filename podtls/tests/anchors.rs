//! Trust anchors are certificates, not bare keys (as in go-spiffe and Go's
//! crypto/x509; plain WebPKI ignores both rules): a chain is accepted through
//! an anchor only while the anchor is inside its own validity window, and
//! only with no more intermediates than its pathLenConstraint allows. Both
//! flows (SPIFFE and DNS) apply the same rules, and a handshake refused by
//! them sends the matching alert.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use podtls::test_util::{CaSpec, CertAuthority, Issued, LeafSpec};
use podtls::{
    error::ChainFailure, verification::verify_dns_server, verification::verify_spiffe_peer,
    verification::PeerRole, Authorizer, Origin, SpiffeBundles, TrustBundle, VerifyError,
};
use rustls::pki_types::{ServerName, UnixTime};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn at(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(SystemTime::UNIX_EPOCH).unwrap())
}

/// A leaf valid from three days ago to a day from now, for `id`, and the
/// DNS name `server.svc`.
fn wide_leaf(ca: &CertAuthority, id: &str) -> Issued {
    let now = SystemTime::now();
    ca.issue(
        &LeafSpec::spiffe(&format!("spiffe://{TD}{id}"))
            .dns_name("server.svc")
            .validity(now - 3 * DAY, now + DAY),
    )
}

fn bundle(cas: &[&CertAuthority]) -> TrustBundle {
    let pem: String = cas.iter().map(|c| c.cert_pem().to_string()).collect();
    TrustBundle::from_pem(pem.as_bytes(), &Origin::memory("bundle")).unwrap()
}

fn spiffe(leaf: &Issued, cas: &[&CertAuthority], now: SystemTime) -> Result<(), VerifyError> {
    let bundles = SpiffeBundles::new([(td(), bundle_store(cas))]);
    verify_spiffe_peer(
        &leaf.chain_der[0],
        &leaf.chain_der[1..],
        &bundles,
        &Authorizer::any(),
        PeerRole::Server,
        at(now),
    )
    .map(|_| ())
}

fn dns(leaf: &Issued, cas: &[&CertAuthority], now: SystemTime) -> Result<(), VerifyError> {
    verify_dns_server(
        &leaf.chain_der[0],
        &leaf.chain_der[1..],
        &ServerName::try_from("server.svc").unwrap(),
        &bundle(cas),
        at(now),
    )
    .map(|_| ())
}

fn failure(e: &VerifyError) -> ChainFailure {
    match e {
        VerifyError::Chain { failure, .. } | VerifyError::DnsChain { failure, .. } => *failure,
        other => panic!("not a chain failure: {other}"),
    }
}

#[test]
fn rejects_a_chain_to_an_anchor_past_its_validity() {
    let now = SystemTime::now();
    let ca = CertAuthority::root(
        "expired",
        &CaSpec::default().validity(now - 5 * DAY, now - DAY),
    );
    let leaf = wide_leaf(&ca, "/ns/s/sa/server");
    for (flow, verdict) in [
        ("spiffe", spiffe(&leaf, &[&ca], now)),
        ("dns", dns(&leaf, &[&ca], now)),
    ] {
        let e = verdict.expect_err(flow);
        assert_eq!(failure(&e), ChainFailure::Expired, "{flow}: {e}");
        assert!(e.to_string().contains("trust anchor"), "{flow}: {e}");
    }
    // The same chain while the anchor was valid (and the leaf too): accepted.
    let then = now - 2 * DAY;
    spiffe(&leaf, &[&ca], then).unwrap();
    dns(&leaf, &[&ca], then).unwrap();
}

#[test]
fn rejects_a_chain_to_an_anchor_not_yet_valid() {
    let now = SystemTime::now();
    let ca = CertAuthority::root(
        "future",
        &CaSpec::default().validity(now + DAY, now + 5 * DAY),
    );
    let leaf = wide_leaf(&ca, "/ns/s/sa/server");
    for (flow, verdict) in [
        ("spiffe", spiffe(&leaf, &[&ca], now)),
        ("dns", dns(&leaf, &[&ca], now)),
    ] {
        let e = verdict.expect_err(flow);
        assert_eq!(failure(&e), ChainFailure::NotYetValid, "{flow}: {e}");
    }
}

#[test]
fn an_anchors_path_length_constraint_limits_the_intermediates() {
    let now = SystemTime::now();
    let strict = CertAuthority::root("pathlen 0", &CaSpec::default().path_len(0));
    let one = CertAuthority::root("pathlen 1", &CaSpec::default().path_len(1));
    // Directly under the anchor: fine with pathlen 0.
    spiffe(&wide_leaf(&strict, "/ns/s/sa/direct"), &[&strict], now).unwrap();
    // One intermediate: beyond pathlen 0, within pathlen 1.
    let via_strict = wide_leaf(&strict.intermediate("sub"), "/ns/s/sa/server");
    for (flow, verdict) in [
        ("spiffe", spiffe(&via_strict, &[&strict], now)),
        ("dns", dns(&via_strict, &[&strict], now)),
    ] {
        let e = verdict.expect_err(flow);
        assert_eq!(failure(&e), ChainFailure::BadCertificate, "{flow}: {e}");
        assert!(e.to_string().contains("allows 0"), "{flow}: {e}");
    }
    let via_one = wide_leaf(&one.intermediate("sub"), "/ns/s/sa/server");
    spiffe(&via_one, &[&one], now).unwrap();
    dns(&via_one, &[&one], now).unwrap();
}

#[test]
fn an_expired_anchor_does_not_hide_a_valid_one() {
    // Two anchors in one bundle, one expired: a chain to the valid one passes,
    // whatever the order.
    let now = SystemTime::now();
    let old = CertAuthority::root("old", &CaSpec::default().validity(now - 5 * DAY, now - DAY));
    let new = CertAuthority::new("new");
    let leaf = wide_leaf(&new, "/ns/s/sa/server");
    spiffe(&leaf, &[&old, &new], now).unwrap();
    spiffe(&leaf, &[&new, &old], now).unwrap();
    dns(&leaf, &[&old, &new], now).unwrap();
}

#[tokio::test]
async fn a_handshake_through_an_expired_anchor_is_refused_with_certificate_expired() {
    let now = SystemTime::now();
    let ca = CertAuthority::root(
        "expired",
        &CaSpec::default().validity(now - 5 * DAY, now - DAY),
    );
    let server = wide_leaf(&ca, "/ns/s/sa/server");
    let tls = podtls::ServerTls::builder(podtls::Store::fixed(
        "creds",
        podtls::Credentials::from_bundle_pem(
            server.bundle_pem().as_bytes(),
            &Origin::memory("creds"),
            podtls::LeafKind::Any,
            now,
        )
        .unwrap(),
    ))
    .build()
    .unwrap();
    let srv = TestServer::start(tls).await;
    let client = podtls::ClientTls::builder(podtls::ServerAuth::Dns(bundle_store(&[&ca])))
        .build()
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let err = client
        .connect(ServerName::try_from("server.svc").unwrap(), tcp)
        .await
        .unwrap_err();
    let rejection = err.rejection().expect("a typed rejection");
    assert_eq!(failure(rejection), ChainFailure::Expired, "{err}");
    srv.stop().await;
}
