//! The project deployed on a test cluster: the controller manifests applied,
//! CA pools made by `signer make-ca-pool-secret`, signer replicas and the
//! example pairs run as local processes from their manifests' pod templates,
//! reading the volumes the kubelet stand-in projects for their pods.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::cluster::{PodState, TestCluster};
use crate::manifests::{self, container_command, create_pod_from_template, pod_template};
use crate::procs::{binaries, free_port, wait_http_ok, Proc};

/// The controller's namespace in the manifests.
pub const CONTROLLER_NAMESPACE: &str = "mesh-controller";
/// The SPIFFE trust domain the manifests use.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// The project on one test cluster.
pub struct Mesh<'c> {
    /// The cluster.
    pub cluster: &'c TestCluster,
    /// Admin client.
    pub client: kube::Client,
    /// Where the workspace's binaries are.
    pub bins: PathBuf,
    /// Where process logs go (inside the cluster's state dir).
    pub logs: PathBuf,
    controller_docs: Vec<Value>,
}

/// A signer replica: its pod on the cluster and its process here.
pub struct SignerReplica {
    /// The pod name in `mesh-controller`.
    pub pod: String,
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:PORT` of its admin endpoint.
    pub admin: String,
}

impl SignerReplica {
    /// Its `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(
            crate::http::http_request("GET", &format!("{}/metrics", self.admin))
                .await?
                .body,
        )
    }
}

/// One example namespace: its manifests, its pods, and the demo-server process.
pub struct Pair {
    /// The namespace (= the manifest file's stem).
    pub namespace: String,
    /// The manifest's documents.
    pub docs: Vec<Value>,
    /// The server pod's state once its volumes were written.
    pub server_pod: PodState,
    /// The client pod's state once its volumes were written.
    pub client_pod: PodState,
    /// demo-server.
    pub server: Proc,
    /// demo-server's HTTPS port on 127.0.0.1.
    pub port: u16,
    /// demo-server's admin URL.
    pub server_admin: String,
}

impl<'c> Mesh<'c> {
    /// Installs the controller in the order the quick start (kind/README.md) and
    /// the manifest's header give, from an empty cluster: `controller/namespace.yaml`
    /// applied (server-side), the three CA pool Secrets made with `signer
    /// make-ca-pool-secret`, then every file of `controller/` applied.
    pub async fn install(cluster: &'c TestCluster) -> Result<Mesh<'c>> {
        let client = cluster.admin_client().await?;
        let bins = binaries()?;
        let logs = cluster.dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let dir = manifests::manifests_dir().join("controller");
        let namespace = manifests::load(&dir.join("namespace.yaml"))?;
        manifests::apply_all(&client, &namespace).await?;
        let controller_docs = manifests::load_dir(&dir)?;
        let mesh = Mesh {
            cluster,
            client,
            bins,
            logs,
            controller_docs,
        };
        for (secret, id) in [
            ("service-dns-ca-pool", "sd-1"),
            ("spiffe-ca-pool", "spiffe-1"),
            ("pod-identity-ca-pool", "pod-identity-1"),
        ] {
            mesh.signer_tool(&[
                "make-ca-pool-secret",
                "--namespace",
                CONTROLLER_NAMESPACE,
                "--name",
                secret,
                "--ca-id",
                id,
            ])?;
        }
        manifests::apply_all(&mesh.client, &mesh.controller_docs).await?;
        Ok(mesh)
    }

    /// Runs `signer ARGS --kubeconfig <admin>` to completion; fails if it fails.
    /// Returns its standard output.
    pub fn signer_tool(&self, args: &[&str]) -> Result<String> {
        let out = self.signer_tool_output(args)?;
        if !out.status.success() {
            bail!(
                "signer {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `signer ARGS --kubeconfig <admin>` to completion, whatever its exit status.
    pub fn signer_tool_output(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(std::process::Command::new(self.bins.join("signer"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.cluster.state.kubeconfig)
            .output()?)
    }

    /// Starts a signer replica: a pod `signer-<replica>` from the Deployment's
    /// template (so the kubelet stand-in projects the CA pool Secrets and the
    /// ServiceAccount token), then the manifest's command as a local process that
    /// authenticates with that pod's projected token. `extra` is appended to the
    /// command.
    pub async fn start_signer(&self, replica: &str, extra: &[&str]) -> Result<SignerReplica> {
        self.start_signer_without(replica, extra, &[]).await
    }

    /// [`Mesh::start_signer`], leaving out the manifest's arguments in `without`
    /// (e.g. `--enable-service-dns-signer`).
    pub async fn start_signer_without(
        &self,
        replica: &str,
        extra: &[&str],
        without: &[&str],
    ) -> Result<SignerReplica> {
        let pod_name = format!("signer-{replica}");
        let template = pod_template(&self.controller_docs, "signer")?;
        let node = &self.cluster.nodes()[0];
        let existing = self.cluster.pod(CONTROLLER_NAMESPACE, &pod_name).await?;
        if existing.is_none() {
            create_pod_from_template(
                &self.client,
                template,
                CONTROLLER_NAMESPACE,
                &pod_name,
                node,
                |_| {},
            )
            .await?;
        }
        let pod = self
            .cluster
            .wait_pod(CONTROLLER_NAMESPACE, &pod_name, Duration::from_secs(60))
            .await?;
        let ca_state = volume(&pod, "ca-state")?;
        let token_dir = pod
            .volumes
            .iter()
            .find(|(name, _)| name.starts_with("kube-api-access-"))
            .map(|(_, dir)| dir.clone())
            .context("signer pod has no kube-api-access volume")?;
        // In-cluster config, spelled as a kubeconfig: the pod's projected token
        // (re-read by the client as kubelet refreshes it) and kube-root-ca.crt.
        let kubeconfig = self.logs.join(format!("{pod_name}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    tokenFile: {}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: sa}}\ncurrent-context: e2e\n",
                self.cluster.state.api_server_url,
                token_dir.join("ca.crt").display(),
                token_dir.join("token").display()
            ),
        )?;
        let admin_port = free_port();
        let mut args = Vec::new();
        for arg in container_command(template, "signer")?.into_iter().skip(1) {
            if without.contains(&arg.as_str()) {
                continue;
            }
            let arg = match arg.as_str() {
                "--in-cluster" => format!("--kubeconfig={}", kubeconfig.display()),
                a if a.starts_with("--admin-listen=") => {
                    format!("--admin-listen=127.0.0.1:{admin_port}")
                }
                a => a
                    .replace("$(POD_NAMESPACE)", CONTROLLER_NAMESPACE)
                    .replace("$(POD_NAME)", &pod_name)
                    .replace("$(POD_UID)", &pod.uid)
                    .replace("/run/ca-state", &ca_state.display().to_string()),
            };
            args.push(arg);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::start(
            &pod_name,
            &self.bins.join("signer"),
            &args,
            &[("RUST_LOG", "info")],
            &self.logs,
        )?;
        let admin = format!("http://127.0.0.1:{admin_port}");
        let mut replica = SignerReplica {
            pod: pod_name,
            proc,
            admin,
        };
        if let Err(e) = wait_http_ok(
            &format!("{}/readyz", replica.admin),
            Duration::from_secs(60),
        )
        .await
        {
            let code = replica.proc.exited();
            bail!(
                "signer {} not ready ({e:#}; exited: {code:?}):\n{}",
                replica.pod,
                replica.proc.tail(40)
            );
        }
        Ok(replica)
    }

    /// Applies an example namespace's manifest and creates its `server` and
    /// `client` pods (on different nodes) from the Deployments' templates, waits for
    /// their volumes, and starts demo-server from its manifest command.
    pub async fn start_pair(&self, namespace: &str) -> Result<Pair> {
        let docs = manifests::load(&manifests::manifests_dir().join(format!("{namespace}.yaml")))?;
        manifests::apply_all(&self.client, &docs).await?;
        let nodes = self.cluster.nodes();
        for (name, node) in [("server", &nodes[0]), ("client", &nodes[nodes.len() - 1])] {
            create_pod_from_template(
                &self.client,
                pod_template(&docs, name)?,
                namespace,
                name,
                node,
                |_| {},
            )
            .await?;
        }
        let wait = Duration::from_secs(90);
        let server_pod = self.cluster.wait_pod(namespace, "server", wait).await?;
        let client_pod = self.cluster.wait_pod(namespace, "client", wait).await?;
        let port = free_port();
        let admin_port = free_port();
        let dir = volume(&server_pod, "podtls")?;
        let mut args: Vec<String> = container_command(pod_template(&docs, "server")?, "server")?
            .into_iter()
            .skip(1)
            .map(|a| {
                if a.starts_with("--listen=") {
                    format!("--listen=127.0.0.1:{port}")
                } else {
                    a.replace("/run/podtls", &dir.display().to_string())
                }
            })
            .collect();
        args.push(format!("--admin-listen=127.0.0.1:{admin_port}"));
        let server = Proc::start(
            &format!("{namespace}-server"),
            &self.bins.join("demo-server"),
            &args,
            &[("RUST_LOG", "info")],
            &self.logs,
        )?;
        let server_admin = format!("http://127.0.0.1:{admin_port}");
        wait_http_ok(&format!("{server_admin}/readyz"), Duration::from_secs(30))
            .await
            .with_context(|| format!("demo-server of {namespace}:\n{}", server.tail(30)))?;
        Ok(Pair {
            namespace: namespace.to_string(),
            docs,
            server_pod,
            client_pod,
            server,
            port,
            server_admin,
        })
    }
}

impl Pair {
    /// demo-client's arguments from the client Deployment's command, pointed at
    /// the local demo-server (`--resolve server.<ns>.svc:PORT:127.0.0.1`) and the
    /// client pod's volume; `--interval` is dropped.
    pub fn client_args(&self) -> Result<Vec<String>> {
        let dir = volume(&self.client_pod, "podtls")?;
        let host = format!("server.{}.svc", self.namespace);
        let mut args: Vec<String> = Vec::new();
        for a in container_command(pod_template(&self.docs, "client")?, "client")?
            .into_iter()
            .skip(1)
        {
            if a.starts_with("--interval=") {
                continue;
            }
            let a = a
                .replace(
                    &format!("https://{host}/"),
                    &format!("https://{host}:{}/", self.port),
                )
                .replace("/run/podtls", &dir.display().to_string());
            args.push(a);
        }
        args.push(format!("--resolve={host}:{}:127.0.0.1", self.port));
        Ok(args)
    }

    /// Runs demo-client `count` times (100 ms apart) and returns its output lines;
    /// fails if the client exits non-zero (a failed request).
    pub fn fetch(&self, bins: &Path, count: u32) -> Result<Vec<String>> {
        let mut args = self.client_args()?;
        args.extend([format!("--count={count}"), "--interval=100ms".to_string()]);
        let out = std::process::Command::new(bins.join("demo-client"))
            .args(&args)
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "demo-client {args:?} failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout.lines().map(str::to_string).collect())
    }
}

/// The directory of the pod's volume `name`.
pub fn volume(pod: &PodState, name: &str) -> Result<PathBuf> {
    pod.volumes.get(name).cloned().with_context(|| {
        format!(
            "pod {}/{} has no volume {name:?} (has {:?})",
            pod.namespace,
            pod.name,
            pod.volumes.keys().collect::<Vec<_>>()
        )
    })
}
