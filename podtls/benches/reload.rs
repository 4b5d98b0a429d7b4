//! Reload latency: from kubelet's `..data` switch to the first handshake
//! presenting the new serial, over many rotations through the atomic writer.
//!
//! Run: `cargo bench -p podtls --bench reload` (ROTATIONS=200 by default).
//!
//! The clock starts right before the `..data_tmp` symlink is created and
//! renamed over `..data`; a handshake loop then runs until a handshake
//! presents the new certificate. Reported: time until the store published
//! the new material, and until the first handshake showed it.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podtls::test_util::{AtomicWriter, CertAuthority, LeafSpec};
use podtls::{
    reload::ReloadTiming, ClientTls, Origin, PodTls, ServerAuth, ServerTls, Store, TrustBundle,
};

fn main() {
    let rotations: usize = std::env::var("ROTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ca = CertAuthority::new("bench ca");
    let tmp = tempfile::tempdir().unwrap();
    let writer = AtomicWriter::new(tmp.path().join("creds")).unwrap();
    let spec = LeafSpec::dns(&["echo.demo.svc"]);
    let payload =
        |pem: String| BTreeMap::from([("credentialbundle.pem".to_string(), pem.into_bytes())]);
    let certs: Vec<_> = (0..=rotations).map(|_| ca.issue(&spec)).collect();
    writer.write(&payload(certs[0].bundle_pem())).unwrap();

    let pod = PodTls::builder()
        .credential_bundle(writer.path("credentialbundle.pem"))
        .timing(ReloadTiming {
            // Events only: the periodic re-read must not be what finds changes.
            poll_interval: Duration::from_secs(3600),
            ..ReloadTiming::default()
        })
        .start()
        .unwrap();
    let creds = pod.credentials().unwrap().clone();
    let server = ServerTls::builder(creds.clone())
        .resumption(false)
        .build()
        .unwrap();
    let roots = Store::fixed(
        "roots",
        TrustBundle::from_pem(ca.cert_pem().as_bytes(), &Origin::memory("ca")).unwrap(),
    );
    let client = ClientTls::builder(ServerAuth::Dns(roots))
        .resumption(false)
        .build()
        .unwrap()
        .config()
        .clone();
    let server_cfg: Arc<_> = server.config().clone();

    let mut to_store = Vec::with_capacity(rotations);
    let mut to_handshake = Vec::with_capacity(rotations);
    for cert in certs.iter().skip(1) {
        let gen = creds.generation();
        let mut t0 = None;
        writer
            .write_with(&payload(cert.bundle_pem()), |_| {
                t0 = Some(Instant::now());
                Ok(())
            })
            .unwrap();
        let t0 = t0.unwrap();
        let want = cert.leaf_der.to_vec();
        let deadline = t0 + Duration::from_secs(5);
        let mut stored = None;
        loop {
            if stored.is_none() && creds.generation() != gen {
                stored = Some(t0.elapsed());
            }
            let seen = common::handshake(&server_cfg, &client, "echo.demo.svc").unwrap();
            if seen == want {
                to_handshake.push(t0.elapsed().as_secs_f64() * 1e3);
                to_store.push(stored.unwrap_or_else(|| t0.elapsed()).as_secs_f64() * 1e3);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "rotation not picked up within 5 s"
            );
        }
    }
    for v in [&mut to_store, &mut to_handshake] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!(
        "Reload latency over {rotations} rotations through the kubelet-style atomic writer (ms)"
    );
    println!("| measured until | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    for (name, v) in [
        ("store published new material", &to_store),
        ("first handshake presenting the new serial", &to_handshake),
    ] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} |",
            common::percentile(v, 0.5),
            common::percentile(v, 0.99),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
}
