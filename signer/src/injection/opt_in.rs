//! Whether a pod opts in to injection, and with which signer, key type and federation.
//!
//! The MutatingWebhookConfiguration sends the API server's pod creations here only for
//! namespaces labelled [`INJECT_LABEL`]`=enabled` or pods labelled so (the webhook
//! cannot see namespace labels itself). Here the pod's own label can still opt it out,
//! protected namespaces are never touched whatever the configuration says, and the
//! annotations choose the details.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use spiffe::TrustDomain;

use super::patch::Refusal;
use crate::{parse_trust_domain, KeyType};

/// Label on a namespace or a pod: `enabled` opts in, `disabled` (on the pod) opts out.
pub const INJECT_LABEL: &str = "podtls.row-major.net/inject";

/// Pod annotation naming the signer (default: `row-major.net/spiffe`).
pub const SIGNER_ANNOTATION: &str = "podtls.row-major.net/signer";

/// Pod annotation naming the key type kubelet generates (default `ECDSAP256`).
pub const KEY_TYPE_ANNOTATION: &str = "podtls.row-major.net/key-type";

/// Pod annotation listing the trust domains the workload federates with,
/// comma-separated.
pub const FEDERATES_WITH_ANNOTATION: &str = "podtls.row-major.net/federates-with";

/// SPIRE's spelling of the same (its Kubernetes workload registrar's annotation), read
/// too so SPIRE users' pods keep their meaning; the two lists are joined.
pub const SPIRE_FEDERATES_WITH_ANNOTATION: &str = "spiffe.io/federatesWith";

/// The key type when the pod names none: ECDSA P-256, cheap to generate and to verify,
/// and accepted by every TLS stack.
pub const DEFAULT_KEY_TYPE: KeyType = KeyType::EcdsaP256;

/// Namespaces whose pods are never changed, whatever the webhook configuration says:
/// the cluster's own (its control-plane pods must start while the webhook is down).
/// The signer's own namespace is protected too (its pods serve the webhook, so they
/// must never wait for it); [`decide`] is given it.
const ALWAYS_PROTECTED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// What an opted-in pod asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectionSettings {
    /// The signer of the pod's certificate.
    pub signer_name: String,
    /// The key type kubelet generates.
    pub key_type: KeyType,
    /// The trust domains besides its own whose bundles the pod gets, never its own.
    pub federates_with: BTreeSet<TrustDomain>,
}

/// Why a pod is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The pod is in a namespace injection never touches.
    ProtectedNamespace(String),
    /// The pod is labelled [`INJECT_LABEL`]`=disabled`.
    OptedOut,
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave it exactly as it is.
    Skip(Skip),
    /// Inject a credential folder.
    Inject(InjectionSettings),
}

/// Decides for a pod created in `namespace`. `own_namespace` is the signer's, protected
/// like `kube-system`; `signers` are the signer names injection may use (the first is
/// the default).
///
/// # Errors
/// [`Refusal::BadAnnotation`] for an annotation that names an unknown signer, key type
/// or trust domain: the pod is refused with that message rather than started without
/// the identity it asked for.
pub fn decide(
    namespace: &str,
    own_namespace: &str,
    pod: &Pod,
    signers: &[&str],
    own_trust_domain: &TrustDomain,
) -> Result<Decision, Refusal> {
    if ALWAYS_PROTECTED.contains(&namespace) || namespace == own_namespace {
        return Ok(Decision::Skip(Skip::ProtectedNamespace(
            namespace.to_string(),
        )));
    }
    let meta = &pod.metadata;
    if meta
        .labels
        .as_ref()
        .and_then(|l| l.get(INJECT_LABEL))
        .is_some_and(|v| v == "disabled")
    {
        return Ok(Decision::Skip(Skip::OptedOut));
    }
    let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key));

    let signer_name = match annotation(SIGNER_ANNOTATION) {
        None => signers
            .first()
            .ok_or_else(|| {
                bad(
                    SIGNER_ANNOTATION,
                    "",
                    "no signer is configured for injection",
                )
            })?
            .to_string(),
        Some(given) if signers.contains(&given.as_str()) => given.clone(),
        Some(given) => {
            return Err(bad(
                SIGNER_ANNOTATION,
                given,
                &format!("injection serves the signers {}", signers.join(", ")),
            ))
        }
    };
    let key_type = match annotation(KEY_TYPE_ANNOTATION) {
        None => DEFAULT_KEY_TYPE,
        Some(given) => given
            .parse()
            .map_err(|e: crate::UnknownKeyType| bad(KEY_TYPE_ANNOTATION, given, &e.to_string()))?,
    };
    let mut federates_with = BTreeSet::new();
    for key in [FEDERATES_WITH_ANNOTATION, SPIRE_FEDERATES_WITH_ANNOTATION] {
        let Some(list) = annotation(key) else {
            continue;
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let td = parse_trust_domain(name).map_err(|e| bad(key, list, &e.to_string()))?;
            if &td != own_trust_domain {
                federates_with.insert(td);
            }
        }
    }
    Ok(Decision::Inject(InjectionSettings {
        signer_name,
        key_type,
        federates_with,
    }))
}

fn bad(key: &str, value: &str, reason: &str) -> Refusal {
    Refusal::BadAnnotation {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}
