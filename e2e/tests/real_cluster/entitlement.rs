//! Who gets a certificate: a pod whose only Service disappears across a refresh is not
//! stranded, and an identity other than the pod's kubelet gets nothing, whatever it
//! claims.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use podtls_e2e::*;
use serde_json::{json, Value};
use signer::test_util::RequesterKey;
use signer::KeyType;

use crate::*;
use signer::controller::ServedApis;

/// demo-client's load mode against the pair for `duration`, one new connection per
/// request.
fn start_load(mesh: &Mesh<'_>, pair: &Pair, name: &str, duration: &str) -> Result<Proc> {
    let mut args = pair.client_args()?;
    args.extend(
        [
            "--log-format=json",
            "load",
            "--concurrency=2",
            &format!("--duration={duration}"),
            "--new-connection-per-request",
            "--output=json",
            "--quiet",
        ]
        .map(String::from),
    );
    Proc::start(
        name,
        &mesh.bins.join("demo-client"),
        &args,
        &[("RUST_LOG", "podtls=info")],
        &mesh.logs,
    )
}

/// Waits for the load run to end; its JSON summary, with zero failed requests.
fn finish_load(mut load: Proc) -> Result<Value> {
    let code = load.wait(Duration::from_secs(90))?;
    let summary: Value = load
        .load_summary()
        .with_context(|| format!("no JSON summary from the load run:\n{}", load.tail(20)))?;
    ensure!(code == 0, "load run exited {code}: {summary}");
    ensure!(summary["failed"] == 0, "failed requests: {summary}");
    ensure!(
        summary["requests"].as_u64().unwrap_or(0) > 50,
        "too little traffic: {summary}"
    );
    Ok(summary)
}

/// The stranding scenario: the server pod's only Service is deleted, the pod's
/// certificate is refreshed (kubelet files a new request, which no Service can justify
/// now), and the Service comes back later. The request stays pending, never denied
/// (a denial would be final for the pod); once the Service is back the pod gets a fresh
/// certificate, and its traffic never failed.
pub(crate) async fn a_deleted_service_strands_no_pod(
    mesh: &Mesh<'_>,
    requests: &Requests,
    signer: &SignerReplica,
    pair: &Pair,
) -> Result<()> {
    let ns = pair.namespace.as_str();
    let services: Api<Service> = Api::namespaced(mesh.client.clone(), ns);
    let service_doc = pair
        .docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "server")
        .context("the pair's manifest has no Service `server`")?
        .clone();
    let old = held_serial(mesh.cluster, ns, "server", SERVICE_DNS).await?;
    let known: BTreeSet<String> = requests
        .of_pod(ns, "server")
        .await?
        .iter()
        .map(key)
        .collect();
    let pending_count = |text: &str| {
        metric_sum(
            text,
            "podtls_signer_pending_total",
            &[SERVICE_DNS, "NoMatchingService"],
        )
    };
    let pending_before = pending_count(&signer.metrics().await?);

    let load = start_load(mesh, pair, &format!("{ns}-stranding-load"), "60s")?;
    let started = Instant::now();
    services
        .delete("server", &DeleteParams::default())
        .await
        .context("deleting the Service")?;

    let healing = async {
        // kubelet's new request: pending, with no terminal condition.
        let fresh = eventually(
            "the refresh's new request",
            Duration::from_secs(30),
            || async {
                Ok(requests
                    .of_pod(ns, "server")
                    .await?
                    .into_iter()
                    .find(|p| !known.contains(&key(p)) && p.spec.signer_name == SERVICE_DNS))
            },
        )
        .await?;
        let name = key(&fresh);
        // Looked at (and left pending) at least three times: 10+ seconds without a
        // Service. The old signer would deny it once 10 minutes old.
        eventually(
            "the signer leaves the request pending",
            Duration::from_secs(40),
            || async {
                Ok((pending_count(&signer.metrics().await?) >= pending_before + 3.0).then_some(()))
            },
        )
        .await?;
        let still = requests
            .of_pod(ns, "server")
            .await?
            .into_iter()
            .find(|p| key(p) == name)
            .context("the pending request disappeared")?;
        ensure!(
            outcome(&still).is_none(),
            "{name} was decided without a Service: {:?}",
            outcome(&still)
        );
        apply(&mesh.client, &service_doc)
            .await
            .context("re-creating the Service")?;
        let issued = eventually(
            "the pending request issued once the Service is back",
            Duration::from_secs(40),
            || async {
                Ok(requests
                    .of_pod(ns, "server")
                    .await?
                    .into_iter()
                    .find(|p| key(p) == name && outcome(p).is_some()))
            },
        )
        .await?;
        ensure!(
            outcome(&issued).is_some_and(|(t, _)| t == "Issued"),
            "{name}: {:?}",
            outcome(&issued)
        );
        let leaf = issued_leaf(&issued)?;
        ensure!(
            leaf.dns == vec![format!("server.{ns}.svc")],
            "new leaf names {:?}",
            leaf.dns
        );
        Ok::<_, anyhow::Error>(())
    };
    let (refreshed, healed) = tokio::join!(mesh.cluster.refresh(ns, "server"), healing);
    healed?;
    refreshed.context("the forced refresh")?;
    let new = held_serial(mesh.cluster, ns, "server", SERVICE_DNS).await?;
    ensure!(new != old, "the server still holds serial {old}");
    wait_log_serial(&pair.server, &new).await?;
    ensure!(
        started.elapsed() < Duration::from_secs(50),
        "healing took {:?}, too close to the end of the load run to see the new certificate in traffic",
        started.elapsed()
    );
    let summary = finish_load(load)?;
    let seen: BTreeSet<String> = summary["server_serials"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .map(norm_serial)
        .collect();
    ensure!(
        seen.contains(&old) && seen.contains(&new),
        "traffic saw server serials {seen:?}, want {old} and {new}"
    );
    Ok(())
}

const INTRUDER_NS: &str = "intruder";
const POLICY_BINDING: &str = "podtls-pod-certificate-requester";

/// A fresh key's material for a request for `pod_uid`, as the served API wants it.
fn key_material(cluster: &TestCluster, key: &RequesterKey, pod_uid: &str) -> Value {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    if cluster.state.kubernetes_version.starts_with("1.35") {
        json!({
            "pkixPublicKey": b64(key.spki_der()),
            "proofOfPossession": b64(&key.proof_of_possession(pod_uid)),
        })
    } else {
        json!({"stubPKCS10Request": b64(&key.stub_csr())})
    }
}

/// A claim: what the intruder files.
struct Claim<'a> {
    what: &'a str,
    namespace: &'a str,
    pod: &'a str,
    pod_uid: String,
    service_account: String,
    service_account_uid: String,
    node: String,
    node_uid: String,
}

impl Claim<'_> {
    fn object(&self, cluster: &TestCluster, apis: &ServedApis, key: &RequesterKey) -> Value {
        let mut spec = json!({
            "signerName": SPIFFE,
            "podName": self.pod,
            "podUID": self.pod_uid,
            "serviceAccountName": self.service_account,
            "serviceAccountUID": self.service_account_uid,
            "nodeName": self.node,
            "nodeUID": self.node_uid,
            "maxExpirationSeconds": 86400,
        });
        if let (Some(spec), Value::Object(material)) = (
            spec.as_object_mut(),
            key_material(cluster, key, &self.pod_uid),
        ) {
            spec.extend(material);
        }
        json!({
            "apiVersion": apis.pcr.api_version,
            "kind": "PodCertificateRequest",
            "metadata": {
                "namespace": self.namespace,
                "generateName": "intruder-",
                "labels": {"podtls-e2e/claim": self.what},
            },
            "spec": spec,
        })
    }
}

/// Files `claim` as `client`: the created request's name, or the API's refusal.
async fn file(
    client: &kube::Client,
    cluster: &TestCluster,
    apis: &ServedApis,
    key: &RequesterKey,
    claim: &Claim<'_>,
) -> Result<std::result::Result<String, kube::core::Status>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), claim.namespace, &apis.pcr);
    let object: DynamicObject = serde_json::from_value(claim.object(cluster, apis, key))?;
    match api.create(&PostParams::default(), &object).await {
        Ok(created) => Ok(Ok(created.metadata.name.unwrap_or_default())),
        Err(kube::Error::Api(status)) => Ok(Err(*status)),
        Err(e) => Err(e.into()),
    }
}

fn refused_by_policy(status: &kube::core::Status) -> bool {
    status.message.contains("only the kubelet of node")
}

/// A ServiceAccount in its own namespace, granted `create podcertificaterequests` and
/// read access to pods, Nodes and ServiceAccounts everywhere (so it can copy every
/// field of a running pod), claims pods' identities from the spiffe signer. With the
/// project's admission policy in place every claim is refused at admission; with the
/// policy removed, the signer's own checks deny every mismatch and issue nothing for a
/// pod that does not exist. Nothing is ever issued to it.
pub(crate) async fn a_foreign_identity_claiming_a_pod_gets_nothing(
    mesh: &Mesh<'_>,
    requests: &Requests,
    signer: &SignerReplica,
) -> Result<()> {
    let admin = &mesh.client;
    // The signer sees the policy in force (it checks at start and every minute).
    let enforced = metric_sum(
        &signer.metrics().await?,
        "podtls_signer_requester_policy_enforced",
        &[],
    );
    ensure!(
        enforced == 1.0,
        "podtls_signer_requester_policy_enforced is {enforced}"
    );
    for doc in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INTRUDER_NS}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"namespace": INTRUDER_NS, "name": "intruder"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "podtls-e2e-intruder"},
               "rules": [
                   {"apiGroups": ["certificates.k8s.io"], "resources": ["podcertificaterequests"],
                    "verbs": ["create", "get", "list"]},
                   {"apiGroups": [""], "resources": ["pods", "nodes", "serviceaccounts"],
                    "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "podtls-e2e-intruder"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "podtls-e2e-intruder"},
               "subjects": [{"kind": "ServiceAccount", "namespace": INTRUDER_NS,
                             "name": "intruder"}]}),
    ] {
        apply(admin, &doc).await?;
    }
    let token = eventually(
        "a token for the intruder",
        Duration::from_secs(30),
        || async {
            let request = TokenRequest {
                spec: Some(TokenRequestSpec {
                    audiences: None,
                    expiration_seconds: Some(3600),
                    ..Default::default()
                }),
                ..Default::default()
            };
            Ok(
                Api::<ServiceAccount>::namespaced(admin.clone(), INTRUDER_NS)
                    .create_token_request("intruder", &PostParams::default(), &request)
                    .await
                    .ok()
                    .and_then(|t| t.status)
                    .and_then(|s| s.token),
            )
        },
    )
    .await?;
    let kubeconfig = mesh.logs.join("intruder.kubeconfig");
    write_token_kubeconfig(&mesh.cluster.state, &token, &kubeconfig)?;
    let intruder = client_from_kubeconfig(&kubeconfig).await?;

    // Everything the intruder copies, read with its own rights.
    let ns = "spiffe-mtls";
    let victim = Api::<Pod>::namespaced(intruder.clone(), ns)
        .get("server")
        .await
        .context("the intruder reads the victim pod")?;
    let spec = victim.spec.clone().unwrap_or_default();
    let node = spec.node_name.clone().unwrap_or_default();
    let node_uid = Api::<Node>::all(intruder.clone())
        .get(&node)
        .await?
        .metadata
        .uid
        .unwrap_or_default();
    let sa_uid = |ns: &str, name: &str| {
        let api = Api::<ServiceAccount>::namespaced(intruder.clone(), ns);
        let name = name.to_string();
        async move { Ok::<_, anyhow::Error>(api.get(&name).await?.metadata.uid.unwrap_or_default()) }
    };
    let victim_sa = spec.service_account_name.clone().unwrap_or_default();
    let key_type: KeyType = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.projected.as_ref()?.sources.as_ref())
        .flatten()
        .filter_map(|s| s.pod_certificate.as_ref())
        .find(|c| c.signer_name == SPIFFE)
        .context("the victim has no spiffe source")?
        .key_type
        .parse()?;
    let intruder_key = RequesterKey::generate(key_type);
    let exact = Claim {
        what: "exact-copy",
        namespace: ns,
        pod: "server",
        pod_uid: victim.metadata.uid.clone().unwrap_or_default(),
        service_account: victim_sa.clone(),
        service_account_uid: sa_uid(ns, &victim_sa).await?,
        node: node.clone(),
        node_uid: node_uid.clone(),
    };

    // 1. With the admission policy: refused before it is stored.
    match file(
        &intruder,
        mesh.cluster,
        &requests.apis,
        &intruder_key,
        &exact,
    )
    .await?
    {
        Ok(name) => bail!("the API server stored the intruder's exact copy {ns}/{name}"),
        Err(status) => ensure!(
            refused_by_policy(&status),
            "refused, but not by the policy: {status:?}"
        ),
    }

    // 2. Without it (a cluster where it was not applied): the signer's checks.
    let bindings = Api::<DynamicObject>::all_with(
        admin.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
        )),
    );
    let binding = bindings.get(POLICY_BINDING).await?;
    bindings
        .delete(POLICY_BINDING, &DeleteParams::default())
        .await?;
    let result = async {
        let client_sa_uid = sa_uid(ns, "client").await?;
        let unauth_pod = Api::<Pod>::namespaced(intruder.clone(), "service-dns-unauth-client")
            .get("server")
            .await?;
        let unauth_spec = unauth_pod.spec.clone().unwrap_or_default();
        let unauth_sa = unauth_spec.service_account_name.clone().unwrap_or_default();
        let claims = [
            (
                Claim {
                    what: "other-service-account",
                    service_account: "client".into(),
                    service_account_uid: client_sa_uid,
                    ..exact.clone_fields()
                },
                Some("ServiceAccountMismatch"),
            ),
            (
                Claim {
                    what: "other-node-uid",
                    node_uid: "00000000-0000-4000-8000-000000000000".into(),
                    ..exact.clone_fields()
                },
                Some("NodeUIDMismatch"),
            ),
            (
                Claim {
                    what: "pod-without-a-spiffe-volume",
                    namespace: "service-dns-unauth-client",
                    pod: "server",
                    pod_uid: unauth_pod.metadata.uid.clone().unwrap_or_default(),
                    service_account_uid: sa_uid("service-dns-unauth-client", &unauth_sa).await?,
                    service_account: unauth_sa,
                    node: unauth_spec.node_name.clone().unwrap_or_default(),
                    node_uid: Api::<Node>::all(intruder.clone())
                        .get(unauth_spec.node_name.as_deref().unwrap_or_default())
                        .await?
                        .metadata
                        .uid
                        .unwrap_or_default(),
                },
                Some("NoPodCertificateSource"),
            ),
            (
                Claim {
                    what: "no-such-pod",
                    pod: "ghost",
                    pod_uid: "11111111-1111-4111-8111-111111111111".into(),
                    ..exact.clone_fields()
                },
                None,
            ),
        ];
        let mut filed = Vec::new();
        for (claim, want) in &claims {
            // The binding's removal reaches admission within seconds.
            let name = eventually(
                &format!("claim {} accepted for storage", claim.what),
                Duration::from_secs(30),
                || async {
                    match file(
                        &intruder,
                        mesh.cluster,
                        &requests.apis,
                        &intruder_key,
                        claim,
                    )
                    .await?
                    {
                        Ok(name) => Ok(Some(name)),
                        Err(s) if refused_by_policy(&s) => Ok(None),
                        Err(s) => bail!("claim {} refused: {s:?}", claim.what),
                    }
                },
            )
            .await?;
            filed.push((claim.namespace, name, claim.what, *want));
        }
        for (claim_ns, name, what, want) in &filed {
            let Some(want) = want else { continue };
            let decided = eventually(
                &format!("claim {what} ({claim_ns}/{name}) decided"),
                Duration::from_secs(60),
                || async {
                    Ok(requests
                        .list(Some(claim_ns))
                        .await?
                        .into_iter()
                        .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
                        .filter(|p| outcome(p).is_some()))
                },
            )
            .await?;
            ensure!(
                outcome(&decided) == Some(("Denied".into(), want.to_string())),
                "claim {what}: {:?}, want Denied/{want}",
                outcome(&decided)
            );
        }
        // The claim for a pod that does not exist: looked at, never issued (pending
        // until kube-controller-manager's cleaner deletes it).
        let (_, ghost, _, _) = filed
            .iter()
            .find(|(_, _, what, _)| *what == "no-such-pod")
            .context("no ghost claim")?;
        let ghost_pcr = requests
            .list(Some(ns))
            .await?
            .into_iter()
            .find(|p| p.metadata.name.as_deref() == Some(ghost.as_str()))
            .context("the ghost claim disappeared")?;
        ensure!(
            outcome(&ghost_pcr).is_none(),
            "the claim for a pod that does not exist was decided: {:?}",
            outcome(&ghost_pcr)
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;

    // 3. The policy back: refused again (probed with a claim the signer would deny).
    let mut restored = binding;
    restored.metadata.resource_version = None;
    restored.metadata.uid = None;
    restored.metadata.creation_timestamp = None;
    restored.metadata.managed_fields = None;
    bindings.create(&PostParams::default(), &restored).await?;
    result?;
    let probe = Claim {
        what: "probe",
        node_uid: "00000000-0000-4000-8000-000000000001".into(),
        ..exact.clone_fields()
    };
    eventually(
        "the policy refusing again",
        Duration::from_secs(30),
        || async {
            Ok(
                match file(
                    &intruder,
                    mesh.cluster,
                    &requests.apis,
                    &intruder_key,
                    &probe,
                )
                .await?
                {
                    Err(s) if refused_by_policy(&s) => Some(()),
                    _ => None,
                },
            )
        },
    )
    .await?;
    match file(
        &intruder,
        mesh.cluster,
        &requests.apis,
        &intruder_key,
        &exact,
    )
    .await?
    {
        Ok(name) => bail!("the API server stored the intruder's exact copy {ns}/{name}"),
        Err(status) => ensure!(refused_by_policy(&status), "{status:?}"),
    }

    // Nothing the intruder filed was ever issued.
    for claim_ns in [ns, "service-dns-unauth-client"] {
        for pcr in requests.list(Some(claim_ns)).await? {
            let by_intruder = pcr
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("podtls-e2e/claim"));
            ensure!(
                !by_intruder || outcome(&pcr).is_none_or(|(t, _)| t != "Issued"),
                "{} was issued to the intruder",
                key(&pcr)
            );
        }
    }
    Ok(())
}

impl<'a> Claim<'a> {
    fn clone_fields(&self) -> Claim<'a> {
        Claim {
            what: self.what,
            namespace: self.namespace,
            pod: self.pod,
            pod_uid: self.pod_uid.clone(),
            service_account: self.service_account.clone(),
            service_account_uid: self.service_account_uid.clone(),
            node: self.node.clone(),
            node_uid: self.node_uid.clone(),
        }
    }
}
