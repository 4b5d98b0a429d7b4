//! Pure peer verification: SPIFFE chain checks against per-trust-domain
//! bundles, then authorization. No I/O, explicit `now`.
//!
//! What is checked, in order:
//! 1. the leaf is a valid X509-SVID ([`crate::svid::validate_svid_leaf`]);
//! 2. its trust domain is configured and its bundle is loaded;
//! 3. the chain builds from the leaf through the presented intermediates to an
//!    anchor of *that* bundle (rustls-webpki: signatures, validity at `now`,
//!    basic constraints, name constraints, and the EKU for the given usage);
//! 4. the [`Authorizer`] allows the ID.
//!
//! Left out on purpose: host names (a SPIFFE peer is identified by its URI SAN
//! alone, per the X509-SVID spec) and revocation (none is published for pod
//! certificates; short lifetimes stand in for it).

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, UnixTime};

use crate::authorizer::{Authorizer, Unauthorized};
use crate::cert_info::CertInfo;
use crate::spiffe_bundles::SpiffeBundles;
use crate::spiffe_id::SpiffeId;
use crate::svid::SvidError;

/// A verified peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer's leaf certificate.
    pub certificate: CertInfo,
}

impl PeerIdentity {
    /// The peer's SPIFFE ID, if its certificate is an X509-SVID.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.certificate.spiffe_id.as_ref()
    }
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
    /// The trust domain is configured but its bundle has not loaded (fail closed).
    #[error("trust bundle for {trust_domain:?} is not loaded yet")]
    BundleNotLoaded {
        /// The trust domain.
        trust_domain: String,
    },
    /// The chain does not verify against the trust domain's bundle.
    #[error(
        "certificate chain of {id} does not verify against the {trust_domain:?} bundle: {detail}"
    )]
    Chain {
        /// The peer's claimed ID.
        id: String,
        /// Its trust domain.
        trust_domain: String,
        /// The chain verifier's reason.
        detail: String,
    },
    /// Verified but not allowed.
    #[error(transparent)]
    Unauthorized(#[from] Unauthorized),
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
    verify_chain(end_entity, intermediates, &bundle, role, now).map_err(|detail| {
        VerifyError::Chain {
            id: id.to_string(),
            trust_domain: id.trust_domain().to_string(),
            detail,
        }
    })?;
    authorizer.authorize(&id)?;
    let mut certificate = CertInfo::from_parsed(&leaf);
    certificate.spiffe_id = Some(id);
    Ok(PeerIdentity { certificate })
}

fn verify_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    bundle: &crate::trust_bundle::TrustBundle,
    role: PeerRole,
    now: UnixTime,
) -> Result<(), String> {
    let ee = webpki::EndEntityCert::try_from(end_entity).map_err(|e| format!("{e:?}"))?;
    let usage = match role {
        PeerRole::Server => webpki::KeyUsage::server_auth(),
        PeerRole::Client => webpki::KeyUsage::client_auth(),
    };
    ee.verify_for_usage(
        crate::provider().signature_verification_algorithms.all,
        bundle.anchors(),
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("{e}"))
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
