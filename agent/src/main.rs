//! `podtls-agent`: keeps a SPIFFE credential folder fresh through
//! CertificateSigningRequests, for clusters without the Pod Certificates API.
//!
//! ```text
//! podtls-agent --signer-name=row-major.net/spiffe --key-type=ECDSAP256 \
//!     --credential-folder=/var/run/podtls --trust-bundle-dir=/var/run/podtls-bundles \
//!     --token-file=/var/run/secrets/tokens/podtls --trust-domain=cluster-a.test \
//!     [--federates-with=cluster-b.test]... [--expiration-seconds=86400] \
//!     [--api-server=https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT] \
//!     [--api-ca-file=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt] \
//!     [--pod-name=$POD_NAME --namespace=$POD_NAMESPACE] [--log-format=json]
//! podtls-agent probe --credential-folder=/var/run/podtls
//! ```
//!
//! `probe` exits 0 iff the folder holds a complete, currently valid credential
//! bundle (the native sidecar's startupProbe). `--renew-after` is for tests
//! only: it renews that long after receipt instead of at 50-75% of the
//! validity (the API's minimum validity is 600 s, too long for a test to wait
//! through).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use podtls_agent::{AgentConfig, ApiEndpoint, Backoff, KeyType, MIN_EXPIRATION_SECONDS};

#[derive(Parser, Debug)]
#[command(
    name = "podtls-agent",
    version,
    about = "Keeps a SPIFFE credential folder fresh through CertificateSigningRequests (clusters without Pod Certificates)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, require_equals = true)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Exit 0 iff the credential folder holds a complete, currently valid credential bundle.
    Probe {
        /// The credential folder.
        #[arg(long, require_equals = true)]
        credential_folder: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The signer name for spec.signerName (e.g. row-major.net/spiffe).
    #[arg(long, require_equals = true)]
    signer_name: Option<String>,
    /// Private key type: ECDSAP256, ECDSAP384, ED25519, RSA3072 or RSA4096.
    #[arg(long, require_equals = true, default_value = "ECDSAP256")]
    key_type: KeyType,
    /// The credential folder to write (an in-memory emptyDir shared with the app).
    #[arg(long, require_equals = true)]
    credential_folder: Option<PathBuf>,
    /// The projected podtls-trust-bundles ConfigMap (`<td>.spiffe-trust-bundle.x509.pem` keys).
    #[arg(long, require_equals = true)]
    trust_bundle_dir: Option<PathBuf>,
    /// The pod-bound ServiceAccount token (projected; re-read for every request).
    #[arg(long, require_equals = true)]
    token_file: Option<PathBuf>,
    /// The pod's own trust domain (its bundle must be in --trust-bundle-dir).
    #[arg(long, require_equals = true)]
    trust_domain: Option<String>,
    /// A federated trust domain whose bundle goes into the folder (empty if unpublished). Repeatable.
    #[arg(long, require_equals = true)]
    federates_with: Vec<String>,
    /// spec.expirationSeconds (at least 600, the API's minimum).
    #[arg(long, require_equals = true, default_value_t = 86400)]
    expiration_seconds: i32,
    /// The API server (default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT).
    #[arg(long, require_equals = true)]
    api_server: Option<String>,
    /// CA bundle of the API server.
    #[arg(
        long,
        require_equals = true,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    api_ca_file: PathBuf,
    /// The pod's name (default: $POD_NAME, else the token's claims).
    #[arg(long, require_equals = true, env = "POD_NAME")]
    pod_name: Option<String>,
    /// The pod's namespace (default: $POD_NAMESPACE, else the token's claims).
    #[arg(long, require_equals = true, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// How long to wait for one CSR's certificate before filing a new one.
    #[arg(long, require_equals = true, default_value = "5m", value_parser = humantime::parse_duration)]
    wait_timeout: Duration,
    /// TESTS ONLY: renew this long after the certificate was received (capped at the
    /// jittered 50-75% point), to see rotations within a test.
    #[arg(long, require_equals = true, value_parser = humantime::parse_duration, hide_short_help = true)]
    renew_after: Option<Duration>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn required<T>(v: Option<T>, flag: &str) -> anyhow::Result<T> {
    v.with_context(|| format!("{flag} is required"))
}

fn config(a: RunArgs) -> anyhow::Result<AgentConfig> {
    let parse_td = |s: &str| {
        podtls::parse_trust_domain(s).map_err(|e| anyhow::anyhow!("trust domain {s:?}: {e}"))
    };
    let trust_domain = parse_td(&required(a.trust_domain, "--trust-domain")?)?;
    let federates_with = a
        .federates_with
        .iter()
        .map(|s| parse_td(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.expiration_seconds < MIN_EXPIRATION_SECONDS {
        bail!(
            "--expiration-seconds={} is below the API's minimum of {MIN_EXPIRATION_SECONDS}",
            a.expiration_seconds
        );
    }
    let api_server = match a.api_server {
        Some(s) => s,
        None => {
            let host = std::env::var("KUBERNETES_SERVICE_HOST")
                .context("--api-server not given and KUBERNETES_SERVICE_HOST not set")?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        }
    };
    let token_file = required(a.token_file, "--token-file")?;
    let claims = podtls_agent::read_token(&token_file)
        .ok()
        .and_then(|t| podtls_agent::pod_from_claims(&t));
    let (namespace, pod_name) = match (a.namespace, a.pod_name, claims) {
        (Some(ns), Some(p), _) => (ns, p),
        (ns, p, Some((cns, cp))) => (ns.unwrap_or(cns), p.unwrap_or(cp)),
        _ => bail!("the pod's name and namespace: set --pod-name/--namespace (or POD_NAME/POD_NAMESPACE), or use a pod-bound token"),
    };
    Ok(AgentConfig {
        endpoint: ApiEndpoint {
            url: api_server,
            ca_file: a.api_ca_file,
            token_file,
        },
        signer_name: required(a.signer_name, "--signer-name")?,
        key_type: a.key_type,
        credential_folder: required(a.credential_folder, "--credential-folder")?,
        trust_bundle_dir: required(a.trust_bundle_dir, "--trust-bundle-dir")?,
        trust_domain,
        federates_with,
        expiration_seconds: a.expiration_seconds,
        namespace,
        pod_name,
        renew_after: a.renew_after,
        wait: a.wait_timeout,
        backoff: Backoff::default(),
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Some(Command::Probe { credential_folder }) = cli.command {
        return match podtls_agent::probe(&credential_folder, std::time::SystemTime::now()) {
            Ok(()) => Ok(()),
            Err(e) => {
                eprintln!("{}: {e}", credential_folder.display());
                std::process::exit(1);
            }
        };
    }
    let cfg = config(cli.run)?;
    tracing::info!(
        signer = %cfg.signer_name,
        key_type = %cfg.key_type,
        trust_domain = %cfg.trust_domain,
        namespace = %cfg.namespace,
        pod = %cfg.pod_name,
        api_server = %cfg.endpoint.url,
        folder = %cfg.credential_folder.display(),
        "podtls-agent starting"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(podtls_agent::run(cfg, shutdown_signal(), |_| {}))?;
    Ok(())
}
