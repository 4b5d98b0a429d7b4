//! Work sharding between replicas: rendezvous hashing over per-replica Leases, the
//! original meshtool's model (`lib/rendezvous`), kept for compatibility.
//!
//! Each replica renews a Lease named after its pod, labelled
//! `rendezvous.row-major.net/application=<application>`, every 10 s with a 15 s duration,
//! and watches the Leases with that label. A work item (a request's `namespace/name`)
//! belongs to the live replica with the highest FNV-1 64-bit hash of `item + replica`
//! (ties: the smaller name). Adding or removing a replica moves only ~1/n of the items.
//!
//! Why keep it rather than leader election: every replica works, and the controller
//! stays correct when replicas briefly disagree about membership, because correctness
//! does not rest on the sharding: the status write carries the resourceVersion the
//! decision was based on, so of two replicas racing on one request the second gets a
//! 409, re-reads, sees a terminal condition and stops. Sharding only avoids the wasted
//! signature. A replica whose own Lease is not (yet) live owns nothing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client};

use super::Error;

/// The Lease label naming the application (as meshtool).
pub const LABEL_KEY: &str = "rendezvous.row-major.net/application";
/// How long a Lease stays live without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often a replica renews its Lease.
pub const LEASE_RENEWAL_PERIOD: Duration = Duration::from_secs(10);
/// The field manager of the Lease writes.
pub const FIELD_MANAGER: &str = "podtls-signer-sharding";

/// This replica's identity for sharding (the `--sharding-*` flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardingConfig {
    /// Namespace of the Leases (the controller's namespace).
    pub namespace: String,
    /// This replica's pod name: the Lease name and holder identity.
    pub pod_name: String,
    /// This replica's pod UID: the Lease's owner reference.
    pub pod_uid: String,
    /// The application name that labels the Leases.
    pub application: String,
}

/// Whether this replica handles a given item.
#[derive(Clone)]
pub enum Sharding {
    /// One replica (no `--sharding-*` flags): everything is ours.
    Off,
    /// Rendezvous hashing over the live Leases in `leases`.
    Rendezvous {
        /// This replica.
        config: ShardingConfig,
        /// A reflector store of the application's Leases.
        leases: Store<Lease>,
    },
}

impl Sharding {
    /// Whether `item` is assigned to this replica at `now`.
    pub fn owns(&self, item: &str, now: SystemTime) -> bool {
        match self {
            Sharding::Off => true,
            Sharding::Rendezvous { config, leases } => {
                let leases = leases.state();
                let live = live_replicas(leases.iter().map(|l| l.as_ref()), now);
                assigned_replica(item, &live) == Some(config.pod_name.as_str())
            }
        }
    }
}

/// FNV-1 64-bit (Go's `hash/fnv.New64`, which meshtool uses).
pub fn fnv1_64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| h.wrapping_mul(PRIME) ^ u64::from(*b))
}

/// The replica `item` is assigned to: the maximum `fnv1_64(item + replica)`, ties to the
/// lexically smaller replica. `None` without live replicas.
pub fn assigned_replica<'a>(item: &str, replicas: &'a [String]) -> Option<&'a str> {
    replicas
        .iter()
        .map(|r| (fnv1_64(format!("{item}{r}").as_bytes()), r.as_str()))
        .max_by(|(wa, ra), (wb, rb)| wa.cmp(wb).then_with(|| rb.cmp(ra)))
        .map(|(_, r)| r)
}

/// Holder identities of the Leases renewed within their duration at `now`.
pub fn live_replicas<'a>(leases: impl Iterator<Item = &'a Lease>, now: SystemTime) -> Vec<String> {
    let mut live: Vec<String> = leases
        .filter_map(|lease| {
            let spec = lease.spec.as_ref()?;
            let holder = spec.holder_identity.clone()?;
            let renewed = spec.renew_time.as_ref()?.0.as_microsecond();
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0)) * 1_000_000;
            let now = micros(now);
            (now <= renewed + duration).then_some(holder)
        })
        .collect();
    live.sort();
    live.dedup();
    live
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_micros()).ok())
        .unwrap_or(0)
}

/// The Lease this replica applies at `now`.
pub fn desired_lease(config: &ShardingConfig, now: SystemTime) -> Lease {
    let now = MicroTime(Timestamp::from_microsecond(micros(now)).unwrap_or(Timestamp::UNIX_EPOCH));
    Lease {
        metadata: ObjectMeta {
            name: Some(config.pod_name.clone()),
            namespace: Some(config.namespace.clone()),
            labels: Some(BTreeMap::from([(
                LABEL_KEY.to_string(),
                config.application.clone(),
            )])),
            owner_references: (!config.pod_uid.is_empty()).then(|| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    name: config.pod_name.clone(),
                    uid: config.pod_uid.clone(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.pod_name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            renew_time: Some(now),
            ..Default::default()
        }),
    }
}

/// Applies this replica's Lease once (server-side apply).
pub async fn renew(client: &Client, config: &ShardingConfig, now: SystemTime) -> Result<(), Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut lease = desired_lease(config, now);
    lease.metadata.managed_fields = None;
    let body = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": lease.metadata,
        "spec": lease.spec,
    });
    api.patch(
        &config.pod_name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Lease {
        name: config.pod_name.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: SystemTime) -> Lease {
        desired_lease(
            &ShardingConfig {
                namespace: "mesh-controller".into(),
                pod_name: holder.into(),
                pod_uid: "uid".into(),
                application: "mesh-controller".into(),
            },
            renewed,
        )
    }

    #[test]
    fn fnv1_matches_go_hash_fnv_new64() {
        // Go: fnv.New64() over "" and "a" (FNV-1, not FNV-1a).
        assert_eq!(fnv1_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1_64(b"a"), 0xaf63bd4c8601b7be);
    }

    #[test]
    fn expired_leases_are_not_live() {
        let now = SystemTime::now();
        let leases = [
            lease("fresh", now - Duration::from_secs(5)),
            lease("stale", now - Duration::from_secs(16)),
        ];
        assert_eq!(live_replicas(leases.iter(), now), vec!["fresh".to_string()]);
    }

    #[test]
    fn every_item_has_exactly_one_owner_and_work_is_split() {
        let replicas = vec!["a".to_string(), "b".to_string()];
        let mut counts = [0; 2];
        for i in 0..1000 {
            let owner = assigned_replica(&format!("ns/pcr-{i}"), &replicas).unwrap();
            counts[usize::from(owner == "b")] += 1;
        }
        assert!(counts[0] > 350 && counts[1] > 350, "{counts:?}");
    }

    #[test]
    fn removing_a_replica_moves_only_its_items() {
        let three = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let two = vec!["a".to_string(), "b".to_string()];
        for i in 0..500 {
            let item = format!("ns/pcr-{i}");
            let before = assigned_replica(&item, &three).unwrap();
            if before != "c" {
                assert_eq!(assigned_replica(&item, &two).unwrap(), before);
            }
        }
    }

    #[test]
    fn no_live_replica_owns_nothing() {
        assert_eq!(assigned_replica("ns/x", &[]), None);
    }
}
