//! CertificateSigningRequests (`certificates.k8s.io/v1`) for clusters without Pod
//! Certificates: who may have one, and what it holds.
//!
//! The in-pod agent files a CSR for one of the signer's names with the pod's own
//! pod-bound ServiceAccount token, so kube-apiserver records who asked:
//! `spec.username = system:serviceaccount:<ns>:<sa>` and, in `spec.extra`, the pod
//! ([`POD_NAME_EXTRA`], [`POD_UID_EXTRA`]) and on recent releases its node
//! ([`NODE_NAME_EXTRA`], [`NODE_UID_EXTRA`]); the keys are those of Kubernetes'
//! `k8s.io/apiserver/pkg/authentication/serviceaccount` (`PodNameKey`, ...). These
//! fields are set by the API server, never by the requester.
//!
//! [`decide`] turns that into the PodCertificateRequest the pod's kubelet would have
//! filed and hands it to [`issue`]: the same checks against the live pod, Node and
//! ServiceAccount, the same certificate. The CSR itself is the pod's counterpart of a
//! `podCertificate` volume source (the pod asked, with its own token), so the pod's
//! spec needs none. On top of that, CSR-only rules:
//!
//! - the requester is a ServiceAccount whose token is bound to a pod (one pod name, one
//!   pod UID in `extra`; node name and UID, when present, one value each);
//! - `spec.usages` is a subset of what the certificate carries (`digital signature`,
//!   `server auth`, `client auth`, and `key encipherment` for RSA keys);
//! - `spec.expirationSeconds`, when set, is at least kube-apiserver's minimum (600); the
//!   lifetime issued is that, raised to the one-hour minimum of every podtls certificate
//!   and cut to the signer's `max_lifetime` (24 h by default); unset: `max_lifetime`;
//! - `spec.request` is one PEM `CERTIFICATE REQUEST` whose self-signature verifies and
//!   whose key type the signer accepts;
//! - names are issued by the signer, not asked for: a request carrying no names (empty
//!   subject, no SANs) gets exactly the pod's entitled names; one that carries names
//!   must carry exactly those (a subject CN counts as a name), else it is denied naming
//!   the offending name.
//!
//! Every check that fails ends in `Denied` before anything is approved: the signer is
//! its own approver and never approves what it would not sign. `Failed` is written only
//! for a CSR this signer approved earlier (a crash between the approval and the
//! certificate write) whose pod is no longer entitled when it comes to sign. A CSR that
//! is already approved by someone else, denied, failed or issued is never touched.
//!
//! Pure: the controller hands in the CSR's fields, a [`PodSnapshot`] and `now`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::SystemTime;

use rustls_pki_types::pem::{PemObject as _, SectionKind};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::denial::{Denial, DenialReason, NotIssued, Pending, PendingReason};
use crate::requested_key::RequestedKey;
use crate::snapshot::{CertificateSource, PodSnapshot};
use crate::{issue, Error, IssuanceRequest, Issued, KeyMaterial, SignerConfig, SigningCa};

/// `spec.extra` key holding the name of the pod a ServiceAccount token is bound to.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
/// `spec.extra` key holding the UID of that pod.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";
/// `spec.extra` key holding the name of the node the pod ran on when the token was issued.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
/// `spec.extra` key holding that node's UID.
pub const NODE_UID_EXTRA: &str = "authentication.kubernetes.io/node-uid";

/// The `reason` of the `Approved` condition this signer writes.
pub const APPROVED_REASON: &str = "PodtlsEntitled";

/// kube-apiserver's minimum for `spec.expirationSeconds` (10 minutes).
pub const MIN_EXPIRATION_SECONDS: i32 = 600;

/// The usages a certificate of this signer carries (`spec.usages` spelling); RSA
/// certificates also carry [`KEY_ENCIPHERMENT`].
pub const USAGES: [&str; 3] = ["digital signature", "server auth", "client auth"];
/// The usage RSA certificates carry besides [`USAGES`].
pub const KEY_ENCIPHERMENT: &str = "key encipherment";

/// Where a CSR stands, from its conditions and `status.certificate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrState {
    /// No condition, no certificate: to be decided.
    Open,
    /// `Approved` by this signer ([`APPROVED_REASON`]) but no certificate yet: to be
    /// signed (the signer stopped between the two writes).
    ApprovedByUs,
    /// `Approved` by someone else (another reason): never signed by this signer.
    ApprovedByOther,
    /// `Denied` or `Failed`: final.
    Terminal,
    /// `status.certificate` is set: final, never signed again.
    Issued,
}

impl CsrState {
    /// The state from the condition types/reasons (`(type, reason)`, status `True` only)
    /// and whether `status.certificate` is non-empty.
    pub fn from_status<'a>(
        conditions: impl IntoIterator<Item = (&'a str, &'a str)>,
        has_certificate: bool,
    ) -> CsrState {
        if has_certificate {
            return CsrState::Issued;
        }
        let mut approved = None;
        for (type_, reason) in conditions {
            match type_ {
                "Denied" | "Failed" => return CsrState::Terminal,
                "Approved" => approved = Some(reason == APPROVED_REASON),
                _ => {}
            }
        }
        match approved {
            None => CsrState::Open,
            Some(true) => CsrState::ApprovedByUs,
            Some(false) => CsrState::ApprovedByOther,
        }
    }
}

/// The fields of a CertificateSigningRequest the decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrFields {
    /// `metadata.name`.
    pub name: String,
    /// `spec.signerName`.
    pub signer_name: String,
    /// `spec.request`: PEM.
    pub request: Vec<u8>,
    /// `spec.usages`.
    pub usages: Vec<String>,
    /// `spec.expirationSeconds`.
    pub expiration_seconds: Option<i32>,
    /// `spec.username` (set by kube-apiserver).
    pub username: String,
    /// `spec.extra` (set by kube-apiserver).
    pub extra: BTreeMap<String, Vec<String>>,
    /// Conditions and certificate.
    pub state: CsrState,
}

/// The pod a CSR's requester is, from `spec.username` and `spec.extra`: claims of the
/// API server about the token, checked against the cluster by [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The ServiceAccount's (and so the pod's) namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub service_account: String,
    /// The pod the token is bound to.
    pub pod_name: String,
    /// Its UID.
    pub pod_uid: String,
    /// The node the pod ran on when the token was issued, if recorded.
    pub node_name: Option<String>,
    /// That node's UID, if recorded.
    pub node_uid: Option<String>,
}

impl Requester {
    /// Reads the requester of `csr`.
    ///
    /// # Errors
    /// A denial (`RequesterNotServiceAccount`, `RequesterNotPodBound`) naming the field.
    pub fn of(csr: &CsrFields) -> Result<Requester, Denial> {
        let not_sa = || {
            Denial::new(
                DenialReason::RequesterNotServiceAccount,
                format!(
                    "CSR {} was filed by {:?}, not by a pod's ServiceAccount (system:serviceaccount:<namespace>:<name>); this signer signs only for pods, with their own token",
                    csr.name, csr.username
                ),
            )
        };
        let rest = csr
            .username
            .strip_prefix("system:serviceaccount:")
            .ok_or_else(not_sa)?;
        let (namespace, service_account) = rest.split_once(':').ok_or_else(not_sa)?;
        if !is_dns_label(namespace) || !is_dns_subdomain(service_account) {
            return Err(not_sa());
        }
        let one = |key: &str, required: bool| -> Result<Option<String>, Denial> {
            match csr.extra.get(key).map(Vec::as_slice) {
                None | Some([]) if !required => Ok(None),
                Some([value]) if !value.is_empty() => Ok(Some(value.clone())),
                found => Err(Denial::new(
                    DenialReason::RequesterNotPodBound,
                    format!(
                        "CSR {} by {}: spec.extra[{key:?}] must hold exactly one non-empty value, found {}; the agent must authenticate with a token bound to its pod",
                        csr.name,
                        csr.username,
                        match found {
                            None => "none".to_string(),
                            Some(values) => format!("{values:?}"),
                        }
                    ),
                )),
            }
        };
        let pod_name = one(POD_NAME_EXTRA, true)?.unwrap_or_default();
        let pod_uid = one(POD_UID_EXTRA, true)?.unwrap_or_default();
        Ok(Requester {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            pod_name,
            pod_uid,
            node_name: one(NODE_NAME_EXTRA, false)?,
            node_uid: one(NODE_UID_EXTRA, false)?,
        })
    }
}

/// Where a [`PodSnapshot`] comes from: a missing or unbound pod in the watch caches may
/// be a cache that lags (retry), read live it is final (deny).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// From the watch caches.
    Cached,
    /// Read live from the API server.
    Live,
}

/// Why a CSR is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// `spec.signerName` is not this signer's.
    OtherSigner,
    /// Approved by someone else: this signer signs only what it approved.
    ApprovedByOther,
    /// Denied or Failed already.
    Terminal,
    /// It already has a certificate (a replay is never signed again).
    Issued,
}

impl Ignored {
    /// A label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::OtherSigner => "OtherSigner",
            Ignored::ApprovedByOther => "ApprovedByOther",
            Ignored::Terminal => "Terminal",
            Ignored::Issued => "AlreadyIssued",
        }
    }
}

/// What to do with a CSR.
#[derive(Debug)]
pub enum CsrDecision {
    /// Write nothing, ever (until the object changes).
    Ignore(Ignored),
    /// Write the `Approved` condition ([`APPROVED_REASON`]), then `status.certificate`.
    Approve(Box<Issued>),
    /// Already approved by this signer: write `status.certificate`.
    Sign(Box<Issued>),
    /// Write the `Denied` condition.
    Deny(Denial),
    /// Approved by this signer earlier, but it can no longer sign: write the `Failed`
    /// condition (the denial says why).
    Fail(Denial),
    /// Write nothing; look again later (a cache lags, a Service is missing).
    Pending(Pending),
    /// The signer's own problem (CA not valid now, signing failed): retry.
    Error(Error),
}

impl fmt::Display for CsrDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsrDecision::Ignore(why) => write!(f, "ignored ({})", why.as_str()),
            CsrDecision::Approve(i) => write!(f, "approve and sign (serial {})", i.serial),
            CsrDecision::Sign(i) => write!(f, "sign (serial {})", i.serial),
            CsrDecision::Deny(d) => d.fmt(f),
            CsrDecision::Fail(d) => write!(f, "failed ({}): {}", d.reason, d.message),
            CsrDecision::Pending(p) => p.fmt(f),
            CsrDecision::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// Decides `csr` for the signer `config` (whose trust domain is the requester's
/// namespace's), signing with `ca`, against `snapshot` (the pod [`Requester::of`] names,
/// its Node and ServiceAccount, and for DNS-issuing signers the Services selecting it)
/// taken from `view`, at `now`.
///
/// In order: not this signer's, or already decided → [`CsrDecision::Ignore`]; the
/// requester ([`Requester::of`]); `expirationSeconds`; `usages`; `spec.request` (one
/// PKCS#10, self-signature, key type); the pod's entitlement and the certificate
/// ([`issue`]: pod UID, not terminating, ServiceAccount, node, Node and ServiceAccount
/// UIDs, names); the names the CSR asked for, if any.
pub fn decide(
    csr: &CsrFields,
    config: &SignerConfig,
    ca: &SigningCa,
    snapshot: &PodSnapshot,
    view: View,
    now: SystemTime,
) -> CsrDecision {
    if csr.signer_name != config.name {
        return CsrDecision::Ignore(Ignored::OtherSigner);
    }
    let approved = match csr.state {
        CsrState::Open => false,
        CsrState::ApprovedByUs => true,
        CsrState::ApprovedByOther => return CsrDecision::Ignore(Ignored::ApprovedByOther),
        CsrState::Terminal => return CsrDecision::Ignore(Ignored::Terminal),
        CsrState::Issued => return CsrDecision::Ignore(Ignored::Issued),
    };
    let refuse = |denial: Denial| {
        if approved {
            CsrDecision::Fail(denial)
        } else {
            CsrDecision::Deny(denial)
        }
    };
    match checked(csr, config, ca, snapshot, view, now) {
        Ok(issued) if approved => CsrDecision::Sign(Box::new(issued)),
        Ok(issued) => CsrDecision::Approve(Box::new(issued)),
        Err(NotIssued::Denied(denial)) => refuse(denial),
        // kube-apiserver's PodCertificateRequest minimum does not apply to CSRs, and the
        // lifetime is raised to it before `issue`: a Failed here is a signer bug; report
        // it as the signer's problem rather than blame the requester.
        Err(NotIssued::Failed(failure)) => CsrDecision::Error(Error::SelfCheck {
            reason: format!("unexpected failure for CSR {}: {failure}", csr.name),
        }),
        Err(NotIssued::Pending(pending)) => CsrDecision::Pending(pending),
        Err(NotIssued::Error(error)) => CsrDecision::Error(error),
    }
}

fn checked(
    csr: &CsrFields,
    config: &SignerConfig,
    ca: &SigningCa,
    snapshot: &PodSnapshot,
    view: View,
    now: SystemTime,
) -> Result<Issued, NotIssued> {
    let requester = Requester::of(csr)?;
    let who = format!("pod {}/{}", requester.namespace, requester.pod_name);
    let deny = |reason, message: String| NotIssued::Denied(Denial::new(reason, message));

    let max_expiration_seconds = match csr.expiration_seconds {
        None => None,
        Some(s) if s < MIN_EXPIRATION_SECONDS => {
            return Err(deny(
                DenialReason::InvalidExpirationSeconds,
                format!(
                    "CSR {}: spec.expirationSeconds is {s}, below kube-apiserver's minimum of {MIN_EXPIRATION_SECONDS}",
                    csr.name
                ),
            ))
        }
        // Raised to the one-hour minimum of every podtls certificate; `issue` cuts it to
        // the signer's maximum lifetime.
        Some(s) => Some(s.max(crate::MIN_LIFETIME.as_secs() as i32)),
    };

    let der = single_csr_der(&csr.request).map_err(|why| {
        deny(
            DenialReason::InvalidCertificateRequest,
            format!("CSR {}: spec.request {why}", csr.name),
        )
    })?;
    let key = RequestedKey::verify(
        &KeyMaterial::StubPkcs10 { csr: der.clone() },
        &requester.pod_uid,
        &config.allowed_key_types,
    )
    .map_err(|d| {
        let reason = match d.reason {
            DenialReason::UnsupportedKeyType => DenialReason::UnsupportedKeyType,
            _ => DenialReason::InvalidCertificateRequest,
        };
        deny(
            reason,
            format!(
                "CSR {}: {}",
                csr.name,
                d.message.replace("spec.stubPKCS10Request", "spec.request")
            ),
        )
    })?;

    let mut allowed: Vec<&str> = USAGES.to_vec();
    if key.key_type().is_rsa() {
        allowed.push(KEY_ENCIPHERMENT);
    }
    let extra: Vec<&str> = csr
        .usages
        .iter()
        .map(String::as_str)
        .filter(|u| !allowed.contains(u))
        .collect();
    if !extra.is_empty() {
        return Err(deny(
            DenialReason::UsagesNotAllowed,
            format!(
                "CSR {}: usages {} are not allowed; a {} certificate of this signer carries only {}",
                csr.name,
                extra.join(", "),
                key.key_type(),
                allowed.join(", ")
            ),
        ));
    }

    // The pod, Node and ServiceAccount the request names come from the token; what is
    // not in the token (ServiceAccount UID, and the node on older releases) is taken
    // from the cluster, which the entitlement check then compares with itself: present
    // means it matches, absent means pending.
    let pod = snapshot
        .pod
        .as_ref()
        .filter(|p| p.namespace == requester.namespace && p.name == requester.pod_name);
    let Some(pod) = pod else {
        return Err(match view {
            View::Cached => NotIssued::Pending(Pending::new(
                PendingReason::PodNotInSnapshot,
                format!("{who} is not in the cluster snapshot"),
            )),
            View::Live => deny(
                DenialReason::PodNotFound,
                format!("{who}, whose token filed CSR {}, does not exist", csr.name),
            ),
        });
    };
    let node_name = match (&requester.node_name, &pod.node_name) {
        (Some(claimed), _) => claimed.clone(),
        (None, Some(bound)) => bound.clone(),
        (None, None) => {
            return Err(match view {
                View::Cached => NotIssued::Pending(Pending::new(
                    PendingReason::PodNotBound,
                    format!("{who} is not bound to a node in the cluster snapshot"),
                )),
                View::Live => deny(
                    DenialReason::PodNotBound,
                    format!("{who} is not bound to a node: no agent of it can be running"),
                ),
            })
        }
    };
    let node_uid = match &requester.node_uid {
        Some(uid) => uid.clone(),
        None => snapshot
            .node
            .as_ref()
            .filter(|n| n.name == node_name)
            .map(|n| n.uid.clone())
            .unwrap_or_default(),
    };
    let request = IssuanceRequest {
        namespace: requester.namespace.clone(),
        name: csr.name.clone(),
        signer_name: csr.signer_name.clone(),
        pod_name: requester.pod_name.clone(),
        pod_uid: requester.pod_uid.clone(),
        service_account_name: requester.service_account.clone(),
        service_account_uid: snapshot
            .service_account
            .as_ref()
            .map(|s| s.uid.clone())
            .unwrap_or_default(),
        node_name,
        node_uid,
        max_expiration_seconds: Some(
            max_expiration_seconds
                .unwrap_or(i32::try_from(config.max_lifetime.as_secs()).unwrap_or(i32::MAX)),
        ),
        key_material: KeyMaterial::StubPkcs10 { csr: der.clone() },
        unverified_user_annotations: BTreeMap::new(),
    };
    // The CSR, filed with the pod's own token, is the pod asking: the counterpart of a
    // `podCertificate` volume source for this signer and key type.
    let mut asked = snapshot.clone();
    if let Some(p) = asked.pod.as_mut() {
        p.certificate_sources.push(CertificateSource {
            signer_name: csr.signer_name.clone(),
            key_type: key.key_type().as_str().to_string(),
        });
    }
    let issued = issue(&request, config, ca, &asked, now)?;

    let requested = requested_names(&der).map_err(|why| {
        deny(
            DenialReason::InvalidCertificateRequest,
            format!("CSR {}: spec.request {why}", csr.name),
        )
    })?;
    if !requested.is_empty() {
        let entitled = certificate_names(&issued.leaf_der).map_err(NotIssued::Error)?;
        if let Some(offending) = requested.difference(&entitled).next() {
            return Err(deny(
                DenialReason::NamesNotEntitled,
                format!(
                    "CSR {} asks for {offending}, which {who} is not entitled to; request no names, or exactly {}",
                    csr.name,
                    list(&entitled)
                ),
            ));
        }
        if let Some(missing) = entitled.difference(&requested).next() {
            return Err(deny(
                DenialReason::NamesNotEntitled,
                format!(
                    "CSR {} leaves out {missing}, which the certificate of {who} carries; request no names, or exactly {}",
                    csr.name,
                    list(&entitled)
                ),
            ));
        }
    }
    Ok(issued)
}

/// A name in a certificate or request, typed, for comparison and messages.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Name {
    /// A subject attribute: its OID (CN: `2.5.4.3`) and value.
    Subject(String, String),
    /// A SAN: its kind (`DNS`, `URI`, `IP`, `email`, ...) and value.
    San(&'static str, String),
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Subject(oid, value) if oid == OID_CN => write!(f, "subject CN={value:?}"),
            Name::Subject(oid, value) => write!(f, "subject attribute {oid}={value:?}"),
            Name::San(kind, value) => write!(f, "SAN {kind}:{value}"),
        }
    }
}

const OID_CN: &str = "2.5.4.3";

fn list(names: &BTreeSet<Name>) -> String {
    names
        .iter()
        .map(Name::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The DER of the one `CERTIFICATE REQUEST` block of `pem`.
fn single_csr_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    let mut found = None;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| format!("is not valid PEM: {e}"))?;
        if kind != SectionKind::Csr {
            return Err(format!(
                "holds a PEM block of kind {kind:?}; only one CERTIFICATE REQUEST is allowed"
            ));
        }
        if found.replace(der).is_some() {
            return Err("holds more than one CERTIFICATE REQUEST".into());
        }
    }
    found.ok_or_else(|| "holds no PEM CERTIFICATE REQUEST block".into())
}

fn subject_names(name: &X509Name<'_>, out: &mut BTreeSet<Name>) -> Result<(), String> {
    for attr in name.iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        let value = attr
            .as_str()
            .map_err(|e| format!("subject attribute {oid} is not a string: {e}"))?;
        out.insert(Name::Subject(oid, value.to_string()));
    }
    Ok(())
}

fn san_names<'a>(
    extensions: impl Iterator<Item = &'a ParsedExtension<'a>>,
    out: &mut BTreeSet<Name>,
) -> Result<(), String> {
    for ext in extensions {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                out.insert(match name {
                    GeneralName::DNSName(v) => Name::San("DNS", v.to_string()),
                    GeneralName::URI(v) => Name::San("URI", v.to_string()),
                    GeneralName::RFC822Name(v) => Name::San("email", v.to_string()),
                    GeneralName::IPAddress(v) => Name::San("IP", format!("{v:02x?}")),
                    other => Name::San("other", format!("{other:?}")),
                });
            }
        }
    }
    Ok(())
}

/// The names a PKCS#10 request asks for: subject attributes and SANs.
fn requested_names(der: &[u8]) -> Result<BTreeSet<Name>, String> {
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| format!("is not a DER PKCS#10 request: {e}"))?;
    let mut names = BTreeSet::new();
    subject_names(&csr.certification_request_info.subject, &mut names)?;
    if let Some(extensions) = csr.requested_extensions() {
        san_names(extensions, &mut names)?;
    }
    Ok(names)
}

/// The names an issued leaf carries: subject attributes and SANs.
fn certificate_names(leaf_der: &[u8]) -> Result<BTreeSet<Name>, Error> {
    let fail = |reason: String| Error::SelfCheck { reason };
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| fail(format!("the leaf does not parse: {e}")))?;
    let mut names = BTreeSet::new();
    subject_names(leaf.subject(), &mut names).map_err(fail)?;
    san_names(
        leaf.extensions().iter().map(|e| e.parsed_extension()),
        &mut names,
    )
    .map_err(fail)?;
    Ok(names)
}

/// RFC 1123 label (a namespace name).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain (a ServiceAccount name).
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
#[path = "csr_policy_tests.rs"]
mod tests;
