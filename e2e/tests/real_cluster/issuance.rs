//! What the signer publishes and issues: trust bundles, certificates as
//! specified, and the example pairs talking over them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use podtls_e2e::*;
use serde_json::json;

use crate::*;

/// Both signers' bundles exist as specified, with `service_dns_cas` and
/// `spiffe_cas` CA certificates.
pub(crate) async fn trust_bundles_are_published(
    requests: &Requests,
    service_dns_cas: usize,
    spiffe_cas: usize,
) -> Result<()> {
    let want = [
        (
            "row-major.net:service-dns:primary-bundle",
            SERVICE_DNS,
            json!({"service-dns.row-major.net/canarying": "live"}),
            service_dns_cas,
        ),
        (
            "row-major.net:spiffe:primary-bundle",
            SPIFFE,
            json!({"spiffe.row-major.net/canarying": "live", "spiffe.row-major.net/trust-domain": TRUST_DOMAIN}),
            spiffe_cas,
        ),
    ];
    eventually(
        "both ClusterTrustBundles",
        Duration::from_secs(30),
        || async {
            let ctbs = requests.trust_bundles().await?;
            for (name, signer, labels, cas) in &want {
                let Some(ctb) = ctbs
                    .iter()
                    .find(|c| c.metadata.name.as_deref() == Some(name))
                else {
                    return Ok(None);
                };
                let spec = &ctb.data["spec"];
                ensure!(
                    spec["signerName"] == *signer,
                    "{name}: signerName {}",
                    spec["signerName"]
                );
                let have: BTreeMap<String, String> =
                    ctb.metadata.labels.clone().unwrap_or_default();
                for (k, v) in labels.as_object().unwrap() {
                    ensure!(
                        have.get(k).map(String::as_str) == v.as_str(),
                        "{name}: label {k} is {:?} (labels {have:?})",
                        have.get(k)
                    );
                }
                let n = pem_certs(spec["trustBundle"].as_str().unwrap_or(""));
                if n != *cas {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
}

pub(crate) async fn certificates_are_as_specified(requests: &Requests, pair: &Pair) -> Result<()> {
    let ns = &pair.namespace;
    for pod in [&pair.server_pod, &pair.client_pod] {
        let pcrs = requests.of_pod(ns, &pod.name).await?;
        ensure!(
            pcrs.len() == pod.certificates.len(),
            "pod {}: {} requests for {} podCertificate sources",
            pod.name,
            pcrs.len(),
            pod.certificates.len()
        );
        for pcr in &pcrs {
            let k = key(pcr);
            ensure!(
                outcome(pcr).is_some_and(|(t, _)| t == "Issued"),
                "{k}: {:?}",
                outcome(pcr)
            );
            let leaf = issued_leaf(pcr)?;
            ensure!(!leaf.is_ca, "{k}: leaf is a CA");
            ensure!(leaf.other_sans == 0, "{k}: unexpected SAN kinds");
            ensure!(leaf.chain_len >= 1);
            let lifetime = leaf.not_after.duration_since(leaf.not_before)?;
            let max = Duration::from_secs(pcr.spec.max_expiration_seconds.unwrap_or(86400) as u64);
            let want = max.min(Duration::from_secs(86400));
            ensure!(
                lifetime <= want
                    && lifetime + Duration::from_secs(300) >= want.max(Duration::from_secs(3600)),
                "{k}: lifetime {lifetime:?}, want {want:?} (backdating < 5 min)"
            );
            match pcr.spec.signer_name.as_str() {
                SERVICE_DNS => {
                    ensure!(leaf.empty_subject, "{k}: service-dns subject not empty");
                    ensure!(leaf.uris.is_empty(), "{k}: URI SANs {:?}", leaf.uris);
                    let want = vec![format!("{}.{ns}.svc", "server")];
                    ensure!(
                        leaf.dns == want,
                        "{k}: DNS SANs {:?}, want {want:?}",
                        leaf.dns
                    );
                }
                SPIFFE => {
                    let want = vec![format!(
                        "spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{}",
                        pcr.spec.service_account_name
                    )];
                    ensure!(
                        leaf.uris == want,
                        "{k}: URI SANs {:?}, want {want:?}",
                        leaf.uris
                    );
                    ensure!(leaf.dns.is_empty(), "{k}: DNS SANs {:?}", leaf.dns);
                }
                other => bail!("{k}: unexpected signer {other}"),
            }
            // What kubelet's manager holds is what the API server accepted.
            let held = pod
                .certificates
                .iter()
                .find(|c| c.signer_name == pcr.spec.signer_name)
                .context("no such source in the pod state")?;
            ensure!(
                norm_serial(&held.serial) == norm_serial(&leaf.serial),
                "{k}: kubelet holds {} but the request has {}",
                held.serial,
                leaf.serial
            );
        }
        // And the volume holds it, in kubelet's layout.
        let dir = volume(pod, "podtls")?;
        ensure!(
            std::fs::read_link(dir.join("..data")).is_ok(),
            "{}: no ..data symlink in {}",
            pod.name,
            dir.display()
        );
    }
    Ok(())
}

pub(crate) fn the_pair_talks(mesh: &Mesh<'_>, pair: &Pair) -> Result<()> {
    let lines = pair.fetch(&mesh.bins, 3)?;
    ensure!(lines.len() >= 3, "demo-client printed {lines:?}");
    for l in &lines {
        ensure!(l.contains(" 200 "), "not a 200: {l}");
        match pair.namespace.as_str() {
            "service-dns-unauth-client" => ensure!(l.ends_with(" OK"), "{l}"),
            ns => {
                let id = format!("Client Identity: spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/client");
                ensure!(l.ends_with(&id), "{l} (want {id})");
            }
        }
    }
    Ok(())
}

/// A signer disabled by flags leaves no bundle behind: replica a stops, replica
/// c starts without `--enable-service-dns-signer`, and deletes the service-dns
/// bundle (written by this controller's field manager) while keeping spiffe's.
pub(crate) async fn a_disabled_signers_bundle_is_deleted(
    mesh: &Mesh<'_>,
    requests: &Requests,
    signer_a: &mut SignerReplica,
) -> Result<()> {
    const SERVICE_DNS_BUNDLE: &str = "row-major.net:service-dns:primary-bundle";
    const SPIFFE_BUNDLE: &str = "row-major.net:spiffe:primary-bundle";
    signer_a.proc.terminate(Duration::from_secs(10));
    let names = || async {
        Ok::<_, anyhow::Error>(
            requests
                .trust_bundles()
                .await?
                .into_iter()
                .filter_map(|c| c.metadata.name)
                .collect::<Vec<_>>(),
        )
    };
    ensure!(
        names().await?.iter().any(|n| n == SERVICE_DNS_BUNDLE),
        "the service-dns bundle is missing before the signer is disabled"
    );
    let c = mesh
        .start_signer_without("c", &[SPIFFE_KEY_TYPES], &["--enable-service-dns-signer"])
        .await?;
    eventually(
        "the disabled signer's bundle deleted, the other kept",
        Duration::from_secs(30),
        || async {
            let names = names().await?;
            Ok((!names.iter().any(|n| n == SERVICE_DNS_BUNDLE)
                && names.iter().any(|n| n == SPIFFE_BUNDLE))
            .then_some(()))
        },
    )
    .await?;
    let deletes = metric_sum(
        &c.metrics().await?,
        "podtls_signer_trust_bundle_deletes_total",
        &[r#"result="ok""#],
    );
    ensure!(deletes == 1.0, "trust_bundle_deletes_total ok = {deletes}");
    Ok(())
}

/// Every request so far carries the key material this release's kubelet sends:
/// `pkixPublicKey` + `proofOfPossession` (1.35) or `stubPKCS10Request` (1.36+), so the
/// signer was exercised on that path.
pub(crate) async fn kubelet_sends_the_releases_key_material(
    requests: &Requests,
    expected: KeyMaterial,
) -> Result<()> {
    let pcrs = requests.list(None).await?;
    ensure!(!pcrs.is_empty(), "no requests yet");
    for p in &pcrs {
        let s = &p.spec;
        let pop = s.pkix_public_key.is_some() && s.proof_of_possession.is_some();
        let stub = s.stub_pkcs10_request.is_some();
        let ok = match expected {
            KeyMaterial::ProofOfPossession => pop && !stub,
            KeyMaterial::StubPkcs10 => stub,
        };
        ensure!(
            ok,
            "{}: expected {expected:?}; pkixPublicKey+proofOfPossession: {pop}, stubPKCS10Request: {stub}",
            key(p)
        );
    }
    eprintln!("{} requests, all with {expected:?}", pcrs.len());
    Ok(())
}
