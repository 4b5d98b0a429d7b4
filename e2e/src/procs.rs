//! The project's binaries (signer, demo-server, demo-client, podtls-agent) as local
//! processes: built from this workspace, logs captured to a file and a line
//! stream, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::http::http_request;

/// The directory holding this workspace's binaries, built now (once per test
/// process) so they match the source: the target directory of this test binary.
pub fn binaries() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build() -> Result<PathBuf> {
    // tests run from <target>/<profile>/deps/<test>; the binaries live in <target>/<profile>.
    let exe = std::env::current_exe()?;
    let deps = exe.parent().context("test binary has no directory")?;
    let profile_dir = if deps.ends_with("deps") {
        deps.parent().context("no profile directory")?
    } else {
        deps
    };
    let target = profile_dir.parent().context("no target directory")?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--quiet",
            "-p",
            "signer",
            "-p",
            "demo-server",
            "-p",
            "demo-client",
            "-p",
            "podtls-agent",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target);
    if profile_dir.ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of signer, demo-server, demo-client and podtls-agent failed");
    }
    for b in ["signer", "demo-server", "demo-client", "podtls-agent"] {
        if !profile_dir.join(b).exists() {
            bail!("{b} not found in {}", profile_dir.display());
        }
    }
    Ok(profile_dir.to_path_buf())
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A started process whose stderr (and stdout) lines are kept.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Its log file (stdout + stderr lines).
    pub log_path: PathBuf,
}

impl Proc {
    /// Starts `bin args...`, logging to `log_dir/<name>.log`.
    pub fn start(
        name: &str,
        bin: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log_dir: &Path,
    ) -> Result<Proc> {
        let log_path = log_dir.join(format!("{name}.log"));
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}: {} {args:?}", bin.display()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let file = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)?,
        ));
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("piped"));
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("piped"));
        for stream in [out, err] {
            let lines = lines.clone();
            let file = file.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut f) = file.lock() {
                        let _ = std::io::Write::write_all(&mut *f, format!("{line}\n").as_bytes());
                    }
                    lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            lines,
            log_path,
        })
    }

    /// The lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last line printed that is a JSON object with a `failed` field: the summary
    /// demo-client's load mode prints with `--output=json`.
    pub fn load_summary(&self) -> Option<serde_json::Value> {
        self.lines().iter().rev().find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.get("failed").is_some())
        })
    }

    /// The last lines printed, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        self.status_bytes("VmHWM:")
    }

    /// Resident set size now, in bytes (Linux `VmRSS`).
    pub fn rss(&self) -> Option<u64> {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Exited already? (`Some(code)`; -1 for a signal.)
    pub fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Waits for the process to exit on its own, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.exited() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return Ok(code);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} still running after {timeout:?}:\n{}",
                    self.name,
                    self.tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash or an evicted pod.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` (SIGKILL after).
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        match self.wait(timeout) {
            Ok(code) => Some(code),
            Err(_) => {
                self.kill();
                None
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `GET url` until it answers 200, up to `timeout`.
pub async fn wait_http_ok(url: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_request("GET", url).await {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => last = format!("HTTP {}: {}", r.status, r.body),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{url} not OK within {timeout:?}: {last}")
}

/// The value of a Prometheus text-format sample whose name and labels contain every
/// one of `parts` (summed over the matching samples); 0 when none match.
pub fn metric_sum(text: &str, name: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next().is_some_and(|n| n == name))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_matching_samples_only() {
        let text = "# HELP x y\npodtls_signer_issued_total{signer=\"a\"} 3\npodtls_signer_issued_total{signer=\"b\"} 4\npodtls_signer_denied_total{signer=\"a\",reason=\"R\"} 1\n";
        assert_eq!(metric_sum(text, "podtls_signer_issued_total", &[]), 7.0);
        assert_eq!(
            metric_sum(text, "podtls_signer_issued_total", &["signer=\"a\""]),
            3.0
        );
        assert_eq!(
            metric_sum(text, "podtls_signer_denied_total", &["\"R\""]),
            1.0
        );
        assert_eq!(metric_sum(text, "missing", &[]), 0.0);
    }
}
