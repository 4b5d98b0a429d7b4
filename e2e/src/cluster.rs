//! The test cluster (`e2e/cluster`, Go): building it, starting it, its state
//! file and its control API.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::http::{http_request, HttpResponse};

/// A pinned Kubernetes release of the harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// 1.35: certificates.k8s.io/v1beta1, `pkixPublicKey` + `proofOfPossession`.
    V1_35,
    /// 1.36: certificates.k8s.io/v1beta1 with `stubPKCS10Request` (built on request only).
    V1_36,
    /// 1.37: certificates.k8s.io/v1.
    V1_37,
}

impl Release {
    /// `1.35`, `1.36` or `1.37`, as `build.sh` names them.
    pub fn as_str(self) -> &'static str {
        match self {
            Release::V1_35 => "1.35",
            Release::V1_36 => "1.36",
            Release::V1_37 => "1.37",
        }
    }
}

/// The directory of the Go harness (`e2e/cluster`).
pub fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster")
}

/// The harness binary for `release`, built with `build.sh` when it is missing or
/// older than a Go source or module file of the harness.
pub fn harness_binary(release: Release) -> Result<PathBuf> {
    let dir = harness_dir();
    let bin = dir
        .join("bin")
        .join(format!("podtls-testcluster-{}", release.as_str()));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let newest_source = newest_source(&dir)?;
    if built.is_some_and(|b| b >= newest_source) {
        return Ok(bin);
    }
    eprintln!(
        "building {} (e2e/cluster/build.sh {}; the first build takes 5-12 minutes)",
        bin.display(),
        release.as_str()
    );
    let status = Command::new("bash")
        .arg(dir.join("build.sh"))
        .arg(release.as_str())
        .status()
        .context("running e2e/cluster/build.sh (is Go installed?)")?;
    if !status.success() {
        bail!("e2e/cluster/build.sh {} failed: {status}", release.as_str());
    }
    Ok(bin)
}

fn newest_source(dir: &Path) -> Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".go") || name.starts_with("go.") {
            newest = newest.max(entry.metadata()?.modified()?);
        }
    }
    Ok(newest)
}

/// What the harness publishes in `state.json` (the fields the suite uses).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// e.g. `1.35.4`.
    pub kubernetes_version: String,
    /// `certificates.k8s.io/v1beta1` or `certificates.k8s.io/v1`; empty without
    /// the Pod Certificates API.
    #[serde(rename = "pcrAPIVersion")]
    pub pcr_api_version: String,
    /// The API server, `https://127.0.0.1:PORT`.
    #[serde(rename = "apiServerURL")]
    pub api_server_url: String,
    /// Admin kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
    /// CA of the API server's serving certificate.
    pub ca_file: PathBuf,
    /// The control API, `http://127.0.0.1:PORT`.
    #[serde(rename = "controlURL")]
    pub control_url: String,
    /// Audit log (with `--audit-log`).
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// kube-apiserver's log.
    pub api_server_log: PathBuf,
    /// Node names served by the kubelet stand-in.
    #[serde(default, deserialize_with = "null_as_default")]
    pub nodes: BTreeMap<String, PathBuf>,
    /// How often kube-apiserver was restarted.
    #[serde(default)]
    pub api_server_restarts: u32,
}

/// Go writes a nil slice or map as `null`.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One pod as the kubelet stand-in reports it (`GET /pod`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodState {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Node.
    pub node: String,
    /// Volume name -> directory (kubelet's layout).
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: BTreeMap<String, PathBuf>,
    /// Every volume set up.
    #[serde(default)]
    pub volumes_ready: bool,
    /// The last SetUp error, if any.
    #[serde(default)]
    pub last_error: String,
    /// One entry per `podCertificate` source.
    #[serde(default, deserialize_with = "null_as_default")]
    pub certificates: Vec<PodCertificate>,
}

/// What kubelet's pod-certificate manager holds for one `podCertificate` source.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodCertificate {
    /// The projected volume.
    pub volume: String,
    /// The signer.
    pub signer_name: String,
    /// A certificate is there.
    pub ready: bool,
    /// Why not (e.g. the request was denied).
    #[serde(default)]
    pub error: String,
    /// Its serial (hex).
    #[serde(default)]
    pub serial: String,
}

/// A running test cluster; SIGTERMed (then killed) on drop, its state
/// directory removed unless [`TestCluster::keep_state`] was called.
pub struct TestCluster {
    child: Child,
    /// The state directory (a temp dir).
    pub dir: tempfile::TempDir,
    keep: bool,
    /// `state.json` as read at start-up.
    pub state: State,
    /// The release it runs.
    pub release: Release,
}

impl TestCluster {
    /// Builds (if needed) and starts the harness with two nodes, the audit log and a
    /// short Secret cache, and waits for `READY`.
    pub fn start(release: Release) -> Result<TestCluster> {
        Self::start_with(release, true)
    }

    /// [`TestCluster::start`] without the Pod Certificates API
    /// (`--pod-certificates=false`): kube-apiserver without the feature gates and
    /// runtime-config, like a default 1.35/1.36 or a managed cluster, and the
    /// kubelet stand-in with kubelet's no-op pod-certificate managers.
    pub fn start_without_pod_certificates(release: Release) -> Result<TestCluster> {
        Self::start_with(release, false)
    }

    fn start_with(release: Release, pod_certificates: bool) -> Result<TestCluster> {
        let bin = harness_binary(release)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("podtls-e2e-{}-", release.as_str()))
            .tempdir()?;
        let log = std::fs::File::create(dir.path().join("harness.log"))?;
        let mut child = Command::new(&bin)
            .arg("--state-dir")
            .arg(dir.path())
            .args(["--audit-log", "--object-cache-ttl=1s", "--sync-period=2s"])
            .arg(format!("--pod-certificates={pod_certificates}"))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let state_file = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(path) = line.strip_prefix("READY ") {
                        break PathBuf::from(path);
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let log =
                        std::fs::read_to_string(dir.path().join("harness.log")).unwrap_or_default();
                    bail!(
                        "test cluster {} not ready within 120 s; harness log:\n{}",
                        release.as_str(),
                        tail(&log, 60)
                    );
                }
            }
        };
        let state: State = serde_json::from_slice(&std::fs::read(&state_file)?)
            .with_context(|| format!("parsing {}", state_file.display()))?;
        Ok(TestCluster {
            child,
            dir,
            keep: false,
            state,
            release,
        })
    }

    /// Keeps the state directory (logs, etcd, volumes) after the cluster stops,
    /// for a post-mortem; returns its path.
    pub fn keep_state(&mut self) -> PathBuf {
        self.keep = true;
        self.dir.path().to_path_buf()
    }

    /// An admin client (system:masters).
    pub async fn admin_client(&self) -> Result<kube::Client> {
        client_from_kubeconfig(&self.state.kubeconfig).await
    }

    /// Node names, sorted.
    pub fn nodes(&self) -> Vec<String> {
        self.state.nodes.keys().cloned().collect()
    }

    /// `POST`/`GET` on the control API; `path` includes the query.
    pub async fn control(&self, method: &str, path: &str) -> Result<HttpResponse> {
        http_request(method, &format!("{}{path}", self.state.control_url)).await
    }

    /// Waits (up to `wait`) until the pod's volumes are set up and every
    /// `podCertificate` source holds a certificate.
    pub async fn wait_pod(&self, namespace: &str, name: &str, wait: Duration) -> Result<PodState> {
        let r = self
            .control(
                "GET",
                &format!(
                    "/pod?namespace={namespace}&pod={name}&wait={}s",
                    wait.as_secs()
                ),
            )
            .await?;
        if r.status != 200 {
            bail!(
                "pod {namespace}/{name} not ready within {wait:?} (HTTP {}): {}",
                r.status,
                r.body
            );
        }
        Ok(serde_json::from_str(&r.body)?)
    }

    /// The pod's current entry, whatever its state (`None` if no stand-in has it yet).
    pub async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodState>> {
        let r = self
            .control("GET", &format!("/pod?namespace={namespace}&pod={name}"))
            .await?;
        match r.status {
            200 => Ok(Some(serde_json::from_str(&r.body)?)),
            404 => Ok(None),
            s => bail!("GET /pod {namespace}/{name}: HTTP {s}: {}", r.body),
        }
    }

    /// Forces a new key and certificate for every `podCertificate` source of the pod and
    /// waits until they are on disk.
    pub async fn refresh(&self, namespace: &str, name: &str) -> Result<serde_json::Value> {
        let r = self
            .control(
                "POST",
                &format!("/refresh?namespace={namespace}&pod={name}&wait=90s"),
            )
            .await?;
        if r.status != 200 {
            bail!(
                "refresh of {namespace}/{name}: HTTP {}: {}",
                r.status,
                r.body
            );
        }
        Ok(serde_json::from_str(&r.body)?)
    }

    /// Restarts kube-apiserver (same port, same etcd) and returns once it is ready.
    pub async fn restart_apiserver(&self) -> Result<()> {
        let r = self.control("POST", "/restart-apiserver?down=2s").await?;
        if r.status != 200 {
            bail!("restart-apiserver: HTTP {}: {}", r.status, r.body);
        }
        Ok(())
    }

    /// The audit log's events so far (Metadata level, one JSON object per line).
    pub fn audit_events(&self) -> Result<Vec<serde_json::Value>> {
        let path = self
            .state
            .audit_log
            .as_ref()
            .context("the cluster runs without --audit-log")?;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// The end of kube-apiserver's log, for failure messages.
    pub fn apiserver_log_tail(&self) -> String {
        tail(
            &std::fs::read_to_string(&self.state.api_server_log).unwrap_or_default(),
            40,
        )
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.keep {
            let dir = std::mem::replace(&mut self.dir, tempfile::TempDir::new().expect("temp dir"));
            let _ = dir.keep();
        }
    }
}

/// A client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Writes a kubeconfig that authenticates with a bearer `token` (e.g. a
/// ServiceAccount's) to the cluster's API server.
pub fn write_token_kubeconfig(state: &State, token: &str, path: &Path) -> Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: sa}}\ncurrent-context: e2e\n",
        state.api_server_url,
        state.ca_file.display(),
        token
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
