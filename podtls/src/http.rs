//! hyper integration: an HTTPS server loop that hands every request the
//! verified client identity, and an HTTPS connector for hyper-util's client.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::conn_age::ConnectionDeadline;
use crate::peer_verification::PeerAuth;
use crate::serve::{serve, Accepted, ServeOptions, ServeStats};
use crate::server_tls::ServerTls;

mod connector;
mod streams;
mod unsent;

pub use connector::{HttpsConnector, ServerInfo, TlsConnection};

// The crates whose types this module's signatures use (requests, responses,
// bodies, the connector's `Service` and `Connection`), re-exported on purpose:
// the exact versions podtls is built against.
pub use ::http;
pub use hyper;
pub use hyper_util;
use streams::{Streams, TrackedBody};
pub use tower_service;
pub use unsent::never_sent;

/// The client's address, inserted into every request's extensions next to
/// the [`PeerAuth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Options of [`serve_http`].
///
/// Every phase of a connection has a deadline, so a slow or silent peer
/// never holds one of the `serve.max_connections` slots past it:
///
/// | phase | deadline |
/// |---|---|
/// | TLS handshake | `serve.handshake_timeout` (10 s) |
/// | HTTP/1.1: first request head, each later head, idle keep-alive | `header_read_timeout` (10 s) |
/// | HTTP/2: client preface and first request | `header_read_timeout` (10 s) |
/// | HTTP/2: no open stream | `idle_timeout` (60 s), then GOAWAY |
/// | HTTP/2: unresponsive peer | ping after `idle_timeout / 2` without traffic, close if unanswered within `idle_timeout / 2` |
/// | any connection | `serve.max_connection_age` (1 h, jittered 10%) or the client certificate's expiry, then a graceful close |
/// | after any graceful close | `serve.drain_timeout` (30 s), then the connection is dropped |
///
/// An idle HTTP/2 close (nothing in flight) waits at most
/// `min(header_read_timeout, serve.drain_timeout)` for the peer after the
/// GOAWAY. Request and response *bodies* have no deadline of their own
/// (they are the application's; a slow body is bounded by the connection's
/// maximum age).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Accept-loop options (handshake timeout, connection limit, maximum
    /// connection age, drain).
    pub serve: ServeOptions,
    /// Deadline for reading a request's headers (default 10 s). HTTP/1.1:
    /// hyper starts it whenever the connection waits for a request head,
    /// including the first one, so it is also the idle timeout of
    /// keep-alive connections. HTTP/2: the deadline for the client preface
    /// and the first request.
    pub header_read_timeout: Duration,
    /// HTTP/2: a connection with no open stream for this long is closed
    /// gracefully (GOAWAY); a peer that sends nothing for half of it is
    /// pinged and the connection closed if the ping is not answered within
    /// the other half. Default 60 s.
    pub idle_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            serve: ServeOptions::default(),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves HTTP/1.1 and HTTP/2 over TLS until `shutdown` completes, then
/// stops accepting, lets in-flight requests finish and closes connections
/// gracefully.
///
/// The protocol is the one negotiated by ALPN (see
/// [`crate::ServerTlsBuilder::alpn`]): `h2` is HTTP/2, anything else
/// (including no ALPN) HTTP/1.1. There is no protocol sniffing, so no read
/// without a deadline (see [`HttpOptions`] for every deadline).
///
/// Connections close gracefully at their [`Accepted::deadline`] (maximum age
/// or client certificate expiry): HTTP/2 sends GOAWAY and finishes the
/// streams in flight; HTTP/1.1 answers the request in flight with
/// `Connection: close`, or closes at once if idle. A client request racing
/// such a close can fail on the client: hyper's HTTP/2 client (also
/// tonic's and reqwest's) fails it unsent ([`never_sent`] tells, retry it);
/// an HTTP/1.1 request written just as an idle connection closes fails
/// with an incomplete message (retry it if it is idempotent). A connection upgraded
/// with HTTP/1.1 `Upgrade` (e.g. WebSocket) is handed to the application
/// with the upgrade and is outside these deadlines from then on.
///
/// Every request carries the connection's [`PeerAuth`] and [`RemoteAddr`] in
/// its extensions.
///
/// The handler is a function; [`serve_service`] takes any tower `Service`
/// (an axum `Router`, tonic's `Routes`) instead.
pub async fn serve_http<F, Fut, B, E>(
    listener: TcpListener,
    tls: ServerTls,
    options: HttpOptions,
    shutdown: impl Future<Output = ()>,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_service(
        listener,
        tls,
        options,
        shutdown,
        FnService(Arc::new(handler)),
    )
    .await;
}

/// A handler function as a tower `Service` (always ready).
struct FnService<F>(Arc<F>);

impl<F> Clone for FnService<F> {
    fn clone(&self) -> Self {
        FnService(self.0.clone())
    }
}

impl<F, Fut, B, E> tower_service::Service<Request<Incoming>> for FnService<F>
where
    F: Fn(Request<Incoming>) -> Fut,
    Fut: Future<Output = Result<Response<B>, E>>,
{
    type Response = Response<B>;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), E>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Fut {
        (self.0)(req)
    }
}

/// [`serve_http`] for any tower `Service`: an axum `Router`, tonic's
/// `Routes`, a `tower::ServiceBuilder` stack. Same TLS, connection limit,
/// deadlines, drain and counters; every request carries the connection's
/// [`PeerAuth`] and [`RemoteAddr`] in its extensions (axum:
/// `Extension<PeerAuth>` or `podtls::axum::VerifiedPeer`; tonic:
/// `request.extensions()` or `podtls::tonic::verified_peer`).
///
/// Each request is served by a clone of `service`, called once it is ready
/// (as hyper-util's `TowerToHyperService` does). A gRPC server needs `h2`
/// among the ALPN protocols of `tls`.
///
/// ```no_run
/// # async fn run(tls: podtls::ServerTls, router: axum::Router) {
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await.unwrap();
/// podtls::http::serve_service(listener, tls, Default::default(), std::future::pending(), router).await;
/// # }
/// ```
pub async fn serve_service<S, B>(
    listener: TcpListener,
    tls: ServerTls,
    options: HttpOptions,
    shutdown: impl Future<Output = ()>,
    service: S,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The template each connection clones (a `Mutex` so `S` need not be `Sync`).
    let service = std::sync::Mutex::new(service);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(options.idle_timeout / 2))
        .keep_alive_timeout(options.idle_timeout / 2);
    let http1 = Arc::new(http1);
    let http2 = Arc::new(http2);
    let phases = Phases {
        first_request: options.header_read_timeout,
        idle: options.idle_timeout,
        idle_drain: options.header_read_timeout.min(options.serve.drain_timeout),
        stats: options.serve.stats.clone(),
    };
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    serve(
        listener,
        tls,
        options.serve,
        shutdown,
        move |accepted: Accepted| {
            let service = service.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let http1 = http1.clone();
            let http2 = http2.clone();
            let phases = phases.clone();
            let mut stop_rx = stop_rx.clone();
            async move {
                let Accepted {
                    stream,
                    peer,
                    remote,
                    deadline,
                } = accepted;
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let streams = Streams::default();
                let service = {
                    let streams = streams.clone();
                    hyper::service::service_fn(move |mut req: Request<Incoming>| {
                        let guard = streams.open();
                        req.extensions_mut().insert(peer.clone());
                        req.extensions_mut().insert(RemoteAddr(remote));
                        let mut service = service.clone();
                        async move {
                            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                            let response = service.call(req).await?;
                            Ok::<_, S::Error>(response.map(|body| TrackedBody::new(body, guard)))
                        }
                    })
                };
                let stop = async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                };
                let io = TokioIo::new(stream);
                let this = This {
                    phases: &phases,
                    remote,
                    h2,
                    deadline,
                };
                if h2 {
                    let conn = http2.serve_connection(io, service);
                    let idle = streams.idle(phases.first_request, phases.idle);
                    drive(
                        conn,
                        hyper::server::conn::http2::Connection::graceful_shutdown,
                        idle,
                        stop,
                        this,
                    )
                    .await;
                } else {
                    let conn = http1.serve_connection(io, service).with_upgrades();
                    drive(
                        conn,
                        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown,
                        std::future::pending(),
                        stop,
                        this,
                    )
                    .await;
                }
            }
        },
    )
    .await;
}

/// The per-connection deadlines [`drive`] enforces itself (the TLS
/// handshake, HTTP/1.1 header and connection deadlines are enforced by
/// [`serve`] and hyper).
#[derive(Clone)]
struct Phases {
    first_request: Duration,
    idle: Duration,
    idle_drain: Duration,
    stats: Arc<ServeStats>,
}

/// The connection [`drive`] runs.
struct This<'a> {
    phases: &'a Phases,
    remote: SocketAddr,
    h2: bool,
    deadline: ConnectionDeadline,
}

/// Runs one hyper connection until it ends, or closes it gracefully at the
/// first of: its deadline, shutdown, `idle` (HTTP/2). After a graceful
/// close the connection is bounded by a drain deadline: [`serve`] enforces
/// it for the deadline and shutdown; an idle close enforces its own.
async fn drive<C>(
    conn: C,
    graceful_shutdown: fn(Pin<&mut C>),
    idle: impl Future<Output = ()>,
    stop: impl Future<Output = ()>,
    this: This<'_>,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let This {
        phases,
        remote,
        h2,
        deadline,
    } = this;
    tokio::pin!(conn);
    let idle_close = tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                if !h2 && e.is_timeout() {
                    phases.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "podtls: HTTP/1.1 request head timed out; closed");
                } else {
                    tracing::debug!(%remote, error = %e, "podtls: HTTP connection ended with an error");
                }
            }
            return;
        }
        _ = deadline.reached() => false,
        _ = stop => false,
        _ = idle => true,
    };
    graceful_shutdown(conn.as_mut());
    if !idle_close {
        let _ = conn.await;
        return;
    }
    phases.stats.closed_idle.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%remote, "podtls: HTTP/2 connection idle; closing");
    if tokio::time::timeout(phases.idle_drain, conn).await.is_err() {
        phases.stats.drain_aborted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%remote, "podtls: idle HTTP/2 connection did not close in time; aborted");
    }
}

/// The [`PeerAuth`] of a request served by [`serve_http`]
/// (`Anonymous` if the request did not come through it).
pub fn peer_auth<B>(req: &Request<B>) -> PeerAuth {
    req.extensions()
        .get::<PeerAuth>()
        .cloned()
        .unwrap_or(PeerAuth::Anonymous)
}
