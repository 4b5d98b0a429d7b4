//! Trust bundles without ClusterTrustBundles: with CSR signing on, the signer publishes
//! a ConfigMap [`CONFIGMAP_NAME`] in every namespace labelled
//! [`INJECT_LABEL`](crate::injection::INJECT_LABEL)`=enabled` (the trust-manager
//! pattern), which the injected agent mounts and copies into the credential folder.
//!
//! Keys ([`configmap_data`]):
//! - `<td>.spiffe-trust-bundle.x509.pem`: the spiffe signer's CA certificates of the
//!   namespace's own trust domain `td` (its [`TrustDomainMap`](crate::TrustDomainMap)
//!   entry, else the spiffe signer's trust domain), and one such key per trust domain
//!   federated with it, holding the peer's bundle (the bundles the federation loop
//!   publishes as ClusterTrustBundles for that workload trust domain, when the cluster
//!   serves them);
//! - [`SERVICE_DNS_KEY`] and [`POD_IDENTITY_KEY`]: the CA certificates of the
//!   service-dns and pod-identity signers, when enabled.
//!
//! A key whose pool is not loaded yet is left out. The ConfigMap carries
//! [`MANAGED_BY_LABEL`]`=`[`MANAGED_BY`]; a same-named ConfigMap without it is the
//! user's and is never overwritten (counted as `conflict` in
//! `podtls_signer_trust_bundle_configmaps` and logged). ConfigMaps of namespaces that
//! stop opting in are left in place (pods may still mount them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::Client;
use spiffe::TrustDomain;
use tokio::sync::{watch, Notify};

use super::metrics::Metrics;
use super::pool_watch::PoolState;
use super::spiffe_domains::TrustDomains;
use super::Error;
use crate::injection::{INJECT_LABEL, TRUST_BUNDLE_SUFFIX};
use crate::{SignerConfig, SignerKind};

/// The ConfigMap's name in every opted-in namespace.
pub const CONFIGMAP_NAME: &str = "podtls-trust-bundles";
/// The label marking the ConfigMaps this signer manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "podtls-signer";
/// The key of the service-dns signer's CA certificates.
pub const SERVICE_DNS_KEY: &str = "service-dns.ca.pem";
/// The key of the pod-identity signer's CA certificates.
pub const POD_IDENTITY_KEY: &str = "pod-identity.ca.pem";
/// The field manager of the server-side applies.
pub const FIELD_MANAGER: &str = "podtls-signer-trust-bundles";
/// How often every namespace is written again even if nothing was seen to change.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// What the signers know, for [`configmap_data`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownBundles {
    /// The spiffe signer's CA certificates (PEM) by trust domain it serves.
    pub own: BTreeMap<String, String>,
    /// Federation: `(workload trust domain, peer trust domain, peer bundle PEM)`.
    pub federated: Vec<(String, String, String)>,
    /// The service-dns signer's CA certificates, if enabled and loaded.
    pub service_dns: Option<String>,
    /// The pod-identity signer's CA certificates, if enabled and loaded.
    pub pod_identity: Option<String>,
}

/// The ConfigMap data for a namespace in trust domain `td` (`None`: the spiffe signer
/// is not enabled): see the module docs.
pub fn configmap_data(td: Option<&TrustDomain>, known: &KnownBundles) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    if let Some(td) = td {
        if let Some(pem) = known.own.get(td.as_str()) {
            data.insert(format!("{td}{TRUST_BUNDLE_SUFFIX}"), pem.clone());
        }
        for (workload, peer, pem) in &known.federated {
            if workload == td.as_str() && peer != td.as_str() {
                data.insert(format!("{peer}{TRUST_BUNDLE_SUFFIX}"), pem.clone());
            }
        }
    }
    if let Some(pem) = &known.service_dns {
        data.insert(SERVICE_DNS_KEY.to_string(), pem.clone());
    }
    if let Some(pem) = &known.pod_identity {
        data.insert(POD_IDENTITY_KEY.to_string(), pem.clone());
    }
    data
}

/// What to do with the ConfigMap of a namespace, given the one found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Apply this data.
    Apply(BTreeMap<String, String>),
    /// It already holds this data.
    Unchanged,
    /// A ConfigMap of that name not managed by the signer: leave it, report it.
    NotOurs,
}

/// Pure: the write for `desired` given `existing` (`None`: no such ConfigMap).
pub fn write_for(existing: Option<&ConfigMap>, desired: BTreeMap<String, String>) -> Write {
    match existing {
        None => Write::Apply(desired),
        Some(cm) => {
            let ours = cm
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .is_some_and(|v| v == MANAGED_BY);
            if !ours {
                Write::NotOurs
            } else if cm.data.as_ref() == Some(&desired) {
                Write::Unchanged
            } else {
                Write::Apply(desired)
            }
        }
    }
}

/// Keeps the ConfigMap of every opted-in namespace in sync with the pools (`signers`
/// with their pool watches) and the federation bundles, for as long as the signer runs.
pub async fn sync_loop(
    client: Client,
    signers: Vec<(SignerConfig, watch::Receiver<PoolState>)>,
    trust_domains: Option<Arc<TrustDomains>>,
    metrics: Arc<Metrics>,
) {
    let wake = Arc::new(Notify::new());
    let (namespaces, writer) = reflector::store::<Namespace>();
    let stream = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default().labels(&format!("{INJECT_LABEL}=enabled")),
    )
    .default_backoff()
    .reflect(writer);
    {
        let wake = wake.clone();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "opted-in namespace watch");
                }
                wake.notify_one();
            }
        });
    }
    let mut all_pools: Vec<watch::Receiver<PoolState>> =
        signers.iter().map(|(_, p)| p.clone()).collect();
    if let Some(domains) = &trust_domains {
        all_pools.extend(domains.pools().into_iter().map(|(_, p)| p));
    }
    for mut pool in all_pools {
        let wake = wake.clone();
        tokio::spawn(async move {
            while pool.changed().await.is_ok() {
                wake.notify_one();
            }
        });
    }
    if namespaces.wait_until_ready().await.is_err() {
        tracing::error!("the opted-in namespace watch ended before it was ready");
        return;
    }
    loop {
        let known = known_bundles(&client, &signers, trust_domains.as_deref()).await;
        sync_all(
            &client,
            &namespaces,
            &signers,
            trust_domains.as_deref(),
            &known,
            &metrics,
        )
        .await;
        // Federation bundles change without a local event: the resync picks them up.
        let _ = tokio::time::timeout(RESYNC_PERIOD, wake.notified()).await;
    }
}

async fn known_bundles(
    client: &Client,
    signers: &[(SignerConfig, watch::Receiver<PoolState>)],
    trust_domains: Option<&TrustDomains>,
) -> KnownBundles {
    let pem_of = |pool: &watch::Receiver<PoolState>| {
        pool.borrow().pool.as_ref().map(|p| p.trust_bundle_pem())
    };
    let mut known = KnownBundles::default();
    for (config, pool) in signers {
        match &config.kind {
            SignerKind::Spiffe { trust_domain } => match trust_domains {
                Some(domains) => {
                    for (td, pool) in domains.pools() {
                        if let Some(pem) = pem_of(&pool) {
                            known.own.insert(td.to_string(), pem);
                        }
                    }
                }
                None => {
                    if let Some(pem) = pem_of(pool) {
                        known.own.insert(trust_domain.to_string(), pem);
                    }
                }
            },
            SignerKind::ServiceDns => known.service_dns = pem_of(pool),
            SignerKind::PodIdentity { .. } => known.pod_identity = pem_of(pool),
        }
    }
    known.federated = federated_bundles(client).await;
    known
}

/// The federation loop's per-workload peer bundles, as it published them (empty when
/// the cluster serves no ClusterTrustBundles or federation is off).
async fn federated_bundles(client: &Client) -> Vec<(String, String, String)> {
    use super::federation_bundles::{
        MANAGED_LABEL, PEER_TRUST_DOMAIN_LABEL, WORKLOAD_TRUST_DOMAIN_LABEL,
    };
    let Ok(apis) = super::discovery::discover(client).await else {
        return Vec::new();
    };
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &apis.ctb);
    let params = kube::api::ListParams::default().labels(&format!("{MANAGED_LABEL}=federation"));
    match api.list(&params).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|b| {
                let labels = b.metadata.labels.as_ref()?;
                Some((
                    labels.get(WORKLOAD_TRUST_DOMAIN_LABEL)?.clone(),
                    labels.get(PEER_TRUST_DOMAIN_LABEL)?.clone(),
                    b.data["spec"]["trustBundle"].as_str()?.to_string(),
                ))
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list the federation ClusterTrustBundles; ConfigMaps carry no federated bundles this round");
            Vec::new()
        }
    }
}

async fn sync_all(
    client: &Client,
    namespaces: &Store<Namespace>,
    signers: &[(SignerConfig, watch::Receiver<PoolState>)],
    trust_domains: Option<&TrustDomains>,
    known: &KnownBundles,
    metrics: &Metrics,
) {
    let spiffe_td = signers.iter().find_map(|(c, _)| match &c.kind {
        SignerKind::Spiffe { trust_domain } => Some(trust_domain.clone()),
        _ => None,
    });
    for ns in namespaces.state() {
        let Some(namespace) = ns.metadata.name.clone() else {
            continue;
        };
        let td = match (trust_domains, &spiffe_td) {
            (Some(domains), _) => Some(domains.map().for_namespace(&namespace).clone()),
            (None, td) => td.clone(),
        };
        let desired = configmap_data(td.as_ref(), known);
        let outcome = sync_one(client, &namespace, desired).await;
        match outcome {
            Ok(label) => metrics.bundle_configmap(label),
            Err(error) => {
                metrics.bundle_configmap("error");
                tracing::warn!(%error, "trust bundle ConfigMap not written; retrying");
            }
        }
    }
}

async fn sync_one(
    client: &Client,
    namespace: &str,
    desired: BTreeMap<String, String>,
) -> Result<&'static str, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let failed = |source| Error::PublishBundles {
        namespace: namespace.to_string(),
        name: CONFIGMAP_NAME.to_string(),
        source,
    };
    let existing = api.get_opt(CONFIGMAP_NAME).await.map_err(failed)?;
    match write_for(existing.as_ref(), desired) {
        Write::Unchanged => Ok("unchanged"),
        Write::NotOurs => {
            tracing::warn!(%namespace, configmap = CONFIGMAP_NAME, "a ConfigMap of this name exists and is not managed by the signer ({MANAGED_BY_LABEL}={MANAGED_BY}); left alone: injected pods of this namespace get no trust bundles");
            Ok("conflict")
        }
        Write::Apply(data) => {
            let body = serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": CONFIGMAP_NAME,
                    "namespace": namespace,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                },
                "data": data,
            });
            // Not forced: a field another manager owns is a conflict, not overwritten.
            api.patch(
                CONFIGMAP_NAME,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(body),
            )
            .await
            .map_err(failed)?;
            tracing::info!(%namespace, keys = ?data_keys(&existing), "trust bundle ConfigMap written");
            Ok("applied")
        }
    }
}

fn data_keys(cm: &Option<ConfigMap>) -> Vec<String> {
    cm.as_ref()
        .and_then(|c| c.data.as_ref())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_trust_domain;
    use kube::api::ObjectMeta;

    fn known() -> KnownBundles {
        KnownBundles {
            own: BTreeMap::from([
                ("cluster.local".into(), "CL".into()),
                ("team-b.example".into(), "TB".into()),
            ]),
            federated: vec![
                (
                    "cluster.local".into(),
                    "partner.example".into(),
                    "PARTNER".into(),
                ),
                (
                    "team-b.example".into(),
                    "other.example".into(),
                    "OTHER".into(),
                ),
            ],
            service_dns: Some("SVC".into()),
            pod_identity: None,
        }
    }

    #[test]
    fn a_namespace_gets_its_own_trust_domain_its_federated_peers_and_the_signer_cas() {
        let td = parse_trust_domain("cluster.local").unwrap();
        let data = configmap_data(Some(&td), &known());
        assert_eq!(
            data,
            BTreeMap::from([
                (
                    "cluster.local.spiffe-trust-bundle.x509.pem".into(),
                    "CL".into()
                ),
                (
                    "partner.example.spiffe-trust-bundle.x509.pem".into(),
                    "PARTNER".into()
                ),
                (SERVICE_DNS_KEY.into(), "SVC".into()),
            ])
        );
    }

    #[test]
    fn another_trust_domains_bundles_and_peers_never_leak_into_a_namespace() {
        let td = parse_trust_domain("team-b.example").unwrap();
        let data = configmap_data(Some(&td), &known());
        assert!(!data.contains_key("cluster.local.spiffe-trust-bundle.x509.pem"));
        assert!(!data.contains_key("partner.example.spiffe-trust-bundle.x509.pem"));
        assert_eq!(
            data.get("other.example.spiffe-trust-bundle.x509.pem")
                .map(String::as_str),
            Some("OTHER")
        );
        assert_eq!(
            data.get("team-b.example.spiffe-trust-bundle.x509.pem")
                .map(String::as_str),
            Some("TB")
        );
    }

    #[test]
    fn an_unloaded_pool_is_left_out_rather_than_written_empty() {
        let td = parse_trust_domain("unloaded.example").unwrap();
        let data = configmap_data(Some(&td), &KnownBundles::default());
        assert!(data.is_empty(), "{data:?}");
    }

    fn cm(labels: Option<(&str, &str)>, data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIGMAP_NAME.into()),
                labels: labels.map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())])),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_same_named_configmap_of_the_user_is_never_overwritten() {
        let desired = BTreeMap::from([("a".to_string(), "b".to_string())]);
        assert_eq!(
            write_for(Some(&cm(None, &[("mine", "x")])), desired.clone()),
            Write::NotOurs
        );
        assert_eq!(
            write_for(
                Some(&cm(Some((MANAGED_BY_LABEL, "someone-else")), &[])),
                desired.clone()
            ),
            Write::NotOurs
        );
        assert_eq!(
            write_for(
                Some(&cm(Some((MANAGED_BY_LABEL, MANAGED_BY)), &[("a", "b")])),
                desired.clone()
            ),
            Write::Unchanged
        );
        assert_eq!(
            write_for(
                Some(&cm(Some((MANAGED_BY_LABEL, MANAGED_BY)), &[("a", "old")])),
                desired.clone()
            ),
            Write::Apply(desired.clone())
        );
        assert_eq!(write_for(None, desired.clone()), Write::Apply(desired));
    }
}
