//! Pure issuance: request + signer configuration + CA + cluster snapshot + now ->
//! certificate, denial, failure or "not yet".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::string::Ia5String;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use spiffe::SpiffeId;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::denial::{
    Denial, DenialReason, Failure, FailureReason, NotIssued, Pending, PendingReason,
};
use crate::dns_names::{chosen_services, dns_names, SERVICES_ANNOTATION};
use crate::entitlement::check_entitlement;
use crate::pod_identity::{issuing_cluster_extension, pod_identity_extension, pod_identity_of};
use crate::request::DEFAULT_MAX_EXPIRATION_SECONDS;
use crate::requested_key::RequestedKey;
use crate::snapshot::{PodInfo, PodSnapshot};
use crate::{Error, IssuanceRequest, KeyType, SignerConfig, SignerKind, SigningCa};

/// How far notBefore is backdated from the issuance time. kube-apiserver rejects a
/// notBefore more than 5 minutes from its own clock, so this leaves 3 minutes for skew and
/// for the time between issuance and the status write.
pub const BACKDATE: Duration = Duration::from_secs(2 * 60);
/// The shortest lifetime kube-apiserver accepts for an issued certificate.
pub const MIN_LIFETIME: Duration = Duration::from_secs(3600);
/// beginRefreshAt is this long before notAfter (then clamped into the allowed window).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(30 * 60);
/// beginRefreshAt must be at least this far from both notBefore and notAfter.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);

/// An issued certificate and the status fields that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// `status.certificateChain`: the leaf then the CA's intermediates, PEM `CERTIFICATE` blocks.
    pub certificate_chain: String,
    /// The leaf (DER).
    pub leaf_der: Vec<u8>,
    /// `status.notBefore`, equal to the leaf's notBefore (whole seconds).
    pub not_before: SystemTime,
    /// `status.notAfter`, equal to the leaf's notAfter (whole seconds).
    pub not_after: SystemTime,
    /// `status.beginRefreshAt`.
    pub begin_refresh_at: SystemTime,
    /// The leaf's serial number, lowercase hex (for logs).
    pub serial: String,
    /// The ID of the CA that signed it.
    pub ca_id: String,
    /// The requester's key type.
    pub key_type: KeyType,
    /// The SANs in the leaf (DNS names or the SPIFFE ID), for logs.
    pub identities: Vec<String>,
    /// Service DNS names the pod was entitled to but that are no valid DNS name (over
    /// 253 characters), left out of the leaf; for logs.
    pub left_out: Vec<String>,
}

/// Decides a request and, if it is granted, signs the certificate.
///
/// Pure: no I/O, no clock. The checks, in order: the request names this signer (else
/// [`Error::SignerMismatch`]); `unverifiedUserAnnotations` holds no key but
/// `row-major.net/services` (service-dns and pod-identity; the spiffe signer recognises
/// none) and that one is a list of Service names (else
/// `InvalidUnverifiedUserAnnotations`); the key material parses, is an accepted key
/// type (`UnsupportedKeyType`) and verifies (proof of possession or CSR self-signature);
/// `maxExpirationSeconds` allows at least one hour (else `Failed`); the pod's
/// entitlement ([`check_entitlement`]: the live pod, Node and ServiceAccount match the
/// request, the pod mounts a `podCertificate` source for this signer and key type); the
/// identity (SPIFFE ID; the names of the selecting Services, pending while a Service the
/// pod chose does not select it; the PodIdentity); the CA is valid now. The leaf is then
/// signed and checked against the request once more (validity, key, issuer name, the
/// PodIdentity and issuing cluster read back) before it is returned.
pub fn issue(
    request: &IssuanceRequest,
    config: &SignerConfig,
    ca: &SigningCa,
    snapshot: &PodSnapshot,
    now: SystemTime,
) -> Result<Issued, NotIssued> {
    if request.signer_name != config.name {
        return Err(Error::SignerMismatch {
            requested: request.signer_name.clone(),
            configured: config.name.clone(),
        }
        .into());
    }

    let recognised: &[&str] = if config.issues_dns_names() {
        &[SERVICES_ANNOTATION]
    } else {
        &[]
    };
    let unknown: Vec<&str> = request
        .unverified_user_annotations
        .keys()
        .map(String::as_str)
        .filter(|k| !recognised.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(Denial::new(
            DenialReason::InvalidUnverifiedUserAnnotations,
            if recognised.is_empty() {
                format!(
                    "signer {} recognises no unverifiedUserAnnotations keys; remove {}",
                    config.name,
                    unknown.join(", ")
                )
            } else {
                format!(
                    "signer {} recognises only the unverifiedUserAnnotations key {}; remove {}",
                    config.name,
                    recognised.join(", "),
                    unknown.join(", ")
                )
            },
        )
        .into());
    }
    let chosen = if config.issues_dns_names() {
        chosen_services(&request.unverified_user_annotations)?
    } else {
        None
    };

    let key = RequestedKey::verify(
        &request.key_material,
        &request.pod_uid,
        &config.allowed_key_types,
    )?;

    let max_expiration = request
        .max_expiration_seconds
        .unwrap_or(DEFAULT_MAX_EXPIRATION_SECONDS);
    let max_expiration = Duration::from_secs(u64::try_from(max_expiration).unwrap_or(0));
    if max_expiration < MIN_LIFETIME {
        return Err(NotIssued::Failed(Failure {
            reason: FailureReason::MaxExpirationTooShort,
            message: format!(
                "spec.maxExpirationSeconds is {}s, but kube-apiserver only accepts certificates living at least {}s",
                max_expiration.as_secs(),
                MIN_LIFETIME.as_secs()
            ),
        }));
    }

    let pod = check_entitlement(request, key.key_type(), snapshot)?;

    let mut subject = DistinguishedName::new();
    let mut extensions = Vec::new();
    let mut pod_identity = None;
    let mut left_out = Vec::new();
    let mut dns = |pod: &PodInfo| {
        let names = dns_names(pod, &snapshot.services, chosen.as_ref(), &config.dns)
            .map_err(NotIssued::Pending)?;
        left_out = names.left_out;
        Ok::<_, NotIssued>(names.names)
    };
    let (sans, identities) = match &config.kind {
        SignerKind::Spiffe { trust_domain } => spiffe_san(request, trust_domain)?,
        SignerKind::ServiceDns => {
            let names = dns(pod)?;
            if names.is_empty() {
                // A certificate without SANs is useless, and kubelet would keep it until
                // beginRefreshAt (up to a day). Never deny either: a Service may be
                // (re)created or its selector fixed at any time, and a denial would be
                // final for the pod.
                return Err(NotIssued::Pending(Pending::new(
                    PendingReason::NoMatchingService,
                    format!(
                        "no Service of type ClusterIP, NodePort or LoadBalancer with a non-empty selector selects pod {}/{}",
                        pod.namespace, pod.name
                    ),
                )));
            }
            dns_sans(names)?
        }
        SignerKind::PodIdentity { trust_domain } => {
            let (mut sans, mut identities) = spiffe_san(request, trust_domain)?;
            // DNS names of the Services selecting the pod, if any; none is fine here.
            let (dns_sans, dns_identities) = dns_sans(dns(pod)?)?;
            sans.extend(dns_sans);
            identities.extend(dns_identities);
            // KubeTLS: CN = pod name. X.520 bounds a CN to 64 characters; a longer pod
            // name is left out of the subject (it is in the PodIdentity extension).
            if pod.name.chars().count() <= MAX_COMMON_NAME_LEN {
                subject.push(DnType::CommonName, pod.name.as_str());
            }
            let identity = pod_identity_of(request);
            extensions.push(pod_identity_extension(&identity)?);
            pod_identity = Some(identity);
            (sans, identities)
        }
    };
    if let Some(cluster) = &config.issuing_cluster {
        extensions.push(issuing_cluster_extension(cluster)?);
    }

    let lifetime = config.max_lifetime.min(max_expiration);
    let window = Window::compute(now, lifetime, ca)?;

    let serial = random_serial()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.custom_extensions = extensions;
    params.not_before = OffsetDateTime::from(window.not_before);
    params.not_after = OffsetDateTime::from(window.not_after);
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = if key.key_type().is_rsa() {
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;

    let signing = |source: rcgen::Error| Error::Signing {
        ca_id: ca.id().to_string(),
        source,
    };
    // rcgen re-encodes the key from its algorithm and bits; an encoding it cannot map
    // (e.g. RSA without NULL parameters) is the request's problem, not a retryable one.
    let subject_key = rcgen::SubjectPublicKeyInfo::from_der(key.spki_der()).map_err(|e| {
        Denial::new(
            DenialReason::InvalidPublicKey,
            format!("the public key's encoding cannot be reproduced in a certificate: {e}"),
        )
    })?;
    let leaf = params
        .signed_by(&subject_key, ca.issuer())
        .map_err(signing)?;
    let leaf_der = leaf.der().to_vec();

    self_check(&leaf_der, &key, ca, &window)?;
    identity_check(&leaf_der, pod_identity.as_ref(), config)?;

    let mut certificate_chain = String::new();
    crate::pem::push_certificate(&mut certificate_chain, &leaf_der);
    for der in ca.intermediates_der() {
        crate::pem::push_certificate(&mut certificate_chain, der);
    }

    Ok(Issued {
        certificate_chain,
        leaf_der,
        not_before: window.not_before,
        not_after: window.not_after,
        begin_refresh_at: window.begin_refresh_at,
        serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
        ca_id: ca.id().to_string(),
        key_type: key.key_type(),
        identities,
        left_out,
    })
}

fn spiffe_san(
    request: &IssuanceRequest,
    trust_domain: &spiffe::TrustDomain,
) -> Result<(Vec<SanType>, Vec<String>), NotIssued> {
    let invalid = |why: String| {
        NotIssued::Denied(Denial::new(
            DenialReason::InvalidSpiffeId,
            format!(
                "namespace {:?} and service account {:?} do not form a valid SPIFFE ID: {why}",
                request.namespace, request.service_account_name
            ),
        ))
    };
    let id = SpiffeId::from_segments(
        trust_domain.clone(),
        &[
            "ns",
            &request.namespace,
            "sa",
            &request.service_account_name,
        ],
    )
    .map_err(|e| invalid(e.to_string()))?;
    let uri = id.to_string();
    let ia5 = Ia5String::try_from(uri.clone()).map_err(|e| invalid(e.to_string()))?;
    Ok((vec![SanType::URI(ia5)], vec![uri]))
}

/// DNS SANs for `names` (already checked DNS names).
fn dns_sans(names: Vec<String>) -> Result<(Vec<SanType>, Vec<String>), NotIssued> {
    let mut sans = Vec::with_capacity(names.len());
    for name in &names {
        let ia5 = Ia5String::try_from(name.as_str()).map_err(|e| Error::SelfCheck {
            reason: format!("DNS name {name:?} is not IA5: {e}"),
        })?;
        sans.push(SanType::DnsName(ia5));
    }
    Ok((sans, names))
}

/// The upper bound of a subject CN (X.520 `ub-common-name`).
pub const MAX_COMMON_NAME_LEN: usize = 64;

struct Window {
    not_before: SystemTime,
    not_after: SystemTime,
    begin_refresh_at: SystemTime,
}

impl Window {
    fn compute(now: SystemTime, lifetime: Duration, ca: &SigningCa) -> Result<Window, Error> {
        if now < ca.not_before() || now >= ca.not_after() {
            return Err(Error::CaNotValidNow {
                ca_id: ca.id().to_string(),
                now,
                not_before: ca.not_before(),
                not_after: ca.not_after(),
            });
        }
        // Certificates carry whole seconds; so do the status fields compared with them.
        let now = whole_seconds(now);
        let not_before = now - BACKDATE;
        // Never outlive the CA: a chain is only valid while its root is.
        let not_after = (not_before + lifetime).min(whole_seconds(ca.not_after()));
        let lifetime = not_after.duration_since(not_before).unwrap_or_default();
        if lifetime < MIN_LIFETIME {
            return Err(Error::CaExpiresTooSoon {
                ca_id: ca.id().to_string(),
                not_after: ca.not_after(),
            });
        }
        let earliest = not_before + REFRESH_MARGIN;
        let latest = not_after - REFRESH_MARGIN;
        let begin_refresh_at = (not_after - REFRESH_BEFORE_EXPIRY).clamp(earliest, latest);
        Ok(Window {
            not_before,
            not_after,
            begin_refresh_at,
        })
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// 16 random bytes, positive and without a leading zero byte.
fn random_serial() -> Result<[u8; 16], Error> {
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| Error::SelfCheck {
        reason: "the system random number generator failed".into(),
    })?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    Ok(serial)
}

/// Re-parses the signed leaf: issuer name, public key and validity must be exactly what
/// was meant. A mismatch is a bug or a broken CA; the certificate is never handed out.
fn self_check(
    leaf_der: &[u8],
    key: &RequestedKey,
    ca: &SigningCa,
    window: &Window,
) -> Result<(), Error> {
    let fail = |reason: String| Error::SelfCheck { reason };
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| fail(format!("the leaf does not parse: {e}")))?;
    if leaf.issuer().as_raw() != ca.root_subject_raw() {
        return Err(fail(format!(
            "the leaf's issuer name is not byte-identical to the subject of CA {:?}'s root; chains would not build",
            ca.id()
        )));
    }
    if leaf.public_key().raw != key.spki_der() {
        return Err(fail(
            "the leaf's public key is not the requested key".into(),
        ));
    }
    let nb = SystemTime::from(leaf.validity().not_before.to_datetime());
    let na = SystemTime::from(leaf.validity().not_after.to_datetime());
    if nb != window.not_before || na != window.not_after {
        return Err(fail(
            "the leaf's validity differs from the computed window".into(),
        ));
    }
    Ok(())
}

/// Reads the identity extensions back with podtls' decoders: the pod identity must be
/// exactly the one meant, the issuing cluster the configured one.
fn identity_check(
    leaf_der: &[u8],
    pod_identity: Option<&podtls::PodIdentity>,
    config: &SignerConfig,
) -> Result<(), Error> {
    let fail = |reason: String| Error::SelfCheck { reason };
    let read = podtls::PodIdentity::from_own_certificate(leaf_der)
        .map_err(|e| fail(format!("the leaf's PodIdentity does not read back: {e}")))?;
    if read.as_ref() != pod_identity {
        return Err(fail("the leaf's PodIdentity is not the one meant".into()));
    }
    let (_, leaf) = X509Certificate::from_der(leaf_der)
        .map_err(|e| fail(format!("the leaf does not parse: {e}")))?;
    let sia: Vec<_> = leaf
        .extensions()
        .iter()
        .filter(|e| e.oid.to_id_string() == podtls::certificate::SUBJECT_INFO_ACCESS_OID)
        .collect();
    let cluster = match sia.as_slice() {
        [] => None,
        [ext] => podtls::IssuingCluster::from_sia_der(ext.value).map_err(|e| {
            fail(format!(
                "the leaf's issuing cluster does not read back: {e}"
            ))
        })?,
        _ => return Err(fail("the leaf has two SIA extensions".into())),
    };
    if cluster.as_ref() != config.issuing_cluster.as_ref() {
        return Err(fail(
            "the leaf's issuing cluster is not the configured one".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "issuer_tests.rs"]
mod tests;
