//! Periodic mode: one request every `--interval`, one line per request.

use std::io::Write;
use std::time::Duration;

use podtls_bin_support::protocol::Fetch;

use crate::client::Setup;
use crate::request::get;

/// Fetches until `count` requests were made (or forever), opening fresh
/// connections every `max_age` (if not zero); returns the number of failed
/// requests.
pub async fn run(setup: &Setup, interval: Duration, count: Option<u64>, max_age: Duration) -> u64 {
    let mut client = setup.client(true);
    let mut born = std::time::Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut done, mut failed) = (0u64, 0u64);
    while count.is_none_or(|c| done < c) {
        ticker.tick().await;
        if !max_age.is_zero() && born.elapsed() >= max_age {
            // A new pool: the old connections close once idle.
            client = setup.client(true);
            born = std::time::Instant::now();
        }
        let out = get(&client, &setup.url, setup.timeout).await;
        done += 1;
        // Our serial as the server saw it (demo-server's header), else the
        // one we currently hold.
        let client_serial = out
            .client_serial
            .clone()
            .or_else(|| {
                setup
                    .pod
                    .credentials()
                    .and_then(|c| match c.status().summary {
                        Some(podtls::reload::Summary::Certificate(ci)) => Some(ci.serial),
                        _ => None,
                    })
            })
            .filter(|s| s != "-");
        // The line format (and its parser) is podtls-bin-support's.
        let line = Fetch {
            time: podtls::certificate::format_time(std::time::SystemTime::now()),
            status: out.status,
            alpn: out.alpn.clone(),
            server_serial: out.server_serial.clone(),
            client_serial,
            server_trust_domain: out.server_trust_domain.clone(),
            body: out.body.clone(),
        };
        if !out.ok() {
            failed += 1;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
    failed
}
