//! The reconciler: one PodCertificateRequest in, at most one status write out.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kube::api::PostParams;
use kube::core::{ApiResource, TypeMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource as _};
use tokio::sync::watch;

use super::api_types::{
    denied_status, failed_status, issuance_request, issued_status, terminal_condition,
    PodCertificateRequest, PodCertificateRequestStatus,
};
use super::cluster_view::{read_live, ClusterView};
use super::metrics::Metrics;
use super::pool_watch::PoolState;
use super::service_cache::ServiceCache;
use super::sharding::{Sharding, LEASE_RENEWAL_PERIOD};
use super::spiffe_domains::TrustDomains;
use super::Error;
use crate::{issue, IssuanceRequest, NotIssued, PodInfo, PodSnapshot, ServiceInfo, SignerConfig};

/// How soon a pending request (pod, Node, ServiceAccount or Service not in the caches
/// yet, or no Service selecting the pod) is looked at again. Pending never turns into
/// a denial: kube-controller-manager deletes requests pending for 15 minutes and
/// kubelet files new ones.
pub const PENDING_RECHECK: Duration = Duration::from_secs(5);
/// Retry delay for API errors.
pub const API_ERROR_RETRY: Duration = Duration::from_secs(5);
/// Retry delay for the signer's own problems (no pool, CA expired).
pub const SIGNER_ERROR_RETRY: Duration = Duration::from_secs(30);

/// The clock (injectable for tests).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Everything one signer's reconciler needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The served PodCertificateRequest version.
    pub pcr_api: ApiResource,
    /// The signer.
    pub signer: SignerConfig,
    /// The signer's CA pool (the default trust domain's, for the spiffe signer).
    pub pool: watch::Receiver<PoolState>,
    /// The spiffe signer's trust domains when it serves several: a request is signed in
    /// its namespace's trust domain by that trust domain's pool. `None`: `signer` and
    /// `pool` sign every request.
    pub trust_domains: Option<Arc<TrustDomains>>,
    /// Pods, Nodes and ServiceAccounts: what every request is checked against.
    pub cluster: ClusterView,
    /// Services, indexed by namespace and selector (service-dns signer; empty otherwise).
    pub services: ServiceCache,
    /// Which requests this replica handles.
    pub sharding: Sharding,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Events on denials.
    pub recorder: Recorder,
    /// The clock.
    pub clock: Clock,
}

/// `namespace/name` of a request.
fn key(pcr: &PodCertificateRequest) -> String {
    format!(
        "{}/{}",
        pcr.metadata.namespace.as_deref().unwrap_or_default(),
        pcr.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Decides one request and writes its terminal status, once.
///
/// Terminal requests, requests for other signers and requests of other replicas are left
/// alone. The status is written with a `PUT .../status` carrying the resourceVersion the
/// decision was based on; a 409 means someone else wrote first: the request is re-read
/// and, if it is terminal now, left alone; otherwise decided again from the fresh object
/// (the first certificate never reached the API, so nothing was issued twice).
pub async fn reconcile(
    pcr: Arc<PodCertificateRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if terminal_condition(&pcr).is_some() || pcr.spec.signer_name != ctx.signer.name {
        return Ok(Action::await_change());
    }
    let request = key(&pcr);
    if !ctx.sharding.owns(&request, (ctx.clock)()) {
        tracing::debug!(%request, "assigned to another replica");
        return Ok(Action::requeue(LEASE_RENEWAL_PERIOD));
    }
    let api: Api<PodCertificateRequest> = Api::namespaced_with(
        ctx.client.clone(),
        pcr.metadata.namespace.as_deref().unwrap_or_default(),
        &ctx.pcr_api,
    );
    let name = pcr.metadata.name.clone().unwrap_or_default();
    let mut current = (*pcr).clone();
    for attempt in 0..2 {
        let now = (ctx.clock)();
        let started = Instant::now();
        let decision = decide(&current, &ctx, now).await;
        ctx.metrics.decided(&ctx.signer.name, started.elapsed());
        let (status, outcome) = match decision? {
            Decision::Write(status, outcome) => (status, outcome),
            Decision::Requeue(action) => return Ok(action),
        };
        let mut update = current.clone();
        update.types = Some(TypeMeta {
            api_version: ctx.pcr_api.api_version.clone(),
            kind: ctx.pcr_api.kind.clone(),
        });
        update.metadata.managed_fields = None;
        update.status = Some(status);
        match api
            .replace_status(&name, &PostParams::default(), &update)
            .await
        {
            Ok(_) => {
                record(&ctx, &current, &outcome, now).await;
                return Ok(Action::await_change());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::info!(%request, "request deleted before its status was written");
                return Ok(Action::await_change());
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let fresh = api.get(&name).await.map_err(|source| Error::Reread {
                    request: request.clone(),
                    source,
                })?;
                if let Some(c) = terminal_condition(&fresh) {
                    ctx.metrics.conflict(&ctx.signer.name, "terminal");
                    tracing::info!(%request, condition = %c.type_, "status written by someone else; leaving it");
                    return Ok(Action::await_change());
                }
                ctx.metrics.conflict(&ctx.signer.name, "retried");
                tracing::info!(%request, attempt, "status write conflicted; deciding again from the fresh object");
                current = fresh;
            }
            Err(source) => {
                return Err(Error::WriteStatus { request, source });
            }
        }
    }
    Err(Error::ConflictPersists { request })
}

/// What a decision leads to.
enum Decision {
    /// Write this terminal status.
    Write(PodCertificateRequestStatus, Outcome),
    /// Write nothing; look again.
    Requeue(Action),
}

/// What was written, for metrics, logs and Events after the write succeeded.
enum Outcome {
    Issued {
        serial: String,
        identities: Vec<String>,
        left_out: Vec<String>,
    },
    Denied {
        reason: &'static str,
        message: String,
    },
    Failed {
        reason: &'static str,
    },
}

async fn decide(
    pcr: &PodCertificateRequest,
    ctx: &Context,
    now: SystemTime,
) -> Result<Decision, Error> {
    let signer = &ctx.signer.name;
    let request_key = key(pcr);
    let generation = pcr.metadata.generation;
    // The trust domain (and so the CA) is the request's namespace's, nothing else's.
    let (config, pool) = match &ctx.trust_domains {
        None => (std::borrow::Cow::Borrowed(&ctx.signer), &ctx.pool),
        Some(domains) => {
            let (config, pool) =
                domains.route(&ctx.signer, pcr.metadata.namespace.as_deref().unwrap_or(""))?;
            (std::borrow::Cow::Owned(config), pool)
        }
    };
    let pool = {
        let state = pool.borrow();
        match &state.pool {
            Some(pool) => pool.clone(),
            None => {
                return Err(Error::PoolUnavailable {
                    signer: signer.clone(),
                    reason: state
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "not loaded yet".into()),
                })
            }
        }
    };
    let outcome = match issuance_request(pcr) {
        Err(denial) => Err(NotIssued::Denied(denial)),
        Ok(request) => {
            let cached = snapshot(ctx, &request);
            match issue(&request, &config, pool.signing_ca(), &cached, now) {
                // Judged from the caches, which may lag: a denial is final for the pod,
                // so it is written only if the objects read live say the same.
                Err(NotIssued::Denied(denial)) if denial.reason.depends_on_cluster_state() => {
                    let mut live = read_live(&ctx.client, &request).await?;
                    // The Services (from the cache) that select the pod as read live.
                    live.services = services(ctx, live.pod.as_ref());
                    let confirmed = issue(&request, &config, pool.signing_ca(), &live, now);
                    if confirmed.as_ref().err().and_then(NotIssued::as_denial) != Some(&denial) {
                        tracing::info!(request = %request_key, cached = %denial, "the caches suggested a denial the live objects do not confirm");
                    }
                    confirmed
                }
                other => other,
            }
        }
    };
    Ok(match outcome {
        Ok(issued) => Decision::Write(
            issued_status(&issued, now, generation),
            Outcome::Issued {
                serial: issued.serial.clone(),
                identities: issued.identities.clone(),
                left_out: issued.left_out.clone(),
            },
        ),
        Err(NotIssued::Denied(denial)) => Decision::Write(
            denied_status(&denial, now, generation),
            Outcome::Denied {
                reason: denial.reason.as_str(),
                message: denial.message.clone(),
            },
        ),
        Err(NotIssued::Failed(failure)) => Decision::Write(
            failed_status(&failure, now, generation),
            Outcome::Failed {
                reason: failure.reason.as_str(),
            },
        ),
        Err(NotIssued::Pending(pending)) => {
            ctx.metrics.pending(signer, pending.reason.as_str());
            tracing::info!(request = %request_key, %pending, "pending");
            Decision::Requeue(Action::requeue(PENDING_RECHECK))
        }
        Err(NotIssued::Error(source)) => {
            return Err(Error::Issue {
                signer: signer.clone(),
                request: request_key,
                source: Box::new(source),
            })
        }
    })
}

/// The cluster state for one request, from the watch caches: the pod, Node and
/// ServiceAccount it names, and (service-dns) the Services that select the pod.
pub fn snapshot(ctx: &Context, request: &IssuanceRequest) -> PodSnapshot {
    let mut snapshot = ctx.cluster.cached(request);
    snapshot.services = services(ctx, snapshot.pod.as_ref());
    snapshot
}

/// The Services for `pod` of a signer issuing DNS names (service-dns, pod-identity):
/// only those that select it, found through the index, so this costs what the pod's
/// labels and namespace cost, whatever the size of the cluster. Other signers read none.
fn services(ctx: &Context, pod: Option<&PodInfo>) -> Vec<ServiceInfo> {
    match pod {
        Some(pod) if ctx.signer.issues_dns_names() => ctx.services.selecting(pod),
        _ => Vec::new(),
    }
}

async fn record(ctx: &Context, pcr: &PodCertificateRequest, outcome: &Outcome, now: SystemTime) {
    let signer = &ctx.signer.name;
    let request = key(pcr);
    match outcome {
        Outcome::Issued {
            serial,
            identities,
            left_out,
        } => {
            if !left_out.is_empty() {
                tracing::warn!(%request, %signer, left_out = ?left_out, "DNS names longer than 253 characters left out of the certificate");
            }
            let since = pcr
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| now.duration_since(super::api_types::system_time(&t.0)).ok());
            ctx.metrics.issued(signer, since);
            tracing::info!(%request, %signer, %serial, identities = ?identities, "issued");
        }
        Outcome::Failed { reason } => {
            ctx.metrics.failed(signer, reason);
            tracing::warn!(%request, %signer, %reason, "failed");
        }
        Outcome::Denied { reason, message } => {
            ctx.metrics.denied(signer, reason);
            tracing::warn!(%request, %signer, %reason, detail = %message, "denied");
            let event = Event {
                type_: EventType::Warning,
                reason: (*reason).to_string(),
                note: Some(message.chars().take(1000).collect()),
                action: "Sign".to_string(),
                secondary: None,
            };
            let reference = pcr.object_ref(&ctx.pcr_api);
            if let Err(error) = ctx.recorder.publish(&event, &reference).await {
                // Best effort: the denial itself is recorded in the status.
                tracing::warn!(%request, %error, "could not publish the denial Event");
            }
        }
    }
}

/// Pure: how long to wait after an error. API errors are retried soon; the signer's own
/// problems (no pool, CA not valid) need an operator or a pool reload and are retried
/// less often. Nothing here writes a terminal condition.
pub fn error_policy(_pcr: Arc<PodCertificateRequest>, error: &Error, _ctx: Arc<Context>) -> Action {
    match error {
        Error::PoolUnavailable { .. } | Error::Issue { .. } => Action::requeue(SIGNER_ERROR_RETRY),
        _ => Action::requeue(API_ERROR_RETRY),
    }
}
