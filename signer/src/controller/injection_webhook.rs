//! The injection webhook's adapter: an `AdmissionReview` of a pod creation in, an
//! `AdmissionReview` out (allowed as is, allowed with the injection patch, or denied
//! with the reason). The decisions are [`crate::injection`]'s; this file only speaks
//! the admission API.
//!
//! It never fails the API server's call for a pod it has nothing to say about: an
//! operation other than CREATE, another kind, or a pod that did not opt in is allowed
//! unchanged. A body that is not an `AdmissionReview` is answered with an invalid
//! response (and the API server applies the configuration's failure policy).

use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use spiffe::TrustDomain;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::injection::{agent_patch_for, decide, patch_for, AgentSettings, Decision};

/// The trust domain of a namespace, if it has one.
pub type TrustDomainOf = dyn Fn(&str) -> Option<TrustDomain> + Send + Sync;

/// How to answer pod creations.
pub struct InjectionWebhook {
    own_namespace: String,
    signers: Vec<String>,
    trust_domain_of: Box<TrustDomainOf>,
    csr_path: Option<CsrPath>,
}

/// The CertificateSigningRequest path: the agent, and whether the API server serves
/// PodCertificateRequests right now (kept current by a periodic discovery).
struct CsrPath {
    agent: AgentSettings,
    pcr_served: Arc<AtomicBool>,
}

/// What one review decided, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with the injection patch.
    Injected,
    /// Allowed unchanged: nothing to do (not a pod creation, opted out, protected, or
    /// already injected).
    Unchanged,
    /// Denied: a bad annotation or a conflict with the user's spec.
    Denied,
    /// The body was not an `AdmissionReview` of a pod.
    Invalid,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::Unchanged => "unchanged",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
        }
    }
}

impl InjectionWebhook {
    /// A webhook for the signer running in `own_namespace` (whose pods it never
    /// touches), injecting for `signers` (the first is the default), with each
    /// namespace's trust domain from `trust_domain_of`.
    pub fn new(
        own_namespace: impl Into<String>,
        signers: Vec<String>,
        trust_domain_of: Box<TrustDomainOf>,
    ) -> Self {
        InjectionWebhook {
            own_namespace: own_namespace.into(),
            signers,
            trust_domain_of,
            csr_path: None,
        }
    }

    /// Also serves clusters without Pod Certificates: while `pcr_served` is false, pods
    /// get the agent ([`agent_patch_for`]) instead of a `podCertificate` volume.
    pub fn with_csr_path(mut self, agent: AgentSettings, pcr_served: Arc<AtomicBool>) -> Self {
        self.csr_path = Some(CsrPath { agent, pcr_served });
        self
    }

    /// Answers one `AdmissionReview` body with the response body.
    pub fn review(&self, body: &[u8]) -> (Vec<u8>, Outcome) {
        let (review, outcome) = self.review_object(body);
        (encode(&review), outcome)
    }

    fn review_object(&self, body: &[u8]) -> (AdmissionReview<DynamicObject>, Outcome) {
        let review: AdmissionReview<Pod> = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return (
                    AdmissionResponse::invalid(format!("not an AdmissionReview of a Pod: {e}"))
                        .into_review(),
                    Outcome::Invalid,
                )
            }
        };
        let request: AdmissionRequest<Pod> = match review.try_into() {
            Ok(r) => r,
            Err(e) => {
                return (
                    AdmissionResponse::invalid(format!("AdmissionReview without a request: {e}"))
                        .into_review(),
                    Outcome::Invalid,
                )
            }
        };
        let (response, outcome) = self.respond(&request);
        (response.into_review(), outcome)
    }

    fn respond(&self, request: &AdmissionRequest<Pod>) -> (AdmissionResponse, Outcome) {
        let allow = AdmissionResponse::from(request);
        let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
        let (Operation::Create, true, Some(pod)) = (&request.operation, is_pod, &request.object)
        else {
            return (allow, Outcome::Unchanged);
        };
        let namespace = request
            .namespace
            .as_deref()
            .or(pod.metadata.namespace.as_deref())
            .unwrap_or_default();
        let Some(own_td) = (self.trust_domain_of)(namespace) else {
            return (
                allow.deny(format!("podtls injection: namespace {namespace:?} belongs to no trust domain the signer serves")),
                Outcome::Denied,
            );
        };
        let signers: Vec<&str> = self.signers.iter().map(String::as_str).collect();
        let decided =
            decide(namespace, &self.own_namespace, pod, &signers, &own_td).and_then(|d| match d {
                Decision::Skip(_) => Ok(None),
                Decision::Inject(settings) => match &self.csr_path {
                    Some(csr) if !csr.pcr_served.load(Ordering::Relaxed) => {
                        agent_patch_for(pod, &settings, &own_td, &csr.agent).map(Some)
                    }
                    _ => patch_for(pod, &settings, &own_td).map(Some),
                },
            });
        match decided {
            Ok(None) => (allow, Outcome::Unchanged),
            Ok(Some(patch)) if patch.0.is_empty() => (allow, Outcome::Unchanged),
            Ok(Some(patch)) => match allow.clone().with_patch(patch) {
                Ok(patched) => (patched, Outcome::Injected),
                Err(e) => (
                    allow.deny(format!("podtls injection: cannot encode the patch: {e}")),
                    Outcome::Denied,
                ),
            },
            Err(refusal) => (
                allow.deny(format!("podtls injection: {refusal}")),
                Outcome::Denied,
            ),
        }
    }
}

/// The response body. The API's `patch` is `bytes`, base64 in JSON; kube-core keeps it
/// as a `Vec<u8>`, which serde writes as an array of numbers, so it is written here as
/// the string the API documents.
fn encode(review: &AdmissionReview<DynamicObject>) -> Vec<u8> {
    use base64::Engine as _;
    let mut value = serde_json::to_value(review).expect("an AdmissionReview serializes");
    if let Some(patch) = review.response.as_ref().and_then(|r| r.patch.as_ref()) {
        value["response"]["patch"] =
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::{json, Value};

    use super::*;
    use crate::injection::{INJECTED_ANNOTATION, VOLUME_NAME};
    use crate::SPIFFE_SIGNER_NAME;

    fn webhook() -> InjectionWebhook {
        InjectionWebhook::new(
            "mesh-controller",
            vec![SPIFFE_SIGNER_NAME.to_string()],
            Box::new(|ns: &str| (ns != "unmapped").then(|| TrustDomain::new("a.example").unwrap())),
        )
    }

    /// An AdmissionReview as kube-apiserver sends it for a pod creation.
    fn review_of(operation: &str, namespace: &str, pod: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "name": "",
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod,
                "oldObject": null,
                "dryRun": false,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
            }
        }))
        .unwrap()
    }

    fn plain_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "w"}]}
        })
    }

    fn answer(body: &[u8]) -> (Value, Outcome) {
        let (body, outcome) = webhook().review(body);
        (serde_json::from_slice(&body).unwrap(), outcome)
    }

    #[test]
    fn a_pod_creation_is_answered_with_the_patch_for_its_request() {
        let (review, outcome) = answer(&review_of("CREATE", "shop", plain_pod()));
        assert_eq!(outcome, Outcome::Injected);
        let response = &review["response"];
        assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut pod = plain_pod();
        json_patch::patch(&mut pod, &patch).unwrap();
        assert_eq!(pod["spec"]["volumes"][0]["name"], VOLUME_NAME);
        assert_eq!(
            pod["metadata"]["annotations"][INJECTED_ANNOTATION],
            SPIFFE_SIGNER_NAME
        );
        // And that pod admitted again: allowed, no patch.
        let (review, outcome) = answer(&review_of("CREATE", "shop", pod));
        assert_eq!(outcome, Outcome::Unchanged);
        assert_eq!(review["response"]["allowed"], true);
        assert!(review["response"].get("patch").is_none());
    }

    #[test]
    fn what_is_not_an_opted_in_pod_creation_passes_unchanged() {
        let mut opted_out = plain_pod();
        opted_out["metadata"]["labels"]["podtls.row-major.net/inject"] = json!("disabled");
        for body in [
            review_of("UPDATE", "shop", plain_pod()),
            review_of("CREATE", "kube-system", plain_pod()),
            review_of("CREATE", "mesh-controller", plain_pod()),
            review_of("CREATE", "shop", opted_out),
        ] {
            let (review, outcome) = answer(&body);
            assert_eq!(outcome, Outcome::Unchanged);
            assert_eq!(review["response"]["allowed"], true);
            assert!(review["response"].get("patch").is_none());
        }
    }

    #[test]
    fn a_conflict_denies_the_pod_with_the_reason() {
        let mut pod = plain_pod();
        pod["spec"]["volumes"] = json!([{"name": VOLUME_NAME, "emptyDir": {}}]);
        let (review, outcome) = answer(&review_of("CREATE", "shop", pod));
        assert_eq!(outcome, Outcome::Denied);
        assert_eq!(review["response"]["allowed"], false);
        let message = review["response"]["status"]["message"].as_str().unwrap();
        assert!(message.starts_with("podtls injection: "), "{message}");
        assert!(message.contains(VOLUME_NAME), "{message}");

        let (review, outcome) = answer(&review_of("CREATE", "unmapped", plain_pod()));
        assert_eq!(outcome, Outcome::Denied);
        let message = review["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("\"unmapped\""), "{message}");
    }

    #[test]
    fn a_body_that_is_not_a_review_is_answered_as_invalid() {
        for body in [
            &b"not json"[..],
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":1}}"#,
        ] {
            let (review, outcome) = answer(body);
            assert_eq!(
                outcome,
                Outcome::Invalid,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(review["response"]["allowed"], false);
        }
    }

    #[test]
    fn the_path_follows_what_the_api_server_serves() {
        let served = Arc::new(AtomicBool::new(false));
        let webhook = webhook().with_csr_path(
            AgentSettings {
                image: "registry.example/podtls:1".into(),
            },
            served.clone(),
        );
        let patch_of = |webhook: &InjectionWebhook| {
            let (body, outcome) = webhook.review(&review_of("CREATE", "shop", plain_pod()));
            assert_eq!(outcome, Outcome::Injected);
            let review: Value = serde_json::from_slice(&body).unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(review["response"]["patch"].as_str().unwrap())
                .unwrap();
            String::from_utf8(bytes).unwrap()
        };
        // No PodCertificateRequest API: the agent, no podCertificate source.
        let without = patch_of(&webhook);
        assert!(without.contains("podtls-agent"), "{without}");
        assert!(without.contains("registry.example/podtls:1"), "{without}");
        assert!(!without.contains("podCertificate"), "{without}");
        // The API appears (control plane upgraded): the next pod gets today's volume.
        served.store(true, Ordering::Relaxed);
        let with = patch_of(&webhook);
        assert!(with.contains("podCertificate"), "{with}");
        assert!(!with.contains("podtls-agent"), "{with}");
    }
}
