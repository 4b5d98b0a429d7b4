//! A kubelet stand-in: for each pod it generates a key, files the request a
//! real kubelet would (a stub PKCS#10 request, as in 1.36+), has it decided by
//! the signer's issuance code, and projects the result with kubelet's atomic
//! writer layout: the credential bundle (PKCS#8 `PRIVATE KEY`, then the chain)
//! and the trust bundles (what a `clusterTrustBundle` projection writes).
//! Pods of the federated pair get a SPIFFE credential folder instead (draft
//! SPIFFE Filesystem Delivery standard): one projected volume holding
//! `credential-bundle.private-key.x509.pem` and one
//! `<trust-domain>.spiffe-trust-bundle.x509.pem` per trust domain, a peer
//! bundle written empty once its federation is removed, as kubelet writes an
//! `optional: true` `clusterTrustBundle` source whose selector matches nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{anyhow, Context, Result};
use podtls::test_util::AtomicWriter;
use signer::{
    issue, CaPool, IssuanceRequest, KeyMaterial, ObjectIdentity, PodInfo, PodSnapshot, ServiceInfo,
    SignerConfig,
};

/// The one Node of the local system.
pub const NODE_NAME: &str = "local-node";
const NODE_UID: &str = "local-node-0000-0000-000000000000";

/// A pod as the kubelet stand-in sees it.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Namespace and name.
    pub info: PodInfo,
    /// Service account.
    pub service_account: String,
    /// The signer its `podCertificate` source names, if any.
    pub signer: Option<String>,
}

/// The credential bundle file name inside a pod's credentials volume.
pub const BUNDLE: &str = "credentialbundle.pem";

/// The kubelet stand-in's projections for one pod.
pub struct PodVolumes {
    creds: AtomicWriter,
    trust: AtomicWriter,
    /// The credential folder volume, for pods that read one, and what it
    /// holds now (every write projects the whole payload, as kubelet does).
    folder: Option<(AtomicWriter, Mutex<Payload>)>,
}

/// A volume's files: name to content.
type Payload = BTreeMap<String, Vec<u8>>;

impl PodVolumes {
    /// Volumes under `root/<namespace>/<pod>/`.
    pub fn new(root: &Path, pod: &PodInfo, credential_folder: bool) -> Result<Self> {
        let dir = root.join(&pod.namespace).join(&pod.name);
        let folder = if credential_folder {
            Some((
                AtomicWriter::new(dir.join("spiffe"))
                    .context("creating the credential folder volume")?,
                Mutex::new(BTreeMap::new()),
            ))
        } else {
            None
        };
        Ok(PodVolumes {
            creds: AtomicWriter::new(dir.join("creds"))
                .context("creating the credentials volume")?,
            trust: AtomicWriter::new(dir.join("trust")).context("creating the trust volume")?,
            folder,
        })
    }

    /// The credential folder, for pods that read one.
    pub fn credential_folder(&self) -> Option<PathBuf> {
        self.folder.as_ref().map(|(w, _)| w.dir().to_path_buf())
    }

    /// Projects the credential folder's trust bundles: `Some(pem)` for a
    /// trust domain the pod's own federates with (its own included), `None`
    /// for one whose federation was removed (written empty, as kubelet writes
    /// an `optional: true` source that matches no ClusterTrustBundle).
    pub fn project_folder_trust(&self, bundles: &[(&str, Option<String>)]) -> Result<()> {
        let Some((_, files)) = &self.folder else {
            return Ok(());
        };
        let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
        for (td, pem) in bundles {
            let name = format!("{td}{}", podtls::credential_folder::TRUST_BUNDLE_SUFFIX);
            files.insert(name, pem.clone().unwrap_or_default().into_bytes());
        }
        self.write_folder(&files)
    }

    fn write_folder(&self, files: &Payload) -> Result<()> {
        if let Some((writer, _)) = &self.folder {
            writer
                .write(files)
                .context("projecting the credential folder")?;
        }
        Ok(())
    }

    /// The credential bundle path.
    pub fn bundle(&self) -> PathBuf {
        self.creds.path(BUNDLE)
    }

    /// A trust bundle path (`service-dns.pem`, `spiffe.pem` or `pod-identity.pem`).
    pub fn trust(&self, name: &str) -> PathBuf {
        self.trust.path(name)
    }

    /// Projects every signer's trust bundle.
    pub fn project_trust(
        &self,
        service_dns: &CaPool,
        spiffe: &CaPool,
        pod_identity: &CaPool,
    ) -> Result<()> {
        let files = BTreeMap::from([
            (
                "pod-identity.pem".to_string(),
                pod_identity.trust_bundle_pem().into_bytes(),
            ),
            (
                "service-dns.pem".to_string(),
                service_dns.trust_bundle_pem().into_bytes(),
            ),
            (
                "spiffe.pem".to_string(),
                spiffe.trust_bundle_pem().into_bytes(),
            ),
        ]);
        self.trust
            .write(&files)
            .context("projecting trust bundles")?;
        Ok(())
    }

    /// Requests and projects a fresh certificate; returns its serial.
    pub fn refresh(
        &self,
        pod: &Pod,
        config: &SignerConfig,
        pool: &CaPool,
        services: &[ServiceInfo],
        now: SystemTime,
    ) -> Result<String> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating the pod key")?;
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .and_then(|p| p.serialize_request(&key))
            .context("building the stub PKCS#10 request")?;
        let request = IssuanceRequest {
            namespace: pod.info.namespace.clone(),
            name: format!(
                "{}-{}",
                pod.info.name,
                now.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ),
            signer_name: config.name.clone(),
            pod_name: pod.info.name.clone(),
            pod_uid: pod.info.uid.clone(),
            service_account_name: pod.service_account.clone(),
            service_account_uid: service_account_uid(pod),
            node_name: NODE_NAME.into(),
            node_uid: NODE_UID.into(),
            max_expiration_seconds: None,
            key_material: KeyMaterial::StubPkcs10 {
                csr: csr.der().to_vec(),
            },
            unverified_user_annotations: BTreeMap::new(),
        };
        // What the signer would find in the cluster: the pod, its Node, its
        // ServiceAccount and the Services.
        let snapshot = PodSnapshot {
            pod: Some(pod.info.clone()),
            node: Some(ObjectIdentity {
                name: NODE_NAME.into(),
                uid: NODE_UID.into(),
            }),
            service_account: Some(ObjectIdentity {
                name: pod.service_account.clone(),
                uid: service_account_uid(pod),
            }),
            services: services.to_vec(),
        };
        let issued = issue(&request, config, pool.signing_ca(), &snapshot, now)
            .map_err(|e| anyhow!("{}/{}: not issued: {e}", pod.info.namespace, pod.info.name))?;
        let bundle = format!("{}{}", key.serialize_pem(), issued.certificate_chain);
        if let Some((_, files)) = &self.folder {
            let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
            files.insert(
                podtls::credential_folder::CREDENTIAL_BUNDLE_FILE.to_string(),
                bundle.into_bytes(),
            );
            self.write_folder(&files)?;
            return Ok(issued.serial);
        }
        self.creds
            .write(&BTreeMap::from([(BUNDLE.to_string(), bundle.into_bytes())]))
            .context("projecting the credential bundle")?;
        Ok(issued.serial)
    }
}

fn service_account_uid(pod: &Pod) -> String {
    format!("{}-sa-{}", pod.info.namespace, pod.service_account)
}
