//! The signer's requested-key checks: `KeyMaterial::from_spec_fields` then
//! `RequestedKey::verify` (PKIX public key + proof of possession, or a stub
//! PKCS#10 request).
//!
//! Input framing: one byte of allowed key types (bit i = `KeyType::ALL[i]`,
//! 0 = all), then four fields, each a big-endian u16 length and that many
//! bytes (truncated at the end of the input): pod UID, `pkixPublicKey`,
//! `proofOfPossession`, `stubPKCS10Request`. An accepted key is of an allowed
//! type, and a PKIX key is returned exactly as sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signer::{KeyMaterial, KeyType, RequestedKey};

fn field<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let len = match data {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => 0,
    };
    let rest = data.get(2..).unwrap_or_default();
    let (value, rest) = rest.split_at(len.min(rest.len()));
    *data = rest;
    value
}

fuzz_target!(|data: &[u8]| {
    let Some((&mask, mut rest)) = data.split_first() else {
        return;
    };
    let allowed: Vec<KeyType> = KeyType::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask == 0 || mask & (1 << i) != 0)
        .map(|(_, k)| *k)
        .collect();
    let uid = String::from_utf8_lossy(field(&mut rest)).into_owned();
    let pkix = field(&mut rest);
    let pop = field(&mut rest);
    let csr = field(&mut rest);
    let Ok(material) = KeyMaterial::from_spec_fields(pkix, pop, csr) else {
        return;
    };
    let Ok(key) = RequestedKey::verify(&material, &uid, &allowed) else {
        return;
    };
    assert!(
        allowed.contains(&key.key_type()),
        "accepted a key type that is not allowed"
    );
    if let KeyMaterial::Pkix { public_key, .. } = &material {
        assert_eq!(key.spki_der(), public_key.as_slice());
    }
});
