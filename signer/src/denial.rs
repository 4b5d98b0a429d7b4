//! The ways a request can end without a certificate: denied, failed, or not yet.
//!
//! Kubelet treats a `Denied` or `Failed` PodCertificateRequest as a permanent error for
//! that pod's volume (`pkg/kubelet/podcertificate/podcertificatemanager.go`:
//! `credStateDenied` / `credStateFailed`, "this is a permanent error state for the
//! pod"). So a terminal condition is only written for problems that retrying the same
//! request cannot fix; anything that may resolve by itself is [`Pending`].

use std::fmt;
use std::time::SystemTime;

use crate::Error;

/// Why a request was denied (`Denied` condition, status `True`).
///
/// The CamelCase [`as_str`](DenialReason::as_str) is the condition's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenialReason {
    /// The key type is not one this signer is configured to accept (reason defined by
    /// Kubernetes: `UnsupportedKeyType`). The message names the supported types.
    UnsupportedKeyType,
    /// `spec.unverifiedUserAnnotations` holds a key this signer does not recognise
    /// (reason defined by Kubernetes: `InvalidUnverifiedUserAnnotations`).
    InvalidUnverifiedUserAnnotations,
    /// `spec.pkixPublicKey` is not a well-formed SubjectPublicKeyInfo.
    InvalidPublicKey,
    /// `spec.proofOfPossession` does not verify against `spec.pkixPublicKey` over the pod UID.
    InvalidProofOfPossession,
    /// `spec.stubPKCS10Request` is not a well-formed, correctly self-signed PKCS#10 request.
    InvalidStubPkcs10Request,
    /// Neither or both of `stubPKCS10Request` and `pkixPublicKey` are set.
    InvalidKeyMaterial,
    /// The pod named by the request does not exist (or has another UID) and the grace
    /// period for caches to catch up is over.
    PodNotFound,
    /// No Service selects the pod and the grace period is over (service-dns signer).
    NoMatchingService,
    /// The request's namespace or service account cannot form a valid SPIFFE ID.
    InvalidSpiffeId,
}

impl DenialReason {
    /// The condition `reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            DenialReason::UnsupportedKeyType => "UnsupportedKeyType",
            DenialReason::InvalidUnverifiedUserAnnotations => "InvalidUnverifiedUserAnnotations",
            DenialReason::InvalidPublicKey => "InvalidPublicKey",
            DenialReason::InvalidProofOfPossession => "InvalidProofOfPossession",
            DenialReason::InvalidStubPkcs10Request => "InvalidStubPKCS10Request",
            DenialReason::InvalidKeyMaterial => "InvalidKeyMaterial",
            DenialReason::PodNotFound => "PodNotFound",
            DenialReason::NoMatchingService => "NoMatchingService",
            DenialReason::InvalidSpiffeId => "InvalidSpiffeID",
        }
    }
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the signer refuses: write a `Denied` condition with this reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The condition reason.
    pub reason: DenialReason,
    /// The condition message, for humans.
    pub message: String,
}

impl Denial {
    pub(crate) fn new(reason: DenialReason, message: impl Into<String>) -> Self {
        Denial {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied ({}): {}", self.reason, self.message)
    }
}

/// Why the signer cannot issue a certificate the API server would accept for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureReason {
    /// `spec.maxExpirationSeconds` is below one hour, the API server's minimum lifetime
    /// for an issued certificate, so no certificate can satisfy both bounds.
    MaxExpirationTooShort,
}

impl FailureReason {
    /// The condition `reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::MaxExpirationTooShort => "MaxExpirationTooShort",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the signer cannot serve: write a `Failed` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The condition reason.
    pub reason: FailureReason,
    /// The condition message, for humans.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed ({}): {}", self.reason, self.message)
    }
}

/// Why a request is left pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PendingReason {
    /// The pod is not (yet) in the snapshot, or has another UID.
    PodNotInSnapshot,
    /// No Service selects the pod (yet).
    NoMatchingService,
}

impl PendingReason {
    /// A CamelCase label, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingReason::PodNotInSnapshot => "PodNotInSnapshot",
            PendingReason::NoMatchingService => "NoMatchingService",
        }
    }
}

/// A request that may become issuable: write nothing, look again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// What is missing.
    pub reason: PendingReason,
    /// Details, for logs.
    pub message: String,
    /// When the same situation turns into a denial (request creation + grace period), if
    /// the request's creation time is known. A controller should look again by then.
    pub deny_at: Option<SystemTime>,
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pending ({}): {}", self.reason.as_str(), self.message)
    }
}

/// Every outcome of [`issue`](crate::issue) other than a certificate.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotIssued {
    /// Terminal: write a `Denied` condition.
    Denied(Denial),
    /// Terminal: write a `Failed` condition.
    Failed(Failure),
    /// Not terminal: write nothing, retry later (see [`Pending::deny_at`]).
    Pending(Pending),
    /// Not terminal: the signer's own problem (CA not valid now, signing failed, a
    /// request routed to the wrong signer). Retry with backoff; never a `Failed`.
    Error(Error),
}

impl NotIssued {
    /// The denial, if this is one.
    pub fn as_denial(&self) -> Option<&Denial> {
        match self {
            NotIssued::Denied(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the outcome must be written as a terminal condition.
    pub fn is_terminal(&self) -> bool {
        matches!(self, NotIssued::Denied(_) | NotIssued::Failed(_))
    }
}

impl fmt::Display for NotIssued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotIssued::Denied(d) => d.fmt(f),
            NotIssued::Failed(x) => x.fmt(f),
            NotIssued::Pending(p) => p.fmt(f),
            NotIssued::Error(e) => write!(f, "error: {e}"),
        }
    }
}

impl From<Denial> for NotIssued {
    fn from(d: Denial) -> Self {
        NotIssued::Denied(d)
    }
}

impl From<Error> for NotIssued {
    fn from(e: Error) -> Self {
        NotIssued::Error(e)
    }
}
