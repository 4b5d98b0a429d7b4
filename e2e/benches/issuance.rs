//! Issuance against the real API server: N pods (default 1,000) across S
//! Services (default 100), each pod with one `row-major.net/service-dns`
//! certificate (so every issuance maps the pod to its Service), with one and
//! with two signer replicas, each on a fresh test cluster.
//!
//! ```text
//! cargo bench -p podtls-e2e --bench issuance
//! PODTLS_BENCH_PODS=200 PODTLS_BENCH_SERVICES=20 PODTLS_BENCH_RELEASE=1.37 cargo bench -p podtls-e2e --bench issuance
//! ```
//!
//! Reports PCRs issued per second (first PCR created to last Issued), the time
//! from each PCR's creation to its Issued status as seen by a watch (p50, p99,
//! max), the signer's API requests per issuance (from the audit log, by its
//! ServiceAccount, for the whole run including start-up) and each replica's
//! peak RSS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use futures::StreamExt as _;
use podtls_e2e::kube::runtime::watcher;
use podtls_e2e::*;
use serde_json::json;

const NAMESPACE: &str = "bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let pods = env_usize("PODTLS_BENCH_PODS", 1000);
    let services = env_usize("PODTLS_BENCH_SERVICES", 100).max(1);
    let release = match std::env::var("PODTLS_BENCH_RELEASE").as_deref() {
        Ok("1.37") => Release::V1_37,
        Ok("1.36") => Release::V1_36,
        _ => Release::V1_35,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "issuance benchmark: {pods} pods across {services} Services, Kubernetes {}",
        release.as_str()
    );
    println!();
    println!("| replicas | issued/s | creation -> Issued p50 | p99 | max | signer API requests / issuance | signer peak RSS |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    for replicas in [1, 2] {
        let cluster = TestCluster::start(release)?;
        let r = rt
            .block_on(run(&cluster, replicas, pods, services))
            .with_context(|| format!("{replicas} replica(s)"))?;
        println!(
            "| {replicas} | {:.0} | {:.2} s | {:.2} s | {:.2} s | {:.2} | {} |",
            r.per_second,
            r.p50.as_secs_f64(),
            r.p99.as_secs_f64(),
            r.max.as_secs_f64(),
            r.requests_per_issuance,
            r.peak_rss_mb
                .iter()
                .map(|m| format!("{m:.0} MB"))
                .collect::<Vec<_>>()
                .join(" + ")
        );
        eprintln!(
            "signer API requests ({replicas} replica(s)): {:?}",
            r.requests
        );
    }
    Ok(())
}

struct Outcome {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    requests_per_issuance: f64,
    requests: BTreeMap<String, usize>,
    peak_rss_mb: Vec<f64>,
}

async fn run(
    cluster: &TestCluster,
    replicas: usize,
    pods: usize,
    services: usize,
) -> Result<Outcome> {
    let mesh = Mesh::install(cluster).await?;
    let mut signers = Vec::new();
    for r in ["a", "b"].iter().take(replicas) {
        signers.push(mesh.start_signer(r, &[]).await?);
    }
    apply(
        &mesh.client,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )
    .await?;
    apply(
        &mesh.client,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": NAMESPACE, "name": "default"}}),
    )
    .await
    .ok();
    for s in 0..services {
        apply(
            &mesh.client,
            &json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"namespace": NAMESPACE, "name": format!("svc-{s}")},
                "spec": {"selector": {"app": format!("app-{s}")}, "ports": [{"port": 443}]},
            }),
        )
        .await?;
    }
    if replicas > 1 {
        // Both replicas see both Leases before the load.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let requests = Requests::new(&mesh.client).await?;

    // Watch the requests: creation and Issued as the API server publishes them.
    let api: kube::Api<signer::controller::PodCertificateRequest> =
        kube::Api::namespaced_with(mesh.client.clone(), NAMESPACE, &requests.apis.pcr);
    let watch = tokio::spawn(async move {
        let mut created: BTreeMap<String, Instant> = BTreeMap::new();
        let mut issued: BTreeMap<String, Instant> = BTreeMap::new();
        let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
        while let Some(event) = stream.next().await {
            let objs = match event {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => vec![o],
                _ => continue,
            };
            for o in objs {
                let name = o.metadata.name.clone().unwrap_or_default();
                created.entry(name.clone()).or_insert_with(Instant::now);
                if outcome(&o).is_some_and(|(t, _)| t == "Issued") {
                    issued.entry(name).or_insert_with(Instant::now);
                }
            }
            if issued.len() >= pods {
                break;
            }
        }
        (created, issued)
    });

    let start = Instant::now();
    let template = json!({
        "metadata": {"labels": {}},
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{"name": "c", "image": "none"}],
            "volumes": [{"name": "podtls", "projected": {"sources": [{"podCertificate": {
                "signerName": "row-major.net/service-dns",
                "keyType": "ED25519",
                "credentialBundlePath": "credentialbundle.pem",
            }}]}}],
        },
    });
    let nodes = cluster.nodes();
    // A few creations in flight at once, like a rollout.
    let mut batch = Vec::new();
    for i in 0..pods {
        let client = mesh.client.clone();
        let template = template.clone();
        let node = nodes[i % nodes.len()].clone();
        batch.push(async move {
            create_pod_from_template(
                &client,
                &template,
                NAMESPACE,
                &format!("pod-{i}"),
                &node,
                |p| {
                    p["metadata"]["labels"] = json!({"app": format!("app-{}", i % services)});
                },
            )
            .await
        });
        if batch.len() == 16 || i + 1 == pods {
            let results = futures_join_all(std::mem::take(&mut batch)).await;
            for r in results {
                r?;
            }
        }
    }
    let (created, issued) = tokio::time::timeout(Duration::from_secs(600), watch)
        .await
        .context("not every request issued within 10 minutes")??;
    if issued.len() < pods {
        bail!("only {} of {pods} issued", issued.len());
    }
    let last = issued.values().max().copied().unwrap_or(start);
    let mut latencies: Vec<Duration> = issued
        .iter()
        .filter_map(|(n, t)| Some(t.saturating_duration_since(*created.get(n)?)))
        .collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    // Let the audit log's last batch land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let by = requests_by(
        &cluster.audit_events()?,
        "system:serviceaccount:mesh-controller:signer",
    );
    let total: usize = by.values().sum();
    Ok(Outcome {
        per_second: pods as f64 / last.duration_since(start).as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        max: pct(1.0),
        requests_per_issuance: total as f64 / pods as f64,
        requests: by,
        peak_rss_mb: signers
            .iter()
            .map(|s| s.proc.peak_rss().unwrap_or(0) as f64 / 1e6)
            .collect(),
    })
}

/// Awaits every future (they run concurrently on the runtime).
async fn futures_join_all<F, T>(futs: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}
