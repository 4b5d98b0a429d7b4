use std::time::SystemTime;

use super::*;
use crate::{generate_ca, parse_trust_domain, KeyType};

fn td(s: &str) -> TrustDomain {
    parse_trust_domain(s).unwrap()
}

fn ca_der(key_type: KeyType) -> Vec<u8> {
    generate_ca(
        "t",
        key_type,
        SystemTime::now(),
        Duration::from_secs(86_400),
    )
    .unwrap()
    .root_der()
    .to_vec()
}

/// A P-256 certificate with the URI SAN `uri`; a CA unless `leaf`.
fn cert_with_uri(uri: &str, leaf: bool) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(uri).unwrap(),
    )];
    params.is_ca = if leaf {
        rcgen::IsCa::ExplicitNoCa
    } else {
        rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
    };
    params.self_signed(&key).unwrap().der().to_vec()
}

fn doc(keys: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"keys": keys, "spiffe_sequence": 4})).unwrap()
}

/// The rendered key of `der`, as a JSON object to tamper with.
fn key_of(der: &[u8]) -> Value {
    let rendered: Value = serde_json::from_str(&render(&[der], None, None).unwrap()).unwrap();
    rendered["keys"][0].clone()
}

#[test]
fn round_trips_every_ca_key_type_with_sequence_and_refresh_hint() {
    let ders: Vec<Vec<u8>> = KeyType::ALL.iter().map(|k| ca_der(*k)).collect();
    let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
    let text = render(&refs, Some(7), Some(Duration::from_secs(300))).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["spiffe_sequence"], 7);
    assert_eq!(value["spiffe_refresh_hint"], 300);
    let ktys: Vec<&str> = value["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kty"].as_str().unwrap())
        .collect();
    assert_eq!(ktys, ["RSA", "RSA", "EC", "EC", "EC", "OKP"]);
    for key in value["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "x509-svid");
        assert_eq!(key["x5c"].as_array().unwrap().len(), 1);
    }
    let parsed = parse(text.as_bytes(), &td("a.example")).unwrap();
    assert_eq!(parsed.x509_authorities, ders);
    assert_eq!(parsed.sequence, Some(7));
    assert_eq!(parsed.refresh_hint, Some(Duration::from_secs(300)));
}

#[test]
fn writes_a_repeated_authority_once_and_omits_absent_fields() {
    let der = ca_der(KeyType::EcdsaP256);
    let text = render(&[&der, &der], None, None).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["keys"].as_array().unwrap().len(), 1);
    assert!(value.get("spiffe_sequence").is_none());
    assert!(value.get("spiffe_refresh_hint").is_none());
}

#[test]
fn parses_a_spire_format_bundle_ignoring_jwt_svid_and_unknown_keys() {
    // SPIRE's bundle endpoint: x509-svid keys with EC parameters and x5c, jwt-svid keys
    // with kid and no x5c, sequence and refresh hint.
    let ca = cert_with_uri("spiffe://spire.example", false);
    let mut x509 = key_of(&ca);
    x509["use"] = json!("x509-svid");
    let bytes = serde_json::to_vec(&json!({
        "keys": [
            x509,
            {"use": "jwt-svid", "kty": "EC", "kid": "hTpVDfmyJmHE6Y1rBzzLUdnxTLHGHdB9",
             "crv": "P-256", "x": "aaaa", "y": "bbbb"},
            {"use": "something-new", "kty": "whatever"},
        ],
        "spiffe_sequence": 12,
        "spiffe_refresh_hint": 300,
    }))
    .unwrap();
    let parsed = parse(&bytes, &td("spire.example")).unwrap();
    assert_eq!(parsed.x509_authorities, vec![ca]);
    assert_eq!(parsed.sequence, Some(12));
    assert_eq!(parsed.refresh_hint, Some(Duration::from_secs(300)));
}

#[test]
fn an_empty_key_set_parses_to_no_authorities() {
    let parsed = parse(br#"{"keys": []}"#, &td("a.example")).unwrap();
    assert!(parsed.x509_authorities.is_empty());
    assert_eq!(parsed.sequence, None);
}

#[test]
fn refuses_a_bundle_whose_ca_names_another_trust_domain() {
    let foreign = cert_with_uri("spiffe://evil.example", false);
    let err = parse(&doc(json!([key_of(&foreign)])), &td("a.example")).unwrap_err();
    assert_eq!(
        err,
        BundleDocumentError::ForeignTrustDomain {
            index: 0,
            found: "evil.example".into(),
            expected: "a.example".into()
        }
    );
    let own = cert_with_uri("spiffe://a.example", false);
    parse(&doc(json!([key_of(&own)])), &td("a.example")).unwrap();
}

#[test]
fn refuses_malformed_keys_naming_the_index_and_the_problem() {
    let ca = ca_der(KeyType::EcdsaP256);
    let other = ca_der(KeyType::EcdsaP256);
    let good = key_of(&ca);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut k = good.clone();
        f(&mut k);
        doc(json!([good.clone(), k]))
    };
    let b64 = |d: &[u8]| STANDARD.encode(d);
    let leaf = cert_with_uri("spiffe://a.example/w", true);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            with(&|k| {
                k["x5c"] = json!([b64(&ca), b64(&other)]);
            }),
            "exactly one x5c element, this one has 2",
        ),
        (with(&|k| k["x5c"] = json!([])), "this one has 0"),
        (
            with(&|k| {
                k.as_object_mut().unwrap().remove("x5c");
            }),
            "has no x5c",
        ),
        (with(&|k| k["x5c"] = json!(["%%%"])), "not standard base64"),
        (
            with(&|k| k["x5c"] = json!([b64(b"not a cert")])),
            "not a DER certificate",
        ),
        (
            with(&|k| {
                *k = key_of(&leaf);
            }),
            "not a CA certificate",
        ),
        (with(&|k| k["kty"] = json!("RSA")), "kty is \"RSA\""),
        (
            with(&|k| {
                k.as_object_mut().unwrap().remove("kty");
            }),
            "kty is missing",
        ),
        (
            with(&|k| k["x"] = key_of(&other)["x"].clone()),
            "x does not match",
        ),
        (
            with(&|k| {
                k.as_object_mut().unwrap().remove("use");
            }),
            "use is missing",
        ),
        (with(&|k| *k = json!("x")), "not an object"),
    ];
    for (bytes, want) in cases {
        let err = parse(&bytes, &td("a.example")).unwrap_err();
        assert!(
            matches!(err, BundleDocumentError::Key { index: 1, .. }),
            "{want}: {err}"
        );
        assert!(err.to_string().contains(want), "{want}: {err}");
        assert!(err.to_string().contains("keys[1]"), "{err}");
    }
}

#[test]
fn refuses_bad_documents_naming_the_field() {
    let td = td("a.example");
    for (bytes, want) in [
        (&b"not json"[..], "not a JSON object"),
        (b"[1]", "top level is not an object"),
        (b"{}", "field keys: missing"),
        (br#"{"keys": {}}"#, "field keys: not an array"),
        (br#"{"keys": [], "spiffe_sequence": -1}"#, "spiffe_sequence"),
        (
            br#"{"keys": [], "spiffe_sequence": 1.5}"#,
            "spiffe_sequence",
        ),
        (
            br#"{"keys": [], "spiffe_sequence": "1"}"#,
            "spiffe_sequence",
        ),
        (
            br#"{"keys": [], "spiffe_refresh_hint": 0}"#,
            "spiffe_refresh_hint",
        ),
    ] {
        let err = parse(bytes, &td).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
    let many = serde_json::to_vec(&json!({"keys": vec![json!({"use": "jwt-svid"}); MAX_KEYS + 1]}))
        .unwrap();
    assert_eq!(
        parse(&many, &td).unwrap_err(),
        BundleDocumentError::TooManyKeys {
            count: MAX_KEYS + 1
        }
    );
}
