//! `Authorizer::custom_with_chain`: a policy on the verified chain, not
//! just the ID. Two clients with the same SPIFFE ID, issued by two
//! intermediates of the same trusted root; only the one issued through the
//! allowed intermediate gets in.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use common::*;
use mesh::*;
use podtls::test_util::LeafSpec;
use podtls::{Authorizer, ClientAuth, ClientTls, ServerTls};

#[tokio::test]
async fn a_chain_policy_admits_only_clients_issued_through_the_allowed_intermediate() {
    let mesh = Mesh::new().await;
    let team_a = mesh.ca.intermediate("team-a");
    let team_b = mesh.ca.intermediate("team-b");
    let allowed = team_a.cert_der().clone();
    let policy = Authorizer::custom_with_chain(move |id, _leaf, intermediates| {
        id.path().starts_with("/ns/c/")
            && intermediates
                .first()
                .is_some_and(|issuer| *issuer == allowed)
    });
    // Optional client auth: the server reports the verdict with its reason.
    let tls = ServerTls::builder(mesh.server_pod.credentials().unwrap().clone())
        .client_auth(ClientAuth::optional(
            mesh.server_pod.spiffe_bundles().clone(),
            policy,
        ))
        .build()
        .unwrap();
    let server = TestServer::start(tls).await;
    let id = format!("spiffe://{TD}{CLIENT_ID}");
    let client = |issuer: &podtls::test_util::CertAuthority| {
        ClientTls::builder(mesh.server_auth())
            .client_credentials(bundle_creds(&issuer.issue(&LeafSpec::spiffe(&id))))
            .build()
            .unwrap()
    };

    let seen = connect(server.addr, client(&team_a), "server.svc")
        .await
        .unwrap();
    assert_eq!(seen.line, format!("verified {id}"));
    let seen = connect(server.addr, client(&team_b), "server.svc")
        .await
        .unwrap();
    assert!(
        seen.line.starts_with("rejected ") && seen.line.contains("custom predicate on the chain"),
        "{}",
        seen.line
    );
    // Issued by the root directly: no intermediate, refused too.
    let seen = connect(server.addr, client(&mesh.ca), "server.svc")
        .await
        .unwrap();
    assert!(seen.line.starts_with("rejected "), "{}", seen.line);
    server.stop().await;
}
