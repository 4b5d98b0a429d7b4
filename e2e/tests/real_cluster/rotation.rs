//! Rotation: forced refresh under load and Services read at issuance time (the
//! CA lifecycle is in `ca_lifecycle.rs`).

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
    let summary: Value = load
        .load_summary()
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
