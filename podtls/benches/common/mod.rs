//! In-memory TLS handshakes shared by the benchmarks (no sockets: the
//! measurement is the TLS work, resolvers and verifiers included).
#![allow(dead_code)]

use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

fn pump(from: &mut rustls::Connection, to: &mut rustls::Connection) -> Result<(), rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        to.process_new_packets()?;
    }
    Ok(())
}

/// Runs one full handshake; returns the serial (as DER bytes) of the leaf the
/// client saw.
pub fn handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    name: &'static str,
) -> Result<Vec<u8>, rustls::Error> {
    let mut c = rustls::Connection::Client(ClientConnection::new(
        client.clone(),
        name.try_into().unwrap(),
    )?);
    let mut s = rustls::Connection::Server(ServerConnection::new(server.clone())?);
    let mut rounds = 0;
    while c.is_handshaking() || s.is_handshaking() {
        pump(&mut c, &mut s)?;
        pump(&mut s, &mut c)?;
        rounds += 1;
        if rounds > 10 {
            return Err(rustls::Error::General("handshake did not finish".into()));
        }
    }
    // Let the client process any post-handshake messages (tickets).
    pump(&mut s, &mut c)?;
    Ok(c.peer_certificates()
        .and_then(|p| p.first())
        .map(|d| d.to_vec())
        .unwrap_or_default())
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}
