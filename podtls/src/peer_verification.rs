//! Pure peer verification: SPIFFE chain checks against per-trust-domain
//! bundles, then authorization. No I/O, explicit `now`.
//!
//! What is checked, in order:
//! 1. the leaf is a valid X509-SVID ([`crate::svid::validate_svid_leaf`]);
//! 2. its trust domain is configured and its bundle is loaded;
//! 3. the chain builds from the leaf through the presented intermediates to an
//!    anchor of *that* bundle (rustls-webpki: signatures, validity at `now`,
//!    basic constraints, name constraints, and the EKU for the given usage);
//!    the anchor's own certificate must be valid at `now` and its
//!    pathLenConstraint must allow the chain's intermediates
//!    ([`TrustBundle::check_path`]; WebPKI treats an anchor as a bare key,
//!    go-spiffe and Go's crypto/x509 do not, and neither do we);
//! 4. the [`Authorizer`] allows the ID.
//!
//! Left out on purpose: host names (a SPIFFE peer is identified by its URI SAN
//! alone, per the X509-SVID spec) and revocation (none is published for pod
//! certificates; short lifetimes stand in for it).
//!
//! [`verify_dns_server`] is the same chain check for the `service-dns` flow,
//! plus the server-name check, minus SPIFFE.

use std::cell::Cell;
use std::sync::Arc;

use rustls::CertificateError;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::authorizer::{Authorizer, PeerClaims, Unauthorized};
use crate::cert_info::CertInfo;
use crate::issuing_cluster::{IssuingCluster, IssuingClusterError};
use crate::pod_identity::{PodIdentity, PodIdentityError};
use crate::spiffe_bundles::SpiffeBundles;
use crate::spiffe_id::SpiffeId;
use crate::svid::SvidError;
use crate::trust_bundle::{AnchorRejection, TrustBundle};

/// A verified peer: what its leaf says, read only after the chain verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The peer's leaf certificate.
    pub certificate: CertInfo,
    /// The leaf's PodIdentity extension (the pod-identity signer's certificates).
    pub pod_identity: Option<PodIdentity>,
    /// The cluster that issued the leaf (this project's signers name it).
    pub issuing_cluster: Option<IssuingCluster>,
}

impl PeerIdentity {
    /// The peer's SPIFFE ID, if its certificate is an X509-SVID.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.certificate.spiffe_id.as_ref()
    }

    /// The pod the peer's certificate was issued to (namespace, ServiceAccount, pod,
    /// node and their UIDs), if the leaf carries the PodIdentity extension.
    pub fn pod_identity(&self) -> Option<&PodIdentity> {
        self.pod_identity.as_ref()
    }

    /// The ServiceAccount issuer URL of the cluster that issued the peer's
    /// certificate, if the leaf names one.
    pub fn issuing_cluster(&self) -> Option<&IssuingCluster> {
        self.issuing_cluster.as_ref()
    }

    /// The identity of a leaf whose chain has been verified (by the caller).
    pub(crate) fn from_verified_leaf(der: &[u8]) -> Result<PeerIdentity, VerifyError> {
        let (_, leaf) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| VerifyError::Svid(SvidError::Malformed(e.to_string())))?;
        let certificate = CertInfo::from_parsed(&leaf);
        let (pod_identity, issuing_cluster) = claims_of(&leaf, &certificate.serial)?;
        Ok(PeerIdentity {
            certificate,
            pod_identity,
            issuing_cluster,
        })
    }
}

/// The pod identity and issuing cluster of a verified leaf. A malformed or repeated
/// extension refuses the peer: a CA we trust vouched for something we cannot read, and
/// guessing could attribute the wrong pod.
fn claims_of(
    leaf: &x509_parser::certificate::X509Certificate<'_>,
    serial: &str,
) -> Result<(Option<PodIdentity>, Option<IssuingCluster>), VerifyError> {
    let bad = |source: ExtensionError| VerifyError::Extension {
        serial: serial.to_string(),
        source,
    };
    let pod =
        PodIdentity::from_certificate(leaf).map_err(|e| bad(ExtensionError::PodIdentity(e)))?;
    let cluster = IssuingCluster::from_certificate(leaf)
        .map_err(|e| bad(ExtensionError::IssuingCluster(e)))?;
    Ok((pod, cluster))
}

/// Which side the peer is on, selecting the required extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer is a TLS server (serverAuth EKU).
    Server,
    /// The peer is a TLS client (clientAuth EKU).
    Client,
}

/// Why a peer was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The peer sent no certificate.
    #[error("peer presented no certificate")]
    NoCertificate,
    /// The leaf is not an X509-SVID.
    #[error("peer certificate is not a valid X509-SVID: {0}")]
    Svid(#[from] SvidError),
    /// The peer's trust domain is not one we trust.
    #[error("peer trust domain {trust_domain:?} is not configured")]
    UnknownTrustDomain {
        /// The peer's trust domain.
        trust_domain: String,
    },
    /// The trust domain's bundle was withdrawn from the credential folder
    /// (file removed or emptied): federation with it has ended.
    #[error("peer trust domain {trust_domain:?} is de-federated: its trust bundle was removed or emptied")]
    DeFederated {
        /// The peer's trust domain.
        trust_domain: String,
    },
    /// The trust domain is configured but its bundle has not loaded (fail closed).
    #[error("trust bundle for {trust_domain:?} is not loaded yet")]
    BundleNotLoaded {
        /// The trust domain.
        trust_domain: String,
    },
    /// The chain does not verify against the trust domain's bundle.
    #[error(
        "certificate chain of {id} (serial {serial}) does not verify against the {trust_domain:?} bundle: {detail}"
    )]
    Chain {
        /// The peer's claimed ID.
        id: String,
        /// The serial of the peer's leaf (lowercase hex).
        serial: String,
        /// Its trust domain.
        trust_domain: String,
        /// What failed, in one word (selects the TLS alert).
        failure: ChainFailure,
        /// The chain verifier's reason.
        detail: String,
    },
    /// The server's DNS-name certificate does not verify against the roots
    /// (the `service-dns` flow).
    #[error("server certificate (serial {serial}) does not verify against the roots: {detail}")]
    DnsChain {
        /// The serial of the server's leaf (lowercase hex), if it parsed.
        serial: String,
        /// What failed, in one word (selects the TLS alert).
        failure: ChainFailure,
        /// The chain verifier's reason.
        detail: String,
    },
    /// The DNS roots have not loaded yet (fail closed).
    #[error("no DNS trust roots are loaded yet ({what})")]
    RootsNotLoaded {
        /// The roots' store.
        what: String,
    },
    /// The chain verified, but the leaf's PodIdentity or issuing-cluster extension is
    /// malformed or repeated: the peer is refused (never accepted without it).
    #[error("certificate (serial {serial}) verified, but carries a malformed identity extension: {source}")]
    Extension {
        /// The serial of the peer's leaf (lowercase hex).
        serial: String,
        /// Which extension, and what is wrong with it.
        #[source]
        source: ExtensionError,
    },
    /// Verified but not allowed.
    #[error(transparent)]
    Unauthorized(#[from] Unauthorized),
}

/// Which identity extension of a verified leaf could not be read
/// ([`VerifyError::Extension`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// The PodIdentity extension.
    #[error("{0}")]
    PodIdentity(#[source] PodIdentityError),
    /// The issuing-cluster entry of the subjectInfoAccess extension.
    #[error("{0}")]
    IssuingCluster(#[source] IssuingClusterError),
}

/// The class of a chain failure: it selects the TLS alert the peer receives
/// (`certificate_expired`, `unknown_ca`, `bad_certificate`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainFailure {
    /// The leaf, an intermediate or the anchor is past its validity window.
    Expired,
    /// The leaf, an intermediate or the anchor is not valid yet.
    NotYetValid,
    /// No path to an anchor of the bundle.
    UnknownIssuer,
    /// A signature in the chain does not verify.
    BadSignature,
    /// The leaf is not valid for the expected usage (EKU) or the name.
    WrongUsage,
    /// A certificate could not be parsed, or violates a constraint (basic
    /// constraints, path length, name constraints).
    BadCertificate,
}

impl ChainFailure {
    fn of(e: &webpki::Error) -> Self {
        use webpki::Error as E;
        #[allow(deprecated)]
        match e {
            E::CertExpired { .. } | E::InvalidCertValidity => ChainFailure::Expired,
            E::CertNotValidYet { .. } => ChainFailure::NotYetValid,
            E::UnknownIssuer => ChainFailure::UnknownIssuer,
            E::InvalidSignatureForPublicKey
            | E::UnsupportedSignatureAlgorithm
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKey
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
            | E::SignatureAlgorithmMismatch => ChainFailure::BadSignature,
            E::RequiredEkuNotFound
            | E::RequiredEkuNotFoundContext(_)
            | E::EmptyEkuExtension
            | E::CertNotValidForName(_) => ChainFailure::WrongUsage,
            _ => ChainFailure::BadCertificate,
        }
    }

    /// The rustls certificate error (and so the TLS alert) for this failure.
    pub fn certificate_error(self) -> CertificateError {
        match self {
            ChainFailure::Expired => CertificateError::Expired,
            ChainFailure::NotYetValid => CertificateError::NotValidYet,
            ChainFailure::UnknownIssuer => CertificateError::UnknownIssuer,
            ChainFailure::BadSignature => CertificateError::BadSignature,
            ChainFailure::WrongUsage => CertificateError::InvalidPurpose,
            ChainFailure::BadCertificate => CertificateError::BadEncoding,
        }
    }
}

impl VerifyError {
    /// The rustls certificate error this rejection is reported as, which
    /// selects the TLS alert the peer receives: `certificate_expired`,
    /// `unknown_ca`, `bad_certificate`, `decrypt_error`,
    /// `unsupported_certificate`, `access_denied` for an unauthorized ID,
    /// `certificate_required` is rustls' own for a missing certificate.
    pub fn certificate_error(&self) -> CertificateError {
        match self {
            VerifyError::NoCertificate | VerifyError::Svid(_) | VerifyError::Extension { .. } => {
                CertificateError::BadEncoding
            }
            VerifyError::UnknownTrustDomain { .. }
            | VerifyError::DeFederated { .. }
            | VerifyError::BundleNotLoaded { .. }
            | VerifyError::RootsNotLoaded { .. } => CertificateError::UnknownIssuer,
            VerifyError::Chain { failure, .. } | VerifyError::DnsChain { failure, .. } => {
                failure.certificate_error()
            }
            VerifyError::Unauthorized(_) => CertificateError::ApplicationVerificationFailure,
        }
    }
}

/// Verifies a SPIFFE peer and authorizes it.
///
/// # Errors
/// Any [`VerifyError`]; authorization runs only after the chain verified.
pub fn verify_spiffe_peer(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    bundles: &SpiffeBundles,
    authorizer: &Authorizer,
    role: PeerRole,
    now: UnixTime,
) -> Result<PeerIdentity, VerifyError> {
    let (_, leaf) = x509_parser::parse_x509_certificate(end_entity)
        .map_err(|e| VerifyError::Svid(SvidError::Malformed(e.to_string())))?;
    let id = crate::svid::validate_svid_leaf(&leaf)?;
    let bundle = bundles.current(id.trust_domain())?;
    let usage = match role {
        PeerRole::Server => webpki::KeyUsage::server_auth(),
        PeerRole::Client => webpki::KeyUsage::client_auth(),
    };
    let mut certificate = CertInfo::from_parsed(&leaf);
    let fail = |(failure, detail)| VerifyError::Chain {
        id: id.to_string(),
        serial: certificate.serial.clone(),
        trust_domain: id.trust_domain().to_string(),
        failure,
        detail,
    };
    let ee = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| fail((ChainFailure::BadCertificate, e.to_string())))?;
    verify_chain(&ee, intermediates, &bundle, usage, now).map_err(fail)?;
    // Only now, with the chain verified, is anything else in the leaf believed.
    let (pod_identity, issuing_cluster) = claims_of(&leaf, &certificate.serial)?;
    authorizer
        .authorize_claims(&PeerClaims {
            id: &id,
            pod: pod_identity.as_ref(),
            issuing_cluster: issuing_cluster.as_ref(),
            chain: Some((end_entity, intermediates)),
        })
        .map_err(|mut u| {
            u.serial = Some(certificate.serial.clone());
            u
        })?;
    certificate.spiffe_id = Some(id);
    Ok(PeerIdentity {
        certificate,
        pod_identity,
        issuing_cluster,
    })
}

/// Verifies a server certificate for `server_name` against DNS trust roots
/// (the `service-dns` flow): the chain as in [`verify_spiffe_peer`] (anchor
/// validity and path length included), the serverAuth EKU, and the name.
///
/// # Errors
/// [`VerifyError::DnsChain`].
pub fn verify_dns_server(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    roots: &TrustBundle,
    now: UnixTime,
) -> Result<PeerIdentity, VerifyError> {
    check_dns_server(end_entity, intermediates, server_name, roots, now)?;
    PeerIdentity::from_verified_leaf(end_entity)
}

/// [`verify_dns_server`] without the summary of the accepted leaf (the
/// handshake path needs only the verdict; the leaf is parsed for its serial
/// only when it is rejected).
pub(crate) fn check_dns_server(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    roots: &TrustBundle,
    now: UnixTime,
) -> Result<(), VerifyError> {
    let fail = |(failure, detail)| VerifyError::DnsChain {
        serial: CertInfo::from_der(end_entity)
            .map(|c| c.serial)
            .unwrap_or_default(),
        failure,
        detail,
    };
    let ee = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| fail((ChainFailure::BadCertificate, e.to_string())))?;
    verify_chain(
        &ee,
        intermediates,
        roots,
        webpki::KeyUsage::server_auth(),
        now,
    )
    .map_err(fail)?;
    ee.verify_is_valid_for_subject_name(server_name)
        .map_err(|e| fail((ChainFailure::of(&e), e.to_string())))
}

/// WebPKI path building against `bundle`, with the bundle's anchor rules
/// applied to every candidate path (a rejected path lets WebPKI try
/// another).
fn verify_chain(
    ee: &webpki::EndEntityCert<'_>,
    intermediates: &[CertificateDer<'_>],
    bundle: &TrustBundle,
    usage: webpki::KeyUsage,
    now: UnixTime,
) -> Result<(), (ChainFailure, String)> {
    // The last anchor rule that refused a path, to name it in the error.
    let refused: Cell<Option<AnchorRejection>> = Cell::new(None);
    let anchor_rules = |path: &webpki::VerifiedPath<'_>| {
        let intermediates = path.intermediate_certificates().count();
        bundle
            .check_path(path.anchor(), intermediates, now)
            .map_err(|rejection| {
                let e = match rejection {
                    AnchorRejection::OutsideValidity { not_after, .. }
                        if now.as_secs() > not_after =>
                    {
                        webpki::Error::CertExpired {
                            time: now,
                            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                                not_after,
                            )),
                        }
                    }
                    AnchorRejection::OutsideValidity { not_before, .. } => {
                        webpki::Error::CertNotValidYet {
                            time: now,
                            not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                                not_before,
                            )),
                        }
                    }
                    AnchorRejection::PathTooLong { .. } | AnchorRejection::NotInBundle => {
                        webpki::Error::PathLenConstraintViolated
                    }
                };
                refused.set(Some(rejection));
                e
            })
    };
    ee.verify_for_usage(
        crate::provider().signature_verification_algorithms.all,
        bundle.anchors(),
        intermediates,
        now,
        usage,
        None,
        Some(&anchor_rules),
    )
    .map(|_| ())
    .map_err(|e| {
        let failure = ChainFailure::of(&e);
        match refused.take() {
            Some(rejection) => (failure, format!("{e} ({rejection})")),
            None => (failure, e.to_string()),
        }
    })
}

/// The outcome of client authentication on a server connection.
#[derive(Debug, Clone)]
pub enum PeerAuth {
    /// The client presented no certificate (possible only with optional client auth).
    Anonymous,
    /// The client's SPIFFE certificate verified and passed the policy.
    Verified(Arc<PeerIdentity>),
    /// The client presented a certificate that was rejected (possible only
    /// with optional client auth, where rejection is reported to the
    /// application instead of failing the handshake).
    Rejected(Arc<VerifyError>),
}

impl PeerAuth {
    /// The verified identity, if any.
    pub fn identity(&self) -> Option<&PeerIdentity> {
        match self {
            PeerAuth::Verified(id) => Some(id),
            _ => None,
        }
    }
}
