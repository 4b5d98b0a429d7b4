//! The Services watch cache of the service-dns signer: a [`ServiceIndex`] kept up to
//! date from a `kube::runtime::watcher` stream, holding only what issuance reads
//! ([`ServiceInfo`]: namespace, name, type, selector), never whole Services.
//!
//! One writer ([`ServiceCacheWriter`], fed by [`maintain`]), cheap readers
//! ([`ServiceCache`], cloned into every reconciler). Relists behave like kube-rs'
//! reflector: the objects of a (re)list are collected aside and replace the live index
//! at `InitDone`, so a Service deleted while the watch was down disappears; the cache is
//! ready at the first `InitDone`.

use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher;
use tokio::sync::watch;

use super::metrics::Metrics;
use super::Error;
use crate::{PodInfo, ServiceIndex, ServiceInfo};

/// The issuer's view of a Service.
pub fn service_info(s: &Service) -> ServiceInfo {
    let spec = s.spec.as_ref();
    ServiceInfo {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: s.metadata.name.clone().unwrap_or_default(),
        service_type: match spec.and_then(|s| s.type_.as_deref()).unwrap_or_default() {
            // A headless Service: ClusterIP without a cluster IP.
            "" | "ClusterIP" if spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None") => {
                crate::ServiceType::Headless
            }
            other => other.into(),
        },
        selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
    }
}

/// The read side: cheap to clone, shared by every reconciler.
#[derive(Clone)]
pub struct ServiceCache {
    index: Arc<RwLock<ServiceIndex>>,
    ready: watch::Receiver<bool>,
}

/// The write side: applies watch events. There is one.
pub struct ServiceCacheWriter {
    index: Arc<RwLock<ServiceIndex>>,
    /// The (re)list in progress, between `Init` and `InitDone`.
    relist: Option<ServiceIndex>,
    ready: watch::Sender<bool>,
}

/// An empty, not yet ready cache and its writer.
pub fn service_cache() -> (ServiceCache, ServiceCacheWriter) {
    let index = Arc::new(RwLock::new(ServiceIndex::new()));
    let (tx, rx) = watch::channel(false);
    (
        ServiceCache {
            index: index.clone(),
            ready: rx,
        },
        ServiceCacheWriter {
            index,
            relist: None,
            ready: tx,
        },
    )
}

impl ServiceCache {
    /// A ready cache holding `services` (tests, benchmarks).
    pub fn fixed(services: impl IntoIterator<Item = Service>) -> ServiceCache {
        let (cache, mut writer) = service_cache();
        writer.apply(watcher::Event::Init);
        for s in services {
            writer.apply(watcher::Event::InitApply(s));
        }
        writer.apply(watcher::Event::InitDone);
        cache
    }

    /// The Services that select `pod` ([`ServiceInfo::selects`]), sorted by name.
    pub fn selecting(&self, pod: &PodInfo) -> Vec<ServiceInfo> {
        self.read(|index| index.selecting(pod).into_iter().cloned().collect())
    }

    /// How many Services the cache holds.
    pub fn len(&self) -> usize {
        self.read(ServiceIndex::len)
    }

    /// Whether the cache holds no Service.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list has completed.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits for the first complete list. Fails with [`Error::CacheNotReady`] if the
    /// writer is gone before that.
    pub async fn wait_until_ready(&self) -> Result<(), Error> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| Error::CacheNotReady { what: "services" })
    }

    fn read<T>(&self, f: impl FnOnce(&ServiceIndex) -> T) -> T {
        // The writer never panics while holding the lock; if it did, the index is
        // still a consistent value (every update is a single insert/remove/swap).
        f(&self.index.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ServiceCacheWriter {
    /// Applies one watch event.
    pub fn apply(&mut self, event: watcher::Event<Service>) {
        match event {
            watcher::Event::Init => self.relist = Some(ServiceIndex::new()),
            watcher::Event::InitApply(s) => self
                .relist
                .get_or_insert_with(ServiceIndex::new)
                .insert(service_info(&s)),
            watcher::Event::InitDone => {
                let fresh = self.relist.take().unwrap_or_default();
                *self.write() = fresh;
                self.ready.send_replace(true);
            }
            watcher::Event::Apply(s) => self.write().insert(service_info(&s)),
            watcher::Event::Delete(s) => {
                self.write().remove(
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default(),
                );
            }
        }
    }

    /// How many Services the live index holds.
    pub fn len(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the live index holds no Service.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ServiceIndex> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Feeds `writer` from `events` (a `watcher` stream with backoff) until the stream
/// ends, keeping the `cached_services` gauge current. Watch errors are logged; the
/// watcher retries them.
pub async fn maintain<S>(mut writer: ServiceCacheWriter, events: S, metrics: Arc<Metrics>)
where
    S: futures::Stream<Item = Result<watcher::Event<Service>, watcher::Error>>,
{
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let counts = !matches!(event, watcher::Event::InitApply(_));
                writer.apply(event);
                if counts {
                    metrics.cached_services(writer.len());
                }
            }
            Err(error) => {
                tracing::warn!(cache = "services", %error, "watch error; retrying with backoff")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ServiceSpec;
    use kube::api::ObjectMeta;

    use super::*;

    fn service(namespace: &str, name: &str, selector: &[(&str, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(namespace: &str, labels: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: namespace.into(),
            name: "p".into(),
            uid: "u".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        }
    }

    fn selecting(cache: &ServiceCache, namespace: &str, labels: &[(&str, &str)]) -> Vec<String> {
        cache
            .selecting(&pod(namespace, labels))
            .into_iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect()
    }

    #[tokio::test]
    async fn ready_after_the_first_complete_list_only() {
        let (cache, mut writer) = service_cache();
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitApply(service(
            "a",
            "web",
            &[("app", "web")],
        )));
        assert!(!cache.is_ready());
        assert!(
            selecting(&cache, "a", &[("app", "web")]).is_empty(),
            "a list in progress is not visible"
        );
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_until_ready().await }
        });
        writer.apply(watcher::Event::InitDone);
        waiter.await.expect("join").expect("ready");
        assert!(cache.is_ready());
        assert_eq!(selecting(&cache, "a", &[("app", "web")]), ["a/web"]);
    }

    #[tokio::test]
    async fn never_ready_if_the_writer_goes_away_first() {
        let (cache, writer) = service_cache();
        drop(writer);
        assert!(matches!(
            cache.wait_until_ready().await,
            Err(Error::CacheNotReady { what: "services" })
        ));
    }

    #[test]
    fn relist_drops_services_deleted_while_the_watch_was_down() {
        let (cache, mut writer) = service_cache();
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitApply(service(
            "a",
            "web",
            &[("app", "web")],
        )));
        writer.apply(watcher::Event::InitApply(service(
            "a",
            "old",
            &[("app", "web")],
        )));
        writer.apply(watcher::Event::InitDone);
        assert_eq!(
            selecting(&cache, "a", &[("app", "web")]),
            ["a/old", "a/web"]
        );
        // The watch broke; `old` was deleted meanwhile; the relist does not have it.
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitApply(service(
            "a",
            "web",
            &[("app", "web")],
        )));
        assert_eq!(
            selecting(&cache, "a", &[("app", "web")]),
            ["a/old", "a/web"],
            "readers keep the last complete state during a relist"
        );
        writer.apply(watcher::Event::InitDone);
        assert_eq!(selecting(&cache, "a", &[("app", "web")]), ["a/web"]);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn apply_updates_a_selector_and_delete_removes() {
        let (cache, mut writer) = service_cache();
        writer.apply(watcher::Event::Init);
        writer.apply(watcher::Event::InitDone);
        writer.apply(watcher::Event::Apply(service(
            "a",
            "web",
            &[("app", "web")],
        )));
        assert_eq!(selecting(&cache, "a", &[("app", "web")]), ["a/web"]);
        writer.apply(watcher::Event::Apply(service("a", "web", &[("app", "v2")])));
        assert!(selecting(&cache, "a", &[("app", "web")]).is_empty());
        assert_eq!(selecting(&cache, "a", &[("app", "v2")]), ["a/web"]);
        writer.apply(watcher::Event::Delete(service(
            "a",
            "web",
            &[("app", "v2")],
        )));
        assert!(selecting(&cache, "a", &[("app", "v2")]).is_empty());
        assert!(cache.is_empty());
    }

    /// Random watch event sequences (relists included) against a model that keeps
    /// whole Services the way kube-rs' reflector store does and filters all of them,
    /// as the controller did before the index.
    #[test]
    fn answers_like_a_reflector_store_filtered_by_brute_force() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let values = ["a", "b"];
        let keys = ["app", "tier", "zone"];
        for round in 0..30 {
            let (cache, mut writer) = service_cache();
            let (store, mut store_writer) = kube::runtime::reflector::store::<Service>();
            let mut listing = false;
            for step in 0..300 {
                let mut selector = Vec::new();
                for _ in 0..next(3) {
                    selector.push((keys[next(3)], values[next(2)]));
                }
                let mut s = service(["n1", "n2"][next(2)], &format!("s{}", next(8)), &selector);
                if next(5) == 0 {
                    s.spec.as_mut().expect("spec").type_ = Some("ExternalName".into());
                }
                let event = match (listing, next(10)) {
                    (false, 0) => {
                        listing = true;
                        watcher::Event::Init
                    }
                    (true, 0 | 1) => {
                        listing = false;
                        watcher::Event::InitDone
                    }
                    (true, _) => watcher::Event::InitApply(s),
                    (false, 1..=3) => watcher::Event::Delete(s),
                    (false, _) => watcher::Event::Apply(s),
                };
                store_writer.apply_watcher_event(&event);
                writer.apply(event);
                for _ in 0..3 {
                    let mut labels = Vec::new();
                    for _ in 0..next(4) {
                        labels.push((keys[next(3)], values[next(2)]));
                    }
                    let p = pod(["n1", "n2", "n3"][next(3)], &labels);
                    let expected: Vec<ServiceInfo> = {
                        let mut v: Vec<ServiceInfo> = store
                            .state()
                            .iter()
                            .filter(|s| s.metadata.namespace.as_deref() == Some(&p.namespace))
                            .map(|s| service_info(s))
                            .filter(|s| s.selects(&p))
                            .collect();
                        v.sort_by(|a, b| a.name.cmp(&b.name));
                        v
                    };
                    assert_eq!(
                        cache.selecting(&p),
                        expected,
                        "round {round} step {step} {p:?}"
                    );
                }
                assert_eq!(
                    cache.len(),
                    store.state().len(),
                    "round {round} step {step}"
                );
            }
        }
    }

    #[test]
    fn namespaces_are_isolated() {
        let cache = ServiceCache::fixed([
            service("a", "web", &[("app", "web")]),
            service("b", "web", &[("app", "web")]),
            service("b", "api", &[("app", "api")]),
        ]);
        assert_eq!(selecting(&cache, "a", &[("app", "web")]), ["a/web"]);
        assert_eq!(selecting(&cache, "b", &[("app", "web")]), ["b/web"]);
        assert!(selecting(&cache, "a", &[("app", "api")]).is_empty());
        assert!(selecting(&cache, "c", &[("app", "web")]).is_empty());
    }

    #[test]
    fn a_cluster_ip_of_none_is_a_headless_service() {
        let mut headless = service("a", "db", &[("app", "db")]);
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert_eq!(
            service_info(&headless).service_type,
            crate::ServiceType::Headless
        );
        headless.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        assert_eq!(
            service_info(&headless).service_type,
            crate::ServiceType::Headless
        );
        let mut plain = service("a", "db", &[("app", "db")]);
        plain.spec.as_mut().unwrap().cluster_ip = Some("10.0.0.7".into());
        assert_eq!(
            service_info(&plain).service_type,
            crate::ServiceType::ClusterIp
        );
        // Only a ClusterIP Service is headless; an ExternalName keeps its type.
        let mut ext = service("a", "x", &[]);
        ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        ext.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert_eq!(
            service_info(&ext).service_type,
            crate::ServiceType::ExternalName
        );
        // A headless Service selects pods: it is a candidate in the index.
        let cache = ServiceCache::fixed([headless]);
        assert_eq!(selecting(&cache, "a", &[("app", "db")]), ["a/db"]);
    }
}
