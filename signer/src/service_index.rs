//! The cluster's Services, indexed so that "which Services select this pod" costs what
//! the pod's own labels and namespace cost, not what the rest of the cluster costs.
//!
//! Each Service that can select pods (see [`ServiceInfo::selects`]: a ClusterIP,
//! NodePort or LoadBalancer Service with a non-empty selector) is filed under one
//! *anchor*: its namespace and the first pair of its selector (the smallest key, as the
//! selector is a `BTreeMap`). A pod can only be selected by a Service whose every pair,
//! the anchor included, is among the pod's labels, so the candidates for a pod are the
//! Services anchored at one of its labels in its namespace; [`ServiceIndex::selecting`]
//! then checks each candidate with [`ServiceInfo::selects`] itself, so the answer is
//! exactly that of filtering every Service, only cheaper. Services that can select no
//! pod are kept (for [`ServiceIndex::in_namespace`] and [`ServiceIndex::len`]) but are
//! never candidates.
//!
//! Pure: no Kubernetes types, no clock. The controller's `service_cache` feeds it from
//! a watch.

use std::collections::{BTreeSet, HashMap};

use crate::{PodInfo, ServiceInfo};

/// Services by namespace and name, with the selector index described in the module docs.
#[derive(Debug, Default, Clone)]
pub struct ServiceIndex {
    namespaces: HashMap<String, Namespace>,
    len: usize,
}

#[derive(Debug, Default, Clone)]
struct Namespace {
    /// name -> Service.
    services: HashMap<String, ServiceInfo>,
    /// anchor key -> anchor value -> names of the Services anchored there.
    anchored: HashMap<String, HashMap<String, BTreeSet<String>>>,
}

/// The pair a Service is filed under, if it can select pods at all.
fn anchor(service: &ServiceInfo) -> Option<(&str, &str)> {
    if !service.can_select_pods() {
        return None;
    }
    service
        .selector
        .iter()
        .next()
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

impl Namespace {
    fn unanchor(&mut self, service: &ServiceInfo) {
        let Some((key, value)) = anchor(service) else {
            return;
        };
        if let Some(values) = self.anchored.get_mut(key) {
            if let Some(names) = values.get_mut(value) {
                names.remove(&service.name);
                if names.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.anchored.remove(key);
            }
        }
    }
}

impl ServiceIndex {
    /// An empty index.
    pub fn new() -> ServiceIndex {
        ServiceIndex::default()
    }

    /// Adds a Service or replaces the one with the same namespace and name (a changed
    /// selector or type moves it to its new anchor).
    pub fn insert(&mut self, service: ServiceInfo) {
        let ns = self
            .namespaces
            .entry(service.namespace.clone())
            .or_default();
        if let Some((key, value)) = anchor(&service) {
            ns.anchored
                .entry(key.to_string())
                .or_default()
                .entry(value.to_string())
                .or_default()
                .insert(service.name.clone());
        }
        let name = service.name.clone();
        match ns.services.insert(name, service) {
            Some(old) => {
                // Re-file: drop the old anchor unless it is the new one.
                let new = &ns.services[&old.name];
                if anchor(&old) != anchor(new) {
                    ns.unanchor(&old);
                }
            }
            None => self.len += 1,
        }
    }

    /// Removes the Service `namespace/name`, returning it if it was there.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<ServiceInfo> {
        let ns = self.namespaces.get_mut(namespace)?;
        let old = ns.services.remove(name)?;
        ns.unanchor(&old);
        if ns.services.is_empty() {
            self.namespaces.remove(namespace);
        }
        self.len -= 1;
        Some(old)
    }

    /// The Service `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&ServiceInfo> {
        self.namespaces.get(namespace)?.services.get(name)
    }

    /// How many Services the index holds, in every namespace.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no Service.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every Service of `namespace` (any type, any selector), in no particular order.
    pub fn in_namespace<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a ServiceInfo> {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|ns| ns.services.values())
    }

    /// The Services that select `pod` ([`ServiceInfo::selects`]), sorted by name. Costs
    /// one lookup per pod label plus one check per Service anchored at one of them.
    pub fn selecting(&self, pod: &PodInfo) -> Vec<&ServiceInfo> {
        let Some(ns) = self.namespaces.get(&pod.namespace) else {
            return Vec::new();
        };
        let mut out: Vec<&ServiceInfo> = Vec::new();
        for (key, value) in &pod.labels {
            let Some(names) = ns.anchored.get(key).and_then(|values| values.get(value)) else {
                continue;
            };
            out.extend(
                names
                    .iter()
                    .filter_map(|name| ns.services.get(name))
                    .filter(|s| s.selects(pod)),
            );
        }
        // Each Service has one anchor, so no duplicates; sort for a stable answer.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ServiceType;

    fn svc(
        namespace: &str,
        name: &str,
        service_type: &str,
        selector: &[(&str, &str)],
    ) -> ServiceInfo {
        ServiceInfo {
            namespace: namespace.into(),
            name: name.into(),
            service_type: service_type.into(),
            selector: selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
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
                .collect(),
            ..Default::default()
        }
    }

    fn names(found: Vec<&ServiceInfo>) -> Vec<String> {
        found
            .into_iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect()
    }

    #[test]
    fn finds_services_whose_whole_selector_matches() {
        let mut index = ServiceIndex::new();
        index.insert(svc("a", "web", "", &[("app", "web")]));
        index.insert(svc(
            "a",
            "web-canary",
            "",
            &[("app", "web"), ("track", "canary")],
        ));
        index.insert(svc("a", "by-tier", "NodePort", &[("tier", "front")]));
        index.insert(svc("a", "db", "", &[("app", "db")]));
        let p = pod("a", &[("app", "web"), ("tier", "front")]);
        assert_eq!(names(index.selecting(&p)), ["a/by-tier", "a/web"]);
        let canary = pod("a", &[("app", "web"), ("track", "canary")]);
        assert_eq!(names(index.selecting(&canary)), ["a/web", "a/web-canary"]);
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn never_offers_services_that_select_no_pods() {
        let mut index = ServiceIndex::new();
        index.insert(svc("a", "manual", "", &[]));
        index.insert(svc("a", "ext", "ExternalName", &[("app", "web")]));
        index.insert(svc("a", "odd", "Headless?", &[("app", "web")]));
        let p = pod("a", &[("app", "web")]);
        assert!(index.selecting(&p).is_empty());
        assert_eq!(index.in_namespace("a").count(), 3);
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn namespaces_are_isolated() {
        let mut index = ServiceIndex::new();
        index.insert(svc("a", "web", "", &[("app", "web")]));
        index.insert(svc("b", "web", "", &[("app", "web")]));
        assert_eq!(
            names(index.selecting(&pod("b", &[("app", "web")]))),
            ["b/web"]
        );
        assert!(index.selecting(&pod("c", &[("app", "web")])).is_empty());
        assert_eq!(
            index.remove("a", "web").map(|s| s.namespace),
            Some("a".into())
        );
        assert_eq!(
            names(index.selecting(&pod("b", &[("app", "web")]))),
            ["b/web"]
        );
        assert!(index.selecting(&pod("a", &[("app", "web")])).is_empty());
    }

    #[test]
    fn changed_selector_moves_the_service() {
        let mut index = ServiceIndex::new();
        index.insert(svc("a", "web", "", &[("app", "web")]));
        index.insert(svc("a", "web", "", &[("app", "web2")]));
        assert!(index.selecting(&pod("a", &[("app", "web")])).is_empty());
        assert_eq!(
            names(index.selecting(&pod("a", &[("app", "web2")]))),
            ["a/web"]
        );
        // Same anchor, narrower selector.
        index.insert(svc("a", "web", "", &[("app", "web2"), ("v", "2")]));
        assert!(index.selecting(&pod("a", &[("app", "web2")])).is_empty());
        // Turned into an ExternalName: no longer a candidate, still counted.
        index.insert(svc(
            "a",
            "web",
            "ExternalName",
            &[("app", "web2"), ("v", "2")],
        ));
        assert!(index
            .selecting(&pod("a", &[("app", "web2"), ("v", "2")]))
            .is_empty());
        assert_eq!(index.len(), 1);
        assert_eq!(
            index.get("a", "web").map(|s| s.service_type.clone()),
            Some(ServiceType::ExternalName)
        );
    }

    #[test]
    fn remove_of_unknown_service_changes_nothing() {
        let mut index = ServiceIndex::new();
        index.insert(svc("a", "web", "", &[("app", "web")]));
        assert!(index.remove("a", "nope").is_none());
        assert!(index.remove("b", "web").is_none());
        assert_eq!(index.len(), 1);
        assert!(index.remove("a", "web").is_some());
        assert!(index.is_empty());
        assert!(index.namespaces.is_empty(), "empty namespaces are dropped");
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Rng {
            Rng(seed.max(1))
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    fn random_labels(rng: &mut Rng, max: usize) -> BTreeMap<String, String> {
        (0..rng.below(max + 1))
            .map(|_| {
                (
                    ["app", "tier", "track", "zone"][rng.below(4)].to_string(),
                    ["a", "b", "c"][rng.below(3)].to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn answers_like_filtering_every_service_over_random_changes() {
        for seed in 1..=40u64 {
            let mut rng = Rng::new(seed);
            let mut index = ServiceIndex::new();
            let mut all: BTreeMap<(String, String), ServiceInfo> = BTreeMap::new();
            for step in 0..400 {
                let namespace = ["a", "b", "c"][rng.below(3)].to_string();
                let name = format!("s{}", rng.below(12));
                if rng.below(4) == 0 {
                    let removed = index.remove(&namespace, &name);
                    let expected = all.remove(&(namespace.clone(), name.clone()));
                    assert_eq!(removed, expected, "seed {seed} step {step}");
                } else {
                    let s = ServiceInfo {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        service_type: ["", "ClusterIP", "NodePort", "ExternalName"][rng.below(4)]
                            .into(),
                        selector: random_labels(&mut rng, 2),
                    };
                    index.insert(s.clone());
                    all.insert((namespace, name), s);
                }
                assert_eq!(index.len(), all.len(), "seed {seed} step {step}");
                for _ in 0..3 {
                    let p = PodInfo {
                        namespace: ["a", "b", "c", "d"][rng.below(4)].into(),
                        name: "p".into(),
                        uid: "u".into(),
                        labels: random_labels(&mut rng, 4),
                        ..Default::default()
                    };
                    let expected: Vec<&ServiceInfo> =
                        all.values().filter(|s| s.selects(&p)).collect();
                    assert_eq!(
                        index.selecting(&p),
                        expected,
                        "seed {seed} step {step} pod {p:?}"
                    );
                    let mut in_ns: Vec<&ServiceInfo> = index.in_namespace(&p.namespace).collect();
                    in_ns.sort_by(|a, b| a.name.cmp(&b.name));
                    let expected_ns: Vec<&ServiceInfo> = all
                        .values()
                        .filter(|s| s.namespace == p.namespace)
                        .collect();
                    assert_eq!(in_ns, expected_ns, "seed {seed} step {step}");
                }
            }
        }
    }
}
