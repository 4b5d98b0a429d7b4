//! Sets of CA certificates to verify peers against.

use std::collections::BTreeSet;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};

use crate::error::{Error, Origin};
use crate::pem;

/// A deduplicated set of CA certificates, as projected by kubelet from
/// ClusterTrustBundles (order is not meaningful).
///
/// A bundle is never empty: an empty PEM file is an error
/// ([`Error::EmptyTrustBundle`]), so an empty projection keeps the last good
/// bundle, and before the first good one every verification fails (closed).
///
/// An anchor is more than its key here (as in go-spiffe and Go's crypto/x509,
/// unlike plain WebPKI): a chain is accepted through an anchor only while the
/// anchor's own certificate is inside its validity window, and only if the
/// chain has no more intermediates than the anchor's `pathLenConstraint`
/// allows (see [`TrustBundle::check_path`]).
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    /// The limits of `anchors[i]`, from its certificate.
    limits: Vec<AnchorLimits>,
}

/// What an anchor's own certificate says about the chains it may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AnchorLimits {
    not_before: u64,
    not_after: u64,
    /// `pathLenConstraint` of its basic constraints, when present.
    max_intermediates: Option<u32>,
}

/// Why [`TrustBundle::check_path`] refused a chain that WebPKI accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorRejection {
    /// The anchor's certificate is outside its validity window.
    #[error("trust anchor is outside its validity window (valid from {not_before} to {not_after}, unix seconds)")]
    OutsideValidity {
        /// Start of the anchor's validity (unix seconds).
        not_before: u64,
        /// End of the anchor's validity (unix seconds).
        not_after: u64,
    },
    /// The chain has more intermediates than the anchor's pathLenConstraint allows.
    #[error("chain has {intermediates} intermediate(s), the trust anchor allows {allowed}")]
    PathTooLong {
        /// Intermediates in the chain.
        intermediates: usize,
        /// The anchor's pathLenConstraint.
        allowed: u32,
    },
    /// The chain ended at an anchor that is not in this bundle (cannot
    /// happen with this bundle's anchors; kept as a fail-closed answer).
    #[error("trust anchor is not part of the bundle")]
    NotInBundle,
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("authorities", &self.certs.len())
            .finish()
    }
}

impl TrustBundle {
    /// Parses a PEM file of CA certificates.
    pub fn from_pem(pem: &[u8], origin: &Origin) -> Result<Self, Error> {
        let blocks = pem::parse_blocks(pem, origin)?;
        Self::from_der(blocks.certs, origin)
    }

    /// Builds a bundle from DER certificates (duplicates are dropped).
    pub fn from_der(certs: Vec<CertificateDer<'static>>, origin: &Origin) -> Result<Self, Error> {
        let mut seen = BTreeSet::new();
        let certs: Vec<_> = certs
            .into_iter()
            .filter(|c| seen.insert(c.as_ref().to_vec()))
            .collect();
        if certs.is_empty() {
            return Err(Error::EmptyTrustBundle {
                origin: origin.clone(),
            });
        }
        let mut anchors = Vec::with_capacity(certs.len());
        let mut limits = Vec::with_capacity(certs.len());
        for (index, cert) in certs.iter().enumerate() {
            let bad = |source: Box<dyn std::error::Error + Send + Sync>| Error::TrustAnchor {
                origin: origin.clone(),
                index,
                source,
            };
            let anchor = webpki::anchor_from_trusted_cert(cert).map_err(|e| bad(Box::new(e)))?;
            anchors.push(anchor.to_owned());
            limits.push(AnchorLimits::of(cert).map_err(bad)?);
        }
        Ok(TrustBundle {
            certs,
            anchors,
            limits,
        })
    }

    /// The anchor rules WebPKI leaves out, for a chain that ends at one of
    /// this bundle's anchors: the anchor's certificate must be valid at
    /// `now`, and the chain's intermediates must fit its pathLenConstraint.
    ///
    /// # Errors
    /// [`AnchorRejection`] naming the rule that failed.
    pub fn check_path(
        &self,
        anchor: &TrustAnchor<'_>,
        intermediates: usize,
        now: UnixTime,
    ) -> Result<(), AnchorRejection> {
        // Two certificates of one key and name (a CA re-issued with another
        // validity) make equal anchors: the path is fine if either allows it.
        let mut verdict = Err(AnchorRejection::NotInBundle);
        for (a, limits) in self.anchors.iter().zip(&self.limits) {
            if a.subject == anchor.subject
                && a.subject_public_key_info == anchor.subject_public_key_info
            {
                verdict = limits.allow(intermediates, now.as_secs());
                if verdict.is_ok() {
                    break;
                }
            }
        }
        verdict
    }

    /// The CA certificates.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The trust anchors derived from the certificates.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The number of distinct CA certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Always false: bundles are never empty. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

impl AnchorLimits {
    fn allow(&self, intermediates: usize, now: u64) -> Result<(), AnchorRejection> {
        if now < self.not_before || now > self.not_after {
            return Err(AnchorRejection::OutsideValidity {
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        match self.max_intermediates {
            Some(allowed) if intermediates as u64 > u64::from(allowed) => {
                Err(AnchorRejection::PathTooLong {
                    intermediates,
                    allowed,
                })
            }
            _ => Ok(()),
        }
    }

    fn of(cert: &CertificateDer<'_>) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)?;
        let validity = parsed.validity();
        let secs = |t: i64| u64::try_from(t).unwrap_or(0);
        let max_intermediates = parsed
            .basic_constraints()?
            .and_then(|bc| bc.value.path_len_constraint);
        Ok(AnchorLimits {
            not_before: secs(validity.not_before.timestamp()),
            not_after: secs(validity.not_after.timestamp()),
            max_intermediates,
        })
    }
}
