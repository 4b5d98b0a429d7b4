//! Faults: the signer killed mid-stream, kube-apiserver restarted, two
//! replicas, and the audit log's proof that every status was written once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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

pub(crate) async fn two_replicas_split_the_work(
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
