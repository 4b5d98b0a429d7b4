//! podtls' default features pull in no gRPC stack and none of the
//! integration frameworks; the `tonic` feature pulls in tonic alone (no
//! transport, no codegen, no prost); `workload-api` is the one feature that
//! brings the gRPC stack (tonic's transport, prost). Checked on the resolved dependency
//! graph (`cargo tree -e normal`), which is what a service depending on
//! podtls compiles.

use std::collections::BTreeSet;
use std::process::Command;

/// The names of podtls' normal (non-dev) dependencies, transitively.
fn dependencies(features: &[&str]) -> BTreeSet<String> {
    // Read at run time, not baked in at compile time: a test binary that cargo
    // reuses from an earlier build of the same sources in another directory
    // (the packaged crate is unpacked afresh each run) must not point at a
    // directory that is gone.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(manifest_dir).args([
        "tree",
        "-p",
        "podtls",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
        "--offline",
    ]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let out = cmd.output().expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    // The check below must be able to fail: the graph was really listed.
    assert!(
        names.contains("rustls") && names.contains("tokio"),
        "{names:?}"
    );
    names
}

const FRAMEWORKS: &[&str] = &[
    "tonic",
    "tonic-prost",
    "prost",
    "axum",
    "axum-core",
    "reqwest",
    "tower",
];

#[test]
fn default_features_pull_in_no_grpc_stack_and_no_framework() {
    let deps = dependencies(&[]);
    for name in FRAMEWORKS {
        assert!(!deps.contains(*name), "{name} is a default dependency");
    }
}

#[test]
fn the_tonic_feature_pulls_in_tonic_without_prost_or_its_transport() {
    let deps = dependencies(&["tonic"]);
    assert!(deps.contains("tonic"));
    for name in ["prost", "tonic-prost", "axum", "tower", "hyper-timeout"] {
        assert!(!deps.contains(name), "the tonic feature pulls in {name}");
    }
}

#[test]
fn the_axum_feature_pulls_in_axum_core_only() {
    let deps = dependencies(&["axum"]);
    assert!(deps.contains("axum-core"));
    for name in ["axum", "tonic", "prost", "reqwest"] {
        assert!(!deps.contains(name), "the axum feature pulls in {name}");
    }
}

/// What a gRPC client brings: tonic's transport and its codec (prost).
const GRPC_STACK: &[&str] = &[
    "tonic",
    "prost",
    "prost-types",
    "tonic-prost",
    "tower",
    "hyper-timeout",
];

#[test]
fn the_workload_api_feature_is_the_only_one_that_pulls_in_the_grpc_stack() {
    let with = dependencies(&["workload-api"]);
    for name in GRPC_STACK {
        assert!(with.contains(*name), "workload-api lacks {name}: {with:?}");
    }
    // Every other feature at once: tonic (the `tonic` feature's, without its
    // transport) and nothing else of the stack.
    let others = dependencies(&["hyper", "axum", "tonic", "test-util"]);
    for name in GRPC_STACK.iter().filter(|n| **n != "tonic") {
        assert!(
            !others.contains(*name),
            "a feature other than workload-api pulls in {name}"
        );
    }
    let default = dependencies(&[]);
    for name in GRPC_STACK {
        assert!(!default.contains(*name), "{name} is a default dependency");
    }
}
