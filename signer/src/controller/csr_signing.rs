//! The CertificateSigningRequest path's adapter: one kube-rs controller per enabled
//! signer watching `certificates.k8s.io/v1` CSRs of its signer name, deciding them with
//! [`crate::csr_policy::decide`] and writing the outcome.
//!
//! Writes, each a PUT carrying the resourceVersion the decision was based on (a 409
//! means someone else wrote first: the CSR is looked at again from the watch, never
//! signed twice):
//! - approve: the `Approved` condition (reason [`APPROVED_REASON`]) through
//!   `/approval`, then `status.certificate` (leaf first, intermediates, no root) through
//!   `/status`;
//! - deny: the `Denied` condition through `/approval`;
//! - fail (approved by this signer earlier, no longer entitled): `Failed` through
//!   `/status`.
//!
//! A decision judged from the watch caches that would deny because of the cluster's
//! state (pod UID, terminating, ServiceAccount, node), or wait for a pod the caches do
//! not have, is taken again from objects read live before anything is written.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::ByteString;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::Api;

use super::cluster_view::read_live;
use super::reconcile::{Context, PENDING_RECHECK};
use super::Error;
use crate::csr_policy::{
    decide, CsrDecision, CsrFields, CsrState, Requester, View, APPROVED_REASON,
};
use crate::{Denial, IssuanceRequest, KeyMaterial, PendingReason, PodSnapshot};

/// How soon a CSR whose write conflicted is looked at again (the watch usually brings
/// the newer object first).
pub const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// The fields [`decide`] reads, from the API object.
pub fn csr_fields(csr: &CertificateSigningRequest) -> CsrFields {
    let status = csr.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let has_certificate = status
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    CsrFields {
        name: csr.metadata.name.clone().unwrap_or_default(),
        signer_name: csr.spec.signer_name.clone(),
        request: csr.spec.request.0.clone(),
        usages: csr.spec.usages.clone().unwrap_or_default(),
        expiration_seconds: csr.spec.expiration_seconds,
        username: csr.spec.username.clone().unwrap_or_default(),
        extra: csr.spec.extra.clone().unwrap_or_default(),
        state: CsrState::from_status(
            conditions
                .iter()
                .filter(|c| c.status == "True")
                .map(|c| (c.type_.as_str(), c.reason.as_deref().unwrap_or_default())),
            has_certificate,
        ),
    }
}

/// The request [`ClusterView::cached`](super::ClusterView::cached) and [`read_live`]
/// look objects up by: the requester's pod, its node (claimed, else the one the cache
/// has the pod on) and ServiceAccount.
fn lookup(requester: &Requester, cached_node: Option<String>) -> IssuanceRequest {
    IssuanceRequest {
        namespace: requester.namespace.clone(),
        name: String::new(),
        signer_name: String::new(),
        pod_name: requester.pod_name.clone(),
        pod_uid: requester.pod_uid.clone(),
        service_account_name: requester.service_account.clone(),
        service_account_uid: String::new(),
        node_name: requester
            .node_name
            .clone()
            .or(cached_node)
            .unwrap_or_default(),
        node_uid: String::new(),
        max_expiration_seconds: None,
        key_material: KeyMaterial::StubPkcs10 { csr: Vec::new() },
        unverified_user_annotations: Default::default(),
    }
}

fn with_services(ctx: &Context, mut snapshot: PodSnapshot) -> PodSnapshot {
    if ctx.signer.issues_dns_names() {
        if let Some(pod) = &snapshot.pod {
            snapshot.services = ctx.services.selecting(pod);
        }
    }
    snapshot
}

/// Decides one CSR and writes the outcome (see the module docs).
pub async fn reconcile_csr(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let fields = csr_fields(&csr);
    if fields.signer_name != ctx.signer.name
        || !matches!(fields.state, CsrState::Open | CsrState::ApprovedByUs)
    {
        return Ok(Action::await_change());
    }
    let name = fields.name.clone();
    let now = (ctx.clock)();
    if !ctx.sharding.owns(&format!("csr/{name}"), now) {
        return Ok(Action::requeue(super::LEASE_RENEWAL_PERIOD));
    }
    let started = Instant::now();
    let decision = decide_csr(&fields, &ctx, now).await?;
    ctx.metrics.decided(&ctx.signer.name, started.elapsed());
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let signer = ctx.signer.name.as_str();
    let write = |source| Error::WriteCsr {
        csr: name.clone(),
        source,
    };
    let outcome = match decision {
        CsrDecision::Ignore(why) => {
            tracing::debug!(csr = %name, reason = why.as_str(), "ignored");
            return Ok(Action::await_change());
        }
        CsrDecision::Pending(pending) => {
            ctx.metrics
                .csr_decision(signer, "pending", pending.reason.as_str());
            tracing::info!(csr = %name, %pending, "pending");
            return Ok(Action::requeue(PENDING_RECHECK));
        }
        CsrDecision::Error(source) => {
            return Err(Error::Issue {
                signer: signer.to_string(),
                request: format!("csr/{name}"),
                source: Box::new(source),
            })
        }
        CsrDecision::Deny(denial) => {
            let update = with_condition(
                &csr,
                "Denied",
                &denial.reason.to_string(),
                &denial.message,
                now,
            );
            match api
                .replace_subresource("approval", &name, &PostParams::default(), &update)
                .await
            {
                Ok(_) => {
                    log_refusal(&ctx, &name, "denied", &denial);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        CsrDecision::Fail(denial) => {
            let update = with_condition(
                &csr,
                "Failed",
                &denial.reason.to_string(),
                &denial.message,
                now,
            );
            match api
                .replace_status(&name, &PostParams::default(), &update)
                .await
            {
                Ok(_) => {
                    log_refusal(&ctx, &name, "failed", &denial);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        CsrDecision::Approve(issued) | CsrDecision::Sign(issued) => {
            let mut current = (*csr).clone();
            if fields.state == CsrState::Open {
                let update = with_condition(
                    &current,
                    "Approved",
                    APPROVED_REASON,
                    &format!(
                        "the requester's pod is entitled to {}",
                        issued.identities.join(", ")
                    ),
                    now,
                );
                match api
                    .replace_subresource("approval", &name, &PostParams::default(), &update)
                    .await
                {
                    Ok(approved) => current = approved,
                    Err(e) => return conflict_or(&ctx, &name, e, write),
                }
            }
            let mut update = current.clone();
            update.metadata.managed_fields = None;
            let status = update.status.get_or_insert_with(Default::default);
            status.certificate = Some(ByteString(issued.certificate_chain.as_bytes().to_vec()));
            match api
                .replace_status(&name, &PostParams::default(), &update)
                .await
            {
                Ok(_) => {
                    let since =
                        csr.metadata.creation_timestamp.as_ref().and_then(|t| {
                            now.duration_since(super::api_types::system_time(&t.0)).ok()
                        });
                    ctx.metrics.csr_issued(signer, since);
                    ctx.metrics.csr_decision(signer, "issued", APPROVED_REASON);
                    tracing::info!(csr = %name, %signer, serial = %issued.serial, identities = ?issued.identities, "CSR approved and signed");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    match outcome {
        Ok(()) => Ok(Action::await_change()),
        Err(e) => conflict_or(&ctx, &name, e, write),
    }
}

fn conflict_or(
    ctx: &Context,
    name: &str,
    error: kube::Error,
    write: impl FnOnce(kube::Error) -> Error,
) -> Result<Action, Error> {
    match &error {
        kube::Error::Api(s) if s.code == 409 => {
            ctx.metrics.conflict(&ctx.signer.name, "csr");
            tracing::info!(csr = %name, "CSR write conflicted; looking again");
            Ok(Action::requeue(CONFLICT_RETRY))
        }
        kube::Error::Api(s) if s.code == 404 => Ok(Action::await_change()),
        _ => Err(write(error)),
    }
}

fn log_refusal(ctx: &Context, name: &str, what: &'static str, denial: &Denial) {
    ctx.metrics
        .csr_decision(&ctx.signer.name, what, denial.reason.as_str());
    tracing::warn!(csr = %name, signer = %ctx.signer.name, reason = %denial.reason, detail = %denial.message, "CSR {what}");
}

/// `csr` with `type_` (status True) added to its conditions, for a PUT.
fn with_condition(
    csr: &CertificateSigningRequest,
    type_: &str,
    reason: &str,
    message: &str,
    now: SystemTime,
) -> CertificateSigningRequest {
    let mut update = csr.clone();
    update.metadata.managed_fields = None;
    let time = super::api_types::k8s_time(now);
    let status = update.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: type_.to_string(),
            status: "True".to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_update_time: Some(time.clone()),
            last_transition_time: Some(time),
        });
    update
}

/// The decision, from the caches and, where they could mislead, from live reads.
async fn decide_csr(
    fields: &CsrFields,
    ctx: &Context,
    now: SystemTime,
) -> Result<CsrDecision, Error> {
    let requester = Requester::of(fields).ok();
    let (config, pool) = match (&ctx.trust_domains, &requester) {
        (Some(domains), Some(r)) => {
            let (config, pool) = domains.route(&ctx.signer, &r.namespace)?;
            (std::borrow::Cow::Owned(config), pool)
        }
        _ => (std::borrow::Cow::Borrowed(&ctx.signer), &ctx.pool),
    };
    let pool = {
        let state = pool.borrow();
        match &state.pool {
            Some(pool) => pool.clone(),
            None => {
                return Err(Error::PoolUnavailable {
                    signer: ctx.signer.name.clone(),
                    reason: state
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "not loaded yet".into()),
                })
            }
        }
    };
    let Some(requester) = requester else {
        // Denied from the CSR alone: no cluster state to look at.
        return Ok(decide(
            fields,
            &config,
            pool.signing_ca(),
            &PodSnapshot::default(),
            View::Live,
            now,
        ));
    };
    let first = ctx.cluster.cached(&lookup(&requester, None));
    let cached_node = first.pod.as_ref().and_then(|p| p.node_name.clone());
    let cached = with_services(
        ctx,
        ctx.cluster.cached(&lookup(&requester, cached_node.clone())),
    );
    let decision = decide(
        fields,
        &config,
        pool.signing_ca(),
        &cached,
        View::Cached,
        now,
    );
    let confirm = match &decision {
        CsrDecision::Deny(d) | CsrDecision::Fail(d) => d.reason.depends_on_cluster_state(),
        CsrDecision::Pending(p) => matches!(
            p.reason,
            PendingReason::PodNotInSnapshot
                | PendingReason::PodNotBound
                | PendingReason::NodeNotInSnapshot
                | PendingReason::ServiceAccountNotInSnapshot
        ),
        _ => false,
    };
    if !confirm {
        return Ok(decision);
    }
    let node_used = requester.node_name.clone().or(cached_node);
    let mut live = read_live(&ctx.client, &lookup(&requester, node_used.clone())).await?;
    let live_node = live.pod.as_ref().and_then(|p| p.node_name.clone());
    if requester.node_name.is_none() && live_node.is_some() && live_node != node_used {
        // The caches had the pod unbound or elsewhere: read the Node it is bound to.
        live = read_live(&ctx.client, &lookup(&requester, live_node)).await?;
    }
    let confirmed = decide(
        fields,
        &config,
        pool.signing_ca(),
        &with_services(ctx, live),
        View::Live,
        now,
    );
    tracing::info!(csr = %fields.name, cached = %decision, live = %confirmed, "decision judged from the caches taken again from live objects");
    Ok(confirmed)
}
