//! Starting the real demo-server and demo-client binaries, and reading what
//! the clients report.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

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
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo.args([
            "build",
            "--quiet",
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
    let port = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("https="))
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
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

/// One line of demo-client's periodic output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// HTTP status, or None for a failed request.
    pub status: Option<u16>,
    /// The server certificate's serial.
    pub server_serial: Option<String>,
    /// The client certificate's serial as the server saw it.
    pub client_serial: Option<String>,
    /// The server's SPIFFE trust domain (full SPIFFE pairs).
    pub server_trust_domain: Option<String>,
    /// The response body or error.
    pub body: String,
}

/// Parses `<time> <code> <alpn> server_serial=S client_serial=C
/// [server_trust_domain=T] <body>` or `<time> FAILED client_serial=C <error>`.
pub fn parse_fetch(line: &str) -> Option<Fetch> {
    let mut it = line.splitn(3, ' ');
    let _time = it.next()?;
    let status = it.next()?;
    let rest = it.next().unwrap_or_default();
    let field = |s: &str, k: &str| {
        s.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .filter(|v| *v != "-")
            .map(str::to_string)
    };
    if status == "FAILED" {
        let body = rest
            .split_once(' ')
            .map(|x| x.1)
            .unwrap_or_default()
            .to_string();
        return Some(Fetch {
            status: None,
            server_serial: None,
            client_serial: field(rest, "client_serial="),
            server_trust_domain: None,
            body,
        });
    }
    let code: u16 = status.parse().ok()?;
    let mut parts = rest.splitn(4, ' ');
    let _alpn = parts.next();
    let s = parts.next().unwrap_or_default();
    let c = parts.next().unwrap_or_default();
    let mut body = parts.next().unwrap_or_default();
    let mut server_trust_domain = None;
    if let Some(after) = body.strip_prefix("server_trust_domain=") {
        let (td, rest) = after.split_once(' ').unwrap_or((after, ""));
        server_trust_domain = Some(td.to_string());
        body = rest;
    }
    Some(Fetch {
        status: Some(code),
        server_serial: field(s, "server_serial="),
        client_serial: field(c, "client_serial="),
        server_trust_domain,
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_demo_client_lines() {
        let ok = parse_fetch("2026-01-01T00:00:00Z 200 h2 server_serial=ab client_serial=cd Client Identity: spiffe://x/y").unwrap();
        assert_eq!(ok.status, Some(200));
        assert_eq!(ok.server_serial.as_deref(), Some("ab"));
        assert_eq!(ok.client_serial.as_deref(), Some("cd"));
        assert_eq!(ok.body, "Client Identity: spiffe://x/y");
        assert_eq!(ok.server_trust_domain, None);
        let spiffe = parse_fetch(
            "t 200 h2 server_serial=ab client_serial=cd server_trust_domain=a.example Client Identity: spiffe://b.example/y",
        )
        .unwrap();
        assert_eq!(spiffe.server_trust_domain.as_deref(), Some("a.example"));
        assert_eq!(spiffe.body, "Client Identity: spiffe://b.example/y");
        let anon = parse_fetch("t 200 h2 server_serial=ab client_serial=- OK").unwrap();
        assert_eq!(anon.client_serial, None);
        let failed = parse_fetch("t FAILED client_serial=- connection refused").unwrap();
        assert_eq!(
            (failed.status, failed.body.as_str()),
            (None, "connection refused")
        );
        assert!(parse_fetch("garbage").is_none());
    }
}
