//! Generates the seed corpora in `fuzz/seeds/<target>/` with the crates' own
//! test utilities (`podtls::test_util`, `signer::test_util`).
//!
//! Usage (stable toolchain, from the repository root):
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds [OUT_DIR]
//! ```
//!
//! `OUT_DIR` defaults to `fuzz/seeds`; each target's directory is replaced.
//! Keys are fresh on every run, so the files change; the checked-in seeds are
//! one such run. Leaves are valid 2025-01-01..2045-01-01, around the fixed
//! `now` (2030-01-01) of the `credentials` target.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podtls::test_util::{CertAuthority, Issued, KeyType, LeafSpec};
use rcgen::KeyUsagePurpose;
use signer::test_util::RequesterKey;
use signer::{generate_ca, CaPool, KeyType as SignerKeyType, DEFAULT_CA_VALIDITY};

/// 2025-01-01T00:00:00Z.
const NOT_BEFORE: u64 = 1_735_689_600;
/// 2045-01-01T00:00:00Z.
const NOT_AFTER: u64 = 2_366_841_600;
/// The pod UID the proof-of-possession seeds sign.
const POD_UID: &str = "0b6c7c9e-1c1e-4c52-9d7e-4a1f2f0c7f10";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn leaf(spec: LeafSpec) -> LeafSpec {
    spec.validity(at(NOT_BEFORE), at(NOT_AFTER))
}

struct Out {
    dir: PathBuf,
}

impl Out {
    fn new(root: &Path, target: &str) -> Out {
        let dir = root.join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove old seeds");
        }
        std::fs::create_dir_all(&dir).expect("create seed dir");
        Out { dir }
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(self.dir.join(name), bytes).expect("write seed");
    }
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));

    let ca = CertAuthority::new("fuzz root");
    let ed_ca = CertAuthority::with_key("fuzz ed25519 root", KeyType::Ed25519);
    let inter = ca.intermediate("fuzz intermediate");
    let web = "spiffe://cluster.local/ns/default/sa/web";

    credentials(&root, &ca, &inter, web);
    trust_bundle(&root, &ca, &ed_ca, &inter);
    spiffe_id(&root);
    svid_leaf(&root, &ca, &ed_ca, web);
    ca_pool(&root, &inter);
    requested_key(&root);
    identity_extensions(&root);
    eprintln!("seeds written to {}", root.display());
}

/// Flags byte (bit 0: require an SVID, bit 1: separate key and chain), then PEM.
fn credentials(root: &Path, ca: &CertAuthority, inter: &CertAuthority, web: &str) {
    let out = Out::new(root, "credentials");
    let bundle = |flags: u8, issued: &Issued| {
        let mut v = vec![flags];
        v.extend_from_slice(issued.bundle_pem().as_bytes());
        v
    };
    let split = |flags: u8, key: &Issued, chain: &Issued| {
        let mut v = vec![flags];
        v.extend_from_slice(key.key_pem.as_bytes());
        v.push(0);
        v.extend_from_slice(chain.chain_pem.as_bytes());
        v
    };
    let svid = ca.issue(&leaf(LeafSpec::spiffe(web)));
    out.write("bundle-any-p256-svid", bundle(0, &svid));
    out.write("bundle-svid-p256", bundle(1, &svid));
    let dns = inter.issue(&leaf(
        LeafSpec::dns(&["web.default.svc"]).key(KeyType::Ed25519),
    ));
    out.write("split-any-ed25519-dns-intermediate", split(2, &dns, &dns));
    let p384 = inter.issue(&leaf(LeafSpec::spiffe(web).key(KeyType::EcdsaP384)));
    out.write("split-svid-p384-intermediate", split(3, &p384, &p384));
    out.write("split-any-key-mismatch", split(2, &svid, &p384));
    let two_uris = ca.issue(&leaf(
        LeafSpec::spiffe(web).uri("spiffe://cluster.local/ns/default/sa/db"),
    ));
    out.write("bundle-svid-two-uri-sans", bundle(1, &two_uris));
}

/// PEM text of CA certificates.
fn trust_bundle(root: &Path, ca: &CertAuthority, ed_ca: &CertAuthority, inter: &CertAuthority) {
    let out = Out::new(root, "trust_bundle");
    out.write("one-p256-root", ca.cert_pem());
    out.write(
        "ed25519-root-and-intermediate",
        format!("{}{}", ed_ca.cert_pem(), inter.cert_pem()),
    );
    out.write(
        "duplicate-root",
        format!("{}{}", ca.cert_pem(), ca.cert_pem()),
    );
}

/// UTF-8 text.
fn spiffe_id(root: &Path) {
    let out = Out::new(root, "spiffe_id");
    for (name, text) in [
        ("workload", "spiffe://example.org/ns/default/sa/web"),
        ("trust-domain-only-id", "spiffe://cluster.local"),
        ("bare-trust-domain", "k8s-west.example.com"),
        ("spec-chars", "spiffe://a_b.c-d/A.b-C_0/x"),
        ("dots-in-segments", "spiffe://example.org/..a/b.."),
        ("uppercase-trust-domain", "spiffe://Example.org/path"),
        ("percent-encoded", "spiffe://example.org/pa%20th"),
    ] {
        out.write(name, text);
    }
}

/// DER leaf certificates.
fn svid_leaf(root: &Path, ca: &CertAuthority, ed_ca: &CertAuthority, web: &str) {
    let out = Out::new(root, "svid_leaf");
    let der = |spec: LeafSpec| ca.issue(&leaf(spec)).leaf_der.to_vec();
    out.write("valid-p256", der(LeafSpec::spiffe(web)));
    out.write(
        "valid-ed25519",
        ed_ca
            .issue(&leaf(LeafSpec::spiffe(web).key(KeyType::Ed25519)))
            .leaf_der
            .to_vec(),
    );
    out.write(
        "two-uri-sans",
        der(LeafSpec::spiffe(web).uri("spiffe://cluster.local/x")),
    );
    out.write("no-path", der(LeafSpec::spiffe("spiffe://cluster.local")));
    out.write("dns-only", der(LeafSpec::dns(&["web.default.svc"])));
    let mut is_ca = LeafSpec::spiffe(web);
    is_ca.is_ca = true;
    out.write("is-ca", der(is_ca));
    let mut cert_sign = LeafSpec::spiffe(web);
    cert_sign.key_usages = Some(vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ]);
    out.write("key-cert-sign", der(cert_sign));
}

/// meshtool CA pool JSON.
fn ca_pool(root: &Path, inter: &CertAuthority) {
    let out = Out::new(root, "ca_pool");
    let now = at(NOT_BEFORE);
    let ca = |id: &str, key_type| generate_ca(id, key_type, now, DEFAULT_CA_VALIDITY).expect("CA");

    let single = CaPool::single(ca("1", SignerKeyType::EcdsaP256)).to_json();
    out.write("single-p256", &single);
    out.write(
        "single-ed25519",
        CaPool::single(ca("ed", SignerKeyType::Ed25519)).to_json(),
    );

    let mut rotating = CaPool::single(ca("1", SignerKeyType::EcdsaP256));
    rotating
        .add_ca(ca("2", SignerKeyType::EcdsaP384), now)
        .expect("add CA");
    rotating.promote("2", now).expect("promote");
    out.write("two-cas-second-signs", rotating.to_json());

    // The original meshtool wrote no ActiveForSigning (CAs[0] signs).
    let text = String::from_utf8(single).expect("JSON is UTF-8");
    out.write(
        "meshtool-without-active",
        text.replace(r#","ActiveForSigning":"1""#, ""),
    );
    // Intermediates are not produced by generate_ca: splice one in.
    let inter_b64: String = inter
        .cert_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    out.write(
        "with-intermediate",
        text.replace(
            r#""IntermediateCertificatesDER":null"#,
            &format!(r#""IntermediateCertificatesDER":["{inter_b64}"]"#),
        ),
    );
}

/// Allowed-types byte (0 = all), then length-prefixed (u16 BE) fields: pod UID,
/// pkixPublicKey, proofOfPossession, stubPKCS10Request.
fn requested_key(root: &Path) {
    let out = Out::new(root, "requested_key");
    let frame = |fields: [&[u8]; 4]| {
        let mut v = vec![0u8];
        for f in fields {
            let len = u16::try_from(f.len()).expect("field fits u16");
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(f);
        }
        v
    };
    for (name, key_type) in [
        ("p256", SignerKeyType::EcdsaP256),
        ("p384", SignerKeyType::EcdsaP384),
        ("p521", SignerKeyType::EcdsaP521),
        ("ed25519", SignerKeyType::Ed25519),
        ("rsa3072", SignerKeyType::Rsa3072),
    ] {
        let key = RequesterKey::generate(key_type);
        let pop = key.proof_of_possession(POD_UID);
        out.write(
            &format!("pkix-{name}"),
            frame([POD_UID.as_bytes(), key.spki_der(), &pop, b""]),
        );
        out.write(
            &format!("csr-{name}"),
            frame([POD_UID.as_bytes(), b"", b"", &key.stub_csr()]),
        );
    }
}

/// Raw extension values: PodIdentity DER and Subject Information Access DER.
fn identity_extensions(root: &Path) {
    let out = Out::new(root, "identity_extensions");
    let pod = podtls::PodIdentity {
        namespace: "default".into(),
        service_account_name: "web".into(),
        service_account_uid: "5f0c3b9e-4c6e-4f43-8a51-1f5a2c9d0e11".into(),
        pod_name: "web-0".into(),
        pod_uid: POD_UID.into(),
        node_name: "node-1".into(),
        node_uid: "9a1d2e3f-0b4c-4d5e-8f60-7a8b9c0d1e2f".into(),
    };
    let der = pod.to_der().expect("PodIdentity DER");
    out.write("pod-identity", &der);
    let mut eight = der.clone();
    eight.extend_from_slice(&[0x0c, 0x01, b'x']);
    // The SEQUENCE's length: long form (0x81 n) for this body of 128..=255 bytes.
    let len_at = if eight[1] == 0x81 { 2 } else { 1 };
    eight[len_at] += 3;
    out.write("pod-identity-eight-fields", eight);
    let issuer = podtls::IssuingCluster::new("https://kubernetes.default.svc.cluster.local")
        .expect("issuer");
    out.write("sia-issuer", issuer.to_sia_der().expect("SIA DER"));
}
