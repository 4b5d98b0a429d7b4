//! Wiring: podtls material, the HTTPS listener, the admin listener, signals.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use podtls::http::{serve_http, HttpOptions};
use podtls::{ClientAuth, ClientCertMode, ServeOptions, ServeStats, ServerTls};
use tokio::net::TcpListener;

use crate::args::Args;
use crate::config::Config;
use crate::handlers;
use crate::metrics::{Metrics, RequestLabels};

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> Result<()> {
    let config = Config::from_args(&args)?;
    let pod = config.pod_tls(args.reload_interval).start()?;
    // The admin listener comes up first: /livez answers and /readyz says
    // "not ready" while we wait for credentials.
    let stats = Arc::new(ServeStats::default());
    let metrics = Arc::new(Metrics::new(stats.clone(), pod.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let admin_addr = if args.admin_listen == "off" {
        None
    } else {
        let admin = bind(&args.admin_listen, "--admin-listen").await?;
        let addr = admin.local_addr()?;
        tokio::spawn(crate::admin::serve(
            admin,
            pod.clone(),
            metrics.clone(),
            stop_rx.clone(),
        ));
        Some(addr)
    };
    podtls_bin_support::readiness::wait_until_ready(&pod, args.wait_for_credentials).await?;

    let mut builder = ServerTls::builder(
        pod.credentials()
            .context("no credentials configured")?
            .clone(),
    )
    .alpn(&[b"h2", b"http/1.1"]);
    if let Some(s) = &config.spiffe {
        let auth = match s.mode {
            ClientCertMode::Required => {
                ClientAuth::required(pod.spiffe_bundles().clone(), s.authorizer.clone())
            }
            _ => ClientAuth::optional(pod.spiffe_bundles().clone(), s.authorizer.clone()),
        };
        builder = builder.client_auth(auth);
    }
    let tls = builder.build()?;

    let listener = bind(&args.listen.to_string(), "--listen").await?;
    let https_addr = listener.local_addr()?;
    // One machine-readable line for scripts and tests; logs go to stderr.
    let listening = podtls_bin_support::protocol::Listening {
        https: https_addr,
        admin: admin_addr,
    };
    println!("{listening}");
    let _ = std::io::stdout().flush();
    tracing::info!(%https_addr, admin = ?admin_addr, spiffe_clients = ?config.spiffe.as_ref().map(|s| s.mode), "demo-server listening");

    let spiffe_enabled = config.spiffe.is_some();
    let options = HttpOptions {
        serve: ServeOptions {
            handshake_timeout: args.handshake_timeout,
            max_connections: args.max_connections,
            drain_timeout: args.shutdown_grace,
            max_connection_age: args.max_connection_age,
            stats,
            ..ServeOptions::default()
        },
        header_read_timeout: args.header_read_timeout,
        idle_timeout: args.idle_timeout,
    };
    let shutdown = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let _ = stop_tx.send(true);
    };
    let handler_metrics = metrics.clone();
    serve_http(listener, tls, options, shutdown, move |req| {
        let reply = handlers::route(&req, spiffe_enabled);
        handler_metrics
            .requests
            .get_or_create(&RequestLabels {
                path: reply.route,
                code: reply.status.as_u16(),
            })
            .inc();
        async move { Ok::<_, std::convert::Infallible>(handlers::respond(reply)) }
    })
    .await;
    tracing::info!("demo-server stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Binds `addr`, given by `flag`; when the port is taken (typically by a second
/// demo-server on one machine, both on the default ports) the error names the flag
/// that picks another.
async fn bind(addr: &str, flag: &str) -> Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            let off = if flag == "--admin-listen" {
                format!(", or turn it off with {flag}=off")
            } else {
                String::new()
            };
            Err(anyhow::anyhow!(
                "cannot listen on {addr} ({flag}): the port is already in use, perhaps by \
                 another demo-server on this machine; choose a free one with \
                 {flag}=127.0.0.1:0 (any free port) or another address{off}"
            ))
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr} ({flag})")),
    }
}

#[cfg(test)]
mod tests {
    use super::bind;

    #[tokio::test]
    async fn a_taken_port_names_the_flag_that_picks_another() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = bind(&addr, "--admin-listen").await.unwrap_err().to_string();
        assert!(err.contains("already in use"), "{err}");
        assert!(err.contains("--admin-listen=127.0.0.1:0"), "{err}");
        assert!(err.contains("--admin-listen=off"), "{err}");
        let err = bind(&addr, "--listen").await.unwrap_err().to_string();
        assert!(err.contains("--listen=127.0.0.1:0"), "{err}");
        assert!(!err.contains("=off"), "{err}");
        // Other failures keep their cause and still name the flag.
        let err = format!(
            "{:#}",
            bind("not an address", "--admin-listen").await.unwrap_err()
        );
        assert!(err.contains("(--admin-listen)"), "{err}");
        drop(taken);
    }
}
