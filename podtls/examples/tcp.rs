//! Plain TCP with podtls on both sides: the server learns the client's
//! verified identity with each connection, the client the server's
//! (go-spiffe's `PeerIDFromConn`), while certificates rotate every second.
//!
//! Usage: `cargo run -p podtls --features test-util --example tcp [SECONDS]`
//!
//! The glue: `podtls::serve` (or `ServerTls::accept` in a loop of your own)
//! hands the handler an `Accepted` with the client's `PeerAuth`;
//! `podtls::connect_tcp` returns the stream with the server's
//! `PeerIdentity`. Exits non-zero if a connection failed or the server
//! never saw a rotated client certificate.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use podtls::{Accepted, Authorizer, ClientAuth, ClientTls, ServeOptions, ServerAuth, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() {
    let kubelet = support::Kubelet::new();
    let (server_pod, client_pod) = kubelet.pods().await;

    // Server glue: the accept loop; each connection comes with its client.
    let tls = ServerTls::builder(server_pod.credentials().expect("credentials").clone())
        .client_auth(ClientAuth::required(
            server_pod.spiffe_bundles().clone(),
            Authorizer::member_of([support::td()]),
        ))
        .build()
        .expect("server TLS");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(podtls::serve(
        listener,
        tls,
        ServeOptions::default(),
        async move {
            let _ = stopped.await;
        },
        |mut conn: Accepted| async move {
            let serial = conn
                .peer
                .identity()
                .map(|id| id.certificate.serial.clone())
                .unwrap_or_default();
            let _ = conn.stream.write_all(serial.as_bytes()).await;
            let _ = conn.stream.shutdown().await;
        },
    ));

    // Client glue: one call, the stream and who is on the other end.
    let client_tls = ClientTls::builder(ServerAuth::Spiffe(
        client_pod.spiffe_bundles().clone(),
        Authorizer::exact(podtls::parse_spiffe_id(support::SERVER_ID).expect("ID")),
    ))
    .client_credentials(client_pod.credentials().expect("credentials").clone())
    .build()
    .expect("client TLS");

    let rotation = kubelet.rotate_every(Duration::from_secs(1));
    let (mut ok, mut failed, mut serials) = (0, 0, BTreeSet::new());
    let end = Instant::now() + support::seconds();
    while Instant::now() < end {
        match podtls::connect_tcp(&client_tls, addr, "server.demo.svc").await {
            Ok((mut stream, server_id)) => {
                let mut serial = String::new();
                let read = stream.read_to_string(&mut serial).await;
                let expected = server_id.spiffe_id().map(|id| id.to_string());
                if read.is_ok() && expected.as_deref() == Some(support::SERVER_ID) {
                    ok += 1;
                    serials.insert(serial);
                } else {
                    eprintln!("{read:?} from {expected:?}");
                    failed += 1;
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rotation.abort();
    let _ = stop.send(());
    server.await.expect("server");
    support::report("tcp", ok, failed, serials.len());
}
