//! Which certificates.k8s.io versions the cluster serves PodCertificateRequests and
//! ClusterTrustBundles at: v1 (1.37) is preferred over v1beta1 (1.35, 1.36).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::ApiResource;
use kube::Client;

use super::Error;

/// The API group of both resources.
pub const GROUP: &str = "certificates.k8s.io";
/// Versions tried, most preferred first.
pub const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The served versions of the two resources the controller uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedApis {
    /// PodCertificateRequests.
    pub pcr: ApiResource,
    /// ClusterTrustBundles.
    pub ctb: ApiResource,
}

/// Asks the API server (`GET /apis/certificates.k8s.io/<version>` for each version) and
/// picks the most preferred version serving each resource. A version that is not served
/// (404) is skipped; any other error is returned.
pub async fn discover(client: &Client) -> Result<ServedApis, Error> {
    let mut lists = Vec::new();
    for version in VERSIONS {
        let group_version = format!("{GROUP}/{version}");
        match client.list_api_group_resources(&group_version).await {
            Ok(list) => lists.push(list),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Discovery {
                    group_version,
                    source,
                })
            }
        }
    }
    pick(&lists).ok_or(Error::NotServed)
}

/// The pure choice: from the resource lists of the served versions (in preference order),
/// the first version that lists `podcertificaterequests` (with a `status` subresource)
/// and the first that lists `clustertrustbundles`.
pub fn pick(lists: &[APIResourceList]) -> Option<ServedApis> {
    let find = |plural: &str, kind: &str, subresource: Option<&str>| {
        lists.iter().find_map(|list| {
            let names: Vec<&str> = list.resources.iter().map(|r| r.name.as_str()).collect();
            let served = names.contains(&plural)
                && subresource.is_none_or(|s| names.contains(&format!("{plural}/{s}").as_str()));
            let version = list.group_version.strip_prefix(&format!("{GROUP}/"))?;
            served.then(|| ApiResource {
                group: GROUP.to_string(),
                version: version.to_string(),
                api_version: list.group_version.clone(),
                kind: kind.to_string(),
                plural: plural.to_string(),
            })
        })
    };
    Some(ServedApis {
        pcr: find(
            "podcertificaterequests",
            "PodCertificateRequest",
            Some("status"),
        )?,
        ctb: find("clustertrustbundles", "ClusterTrustBundle", None)?,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    use super::*;

    fn list(version: &str, names: &[&str]) -> APIResourceList {
        APIResourceList {
            group_version: format!("{GROUP}/{version}"),
            resources: names
                .iter()
                .map(|n| APIResource {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn prefers_v1_when_both_serve_podcertificaterequests() {
        let all = [
            "podcertificaterequests",
            "podcertificaterequests/status",
            "clustertrustbundles",
        ];
        let apis = pick(&[list("v1", &all), list("v1beta1", &all)]).unwrap();
        assert_eq!(apis.pcr.api_version, "certificates.k8s.io/v1");
        assert_eq!(apis.ctb.api_version, "certificates.k8s.io/v1");
    }

    #[test]
    fn uses_v1beta1_for_podcertificaterequests_when_v1_serves_only_csrs() {
        let v1 = list(
            "v1",
            &[
                "certificatesigningrequests",
                "certificatesigningrequests/status",
            ],
        );
        let v1beta1 = list(
            "v1beta1",
            &[
                "podcertificaterequests",
                "podcertificaterequests/status",
                "clustertrustbundles",
            ],
        );
        let apis = pick(&[v1, v1beta1]).unwrap();
        assert_eq!(apis.pcr.version, "v1beta1");
        assert_eq!(apis.pcr.plural, "podcertificaterequests");
        assert_eq!(apis.ctb.version, "v1beta1");
    }

    #[test]
    fn finds_nothing_when_podcertificaterequests_are_not_served() {
        let v1 = list("v1", &["certificatesigningrequests", "clustertrustbundles"]);
        assert_eq!(pick(&[v1]), None);
    }
}
