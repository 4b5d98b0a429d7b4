//! The CA pool commands of the `signer` binary.

pub mod ca;
pub mod injection;
pub mod pool_store;
