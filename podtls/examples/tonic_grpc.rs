//! A tonic gRPC server and client, both through podtls, with the verified
//! client in the handler, while certificates rotate every second.
//!
//! Usage: `cargo run -p podtls --features tonic,test-util --example tonic_grpc [SECONDS]`
//!
//! The glue: the server's `Routes` served by `http::serve_service` (ALPN
//! `h2`), `podtls::tonic::verified_peer` in the handler, and a `Channel`
//! made with `Endpoint::connect_with_connector(HttpsConnector)`. The URI is
//! `http://` with `tls_for_http_uris()`, which works whether or not some
//! crate in the build enables a tonic TLS feature (the connection is TLS
//! either way). Exits non-zero if a call failed or the server never saw a
//! rotated client certificate.

#[path = "support/mod.rs"]
mod support;
#[path = "support/whoami_grpc.rs"]
mod whoami_grpc;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use podtls::http::{serve_service, HttpOptions, HttpsConnector};
use podtls::{Authorizer, ClientAuth, ClientTls, ServeOptions, ServerAuth, ServerTls};
use tonic::transport::Endpoint;

#[tokio::main]
async fn main() {
    let kubelet = support::Kubelet::new();
    let (server_pod, client_pod) = kubelet.pods().await;

    // Server glue: tonic's Routes through podtls' accept loop.
    let tls = ServerTls::builder(server_pod.credentials().expect("credentials").clone())
        .client_auth(ClientAuth::required(
            server_pod.spiffe_bundles().clone(),
            Authorizer::member_of([support::td()]),
        ))
        .alpn(&[b"h2"])
        .build()
        .expect("server TLS");
    let routes = tonic::service::Routes::new(whoami_grpc::WhoAmIServer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // A gRPC channel is one long-lived HTTP/2 connection: a maximum
    // connection age makes it reconnect, and so pick up rotations (here
    // every 2 s; the default is an hour).
    let options = HttpOptions {
        serve: ServeOptions {
            max_connection_age: Duration::from_secs(2),
            ..ServeOptions::default()
        },
        ..HttpOptions::default()
    };
    let server = tokio::spawn(serve_service(
        listener,
        tls,
        options,
        async move {
            let _ = stopped.await;
        },
        routes,
    ));

    // Client glue: a Channel over podtls' connector.
    let client_tls = ClientTls::builder(ServerAuth::Spiffe(
        client_pod.spiffe_bundles().clone(),
        Authorizer::exact(podtls::parse_spiffe_id(support::SERVER_ID).expect("ID")),
    ))
    .client_credentials(client_pod.credentials().expect("credentials").clone())
    .alpn(&[b"h2"])
    .build()
    .expect("client TLS");
    let connector =
        HttpsConnector::new(client_tls)
            .tls_for_http_uris()
            .resolve("whoami.demo.svc", 8443, addr);
    let channel = Endpoint::from_static("http://whoami.demo.svc:8443")
        .connect_with_connector(connector)
        .await
        .expect("channel");

    let rotation = kubelet.rotate_every(Duration::from_secs(1));
    let (mut ok, mut failed, mut serials) = (0, 0, BTreeSet::new());
    let end = Instant::now() + support::seconds();
    while Instant::now() < end {
        let mut reply = whoami_grpc::ask(channel.clone(), "hello").await;
        // hyper's HTTP/2 client (tonic's) fails a call that races a
        // connection's graceful close without sending it
        // (hyperium/hyper#2500): such a call is safe to send again.
        if reply
            .as_ref()
            .is_err_and(|status| podtls::http::never_sent(status))
        {
            reply = whoami_grpc::ask(channel.clone(), "hello").await;
        }
        match reply {
            Ok(reply) if reply.client_id == support::CLIENT_ID => {
                ok += 1;
                serials.insert(reply.client_serial);
            }
            other => {
                eprintln!("{other:?}");
                failed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rotation.abort();
    let _ = stop.send(());
    server.await.expect("server");
    support::report("tonic", ok, failed, serials.len());
}
