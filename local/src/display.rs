//! What the user watches: per pair, the latest response, the certificates
//! issued and seen in traffic, and ok / failed counts.

use std::collections::BTreeSet;
use std::fmt::Write;

/// The live state of one pair.
#[derive(Debug, Default, Clone)]
pub struct PairState {
    /// Display label.
    pub label: String,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests (transport errors and non-2xx).
    pub failed: u64,
    /// The latest response, one line.
    pub last: String,
    /// The latest failure, if any.
    pub last_failure: Option<String>,
    /// Server certificates issued by the kubelet stand-in.
    pub server_issued: Vec<String>,
    /// Client certificates issued.
    pub client_issued: Vec<String>,
    /// Server serials seen by the client.
    pub server_seen: BTreeSet<String>,
    /// Client serials seen by the server.
    pub client_seen: BTreeSet<String>,
    /// For the cross-trust-domain pair: the federation phase and counts.
    pub federation: Option<crate::federation::Federation>,
}

impl PairState {
    /// Issued certificates that traffic has shown (server, client).
    pub fn rotations_seen(&self) -> (usize, usize) {
        let count = |issued: &[String], seen: &BTreeSet<String>| {
            issued.iter().filter(|s| seen.contains(*s)).count()
        };
        (
            count(&self.server_issued, &self.server_seen),
            count(&self.client_issued, &self.client_seen),
        )
    }
}

fn short(serial: Option<&String>) -> String {
    match serial {
        Some(s) if s.len() > 8 => format!("…{}", &s[s.len() - 8..]),
        Some(s) => s.clone(),
        None => "-".into(),
    }
}

/// Renders the whole screen.
pub fn render(header: &str, pairs: &[PairState]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}");
    let _ = writeln!(
        out,
        "{:<38} {:>7} {:>6}  {:<20} {:<20} last response",
        "pair", "ok", "failed", "server cert (seen)", "client cert (seen)"
    );
    for p in pairs {
        let (s_seen, c_seen) = p.rotations_seen();
        let server = format!(
            "{} ({}/{})",
            short(p.server_issued.last()),
            s_seen,
            p.server_issued.len()
        );
        let client = if p.client_issued.is_empty() {
            "none".to_string()
        } else {
            format!(
                "{} ({}/{})",
                short(p.client_issued.last()),
                c_seen,
                p.client_issued.len()
            )
        };
        let mut last = p.last.clone();
        if last.len() > 90 {
            last.truncate(90);
        }
        let _ = writeln!(
            out,
            "{:<38} {:>7} {:>6}  {:<20} {:<20} {}",
            p.label, p.ok, p.failed, server, client, last
        );
        if let Some(f) = &p.federation {
            let _ = writeln!(out, "{:<38} {}", "", f.describe(std::time::Instant::now()));
        }
        if let Some(f) = &p.last_failure {
            let _ = writeln!(out, "{:<38} last failure: {f}", "");
        }
    }
    out
}
