//! Where a peer's candidate bundle comes from (the federation loop's I/O): the peer's
//! bundle endpoint, a Secret or ConfigMap key, or the resource's `trustDomainBundle`; and
//! parsing a bundle given as content (a document or PEM).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use rustls_pki_types::CertificateDer;
use spiffe::TrustDomain;

use super::bundle_fetch::{fetch, EndpointAuth};
use super::federation::FederationSettings;
use super::federation_crd::{
    BundleSourceKind, ClusterFederatedTrustDomainSpec, EndpointProfileType,
};
use crate::{parse_bundle_document, BundleDocument, PeerBundle};

/// Parses a bundle given as content (a resource's `trustDomainBundle`, a Secret or
/// ConfigMap key): a SPIFFE bundle document (JSON, starting with `{`) or PEM CA
/// certificates. Every authority must be usable as a trust anchor (podtls'
/// `TrustBundle` rules).
pub fn parse_bundle_content(bytes: &[u8], peer: &TrustDomain) -> Result<BundleDocument, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let doc = if text.trim_start().starts_with('{') {
        parse_bundle_document(bytes, peer).map_err(|e| e.to_string())?
    } else {
        use rustls_pki_types::pem::PemObject as _;
        let mut ders = Vec::new();
        for cert in CertificateDer::pem_slice_iter(bytes) {
            let cert = cert.map_err(|e| format!("PEM: {e}"))?;
            ders.push(cert.to_vec());
        }
        if ders.is_empty() {
            return Err("neither a SPIFFE bundle document nor PEM certificates".into());
        }
        BundleDocument {
            x509_authorities: ders,
            sequence: None,
            refresh_hint: None,
        }
    };
    check_anchors(&doc.x509_authorities)?;
    Ok(doc)
}

pub(super) fn check_anchors(ders: &[Vec<u8>]) -> Result<(), String> {
    if ders.is_empty() {
        return Ok(());
    }
    let certs = ders
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    podtls::TrustBundle::from_der(certs, &podtls::Origin::memory("peer bundle"))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub(super) fn pem_of(ders: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for d in ders {
        crate::pem::push_certificate(&mut out, d);
    }
    out
}

pub(super) fn ders_of_pem(pem: &str) -> Vec<Vec<u8>> {
    use rustls_pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect()
}

/// Obtains a candidate bundle of a non-local peer: from its endpoint (authenticated,
/// for `https_spiffe`, with `current` or else the initial bundle), a Secret/ConfigMap
/// key, or `trustDomainBundle`. The error is (metric outcome, message).
pub(super) async fn obtain(
    client: &Client,
    settings: &FederationSettings,
    spec: &ClusterFederatedTrustDomainSpec,
    current: Option<&PeerBundle>,
    peer_td: &TrustDomain,
) -> Result<(BundleDocument, &'static str), (&'static str, String)> {
    let config = |e: String| ("config", e);
    let initial = spec
        .trust_domain_bundle
        .as_deref()
        .map(|b| parse_bundle_content(b.as_bytes(), peer_td))
        .transpose()
        .map_err(|e| config(format!("spec.trustDomainBundle: {e}")))?;
    if let Some(url) = &spec.bundle_endpoint_url {
        let profile = spec.bundle_endpoint_profile.as_ref().ok_or_else(|| {
            config("spec.bundleEndpointProfile is required with spec.bundleEndpointURL".into())
        })?;
        let auth = match profile.type_ {
            EndpointProfileType::HttpsWeb => EndpointAuth::Web(settings.web_roots.clone()),
            EndpointProfileType::HttpsSpiffe => {
                let id = profile.endpoint_spiffe_id.as_deref().ok_or_else(|| {
                    config(
                        "spec.bundleEndpointProfile.endpointSPIFFEID is required with https_spiffe"
                            .into(),
                    )
                })?;
                let id = podtls::parse_spiffe_id(id).map_err(|e| {
                    config(format!("spec.bundleEndpointProfile.endpointSPIFFEID: {e}"))
                })?;
                if id.trust_domain() != peer_td {
                    return Err(config(format!(
                        "spec.bundleEndpointProfile.endpointSPIFFEID {id} is not in trust domain {peer_td}"
                    )));
                }
                let authorities = match (current, &initial) {
                    (Some(b), _) => b.authorities.clone(),
                    (None, Some(i)) => i.x509_authorities.clone(),
                    (None, None) => {
                        return Err(config(
                            "https_spiffe needs spec.trustDomainBundle (the peer's bundle, exchanged out of band) to authenticate the endpoint the first time".into(),
                        ))
                    }
                };
                EndpointAuth::Spiffe { id, authorities }
            }
        };
        return match fetch(url, &auth, settings.limits).await {
            Ok(bytes) => {
                let doc =
                    parse_bundle_document(&bytes, peer_td).map_err(|e| ("parse", e.to_string()))?;
                check_anchors(&doc.x509_authorities).map_err(|e| ("parse", e))?;
                Ok((doc, "endpoint"))
            }
            Err(error) => Err(("fetch", error.to_string())),
        };
    }
    if let Some(from) = &spec.trust_domain_bundle_from {
        let what = format!(
            "{:?} {}/{} key {}",
            from.kind, from.namespace, from.name, from.key
        );
        let bytes = match from.kind {
            BundleSourceKind::Secret => Api::<Secret>::namespaced(client.clone(), &from.namespace)
                .get(&from.name)
                .await
                .map_err(|e| ("fetch", format!("{what}: {e}")))?
                .data
                .and_then(|d| d.get(&from.key).map(|b| b.0.clone())),
            BundleSourceKind::ConfigMap => {
                let cm = Api::<ConfigMap>::namespaced(client.clone(), &from.namespace)
                    .get(&from.name)
                    .await
                    .map_err(|e| ("fetch", format!("{what}: {e}")))?;
                cm.data
                    .and_then(|d| d.get(&from.key).map(|s| s.clone().into_bytes()))
                    .or_else(|| {
                        cm.binary_data
                            .and_then(|d| d.get(&from.key).map(|b| b.0.clone()))
                    })
            }
        };
        let bytes = bytes.ok_or_else(|| ("fetch", format!("{what}: no such key")))?;
        let doc =
            parse_bundle_content(&bytes, peer_td).map_err(|e| ("parse", format!("{what}: {e}")))?;
        return Ok((doc, "static"));
    }
    match initial {
        Some(doc) => Ok((doc, "static")),
        None => Err(config(format!(
            "no bundle source: set spec.bundleEndpointURL, spec.trustDomainBundleFrom or spec.trustDomainBundle (only a peer that is one of this signer's own trust domains needs none; {peer_td} is not)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::{generate_ca, parse_trust_domain, KeyType};

    fn ca() -> Vec<u8> {
        generate_ca(
            "t",
            KeyType::EcdsaP256,
            SystemTime::now(),
            Duration::from_secs(86_400),
        )
        .unwrap()
        .root_der()
        .to_vec()
    }

    #[test]
    fn bundle_content_is_a_document_or_pem_of_usable_anchors() {
        let td = parse_trust_domain("peer.example").unwrap();
        let der = ca();
        let pem = pem_of(std::slice::from_ref(&der));
        assert_eq!(
            parse_bundle_content(pem.as_bytes(), &td)
                .unwrap()
                .x509_authorities,
            vec![der.clone()]
        );
        let doc = crate::render_bundle_document(&[&der], Some(3), None).unwrap();
        let parsed = parse_bundle_content(doc.as_bytes(), &td).unwrap();
        assert_eq!(parsed.x509_authorities, vec![der]);
        assert_eq!(parsed.sequence, Some(3));
        for (bad, want) in [
            (&b"hello"[..], "neither"),
            (b"{\"keys\": 1}", "keys"),
            (b"\xff\xfe", "UTF-8"),
        ] {
            let err = parse_bundle_content(bad, &td).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
