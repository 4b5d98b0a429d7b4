//! The federation custom resource: `ClusterFederatedTrustDomain`
//! (`federation.podtls.row-major.net/v1alpha1`, cluster-scoped), one per peer trust domain
//! the spiffe signer federates with. Its field names follow SPIRE's
//! `ClusterFederatedTrustDomain` (spire-controller-manager, `spire.spiffe.io/v1alpha1`):
//! `trustDomain`, `bundleEndpointURL`, `bundleEndpointProfile` {`type`: `https_web` |
//! `https_spiffe`, `endpointSPIFFEID`}, `trustDomainBundle`; added here are a static
//! source (`trustDomainBundleFrom`, a Secret or ConfigMap key) and
//! `workloadTrustDomains`: which of the signer's own trust domains federate with the peer
//! (a relationship is per workload trust domain: if A federates with C, B does not).
//!
//! ```yaml
//! apiVersion: federation.podtls.row-major.net/v1alpha1
//! kind: ClusterFederatedTrustDomain
//! metadata: {name: partner}
//! spec:
//!   trustDomain: partner.example
//!   bundleEndpointURL: https://bundle.partner.example/
//!   bundleEndpointProfile: {type: https_spiffe, endpointSPIFFEID: spiffe://partner.example/spire/server}
//!   trustDomainBundle: '{"keys": [...]}'   # initial bundle (required for https_spiffe)
//!   workloadTrustDomains: [cluster.local]
//! ```
//!
//! The YAML of the CustomResourceDefinition is generated from this type
//! (`example-manifests/controller/federation-crd.yaml`; a test keeps it identical).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the federation resource.
pub const FEDERATION_GROUP: &str = "federation.podtls.row-major.net";

/// A peer trust domain, how to obtain its bundle, and which of the signer's own trust
/// domains federate with it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "federation.podtls.row-major.net",
    version = "v1alpha1",
    kind = "ClusterFederatedTrustDomain",
    plural = "clusterfederatedtrustdomains",
    shortname = "cftd",
    status = "ClusterFederatedTrustDomainStatus",
    printcolumn = r#"{"name":"Trust Domain","type":"string","jsonPath":".spec.trustDomain"}"#,
    printcolumn = r#"{"name":"Anchors","type":"integer","jsonPath":".status.anchors"}"#,
    printcolumn = r#"{"name":"Sequence","type":"integer","jsonPath":".status.sequenceNumber"}"#,
    printcolumn = r#"{"name":"Last Refresh","type":"date","jsonPath":".status.lastSuccessfulRefresh"}"#,
    printcolumn = r#"{"name":"Error","type":"string","jsonPath":".status.lastError"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFederatedTrustDomainSpec {
    /// The peer trust domain (bare name, e.g. `partner.example`).
    pub trust_domain: String,
    /// The peer's SPIFFE bundle endpoint (`https://...`). Without it, the bundle is
    /// static: `trustDomainBundleFrom` or `trustDomainBundle`.
    #[serde(
        rename = "bundleEndpointURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bundle_endpoint_url: Option<String>,
    /// How the bundle endpoint is authenticated (required with `bundleEndpointURL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_endpoint_profile: Option<BundleEndpointProfile>,
    /// The peer's bundle: a SPIFFE bundle document (JSON) or PEM CA certificates. With an
    /// endpoint, the initial bundle (used until the first fetch succeeds, and to
    /// authenticate an `https_spiffe` endpoint); without one, the static bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain_bundle: Option<String>,
    /// A static bundle (document or PEM) from a Secret or ConfigMap key; takes precedence
    /// over `trustDomainBundle` when there is no endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain_bundle_from: Option<BundleSource>,
    /// The signer's own trust domains whose workloads may verify peers of this trust
    /// domain. Only these get the peer's bundle; a trust domain the signer does not
    /// serve is reported in the status and ignored.
    #[serde(default)]
    pub workload_trust_domains: Vec<String>,
}

/// How a bundle endpoint is authenticated (SPIFFE Trust Domain and Bundle §5.2).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct BundleEndpointProfile {
    /// `https_web` (Web PKI) or `https_spiffe` (the endpoint's X509-SVID).
    #[serde(rename = "type")]
    pub type_: EndpointProfileType,
    /// The SPIFFE ID the `https_spiffe` endpoint must present, exactly.
    #[serde(
        rename = "endpointSPIFFEID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_spiffe_id: Option<String>,
}

/// The bundle endpoint profile.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EndpointProfileType {
    /// Web PKI: the endpoint's certificate chains to a public root (or the operator's
    /// `--federation-web-ca`) and names the URL's host.
    #[serde(rename = "https_web")]
    HttpsWeb,
    /// SPIFFE authentication: the endpoint presents an X509-SVID of the peer trust domain,
    /// verified against the peer's current bundle, with exactly `endpointSPIFFEID`.
    #[serde(rename = "https_spiffe")]
    HttpsSpiffe,
}

/// A key of a Secret or ConfigMap holding a bundle.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleSource {
    /// `Secret` or `ConfigMap`.
    pub kind: BundleSourceKind,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The key in `data`.
    pub key: String,
}

/// The kind of object holding a static bundle.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BundleSourceKind {
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
}

/// What the signer knows of the peer's bundle.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFederatedTrustDomainStatus {
    /// When the bundle in use was last obtained successfully (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_refresh: Option<String>,
    /// The `spiffe_sequence` of the bundle in use, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<u64>,
    /// How many X.509 authorities the bundle in use holds.
    #[serde(default)]
    pub anchors: u32,
    /// Where the bundle in use came from: `endpoint`, `initial` or `static`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The own trust domains this peer's bundle is delivered to.
    #[serde(default)]
    pub federated_with: Vec<String>,
    /// The last error (fetch, parse, configuration); the last good bundle stays in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last error happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
}

/// The CustomResourceDefinition, as the YAML file in `example-manifests` (JSON is YAML).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt as _;
    let crd = ClusterFederatedTrustDomain::crd();
    let json = serde_json::to_string_pretty(&crd).unwrap_or_default();
    format!(
        "# Generated from signer::controller::ClusterFederatedTrustDomain (federation_crd.rs);\n# do not edit: `cargo test -p signer crd_yaml` fails until this file equals the generated one,\n# and prints how to regenerate it.\n{json}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED_IN: &str = "../example-manifests/controller/federation-crd.yaml";

    #[test]
    fn crd_yaml_in_example_manifests_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKED_IN);
        let generated = crd_yaml();
        if std::env::var_os("UPDATE_CRD").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} differs from the CRD generated from ClusterFederatedTrustDomain; regenerate it with UPDATE_CRD=1 cargo test -p signer crd_yaml",
            path.display()
        );
    }

    #[test]
    fn field_names_are_spires() {
        let spec: ClusterFederatedTrustDomainSpec = serde_json::from_value(serde_json::json!({
            "trustDomain": "partner.example",
            "bundleEndpointURL": "https://b.example/",
            "bundleEndpointProfile": {"type": "https_spiffe", "endpointSPIFFEID": "spiffe://partner.example/spire/server"},
            "trustDomainBundle": "{\"keys\": []}",
            "workloadTrustDomains": ["cluster.local"],
        }))
        .unwrap();
        assert_eq!(
            spec.bundle_endpoint_profile.unwrap().type_,
            EndpointProfileType::HttpsSpiffe
        );
        let bad = serde_json::from_value::<ClusterFederatedTrustDomainSpec>(serde_json::json!({
            "trustDomain": "p", "bundleEndpointProfile": {"type": "http"}}));
        assert!(bad.is_err());
    }
}
