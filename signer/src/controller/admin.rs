//! The plain-HTTP admin endpoint: `/metrics`, `/readyz`, `/livez`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// Readiness: `Ok` or why not.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Answers one admin request (pure routing, unit-testable).
pub fn respond(
    method: &Method,
    path: &str,
    metrics: &Metrics,
    ready: &ReadinessCheck,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/livez" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match ready() {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Binds `addr` and serves the admin endpoint until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: ReadinessCheck,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "admin endpoint listening (/metrics, /readyz, /livez)");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let resp = respond(req.method(), req.uri().path(), &metrics, &ready);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_is_503_with_the_reason_until_ready() {
        let m = Metrics::new();
        let not_ready: ReadinessCheck =
            Arc::new(|| Err("no CA pool for row-major.net/spiffe".into()));
        let resp = respond(&Method::GET, "/readyz", &m, &not_ready);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let ready: ReadinessCheck = Arc::new(|| Ok(()));
        assert_eq!(
            respond(&Method::GET, "/readyz", &m, &ready).status(),
            StatusCode::OK
        );
        assert_eq!(
            respond(&Method::GET, "/livez", &m, &not_ready).status(),
            StatusCode::OK
        );
        assert_eq!(
            respond(&Method::GET, "/metrics", &m, &not_ready).status(),
            StatusCode::OK
        );
        assert_eq!(
            respond(&Method::GET, "/nope", &m, &ready).status(),
            StatusCode::NOT_FOUND
        );
    }
}
