//! Helpers for tests and benchmarks (feature `test-util`): kubelet-style requester keys
//! and a checker of kube-apiserver's status rules for issued certificates.
//!
//! Not for production use: these helpers panic on internal errors.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod entitled;
mod requester;
mod status_rules;

pub use entitled::entitled_snapshot;
pub use requester::RequesterKey;
pub use status_rules::{check_issued_status, MAX_CERTIFICATE_CHAIN_SIZE};
