//! The thin Kubernetes adapter: a client authenticated with the pod's token,
//! filing one CertificateSigningRequest and waiting for its outcome, counting
//! the API requests it makes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};

use crate::error::AgentError;
use crate::request::{outcome, Outcome};

/// Where the API server is and how to trust and authenticate to it.
#[derive(Clone, Debug)]
pub struct ApiEndpoint {
    /// `https://host:port`.
    pub url: String,
    /// PEM CA bundle of the API server's serving certificate.
    pub ca_file: PathBuf,
    /// The ServiceAccount token file (read again for every client).
    pub token_file: PathBuf,
}

/// A client for one issuance attempt: the token file is read (trimmed, checked) now,
/// so a token kubelet rotated in the meantime is picked up.
pub fn client(ep: &ApiEndpoint) -> Result<kube::Client, AgentError> {
    let url: http::Uri = ep
        .url
        .parse()
        .map_err(|e| AgentError::Config(format!("--api-server {:?}: {e}", ep.url)))?;
    let ca = std::fs::read(&ep.ca_file)
        .map_err(|e| AgentError::Config(format!("--api-ca-file {}: {e}", ep.ca_file.display())))?;
    let roots = rustls_pki_types::pem::PemObject::pem_slice_iter(&ca)
        .map(|c: Result<rustls_pki_types::CertificateDer<'static>, _>| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::Config(format!("--api-ca-file {}: {e}", ep.ca_file.display())))?;
    if roots.is_empty() {
        return Err(AgentError::Config(format!(
            "--api-ca-file {}: no certificate",
            ep.ca_file.display()
        )));
    }
    // Read (and checked) now, for this attempt's requests.
    let token = crate::token::read(&ep.token_file)?;
    let mut config = kube::Config::new(url);
    config.root_cert = Some(roots);
    config.auth_info.token = Some(secrecy::SecretString::from(token));
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(330));
    kube::Client::try_from(config).map_err(|source| AgentError::Kube {
        step: "building the client",
        source,
    })
}

/// The result of one CSR.
#[derive(Debug)]
pub struct Filed {
    /// The CSR's name.
    pub name: String,
    /// The PEM chain.
    pub certificate: Vec<u8>,
    /// API requests made (create, watches, gets).
    pub requests: u32,
}

/// Files `csr` and waits up to `wait` for its certificate. `Denied`/`Failed`
/// are returned as errors (final for this CSR). `requests` counts every API
/// request made, also on failure.
pub async fn file_and_wait(
    client: &kube::Client,
    csr: &CertificateSigningRequest,
    wait: Duration,
    requests: &mut u32,
) -> Result<Filed, AgentError> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    *requests += 1;
    let created = api
        .create(&PostParams::default(), csr)
        .await
        .map_err(|source| AgentError::Kube {
            step: "creating the CertificateSigningRequest",
            source,
        })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let deadline = Instant::now() + wait;
    let mut last = created;
    loop {
        match outcome(last.status.as_ref()) {
            Outcome::Issued(certificate) => {
                return Ok(Filed {
                    name,
                    certificate,
                    requests: *requests,
                })
            }
            Outcome::Denied { reason, message } => {
                return Err(AgentError::Denied {
                    csr: name,
                    reason,
                    message,
                })
            }
            Outcome::Failed { reason, message } => {
                return Err(AgentError::Failed {
                    csr: name,
                    reason,
                    message,
                })
            }
            Outcome::Pending => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AgentError::Timeout {
                csr: name,
                waited: wait,
            });
        }
        let rv = last.metadata.resource_version.clone().unwrap_or_default();
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(left.as_secs().clamp(1, 290) as u32);
        *requests += 1;
        let stream = api
            .watch(&wp, &rv)
            .await
            .map_err(|source| AgentError::Kube {
                step: "watching the CertificateSigningRequest",
                source,
            })?;
        let mut stream = stream.boxed();
        let mut next = None;
        let got = tokio::time::timeout(left, async {
            while let Some(ev) = stream.try_next().await? {
                match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        if outcome(o.status.as_ref()) != Outcome::Pending {
                            return Ok::<_, kube::Error>(Some(o));
                        }
                        next = Some(o);
                    }
                    WatchEvent::Deleted(_) | WatchEvent::Bookmark(_) | WatchEvent::Error(_) => {
                        return Ok(None)
                    }
                }
            }
            Ok(None)
        })
        .await;
        match got {
            Ok(Ok(Some(o))) => last = o,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                // The watch ended (timeout, expired resourceVersion, dropped
                // connection): read the object again, then watch from there.
                if let Some(o) = next {
                    last = o;
                    continue;
                }
                if Instant::now() >= deadline {
                    continue;
                }
                *requests += 1;
                last = api.get(&name).await.map_err(|source| AgentError::Kube {
                    step: "reading the CertificateSigningRequest",
                    source,
                })?;
            }
        }
    }
}
