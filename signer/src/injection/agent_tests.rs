//! The CertificateSigningRequest path's patch: what an injected pod gets, idempotency,
//! refusals.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};
use spiffe::TrustDomain;

use super::*;
use crate::{KeyType, SPIFFE_SIGNER_NAME};

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

/// A Deployment-made pod: one init container, two containers, the user's own volume.
fn web_pod() -> Pod {
    pod(json!({
        "metadata": {"name": "web-7d9f", "namespace": "shop", "annotations": {"team": "shop"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "m"}],
            "containers": [
                {"name": "web", "image": "w",
                 "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]},
                {"name": "sidecar", "image": "s"}
            ],
            "volumes": [{"name": "cache", "emptyDir": {}}]
        }
    }))
}

fn settings(federates_with: &[&str]) -> InjectionSettings {
    InjectionSettings {
        signer_name: SPIFFE_SIGNER_NAME.to_string(),
        key_type: KeyType::EcdsaP256,
        federates_with: federates_with.iter().map(|n| td(n)).collect(),
    }
}

fn agent() -> AgentSettings {
    AgentSettings {
        image: "localhost/podtls:dev".into(),
    }
}

fn patch(pod: &Pod, s: &InjectionSettings) -> Result<json_patch::Patch, Refusal> {
    agent_patch_for(pod, s, &td("a.example"), &agent())
}

fn apply(pod: &Pod, patch: &json_patch::Patch) -> Pod {
    let mut doc = serde_json::to_value(pod).unwrap();
    json_patch::patch(&mut doc, patch).unwrap();
    serde_json::from_value(doc).unwrap()
}

fn inject(pod: &Pod, s: &InjectionSettings) -> Pod {
    apply(pod, &patch(pod, s).unwrap())
}

fn volume(pod: &Pod, name: &str) -> Value {
    let v = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    serde_json::to_value(v.iter().find(|v| v.name == name).expect(name)).unwrap()
}

fn mounts(c: &Container) -> Vec<(String, String, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.name.clone(),
                m.mount_path.clone(),
                m.read_only == Some(true),
            )
        })
        .collect()
}

#[test]
fn an_opted_in_pod_gets_the_agent_first_and_an_in_memory_folder() {
    let after = inject(&web_pod(), &settings(&["b.example"]));
    assert_eq!(
        volume(&after, VOLUME_NAME),
        json!({"name": VOLUME_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    );
    assert_eq!(
        volume(&after, TRUST_BUNDLES_VOLUME),
        json!({"name": TRUST_BUNDLES_VOLUME,
               "configMap": {"name": "podtls-trust-bundles", "optional": false}})
    );
    assert_eq!(
        volume(&after, TOKEN_VOLUME),
        json!({"name": TOKEN_VOLUME, "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3600, "path": "token"}}]}})
    );
    let spec = after.spec.as_ref().unwrap();
    let init = spec.init_containers.as_ref().unwrap();
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [AGENT_CONTAINER, "migrate"], "the agent runs first");

    let agent = serde_json::to_value(&init[0]).unwrap();
    assert_eq!(agent["restartPolicy"], "Always");
    assert_eq!(agent["image"], "localhost/podtls:dev");
    assert_eq!(agent["command"], json!(["podtls-agent"]));
    assert_eq!(
        agent["args"],
        json!([
            "--signer-name=row-major.net/spiffe",
            "--key-type=ECDSAP256",
            "--credential-folder=/run/workload-spiffe-credentials",
            "--trust-bundle-dir=/run/podtls/trust-bundles",
            "--token-file=/run/podtls/token/token",
            "--trust-domain=a.example",
            "--federates-with=b.example"
        ])
    );
    assert_eq!(
        agent["startupProbe"],
        json!({"exec": {"command": ["podtls-agent", "probe",
            "--credential-folder=/run/workload-spiffe-credentials"]},
            "periodSeconds": 1, "failureThreshold": 120})
    );
    assert_eq!(
        agent["securityContext"],
        json!({"runAsNonRoot": true, "readOnlyRootFilesystem": true,
               "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        agent["resources"],
        json!({"requests": {"cpu": "10m", "memory": "16Mi"}})
    );
    assert_eq!(
        mounts(&init[0]),
        [
            (VOLUME_NAME.into(), MOUNT_PATH.into(), false),
            (TRUST_BUNDLES_VOLUME.into(), TRUST_BUNDLES_PATH.into(), true),
            (TOKEN_VOLUME.into(), TOKEN_PATH.into(), true),
        ]
    );

    // Every other container: the folder read-only and the variable; never the token or
    // the bundles.
    for c in init[1..].iter().chain(&spec.containers) {
        let m = mounts(c);
        assert!(
            m.contains(&(VOLUME_NAME.into(), MOUNT_PATH.into(), true)),
            "{}: {m:?}",
            c.name
        );
        assert!(
            !m.iter()
                .any(|(n, _, _)| n == TOKEN_VOLUME || n == TRUST_BUNDLES_VOLUME),
            "{} sees the agent's token or bundles: {m:?}",
            c.name
        );
        let env = c.env.as_ref().unwrap();
        assert!(env
            .iter()
            .any(|e| e.name == CREDENTIAL_FOLDER_ENV && e.value.as_deref() == Some(MOUNT_PATH)));
    }
    assert_eq!(spec.volumes.as_ref().unwrap()[0].name, "cache");
    let annotations = after.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["team"], "shop");
    assert_eq!(annotations[INJECTED_ANNOTATION], SPIFFE_SIGNER_NAME);
}

#[test]
fn the_patch_only_adds() {
    let p = patch(&web_pod(), &settings(&[])).unwrap();
    let ops: Vec<(String, String)> = serde_json::to_value(&p)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            (
                op["op"].as_str().unwrap().to_string(),
                op["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        "/spec/volumes/-",
        "/spec/volumes/-",
        "/spec/volumes/-",
        "/spec/initContainers/0/volumeMounts",
        "/spec/initContainers/0/env",
        "/spec/containers/0/volumeMounts/-",
        "/spec/containers/0/env",
        "/spec/containers/1/volumeMounts",
        "/spec/containers/1/env",
        "/spec/initContainers/0",
        "/metadata/annotations/podtls.row-major.net~1injected",
    ];
    assert_eq!(
        ops,
        expected
            .iter()
            .map(|p| ("add".to_string(), p.to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_pod_without_init_containers_or_volumes_gets_both_lists() {
    let bare = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}));
    let after = inject(&bare, &settings(&[]));
    let spec = after.spec.as_ref().unwrap();
    assert_eq!(spec.init_containers.as_ref().unwrap().len(), 1);
    assert_eq!(spec.volumes.as_ref().unwrap().len(), 3);
}

#[test]
fn admitting_an_injected_pod_again_changes_nothing() {
    let s = settings(&["b.example"]);
    let once = inject(&web_pod(), &s);
    let again = patch(&once, &s).unwrap();
    assert!(again.0.is_empty(), "{again:?}");
}

#[test]
fn the_users_volume_or_container_of_an_injected_name_refuses_the_pod() {
    let mut p = web_pod();
    let spec = p.spec.as_mut().unwrap();
    spec.volumes.as_mut().unwrap().push(
        serde_json::from_value(json!({"name": TRUST_BUNDLES_VOLUME, "emptyDir": {}})).unwrap(),
    );
    let refusal = patch(&p, &settings(&[])).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::VolumeNameTaken {
            name: TRUST_BUNDLES_VOLUME.into()
        }
    );
    assert!(
        refusal.to_string().contains("rename that volume"),
        "{refusal}"
    );

    for field in ["initContainers", "containers"] {
        let mut value = serde_json::to_value(web_pod()).unwrap();
        value["spec"][field]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": AGENT_CONTAINER, "image": "mine"}));
        let refusal = patch(&pod(value), &settings(&[])).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::ContainerNameTaken {
                name: AGENT_CONTAINER.into()
            },
            "{field}"
        );
    }

    let mut value = serde_json::to_value(web_pod()).unwrap();
    value["spec"]["containers"][1]["volumeMounts"] =
        json!([{"name": "cache", "mountPath": MOUNT_PATH}]);
    assert!(matches!(
        patch(&pod(value), &settings(&[])).unwrap_err(),
        Refusal::MountPathTaken { .. }
    ));
}
