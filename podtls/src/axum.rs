//! axum glue (feature `axum`): an extractor for the verified client.
//!
//! Serve the `Router` with [`crate::http::serve_service`]; every request
//! then carries two extensions, which plain axum extracts too:
//! `Extension<PeerAuth>` (the whole verdict: verified, anonymous, or
//! rejected with its reason) and `Extension<RemoteAddr>` (the client's
//! address). [`VerifiedPeer`] is the extractor for handlers that need an
//! authenticated client.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use podtls::axum::VerifiedPeer;
//!
//! async fn whoami(peer: VerifiedPeer) -> String {
//!     format!("hello {}", peer.spiffe_id().map(|id| id.to_string()).unwrap_or_default())
//! }
//! # async fn run(tls: podtls::ServerTls) {
//! let app = Router::new().route("/whoami", get(whoami));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await.unwrap();
//! podtls::http::serve_service(listener, tls, Default::default(), std::future::pending(), app).await;
//! # }
//! ```

use std::ops::Deref;
use std::sync::Arc;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

/// The axum-core whose extractor and response traits this module implements,
/// re-exported on purpose.
pub use axum_core;

use crate::peer_verification::{PeerAuth, PeerIdentity};

/// The verified client of a request served by podtls: the whole
/// [`PeerIdentity`] (SPIFFE ID, certificate, and whatever else podtls learns
/// to verify), by `Deref`.
///
/// As an extractor it answers **401 Unauthorized** when the client
/// presented no certificate, or presented one that was rejected (optional
/// client auth), with the reason as the body; and **500** when the request
/// did not come through podtls' server (a wiring mistake, never treated as
/// anonymous). `Option<VerifiedPeer>` is `None` for an anonymous client and
/// still 401 for a rejected one.
#[derive(Debug, Clone)]
pub struct VerifiedPeer(pub Arc<PeerIdentity>);

impl Deref for VerifiedPeer {
    type Target = PeerIdentity;

    fn deref(&self) -> &PeerIdentity {
        &self.0
    }
}

/// Why [`VerifiedPeer`] could not be extracted; its response is 401 (or 500
/// for [`PeerRejection::NotServedByPodtls`]) with the reason as a plain-text
/// body.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PeerRejection {
    /// The client presented no certificate.
    Anonymous,
    /// The client's certificate was rejected; the reason.
    Rejected(Arc<crate::peer_verification::VerifyError>),
    /// The request carries no [`PeerAuth`]: it was not served by
    /// [`crate::http::serve_service`] / [`crate::http::serve_http`].
    NotServedByPodtls,
}

impl std::fmt::Display for PeerRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerRejection::Anonymous => f.write_str("client certificate required"),
            PeerRejection::Rejected(e) => write!(f, "client certificate rejected: {e}"),
            PeerRejection::NotServedByPodtls => {
                f.write_str("no TLS peer information: the request was not served through podtls")
            }
        }
    }
}

impl IntoResponse for PeerRejection {
    fn into_response(self) -> Response {
        let status = match self {
            PeerRejection::NotServedByPodtls => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        };
        (status, self.to_string()).into_response()
    }
}

fn classify(parts: &Parts) -> Result<Option<VerifiedPeer>, PeerRejection> {
    match parts.extensions.get::<PeerAuth>() {
        Some(PeerAuth::Verified(id)) => Ok(Some(VerifiedPeer(id.clone()))),
        Some(PeerAuth::Anonymous) => Ok(None),
        Some(PeerAuth::Rejected(e)) => Err(PeerRejection::Rejected(e.clone())),
        None => Err(PeerRejection::NotServedByPodtls),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedPeer {
    type Rejection = PeerRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, PeerRejection> {
        classify(parts)?.ok_or(PeerRejection::Anonymous)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedPeer {
    type Rejection = PeerRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, PeerRejection> {
        classify(parts)
    }
}
