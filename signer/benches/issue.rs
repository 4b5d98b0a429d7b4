//! Certificates issued per second by the pure issuer, per CA key type.
//!
//! Requester key: ECDSA P-256, both key sources (PKIX + proof of possession, stub
//! PKCS#10). Each iteration is one full `issue` call: key verification, identity,
//! signing, and the post-issuance self-check. Run: `cargo bench -p signer --bench issue`.
//! Throughput is reported as elements (certificates) per second on one core.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use signer::test_util::RequesterKey;
use signer::{
    generate_ca, issue, parse_trust_domain, IssuanceRequest, KeyType, SignerConfig,
    DEFAULT_CA_VALIDITY, SPIFFE_SIGNER_NAME,
};

const POD_UID: &str = "6f1c2b4e-8d0a-4e57-9a3b-2c1d0e9f8a7b";

fn bench_issue(c: &mut Criterion) {
    let now = SystemTime::now();
    let config = SignerConfig::spiffe(parse_trust_domain("cluster.local").expect("td"));
    let key = RequesterKey::generate(KeyType::EcdsaP256);
    let mut group = c.benchmark_group("issue");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for ca_type in [KeyType::Ed25519, KeyType::EcdsaP256] {
        let ca = generate_ca("bench", ca_type, now, DEFAULT_CA_VALIDITY).expect("CA");
        for (source, material) in [
            ("pkix", key.pkix_material(POD_UID)),
            ("csr", key.csr_material()),
        ] {
            let request = IssuanceRequest {
                namespace: "bench".into(),
                name: "pcr".into(),
                signer_name: SPIFFE_SIGNER_NAME.into(),
                pod_name: "pod".into(),
                pod_uid: POD_UID.into(),
                service_account_name: "sa".into(),
                service_account_uid: "sa-uid".into(),
                node_name: "node".into(),
                node_uid: "node-uid".into(),
                max_expiration_seconds: Some(86_400),
                key_material: material,
                unverified_user_annotations: Default::default(),
            };
            let snapshot = signer::test_util::entitled_snapshot(&request, &[]);
            group.bench_with_input(
                BenchmarkId::new(
                    format!("ca-{ca_type}"),
                    format!("requester-ECDSAP256-{source}"),
                ),
                &request,
                |b, request| {
                    b.iter(|| {
                        let issued = issue(black_box(request), &config, &ca, &snapshot, now);
                        black_box(issued.is_ok())
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_issue);
criterion_main!(benches);
