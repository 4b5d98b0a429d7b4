//! Plain TCP: a client connection that comes with the verified identity of
//! its server (go-spiffe's `spiffetls.Dial` + `PeerIDFromConn`). The server
//! side is [`crate::ServerTls::accept`], which returns the client's
//! [`crate::PeerAuth`] with the stream.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_rustls::client::TlsStream;

use crate::client_tls::{ClientTls, ServerAuth};
use crate::handshake::HandshakeError;
use crate::peer_verification::{
    verify_dns_server, verify_spiffe_peer, PeerIdentity, PeerRole, VerifyError,
};

impl ServerAuth {
    /// The identity of a server chain, verified as a full handshake would
    /// verify it at `now`.
    fn identify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<PeerIdentity, VerifyError> {
        match self {
            ServerAuth::Dns(roots) => {
                let bundle = roots.current().ok_or_else(|| VerifyError::RootsNotLoaded {
                    what: roots.status().name.to_string(),
                })?;
                verify_dns_server(end_entity, intermediates, server_name, &bundle, now)
            }
            ServerAuth::Spiffe(bundles, authorizer) => verify_spiffe_peer(
                end_entity,
                intermediates,
                bundles,
                authorizer,
                PeerRole::Server,
                now,
            ),
        }
    }
}

impl ClientTls {
    /// [`ClientTls::connect`], returning the server's verified identity with
    /// the stream: its SPIFFE ID ([`PeerIdentity::spiffe_id`]) with SPIFFE
    /// server auth, its certificate either way.
    ///
    /// The identity is what the chain the server presented verifies to now
    /// (for a resumed session: the chain of the session's original
    /// handshake, verified again). Should the bundles or the policy have
    /// changed between the handshake and this check so that the chain no
    /// longer verifies, the connection is dropped and
    /// [`HandshakeError::Rejected`] returned: never a stream without a
    /// verified identity.
    ///
    /// # Errors
    /// As [`ClientTls::connect`].
    pub async fn connect_with_identity<IO>(
        &self,
        server_name: ServerName<'static>,
        io: IO,
    ) -> Result<(TlsStream<IO>, PeerIdentity), HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = self.connect(server_name.clone(), io).await?;
        let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
        let identity = match chain.split_first() {
            Some((leaf, intermediates)) => {
                self.server_auth()
                    .identify(leaf, intermediates, &server_name, UnixTime::now())
            }
            None => Err(VerifyError::NoCertificate),
        }
        .map_err(|e| HandshakeError::Rejected(Arc::new(e)))?;
        Ok((stream, identity))
    }
}

/// Dials `addr` over TCP and connects with `tls`
/// ([`ClientTls::connect_with_identity`]): the TLS stream and the verified
/// identity of the server. `server_name` is the name sent by SNI and, with
/// DNS server auth, the name verified.
///
/// ```no_run
/// # async fn run(tls: podtls::ClientTls) -> Result<(), Box<dyn std::error::Error>> {
/// let (stream, server) = podtls::connect_tcp(&tls, "10.0.0.7:8443", "backend.svc").await?;
/// println!("connected to {:?}", server.spiffe_id());
/// # drop(stream); Ok(()) }
/// ```
///
/// # Errors
/// [`HandshakeError::Tls`] for a bad `server_name` or a failed TCP connect
/// (no deadline of its own: wrap it in `tokio::time::timeout` if the address
/// may be unreachable); otherwise as [`ClientTls::connect`].
pub async fn connect_tcp(
    tls: &ClientTls,
    addr: impl ToSocketAddrs,
    server_name: &str,
) -> Result<(TlsStream<TcpStream>, PeerIdentity), HandshakeError> {
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
        HandshakeError::Tls(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{server_name:?} is not a valid server name: {e}"),
        ))
    })?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(HandshakeError::Tls)?;
    let _ = tcp.set_nodelay(true);
    tls.connect_with_identity(name, tcp).await
}
