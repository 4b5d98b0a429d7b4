//! The cost of many trust domains on the handshake's verification path: one
//! peer verified ([`verify_spiffe_peer`]) and the set's generation read (done
//! once per connection for the session cache), with 1 and with 50 trust
//! domains in the set, interleaved round by round.
//!
//! ```sh
//! cargo bench -p podtls --bench trust_domains     # ROUNDS=20 PER_ROUND=2000
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use podtls::test_util::{CertAuthority, LeafSpec};
use podtls::{
    parse_trust_domain, verification::verify_spiffe_peer, verification::PeerRole, Authorizer,
    Origin, SpiffeBundles, Store, TrustBundle,
};
use rustls::pki_types::UnixTime;

fn set(cas: &[(String, CertAuthority)]) -> SpiffeBundles {
    SpiffeBundles::new(cas.iter().map(|(td, ca)| {
        (
            parse_trust_domain(td).unwrap(),
            Store::fixed(
                td.as_str(),
                TrustBundle::from_pem(ca.cert_pem().as_bytes(), &Origin::memory("ca")).unwrap(),
            ),
        )
    }))
}

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (rounds, per_round) = (env("ROUNDS", 20), env("PER_ROUND", 2000));
    let cas: Vec<(String, CertAuthority)> = (0..50)
        .map(|i| {
            let td = format!("td{i:02}.example");
            let ca = CertAuthority::new(&td);
            (td, ca)
        })
        .collect();
    // The peer is in the trust domain sorted in the middle of the 50.
    let (peer_td, peer_ca) = &cas[25];
    let peer = peer_ca.issue(&LeafSpec::spiffe(&format!("spiffe://{peer_td}/ns/a/sa/b")));
    let one = set(&cas[25..26]);
    let fifty = set(&cas);
    let authorizer = Authorizer::any();
    let leaf = peer.chain_der[0].clone();
    let run = |bundles: &SpiffeBundles| {
        let start = Instant::now();
        for _ in 0..per_round {
            black_box(bundles.generation());
            verify_spiffe_peer(
                black_box(&leaf),
                &[],
                bundles,
                &authorizer,
                PeerRole::Client,
                UnixTime::now(),
            )
            .unwrap();
        }
        start.elapsed()
    };
    let (mut t1, mut t50) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let a = run(&one);
        let b = run(&fifty);
        t1 += a;
        t50 += b;
        ratios.push(b.as_secs_f64() / a.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let n = (rounds * per_round) as f64;
    println!("verifications: {rounds} rounds x {per_round}, interleaved");
    println!(
        "  1 trust domain   {:>8.0} /s  ({:.2} us each)",
        n / t1.as_secs_f64(),
        t1.as_secs_f64() * 1e6 / n
    );
    println!(
        "  50 trust domains {:>8.0} /s  ({:.2} us each)",
        n / t50.as_secs_f64(),
        t50.as_secs_f64() * 1e6 / n
    );
    println!(
        "  time ratio 50 / 1: {:.3} total, {:.3} median of rounds",
        t50.as_secs_f64() / t1.as_secs_f64(),
        ratios[ratios.len() / 2]
    );
}
