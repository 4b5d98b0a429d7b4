//! demo-client: fetches a URL over TLS with podtls.
//!
//! ```text
//! demo-client --fetch-url https://server.demo.svc:8443/spiffe-echo \
//!     --server-trust-bundle /var/run/trust/service-dns.pem \
//!     [--client-cred-bundle /var/run/creds/credentialbundle.pem] \
//!     [--interval 10s] [--count N] [--resolve server.demo.svc:8443:127.0.0.1]
//! demo-client --fetch-url ... --server-spiffe-id spiffe://cluster.local/ns/demo/sa/server \
//!     --spiffe-trust-bundle /var/run/trust/spiffe.pem ...
//! demo-client --fetch-url ... load --concurrency 16 --duration 30s [--new-connection-per-request]
//! ```
//!
//! Periodic mode prints one line per request (status, protocol, the
//! server's and our certificate serials, the body) and with `--count` exits
//! non-zero if any request failed. Load mode prints a progress line and a
//! summary table (or JSON) and exits non-zero on any failure. `--help` lists
//! every flag (each also readable from a `DEMO_CLIENT_*` environment variable).

mod args;
mod client;
mod fetch;
mod load;
mod request;

use clap::Parser;

#[tokio::main]
async fn main() {
    let args = args::Args::parse();
    podtls_bin_support::logging::init(args.log_format, "warn");
    let setup = match client::Setup::new(&args.conn).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo-client: {e:#}");
            std::process::exit(2);
        }
    };
    let failed = match &args.command {
        Some(args::Command::Load(load)) => load::run(&setup, load).await.failed,
        None => fetch::run(&setup, args.interval, args.count, args.max_connection_age).await,
    };
    if failed > 0 {
        eprintln!("demo-client: {failed} request(s) failed");
        std::process::exit(1);
    }
}
