//! Requests the signer must deny, with the reason kubelet and users see.

use std::time::Duration;

use anyhow::{ensure, Result};
use podtls_e2e::*;
use serde_json::json;

use crate::*;

pub(crate) async fn denials_are_terminal_with_reasons(
    mesh: &Mesh<'_>,
    requests: &Requests,
) -> Result<()> {
    let ns = "spiffe-mtls";
    let docs = load_manifest(&manifests_dir().join("spiffe-mtls.yaml"))?;
    let template = pod_template(&docs, "client")?;
    let node = mesh.cluster.nodes()[1].clone();
    create_pod_from_template(&mesh.client, template, ns, "wants-rsa3072", &node, |p| {
        p["spec"]["volumes"][0]["projected"]["sources"][0]["podCertificate"]["keyType"] =
            json!("RSA3072");
    })
    .await?;
    create_pod_from_template(
        &mesh.client,
        template,
        ns,
        "unknown-annotation",
        &node,
        |p| {
            p["spec"]["volumes"][0]["projected"]["sources"][0]["podCertificate"]
                ["userAnnotations"] = json!({"example.com/ttl": "1h"});
        },
    )
    .await?;
    for (pod, reason) in [
        ("wants-rsa3072", "UnsupportedKeyType"),
        ("unknown-annotation", "InvalidUnverifiedUserAnnotations"),
    ] {
        let pcr = eventually(
            &format!("{ns}/{pod} decided"),
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
        ensure!(
            got == ("Denied".to_string(), reason.to_string()),
            "{pod}: {got:?}, want Denied/{reason}"
        );
        ensure!(
            pcr.status
                .as_ref()
                .and_then(|s| s.certificate_chain.as_ref())
                .is_none(),
            "{pod}: a denied request carries a chain"
        );
        // kubelet's manager sees the denial and never writes the volume.
        let state = eventually(
            &format!("kubelet sees the denial of {pod}"),
            Duration::from_secs(30),
            || async {
                Ok(mesh.cluster.pod(ns, pod).await?.filter(|p| {
                    p.certificates
                        .iter()
                        .any(|c| !c.ready && !c.error.is_empty())
                }))
            },
        )
        .await?;
        ensure!(
            !state.volumes_ready,
            "{pod}: volume set up despite the denial"
        );
    }
    Ok(())
}
