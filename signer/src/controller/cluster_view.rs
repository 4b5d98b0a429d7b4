//! The pods, Nodes and ServiceAccounts every signer checks requests against: watch
//! caches for the common case, live reads to confirm a denial.
//!
//! Pods are cached stripped to what [`PodInfo`] needs (no managedFields, status,
//! containers or unrelated volumes); Nodes and ServiceAccounts as metadata only.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, ServiceAccount, Volume};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::Client;

use super::Error;
use crate::{CertificateSource, IssuanceRequest, ObjectIdentity, PodInfo, PodSnapshot};

/// The annotation kubelet puts on the API object of a static pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Watch caches of pods (stripped), Nodes and ServiceAccounts (metadata only).
#[derive(Clone)]
pub struct ClusterView {
    pods: Store<Pod>,
    nodes: Store<PartialObjectMeta<Node>>,
    service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
}

impl ClusterView {
    /// Starts the three watches; returns once every cache has its first full list.
    pub async fn start(client: &Client) -> Result<ClusterView, Error> {
        let (pods, pods_writer) = reflector::store::<Pod>();
        let (nodes, nodes_writer) = reflector::store::<PartialObjectMeta<Node>>();
        let (service_accounts, sa_writer) = reflector::store::<PartialObjectMeta<ServiceAccount>>();
        tokio::spawn(drain(
            "pods",
            reflector::reflector(
                pods_writer,
                watcher(
                    Api::<Pod>::all(client.clone()),
                    watcher::Config::default().any_semantic(),
                )
                .modify(strip_pod),
            )
            .default_backoff(),
        ));
        tokio::spawn(drain(
            "nodes",
            reflector::reflector(
                nodes_writer,
                watcher(
                    Api::<PartialObjectMeta<Node>>::all(client.clone()),
                    watcher::Config::default().any_semantic(),
                )
                .modify(strip_meta),
            )
            .default_backoff(),
        ));
        tokio::spawn(drain(
            "serviceaccounts",
            reflector::reflector(
                sa_writer,
                watcher(
                    Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()),
                    watcher::Config::default().any_semantic(),
                )
                .modify(strip_meta),
            )
            .default_backoff(),
        ));
        for (what, ready) in [
            ("pods", pods.wait_until_ready().await),
            ("nodes", nodes.wait_until_ready().await),
            ("serviceaccounts", service_accounts.wait_until_ready().await),
        ] {
            ready.map_err(|_| Error::CacheNotReady { what })?;
        }
        tracing::info!(
            pods = pods.state().len(),
            nodes = nodes.state().len(),
            service_accounts = service_accounts.state().len(),
            "pod, node and service account caches ready"
        );
        Ok(ClusterView {
            pods,
            nodes,
            service_accounts,
        })
    }

    /// Caches filled by hand (tests).
    pub fn from_objects(
        pods: impl IntoIterator<Item = Pod>,
        nodes: impl IntoIterator<Item = PartialObjectMeta<Node>>,
        service_accounts: impl IntoIterator<Item = PartialObjectMeta<ServiceAccount>>,
    ) -> ClusterView {
        let (p, mut pw) = reflector::store::<Pod>();
        for mut pod in pods {
            strip_pod(&mut pod);
            pw.apply_watcher_event(&watcher::Event::Apply(pod));
        }
        let (n, mut nw) = reflector::store::<PartialObjectMeta<Node>>();
        for node in nodes {
            nw.apply_watcher_event(&watcher::Event::Apply(node));
        }
        let (s, mut sw) = reflector::store::<PartialObjectMeta<ServiceAccount>>();
        for sa in service_accounts {
            sw.apply_watcher_event(&watcher::Event::Apply(sa));
        }
        ClusterView {
            pods: p,
            nodes: n,
            service_accounts: s,
        }
    }

    /// The pod, Node and ServiceAccount `request` names, from the caches (no Services).
    pub fn cached(&self, request: &IssuanceRequest) -> PodSnapshot {
        let ns = &request.namespace;
        PodSnapshot {
            pod: self
                .pods
                .get(&ObjectRef::new(&request.pod_name).within(ns))
                .map(|p| pod_info(&p)),
            node: self
                .nodes
                .get(&ObjectRef::new(&request.node_name))
                .map(|n| identity(&n.metadata)),
            service_account: self
                .service_accounts
                .get(&ObjectRef::new(&request.service_account_name).within(ns))
                .map(|sa| identity(&sa.metadata)),
            services: Vec::new(),
        }
    }
}

/// The pod, Node and ServiceAccount `request` names, read live from the API server
/// (no Services): what a denial judged from the caches is confirmed against.
pub async fn read_live(client: &Client, request: &IssuanceRequest) -> Result<PodSnapshot, Error> {
    let live = |what: &'static str| {
        let name = format!("{}/{}", request.namespace, request.pod_name);
        move |source| Error::ReadLive {
            what,
            request: name,
            source,
        }
    };
    let ns = &request.namespace;
    let pod = Api::<Pod>::namespaced(client.clone(), ns)
        .get_opt(&request.pod_name)
        .await
        .map_err(live("pod"))?;
    let node = if request.node_name.is_empty() {
        None
    } else {
        Api::<Node>::all(client.clone())
            .get_metadata_opt(&request.node_name)
            .await
            .map_err(live("node"))?
    };
    let service_account = if request.service_account_name.is_empty() {
        None
    } else {
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get_metadata_opt(&request.service_account_name)
            .await
            .map_err(live("serviceaccount"))?
    };
    Ok(PodSnapshot {
        pod: pod.map(|mut p| {
            strip_pod(&mut p);
            pod_info(&p)
        }),
        node: node.map(|n| identity(&n.metadata)),
        service_account: service_account.map(|sa| identity(&sa.metadata)),
        services: Vec::new(),
    })
}

/// Keeps what [`pod_info`] reads, drops the rest (most of a pod's bytes).
pub fn strip_pod(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.generate_name = None;
    let mirror = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION));
    meta.annotations =
        mirror.then(|| BTreeMap::from([(MIRROR_POD_ANNOTATION.to_string(), String::new())]));
    pod.status = None;
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        service_account_name: spec.service_account_name,
        node_name: spec.node_name,
        // Per-pod DNS names of headless Services.
        hostname: spec.hostname,
        subdomain: spec.subdomain,
        volumes: spec.volumes.map(|volumes| {
            volumes
                .into_iter()
                .filter_map(certificate_volume)
                .collect::<Vec<_>>()
        }),
        ..PodSpec::default()
    });
}

/// A projected volume reduced to its `podCertificate` sources; `None` if it has none.
fn certificate_volume(mut volume: Volume) -> Option<Volume> {
    let mut projected = volume.projected.take()?;
    let sources: Vec<_> = projected
        .sources
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.pod_certificate.is_some())
        .map(|s| k8s_openapi::api::core::v1::VolumeProjection {
            pod_certificate: s.pod_certificate,
            ..Default::default()
        })
        .collect();
    if sources.is_empty() {
        return None;
    }
    projected.sources = Some(sources);
    Some(Volume {
        name: volume.name,
        projected: Some(projected),
        ..Default::default()
    })
}

fn strip_meta<K>(object: &mut PartialObjectMeta<K>) {
    object.metadata.managed_fields = None;
    object.metadata.annotations = None;
    object.metadata.labels = None;
}

/// The issuer's view of a pod.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    PodInfo {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        service_account_name: spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|n| !n.is_empty())
            // The API server defaults an empty serviceAccountName to "default".
            .unwrap_or_else(|| "default".into()),
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        terminating: meta.deletion_timestamp.is_some(),
        mirror: meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION)),
        certificate_sources: spec
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| v.projected.as_ref()?.sources.as_ref())
            .flatten()
            .filter_map(|s| s.pod_certificate.as_ref())
            .map(|c| CertificateSource {
                signer_name: c.signer_name.clone(),
                key_type: c.key_type.clone(),
            })
            .collect(),
        hostname: spec
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty()),
        subdomain: spec
            .and_then(|s| s.subdomain.clone())
            .filter(|h| !h.is_empty()),
    }
}

fn identity(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectIdentity {
    ObjectIdentity {
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
    }
}

async fn drain<S, T>(what: &'static str, stream: S)
where
    S: futures::Stream<Item = Result<T, watcher::Error>>,
{
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        if let Err(error) = item {
            tracing::warn!(cache = what, %error, "watch error; retrying with backoff");
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, PodCertificateProjection, ProjectedVolumeSource, VolumeProjection,
    };
    use kube::api::ObjectMeta;

    use super::*;

    #[test]
    fn the_stripped_pod_keeps_hostname_and_subdomain() {
        let mut pod = Pod {
            metadata: ObjectMeta {
                namespace: Some("a".into()),
                name: Some("db-0".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                hostname: Some("db-0".into()),
                subdomain: Some("db".into()),
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                volumes: Some(vec![Volume {
                    name: "podtls".into(),
                    projected: Some(ProjectedVolumeSource {
                        sources: Some(vec![VolumeProjection {
                            pod_certificate: Some(PodCertificateProjection {
                                signer_name: "row-major.net/pod-identity".into(),
                                key_type: "ED25519".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        };
        strip_pod(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.containers.is_empty(), "containers are dropped");
        let info = pod_info(&pod);
        assert_eq!(info.hostname.as_deref(), Some("db-0"));
        assert_eq!(info.subdomain.as_deref(), Some("db"));
        assert_eq!(info.certificate_sources.len(), 1);
        // Empty strings are no hostname.
        pod.spec.as_mut().unwrap().hostname = Some(String::new());
        assert_eq!(pod_info(&pod).hostname, None);
    }
}
