//! The spiffe signer with several trust domains: a request is signed in its namespace's
//! trust domain, by that trust domain's CA, and never by another's.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::*;
use crate::{NamespaceAssignment, TrustDomainMap};

fn pool_of(id: &str) -> CaPool {
    let ca = generate_ca(
        id,
        KeyType::EcdsaP256,
        now() - Duration::from_secs(3600),
        Duration::from_secs(365 * 86_400),
    )
    .unwrap();
    CaPool::single(ca)
}

/// The spiffe signer with default trust domain cluster.local (pool `pool()`) and
/// b.example (pool `b`) for the namespaces in `b_namespaces`.
fn two_domains(b_namespaces: &[&str], b: PoolState) -> (Setup, Vec<u8>) {
    let a = pool();
    let a_subject = root_subject(&a);
    let map = TrustDomainMap::new(
        parse_trust_domain("cluster.local").unwrap(),
        b_namespaces.iter().map(|ns| {
            format!("{ns}=b.example")
                .parse::<NamespaceAssignment>()
                .unwrap()
        }),
    )
    .unwrap();
    let (_ta, a_rx) = watch::channel(PoolState::fixed("/a", a));
    let (_tb, b_rx) = watch::channel(b);
    let domains = TrustDomains::new(
        map,
        BTreeMap::from([
            ("cluster.local".to_string(), a_rx.clone()),
            ("b.example".to_string(), b_rx),
        ]),
    )
    .unwrap();
    let mut setup = Setup::spiffe();
    setup.pool = a_rx.borrow().clone();
    setup.trust_domains = Some(Arc::new(domains));
    (setup, a_subject)
}

/// Issues the standard request (namespace `t`) and returns the leaf's URI SANs and the
/// leaf's issuer, as raw DER.
async fn issue_one(setup: Setup) -> (Vec<String>, Vec<u8>) {
    let (ctx, mut handle) = setup.context();
    let task = tokio::spawn(reconcile(
        Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
        ctx,
    ));
    let (parts, body, send) = next(&mut handle).await;
    assert_status_put(&parts, &body, "7", "Issued");
    reply(send, StatusCode::OK, &body);
    task.await.unwrap().unwrap();
    assert_no_more_requests(handle).await;
    let chain = body["status"]["certificateChain"].as_str().unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(chain.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    let (_, leaf) = X509Certificate::from_der(&der).unwrap();
    let uris = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    (uris, leaf.issuer().as_raw().to_vec())
}

fn root_subject(pool: &CaPool) -> Vec<u8> {
    pool.signing_ca().root_subject_raw().to_vec()
}

#[tokio::test]
async fn a_pod_gets_its_namespaces_trust_domain_signed_by_that_trust_domains_ca() {
    let b = pool_of("b-1");
    let b_subject = root_subject(&b);
    let (setup, a_subject) = two_domains(&["t"], PoolState::fixed("/b", b));
    let (uris, issuer) = issue_one(setup).await;
    assert_eq!(uris, ["spiffe://b.example/ns/t/sa/web"]);
    assert_eq!(issuer, b_subject);
    assert_ne!(issuer, a_subject);
}

#[tokio::test]
async fn a_namespace_not_mapped_stays_in_the_default_trust_domain() {
    let (setup, a_subject) = two_domains(&["other"], PoolState::fixed("/b", pool_of("b-1")));
    let (uris, issuer) = issue_one(setup).await;
    assert_eq!(uris, ["spiffe://cluster.local/ns/t/sa/web"]);
    assert_eq!(issuer, a_subject);
}

#[tokio::test]
async fn a_trust_domain_without_its_pool_issues_nothing_and_never_falls_back() {
    // The attacker's hope: b.example's pool Secret is missing, so the request might be
    // signed by cluster.local's CA (or get a cluster.local ID). It must wait instead.
    let (setup, _) = two_domains(&["t"], PoolState::empty("/b"));
    let (ctx, handle) = setup.context();
    let err = reconcile(
        Arc::new(pcr("row-major.net/spiffe", Duration::from_secs(1))),
        ctx,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::PoolUnavailable { .. }), "{err}");
    assert_no_more_requests(handle).await;
}
