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
//!
//! Replicas come and go cleanly (the Lease lifecycle is `replica.rs`): on SIGTERM a
//! replica stops taking new work, lets its in-flight reconciles finish, stops renewing and
//! deletes its own Lease, with a precondition on the UID and resourceVersion it last wrote
//! ([`release_preconditions`]) so that it never deletes a Lease somebody else wrote since.
//! The others' watch caches drop the deleted Lease at once, and every replica
//! re-reconciles all requests whenever the set of live replicas changes (a Lease added,
//! deleted, or expired, checked every [`MEMBERSHIP_CHECK_PERIOD`]), so a departing
//! replica's share is taken over within about a second instead of after the Lease's
//! expiry plus a renewal period (15 + 10 s). A replica that dies without deleting its Lease
//! (SIGKILL, node loss) is still dropped once its Lease expires.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
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
/// How often the set of live replicas is recomputed without a Lease event (a Lease that
/// expires produces no event).
pub const MEMBERSHIP_CHECK_PERIOD: Duration = Duration::from_secs(1);

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

/// The delete preconditions for this replica's own Lease as it last wrote it: its UID
/// (not a Lease of the same name created since) and its resourceVersion (not renewed by
/// anyone since, e.g. a successor pod with the same name). `None` if the API returned
/// neither, in which case nothing is deleted.
pub fn release_preconditions(held: &Lease) -> Option<Preconditions> {
    let uid = held.metadata.uid.clone();
    let resource_version = held.metadata.resource_version.clone();
    (uid.is_some() && resource_version.is_some()).then_some(Preconditions {
        uid,
        resource_version,
    })
}

/// What [`release`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// The Lease was deleted.
    Deleted,
    /// The Lease was already gone.
    AlreadyGone,
    /// Someone wrote the Lease since this replica last did (409): left alone; it expires
    /// unless its new writer renews it.
    ChangedSince,
    /// The held Lease carried no UID/resourceVersion: left alone to expire.
    NoPreconditions,
}

/// Deletes this replica's own Lease (`held`: the Lease as this replica's last renewal
/// returned it), only if nobody wrote it since. The caller must have stopped renewing.
pub async fn release(
    client: &Client,
    config: &ShardingConfig,
    held: &Lease,
) -> Result<Released, Error> {
    let Some(preconditions) = release_preconditions(held) else {
        return Ok(Released::NoPreconditions);
    };
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let params = DeleteParams {
        preconditions: Some(preconditions),
        ..DeleteParams::default()
    };
    match api.delete(&config.pod_name, &params).await {
        Ok(_) => Ok(Released::Deleted),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Released::AlreadyGone),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Released::ChangedSince),
        Err(source) => Err(Error::ReleaseLease {
            name: config.pod_name.clone(),
            source,
        }),
    }
}

/// Applies this replica's Lease once (server-side apply); returns it as written.
pub async fn renew(
    client: &Client,
    config: &ShardingConfig,
    now: SystemTime,
) -> Result<Lease, Error> {
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
    .map_err(|source| Error::Lease {
        name: config.pod_name.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};

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

    fn rendezvous(me: &str, leases: &[Lease]) -> (Sharding, reflector::store::Writer<Lease>) {
        let (store, mut writer) = reflector::store::<Lease>();
        for l in leases {
            writer.apply_watcher_event(&watcher::Event::Apply(l.clone()));
        }
        let config = ShardingConfig {
            namespace: "mesh-controller".into(),
            pod_name: me.into(),
            pod_uid: "uid".into(),
            application: "mesh-controller".into(),
        };
        (
            Sharding::Rendezvous {
                config,
                leases: store,
            },
            writer,
        )
    }

    #[test]
    fn a_deleted_lease_hands_its_requests_over_at_once_not_at_expiry() {
        let now = SystemTime::now();
        let b = lease("b", now);
        let (a_view, mut writer) = rendezvous("a", &[lease("a", now), b.clone()]);
        let items: Vec<String> = (0..200).map(|i| format!("ns/pcr-{i}")).collect();
        let of_b: Vec<&String> = items.iter().filter(|i| !a_view.owns(i, now)).collect();
        assert!(of_b.len() > 50, "b owns {} of 200", of_b.len());
        // b's Lease is still live for 15 s; its deletion (a watch Delete event) must not
        // wait for that.
        writer.apply_watcher_event(&watcher::Event::Delete(b));
        for item in &items {
            assert!(a_view.owns(item, now), "{item} still not a's after b left");
        }
    }

    #[test]
    fn an_expired_lease_hands_its_requests_over_without_an_event() {
        let now = SystemTime::now();
        let (a_view, _writer) = rendezvous("a", &[lease("a", now), lease("b", now)]);
        let item = (0..100)
            .map(|i| format!("ns/pcr-{i}"))
            .find(|i| !a_view.owns(i, now))
            .expect("b owns something");
        // a renews (its Lease is re-applied); b does not: past 15 s only a is live.
        let later = now + LEASE_DURATION + Duration::from_secs(1);
        let (a_view, _writer) = rendezvous("a", &[lease("a", later), lease("b", now)]);
        assert!(a_view.owns(&item, later));
    }

    #[test]
    fn release_is_conditional_on_the_uid_and_version_last_written() {
        let mut held = lease("a", SystemTime::now());
        assert_eq!(
            release_preconditions(&held),
            None,
            "nothing known: nothing deleted"
        );
        held.metadata.uid = Some("u-1".into());
        held.metadata.resource_version = Some("42".into());
        assert_eq!(
            release_preconditions(&held),
            Some(Preconditions {
                uid: Some("u-1".into()),
                resource_version: Some("42".into()),
            })
        );
    }

    #[test]
    fn no_live_replica_owns_nothing() {
        assert_eq!(assigned_replica("ns/x", &[]), None);
    }
}

#[cfg(test)]
mod release_tests {
    use http::{Method, Request, Response, StatusCode};
    use kube::client::Body;
    use tower_test::mock;

    use super::*;

    fn config() -> ShardingConfig {
        ShardingConfig {
            namespace: "mesh-controller".into(),
            pod_name: "signer-b".into(),
            pod_uid: "pod-uid".into(),
            application: "podtls-signer".into(),
        }
    }

    fn held() -> Lease {
        let mut lease = desired_lease(&config(), SystemTime::now());
        lease.metadata.uid = Some("lease-uid".into());
        lease.metadata.resource_version = Some("42".into());
        lease
    }

    /// Runs `release` against a mock that answers the one request with `status`; returns
    /// the outcome and the request's method, path and JSON body.
    async fn release_answered(
        status: StatusCode,
    ) -> (Result<Released, Error>, Method, String, serde_json::Value) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let task = tokio::spawn(async move { release(&client, &config(), &held()).await });
        let (request, send) = handle.next_request().await.expect("a request");
        let (parts, body) = request.into_parts();
        let body: serde_json::Value =
            serde_json::from_slice(&body.collect_bytes().await.unwrap()).unwrap();
        let answer = if status.is_success() {
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        } else {
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "Conflict", "message": "precondition", "code": status.as_u16()})
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
        let outcome = task.await.unwrap();
        assert!(handle.next_request().await.is_none(), "a second request");
        (outcome, parts.method, parts.uri.path().to_string(), body)
    }

    #[tokio::test]
    async fn release_deletes_only_the_version_this_replica_wrote() {
        let (outcome, method, path, body) = release_answered(StatusCode::OK).await;
        assert_eq!(outcome.unwrap(), Released::Deleted);
        assert_eq!(method, Method::DELETE);
        assert_eq!(
            path,
            "/apis/coordination.k8s.io/v1/namespaces/mesh-controller/leases/signer-b"
        );
        assert_eq!(body["preconditions"]["uid"], "lease-uid");
        assert_eq!(body["preconditions"]["resourceVersion"], "42");
    }

    #[tokio::test]
    async fn a_lease_written_by_someone_else_since_is_left_alone() {
        let (outcome, ..) = release_answered(StatusCode::CONFLICT).await;
        assert_eq!(outcome.unwrap(), Released::ChangedSince);
        let (outcome, ..) = release_answered(StatusCode::NOT_FOUND).await;
        assert_eq!(outcome.unwrap(), Released::AlreadyGone);
        let (outcome, ..) = release_answered(StatusCode::FORBIDDEN).await;
        assert!(
            matches!(outcome, Err(Error::ReleaseLease { .. })),
            "{outcome:?}"
        );
    }
}
