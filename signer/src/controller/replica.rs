//! This replica's sharding Lease over its life: applied before any work, renewed every
//! [`LEASE_RENEWAL_PERIOD`], its peers' Leases watched (and the set of live replicas
//! published whenever it changes), and deleted at shutdown so the peers take its share
//! over at once. The pure rules are in `sharding.rs`.

use std::time::SystemTime;

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::sharding::{
    self, live_replicas, Released, Sharding, ShardingConfig, LEASE_RENEWAL_PERIOD,
    MEMBERSHIP_CHECK_PERIOD,
};
use super::Error;

/// A running replica: its Lease renewal and its view of the live replicas.
pub struct Replica {
    config: ShardingConfig,
    leases: Store<Lease>,
    members: watch::Receiver<Vec<String>>,
    stop: watch::Sender<bool>,
    renewer: JoinHandle<Lease>,
}

impl Replica {
    /// Watches the application's Leases, applies this replica's own (an error here fails
    /// start-up) and starts renewing it; returns once the Lease cache is ready.
    pub async fn start(client: &Client, config: &ShardingConfig) -> Result<Replica, Error> {
        let (leases, writer) = reflector::store::<Lease>();
        let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
        let stream = reflector::reflector(
            writer,
            watcher(
                api,
                watcher::Config::default().labels(&format!(
                    "{}={}",
                    sharding::LABEL_KEY,
                    config.application
                )),
            ),
        )
        .default_backoff();
        let (members_tx, members) = watch::channel(Vec::new());
        tokio::spawn(track_membership(stream, leases.clone(), members_tx));

        let held = sharding::renew(client, config, SystemTime::now()).await?;
        let (stop, stopped) = watch::channel(false);
        let renewer = tokio::spawn(renew_until_stopped(
            client.clone(),
            config.clone(),
            held,
            stopped,
        ));
        leases
            .wait_until_ready()
            .await
            .map_err(|_| Error::CacheNotReady { what: "leases" })?;
        Ok(Replica {
            config: config.clone(),
            leases,
            members,
            stop,
            renewer,
        })
    }

    /// The ownership rule for the reconcilers.
    pub fn sharding(&self) -> Sharding {
        Sharding::Rendezvous {
            config: self.config.clone(),
            leases: self.leases.clone(),
        }
    }

    /// Yields once each time the set of live replicas changes: the trigger for
    /// re-reconciling every request (requests of a departed replica are ours now;
    /// a new replica's are not).
    pub fn membership_changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.members.clone(), |mut members| async move {
            members.changed().await.ok().map(|()| ((), members))
        })
    }

    /// Stops renewing (waiting for a renewal in flight), then deletes this replica's
    /// Lease if nobody wrote it since. Call it once the reconcilers have stopped.
    pub async fn release(self, client: &Client) -> Result<Released, Error> {
        let _ = self.stop.send(true);
        let held = match self.renewer.await {
            Ok(held) => held,
            // The renewal task panicked: whatever it last wrote is unknown, so leave the
            // Lease to expire rather than delete a version we have not seen.
            Err(_) => return Ok(Released::NoPreconditions),
        };
        sharding::release(client, &self.config, &held).await
    }
}

/// Renews every [`LEASE_RENEWAL_PERIOD`] until `stopped` turns true; returns the Lease as
/// the last successful renewal wrote it.
async fn renew_until_stopped(
    client: Client,
    config: ShardingConfig,
    mut held: Lease,
    mut stopped: watch::Receiver<bool>,
) -> Lease {
    let mut tick = tokio::time::interval(LEASE_RENEWAL_PERIOD);
    tick.tick().await; // The first tick is immediate; the Lease was just applied.
    loop {
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return held,
            _ = tick.tick() => {}
        }
        match sharding::renew(&client, &config, SystemTime::now()).await {
            Ok(lease) => held = lease,
            Err(error) => tracing::error!(%error, "sharding Lease renewal failed"),
        }
    }
}

/// Drives the Lease watch and publishes the live replicas whenever they change: on every
/// Lease event and every [`MEMBERSHIP_CHECK_PERIOD`] (expiry produces no event).
async fn track_membership<S, T>(
    stream: S,
    leases: Store<Lease>,
    members: watch::Sender<Vec<String>>,
) where
    S: Stream<Item = Result<T, watcher::Error>>,
{
    futures::pin_mut!(stream);
    let mut tick = tokio::time::interval(MEMBERSHIP_CHECK_PERIOD);
    loop {
        tokio::select! {
            item = stream.next() => match item {
                None => return,
                Some(Err(error)) => {
                    tracing::warn!(cache = "leases", %error, "watch error; retrying with backoff");
                }
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {}
        }
        let live = live_replicas(leases.state().iter().map(|l| l.as_ref()), SystemTime::now());
        members.send_if_modified(|current| {
            if *current == live {
                return false;
            }
            tracing::info!(replicas = ?live, "sharding: live replicas changed; re-reconciling every request");
            *current = live;
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use futures::channel::mpsc;
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::controller::sharding::{desired_lease, LEASE_DURATION};

    fn lease(holder: &str, renewed: SystemTime) -> Lease {
        desired_lease(
            &ShardingConfig {
                namespace: "mesh-controller".into(),
                pod_name: holder.into(),
                pod_uid: "uid".into(),
                application: "podtls-signer".into(),
            },
            renewed,
        )
    }

    /// Waits (bounded) for the next published membership.
    async fn next(members: &mut watch::Receiver<Vec<String>>) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(5), members.changed())
            .await
            .expect("a membership change within 5 s")
            .expect("publisher alive");
        members.borrow_and_update().clone()
    }

    #[tokio::test]
    async fn publishes_the_live_replicas_once_per_change_including_a_deletion() {
        let (leases, mut writer) = reflector::store::<Lease>();
        let (events, stream) = mpsc::unbounded::<Result<(), watcher::Error>>();
        let (tx, mut members) = watch::channel(Vec::new());
        tokio::spawn(track_membership(stream, leases, tx));
        let now = SystemTime::now();
        let step = |writer: &mut reflector::store::Writer<Lease>, event: Event<Lease>| {
            writer.apply_watcher_event(&event);
            events.unbounded_send(Ok(())).unwrap();
        };

        step(&mut writer, Event::Apply(lease("a", now)));
        assert_eq!(next(&mut members).await, ["a"]);
        step(&mut writer, Event::Apply(lease("b", now)));
        assert_eq!(next(&mut members).await, ["a", "b"]);
        // A renewal changes nothing: no trigger.
        step(&mut writer, Event::Apply(lease("b", now)));
        // b deletes its Lease on SIGTERM: published at once.
        step(&mut writer, Event::Delete(lease("b", now)));
        assert_eq!(next(&mut members).await, ["a"]);
        assert!(!members.has_changed().unwrap(), "a change published twice");
    }

    #[tokio::test]
    async fn an_expiring_lease_is_published_without_an_event() {
        let (leases, mut writer) = reflector::store::<Lease>();
        let (events, stream) = mpsc::unbounded::<Result<(), watcher::Error>>();
        let (tx, mut members) = watch::channel(Vec::new());
        tokio::spawn(track_membership(stream, leases, tx));
        // a is fresh for long; b was renewed just long enough ago to expire in ~1 s.
        let now = SystemTime::now();
        writer.apply_watcher_event(&Event::Apply(lease("a", now + Duration::from_secs(60))));
        writer.apply_watcher_event(&Event::Apply(lease(
            "b",
            now - LEASE_DURATION + Duration::from_millis(500),
        )));
        events.unbounded_send(Ok(())).unwrap();
        assert_eq!(next(&mut members).await, ["a", "b"]);
        // No event from now on: the periodic check drops b once it expired.
        assert_eq!(next(&mut members).await, ["a"]);
        drop(events);
    }
}
