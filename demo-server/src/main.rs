//! demo-server: an HTTPS echo server for pods using podtls.
//!
//! ```text
//! demo-server --listen 0.0.0.0:8443 --server-creds /var/run/creds/credentialbundle.pem \
//!     [--enable-spiffe-client-support | --require-spiffe-client] \
//!     [--spiffe-trust-bundle /var/run/trust/spiffe.pem --spiffe-trust-domain cluster.local] \
//!     [--allow-spiffe-id ID] [--allow-trust-domain TD] [--allow-spiffe-path-prefix ID] \
//!     [--allow-pod-namespace NS] [--require-issuing-cluster URL] \
//!     [--admin-listen 0.0.0.0:9090] [--log-format json]
//! ```
//!
//! `GET /healthz` answers `OK`; `GET /spiffe-echo` answers
//! `Client Identity: spiffe://...` for a verified, authorized SPIFFE client
//! (and, when the client's certificate carries a PodIdentity extension, a second
//! line `Pod Identity: namespace=… serviceAccount=… serviceAccountUID=… pod=… podUID=…
//! node=… nodeUID=… issuingCluster=…`; the issuing cluster also in the
//! `x-client-issuing-cluster` header) and 401 with the reason otherwise. Credentials and trust bundles
//! hot-reload; SIGTERM / Ctrl-C shut down gracefully. `--help` lists every
//! flag (each also readable from a `DEMO_SERVER_*` environment variable).

mod admin;
mod args;
mod config;
mod handlers;
mod metrics;
mod server;

use clap::Parser;

#[tokio::main]
async fn main() {
    let args = args::Args::parse();
    podtls_bin_support::logging::init(args.log_format, "info");
    if let Err(e) = server::run(args).await {
        tracing::error!(error = format!("{e:#}"), "demo-server failed");
        eprintln!("demo-server: {e:#}");
        std::process::exit(1);
    }
}
