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
    /// The cluster that issued the verified client certificate, sent back in the
    /// `x-client-issuing-cluster` header.
    pub client_issuer: Option<String>,
}

/// The response header carrying the verified client certificate's serial.
pub const CLIENT_SERIAL_HEADER: &str = "x-client-certificate-serial";

/// The response header carrying the verified client's SPIFFE trust domain.
pub const CLIENT_TRUST_DOMAIN_HEADER: &str = "x-client-trust-domain";
/// The response header carrying the issuing cluster named by the verified client
/// certificate (its ServiceAccount issuer URL), when it names one.
pub const CLIENT_ISSUER_HEADER: &str = "x-client-issuing-cluster";

/// The second line of a `/spiffe-echo` reply for a client whose verified certificate
/// carries a PodIdentity extension (the first line stays `Client Identity: <id>`).
pub fn pod_identity_line(id: &podtls::PeerIdentity) -> Option<String> {
    let p = id.pod_identity()?;
    let issuer = id
        .issuing_cluster()
        .map_or_else(|| "none".to_string(), |c| c.to_string());
    Some(format!(
        "Pod Identity: namespace={} serviceAccount={} serviceAccountUID={} pod={} podUID={} node={} nodeUID={} issuingCluster={issuer}",
        p.namespace,
        p.service_account_name,
        p.service_account_uid,
        p.pod_name,
        p.pod_uid,
        p.node_name,
        p.node_uid
    ))
}

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
        client_issuer: None,
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
            Some(spiffe_id) => {
                let mut body = format!("Client Identity: {spiffe_id}");
                if let Some(line) = pod_identity_line(&id) {
                    body.push('\n');
                    body.push_str(&line);
                }
                Reply {
                    client_serial: Some(id.certificate.serial.clone()),
                    client_issuer: id.issuing_cluster().map(|c| c.to_string()),
                    client_trust_domain: Some(spiffe_id.trust_domain().to_string()),
                    ..reply(StatusCode::OK, &body)
                }
            }
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
    let issuer = reply
        .client_issuer
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
    if let Some(issuer) = issuer {
        resp.headers_mut().insert(CLIENT_ISSUER_HEADER, issuer);
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

    /// A client verified by podtls with a pod-identity certificate (and one without).
    fn verified(with_pod: bool) -> PeerAuth {
        use podtls::test_util::{CertAuthority, LeafSpec};
        let ca = CertAuthority::new("ca");
        let mut spec = LeafSpec::spiffe("spiffe://cluster.local/ns/shop/sa/web");
        if with_pod {
            let pod = podtls::PodIdentity {
                namespace: "shop".into(),
                service_account_name: "web".into(),
                service_account_uid: "sa-uid".into(),
                pod_name: "web-0".into(),
                pod_uid: "pod-uid".into(),
                node_name: "node-1".into(),
                node_uid: "node-uid".into(),
            };
            spec = spec
                .extension(
                    podtls::certificate::POD_IDENTITY_OID_ARCS,
                    pod.to_der().unwrap(),
                    false,
                )
                .extension(
                    podtls::certificate::SUBJECT_INFO_ACCESS_OID_ARCS,
                    podtls::IssuingCluster::new("https://k.example")
                        .unwrap()
                        .to_sia_der()
                        .unwrap(),
                    false,
                );
        }
        let leaf = ca.issue(&spec);
        let bundle =
            podtls::TrustBundle::from_pem(ca.cert_pem().as_bytes(), &podtls::Origin::memory("ca"))
                .unwrap();
        let bundles = podtls::SpiffeBundles::new([(
            podtls::parse_trust_domain("cluster.local").unwrap(),
            podtls::Store::fixed("b", bundle),
        )]);
        let id = podtls::verification::verify_spiffe_peer(
            &leaf.chain_der[0],
            &leaf.chain_der[1..],
            &bundles,
            &podtls::Authorizer::any(),
            podtls::verification::PeerRole::Client,
            podtls::rustls::pki_types::UnixTime::now(),
        )
        .unwrap();
        PeerAuth::Verified(std::sync::Arc::new(id))
    }

    #[test]
    fn spiffe_echo_adds_a_pod_identity_line_and_the_issuer_header() {
        let r = route(
            &req(Method::GET, "/spiffe-echo", Some(verified(true))),
            true,
        );
        assert_eq!(r.status, StatusCode::OK);
        let lines: Vec<&str> = r.body.lines().collect();
        assert_eq!(
            lines[0],
            "Client Identity: spiffe://cluster.local/ns/shop/sa/web"
        );
        assert_eq!(
            lines[1],
            "Pod Identity: namespace=shop serviceAccount=web serviceAccountUID=sa-uid pod=web-0 podUID=pod-uid node=node-1 nodeUID=node-uid issuingCluster=https://k.example"
        );
        assert_eq!(r.client_issuer.as_deref(), Some("https://k.example"));
        let resp = respond(r);
        assert_eq!(resp.headers()[CLIENT_ISSUER_HEADER], "https://k.example");

        // Without the extensions: the one line, as before, and no header.
        let r = route(
            &req(Method::GET, "/spiffe-echo", Some(verified(false))),
            true,
        );
        assert_eq!(
            r.body,
            "Client Identity: spiffe://cluster.local/ns/shop/sa/web"
        );
        assert!(respond(r).headers().get(CLIENT_ISSUER_HEADER).is_none());
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
