//! The project against a real kube-apiserver and kubelet's own pod-certificate
//! code (`e2e/cluster`), for each pinned release: the manifests applied for real,
//! the signer running as its ServiceAccount, the example pairs on the volumes
//! kubelet's code wrote, forced rotation under load, a CA added to the pool,
//! denials, and faults (signer killed mid-stream, kube-apiserver restarted, two
//! replicas). Clusters run one at a time (each is ~500 MB and busy at start-up).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use podtls_e2e::*;
use serde_json::{json, Value};

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

const SIGNER_USER: &str = "system:serviceaccount:mesh-controller:signer";
const SERVICE_DNS: &str = "row-major.net/service-dns";
const SPIFFE: &str = "row-major.net/spiffe";
/// The spiffe signer of the suite refuses RSA3072 (the denial case).
const SPIFFE_KEY_TYPES: &str = "--spiffe-key-types=ED25519,ECDSAP256,ECDSAP384,ECDSAP521,RSA4096";
const PAIRS: [&str; 3] = [
    "service-dns-unauth-client",
    "service-dns-spiffe-client",
    "spiffe-mtls",
];

#[test]
fn release_1_35_v1beta1_with_proof_of_possession() {
    run(Release::V1_35, "certificates.k8s.io/v1beta1");
}

#[test]
fn release_1_37_v1() {
    run(Release::V1_37, "certificates.k8s.io/v1");
}

fn run(release: Release, api_version: &str) {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cluster = TestCluster::start(release).unwrap_or_else(|e| panic!("{e:#}"));
    let result = rt.block_on(suite(&cluster, api_version));
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

async fn suite(cluster: &TestCluster, api_version: &str) -> Result<()> {
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
    let mut signer_a = mesh
        .start_signer("a", &[SPIFFE_KEY_TYPES])
        .await
        .context("starting signer a")?;

    trust_bundles_are_published(&requests, 1, 1)
        .await
        .context("trust bundles")?;

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

    forced_refresh_rotates_without_a_failed_request(&mesh, &pairs[2])
        .await
        .context("forced refresh under load")?;
    services_are_read_at_issuance_time(&mesh, &requests, &pairs[0])
        .await
        .context("service-dns names at issuance")?;
    a_new_ca_reaches_the_projected_bundle_and_signs(&mesh, &requests, &pairs[2])
        .await
        .context("CA rotation")?;
    denials_are_terminal_with_reasons(&mesh, &requests)
        .await
        .context("denials")?;

    signer_killed_mid_stream_loses_and_repeats_nothing(&mesh, &requests, &mut signer_a)
        .await
        .context("signer killed mid-stream")?;
    watches_survive_an_apiserver_restart(&mesh, &requests, &mut signer_a)
        .await
        .context("kube-apiserver restart")?;
    two_replicas_split_the_work(&mesh, &requests, &signer_a)
        .await
        .context("two replicas")?;

    every_status_was_written_once(cluster, &requests).await?;
    Ok(())
}

/// Polls `check` every 250 ms until it returns `Ok(Some(_))`, up to `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
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

fn norm_serial(s: &str) -> String {
    s.to_lowercase().trim_start_matches('0').to_string()
}

fn pem_certs(text: &str) -> usize {
    text.matches("-----BEGIN CERTIFICATE-----").count()
}

/// Both signers' bundles exist as specified, with `service_dns_cas` and
/// `spiffe_cas` CA certificates.
async fn trust_bundles_are_published(
    requests: &Requests,
    service_dns_cas: usize,
    spiffe_cas: usize,
) -> Result<()> {
    let want = [
        (
            "row-major.net:service-dns:primary-bundle",
            SERVICE_DNS,
            json!({"service-dns.row-major.net/canarying": "live"}),
            service_dns_cas,
        ),
        (
            "row-major.net:spiffe:primary-bundle",
            SPIFFE,
            json!({"spiffe.row-major.net/canarying": "live", "spiffe.row-major.net/trust-domain": TRUST_DOMAIN}),
            spiffe_cas,
        ),
    ];
    eventually(
        "both ClusterTrustBundles",
        Duration::from_secs(30),
        || async {
            let ctbs = requests.trust_bundles().await?;
            for (name, signer, labels, cas) in &want {
                let Some(ctb) = ctbs
                    .iter()
                    .find(|c| c.metadata.name.as_deref() == Some(name))
                else {
                    return Ok(None);
                };
                let spec = &ctb.data["spec"];
                ensure!(
                    spec["signerName"] == *signer,
                    "{name}: signerName {}",
                    spec["signerName"]
                );
                let have: BTreeMap<String, String> =
                    ctb.metadata.labels.clone().unwrap_or_default();
                for (k, v) in labels.as_object().unwrap() {
                    ensure!(
                        have.get(k).map(String::as_str) == v.as_str(),
                        "{name}: label {k} is {:?} (labels {have:?})",
                        have.get(k)
                    );
                }
                let n = pem_certs(spec["trustBundle"].as_str().unwrap_or(""));
                if n != *cas {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

async fn certificates_are_as_specified(requests: &Requests, pair: &Pair) -> Result<()> {
    let ns = &pair.namespace;
    for pod in [&pair.server_pod, &pair.client_pod] {
        let pcrs = requests.of_pod(ns, &pod.name).await?;
        ensure!(
            pcrs.len() == pod.certificates.len(),
            "pod {}: {} requests for {} podCertificate sources",
            pod.name,
            pcrs.len(),
            pod.certificates.len()
        );
        for pcr in &pcrs {
            let k = key(pcr);
            ensure!(
                outcome(pcr).is_some_and(|(t, _)| t == "Issued"),
                "{k}: {:?}",
                outcome(pcr)
            );
            let leaf = issued_leaf(pcr)?;
            ensure!(!leaf.is_ca, "{k}: leaf is a CA");
            ensure!(leaf.other_sans == 0, "{k}: unexpected SAN kinds");
            ensure!(leaf.chain_len >= 1);
            let lifetime = leaf.not_after.duration_since(leaf.not_before)?;
            let max = Duration::from_secs(pcr.spec.max_expiration_seconds.unwrap_or(86400) as u64);
            let want = max.min(Duration::from_secs(86400));
            ensure!(
                lifetime <= want
                    && lifetime + Duration::from_secs(300) >= want.max(Duration::from_secs(3600)),
                "{k}: lifetime {lifetime:?}, want {want:?} (backdating < 5 min)"
            );
            match pcr.spec.signer_name.as_str() {
                SERVICE_DNS => {
                    ensure!(leaf.empty_subject, "{k}: service-dns subject not empty");
                    ensure!(leaf.uris.is_empty(), "{k}: URI SANs {:?}", leaf.uris);
                    let want = vec![format!("{}.{ns}.svc", "server")];
                    ensure!(
                        leaf.dns == want,
                        "{k}: DNS SANs {:?}, want {want:?}",
                        leaf.dns
                    );
                }
                SPIFFE => {
                    let want = vec![format!(
                        "spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{}",
                        pcr.spec.service_account_name
                    )];
                    ensure!(
                        leaf.uris == want,
                        "{k}: URI SANs {:?}, want {want:?}",
                        leaf.uris
                    );
                    ensure!(leaf.dns.is_empty(), "{k}: DNS SANs {:?}", leaf.dns);
                }
                other => bail!("{k}: unexpected signer {other}"),
            }
            // What kubelet's manager holds is what the API server accepted.
            let held = pod
                .certificates
                .iter()
                .find(|c| c.signer_name == pcr.spec.signer_name)
                .context("no such source in the pod state")?;
            ensure!(
                norm_serial(&held.serial) == norm_serial(&leaf.serial),
                "{k}: kubelet holds {} but the request has {}",
                held.serial,
                leaf.serial
            );
        }
        // And the volume holds it, in kubelet's layout.
        let dir = volume(pod, "podtls")?;
        ensure!(
            std::fs::read_link(dir.join("..data")).is_ok(),
            "{}: no ..data symlink in {}",
            pod.name,
            dir.display()
        );
    }
    Ok(())
}

fn the_pair_talks(mesh: &Mesh<'_>, pair: &Pair) -> Result<()> {
    let lines = pair.fetch(&mesh.bins, 3)?;
    ensure!(lines.len() >= 3, "demo-client printed {lines:?}");
    for l in &lines {
        ensure!(l.contains(" 200 "), "not a 200: {l}");
        match pair.namespace.as_str() {
            "service-dns-unauth-client" => ensure!(l.ends_with(" OK"), "{l}"),
            ns => {
                let id = format!("Client Identity: spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/client");
                ensure!(l.ends_with(&id), "{l} (want {id})");
            }
        }
    }
    Ok(())
}

/// Serial (normalised) of the pod's podCertificate source for `signer`.
async fn held_serial(cluster: &TestCluster, ns: &str, pod: &str, signer: &str) -> Result<String> {
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
async fn request_with_serial(
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

async fn wait_log_serial(proc: &Proc, serial: &str) -> Result<()> {
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

fn norm_serial_in(line: &str, serial: &str) -> bool {
    line.split(|c: char| !c.is_ascii_hexdigit())
        .any(|w| !w.is_empty() && norm_serial(w) == serial)
}

async fn forced_refresh_rotates_without_a_failed_request(
    mesh: &Mesh<'_>,
    pair: &Pair,
) -> Result<()> {
    let ns = &pair.namespace;
    let mut args = pair.client_args()?;
    args.extend(
        [
            "--log-format=json",
            "load",
            "--concurrency=4",
            "--duration=25s",
            "--new-connection-per-request",
            "--output=json",
            "--quiet",
        ]
        .map(String::from),
    );
    let mut load = Proc::start(
        &format!("{ns}-load"),
        &mesh.bins.join("demo-client"),
        &args,
        &[("RUST_LOG", "podtls=info")],
        &mesh.logs,
    )?;
    let started = Instant::now();
    let old_server = held_serial(mesh.cluster, ns, "server", SPIFFE).await?;
    let old_client = held_serial(mesh.cluster, ns, "client", SPIFFE).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // traffic before the first rotation
    mesh.cluster.refresh(ns, "server").await?;
    let new_server = held_serial(mesh.cluster, ns, "server", SPIFFE).await?;
    ensure!(
        new_server != old_server,
        "server serial unchanged after refresh"
    );
    wait_log_serial(&pair.server, &new_server).await?;
    mesh.cluster.refresh(ns, "client").await?;
    let new_client = held_serial(mesh.cluster, ns, "client", SPIFFE).await?;
    ensure!(
        new_client != old_client,
        "client serial unchanged after refresh"
    );
    wait_log_serial(&load, &new_client).await?;
    ensure!(
        started.elapsed() < Duration::from_secs(22),
        "rotations took {:?}, too close to the end of the load run to see them in traffic",
        started.elapsed()
    );
    let code = load.wait(Duration::from_secs(60))?;
    let out = load.lines();
    let summary: Value = out
        .iter()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v.get("failed").is_some())
        })
        .with_context(|| format!("no JSON summary from the load run:\n{}", load.tail(20)))?;
    ensure!(code == 0, "load run exited {code}: {summary}");
    ensure!(summary["failed"] == 0, "failed requests: {summary}");
    ensure!(
        summary["requests"].as_u64().unwrap_or(0) > 50,
        "too little traffic: {summary}"
    );
    let seen = |k: &str| -> BTreeSet<String> {
        summary[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .map(norm_serial)
                    .collect()
            })
            .unwrap_or_default()
    };
    for (k, s) in [
        ("server_serials", &old_server),
        ("server_serials", &new_server),
        ("client_serials", &old_client),
        ("client_serials", &new_client),
    ] {
        ensure!(seen(k).contains(s), "{k} lacks {s}: {summary}");
    }
    Ok(())
}

async fn services_are_read_at_issuance_time(
    mesh: &Mesh<'_>,
    requests: &Requests,
    pair: &Pair,
) -> Result<()> {
    let ns = &pair.namespace;
    // One Service selecting the server pod too, one selecting nothing, one
    // without a selector: only the first adds a name.
    for (name, selector) in [
        ("server-alt", Some(json!({"app": "server"}))),
        ("nobody", Some(json!({"app": "nobody"}))),
        ("no-selector", None),
    ] {
        let mut svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443}]},
        });
        if let Some(sel) = selector {
            svc["spec"]["selector"] = sel;
        }
        apply(&mesh.client, &svc).await?;
    }
    mesh.cluster.refresh(ns, "server").await?;
    let serial = held_serial(mesh.cluster, ns, "server", SERVICE_DNS).await?;
    let pcr = request_with_serial(requests, ns, "server", &serial).await?;
    let mut dns = issued_leaf(&pcr)?.dns;
    dns.sort();
    let want = vec![format!("server-alt.{ns}.svc"), format!("server.{ns}.svc")];
    ensure!(dns == want, "DNS SANs {dns:?}, want {want:?}");
    // The client verifies the new certificate by the usual name.
    wait_log_serial(&pair.server, &serial).await?;
    the_pair_talks(mesh, pair)
}

async fn a_new_ca_reaches_the_projected_bundle_and_signs(
    mesh: &Mesh<'_>,
    requests: &Requests,
    pair: &Pair,
) -> Result<()> {
    let ns = &pair.namespace;
    // Rotation step 1: a second CA in the pool (trusted, not signing).
    mesh.signer_tool(&[
        "make-ca-pool-secret",
        "--append",
        "--namespace",
        CONTROLLER_NAMESPACE,
        "--name",
        "spiffe-ca-pool",
        "--ca-id",
        "spiffe-2",
        "--key-type",
        "ECDSAP256",
    ])?;
    // Secret -> projected pool file -> signer reload -> CTB -> kubelet's CTB
    // manager -> both pods' trust/spiffe.pem.
    for pod in [&pair.server_pod, &pair.client_pod] {
        let file = volume(pod, "podtls")?.join("trust/spiffe.pem");
        eventually(
            &format!("two CAs in {}", file.display()),
            Duration::from_secs(90),
            || async {
                Ok(
                    (pem_certs(&std::fs::read_to_string(&file).unwrap_or_default()) == 2)
                        .then_some(()),
                )
            },
        )
        .await?;
    }
    trust_bundles_are_published(requests, 1, 2).await?;
    // Step 2: sign with the new CA; a refreshed client certificate from it is
    // accepted by the server, which trusts both.
    mesh.signer_tool(&[
        "set-signing-ca",
        "--namespace",
        CONTROLLER_NAMESPACE,
        "--name",
        "spiffe-ca-pool",
        "--ca-id",
        "spiffe-2",
    ])?;
    let before = held_serial(mesh.cluster, ns, "client", SPIFFE).await?;
    // The pool reload is asynchronous: refresh until a certificate from the new
    // CA (an ECDSA issuer; the first CA is Ed25519) is issued.
    eventually(
        "a client certificate signed by the new CA",
        Duration::from_secs(90),
        || async {
            mesh.cluster.refresh(ns, "client").await?;
            let serial = held_serial(mesh.cluster, ns, "client", SPIFFE).await?;
            ensure!(serial != before);
            let pcr = request_with_serial(requests, ns, "client", &serial).await?;
            let chain = pcr
                .status
                .and_then(|s| s.certificate_chain)
                .unwrap_or_default();
            Ok(issuer_is_ecdsa(&chain)?.then_some(()))
        },
    )
    .await?;
    the_pair_talks(mesh, pair)
}

fn issuer_is_ecdsa(chain_pem: &str) -> Result<bool> {
    use rustls_pki_types::pem::PemObject as _;
    use x509_parser::prelude::FromDer as _;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .context("empty chain")??;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)?;
    // ecdsa-with-SHA256/384/512 are 1.2.840.10045.4.3.*; Ed25519 is 1.3.101.112.
    Ok(cert
        .signature_algorithm
        .algorithm
        .to_id_string()
        .starts_with("1.2.840.10045.4.3"))
}

async fn denials_are_terminal_with_reasons(mesh: &Mesh<'_>, requests: &Requests) -> Result<()> {
    let ns = "spiffe-mtls";
    let docs = load_manifest(&manifests_dir().join("spiffe-mtls.yaml"))?;
    let template = pod_template(&docs, "client")?;
    let node = mesh.cluster.nodes()[1].clone();
    create_pod_from_template(&mesh.client, template, ns, "wants-rsa3072", &node, |p| {
        p["spec"]["volumes"][0]["projected"]["sources"][0]["podCertificate"]["keyType"] =
            json!("RSA3072");
    })
    .await?;
    create_pod_from_template(
        &mesh.client,
        template,
        ns,
        "unknown-annotation",
        &node,
        |p| {
            p["spec"]["volumes"][0]["projected"]["sources"][0]["podCertificate"]
                ["userAnnotations"] = json!({"example.com/ttl": "1h"});
        },
    )
    .await?;
    for (pod, reason) in [
        ("wants-rsa3072", "UnsupportedKeyType"),
        ("unknown-annotation", "InvalidUnverifiedUserAnnotations"),
    ] {
        let pcr = eventually(
            &format!("{ns}/{pod} decided"),
            Duration::from_secs(60),
            || async {
                Ok(requests
                    .of_pod(ns, pod)
                    .await?
                    .into_iter()
                    .find(|p| outcome(p).is_some()))
            },
        )
        .await?;
        let got = outcome(&pcr).unwrap();
        ensure!(
            got == ("Denied".to_string(), reason.to_string()),
            "{pod}: {got:?}, want Denied/{reason}"
        );
        ensure!(
            pcr.status
                .as_ref()
                .and_then(|s| s.certificate_chain.as_ref())
                .is_none(),
            "{pod}: a denied request carries a chain"
        );
        // kubelet's manager sees the denial and never writes the volume.
        let state = eventually(
            &format!("kubelet sees the denial of {pod}"),
            Duration::from_secs(30),
            || async {
                Ok(mesh.cluster.pod(ns, pod).await?.filter(|p| {
                    p.certificates
                        .iter()
                        .any(|c| !c.ready && !c.error.is_empty())
                }))
            },
        )
        .await?;
        ensure!(
            !state.volumes_ready,
            "{pod}: volume set up despite the denial"
        );
    }
    Ok(())
}

/// Creates `n` pods from the spiffe-mtls client template named `prefix-i`,
/// `i` counting from `first`.
async fn create_burst(
    mesh: &Mesh<'_>,
    prefix: &str,
    first: usize,
    n: usize,
) -> Result<Vec<String>> {
    let docs = load_manifest(&manifests_dir().join("spiffe-mtls.yaml"))?;
    let template = pod_template(&docs, "client")?;
    let nodes = mesh.cluster.nodes();
    let mut names = Vec::new();
    for i in first..first + n {
        let name = format!("{prefix}-{i}");
        create_pod_from_template(
            &mesh.client,
            template,
            "spiffe-mtls",
            &name,
            &nodes[i % nodes.len()],
            |_| {},
        )
        .await?;
        names.push(name);
    }
    Ok(names)
}

async fn all_issued(requests: &Requests, pods: &[String], timeout: Duration) -> Result<()> {
    eventually(
        &format!("{} pods' requests issued", pods.len()),
        timeout,
        || async {
            let pcrs = requests.list(Some("spiffe-mtls")).await?;
            let mut issued = BTreeSet::new();
            for p in &pcrs {
                match outcome(p) {
                    Some((t, _)) if t == "Issued" => {
                        issued.insert(p.spec.pod_name.clone());
                    }
                    Some(o) if pods.contains(&p.spec.pod_name) => bail!("{}: {o:?}", key(p)),
                    _ => {}
                }
            }
            Ok(pods.iter().all(|p| issued.contains(p)).then_some(()))
        },
    )
    .await
}

async fn signer_killed_mid_stream_loses_and_repeats_nothing(
    mesh: &Mesh<'_>,
    requests: &Requests,
    signer: &mut SignerReplica,
) -> Result<()> {
    let mut pods = create_burst(mesh, "burst", 0, 16).await?;
    // Kill it (SIGKILL, as a crash) once the first of them is decided, while the
    // rest are in flight; more pods arrive while it is down.
    eventually(
        "a first burst request decided",
        Duration::from_secs(60),
        || async {
            let pcrs = requests.list(Some("spiffe-mtls")).await?;
            Ok(pcrs
                .iter()
                .any(|p| p.spec.pod_name.starts_with("burst-") && outcome(p).is_some())
                .then_some(()))
        },
    )
    .await?;
    signer.proc.kill();
    let decided = requests
        .list(Some("spiffe-mtls"))
        .await?
        .iter()
        .filter(|p| p.spec.pod_name.starts_with("burst-") && outcome(p).is_some())
        .count();
    pods.extend(create_burst(mesh, "burst", 16, 8).await?);
    *signer = mesh.start_signer("a", &[SPIFFE_KEY_TYPES]).await?;
    all_issued(requests, &pods, Duration::from_secs(90)).await?;
    eprintln!(
        "signer killed with {decided} of the first 16 burst requests decided, 8 more created while it was down; the restarted signer issued the rest"
    );
    Ok(())
}

async fn watches_survive_an_apiserver_restart(
    mesh: &Mesh<'_>,
    requests: &Requests,
    signer: &mut SignerReplica,
) -> Result<()> {
    let pid = signer.proc.pid();
    // The audit log is written in batches; a restart loses the unwritten one.
    audit_caught_up(mesh.cluster, requests).await?;
    mesh.cluster.restart_apiserver().await?;
    let pods = create_burst(mesh, "after-restart", 0, 3).await?;
    all_issued(requests, &pods, Duration::from_secs(120)).await?;
    ensure!(
        signer.proc.exited().is_none(),
        "the signer exited:\n{}",
        signer.proc.tail(30)
    );
    ensure!(signer.proc.pid() == pid);
    Ok(())
}

async fn two_replicas_split_the_work(
    mesh: &Mesh<'_>,
    requests: &Requests,
    a: &SignerReplica,
) -> Result<()> {
    let b = mesh.start_signer("b", &[SPIFFE_KEY_TYPES]).await?;
    let issued = |text: &str| metric_sum(text, "podtls_signer_issued_total", &[]);
    // Both replicas see both Leases before the burst.
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(mesh.client.clone(), CONTROLLER_NAMESPACE);
    eventually("two sharding Leases", Duration::from_secs(30), || async {
        Ok((leases.list(&Default::default()).await?.items.len() >= 2).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // the Lease watch events reach both
    let a0 = issued(&a.metrics().await?);
    let b0 = issued(&b.metrics().await?);
    let pods = create_burst(mesh, "sharded", 0, 24).await?;
    all_issued(requests, &pods, Duration::from_secs(90)).await?;
    let da = issued(&a.metrics().await?) - a0;
    let db = issued(&b.metrics().await?) - b0;
    eprintln!(
        "two replicas: a issued {da}, b issued {db} of {}",
        pods.len()
    );
    ensure!(
        da + db == pods.len() as f64,
        "a issued {da} + b issued {db} != {}",
        pods.len()
    );
    ensure!(da > 0.0 && db > 0.0, "work not split: a {da}, b {db}");
    Ok(())
}

/// Waits until the audit log records a successful status write for every
/// decided request, and returns the writes per request.
async fn audit_caught_up(
    cluster: &TestCluster,
    requests: &Requests,
) -> Result<BTreeMap<String, usize>> {
    let pcrs = requests.list(None).await?;
    let decided: Vec<String> = pcrs
        .iter()
        .filter(|p| outcome(p).is_some())
        .map(key)
        .collect();
    let mut missing = Vec::new();
    let found = eventually(
        "the audit log records every status write",
        Duration::from_secs(20),
        || {
            let writes = cluster.audit_events().map(|e| status_writes(&e));
            missing = match &writes {
                Ok(w) => decided
                    .iter()
                    .filter(|k| !w.contains_key(*k))
                    .cloned()
                    .collect(),
                Err(_) => Vec::new(),
            };
            let done = missing.is_empty();
            async move { Ok(done.then_some(writes?)) }
        },
    )
    .await;
    found.with_context(|| format!("no status write recorded for {missing:?}"))
}

async fn every_status_was_written_once(cluster: &TestCluster, requests: &Requests) -> Result<()> {
    let writes = audit_caught_up(cluster, requests).await?;
    let twice: Vec<_> = writes.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(twice.is_empty(), "status written more than once: {twice:?}");
    let by_signer = requests_by(&cluster.audit_events()?, SIGNER_USER);
    eprintln!(
        "{} requests decided; the signer's API requests: {by_signer:?}",
        writes.len()
    );
    ensure!(
        by_signer
            .get("update podcertificaterequests/status")
            .copied()
            .unwrap_or(0)
            >= writes.len(),
        "status writes not made as the signer's ServiceAccount: {by_signer:?}"
    );
    Ok(())
}
