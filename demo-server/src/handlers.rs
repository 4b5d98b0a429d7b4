//! The HTTPS endpoints.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use podtls::PeerAuth;

/// What a request resolved to, before it becomes a response.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Body text.
    pub body: String,
    /// Route label for metrics.
    pub route: &'static str,
    /// Serial of the verified client certificate, sent back in the
    /// `x-client-certificate-serial` header (lets clients see their own
    /// rotations take effect).
    pub client_serial: Option<String>,
    /// Trust domain of the verified client, sent back in the
    /// `x-client-trust-domain` header (the body stays
    /// `Client Identity: <id>`, which names it too).
    pub client_trust_domain: Option<String>,
}

/// The response header carrying the verified client certificate's serial.
pub const CLIENT_SERIAL_HEADER: &str = "x-client-certificate-serial";

/// The response header carrying the verified client's SPIFFE trust domain.
pub const CLIENT_TRUST_DOMAIN_HEADER: &str = "x-client-trust-domain";

/// Routes a request. `spiffe_enabled` says whether the server asks clients
/// for SPIFFE certificates at all.
pub fn route<B>(req: &Request<B>, spiffe_enabled: bool) -> Reply {
    let path = req.uri().path();
    let route = match path {
        "/healthz" => "/healthz",
        "/spiffe-echo" => "/spiffe-echo",
        _ => "other",
    };
    let reply = |status, body: &str| Reply {
        status,
        body: body.to_string(),
        route,
        client_serial: None,
        client_trust_domain: None,
    };
    if route == "other" {
        return reply(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported\n");
    }
    if route == "/healthz" {
        return reply(StatusCode::OK, "OK");
    }
    if !spiffe_enabled {
        return reply(
            StatusCode::UNAUTHORIZED,
            "SPIFFE client certificate authentication required: this server does not accept SPIFFE client certificates\n",
        );
    }
    match podtls::http::peer_auth(req) {
        PeerAuth::Verified(id) => match id.spiffe_id() {
            Some(spiffe_id) => Reply {
                client_serial: Some(id.certificate.serial.clone()),
                client_trust_domain: Some(spiffe_id.trust_domain().to_string()),
                ..reply(StatusCode::OK, &format!("Client Identity: {spiffe_id}"))
            },
            None => reply(StatusCode::UNAUTHORIZED, "Malformed SPIFFE certificate\n"),
        },
        PeerAuth::Anonymous => reply(
            StatusCode::UNAUTHORIZED,
            "SPIFFE client certificate authentication required: no client certificate presented\n",
        ),
        PeerAuth::Rejected(why) => reply(
            StatusCode::UNAUTHORIZED,
            &format!("SPIFFE client certificate authentication required: {why}\n"),
        ),
    }
}

/// Turns a reply into a response.
pub fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let serial = reply
        .client_serial
        .and_then(|s| http::HeaderValue::from_str(&s).ok());
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    if let Some(serial) = serial {
        resp.headers_mut().insert(CLIENT_SERIAL_HEADER, serial);
    }
    if let Some(td) = reply
        .client_trust_domain
        .and_then(|s| http::HeaderValue::from_str(&s).ok())
    {
        resp.headers_mut().insert(CLIENT_TRUST_DOMAIN_HEADER, td);
    }
    *resp.status_mut() = reply.status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str, peer: Option<PeerAuth>) -> Request<()> {
        let mut r = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        if let Some(p) = peer {
            r.extensions_mut().insert(p);
        }
        r
    }

    #[test]
    fn healthz_is_ok() {
        let r = route(&req(Method::GET, "/healthz", None), false);
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "OK"));
    }

    #[test]
    fn spiffe_echo_explains_every_refusal() {
        let r = route(&req(Method::GET, "/spiffe-echo", None), true);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("no client certificate"), "{}", r.body);
        let r = route(&req(Method::GET, "/spiffe-echo", None), false);
        assert!(r.body.contains("does not accept SPIFFE"), "{}", r.body);
        let rejected = PeerAuth::Rejected(std::sync::Arc::new(
            podtls::VerifyError::UnknownTrustDomain {
                trust_domain: "evil.org".into(),
            },
        ));
        let r = route(&req(Method::GET, "/spiffe-echo", Some(rejected)), true);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("evil.org"), "{}", r.body);
    }

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        assert_eq!(
            route(&req(Method::GET, "/nope", None), true).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&req(Method::POST, "/healthz", None), true).status,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
