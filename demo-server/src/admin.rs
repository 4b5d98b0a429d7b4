//! The plain-HTTP admin listener: `/metrics`, `/readyz`, `/livez`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use podtls::PodTls;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Serves admin requests until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    pod: PodTls,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (pod, metrics) = (pod.clone(), metrics.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = route(&req, &pod, &metrics);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn route<B>(req: &Request<B>, pod: &PodTls, metrics: &Metrics) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let statuses = pod.statuses();
            let mut body = String::new();
            for s in &statuses {
                let state = if s.is_ready() { "ready" } else { "not ready" };
                body.push_str(&format!("{}: {state}", s.name));
                if let Some(e) = &s.last_error {
                    body.push_str(&format!(" (last error: {e})"));
                }
                body.push('\n');
            }
            for t in pod.trust_domain_statuses() {
                let state = match (t.loaded, t.is_de_federated()) {
                    (_, true) => "de-federated",
                    (true, false) => "loaded",
                    (false, false) => "not loaded",
                };
                let own = if t.own { " (own)" } else { "" };
                body.push_str(&format!(
                    "trust domain {}{own}: {state}, {} anchors\n",
                    t.trust_domain, t.anchors
                ));
            }
            // With a credential folder, peer trust domains come and go:
            // ready means credentials + the own trust domain's bundle.
            let code = if pod.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(code, body)
        }
        "/metrics" => {
            let mut r = text(StatusCode::OK, metrics.render());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}
