//! Faults: the signer killed mid-stream, kube-apiserver restarted, two
//! replicas, a replica rolled under load, and the audit log's proof that every
//! status was written once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use podtls_e2e::*;

use crate::*;

/// Creates `n` pods from the spiffe-mtls client template named `prefix-i`,
/// `i` counting from `first`.
pub(crate) async fn create_burst(
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

pub(crate) async fn all_issued(
    requests: &Requests,
    pods: &[String],
    timeout: Duration,
) -> Result<()> {
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

pub(crate) async fn signer_killed_mid_stream_loses_and_repeats_nothing(
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

pub(crate) async fn watches_survive_an_apiserver_restart(
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

/// Starts replica b next to `a` and checks that 24 pods' requests are split
/// between them; returns b.
pub(crate) async fn two_replicas_split_the_work(
    mesh: &Mesh<'_>,
    requests: &Requests,
    a: &SignerReplica,
) -> Result<SignerReplica> {
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
    Ok(b)
}

/// The longest a request may wait for its certificate while a replica is rolled.
/// Issuance takes ~10 ms (BENCHMARKS.md), a Lease deletion reaches the other replica's
/// watch within milliseconds, and a joining replica is seen the same way; 5 s leaves room
/// for a loaded 2-core machine while staying well under the 10 s requeue period that a
/// missed hand-over costs at least, and the 25 s (Lease expiry 15 s + requeue 10 s) that
/// a replica leaving without deleting its Lease costs.
pub(crate) const ROLL_MAX_WAIT: Duration = Duration::from_secs(5);

/// Pods are created at 4/s from the spiffe-mtls client template while replica b gets
/// SIGTERM (after the 8th pod) and a new replica c is started; pod creation goes on for
/// 8 more pods after c is ready. Every request's wait (first seen by a watch -> seen
/// Issued) must stay under [`ROLL_MAX_WAIT`]; b exits 0 and its Lease is gone.
pub(crate) async fn a_replica_roll_hands_over_at_once(
    mesh: &Mesh<'_>,
    requests: &Requests,
    mut b: SignerReplica,
) -> Result<SignerReplica> {
    use futures::StreamExt as _;
    use kube::runtime::{watcher, WatchStreamExt as _};
    use signer::controller::PodCertificateRequest;

    const PREFIX: &str = "roll";
    // When each request was first seen, and first seen Issued.
    type Seen = BTreeMap<String, (Instant, Option<Instant>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let api: kube::Api<PodCertificateRequest> =
        kube::Api::namespaced_with(mesh.client.clone(), "spiffe-mtls", &requests.apis.pcr);
    let (watch_ready_tx, watch_ready) = tokio::sync::oneshot::channel();
    let watch = {
        let seen = seen.clone();
        let mut ready = Some(watch_ready_tx);
        tokio::spawn(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .for_each(move |event| {
                    let now = Instant::now();
                    let pcrs: Vec<PodCertificateRequest> = match event {
                        Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                            vec![p]
                        }
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = ready.take() {
                                let _ = tx.send(());
                            }
                            vec![]
                        }
                        _ => vec![],
                    };
                    let mut seen = seen.lock().unwrap();
                    for p in pcrs {
                        if !p.spec.pod_name.starts_with(&format!("{PREFIX}-")) {
                            continue;
                        }
                        let issued = matches!(outcome(&p), Some((t, _)) if t == "Issued");
                        let entry = seen.entry(key(&p)).or_insert((now, None));
                        if issued && entry.1.is_none() {
                            entry.1 = Some(now);
                        }
                    }
                    futures::future::ready(())
                }),
        )
    };
    watch_ready
        .await
        .context("the request watch ended before its first list")?;

    // The pod creator: one pod every 250 ms until told to stop.
    let created = Arc::new(AtomicUsize::new(0));
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let creator = {
        let client = mesh.client.clone();
        let docs = load_manifest(&manifests_dir().join("spiffe-mtls.yaml"))?;
        let nodes = mesh.cluster.nodes();
        let created = created.clone();
        tokio::spawn(async move {
            let template = pod_template(&docs, "client")?;
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut names = Vec::new();
            for i in 0.. {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tick.tick() => {}
                }
                let name = format!("{PREFIX}-{i}");
                create_pod_from_template(
                    &client,
                    template,
                    "spiffe-mtls",
                    &name,
                    &nodes[i % nodes.len()],
                    |_| {},
                )
                .await?;
                names.push(name);
                created.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(names)
        })
    };
    let created_at_least = |n: usize| {
        let created = created.clone();
        move || {
            let done = created.load(Ordering::Relaxed) >= n;
            async move { Ok(done.then_some(())) }
        }
    };

    eventually(
        "8 pods created",
        Duration::from_secs(30),
        created_at_least(8),
    )
    .await?;
    let terminated = Instant::now();
    let code = tokio::task::block_in_place(|| b.proc.terminate(Duration::from_secs(30)));
    let shutdown_took = terminated.elapsed();
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(mesh.client.clone(), CONTROLLER_NAMESPACE);
    let b_lease_after_exit = leases.get_opt(&b.pod).await?;
    let c = mesh.start_signer("c", &[SPIFFE_KEY_TYPES]).await?;
    let at_c = created.load(Ordering::Relaxed);
    eventually(
        "8 more pods created",
        Duration::from_secs(30),
        created_at_least(at_c + 8),
    )
    .await?;
    let _ = stop_tx.send(true);
    let pods = creator.await??;
    all_issued(requests, &pods, Duration::from_secs(90)).await?;
    let waits: Vec<(String, Duration)> = eventually(
        "the watch saw every request issued",
        Duration::from_secs(10),
        || {
            let seen = seen.lock().unwrap();
            let waits: Option<Vec<_>> = seen
                .iter()
                .map(|(k, (first, issued))| issued.map(|i| (k.clone(), i - *first)))
                .collect();
            let enough = seen.len() >= pods.len();
            async move { Ok(waits.filter(|_| enough)) }
        },
    )
    .await?;
    watch.abort();
    let (longest_request, longest) = waits
        .iter()
        .max_by_key(|(_, w)| *w)
        .cloned()
        .context("no requests")?;
    let mut sorted: Vec<Duration> = waits.iter().map(|(_, w)| *w).collect();
    sorted.sort();
    eprintln!(
        "replica roll: {} requests while b was terminated (exit {code:?} after {shutdown_took:?}) and c started; wait creation -> Issued: median {:?}, longest {longest:?} ({longest_request})",
        waits.len(),
        sorted[sorted.len() / 2],
    );
    ensure!(
        longest < ROLL_MAX_WAIT,
        "{longest_request} waited {longest:?} for its certificate (bound {ROLL_MAX_WAIT:?})"
    );
    ensure!(
        code == Some(0),
        "replica b did not exit cleanly on SIGTERM ({code:?}):\n{}",
        b.proc.tail(20)
    );
    ensure!(
        b_lease_after_exit.is_none(),
        "replica b's Lease outlived it:\n{}",
        b.proc.tail(20)
    );
    Ok(c)
}

/// Waits until the audit log records a successful status write for every
/// decided request, and returns the writes per request.
pub(crate) async fn audit_caught_up(
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

pub(crate) async fn every_status_was_written_once(
    cluster: &TestCluster,
    requests: &Requests,
) -> Result<()> {
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
