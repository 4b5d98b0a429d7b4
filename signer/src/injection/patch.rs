//! The JSON patch that injects a credential folder into a pod, and why a pod may be
//! refused instead.
//!
//! The patch adds only what is missing, so admitting an injected pod again (another
//! webhook's reinvocation, or two webhook entries matching) changes nothing; it never
//! replaces anything of the user's: a volume of the same name, another mount at the
//! folder's path, or another value of the folder variable refuse the pod with a message
//! naming the conflict.

use std::collections::BTreeMap;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{
    ClusterTrustBundleProjection, Container, EnvVar, Pod, PodCertificateProjection,
    ProjectedVolumeSource, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{json, Value};
use spiffe::TrustDomain;

use super::opt_in::{InjectionSettings, INJECT_LABEL};
use super::{
    labels, CREDENTIAL_BUNDLE_FILE, CREDENTIAL_FOLDER_ENV, INJECTED_ANNOTATION, MOUNT_PATH,
    TRUST_BUNDLE_SUFFIX, VOLUME_NAME,
};

/// Why a pod that opted in is refused rather than injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// An injection annotation has a value injection cannot use.
    #[error("annotation {key}={value:?}: {reason}")]
    BadAnnotation {
        /// The annotation key.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The pod already has a volume of the injected volume's name (and was not injected
    /// before): injection would overwrite it.
    #[error("the pod already has a volume named {name:?}, which podtls injection would replace; rename that volume, or opt the pod out with the label {INJECT_LABEL}=disabled")]
    VolumeNameTaken {
        /// The volume name.
        name: String,
    },
    /// A container already mounts something else at the credential folder's path.
    #[error("container {container:?} already mounts volume {volume:?} at {path}, where podtls injection mounts the SPIFFE credential folder; move that mount, or opt the pod out with the label {INJECT_LABEL}=disabled")]
    MountPathTaken {
        /// The container.
        container: String,
        /// The path.
        path: String,
        /// The volume mounted there.
        volume: String,
    },
    /// The pod already has a container of the agent's name (and was not injected
    /// before): injection would replace it.
    #[error("the pod already has a container named {name:?}, which podtls injection adds as its credential agent; rename that container, or opt the pod out with the label {INJECT_LABEL}=disabled")]
    ContainerNameTaken {
        /// The container name.
        name: String,
    },
    /// A container already sets the credential folder variable to something else.
    #[error("container {container:?} sets {CREDENTIAL_FOLDER_ENV} to {value}, but podtls injection mounts the credential folder at {MOUNT_PATH}; remove the variable, or opt the pod out with the label {INJECT_LABEL}=disabled")]
    EnvConflict {
        /// The container.
        container: String,
        /// The value it sets (or "a reference" for `valueFrom`).
        value: String,
    },
}

/// The patch injecting `settings` into `pod`, whose namespace belongs to
/// `own_trust_domain`. Empty when the pod already has everything.
///
/// # Errors
/// A [`Refusal`] naming the user's volume, mount or variable injection would replace.
pub fn patch_for(
    pod: &Pod,
    settings: &InjectionSettings,
    own_trust_domain: &TrustDomain,
) -> Result<Patch, Refusal> {
    let Some(spec) = &pod.spec else {
        return Ok(Patch(Vec::new()));
    };
    let injected_before = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(INJECTED_ANNOTATION));
    let mut ops = Vec::new();

    let desired = volume(settings, own_trust_domain);
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    match volumes.iter().position(|v| v.name == VOLUME_NAME) {
        None => ops.push(append(
            "/spec/volumes",
            spec.volumes.is_none(),
            to_json(&desired),
        )),
        Some(i) if volumes[i] == desired => {}
        Some(i) if injected_before => ops.push(json!({
            "op": "replace", "path": format!("/spec/volumes/{i}"), "value": to_json(&desired),
        })),
        Some(_) => {
            return Err(Refusal::VolumeNameTaken {
                name: VOLUME_NAME.to_string(),
            })
        }
    }

    let init = spec.init_containers.as_deref().unwrap_or_default();
    for (field, containers) in [("initContainers", init), ("containers", &spec.containers)] {
        for (i, c) in containers.iter().enumerate() {
            container_ops(&format!("/spec/{field}/{i}"), c, injected_before, &mut ops)?;
        }
    }

    Ok(finish(ops, pod, &settings.signer_name))
}

/// The mount and variable one container needs.
/// The patch from its operations: when anything changes, the pod is also
/// marked with the signer that injected it (both paths share this).
pub(super) fn finish(mut ops: Vec<Value>, pod: &Pod, signer_name: &str) -> Patch {
    if !ops.is_empty() {
        let value = Value::String(signer_name.to_string());
        ops.push(match &pod.metadata.annotations {
            None => json!({
                "op": "add", "path": "/metadata/annotations",
                "value": {INJECTED_ANNOTATION: value},
            }),
            Some(_) => json!({
                "op": "add",
                "path": format!("/metadata/annotations/{}", escape(INJECTED_ANNOTATION)),
                "value": value,
            }),
        });
    }
    serde_json::from_value(Value::Array(ops)).expect("the operations are well-formed")
}

pub(super) fn container_ops(
    at: &str,
    c: &Container,
    injected_before: bool,
    ops: &mut Vec<Value>,
) -> Result<(), Refusal> {
    let desired = VolumeMount {
        name: VOLUME_NAME.to_string(),
        mount_path: MOUNT_PATH.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    if let Some(other) = mounts
        .iter()
        .find(|m| m.name != VOLUME_NAME && same_path(&m.mount_path, MOUNT_PATH))
    {
        return Err(Refusal::MountPathTaken {
            container: c.name.clone(),
            path: other.mount_path.clone(),
            volume: other.name.clone(),
        });
    }
    match mounts.iter().position(|m| m.name == VOLUME_NAME) {
        None => ops.push(append(
            &format!("{at}/volumeMounts"),
            c.volume_mounts.is_none(),
            to_json(&desired),
        )),
        Some(i) if mounts[i] == desired => {}
        Some(i) if injected_before => ops.push(json!({
            "op": "replace", "path": format!("{at}/volumeMounts/{i}"), "value": to_json(&desired),
        })),
        Some(i) => {
            return Err(Refusal::MountPathTaken {
                container: c.name.clone(),
                path: mounts[i].mount_path.clone(),
                volume: mounts[i].name.clone(),
            })
        }
    }

    let env = c.env.as_deref().unwrap_or_default();
    match env.iter().find(|e| e.name == CREDENTIAL_FOLDER_ENV) {
        None => ops.push(append(
            &format!("{at}/env"),
            c.env.is_none(),
            to_json(&EnvVar {
                name: CREDENTIAL_FOLDER_ENV.to_string(),
                value: Some(MOUNT_PATH.to_string()),
                value_from: None,
            }),
        )),
        Some(e) if e.value.as_deref() == Some(MOUNT_PATH) && e.value_from.is_none() => {}
        Some(e) => {
            return Err(Refusal::EnvConflict {
                container: c.name.clone(),
                value: e
                    .value
                    .clone()
                    .unwrap_or_else(|| "a reference (valueFrom)".to_string()),
            })
        }
    }
    Ok(())
}

/// The projected volume for `settings`.
fn volume(settings: &InjectionSettings, own: &TrustDomain) -> Volume {
    let mut sources = vec![VolumeProjection {
        pod_certificate: Some(PodCertificateProjection {
            signer_name: settings.signer_name.clone(),
            key_type: settings.key_type.as_str().to_string(),
            credential_bundle_path: Some(CREDENTIAL_BUNDLE_FILE.to_string()),
            ..PodCertificateProjection::default()
        }),
        ..VolumeProjection::default()
    }];
    // The own trust domain's bundle is required: the pod waits for it rather than start
    // unable to verify anyone. A federated one is optional: a relationship removed
    // later (its bundle deleted) de-federates the pod instead of stopping it.
    let peers =
        std::iter::once((own, false)).chain(settings.federates_with.iter().map(|td| (td, true)));
    for (peer, optional) in peers {
        let match_labels = BTreeMap::from([
            (labels::CANARYING.to_string(), "live".to_string()),
            (labels::WORKLOAD_TRUST_DOMAIN.to_string(), own.to_string()),
            (labels::PEER_TRUST_DOMAIN.to_string(), peer.to_string()),
        ]);
        sources.push(VolumeProjection {
            cluster_trust_bundle: Some(ClusterTrustBundleProjection {
                signer_name: Some(settings.signer_name.clone()),
                label_selector: Some(LabelSelector {
                    match_labels: Some(match_labels),
                    match_expressions: None,
                }),
                optional: Some(optional),
                path: format!("{peer}{TRUST_BUNDLE_SUFFIX}"),
                ..ClusterTrustBundleProjection::default()
            }),
            ..VolumeProjection::default()
        });
    }
    Volume {
        name: VOLUME_NAME.to_string(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// `add` of `value` to the array at `path`: the whole array when the field is absent,
/// else appended.
pub(super) fn append(path: &str, absent: bool, value: Value) -> Value {
    if absent {
        json!({"op": "add", "path": path, "value": [value]})
    } else {
        json!({"op": "add", "path": format!("{path}/-"), "value": value})
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("Kubernetes objects serialize")
}

/// RFC 6901 escaping of one JSON pointer segment.
pub(super) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Mount paths equal up to trailing slashes.
fn same_path(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}
