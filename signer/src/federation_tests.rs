use super::*;

fn td(s: &str) -> TrustDomain {
    parse_trust_domain(s).unwrap()
}

fn doc(authorities: usize, sequence: Option<u64>) -> BundleDocument {
    BundleDocument {
        x509_authorities: (0..authorities).map(|i| vec![i as u8; 4]).collect(),
        sequence,
        refresh_hint: None,
    }
}

fn spec(name: &str, peer: &str, workloads: &[&str]) -> FederationSpec {
    FederationSpec {
        name: name.into(),
        peer: peer.into(),
        workload_trust_domains: workloads.iter().map(|s| s.to_string()).collect(),
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

#[test]
fn takes_a_newer_or_first_bundle() {
    let first = accept(None, doc(1, Some(3)), now()).unwrap();
    assert_eq!(first.sequence, Some(3));
    let same = accept(Some(&first), doc(2, Some(3)), now()).unwrap();
    assert_eq!(same.authorities.len(), 2);
    let newer = accept(Some(&first), doc(1, Some(4)), now()).unwrap();
    assert_eq!(newer.sequence, Some(4));
    // A peer that stops sending sequence numbers is not a rollback.
    accept(Some(&first), doc(1, None), now()).unwrap();
}

#[test]
fn refuses_a_sequence_rollback() {
    let current = accept(None, doc(1, Some(9)), now()).unwrap();
    assert_eq!(
        accept(Some(&current), doc(1, Some(8)), now()).unwrap_err(),
        BundleRejection::SequenceBackwards {
            current: 9,
            candidate: 8
        }
    );
    assert_eq!(
        accept(Some(&current), doc(1, Some(0)), now()).unwrap_err(),
        BundleRejection::SequenceBackwards {
            current: 9,
            candidate: 0
        }
    );
}

#[test]
fn refuses_an_empty_bundle_even_the_first() {
    assert_eq!(
        accept(None, doc(0, Some(1)), now()).unwrap_err(),
        BundleRejection::Empty
    );
    let current = accept(None, doc(1, Some(1)), now()).unwrap();
    assert_eq!(
        accept(Some(&current), doc(0, Some(2)), now()).unwrap_err(),
        BundleRejection::Empty
    );
}

#[test]
fn refresh_follows_the_hint_within_bounds_and_backs_off_on_errors() {
    let p = RefreshPolicy {
        min: Duration::from_secs(10),
        max: Duration::from_secs(600),
        default: Duration::from_secs(300),
    };
    assert_eq!(p.after_success(None), Duration::from_secs(300));
    assert_eq!(
        p.after_success(Some(Duration::from_secs(60))),
        Duration::from_secs(60)
    );
    assert_eq!(
        p.after_success(Some(Duration::from_secs(1))),
        Duration::from_secs(10),
        "a peer cannot make us poll it every second"
    );
    assert_eq!(
        p.after_success(Some(Duration::from_secs(u32::MAX as u64))),
        Duration::from_secs(600),
        "nor make us stop polling"
    );
    let steps: Vec<u64> = (1..=8).map(|n| p.after_error(n).as_secs()).collect();
    assert_eq!(steps, [10, 20, 40, 80, 160, 320, 600, 600]);
    assert_eq!(p.after_error(u32::MAX), Duration::from_secs(600));
}

#[test]
fn a_relationship_is_per_workload_trust_domain() {
    let own = [td("a.example"), td("b.example")];
    let rels = relationships(&[spec("c", "c.example", &["a.example"])], &own);
    let c = &rels["c"];
    assert_eq!(c.peer, Some(td("c.example")));
    assert_eq!(c.workloads, BTreeSet::from(["a.example".to_string()]));
    assert!(!c.workloads.contains("b.example"));
    assert!(c.problems.is_empty());
}

#[test]
fn an_own_trust_domain_the_signer_does_not_serve_is_reported_and_ignored() {
    let own = [td("a.example")];
    let rels = relationships(
        &[spec("c", "c.example", &["a.example", "other.example"])],
        &own,
    );
    assert_eq!(
        rels["c"].workloads,
        BTreeSet::from(["a.example".to_string()])
    );
    assert!(
        rels["c"].problems[0]
            .contains("\"other.example\" is not a trust domain this signer serves"),
        "{:?}",
        rels["c"].problems
    );
}

#[test]
fn a_trust_domain_cannot_federate_with_itself() {
    let own = [td("a.example"), td("b.example")];
    let rels = relationships(&[spec("a", "a.example", &["a.example", "b.example"])], &own);
    assert_eq!(
        rels["a"].workloads,
        BTreeSet::from(["b.example".to_string()])
    );
    assert!(rels["a"].problems[0].contains("cannot federate with itself"));
}

#[test]
fn two_resources_for_one_peer_the_first_by_name_wins() {
    let own = [td("a.example"), td("b.example")];
    let rels = relationships(
        &[
            spec("zz", "c.example", &["b.example"]),
            spec("aa", "c.example", &["a.example"]),
        ],
        &own,
    );
    assert_eq!(rels["aa"].workloads.len(), 1);
    assert!(rels["zz"].workloads.is_empty());
    assert!(rels["zz"].problems[0].contains("already federated by ClusterFederatedTrustDomain aa"));
}

#[test]
fn an_invalid_peer_trust_domain_federates_nothing() {
    let own = [td("a.example")];
    let rels = relationships(&[spec("x", "Spiffe://C", &["a.example"])], &own);
    assert!(rels["x"].peer.is_none());
    assert!(rels["x"].workloads.is_empty());
    assert!(rels["x"].problems[0].contains("spec.trustDomain"));
}
