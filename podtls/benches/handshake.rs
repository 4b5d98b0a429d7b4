//! Full mTLS handshakes per second through podtls' resolver and verifiers
//! versus a plain static rustls configuration with the same certificates;
//! then podtls' own handshake path (`ServerTls::accept` +
//! `ClientTls::connect` over an in-memory tokio duplex), full and resumed
//! (with the resumed peer verified again), against tokio-rustls with the
//! same static configurations, full and resumed.
//!
//! Run: `cargo bench -p podtls --bench handshake`
//!
//! Baseline and podtls variants are interleaved round by round so machine
//! noise hits all of them alike; ratios are podtls rate / baseline rate.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use podtls::test_util::{CertAuthority, Issued, LeafSpec};
use podtls::{
    parse_trust_domain, Authorizer, ClientAuth, ClientTls, Credentials, LeafKind, Origin,
    ServerAuth, ServerTls, SpiffeBundles, Store, TrustBundle,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAME: &str = "echo.demo.svc";

fn leaf(ca: &CertAuthority, id: &str) -> Issued {
    ca.issue(&LeafSpec::spiffe(id).dns_name(NAME))
}

fn creds(i: &Issued) -> Store<Credentials> {
    Store::fixed(
        "bench",
        Credentials::from_bundle_pem(
            i.bundle_pem().as_bytes(),
            &Origin::memory("bench"),
            LeafKind::Any,
            SystemTime::now(),
        )
        .unwrap(),
    )
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let per_round: usize = std::env::var("PER_ROUND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let ca = CertAuthority::new("bench ca");
    let server = leaf(&ca, "spiffe://cluster.local/ns/s/sa/server");
    let client = leaf(&ca, "spiffe://cluster.local/ns/c/sa/client");
    let provider = podtls::provider();

    // Baseline: static rustls, WebPKI both ways, same certificates.
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let roots = Arc::new(roots);
    let key = |i: &Issued| PrivateKeyDer::try_from(i.key_der.clone()).unwrap();
    let mut base_server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .unwrap(),
        )
        .with_single_cert(server.chain_der.clone(), key(&server))
        .unwrap();
    base_server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    base_server.send_tls13_tickets = 0;
    let mut base_client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(client.chain_der.clone(), key(&client))
        .unwrap();
    base_client.resumption = rustls::client::Resumption::disabled();
    let base = (Arc::new(base_server), Arc::new(base_client));
    let mut resuming_server = (*base.0).clone();
    resuming_server.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    resuming_server.send_tls13_tickets = 2;
    let mut resuming_client = (*base.1).clone();
    resuming_client.resumption = rustls::client::Resumption::in_memory_sessions(1024);
    let resuming = (Arc::new(resuming_server), Arc::new(resuming_client));

    // podtls: live stores, SPIFFE client auth on the server.
    let td = parse_trust_domain("cluster.local").unwrap();
    let bundle = Store::fixed(
        "bundle",
        TrustBundle::from_pem(ca.cert_pem().as_bytes(), &Origin::memory("ca")).unwrap(),
    );
    let bundles = SpiffeBundles::new([(td.clone(), bundle.clone())]);
    let pod_server_tls = |resumption: bool| {
        ServerTls::builder(creds(&server))
            .client_auth(ClientAuth::required(
                bundles.clone(),
                Authorizer::member_of([td.clone()]),
            ))
            .resumption(resumption)
            .build()
            .unwrap()
    };
    let pod_client_tls = |resumption: bool| {
        ClientTls::builder(ServerAuth::Spiffe(
            bundles.clone(),
            Authorizer::member_of([td.clone()]),
        ))
        .client_credentials(creds(&client))
        .resumption(resumption)
        .build()
        .unwrap()
    };
    let pod_server = pod_server_tls(false).config().clone();
    let spiffe_client = ClientTls::builder(ServerAuth::Spiffe(
        bundles.clone(),
        Authorizer::member_of([td.clone()]),
    ))
    .client_credentials(creds(&client))
    .resumption(false)
    .build()
    .unwrap()
    .config()
    .clone();
    let dns_client = ClientTls::builder(ServerAuth::Dns(bundle))
        .client_credentials(creds(&client))
        .resumption(false)
        .build()
        .unwrap()
        .config()
        .clone();

    let variants: Vec<(&str, Arc<ServerConfig>, Arc<ClientConfig>)> = vec![
        ("static rustls (baseline)", base.0.clone(), base.1.clone()),
        (
            "podtls: SPIFFE mTLS both ways",
            pod_server.clone(),
            spiffe_client,
        ),
        (
            "podtls: DNS server + SPIFFE client auth",
            pod_server,
            dns_client,
        ),
    ];
    for (name, s, c) in &variants {
        common::handshake(s, c, NAME).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let mut totals = vec![Duration::ZERO; variants.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        let mut this = vec![Duration::ZERO; variants.len()];
        for (i, (_, s, c)) in variants.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..per_round {
                common::handshake(s, c, NAME).unwrap();
            }
            this[i] = t.elapsed();
            totals[i] += this[i];
        }
        for i in 0..variants.len() {
            ratios[i].push(this[0].as_secs_f64() / this[i].as_secs_f64());
        }
    }
    let n = (rounds * per_round) as f64;
    println!(
        "Full mTLS handshakes (ECDSA P-256, TLS 1.3, in memory), {rounds} rounds x {per_round}"
    );
    println!("| variant | handshakes/s | ratio vs baseline (total) | ratio (median of rounds) |");
    println!("|---|---:|---:|---:|");
    for (i, (name, _, _)) in variants.iter().enumerate() {
        let rate = n / totals[i].as_secs_f64();
        let ratio = totals[0].as_secs_f64() / totals[i].as_secs_f64();
        let mut r = ratios[i].clone();
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {name} | {rate:.0} | {ratio:.3} | {:.3} |",
            common::percentile(&r, 0.5)
        );
    }

    // podtls' handshake path, full and resumed.
    let paths: Vec<(&str, Path)> = vec![
        (
            "tokio-rustls, static, full (baseline)",
            Path::Plain(base.clone()),
        ),
        ("tokio-rustls, static, resumed", Path::Plain(resuming)),
        (
            "podtls accept/connect, full",
            Path::Podtls(Box::new((pod_server_tls(false), pod_client_tls(false)))),
        ),
        (
            "podtls accept/connect, resumed + peer verified again",
            Path::Podtls(Box::new((pod_server_tls(true), pod_client_tls(true)))),
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut kinds = vec![String::new(); paths.len()];
    for (i, (name, p)) in paths.iter().enumerate() {
        rt.block_on(p.once())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        kinds[i] = rt.block_on(p.once()).unwrap();
    }
    let mut totals = vec![Duration::ZERO; paths.len()];
    for _ in 0..rounds {
        for (i, (_, p)) in paths.iter().enumerate() {
            let t = Instant::now();
            rt.block_on(async {
                for _ in 0..per_round {
                    p.once().await.unwrap();
                }
            });
            totals[i] += t.elapsed();
        }
    }
    let rate = |i: usize| n / totals[i].as_secs_f64();
    println!();
    println!(
        "mTLS connections through the async handshake path (tokio duplex, one byte each way), {rounds} rounds x {per_round}"
    );
    println!("| variant | handshake kind | handshakes/s | ratio |");
    println!("|---|---|---:|---:|");
    let ratio_of = [None, Some(0), Some(0), Some(1)];
    for (i, (name, _)) in paths.iter().enumerate() {
        let ratio = match ratio_of[i] {
            Some(b) => format!("{:.3} vs {}", rate(i) / rate(b), paths[b].0),
            None => "1".into(),
        };
        println!("| {name} | {} | {:.0} | {ratio} |", kinds[i], rate(i));
    }
    println!(
        "resumption buys (podtls resumed / podtls full): {:.2}x",
        rate(3) / rate(2)
    );
}

/// One way of making a connection.
enum Path {
    Plain((Arc<ServerConfig>, Arc<ClientConfig>)),
    /// Boxed: both sides together are much larger than the plain pair.
    Podtls(Box<(ServerTls, ClientTls)>),
}

impl Path {
    /// One connection: handshake, one byte each way (which delivers the
    /// session tickets); returns the client's handshake kind.
    async fn once(&self) -> Result<String, String> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from(NAME).unwrap();
        let e = |e: std::io::Error| e.to_string();
        let (mut s, mut c, kind) = match self {
            Path::Plain((sc, cc)) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(sc.clone());
                let connector = tokio_rustls::TlsConnector::from(cc.clone());
                let (s, c) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
                let (s, c) = (s.map_err(e)?, c.map_err(e)?);
                let kind = format!("{:?}", c.get_ref().1.handshake_kind());
                (
                    tokio_rustls::TlsStream::from(s),
                    tokio_rustls::TlsStream::from(c),
                    kind,
                )
            }
            Path::Podtls(pair) => {
                let (st, ct) = &**pair;
                let (s, c) = tokio::join!(st.accept(a), ct.connect(name, b));
                let (s, c) = (
                    s.map_err(|e| e.to_string())?.0,
                    c.map_err(|e| e.to_string())?,
                );
                let kind = format!("{:?}", c.get_ref().1.handshake_kind());
                (
                    tokio_rustls::TlsStream::from(s),
                    tokio_rustls::TlsStream::from(c),
                    kind,
                )
            }
        };
        let mut byte = [0u8; 1];
        s.write_all(b"x").await.map_err(e)?;
        s.flush().await.map_err(e)?;
        c.read_exact(&mut byte).await.map_err(e)?;
        c.write_all(b"y").await.map_err(e)?;
        c.flush().await.map_err(e)?;
        s.read_exact(&mut byte).await.map_err(e)?;
        Ok(kind.replace("Some(", "").replace(')', ""))
    }
}
