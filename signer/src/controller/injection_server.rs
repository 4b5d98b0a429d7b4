//! The injection webhook served by the controller: its own serving certificate, issued
//! from the service-dns CA and renewed before it expires; the HTTPS endpoint
//! ([`REVIEW_PATH`]) through podtls' hardened server; and the `caBundle` of its
//! MutatingWebhookConfiguration kept equal to the service-dns trust bundle.
//!
//! No openssl step and no cert-manager: the API server trusts the webhook because the
//! controller writes the CA it signs with into the configuration, and every CA change
//! of the service-dns pool (`signer ca add`, `promote`, `retire`) reaches both the
//! serving certificate and the `caBundle`. A CA added with `ca add` is in the
//! `caBundle` before `promote` signs the next serving certificate with it, so the API
//! server never sees a certificate it cannot verify.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use podtls::http::{serve_http, HttpOptions};
use podtls::{PodTls, ServerTls};
use serde_json::json;
use tokio::sync::watch;

use super::injection_webhook::InjectionWebhook;
use super::pool_watch::PoolState;
use crate::issue_serving_certificate;

/// The path the API server posts `AdmissionReview`s to.
pub const REVIEW_PATH: &str = "/mutate-pods";

/// The largest review body read: pods are far smaller (etcd stores objects up to
/// 1.5 MiB); anything larger is answered 413 without being read further.
pub const MAX_REVIEW_BYTES: usize = 4 << 20;

/// The serving credential's file name in [`InjectionServerConfig::credential_dir`].
pub const SERVING_BUNDLE_FILE: &str = "webhook-credential-bundle.pem";

/// How the webhook is served.
#[derive(Clone, Debug)]
pub struct InjectionServerConfig {
    /// The HTTPS address.
    pub listen: SocketAddr,
    /// The names of the serving certificate (the Service's `<name>.<ns>.svc`, or the
    /// host of a URL client config).
    pub dns_names: Vec<String>,
    /// Where the serving credential is written (an in-memory `emptyDir` in a pod).
    pub credential_dir: PathBuf,
    /// The MutatingWebhookConfiguration whose `caBundle` is kept in sync; `None`
    /// leaves it to the operator.
    pub webhook_configuration: Option<String>,
    /// The serving certificate's lifetime; a new one is issued at two thirds of it.
    pub certificate_lifetime: Duration,
}

/// Everything the controller needs to serve injection.
#[derive(Clone, Debug)]
pub struct InjectionSetup {
    /// How it is served.
    pub server: InjectionServerConfig,
    /// The signer's namespace (its pods are never injected).
    pub own_namespace: String,
    /// The signers injection may name (the first is the default).
    pub signers: Vec<String>,
    /// Each namespace's trust domain (the spiffe signer's mapping).
    pub trust_domains: crate::TrustDomainMap,
    /// The agent image of the CertificateSigningRequest path (`--injection-agent-image`),
    /// used when CSR signing is on and the API server serves no PodCertificateRequests.
    pub agent_image: String,
}

impl InjectionSetup {
    /// The review logic for this setup.
    pub fn webhook(&self) -> InjectionWebhook {
        let map = self.trust_domains.clone();
        InjectionWebhook::new(
            self.own_namespace.clone(),
            self.signers.clone(),
            Box::new(move |namespace: &str| Some(map.for_namespace(namespace).clone())),
        )
    }
}

/// Runs the webhook until `shutdown` resolves: keeps the serving credential and the
/// `caBundle` current, serves reviews. `pool` is the service-dns signer's CA pool.
///
/// # Errors
/// When the credential directory cannot be written or the address bound.
pub async fn run(
    client: Client,
    config: InjectionServerConfig,
    webhook: Arc<InjectionWebhook>,
    pool: watch::Receiver<PoolState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::fs::create_dir_all(&config.credential_dir).with_context(|| {
        format!(
            "creating the webhook's credential directory {}",
            config.credential_dir.display()
        )
    })?;
    let bundle = config.credential_dir.join(SERVING_BUNDLE_FILE);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {} for the injection webhook", config.listen))?;

    let (written_tx, mut written) = watch::channel(false);
    tokio::spawn(keep_serving_credential(
        pool.clone(),
        bundle.clone(),
        config.dns_names.clone(),
        config.certificate_lifetime,
        written_tx,
    ));
    if let Some(name) = config.webhook_configuration.clone() {
        tokio::spawn(keep_ca_bundle(client, name, pool));
    }

    // The first credential needs the service-dns pool; until then there is nothing to
    // serve with (and the API server's calls fail: the configuration's failure policy).
    if written.wait_for(|w| *w).await.is_err() {
        anyhow::bail!("the serving credential task stopped before writing a credential");
    }
    let pod = PodTls::builder()
        .credential_bundle(&bundle)
        .start()
        .context("watching the webhook's serving credential")?;
    let tls = ServerTls::builder(
        pod.credentials()
            .context("no serving credential configured")?
            .clone(),
    )
    .alpn(&[b"h2", b"http/1.1"])
    .build()
    .context("the webhook's TLS configuration")?;
    tracing::info!(listen = %config.listen, path = REVIEW_PATH, "injection webhook serving");
    serve_http(
        listener,
        tls,
        HttpOptions::default(),
        shutdown,
        move |req| {
            let webhook = webhook.clone();
            async move { Ok::<_, std::convert::Infallible>(answer(&webhook, req).await) }
        },
    )
    .await;
    drop(pod);
    Ok(())
}

/// One HTTP request: a review posted to [`REVIEW_PATH`], or an error status.
async fn answer<B>(webhook: &InjectionWebhook, req: Request<B>) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.uri().path() != REVIEW_PATH {
        return status(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::POST {
        return status(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n");
    }
    let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return status(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the review body could not be read within {MAX_REVIEW_BYTES} bytes: {e}\n"
                ),
            )
        }
    };
    let (reply, outcome) = webhook.review(&body);
    tracing::debug!(outcome = outcome.as_str(), "admission review");
    let mut response = Response::new(Full::new(Bytes::from(reply)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r
}

/// Issues a serving credential whenever the pool changes or the current one reaches
/// its renewal time, and writes it atomically (podtls reloads it).
async fn keep_serving_credential(
    mut pool: watch::Receiver<PoolState>,
    bundle: PathBuf,
    dns_names: Vec<String>,
    lifetime: Duration,
    written: watch::Sender<bool>,
) {
    const RETRY: Duration = Duration::from_secs(30);
    let mut current: Option<(u64, SystemTime)> = None;
    loop {
        let state = pool.borrow_and_update().clone();
        let now = SystemTime::now();
        if let Some(ca_pool) = &state.pool {
            let due = current.is_none_or(|(generation, renew_at)| {
                generation != state.generation || now >= renew_at
            });
            if due {
                let issued =
                    issue_serving_certificate(ca_pool.signing_ca(), &dns_names, now, lifetime)
                        .map_err(anyhow::Error::from)
                        .and_then(|c| write_private(&bundle, c.bundle_pem.as_bytes()).map(|()| c));
                match issued {
                    Ok(c) => {
                        tracing::info!(ca = ca_pool.signing_ca().id(), not_after = ?c.not_after, "injection webhook: new serving certificate");
                        current = Some((state.generation, c.renew_at));
                        written.send_replace(true);
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "injection webhook: cannot issue its serving certificate; retrying");
                        current = None;
                    }
                }
            }
        }
        let wait = match current {
            Some((_, renew_at)) => renew_at
                .duration_since(now)
                .unwrap_or_default()
                .max(Duration::from_secs(1)),
            None => RETRY,
        };
        tokio::select! {
            changed = pool.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Writes `contents` to `path` readable by the owner only, atomically (a temporary
/// file in the same directory, renamed over it).
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = path
        .parent()
        .context("the credential path has no directory")?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1
        .write_all(contents)
        .and_then(|()| tmp.1.sync_all())
        .with_context(|| format!("writing {}", tmp.0.display()))?;
    std::fs::rename(&tmp.0, path).with_context(|| format!("renaming into {}", path.display()))
}

fn tempfile_in(dir: &Path) -> anyhow::Result<(PathBuf, std::fs::File)> {
    use anyhow::Context as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let name = format!(
        ".{SERVING_BUNDLE_FILE}.{}",
        nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let path = dir.join(name);
    let file = options
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok((path, file))
}

/// The JSON patch setting every webhook's `caBundle` of `config` to `want`; empty when
/// all already are. Each change is guarded by a `test` of the webhook's name, so a
/// configuration edited meanwhile makes the patch fail rather than touch another entry.
pub fn ca_bundle_patch(config: &MutatingWebhookConfiguration, want: &[u8]) -> json_patch::Patch {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(want);
    let mut ops = Vec::new();
    for (i, w) in config.webhooks.iter().flatten().enumerate() {
        if w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) == Some(want) {
            continue;
        }
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": w.name}));
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
    }
    serde_json::from_value(serde_json::Value::Array(ops)).expect("the operations are well-formed")
}

/// Keeps the configuration's `caBundle` equal to the pool's trust bundle: on every
/// pool change and every 10 s (an `kubectl apply` of the manifest resets it).
async fn keep_ca_bundle(client: Client, name: String, mut pool: watch::Receiver<PoolState>) {
    const RESYNC: Duration = Duration::from_secs(10);
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    loop {
        let ca_pool = pool.borrow_and_update().pool.clone();
        if let Some(ca_pool) = ca_pool {
            let want = ca_pool.trust_bundle_pem();
            match api.get_opt(&name).await {
                Ok(Some(config)) => {
                    let patch = ca_bundle_patch(&config, want.as_bytes());
                    if !patch.0.is_empty() {
                        match api
                            .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
                            .await
                        {
                            Ok(_) => {
                                tracing::info!(configuration = %name, "injection webhook: caBundle updated")
                            }
                            Err(e) => {
                                tracing::warn!(configuration = %name, error = %e, "injection webhook: cannot update caBundle")
                            }
                        }
                    }
                }
                Ok(None) => {
                    tracing::debug!(configuration = %name, "injection webhook: configuration not created yet")
                }
                Err(e) => {
                    tracing::warn!(configuration = %name, error = %e, "injection webhook: cannot read its configuration")
                }
            }
        }
        tokio::select! {
            changed = pool.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RESYNC) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configuration(bundles: &[Option<&[u8]>]) -> MutatingWebhookConfiguration {
        use base64::Engine as _;
        let webhooks: Vec<_> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut client_config = json!({"url": "https://localhost:9443/mutate-pods"});
                if let Some(b) = b {
                    client_config["caBundle"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(b));
                }
                json!({
                    "name": format!("w{i}.podtls.row-major.net"),
                    "clientConfig": client_config,
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                })
            })
            .collect();
        serde_json::from_value(
            json!({"metadata": {"name": "podtls-injection"}, "webhooks": webhooks}),
        )
        .unwrap()
    }

    fn apply(
        config: &MutatingWebhookConfiguration,
        patch: &json_patch::Patch,
    ) -> MutatingWebhookConfiguration {
        let mut doc = serde_json::to_value(config).unwrap();
        json_patch::patch(&mut doc, patch).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn every_stale_or_missing_ca_bundle_is_set_and_a_current_one_left_alone() {
        let want = b"-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n";
        let config = configuration(&[None, Some(b"old"), Some(want)]);
        let patch = ca_bundle_patch(&config, want);
        assert_eq!(patch.0.len(), 4, "test + add for the two stale entries");
        let after = apply(&config, &patch);
        for w in after.webhooks.iter().flatten() {
            assert_eq!(w.client_config.ca_bundle.as_ref().unwrap().0, want.to_vec());
        }
        assert!(ca_bundle_patch(&after, want).0.is_empty());
    }

    #[test]
    fn a_patch_for_an_edited_configuration_fails_instead_of_touching_another_entry() {
        let config = configuration(&[Some(b"old"), Some(b"old")]);
        let patch = ca_bundle_patch(&config, b"new");
        // Someone removed the first webhook meanwhile: the second moved to index 0.
        let mut edited = config.clone();
        edited.webhooks.as_mut().unwrap().remove(0);
        let mut doc = serde_json::to_value(&edited).unwrap();
        assert!(json_patch::patch(&mut doc, &patch).is_err());
    }

    #[tokio::test]
    async fn only_a_bounded_post_to_the_review_path_is_reviewed() {
        let webhook = InjectionWebhook::new(
            "mesh-controller",
            vec![crate::SPIFFE_SIGNER_NAME.to_string()],
            Box::new(|_: &str| Some(spiffe::TrustDomain::new("a.example").unwrap())),
        );
        let request = |method: Method, path: &str, body: Vec<u8>| {
            Request::builder()
                .method(method)
                .uri(path)
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        let r = answer(&webhook, request(Method::GET, REVIEW_PATH, vec![])).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = answer(&webhook, request(Method::POST, "/other", vec![])).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = answer(
            &webhook,
            request(Method::POST, REVIEW_PATH, vec![b' '; MAX_REVIEW_BYTES + 1]),
        )
        .await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // A body that is not a review: 200 with an invalid (not allowed) response, as
        // the admission API expects.
        let r = answer(
            &webhook,
            request(Method::POST, "/mutate-pods?timeout=10s", b"{}".to_vec()),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let review: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(review["response"]["allowed"], false);
    }

    #[test]
    fn the_serving_credential_is_written_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SERVING_BUNDLE_FILE);
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }
}
