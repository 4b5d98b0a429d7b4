//! rustls certificate verifiers over live trust bundles: thin adapters over
//! [`crate::verification`].
//!
//! Each handshake loads the current bundle (an atomic `Arc` load); a bundle
//! that has not loaded yet fails the handshake (closed).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::authorizer::Authorizer;
use crate::peer_verification::{check_dns_server, verify_spiffe_peer, PeerRole, VerifyError};
use crate::server_tls::ClientCertMode;
use crate::spiffe_bundles::SpiffeBundles;
use crate::store::Store;
use crate::trust_bundle::TrustBundle;

/// The handshake-signature methods every verifier here shares: rustls'
/// WebPKI checks with the aws-lc-rs algorithms in `self.algorithms`.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    crate::provider().signature_verification_algorithms
}

/// A rejection as rustls reports it: the certificate error selects the TLS
/// alert the peer receives; the typed reason goes to podtls' handshake path
/// (or the log).
fn to_rustls(e: VerifyError) -> rustls::Error {
    crate::handshake::record_rejection(&e);
    rustls::Error::InvalidCertificate(e.certificate_error())
}

/// Verifies client X509-SVIDs against the bundle of the client's own trust
/// domain, then applies an [`Authorizer`].
///
/// Checks (required mode): see [`crate::verification::verify_spiffe_peer`]. The client's proof of
/// possession (the TLS CertificateVerify signature) is always checked by
/// rustls through `verify_tls1x_signature`, in both modes. Root hints are not
/// sent: SPIFFE clients have a single identity to offer.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    bundles: SpiffeBundles,
    authorizer: Authorizer,
    mode: ClientCertMode,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeClientVerifier {
    /// A verifier over `bundles` applying `authorizer`.
    pub fn new(bundles: SpiffeBundles, authorizer: Authorizer, mode: ClientCertMode) -> Self {
        SpiffeClientVerifier {
            bundles,
            authorizer,
            mode,
            algorithms: algorithms(),
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mode == ClientCertMode::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.mode {
            ClientCertMode::Required => verify_spiffe_peer(
                end_entity,
                intermediates,
                &self.bundles,
                &self.authorizer,
                PeerRole::Client,
                now,
            )
            .map(|_| ClientCertVerified::assertion())
            .map_err(to_rustls),
            // Deferred: see `ClientCertMode::Optional`.
            ClientCertMode::Optional => Ok(ClientCertVerified::assertion()),
        }
    }

    handshake_signatures!();
}

/// Verifies a server's X509-SVID (full SPIFFE): chain against the bundle of
/// the server's trust domain, then the [`Authorizer`]. The TLS server name is
/// deliberately ignored: the SPIFFE ID is the server's identity.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    bundles: SpiffeBundles,
    authorizer: Authorizer,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// A verifier over `bundles` applying `authorizer`.
    pub fn new(bundles: SpiffeBundles, authorizer: Authorizer) -> Self {
        SpiffeServerVerifier {
            bundles,
            authorizer,
            algorithms: algorithms(),
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verify_spiffe_peer(
            end_entity,
            intermediates,
            &self.bundles,
            &self.authorizer,
            PeerRole::Server,
            now,
        )
        .map(|_| ServerCertVerified::assertion())
        .map_err(to_rustls)
    }

    handshake_signatures!();
}

/// Ordinary WebPKI server verification (DNS name, chain, validity, plus the
/// anchor rules of [`TrustBundle::check_path`]) against a reloadable set of
/// roots, through [`crate::verification::verify_dns_server`]. OCSP staples are
/// ignored (pod certificates publish no revocation).
#[derive(Debug)]
pub struct DnsServerVerifier {
    roots: Store<TrustBundle>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl DnsServerVerifier {
    /// A verifier over the live `roots`.
    pub fn new(roots: Store<TrustBundle>) -> Self {
        DnsServerVerifier {
            roots,
            algorithms: algorithms(),
        }
    }
}

impl ServerCertVerifier for DnsServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(bundle) = self.roots.current() else {
            return Err(to_rustls(VerifyError::RootsNotLoaded {
                what: self.roots.status().name.to_string(),
            }));
        };
        check_dns_server(end_entity, intermediates, server_name, &bundle, now)
            .map(|()| ServerCertVerified::assertion())
            .map_err(to_rustls)
    }

    handshake_signatures!();
}
