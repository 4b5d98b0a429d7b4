//! Plain TCP: `connect_tcp` / `ClientTls::connect_with_identity` return the
//! verified server identity with the stream, across rotations, and never a
//! stream whose server does not verify now.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use common::*;
use mesh::*;
use podtls::test_util::{CertAuthority, LeafSpec};
use podtls::{connect_tcp, Authorizer, ClientTls, HandshakeError, ServerAuth, ServerTls};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tcp_returns_the_servers_verified_identity_through_rotations() {
    let mesh = Mesh::new().await;
    let server = TestServer::start_with(mesh.server_tls(false, &[]), describe_full).await;
    let addr = server.addr;
    let tls = mesh.client_tls();
    let load = Load::start(move || {
        let tls = tls.clone();
        async move {
            let (mut stream, identity) = connect_tcp(&tls, addr, "server.svc")
                .await
                .map_err(|e| e.to_string())?;
            let id = identity
                .spiffe_id()
                .map(|id| id.to_string())
                .unwrap_or_default();
            if !id.ends_with(SERVER_ID) {
                return Err(format!("server identity {id}"));
            }
            // The identity is the one of this connection's certificate.
            let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
            let presented = podtls::certificate::CertInfo::from_der(&presented)
                .unwrap()
                .serial;
            if presented != identity.certificate.serial {
                return Err(format!("{presented} != {}", identity.certificate.serial));
            }
            let mut line = String::new();
            stream
                .read_to_string(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            let client_serial = line
                .rsplit_once("serial=")
                .map(|(_, s)| s.to_string())
                .ok_or_else(|| format!("server said {line:?}"))?;
            Ok(Obs {
                server_serial: Some(identity.certificate.serial.clone()),
                client_serial,
            })
        }
    });
    let connections = rotate_under_load(&mesh, load, 2, true).await;
    assert!(connections > 4, "{connections}");
    server.stop().await;
}

#[tokio::test]
async fn a_server_outside_the_policy_gets_no_stream() {
    let mesh = Mesh::new().await;
    let server = TestServer::start(mesh.server_tls(false, &[])).await;
    // Only the client's own ID is allowed as a server.
    let only_client = ClientTls::builder(ServerAuth::Spiffe(
        mesh.client_pod.spiffe_bundles().clone(),
        Authorizer::exact(podtls::parse_spiffe_id(&format!("spiffe://{TD}{CLIENT_ID}")).unwrap()),
    ))
    .client_credentials(mesh.client_pod.credentials().unwrap().clone())
    .build()
    .unwrap();
    let err = connect_tcp(&only_client, server.addr, "server.svc")
        .await
        .unwrap_err();
    let rejection = err.rejection().expect("a verification failure").to_string();
    assert!(rejection.contains("not authorized"), "{rejection}");
    server.stop().await;
}

#[tokio::test]
async fn dns_server_auth_returns_the_certificate_and_checks_the_name() {
    let ca = CertAuthority::new("ca");
    let leaf = ca.issue(&LeafSpec::dns(&["backend.svc"]));
    let server = TestServer::start(ServerTls::builder(bundle_creds(&leaf)).build().unwrap()).await;
    let tls = ClientTls::builder(ServerAuth::Dns(bundle_store(&[&ca])))
        .build()
        .unwrap();
    let (_, identity) = connect_tcp(&tls, server.addr, "backend.svc").await.unwrap();
    assert_eq!(identity.certificate.serial, leaf.serial);
    assert_eq!(identity.spiffe_id(), None);
    let err = connect_tcp(&tls, server.addr, "other.svc")
        .await
        .unwrap_err();
    assert!(matches!(err, HandshakeError::Rejected(_)), "{err:?}");
    let err = connect_tcp(&tls, server.addr, "not a name")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a valid server name"), "{err}");
    server.stop().await;
}
