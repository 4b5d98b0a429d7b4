//! The pod injection webhook registered with the real kube-apiserver: the signer
//! serves it (URL client config over 127.0.0.1, its certificate from the service-dns
//! CA) and fills in the configuration's `caBundle` itself; an opted-in pod is mutated
//! on creation, a pod elsewhere is not, and a pod whose own volume would be replaced is
//! refused with the reason.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use podtls_e2e::k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use podtls_e2e::k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use podtls_e2e::kube::api::{DeleteParams, PostParams};
use podtls_e2e::kube::Api;
use podtls_e2e::*;
use serde_json::json;

use crate::*;

/// The configuration the signer keeps the `caBundle` of (its
/// `--injection-webhook-configuration`).
pub(crate) const CONFIGURATION: &str = "podtls-injection";

/// The signer flags serving the webhook on `port`, writing its credential under `dir`.
pub(crate) fn injection_flags(port: u16, dir: &std::path::Path) -> Vec<String> {
    vec![
        "--enable-injection-webhook".into(),
        format!("--injection-webhook-listen=127.0.0.1:{port}"),
        "--injection-webhook-dns-name=localhost".into(),
        format!("--injection-webhook-credential-dir={}", dir.display()),
        format!("--injection-webhook-configuration={CONFIGURATION}"),
    ]
}

pub(crate) async fn opted_in_pods_are_injected_by_the_webhook(
    mesh: &Mesh<'_>,
    port: u16,
) -> Result<()> {
    let client = &mesh.client;
    // The manifest's RBAC for the caBundle (its Service and configuration name the
    // in-cluster Service; here the webhook is a local process, reached by URL).
    let manifest = load_manifest(&manifests_dir().join("injection/webhook.yaml"))?;
    let rbac: Vec<_> = manifest
        .into_iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("ClusterRole" | "ClusterRoleBinding")
            )
        })
        .collect();
    ensure!(
        rbac.len() == 2,
        "webhook.yaml has its ClusterRole and binding"
    );
    apply_all(client, &rbac).await?;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    // As a user applies it: no caBundle; the signer fills it in.
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": CONFIGURATION},
        "webhooks": [{
            "name": "namespace.injection.podtls.row-major.net",
            "clientConfig": {"url": format!("https://localhost:{port}/mutate-pods")},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"podtls.row-major.net/inject": "enabled"}},
            "objectSelector": {"matchExpressions": [
                {"key": "podtls.row-major.net/inject", "operator": "NotIn", "values": ["disabled"]}]},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
            "admissionReviewVersions": ["v1"],
        }]
    }))?;
    configs.create(&PostParams::default(), &config).await?;
    let created = Instant::now();
    eventually(
        "the signer fills in the caBundle",
        Duration::from_secs(60),
        || async {
            let c = configs.get(CONFIGURATION).await?;
            Ok(c.webhooks
                .unwrap_or_default()
                .iter()
                .all(|w| {
                    w.client_config
                        .ca_bundle
                        .as_ref()
                        .is_some_and(|b| !b.0.is_empty())
                })
                .then_some(()))
        },
    )
    .await?;
    eprintln!(
        "injection: caBundle filled in {:?} after the configuration was created",
        created.elapsed()
    );

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for (name, labels) in [
        (
            "injected",
            json!({"podtls.row-major.net/inject": "enabled"}),
        ),
        ("not-injected", json!({})),
    ] {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?;
        namespaces.create(&PostParams::default(), &ns).await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
        eventually(
            &format!("{name}/default ServiceAccount"),
            Duration::from_secs(30),
            || async { Ok(accounts.get_opt("default").await?.map(|_| ())) },
        )
        .await?;
    }

    // Unscheduled pods (no nodeName, no scheduler here): admission is all that runs.
    let pod = |extra_volume: bool| -> Result<Pod> {
        let mut p = json!({
            "metadata": {"generateName": "web-", "labels": {"app": "web"}},
            "spec": {
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [{"name": "web", "image": "web",
                                "env": [{"name": "MODE", "value": "prod"}]}]
            }
        });
        if extra_volume {
            p["spec"]["volumes"] = json!([{"name": "podtls-spiffe-credentials", "emptyDir": {}}]);
        }
        Ok(serde_json::from_value(p)?)
    };
    let injected_api: Api<Pod> = Api::namespaced(client.clone(), "injected");
    let started = Instant::now();
    let injected = injected_api
        .create(&PostParams::default(), &pod(false)?)
        .await?;
    let admission = started.elapsed();
    let spec = injected.spec.as_ref().context("no spec")?;
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "podtls-spiffe-credentials")
        .context("the opted-in pod was not injected")?;
    let sources = volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_ref())
        .context("not a projected volume")?;
    let certificate = sources
        .iter()
        .find_map(|s| s.pod_certificate.as_ref())
        .context("no podCertificate source")?;
    ensure!(certificate.signer_name == SPIFFE, "{certificate:?}");
    ensure!(
        certificate.credential_bundle_path.as_deref()
            == Some("credential-bundle.private-key.x509.pem"),
        "{certificate:?}"
    );
    let own = format!("{TRUST_DOMAIN}.spiffe-trust-bundle.x509.pem");
    ensure!(
        sources
            .iter()
            .filter_map(|s| s.cluster_trust_bundle.as_ref())
            .any(|b| b.path == own),
        "no bundle for the own trust domain: {sources:?}"
    );
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        ensure!(
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "podtls-spiffe-credentials"
                    && m.mount_path == "/run/workload-spiffe-credentials"
                    && m.read_only == Some(true)),
            "container {} has no read-only mount: {:?}",
            c.name,
            c.volume_mounts
        );
        ensure!(
            c.env
                .iter()
                .flatten()
                .any(|e| e.name == "SPIFFE_CREDENTIAL_FOLDER"
                    && e.value.as_deref() == Some("/run/workload-spiffe-credentials")),
            "container {} has no SPIFFE_CREDENTIAL_FOLDER",
            c.name
        );
    }
    let web = &spec.containers[0];
    ensure!(
        web.env
            .as_ref()
            .and_then(|e| e.first())
            .map(|e| e.name.as_str())
            == Some("MODE"),
        "the user's variable must stay first: {:?}",
        web.env
    );
    eprintln!("injection: an opted-in pod created and injected in {admission:?}");

    // The same pod created again (as a controller would re-create it): one volume.
    let mut again = injected.clone();
    again.metadata = serde_json::from_value(json!({
        "generateName": "web-", "labels": {"app": "web"},
        "annotations": injected.metadata.annotations.clone(),
    }))?;
    if let Some(s) = again.spec.as_mut() {
        s.node_name = None;
    }
    let again = injected_api.create(&PostParams::default(), &again).await?;
    let count = again
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map_or(0, |v| {
            v.iter()
                .filter(|v| v.name == "podtls-spiffe-credentials")
                .count()
        });
    ensure!(count == 1, "re-admission duplicated the volume ({count})");

    // Not opted in: untouched.
    let plain_api: Api<Pod> = Api::namespaced(client.clone(), "not-injected");
    let plain = plain_api
        .create(&PostParams::default(), &pod(false)?)
        .await?;
    ensure!(
        plain
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .is_none_or(|v| v.iter().all(|v| v.name != "podtls-spiffe-credentials")),
        "a pod that did not opt in was changed"
    );

    // A user's volume of the same name: refused with the reason, never overwritten.
    let refused = injected_api
        .create(&PostParams::default(), &pod(true)?)
        .await
        .err()
        .context("a pod whose own volume would be replaced was admitted")?;
    let message = refused.to_string();
    ensure!(
        message.contains("podtls injection") && message.contains("podtls-spiffe-credentials"),
        "refusal does not say why: {message}"
    );

    // Through kubelet's code: an injected pod bound to a node gets the credential
    // folder with its SPIFFE certificate and its own trust domain's bundle.
    let mut bound = pod(false)?;
    bound.metadata.generate_name = None;
    bound.metadata.name = Some("bound".into());
    if let Some(s) = bound.spec.as_mut() {
        s.node_name = Some(mesh.cluster.nodes()[0].clone());
    }
    let started = Instant::now();
    injected_api.create(&PostParams::default(), &bound).await?;
    let state = mesh
        .cluster
        .wait_pod("injected", "bound", Duration::from_secs(90))
        .await?;
    let folder = podtls_e2e::volume(&state, "podtls-spiffe-credentials")?;
    let credential = std::fs::read_to_string(folder.join("credential-bundle.private-key.x509.pem"))
        .context("the credential bundle in the injected folder")?;
    ensure!(
        credential.starts_with("-----BEGIN PRIVATE KEY-----"),
        "the credential bundle starts with its PKCS#8 key"
    );
    let leaf = parse_leaf(&credential)?;
    ensure!(
        leaf.uris == [format!("spiffe://{TRUST_DOMAIN}/ns/injected/sa/default")],
        "the injected pod's SVID: {:?}",
        leaf.uris
    );
    let bundle = std::fs::read_to_string(folder.join(&own))
        .context("the own trust domain's bundle in the injected folder")?;
    ensure!(
        bundle.contains("-----BEGIN CERTIFICATE-----"),
        "the own trust domain's bundle is empty"
    );
    eprintln!(
        "injection: an injected pod had its credential folder from kubelet {:?} after creation",
        started.elapsed()
    );

    // Leave nothing behind for the steps that follow.
    configs
        .delete(CONFIGURATION, &DeleteParams::default())
        .await?;
    for name in ["injected", "not-injected"] {
        namespaces.delete(name, &DeleteParams::default()).await?;
    }
    Ok(())
}
