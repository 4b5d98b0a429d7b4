//! Rotation: forced refresh under load, Services read at issuance time, and a
//! CA added to the pool and then signing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use podtls_e2e::*;
use serde_json::{json, Value};

use crate::*;

pub(crate) async fn forced_refresh_rotates_without_a_failed_request(
    mesh: &Mesh<'_>,
    pair: &Pair,
) -> Result<()> {
    let ns = &pair.namespace;
    let mut args = pair.client_args()?;
    args.extend(
        [
            "--log-format=json",
            "load",
            "--concurrency=4",
            "--duration=25s",
            "--new-connection-per-request",
            "--output=json",
            "--quiet",
        ]
        .map(String::from),
    );
    let mut load = Proc::start(
        &format!("{ns}-load"),
        &mesh.bins.join("demo-client"),
        &args,
        &[("RUST_LOG", "podtls=info")],
        &mesh.logs,
    )?;
    let started = Instant::now();
    let old_server = held_serial(mesh.cluster, ns, "server", SPIFFE).await?;
    let old_client = held_serial(mesh.cluster, ns, "client", SPIFFE).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // traffic before the first rotation
    mesh.cluster.refresh(ns, "server").await?;
    let new_server = held_serial(mesh.cluster, ns, "server", SPIFFE).await?;
    ensure!(
        new_server != old_server,
        "server serial unchanged after refresh"
    );
    wait_log_serial(&pair.server, &new_server).await?;
    mesh.cluster.refresh(ns, "client").await?;
    let new_client = held_serial(mesh.cluster, ns, "client", SPIFFE).await?;
    ensure!(
        new_client != old_client,
        "client serial unchanged after refresh"
    );
    wait_log_serial(&load, &new_client).await?;
    ensure!(
        started.elapsed() < Duration::from_secs(22),
        "rotations took {:?}, too close to the end of the load run to see them in traffic",
        started.elapsed()
    );
    let code = load.wait(Duration::from_secs(60))?;
    let out = load.lines();
    let summary: Value = out
        .iter()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v.get("failed").is_some())
        })
        .with_context(|| format!("no JSON summary from the load run:\n{}", load.tail(20)))?;
    ensure!(code == 0, "load run exited {code}: {summary}");
    ensure!(summary["failed"] == 0, "failed requests: {summary}");
    ensure!(
        summary["requests"].as_u64().unwrap_or(0) > 50,
        "too little traffic: {summary}"
    );
    let seen = |k: &str| -> BTreeSet<String> {
        summary[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .map(norm_serial)
                    .collect()
            })
            .unwrap_or_default()
    };
    for (k, s) in [
        ("server_serials", &old_server),
        ("server_serials", &new_server),
        ("client_serials", &old_client),
        ("client_serials", &new_client),
    ] {
        ensure!(seen(k).contains(s), "{k} lacks {s}: {summary}");
    }
    Ok(())
}

pub(crate) async fn services_are_read_at_issuance_time(
    mesh: &Mesh<'_>,
    requests: &Requests,
    pair: &Pair,
) -> Result<()> {
    let ns = &pair.namespace;
    // One Service selecting the server pod too, one selecting nothing, one
    // without a selector: only the first adds a name.
    for (name, selector) in [
        ("server-alt", Some(json!({"app": "server"}))),
        ("nobody", Some(json!({"app": "nobody"}))),
        ("no-selector", None),
    ] {
        let mut svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443}]},
        });
        if let Some(sel) = selector {
            svc["spec"]["selector"] = sel;
        }
        apply(&mesh.client, &svc).await?;
    }
    mesh.cluster.refresh(ns, "server").await?;
    let serial = held_serial(mesh.cluster, ns, "server", SERVICE_DNS).await?;
    let pcr = request_with_serial(requests, ns, "server", &serial).await?;
    let mut dns = issued_leaf(&pcr)?.dns;
    dns.sort();
    let want = vec![format!("server-alt.{ns}.svc"), format!("server.{ns}.svc")];
    ensure!(dns == want, "DNS SANs {dns:?}, want {want:?}");
    // The client verifies the new certificate by the usual name.
    wait_log_serial(&pair.server, &serial).await?;
    the_pair_talks(mesh, pair)
}

pub(crate) async fn a_new_ca_reaches_the_projected_bundle_and_signs(
    mesh: &Mesh<'_>,
    requests: &Requests,
    pair: &Pair,
) -> Result<()> {
    let ns = &pair.namespace;
    // Rotation step 1: a second CA in the pool (trusted, not signing).
    mesh.signer_tool(&[
        "make-ca-pool-secret",
        "--append",
        "--namespace",
        CONTROLLER_NAMESPACE,
        "--name",
        "spiffe-ca-pool",
        "--ca-id",
        "spiffe-2",
        "--key-type",
        "ECDSAP256",
    ])?;
    // Secret -> projected pool file -> signer reload -> CTB -> kubelet's CTB
    // manager -> both pods' trust/spiffe.pem.
    for pod in [&pair.server_pod, &pair.client_pod] {
        let file = volume(pod, "podtls")?.join("trust/spiffe.pem");
        eventually(
            &format!("two CAs in {}", file.display()),
            Duration::from_secs(90),
            || async {
                Ok(
                    (pem_certs(&std::fs::read_to_string(&file).unwrap_or_default()) == 2)
                        .then_some(()),
                )
            },
        )
        .await?;
    }
    trust_bundles_are_published(requests, 1, 2).await?;
    // Step 2: sign with the new CA; a refreshed client certificate from it is
    // accepted by the server, which trusts both.
    mesh.signer_tool(&[
        "set-signing-ca",
        "--namespace",
        CONTROLLER_NAMESPACE,
        "--name",
        "spiffe-ca-pool",
        "--ca-id",
        "spiffe-2",
    ])?;
    let before = held_serial(mesh.cluster, ns, "client", SPIFFE).await?;
    // The pool reload is asynchronous: refresh until a certificate from the new
    // CA (an ECDSA issuer; the first CA is Ed25519) is issued.
    eventually(
        "a client certificate signed by the new CA",
        Duration::from_secs(90),
        || async {
            mesh.cluster.refresh(ns, "client").await?;
            let serial = held_serial(mesh.cluster, ns, "client", SPIFFE).await?;
            ensure!(serial != before);
            let pcr = request_with_serial(requests, ns, "client", &serial).await?;
            let chain = pcr
                .status
                .and_then(|s| s.certificate_chain)
                .unwrap_or_default();
            Ok(issuer_is_ecdsa(&chain)?.then_some(()))
        },
    )
    .await?;
    the_pair_talks(mesh, pair)
}

pub(crate) fn issuer_is_ecdsa(chain_pem: &str) -> Result<bool> {
    use rustls_pki_types::pem::PemObject as _;
    use x509_parser::prelude::FromDer as _;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .context("empty chain")??;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)?;
    // ecdsa-with-SHA256/384/512 are 1.2.840.10045.4.3.*; Ed25519 is 1.3.101.112.
    Ok(cert
        .signature_algorithm
        .algorithm
        .to_id_string()
        .starts_with("1.2.840.10045.4.3"))
}
