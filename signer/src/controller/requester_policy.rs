//! Is the admission policy that lets only a pod's own kubelet request certificates in
//! force? The signer cannot see who created a request (see
//! `example-manifests/controller/admission-policy.yaml`), so it says loudly when the
//! policy's binding is missing: a gauge, and a warning when the state changes and every
//! hour while it lasts.

use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;

use super::metrics::Metrics;

/// The binding `admission-policy.yaml` creates.
pub const REQUESTER_POLICY_BINDING: &str = "podtls-pod-certificate-requester";
/// How often the binding is looked at.
pub const CHECK_PERIOD: Duration = Duration::from_secs(60);
/// How often a lasting problem is logged again.
const REPEAT_WARNING: Duration = Duration::from_secs(3600);

/// What a look at the binding found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyState {
    /// The binding exists and denies (`validationActions` has `Deny`).
    Enforced,
    /// The binding exists but only warns or audits.
    NotDenying,
    /// No such binding.
    Missing,
    /// The binding could not be read (e.g. RBAC); the message says why.
    Unknown(String),
}

impl PolicyState {
    /// Pure: the state from a GET's outcome (`Ok(None)`: 404).
    pub fn from_lookup(found: Result<Option<&DynamicObject>, String>) -> PolicyState {
        match found {
            Err(why) => PolicyState::Unknown(why),
            Ok(None) => PolicyState::Missing,
            Ok(Some(binding)) => {
                let denies = binding.data["spec"]["validationActions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == "Deny"));
                if denies {
                    PolicyState::Enforced
                } else {
                    PolicyState::NotDenying
                }
            }
        }
    }

    fn warning(&self) -> Option<String> {
        let risk = "any identity allowed to create PodCertificateRequests can obtain the identity of a pod whose fields it copies exactly; apply example-manifests/controller/admission-policy.yaml";
        match self {
            PolicyState::Enforced => None,
            PolicyState::NotDenying => Some(format!(
                "ValidatingAdmissionPolicyBinding {REQUESTER_POLICY_BINDING} does not deny: {risk}"
            )),
            PolicyState::Missing => Some(format!(
                "ValidatingAdmissionPolicyBinding {REQUESTER_POLICY_BINDING} not found: {risk}"
            )),
            PolicyState::Unknown(why) => Some(format!(
                "cannot read ValidatingAdmissionPolicyBinding {REQUESTER_POLICY_BINDING} ({why}); if it is missing, {risk}"
            )),
        }
    }
}

/// Looks at the binding every [`CHECK_PERIOD`] for as long as the signer runs.
pub async fn watch(client: Client, metrics: std::sync::Arc<Metrics>) {
    let api: Api<DynamicObject> = Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(
                "admissionregistration.k8s.io",
                "v1",
                "ValidatingAdmissionPolicyBinding",
            ),
            "validatingadmissionpolicybindings",
        ),
    );
    let mut last: Option<(PolicyState, tokio::time::Instant)> = None;
    let mut tick = tokio::time::interval(CHECK_PERIOD);
    loop {
        tick.tick().await;
        let found = api.get_opt(REQUESTER_POLICY_BINDING).await;
        let state = PolicyState::from_lookup(
            found
                .as_ref()
                .map(Option::as_ref)
                .map_err(|e| e.to_string()),
        );
        metrics.requester_policy_enforced(state == PolicyState::Enforced);
        let now = tokio::time::Instant::now();
        let repeat = match &last {
            Some((previous, at)) => *previous != state || now.duration_since(*at) >= REPEAT_WARNING,
            None => true,
        };
        if repeat {
            match state.warning() {
                Some(warning) => tracing::warn!("{warning}"),
                None => tracing::info!(
                    binding = REQUESTER_POLICY_BINDING,
                    "the requester admission policy is enforced"
                ),
            }
            last = Some((state, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(actions: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": REQUESTER_POLICY_BINDING},
            "spec": {"policyName": "x", "validationActions": actions},
        }))
        .unwrap()
    }

    #[test]
    fn only_a_denying_binding_counts_as_enforced() {
        let deny = binding(serde_json::json!(["Deny", "Audit"]));
        assert_eq!(
            PolicyState::from_lookup(Ok(Some(&deny))),
            PolicyState::Enforced
        );
        let warn = binding(serde_json::json!(["Warn"]));
        assert_eq!(
            PolicyState::from_lookup(Ok(Some(&warn))),
            PolicyState::NotDenying
        );
        assert_eq!(PolicyState::from_lookup(Ok(None)), PolicyState::Missing);
        let unknown = PolicyState::from_lookup(Err("forbidden".into()));
        assert!(unknown.warning().unwrap().contains("forbidden"));
        assert!(PolicyState::Missing
            .warning()
            .unwrap()
            .contains("admission-policy.yaml"));
        assert_eq!(PolicyState::Enforced.warning(), None);
    }
}
