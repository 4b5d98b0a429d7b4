//! Which cluster the signers name in every certificate: the cluster's ServiceAccount
//! issuer URL, from `--issuer-url` or discovered from the API server's
//! `/.well-known/openid-configuration` (readable by every ServiceAccount through the
//! default `system:service-account-issuer-discovery` binding).

use kube::Client;

use crate::IssuingCluster;

/// The OIDC discovery document's path.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";

/// Where the issuing cluster comes from (`--issuer-url`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IssuerSource {
    /// This URL.
    Fixed(IssuingCluster),
    /// The `issuer` of the API server's OIDC discovery document, read at start-up.
    #[default]
    Discover,
    /// Name no cluster in certificates.
    Off,
}

impl std::str::FromStr for IssuerSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "discover" => Ok(IssuerSource::Discover),
            "off" => Ok(IssuerSource::Off),
            url => IssuingCluster::new(url)
                .map(IssuerSource::Fixed)
                .map_err(|e| format!("{e}; or give \"discover\" or \"off\"")),
        }
    }
}

/// The `issuer` of an OIDC discovery document.
///
/// # Errors
/// A message naming what is wrong with the document.
pub fn issuer_of(document: &str) -> Result<IssuingCluster, String> {
    let value: serde_json::Value = serde_json::from_str(document)
        .map_err(|e| format!("{OPENID_CONFIGURATION_PATH} is not JSON: {e}"))?;
    let issuer = value
        .get("issuer")
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{OPENID_CONFIGURATION_PATH} has no string \"issuer\""))?;
    IssuingCluster::new(issuer).map_err(|e| format!("{OPENID_CONFIGURATION_PATH}: {e}"))
}

/// Resolves `source`: `Ok(None)` for [`IssuerSource::Off`].
///
/// # Errors
/// Discovery failed (request refused, no discovery document, bad issuer).
pub async fn resolve(
    client: &Client,
    source: &IssuerSource,
) -> Result<Option<IssuingCluster>, String> {
    match source {
        IssuerSource::Off => Ok(None),
        IssuerSource::Fixed(cluster) => Ok(Some(cluster.clone())),
        IssuerSource::Discover => {
            let request = http::Request::get(OPENID_CONFIGURATION_PATH)
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            let body = client
                .request_text(request)
                .await
                .map_err(|e| format!("GET {OPENID_CONFIGURATION_PATH}: {e}"))?;
            issuer_of(&body).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_issuer_of_a_discovery_document() {
        let doc = r#"{"issuer":"https://kubernetes.default.svc.cluster.local","jwks_uri":"https://x/openid/v1/jwks","response_types_supported":["id_token"]}"#;
        assert_eq!(
            issuer_of(doc).unwrap().as_str(),
            "https://kubernetes.default.svc.cluster.local"
        );
        for bad in [
            "",
            "{}",
            r#"{"issuer": 3}"#,
            r#"{"issuer": "not a url"}"#,
            "<html>",
        ] {
            let err = issuer_of(bad).unwrap_err();
            assert!(err.contains(OPENID_CONFIGURATION_PATH), "{bad:?}: {err}");
        }
    }

    #[test]
    fn parses_the_flag() {
        assert_eq!(
            "discover".parse::<IssuerSource>(),
            Ok(IssuerSource::Discover)
        );
        assert_eq!("off".parse::<IssuerSource>(), Ok(IssuerSource::Off));
        assert_eq!(
            "https://oidc.example/c1".parse::<IssuerSource>(),
            Ok(IssuerSource::Fixed(
                IssuingCluster::new("https://oidc.example/c1").unwrap()
            ))
        );
        assert!("oidc.example".parse::<IssuerSource>().is_err());
    }
}
