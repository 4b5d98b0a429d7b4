//! Starting the real demo-server and demo-client binaries, and reading what
//! the clients report.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use podtls_bin_support::protocol::Listening;

/// The directory of the demo binaries: next to this executable, or built now
/// from this source tree (for `cargo run -p podtls-local`).
pub fn demo_binaries() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe
        .parent()
        .context("executable has no directory")?
        .to_path_buf();
    let present = |d: &Path| d.join("demo-server").exists() && d.join("demo-client").exists();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    if manifest.exists() {
        // From a source tree: (re)build so the binaries match this source.
        // cargo said "Running" already; without a word here a cold build of the two
        // binaries (minutes) looks like a hang. cargo's own progress goes to stderr.
        let profile = if dir.ends_with("release") {
            " --release"
        } else {
            ""
        };
        eprintln!(
            "podtls-local: building demo-server and demo-client \
             (cargo build -p demo-server -p demo-client{profile}; the first build takes a few minutes)"
        );
        let started = std::time::Instant::now();
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo.args([
            "build",
            "-p",
            "demo-server",
            "-p",
            "demo-client",
            "--manifest-path",
        ]);
        cargo.arg(&manifest);
        if dir.ends_with("release") {
            cargo.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cargo.env("CARGO_TARGET_DIR", target);
        }
        let status = cargo
            .status()
            .context("running cargo build for the demo binaries")?;
        if !status.success() {
            bail!("building demo-server and demo-client failed");
        }
        eprintln!(
            "podtls-local: demo binaries ready ({:.1?})",
            started.elapsed()
        );
    }
    if !present(&dir) {
        bail!("demo-server and demo-client not found in {}", dir.display());
    }
    Ok(dir)
}

/// A started demo-server.
pub struct ServerProc {
    /// The process (killed on drop).
    pub child: Child,
    /// The HTTPS port it bound.
    pub port: u16,
}

/// Starts demo-server with `args` on an ephemeral port; stderr goes to `log`.
pub async fn start_server(bin: &Path, args: &[String], log: &Path) -> Result<ServerProc> {
    let mut child = Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--log-format",
            "json",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).context("creating a log file")?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .context("demo-server did not start within 30 s")??
        .with_context(|| format!("demo-server exited; see {}", log.display()))?;
    let port = Listening::parse(&line)
        .map(|l| l.https.port())
        .with_context(|| format!("unexpected first line from demo-server: {line:?}"))?;
    Ok(ServerProc { child, port })
}

/// Starts demo-client (periodic mode); returns the process and its stdout.
pub fn start_client(bin: &Path, args: &[String], log: &Path) -> Result<(Child, ChildStdout)> {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).context("creating a log file")?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    Ok((child, stdout))
}

/// One line of demo-client's periodic output (parsed by [`Fetch::parse`]).
pub use podtls_bin_support::protocol::Fetch;
