//! Load mode: N workers for a fixed duration; requests/s, handshakes/s,
//! latency percentiles and failures.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::args::{LoadArgs, Output};
use crate::client::Setup;
use crate::request::get;

/// The result of a load run.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Requests completed (ok or not).
    pub requests: u64,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// TLS connections opened.
    pub handshakes: u64,
    /// Connections per second.
    pub handshakes_per_sec: f64,
    /// Latency percentiles in milliseconds.
    pub latency_ms: Latency,
    /// Requests that failed (transport error, timeout or non-2xx).
    pub failed: u64,
    /// Distinct server certificate serials seen.
    pub server_serials: Vec<String>,
    /// Distinct serials of our own certificate, as the server reported them.
    pub client_serials: Vec<String>,
    /// Distinct response bodies (at most 10).
    pub bodies: Vec<String>,
    /// The first errors (at most 5).
    pub errors: Vec<String>,
}

/// Latency percentiles.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

#[derive(Default)]
struct Shared {
    latencies_ms: Vec<f64>,
    serials: BTreeSet<String>,
    client_serials: BTreeSet<String>,
    bodies: BTreeSet<String>,
    errors: Vec<String>,
}

/// Runs the load; returns the summary (also printed).
pub async fn run(setup: &Setup, args: &LoadArgs) -> Summary {
    let reuse = !args.new_connection_per_request;
    let client = setup.client(reuse);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Mutex::new(Shared::default()));
    let start = Instant::now();
    let deadline = start + args.duration;
    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (client, done, failed, shared) =
                (client.clone(), done.clone(), failed.clone(), shared.clone());
            let (url, timeout) = (setup.url.clone(), setup.timeout);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let out = get(&client, &url, timeout).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    s.latencies_ms.push(out.latency.as_secs_f64() * 1e3);
                    if let Some(serial) = out.server_serial.clone() {
                        s.serials.insert(serial);
                    }
                    if let Some(serial) = out.client_serial.clone() {
                        s.client_serials.insert(serial);
                    }
                    if out.ok() {
                        if s.bodies.len() < 10 {
                            s.bodies.insert(out.body);
                        }
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if s.errors.len() < 5 {
                            s.errors.push(match out.status {
                                Some(code) => format!("{code}: {}", out.body),
                                None => out.body,
                            });
                        }
                    }
                }
            })
        })
        .collect();
    let progress = (!args.quiet).then(|| {
        let (done, failed, conns) = (
            done.clone(),
            failed.clone(),
            setup.connector.connections.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let secs = start.elapsed().as_secs_f64();
                let n = done.load(Ordering::Relaxed);
                eprint!(
                    "\r{secs:6.1}s  requests {n} ({:.0}/s)  handshakes {}  failed {}   ",
                    n as f64 / secs,
                    conns.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed)
                );
                let _ = std::io::stderr().flush();
            }
        })
    });
    for w in workers {
        let _ = w.await;
    }
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut s = std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
    s.latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        if s.latencies_ms.is_empty() {
            0.0
        } else {
            s.latencies_ms[((s.latencies_ms.len() - 1) as f64 * p).round() as usize]
        }
    };
    let requests = done.load(Ordering::Relaxed);
    let handshakes = setup.connector.connections.load(Ordering::Relaxed);
    let summary = Summary {
        requests,
        requests_per_sec: requests as f64 / elapsed,
        handshakes,
        handshakes_per_sec: handshakes as f64 / elapsed,
        latency_ms: Latency {
            p50: pct(0.5),
            p99: pct(0.99),
            max: s.latencies_ms.last().copied().unwrap_or(0.0),
        },
        failed: failed.load(Ordering::Relaxed),
        server_serials: s.serials.into_iter().collect(),
        client_serials: s.client_serials.into_iter().collect(),
        bodies: s.bodies.into_iter().collect(),
        errors: s.errors,
    };
    print(&summary, args, elapsed);
    summary
}

fn print(s: &Summary, args: &LoadArgs, elapsed: f64) {
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => {
            let _ = writeln!(out, "{}", serde_json::to_string(s).unwrap_or_default());
        }
        Output::Table => {
            let mode = if args.new_connection_per_request {
                "new connection per request"
            } else {
                "keep-alive"
            };
            let _ = writeln!(
                out,
                "load: {} workers, {elapsed:.1}s, {mode}",
                args.concurrency
            );
            let rows = [
                ("requests", s.requests.to_string()),
                ("requests/s", format!("{:.1}", s.requests_per_sec)),
                ("handshakes", s.handshakes.to_string()),
                ("handshakes/s", format!("{:.1}", s.handshakes_per_sec)),
                ("latency p50", format!("{:.2} ms", s.latency_ms.p50)),
                ("latency p99", format!("{:.2} ms", s.latency_ms.p99)),
                ("latency max", format!("{:.2} ms", s.latency_ms.max)),
                ("failed", s.failed.to_string()),
                ("server serials", s.server_serials.len().to_string()),
                ("client serials", s.client_serials.len().to_string()),
            ];
            for (k, v) in rows {
                let _ = writeln!(out, "{k:<16}{v:>16}");
            }
            for e in &s.errors {
                let _ = writeln!(out, "error: {e}");
            }
        }
    }
    let _ = out.flush();
}
