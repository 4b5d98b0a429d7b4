//! Credential loading: PEM parsing, leaf checks and key/leaf matching.
//!
//! Input: one flags byte, then PEM text.
//! - bit 0 of the flags: require an X509-SVID leaf (`LeafKind::SpiffeSvid`);
//! - bit 1: separate key and chain files (`Credentials::from_key_and_chain_pem`),
//!   the text being `key PEM`, a NUL byte, `chain PEM`; otherwise the whole text
//!   is one kubelet credential bundle (`Credentials::from_bundle_pem`).
//!
//! `now` is fixed (2030-01-01) so that checked-in seeds stay inside their
//! validity window (2025..2045). Accepted credentials must satisfy what
//! `Credentials` promises.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use podtls::{
    certificate::CertInfo, verification::validate_svid_leaf_der, Credentials, LeafKind, Origin,
};

/// 2030-01-01T00:00:00Z.
const NOW_UNIX: u64 = 1_893_456_000;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, pem)) = data.split_first() else {
        return;
    };
    let kind = if flags & 1 == 1 {
        LeafKind::SpiffeSvid
    } else {
        LeafKind::Any
    };
    let now = UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
    let result = if flags & 2 == 2 {
        let (key, chain) = match pem.iter().position(|b| *b == 0) {
            Some(i) => (&pem[..i], &pem[i + 1..]),
            None => (pem, &[][..]),
        };
        Credentials::from_key_and_chain_pem(
            key,
            &Origin::memory("fuzz key"),
            chain,
            &Origin::memory("fuzz chain"),
            kind,
            now,
        )
    } else {
        Credentials::from_bundle_pem(pem, &Origin::memory("fuzz bundle"), kind, now)
    };
    let Ok(creds) = result else {
        return;
    };
    check_accepted(&creds, kind, now);
});

fn check_accepted(creds: &Credentials, kind: LeafKind, now: SystemTime) {
    let leaf = creds
        .chain()
        .first()
        .expect("accepted credentials have a leaf");
    let info = CertInfo::from_der(leaf).expect("accepted leaf parses");
    assert_eq!(&info, creds.info());
    assert!(info.not_before <= now && now <= info.not_after);
    assert!(
        creds.certified_key().keys_match().is_ok(),
        "accepted a key that does not match the leaf"
    );
    if kind == LeafKind::SpiffeSvid {
        let id = validate_svid_leaf_der(leaf).expect("accepted SVID leaf validates");
        assert_eq!(info.spiffe_id.as_ref(), Some(&id));
    }
}
