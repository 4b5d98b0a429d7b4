//! # podtls
//!
//! Rotating Kubernetes pod certificates for rustls, tokio and hyper.
//!
//! Kubernetes (1.35+) issues certificates to pods natively: kubelet generates
//! a key, a signer issues a chain through a PodCertificateRequest, and kubelet
//! projects key + chain (a `podCertificate` volume source) and CA bundles (a
//! `clusterTrustBundle` source) into the pod, refreshing them before they
//! expire. podtls turns those files into live TLS:
//!
//! - **Loading and validation** ([`Credentials`], [`TrustBundle`]): PEM parsed,
//!   key matched to the leaf, validity window checked, X509-SVID rules enforced
//!   when asked for.
//! - **Hot reload** ([`PodTls`], [`Store`]): one watcher per volume directory
//!   that understands kubelet's atomic writer, a periodic re-read as a safety
//!   net, content hashing, last good material kept on any error, fail closed
//!   before the first good load, status and a subscription per store.
//!   [`FileWatch`](reload::FileWatch) offers the same machinery for a file of the application's
//!   own kind (the signer reloads its CA pool with it).
//! - **SPIFFE** ([`Authorizer`], [`verification::verify_spiffe_peer`]): X509-SVID peers
//!   verified against the bundle of their own trust domain, then authorized.
//! - **Credential folders** ([`PodTlsBuilder::credential_folder`],
//!   [`PodTlsBuilder::credential_folder_from_env`] with
//!   [`SPIFFE_CREDENTIAL_FOLDER_ENV`]): the draft SPIFFE Filesystem Delivery
//!   standard's folder (`credential-bundle.private-key.x509.pem` and one
//!   `<trust-domain>.spiffe-trust-bundle.x509.pem` per trust domain, older
//!   names too). Trust domains are followed as their files come and go; a
//!   removed or emptied peer bundle **de-federates** its trust domain at once
//!   ([`VerifyError::DeFederated`], resumption included), a malformed one
//!   keeps the last good anchors; status per trust domain in
//!   [`PodTls::trust_domain_statuses`].
//! - **Any identity source** ([`IdentityPublisher`]; the SPIFFE Workload API
//!   with the `workload-api` feature: `WorkloadApiSource`): credentials and
//!   trust bundles published from memory get the checks files get, are
//!   refused by name when bad (the last good stays), and trust domains can
//!   be withdrawn (de-federated) as with a credential folder.
//! - **Pod identity** ([`PodIdentity`], [`IssuingCluster`]): what a verified leaf
//!   says about its pod (the PodIdentity extension of Kubernetes' Pod Certificates
//!   prototype) and the cluster that issued it, on [`PeerIdentity`] and usable by
//!   [`Authorizer`] rules; never read from a chain that did not verify.
//! - **rustls** ([`ServerTls`], [`ClientTls`]): resolvers and verifiers that
//!   read the live stores on every handshake (an atomic load, no lock), and
//!   a handshake path on both sides ([`ServerTls::accept`],
//!   [`ClientTls::connect`]) with a deadline, typed rejections, and session
//!   resumption that is never worth more than a full handshake now: one
//!   session cache per generation of the material, every resumed peer
//!   verified again. The plain rustls configurations handed out for other
//!   code do not resume.
//! - **tokio / hyper** ([`serve`], [`hyper`](crate::http)): an accept loop with
//!   per-connection handshakes, timeouts and graceful shutdown; the verified
//!   [`PeerAuth`] in every request's extensions; an HTTPS connector.
//!
//! ## Which type do I use
//!
//! Every row keeps podtls' handshake path (deadline, safe resumption,
//! rejections with their reason) and the live credentials and bundles;
//! "glue" is what a service adds besides building the [`ServerTls`] /
//! [`ClientTls`] from its [`PodTls`].
//!
//! | You have | Server | Client | Feature | Glue |
//! |---|---|---|---|---|
//! | a hyper handler `fn` | [`http::serve_http`] | [`http::HttpsConnector`] in hyper-util's `Client` | default | 1 call each |
//! | an axum `Router`, any tower `Service` | [`http::serve_service`]; the client via `podtls::axum::VerifiedPeer` (401 with the reason), `Extension<PeerAuth>`, `Extension<RemoteAddr>` | as above | `axum` for the extractor | 1 call + a handler parameter |
//! | tonic | [`http::serve_service`] on tonic's `Routes` (ALPN `h2`); the client via `podtls::tonic::verified_peer` | `Endpoint::connect_with_connector(HttpsConnector::new(tls).tls_for_http_uris())` (see [`http::HttpsConnector`] for `http://` vs `https://`) | `tonic` for `verified_peer` | 1 call + 1 line per handler; 1 call |
//! | reqwest | — | `.tls_backend_preconfigured(tls.owned_config())` and `.pool_idle_timeout(..)` ([`ClientTls::owned_config`]) | none | 2 builder calls |
//! | plain TCP | [`serve`] ([`Accepted::peer`]) or [`ServerTls::accept`] | [`connect_tcp`] / [`ClientTls::connect_with_identity`] | none | 1 call each |
//! | any other TLS stack | [`ServerTls::config`] | [`ClientTls::config`] / [`ClientTls::owned_config`] | none | resumption is off there |
//!
//! Every request served by [`http::serve_http`] / [`http::serve_service`]
//! carries two extensions: the verified [`PeerAuth`] and the client's
//! [`http::RemoteAddr`]. HTTP/2 clients built on hyper (hyper-util's
//! `Client`, tonic, reqwest) can fail a request that races a connection's
//! graceful close without sending it; [`http::never_sent`] recognises
//! those, which are safe to retry.
//!
//! **Adjusting rustls**: [`ServerTlsBuilder::tweak`] / [`ClientTlsBuilder::tweak`]
//! (ALPN, key log, fragment size, SNI, EMS: a view that cannot reach the
//! resolvers, verifiers or resumption), `protocol_versions`, and
//! `crypto_provider` (cipher suites, key exchange groups).
//!
//! **Crypto provider**: rustls' aws-lc-rs provider ([`provider()`]), for
//! handshakes and for loading keys (it supports every key type kubelet
//! generates, ECDSA P-521 included). For FIPS, build with rustls' `fips`
//! feature (aws-lc-rs' FIPS module) and pass
//! `rustls::crypto::default_fips_provider()` to both builders'
//! `crypto_provider`; `config().fips()` then reports whether the result is
//! FIPS-approved. podtls does not claim FIPS validation of its own.
//!
//! ## Where things are
//!
//! The crate root holds what a service uses first: the sources
//! ([`PodTls`], [`Store`], [`Credentials`], [`TrustBundle`],
//! [`SpiffeBundles`]), the two sides ([`ServerTls`] with [`ClientAuth`],
//! [`ClientTls`] with [`ServerAuth`]), serving and connecting ([`serve`],
//! [`connect_tcp`], [`http`]), who the peer is ([`PeerAuth`],
//! [`PeerIdentity`], [`SpiffeId`], [`PodIdentity`], [`IssuingCluster`]),
//! the policy ([`Authorizer`]) and the three errors ([`Error`],
//! [`VerifyError`], [`HandshakeError`]). The rest is grouped:
//!
//! | Module | What is in it |
//! |---|---|
//! | [`rustls_adapters`] | the rustls trait implementations (certificate resolver, verifiers) and the `tweak` views, for rustls configurations of your own |
//! | [`verification`] | verifying and authorizing a peer yourself: pure functions with an explicit `now` |
//! | [`reload`] | what a [`Store`] reports (`Status`, `Health`, `Summary`), its timing, `FileWatch` for your own files |
//! | [`certificate`] | a leaf's summary (`CertInfo`), the PodIdentity / issuing-cluster extension encodings, `KeyType` |
//! | [`credential_folder`] | the SPIFFE credential folder's file names |
//! | [`error`] | the three error enums and what their variants carry |
//! | [`http`], `axum`, `tonic` | hyper, axum and tonic integration (features `hyper` (default), `axum`, `tonic`) |
//!
//! It does **not** talk to the Kubernetes API, generate keys or request
//! certificates: kubelet does that. It does not check revocation (pod
//! certificates are short-lived instead).
//!
//! ## Quick start
//! ```no_run
//! use std::time::Duration;
//! use podtls::{Authorizer, ClientAuth, PodTls, ServerTls, parse_trust_domain};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let td = parse_trust_domain("cluster.local")?;
//! let pod = PodTls::builder()
//!     .credential_bundle("/var/run/podtls/creds/credentialbundle.pem")
//!     .require_spiffe_svid()
//!     .spiffe_bundle(td.clone(), "/var/run/podtls/trust/spiffe.pem")
//!     .start()?;
//! pod.ready(Duration::from_secs(30)).await?;
//!
//! let server = ServerTls::builder(pod.credentials().unwrap().clone())
//!     .client_auth(ClientAuth::required(
//!         pod.spiffe_bundles().clone(),
//!         Authorizer::member_of([td]),
//!     ))
//!     .alpn(&[b"h2", b"http/1.1"])
//!     .build()?;
//! // podtls' handshake path: a deadline, safe resumption, the client's
//! // verified identity. (`podtls::serve` / `http::serve_http` run it for you.)
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! let (tcp, _) = listener.accept().await?;
//! let (stream, peer) = server.accept(tcp).await?;
//! # let _ = (stream, peer); Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod authorizer;
mod cert_info;
mod client_tls;
mod conn_age;
pub mod credential_folder;
mod credentials;
pub mod error;
mod file_watch;
mod handshake;
mod issuing_cluster;
mod key_type;
mod peer_verification;
mod pem;
mod pod_identity;
mod pod_tls;
mod publisher;
pub mod rustls_adapters;
mod serve;
mod server_tls;
mod session;
mod spiffe_bundles;
mod spiffe_id;
mod store;
mod svid;
mod tcp;
mod trust_bundle;
mod watcher;

#[cfg(feature = "hyper")]
pub mod http;

#[cfg(feature = "workload-api")]
mod workload_api;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "tonic")]
pub mod tonic;

// Unit tests use the helpers too, with or without the feature (the published crate
// strips the self dev-dependency that turns it on here).
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

// What a service author reaches for first. Everything else is in the public
// modules (`rustls_adapters`, `verification`, `reload`, `certificate`,
// `credential_folder`, `error`, `http`, ...), grouped by what it is for.
pub use crate::authorizer::Authorizer;
pub use crate::client_tls::{ClientTls, ClientTlsBuilder, ServerAuth};
pub use crate::conn_age::{CloseReason, ConnectionDeadline};
pub use crate::credential_folder::SPIFFE_CREDENTIAL_FOLDER_ENV;
pub use crate::credentials::{provider, Credentials, LeafKind};
pub use crate::error::{Error, Origin};
pub use crate::handshake::{HandshakeError, DEFAULT_HANDSHAKE_TIMEOUT};
pub use crate::issuing_cluster::IssuingCluster;
pub use crate::peer_verification::{PeerAuth, PeerIdentity, VerifyError};
pub use crate::pod_identity::PodIdentity;
pub use crate::pod_tls::{PodTls, PodTlsBuilder};
pub use crate::publisher::IdentityPublisher;
pub use crate::serve::{serve, Accepted, ServeOptions, ServeStats};
pub use crate::server_tls::{ClientAuth, ClientCertMode, ServerTls, ServerTlsBuilder};
pub use crate::spiffe_bundles::SpiffeBundles;
pub use crate::spiffe_id::{parse_spiffe_id, parse_trust_domain, SpiffeId, TrustDomain};
pub use crate::store::Store;
pub use crate::tcp::connect_tcp;
pub use crate::trust_bundle::TrustBundle;
#[cfg(feature = "workload-api")]
pub use crate::workload_api::{WorkloadApiSource, SPIFFE_ENDPOINT_SOCKET_ENV};

/// Reloading and its status: what a [`Store`] holds and reports, its timing,
/// and [`FileWatch`](reload::FileWatch) for files of the application's own.
pub mod reload {
    pub use crate::file_watch::FileWatch;
    pub use crate::spiffe_bundles::TrustDomainStatus;
    pub use crate::store::{Health, Material, Status, Summary};
    pub use crate::watcher::ReloadTiming;
}

/// Verifying and authorizing a peer yourself, outside a handshake: the pure
/// functions the rustls adapters and podtls' handshake path call, with an
/// explicit `now`. No I/O.
pub mod verification {
    pub use crate::authorizer::PeerClaims;
    pub use crate::peer_verification::{verify_dns_server, verify_spiffe_peer, PeerRole};
    pub use crate::svid::validate_svid_leaf_der;
}

/// What podtls reads from certificates: the summary of a leaf, the key types
/// Kubernetes allows, and the encodings of the PodIdentity and issuing-cluster
/// extensions (shared with the signer that writes them).
pub mod certificate {
    pub use crate::cert_info::{format_time, CertInfo};
    pub use crate::issuing_cluster::{
        ISSUING_CLUSTER_ACCESS_METHOD, MAX_ISSUER_LEN, SUBJECT_INFO_ACCESS_OID,
        SUBJECT_INFO_ACCESS_OID_ARCS,
    };
    pub use crate::key_type::KeyType;
    pub use crate::pod_identity::{POD_IDENTITY_OID, POD_IDENTITY_OID_ARCS};
    pub use crate::spiffe_id::MAX_SPIFFE_ID_LEN;
}

// Dependencies whose types appear in podtls' signatures, re-exported on
// purpose (certificate and name types are `rustls::pki_types`).
pub use rustls;
pub use spiffe;
pub use tokio;
pub use tokio_rustls;

/// The README's Rust examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
