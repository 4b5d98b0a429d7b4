//! The signers' ClusterTrustBundles: one signer-linked bundle per signer, written with
//! server-side apply under one field manager, at start-up, on every pool change and
//! periodically (which also repairs edits by others).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Api, Client};
use tokio::sync::watch;

use super::metrics::Metrics;
use super::pool_watch::PoolState;
use super::Error;
use crate::{CaPool, SignerConfig, SignerKind};

/// The field manager of every ClusterTrustBundle write.
pub const FIELD_MANAGER: &str = "podtls-signer";
/// How often bundles are re-applied without a pool change.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(5 * 60);
/// How soon a failed apply is retried.
pub const RETRY_PERIOD: Duration = Duration::from_secs(10);

/// The signer-linked bundle name: `<signer with / replaced by :>:primary-bundle`.
pub fn bundle_name(signer_name: &str) -> String {
    format!("{}:primary-bundle", signer_name.replace('/', ":"))
}

/// The bundle's labels, as meshtool sets them (pods select bundles by these).
pub fn bundle_labels(config: &SignerConfig) -> BTreeMap<String, String> {
    match &config.kind {
        SignerKind::ServiceDns => BTreeMap::from([(
            "service-dns.row-major.net/canarying".to_string(),
            "live".to_string(),
        )]),
        SignerKind::PodIdentity { .. } => BTreeMap::from([(
            "podidentity.row-major.net/canarying".to_string(),
            "live".to_string(),
        )]),
        SignerKind::Spiffe { trust_domain } => {
            // meshtool's labels, plus the draft SPIFFE Filesystem Delivery appendix B
            // labels of the own trust domain (workload = peer = this trust domain).
            let mut labels = super::federation_bundles::pair_labels(
                trust_domain.as_str(),
                trust_domain.as_str(),
            );
            labels.insert(
                "spiffe.row-major.net/canarying".to_string(),
                "live".to_string(),
            );
            labels.insert(
                "spiffe.row-major.net/trust-domain".to_string(),
                trust_domain.to_string(),
            );
            labels
        }
    }
}

/// The apply body: apiVersion/kind as served, name, labels, `spec.signerName` and the
/// pool's deduplicated CA certificates.
pub fn bundle_body(api: &ApiResource, config: &SignerConfig, pool: &CaPool) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": api.api_version,
        "kind": api.kind,
        "metadata": {
            "name": bundle_name(&config.name),
            "labels": bundle_labels(config),
        },
        "spec": {
            "signerName": config.name,
            "trustBundle": pool.trust_bundle_pem(),
        },
    })
}

/// Applies one signer's bundle (server-side apply, forced: this controller owns it).
pub async fn apply(
    client: &Client,
    api: &ApiResource,
    config: &SignerConfig,
    pool: &CaPool,
) -> Result<(), Error> {
    let name = bundle_name(&config.name);
    let bundles: Api<DynamicObject> = Api::all_with(client.clone(), api);
    bundles
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(bundle_body(api, config, pool)),
        )
        .await
        .map(|_| ())
        .map_err(|source| Error::ApplyTrustBundle { name, source })
}

/// Keeps one signer's bundle in sync with its pool until the pool watch ends.
pub async fn sync_loop(
    client: Client,
    api: ApiResource,
    config: SignerConfig,
    mut pool: watch::Receiver<PoolState>,
    metrics: std::sync::Arc<Metrics>,
) {
    loop {
        let current = pool.borrow_and_update().pool.clone();
        let wait = match current {
            None => RESYNC_PERIOD,
            Some(p) => match apply(&client, &api, &config, &p).await {
                Ok(()) => {
                    metrics.trust_bundle_apply(&config.name, true);
                    tracing::info!(signer = %config.name, bundle = %bundle_name(&config.name), cas = p.cas().len(), "applied ClusterTrustBundle");
                    RESYNC_PERIOD
                }
                Err(error) => {
                    metrics.trust_bundle_apply(&config.name, false);
                    metrics.reconcile_error(&config.name, error.step());
                    tracing::error!(signer = %config.name, %error, "ClusterTrustBundle apply failed; retrying");
                    RETRY_PERIOD
                }
            },
        };
        tokio::select! {
            changed = pool.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_bundles_after_the_signer() {
        assert_eq!(
            bundle_name("row-major.net/spiffe"),
            "row-major.net:spiffe:primary-bundle"
        );
        assert_eq!(
            bundle_name("row-major.net/service-dns"),
            "row-major.net:service-dns:primary-bundle"
        );
    }

    #[test]
    fn spiffe_bundle_carries_the_trust_domain_label() {
        let td = crate::parse_trust_domain("cluster.local").unwrap();
        let labels = bundle_labels(&SignerConfig::spiffe(td));
        assert_eq!(labels["spiffe.row-major.net/canarying"], "live");
        assert_eq!(labels["spiffe.row-major.net/trust-domain"], "cluster.local");
        assert_eq!(labels["k8s.spiffe.io/canarying"], "live");
        assert_eq!(
            labels["k8s.spiffe.io/workload-trust-domain"],
            "cluster.local"
        );
        assert_eq!(labels["k8s.spiffe.io/peer-trust-domain"], "cluster.local");
        assert_eq!(
            bundle_labels(&SignerConfig::service_dns())["service-dns.row-major.net/canarying"],
            "live"
        );
    }

    #[test]
    fn pod_identity_bundle_keeps_meshtools_name_and_label() {
        let td = crate::parse_trust_domain("cluster.local").unwrap();
        let config = SignerConfig::pod_identity(td);
        assert_eq!(
            bundle_name(&config.name),
            "row-major.net:pod-identity:primary-bundle"
        );
        assert_eq!(
            bundle_labels(&config),
            BTreeMap::from([(
                "podidentity.row-major.net/canarying".to_string(),
                "live".to_string()
            )])
        );
    }
}
