//! tonic glue (feature `tonic`; it pulls in tonic without its transport or
//! codegen): the verified client of a gRPC request.
//!
//! **Server**: tonic's `Routes` is a tower `Service`; serve it with
//! [`crate::http::serve_service`] (offer `h2` by ALPN), which keeps podtls'
//! accept loop, limits, deadlines and drain. Every request's extensions
//! carry the [`PeerAuth`] and [`crate::http::RemoteAddr`]; tonic hands them
//! to the handler in `tonic::Request::extensions()`.
//!
//! ```ignore
//! let routes = tonic::service::Routes::new(GreeterServer::new(MyGreeter));
//! podtls::http::serve_service(listener, server_tls, Default::default(), shutdown, routes).await;
//! // in a handler:
//! let peer = podtls::tonic::verified_peer(&request)?; // Status::unauthenticated otherwise
//! ```
//!
//! **Client**: a channel through [`crate::http::HttpsConnector`] (podtls'
//! handshake, resumption and rotation):
//!
//! ```ignore
//! let connector = HttpsConnector::new(client_tls).tls_for_http_uris();
//! let channel = Endpoint::from_static("http://greeter.ns.svc:8443")
//!     .connect_with_connector(connector).await?;
//! ```
//!
//! Which URI: `https://` works as long as no crate in the build enables a
//! tonic TLS feature; `http://` with [`crate::http::HttpsConnector::tls_for_http_uris`]
//! works always (and is still TLS: the connector never sends plaintext).

use std::sync::Arc;

use crate::peer_verification::{PeerAuth, PeerIdentity};

/// The tonic these helpers take requests and return statuses of, re-exported
/// on purpose.
pub use ::tonic;

/// The [`PeerAuth`] of a request served through podtls, if it was.
pub fn peer_auth<T>(request: &::tonic::Request<T>) -> Option<&PeerAuth> {
    request.extensions().get::<PeerAuth>()
}

/// The verified client of a request, or the `Status` to return:
/// `UNAUTHENTICATED` with the reason when the client presented no
/// certificate or a rejected one (optional client auth), `INTERNAL` when the
/// request did not come through podtls' server.
///
/// # Errors
/// The `Status` above.
pub fn verified_peer<T>(
    request: &::tonic::Request<T>,
) -> Result<Arc<PeerIdentity>, ::tonic::Status> {
    match peer_auth(request) {
        Some(PeerAuth::Verified(id)) => Ok(id.clone()),
        Some(PeerAuth::Anonymous) => Err(::tonic::Status::unauthenticated(
            "client certificate required",
        )),
        Some(PeerAuth::Rejected(e)) => Err(::tonic::Status::unauthenticated(format!(
            "client certificate rejected: {e}"
        ))),
        None => Err(::tonic::Status::internal(
            "no TLS peer information: the request was not served through podtls",
        )),
    }
}
