//! The whole CA lifecycle with the `signer ca` commands, under load: add, the
//! pods' bundles carry the new CA, promote, refresh, retire, the old CA gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use podtls_e2e::*;
use serde_json::Value;

use crate::*;

/// The spiffe pool Secret, as `signer ca` flags.
const SPIFFE_POOL: [&str; 4] = [
    "--namespace",
    CONTROLLER_NAMESPACE,
    "--name",
    "spiffe-ca-pool",
];

/// `signer ca list --output json` of the spiffe pool.
fn ca_list(mesh: &Mesh<'_>) -> Result<Vec<Value>> {
    let out =
        mesh.signer_tool(&[&["ca", "list", "--output", "json"][..], &SPIFFE_POOL].concat())?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("ca list: {out}"))?;
    v.as_array().cloned().context("ca list: not an array")
}

fn ca_entry<'a>(cas: &'a [Value], id: &str) -> Result<&'a Value> {
    cas.iter()
        .find(|c| c["id"] == id)
        .with_context(|| format!("no CA {id} in {cas:?}"))
}

/// SHA-256 fingerprints (lowercase hex, as `signer ca list`) of the PEM
/// certificates in `text`.
fn fingerprints(text: &str) -> BTreeSet<String> {
    use rustls_pki_types::pem::PemObject as _;
    use sha2::Digest as _;
    rustls_pki_types::CertificateDer::pem_slice_iter(text.as_bytes())
        .filter_map(|c| c.ok())
        .map(|der| {
            sha2::Sha256::digest(der.as_ref())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect()
}

/// demo-client load against `pair`, as back-to-back 10 s runs (each a new
/// process, with a new connection and full handshake per request) until stopped;
/// every run's JSON summary is kept.
struct LoadRuns {
    stop: Arc<AtomicBool>,
    started: Arc<AtomicUsize>,
    /// Why the runs ended early, if they did (also in `finish`'s error).
    error: Arc<Mutex<Option<String>>>,
    thread: std::thread::JoinHandle<Result<Vec<Value>>>,
}

impl LoadRuns {
    fn start(mesh: &Mesh<'_>, pair: &Pair) -> Result<LoadRuns> {
        let mut args = pair.client_args()?;
        args.extend(
            [
                "--log-format=json",
                "load",
                "--concurrency=4",
                "--duration=10s",
                "--new-connection-per-request",
                "--output=json",
                "--quiet",
            ]
            .map(String::from),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let (bin, logs, ns) = (
            mesh.bins.join("demo-client"),
            mesh.logs.clone(),
            pair.namespace.clone(),
        );
        let error = Arc::new(Mutex::new(None));
        let thread = {
            let (stop, started, error) = (stop.clone(), started.clone(), error.clone());
            std::thread::spawn(move || -> Result<Vec<Value>> {
                let runs = || -> Result<Vec<Value>> {
                    let mut summaries = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let run = started.fetch_add(1, Ordering::SeqCst);
                        let mut load = Proc::start(
                            &format!("{ns}-lifecycle-load-{run}"),
                            &bin,
                            &args,
                            &[("RUST_LOG", "podtls=info")],
                            &logs,
                        )?;
                        let code = load.wait(Duration::from_secs(60))?;
                        let summary = load.load_summary().with_context(|| {
                            format!("load run {run}: no JSON summary:\n{}", load.tail(20))
                        })?;
                        ensure!(code == 0, "load run {run} exited {code}: {summary}");
                        ensure!(
                            summary["failed"] == 0,
                            "load run {run}: failed requests: {summary}"
                        );
                        summaries.push(summary);
                    }
                    Ok(summaries)
                };
                let result = runs();
                if let Err(e) = &result {
                    *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
                }
                result
            })
        };
        Ok(LoadRuns {
            stop,
            started,
            error,
            thread,
        })
    }

    /// Waits until a run has started after this call, so a whole run sees the
    /// state reached by now.
    /// Fails at once if the runs ended early (a failed request).
    async fn one_more_run(&self) -> Result<()> {
        let now = self.started.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.started.load(Ordering::SeqCst) <= now {
            if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                bail!("load runs ended: {e}");
            }
            ensure!(Instant::now() < deadline, "no new load run within 30 s");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    /// Stops after the current run and returns every run's summary.
    fn finish(self) -> Result<Vec<Value>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))?
    }
}

/// Refreshes `ns/pod` until kubelet holds a spiffe certificate issued by the
/// new (ECDSA) CA; the first CA is Ed25519. Returns its serial.
async fn refresh_until_new_ca(
    mesh: &Mesh<'_>,
    requests: &Requests,
    ns: &str,
    pod: &str,
) -> Result<String> {
    // The pool reload is asynchronous: refresh until the new CA signs.
    eventually(
        &format!("a certificate of {ns}/{pod} signed by the new CA"),
        Duration::from_secs(90),
        || async {
            mesh.cluster.refresh(ns, pod).await?;
            let serial = held_serial(mesh.cluster, ns, pod, SPIFFE).await?;
            let pcr = request_with_serial(requests, ns, pod, &serial).await?;
            let chain = pcr
                .status
                .and_then(|s| s.certificate_chain)
                .unwrap_or_default();
            Ok(issuer_is_ecdsa(&chain)?.then_some(serial))
        },
    )
    .await
}

/// The whole CA rotation with the `signer ca` commands on the spiffe pool
/// Secret, under load on `pairs[2]` (spiffe-mtls): add -> both pods' projected
/// bundle files carry the new CA -> promote -> every pod holding a spiffe
/// certificate refreshed until the new CA signed it -> retire the old CA ->
/// it is gone from the ClusterTrustBundle, both pods' bundle files and the
/// signer's metrics. Zero failed requests throughout.
///
/// The retire needs `--force`: the old CA signed seconds ago, so certificates
/// it issued are still valid for up to a day and `retire` refuses (asserted
/// first). Every pod's certificate from it was replaced just before (and
/// checked), which is the operator's justification for `--force`; a clock
/// argument would test the same rule the unit tests already cover.
pub(crate) async fn the_ca_lifecycle_rotates_under_load_without_a_failed_request(
    mesh: &Mesh<'_>,
    requests: &Requests,
    pairs: &[Pair],
    signer: &SignerReplica,
) -> Result<()> {
    let pair = &pairs[2];
    let ns = &pair.namespace;
    let before = ca_list(mesh)?;
    ensure!(before.len() == 1, "one CA before the rotation: {before:?}");
    let old = &before[0];
    let old_id = old["id"].as_str().context("id")?.to_string();
    let old_fp = old["sha256"].as_str().context("sha256")?.to_string();
    let old_server = held_serial(mesh.cluster, ns, "server", SPIFFE).await?;
    let old_client = held_serial(mesh.cluster, ns, "client", SPIFFE).await?;
    let load = LoadRuns::start(mesh, pair)?;
    load.one_more_run().await?;

    // 1. Add: trusted, not signing.
    mesh.signer_tool(
        &[
            &[
                "ca",
                "add",
                "--ca-id",
                "spiffe-2",
                "--key-type",
                "ECDSAP256",
            ][..],
            &SPIFFE_POOL,
        ]
        .concat(),
    )?;
    let cas = ca_list(mesh)?;
    let new = ca_entry(&cas, "spiffe-2")?;
    ensure!(new["signing"] == false, "added CA signs: {new}");
    let new_fp = new["sha256"].as_str().context("sha256")?.to_string();
    let both = BTreeSet::from([old_fp.clone(), new_fp.clone()]);
    // Secret -> projected pool file -> signer reload -> CTB -> kubelet's CTB
    // manager -> both pods' trust/spiffe.pem.
    let files = [&pair.server_pod, &pair.client_pod]
        .map(|pod| volume(pod, "podtls").map(|v| v.join("trust/spiffe.pem")));
    for file in &files {
        let file = file.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        eventually(
            &format!("both CAs in {}", file.display()),
            Duration::from_secs(90),
            || async {
                Ok(
                    (fingerprints(&std::fs::read_to_string(file).unwrap_or_default()) == both)
                        .then_some(()),
                )
            },
        )
        .await?;
    }
    trust_bundles_are_published(requests, 1, 2).await?;

    // 2. Promote; the old CA's stop is recorded, so it is not retirable yet.
    mesh.signer_tool(&[&["ca", "promote", "--ca-id", "spiffe-2"][..], &SPIFFE_POOL].concat())?;
    let cas = ca_list(mesh)?;
    ensure!(ca_entry(&cas, "spiffe-2")?["signing"] == true, "{cas:?}");
    let old_now = ca_entry(&cas, &old_id)?;
    ensure!(
        old_now["signing"] == false
            && old_now["notSigningSince"].is_string()
            && old_now["retirable"] == false,
        "old CA after promote: {old_now}"
    );
    eventually(
        "the signer's metrics show the new signing CA",
        Duration::from_secs(60),
        || async {
            let text = signer.metrics().await?;
            Ok(text
                .contains(r#"podtls_signer_ca_not_after_seconds{signer="row-major.net/spiffe",ca_id="spiffe-2",signing="true"}"#)
                .then_some(()))
        },
    )
    .await?;

    // 3. Refresh: every pod holding a spiffe certificate gets one from the new CA.
    let mut new_serials = BTreeMap::new();
    for p in pairs {
        for pod in ["server", "client"] {
            if held_serial(mesh.cluster, &p.namespace, pod, SPIFFE)
                .await
                .is_err()
            {
                continue; // a service-dns certificate only
            }
            let serial = refresh_until_new_ca(mesh, requests, &p.namespace, pod).await?;
            new_serials.insert((p.namespace.clone(), pod), serial);
        }
    }
    let new_server = new_serials[&(ns.clone(), "server")].clone();
    let new_client = new_serials[&(ns.clone(), "client")].clone();
    wait_log_serial(&pair.server, &new_server).await?;
    load.one_more_run().await?; // a whole run with the new certificates

    // 4. Retire: refused without --force (the old CA signed seconds ago), then forced.
    let refused = mesh
        .signer_tool_output(&[&["ca", "retire", "--ca-id", &old_id][..], &SPIFFE_POOL].concat())?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("may be valid until"),
        "retire without --force: {:?} {stderr}",
        refused.status
    );
    ensure!(
        ca_list(mesh)?.len() == 2,
        "a refused retire changed the pool"
    );
    mesh.signer_tool(
        &[
            &["ca", "retire", "--ca-id", &old_id, "--force"][..],
            &SPIFFE_POOL,
        ]
        .concat(),
    )?;

    // 5. Gone: from the ClusterTrustBundle, both pods' files and the metrics.
    trust_bundles_are_published(requests, 1, 1).await?;
    let ctb = requests
        .trust_bundles()
        .await?
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("row-major.net:spiffe:primary-bundle"))
        .context("no spiffe ClusterTrustBundle")?;
    let in_ctb = fingerprints(ctb.data["spec"]["trustBundle"].as_str().unwrap_or_default());
    ensure!(
        in_ctb == BTreeSet::from([new_fp.clone()]),
        "ClusterTrustBundle holds {in_ctb:?}, want only {new_fp}"
    );
    for file in &files {
        let file = file.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        eventually(
            &format!("only the new CA in {}", file.display()),
            Duration::from_secs(90),
            || async {
                Ok(
                    (fingerprints(&std::fs::read_to_string(file).unwrap_or_default())
                        == BTreeSet::from([new_fp.clone()]))
                    .then_some(()),
                )
            },
        )
        .await?;
    }
    eventually(
        "the retired CA leaves the signer's metrics",
        Duration::from_secs(60),
        || async {
            let text = signer.metrics().await?;
            Ok((!text.contains(&format!(r#"ca_id="{old_id}""#))
                && text.contains(r#"ca_id="spiffe-2",signing="true""#))
            .then_some(()))
        },
    )
    .await?;
    load.one_more_run().await?; // a whole run with the old CA gone everywhere
    let summaries = load.finish()?;

    let requests_done: u64 = summaries
        .iter()
        .map(|s| s["requests"].as_u64().unwrap_or(0))
        .sum();
    for s in &summaries {
        ensure!(s["failed"] == 0, "failed requests during the rotation: {s}");
    }
    ensure!(
        summaries.len() >= 3 && requests_done > 100,
        "too little traffic: {summaries:?}"
    );
    let seen = |k: &str| -> BTreeSet<String> {
        summaries
            .iter()
            .flat_map(|s| s[k].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(norm_serial))
            .collect()
    };
    for (k, serial) in [
        ("server_serials", &old_server),
        ("server_serials", &new_server),
        ("client_serials", &old_client),
        ("client_serials", &new_client),
    ] {
        ensure!(
            seen(k).contains(serial),
            "{k} lacks {serial}: {summaries:?}"
        );
    }
    eprintln!(
        "CA lifecycle under load: {requests_done} requests in {} runs, 0 failed",
        summaries.len()
    );
    // Every pair that uses spiffe certificates still talks.
    for p in pairs {
        the_pair_talks(mesh, p)?;
    }
    Ok(())
}

pub(crate) fn issuer_is_ecdsa(chain_pem: &str) -> Result<bool> {
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
