//! Hot reload through a kubelet-style atomic writer: new material is picked
//! up, bad material never replaces good material, and errors are reported.

mod common;

use std::time::Duration;

use common::*;
use podtls::test_util::{CertAuthority, LeafSpec};
use podtls::{reload::Health, Error, PodTls};

fn start(vol: &Volume) -> PodTls {
    PodTls::builder()
        .credential_bundle(vol.bundle_path())
        .require_spiffe_svid()
        .spiffe_bundle(td(), vol.spiffe_path())
        .timing(fast_timing())
        .start()
        .unwrap()
}

#[tokio::test]
async fn picks_up_rotated_credentials_and_bundles() {
    let ca1 = CertAuthority::new("ca1");
    let ca2 = CertAuthority::new("ca2");
    let vol = Volume::new();
    let first = spiffe_leaf(&ca1, "/ns/a/sa/b");
    vol.write_creds(&first);
    vol.write_trust(&[&ca1]);
    let pod = start(&vol);
    assert!(
        pod.is_ready(),
        "files present at start: loaded synchronously"
    );
    let creds = pod.credentials().unwrap();
    assert_eq!(serial_of(&creds.status()).unwrap(), first.serial);

    let second = spiffe_leaf(&ca1, "/ns/a/sa/b");
    vol.write_creds(&second);
    let s = wait_status(creds, "rotated serial", |s| {
        serial_of(s).as_deref() == Some(second.serial.as_str())
    })
    .await;
    assert_eq!(s.generation, 2);
    assert!(s.last_error.is_none());

    let bundles = pod.spiffe_bundles().store(&td()).unwrap().clone();
    vol.write_trust(&[&ca1, &ca2]);
    let s = wait_status(&bundles, "two CAs", |s| {
        s.summary == Some(podtls::reload::Summary::TrustBundle { authorities: 2 })
    })
    .await;
    assert!(s.is_ready());
}

#[tokio::test]
async fn unchanged_rewrite_is_a_no_op() {
    let ca = CertAuthority::new("ca");
    let vol = Volume::new();
    let leaf = spiffe_leaf(&ca, "/ns/a/sa/b");
    vol.write_creds(&leaf);
    vol.write_trust(&[&ca]);
    let pod = start(&vol);
    let creds = pod.credentials().unwrap();
    // Same bytes through a plain overwrite (kubelet itself would skip it).
    std::fs::write(
        vol.creds.dir().join("..data/credentialbundle.pem"),
        leaf.bundle_pem(),
    )
    .unwrap();
    pod.reload_now();
    // A later, different write proves the reloader processed the earlier one.
    let next = spiffe_leaf(&ca, "/ns/a/sa/b");
    vol.write_creds(&next);
    let s = wait_status(creds, "next serial", |s| {
        serial_of(s).as_deref() == Some(next.serial.as_str())
    })
    .await;
    assert_eq!(s.generation, 2, "the identical rewrite did not publish");
}

#[tokio::test]
async fn keeps_last_good_credentials_when_new_ones_are_bad() {
    let ca = CertAuthority::new("ca");
    let vol = Volume::new();
    let good = spiffe_leaf(&ca, "/ns/a/sa/b");
    vol.write_creds(&good);
    vol.write_trust(&[&ca]);
    let pod = start(&vol);
    let creds = pod.credentials().unwrap();

    let other = spiffe_leaf(&ca, "/ns/a/sa/b");
    let bad_inputs: Vec<(&str, String)> = vec![
        ("garbage", "garbage\n".to_string()),
        ("truncated", good.bundle_pem()[..300].to_string()),
        (
            "key mismatch",
            format!("{}{}", good.key_pem, other.chain_pem),
        ),
        (
            "two URI SANs",
            ca.issue(
                &LeafSpec::spiffe("spiffe://cluster.local/ns/a/sa/b")
                    .uri("spiffe://cluster.local/x"),
            )
            .bundle_pem(),
        ),
        (
            "non-spiffe",
            ca.issue(&LeafSpec::dns(&["a.svc"]).uri("https://x/y"))
                .bundle_pem(),
        ),
        ("empty", String::new()),
    ];
    for (what, pem) in bad_inputs {
        let before = creds.status();
        vol.creds.write(&one("credentialbundle.pem", pem)).unwrap();
        let s = wait_status(creds, what, |s| {
            s.last_attempt != before.last_attempt && s.last_error.is_some()
        })
        .await;
        let err = s.last_error.as_ref().unwrap().to_string();
        assert!(
            err.contains("credentialbundle.pem"),
            "{what}: error names the file: {err}"
        );
        assert_eq!(
            serial_of(&s).unwrap(),
            good.serial,
            "{what}: last good kept"
        );
        assert_eq!(
            podtls::certificate::CertInfo::from_der(&creds.current().unwrap().chain()[0])
                .unwrap()
                .serial,
            good.serial,
            "{what}: served material unchanged"
        );
    }
    // A good write clears the error.
    vol.write_creds(&other);
    let s = wait_status(creds, "recovery", |s| {
        serial_of(s).as_deref() == Some(other.serial.as_str())
    })
    .await;
    assert!(s.last_error.is_none());
}

#[tokio::test]
async fn fails_closed_until_first_good_load_then_serves() {
    let ca = CertAuthority::new("ca");
    let vol = Volume::new();
    // Nothing written yet: kubelet has not projected anything.
    let pod = start(&vol);
    assert!(!pod.is_ready());
    let creds = pod.credentials().unwrap();
    assert!(creds.current().is_none());
    let err = pod.ready(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, Error::NotReady { .. }), "{err}");
    assert!(err.to_string().contains("credentialbundle.pem"), "{err}");

    // Kubelet projects an empty trust bundle first (optional CTB source):
    // still not ready, and the error says why.
    vol.trust.write(&one("spiffe.pem", "")).unwrap();
    let bundles = pod.spiffe_bundles().store(&td()).unwrap().clone();
    let s = wait_status(&bundles, "empty bundle error", |s| {
        s.last_error
            .as_ref()
            .is_some_and(|e| matches!(**e, Error::EmptyTrustBundle { .. }))
    })
    .await;
    assert!(!s.is_ready());

    vol.write_creds(&spiffe_leaf(&ca, "/ns/a/sa/b"));
    vol.write_trust(&[&ca]);
    pod.ready(Duration::from_secs(10)).await.unwrap();
    assert_eq!(creds.status().health, Health::Ok);
}

#[tokio::test]
async fn empty_trust_bundle_after_a_good_one_keeps_the_good_one() {
    let ca = CertAuthority::new("ca");
    let vol = Volume::new();
    vol.write_creds(&spiffe_leaf(&ca, "/ns/a/sa/b"));
    vol.write_trust(&[&ca]);
    let pod = start(&vol);
    let bundles = pod.spiffe_bundles().store(&td()).unwrap().clone();
    vol.trust.write(&one("spiffe.pem", "")).unwrap();
    let s = wait_status(&bundles, "empty bundle error", |s| s.last_error.is_some()).await;
    assert!(s.is_ready());
    assert_eq!(bundles.current().unwrap().len(), 1);
}

#[tokio::test]
async fn recovers_after_file_deleted_and_recreated() {
    let ca = CertAuthority::new("ca");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bundle.pem");
    let first = spiffe_leaf(&ca, "/ns/a/sa/b");
    std::fs::write(&path, first.bundle_pem()).unwrap();
    let pod = PodTls::builder()
        .credential_bundle(&path)
        .timing(fast_timing())
        .start()
        .unwrap();
    let creds = pod.credentials().unwrap();
    std::fs::remove_file(&path).unwrap();
    let s = wait_status(creds, "read error", |s| {
        s.last_error
            .as_ref()
            .is_some_and(|e| matches!(**e, Error::Read { .. }))
    })
    .await;
    assert_eq!(serial_of(&s).unwrap(), first.serial, "still serving");
    let second = spiffe_leaf(&ca, "/ns/a/sa/b");
    std::fs::write(&path, second.bundle_pem()).unwrap();
    wait_status(creds, "recreated", |s| {
        serial_of(s).as_deref() == Some(second.serial.as_str()) && s.last_error.is_none()
    })
    .await;
}

#[tokio::test]
async fn non_atomic_writer_is_picked_up_without_reporting_the_torn_state() {
    let ca = CertAuthority::new("ca");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bundle.pem");
    std::fs::write(&path, spiffe_leaf(&ca, "/ns/a/sa/b").bundle_pem()).unwrap();
    let pod = PodTls::builder()
        .credential_bundle(&path)
        .timing(fast_timing())
        .start()
        .unwrap();
    let creds = pod.credentials().unwrap();
    let mut rx = creds.subscribe();
    for _ in 0..5 {
        let next = spiffe_leaf(&ca, "/ns/a/sa/b");
        // Plain truncate + write in two steps, like `cp` or an editor.
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        let pem = next.bundle_pem();
        let (a, b) = pem.as_bytes().split_at(pem.len() / 2);
        f.write_all(a).unwrap();
        f.flush().unwrap();
        // A slow writer: the reloader sees the torn file in between (the
        // pause is shorter than the settle delay, as a real `cp` would be).
        std::thread::sleep(Duration::from_millis(10));
        f.write_all(b).unwrap();
        drop(f);
        wait_status(creds, "new serial", |s| {
            serial_of(s).as_deref() == Some(next.serial.as_str())
        })
        .await;
    }
    // No reload in between reported an error.
    while rx.has_changed().unwrap() {
        let s = rx.borrow_and_update().clone();
        assert!(
            s.last_error.is_none(),
            "torn write reported: {:?}",
            s.last_error
        );
    }
}

#[tokio::test]
async fn rewatches_a_replaced_volume_directory() {
    let ca = CertAuthority::new("ca");
    let vol = Volume::new();
    vol.write_creds(&spiffe_leaf(&ca, "/ns/a/sa/b"));
    vol.write_trust(&[&ca]);
    let pod = start(&vol);
    let creds = pod.credentials().unwrap();
    // Replace the whole directory (a volume re-mounted under the same path).
    let dir = vol.creds.dir().to_path_buf();
    let moved = dir.with_extension("old");
    std::fs::rename(&dir, &moved).unwrap();
    let writer = podtls::test_util::AtomicWriter::new(&dir).unwrap();
    let next = spiffe_leaf(&ca, "/ns/a/sa/b");
    writer
        .write(&one("credentialbundle.pem", next.bundle_pem()))
        .unwrap();
    // The periodic re-read (forced here) notices the new directory.
    pod.reload_now();
    wait_status(creds, "served from the new directory", |s| {
        serial_of(s).as_deref() == Some(next.serial.as_str())
    })
    .await;
    // And the new directory is watched: an event-driven rotation works again
    // (the test timing has no periodic re-read).
    let third = spiffe_leaf(&ca, "/ns/a/sa/b");
    writer
        .write(&one("credentialbundle.pem", third.bundle_pem()))
        .unwrap();
    wait_status(creds, "third", |s| {
        serial_of(s).as_deref() == Some(third.serial.as_str())
    })
    .await;
}

#[tokio::test]
async fn warns_when_certificate_nears_expiry_without_replacement() {
    let ca = CertAuthority::new("ca");
    let vol = Volume::new();
    let now = std::time::SystemTime::now();
    // 90% of its lifetime used.
    let leaf = ca.issue(
        &LeafSpec::spiffe("spiffe://cluster.local/ns/a/sa/b").validity(
            now - Duration::from_secs(900),
            now + Duration::from_secs(100),
        ),
    );
    vol.write_creds(&leaf);
    vol.write_trust(&[&ca]);
    let pod = start(&vol);
    assert_eq!(
        pod.credentials().unwrap().status().health,
        Health::RenewalOverdue
    );
}

#[tokio::test]
async fn follows_files_in_subdirectories_of_one_projected_volume() {
    // One projected volume holding both sources in subdirectories, as in
    // `path: creds/credentialbundle.pem` and `path: trust/spiffe.pem`.
    let ca = CertAuthority::new("ca");
    let tmp = tempfile::tempdir().unwrap();
    let vol = podtls::test_util::AtomicWriter::new(tmp.path()).unwrap();
    let write = |leaf: &podtls::test_util::Issued, cas: &[&CertAuthority]| {
        let pem: String = cas.iter().map(|c| c.cert_pem().to_string()).collect();
        vol.write(&std::collections::BTreeMap::from([
            (
                "creds/credentialbundle.pem".to_string(),
                leaf.bundle_pem().into_bytes(),
            ),
            ("trust/spiffe.pem".to_string(), pem.into_bytes()),
        ]))
        .unwrap();
    };
    write(&spiffe_leaf(&ca, "/ns/a/sa/b"), &[&ca]);
    assert!(std::fs::symlink_metadata(tmp.path().join("creds"))
        .unwrap()
        .file_type()
        .is_symlink());
    let pod = PodTls::builder()
        .credential_bundle(tmp.path().join("creds/credentialbundle.pem"))
        .spiffe_bundle(td(), tmp.path().join("trust/spiffe.pem"))
        .timing(fast_timing())
        .start()
        .unwrap();
    assert!(pod.is_ready());
    for _ in 0..3 {
        let next = spiffe_leaf(&ca, "/ns/a/sa/b");
        write(&next, &[&ca]);
        wait_status(
            pod.credentials().unwrap(),
            "rotated in a subdirectory",
            |s| serial_of(s).as_deref() == Some(next.serial.as_str()),
        )
        .await;
    }
}
