//! The injection patch for clusters without Pod Certificates: the in-pod agent files a
//! CertificateSigningRequest with the pod's own token and writes the same credential
//! folder kubelet would.
//!
//! What an injected pod gets on this path:
//! - [`VOLUME_NAME`]: an in-memory `emptyDir` (1 MiB), the credential folder, mounted
//!   read-only at [`MOUNT_PATH`] in every app and init container and read-write in the
//!   agent;
//! - [`TRUST_BUNDLES_VOLUME`]: the signer's ConfigMap [`TRUST_BUNDLES_CONFIGMAP`]
//!   (required), mounted read-only in the agent only at [`TRUST_BUNDLES_PATH`];
//! - [`TOKEN_VOLUME`]: a projected ServiceAccount token (default audience, one hour),
//!   mounted in the agent only at [`TOKEN_PATH`]: bound to the pod, so the API server
//!   records the pod's name and UID in the CSR;
//! - [`AGENT_CONTAINER`]: a native sidecar (`restartPolicy: Always`) inserted first
//!   among the init containers, whose startup probe passes once the folder is written,
//!   so every later init container and every app container starts with credentials;
//! - [`CREDENTIAL_FOLDER_ENV`] in every app and init container, and
//!   [`INJECTED_ANNOTATION`], as on the Pod Certificates path.

use json_patch::Patch;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, ExecAction, Pod, Probe,
    ProjectedVolumeSource, ResourceRequirements, SecurityContext, ServiceAccountTokenProjection,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use spiffe::TrustDomain;

use super::opt_in::InjectionSettings;
use super::patch::{append, container_ops, finish, to_json, Refusal};
use super::{INJECTED_ANNOTATION, MOUNT_PATH, VOLUME_NAME};

/// The agent's container name.
pub const AGENT_CONTAINER: &str = "podtls-agent";
/// The agent's binary (its image's `PATH` holds it).
pub const AGENT_COMMAND: &str = "podtls-agent";
/// The volume of the trust bundle ConfigMap.
pub const TRUST_BUNDLES_VOLUME: &str = "podtls-trust-bundles";
/// The ConfigMap the signer publishes in opted-in namespaces.
pub const TRUST_BUNDLES_CONFIGMAP: &str = "podtls-trust-bundles";
/// Where the agent reads the trust bundles.
pub const TRUST_BUNDLES_PATH: &str = "/run/podtls/trust-bundles";
/// The volume of the agent's pod-bound token.
pub const TOKEN_VOLUME: &str = "podtls-agent-token";
/// Where the agent's token volume is mounted (the token is the file `token` in it).
pub const TOKEN_PATH: &str = "/run/podtls/token";
/// The token's lifetime; kubelet refreshes it at 80 %.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// The credential folder's size limit (a key, a chain and a few bundles).
pub const CREDENTIAL_FOLDER_SIZE: &str = "1Mi";

/// The agent image and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// The image holding `podtls-agent`.
    pub image: String,
}

/// The patch injecting `settings` through the agent into `pod`, whose namespace
/// belongs to `own_trust_domain`. Empty when the pod already has everything.
///
/// # Errors
/// A [`Refusal`] naming the user's volume, container, mount or variable injection
/// would replace.
pub fn agent_patch_for(
    pod: &Pod,
    settings: &InjectionSettings,
    own_trust_domain: &TrustDomain,
    agent: &AgentSettings,
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

    let mut volumes_absent = spec.volumes.is_none();
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    for desired in desired_volumes() {
        match volumes.iter().position(|v| v.name == desired.name) {
            None => {
                ops.push(append("/spec/volumes", volumes_absent, to_json(&desired)));
                volumes_absent = false;
            }
            Some(i) if volumes[i] == desired => {}
            Some(i) if injected_before => ops.push(json!({
                "op": "replace", "path": format!("/spec/volumes/{i}"), "value": to_json(&desired),
            })),
            Some(_) => return Err(Refusal::VolumeNameTaken { name: desired.name }),
        }
    }

    let init = spec.init_containers.as_deref().unwrap_or_default();
    for (field, containers) in [("initContainers", init), ("containers", &spec.containers)] {
        for (i, c) in containers.iter().enumerate() {
            if field == "initContainers" && c.name == AGENT_CONTAINER {
                continue;
            }
            if c.name == AGENT_CONTAINER && !injected_before {
                return Err(Refusal::ContainerNameTaken {
                    name: AGENT_CONTAINER.to_string(),
                });
            }
            container_ops(&format!("/spec/{field}/{i}"), c, injected_before, &mut ops)?;
        }
    }

    // Inserted last: the operations above address the containers by their original
    // indices.
    let desired = agent_container(settings, own_trust_domain, agent);
    match init.iter().position(|c| c.name == AGENT_CONTAINER) {
        None if spec.init_containers.is_none() => ops.push(json!({
            "op": "add", "path": "/spec/initContainers", "value": [to_json(&desired)],
        })),
        None => ops.push(json!({
            "op": "add", "path": "/spec/initContainers/0", "value": to_json(&desired),
        })),
        Some(i) if init[i] == desired => {}
        Some(i) if injected_before => ops.push(json!({
            "op": "replace", "path": format!("/spec/initContainers/{i}"), "value": to_json(&desired),
        })),
        Some(_) => {
            return Err(Refusal::ContainerNameTaken {
                name: AGENT_CONTAINER.to_string(),
            })
        }
    }

    Ok(finish(ops, pod, &settings.signer_name))
}

/// The three volumes of this path.
fn desired_volumes() -> [Volume; 3] {
    [
        Volume {
            name: VOLUME_NAME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_string()),
                size_limit: Some(Quantity(CREDENTIAL_FOLDER_SIZE.to_string())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: TRUST_BUNDLES_VOLUME.to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: TRUST_BUNDLES_CONFIGMAP.to_string(),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: TOKEN_VOLUME.to_string(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: None,
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        path: "token".to_string(),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// The agent's command-line arguments.
pub fn agent_args(settings: &InjectionSettings, own_trust_domain: &TrustDomain) -> Vec<String> {
    let mut args = vec![
        format!("--signer-name={}", settings.signer_name),
        format!("--key-type={}", settings.key_type),
        format!("--credential-folder={MOUNT_PATH}"),
        format!("--trust-bundle-dir={TRUST_BUNDLES_PATH}"),
        format!("--token-file={TOKEN_PATH}/token"),
        format!("--trust-domain={own_trust_domain}"),
    ];
    args.extend(
        settings
            .federates_with
            .iter()
            .map(|td| format!("--federates-with={td}")),
    );
    args
}

fn agent_container(
    settings: &InjectionSettings,
    own_trust_domain: &TrustDomain,
    agent: &AgentSettings,
) -> Container {
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let quantity = |q: &str| Quantity(q.to_string());
    Container {
        name: AGENT_CONTAINER.to_string(),
        image: Some(agent.image.clone()),
        command: Some(vec![AGENT_COMMAND.to_string()]),
        args: Some(agent_args(settings, own_trust_domain)),
        restart_policy: Some("Always".to_string()),
        startup_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec![
                    AGENT_COMMAND.to_string(),
                    "probe".to_string(),
                    format!("--credential-folder={MOUNT_PATH}"),
                ]),
            }),
            period_seconds: Some(1),
            failure_threshold: Some(120),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_string(), quantity("10m")),
                    ("memory".to_string(), quantity("16Mi")),
                ]
                .into(),
            ),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount(VOLUME_NAME, MOUNT_PATH, false),
            mount(TRUST_BUNDLES_VOLUME, TRUST_BUNDLES_PATH, true),
            mount(TOKEN_VOLUME, TOKEN_PATH, true),
        ]),
        ..Container::default()
    }
}
