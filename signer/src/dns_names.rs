//! The DNS names a pod is entitled to: those of the Services that select it, in the
//! forms the operator configured, with per-pod names for headless Services, narrowed
//! to the Services the pod chose. Pure: the Services come from the snapshot.
//!
//! For each Service `S` in namespace `N` that selects the pod (and that the pod chose,
//! if it chose any):
//!
//! | input | names |
//! |---|---|
//! | always | `S.N.svc` |
//! | `--dns-suffix X` (repeatable) | `S.N.svc.X` |
//! | `--cluster-domain D` | `S.N.svc.D` |
//! | `S` headless (`clusterIP: None`), pod `spec.hostname: H`, `spec.subdomain: S` | `H.S.N.svc`, `H.S.N.svc.X`, `H.S.N.svc.D` |
//!
//! Pod-chosen Services: the `podCertificate` source's `userAnnotations` (kubelet
//! copies them into the request's `spec.unverifiedUserAnnotations`) may carry
//! [`SERVICES_ANNOTATION`]: a comma-separated list of Service names. Only those of them
//! that select the pod yield names. A listed Service that does not select the pod
//! (missing, other selector, headless in another namespace, ...) leaves the request
//! **pending** ([`PendingReason::ChosenServiceNotSelecting`]), never issued with fewer
//! names and never denied: selection is cluster state that may change (the Service
//! created a moment later, a selector fixed), a denial would be final for the pod, and
//! issuing without the name would leave the pod without what it asked for until its
//! next refresh, up to a day later. A malformed list can never heal: denied.
//!
//! Every name is checked (RFC 1123 labels of at most 63 characters, at most 253 in all);
//! a name that does not fit (only a suffixed form can be too long) is left out, never
//! put in a certificate.

use std::collections::{BTreeMap, BTreeSet};

use crate::denial::{Denial, DenialReason, Pending, PendingReason};
use crate::snapshot::{PodInfo, ServiceInfo, ServiceType};
use crate::Error;

/// The `userAnnotations` key with the Services a pod wants in its certificate
/// (comma-separated names, e.g. `web,web-admin`).
pub const SERVICES_ANNOTATION: &str = "row-major.net/services";

/// The longest DNS name (RFC 1035 section 2.3.4, without the trailing dot).
pub const MAX_DNS_NAME_LEN: usize = 253;

/// Which forms of each Service name are issued besides `<svc>.<ns>.svc`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsNameOptions {
    suffixes: Vec<String>,
    cluster_domain: Option<String>,
}

impl DnsNameOptions {
    /// Only `<svc>.<ns>.svc` (and per-pod names).
    pub fn new() -> DnsNameOptions {
        DnsNameOptions::default()
    }

    /// Adds `--dns-suffix`: also `<svc>.<ns>.svc.<suffix>` for every Service.
    ///
    /// # Errors
    /// [`Error::InvalidDnsName`] if `suffix` is not a lowercase DNS name.
    pub fn with_suffix(mut self, suffix: &str) -> Result<DnsNameOptions, Error> {
        let suffix = parse_dns_name("--dns-suffix", suffix)?;
        if !self.suffixes.contains(&suffix) {
            self.suffixes.push(suffix);
        }
        Ok(self)
    }

    /// Sets `--cluster-domain`: also the fully qualified `<svc>.<ns>.svc.<domain>`.
    ///
    /// # Errors
    /// [`Error::InvalidDnsName`] if `domain` is not a lowercase DNS name.
    pub fn with_cluster_domain(mut self, domain: &str) -> Result<DnsNameOptions, Error> {
        self.cluster_domain = Some(parse_dns_name("--cluster-domain", domain)?);
        Ok(self)
    }

    /// The configured suffixes.
    pub fn suffixes(&self) -> &[String] {
        &self.suffixes
    }

    /// The configured cluster domain.
    pub fn cluster_domain(&self) -> Option<&str> {
        self.cluster_domain.as_deref()
    }

    /// `base` and its suffixed and fully qualified forms.
    fn forms(&self, base: &str) -> Vec<String> {
        let mut out = vec![base.to_string()];
        out.extend(self.suffixes.iter().map(|s| format!("{base}.{s}")));
        out.extend(self.cluster_domain.iter().map(|d| format!("{base}.{d}")));
        out
    }
}

/// Parses a configured suffix or domain: lowercase RFC 1123 labels, no leading or
/// trailing dot, short enough to leave room for a name in front.
fn parse_dns_name(flag: &'static str, given: &str) -> Result<String, Error> {
    let invalid = |reason: String| Error::InvalidDnsName {
        flag,
        given: given.to_string(),
        reason,
    };
    if given.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if given != given.to_ascii_lowercase() {
        return Err(invalid(
            "DNS names in certificates are lowercase here".into(),
        ));
    }
    if !is_dns_name(given) {
        return Err(invalid(
            "expected labels of a-z, 0-9 and '-' (at most 63 characters each, not beginning or ending with '-') joined by dots".into(),
        ));
    }
    // The shortest name it is appended to: `a.b.svc.` (8 characters).
    if given.len() > MAX_DNS_NAME_LEN - 8 {
        return Err(invalid(format!(
            "with a Service name in front it would exceed {MAX_DNS_NAME_LEN} characters"
        )));
    }
    Ok(given.to_string())
}

/// An RFC 1123 label: what Service names, namespaces, hostnames and subdomains are.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS name of RFC 1123 labels, at most [`MAX_DNS_NAME_LEN`] characters.
pub(crate) fn is_dns_name(s: &str) -> bool {
    s.len() <= MAX_DNS_NAME_LEN && s.split('.').all(is_dns_label)
}

/// The Services the pod chose through [`SERVICES_ANNOTATION`], if it chose any.
///
/// # Errors
/// A [`Denial`] (`InvalidUnverifiedUserAnnotations`) for a list that is empty or holds
/// something that is no Service name.
pub(crate) fn chosen_services(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<BTreeSet<String>>, Denial> {
    let Some(value) = annotations.get(SERVICES_ANNOTATION) else {
        return Ok(None);
    };
    let invalid = |why: String| {
        Denial::new(
            DenialReason::InvalidUnverifiedUserAnnotations,
            format!(
                "userAnnotations {SERVICES_ANNOTATION}={value:?}: {why}; expected a comma-separated list of Service names"
            ),
        )
    };
    let mut chosen = BTreeSet::new();
    for name in value.split(',').map(str::trim) {
        if !is_dns_label(name) {
            return Err(invalid(format!("{name:?} is not a Service name")));
        }
        chosen.insert(name.to_string());
    }
    Ok(Some(chosen))
}

/// The names issued to a pod, and those left out because they are no valid DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct DnsNames {
    /// Sorted, deduplicated.
    pub names: Vec<String>,
    /// Too long (only a suffixed form can be): never issued.
    pub left_out: Vec<String>,
}

/// The names `pod` is entitled to from `selecting` (the Services that select it),
/// narrowed to `chosen` if the pod chose Services.
///
/// # Errors
/// [`Pending`] (`ChosenServiceNotSelecting`) if `chosen` names a Service that does not
/// select the pod.
pub(crate) fn dns_names(
    pod: &PodInfo,
    selecting: &[ServiceInfo],
    chosen: Option<&BTreeSet<String>>,
    options: &DnsNameOptions,
) -> Result<DnsNames, Pending> {
    // Only what really selects the pod counts, whatever the caller passed.
    let selecting: Vec<&ServiceInfo> = selecting.iter().filter(|s| s.selects(pod)).collect();
    if let Some(chosen) = chosen {
        let missing: Vec<&str> = chosen
            .iter()
            .filter(|name| !selecting.iter().any(|s| &s.name == *name))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Pending::new(
                PendingReason::ChosenServiceNotSelecting,
                format!(
                    "pod {}/{} chose Services {} ({SERVICES_ANNOTATION}) that do not select it; their names are never issued, and the request waits until they do",
                    pod.namespace,
                    pod.name,
                    missing.join(", ")
                ),
            ));
        }
    }
    let mut all = Vec::new();
    for s in selecting
        .iter()
        .filter(|s| chosen.is_none_or(|c| c.contains(&s.name)))
    {
        if !is_dns_label(&s.name) || !is_dns_label(&s.namespace) {
            continue;
        }
        all.extend(options.forms(&format!("{}.{}.svc", s.name, s.namespace)));
        // Per-pod names: the pod's subdomain is this headless Service.
        if let (ServiceType::Headless, Some(host), Some(sub)) =
            (&s.service_type, &pod.hostname, &pod.subdomain)
        {
            if sub == &s.name && is_dns_label(host) {
                all.extend(options.forms(&format!("{host}.{}.{}.svc", s.name, s.namespace)));
            }
        }
    }
    let (mut names, mut left_out): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|n| is_dns_name(n));
    names.sort();
    names.dedup();
    left_out.sort();
    left_out.dedup();
    Ok(DnsNames { names, left_out })
}

#[cfg(test)]
#[path = "dns_names_tests.rs"]
mod tests;
