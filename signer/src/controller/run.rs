//! Wiring: discovery, pool watches, watch caches, sharding, trust bundles, admin
//! endpoint and one kube-rs `Controller` per enabled signer; on SIGTERM/SIGINT the
//! controllers stop taking work, finish what is in flight, and the replica's sharding
//! Lease is deleted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};
use tokio::sync::watch;

use super::bundle_endpoint::BundleEndpointConfig;
use super::cluster_view::ClusterView;
use super::discovery::discover;
use super::federation::FederationSettings;
use super::metrics::Metrics;
use super::pool_watch::{self, PoolState};
use super::reconcile::{error_policy, reconcile, Context};
use super::replica::Replica;
use super::service_cache::{self, service_cache};
use super::sharding::{Released, Sharding, ShardingConfig};
use super::spiffe_domains::{TrustDomains, TrustDomainsConfig};
use super::{admin, ca_status, requester_policy, trust_bundle_gc, trust_bundles, Error};
use crate::{SignerConfig, SignerKind};

/// One enabled signer and its pool file.
#[derive(Clone, Debug)]
pub struct SignerSetup {
    /// The signer.
    pub config: SignerConfig,
    /// The CA pool file (the Secret's `pool` key, projected).
    pub pool_file: PathBuf,
}

/// The controller's configuration (from the CLI).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The enabled signers.
    pub signers: Vec<SignerSetup>,
    /// Sharding identity; `None` handles every request.
    pub sharding: Option<ShardingConfig>,
    /// The admin endpoint address; `None` serves none.
    pub admin_listen: Option<SocketAddr>,
    /// The periodic pool re-read.
    pub pool_reload_period: Duration,
    /// Concurrent reconciles per signer.
    pub concurrency: u16,
    /// Reporter name of Events.
    pub reporter: String,
    /// Warn when the signing CA expires within this window
    /// ([`DEFAULT_CA_EXPIRY_WARNING`](super::DEFAULT_CA_EXPIRY_WARNING)).
    pub ca_expiry_warning: Duration,
    /// The spiffe signer's trust domains beyond its default one; `None`: one trust
    /// domain, as always.
    pub trust_domains: Option<TrustDomainsConfig>,
    /// Federation (the spiffe signer's ClusterFederatedTrustDomain loop); `None`: off.
    pub federation: Option<FederationSettings>,
    /// The SPIFFE bundle endpoint of one own trust domain; `None`: none.
    pub bundle_endpoint: Option<BundleEndpointConfig>,
    /// The cluster every signer names in its certificates (`--issuer-url`).
    pub issuer: super::IssuerSource,
    /// The pod injection webhook (needs the service-dns signer, whose CA signs its
    /// serving certificate); `None` serves none.
    pub injection: Option<super::InjectionSetup>,
    /// Also sign `certificates.k8s.io/v1` CertificateSigningRequests of the enabled
    /// signers' names filed by in-pod agents (`--enable-csr-signing`), and publish the
    /// trust bundle ConfigMaps of opted-in namespaces. With it, a cluster that does not
    /// serve PodCertificateRequests runs only this path.
    pub csr_signing: bool,
}

/// Runs the controller until SIGTERM/Ctrl-C (graceful: in-flight reconciles finish).
pub async fn run(client: Client, mut config: ControllerConfig) -> Result<(), Error> {
    // The issuing cluster, named in every certificate. Without it (discovery refused)
    // certificates name none, and a verifier requiring one refuses them: fail closed.
    match super::issuer_discovery::resolve(&client, &config.issuer).await {
        Ok(cluster) => {
            tracing::info!(issuer = ?cluster.as_ref().map(|c| c.as_str()), "issuing cluster named in certificates");
            for setup in &mut config.signers {
                setup.config.issuing_cluster = cluster.clone();
            }
        }
        Err(error) => {
            tracing::warn!(%error, "could not discover the cluster's ServiceAccount issuer; certificates name no issuing cluster (set --issuer-url)")
        }
    }
    let metrics = Arc::new(Metrics::new());
    let pools: Vec<watch::Receiver<PoolState>> = config
        .signers
        .iter()
        .map(|s| {
            pool_watch::spawn(&s.pool_file, config.pool_reload_period).map_err(|source| {
                Error::WatchPool {
                    path: s.pool_file.clone(),
                    source,
                }
            })
        })
        .collect::<Result<_, _>>()?;
    let caches_ready = Arc::new(AtomicBool::new(false));
    let trust_domains = start_trust_domains(&config, &pools)?;

    if let Some(injection) = &config.injection {
        let pool = config
            .signers
            .iter()
            .zip(&pools)
            .find(|(s, _)| matches!(s.config.kind, SignerKind::ServiceDns))
            .map(|(_, pool)| pool.clone())
            .ok_or(Error::InjectionWithoutServiceDns)?;
        let mut webhook = injection.webhook();
        if config.csr_signing {
            // Which path a pod gets: asked once now, then every minute (the PCR API may
            // be turned on or off with the control plane's runtime-config).
            // Only a definite "not served" picks the agent; a transient error keeps the
            // Pod Certificates path until the next look.
            let served = Arc::new(AtomicBool::new(!matches!(
                discover(&client).await,
                Err(Error::NotServed)
            )));
            tracing::info!(
                pod_certificate_requests = served.load(Ordering::Relaxed),
                "injection path chosen by API discovery"
            );
            let (client, flag) = (client.clone(), served.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(super::INJECTION_PATH_REFRESH);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match discover(&client).await {
                        Ok(_) => flag.store(true, Ordering::Relaxed),
                        Err(Error::NotServed) => flag.store(false, Ordering::Relaxed),
                        // Keep the last answer on a transient error.
                        Err(error) => {
                            tracing::warn!(%error, "API discovery for the injection path failed; keeping the last answer")
                        }
                    }
                }
            });
            webhook = webhook.with_csr_path(
                crate::injection::AgentSettings {
                    image: injection.agent_image.clone(),
                },
                served,
            );
        }
        let webhook = Arc::new(webhook);
        let (client, server) = (client.clone(), injection.server.clone());
        tokio::spawn(async move {
            // Serves until the process exits: pods created while the controller drains
            // are still answered.
            let served =
                super::run_injection_webhook(client, server, webhook, pool, std::future::pending())
                    .await;
            if let Err(error) = served {
                tracing::error!(error = %format!("{error:#}"), "injection webhook stopped");
            }
        });
    }

    if let Some(addr) = config.admin_listen {
        let ready: admin::ReadinessCheck = {
            let pools = pools.clone();
            let names: Vec<String> = config
                .signers
                .iter()
                .map(|s| s.config.name.clone())
                .collect();
            let caches_ready = caches_ready.clone();
            let trust_domains = trust_domains.clone();
            Arc::new(move || {
                let extra = trust_domains
                    .iter()
                    .flat_map(|d| d.pools().into_iter().skip(1));
                let extra: Vec<_> = extra
                    .map(|(td, pool)| (format!("trust domain {td}"), pool))
                    .collect();
                let all = names
                    .iter()
                    .cloned()
                    .zip(pools.iter().cloned())
                    .chain(extra);
                for (name, pool) in all {
                    let state = pool.borrow();
                    if state.pool.is_none() {
                        return Err(format!(
                            "signer {name}: {}",
                            state
                                .last_error
                                .clone()
                                .unwrap_or_else(|| "no CA pool".into())
                        ));
                    }
                }
                if !caches_ready.load(Ordering::Relaxed) {
                    return Err("API discovery and watch caches not ready".into());
                }
                Ok(())
            })
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Admin { addr, source })?;
        drop(listener); // Bind check: fail at start-up on a taken port.
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(error) = admin::serve(addr, metrics, ready).await {
                tracing::error!(%addr, %error, "admin endpoint stopped");
            }
        });
    }
    for (setup, pool) in config.signers.iter().zip(&pools) {
        ca_status::record(&metrics, &setup.config.name, pool.borrow().pool.as_deref());
        tokio::spawn(ca_status::watch_loop(
            setup.config.name.clone(),
            pool.clone(),
            metrics.clone(),
            config.ca_expiry_warning,
        ));
    }

    let apis = match discover(&client).await {
        Ok(apis) => {
            tracing::info!(pcr = %apis.pcr.api_version, ctb = %apis.ctb.api_version, "discovered certificates.k8s.io versions");
            Some(apis)
        }
        Err(Error::NotServed) if config.csr_signing => {
            tracing::warn!("the API server serves no PodCertificateRequests or ClusterTrustBundles: signing CertificateSigningRequests only; trust bundles are published as ConfigMaps");
            None
        }
        Err(error) => return Err(error),
    };

    // Watch caches: pods, Nodes and ServiceAccounts for every signer's entitlement
    // checks; Services for the signers that issue DNS names.
    let cluster = ClusterView::start(&client).await?;
    let needs_services = config.signers.iter().any(|s| s.config.issues_dns_names());
    let (services, services_writer) = service_cache();
    if needs_services {
        // Indexed by namespace and selector; only name, namespace, type and selector
        // are kept (`service_cache`).
        let service_stream = watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff();
        tokio::spawn(service_cache::maintain(
            services_writer,
            service_stream,
            metrics.clone(),
        ));
        services.wait_until_ready().await?;
        tracing::info!(services = services.len(), "service cache ready");
    }

    let replica = match &config.sharding {
        None => None,
        Some(sc) => Some(Replica::start(&client, sc).await?),
    };
    let sharding = replica.as_ref().map_or(Sharding::Off, Replica::sharding);
    caches_ready.store(true, Ordering::Relaxed);

    if config.csr_signing {
        tokio::spawn(super::bundle_configmaps::sync_loop(
            client.clone(),
            config
                .signers
                .iter()
                .map(|s| s.config.clone())
                .zip(pools.iter().cloned())
                .collect(),
            trust_domains.clone(),
            metrics.clone(),
        ));
    }
    if let Some(apis) = &apis {
        tokio::spawn(trust_bundle_gc::gc_loop(
            client.clone(),
            apis.ctb.clone(),
            config.signers.iter().map(|s| s.config.clone()).collect(),
            metrics.clone(),
        ));
        for (setup, pool) in config.signers.iter().zip(&pools) {
            tokio::spawn(trust_bundles::sync_loop(
                client.clone(),
                apis.ctb.clone(),
                setup.config.clone(),
                pool.clone(),
                metrics.clone(),
            ));
        }
    }

    let no_ctb = || {
        Error::Config {
        reason: "federation and the bundle endpoint need ClusterTrustBundles, which the API server does not serve".into(),
    }
    };
    if config.federation.is_some() || trust_domains.is_some() {
        let apis = apis.as_ref().ok_or_else(no_ctb)?;
        let spiffe = config
            .signers
            .iter()
            .zip(&pools)
            .find(|(s, _)| matches!(s.config.kind, SignerKind::Spiffe { .. }));
        let Some((setup, pool)) = spiffe else {
            return Err(Error::Config {
                reason: "federation needs the spiffe signer (--enable-spiffe-signer)".into(),
            });
        };
        let own = match &trust_domains {
            Some(domains) => domains.pools(),
            None => match &setup.config.kind {
                SignerKind::Spiffe { trust_domain } => vec![(trust_domain.clone(), pool.clone())],
                SignerKind::ServiceDns | SignerKind::PodIdentity { .. } => Vec::new(),
            },
        };
        tokio::spawn(super::federation::run_loop(
            client.clone(),
            apis.ctb.clone(),
            setup.config.name.clone(),
            own,
            config.federation.clone(),
            metrics.clone(),
        ));
    }

    if let Some(endpoint) = &config.bundle_endpoint {
        let apis = apis.as_ref().ok_or_else(no_ctb)?;
        let td = endpoint.trust_domain.as_str();
        let spiffe = config
            .signers
            .iter()
            .zip(&pools)
            .find(|(s, _)| matches!(s.config.kind, SignerKind::Spiffe { .. }));
        let pool = match (&trust_domains, spiffe) {
            (Some(domains), Some(_)) => domains.pool(td).cloned(),
            (None, Some((setup, pool))) => match &setup.config.kind {
                SignerKind::Spiffe { trust_domain } if trust_domain.as_str() == td => {
                    Some(pool.clone())
                }
                _ => None,
            },
            (_, None) => None,
        };
        let (Some(pool), Some((setup, _))) = (pool, spiffe) else {
            return Err(Error::Config {
                reason: format!(
                    "the bundle endpoint serves trust domain {td}, which the spiffe signer does not serve"
                ),
            });
        };
        let (client, api, name, endpoint) = (
            client.clone(),
            apis.ctb.clone(),
            setup.config.name.clone(),
            endpoint.clone(),
        );
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let result = super::bundle_endpoint::run(client, api, name, endpoint, pool).await;
            let _ = started_tx.send(result);
        });
        // A bind or certificate error ends the task at once: report it at start-up.
        if let Ok(Ok(Err(error))) =
            tokio::time::timeout(Duration::from_millis(500), started_rx).await
        {
            return Err(error);
        }
    }

    tokio::spawn(requester_policy::watch(client.clone(), metrics.clone()));

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: config.reporter.clone(),
            instance: config.sharding.as_ref().map(|s| s.pod_name.clone()),
        },
    );
    let contexts: Vec<Arc<Context>> = config
        .signers
        .iter()
        .zip(&pools)
        .map(|(setup, pool)| {
            Arc::new(Context {
                client: client.clone(),
                // The CSR reconciler does not use it.
                pcr_api: apis.as_ref().map_or_else(
                    || {
                        kube::core::ApiResource::erase::<
                            k8s_openapi::api::certificates::v1::CertificateSigningRequest,
                        >(&())
                    },
                    |a| a.pcr.clone(),
                ),
                signer: setup.config.clone(),
                pool: pool.clone(),
                trust_domains: match setup.config.kind {
                    SignerKind::Spiffe { .. } => trust_domains.clone(),
                    // The namespace mapping is the spiffe signer's; pod-identity certificates
                    // name its own trust domain.
                    SignerKind::ServiceDns | SignerKind::PodIdentity { .. } => None,
                },
                cluster: cluster.clone(),
                services: services.clone(),
                sharding: sharding.clone(),
                metrics: metrics.clone(),
                recorder: recorder.clone(),
                clock: Arc::new(SystemTime::now),
            })
        })
        .collect();
    let pcr_api = apis.as_ref().map(|a| a.pcr.clone());
    let pcr_contexts = if pcr_api.is_some() {
        contexts.clone()
    } else {
        Vec::new()
    };
    let controllers = pcr_contexts.into_iter().map(|ctx| {
        let pcr_api = ctx.pcr_api.clone();
        let api: Api<super::PodCertificateRequest> = Api::all_with(client.clone(), &pcr_api);
        let selector = format!("spec.signerName={}", ctx.signer.name);
        let signer = ctx.signer.name.clone();
        let metrics = metrics.clone();
        let controller = Controller::new_with(api, watcher::Config::default().fields(&selector), pcr_api)
            .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency))
            // SIGTERM/SIGINT: no new reconciles; the ones in flight finish.
            .shutdown_on_signal();
        // Sharded: every request is looked at again when a replica joins or leaves.
        let controller = match &replica {
            Some(replica) => controller.reconcile_all_on(replica.membership_changes()),
            None => controller,
        };
        controller
            .run(reconcile, error_policy, ctx)
            .for_each(move |result| {
                match result {
                    Ok((object, _)) => tracing::trace!(request = %object, "reconciled"),
                    Err(kube::runtime::controller::Error::ReconcilerFailed(error, object)) => {
                        metrics.reconcile_error(&signer, error.step());
                        tracing::warn!(%signer, request = %object, step = error.step(), %error, "reconcile failed; retrying");
                    }
                    Err(error) => tracing::warn!(%signer, %error, "controller"),
                }
                futures::future::ready(())
            })
    });
    let csr_contexts = if config.csr_signing {
        contexts
    } else {
        Vec::new()
    };
    let csr_controllers = csr_contexts.into_iter().map(|ctx| {
        let api: Api<k8s_openapi::api::certificates::v1::CertificateSigningRequest> =
            Api::all(client.clone());
        let selector = format!("spec.signerName={}", ctx.signer.name);
        let signer = ctx.signer.name.clone();
        let metrics = metrics.clone();
        let controller = Controller::new(api, watcher::Config::default().fields(&selector))
            .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency))
            .shutdown_on_signal();
        let controller = match &replica {
            Some(replica) => controller.reconcile_all_on(replica.membership_changes()),
            None => controller,
        };
        controller
            .run(super::csr_signing::reconcile_csr, error_policy_csr, ctx)
            .for_each(move |result| {
                match result {
                    Ok((object, _)) => tracing::trace!(csr = %object, "reconciled"),
                    Err(kube::runtime::controller::Error::ReconcilerFailed(error, object)) => {
                        metrics.reconcile_error(&signer, error.step());
                        tracing::warn!(%signer, csr = %object, step = error.step(), %error, "CSR reconcile failed; retrying");
                    }
                    Err(error) => tracing::warn!(%signer, %error, "CSR controller"),
                }
                futures::future::ready(())
            })
    });
    tracing::info!(signers = ?config.signers.iter().map(|s| &s.config.name).collect::<Vec<_>>(), pod_certificate_requests = pcr_api_served(&apis), csr_signing = config.csr_signing, "controller running");
    futures::future::join(
        futures::future::join_all(controllers),
        futures::future::join_all(csr_controllers),
    )
    .await;
    tracing::info!("controller stopped");
    if let Some(replica) = replica {
        // Only now: until the reconcilers stopped, this replica still owned its share.
        match replica.release(&client).await {
            Ok(Released::Deleted) => {
                tracing::info!("sharding Lease deleted; the other replicas take over its requests")
            }
            Ok(Released::AlreadyGone) => tracing::info!("sharding Lease already gone"),
            Ok(outcome) => {
                tracing::warn!(?outcome, "sharding Lease not deleted; it expires in 15 s")
            }
            Err(error) => tracing::warn!(%error, "sharding Lease not deleted; it expires in 15 s"),
        }
    }
    Ok(())
}

fn pcr_api_served(apis: &Option<super::ServedApis>) -> bool {
    apis.is_some()
}

/// The CSR reconciler's error policy: the same delays as the PodCertificateRequest one.
fn error_policy_csr(
    _csr: Arc<k8s_openapi::api::certificates::v1::CertificateSigningRequest>,
    error: &Error,
    _ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    use super::reconcile::{API_ERROR_RETRY, SIGNER_ERROR_RETRY};
    match error {
        Error::PoolUnavailable { .. } | Error::Issue { .. } => {
            kube::runtime::controller::Action::requeue(SIGNER_ERROR_RETRY)
        }
        _ => kube::runtime::controller::Action::requeue(API_ERROR_RETRY),
    }
}

/// Starts the pool watches of the spiffe signer's extra trust domains; the default trust
/// domain's pool is the spiffe signer's own (`pools`, in the order of `config.signers`).
fn start_trust_domains(
    config: &ControllerConfig,
    pools: &[watch::Receiver<PoolState>],
) -> Result<Option<Arc<TrustDomains>>, Error> {
    let Some(domains) = &config.trust_domains else {
        return Ok(None);
    };
    let Some((setup, default_pool)) = config
        .signers
        .iter()
        .zip(pools)
        .find(|(s, _)| matches!(s.config.kind, SignerKind::Spiffe { .. }))
    else {
        return Err(Error::Config {
            reason: "several trust domains are configured, but the spiffe signer is not enabled"
                .into(),
        });
    };
    let invalid = |reason: String| Error::Config { reason };
    domains.validate().map_err(invalid)?;
    if let SignerKind::Spiffe { trust_domain } = &setup.config.kind {
        if trust_domain != domains.map.default_trust_domain() {
            return Err(invalid(format!(
                "the trust domain map's default {} is not the spiffe signer's trust domain {trust_domain}",
                domains.map.default_trust_domain()
            )));
        }
    }
    let mut receivers = std::collections::BTreeMap::new();
    receivers.insert(
        domains.map.default_trust_domain().to_string(),
        default_pool.clone(),
    );
    for (td, path) in &domains.pool_files {
        let rx = pool_watch::spawn(path, config.pool_reload_period).map_err(|source| {
            Error::WatchPool {
                path: path.clone(),
                source,
            }
        })?;
        receivers.insert(td.clone(), rx);
    }
    TrustDomains::new(domains.map.clone(), receivers)
        .map(|d| Some(Arc::new(d)))
        .map_err(invalid)
}
