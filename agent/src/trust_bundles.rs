//! The trust bundles the signer publishes (the `podtls-trust-bundles`
//! ConfigMap, projected by kubelet into `--trust-bundle-dir`), read and checked
//! before they go into the credential folder.
//!
//! The ConfigMap holds one key per trust domain, `<td>.spiffe-trust-bundle.x509.pem`,
//! exactly the credential folder's file name. The agent's own trust domain's
//! bundle must be present and hold at least one certificate; a federated trust
//! domain's bundle is copied when present and written empty when absent (which
//! podtls reads as "de-federated": no peer of that domain is accepted).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use podtls::TrustDomain;
use rustls_pki_types::pem::SectionKind;
use rustls_pki_types::CertificateDer;

use crate::error::AgentError;

/// The largest trust-bundle file accepted (a ConfigMap holds at most 1 MiB).
pub const MAX_BUNDLE_BYTES: u64 = 1 << 20;

/// The bundles for the credential folder: file name -> PEM bytes (possibly
/// empty for a federated trust domain the signer publishes nothing for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundles {
    /// The agent's own trust domain's anchors (to check issued chains against).
    pub own: Vec<CertificateDer<'static>>,
    /// Every trust-bundle file of the folder.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Checks one bundle: only `CERTIFICATE` PEM blocks, each a well-formed X.509
/// certificate; returns them. `path` names the file in errors.
pub fn parse_bundle(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, AgentError> {
    let invalid = |reason: String| AgentError::TrustBundleInvalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut certs = Vec::new();
    let mut rest = pem;
    loop {
        match rustls_pki_types::pem::from_buf(&mut rest) {
            Ok(Some((SectionKind::Certificate, der))) => {
                x509_parser::parse_x509_certificate(&der).map_err(|e| {
                    invalid(format!(
                        "certificate #{} does not parse: {e}",
                        certs.len() + 1
                    ))
                })?;
                certs.push(CertificateDer::from(der));
            }
            Ok(Some((kind, _))) => {
                return Err(invalid(format!(
                    "holds a {kind:?} PEM block; a trust bundle holds only CERTIFICATE blocks"
                )))
            }
            Ok(None) => break,
            Err(e) => return Err(invalid(format!("bad PEM: {e}"))),
        }
    }
    Ok(certs)
}

/// Reads a file of at most [`MAX_BUNDLE_BYTES`]; `None` if it does not exist.
fn read_limited(path: &Path) -> Result<Option<Vec<u8>>, AgentError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AgentError::TrustBundleInvalid {
                path: path.to_path_buf(),
                reason: format!("cannot open: {e}"),
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| AgentError::TrustBundleInvalid {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(AgentError::TrustBundleInvalid {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_BUNDLE_BYTES} bytes"),
        });
    }
    Ok(Some(bytes))
}

/// The file name of `td`'s bundle (in the ConfigMap and in the credential folder).
pub fn file_name(td: &TrustDomain) -> String {
    format!("{td}{}", podtls::credential_folder::TRUST_BUNDLE_SUFFIX)
}

/// Reads the bundles of `own` and `federates_with` from `dir`. Any bundle that
/// is present but unusable fails the whole read (the caller keeps the last
/// good folder); so does a missing or empty bundle of `own`.
pub fn read(
    dir: &Path,
    own: &TrustDomain,
    federates_with: &[TrustDomain],
) -> Result<Bundles, AgentError> {
    let own_name = file_name(own);
    let own_path: PathBuf = dir.join(&own_name);
    let own_pem = read_limited(&own_path)?.ok_or(AgentError::TrustBundleMissing {
        path: own_path.clone(),
    })?;
    let own_certs = parse_bundle(&own_path, &own_pem)?;
    if own_certs.is_empty() {
        return Err(AgentError::TrustBundleInvalid {
            path: own_path,
            reason: "holds no certificate (the agent's own trust domain needs one)".into(),
        });
    }
    let mut files = BTreeMap::from([(own_name, own_pem)]);
    for td in federates_with {
        if td == own {
            continue;
        }
        let name = file_name(td);
        let path = dir.join(&name);
        let pem = read_limited(&path)?.unwrap_or_default();
        parse_bundle(&path, &pem)?;
        files.insert(name, pem);
    }
    Ok(Bundles {
        own: own_certs,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    fn td(s: &str) -> TrustDomain {
        podtls::parse_trust_domain(s).unwrap()
    }

    #[test]
    fn reads_own_and_federated_bundles_and_empties_missing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (ca_pem(), ca_pem());
        std::fs::write(tmp.path().join("a.test.spiffe-trust-bundle.x509.pem"), &a).unwrap();
        std::fs::write(tmp.path().join("b.test.spiffe-trust-bundle.x509.pem"), &b).unwrap();
        let got = read(tmp.path(), &td("a.test"), &[td("b.test"), td("c.test")]).unwrap();
        assert_eq!(got.own.len(), 1);
        assert_eq!(
            got.files["a.test.spiffe-trust-bundle.x509.pem"],
            a.as_bytes()
        );
        assert_eq!(
            got.files["b.test.spiffe-trust-bundle.x509.pem"],
            b.as_bytes()
        );
        assert!(got.files["c.test.spiffe-trust-bundle.x509.pem"].is_empty());
        assert_eq!(got.files.len(), 3);
    }

    #[test]
    fn missing_or_empty_own_bundle_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = read(tmp.path(), &td("a.test"), &[]).unwrap_err();
        assert!(
            matches!(err, AgentError::TrustBundleMissing { .. }),
            "{err}"
        );
        std::fs::write(tmp.path().join("a.test.spiffe-trust-bundle.x509.pem"), "").unwrap();
        let err = read(tmp.path(), &td("a.test"), &[]).unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        assert!(
            err.to_string()
                .contains("a.test.spiffe-trust-bundle.x509.pem"),
            "{err}"
        );
    }

    #[test]
    fn rejects_private_keys_garbage_and_huge_files() {
        let tmp = tempfile::tempdir().unwrap();
        let own = tmp.path().join("a.test.spiffe-trust-bundle.x509.pem");
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        for (content, want) in [
            (format!("{}{key}", ca_pem()), "PEM block"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string(),
                "does not parse",
            ),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_string(),
                "bad PEM",
            ),
            ("just text, no PEM".to_string(), "holds no certificate"),
        ] {
            std::fs::write(&own, &content).unwrap();
            let err = read(tmp.path(), &td("a.test"), &[]).unwrap_err();
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
        let mut huge = ca_pem().into_bytes();
        huge.resize(MAX_BUNDLE_BYTES as usize + 10, b'\n');
        std::fs::write(&own, &huge).unwrap();
        let err = read(tmp.path(), &td("a.test"), &[]).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn a_bad_federated_bundle_fails_the_read() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("a.test.spiffe-trust-bundle.x509.pem"),
            ca_pem(),
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("b.test.spiffe-trust-bundle.x509.pem"),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = read(tmp.path(), &td("a.test"), &[td("b.test")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("b.test.spiffe-trust-bundle.x509.pem"),
            "{err}"
        );
    }
}
