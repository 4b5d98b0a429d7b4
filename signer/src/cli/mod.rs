//! The CA pool commands of the `signer` binary.

pub mod bundle_document;
pub mod ca;
pub mod injection;
pub mod pool_store;
