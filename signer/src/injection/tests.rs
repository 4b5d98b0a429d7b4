use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use spiffe::TrustDomain;

use super::*;
use crate::{KeyType, SPIFFE_SIGNER_NAME};

const SIGNERS: [&str; 1] = [SPIFFE_SIGNER_NAME];

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

/// A Deployment-made pod: one init container, two containers, the user's own volume,
/// mount and variables.
fn web_pod(annotations: Value) -> Pod {
    pod(json!({
        "metadata": {"name": "web-7d9f", "namespace": "shop", "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "m"}],
            "containers": [
                {"name": "web", "image": "w",
                 "env": [{"name": "MODE", "value": "prod"}],
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

/// Applies `patch` to `pod` as the API server would.
fn apply(pod: &Pod, patch: &json_patch::Patch) -> Pod {
    let mut doc = serde_json::to_value(pod).unwrap();
    json_patch::patch(&mut doc, patch).unwrap();
    serde_json::from_value(doc).unwrap()
}

fn inject(pod: &Pod, s: &InjectionSettings) -> Pod {
    apply(pod, &patch_for(pod, s, &td("a.example")).unwrap())
}

fn injected_volume(pod: &Pod) -> Value {
    let v = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == VOLUME_NAME)
        .expect("the injected volume");
    serde_json::to_value(v).unwrap()
}

#[test]
fn an_opted_in_pod_gets_the_credential_folder_of_the_draft() {
    let before = web_pod(json!({"team": "shop"}));
    let after = inject(&before, &settings(&["b.example"]));

    assert_eq!(
        injected_volume(&after),
        json!({
            "name": VOLUME_NAME,
            "projected": {"sources": [
                {"podCertificate": {
                    "signerName": SPIFFE_SIGNER_NAME,
                    "keyType": "ECDSAP256",
                    "credentialBundlePath": "credential-bundle.private-key.x509.pem"}},
                {"clusterTrustBundle": {
                    "signerName": SPIFFE_SIGNER_NAME,
                    "labelSelector": {"matchLabels": {
                        "k8s.spiffe.io/canarying": "live",
                        "k8s.spiffe.io/workload-trust-domain": "a.example",
                        "k8s.spiffe.io/peer-trust-domain": "a.example"}},
                    "optional": false,
                    "path": "a.example.spiffe-trust-bundle.x509.pem"}},
                {"clusterTrustBundle": {
                    "signerName": SPIFFE_SIGNER_NAME,
                    "labelSelector": {"matchLabels": {
                        "k8s.spiffe.io/canarying": "live",
                        "k8s.spiffe.io/workload-trust-domain": "a.example",
                        "k8s.spiffe.io/peer-trust-domain": "b.example"}},
                    "optional": true,
                    "path": "b.example.spiffe-trust-bundle.x509.pem"}}
            ]}
        })
    );
    let spec = after.spec.as_ref().unwrap();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    let mut names = Vec::new();
    for c in all {
        names.push(c.name.as_str());
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == VOLUME_NAME)
            .unwrap_or_else(|| panic!("{} has no mount", c.name));
        assert_eq!(mount.mount_path, MOUNT_PATH);
        assert_eq!(mount.read_only, Some(true), "{}", c.name);
        let env = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == CREDENTIAL_FOLDER_ENV)
            .unwrap_or_else(|| panic!("{} has no {CREDENTIAL_FOLDER_ENV}", c.name));
        assert_eq!(env.value.as_deref(), Some(MOUNT_PATH));
    }
    assert_eq!(names, ["migrate", "web", "sidecar"]);

    // The user's own volume, mount, variable and annotation are untouched and first.
    assert_eq!(spec.volumes.as_ref().unwrap()[0].name, "cache");
    let web = &spec.containers[0];
    assert_eq!(web.volume_mounts.as_ref().unwrap()[0].mount_path, "/cache");
    assert_eq!(web.env.as_ref().unwrap()[0].value.as_deref(), Some("prod"));
    let annotations = after.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["team"], "shop");
    assert_eq!(annotations[INJECTED_ANNOTATION], SPIFFE_SIGNER_NAME);
}

#[test]
fn the_patch_only_adds_and_appends() {
    let before = web_pod(json!({"team": "shop"}));
    let patch = patch_for(&before, &settings(&[]), &td("a.example")).unwrap();
    let ops: Vec<(String, String)> = serde_json::to_value(&patch)
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
        "/spec/initContainers/0/volumeMounts",
        "/spec/initContainers/0/env",
        "/spec/containers/0/volumeMounts/-",
        "/spec/containers/0/env/-",
        "/spec/containers/1/volumeMounts",
        "/spec/containers/1/env",
        "/metadata/annotations/podtls.row-major.net~1injected",
    ];
    assert_eq!(
        ops,
        expected
            .iter()
            .map(|p| ("add".to_string(), p.to_string()))
            .collect::<Vec<_>>()
    );
    // No annotations at all: the map is added whole.
    let bare = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}));
    let after = inject(&bare, &settings(&[]));
    assert_eq!(
        after.metadata.annotations.unwrap()[INJECTED_ANNOTATION],
        SPIFFE_SIGNER_NAME
    );
}

#[test]
fn admitting_an_injected_pod_again_changes_nothing() {
    let once = inject(&web_pod(json!({})), &settings(&["b.example", "c.example"]));
    let again = patch_for(
        &once,
        &settings(&["b.example", "c.example"]),
        &td("a.example"),
    )
    .unwrap();
    assert!(again.0.is_empty(), "{again:?}");
    assert_eq!(inject(&once, &settings(&["b.example", "c.example"])), once);
}

#[test]
fn a_container_added_after_injection_gets_only_its_own_mount_and_variable() {
    // Another webhook added a sidecar, and the API server reinvokes this one.
    let mut pod = inject(&web_pod(json!({})), &settings(&[]));
    let spec = pod.spec.as_mut().unwrap();
    spec.containers
        .push(serde_json::from_value(json!({"name": "proxy", "image": "p"})).unwrap());
    let patch = patch_for(&pod, &settings(&[]), &td("a.example")).unwrap();
    let paths: Vec<String> = patch
        .0
        .iter()
        .map(|op| {
            serde_json::to_value(op).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        paths,
        [
            "/spec/containers/2/volumeMounts",
            "/spec/containers/2/env",
            "/metadata/annotations/podtls.row-major.net~1injected"
        ]
    );
}

#[test]
fn an_injected_pod_whose_volume_is_out_of_date_gets_it_replaced_not_duplicated() {
    let mut pod = inject(&web_pod(json!({})), &settings(&["b.example"]));
    // Reinvoked with other settings (the volume is ours: the pod carries the annotation).
    let patch = patch_for(&pod, &settings(&[]), &td("a.example")).unwrap();
    pod = apply(&pod, &patch);
    let volumes = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    assert_eq!(volumes.iter().filter(|v| v.name == VOLUME_NAME).count(), 1);
    let sources = injected_volume(&pod)["projected"]["sources"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(sources, 2, "certificate + own bundle only");
}

#[test]
fn a_users_volume_of_the_same_name_is_never_overwritten() {
    let mut p = web_pod(json!({}));
    p.spec.as_mut().unwrap().volumes.as_mut().unwrap().push(
        serde_json::from_value(json!({"name": VOLUME_NAME, "secret": {"secretName": "mine"}}))
            .unwrap(),
    );
    let err = patch_for(&p, &settings(&[]), &td("a.example")).unwrap_err();
    assert_eq!(
        err,
        Refusal::VolumeNameTaken {
            name: VOLUME_NAME.to_string()
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains(VOLUME_NAME) && msg.contains("podtls.row-major.net/inject=disabled"),
        "{msg}"
    );
}

#[test]
fn a_users_mount_at_the_folder_path_is_never_shadowed() {
    for path in [MOUNT_PATH.to_string(), format!("{MOUNT_PATH}/")] {
        let p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "app", "volumeMounts": [{"name": "mine", "mountPath": path}]}],
                "volumes": [{"name": "mine", "emptyDir": {}}]
            }
        }));
        let err = patch_for(&p, &settings(&[]), &td("a.example")).unwrap_err();
        assert!(
            matches!(&err, Refusal::MountPathTaken { container, volume, .. } if container == "app" && volume == "mine"),
            "{err:?}"
        );
    }
}

#[test]
fn a_users_own_folder_variable_is_never_overwritten() {
    for env in [
        json!({"name": CREDENTIAL_FOLDER_ENV, "value": "/elsewhere"}),
        json!({"name": CREDENTIAL_FOLDER_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ] {
        let p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "init", "env": [env]}], "containers": [{"name": "app"}]}
        }));
        let err = patch_for(&p, &settings(&[]), &td("a.example")).unwrap_err();
        assert!(
            matches!(&err, Refusal::EnvConflict { container, .. } if container == "init"),
            "{err:?}"
        );
        assert!(err.to_string().contains(MOUNT_PATH), "{err}");
    }
}

fn decide_for(namespace: &str, labels: Value, annotations: Value) -> Result<Decision, Refusal> {
    let p = pod(json!({
        "metadata": {"name": "p", "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "c"}]}
    }));
    decide(namespace, "mesh-controller", &p, &SIGNERS, &td("a.example"))
}

#[test]
fn protected_namespaces_and_opted_out_pods_are_left_alone() {
    for ns in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "mesh-controller",
    ] {
        assert_eq!(
            decide_for(ns, json!({INJECT_LABEL: "enabled"}), json!({})).unwrap(),
            Decision::Skip(Skip::ProtectedNamespace(ns.to_string()))
        );
    }
    assert_eq!(
        decide_for("shop", json!({INJECT_LABEL: "disabled"}), json!({})).unwrap(),
        Decision::Skip(Skip::OptedOut)
    );
}

#[test]
fn defaults_and_annotations_choose_signer_key_type_and_federation() {
    assert_eq!(
        decide_for("shop", json!({}), json!({})).unwrap(),
        Decision::Inject(settings(&[]))
    );
    let d = decide_for(
        "shop",
        json!({}),
        json!({
            SIGNER_ANNOTATION: SPIFFE_SIGNER_NAME,
            KEY_TYPE_ANNOTATION: "ED25519",
            FEDERATES_WITH_ANNOTATION: " b.example, c.example ,,a.example",
            SPIRE_FEDERATES_WITH_ANNOTATION: "d.example,b.example",
        }),
    )
    .unwrap();
    let Decision::Inject(s) = d else {
        panic!("{d:?}")
    };
    assert_eq!(s.key_type, KeyType::Ed25519);
    assert_eq!(
        s.federates_with,
        ["b.example", "c.example", "d.example"]
            .iter()
            .map(|n| td(n))
            .collect::<BTreeSet<_>>(),
        "joined, deduplicated, own trust domain dropped"
    );
}

#[test]
fn a_bad_annotation_refuses_the_pod_naming_it() {
    for (key, value, needle) in [
        (
            SIGNER_ANNOTATION,
            "row-major.net/service-dns",
            SPIFFE_SIGNER_NAME,
        ),
        (SIGNER_ANNOTATION, "example.com/other", "injection serves"),
        (KEY_TYPE_ANNOTATION, "DSA1024", "DSA1024"),
        (FEDERATES_WITH_ANNOTATION, "B.example", "lowercase"),
        (
            FEDERATES_WITH_ANNOTATION,
            "spiffe://b.example",
            "bare trust domain",
        ),
        (
            SPIRE_FEDERATES_WITH_ANNOTATION,
            &"x".repeat(64),
            "label value",
        ),
    ] {
        let err = decide_for("shop", json!({}), json!({key: value})).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(key), "{msg}");
        assert!(msg.contains(needle), "{key}={value}: {msg}");
    }
}
