//! CA pool format, selection, rotation and every malformed-pool error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;

use super::*;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn gen(id: &str, key_type: KeyType) -> SigningCa {
    generate_ca(id, key_type, now(), DEFAULT_CA_VALIDITY).expect("generate CA")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A pool as Go's `encoding/json` writes meshtool's `localca.Pool` (no ActiveForSigning,
/// nil intermediates as `null`).
fn go_json(cas: &[&SigningCa]) -> Vec<u8> {
    let cas: Vec<_> = cas
        .iter()
        .map(|c| {
            json!({
                "ID": c.id(),
                "SigningKeyPKCS8": b64(c.signing_key_pkcs8()),
                "RootCertificateDER": b64(c.root_der()),
                "IntermediateCertificatesDER": null,
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "CAs": cas })).expect("json")
}

fn pool_error(bytes: &[u8]) -> Error {
    match CaPool::from_json(bytes) {
        Ok(p) => panic!("expected an error, got a pool of {}", p.cas().len()),
        Err(e) => e,
    }
}

#[test]
fn generates_cas_of_each_key_type_that_round_trip_through_json() {
    for key_type in [
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::EcdsaP521,
        KeyType::Rsa3072,
    ] {
        let ca = gen("1", key_type);
        assert_eq!(ca.key_type(), key_type);
        let pool = CaPool::single(ca);
        let back = CaPool::from_json(&pool.to_json()).expect("round trip");
        assert_eq!(back.signing_ca().id(), "1");
        assert_eq!(back.signing_ca().root_der(), pool.signing_ca().root_der());
        assert_eq!(
            back.signing_ca().signing_key_pkcs8(),
            pool.signing_ca().signing_key_pkcs8()
        );
    }
}

#[test]
fn generated_ed25519_key_is_pkcs8_v1_which_go_parses() {
    let ca = gen("1", KeyType::Ed25519);
    // PKCS#8 v1 Ed25519: SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING } = 48 bytes.
    assert_eq!(ca.signing_key_pkcs8().len(), 48);
    assert_eq!(
        &ca.signing_key_pkcs8()[..5],
        &[0x30, 0x2e, 0x02, 0x01, 0x00]
    );
}

#[test]
fn reads_the_original_go_format_and_signs_with_the_first_ca() {
    let a = gen("1", KeyType::Ed25519);
    let b = gen("2", KeyType::EcdsaP256);
    let pool = CaPool::from_json(&go_json(&[&a, &b])).expect("go pool");
    assert_eq!(pool.signing_ca().id(), "1");
    assert_eq!(pool.cas().len(), 2);
}

#[test]
fn writes_exactly_the_go_field_names_with_base64_bytes() {
    let pool = CaPool::single(gen("7", KeyType::Ed25519));
    let v: serde_json::Value = serde_json::from_slice(&pool.to_json()).expect("json");
    let ca = &v["CAs"][0];
    assert_eq!(ca["ID"], "7");
    assert!(ca["SigningKeyPKCS8"].is_string() && ca["RootCertificateDER"].is_string());
    assert!(ca["IntermediateCertificatesDER"].is_null());
    assert_eq!(v["ActiveForSigning"], "7");
    let der = base64::engine::general_purpose::STANDARD
        .decode(ca["RootCertificateDER"].as_str().unwrap_or_default())
        .expect("std base64");
    assert_eq!(der, pool.signing_ca().root_der());
}

#[test]
fn active_for_signing_selects_the_ca_and_is_written_first() {
    let a = gen("1", KeyType::Ed25519);
    let b = gen("2", KeyType::Ed25519);
    let mut v: serde_json::Value = serde_json::from_slice(&go_json(&[&a, &b])).expect("json");
    v["ActiveForSigning"] = json!("2");
    let pool = CaPool::from_json(&serde_json::to_vec(&v).expect("json")).expect("pool");
    assert_eq!(pool.signing_ca().id(), "2");
    let out: serde_json::Value = serde_json::from_slice(&pool.to_json()).expect("json");
    // Readers that only know CAs[0] (the original meshtool) agree on the signer.
    assert_eq!(out["CAs"][0]["ID"], "2");
    assert_eq!(out["ActiveForSigning"], "2");
}

#[test]
fn appended_ca_is_trusted_but_does_not_sign_until_promoted() {
    let mut pool = CaPool::single(gen("1", KeyType::Ed25519));
    pool.add_ca(gen("2", KeyType::EcdsaP256), now())
        .expect("append");
    assert_eq!(pool.signing_ca().id(), "1");
    let bundle = pool.trust_bundle_pem();
    assert_eq!(bundle.matches("-----BEGIN CERTIFICATE-----").count(), 2);

    let reread = CaPool::from_json(&pool.to_json()).expect("reread");
    assert_eq!(reread.signing_ca().id(), "1");

    pool.promote("2", now()).expect("promote");
    let reread = CaPool::from_json(&pool.to_json()).expect("reread");
    assert_eq!(reread.signing_ca().id(), "2");
    assert!(matches!(
        pool.promote("9", now()),
        Err(Error::NoSuchCa { .. })
    ));
}

#[test]
fn appending_a_ca_with_an_existing_id_is_refused() {
    let mut pool = CaPool::single(gen("1", KeyType::Ed25519));
    let err = pool.add_ca(gen("1", KeyType::Ed25519), now()).unwrap_err();
    assert!(
        matches!(err, Error::DuplicateCaId { ref ca_id } if ca_id == "1"),
        "{err}"
    );
}

#[test]
fn trust_bundle_deduplicates_identical_roots() {
    let a = gen("1", KeyType::Ed25519);
    let same_root = SigningCa::from_parts("1b", a.signing_key_pkcs8(), a.root_der(), vec![])
        .expect("same root under another ID");
    let mut pool = CaPool::single(a);
    pool.add_ca(same_root, now()).expect("append");
    assert_eq!(
        pool.trust_bundle_pem().matches("BEGIN CERTIFICATE").count(),
        1
    );
}

#[test]
fn malformed_json_is_a_pool_json_error() {
    assert!(matches!(
        pool_error(b"{\"CAs\": [}"),
        Error::PoolJson { .. }
    ));
    assert!(matches!(pool_error(b""), Error::PoolJson { .. }));
    assert!(matches!(
        pool_error(b"{\"CAs\": 5}"),
        Error::PoolJson { .. }
    ));
}

#[test]
fn empty_or_null_ca_list_is_an_empty_pool() {
    for text in [&b"{}"[..], b"{\"CAs\":null}", b"{\"CAs\":[]}"] {
        assert!(matches!(pool_error(text), Error::EmptyPool));
    }
}

#[test]
fn bad_base64_names_the_ca_and_the_field() {
    let a = gen("root-a", KeyType::Ed25519);
    let mut v: serde_json::Value = serde_json::from_slice(&go_json(&[&a])).expect("json");
    v["CAs"][0]["RootCertificateDER"] = json!("not base64 !!");
    let err = pool_error(&serde_json::to_vec(&v).expect("json"));
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::Base64 {
                field: "RootCertificateDER",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("root-a") && msg.contains("RootCertificateDER"),
        "{msg}"
    );
}

#[test]
fn missing_signing_key_names_the_ca_and_the_field() {
    let a = gen("k", KeyType::Ed25519);
    let mut v: serde_json::Value = serde_json::from_slice(&go_json(&[&a])).expect("json");
    v["CAs"][0]["SigningKeyPKCS8"] = json!(null);
    let err = pool_error(&serde_json::to_vec(&v).expect("json"));
    assert!(
        matches!(err, Error::MissingField { field: "SigningKeyPKCS8", ref ca_id } if ca_id == "k"),
        "{err}"
    );
}

#[test]
fn garbage_signing_key_is_a_signing_key_error() {
    let a = gen("k", KeyType::Ed25519);
    let mut v: serde_json::Value = serde_json::from_slice(&go_json(&[&a])).expect("json");
    v["CAs"][0]["SigningKeyPKCS8"] = json!(b64(b"\x30\x03\x02\x01\x00"));
    let err = pool_error(&serde_json::to_vec(&v).expect("json"));
    assert!(
        matches!(err, Error::SigningKey { ref ca_id, .. } if ca_id == "k"),
        "{err}"
    );
}

#[test]
fn garbage_root_certificate_is_a_certificate_error() {
    let a = gen("k", KeyType::Ed25519);
    let mut v: serde_json::Value = serde_json::from_slice(&go_json(&[&a])).expect("json");
    v["CAs"][0]["RootCertificateDER"] = json!(b64(b"\x30\x82\x01"));
    let err = pool_error(&serde_json::to_vec(&v).expect("json"));
    assert!(
        matches!(err, Error::Certificate { ref field, .. } if field == "RootCertificateDER"),
        "{err}"
    );
}

#[test]
fn key_of_another_ca_is_refused() {
    let a = gen("a", KeyType::Ed25519);
    let b = gen("b", KeyType::Ed25519);
    let err = SigningCa::from_parts("a", b.signing_key_pkcs8(), a.root_der(), vec![]).unwrap_err();
    assert!(
        matches!(err, Error::KeyDoesNotMatchRoot { ref ca_id } if ca_id == "a"),
        "{err}"
    );
}

#[test]
fn root_without_the_ca_bit_is_refused() {
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["x.example".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let err = SigningCa::from_parts("leaf", key.serialized_der(), leaf.der(), vec![]).unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");
}

#[test]
fn malformed_intermediate_is_named_by_index() {
    let a = gen("a", KeyType::Ed25519);
    let err = SigningCa::from_parts(
        "a",
        a.signing_key_pkcs8(),
        a.root_der(),
        vec![a.root_der().to_vec(), vec![1, 2, 3]],
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Certificate { ref field, .. } if field == "IntermediateCertificatesDER[1]"),
        "{err}"
    );
}

#[test]
fn active_for_signing_naming_no_ca_is_refused() {
    let a = gen("1", KeyType::Ed25519);
    let mut v: serde_json::Value = serde_json::from_slice(&go_json(&[&a])).expect("json");
    v["ActiveForSigning"] = json!("nope");
    let err = pool_error(&serde_json::to_vec(&v).expect("json"));
    assert!(
        matches!(err, Error::UnknownActiveCa { ref ca_id } if ca_id == "nope"),
        "{err}"
    );
}

#[test]
fn duplicate_ca_ids_are_refused() {
    let a = gen("1", KeyType::Ed25519);
    let err = pool_error(&go_json(&[&a, &a]));
    assert!(
        matches!(err, Error::DuplicateCaId { ref ca_id } if ca_id == "1"),
        "{err}"
    );
}
