//! One request and what came back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};

use crate::client::HttpClient;

/// The outcome of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Response body (or the error).
    pub body: String,
    /// Serial of the certificate the server presented on this connection.
    pub server_serial: Option<String>,
    /// Our certificate's serial as the server saw it (demo-server's
    /// `x-client-certificate-serial` header).
    pub client_serial: Option<String>,
    /// Negotiated protocol (h2 / http/1.1).
    pub alpn: Option<String>,
    /// The server's SPIFFE trust domain, when its certificate is an X509-SVID.
    pub server_trust_domain: Option<String>,
    /// Round-trip time.
    pub latency: Duration,
}

impl Outcome {
    /// A 2xx response.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// GETs `url` within `timeout`.
pub async fn get(client: &HttpClient, url: &Uri, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let fut = async {
        let req = Request::get(url.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let info = resp.extensions().get::<podtls::http::ServerInfo>().cloned();
        let client_serial = resp
            .headers()
            .get("x-client-certificate-serial")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, info, body, client_serial))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok((status, info, body, client_serial))) => Outcome {
            client_serial,
            status: Some(status),
            body: String::from_utf8_lossy(&body).trim_end().to_string(),
            server_serial: info
                .as_ref()
                .and_then(|i| i.certificate.as_ref())
                .map(|c| c.serial.clone()),
            server_trust_domain: info
                .as_ref()
                .and_then(|i| i.certificate.as_ref())
                .and_then(|c| c.spiffe_id.as_ref())
                .map(|id| id.trust_domain().to_string()),
            alpn: info.and_then(|i| i.alpn),
            latency: start.elapsed(),
        },
        Ok(Err(e)) => Outcome {
            client_serial: None,
            status: None,
            body: e,
            server_serial: None,
            alpn: None,
            server_trust_domain: None,
            latency: start.elapsed(),
        },
        Err(_) => Outcome {
            client_serial: None,
            status: None,
            body: format!("timed out after {timeout:?}"),
            server_serial: None,
            alpn: None,
            server_trust_domain: None,
            latency: start.elapsed(),
        },
    }
}
