//! Every rule and refusal of the CA lifecycle, at explicit times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::{generate_ca, CaPool, Error, KeyType, SigningCa, DEFAULT_MAX_LIFETIME};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn ca_at(id: &str, created: SystemTime, validity: Duration) -> SigningCa {
    generate_ca(id, KeyType::Ed25519, created, validity).expect("generate CA")
}

fn ca(id: &str) -> SigningCa {
    ca_at(id, t0(), 365 * DAY)
}

/// Pool {1 signing, 2 added at t0}, then 2 promoted at `promoted`.
fn rotated_at(promoted: SystemTime) -> CaPool {
    let mut pool = CaPool::single(ca("1"));
    pool.add_ca(ca("2"), t0()).expect("add");
    assert_eq!(
        pool.promote("2", promoted).expect("promote"),
        Promotion::Promoted {
            previous: "1".into()
        }
    );
    pool
}

fn reread(pool: &CaPool) -> CaPool {
    CaPool::from_json(&pool.to_json()).expect("pool re-reads")
}

#[test]
fn added_ca_is_trusted_not_signing_and_records_when_it_was_added() {
    let mut pool = CaPool::single(ca("1"));
    pool.add_ca(ca("2"), t0() + HOUR).expect("add");
    let pool = reread(&pool);
    assert_eq!(pool.signing_ca().id(), "1");
    assert_eq!(
        pool.trust_bundle_pem().matches("BEGIN CERTIFICATE").count(),
        2
    );
    assert_eq!(pool.not_signing_since("2"), Some(t0() + HOUR));
    assert_eq!(pool.not_signing_since("1"), None);
}

#[test]
fn adding_an_existing_id_is_refused() {
    let mut pool = CaPool::single(ca("1"));
    let err = pool.add_ca(ca("1"), t0()).unwrap_err();
    assert!(
        matches!(err, Error::DuplicateCaId { ref ca_id } if ca_id == "1"),
        "{err}"
    );
}

#[test]
fn promotion_records_when_the_previous_ca_stopped_signing() {
    let promoted = t0() + 2 * HOUR;
    let pool = reread(&rotated_at(promoted));
    assert_eq!(pool.signing_ca().id(), "2");
    assert_eq!(pool.not_signing_since("1"), Some(promoted));
    // The signing CA carries no record: it is "signing now".
    assert_eq!(pool.not_signing_since("2"), None);
    let v: serde_json::Value = serde_json::from_slice(&pool.to_json()).expect("json");
    assert_eq!(v["CAs"][0]["ID"], "2");
    assert!(v["CAs"][0].get("NotSigningSince").is_none(), "{v}");
    assert_eq!(v["CAs"][1]["NotSigningSince"], "2027-01-15T10:00:00Z");
}

#[test]
fn promoting_back_clears_the_record_and_records_the_other() {
    let mut pool = rotated_at(t0() + HOUR);
    pool.promote("1", t0() + 3 * HOUR).expect("promote back");
    assert_eq!(pool.not_signing_since("1"), None);
    assert_eq!(pool.not_signing_since("2"), Some(t0() + 3 * HOUR));
}

#[test]
fn promoting_the_signing_ca_changes_nothing() {
    let mut pool = CaPool::single(ca("1"));
    assert_eq!(
        pool.promote("1", t0() + HOUR).expect("no-op"),
        Promotion::AlreadySigning
    );
    assert_eq!(pool.not_signing_since("1"), None);
}

#[test]
fn promoting_an_unknown_id_is_refused() {
    let mut pool = CaPool::single(ca("1"));
    let err = pool.promote("9", t0()).unwrap_err();
    assert!(
        matches!(err, Error::NoSuchCa { ref ca_id } if ca_id == "9"),
        "{err}"
    );
}

#[test]
fn promoting_an_expired_or_not_yet_valid_ca_is_refused() {
    let mut pool = CaPool::single(ca("1"));
    pool.add_ca(ca_at("short", t0(), 2 * HOUR), t0())
        .expect("add");
    pool.add_ca(ca_at("future", t0() + DAY, DAY), t0())
        .expect("add");
    for (id, at) in [
        // Expired.
        ("short", t0() + 3 * HOUR),
        // Valid, but less than MIN_LIFETIME (1 h) left: nothing could be issued.
        ("short", t0() + Duration::from_secs(90 * 60)),
        // Not yet valid (generate_ca backdates 5 minutes).
        ("future", t0()),
    ] {
        let err = pool.promote(id, at).unwrap_err();
        assert!(
            matches!(err, Error::PromoteNotValid { ref ca_id, .. } if ca_id == id),
            "{id}: {err}"
        );
        assert_eq!(pool.signing_ca().id(), "1");
    }
    assert!(pool.promote("short", t0() + HOUR / 2).is_ok());
}

#[test]
fn retiring_the_signing_ca_is_refused() {
    let mut pool = rotated_at(t0());
    let err = pool
        .retire("2", t0() + 30 * DAY, DEFAULT_MAX_LIFETIME, true)
        .unwrap_err();
    assert!(
        matches!(err, Error::RetireSigningCa { ref ca_id, only_ca: false } if ca_id == "2"),
        "{err}"
    );
    assert!(err.to_string().contains("promote another CA"), "{err}");
}

#[test]
fn retiring_the_last_ca_is_refused_even_when_forced() {
    let mut pool = CaPool::single(ca("1"));
    let err = pool
        .retire("1", t0() + 30 * DAY, DEFAULT_MAX_LIFETIME, true)
        .unwrap_err();
    assert!(
        matches!(err, Error::RetireSigningCa { only_ca: true, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("only CA"), "{err}");
    assert_eq!(pool.cas().len(), 1);
}

#[test]
fn retiring_an_unknown_id_is_refused() {
    let mut pool = rotated_at(t0());
    let err = pool
        .retire("9", t0(), DEFAULT_MAX_LIFETIME, true)
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchCa { .. }), "{err}");
}

#[test]
fn retiring_a_ca_that_signed_within_the_max_lifetime_is_refused_until_its_leaves_expire() {
    let promoted = t0() + HOUR;
    let until = promoted + DEFAULT_MAX_LIFETIME + RETIRE_ALLOWANCE;
    let mut pool = rotated_at(promoted);
    for at in [promoted, until - Duration::from_secs(1)] {
        let err = pool
            .retire("1", at, DEFAULT_MAX_LIFETIME, false)
            .unwrap_err();
        match err {
            Error::MayHaveValidLeaves {
                ref ca_id,
                until: u,
                not_signing_since,
                ..
            } => {
                assert_eq!(
                    (ca_id.as_str(), u, not_signing_since),
                    ("1", until, promoted)
                );
            }
            ref other => panic!("{other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("2027-01-16T09:10:00Z") && msg.contains("--force"),
            "{msg}"
        );
        assert_eq!(pool.cas().len(), 2);
    }
    let retired = pool
        .retire("1", until, DEFAULT_MAX_LIFETIME, false)
        .expect("retire at the horizon");
    assert!(retired.forced_over.is_none());
    assert_eq!(pool.cas().len(), 1);
    assert_eq!(
        pool.trust_bundle_pem().matches("BEGIN CERTIFICATE").count(),
        1
    );
}

#[test]
fn the_max_lifetime_moves_the_horizon() {
    let mut pool = rotated_at(t0());
    let one_hour_leaves = t0() + HOUR + RETIRE_ALLOWANCE;
    assert!(pool.retire("1", one_hour_leaves, HOUR, false).is_ok());
}

#[test]
fn force_overrides_the_valid_leaves_refusal_and_reports_it() {
    let mut pool = rotated_at(t0());
    let retired = pool
        .retire(
            "1",
            t0() + Duration::from_secs(5),
            DEFAULT_MAX_LIFETIME,
            true,
        )
        .expect("forced");
    assert!(
        matches!(retired.forced_over, Some(Error::MayHaveValidLeaves { .. })),
        "{:?}",
        retired.forced_over
    );
    let pool = reread(&pool);
    assert_eq!(pool.cas().len(), 1);
    assert_eq!(pool.signing_ca().id(), "2");
}

#[test]
fn a_never_promoted_ca_is_retirable_once_the_allowance_passed() {
    // Added at t0 and never signing: no leaf can exist, but the record is the add time,
    // so the same rule applies (conservative, and simple to state).
    let mut pool = CaPool::single(ca("1"));
    pool.add_ca(ca("2"), t0()).expect("add");
    let h = pool.leaf_horizon("2", DEFAULT_MAX_LIFETIME).expect("known");
    assert_eq!(
        h.valid_until(),
        Some(t0() + DEFAULT_MAX_LIFETIME + RETIRE_ALLOWANCE)
    );
}

/// A pool as the original meshtool writes it: no records, no ActiveForSigning, CAs[0]
/// signs.
fn go_pool(cas: &[&SigningCa]) -> CaPool {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
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
    CaPool::from_json(&serde_json::to_vec(&json!({ "CAs": cas })).expect("json")).expect("go pool")
}

#[test]
fn a_ca_without_a_record_is_refused_until_it_expires() {
    let old = ca_at("old", t0(), 30 * DAY);
    let new = ca("new");
    let mut pool = go_pool(&[&old, &new]);
    assert_eq!(pool.signing_ca().id(), "old");
    pool.promote("new", t0() + HOUR).expect("promote");
    // Promotion records "old"; a pool edited by the original meshtool drops it again.
    let mut v: serde_json::Value = serde_json::from_slice(&pool.to_json()).expect("json");
    v["CAs"][1]
        .as_object_mut()
        .expect("object")
        .remove("NotSigningSince");
    let mut pool = CaPool::from_json(&serde_json::to_vec(&v).expect("json")).expect("pool");
    assert_eq!(pool.not_signing_since("old"), None);

    let far_later = t0() + 20 * DAY;
    let err = pool
        .retire("old", far_later, DEFAULT_MAX_LIFETIME, false)
        .unwrap_err();
    assert!(
        matches!(err, Error::SigningTimeUnknown { ref ca_id, not_after } if ca_id == "old" && not_after == old.not_after()),
        "{err}"
    );
    assert!(err.to_string().contains("no record"), "{err}");
    // Once the CA itself has expired no certificate it issued can be valid.
    assert!(pool
        .retire("old", old.not_after(), DEFAULT_MAX_LIFETIME, false)
        .is_ok());
}

#[test]
fn a_record_on_the_signing_ca_is_ignored() {
    let pool = rotated_at(t0());
    let mut v: serde_json::Value = serde_json::from_slice(&pool.to_json()).expect("json");
    v["CAs"][0]["NotSigningSince"] = json!("2020-01-01T00:00:00Z");
    let pool = CaPool::from_json(&serde_json::to_vec(&v).expect("json")).expect("pool");
    assert_eq!(pool.not_signing_since("2"), None);
    let out: serde_json::Value = serde_json::from_slice(&pool.to_json()).expect("json");
    assert!(out["CAs"][0].get("NotSigningSince").is_none(), "{out}");
}

#[test]
fn a_malformed_record_names_the_ca_and_the_field() {
    let pool = rotated_at(t0());
    let mut v: serde_json::Value = serde_json::from_slice(&pool.to_json()).expect("json");
    v["CAs"][1]["NotSigningSince"] = json!("yesterday");
    let err = CaPool::from_json(&serde_json::to_vec(&v).expect("json")).unwrap_err();
    assert!(
        matches!(err, Error::Timestamp { ref ca_id, field: "NotSigningSince", .. } if ca_id == "1"),
        "{err}"
    );
}

#[test]
fn describe_lists_every_ca_with_its_state() {
    let promoted = t0() + HOUR;
    let pool = rotated_at(promoted);
    let list = pool.describe(promoted + DAY, DEFAULT_MAX_LIFETIME);
    assert_eq!(list.len(), 2);
    let signing: Vec<_> = list.iter().filter(|c| c.signing).map(|c| &c.id).collect();
    assert_eq!(signing, ["2"]);
    let one = list.iter().find(|c| c.id == "1").expect("CA 1");
    assert_eq!(one.key_type, KeyType::Ed25519);
    assert_eq!(one.not_after, pool.ca("1").expect("1").not_after());
    assert_eq!(one.fingerprint_sha256.len(), 64);
    assert!(one
        .fingerprint_sha256
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(one.fingerprint_sha256, list[1].fingerprint_sha256);
    assert!(!one.retirable, "within the horizon");
    assert_eq!(
        one.leaves.valid_until(),
        Some(promoted + DEFAULT_MAX_LIFETIME + RETIRE_ALLOWANCE)
    );
    let two = list.iter().find(|c| c.id == "2").expect("CA 2");
    assert_eq!(two.leaves, LeafHorizon::SigningNow);
    assert!(!two.retirable);
    let later = pool.describe(promoted + 2 * DAY, DEFAULT_MAX_LIFETIME);
    assert!(later.iter().find(|c| c.id == "1").expect("1").retirable);
}

#[test]
fn only_a_signing_ca_inside_the_window_warns() {
    let mut pool = CaPool::single(ca_at("1", t0(), 40 * DAY));
    pool.add_ca(ca_at("2", t0(), 5 * DAY), t0()).expect("add");
    let window = 30 * DAY;
    // CA 2 expires sooner but does not sign: no warning.
    assert_eq!(pool.signing_ca_expiry(t0(), window), None);
    let at = t0() + 11 * DAY;
    let warning = pool
        .signing_ca_expiry(at, window)
        .expect("inside the window");
    assert_eq!(warning.ca_id, "1");
    assert_eq!(warning.not_after, pool.signing_ca().not_after());
    assert_eq!(warning.remaining, Some(29 * DAY));
    let expired = pool
        .signing_ca_expiry(t0() + 41 * DAY, window)
        .expect("expired");
    assert_eq!(expired.remaining, None);
    // A zero window warns only once it has expired.
    assert_eq!(pool.signing_ca_expiry(at, Duration::ZERO), None);
}
