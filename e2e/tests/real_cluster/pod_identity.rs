//! The pod-identity signer on the real API server: the example pair
//! (`example-manifests/pod-identity.yaml`) talking, the server authorizing by the
//! namespace in the client's PodIdentity and by the issuing cluster (read back by
//! podtls), a client of another namespace refused; a StatefulSet-style pod getting its
//! per-pod name; `userAnnotations` choosing a subset of the Services, and a pod naming
//! a Service that does not select it left pending until the Service does.

use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use podtls_e2e::*;
use serde_json::json;
use signer::PodIdentity;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::*;

pub(crate) const POD_IDENTITY: &str = "row-major.net/pod-identity";
const NS: &str = "pod-identity";
/// The test cluster's `--service-account-issuer`, discovered by the signer.
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The issued leaf (DER) of the pod's decided request, once it is issued.
async fn issued_der(requests: &Requests, ns: &str, pod: &str) -> Result<Vec<u8>> {
    Ok(issued(requests, ns, pod).await?.0)
}

/// The issued leaf (DER) and chain (PEM) of the pod's decided request.
async fn issued(requests: &Requests, ns: &str, pod: &str) -> Result<(Vec<u8>, String)> {
    let pcr = eventually(
        &format!("{ns}/{pod} issued"),
        Duration::from_secs(60),
        || async {
            Ok(requests
                .of_pod(ns, pod)
                .await?
                .into_iter()
                .find(|p| outcome(p).is_some()))
        },
    )
    .await?;
    let got = outcome(&pcr).unwrap();
    ensure!(got.0 == "Issued", "{ns}/{pod}: {got:?}");
    issued_leaf(&pcr)?; // status fields agree with the leaf
    let chain = pcr
        .status
        .and_then(|s| s.certificate_chain)
        .context("no chain")?;
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
        .next()
        .context("empty chain")??;
    Ok((der.to_vec(), chain))
}

fn dns_names(der: &[u8]) -> Result<Vec<String>> {
    let (_, cert) = X509Certificate::from_der(der)?;
    let mut names: Vec<String> = match cert.subject_alternative_name()? {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    names.sort();
    Ok(names)
}

fn common_names(der: &[u8]) -> Result<Vec<String>> {
    let (_, cert) = X509Certificate::from_der(der)?;
    Ok(cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect())
}

pub(crate) async fn the_pod_identity_signer_works_end_to_end(
    mesh: &Mesh<'_>,
    requests: &Requests,
    signer: &SignerReplica,
) -> Result<()> {
    let pair = mesh.start_pair(NS).await.context("starting the pair")?;

    // The server's certificate: the whole identity of its pod.
    let (der, chain) = issued(requests, NS, "server").await?;
    let leaf = parse_leaf(&chain)?;
    ensure!(
        leaf.uris == [format!("spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/server")],
        "URI SANs {:?}",
        leaf.uris
    );
    // userAnnotations in the manifest choose the Service `server`.
    ensure!(
        dns_names(&der)? == [format!("server.{NS}.svc")],
        "DNS SANs {:?}",
        dns_names(&der)?
    );
    ensure!(
        common_names(&der)? == ["server"],
        "CN {:?}",
        common_names(&der)?
    );
    let identity = PodIdentity::from_own_certificate(&der)?.context("no PodIdentity")?;
    let server_uid = &pair.server_pod.uid;
    ensure!(
        identity.namespace == NS
            && identity.service_account_name == "server"
            && identity.pod_name == "server"
            && &identity.pod_uid == server_uid
            && identity.node_name == pair.server_pod.node
            && !identity.service_account_uid.is_empty()
            && !identity.node_uid.is_empty(),
        "PodIdentity {identity:?} (pod UID {server_uid}, node {})",
        pair.server_pod.node
    );

    // The pair talks; the server echoes the client's PodIdentity and issuing cluster,
    // read by podtls from the verified chain.
    let lines = pair.fetch(&mesh.bins, 2)?;
    let client = &pair.client_pod;
    let want_pod_line =
        format!("Pod Identity: namespace={NS} serviceAccount=client serviceAccountUID=");
    let mut seen = 0;
    for (i, l) in lines.iter().enumerate() {
        if l.contains(" 200 ") {
            ensure!(
                l.ends_with(&format!(
                    "Client Identity: spiffe://{TRUST_DOMAIN}/ns/{NS}/sa/client"
                )),
                "{l}"
            );
            let next = lines.get(i + 1).context("no Pod Identity line")?;
            ensure!(next.starts_with(&want_pod_line), "{next}");
            ensure!(
                next.contains(&format!(
                    " pod=client podUID={} node={} ",
                    client.uid, client.node
                )),
                "{next} (client pod {} on {})",
                client.uid,
                client.node
            );
            ensure!(
                next.ends_with(&format!(" issuingCluster={ISSUER}")),
                "{next}"
            );
            seen += 1;
        }
    }
    ensure!(seen == 2, "demo-client printed {lines:?}");

    a_client_of_another_namespace_is_refused(mesh, &pair).await?;
    a_statefulset_pod_gets_its_per_pod_name(mesh, requests).await?;
    user_annotations_choose_a_subset(mesh, requests, signer).await?;
    Ok(())
}

/// A pod of another namespace, with a valid pod-identity certificate from the same
/// CA, is refused by the server's namespace rule.
async fn a_client_of_another_namespace_is_refused(mesh: &Mesh<'_>, pair: &Pair) -> Result<()> {
    let other = "pod-identity-other";
    let docs: Vec<serde_json::Value> = pair
        .docs
        .iter()
        .filter(|d| {
            matches!(
                (d["kind"].as_str(), d["metadata"]["name"].as_str()),
                (Some("Namespace"), _) | (Some("ServiceAccount"), Some("client"))
            )
        })
        .map(|d| {
            let mut d = d.clone();
            if d["kind"] == "Namespace" {
                d["metadata"]["name"] = json!(other);
            } else {
                d["metadata"]["namespace"] = json!(other);
            }
            d
        })
        .collect();
    apply_all(&mesh.client, &docs).await?;
    let node = mesh.cluster.nodes()[1].clone();
    create_pod_from_template(
        &mesh.client,
        pod_template(&pair.docs, "client")?,
        other,
        "client",
        &node,
        |_| {},
    )
    .await?;
    let intruder = mesh
        .cluster
        .wait_pod(other, "client", Duration::from_secs(90))
        .await?;
    let their_dir = volume(&intruder, "podtls")?;
    let our_dir = volume(&pair.client_pod, "podtls")?;
    let args: Vec<String> = pair
        .client_args()?
        .into_iter()
        .map(|a| {
            a.replace(
                &our_dir.display().to_string(),
                &their_dir.display().to_string(),
            )
        })
        .chain(["--count=1".to_string()])
        .collect();
    let out = std::process::Command::new(mesh.bins.join("demo-client"))
        .args(&args)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        !out.status.success() && !stdout.contains(" 200 "),
        "a client of namespace {other} was served: {stdout}"
    );
    // The server refused it for its namespace: the chain verified, the rule did not allow.
    let refused = eventually(
        "the server logs the refusal",
        Duration::from_secs(10),
        || async {
            Ok(pair.server.lines().into_iter().find(|l| {
                l.contains(&format!("spiffe://{TRUST_DOMAIN}/ns/{other}/sa/client"))
                    && l.contains("not authorized")
            }))
        },
    )
    .await?;
    ensure!(
        refused.contains(&format!("pod in namespace {NS}")),
        "{refused}"
    );
    Ok(())
}

/// A pod with `spec.hostname` and `spec.subdomain` naming a headless Service that
/// selects it gets `<hostname>.<subdomain>.<ns>.svc`; a subdomain naming a ClusterIP
/// Service gives no per-pod name.
async fn a_statefulset_pod_gets_its_per_pod_name(
    mesh: &Mesh<'_>,
    requests: &Requests,
) -> Result<()> {
    let services = json!([
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"namespace": NS, "name": "db"},
         "spec": {"clusterIP": "None", "selector": {"app": "db"},
                  "ports": [{"name": "https", "port": 443}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"namespace": NS, "name": "db-read"},
         "spec": {"selector": {"app": "db"}, "ports": [{"name": "https", "port": 443}]}}
    ]);
    apply_all(&mesh.client, services.as_array().unwrap()).await?;
    let docs = load_manifest(&manifests_dir().join(format!("{NS}.yaml")))?;
    let template = pod_template(&docs, "client")?;
    let node = mesh.cluster.nodes()[0].clone();
    for (pod, subdomain) in [("db-0", "db"), ("db-1", "db-read")] {
        create_pod_from_template(&mesh.client, template, NS, pod, &node, |p| {
            p["metadata"]["labels"] = json!({"app": "db"});
            p["spec"]["hostname"] = json!(pod);
            p["spec"]["subdomain"] = json!(subdomain);
        })
        .await?;
    }
    let der = issued_der(requests, NS, "db-0").await?;
    let want = [
        format!("db-0.db.{NS}.svc"),
        format!("db-read.{NS}.svc"),
        format!("db.{NS}.svc"),
    ];
    ensure!(dns_names(&der)? == want, "db-0: {:?}", dns_names(&der)?);
    // Attack: the subdomain names db-read, which is not headless.
    let der = issued_der(requests, NS, "db-1").await?;
    let want = [format!("db-read.{NS}.svc"), format!("db.{NS}.svc")];
    ensure!(dns_names(&der)? == want, "db-1: {:?}", dns_names(&der)?);
    Ok(())
}

/// `userAnnotations` `row-major.net/services` narrows the names to the chosen
/// Services; a pod choosing a Service that does not select it gets nothing until the
/// Service selects it.
async fn user_annotations_choose_a_subset(
    mesh: &Mesh<'_>,
    requests: &Requests,
    signer: &SignerReplica,
) -> Result<()> {
    let pending = |text: &str| {
        metric_sum(
            text,
            "podtls_signer_pending_total",
            &[POD_IDENTITY, "ChosenServiceNotSelecting"],
        )
    };
    let pending_before = pending(&signer.metrics().await?);
    let services = json!([
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"namespace": NS, "name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"name": "https", "port": 443}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"namespace": NS, "name": "web-admin"},
         "spec": {"selector": {"app": "web"}, "ports": [{"name": "https", "port": 443}]}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"namespace": NS, "name": "payments"},
         "spec": {"selector": {"app": "payments"}, "ports": [{"name": "https", "port": 443}]}}
    ]);
    apply_all(&mesh.client, services.as_array().unwrap()).await?;
    let docs = load_manifest(&manifests_dir().join(format!("{NS}.yaml")))?;
    let template = pod_template(&docs, "client")?;
    let node = mesh.cluster.nodes()[0].clone();
    for (pod, chosen) in [("web-0", "web-admin"), ("web-1", "web,payments")] {
        create_pod_from_template(&mesh.client, template, NS, pod, &node, |p| {
            p["metadata"]["labels"] = json!({"app": "web"});
            p["spec"]["volumes"][0]["projected"]["sources"][0]["podCertificate"]
                ["userAnnotations"] = json!({"row-major.net/services": chosen});
        })
        .await?;
    }
    let der = issued_der(requests, NS, "web-0").await?;
    ensure!(
        dns_names(&der)? == [format!("web-admin.{NS}.svc")],
        "web-0: {:?}",
        dns_names(&der)?
    );
    // web-1 chose payments, which does not select it: the signer looks at its request
    // three times (every 5 s) and leaves it undecided each time ...
    eventually(
        "the signer leaves web-1's request pending three times",
        Duration::from_secs(60),
        || async {
            let n = pending(&signer.metrics().await?) - pending_before;
            Ok((n >= 3.0).then_some(()))
        },
    )
    .await?;
    let filed = requests.of_pod(NS, "web-1").await?;
    ensure!(!filed.is_empty(), "web-1 filed no request");
    for p in &filed {
        if let Some(o) = outcome(p) {
            bail!("web-1 chose a Service that does not select it and got {o:?}");
        }
        ensure!(
            p.status
                .as_ref()
                .and_then(|s| s.certificate_chain.as_ref())
                .is_none(),
            "web-1 has a chain"
        );
    }
    // ... until payments selects it (the pod gets the label): then it is issued with
    // exactly the chosen names.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(mesh.client.clone(), NS);
    pods.patch(
        "web-1",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"app": "web", "tier": "x"}}})),
    )
    .await?;
    let payments: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(mesh.client.clone(), NS);
    payments
        .patch(
            "payments",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"selector": {"app": null, "tier": "x"}}})),
        )
        .await?;
    let der = issued_der(requests, NS, "web-1").await?;
    ensure!(
        dns_names(&der)? == [format!("payments.{NS}.svc"), format!("web.{NS}.svc")],
        "web-1: {:?}",
        dns_names(&der)?
    );
    Ok(())
}
