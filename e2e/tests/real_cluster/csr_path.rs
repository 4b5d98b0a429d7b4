//! The CertificateSigningRequest path (issue 13) on a cluster WITHOUT the Pod
//! Certificates API (1.35, no feature gates, no runtime-config): two pods in
//! an opted-in namespace, each with `podtls-agent` run as a local process
//! authenticated with a pod-bound token from the TokenRequest API, reading the
//! trust bundles from the `podtls-trust-bundles` ConfigMap as kubelet's code
//! projects it into the pod; demo-server and demo-client on the folders the
//! agents write; mTLS with the pods' SPIFFE IDs, rotations under load with zero
//! failed requests; the attacks (another pod's token asking for a name it is
//! not entitled to, a deleted pod's token, a token bound to no pod) refused.
//!
//! The signer is the real one (`signer --enable-csr-signing=true`, deployed from
//! the controller manifests as the other tests do), publishing the
//! `podtls-trust-bundles` ConfigMap in the opted-in namespace.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use podtls_e2e::*;
use serde_json::{json, Value};

use crate::*;

const NS: &str = "csr-demo";
const SA: &str = "demo";
const TRUST_BUNDLES: &str = "podtls-trust-bundles";
const BUNDLE_FILE: &str = "cluster.local.spiffe-trust-bundle.x509.pem";

fn spiffe_id(ns: &str, sa: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{sa}")
}

/// A token for `sa` from the TokenRequest API, bound to `pod` (name, uid) if given.
async fn token(admin: &kube::Client, sa: &str, pod: Option<(&str, &str)>) -> Result<String> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(3600),
            bound_object_ref: pod.map(|(name, uid)| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.into()),
                uid: Some(uid.into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), NS)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .context("TokenRequest")?
        .status
        .and_then(|s| s.token)
        .context("TokenRequest returned no token")
}

fn pod_template(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": NS, "name": name, "labels": {"app": name}},
        "spec": {
            "serviceAccountName": SA,
            "nodeName": node,
            "automountServiceAccountToken": false,
            "containers": [{"name": name, "image": "localhost/podtls:dev", "command": ["/bin/true"]}],
            "volumes": [{"name": "trust-bundles", "projected": {"sources": [
                {"configMap": {"name": TRUST_BUNDLES}}]}}],
        },
    })
}

/// One pod with its agent.
struct AgentPod {
    name: String,
    uid: String,
    folder: PathBuf,
    agent: Proc,
    ready_after: Duration,
}

async fn start_agent_pod(
    cluster: &TestCluster,
    admin: &kube::Client,
    bins: &Path,
    work: &Path,
    name: &str,
    node: &str,
) -> Result<AgentPod> {
    let created = Instant::now();
    let pod: Pod = serde_json::from_value(pod_template(name, node))?;
    let pod = Api::<Pod>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let state = cluster.wait_pod(NS, name, Duration::from_secs(60)).await?;
    let bundles = volume(&state, "trust-bundles")?;
    let token_file = work.join(format!("{name}.token"));
    std::fs::write(&token_file, token(admin, SA, Some((name, &uid))).await?)?;
    let folder = work.join(format!("{name}-credentials"));
    let agent = Proc::start(
        &format!("{name}-agent"),
        &bins.join("podtls-agent"),
        &[
            format!("--signer-name={SPIFFE}"),
            "--key-type=ECDSAP256".into(),
            format!("--credential-folder={}", folder.display()),
            format!("--trust-bundle-dir={}", bundles.display()),
            format!("--token-file={}", token_file.display()),
            format!("--trust-domain={TRUST_DOMAIN}"),
            "--federates-with=b.example".into(),
            "--expiration-seconds=600".into(),
            format!("--api-server={}", cluster.state.api_server_url),
            format!("--api-ca-file={}", cluster.state.ca_file.display()),
            // The renewal fraction of a 600 s certificate is 5 minutes away:
            // renew 3 s after receipt instead (test-only flag).
            "--renew-after=3s".into(),
            "--log-format=json".into(),
        ],
        // No POD_NAME / POD_NAMESPACE: the agent reads them from the token's claims.
        &[("RUST_LOG", "info")],
        work,
    )?;
    let probe_bin = bins.join("podtls-agent");
    let probe_folder = folder.clone();
    eventually(
        &format!("{name}'s credential folder"),
        Duration::from_secs(30),
        || {
            let (bin, folder) = (probe_bin.clone(), probe_folder.clone());
            async move {
                let ok = std::process::Command::new(bin)
                    .arg("probe")
                    .arg(format!("--credential-folder={}", folder.display()))
                    .output()?
                    .status
                    .success();
                Ok(ok.then_some(()))
            }
        },
    )
    .await
    .with_context(|| format!("agent log:\n{}", agent.tail(20)))?;
    Ok(AgentPod {
        name: name.to_string(),
        uid,
        folder,
        agent,
        ready_after: created.elapsed(),
    })
}

/// The agent's issuance log lines (JSON).
fn issuances(agent: &Proc) -> Vec<Value> {
    agent
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "credentials issued and written")
        .collect()
}

fn leaf_uri(folder: &Path) -> Result<String> {
    let text = std::fs::read_to_string(folder.join("credential-bundle.private-key.x509.pem"))?;
    let leaf = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .context("no certificate in the credential bundle")?;
    let pem = format!("-----BEGIN CERTIFICATE-----{leaf}");
    let parsed = parse_leaf(&pem)?;
    parsed.uris.first().cloned().context("leaf without URI SAN")
}

/// Files one CSR with `token` for a request naming `uri` (if any); returns the
/// agent library's verdict.
async fn file_with(
    cluster: &TestCluster,
    work: &Path,
    tag: &str,
    token: &str,
    uri: Option<&str>,
) -> std::result::Result<podtls_agent::Filed, podtls_agent::AgentError> {
    let token_file = work.join(format!("{tag}.token"));
    std::fs::write(&token_file, token).expect("writing token");
    let ep = podtls_agent::ApiEndpoint {
        url: cluster.state.api_server_url.clone(),
        ca_file: cluster.state.ca_file.clone(),
        token_file,
    };
    let client = podtls_agent::client(&ep)?;
    let key = podtls_agent::KeyType::EcdsaP256.generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(uri) = uri {
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().expect("uri"))];
    }
    let pem = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .expect("pkcs10");
    let spec = podtls_agent::RequestSpec {
        signer_name: SPIFFE.into(),
        namespace: NS.into(),
        pod_name: tag.into(),
        key_type: podtls_agent::KeyType::EcdsaP256,
        expiration_seconds: 600,
    };
    let mut requests = 0;
    podtls_agent::file_and_wait(
        &client,
        &podtls_agent::csr_object(&spec, &pem),
        Duration::from_secs(20),
        &mut requests,
    )
    .await
}

pub(crate) async fn csr_path_suite(cluster: &TestCluster) -> Result<()> {
    ensure!(
        cluster.state.pcr_api_version.is_empty(),
        "the harness reports a PCR API: {}",
        cluster.state.pcr_api_version
    );
    let admin = cluster.admin_client().await?;
    // The API server really serves no PodCertificateRequests.
    let served = kube::discovery::Discovery::new(admin.clone())
        .run()
        .await?
        .resolve_gvk(&kube::core::GroupVersionKind::gvk(
            "certificates.k8s.io",
            "v1beta1",
            "PodCertificateRequest",
        ))
        .is_some();
    ensure!(!served, "PodCertificateRequest is served");

    let mesh = Mesh::install(cluster).await.context("installing")?;
    let bins = mesh.bins.clone();
    let work = mesh.logs.clone();
    let webhook_port = free_port();
    // controller.yaml runs the signer with --enable-csr-signing=true and ships the
    // RBAC of both sides (the signer's, and podtls-csr-requester for ServiceAccounts).
    let flags = injection_flags(webhook_port, &mesh.logs.join("webhook-credential"));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let signer = mesh
        .start_signer("a", &flags)
        .await
        .context("starting the signer with CSR signing")?;

    for doc in [
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": NS, "labels": {"podtls.row-major.net/inject": "enabled"}}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": NS, "name": SA}}),
    ] {
        apply(&admin, &doc).await?;
    }

    // The signer publishes the trust bundles in the opted-in namespace.
    let cms = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(admin.clone(), NS);
    eventually(
        "the signer's podtls-trust-bundles ConfigMap",
        Duration::from_secs(30),
        || async {
            Ok(cms.get_opt(TRUST_BUNDLES).await?.and_then(|cm| {
                cm.data
                    .and_then(|d| d.get(BUNDLE_FILE).cloned())
                    .filter(|pem| pem_certs(pem) > 0)
            }))
        },
    )
    .await?;

    let nodes = cluster.nodes();
    let server = start_agent_pod(cluster, &admin, &bins, &work, "server", &nodes[0]).await?;
    let client = start_agent_pod(
        cluster,
        &admin,
        &bins,
        &work,
        "client",
        &nodes[nodes.len() - 1],
    )
    .await?;
    let id = spiffe_id(NS, SA);
    for p in [&server, &client] {
        ensure!(leaf_uri(&p.folder)? == id, "{}'s SVID is not {id}", p.name);
        // The federated trust domain without a published bundle: present and empty.
        let fed = std::fs::metadata(p.folder.join("b.example.spiffe-trust-bundle.x509.pem"))?;
        ensure!(fed.len() == 0, "b.example's bundle should be empty");
        eprintln!(
            "CSR path: pod {} (uid {}) created -> credential folder ready in {:?}",
            p.name, p.uid, p.ready_after
        );
    }

    // mTLS on the agents' folders, under load while both agents rotate.
    let port = free_port();
    let admin_port = free_port();
    let demo_server = Proc::start(
        "csr-demo-server",
        &bins.join("demo-server"),
        &[
            format!("--listen=127.0.0.1:{port}"),
            format!("--credential-folder={}", server.folder.display()),
            "--require-spiffe-client".into(),
            format!("--admin-listen=127.0.0.1:{admin_port}"),
        ],
        &[("RUST_LOG", "info")],
        &work,
    )?;
    wait_http_ok(
        &format!("http://127.0.0.1:{admin_port}/readyz"),
        Duration::from_secs(30),
    )
    .await
    .with_context(|| format!("demo-server:\n{}", demo_server.tail(30)))?;
    let host = format!("server.{NS}.svc");
    let before: Vec<usize> = [&server, &client]
        .iter()
        .map(|p| issuances(&p.agent).len())
        .collect();
    let mut load = Proc::start(
        "csr-demo-load",
        &bins.join("demo-client"),
        &[
            format!("--fetch-url=https://{host}:{port}/spiffe-echo"),
            format!("--credential-folder={}", client.folder.display()),
            format!("--server-spiffe-id={id}"),
            format!("--resolve={host}:{port}:127.0.0.1"),
            "--log-format=json".into(),
            "load".into(),
            "--concurrency=2".into(),
            "--duration=14s".into(),
            "--new-connection-per-request".into(),
            "--output=json".into(),
            "--quiet".into(),
        ],
        &[("RUST_LOG", "podtls=info")],
        &work,
    )?;
    load.wait(Duration::from_secs(40))?;
    let summary = load
        .load_summary()
        .with_context(|| format!("no load summary:\n{}", load.tail(20)))?;
    let (ok, failed) = (
        summary["requests"].as_u64().unwrap_or(0),
        summary["failed"].as_u64().unwrap_or(u64::MAX),
    );
    ensure!(
        ok > 0 && failed == 0,
        "load over rotating credentials: {summary}"
    );
    // The rotations were seen on the wire: both peers presented several certificates.
    for side in ["server_serials", "client_serials"] {
        let seen = summary[side].as_array().map_or(0, Vec::len);
        ensure!(
            seen >= 2,
            "{side}: {seen} certificate(s) seen during the load run: {summary}"
        );
    }
    ensure!(
        summary["bodies"].to_string().contains(&id),
        "demo-server did not see the client as {id}: {summary}"
    );
    let mut requests_per_renewal = Vec::new();
    for (p, n) in [&server, &client].iter().zip(before) {
        let all = issuances(&p.agent);
        let during = all.len() - n;
        ensure!(
            during >= 2,
            "{}'s agent renewed {during} times during the load run (want >= 2):\n{}",
            p.name,
            p.agent.tail(10)
        );
        let serials: std::collections::BTreeSet<_> = all
            .iter()
            .map(|v| v["fields"]["serial"].to_string())
            .collect();
        ensure!(serials.len() == all.len(), "a serial was reused");
        requests_per_renewal.extend(
            all.iter()
                .filter_map(|v| v["fields"]["api_requests"].as_u64()),
        );
    }
    eprintln!(
        "CSR path: {ok} requests, 0 failed, over {} renewals; CSR API requests per renewal: {:?}",
        requests_per_renewal.len(),
        requests_per_renewal
    );
    ensure!(
        requests_per_renewal.iter().all(|&n| (1..=4).contains(&n)),
        "CSR API requests per renewal: {requests_per_renewal:?}"
    );

    // The agents stop cleanly on SIGTERM; then kube-apiserver's audit log agrees with
    // their request counters: every CSR request made as the pods' ServiceAccount is
    // one an agent counted (an attempt in flight at SIGTERM, up to 2 requests per
    // agent, is not reported).
    let client_uid = client.uid.clone();
    let mut counted = 0u64;
    for mut p in [server, client] {
        counted += issuances(&p.agent)
            .iter()
            .filter_map(|v| v["fields"]["api_requests"].as_u64())
            .sum::<u64>();
        let code = p.agent.terminate(Duration::from_secs(10));
        ensure!(
            code == Some(0),
            "{}'s agent exit on SIGTERM: {code:?}",
            p.name
        );
    }
    let user = format!("system:serviceaccount:{NS}:{SA}");
    let audited = eventually(
        "the audit log has the agents' requests",
        Duration::from_secs(10),
        || async {
            let ids: std::collections::BTreeSet<String> = cluster
                .audit_events()?
                .iter()
                .filter(|e| e["user"]["username"] == user.as_str())
                .filter(|e| e["objectRef"]["resource"] == "certificatesigningrequests")
                .filter_map(|e| e["auditID"].as_str().map(str::to_string))
                .collect();
            Ok((ids.len() as u64 >= counted).then_some(ids.len() as u64))
        },
    )
    .await?;
    ensure!(
        audited <= counted + 4,
        "audit log: {audited} CSR requests as {user}, agents counted {counted}"
    );
    eprintln!("CSR path: audit log {audited} CSR requests as {user}; agents counted {counted}");

    // Attack 1: the client pod's token asking for a name it is not entitled to.
    let client_token = token(&admin, SA, Some(("client", &client_uid))).await?;
    let other = spiffe_id(NS, "server-admin");
    match file_with(cluster, &work, "attack-names", &client_token, Some(&other)).await {
        Err(podtls_agent::AgentError::Denied { reason, .. }) => {
            eprintln!("CSR path: another pod's token for {other}: Denied ({reason})")
        }
        other => bail!("a CSR for a name the pod is not entitled to was not denied: {other:?}"),
    }

    // Attack 2: the token of a pod that was deleted.
    let victim = {
        let pod: Pod = serde_json::from_value(pod_template("victim", &nodes[0]))?;
        Api::<Pod>::namespaced(admin.clone(), NS)
            .create(&PostParams::default(), &pod)
            .await?
    };
    let victim_uid = victim.metadata.uid.clone().unwrap_or_default();
    let victim_token = token(&admin, SA, Some(("victim", &victim_uid))).await?;
    Api::<Pod>::namespaced(admin.clone(), NS)
        .delete("victim", &DeleteParams::default().grace_period(0))
        .await?;
    eventually("the victim pod gone", Duration::from_secs(30), || async {
        Ok(Api::<Pod>::namespaced(admin.clone(), NS)
            .get_opt("victim")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    match file_with(cluster, &work, "attack-deleted", &victim_token, None).await {
        // kube-apiserver itself rejects a token whose bound pod is gone (401).
        Err(podtls_agent::AgentError::Kube { source, .. }) if is_status(&source, 401) => {
            eprintln!("CSR path: a deleted pod's token: 401 at kube-apiserver")
        }
        Err(podtls_agent::AgentError::Denied { reason, .. }) => {
            eprintln!("CSR path: a deleted pod's token: Denied ({reason})")
        }
        other => bail!("a CSR with a deleted pod's token was not refused: {other:?}"),
    }

    // Attack 3: a token of the same ServiceAccount bound to no pod.
    let unbound = token(&admin, SA, None).await?;
    match file_with(cluster, &work, "attack-unbound", &unbound, None).await {
        Err(podtls_agent::AgentError::Denied { reason, .. }) => {
            eprintln!("CSR path: a token bound to no pod: Denied ({reason})")
        }
        other => bail!("a CSR with a token bound to no pod was not denied: {other:?}"),
    }

    webhook_injects_the_agent(&admin, webhook_port).await?;

    let metrics = signer.metrics().await?;
    eprintln!(
        "CSR path: signer metrics: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("podtls_signer_csr_decisions_total"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(())
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    match e {
        kube::Error::Api(s) => s.code == code,
        _ => false,
    }
}

/// The signer's webhook on this cluster (no PodCertificateRequest API): an opted-in
/// pod gets the agent as a native sidecar and an in-memory credential folder, no
/// `podCertificate` volume.
async fn webhook_injects_the_agent(admin: &kube::Client, port: u16) -> Result<()> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
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
    apply_all(admin, &rbac).await?;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": CONFIGURATION},
        "webhooks": [{
            "name": "namespace.injection.podtls.row-major.net",
            "clientConfig": {"url": format!("https://localhost:{port}/mutate-pods")},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"podtls.row-major.net/inject": "enabled"}},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "admissionReviewVersions": ["v1"],
        }]
    }))?;
    configs.create(&PostParams::default(), &config).await?;
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
    // Unscheduled (no nodeName): admission is all that runs.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "web-"},
        "spec": {"serviceAccountName": SA, "containers": [{"name": "web", "image": "web"}]},
    }))?;
    let pods = Api::<Pod>::namespaced(admin.clone(), NS);
    // The webhook learns the API's shape by discovery; retry until it answers.
    let pod = eventually("an injected pod", Duration::from_secs(30), || async {
        Ok(pods.create(&PostParams::default(), &pod).await.ok())
    })
    .await?;
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.clone().unwrap_or_default();
    let agent = init.first().context("no init container injected")?;
    ensure!(
        agent.name == "podtls-agent" && agent.restart_policy.as_deref() == Some("Always"),
        "first init container is not the agent as a native sidecar: {agent:?}"
    );
    let args = agent.args.clone().unwrap_or_default();
    ensure!(
        args.contains(&format!("--signer-name={SPIFFE}"))
            && args.contains(&format!("--trust-domain={TRUST_DOMAIN}")),
        "agent args: {args:?}"
    );
    let probe = agent
        .startup_probe
        .as_ref()
        .and_then(|p| p.exec.as_ref())
        .and_then(|e| e.command.clone())
        .unwrap_or_default();
    ensure!(
        probe.get(1).map(String::as_str) == Some("probe"),
        "startup probe: {probe:?}"
    );
    let volumes = serde_json::to_value(spec.volumes.clone().unwrap_or_default())?;
    ensure!(
        !volumes.to_string().contains("podCertificate"),
        "a podCertificate volume on a cluster without the API: {volumes}"
    );
    ensure!(
        volumes.to_string().contains("\"medium\":\"Memory\""),
        "no in-memory credential folder: {volumes}"
    );
    let env = serde_json::to_value(&spec.containers[0].env)?;
    ensure!(
        env.to_string().contains("SPIFFE_CREDENTIAL_FOLDER"),
        "app container without SPIFFE_CREDENTIAL_FOLDER: {env}"
    );
    eprintln!(
        "CSR path: the webhook injected the agent as a native sidecar ({} init container(s))",
        init.len()
    );
    Ok(())
}
