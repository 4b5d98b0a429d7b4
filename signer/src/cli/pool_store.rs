//! Where a CA pool lives for the CA commands: a JSON file, or the Secret (key `pool`) the
//! controller's volume projects. Reads name the store in every error; writes are atomic
//! (a file: temporary file + rename; a Secret: replace with the read resourceVersion,
//! re-reading and re-applying the change on a conflict, so a concurrent change is never
//! lost).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use signer::CaPool;

/// The Secret data key of the pool JSON (as meshtool).
pub const POOL_KEY: &str = "pool";

/// How often a Secret update is retried after a 409 before giving up.
const CONFLICT_ATTEMPTS: usize = 3;

/// A CA pool's location.
#[derive(Debug, Clone)]
pub enum PoolStore {
    /// A pool JSON file.
    File(PathBuf),
    /// A Secret's `pool` key.
    Secret {
        /// `--kubeconfig`, else the usual inference.
        kubeconfig: Option<PathBuf>,
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
    },
}

impl fmt::Display for PoolStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolStore::File(path) => write!(f, "CA pool file {}", path.display()),
            PoolStore::Secret {
                namespace, name, ..
            } => write!(f, "Secret {namespace}/{name} key {POOL_KEY:?}"),
        }
    }
}

impl PoolStore {
    /// `--file`, or `--namespace` with `--name` (the Secret).
    pub fn from_flags(
        file: Option<&Path>,
        namespace: Option<&str>,
        name: Option<&str>,
        kubeconfig: Option<&Path>,
    ) -> anyhow::Result<PoolStore> {
        match (file, namespace, name) {
            (Some(path), None, None) => Ok(PoolStore::File(path.to_path_buf())),
            (Some(_), _, _) => bail!("give either --file or --namespace with --name, not both"),
            (None, Some(namespace), Some(name)) => Ok(PoolStore::Secret {
                kubeconfig: kubeconfig.map(Path::to_path_buf),
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            (None, _, _) => bail!(
                "name the pool: --namespace NS --name NAME (the Secret, key {POOL_KEY:?}) or --file PATH"
            ),
        }
    }

    /// Reads and parses the pool.
    pub fn read(&self) -> anyhow::Result<CaPool> {
        match self {
            PoolStore::File(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("reading the {self}"))?;
                parse(self, &bytes)
            }
            PoolStore::Secret {
                kubeconfig,
                namespace,
                name,
            } => crate::runtime()?.block_on(async {
                let client = crate::client(kubeconfig.as_deref(), false).await?;
                let (_, pool) = read_secret(&client, namespace, name, self).await?;
                pool.with_context(|| format!("{self}: the Secret does not exist"))
            }),
        }
    }

    /// Reads the pool, lets `change` compute the new one, and writes it back. On a Secret
    /// conflict, `change` runs again on the pool read afresh.
    pub fn update(
        &self,
        mut change: impl FnMut(CaPool) -> anyhow::Result<CaPool>,
    ) -> anyhow::Result<CaPool> {
        match self {
            PoolStore::File(_) => {
                let pool = change(self.read()?)?;
                self.write_file(&pool)?;
                Ok(pool)
            }
            PoolStore::Secret {
                kubeconfig,
                namespace,
                name,
            } => crate::runtime()?.block_on(async {
                let client = crate::client(kubeconfig.as_deref(), false).await?;
                update_pool_secret(&client, namespace, name, |existing| match existing {
                    Some(pool) => change(pool),
                    None => bail!("{self}: the Secret does not exist"),
                })
                .await
            }),
        }
    }

    /// Writes `pool` to a file store (atomically, mode 0600).
    pub fn write_file(&self, pool: &CaPool) -> anyhow::Result<()> {
        match self {
            PoolStore::File(path) => write_atomically(path, &pool.to_json()),
            PoolStore::Secret { .. } => bail!("{self} is not a file"),
        }
    }
}

fn parse(store: &PoolStore, bytes: &[u8]) -> anyhow::Result<CaPool> {
    CaPool::from_json(bytes).with_context(|| format!("{store}: not a usable CA pool"))
}

/// Writes `bytes` to a temporary file next to `path` (mode 0600) and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = (|| -> std::io::Result<()> {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    store: &PoolStore,
) -> anyhow::Result<(Option<k8s_openapi::api::core::v1::Secret>, Option<CaPool>)> {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let existing = secrets
        .get_opt(name)
        .await
        .with_context(|| format!("reading Secret {namespace}/{name}"))?;
    let pool = match &existing {
        None => None,
        Some(secret) => {
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(POOL_KEY))
                .with_context(|| format!("Secret {namespace}/{name} has no key {POOL_KEY:?}"))?;
            Some(parse(store, &bytes.0)?)
        }
    };
    Ok((existing, pool))
}

/// Reads the pool Secret (if any), lets `change` compute the new pool, and writes it back:
/// create if absent, replace with the read resourceVersion if present. A concurrent
/// change makes the write fail with 409; then the Secret is read again and `change` runs
/// on the fresh pool (up to three attempts), so no CA another writer added is lost.
pub async fn update_pool_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    mut change: impl FnMut(Option<CaPool>) -> anyhow::Result<CaPool>,
) -> anyhow::Result<CaPool> {
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::ByteString;
    use kube::api::PostParams;

    let store = PoolStore::Secret {
        kubeconfig: None,
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let mut attempt = 1;
    loop {
        let (existing, existing_pool) = read_secret(client, namespace, name, &store).await?;
        let pool = change(existing_pool)?;
        let data = [(POOL_KEY.to_string(), ByteString(pool.to_json()))].into();
        let written = match existing {
            None => {
                let secret = Secret {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    data: Some(data),
                    ..Default::default()
                };
                secrets.create(&PostParams::default(), &secret).await
            }
            Some(mut secret) => {
                secret.data = Some(data);
                secret.metadata.managed_fields = None;
                secrets.replace(name, &PostParams::default(), &secret).await
            }
        };
        match written {
            Ok(_) => return Ok(pool),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < CONFLICT_ATTEMPTS => {
                tracing::warn!(secret = %format!("{namespace}/{name}"), attempt, "the Secret changed while it was being updated; reading it again");
                attempt += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("writing Secret {namespace}/{name}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_broken_pool_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in [
            ("empty", &b""[..]),
            ("no-cas", br#"{"CAs":[]}"#),
            ("garbage", b"not json"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).expect("write");
            let store = PoolStore::File(path.clone());
            let error = format!("{:#}", store.read().unwrap_err());
            assert!(
                error.contains(&format!("CA pool file {}", path.display()))
                    && error.contains("not a usable CA pool"),
                "{name}: {error}"
            );
        }
        let missing = PoolStore::File(dir.path().join("missing"));
        let error = format!("{:#}", missing.read().unwrap_err());
        assert!(
            error.contains("missing") && error.contains("reading"),
            "{error}"
        );
    }

    #[test]
    fn a_broken_secret_pool_is_an_error_naming_the_secret() {
        let store = PoolStore::Secret {
            kubeconfig: None,
            namespace: "mesh-controller".into(),
            name: "spiffe-ca-pool".into(),
        };
        let error = format!("{:#}", parse(&store, br#"{"CAs":null}"#).unwrap_err());
        assert!(
            error.contains(r#"Secret mesh-controller/spiffe-ca-pool key "pool""#)
                && error.contains("holds no CAs"),
            "{error}"
        );
    }

    #[test]
    fn the_store_is_a_file_or_a_secret_never_both() {
        let file = Path::new("/tmp/pool.json");
        assert!(matches!(
            PoolStore::from_flags(Some(file), None, None, None),
            Ok(PoolStore::File(_))
        ));
        assert!(matches!(
            PoolStore::from_flags(None, Some("ns"), Some("n"), None),
            Ok(PoolStore::Secret { .. })
        ));
        assert!(PoolStore::from_flags(Some(file), Some("ns"), Some("n"), None).is_err());
        assert!(PoolStore::from_flags(None, Some("ns"), None, None).is_err());
        assert!(PoolStore::from_flags(None, None, None, None).is_err());
    }
}
