//! The agent's loop: one task owns the credentials; issue, publish, sleep
//! until renewal (or a trust-bundle change, or SIGTERM), repeat. On failure the
//! last good folder stays in place and the attempt is retried with backoff.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use podtls::TrustDomain;
use tokio::sync::mpsc;

use crate::error::AgentError;
use crate::kube_api::{self, ApiEndpoint};
use crate::request::{self, KeyType, RequestSpec};
use crate::schedule::{random_unit, renewal_time, Backoff};
use crate::trust_bundles::{self, Bundles};
use crate::{credential_folder, issued};

/// Everything the loop needs (the CLI's flags, resolved).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The API server, its CA, the token file.
    pub endpoint: ApiEndpoint,
    /// `spec.signerName`.
    pub signer_name: String,
    /// The key type.
    pub key_type: KeyType,
    /// The folder to write.
    pub credential_folder: PathBuf,
    /// The projected trust-bundle ConfigMap.
    pub trust_bundle_dir: PathBuf,
    /// The pod's trust domain.
    pub trust_domain: TrustDomain,
    /// Trust domains whose bundles go into the folder too.
    pub federates_with: Vec<TrustDomain>,
    /// `spec.expirationSeconds`.
    pub expiration_seconds: i32,
    /// The pod's namespace and name (for the CSR's generated name).
    pub namespace: String,
    /// See [`AgentConfig::namespace`].
    pub pod_name: String,
    /// Test-only: renew this long after notBefore (capped by the jittered point).
    pub renew_after: Option<Duration>,
    /// How long to wait for one CSR's certificate.
    pub wait: Duration,
    /// Backoff after failures.
    pub backoff: Backoff,
}

/// One successful issuance, as logged.
#[derive(Clone, Debug)]
pub struct RenewalReport {
    /// The CSR's name.
    pub csr: String,
    /// The SPIFFE ID issued.
    pub spiffe_id: String,
    /// The leaf's serial (hex).
    pub serial: String,
    /// API requests this issuance took (failed attempts included).
    pub requests: u32,
    /// From the first attempt to the folder written.
    pub took: Duration,
    /// When the next renewal is due.
    pub renew_at: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
}

struct Current {
    key_pem: String,
    chain_pem: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

/// Issues once: new key, CSR, wait, check, and returns the material.
async fn issue_once(
    cfg: &AgentConfig,
    bundles: &Bundles,
    requests: &mut u32,
) -> Result<(Current, issued::Issued, String), AgentError> {
    let key = cfg.key_type.generate()?;
    let pkcs10 = request::pkcs10_pem(&key)?;
    let spec = RequestSpec {
        signer_name: cfg.signer_name.clone(),
        namespace: cfg.namespace.clone(),
        pod_name: cfg.pod_name.clone(),
        key_type: cfg.key_type,
        expiration_seconds: cfg.expiration_seconds,
    };
    let client = kube_api::client(&cfg.endpoint)?;
    let filed = kube_api::file_and_wait(
        &client,
        &request::csr_object(&spec, &pkcs10),
        cfg.wait,
        requests,
    )
    .await?;
    let got = issued::check(
        &filed.certificate,
        &request::spki_der(&key),
        &cfg.trust_domain,
        &bundles.own,
        SystemTime::now(),
    )
    .map_err(|reason| AgentError::BadCertificate {
        csr: filed.name.clone(),
        reason,
    })?;
    let cur = Current {
        key_pem: key.serialize_pem(),
        chain_pem: got.chain_pem.clone(),
        not_before: got.not_before,
        not_after: got.not_after,
    };
    Ok((cur, got, filed.name))
}

fn watch_dir(dir: &std::path::Path) -> Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher as _;
    let (tx, rx) = mpsc::channel(1);
    let mut w = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = tx.try_send(());
    })
    .ok()?;
    w.watch(dir, notify::RecursiveMode::NonRecursive).ok()?;
    Some((w, rx))
}

/// Runs until `shutdown` resolves. `on_renewal` is called after every
/// successful issuance (metrics, tests).
pub async fn run(
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
    mut on_renewal: impl FnMut(&RenewalReport),
) -> Result<(), AgentError> {
    tokio::pin!(shutdown);
    // Changes of the projected ConfigMap (kubelet swaps ..data); a periodic
    // re-read covers a watcher that could not be set up.
    let (idle_tx, idle_rx) = mpsc::channel(1);
    let (_watcher, mut bundle_events) = match watch_dir(&cfg.trust_bundle_dir) {
        Some((w, rx)) => (Some(w), rx),
        None => {
            tracing::warn!(dir = %cfg.trust_bundle_dir.display(), "cannot watch the trust-bundle directory; re-reading it every 30 s");
            (None, idle_rx)
        }
    };
    // Keeps the fallback channel open (a closed one would wake the loop forever).
    let _idle_tx: mpsc::Sender<()> = idle_tx;
    let mut current: Option<Current> = None;
    let mut bundles: Option<Bundles> = None;
    let mut failures = 0u32;
    let mut requests = 0u32;
    let mut started = Instant::now();
    let mut next_attempt = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
            _ = bundle_events.recv() => {
                refresh_bundles(&cfg, &mut bundles, current.as_ref());
                continue;
            }
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                refresh_bundles(&cfg, &mut bundles, current.as_ref());
                continue;
            }
            _ = tokio::time::sleep_until(next_attempt) => {}
        }
        if failures == 0 {
            requests = 0;
            started = Instant::now();
        }
        // An attempt in flight (up to --wait-timeout) does not hold up SIGTERM: the
        // folder is only ever replaced whole, so stopping mid-attempt leaves the last
        // good credentials in place.
        let attempt = async {
            let b = trust_bundles::read(
                &cfg.trust_bundle_dir,
                &cfg.trust_domain,
                &cfg.federates_with,
            )?;
            let (cur, got, csr) = issue_once(&cfg, &b, &mut requests).await?;
            credential_folder::write(
                &cfg.credential_folder,
                &cur.key_pem,
                &cur.chain_pem,
                &b,
                SystemTime::now(),
            )?;
            Ok::<_, AgentError>((cur, got, csr, b))
        };
        let result = tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down during an issuance attempt");
                return Ok(());
            }
            r = attempt => r,
        };
        match result {
            Ok((cur, got, csr, b)) => {
                failures = 0;
                let renew_at = renewal_time(
                    cur.not_before,
                    cur.not_after,
                    SystemTime::now(),
                    random_unit(),
                    cfg.renew_after,
                );
                let report = RenewalReport {
                    csr,
                    spiffe_id: got.spiffe_id,
                    serial: got.serial,
                    requests,
                    took: started.elapsed(),
                    renew_at,
                    not_after: cur.not_after,
                };
                tracing::info!(
                    csr = %report.csr,
                    spiffe_id = %report.spiffe_id,
                    serial = %report.serial,
                    api_requests = report.requests,
                    took_ms = report.took.as_millis() as u64,
                    renew_at = %podtls::certificate::format_time(renew_at),
                    not_after = %podtls::certificate::format_time(report.not_after),
                    "credentials issued and written"
                );
                on_renewal(&report);
                let wait = renew_at
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                next_attempt = tokio::time::Instant::now() + wait;
                current = Some(cur);
                bundles = Some(b);
            }
            Err(error) => {
                failures += 1;
                let delay = cfg.backoff.delay(failures, random_unit());
                let serving = current
                    .as_ref()
                    .is_some_and(|c| SystemTime::now() < c.not_after);
                match &error {
                    AgentError::Denied { .. }
                    | AgentError::Failed { .. }
                    | AgentError::BadCertificate { .. } => {
                        tracing::error!(%error, failures, retry_in_ms = delay.as_millis() as u64, serving_last_good = serving, "certificate request refused")
                    }
                    _ => {
                        tracing::warn!(%error, failures, retry_in_ms = delay.as_millis() as u64, serving_last_good = serving, "issuance failed")
                    }
                }
                next_attempt = tokio::time::Instant::now() + delay;
            }
        }
    }
}

/// Re-reads the trust bundles and rewrites the folder with the current
/// credentials if they changed; on a bad bundle keeps the last good folder.
fn refresh_bundles(cfg: &AgentConfig, bundles: &mut Option<Bundles>, current: Option<&Current>) {
    let Some(cur) = current else { return };
    match trust_bundles::read(
        &cfg.trust_bundle_dir,
        &cfg.trust_domain,
        &cfg.federates_with,
    ) {
        Ok(b) if bundles.as_ref() == Some(&b) => {}
        Ok(b) => {
            match credential_folder::write(
                &cfg.credential_folder,
                &cur.key_pem,
                &cur.chain_pem,
                &b,
                SystemTime::now(),
            ) {
                Ok(()) => {
                    tracing::info!(
                        files = b.files.len(),
                        "trust bundles changed; credential folder rewritten"
                    );
                    *bundles = Some(b);
                }
                Err(error) => {
                    tracing::warn!(%error, "rewriting the credential folder failed; the last good stays")
                }
            }
        }
        Err(error) => tracing::warn!(%error, "trust bundles unusable; the last good folder stays"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issued::tests::TestCa;

    fn config(dir: &std::path::Path) -> AgentConfig {
        AgentConfig {
            endpoint: ApiEndpoint {
                url: "https://127.0.0.1:1".into(),
                ca_file: dir.join("ca.pem"),
                token_file: dir.join("token"),
            },
            signer_name: "row-major.net/spiffe".into(),
            key_type: KeyType::EcdsaP256,
            credential_folder: dir.join("folder"),
            trust_bundle_dir: dir.join("bundles"),
            trust_domain: podtls::parse_trust_domain("a.test").unwrap(),
            federates_with: vec![podtls::parse_trust_domain("b.test").unwrap()],
            expiration_seconds: 600,
            namespace: "ns".into(),
            pod_name: "p".into(),
            renew_after: None,
            wait: Duration::from_secs(1),
            backoff: Backoff::default(),
        }
    }

    #[test]
    fn trust_bundle_change_rewrites_the_folder_and_a_bad_one_keeps_the_last_good() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path());
        std::fs::create_dir_all(&cfg.trust_bundle_dir).unwrap();
        let (ca, other) = (TestCa::new(), TestCa::new());
        let own = cfg
            .trust_bundle_dir
            .join("a.test.spiffe-trust-bundle.x509.pem");
        let fed = cfg
            .trust_bundle_dir
            .join("b.test.spiffe-trust-bundle.x509.pem");
        std::fs::write(&own, &ca.cert_pem).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let now = SystemTime::now();
        let cur = Current {
            key_pem: key.serialize_pem(),
            chain_pem: ca.issue(&key, "spiffe://a.test/ns/ns/sa/x", now, 600),
            not_before: now,
            not_after: now + Duration::from_secs(600),
        };
        let mut bundles = None;
        // Before the first certificate there is nothing to rewrite.
        refresh_bundles(&cfg, &mut bundles, None);
        assert!(!cfg.credential_folder.exists());

        refresh_bundles(&cfg, &mut bundles, Some(&cur));
        let folder_fed = cfg
            .credential_folder
            .join("b.test.spiffe-trust-bundle.x509.pem");
        assert!(std::fs::read(&folder_fed).unwrap().is_empty());
        crate::credential_folder::probe(&cfg.credential_folder, now).unwrap();

        // The peer's bundle is published: copied in.
        std::fs::write(&fed, &other.cert_pem).unwrap();
        refresh_bundles(&cfg, &mut bundles, Some(&cur));
        assert_eq!(
            std::fs::read_to_string(&folder_fed).unwrap(),
            other.cert_pem
        );

        // A truncated own bundle: the folder keeps the last good bundles.
        std::fs::write(&own, &ca.cert_pem[..ca.cert_pem.len() / 2]).unwrap();
        refresh_bundles(&cfg, &mut bundles, Some(&cur));
        let folder_own = cfg
            .credential_folder
            .join("a.test.spiffe-trust-bundle.x509.pem");
        assert_eq!(std::fs::read_to_string(&folder_own).unwrap(), ca.cert_pem);
        assert_eq!(
            std::fs::read_to_string(&folder_fed).unwrap(),
            other.cert_pem
        );
        crate::credential_folder::probe(&cfg.credential_folder, now).unwrap();
    }
}
