//! Issuance against the real API server: N pods (default 1,000), each with one
//! `row-major.net/service-dns` certificate (so every issuance maps the pod to its
//! Service), with the rest of the cluster small and large: 100 and 20,000 Services
//! by default, spread 100 per namespace (the pods' namespace `bench` holds its share,
//! the others are in `other-1` .. `other-199`), each row on a fresh test cluster.
//!
//! ```text
//! cargo bench -p podtls-e2e --bench issuance
//! PODTLS_BENCH_PODS=200 PODTLS_BENCH_SERVICES=100,2000 PODTLS_BENCH_REPLICAS=1,2 \
//!     PODTLS_BENCH_RELEASE=1.37 cargo bench -p podtls-e2e --bench issuance
//! ```
//!
//! Environment: `PODTLS_BENCH_PODS` (1000), `PODTLS_BENCH_SERVICES` (comma list,
//! `100,20000`), `PODTLS_BENCH_SERVICES_PER_NAMESPACE` (100), `PODTLS_BENCH_REPLICAS`
//! (comma list, `1`), `PODTLS_BENCH_RELEASE` (1.35).
//!
//! The Services exist before the signers start (created 32 at a time), and each
//! replica's `podtls_signer_cached_services` gauge must show all of them before the
//! pods are created. Reported per row: the signer's decision time (its
//! `podtls_signer_decision_seconds` histogram: snapshot from the caches, checks,
//! signing; p50/p99 interpolated within buckets, all replicas), PCRs issued per second
//! (first PCR created to last Issued), the time from each PCR's creation to its Issued
//! status as seen by a watch (p50, p99), each replica's RSS once its caches are filled
//! and its peak, the growth per 1,000 pods ((peak - before pods) / pods x 1,000), and
//! the signer's API requests per issuance (from the audit log, by its ServiceAccount,
//! for the whole run including start-up; the per-request breakdown goes to stderr).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use futures::{StreamExt as _, TryStreamExt as _};
use podtls_e2e::k8s_openapi::api::core::v1::{Namespace, Service};
use podtls_e2e::kube::api::PostParams;
use podtls_e2e::kube::runtime::watcher;
use podtls_e2e::*;
use serde_json::json;

const NAMESPACE: &str = "bench";
const SERVICE_CREATE_CONCURRENCY: usize = 32;
const DECISION: &str = "podtls_signer_decision_seconds";
const SERVICE_DNS: &str = "signer=\"row-major.net/service-dns\"";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

struct Shape {
    pods: usize,
    services: usize,
    per_namespace: usize,
    replicas: usize,
}

impl Shape {
    /// Services in the pods' namespace.
    fn own(&self) -> usize {
        self.services.min(self.per_namespace).max(1)
    }
}

fn main() -> Result<()> {
    let pods = env_usize("PODTLS_BENCH_PODS", 1000);
    let per_namespace = env_usize("PODTLS_BENCH_SERVICES_PER_NAMESPACE", 100).max(1);
    let services = env_list("PODTLS_BENCH_SERVICES", "100,20000");
    let replicas = env_list("PODTLS_BENCH_REPLICAS", "1");
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
        "issuance benchmark: {pods} pods, Services {services:?} ({per_namespace} per namespace), replicas {replicas:?}, Kubernetes {}",
        release.as_str()
    );
    let mut rows = Vec::new();
    for &services in &services {
        for &replicas in &replicas {
            let shape = Shape {
                pods,
                services: services.max(1),
                per_namespace,
                replicas: replicas.clamp(1, 2),
            };
            let cluster = TestCluster::start(release)?;
            let r = rt
                .block_on(run(&cluster, &shape))
                .with_context(|| format!("{services} Services, {replicas} replica(s)"))?;
            eprintln!(
                "{services} Services, {replicas} replica(s): created in {:.1} s; signer API requests: {:?}",
                r.services_created.as_secs_f64(),
                r.requests
            );
            rows.push((shape, r));
        }
    }
    println!();
    println!("| Services (namespaces) | replicas | decision p50 | p99 | creation -> Issued p50 | p99 | PCRs issued/s | signer RSS: caches filled -> peak | RSS per 1,000 pods | API requests / issuance |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
    for (shape, r) in &rows {
        let ms = |s: Option<f64>| s.map_or("n/a".into(), |s| format!("{:.2} ms", s * 1e3));
        let namespaces = shape.services.div_ceil(shape.per_namespace);
        println!(
            "| {} ({namespaces}) | {} | {} | {} | {:.0} ms | {:.0} ms | {:.0} | {} | {:.1} MB | {:.3} |",
            shape.services,
            shape.replicas,
            ms(r.decision_p50),
            ms(r.decision_p99),
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.per_second,
            r.rss
                .iter()
                .map(|(before, peak)| format!("{:.0} -> {:.0} MB", before / 1e6, peak / 1e6))
                .collect::<Vec<_>>()
                .join(" + "),
            r.rss_per_1000_pods / 1e6,
            r.requests_per_issuance,
        );
    }
    Ok(())
}

struct Outcome {
    services_created: Duration,
    decision_p50: Option<f64>,
    decision_p99: Option<f64>,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    requests_per_issuance: f64,
    requests: BTreeMap<String, usize>,
    /// Per replica: (RSS with the caches filled, before the pods; peak RSS), bytes.
    rss: Vec<(f64, f64)>,
    rss_per_1000_pods: f64,
}

/// Creates the namespaces and Services: `own` in `bench`, the rest `per_namespace` to
/// a namespace in `other-N`; `svc-<i>` selects `app=app-<i>` in every namespace.
async fn create_services(client: &kube::Client, shape: &Shape) -> Result<()> {
    let mut layout: Vec<(String, usize)> = vec![(NAMESPACE.into(), shape.own())];
    let mut left = shape.services - shape.own();
    let mut n = 1;
    while left > 0 {
        let here = left.min(shape.per_namespace);
        layout.push((format!("other-{n}"), here));
        left -= here;
        n += 1;
    }
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    for (ns, _) in &layout {
        let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating namespace {ns}"))?;
    }
    futures::stream::iter(layout.iter().flat_map(|(ns, count)| {
        (0..*count).map(move |i| {
            let client = client.clone();
            async move {
                let api: kube::Api<Service> = kube::Api::namespaced(client, ns);
                let service: Service = serde_json::from_value(json!({
                    "metadata": {"namespace": ns, "name": format!("svc-{i}")},
                    "spec": {"selector": {"app": format!("app-{i}")}, "ports": [{"port": 443}]},
                }))?;
                api.create(&PostParams::default(), &service)
                    .await
                    .with_context(|| format!("creating Service {ns}/svc-{i}"))?;
                anyhow::Ok(())
            }
        })
    }))
    .buffer_unordered(SERVICE_CREATE_CONCURRENCY)
    .try_collect::<()>()
    .await
}

/// Polls a replica's `/metrics` until its Services cache holds `services`.
async fn wait_for_cached_services(signer: &SignerReplica, services: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = 0.0;
    while Instant::now() < deadline {
        let text = signer.metrics().await?;
        if !text.contains("podtls_signer_cached_services") {
            // A signer from before the gauge (comparison runs): it is ready only once
            // its first list of Services is complete, and it is ready.
            eprintln!(
                "replica {}: no cached_services gauge; readiness is the check",
                signer.pod
            );
            return Ok(());
        }
        seen = metric_sum(&text, "podtls_signer_cached_services", &[]);
        if seen as usize >= services {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "replica {} caches {seen} of {services} Services after 300 s",
        signer.pod
    )
}

async fn run(cluster: &TestCluster, shape: &Shape) -> Result<Outcome> {
    let mesh = Mesh::install(cluster).await?;
    let created = Instant::now();
    create_services(&mesh.client, shape).await?;
    let services_created = created.elapsed();
    apply(
        &mesh.client,
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": NAMESPACE, "name": "default"}}),
    )
    .await
    .ok();
    let mut signers = Vec::new();
    for r in ["a", "b"].iter().take(shape.replicas) {
        let signer = mesh.start_signer(r, &[]).await?;
        wait_for_cached_services(&signer, shape.services).await?;
        signers.push(signer);
    }
    if shape.replicas > 1 {
        // Both replicas see both Leases before the load.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let rss_before: Vec<f64> = signers
        .iter()
        .map(|s| s.proc.rss().unwrap_or(0) as f64)
        .collect();
    let requests = Requests::new(&mesh.client).await?;

    // Watch the requests: creation and Issued as the API server publishes them.
    let api: kube::Api<signer::controller::PodCertificateRequest> =
        kube::Api::namespaced_with(mesh.client.clone(), NAMESPACE, &requests.apis.pcr);
    let pods = shape.pods;
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
    let own = shape.own();
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
                    p["metadata"]["labels"] = json!({"app": format!("app-{}", i % own)});
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

    let mut decisions = Histogram::default();
    for s in &signers {
        decisions.merge(&Histogram::parse(
            &s.metrics().await?,
            DECISION,
            &[SERVICE_DNS],
        ));
    }
    let rss: Vec<(f64, f64)> = signers
        .iter()
        .zip(&rss_before)
        .map(|(s, before)| (*before, s.proc.peak_rss().unwrap_or(0) as f64))
        .collect();
    let growth: f64 = rss.iter().map(|(before, peak)| peak - before).sum();
    // Let the audit log's last batch land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let by = requests_by(
        &cluster.audit_events()?,
        "system:serviceaccount:mesh-controller:signer",
    );
    let total: usize = by.values().sum();
    Ok(Outcome {
        services_created,
        decision_p50: decisions.quantile(0.5),
        decision_p99: decisions.quantile(0.99),
        per_second: pods as f64 / last.duration_since(start).as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        requests_per_issuance: total as f64 / pods as f64,
        requests: by,
        rss,
        rss_per_1000_pods: growth / pods as f64 * 1000.0,
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
