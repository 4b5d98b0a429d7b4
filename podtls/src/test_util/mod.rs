//! Test helpers, behind the `test-util` feature: a kubelet-style atomic
//! volume writer and a certificate factory.
//!
//! They are public so that other crates' tests (signer, demos) write volumes
//! and certificates exactly the way these tests do.

mod atomic_writer;
mod certs;

pub use atomic_writer::AtomicWriter;
pub use certs::{CaSpec, CertAuthority, Issued, KeyType, LeafSpec};
/// The rcgen whose `KeyPair` [`KeyType::generate`] returns, re-exported on purpose.
pub use rcgen;
