//! Federation on the real API server (1.37): the spiffe signer with two trust domains
//! (`cluster.local` for every namespace, `b.example` for `fed-b`), two
//! ClusterFederatedTrustDomain resources (each trust domain federates with the other;
//! the peer is one of the signer's own trust domains, so its bundle is its CA pool),
//! kubelet's code projecting the credential folder of the draft SPIFFE Filesystem
//! Delivery standard (appendix B layout), a cross-trust-domain pair and a same-domain
//! pair talking, then one relationship removed: its ClusterTrustBundle is deleted,
//! kubelet empties/removes the peer bundle file, and the cross-domain pair is refused,
//! while the same-domain pair keeps 0 failures throughout. The delays are printed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use podtls_e2e::*;
use serde_json::{json, Value};
use signer::controller::{federation_bundle_name, own_bundle_name};

use crate::*;

const TD_A: &str = TRUST_DOMAIN; // cluster.local
const TD_B: &str = "b.example";
const BUNDLE: &str = ".spiffe-trust-bundle.x509.pem";
const CREDENTIALS: &str = "credential-bundle.private-key.x509.pem";

fn cftd_api() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "federation.podtls.row-major.net",
            "v1alpha1",
            "ClusterFederatedTrustDomain",
        ),
        "clusterfederatedtrustdomains",
    )
}

/// A pod template whose `spiffe` volume is a credential folder for a workload of
/// `workload` that may talk to `peers` (appendix B).
fn template(app: &str, sa: &str, workload: &str, peers: &[&str]) -> Value {
    let mut sources = vec![json!({"podCertificate": {
        "signerName": SPIFFE, "keyType": "ECDSAP256", "credentialBundlePath": CREDENTIALS}})];
    for peer in std::iter::once(&workload).chain(peers) {
        sources.push(json!({"clusterTrustBundle": {
            "signerName": SPIFFE,
            "labelSelector": {"matchLabels": {
                "k8s.spiffe.io/canarying": "live",
                "k8s.spiffe.io/workload-trust-domain": workload,
                "k8s.spiffe.io/peer-trust-domain": peer}},
            "path": format!("{peer}{BUNDLE}"),
            "optional": true}}));
    }
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "serviceAccountName": sa,
            "automountServiceAccountToken": false,
            "containers": [{"name": app, "image": "localhost/podtls:dev", "command": ["/bin/true"]}],
            "volumes": [{"name": "spiffe", "projected": {"defaultMode": 0o444, "sources": sources}}],
        },
    })
}

fn federation(name: &str, peer: &str, workloads: &[&str]) -> Value {
    json!({
        "apiVersion": "federation.podtls.row-major.net/v1alpha1",
        "kind": "ClusterFederatedTrustDomain",
        "metadata": {"name": name},
        "spec": {"trustDomain": peer, "workloadTrustDomains": workloads},
    })
}

fn file_len(dir: &Path, name: &str) -> Option<u64> {
    std::fs::metadata(dir.join(name)).ok().map(|m| m.len())
}

/// One demo-client request from the folder `dir` to `port`, expecting `server_id`.
fn fetch_once(bins: &Path, dir: &Path, host: &str, port: u16, server_id: &str) -> Result<String> {
    let out = std::process::Command::new(bins.join("demo-client"))
        .arg(format!("--fetch-url=https://{host}:{port}/spiffe-echo"))
        .arg(format!("--credential-folder={}", dir.display()))
        .arg(format!("--server-spiffe-id={server_id}"))
        .arg(format!("--resolve={host}:{port}:127.0.0.1"))
        .args(["--count=1", "--interval=100ms", "--timeout=5s"])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "demo-client failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

async fn start_server(mesh: &Mesh<'_>, name: &str, dir: &Path) -> Result<(Proc, u16)> {
    let port = free_port();
    let admin = free_port();
    let server = Proc::start(
        name,
        &mesh.bins.join("demo-server"),
        &[
            format!("--listen=127.0.0.1:{port}"),
            format!("--credential-folder={}", dir.display()),
            "--require-spiffe-client".into(),
            format!("--admin-listen=127.0.0.1:{admin}"),
        ],
        &[("RUST_LOG", "info")],
        &mesh.logs,
    )?;
    wait_http_ok(
        &format!("http://127.0.0.1:{admin}/readyz"),
        Duration::from_secs(30),
    )
    .await
    .with_context(|| format!("{name}:\n{}", server.tail(30)))?;
    Ok((server, port))
}

pub(crate) async fn federation_suite(cluster: &TestCluster) -> Result<()> {
    let mesh = Mesh::install(cluster).await.context("installing")?;
    let requests = Requests::new(&mesh.client).await?;

    // b.example's CA pool (its own pool, never cluster.local's).
    let b_pool = mesh.logs.join("b-example-pool.json");
    mesh.signer_tool(&[
        "make-ca-pool-secret",
        "--namespace=unused",
        "--name=unused",
        "--ca-id=b-1",
        "--key-type=ECDSAP256",
        &format!("--out-file={}", b_pool.display()),
    ])?;
    let endpoint_port = free_port();
    let _signer = mesh
        .start_signer(
            "a",
            &[
                &format!("--spiffe-namespace-trust-domain=fed-b={TD_B}"),
                &format!("--spiffe-trust-domain-ca-pool={TD_B}={}", b_pool.display()),
                "--enable-federation",
                "--federation-min-refresh=1s",
                // cluster.local's own bundle endpoint (https_spiffe, a self-issued SVID).
                &format!("--bundle-endpoint-listen=127.0.0.1:{endpoint_port}"),
                "--bundle-endpoint-refresh-hint=2s",
            ],
        )
        .await
        .context("starting the signer with two trust domains and federation")?;

    let cftds: Api<DynamicObject> = Api::all_with(mesh.client.clone(), &cftd_api());
    let apply = PatchParams::apply("podtls-e2e").force();
    // b.example's workloads get cluster.local's bundle the way another cluster would:
    // from cluster.local's bundle endpoint (https_spiffe), with the primary bundle as the
    // initial bundle. cluster.local's workloads get b.example's from its CA pool.
    let primary_pem = eventually("the primary bundle", Duration::from_secs(30), || async {
        let ctbs = requests.trust_bundles().await?;
        Ok(ctbs
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("row-major.net:spiffe:primary-bundle"))
            .and_then(|c| c.data["spec"]["trustBundle"].as_str().map(str::to_string)))
    })
    .await?;
    let endpoint_id = format!("spiffe://{TD_A}/podtls-signer/bundle-endpoint");
    let via_endpoint = |id: &str| {
        let mut doc = federation("a-for-b", TD_A, &[TD_B]);
        doc["spec"]["bundleEndpointURL"] = json!(format!("https://127.0.0.1:{endpoint_port}/"));
        doc["spec"]["bundleEndpointProfile"] =
            json!({"type": "https_spiffe", "endpointSPIFFEID": id});
        doc["spec"]["trustDomainBundle"] = json!(primary_pem);
        doc
    };
    cftds
        .patch(
            "b-for-a",
            &apply,
            &Patch::Apply(federation("b-for-a", TD_B, &[TD_A])),
        )
        .await
        .context("applying ClusterFederatedTrustDomain b-for-a")?;
    cftds
        .patch("a-for-b", &apply, &Patch::Apply(via_endpoint(&endpoint_id)))
        .await
        .context("applying ClusterFederatedTrustDomain a-for-b")?;
    let a_to_b = federation_bundle_name(SPIFFE, TD_A, TD_B);
    let b_to_a = federation_bundle_name(SPIFFE, TD_B, TD_A);
    let b_own = own_bundle_name(SPIFFE, TD_B);
    eventually(
        "the own and federation ClusterTrustBundles",
        Duration::from_secs(30),
        || async {
            let ctbs = requests.trust_bundles().await?;
            let find = |n: &str| ctbs.iter().find(|c| c.metadata.name.as_deref() == Some(n));
            let (Some(ab), Some(ba), Some(b)) = (find(&a_to_b), find(&b_to_a), find(&b_own)) else {
                return Ok(None);
            };
            for (ctb, workload, peer) in [(ab, TD_A, TD_B), (ba, TD_B, TD_A), (b, TD_B, TD_B)] {
                let labels = ctb.metadata.labels.clone().unwrap_or_default();
                ensure!(
                    labels.get("k8s.spiffe.io/canarying").map(String::as_str) == Some("live")
                        && labels
                            .get("k8s.spiffe.io/workload-trust-domain")
                            .map(String::as_str)
                            == Some(workload)
                        && labels
                            .get("k8s.spiffe.io/peer-trust-domain")
                            .map(String::as_str)
                            == Some(peer),
                    "{:?}: labels {labels:?}",
                    ctb.metadata.name
                );
                ensure!(ctb.data["spec"]["signerName"] == SPIFFE);
                ensure!(pem_certs(ctb.data["spec"]["trustBundle"].as_str().unwrap_or("")) == 1);
            }
            // b.example's CA is neither in cluster.local's own bundle nor the other way.
            let primary = find("row-major.net:spiffe:primary-bundle").context("primary bundle")?;
            ensure!(primary.data["spec"]["trustBundle"] != b.data["spec"]["trustBundle"]);
            ensure!(ab.data["spec"]["trustBundle"] == b.data["spec"]["trustBundle"]);
            ensure!(ba.data["spec"]["trustBundle"] == primary.data["spec"]["trustBundle"]);
            Ok(Some(()))
        },
    )
    .await?;
    eventually("the federation status", Duration::from_secs(30), || async {
        let cr = cftds.get("b-for-a").await?;
        let s = &cr.data["status"];
        Ok((s["anchors"] == 1
            && s["source"] == "local"
            && s["federatedWith"] == json!([TD_A])
            && s.get("lastError").is_none())
        .then_some(()))
    })
    .await?;
    let sequence = eventually(
        "a-for-b fetched from the bundle endpoint",
        Duration::from_secs(30),
        || async {
            let cr = cftds.get("a-for-b").await?;
            let s = &cr.data["status"];
            Ok(
                (s["anchors"] == 1 && s["source"] == "endpoint" && s.get("lastError").is_none())
                    .then(|| s["sequenceNumber"].as_u64())
                    .flatten(),
            )
        },
    )
    .await?;
    // The static document for upload next to the OIDC discovery document agrees.
    let doc: Value =
        serde_json::from_str(&mesh.signer_tool(&["bundle-document", "--trust-domain", TD_A])?)?;
    ensure!(doc["spiffe_sequence"] == sequence, "bundle-document: {doc}");
    ensure!(
        doc["keys"].as_array().map(Vec::len) == Some(1),
        "bundle-document: {doc}"
    );
    ensure!(doc["keys"][0]["use"] == "x509-svid");

    // An endpoint that presents a valid SVID of cluster.local with another ID than
    // configured: the refresh fails, the status says so, the last good bundle stays.
    cftds
        .patch(
            "a-for-b",
            &apply,
            &Patch::Apply(via_endpoint(&format!("spiffe://{TD_A}/someone-else"))),
        )
        .await?;
    let error = eventually(
        "the wrong endpoint ID reported",
        Duration::from_secs(30),
        || async {
            let cr = cftds.get("a-for-b").await?;
            Ok(cr.data["status"]["lastError"].as_str().map(str::to_string))
        },
    )
    .await?;
    ensure!(error.contains("tls"), "lastError: {error}");
    let ctbs = requests.trust_bundles().await?;
    let kept = ctbs
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(b_to_a.as_str()))
        .context("the b.example -> cluster.local bundle was deleted on a fetch error")?;
    ensure!(
        kept.data["spec"]["trustBundle"].as_str() == Some(primary_pem.as_str()),
        "the last good bundle changed"
    );
    eprintln!("a wrong endpointSPIFFEID: lastError {error:?}; the last good bundle kept (sequence {sequence})");
    cftds
        .patch("a-for-b", &apply, &Patch::Apply(via_endpoint(&endpoint_id)))
        .await?;
    eventually("a-for-b healthy again", Duration::from_secs(60), || async {
        let cr = cftds.get("a-for-b").await?;
        Ok(cr.data["status"].get("lastError").is_none().then_some(()))
    })
    .await?;

    // The workloads.
    let docs = parse_manifest(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: fed-a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: fed-b}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {namespace: fed-a, name: client}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {namespace: fed-a, name: server}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {namespace: fed-b, name: server}\n",
    )?;
    apply_all(&mesh.client, &docs).await?;
    let nodes = cluster.nodes();
    for (ns, name, sa, workload, peers, node) in [
        (
            "fed-a",
            "client",
            "client",
            TD_A,
            &[TD_B][..],
            &nodes[nodes.len() - 1],
        ),
        ("fed-a", "server", "server", TD_A, &[][..], &nodes[0]),
        ("fed-b", "server", "server", TD_B, &[TD_A][..], &nodes[0]),
    ] {
        create_pod_from_template(
            &mesh.client,
            &template(name, sa, workload, peers),
            ns,
            name,
            node,
            |_| {},
        )
        .await?;
    }
    let wait = Duration::from_secs(90);
    let client = cluster.wait_pod("fed-a", "client", wait).await?;
    let server_a = cluster.wait_pod("fed-a", "server", wait).await?;
    let server_b = cluster.wait_pod("fed-b", "server", wait).await?;
    let client_dir = volume(&client, "spiffe")?;
    let server_a_dir = volume(&server_a, "spiffe")?;
    let server_b_dir = volume(&server_b, "spiffe")?;
    for (dir, files) in [
        (
            &client_dir,
            vec![format!("{TD_A}{BUNDLE}"), format!("{TD_B}{BUNDLE}")],
        ),
        (
            &server_b_dir,
            vec![format!("{TD_B}{BUNDLE}"), format!("{TD_A}{BUNDLE}")],
        ),
        (&server_a_dir, vec![format!("{TD_A}{BUNDLE}")]),
    ] {
        ensure!(
            file_len(dir, CREDENTIALS).unwrap_or(0) > 0,
            "{}: no credentials",
            dir.display()
        );
        for f in files {
            ensure!(
                file_len(dir, &f).unwrap_or(0) > 0,
                "{}: {f} missing or empty",
                dir.display()
            );
        }
    }
    ensure!(
        file_len(&server_a_dir, &format!("{TD_B}{BUNDLE}")).is_none(),
        "fed-a/server selected no b.example bundle and must have none"
    );
    let b_leaf = requests
        .of_pod("fed-b", "server")
        .await?
        .iter()
        .find_map(|p| issued_leaf(p).ok())
        .context("fed-b/server has no issued certificate")?;
    ensure!(
        b_leaf.uris == [format!("spiffe://{TD_B}/ns/fed-b/sa/server")],
        "fed-b/server got {:?}",
        b_leaf.uris
    );

    let (_server_a_proc, port_a) = start_server(&mesh, "fed-a-server", &server_a_dir).await?;
    let (_server_b_proc, port_b) = start_server(&mesh, "fed-b-server", &server_b_dir).await?;
    let id_a = format!("spiffe://{TD_A}/ns/fed-a/sa/server");
    let id_b = format!("spiffe://{TD_B}/ns/fed-b/sa/server");
    let cross = fetch_once(&mesh.bins, &client_dir, "server.fed-b.svc", port_b, &id_b)
        .context("the cross-trust-domain pair")?;
    ensure!(
        cross.contains(&format!("spiffe://{TD_A}/ns/fed-a/sa/client")),
        "fed-b/server did not see the cluster.local client: {cross}"
    );
    fetch_once(&mesh.bins, &client_dir, "server.fed-a.svc", port_a, &id_a)
        .context("the same-domain pair")?;

    // Same-domain load throughout the de-federation.
    let mut load = Proc::start(
        "fed-a-load",
        &mesh.bins.join("demo-client"),
        &[
            format!("--fetch-url=https://server.fed-a.svc:{port_a}/spiffe-echo"),
            format!("--credential-folder={}", client_dir.display()),
            format!("--server-spiffe-id={id_a}"),
            format!("--resolve=server.fed-a.svc:{port_a}:127.0.0.1"),
            "--log-format=json".into(),
            "load".into(),
            "--concurrency=2".into(),
            "--duration=25s".into(),
            "--new-connection-per-request".into(),
            "--output=json".into(),
            "--quiet".into(),
        ],
        &[("RUST_LOG", "podtls=info")],
        &mesh.logs,
    )?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Remove the relationship cluster.local -> b.example.
    let removed = Instant::now();
    cftds
        .delete("b-for-a", &DeleteParams::default())
        .await
        .context("deleting ClusterFederatedTrustDomain b-for-a")?;
    let ctb_gone = eventually(
        "the federation bundle deleted",
        Duration::from_secs(30),
        || async {
            let ctbs = requests.trust_bundles().await?;
            Ok((!ctbs
                .iter()
                .any(|c| c.metadata.name.as_deref() == Some(a_to_b.as_str())))
            .then(|| removed.elapsed()))
        },
    )
    .await?;
    let file_gone = eventually(
        "kubelet removes the peer bundle",
        Duration::from_secs(90),
        || async {
            Ok(
                (file_len(&client_dir, &format!("{TD_B}{BUNDLE}")).unwrap_or(0) == 0)
                    .then(|| removed.elapsed()),
            )
        },
    )
    .await?;
    let refused = eventually(
        "the cross pair refused",
        Duration::from_secs(90),
        || async {
            Ok(
                fetch_once(&mesh.bins, &client_dir, "server.fed-b.svc", port_b, &id_b)
                    .is_err()
                    .then(|| removed.elapsed()),
            )
        },
    )
    .await?;
    eprintln!(
        "de-federation: ClusterFederatedTrustDomain deleted -> ClusterTrustBundle gone {ctb_gone:?}, -> peer bundle file empty/absent {file_gone:?}, -> first refused handshake {refused:?} (kubelet stand-in sync: CTB events; real kubelet: up to --sync-frequency, 1 m)"
    );
    // Refused stays refused; the own bundles and the other direction are untouched.
    for _ in 0..3 {
        ensure!(
            fetch_once(&mesh.bins, &client_dir, "server.fed-b.svc", port_b, &id_b).is_err(),
            "a de-federated peer was accepted again"
        );
    }
    let ctbs = requests.trust_bundles().await?;
    for name in [&b_to_a, &b_own] {
        ensure!(
            ctbs.iter()
                .any(|c| c.metadata.name.as_deref() == Some(name.as_str())),
            "{name} was deleted with the other relationship"
        );
    }
    ensure!(file_len(&server_b_dir, &format!("{TD_A}{BUNDLE}")).unwrap_or(0) > 0);

    let code = load.wait(Duration::from_secs(60))?;
    let summary = load
        .load_summary()
        .with_context(|| format!("no load summary:\n{}", load.tail(20)))?;
    ensure!(
        code == 0 && summary["failed"] == 0,
        "same-domain pair failed: {summary}"
    );
    ensure!(
        summary["requests"].as_u64().unwrap_or(0) > 20,
        "too little same-domain traffic: {summary}"
    );
    eprintln!("same-domain pair during de-federation: {summary}");
    Ok(())
}
