//! The federation loop (with `--enable-federation`): watches the
//! [`ClusterFederatedTrustDomain`] resources, keeps each peer trust domain's last good
//! bundle (refreshed from its endpoint, a Secret/ConfigMap, the resource itself, or, for a
//! peer that is one of the signer's own trust domains, that trust domain's CA pool), holds
//! the ClusterTrustBundles of every (own trust domain, peer trust domain) pair
//! ([`federation_bundles`](super::federation_bundles)), and writes each resource's status.
//!
//! One task owns all state. It wakes on a resource change, a CA pool change, the earliest
//! due refresh, or every [`RESYNC_PERIOD`], and then: refreshes the peers that are due,
//! applies the bundles whose content changed (all of them every resync, which repairs
//! edits by others), deletes the bundles of removed relationships, and writes the
//! statuses that changed. A failed refresh keeps the last good bundle, sets
//! `status.lastError` and backs off ([`RefreshPolicy`]).
//!
//! Persistence: the last good bundle of a peer *is* its federation ClusterTrustBundle;
//! at start-up the loop reads it back, so a restart neither de-federates nor forgets the
//! bundle that authenticates an `https_spiffe` endpoint, and the sequence floor is
//! `status.sequenceNumber`, so a rollback across a restart is refused too.
//!
//! Every replica runs this loop (it does not shard); their applies are idempotent and
//! converge on the same content.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::core::ApiResource;
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use kube::{Api, Client};
use rustls::RootCertStore;
use spiffe::TrustDomain;
use tokio::sync::{watch, Notify};

use super::bundle_fetch::FetchLimits;
use super::federation_bundles::{
    self, plan, unwanted, Existing, MANAGED_LABEL, PEER_TRUST_DOMAIN_LABEL,
};
use super::federation_crd::{
    ClusterFederatedTrustDomain, ClusterFederatedTrustDomainSpec, ClusterFederatedTrustDomainStatus,
};
use super::federation_sources::{check_anchors, ders_of_pem, obtain, parse_bundle_content, pem_of};
use super::metrics::Metrics;
use super::pool_watch::PoolState;
use super::trust_bundles::FIELD_MANAGER;
use crate::error::rfc3339;
use crate::{
    accept_peer_bundle, relationships, BundleDocument, FederationSpec, PeerBundle, RefreshPolicy,
};

/// How often everything is re-applied and re-checked without an event.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(5 * 60);

/// The federation settings (from the CLI).
#[derive(Clone, Debug)]
pub struct FederationSettings {
    /// Refresh bounds.
    pub refresh: RefreshPolicy,
    /// Fetch limits.
    pub limits: FetchLimits,
    /// Roots for `https_web` endpoints.
    pub web_roots: Arc<RootCertStore>,
}

/// One peer (one resource).
struct Peer {
    spec: ClusterFederatedTrustDomainSpec,
    bundle: Option<PeerBundle>,
    source: Option<&'static str>,
    sequence_floor: Option<u64>,
    next_at: Instant,
    errors: u32,
    last_error: Option<(String, SystemTime)>,
}

/// The loop. `own` are the signer's trust domains with their pools, the default first.
/// Without `settings` (federation off) it only holds the own bundles of the non-default
/// trust domains and watches no federation resources.
pub async fn run_loop(
    client: Client,
    ctb_api: ApiResource,
    signer_name: String,
    own: Vec<(TrustDomain, watch::Receiver<PoolState>)>,
    settings: Option<FederationSettings>,
    metrics: Arc<Metrics>,
) {
    let wake = Arc::new(Notify::new());
    let api: Api<ClusterFederatedTrustDomain> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    if settings.is_some() {
        let wake = wake.clone();
        let stream = watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "ClusterFederatedTrustDomain watch");
                }
                wake.notify_one();
            }
        });
    }
    for (_, pool) in &own {
        let mut pool = pool.clone();
        let wake = wake.clone();
        tokio::spawn(async move {
            while pool.changed().await.is_ok() {
                wake.notify_one();
            }
        });
    }
    if settings.is_some() && reader.wait_until_ready().await.is_err() {
        tracing::error!("the ClusterFederatedTrustDomain watch ended before it was ready");
        return;
    }
    let federation = settings.is_some();
    let mut state = Loop {
        client,
        ctb_api,
        signer_name,
        own,
        settings: settings.unwrap_or_else(|| FederationSettings {
            refresh: RefreshPolicy::default(),
            limits: FetchLimits::default(),
            web_roots: Arc::new(RootCertStore::empty()),
        }),
        metrics,
        peers: BTreeMap::new(),
        persisted: BTreeMap::new(),
        applied: BTreeMap::new(),
        last_resync: None,
    };
    state.persisted = state.read_persisted().await;
    tracing::info!(
        federation,
        persisted = state.persisted.len(),
        "trust domain bundles running"
    );
    loop {
        let resources: Vec<Arc<ClusterFederatedTrustDomain>> = if federation {
            reader.state()
        } else {
            Vec::new()
        };
        let wait = state.step(&api, &resources).await;
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

struct Loop {
    client: Client,
    ctb_api: ApiResource,
    signer_name: String,
    own: Vec<(TrustDomain, watch::Receiver<PoolState>)>,
    settings: FederationSettings,
    metrics: Arc<Metrics>,
    peers: BTreeMap<String, Peer>,
    /// Peer trust domain -> authorities read back from the federation bundles at start.
    persisted: BTreeMap<String, Vec<Vec<u8>>>,
    /// Name -> body last applied successfully.
    applied: BTreeMap<String, serde_json::Value>,
    last_resync: Option<Instant>,
}

impl Loop {
    fn bundles(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &self.ctb_api)
    }

    async fn list_existing(&self) -> Result<Vec<Existing>, kube::Error> {
        let list = self.bundles().list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .map(|o| Existing {
                name: o.metadata.name.clone().unwrap_or_default(),
                uid: o.metadata.uid.clone(),
                resource_version: o.metadata.resource_version.clone(),
                signer_name: o.data["spec"]["signerName"].as_str().map(str::to_string),
                labels: o.metadata.labels.clone().unwrap_or_default(),
                managers: o
                    .metadata
                    .managed_fields
                    .iter()
                    .flatten()
                    .filter_map(|m| m.manager.clone())
                    .collect(),
                pem: o.data["spec"]["trustBundle"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
            .collect())
    }

    async fn read_persisted(&self) -> BTreeMap<String, Vec<Vec<u8>>> {
        let mut out = BTreeMap::new();
        match self.list_existing().await {
            Ok(existing) => {
                for b in existing {
                    if b.labels.get(MANAGED_LABEL).map(String::as_str) == Some("federation")
                        && b.signer_name.as_deref() == Some(self.signer_name.as_str())
                        && b.managers.iter().any(|m| m == FIELD_MANAGER)
                    {
                        if let Some(peer) = b.labels.get(PEER_TRUST_DOMAIN_LABEL) {
                            let ders = ders_of_pem(&b.pem);
                            if !ders.is_empty() && check_anchors(&ders).is_ok() {
                                out.insert(peer.clone(), ders);
                            }
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading the federation bundles back failed; peers start from their configured bundles")
            }
        }
        out
    }

    /// One pass; returns how long to sleep at most.
    async fn step(
        &mut self,
        api: &Api<ClusterFederatedTrustDomain>,
        resources: &[Arc<ClusterFederatedTrustDomain>],
    ) -> Duration {
        let now = SystemTime::now();
        let instant = Instant::now();
        let own: Vec<(TrustDomain, Option<Arc<crate::CaPool>>)> = self
            .own
            .iter()
            .map(|(td, p)| (td.clone(), p.borrow().pool.clone()))
            .collect();
        let own_tds: Vec<TrustDomain> = own.iter().map(|(td, _)| td.clone()).collect();
        let specs: Vec<FederationSpec> = resources
            .iter()
            .map(|r| FederationSpec {
                name: r.metadata.name.clone().unwrap_or_default(),
                peer: r.spec.trust_domain.clone(),
                workload_trust_domains: r.spec.workload_trust_domains.clone(),
            })
            .collect();
        let rels = relationships(&specs, &own_tds);

        // Peers: forget removed resources, start new ones, restart changed ones.
        let names: BTreeSet<String> = specs.iter().map(|s| s.name.clone()).collect();
        let removed: Vec<String> = self
            .peers
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        for name in removed {
            if let Some(p) = self.peers.remove(&name) {
                self.metrics.federation.forget(&p.spec.trust_domain);
                tracing::info!(federation = %name, trust_domain = %p.spec.trust_domain, "federation removed");
            }
        }
        for r in resources {
            let name = r.metadata.name.clone().unwrap_or_default();
            let fresh = || Peer {
                spec: r.spec.clone(),
                bundle: None,
                source: None,
                sequence_floor: r.status.as_ref().and_then(|s| s.sequence_number),
                next_at: instant,
                errors: 0,
                last_error: None,
            };
            match self.peers.get_mut(&name) {
                None => {
                    let mut peer = fresh();
                    if let Some(ders) = self.persisted.get(&r.spec.trust_domain) {
                        peer.bundle = Some(PeerBundle {
                            authorities: ders.clone(),
                            sequence: peer.sequence_floor,
                            refresh_hint: None,
                            obtained_at: now,
                        });
                        peer.source = Some("persisted");
                    }
                    self.peers.insert(name, peer);
                }
                Some(peer) if peer.spec != r.spec => {
                    let keep = peer.spec.trust_domain == r.spec.trust_domain;
                    let old = std::mem::replace(peer, fresh());
                    if keep {
                        peer.bundle = old.bundle;
                        peer.source = old.source;
                        peer.sequence_floor = old.sequence_floor;
                    }
                }
                Some(_) => {}
            }
        }

        // Refresh what is due (a local peer: every pass, it is a pool read).
        let names: Vec<String> = self.peers.keys().cloned().collect();
        for name in &names {
            let Some(rel) = rels.get(name) else { continue };
            let Some(peer_td) = rel.peer.clone() else {
                continue;
            };
            let local = own
                .iter()
                .find(|(td, _)| *td == peer_td)
                .map(|(_, p)| p.clone());
            let peer = &self.peers[name];
            let is_local = local.is_some()
                && peer.spec.bundle_endpoint_url.is_none()
                && peer.spec.trust_domain_bundle_from.is_none()
                && peer.spec.trust_domain_bundle.is_none();
            if !is_local && peer.next_at > instant {
                continue;
            }
            if peer.bundle.is_none() && peer.spec.bundle_endpoint_url.is_some() {
                // Before the first fetch, the initial bundle is the peer's bundle (and
                // what authenticates an https_spiffe endpoint).
                let initial = peer
                    .spec
                    .trust_domain_bundle
                    .as_deref()
                    .and_then(|b| parse_bundle_content(b.as_bytes(), &peer_td).ok())
                    .and_then(|doc| accept_peer_bundle(None, doc, now).ok());
                if let Some(bundle) = initial {
                    let peer = self.peers.get_mut(name).expect("listed above");
                    peer.bundle = Some(bundle);
                    peer.source = Some("initial");
                }
            }
            let result = if is_local {
                match local.flatten() {
                    Some(pool) => Ok((
                        BundleDocument {
                            x509_authorities: pool
                                .cas()
                                .iter()
                                .map(|c| c.root_der().to_vec())
                                .fold(Vec::new(), |mut v, d| {
                                    if !v.contains(&d) {
                                        v.push(d);
                                    }
                                    v
                                }),
                            sequence: None,
                            refresh_hint: None,
                        },
                        "local",
                    )),
                    None => Err((
                        "config",
                        format!("the CA pool of own trust domain {peer_td} is not loaded"),
                    )),
                }
            } else {
                {
                    let peer = &self.peers[name];
                    obtain(
                        &self.client,
                        &self.settings,
                        &peer.spec,
                        peer.bundle.as_ref(),
                        &peer_td,
                    )
                    .await
                }
            };
            let policy = self.settings.refresh;
            let metrics = self.metrics.clone();
            let peer = self.peers.get_mut(name).expect("listed above");
            match result.and_then(|(doc, source)| {
                let floor_holder = peer.bundle.clone().or_else(|| {
                    peer.sequence_floor.map(|s| PeerBundle {
                        authorities: Vec::new(),
                        sequence: Some(s),
                        refresh_hint: None,
                        obtained_at: now,
                    })
                });
                accept_peer_bundle(floor_holder.as_ref(), doc, now)
                    .map(|b| (b, source))
                    .map_err(|e| ("rejected", e.to_string()))
            }) {
                Ok((bundle, source)) => {
                    let changed =
                        peer.bundle.as_ref().map(|b| &b.authorities) != Some(&bundle.authorities);
                    if changed && source != "local" {
                        tracing::info!(federation = %name, trust_domain = %peer_td, source, anchors = bundle.authorities.len(), sequence = ?bundle.sequence, "peer bundle updated");
                    }
                    metrics
                        .federation
                        .refresh(peer_td.as_str(), if changed { "ok" } else { "unchanged" });
                    metrics.federation.bundle(
                        peer_td.as_str(),
                        bundle.authorities.len(),
                        bundle.sequence,
                        now,
                    );
                    peer.next_at = instant
                        + match source {
                            "endpoint" => policy.after_success(bundle.refresh_hint),
                            _ => policy.default,
                        };
                    if bundle.sequence.is_some() {
                        peer.sequence_floor = bundle.sequence;
                    }
                    peer.bundle = Some(bundle);
                    peer.source = Some(source);
                    peer.errors = 0;
                    peer.last_error = None;
                }
                Err((kind, error)) => {
                    peer.errors = peer.errors.saturating_add(1);
                    peer.next_at = instant + policy.after_error(peer.errors);
                    metrics.federation.refresh(peer_td.as_str(), kind);
                    tracing::warn!(federation = %name, trust_domain = %peer_td, kind, %error, retry_in = ?policy.after_error(peer.errors), "peer bundle refresh failed; keeping the last good bundle");
                    peer.last_error = Some((error, now));
                }
            }
        }

        // The bundles.
        let own_pems: Vec<(TrustDomain, Option<String>)> = own
            .iter()
            .map(|(td, p)| (td.clone(), p.as_ref().map(|p| p.trust_bundle_pem())))
            .collect();
        let mut pairs = Vec::new();
        for (name, rel) in &rels {
            let (Some(peer_td), Some(peer)) = (&rel.peer, self.peers.get(name)) else {
                continue;
            };
            let pem = peer.bundle.as_ref().map(|b| pem_of(&b.authorities));
            for w in &rel.workloads {
                pairs.push((w.clone(), peer_td.clone(), pem.clone()));
            }
        }
        let plan = plan(&self.signer_name, &own_pems, &pairs);
        let resync = self
            .last_resync
            .is_none_or(|t| instant.duration_since(t) >= RESYNC_PERIOD);
        if resync {
            self.applied.clear();
            self.last_resync = Some(instant);
        }
        let mut retry_soon = false;
        for desired in &plan.apply {
            let body = serde_json::json!({
                "apiVersion": self.ctb_api.api_version,
                "kind": self.ctb_api.kind,
                "metadata": {"name": desired.name, "labels": desired.labels},
                "spec": {"signerName": self.signer_name, "trustBundle": desired.pem},
            });
            if self.applied.get(&desired.name) == Some(&body) {
                continue;
            }
            match self
                .bundles()
                .patch(
                    &desired.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
            {
                Ok(_) => {
                    self.metrics.federation.bundle_write("apply", true);
                    tracing::info!(bundle = %desired.name, workload_trust_domain = %desired.labels[federation_bundles::WORKLOAD_TRUST_DOMAIN_LABEL], peer_trust_domain = %desired.labels[PEER_TRUST_DOMAIN_LABEL], "applied ClusterTrustBundle");
                    self.applied.insert(desired.name.clone(), body);
                }
                Err(error) => {
                    self.metrics.federation.bundle_write("apply", false);
                    tracing::error!(bundle = %desired.name, %error, "ClusterTrustBundle apply failed; retrying");
                    retry_soon = true;
                }
            }
        }
        match self.list_existing().await {
            Ok(existing) => {
                for b in unwanted(&self.signer_name, FIELD_MANAGER, &plan, &existing) {
                    let params = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: b.uid.clone(),
                            resource_version: b.resource_version.clone(),
                        }),
                        ..DeleteParams::default()
                    };
                    match self.bundles().delete(&b.name, &params).await {
                        Ok(_) => {
                            self.metrics.federation.bundle_write("delete", true);
                            tracing::info!(bundle = %b.name, labels = ?b.labels, "deleted ClusterTrustBundle of a removed relationship");
                            self.applied.remove(&b.name);
                        }
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                            retry_soon = true;
                        }
                        Err(error) => {
                            self.metrics.federation.bundle_write("delete", false);
                            tracing::error!(bundle = %b.name, %error, "ClusterTrustBundle delete failed; retrying");
                            retry_soon = true;
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "listing ClusterTrustBundles failed; retrying");
                retry_soon = true;
            }
        }

        // Statuses.
        for r in resources {
            let name = r.metadata.name.clone().unwrap_or_default();
            let (Some(peer), Some(rel)) = (self.peers.get(&name), rels.get(&name)) else {
                continue;
            };
            let mut errors: Vec<String> = rel.problems.clone();
            if let Some((e, _)) = &peer.last_error {
                errors.push(e.clone());
            }
            let status =
                ClusterFederatedTrustDomainStatus {
                    last_successful_refresh: peer.bundle.as_ref().map(|b| rfc3339(b.obtained_at)),
                    sequence_number: peer.bundle.as_ref().and_then(|b| b.sequence),
                    anchors: peer.bundle.as_ref().map_or(0, |b| {
                        u32::try_from(b.authorities.len()).unwrap_or(u32::MAX)
                    }),
                    source: peer.source.map(str::to_string),
                    federated_with: rel.workloads.iter().cloned().collect(),
                    last_error: (!errors.is_empty()).then(|| errors.join("; ")),
                    last_error_time: peer.last_error.as_ref().map(|(_, t)| rfc3339(*t)).or_else(
                        || {
                            (!rel.problems.is_empty()).then(|| {
                                r.status
                                    .as_ref()
                                    .and_then(|s| s.last_error_time.clone())
                                    .unwrap_or_else(|| rfc3339(now))
                            })
                        },
                    ),
                };
            if r.status.as_ref() == Some(&status) {
                continue;
            }
            // A merge patch removes a field only when it is null: clear what is gone.
            let mut value = serde_json::to_value(&status).unwrap_or_default();
            if let Some(fields) = value.as_object_mut() {
                for key in [
                    "lastSuccessfulRefresh",
                    "sequenceNumber",
                    "source",
                    "lastError",
                    "lastErrorTime",
                ] {
                    fields.entry(key).or_insert(serde_json::Value::Null);
                }
            }
            let patch = serde_json::json!({"status": value});
            if let Err(error) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                if !matches!(&error, kube::Error::Api(e) if e.code == 404) {
                    tracing::warn!(federation = %name, %error, "writing the status failed");
                    retry_soon = true;
                }
            }
        }

        let earliest = self
            .peers
            .values()
            .map(|p| p.next_at.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(RESYNC_PERIOD);
        let mut wait = earliest.min(RESYNC_PERIOD).max(Duration::from_millis(100));
        if retry_soon {
            wait = wait.min(Duration::from_secs(5));
        }
        wait
    }
}
