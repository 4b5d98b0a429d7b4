//! Command-line flags, compatible with the original Go `demo-client`
//! (`--fetch-url`, `--server-trust-bundle`, `--client-cred-bundle`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args as ClapArgs, Parser, Subcommand, ValueEnum};

/// Log output format (shared by every binary of the workspace).
pub use podtls_bin_support::logging::LogFormat;

/// Fetches a URL over TLS with podtls, periodically or as a load generator.
///
/// The server is verified by DNS name against --server-trust-bundle, or (full
/// SPIFFE) by SPIFFE ID against --spiffe-trust-bundle when --server-spiffe-id
/// or --server-trust-domain is given. Client credentials are optional and
/// hot-reload: new connections use a rotated certificate at once; pooled
/// keep-alive connections keep the certificate they were opened with until
/// they close (idle ones after --pool-idle-timeout).
#[derive(Debug, Parser)]
#[command(name = "demo-client", version)]
pub struct Args {
    /// Connection and verification settings.
    #[command(flatten)]
    pub conn: ConnArgs,

    /// Time between requests (more than zero).
    #[arg(long, env = "DEMO_CLIENT_INTERVAL", default_value = "10s", value_parser = positive_duration)]
    pub interval: Duration,

    /// Open fresh connections after this long (0s: keep them while they
    /// stay busy). A busy keep-alive connection otherwise keeps the
    /// certificates it was opened with for as long as it lives.
    #[arg(long, env = "DEMO_CLIENT_MAX_CONNECTION_AGE", default_value = "0s", value_parser = humantime::parse_duration)]
    pub max_connection_age: Duration,

    /// Stop after this many requests; exit non-zero if any failed.
    #[arg(long, env = "DEMO_CLIENT_COUNT")]
    pub count: Option<u64>,

    /// Log format.
    #[arg(
        long,
        env = "DEMO_CLIENT_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Load mode instead of periodic fetches.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate load and report requests/s, handshakes/s and latency.
    Load(LoadArgs),
}

/// Flags of `demo-client load`.
#[derive(Debug, ClapArgs)]
pub struct LoadArgs {
    /// Concurrent workers.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,

    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Open a new TLS connection (a full handshake) for every request.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub new_connection_per_request: bool,

    /// Summary format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,

    /// No progress line while running.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub quiet: bool,
}

/// Summary format of load mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A human-readable table.
    Table,
    /// One JSON object.
    Json,
}

/// How to reach and verify the server, and who we are.
#[derive(Debug, ClapArgs)]
pub struct ConnArgs {
    /// The URL to fetch (https://...).
    #[arg(long, env = "DEMO_CLIENT_FETCH_URL")]
    pub fetch_url: String,

    /// CA bundle (PEM) to verify the server's DNS name against (service-dns flow).
    #[arg(long, env = "DEMO_CLIENT_SERVER_TRUST_BUNDLE")]
    pub server_trust_bundle: Option<PathBuf>,

    /// Client credential bundle (PKCS#8 key, then chain) to present.
    #[arg(long, env = "DEMO_CLIENT_CLIENT_CRED_BUNDLE")]
    pub client_cred_bundle: Option<PathBuf>,

    /// Full SPIFFE: require exactly this server SPIFFE ID (no DNS check).
    #[arg(long, env = "DEMO_CLIENT_SERVER_SPIFFE_ID")]
    pub server_spiffe_id: Option<String>,

    /// Full SPIFFE: accept any server in this trust domain (no DNS check).
    #[arg(
        long,
        env = "DEMO_CLIENT_SERVER_TRUST_DOMAIN",
        conflicts_with = "server_spiffe_id"
    )]
    pub server_trust_domain: Option<String>,

    /// SPIFFE trust bundle (PEM) of the server's trust domain, for full SPIFFE.
    #[arg(long, env = "DEMO_CLIENT_SPIFFE_TRUST_BUNDLE")]
    pub spiffe_trust_bundle: Option<PathBuf>,

    /// SPIFFE credential folder (draft SPIFFE Filesystem Delivery standard):
    /// our credentials (`credential-bundle.private-key.x509.pem`) and one
    /// `<trust-domain>.spiffe-trust-bundle.x509.pem` per trust domain,
    /// followed as they come and go. Full SPIFFE: the server is verified
    /// against its own trust domain's bundle; --server-spiffe-id /
    /// --server-trust-domain narrow who is accepted (default: any server
    /// that verifies). Replaces --client-cred-bundle and the bundle flags.
    #[arg(
        long,
        env = "SPIFFE_CREDENTIAL_FOLDER",
        conflicts_with_all = ["client_cred_bundle", "spiffe_trust_bundle", "server_trust_bundle"]
    )]
    pub credential_folder: Option<PathBuf>,

    /// Connect to ADDR whenever the URL names HOST:PORT, still verifying HOST
    /// (like curl's --resolve); repeatable. Format: HOST:PORT:ADDR.
    #[arg(long, env = "DEMO_CLIENT_RESOLVE", value_delimiter = ',')]
    pub resolve: Vec<String>,

    /// Per-request deadline.
    #[arg(long, env = "DEMO_CLIENT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Close pooled connections idle for this long.
    #[arg(long, env = "DEMO_CLIENT_POOL_IDLE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub pool_idle_timeout: Duration,

    /// How long to wait at start-up for the credential and bundle files.
    #[arg(long, env = "DEMO_CLIENT_WAIT_FOR_CREDENTIALS", default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait_for_credentials: Duration,
}

/// Parses one `--resolve HOST:PORT:ADDR` value.
pub fn parse_resolve(spec: &str) -> Result<(String, u16, SocketAddr), String> {
    let mut parts = spec.splitn(3, ':');
    let (Some(host), Some(port), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("--resolve {spec:?}: expected HOST:PORT:ADDR"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--resolve {spec:?}: bad port {port:?}"))?;
    let ip: std::net::IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("--resolve {spec:?}: bad address {addr:?}"))?;
    Ok((host.to_string(), port, SocketAddr::new(ip, port)))
}

/// A `humantime` duration greater than zero.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than zero (e.g. 100ms)".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn parses_curl_style_resolve() {
        let (h, p, a) = parse_resolve("server.demo.svc:8443:127.0.0.1").unwrap();
        assert_eq!(
            (h.as_str(), p, a.to_string().as_str()),
            ("server.demo.svc", 8443, "127.0.0.1:8443")
        );
        let (_, _, a) = parse_resolve("x:443:[::1]").unwrap();
        assert_eq!(a.to_string(), "[::1]:443");
        assert!(parse_resolve("x:443").is_err());
        assert!(parse_resolve("x:http:1.2.3.4").is_err());
        assert!(parse_resolve("x:443:nothost").is_err());
    }

    /// The original meshtool's `https-client` command lines, exactly as its manifests
    /// write them (ahmedtd/mesh-example `example-manifests/*.yaml`, after
    /// `/meshtool https-client`).
    #[test]
    fn accepts_the_original_manifests_command_lines() {
        let a = Args::try_parse_from([
            "demo-client",
            "--fetch-url=https://server.service-dns-spiffe-client.svc/spiffe-echo",
            "--server-trust-bundle=/run/tls-config/service-dns-trust-bundle.pem",
            "--client-cred-bundle=/run/tls-config/spiffe-cred-bundle.pem",
        ])
        .unwrap();
        assert_eq!(
            a.conn.fetch_url,
            "https://server.service-dns-spiffe-client.svc/spiffe-echo"
        );
        assert_eq!(
            a.conn.server_trust_bundle.as_deref(),
            Some(Path::new("/run/tls-config/service-dns-trust-bundle.pem"))
        );
        assert_eq!(
            a.conn.client_cred_bundle.as_deref(),
            Some(Path::new("/run/tls-config/spiffe-cred-bundle.pem"))
        );
        // Go's https-client polls every 10 s; so do we by default.
        assert_eq!(a.interval, Duration::from_secs(10));

        let a = Args::try_parse_from([
            "demo-client",
            "--fetch-url=https://server.service-dns-unauth-client.svc/healthz",
            "--server-trust-bundle=/var/run/service-dns-trustbundle/trust.pem",
        ])
        .unwrap();
        assert_eq!(
            a.conn.server_trust_bundle.as_deref(),
            Some(Path::new("/var/run/service-dns-trustbundle/trust.pem"))
        );
        assert!(a.conn.client_cred_bundle.is_none());
    }

    #[test]
    fn boolean_flags_take_go_style_values() {
        let load = |flags: &[&str]| {
            let mut argv = vec!["demo-client", "--fetch-url=https://x.example/", "load"];
            argv.extend_from_slice(flags);
            Args::try_parse_from(argv).map(|a| match a.command {
                Some(Command::Load(l)) => (l.quiet, l.new_connection_per_request),
                None => panic!("load mode expected"),
            })
        };
        assert_eq!(load(&[]).unwrap(), (false, false));
        assert_eq!(load(&["--quiet"]).unwrap(), (true, false));
        assert_eq!(load(&["--quiet=true"]).unwrap(), (true, false));
        assert_eq!(load(&["--quiet=false"]).unwrap(), (false, false));
        assert_eq!(
            load(&["--new-connection-per-request=true", "--quiet=false"]).unwrap(),
            (false, true)
        );
        assert!(load(&["--quiet=yes please"]).is_err());
        // As Go's `flag`, a boolean never takes the next argument as its value.
        assert!(load(&["--quiet", "false"]).is_err());
    }

    #[test]
    fn a_zero_interval_is_refused_by_the_parser_not_a_panic() {
        let parse = |interval: &str| {
            Args::try_parse_from([
                "demo-client",
                "--fetch-url=https://x.example/",
                &format!("--interval={interval}"),
            ])
        };
        let err = parse("0s").unwrap_err().to_string();
        assert!(err.contains("more than zero"), "{err}");
        assert_eq!(parse("100ms").unwrap().interval, Duration::from_millis(100));
    }
}
