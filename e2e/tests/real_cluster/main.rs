//! The project against a real kube-apiserver and kubelet's own pod-certificate
//! code (`e2e/cluster`), for each pinned release: the manifests applied for real,
//! the signer running as its ServiceAccount, the example pairs on the volumes
//! kubelet's code wrote, forced rotation under load, the CA lifecycle (add,
//! promote, refresh, retire) under load, denials, faults (signer killed
//! mid-stream, kube-apiserver restarted, two replicas), and the bundle of a
//! disabled signer deleted. Clusters run one at a time (each is ~500 MB and busy at start-up).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use podtls_e2e::*;

mod ca_lifecycle;
mod csr_path;
mod denials;
mod entitlement;
mod faults;
mod federation;
mod injection;
mod issuance;
mod pod_identity;
mod rotation;

use ca_lifecycle::*;
use denials::*;
use entitlement::*;
use faults::*;
use injection::*;
use issuance::*;
use pod_identity::*;
use rotation::*;

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

pub(crate) const SIGNER_USER: &str = "system:serviceaccount:mesh-controller:signer";
pub(crate) const SERVICE_DNS: &str = "row-major.net/service-dns";
pub(crate) const SPIFFE: &str = "row-major.net/spiffe";
/// The spiffe signer of the suite refuses RSA3072 (the denial case).
pub(crate) const SPIFFE_KEY_TYPES: &str =
    "--spiffe-key-types=ED25519,ECDSAP256,ECDSAP384,ECDSAP521,RSA4096";
const PAIRS: [&str; 3] = [
    "service-dns-unauth-client",
    "service-dns-spiffe-client",
    "spiffe-mtls",
];

/// How kubelet hands the signer its public key, per release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyMaterial {
    /// `pkixPublicKey` + `proofOfPossession` (1.35).
    ProofOfPossession,
    /// `stubPKCS10Request` (1.36 on v1beta1, 1.37 on v1).
    StubPkcs10,
}

#[test]
fn release_1_35_v1beta1_with_proof_of_possession() {
    run(
        Release::V1_35,
        "certificates.k8s.io/v1beta1",
        KeyMaterial::ProofOfPossession,
    );
}

#[test]
fn release_1_36_v1beta1_with_stub_pkcs10_request() {
    run(
        Release::V1_36,
        "certificates.k8s.io/v1beta1",
        KeyMaterial::StubPkcs10,
    );
}

#[test]
fn release_1_37_v1() {
    run(
        Release::V1_37,
        "certificates.k8s.io/v1",
        KeyMaterial::StubPkcs10,
    );
}

/// Federation (issue 10) on one release only, to keep CI time: its own cluster.
#[test]
fn release_1_37_federation() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut cluster = TestCluster::start(Release::V1_37).unwrap_or_else(|e| panic!("{e:#}"));
    let result = rt.block_on(federation::federation_suite(&cluster));
    eprintln!(
        "Kubernetes 1.37 federation: took {:?} (cluster start included)",
        started.elapsed()
    );
    if let Err(e) = result {
        let tail = cluster.apiserver_log_tail();
        let dir = cluster.keep_state();
        panic!(
            "Kubernetes 1.37 federation: {e:#}\n\nstate dir (kept; process logs in logs/): {}\n--- kube-apiserver log tail ---\n{tail}",
            dir.display(),
        );
    }
}

/// The CertificateSigningRequest path (issue 13) on 1.35 WITHOUT the Pod
/// Certificates API: its own cluster.
#[test]
fn release_1_35_csr_path() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut cluster = TestCluster::start_without_pod_certificates(Release::V1_35)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let result = rt.block_on(csr_path::csr_path_suite(&cluster));
    eprintln!(
        "Kubernetes 1.35 CSR path: took {:?} (cluster start included)",
        started.elapsed()
    );
    if let Err(e) = result {
        let tail = cluster.apiserver_log_tail();
        let dir = cluster.keep_state();
        panic!(
            "Kubernetes 1.35 CSR path: {e:#}\n\nstate dir (kept; process logs in csr-path/): {}\n--- kube-apiserver log tail ---\n{tail}",
            dir.display(),
        );
    }
}

fn run(release: Release, api_version: &str, key_material: KeyMaterial) {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut cluster = TestCluster::start(release).unwrap_or_else(|e| panic!("{e:#}"));
    let result = rt.block_on(suite(&cluster, api_version, key_material));
    eprintln!(
        "Kubernetes {}: suite took {:?} (cluster start included)",
        release.as_str(),
        started.elapsed()
    );
    if let Err(e) = result {
        let tail = cluster.apiserver_log_tail();
        let dir = cluster.keep_state();
        panic!(
            "Kubernetes {} ({}): {e:#}\n\nstate dir (kept; process logs in logs/): {}\n--- kube-apiserver log tail ---\n{tail}",
            cluster.state.kubernetes_version,
            release.as_str(),
            dir.display(),
        );
    }
}

async fn suite(cluster: &TestCluster, api_version: &str, key_material: KeyMaterial) -> Result<()> {
    ensure!(
        cluster.state.pcr_api_version == api_version,
        "harness serves {} (want {api_version})",
        cluster.state.pcr_api_version
    );
    let mesh = Mesh::install(cluster).await.context("installing")?;
    let requests = Requests::new(&mesh.client).await?;
    ensure!(
        requests.apis.pcr.api_version == api_version,
        "discovery picked {} (want {api_version})",
        requests.apis.pcr.api_version
    );
    // Signer a also serves the pod injection webhook (until it is restarted below).
    let webhook_port = free_port();
    let mut signer_a_flags = vec![SPIFFE_KEY_TYPES.to_string()];
    signer_a_flags.extend(injection_flags(
        webhook_port,
        &mesh.logs.join("injection-webhook"),
    ));
    let signer_a_flags: Vec<&str> = signer_a_flags.iter().map(String::as_str).collect();
    let mut signer_a = mesh
        .start_signer("a", &signer_a_flags)
        .await
        .context("starting signer a")?;

    trust_bundles_are_published(&requests, 1, 1)
        .await
        .context("trust bundles")?;
    opted_in_pods_are_injected_by_the_webhook(&mesh, webhook_port)
        .await
        .context("injection webhook")?;

    let mut pairs = Vec::new();
    for ns in PAIRS {
        let pair = mesh
            .start_pair(ns)
            .await
            .with_context(|| format!("starting pair {ns}"))?;
        certificates_are_as_specified(&requests, &pair)
            .await
            .with_context(|| format!("certificates of {ns}"))?;
        the_pair_talks(&mesh, &pair).with_context(|| format!("traffic of {ns}"))?;
        pairs.push(pair);
    }
    kubelet_sends_the_releases_key_material(&requests, key_material)
        .await
        .context("key material")?;
    // One release is enough for the pod-identity signer's cluster-facing behaviour.
    if cluster.release == Release::V1_37 {
        let started = Instant::now();
        the_pod_identity_signer_works_end_to_end(&mesh, &requests, &signer_a)
            .await
            .context("pod-identity signer")?;
        eprintln!("pod-identity signer: {:?}", started.elapsed());
    }

    forced_refresh_rotates_without_a_failed_request(&mesh, &pairs[2])
        .await
        .context("forced refresh under load")?;
    services_are_read_at_issuance_time(&mesh, &requests, &pairs[0])
        .await
        .context("service-dns names at issuance")?;
    a_deleted_service_strands_no_pod(&mesh, &requests, &signer_a, &pairs[1])
        .await
        .context("a Service deleted across a refresh")?;
    the_ca_lifecycle_rotates_under_load_without_a_failed_request(
        &mesh, &requests, &pairs, &signer_a,
    )
    .await
    .context("CA lifecycle")?;
    denials_are_terminal_with_reasons(&mesh, &requests)
        .await
        .context("denials")?;
    a_foreign_identity_claiming_a_pod_gets_nothing(&mesh, &requests, &signer_a)
        .await
        .context("a foreign identity claiming pods")?;

    signer_killed_mid_stream_loses_and_repeats_nothing(&mesh, &requests, &mut signer_a)
        .await
        .context("signer killed mid-stream")?;
    watches_survive_an_apiserver_restart(&mesh, &requests, &mut signer_a)
        .await
        .context("kube-apiserver restart")?;
    let signer_b = two_replicas_split_the_work(&mesh, &requests, &signer_a)
        .await
        .context("two replicas")?;
    let _signer_c = a_replica_roll_hands_over_at_once(&mesh, &requests, signer_b)
        .await
        .context("replica roll")?;

    every_status_was_written_once(cluster, &requests).await?;
    a_disabled_signers_bundle_is_deleted(&mesh, &requests, &mut signer_a)
        .await
        .context("bundle of a disabled signer")?;
    Ok(())
}

/// Polls `check` every 250 ms until it returns `Ok(Some(_))`, up to `timeout`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("{what}: not within {timeout:?} ({last})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) fn norm_serial(s: &str) -> String {
    s.to_lowercase().trim_start_matches('0').to_string()
}

pub(crate) fn pem_certs(text: &str) -> usize {
    text.matches("-----BEGIN CERTIFICATE-----").count()
}

/// Serial (normalised) of the pod's podCertificate source for `signer`.
pub(crate) async fn held_serial(
    cluster: &TestCluster,
    ns: &str,
    pod: &str,
    signer: &str,
) -> Result<String> {
    let p = cluster
        .pod(ns, pod)
        .await?
        .with_context(|| format!("no pod {ns}/{pod}"))?;
    let c = p
        .certificates
        .iter()
        .find(|c| c.signer_name == signer)
        .with_context(|| format!("{ns}/{pod} has no {signer} source"))?;
    Ok(norm_serial(&c.serial))
}

/// The pod's request whose issued leaf has `serial` (normalised).
pub(crate) async fn request_with_serial(
    requests: &Requests,
    ns: &str,
    pod: &str,
    serial: &str,
) -> Result<signer::controller::PodCertificateRequest> {
    requests
        .of_pod(ns, pod)
        .await?
        .into_iter()
        .find(|p| issued_leaf(p).is_ok_and(|l| norm_serial(&l.serial) == serial))
        .with_context(|| format!("no request of {ns}/{pod} carries serial {serial}"))
}

pub(crate) async fn wait_log_serial(proc: &Proc, serial: &str) -> Result<()> {
    eventually(
        &format!("{} logs loading serial {serial}", proc.name),
        Duration::from_secs(30),
        || async {
            Ok(proc
                .lines()
                .iter()
                .any(|l| l.contains("loaded certificate") && norm_serial_in(l, serial))
                .then_some(()))
        },
    )
    .await
}

pub(crate) fn norm_serial_in(line: &str, serial: &str) -> bool {
    line.split(|c: char| !c.is_ascii_hexdigit())
        .any(|w| !w.is_empty() && norm_serial(w) == serial)
}
