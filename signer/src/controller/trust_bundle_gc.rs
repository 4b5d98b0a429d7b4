//! Deleting the ClusterTrustBundles this signer wrote that no enabled signer wants any
//! more (a signer disabled by flags), so pods stop trusting a CA nobody manages.
//!
//! A bundle is this project's when all of these hold, and only then is it ever deleted:
//! - its managedFields name this controller's field manager ([`FIELD_MANAGER`]), which
//!   only this controller's server-side applies set;
//! - it is signer-linked (`spec.signerName` set) and named as this controller names
//!   bundles ([`bundle_name`] of its signer name);
//! - its signer name is one of this project's: the two default names
//!   (`row-major.net/service-dns`, `row-major.net/spiffe`, `row-major.net/pod-identity`) or an enabled signer's name.
//!
//! It is unwanted when its name is not the bundle name of an enabled signer. A spiffe
//! trust domain renamed keeps the bundle's name: the apply rewrites its trust-domain
//! label and CA certificates in place, so no bundle for the old trust domain is left
//! behind and nothing needs deleting. A bundle of a custom signer name that is no longer
//! configured is not recognised (it could be another deployment's) and is left alone.
//!
//! Deletes carry the UID and resourceVersion that were judged as preconditions, so a
//! bundle re-created or changed in between is not deleted. Runs at start-up and every
//! [`RESYNC_PERIOD`].

use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};

use super::metrics::Metrics;
use super::trust_bundles::{bundle_name, FIELD_MANAGER, RESYNC_PERIOD};
use super::Error;
use crate::{SignerConfig, POD_IDENTITY_SIGNER_NAME, SERVICE_DNS_SIGNER_NAME, SPIFFE_SIGNER_NAME};

/// What the collector needs of an existing bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingBundle {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `spec.signerName`.
    pub signer_name: Option<String>,
    /// The managers in `metadata.managedFields`.
    pub managers: Vec<String>,
}

impl ExistingBundle {
    /// The fields of a listed object.
    pub fn of(object: &DynamicObject) -> ExistingBundle {
        ExistingBundle {
            name: object.metadata.name.clone().unwrap_or_default(),
            uid: object.metadata.uid.clone(),
            resource_version: object.metadata.resource_version.clone(),
            signer_name: object.data["spec"]["signerName"]
                .as_str()
                .map(str::to_string),
            managers: object
                .metadata
                .managed_fields
                .iter()
                .flatten()
                .filter_map(|m| m.manager.clone())
                .collect(),
        }
    }
}

/// The bundles among `existing` that are this project's (see the module docs) and that
/// no signer in `enabled` wants.
pub fn unwanted<'a>(
    enabled: &[SignerConfig],
    existing: &'a [ExistingBundle],
) -> Vec<&'a ExistingBundle> {
    let wanted: Vec<String> = enabled.iter().map(|c| bundle_name(&c.name)).collect();
    let ours = |signer: &str| {
        signer == SERVICE_DNS_SIGNER_NAME
            || signer == SPIFFE_SIGNER_NAME
            || signer == POD_IDENTITY_SIGNER_NAME
            || enabled.iter().any(|c| c.name == signer)
    };
    existing
        .iter()
        .filter(|b| b.managers.iter().any(|m| m == FIELD_MANAGER))
        .filter(|b| {
            b.signer_name
                .as_deref()
                .is_some_and(|s| ours(s) && b.name == bundle_name(s))
        })
        .filter(|b| !wanted.contains(&b.name))
        .collect()
}

/// Lists the bundles and deletes the unwanted ones; returns the names deleted.
pub async fn collect(
    client: &Client,
    api: &ApiResource,
    enabled: &[SignerConfig],
) -> Result<Vec<String>, Error> {
    let bundles: Api<DynamicObject> = Api::all_with(client.clone(), api);
    let list = bundles
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::ListTrustBundles { source })?;
    let existing: Vec<ExistingBundle> = list.items.iter().map(ExistingBundle::of).collect();
    let mut deleted = Vec::new();
    for bundle in unwanted(enabled, &existing) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: bundle.uid.clone(),
                resource_version: bundle.resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        match bundles.delete(&bundle.name, &params).await {
            Ok(_) => {
                tracing::info!(bundle = %bundle.name, signer = ?bundle.signer_name, "deleted ClusterTrustBundle no enabled signer wants");
                deleted.push(bundle.name.clone());
            }
            // Gone already, or changed since it was listed: judged again next time.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(source) => {
                return Err(Error::DeleteTrustBundle {
                    name: bundle.name.clone(),
                    source,
                })
            }
        }
    }
    Ok(deleted)
}

/// Collects at start-up and every [`RESYNC_PERIOD`], forever.
pub async fn gc_loop(
    client: Client,
    api: ApiResource,
    enabled: Vec<SignerConfig>,
    metrics: std::sync::Arc<Metrics>,
) {
    loop {
        match collect(&client, &api, &enabled).await {
            Ok(deleted) => {
                for _ in deleted {
                    metrics.trust_bundle_delete(true);
                }
            }
            Err(error) => {
                metrics.trust_bundle_delete(false);
                tracing::error!(%error, "ClusterTrustBundle clean-up failed; retrying later");
            }
        }
        tokio::time::sleep(RESYNC_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spiffe(td: &str) -> SignerConfig {
        SignerConfig::spiffe(crate::parse_trust_domain(td).unwrap())
    }

    fn bundle(name: &str, signer: Option<&str>, manager: &str) -> ExistingBundle {
        ExistingBundle {
            name: name.into(),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("7".into()),
            signer_name: signer.map(str::to_string),
            managers: vec!["kubectl".into(), manager.into()],
        }
    }

    fn names(v: Vec<&ExistingBundle>) -> Vec<&str> {
        v.into_iter().map(|b| b.name.as_str()).collect()
    }

    #[test]
    fn deletes_the_bundle_of_a_disabled_signer_only() {
        let existing = [
            bundle(
                "row-major.net:spiffe:primary-bundle",
                Some("row-major.net/spiffe"),
                FIELD_MANAGER,
            ),
            bundle(
                "row-major.net:service-dns:primary-bundle",
                Some("row-major.net/service-dns"),
                FIELD_MANAGER,
            ),
        ];
        assert_eq!(
            names(unwanted(&[spiffe("cluster.local")], &existing)),
            ["row-major.net:service-dns:primary-bundle"]
        );
        assert!(unwanted(
            &[spiffe("cluster.local"), SignerConfig::service_dns()],
            &existing
        )
        .is_empty());
    }

    #[test]
    fn a_renamed_trust_domain_keeps_its_bundle_which_the_apply_rewrites() {
        // The bundle still carries the old trust-domain label; it is the one the new
        // configuration applies to, under the same name.
        let existing = [bundle(
            "row-major.net:spiffe:primary-bundle",
            Some("row-major.net/spiffe"),
            FIELD_MANAGER,
        )];
        assert!(unwanted(&[spiffe("prod.example")], &existing).is_empty());
        let body_labels = super::super::bundle_labels(&spiffe("prod.example"));
        assert_eq!(
            body_labels["spiffe.row-major.net/trust-domain"],
            "prod.example"
        );
    }

    #[test]
    fn never_deletes_bundles_of_other_signers_or_managers() {
        let enabled = [spiffe("cluster.local")];
        let existing = [
            // Another controller's bundle for a name of ours.
            bundle(
                "row-major.net:service-dns:primary-bundle",
                Some("row-major.net/service-dns"),
                "meshtool",
            ),
            // Another signer, even if written with our field manager's name.
            bundle(
                "example.com:foo:primary-bundle",
                Some("example.com/foo"),
                FIELD_MANAGER,
            ),
            // One of our signer names, but not a name this controller gives a bundle.
            bundle(
                "row-major.net:service-dns:canary",
                Some("row-major.net/service-dns"),
                FIELD_MANAGER,
            ),
            // Not signer-linked.
            bundle(
                "row-major.net:service-dns:primary-bundle",
                None,
                FIELD_MANAGER,
            ),
        ];
        assert!(
            unwanted(&enabled, &existing).is_empty(),
            "{:?}",
            unwanted(&enabled, &existing)
        );
    }

    #[test]
    fn a_custom_signer_name_no_longer_configured_is_left_alone() {
        let custom = SignerConfig::service_dns().with_name("corp.example/dns");
        let existing = [bundle(
            "corp.example:dns:primary-bundle",
            Some("corp.example/dns"),
            FIELD_MANAGER,
        )];
        assert!(unwanted(&[custom], &existing).is_empty());
        assert!(unwanted(&[spiffe("cluster.local")], &existing).is_empty());
    }
}
