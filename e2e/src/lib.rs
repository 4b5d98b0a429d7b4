//! podtls' end-to-end suite against a real Kubernetes control plane.
//!
//! `e2e/cluster` (Go) builds a single-machine cluster from Kubernetes' own
//! modules: embedded etcd, the real kube-apiserver, and a kubelet stand-in made
//! of kubelet's pod-certificate manager, trust-bundle manager and projected
//! volume plugins (see `e2e/README.md`). This crate drives it from Rust:
//!
//! - [`TestCluster`] builds (if needed) and starts the harness for one pinned
//!   release and speaks its control API (pod status, forced refresh, API server
//!   restart) and its audit log;
//! - [`Mesh`] deploys the project on it the way a user would (the quick
//!   start's order): the controller's Namespace applied server-side, CA pools
//!   made by `signer make-ca-pool-secret`, the controller manifests applied,
//!   signer replicas run from the Deployment's command as
//!   local processes authenticated with their pods' projected ServiceAccount
//!   tokens (so the manifests' RBAC is what they get), and the example pairs run
//!   from their manifests' commands against the volumes kubelet's code wrote;
//! - [`Requests`] reads PodCertificateRequests, issued leaves and
//!   ClusterTrustBundles back.
//!
//! It does not run containers or a scheduler: pods are created bound to a node
//! and their processes run on 127.0.0.1.
//!
//! The suite is `tests/real_cluster/` (`cargo test -p podtls-e2e`); the
//! issuance benchmark is `benches/issuance.rs`.

mod cluster;
mod histogram;
mod http;
mod manifests;
mod mesh;
mod procs;
mod requests;

pub use cluster::{
    client_from_kubeconfig, harness_binary, harness_dir, tail, write_token_kubeconfig,
    PodCertificate, PodState, Release, State, TestCluster,
};
pub use histogram::Histogram;
pub use http::{http_request, HttpResponse};
pub use manifests::{
    apply, apply_all, container_command, create_pod_from_template, describe, load as load_manifest,
    load_dir as load_manifest_dir, manifests_dir, parse as parse_manifest, pod_template,
    FIELD_MANAGER,
};
pub use mesh::{volume, Mesh, Pair, SignerReplica, CONTROLLER_NAMESPACE, TRUST_DOMAIN};
pub use procs::{binaries, free_port, metric_sum, wait_http_ok, Proc};
pub use requests::{
    issued_leaf, key, outcome, parse_leaf, requests_by, status_writes, Leaf, Requests,
};

pub use k8s_openapi;
pub use kube;
