//! Reading what the API server holds: PodCertificateRequests (with the served
//! version), their issued leaves, ClusterTrustBundles, and the audit log's
//! record of status writes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _, Result};
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;
use signer::controller::{
    discover, system_time, terminal_condition, PodCertificateRequest, ServedApis,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// What an issued leaf says.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// Serial (lower-case hex).
    pub serial: String,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// URI SANs.
    pub uris: Vec<String>,
    /// Other SAN kinds present (IP, email, ...).
    pub other_sans: usize,
    /// Subject is empty.
    pub empty_subject: bool,
    /// notBefore / notAfter.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// basicConstraints CA.
    pub is_ca: bool,
    /// Number of certificates in the chain.
    pub chain_len: usize,
}

/// The leaf of a PEM chain.
pub fn parse_leaf(chain_pem: &str) -> Result<Leaf> {
    use rustls_pki_types::pem::PemObject as _;
    let ders: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()?;
    let Some(first) = ders.first() else {
        bail!("empty certificate chain");
    };
    let (_, cert) = X509Certificate::from_der(first).context("leaf does not parse")?;
    let mut dns = Vec::new();
    let mut uris = Vec::new();
    let mut other_sans = 0;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::URI(u) => uris.push(u.to_string()),
                _ => other_sans += 1,
            }
        }
    }
    let ts = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    let empty_subject = cert.subject().iter_attributes().next().is_none();
    let leaf = Leaf {
        serial: cert.raw_serial_as_string().replace(':', "").to_lowercase(),
        dns,
        uris,
        other_sans,
        empty_subject,
        not_before: ts(cert.validity().not_before),
        not_after: ts(cert.validity().not_after),
        is_ca: cert.is_ca(),
        chain_len: ders.len(),
    };
    Ok(leaf)
}

/// The PodCertificateRequest API of the cluster.
pub struct Requests {
    /// The served versions (discovered like the signer does).
    pub apis: ServedApis,
    client: kube::Client,
}

impl Requests {
    /// Discovers the served certificates.k8s.io version.
    pub async fn new(client: &kube::Client) -> Result<Requests> {
        Ok(Requests {
            apis: discover(client).await?,
            client: client.clone(),
        })
    }

    /// Every PodCertificateRequest in `namespace` (all namespaces with `None`).
    pub async fn list(&self, namespace: Option<&str>) -> Result<Vec<PodCertificateRequest>> {
        let api: Api<PodCertificateRequest> = match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &self.apis.pcr),
            None => Api::all_with(self.client.clone(), &self.apis.pcr),
        };
        Ok(api.list(&ListParams::default()).await?.items)
    }

    /// The requests of one pod.
    pub async fn of_pod(&self, namespace: &str, pod: &str) -> Result<Vec<PodCertificateRequest>> {
        Ok(self
            .list(Some(namespace))
            .await?
            .into_iter()
            .filter(|r| r.spec.pod_name == pod)
            .collect())
    }

    /// All ClusterTrustBundles.
    pub async fn trust_bundles(&self) -> Result<Vec<DynamicObject>> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.apis.ctb);
        Ok(api.list(&ListParams::default()).await?.items)
    }
}

/// `(type, reason)` of a request's terminal condition, if any.
pub fn outcome(pcr: &PodCertificateRequest) -> Option<(String, String)> {
    terminal_condition(pcr).map(|c| (c.type_.clone(), c.reason.clone()))
}

/// `namespace/name` of a request.
pub fn key(pcr: &PodCertificateRequest) -> String {
    format!(
        "{}/{}",
        pcr.metadata.namespace.as_deref().unwrap_or(""),
        pcr.metadata.name.as_deref().unwrap_or("")
    )
}

/// The issued leaf of a request, checked against the status fields: chain
/// present, status.notBefore/notAfter equal to the leaf's, beginRefreshAt inside
/// [notBefore + 10 min, notAfter - 10 min].
pub fn issued_leaf(pcr: &PodCertificateRequest) -> Result<Leaf> {
    let k = key(pcr);
    let status = pcr
        .status
        .as_ref()
        .with_context(|| format!("{k}: no status"))?;
    let chain = status
        .certificate_chain
        .as_deref()
        .with_context(|| format!("{k}: no certificateChain"))?;
    let leaf = parse_leaf(chain).with_context(|| format!("{k}: certificateChain"))?;
    let t = |f: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>, what: &str| {
        f.as_ref()
            .map(|t| system_time(&t.0))
            .with_context(|| format!("{k}: no status.{what}"))
    };
    let nb = t(&status.not_before, "notBefore")?;
    let na = t(&status.not_after, "notAfter")?;
    let refresh = t(&status.begin_refresh_at, "beginRefreshAt")?;
    if nb != leaf.not_before || na != leaf.not_after {
        bail!(
            "{k}: status validity {nb:?}..{na:?} differs from the leaf's {:?}..{:?}",
            leaf.not_before,
            leaf.not_after
        );
    }
    let ten = Duration::from_secs(600);
    if refresh < nb + ten || refresh > na - ten {
        bail!("{k}: beginRefreshAt {refresh:?} outside [notBefore+10m, notAfter-10m]");
    }
    Ok(leaf)
}

/// `update podcertificaterequests/status` calls that took effect, per request
/// (`namespace/name`), from audit events: the successful ones (200). A write whose
/// client went away mid-request (the signer SIGKILLed) is audited as 504 although
/// kube-apiserver may still complete it; for a request with no successful write, one
/// such abandoned write is counted as the one that took effect (nothing else wrote
/// its terminal status).
pub fn status_writes(events: &[Value]) -> BTreeMap<String, usize> {
    let mut ok: BTreeMap<String, usize> = BTreeMap::new();
    let mut abandoned: BTreeMap<String, usize> = BTreeMap::new();
    for e in events {
        let r = &e["objectRef"];
        if e["stage"] == "ResponseComplete"
            && e["verb"] == "update"
            && r["resource"] == "podcertificaterequests"
            && r["subresource"] == "status"
        {
            let k = format!(
                "{}/{}",
                r["namespace"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or("")
            );
            match e["responseStatus"]["code"].as_u64() {
                Some(200) => *ok.entry(k).or_default() += 1,
                Some(504) => *abandoned.entry(k).or_default() += 1,
                _ => {}
            }
        }
    }
    for k in abandoned.into_keys() {
        ok.entry(k).or_insert(1);
    }
    ok
}

/// Requests made by `user` per `verb resource[/subresource]`, from audit events.
pub fn requests_by(events: &[Value], user: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events {
        if e["stage"] != "ResponseComplete" || e["user"]["username"] != user {
            continue;
        }
        let r = &e["objectRef"];
        let mut what = format!(
            "{} {}",
            e["verb"].as_str().unwrap_or("?"),
            r["resource"].as_str().unwrap_or("?")
        );
        if let Some(sub) = r["subresource"].as_str().filter(|s| !s.is_empty()) {
            what = format!("{what}/{sub}");
        }
        *out.entry(what).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_writes_count_only_successful_status_updates() {
        let ev = |verb: &str, sub: &str, code: u16, name: &str| {
            serde_json::json!({
                "stage": "ResponseComplete", "verb": verb,
                "objectRef": {"resource": "podcertificaterequests", "subresource": sub, "namespace": "ns", "name": name},
                "responseStatus": {"code": code},
                "user": {"username": "u"},
            })
        };
        let events = vec![
            ev("update", "status", 200, "a"),
            ev("update", "status", 409, "a"),
            ev("update", "status", 200, "b"),
            ev("get", "", 200, "a"),
        ];
        let w = status_writes(&events);
        assert_eq!(w.get("ns/a"), Some(&1));
        assert_eq!(w.get("ns/b"), Some(&1));
        assert_eq!(w.len(), 2);
        let by = requests_by(&events, "u");
        assert_eq!(by.get("update podcertificaterequests/status"), Some(&3));
        assert_eq!(by.get("get podcertificaterequests"), Some(&1));
    }

    #[test]
    fn an_abandoned_status_write_counts_only_where_none_succeeded() {
        let ev = |code: u16, name: &str| {
            serde_json::json!({
                "stage": "ResponseComplete", "verb": "update",
                "objectRef": {"resource": "podcertificaterequests", "subresource": "status", "namespace": "ns", "name": name},
                "responseStatus": {"code": code},
            })
        };
        // a: the writer was killed mid-request, nobody wrote again; b: killed, then a
        // successful write; c: two successful writes (a real double write).
        let events = vec![
            ev(504, "a"),
            ev(504, "b"),
            ev(200, "b"),
            ev(200, "c"),
            ev(200, "c"),
        ];
        let w = status_writes(&events);
        assert_eq!(w.get("ns/a"), Some(&1));
        assert_eq!(w.get("ns/b"), Some(&1));
        assert_eq!(w.get("ns/c"), Some(&2));
    }
}
