//! The client half of the hyper integration: [`HttpsConnector`] and the
//! connections it makes.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::client_tls::ClientTls;
use crate::handshake::HandshakeError;

/// A hyper-util connector that dials TCP and performs the TLS handshake
/// through [`ClientTls::connect`] (deadline, safe resumption, resumed servers
/// verified again); HTTP/2 is used when the server selects `h2` by ALPN.
///
/// Connection pooling: hyper's pool reuses established connections, which
/// keep the certificates they were established with. Every *new* connection
/// resolves the current client certificate and trust bundles, so a rotation
/// applies to new connections immediately; idle pooled connections age out
/// after the pool's idle timeout, and a connection is retired (reads end,
/// writes fail) once the server certificate it verified has expired.
/// A resumed session whose server no longer verifies is retried once with a
/// full handshake, so a request sees exactly what a full handshake gives.
/// A server closing a pooled HTTP/2 connection (GOAWAY at its maximum age)
/// can make hyper fail a request without sending it (hyperium/hyper#2500):
/// [`crate::http::never_sent`] recognises those, which are safe to retry.
///
/// URIs: `https://` only, unless [`HttpsConnector::tls_for_http_uris`] is
/// set; every connection is TLS either way, the connector never sends a
/// byte in plaintext. tonic: `Endpoint::connect_with_connector` hands the
/// connector the endpoint's URI. Use `https://host:port` when no crate in
/// the build enables a tonic TLS feature (`tls-ring`, `tls-aws-lc`, ...);
/// with one enabled, tonic refuses `https://` endpoints it has no TLS
/// configuration for, so use `http://host:port` and
/// [`HttpsConnector::tls_for_http_uris`]. Both work in both set-ups.
#[derive(Clone)]
pub struct HttpsConnector {
    tls: ClientTls,
    overrides: Arc<HashMap<String, SocketAddr>>,
    connect_timeout: Duration,
    tls_for_http: bool,
}

impl std::fmt::Debug for HttpsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsConnector")
            .field("overrides", &self.overrides)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_for_http", &self.tls_for_http)
            .field("handshake_timeout", &self.tls.handshake_timeout())
            .finish()
    }
}

impl HttpsConnector {
    /// A connector using `tls`. If it offers no ALPN protocols, `h2` and
    /// `http/1.1` are added.
    pub fn new(tls: ClientTls) -> Self {
        let tls = if tls.config().alpn_protocols.is_empty() {
            tls.with_alpn(&[b"h2", b"http/1.1"])
        } else {
            tls
        };
        HttpsConnector {
            tls,
            overrides: Arc::default(),
            connect_timeout: Duration::from_secs(10),
            tls_for_http: false,
        }
    }

    /// Accepts `http://` URIs too, and connects to them **with TLS** through
    /// podtls exactly like `https://` ones (the port defaults to 80 when the
    /// URI names none). For clients that insist on `http://` while the TLS
    /// is the connector's, such as tonic when a tonic TLS feature is enabled
    /// somewhere in the build. There is no plaintext mode.
    pub fn tls_for_http_uris(mut self) -> Self {
        self.tls_for_http = true;
        self
    }

    /// Connects to `addr` whenever a URI names `host:port`, while still
    /// verifying the certificate for `host` (like curl's `--resolve`).
    pub fn resolve(mut self, host: &str, port: u16, addr: SocketAddr) -> Self {
        Arc::make_mut(&mut self.overrides).insert(format!("{host}:{port}"), addr);
        self
    }

    /// TCP connect deadline (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// TLS handshake deadline (default: the [`ClientTls`]'s, 10 s unless
    /// configured otherwise).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.tls = self.tls.with_handshake_timeout(timeout);
        self
    }

    async fn dial(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let tcp = tokio::time::timeout(self.connect_timeout, async {
            match self.overrides.get(&format!("{host}:{port}")) {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect((host, port)).await,
            }
        })
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {host}:{port} timed out"),
            )
        })??;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    async fn connect(self, uri: Uri) -> io::Result<TlsConnection> {
        let host = uri
            .host()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let default_port = match uri.scheme_str() {
            Some("https") => 443,
            Some("http") if self.tls_for_http => 80,
            Some("http") => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{uri}: only https:// URIs are supported (to dial http:// URIs with TLS, \
                         as tonic needs when a tonic TLS feature is enabled, use \
                         HttpsConnector::tls_for_http_uris)"
                    ),
                ))
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{uri}: only https:// URIs are supported"),
                ))
            }
        };
        let port = uri.port_u16().unwrap_or(default_port);
        let name = ServerName::try_from(host.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let tcp = self.dial(&host, port).await?;
        let stream = match self.tls.connect(name.clone(), tcp).await {
            // The cached session was dropped with the refusal: a new
            // connection does the full handshake.
            Err(HandshakeError::ResumedPeerRejected(e)) => {
                tracing::debug!(%host, error = %e, "podtls: resumed session refused; retrying with a full handshake");
                let tcp = self.dial(&host, port).await?;
                self.tls.connect(name, tcp).await?
            }
            other => other?,
        };
        let conn = stream.get_ref().1;
        let h2 = conn.alpn_protocol() == Some(b"h2");
        let certificate = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|leaf| crate::certificate::CertInfo::from_der(leaf).ok());
        let expires = certificate.as_ref().map(|c| expiry_instant(c.not_after));
        let info = ServerInfo {
            certificate,
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        };
        Ok(TlsConnection {
            io: TokioIo::new(stream),
            h2,
            info,
            // No certificate cannot happen after a verified handshake; retire at once then.
            expiry: Box::pin(tokio::time::sleep_until(
                expires.unwrap_or_else(tokio::time::Instant::now),
            )),
            expired: false,
        })
    }
}

/// The tokio instant at which `not_after` (wall clock) is passed.
fn expiry_instant(not_after: std::time::SystemTime) -> tokio::time::Instant {
    let left = not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    // A validity bound is inclusive to the second: retire just past it.
    tokio::time::Instant::now() + left + Duration::from_secs(1)
}

impl tower_service::Service<Uri> for HttpsConnector {
    type Response = TlsConnection;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsConnection>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// What a client learned about the server of a connection; available in the
/// extensions of every response received over it
/// (`resp.extensions().get::<ServerInfo>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's leaf certificate, as presented at this connection's handshake.
    pub certificate: Option<crate::certificate::CertInfo>,
    /// The ALPN protocol negotiated, if any.
    pub alpn: Option<String>,
    /// Whether the TLS session was resumed (no certificate was presented then;
    /// `certificate` is the one from the original handshake).
    pub resumed: bool,
}

/// A client TLS connection made by [`HttpsConnector`]. Once the server
/// certificate it verified expires, reads end and writes fail, so hyper
/// drops it from its pool instead of reusing it.
#[derive(Debug)]
pub struct TlsConnection {
    io: TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    h2: bool,
    info: ServerInfo,
    expiry: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl TlsConnection {
    /// The rustls connection (negotiated protocol, peer certificates, ...).
    pub fn tls(&self) -> &rustls::ClientConnection {
        self.io.inner().get_ref().1
    }

    /// Whether the server certificate has expired (polls the timer, so the
    /// task is woken when it does).
    fn is_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.expired && self.expiry.as_mut().poll(cx).is_ready() {
            self.expired = true;
            tracing::debug!(
                serial = self.info.certificate.as_ref().map(|c| c.serial.as_str()),
                "podtls: server certificate expired; retiring the connection"
            );
        }
        self.expired
    }
}

fn expired_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server certificate of this connection has expired",
    )
}

impl Connection for TlsConnection {
    fn connected(&self) -> Connected {
        let c = Connected::new().extra(self.info.clone());
        if self.h2 {
            c.negotiated_h2()
        } else {
            c
        }
    }
}

impl hyper::rt::Read for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_expired(cx) {
            // End of stream: the connection closes and leaves the pool.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.is_expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
