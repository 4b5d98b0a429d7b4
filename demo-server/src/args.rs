//! Command-line flags, compatible with the original Go `demo-server`
//! (`--listen`, `--server-creds`, `--enable-spiffe-client-support`,
//! `--spiffe-trust-bundle`), plus what a real deployment needs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

/// Log output format (shared by every binary of the workspace).
pub use podtls_bin_support::logging::LogFormat;

/// HTTPS echo server (HTTP/1.1 and h2) for pods using podtls.
///
/// Endpoints: `GET /healthz` (200 "OK"), `GET /spiffe-echo` (200
/// "Client Identity: spiffe://..." for a verified, authorized SPIFFE client,
/// 401 with the reason otherwise). Admin listener (plain HTTP): `/metrics`,
/// `/readyz`, `/livez`. Credentials and trust bundles hot-reload.
#[derive(Debug, Parser)]
#[command(name = "demo-server", version)]
pub struct Args {
    /// <address>:<port> to serve HTTPS on.
    #[arg(long, env = "DEMO_SERVER_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Credential bundle (PKCS#8 key, then the certificate chain), as kubelet
    /// writes it for `credentialBundlePath`.
    #[arg(long, env = "DEMO_SERVER_CREDS", conflicts_with_all = ["server_key", "server_chain"])]
    pub server_creds: Option<PathBuf>,

    /// SPIFFE credential folder (draft SPIFFE Filesystem Delivery standard):
    /// `credential-bundle.private-key.x509.pem` and one
    /// `<trust-domain>.spiffe-trust-bundle.x509.pem` per trust domain, the
    /// trust domains followed as they come and go (federation,
    /// de-federation). Replaces --server-creds / --server-key and the
    /// SPIFFE bundle flags; SPIFFE clients of every trust domain in the
    /// folder are verified against their own trust domain's bundle.
    #[arg(
        long,
        env = "SPIFFE_CREDENTIAL_FOLDER",
        conflicts_with_all = ["server_creds", "server_key", "server_chain", "spiffe_trust_bundle", "spiffe_bundles"]
    )]
    pub credential_folder: Option<PathBuf>,

    /// Private key file (kubelet's `keyPath`); use with --server-chain.
    #[arg(long, env = "DEMO_SERVER_KEY", requires = "server_chain")]
    pub server_key: Option<PathBuf>,

    /// Certificate chain file (kubelet's `certificateChainPath`); use with --server-key.
    #[arg(long, env = "DEMO_SERVER_CHAIN", requires = "server_key")]
    pub server_chain: Option<PathBuf>,

    /// Ask clients for SPIFFE certificates (issued by row-major.net/spiffe);
    /// /spiffe-echo answers 401 with the reason when none or a bad one is sent.
    #[arg(long, env = "DEMO_SERVER_ENABLE_SPIFFE_CLIENT_SUPPORT", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub enable_spiffe_client_support: bool,

    /// Require a valid, authorized SPIFFE client certificate: the TLS
    /// handshake fails without one. Implies --enable-spiffe-client-support.
    #[arg(long, env = "DEMO_SERVER_REQUIRE_SPIFFE_CLIENT", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub require_spiffe_client: bool,

    /// Trust bundle (PEM) for verifying SPIFFE client certificates of the
    /// trust domain given by --spiffe-trust-domain.
    #[arg(long, env = "DEMO_SERVER_SPIFFE_TRUST_BUNDLE")]
    pub spiffe_trust_bundle: Option<PathBuf>,

    /// Trust domain whose CAs --spiffe-trust-bundle holds.
    #[arg(
        long,
        env = "DEMO_SERVER_SPIFFE_TRUST_DOMAIN",
        default_value = "cluster.local"
    )]
    pub spiffe_trust_domain: String,

    /// More trust domains, as <trust-domain>=<bundle file>; repeatable.
    /// Each trust domain's clients verify only against its own bundle.
    #[arg(
        long = "spiffe-bundle",
        env = "DEMO_SERVER_SPIFFE_BUNDLES",
        value_delimiter = ','
    )]
    pub spiffe_bundles: Vec<String>,

    /// Allow this exact SPIFFE ID; repeatable. With no --allow-* flag, every
    /// client that verifies against a configured bundle is allowed.
    #[arg(long, env = "DEMO_SERVER_ALLOW_SPIFFE_ID", value_delimiter = ',')]
    pub allow_spiffe_id: Vec<String>,

    /// Allow every SPIFFE ID in this trust domain; repeatable.
    #[arg(long, env = "DEMO_SERVER_ALLOW_TRUST_DOMAIN", value_delimiter = ',')]
    pub allow_trust_domain: Vec<String>,

    /// Allow SPIFFE IDs under this prefix, on path-segment boundaries
    /// (for example spiffe://cluster.local/ns/payments); repeatable.
    #[arg(
        long,
        env = "DEMO_SERVER_ALLOW_SPIFFE_PATH_PREFIX",
        value_delimiter = ','
    )]
    pub allow_spiffe_path_prefix: Vec<String>,

    /// Allow clients whose verified certificate carries a PodIdentity extension
    /// naming this namespace (row-major.net/pod-identity certificates); repeatable.
    #[arg(long, env = "DEMO_SERVER_ALLOW_POD_NAMESPACE", value_delimiter = ',')]
    pub allow_pod_namespace: Vec<String>,

    /// Additionally require that the client's verified certificate names this
    /// issuing cluster (the ServiceAccount issuer URL of the cluster that issued it).
    #[arg(long, env = "DEMO_SERVER_REQUIRE_ISSUING_CLUSTER")]
    pub require_issuing_cluster: Option<String>,

    /// Plain-HTTP admin listener for /metrics, /readyz and /livez; "off" disables it.
    #[arg(long, env = "DEMO_SERVER_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: String,

    /// How long to wait at start-up for valid credentials and bundles before
    /// giving up (0s: fail at once if they are missing or invalid).
    #[arg(long, env = "DEMO_SERVER_WAIT_FOR_CREDENTIALS", default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait_for_credentials: Duration,

    /// TLS handshake deadline.
    #[arg(long, env = "DEMO_SERVER_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Deadline for reading a request's headers (HTTP/1.1); also closes
    /// HTTP/1.1 keep-alive connections idle for this long.
    #[arg(long, env = "DEMO_SERVER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Close (GOAWAY) HTTP/2 connections with no open stream for this long;
    /// keep-alive pings every half of it close dead peers.
    #[arg(long, env = "DEMO_SERVER_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Close every connection gracefully at this age (randomly shortened by up
    /// to 10%), or earlier when the client certificate it authenticated with
    /// expires.
    #[arg(long, env = "DEMO_SERVER_MAX_CONNECTION_AGE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_connection_age: Duration,

    /// Maximum simultaneous connections.
    #[arg(long, env = "DEMO_SERVER_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// How long in-flight requests may take to finish after SIGTERM / Ctrl-C.
    #[arg(long, env = "DEMO_SERVER_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Periodic re-read of the files, in addition to file-system events.
    #[arg(long, env = "DEMO_SERVER_RELOAD_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,

    /// Log format.
    #[arg(
        long,
        env = "DEMO_SERVER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}
