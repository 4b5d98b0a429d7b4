//! Plain-HTTP requests to the harness' control API and the processes' admin
//! endpoints (hyper-util's client, no TLS).

use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Status and body of a response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// `method url` with an empty body; a generous deadline (the control API's
/// `wait` parameters block for up to 90 s).
pub async fn http_request(method: &str, url: &str) -> Result<HttpResponse> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::new())
        .with_context(|| format!("building {method} {url}"))?;
    let fut = async {
        let resp = client.request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok(HttpResponse {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(150), fut)
        .await
        .with_context(|| format!("{method} {url} timed out"))?
        .with_context(|| format!("{method} {url}"))
}
