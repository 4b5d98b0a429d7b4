//! `signer`: the PodCertificateRequest signer for `row-major.net/service-dns`,
//! `row-major.net/spiffe` and `row-major.net/pod-identity`, a drop-in for the original
//! `meshtool`.
//!
//! ```text
//! signer ca list    POOL [--max-lifetime 24h] [--output table|json]
//! signer ca add     POOL --ca-id ID [--key-type ED25519] [--ca-validity-days 365]
//! signer ca promote POOL --ca-id ID
//! signer ca retire  POOL --ca-id ID [--max-lifetime 24h] [--force]
//!   POOL: --namespace NS --name NAME [--kubeconfig PATH]  (the Secret, key `pool`)
//!       | --file PATH                                     (a pool JSON file)
//! signer make-ca-pool-secret --namespace NS --name NAME --ca-id ID [--key-type ED25519]
//!                            [--append] [--out-file PATH | --kubeconfig PATH]
//! signer set-signing-ca --namespace NS --name NAME --ca-id ID [--out-file PATH | --kubeconfig PATH]
//! signer bundle-document --trust-domain TD [--kubeconfig PATH] [--out-file PATH]
//!                        [--pool-file POOL --sequence N] [--refresh-hint 5m]
//! signer controller [--kubeconfig PATH | --in-cluster] [--enable-service-dns-signer
//!                   --service-dns-ca-pool FILE] [--enable-spiffe-signer
//!                   --spiffe-trust-domain TD --spiffe-ca-pool FILE] [--sharding-...]
//!                   [--enable-pod-identity-signer --pod-identity-ca-pool FILE
//!                   [--pod-identity-trust-domain TD]]
//!                   [--service-dns-key-types T,..] [--spiffe-key-types T,..]
//!                   [--pod-identity-key-types T,..] [--dns-suffix S]... [--cluster-domain D]
//!                   [--issuer-url discover|off|URL]
//!                   [--admin-listen 0.0.0.0:9090] [--ca-expiry-warning 30d]
//!                   [--spiffe-namespace-trust-domain NS=TD,.. --spiffe-trust-domain-ca-pool TD=FILE,..]
//!                   [--enable-federation [--federation-web-ca PEM] [--federation-*-refresh D]]
//!                   [--bundle-endpoint-listen ADDR [--bundle-endpoint-profile https_web|https_spiffe]
//!                    [--bundle-endpoint-cert PEM --bundle-endpoint-key PEM] [--bundle-endpoint-spiffe-id ID]]
//! ```
//!
//! meshtool's `--enable-pod-identity-signer` and `--pod-identity-ca-pool` run the
//! pod-identity signer (meshtool's own returned "unimplemented"): the PodIdentity
//! extension, the SPIFFE ID (trust domain `--pod-identity-trust-domain`, default
//! `--spiffe-trust-domain`), the DNS names of the Services selecting the pod, CN = pod
//! name. A lone `--pod-identity-ca-pool` is ignored with a warning, as before.
//!
//! Every flag can also be set through the environment variable shown in `--help`.
//! Boolean flags accept `--flag`, `--flag=true` and `--flag=false`, like Go's `flag`.
//!
//! `ca` is the CA lifecycle (see the README's rotation runbook): `add` a CA (trusted, not
//! signing), wait until every trust bundle carries it, `promote` it, wait until the old
//! CA's certificates have expired (`list` shows until when), `retire` the old CA.
//! `retire` refuses the signing CA and, unless `--force`, a CA whose certificates may
//! still be valid.
//!
//! `make-ca-pool-secret` creates the Secret NS/NAME with the CA pool JSON under key `pool`
//! (or, with `--out-file`, writes the JSON to a file); with `--append` it adds a new,
//! not-yet-signing CA to the existing pool (as `ca add`). `set-signing-ca` is `ca promote`
//! under the original name. `controller` runs the signers (see `signer::controller`); it
//! serves `/metrics`, `/readyz` and `/livez` on `--admin-listen`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use clap::{ArgAction, Args, Parser, Subcommand};
use podtls_bin_support::logging::LogFormat;
use signer::{
    generate_ca, parse_trust_domain, CaPool, KeyType, NamespaceAssignment, SignerConfig,
    TrustDomainMap,
};

use cli::pool_store::{update_pool_secret, PoolStore};

mod cli;

#[derive(Parser, Debug)]
#[command(
    name = "signer",
    version,
    about = "PodCertificateRequest signer and CA pool tool (meshtool-compatible)"
)]
struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SIGNER_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The CA lifecycle on a pool Secret or file: list, add, promote, retire.
    #[command(subcommand)]
    Ca(cli::ca::CaCommand),
    /// Make a new CA pool for a signer: into a Secret (key `pool`) or, with --out-file, a file.
    MakeCaPoolSecret(MakeCaPoolSecret),
    /// Mark a CA of a pool as the signing CA (CA rotation step 2), in the Secret or, with
    /// --out-file, a file. The same as `ca promote`.
    SetSigningCa(SetSigningCa),
    /// Run the signer controller.
    Controller(Box<Controller>),
    /// Write an own trust domain's SPIFFE bundle document (the bundle endpoint's JSON) as
    /// a static file, e.g. for upload next to the cluster's OIDC discovery document.
    BundleDocument(cli::bundle_document::BundleDocumentArgs),
}

#[derive(Args, Debug)]
struct MakeCaPoolSecret {
    /// Path to the kubeconfig file (for writing the Secret; default: $KUBECONFIG,
    /// ~/.kube/config, or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Create the Secret in this namespace.
    #[arg(long, env = "SIGNER_NAMESPACE")]
    namespace: String,
    /// Create the Secret with this name.
    #[arg(long, env = "SIGNER_NAME")]
    name: String,
    /// The ID of the new CA in the pool.
    #[arg(long, env = "SIGNER_CA_ID")]
    ca_id: String,
    /// Key type of the new CA: ED25519 (as meshtool), ECDSAP256, ECDSAP384, ECDSAP521,
    /// RSA3072 or RSA4096.
    #[arg(long, env = "SIGNER_KEY_TYPE", default_value = "ED25519")]
    key_type: KeyType,
    /// Validity of the new CA's root certificate, in days.
    #[arg(long, env = "SIGNER_CA_VALIDITY_DAYS", default_value_t = 365)]
    ca_validity_days: u32,
    /// Write the pool JSON to this file instead of a Secret (e.g. for
    /// `kubectl create secret generic NAME --from-file=pool=PATH`).
    #[arg(long, env = "SIGNER_OUT_FILE")]
    out_file: Option<PathBuf>,
    /// If the Secret (or --out-file) exists, add the new CA to its pool (trusted, not
    /// signing) instead of refusing to overwrite it. This is step one of a CA rotation.
    #[arg(long, env = "SIGNER_APPEND", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    append: bool,
}

#[derive(Args, Debug)]
struct SetSigningCa {
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the pool Secret.
    #[arg(long, env = "SIGNER_NAMESPACE")]
    namespace: String,
    /// Name of the pool Secret.
    #[arg(long, env = "SIGNER_NAME")]
    name: String,
    /// The ID of the CA (already in the pool) to sign with from now on.
    #[arg(long, env = "SIGNER_CA_ID")]
    ca_id: String,
    /// Change the pool in this file instead of the Secret.
    #[arg(long, env = "SIGNER_OUT_FILE")]
    out_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct Controller {
    /// Path to the kubeconfig file.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Use the in-cluster service account instead of a kubeconfig.
    #[arg(long, env = "SIGNER_IN_CLUSTER", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    in_cluster: bool,
    /// (Work sharding) The namespace the controller runs in.
    #[arg(long, env = "SIGNER_SHARDING_POD_NAMESPACE", default_value = "")]
    sharding_pod_namespace: String,
    /// (Work sharding) The controller's pod name.
    #[arg(long, env = "SIGNER_SHARDING_POD_NAME", default_value = "")]
    sharding_pod_name: String,
    /// (Work sharding) The controller's pod UID.
    #[arg(long, env = "SIGNER_SHARDING_POD_UID", default_value = "")]
    sharding_pod_uid: String,
    /// (Work sharding) The application name that disambiguates Leases.
    #[arg(long, env = "SIGNER_SHARDING_APPLICATION_NAME", default_value = "")]
    sharding_application_name: String,
    /// Also sign certificates.k8s.io/v1 CertificateSigningRequests for the enabled
    /// signers' names, filed by the in-pod agent with its pod's own ServiceAccount
    /// token (clusters without Pod Certificates), and publish the trust bundle
    /// ConfigMap podtls-trust-bundles in every namespace labelled
    /// podtls.row-major.net/inject=enabled. Needs RBAC for CSRs, their approval and
    /// status, approve/sign on the signer names, and ConfigMaps (see
    /// example-manifests/controller/controller.yaml). With it the controller also runs
    /// on a cluster that serves no PodCertificateRequests.
    #[arg(long, env = "SIGNER_ENABLE_CSR_SIGNING", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    enable_csr_signing: bool,
    /// Run the service-dns signer.
    #[arg(long, env = "SIGNER_ENABLE_SERVICE_DNS_SIGNER", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    enable_service_dns_signer: bool,
    /// File with the service-dns signer's CA pool JSON.
    #[arg(long, env = "SIGNER_SERVICE_DNS_CA_POOL")]
    service_dns_ca_pool: Option<PathBuf>,
    /// Name of the service-dns signer.
    #[arg(long, env = "SIGNER_SERVICE_DNS_SIGNER_NAME", default_value = signer::SERVICE_DNS_SIGNER_NAME)]
    service_dns_signer_name: String,
    /// Key types the service-dns signer accepts (comma-separated; default: all six). A
    /// request for another type is denied with reason UnsupportedKeyType.
    #[arg(long, env = "SIGNER_SERVICE_DNS_KEY_TYPES", value_delimiter = ',')]
    service_dns_key_types: Vec<KeyType>,
    /// Run the spiffe signer.
    #[arg(long, env = "SIGNER_ENABLE_SPIFFE_SIGNER", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    enable_spiffe_signer: bool,
    /// The SPIFFE trust domain of issued certificates (required with the spiffe signer).
    #[arg(long, env = "SIGNER_SPIFFE_TRUST_DOMAIN")]
    spiffe_trust_domain: Option<String>,
    /// File with the spiffe signer's CA pool JSON.
    #[arg(long, env = "SIGNER_SPIFFE_CA_POOL")]
    spiffe_ca_pool: Option<PathBuf>,
    /// Name of the spiffe signer.
    #[arg(long, env = "SIGNER_SPIFFE_SIGNER_NAME", default_value = signer::SPIFFE_SIGNER_NAME)]
    spiffe_signer_name: String,
    /// Key types the spiffe signer accepts (comma-separated; default: all six). A request
    /// for another type is denied with reason UnsupportedKeyType.
    #[arg(long, env = "SIGNER_SPIFFE_KEY_TYPES", value_delimiter = ',')]
    spiffe_key_types: Vec<KeyType>,
    /// Put the pods of a namespace in another trust domain than --spiffe-trust-domain:
    /// NAMESPACE=TRUST_DOMAIN (repeat, or comma-separate). Every such trust domain needs
    /// its own CA pool (--spiffe-trust-domain-ca-pool); namespaces not named stay in
    /// --spiffe-trust-domain.
    #[arg(
        long,
        env = "SIGNER_SPIFFE_NAMESPACE_TRUST_DOMAIN",
        value_delimiter = ','
    )]
    spiffe_namespace_trust_domain: Vec<NamespaceAssignment>,
    /// The CA pool file of a trust domain named in --spiffe-namespace-trust-domain:
    /// TRUST_DOMAIN=FILE (repeat, or comma-separate).
    #[arg(long, env = "SIGNER_SPIFFE_TRUST_DOMAIN_CA_POOL", value_delimiter = ',', value_parser = parse_pool_file)]
    spiffe_trust_domain_ca_pool: Vec<(String, PathBuf)>,
    /// Federate the spiffe signer's trust domains with the peers named by
    /// ClusterFederatedTrustDomain resources (federation-crd.yaml): one ClusterTrustBundle per
    /// (own trust domain, peer trust domain) pair.
    #[arg(long, env = "SIGNER_ENABLE_FEDERATION", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    enable_federation: bool,
    /// PEM file of extra CA certificates trusted for https_web bundle endpoints (in
    /// addition to the Web PKI roots).
    #[arg(long, env = "SIGNER_FEDERATION_WEB_CA")]
    federation_web_ca: Option<PathBuf>,
    /// The shortest bundle refresh period, whatever the peer's spiffe_refresh_hint (and
    /// the first retry after an error).
    #[arg(long, env = "SIGNER_FEDERATION_MIN_REFRESH", default_value = "30s", value_parser = humantime::parse_duration)]
    federation_min_refresh: Duration,
    /// The longest bundle refresh period, whatever the hint (and the backoff cap).
    #[arg(long, env = "SIGNER_FEDERATION_MAX_REFRESH", default_value = "1h", value_parser = humantime::parse_duration)]
    federation_max_refresh: Duration,
    /// The refresh period of a bundle without a hint, and of static bundles.
    #[arg(long, env = "SIGNER_FEDERATION_DEFAULT_REFRESH", default_value = "5m", value_parser = humantime::parse_duration)]
    federation_default_refresh: Duration,
    /// The time limit of one bundle endpoint fetch.
    #[arg(long, env = "SIGNER_FEDERATION_FETCH_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    federation_fetch_timeout: Duration,
    /// The largest bundle document accepted from an endpoint, in bytes.
    #[arg(long, env = "SIGNER_FEDERATION_MAX_BUNDLE_BYTES", default_value_t = signer::controller::DEFAULT_MAX_BYTES)]
    federation_max_bundle_bytes: usize,
    /// Serve a SPIFFE bundle endpoint (the document of one own trust domain) on this
    /// address, e.g. 0.0.0.0:8443; "off" (default) serves none.
    #[arg(long, env = "SIGNER_BUNDLE_ENDPOINT_LISTEN", default_value = "off")]
    bundle_endpoint_listen: String,
    /// The own trust domain the bundle endpoint serves (default: --spiffe-trust-domain).
    #[arg(long, env = "SIGNER_BUNDLE_ENDPOINT_TRUST_DOMAIN")]
    bundle_endpoint_trust_domain: Option<String>,
    /// How the bundle endpoint authenticates itself: https_web (--bundle-endpoint-cert and
    /// --bundle-endpoint-key) or https_spiffe (an SVID the signer issues to itself).
    #[arg(long, env = "SIGNER_BUNDLE_ENDPOINT_PROFILE", default_value = "https_spiffe", value_parser = ["https_web", "https_spiffe"])]
    bundle_endpoint_profile: String,
    /// https_web: the serving certificate chain (PEM, leaf first; hot-reloaded).
    #[arg(long, env = "SIGNER_BUNDLE_ENDPOINT_CERT")]
    bundle_endpoint_cert: Option<PathBuf>,
    /// https_web: the serving key (PEM; hot-reloaded).
    #[arg(long, env = "SIGNER_BUNDLE_ENDPOINT_KEY")]
    bundle_endpoint_key: Option<PathBuf>,
    /// https_spiffe: the endpoint's SPIFFE ID, which peers configure as endpointSPIFFEID
    /// (default: spiffe://<trust domain>/podtls-signer/bundle-endpoint).
    #[arg(long, env = "SIGNER_BUNDLE_ENDPOINT_SPIFFE_ID")]
    bundle_endpoint_spiffe_id: Option<String>,
    /// spiffe_refresh_hint of the served document.
    #[arg(long, env = "SIGNER_BUNDLE_ENDPOINT_REFRESH_HINT", default_value = "5m", value_parser = humantime::parse_duration)]
    bundle_endpoint_refresh_hint: Duration,
    /// Run the pod-identity signer (row-major.net/pod-identity), as meshtool's flag: the
    /// PodIdentity extension, the SPIFFE ID, the DNS names of the Services selecting the
    /// pod, CN = pod name.
    #[arg(long, env = "SIGNER_ENABLE_POD_IDENTITY_SIGNER", num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    enable_pod_identity_signer: bool,
    /// File with the pod-identity signer's CA pool JSON, as meshtool's flag.
    #[arg(long, env = "SIGNER_POD_IDENTITY_CA_POOL")]
    pod_identity_ca_pool: Option<PathBuf>,
    /// Name of the pod-identity signer.
    #[arg(long, env = "SIGNER_POD_IDENTITY_SIGNER_NAME", default_value = signer::POD_IDENTITY_SIGNER_NAME)]
    pod_identity_signer_name: String,
    /// The SPIFFE trust domain of the pod-identity signer's certificates (default: the
    /// value of --spiffe-trust-domain).
    #[arg(long, env = "SIGNER_POD_IDENTITY_TRUST_DOMAIN")]
    pod_identity_trust_domain: Option<String>,
    /// Key types the pod-identity signer accepts (comma-separated; default: all six).
    #[arg(long, env = "SIGNER_POD_IDENTITY_KEY_TYPES", value_delimiter = ',')]
    pod_identity_key_types: Vec<KeyType>,
    /// Also issue `<service>.<namespace>.svc.<SUFFIX>` for every Service name (and
    /// `<hostname>.<subdomain>.<namespace>.svc.<SUFFIX>` for per-pod names), for
    /// clusters sharing a DNS server; repeatable (service-dns and pod-identity).
    #[arg(long = "dns-suffix", env = "SIGNER_DNS_SUFFIX", value_delimiter = ',')]
    dns_suffixes: Vec<String>,
    /// Also issue the fully qualified `<service>.<namespace>.svc.<DOMAIN>` (e.g.
    /// cluster.local); off unless set (service-dns and pod-identity).
    #[arg(long, env = "SIGNER_CLUSTER_DOMAIN")]
    cluster_domain: Option<String>,
    /// The cluster named in every certificate (Subject Information Access): "discover"
    /// reads the `issuer` of the API server's /.well-known/openid-configuration at
    /// start-up, "off" names none, or the ServiceAccount issuer URL itself.
    #[arg(long, env = "SIGNER_ISSUER_URL", default_value = "discover")]
    issuer_url: signer::controller::IssuerSource,
    /// Address of the plain-HTTP admin endpoint (/metrics, /readyz, /livez); "off" serves none.
    #[arg(long, env = "SIGNER_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: String,
    /// How often the CA pool files are re-read even without a change event.
    #[arg(long, env = "SIGNER_POOL_RELOAD_PERIOD", default_value = "30s", value_parser = humantime::parse_duration)]
    pool_reload_period: Duration,
    /// Requests reconciled concurrently per signer.
    #[arg(long, env = "SIGNER_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Log a warning (then hourly) while a signer's signing CA expires within this
    /// window; each CA's notAfter is also the metric podtls_signer_ca_not_after_seconds.
    #[arg(long, env = "SIGNER_CA_EXPIRY_WARNING", default_value = "30days", value_parser = humantime::parse_duration)]
    ca_expiry_warning: Duration,
    #[command(flatten)]
    injection: cli::injection::InjectionArgs,
}

fn main() -> ExitCode {
    // One process-wide rustls provider (aws-lc-rs) for the Kubernetes client.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    podtls_bin_support::logging::init(cli.log_format, "info");
    let result = match cli.command {
        Command::Ca(command) => cli::ca::run(&command),
        Command::MakeCaPoolSecret(args) => make_ca_pool_secret(&args),
        Command::SetSigningCa(args) => set_signing_ca(&args),
        Command::Controller(args) => controller(&args),
        Command::BundleDocument(args) => bundle_document(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "signer failed");
            ExitCode::FAILURE
        }
    }
}

fn make_ca_pool_secret(args: &MakeCaPoolSecret) -> anyhow::Result<()> {
    let validity = Duration::from_secs(u64::from(args.ca_validity_days) * 24 * 3600);
    let generate = || {
        let now = SystemTime::now();
        generate_ca(&args.ca_id, args.key_type, now, validity).map(|ca| (ca, now))
    };
    let Some(path) = &args.out_file else {
        return runtime()?.block_on(async {
            let client = client(args.kubeconfig.as_deref(), false).await?;
            let pool = update_pool_secret(&client, &args.namespace, &args.name, |existing| {
                let (ca, now) = generate()?;
                match existing {
                    None => Ok(CaPool::single(ca)),
                    Some(mut pool) if args.append => {
                        pool.add_ca(ca, now)?;
                        Ok(pool)
                    }
                    Some(_) => bail!(
                        "Secret {}/{} already exists; pass --append to add CA {:?} to its pool for rotation",
                        args.namespace,
                        args.name,
                        args.ca_id
                    ),
                }
            })
            .await?;
            tracing::info!(
                secret = %format!("{}/{}", args.namespace, args.name),
                ca_id = %args.ca_id,
                key_type = %args.key_type,
                cas = pool.cas().len(),
                signing_ca = %pool.signing_ca().id(),
                "wrote CA pool Secret"
            );
            Ok(())
        });
    };
    let store = PoolStore::File(path.clone());
    let pool = match std::fs::symlink_metadata(path) {
        Ok(_) if args.append => store.update(|mut pool| {
            let (ca, now) = generate()?;
            pool.add_ca(ca, now)?;
            Ok(pool)
        })?,
        Ok(_) => bail!(
            "{} already exists; pass --append to add CA {:?} to its pool for rotation",
            path.display(),
            args.ca_id
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pool = CaPool::single(generate()?.0);
            store.write_file(&pool)?;
            pool
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    tracing::info!(
        path = %path.display(),
        ca_id = %args.ca_id,
        key_type = %args.key_type,
        cas = pool.cas().len(),
        signing_ca = %pool.signing_ca().id(),
        "wrote CA pool"
    );
    Ok(())
}

fn set_signing_ca(args: &SetSigningCa) -> anyhow::Result<()> {
    let store = match &args.out_file {
        Some(path) => PoolStore::File(path.clone()),
        None => PoolStore::Secret {
            kubeconfig: args.kubeconfig.clone(),
            namespace: args.namespace.clone(),
            name: args.name.clone(),
        },
    };
    cli::ca::promote(&store, &args.ca_id)
}

fn bundle_document(args: &cli::bundle_document::BundleDocumentArgs) -> anyhow::Result<()> {
    let doc = match &args.pool_file {
        Some(path) => cli::bundle_document::from_pool_file(args, path)?,
        None => runtime()?.block_on(async {
            let client = client(args.kubeconfig.as_deref(), false).await?;
            cli::bundle_document::from_cluster(args, &client).await
        })?,
    };
    match &args.out_file {
        Some(path) => {
            std::fs::write(path, doc.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), trust_domain = %args.trust_domain, "wrote the bundle document");
        }
        None => println!("{doc}"),
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A client from `--in-cluster`, `--kubeconfig PATH`, or the usual inference
/// ($KUBECONFIG, ~/.kube/config, in-cluster).
async fn client(kubeconfig: Option<&Path>, in_cluster: bool) -> anyhow::Result<kube::Client> {
    let config = if in_cluster {
        kube::Config::incluster().context("in-cluster configuration")?
    } else if let Some(path) = kubeconfig {
        let kc = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("kubeconfig {}", path.display()))?
    } else {
        kube::Config::infer()
            .await
            .context("no --kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster configuration")?
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

fn controller(args: &Controller) -> anyhow::Result<()> {
    use signer::controller::{ControllerConfig, ShardingConfig, SignerSetup};

    if let (false, Some(path)) = (args.enable_pod_identity_signer, &args.pod_identity_ca_pool) {
        tracing::warn!(path = %path.display(), "--pod-identity-ca-pool is ignored without --enable-pod-identity-signer");
    }
    if !args.enable_service_dns_signer
        && !args.enable_spiffe_signer
        && !args.enable_pod_identity_signer
    {
        bail!(
            "enable at least one signer: --enable-service-dns-signer, --enable-spiffe-signer and/or --enable-pod-identity-signer"
        );
    }
    let mut dns = signer::DnsNameOptions::new();
    for suffix in &args.dns_suffixes {
        dns = dns.with_suffix(suffix)?;
    }
    if let Some(domain) = &args.cluster_domain {
        dns = dns.with_cluster_domain(domain)?;
    }
    let mut signers = Vec::new();
    if args.enable_service_dns_signer {
        let path = args
            .service_dns_ca_pool
            .as_deref()
            .context("--service-dns-ca-pool must be set with --enable-service-dns-signer")?;
        signers.push(SignerSetup {
            config: with_key_types(
                SignerConfig::service_dns()
                    .with_name(&args.service_dns_signer_name)
                    .with_dns(dns.clone()),
                &args.service_dns_key_types,
            ),
            pool_file: path.to_path_buf(),
        });
    }
    if args.enable_spiffe_signer {
        let td = args
            .spiffe_trust_domain
            .as_deref()
            .context("--spiffe-trust-domain must be set with --enable-spiffe-signer")?;
        let td = parse_trust_domain(td)?;
        let path = args
            .spiffe_ca_pool
            .as_deref()
            .context("--spiffe-ca-pool must be set with --enable-spiffe-signer")?;
        signers.push(SignerSetup {
            config: with_key_types(
                SignerConfig::spiffe(td).with_name(&args.spiffe_signer_name),
                &args.spiffe_key_types,
            ),
            pool_file: path.to_path_buf(),
        });
    }
    if args.enable_pod_identity_signer {
        let td = args
            .pod_identity_trust_domain
            .as_deref()
            .or(args.spiffe_trust_domain.as_deref())
            .context("--pod-identity-trust-domain (or --spiffe-trust-domain) must be set with --enable-pod-identity-signer")?;
        let td = parse_trust_domain(td)?;
        let path = args
            .pod_identity_ca_pool
            .as_deref()
            .context("--pod-identity-ca-pool must be set with --enable-pod-identity-signer")?;
        signers.push(SignerSetup {
            config: with_key_types(
                SignerConfig::pod_identity(td)
                    .with_name(&args.pod_identity_signer_name)
                    .with_dns(dns.clone()),
                &args.pod_identity_key_types,
            ),
            pool_file: path.to_path_buf(),
        });
    }
    let trust_domains = trust_domains_config(args)?;
    for (i, a) in signers.iter().enumerate() {
        if let Some(b) = signers[i + 1..]
            .iter()
            .find(|b| b.config.name == a.config.name)
        {
            bail!("two signers have the same name {:?}", b.config.name);
        }
    }
    // A missing or malformed pool is not fatal (the Secret may be created later): the
    // pool watcher reports it, naming the file, and the controller stays unready.
    let sharding_fields = [
        &args.sharding_pod_namespace,
        &args.sharding_pod_name,
        &args.sharding_application_name,
    ];
    let sharding = if sharding_fields.iter().all(|f| f.is_empty()) {
        None
    } else if sharding_fields.iter().any(|f| f.is_empty()) {
        bail!("--sharding-pod-namespace, --sharding-pod-name and --sharding-application-name must be set together (--sharding-pod-uid too, for the Lease's owner reference)");
    } else {
        Some(ShardingConfig {
            namespace: args.sharding_pod_namespace.clone(),
            pod_name: args.sharding_pod_name.clone(),
            pod_uid: args.sharding_pod_uid.clone(),
            application: args.sharding_application_name.clone(),
        })
    };
    let admin_listen = match args.admin_listen.as_str() {
        "off" | "" => None,
        addr => Some(
            addr.parse()
                .with_context(|| format!("--admin-listen {addr:?} is not an address:port"))?,
        ),
    };
    let injection = args.injection.setup(
        &args.sharding_pod_namespace,
        args.enable_service_dns_signer,
        args.enable_spiffe_signer.then_some((
            args.spiffe_signer_name.as_str(),
            args.spiffe_trust_domain.as_deref().unwrap_or_default(),
        )),
        trust_domains.as_ref().map(|c| &c.map),
    )?;
    let config = ControllerConfig {
        injection,
        signers,
        sharding,
        admin_listen,
        pool_reload_period: args.pool_reload_period,
        concurrency: args.concurrency.max(1),
        reporter: "podtls-signer".into(),
        ca_expiry_warning: args.ca_expiry_warning,
        trust_domains,
        federation: federation_settings(args)?,
        bundle_endpoint: bundle_endpoint_config(args)?,
        issuer: args.issuer_url.clone(),
        csr_signing: args.enable_csr_signing,
    };
    runtime()?.block_on(async {
        let client = client(args.kubeconfig.as_deref(), args.in_cluster).await?;
        signer::controller::run(client, config).await?;
        Ok(())
    })
}
/// `TRUST_DOMAIN=FILE`.
fn parse_pool_file(given: &str) -> Result<(String, PathBuf), String> {
    let (td, path) = given
        .split_once('=')
        .ok_or_else(|| format!("{given:?}: expected TRUST_DOMAIN=FILE"))?;
    let td = parse_trust_domain(td).map_err(|e| e.to_string())?;
    if path.is_empty() {
        return Err(format!("{given:?}: the file is empty"));
    }
    Ok((td.to_string(), PathBuf::from(path)))
}

/// The bundle endpoint, with --bundle-endpoint-listen.
fn bundle_endpoint_config(
    args: &Controller,
) -> anyhow::Result<Option<signer::controller::BundleEndpointConfig>> {
    use signer::controller::ServingProfile;
    let listen = match args.bundle_endpoint_listen.as_str() {
        "off" | "" => return Ok(None),
        addr => addr
            .parse()
            .with_context(|| format!("--bundle-endpoint-listen {addr:?} is not an address:port"))?,
    };
    let td = args
        .bundle_endpoint_trust_domain
        .as_deref()
        .or(args.spiffe_trust_domain.as_deref())
        .context("--bundle-endpoint-listen needs --spiffe-trust-domain (or --bundle-endpoint-trust-domain)")?;
    let trust_domain = parse_trust_domain(td)?;
    let profile = if args.bundle_endpoint_profile == "https_web" {
        let (Some(chain), Some(key)) = (&args.bundle_endpoint_cert, &args.bundle_endpoint_key)
        else {
            bail!("--bundle-endpoint-profile=https_web needs --bundle-endpoint-cert and --bundle-endpoint-key");
        };
        ServingProfile::Web {
            key: key.clone(),
            chain: chain.clone(),
        }
    } else {
        let id = match &args.bundle_endpoint_spiffe_id {
            Some(id) => podtls_parse_spiffe_id(id)?,
            None => podtls_parse_spiffe_id(&format!(
                "spiffe://{trust_domain}/podtls-signer/bundle-endpoint"
            ))?,
        };
        if id.trust_domain() != &trust_domain {
            bail!("--bundle-endpoint-spiffe-id {id} is not in trust domain {trust_domain}");
        }
        ServingProfile::Spiffe { id }
    };
    Ok(Some(signer::controller::BundleEndpointConfig {
        listen,
        trust_domain,
        profile,
        refresh_hint: args.bundle_endpoint_refresh_hint,
    }))
}

fn podtls_parse_spiffe_id(id: &str) -> anyhow::Result<signer::spiffe::SpiffeId> {
    podtls::parse_spiffe_id(id).with_context(|| format!("SPIFFE ID {id:?}"))
}

/// The federation settings, with --enable-federation.
fn federation_settings(
    args: &Controller,
) -> anyhow::Result<Option<signer::controller::FederationSettings>> {
    if !args.enable_federation {
        return Ok(None);
    }
    if !args.enable_spiffe_signer {
        bail!("--enable-federation needs --enable-spiffe-signer");
    }
    if args.federation_min_refresh.is_zero()
        || args.federation_min_refresh > args.federation_max_refresh
    {
        bail!("--federation-min-refresh must be positive and at most --federation-max-refresh");
    }
    let mut extra = Vec::new();
    if let Some(path) = &args.federation_web_ca {
        use rustls::pki_types::pem::PemObject as _;
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            extra.push(cert.with_context(|| format!("{}: PEM", path.display()))?);
        }
        if extra.is_empty() {
            bail!("{}: no CERTIFICATE block", path.display());
        }
    }
    Ok(Some(signer::controller::FederationSettings {
        refresh: signer::RefreshPolicy {
            min: args.federation_min_refresh,
            max: args.federation_max_refresh,
            default: args
                .federation_default_refresh
                .clamp(args.federation_min_refresh, args.federation_max_refresh),
        },
        limits: signer::controller::FetchLimits {
            max_bytes: args.federation_max_bundle_bytes,
            timeout: args.federation_fetch_timeout,
        },
        web_roots: std::sync::Arc::new(signer::controller::web_roots(&extra)),
    }))
}

/// The spiffe signer's extra trust domains, if any are configured.
fn trust_domains_config(
    args: &Controller,
) -> anyhow::Result<Option<signer::controller::TrustDomainsConfig>> {
    if args.spiffe_namespace_trust_domain.is_empty() && args.spiffe_trust_domain_ca_pool.is_empty()
    {
        return Ok(None);
    }
    if !args.enable_spiffe_signer {
        bail!("--spiffe-namespace-trust-domain and --spiffe-trust-domain-ca-pool need --enable-spiffe-signer");
    }
    let default = parse_trust_domain(
        args.spiffe_trust_domain
            .as_deref()
            .context("--spiffe-trust-domain must be set with --enable-spiffe-signer")?,
    )?;
    let map = TrustDomainMap::new(default, args.spiffe_namespace_trust_domain.iter().cloned())?;
    let mut pool_files = std::collections::BTreeMap::new();
    for (td, path) in &args.spiffe_trust_domain_ca_pool {
        if pool_files.insert(td.clone(), path.clone()).is_some() {
            bail!("--spiffe-trust-domain-ca-pool names trust domain {td} twice");
        }
    }
    let config = signer::controller::TrustDomainsConfig { map, pool_files };
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(Some(config))
}

/// `config` restricted to `types`, or unchanged (every type) when none are given.
fn with_key_types(config: SignerConfig, types: &[KeyType]) -> SignerConfig {
    if types.is_empty() {
        config
    } else {
        config.with_allowed_key_types(types.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller_args(extra: &[&str]) -> Controller {
        let mut argv = vec!["signer", "controller", "--kubeconfig", "/nonexistent"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Controller(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pod_identity_signer_needs_its_pool_and_a_trust_domain() {
        let args = controller_args(&["--enable-pod-identity-signer"]);
        let err = format!("{:#}", controller(&args).unwrap_err());
        assert!(err.contains("--pod-identity-trust-domain"), "{err}");
        let args = controller_args(&[
            "--enable-pod-identity-signer",
            "--spiffe-trust-domain=cluster.local",
        ]);
        let err = format!("{:#}", controller(&args).unwrap_err());
        assert!(err.contains("--pod-identity-ca-pool must be set"), "{err}");
        let args = controller_args(&[
            "--enable-pod-identity-signer",
            "--pod-identity-trust-domain=Bad/TD",
            "--pod-identity-ca-pool=/x.json",
        ]);
        let err = format!("{:#}", controller(&args).unwrap_err());
        assert!(err.contains("invalid SPIFFE trust domain"), "{err}");
    }

    #[test]
    fn dns_suffix_and_cluster_domain_are_checked_at_start_up() {
        let args = controller_args(&[
            "--enable-service-dns-signer",
            "--service-dns-ca-pool=/x.json",
            "--dns-suffix=east.example",
            "--dns-suffix=Bad_Suffix",
        ]);
        let err = format!("{:#}", controller(&args).unwrap_err());
        assert!(err.contains("--dns-suffix \"Bad_Suffix\""), "{err}");
        let args = controller_args(&[
            "--enable-service-dns-signer",
            "--service-dns-ca-pool=/x.json",
            "--cluster-domain=.local",
        ]);
        let err = format!("{:#}", controller(&args).unwrap_err());
        assert!(err.contains("--cluster-domain"), "{err}");
        let args = controller_args(&["--dns-suffix=a.example", "--dns-suffix=b.example"]);
        assert_eq!(args.dns_suffixes, ["a.example", "b.example"]);
    }

    #[test]
    fn two_signers_may_not_share_a_name() {
        let args = controller_args(&[
            "--enable-spiffe-signer",
            "--spiffe-trust-domain=cluster.local",
            "--spiffe-ca-pool=/a.json",
            "--enable-pod-identity-signer",
            "--pod-identity-ca-pool=/b.json",
            "--pod-identity-signer-name=row-major.net/spiffe",
        ]);
        let err = format!("{:#}", controller(&args).unwrap_err());
        assert!(err.contains("same name \"row-major.net/spiffe\""), "{err}");
    }

    #[test]
    fn issuer_url_takes_discover_off_or_a_url() {
        use signer::controller::IssuerSource;
        assert_eq!(controller_args(&[]).issuer_url, IssuerSource::Discover);
        assert_eq!(
            controller_args(&["--issuer-url=off"]).issuer_url,
            IssuerSource::Off
        );
        assert!(matches!(
            controller_args(&["--issuer-url=https://oidc.example/c1"]).issuer_url,
            IssuerSource::Fixed(_)
        ));
        assert!(Cli::try_parse_from(["signer", "controller", "--issuer-url=not a url"]).is_err());
    }

    #[test]
    fn several_trust_domains_need_a_pool_each_and_parse_strictly() {
        let base = [
            "--enable-spiffe-signer",
            "--spiffe-trust-domain=a.example",
            "--spiffe-ca-pool=/a.json",
        ];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            controller_args(&v)
        };
        assert!(trust_domains_config(&with(&[])).unwrap().is_none());
        let config = trust_domains_config(&with(&[
            "--spiffe-namespace-trust-domain=team-b=b.example,team-c=b.example",
            "--spiffe-trust-domain-ca-pool=b.example=/b.json",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(config.map.for_namespace("team-c").as_str(), "b.example");
        assert_eq!(config.map.for_namespace("x").as_str(), "a.example");
        let err = format!(
            "{:#}",
            trust_domains_config(&with(&["--spiffe-namespace-trust-domain=team-b=b.example"]))
                .unwrap_err()
        );
        assert!(
            err.contains("b.example") && err.contains("no CA pool"),
            "{err}"
        );
        let bad = Cli::try_parse_from([
            "signer",
            "controller",
            "--spiffe-namespace-trust-domain=team-b=B.example",
        ]);
        assert!(bad.unwrap_err().to_string().contains("lowercase"));
        let bad = Cli::try_parse_from([
            "signer",
            "controller",
            "--spiffe-trust-domain-ca-pool=b.example",
        ]);
        assert!(bad.unwrap_err().to_string().contains("TRUST_DOMAIN=FILE"));
    }

    #[test]
    fn meshtool_pod_identity_flags_parse_in_every_spelling() {
        assert!(controller_args(&["--enable-pod-identity-signer=true"]).enable_pod_identity_signer);
        assert!(
            !controller_args(&["--enable-pod-identity-signer=false"]).enable_pod_identity_signer
        );
        let args = controller_args(&["--pod-identity-ca-pool", "/x.json"]);
        assert_eq!(
            args.pod_identity_ca_pool.as_deref(),
            Some(Path::new("/x.json"))
        );
        assert!(!args.enable_pod_identity_signer);
    }

    #[test]
    fn a_lone_pod_identity_pool_does_not_stop_start_up_checks_from_running() {
        // Past the pod-identity checks, the usual "enable at least one signer" error.
        let args = controller_args(&["--pod-identity-ca-pool=/x.json"]);
        let err = format!("{:#}", controller(&args).unwrap_err());
        assert!(err.contains("enable at least one signer"), "{err}");
    }

    /// The original meshtool's `controller` and `make-ca-pool-secret` command lines,
    /// exactly as its manifests and README write them (ahmedtd/mesh-example
    /// `controller-manifests/mesh-controller.yaml`, `manifests/mesh-controller.yaml`,
    /// README "Installation", after `/meshtool` or `go run ./cmd/meshtool`).
    #[test]
    fn accepts_the_original_manifests_command_lines() {
        let argv = [
            "signer",
            "controller",
            "--in-cluster=true",
            "--sharding-pod-namespace=mesh-controller",
            "--sharding-pod-name=mesh-controller-0",
            "--sharding-pod-uid=0000",
            "--sharding-application-name=mesh-controller",
            "--enable-service-dns-signer=true",
            "--service-dns-ca-pool=/run/ca-state/service-dns-pool.json",
            "--enable-spiffe-signer=true",
            "--spiffe-trust-domain=cluster.local",
            "--spiffe-ca-pool=/run/ca-state/spiffe-pool.json",
        ];
        let Command::Controller(c) = Cli::try_parse_from(argv).expect("parses").command else {
            panic!("controller expected");
        };
        assert!(c.in_cluster && c.enable_service_dns_signer && c.enable_spiffe_signer);
        assert_eq!(c.sharding_application_name, "mesh-controller");
        assert_eq!(c.spiffe_trust_domain.as_deref(), Some("cluster.local"));
        assert_eq!(
            c.service_dns_ca_pool.as_deref(),
            Some(Path::new("/run/ca-state/service-dns-pool.json"))
        );

        // The oldest manifest: nothing but --in-cluster=true.
        let Command::Controller(c) =
            Cli::try_parse_from(["signer", "controller", "--in-cluster=true"])
                .expect("parses")
                .command
        else {
            panic!("controller expected");
        };
        assert!(c.in_cluster && !c.enable_service_dns_signer && !c.enable_spiffe_signer);
        // ... which then says what is missing instead of running no signer.
        let err = format!("{:#}", controller(&c).unwrap_err());
        assert!(err.contains("enable at least one signer"), "{err}");

        for name in ["service-dns-ca-pool", "spiffe-ca-pool"] {
            let argv = [
                "signer",
                "make-ca-pool-secret",
                "--namespace",
                "mesh-controller",
                "--name",
                name,
                "--ca-id",
                "1",
            ];
            let Command::MakeCaPoolSecret(m) = Cli::try_parse_from(argv).expect("parses").command
            else {
                panic!("make-ca-pool-secret expected");
            };
            assert_eq!(
                (m.namespace.as_str(), m.name.as_str(), m.ca_id.as_str()),
                ("mesh-controller", name, "1")
            );
            // As meshtool's: an ED25519 CA, a new Secret (no --append).
            assert_eq!(m.key_type, KeyType::Ed25519);
            assert!(!m.append);
        }
    }

    #[test]
    fn every_boolean_flag_takes_go_style_values() {
        for (value, expected) in [("", true), ("=true", true), ("=false", false)] {
            let args = controller_args(&[
                &format!("--in-cluster{value}"),
                &format!("--enable-service-dns-signer{value}"),
                &format!("--enable-spiffe-signer{value}"),
                &format!("--enable-csr-signing{value}"),
            ]);
            assert_eq!(
                (
                    args.in_cluster,
                    args.enable_service_dns_signer,
                    args.enable_spiffe_signer,
                    args.enable_csr_signing
                ),
                (expected, expected, expected, expected),
                "{value:?}"
            );
        }
        // Off unless asked for: existing deployments are unchanged.
        assert!(!controller_args(&[]).enable_csr_signing);
        // As Go's `flag`, a boolean never takes the next argument as its value.
        let argv = ["signer", "controller", "--in-cluster", "false"];
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(err.contains("unexpected argument 'false'"), "{err}");
    }
}
