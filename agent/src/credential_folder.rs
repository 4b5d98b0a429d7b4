//! The SPIFFE credential folder the agent writes (pure payload assembly, and
//! the startup probe's check of a folder).
//!
//! `credential-bundle.private-key.x509.pem` holds the PKCS#8 key then the
//! chain, leaf first; `<td>.spiffe-trust-bundle.x509.pem` one per trust
//! domain. Written through [`crate::atomic_dir`], so the application sees the
//! same layout kubelet gives a Pod Certificates volume.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use crate::atomic_dir::{self, FileProjection};
use crate::error::AgentError;
use crate::trust_bundles::Bundles;

/// Mode of the credential bundle (private key): the pod's containers share the
/// emptyDir, and kubelet's projected volumes default to 0644 as well; the
/// folder itself lives in a Memory emptyDir of the pod only.
pub const KEY_FILE_MODE: u32 = 0o644;
/// Mode of the trust-bundle files.
pub const BUNDLE_FILE_MODE: u32 = 0o644;

/// The folder's files for a key (PKCS#8 PEM), its chain (PEM, leaf first) and the bundles.
pub fn payload(
    key_pem: &str,
    chain_pem: &str,
    bundles: &Bundles,
) -> BTreeMap<String, FileProjection> {
    let mut bundle = String::with_capacity(key_pem.len() + chain_pem.len() + 1);
    bundle.push_str(key_pem);
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(chain_pem);
    let mut files = BTreeMap::from([(
        podtls::credential_folder::CREDENTIAL_BUNDLE_FILE.to_string(),
        FileProjection {
            data: bundle.into_bytes(),
            mode: KEY_FILE_MODE,
        },
    )]);
    for (name, pem) in &bundles.files {
        files.insert(
            name.clone(),
            FileProjection {
                data: pem.clone(),
                mode: BUNDLE_FILE_MODE,
            },
        );
    }
    files
}

/// Writes the folder atomically.
pub fn write(
    dir: &Path,
    key_pem: &str,
    chain_pem: &str,
    bundles: &Bundles,
    now: SystemTime,
) -> Result<(), AgentError> {
    atomic_dir::write(dir, &payload(key_pem, chain_pem, bundles), now)
}

/// What the probe found wrong with a folder.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeError {
    /// No credential bundle.
    #[error(
        "no {} in the folder",
        podtls::credential_folder::CREDENTIAL_BUNDLE_FILE
    )]
    NoBundle,
    /// The bundle is not a key followed by a chain whose leaf matches it.
    #[error("credential bundle: {0}")]
    BadBundle(String),
    /// The leaf is outside its validity.
    #[error("the certificate is not valid now")]
    NotValidNow,
    /// No non-empty trust bundle.
    #[error("no non-empty trust bundle in the folder")]
    NoTrustBundle,
}

/// The startup probe: the folder's current payload holds a key, a chain whose
/// leaf carries that key and is valid at `now`, and at least one non-empty
/// trust bundle.
pub fn probe(dir: &Path, now: SystemTime) -> Result<(), ProbeError> {
    let files = atomic_dir::read_current(dir)
        .map_err(|e| ProbeError::BadBundle(e.to_string()))?
        .ok_or(ProbeError::NoBundle)?;
    let bundle = files
        .get(podtls::credential_folder::CREDENTIAL_BUNDLE_FILE)
        .ok_or(ProbeError::NoBundle)?;
    let mut rest = bundle.as_slice();
    let (mut key, mut leaf) = (None, None);
    loop {
        match rustls_pki_types::pem::from_buf(&mut rest) {
            Ok(Some((rustls_pki_types::pem::SectionKind::PrivateKey, der))) if key.is_none() => {
                key = Some(der)
            }
            Ok(Some((rustls_pki_types::pem::SectionKind::Certificate, der))) if key.is_some() => {
                if leaf.is_none() {
                    leaf = Some(der);
                }
            }
            Ok(Some((kind, _))) => {
                return Err(ProbeError::BadBundle(format!("unexpected {kind:?} block")))
            }
            Ok(None) => break,
            Err(e) => return Err(ProbeError::BadBundle(format!("bad PEM: {e}"))),
        }
    }
    let key = key.ok_or_else(|| ProbeError::BadBundle("no PKCS#8 private key first".into()))?;
    let leaf = leaf.ok_or_else(|| ProbeError::BadBundle("no certificate after the key".into()))?;
    let pk = rustls_pki_types::PrivatePkcs8KeyDer::from(key);
    let kp = rcgen::KeyPair::try_from(&pk)
        .map_err(|e| ProbeError::BadBundle(format!("private key: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| ProbeError::BadBundle(format!("leaf: {e}")))?;
    if cert.tbs_certificate.subject_pki.raw != crate::request::spki_der(&kp).as_slice() {
        return Err(ProbeError::BadBundle(
            "the leaf does not carry the key".into(),
        ));
    }
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let v = cert.validity();
    if secs < v.not_before.timestamp() || secs >= v.not_after.timestamp() {
        return Err(ProbeError::NotValidNow);
    }
    let has_bundle = files
        .iter()
        .any(|(n, b)| n.ends_with(podtls::credential_folder::TRUST_BUNDLE_SUFFIX) && !b.is_empty());
    if !has_bundle {
        return Err(ProbeError::NoTrustBundle);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issued::tests::TestCa;
    use std::time::Duration;

    fn bundles(ca: &TestCa) -> Bundles {
        Bundles {
            own: vec![ca.der.clone()],
            files: BTreeMap::from([
                (
                    "a.test.spiffe-trust-bundle.x509.pem".to_string(),
                    ca.cert_pem.clone().into_bytes(),
                ),
                ("b.test.spiffe-trust-bundle.x509.pem".to_string(), vec![]),
            ]),
        }
    }

    #[test]
    fn probe_accepts_a_complete_folder_and_rejects_broken_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let now = SystemTime::now();
        assert_eq!(probe(dir, now), Err(ProbeError::NoBundle));
        let ca = TestCa::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let chain = ca.issue(&key, "spiffe://a.test/ns/x/sa/y", now, 600);
        write(dir, &key.serialize_pem(), &chain, &bundles(&ca), now).unwrap();
        probe(dir, now).unwrap();
        let bundle =
            std::fs::read_to_string(dir.join(podtls::credential_folder::CREDENTIAL_BUNDLE_FILE))
                .unwrap();
        assert!(bundle.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(bundle.ends_with(&chain));
        assert!(
            std::fs::read(dir.join("b.test.spiffe-trust-bundle.x509.pem"))
                .unwrap()
                .is_empty()
        );

        assert_eq!(
            probe(dir, now + Duration::from_secs(600)),
            Err(ProbeError::NotValidNow)
        );

        // A chain for another key.
        let other = rcgen::KeyPair::generate().unwrap();
        write(dir, &other.serialize_pem(), &chain, &bundles(&ca), now).unwrap();
        assert!(matches!(probe(dir, now), Err(ProbeError::BadBundle(_))));

        // No non-empty trust bundle.
        let mut b = bundles(&ca);
        b.files.retain(|_, v| v.is_empty());
        write(dir, &key.serialize_pem(), &chain, &b, now).unwrap();
        assert_eq!(probe(dir, now), Err(ProbeError::NoTrustBundle));

        // Key only.
        write(dir, &key.serialize_pem(), "", &bundles(&ca), now).unwrap();
        assert!(matches!(probe(dir, now), Err(ProbeError::BadBundle(_))));
    }
}
