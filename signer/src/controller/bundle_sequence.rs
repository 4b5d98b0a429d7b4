//! The `spiffe_sequence` of an own trust domain's bundle, persisted.
//!
//! The sequence must increase on every change of the trust domain's bundle (a CA added
//! or retired), across signer restarts and identically on every replica (peers may
//! fetch from any replica behind one Service; a replica serving a lower number would
//! look like a rollback and be refused). It cannot be derived from the pool alone: a
//! retirement removes a CA and leaves no trace in the pool. Neither can it be a replica's
//! clock (two replicas would disagree).
//!
//! So it is stored where every replica reads and writes it already: on the trust
//! domain's own ClusterTrustBundle (the primary bundle for the default trust domain),
//! as two annotations, [`SEQUENCE_ANNOTATION`] and [`DIGEST_ANNOTATION`] (SHA-256 of the
//! pool's roots), written by server-side apply under their own field manager
//! ([`SEQUENCE_FIELD_MANAGER`]) so the bundle's content apply never touches them. When
//! the pool's digest differs from the annotated one, the sequence becomes the annotated
//! one plus one. Two replicas racing on the same change write the same value; a replica
//! on a stale pool may bump it once more (the number still only increases, and the
//! document it serves is then the older content with a higher number until its pool
//! catches up, the same transient as the bundle itself). `signer bundle-document` reads
//! the same annotations, so the static document and the endpoint agree.

use std::collections::BTreeMap;

use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Api, Client};

use super::federation_bundles::{PEER_TRUST_DOMAIN_LABEL, WORKLOAD_TRUST_DOMAIN_LABEL};

/// The sequence annotation.
pub const SEQUENCE_ANNOTATION: &str = "federation.podtls.row-major.net/spiffe-sequence";
/// The digest annotation (lowercase hex SHA-256 of the roots, sorted).
pub const DIGEST_ANNOTATION: &str = "federation.podtls.row-major.net/bundle-sha256";
/// The field manager of the two annotations.
pub const SEQUENCE_FIELD_MANAGER: &str = "podtls-signer-bundle-sequence";

/// SHA-256 over the roots, sorted (order in the pool does not matter).
pub fn bundle_digest(roots: &[Vec<u8>]) -> String {
    let mut sorted: Vec<&Vec<u8>> = roots.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for r in sorted {
        ctx.update(&(r.len() as u64).to_be_bytes());
        ctx.update(r);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sequence for `digest` given the bundle's annotations, and whether it must be
/// written. A sequence annotation that is not a number is an error: starting again at 1
/// would look like a rollback to every peer (and be refused); an operator must fix it.
pub fn next_sequence(
    annotations: &BTreeMap<String, String>,
    digest: &str,
) -> Result<(u64, bool), String> {
    let current = match annotations.get(SEQUENCE_ANNOTATION) {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            format!("annotation {SEQUENCE_ANNOTATION} is {s:?}, not a number; set it to the last sequence peers saw")
        })?),
    };
    Ok(match current {
        Some(seq) if annotations.get(DIGEST_ANNOTATION).map(String::as_str) == Some(digest) => {
            (seq, false)
        }
        Some(seq) => (seq.saturating_add(1), true),
        None => (1, true),
    })
}

/// The own bundle of `trust_domain` of the signer `signer_name`, if it exists.
pub async fn own_bundle(
    client: &Client,
    api: &ApiResource,
    signer_name: &str,
    trust_domain: &str,
) -> Result<Option<DynamicObject>, kube::Error> {
    let bundles: Api<DynamicObject> = Api::all_with(client.clone(), api);
    let selector = format!(
        "{WORKLOAD_TRUST_DOMAIN_LABEL}={trust_domain},{PEER_TRUST_DOMAIN_LABEL}={trust_domain}"
    );
    let list = bundles
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(list
        .items
        .into_iter()
        .find(|b| b.data["spec"]["signerName"].as_str() == Some(signer_name)))
}

/// Reads (and, when the roots changed, bumps and writes) the sequence of
/// `trust_domain`'s bundle. `None`: the own bundle does not exist yet.
pub async fn sync_sequence(
    client: &Client,
    api: &ApiResource,
    signer_name: &str,
    trust_domain: &str,
    roots: &[Vec<u8>],
) -> Result<Option<u64>, kube::Error> {
    let Some(bundle) = own_bundle(client, api, signer_name, trust_domain).await? else {
        return Ok(None);
    };
    let annotations = bundle.metadata.annotations.clone().unwrap_or_default();
    let digest = bundle_digest(roots);
    let (seq, write) = next_sequence(&annotations, &digest)
        .map_err(|reason| kube::Error::Service(reason.into()))?;
    if write {
        let name = bundle.metadata.name.clone().unwrap_or_default();
        let body = serde_json::json!({
            "apiVersion": api.api_version,
            "kind": api.kind,
            "metadata": {"name": name, "annotations": {
                SEQUENCE_ANNOTATION: seq.to_string(),
                DIGEST_ANNOTATION: digest,
            }},
        });
        Api::<DynamicObject>::all_with(client.clone(), api)
            .patch(
                &name,
                &PatchParams::apply(SEQUENCE_FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await?;
        tracing::info!(bundle = %name, %trust_domain, sequence = seq, "bundle sequence increased");
    }
    Ok(Some(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_increases_on_every_change_and_only_then() {
        let d1 = bundle_digest(&[vec![1], vec![2]]);
        assert_eq!(d1, bundle_digest(&[vec![2], vec![1]]), "order-independent");
        let d2 = bundle_digest(&[vec![1], vec![2], vec![3]]);
        let d3 = bundle_digest(&[vec![2], vec![3]]);
        let mut ann = BTreeMap::new();
        let (s, w) = next_sequence(&ann, &d1).unwrap();
        assert_eq!((s, w), (1, true));
        ann.insert(SEQUENCE_ANNOTATION.to_string(), s.to_string());
        ann.insert(DIGEST_ANNOTATION.to_string(), d1.clone());
        assert_eq!(next_sequence(&ann, &d1), Ok((1, false)));
        // A CA added, then one retired: two increases.
        let (s, w) = next_sequence(&ann, &d2).unwrap();
        assert_eq!((s, w), (2, true));
        ann.insert(SEQUENCE_ANNOTATION.to_string(), "2".into());
        ann.insert(DIGEST_ANNOTATION.to_string(), d2);
        assert_eq!(next_sequence(&ann, &d3), Ok((3, true)));
        // A garbled annotation never restarts the sequence (peers would see a rollback).
        ann.insert(SEQUENCE_ANNOTATION.to_string(), "x".into());
        let err = next_sequence(&ann, &d3).unwrap_err();
        assert!(err.contains("not a number"), "{err}");
    }
}
