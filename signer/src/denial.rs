//! The ways a request can end without a certificate: denied, failed, or not yet.
//!
//! Kubelet treats a `Denied` or `Failed` PodCertificateRequest as a permanent error for
//! that pod's volume (`pkg/kubelet/podcertificate/podcertificatemanager.go`:
//! `credStateDenied` / `credStateFailed`, "this is a permanent error state for the
//! pod"). So a terminal condition is only written for problems that retrying the same
//! request cannot fix; anything that may resolve by itself is [`Pending`].

use std::fmt;

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
    /// The pod with the request's name has another UID: the request is for a pod that
    /// no longer exists (confirmed by a live read, never from a cache alone).
    PodUidMismatch,
    /// The pod is terminating (`metadata.deletionTimestamp` set).
    PodTerminating,
    /// The pod is the mirror of a static pod; those get no pod certificates.
    MirrorPod,
    /// `spec.serviceAccountName` is not the pod's ServiceAccount.
    ServiceAccountMismatch,
    /// `spec.serviceAccountUID` is not the UID of the ServiceAccount it names.
    ServiceAccountUidMismatch,
    /// `spec.nodeName` is not the node the pod is bound to.
    NodeMismatch,
    /// `spec.nodeUID` is not the UID of the Node it names.
    NodeUidMismatch,
    /// The pod's spec has no `podCertificate` projected volume source for this signer
    /// and the requested key type: nothing in the pod asked for this certificate.
    NoPodCertificateSource,
    /// The request's namespace or service account cannot form a valid SPIFFE ID.
    InvalidSpiffeId,
    /// CertificateSigningRequest path: `spec.username` is not a ServiceAccount
    /// (`system:serviceaccount:<namespace>:<name>`).
    RequesterNotServiceAccount,
    /// CertificateSigningRequest path: the requester's token is not bound to a pod
    /// (`spec.extra` lacks exactly one pod name and one pod UID, or holds several node
    /// names or UIDs).
    RequesterNotPodBound,
    /// CertificateSigningRequest path: `spec.expirationSeconds` is below
    /// kube-apiserver's minimum of 600.
    InvalidExpirationSeconds,
    /// CertificateSigningRequest path: `spec.request` is not one PEM PKCS#10 request
    /// whose self-signature verifies.
    InvalidCertificateRequest,
    /// CertificateSigningRequest path: `spec.usages` asks for a usage the signer's
    /// certificates do not carry.
    UsagesNotAllowed,
    /// CertificateSigningRequest path: the pod the requester's token is bound to does
    /// not exist (read live).
    PodNotFound,
    /// CertificateSigningRequest path: the pod the requester's token is bound to is not
    /// bound to a node (read live).
    PodNotBound,
    /// CertificateSigningRequest path: the request asks for names (subject or SANs)
    /// other than exactly those the pod is entitled to.
    NamesNotEntitled,
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
            DenialReason::PodUidMismatch => "PodUIDMismatch",
            DenialReason::PodTerminating => "PodTerminating",
            DenialReason::MirrorPod => "MirrorPod",
            DenialReason::ServiceAccountMismatch => "ServiceAccountMismatch",
            DenialReason::ServiceAccountUidMismatch => "ServiceAccountUIDMismatch",
            DenialReason::NodeMismatch => "NodeMismatch",
            DenialReason::NodeUidMismatch => "NodeUIDMismatch",
            DenialReason::NoPodCertificateSource => "NoPodCertificateSource",
            DenialReason::InvalidSpiffeId => "InvalidSpiffeID",
            DenialReason::RequesterNotServiceAccount => "RequesterNotServiceAccount",
            DenialReason::RequesterNotPodBound => "RequesterNotPodBound",
            DenialReason::InvalidExpirationSeconds => "InvalidExpirationSeconds",
            DenialReason::InvalidCertificateRequest => "InvalidCertificateRequest",
            DenialReason::UsagesNotAllowed => "UsagesNotAllowed",
            DenialReason::PodNotFound => "PodNotFound",
            DenialReason::PodNotBound => "PodNotBound",
            DenialReason::NamesNotEntitled => "NamesNotEntitled",
        }
    }

    /// Whether the denial was judged from the cluster's state (pod, Node,
    /// ServiceAccount) rather than from the request alone. A controller deciding from
    /// watch caches confirms such a denial against objects read live before writing it:
    /// a cache that lags must never strand a pod.
    pub fn depends_on_cluster_state(self) -> bool {
        matches!(
            self,
            DenialReason::PodUidMismatch
                | DenialReason::PodTerminating
                | DenialReason::MirrorPod
                | DenialReason::ServiceAccountMismatch
                | DenialReason::ServiceAccountUidMismatch
                | DenialReason::NodeMismatch
                | DenialReason::NodeUidMismatch
                | DenialReason::NoPodCertificateSource
                | DenialReason::PodNotFound
                | DenialReason::PodNotBound
        )
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

/// The longest condition message written, in bytes. kube-apiserver refuses condition
/// messages over 32 KiB (the status write would fail and be retried forever); a human
/// needs far less.
pub const MAX_MESSAGE_BYTES: usize = 4096;

impl Denial {
    /// A denial; a message longer than [`MAX_MESSAGE_BYTES`] is cut at a character
    /// boundary and says how much was cut.
    pub(crate) fn new(reason: DenialReason, message: impl Into<String>) -> Self {
        Denial {
            reason,
            message: cap_message(message.into()),
        }
    }
}

/// Cuts `message` to at most [`MAX_MESSAGE_BYTES`], marking the cut.
pub(crate) fn cap_message(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let total = message.len();
    // Room for the marker; the cut lands on a character boundary.
    let mut cut = MAX_MESSAGE_BYTES - 64;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&format!(" ... ({} of {total} bytes cut)", total - cut));
    message
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
///
/// None of these turns into a denial with time: each may heal (a cache catches up, a
/// Service is created or its selector fixed). A request that never heals is deleted by
/// kube-controller-manager's PodCertificateRequest cleaner after 15 minutes, and
/// kubelet files a new one; a denial instead would be final for the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PendingReason {
    /// The pod is not in the snapshot (not seen yet, or deleted).
    PodNotInSnapshot,
    /// The pod has no `spec.nodeName` in the snapshot yet.
    PodNotBound,
    /// The Node the request names is not in the snapshot.
    NodeNotInSnapshot,
    /// The ServiceAccount the request names is not in the snapshot.
    ServiceAccountNotInSnapshot,
    /// No Service selects the pod (yet).
    NoMatchingService,
    /// The pod's `row-major.net/services` user annotation names a Service that does
    /// not select it (yet): the name is never issued; the Service may be created or
    /// its selector fixed.
    ChosenServiceNotSelecting,
}

impl PendingReason {
    /// A CamelCase label, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingReason::PodNotInSnapshot => "PodNotInSnapshot",
            PendingReason::PodNotBound => "PodNotBound",
            PendingReason::NodeNotInSnapshot => "NodeNotInSnapshot",
            PendingReason::ServiceAccountNotInSnapshot => "ServiceAccountNotInSnapshot",
            PendingReason::NoMatchingService => "NoMatchingService",
            PendingReason::ChosenServiceNotSelecting => "ChosenServiceNotSelecting",
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
}

impl Pending {
    pub(crate) fn new(reason: PendingReason, message: impl Into<String>) -> Self {
        Pending {
            reason,
            message: message.into(),
        }
    }
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
    /// Not terminal: write nothing, look again later.
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
