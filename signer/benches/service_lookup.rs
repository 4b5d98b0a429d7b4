//! The cost of finding the Services that select a pod, as a service-dns decision
//! does, against the number of Services in the whole cluster.
//!
//! ```text
//! cargo bench -p signer --bench service_lookup          # ROUNDS=10 ROUND_MS=100 by default
//! SERVICES=100,20000 cargo bench -p signer --bench service_lookup
//! ```
//!
//! The Services are spread over 200 namespaces (`ns-0` .. `ns-199`, round robin), each
//! selecting `app=app-<i>` for its index `i` within its namespace; the pod lives in
//! `ns-0` with the labels `app=app-0` and `pod-template-hash=<x>`, so exactly one Service
//! selects it. Variants, interleaved round by round:
//!
//! - **scan all** (baseline; the controller before the index): `Store<Service>::state()`
//!   of a kube-rs reflector store (every Arc cloned), filtered by namespace, converted
//!   to `ServiceInfo`, then filtered by `selects` as the issuer does;
//! - **namespace index**: [`ServiceIndex::in_namespace`], filtered by `selects`;
//! - **selector index** (what the controller does now): [`ServiceCache::selecting`]
//!   (read lock, one lookup per pod label, the matching `ServiceInfo`s cloned).
//!
//! Prints ns per lookup (median of rounds) and the ratio scan all / variant.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use kube::api::ObjectMeta;
use kube::runtime::{reflector, watcher};
use signer::controller::{service_info, ServiceCache};
use signer::{PodInfo, ServiceIndex, ServiceInfo};

const NAMESPACES: usize = 200;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn services(n: usize) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let ns = i % NAMESPACES;
            let within = i / NAMESPACES;
            Service {
                metadata: ObjectMeta {
                    namespace: Some(format!("ns-{ns}")),
                    name: format!("svc-{within}").into(),
                    labels: Some(BTreeMap::from([("team".into(), "t".into())])),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    selector: Some(BTreeMap::from([("app".into(), format!("app-{within}"))])),
                    ..Default::default()
                }),
                status: None,
            }
        })
        .collect()
}

/// Median ns per call of `f` over `rounds`, each at least `round` long.
fn time_per_call(round: Duration, mut f: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < round {
        for _ in 0..16 {
            black_box(f());
        }
        calls += 16;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = env_or("ROUNDS", 10);
    let round = Duration::from_millis(env_or("ROUND_MS", 100));
    let sizes: Vec<usize> = std::env::var("SERVICES")
        .unwrap_or_else(|_| "100,1000,20000,50000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let pod = PodInfo {
        namespace: "ns-0".into(),
        name: "pod".into(),
        uid: "uid".into(),
        labels: BTreeMap::from([
            ("app".into(), "app-0".into()),
            ("pod-template-hash".into(), "5d8f7c9b4".into()),
        ]),
        ..Default::default()
    };
    println!("Services selecting one pod, {NAMESPACES} namespaces, {rounds} rounds of {round:?}, median ns per lookup");
    println!();
    println!("| Services (in the pod's namespace) | scan all (baseline) | namespace index | selector index | ratio scan / namespace | ratio scan / selector |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let all = services(n);
        let (store, mut writer) = reflector::store::<Service>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for s in &all {
            writer.apply_watcher_event(&watcher::Event::InitApply(s.clone()));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let mut by_namespace = ServiceIndex::new();
        for s in &all {
            by_namespace.insert(service_info(s));
        }
        let cache = ServiceCache::fixed(all.clone());
        let in_pod_namespace = by_namespace.in_namespace(&pod.namespace).count();

        let scan = || {
            let found: Vec<ServiceInfo> = store
                .state()
                .iter()
                .filter(|s| s.metadata.namespace.as_deref() == Some(pod.namespace.as_str()))
                .map(|s| service_info(s))
                .collect();
            found.iter().filter(|s| s.selects(&pod)).count()
        };
        let namespace = || {
            let found: Vec<ServiceInfo> =
                by_namespace.in_namespace(&pod.namespace).cloned().collect();
            found.iter().filter(|s| s.selects(&pod)).count()
        };
        let selector = || cache.selecting(&pod).len();
        // Same answer from all three, or the comparison means nothing.
        assert_eq!(scan(), 1);
        assert_eq!(namespace(), 1);
        assert_eq!(selector(), 1);

        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(time_per_call(round, scan));
            b.push(time_per_call(round, namespace));
            c.push(time_per_call(round, selector));
        }
        let (a, b, c) = (median(a), median(b), median(c));
        println!(
            "| {n} ({in_pod_namespace}) | {a:.0} ns | {b:.0} ns | {c:.0} ns | {:.1} | {:.1} |",
            a / b,
            a / c
        );
    }
}
