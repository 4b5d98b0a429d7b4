//! The `signer ca` commands and the original `make-ca-pool-secret` / `set-signing-ca`,
//! run as the real binary on pool files: a whole rotation, and every refusal with a
//! non-zero exit and a message that says why.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn signer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signer"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run signer")
}

fn ok(args: &[&str]) -> String {
    let out = signer(args);
    assert!(
        out.status.success(),
        "signer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn refused(args: &[&str]) -> String {
    let out = signer(args);
    assert!(!out.status.success(), "signer {args:?} succeeded");
    String::from_utf8(out.stderr).expect("utf-8")
}

fn list(file: &Path) -> Vec<Value> {
    let text = ok(&[
        "ca",
        "list",
        "--file",
        file.to_str().unwrap(),
        "--output",
        "json",
    ]);
    serde_json::from_str::<Value>(&text)
        .expect("JSON list")
        .as_array()
        .expect("array")
        .clone()
}

fn ids(cas: &[Value]) -> Vec<(String, bool)> {
    cas.iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c["signing"] == true))
        .collect()
}

#[test]
fn a_whole_rotation_on_a_pool_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pool.json");
    let f = file.to_str().unwrap();
    ok(&[
        "make-ca-pool-secret",
        "--namespace",
        "ns",
        "--name",
        "unused",
        "--ca-id",
        "1",
        "--out-file",
        f,
    ]);
    assert_eq!(ids(&list(&file)), [("1".into(), true)]);

    ok(&[
        "ca",
        "add",
        "--file",
        f,
        "--ca-id",
        "2",
        "--key-type",
        "ECDSAP256",
    ]);
    let cas = list(&file);
    assert_eq!(ids(&cas), [("1".into(), true), ("2".into(), false)]);
    assert_eq!(cas[1]["keyType"], "ECDSAP256");
    assert_eq!(cas[1]["sha256"].as_str().unwrap().len(), 64);
    assert!(cas[1]["notSigningSince"].is_string(), "{}", cas[1]);

    // Adding the same ID again is refused and changes nothing.
    let err = refused(&["ca", "add", "--file", f, "--ca-id", "2"]);
    assert!(err.contains("appears more than once"), "{err}");

    ok(&["ca", "promote", "--file", f, "--ca-id", "2"]);
    let cas = list(&file);
    assert_eq!(ids(&cas), [("2".into(), true), ("1".into(), false)]);
    assert_eq!(cas[1]["retirable"], false);

    // CA 1 signed moments ago: its certificates may be valid for a day.
    let err = refused(&["ca", "retire", "--file", f, "--ca-id", "1"]);
    assert!(
        err.contains("retiring CA") && err.contains("may be valid until"),
        "{err}"
    );
    // A one-second maximum lifetime does not help within the 10-minute allowance.
    let err = refused(&[
        "ca",
        "retire",
        "--file",
        f,
        "--ca-id",
        "1",
        "--max-lifetime",
        "1s",
    ]);
    assert!(err.contains("10m allowance"), "{err}");
    // The signing CA is never retired, not even with --force.
    let err = refused(&["ca", "retire", "--file", f, "--ca-id", "2", "--force"]);
    assert!(err.contains("is the signing CA"), "{err}");
    assert_eq!(list(&file).len(), 2);

    ok(&["ca", "retire", "--file", f, "--ca-id", "1", "--force"]);
    assert_eq!(ids(&list(&file)), [("2".into(), true)]);
    let err = refused(&["ca", "retire", "--file", f, "--ca-id", "2", "--force"]);
    assert!(err.contains("only CA"), "{err}");
}

#[test]
fn set_signing_ca_and_append_keep_working_for_the_original_users() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pool.json");
    let f = file.to_str().unwrap();
    let base = ["--namespace", "ns", "--name", "n", "--out-file", f];
    ok(&[&["make-ca-pool-secret", "--ca-id", "a"][..], &base].concat());
    let err = refused(&[&["make-ca-pool-secret", "--ca-id", "b"][..], &base].concat());
    assert!(err.contains("--append"), "{err}");
    ok(&[
        &["make-ca-pool-secret", "--ca-id", "b", "--append"][..],
        &base,
    ]
    .concat());
    ok(&[&["set-signing-ca", "--ca-id", "b"][..], &base].concat());
    let cas = list(&file);
    assert_eq!(ids(&cas), [("b".into(), true), ("a".into(), false)]);
    assert!(cas[1]["notSigningSince"].is_string(), "{}", cas[1]);
    let err = refused(&[&["set-signing-ca", "--ca-id", "zz"][..], &base].concat());
    assert!(err.contains("no CA with ID") && err.contains("zz"), "{err}");
}

#[test]
fn list_of_an_empty_or_missing_pool_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "{\"CAs\":[]}").unwrap();
    let err = refused(&["ca", "list", "--file", empty.to_str().unwrap()]);
    assert!(
        err.contains(&format!("CA pool file {}", empty.display())) && err.contains("holds no CAs"),
        "{err}"
    );
    let missing = dir.path().join("missing.json");
    let err = refused(&["ca", "list", "--file", missing.to_str().unwrap()]);
    assert!(err.contains("missing.json"), "{err}");
    let err = refused(&["ca", "list"]);
    assert!(err.contains("--namespace NS --name NAME"), "{err}");
}

#[test]
fn the_table_shows_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pool.json");
    let f = file.to_str().unwrap();
    ok(&[
        "make-ca-pool-secret",
        "--namespace",
        "ns",
        "--name",
        "n",
        "--ca-id",
        "only",
        "--out-file",
        f,
    ]);
    let table = ok(&["ca", "list", "--file", f]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for column in ["ID", "KEY TYPE", "NOT AFTER", "SIGNING", "SHA-256"] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(
        lines[1].starts_with("only ")
            && lines[1].contains("ED25519")
            && lines[1].contains("signing now"),
        "{table}"
    );
}
