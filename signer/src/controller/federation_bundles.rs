//! The ClusterTrustBundles of several trust domains and of federation, labelled as the
//! draft SPIFFE Filesystem Delivery standard's appendix B suggests, so that a pod selects
//! exactly the bundle of each (workload trust domain, peer trust domain) pair:
//!
//! | bundle | `k8s.spiffe.io/canarying` | `.../workload-trust-domain` | `.../peer-trust-domain` | content |
//! |---|---|---|---|---|
//! | own, default trust domain (`<signer>:primary-bundle`, also meshtool's labels) | `live` | D | D | D's CA pool |
//! | own, other trust domain T (`<signer>:trust-domain-<hash>`) | `live` | T | T | T's CA pool |
//! | federation W -> P (`<signer>:federation-<hash>`) | `live` | W | P | P's bundle |
//!
//! Every bundle is signer-linked to the spiffe signer (pods select with `signerName`
//! plus these labels). The own bundles of non-default trust domains and the federation
//! bundles carry [`MANAGED_LABEL`] and none of meshtool's `spiffe.row-major.net/*` labels,
//! so a meshtool manifest selecting `spiffe.row-major.net/canarying: live` never gets
//! another trust domain's CAs merged into its file.
//!
//! Names are `<signer with : for />:` plus a hash of the trust domain(s): trust domain
//! names may hold `_` and the pair must not be ambiguous, and a ClusterTrustBundle name's
//! suffix must be a DNS subdomain; the labels say what a bundle is.
//!
//! Deleting: a bundle is deleted only if it carries [`MANAGED_LABEL`], was written by this
//! controller's field manager, is linked to this signer, and is neither desired nor kept.
//! A relationship whose peer bundle is not known yet (the signer just started, the first
//! fetch has not succeeded) is *kept*: its bundle is neither rewritten nor deleted, so a
//! signer restart never de-federates. Only a removed relationship (resource deleted, own
//! trust domain removed from `workloadTrustDomains`, own trust domain no longer served)
//! deletes. The primary bundle never carries [`MANAGED_LABEL`], so this never touches it,
//! and the signer-level collector (`trust_bundle_gc`) only deletes exact
//! `<signer>:primary-bundle` names, so the two never fight.

use std::collections::{BTreeMap, BTreeSet};

use spiffe::TrustDomain;

/// `k8s.spiffe.io/canarying` (`live` here; `preview` is for operators' canaries).
pub const CANARYING_LABEL: &str = "k8s.spiffe.io/canarying";
/// `k8s.spiffe.io/workload-trust-domain`: the trust domain of the workloads that load it.
pub const WORKLOAD_TRUST_DOMAIN_LABEL: &str = "k8s.spiffe.io/workload-trust-domain";
/// `k8s.spiffe.io/peer-trust-domain`: the trust domain whose peers it verifies.
pub const PEER_TRUST_DOMAIN_LABEL: &str = "k8s.spiffe.io/peer-trust-domain";
/// Marks the bundles this module manages (`own` or `federation`).
pub const MANAGED_LABEL: &str = "federation.podtls.row-major.net/bundle";

/// One ClusterTrustBundle to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBundle {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.trustBundle` (PEM).
    pub pem: String,
}

/// The appendix B labels of a (workload, peer) pair.
pub fn pair_labels(workload: &str, peer: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CANARYING_LABEL.to_string(), "live".to_string()),
        (
            WORKLOAD_TRUST_DOMAIN_LABEL.to_string(),
            workload.to_string(),
        ),
        (PEER_TRUST_DOMAIN_LABEL.to_string(), peer.to_string()),
    ])
}

fn prefix(signer_name: &str) -> String {
    format!("{}:", signer_name.replace('/', ":"))
}

fn hash(parts: &[&str]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name of a non-default own trust domain's bundle.
pub fn own_bundle_name(signer_name: &str, trust_domain: &str) -> String {
    format!(
        "{}trust-domain-{}",
        prefix(signer_name),
        hash(&[trust_domain])
    )
}

/// The name of the bundle of peer `peer` for workloads of `workload`.
pub fn federation_bundle_name(signer_name: &str, workload: &str, peer: &str) -> String {
    format!(
        "{}federation-{}",
        prefix(signer_name),
        hash(&[workload, peer])
    )
}

/// The bundles to hold and the names to leave alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Apply these.
    pub apply: Vec<DesiredBundle>,
    /// Neither apply nor delete these (their content is not known right now).
    pub keep: BTreeSet<String>,
}

impl Plan {
    /// Whether `name` must not be deleted.
    pub fn wants(&self, name: &str) -> bool {
        self.keep.contains(name) || self.apply.iter().any(|b| b.name == name)
    }
}

/// The plan: `own` are the signer's trust domains (default first) with their pool's PEM
/// (`None`: not loaded); `pairs` the relationships (workload, peer) with the peer's PEM
/// (`None`: not known yet).
pub fn plan(
    signer_name: &str,
    own: &[(TrustDomain, Option<String>)],
    pairs: &[(String, TrustDomain, Option<String>)],
) -> Plan {
    let mut out = Plan::default();
    for (td, pem) in own.iter().skip(1) {
        let name = own_bundle_name(signer_name, td.as_str());
        match pem {
            Some(pem) => {
                let mut labels = pair_labels(td.as_str(), td.as_str());
                labels.insert(MANAGED_LABEL.into(), "own".into());
                out.apply.push(DesiredBundle {
                    name,
                    labels,
                    pem: pem.clone(),
                });
            }
            None => {
                out.keep.insert(name);
            }
        }
    }
    for (workload, peer, pem) in pairs {
        let name = federation_bundle_name(signer_name, workload, peer.as_str());
        match pem {
            Some(pem) => {
                let mut labels = pair_labels(workload, peer.as_str());
                labels.insert(MANAGED_LABEL.into(), "federation".into());
                out.apply.push(DesiredBundle {
                    name,
                    labels,
                    pem: pem.clone(),
                });
            }
            None => {
                out.keep.insert(name);
            }
        }
    }
    out
}

/// What the collector needs of an existing bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `spec.signerName`.
    pub signer_name: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The managers in `metadata.managedFields`.
    pub managers: Vec<String>,
    /// `spec.trustBundle`.
    pub pem: String,
}

/// The existing bundles to delete under `plan` (see the module docs).
pub fn unwanted<'a>(
    signer_name: &str,
    field_manager: &str,
    plan: &Plan,
    existing: &'a [Existing],
) -> Vec<&'a Existing> {
    existing
        .iter()
        .filter(|b| b.labels.contains_key(MANAGED_LABEL))
        .filter(|b| b.managers.iter().any(|m| m == field_manager))
        .filter(|b| b.signer_name.as_deref() == Some(signer_name))
        .filter(|b| b.name.starts_with(&prefix(signer_name)))
        .filter(|b| !plan.wants(&b.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_trust_domain;

    const SIGNER: &str = "row-major.net/spiffe";

    fn td(s: &str) -> TrustDomain {
        parse_trust_domain(s).unwrap()
    }

    fn existing(b: &DesiredBundle, manager: &str) -> Existing {
        Existing {
            name: b.name.clone(),
            uid: Some("u".into()),
            resource_version: Some("1".into()),
            signer_name: Some(SIGNER.into()),
            labels: b.labels.clone(),
            managers: vec![manager.into()],
            pem: b.pem.clone(),
        }
    }

    #[test]
    fn names_are_valid_signer_linked_names_and_distinct_per_pair() {
        let a = federation_bundle_name(SIGNER, "a.b", "c");
        let b = federation_bundle_name(SIGNER, "a", "b.c");
        assert_ne!(a, b, "the pair is not ambiguous");
        assert_ne!(
            federation_bundle_name(SIGNER, "a", "c"),
            federation_bundle_name(SIGNER, "c", "a"),
            "direction matters"
        );
        for name in [a, b, own_bundle_name(SIGNER, "x_y.example")] {
            let suffix = name.strip_prefix("row-major.net:spiffe:").unwrap();
            assert!(
                suffix
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'),
                "{name}"
            );
        }
    }

    #[test]
    fn plans_own_bundles_for_non_default_trust_domains_and_one_per_pair() {
        let plan = plan(
            SIGNER,
            &[
                (td("a.example"), Some("A".into())),
                (td("b.example"), Some("B".into())),
            ],
            &[("a.example".into(), td("c.example"), Some("C".into()))],
        );
        assert_eq!(plan.apply.len(), 2);
        let own = &plan.apply[0];
        assert_eq!(own.pem, "B");
        assert_eq!(own.labels[WORKLOAD_TRUST_DOMAIN_LABEL], "b.example");
        assert_eq!(own.labels[PEER_TRUST_DOMAIN_LABEL], "b.example");
        assert!(!own
            .labels
            .keys()
            .any(|k| k.starts_with("spiffe.row-major.net/")));
        let fed = &plan.apply[1];
        assert_eq!(fed.pem, "C");
        assert_eq!(fed.labels[CANARYING_LABEL], "live");
        assert_eq!(fed.labels[WORKLOAD_TRUST_DOMAIN_LABEL], "a.example");
        assert_eq!(fed.labels[PEER_TRUST_DOMAIN_LABEL], "c.example");
        // b.example does not federate with c.example: no bundle selects for it.
        assert!(!plan.apply.iter().any(|b| {
            b.labels[WORKLOAD_TRUST_DOMAIN_LABEL] == "b.example"
                && b.labels[PEER_TRUST_DOMAIN_LABEL] == "c.example"
        }));
    }

    #[test]
    fn deletes_exactly_the_removed_relationships_bundle() {
        let before = plan(
            SIGNER,
            &[
                (td("a.example"), Some("A".into())),
                (td("b.example"), Some("B".into())),
            ],
            &[
                ("a.example".into(), td("c.example"), Some("C".into())),
                ("b.example".into(), td("c.example"), Some("C".into())),
            ],
        );
        let existing: Vec<Existing> = before
            .apply
            .iter()
            .map(|b| existing(b, "podtls-signer"))
            .collect();
        let after = plan(
            SIGNER,
            &[
                (td("a.example"), Some("A".into())),
                (td("b.example"), Some("B".into())),
            ],
            &[("b.example".into(), td("c.example"), Some("C".into()))],
        );
        let gone: Vec<&str> = unwanted(SIGNER, "podtls-signer", &after, &existing)
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(
            gone,
            [federation_bundle_name(SIGNER, "a.example", "c.example")]
        );
    }

    #[test]
    fn a_pair_or_pool_not_known_yet_is_kept_not_deleted() {
        // After a signer restart, before the first fetch: nothing may be de-federated.
        let before = plan(
            SIGNER,
            &[
                (td("a.example"), Some("A".into())),
                (td("b.example"), Some("B".into())),
            ],
            &[("a.example".into(), td("c.example"), Some("C".into()))],
        );
        let existing: Vec<Existing> = before
            .apply
            .iter()
            .map(|b| existing(b, "podtls-signer"))
            .collect();
        let restarted = plan(
            SIGNER,
            &[(td("a.example"), Some("A".into())), (td("b.example"), None)],
            &[("a.example".into(), td("c.example"), None)],
        );
        assert!(restarted.apply.is_empty());
        assert!(unwanted(SIGNER, "podtls-signer", &restarted, &existing).is_empty());
    }

    #[test]
    fn never_deletes_bundles_it_does_not_manage() {
        let desired = DesiredBundle {
            name: federation_bundle_name(SIGNER, "a.example", "c.example"),
            labels: pair_labels("a.example", "c.example"),
            pem: String::new(),
        };
        let empty = Plan::default();
        // No managed label (an operator's own bundle with the appendix labels).
        assert!(unwanted(
            SIGNER,
            "podtls-signer",
            &empty,
            &[existing(&desired, "podtls-signer")]
        )
        .is_empty());
        let mut managed = desired.clone();
        managed
            .labels
            .insert(MANAGED_LABEL.into(), "federation".into());
        // Another field manager.
        assert!(unwanted(
            SIGNER,
            "podtls-signer",
            &empty,
            &[existing(&managed, "kubectl")]
        )
        .is_empty());
        // Another signer.
        let mut other = existing(&managed, "podtls-signer");
        other.signer_name = Some("example.com/x".into());
        assert!(unwanted(SIGNER, "podtls-signer", &empty, &[other]).is_empty());
        // The primary bundle (never labelled managed).
        let primary = Existing {
            name: "row-major.net:spiffe:primary-bundle".into(),
            labels: pair_labels("a.example", "a.example"),
            ..existing(&managed, "podtls-signer")
        };
        assert!(unwanted(SIGNER, "podtls-signer", &empty, &[primary]).is_empty());
        // Ours and unwanted: deleted.
        assert_eq!(
            unwanted(
                SIGNER,
                "podtls-signer",
                &empty,
                &[existing(&managed, "podtls-signer")]
            )
            .len(),
            1
        );
    }
}
