//! `signer bundle-document`: writes an own trust domain's SPIFFE bundle document (the
//! JWKS the bundle endpoint serves) as a static file, e.g. to upload next to the
//! cluster's OIDC discovery document:
//!
//! ```text
//! https://issuer.example/.well-known/openid-configuration   (issue 11's issuer URL)
//! https://issuer.example/.well-known/spiffe-bundle/<trust domain>.json   <- this file
//! ```
//!
//! A peer then federates with `bundleEndpointURL` pointing at the file and profile
//! `https_web`. The content and `spiffe_sequence` are read from the trust domain's own
//! ClusterTrustBundle (its CA certificates and the sequence annotation the signer's
//! bundle endpoint maintains), so the file and a running endpoint agree. Offline,
//! `--pool-file` renders a pool file with an explicit `--sequence`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

/// `signer bundle-document` arguments.
#[derive(Args, Debug)]
pub struct BundleDocumentArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The own trust domain whose bundle to write.
    #[arg(long, env = "SIGNER_TRUST_DOMAIN")]
    pub trust_domain: String,
    /// The spiffe signer's name (its ClusterTrustBundles are linked to it).
    #[arg(long, env = "SIGNER_SPIFFE_SIGNER_NAME", default_value = signer::SPIFFE_SIGNER_NAME)]
    pub signer_name: String,
    /// Render this CA pool file instead of reading the cluster (needs --sequence).
    #[arg(long, env = "SIGNER_POOL_FILE", requires = "sequence")]
    pub pool_file: Option<PathBuf>,
    /// The spiffe_sequence to write with --pool-file.
    #[arg(long, env = "SIGNER_SEQUENCE")]
    pub sequence: Option<u64>,
    /// spiffe_refresh_hint of the document.
    #[arg(long, env = "SIGNER_REFRESH_HINT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub refresh_hint: Duration,
    /// Write here instead of standard output.
    #[arg(long, env = "SIGNER_OUT_FILE")]
    pub out_file: Option<PathBuf>,
}

/// Renders the document from a pool file.
pub fn from_pool_file(args: &BundleDocumentArgs, path: &PathBuf) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let pool = signer::CaPool::from_json(&bytes).with_context(|| path.display().to_string())?;
    let mut roots: Vec<&[u8]> = Vec::new();
    for ca in pool.cas() {
        if !roots.contains(&ca.root_der()) {
            roots.push(ca.root_der());
        }
    }
    Ok(signer::render_bundle_document(
        &roots,
        args.sequence,
        Some(args.refresh_hint),
    )?)
}

/// Renders the document from the trust domain's own ClusterTrustBundle.
pub async fn from_cluster(
    args: &BundleDocumentArgs,
    client: &kube::Client,
) -> anyhow::Result<String> {
    let apis = signer::controller::discover(client).await?;
    let td = signer::parse_trust_domain(&args.trust_domain)?;
    let Some(bundle) =
        signer::controller::own_bundle(client, &apis.ctb, &args.signer_name, td.as_str()).await?
    else {
        bail!(
            "no ClusterTrustBundle of signer {} for trust domain {td} (labels k8s.spiffe.io/workload-trust-domain = peer-trust-domain = {td}); is the signer running with that trust domain?",
            args.signer_name
        );
    };
    let pem = bundle.data["spec"]["trustBundle"]
        .as_str()
        .unwrap_or_default();
    let roots: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .context("the bundle's trustBundle is not PEM")?;
    let annotations = bundle.metadata.annotations.clone().unwrap_or_default();
    let sequence = match annotations.get(signer::controller::SEQUENCE_ANNOTATION) {
        Some(s) => {
            // The annotation belongs to the roots it was computed for; if the bundle has
            // changed since, the signer has not bumped it yet: refuse rather than publish
            // new content under an old number.
            let digest = signer::controller::bundle_digest(&roots);
            if annotations.get(signer::controller::DIGEST_ANNOTATION) != Some(&digest) {
                bail!("the bundle changed since its sequence was recorded; run the signer's bundle endpoint (it records it) or retry in a moment");
            }
            Some(s.parse::<u64>().context("the sequence annotation is not a number")?)
        }
        None => bail!(
            "the bundle has no {} annotation (the signer records it while its bundle endpoint runs: --bundle-endpoint-listen); or render offline with --pool-file and --sequence",
            signer::controller::SEQUENCE_ANNOTATION
        ),
    };
    let refs: Vec<&[u8]> = roots.iter().map(Vec::as_slice).collect();
    Ok(signer::render_bundle_document(
        &refs,
        sequence,
        Some(args.refresh_hint),
    )?)
}
