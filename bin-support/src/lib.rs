//! What the workspace's binaries (demo-server, demo-client, podtls-local, signer)
//! share: one logging set-up, one "waiting for credentials" step, and one
//! definition of the lines demo-server and demo-client print for scripts and
//! tests (the `LISTENING` line, the fetch line), with their parsers.
//!
//! A workspace-internal crate (`publish = false`) rather than a podtls feature:
//! the library's users get none of it, and podtls' dependencies stay as they are.

pub mod logging;
pub mod protocol;
pub mod readiness;
