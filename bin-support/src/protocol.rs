//! The lines demo-server and demo-client print on stdout for scripts and
//! tests (logs go to stderr), written and parsed here only.
//!
//! - demo-server, once its listeners are bound:
//!   `LISTENING https=<addr> admin=<addr|off>` ([`Listening`]).
//! - demo-client, one line per request in periodic mode:
//!   `<time> <code> <alpn> server_serial=S client_serial=C [server_trust_domain=T ]<body>`,
//!   or `<time> FAILED client_serial=C <error>` ([`Fetch`]); `-` for an
//!   unknown serial or ALPN. `server_trust_domain=` comes after the serials
//!   so that readers of the older line still find their fields.

use std::fmt;
use std::net::SocketAddr;

/// demo-server's first stdout line: where it listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The HTTPS listener.
    pub https: SocketAddr,
    /// The admin listener (`None`: `admin=off`).
    pub admin: Option<SocketAddr>,
}

impl fmt::Display for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LISTENING https={} admin=", self.https)?;
        match self.admin {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("off"),
        }
    }
}

impl Listening {
    /// Parses a `LISTENING` line; `None` for any other line or a missing or
    /// malformed `https=` address (`admin=` other than an address is `None`).
    pub fn parse(line: &str) -> Option<Listening> {
        let mut fields = line.split_whitespace();
        if fields.next()? != "LISTENING" {
            return None;
        }
        let fields: Vec<&str> = fields.collect();
        let field = |k: &str| fields.iter().find_map(|f| f.strip_prefix(k));
        Some(Listening {
            https: field("https=")?.parse().ok()?,
            admin: field("admin=").and_then(|a| a.parse().ok()),
        })
    }
}

/// One line of demo-client's periodic output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// When the request finished (RFC 3339), as printed.
    pub time: String,
    /// HTTP status, or `None` for a failed request.
    pub status: Option<u16>,
    /// The negotiated ALPN protocol (`None`: none, or a failed request).
    pub alpn: Option<String>,
    /// The server certificate's serial.
    pub server_serial: Option<String>,
    /// The client certificate's serial as the server saw it.
    pub client_serial: Option<String>,
    /// The server's SPIFFE trust domain (full SPIFFE pairs).
    pub server_trust_domain: Option<String>,
    /// The response body, or the error of a failed request.
    pub body: String,
}

impl fmt::Display for Fetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let client = or_dash(&self.client_serial);
        match self.status {
            None => write!(
                f,
                "{} FAILED client_serial={client} {}",
                self.time, self.body
            ),
            Some(code) => {
                write!(
                    f,
                    "{} {code} {} server_serial={} client_serial={client} ",
                    self.time,
                    or_dash(&self.alpn),
                    or_dash(&self.server_serial),
                )?;
                if let Some(td) = &self.server_trust_domain {
                    write!(f, "server_trust_domain={td} ")?;
                }
                f.write_str(&self.body)
            }
        }
    }
}

impl Fetch {
    /// Parses a line as [`Fetch`]'s `Display` writes it; `None` if it is not one.
    pub fn parse(line: &str) -> Option<Fetch> {
        let value = |v: &str| (v != "-").then(|| v.to_string());
        let field = |s: &str, k: &str| s.strip_prefix(k).and_then(value);
        let mut it = line.splitn(3, ' ');
        let time = it.next()?.to_string();
        let status = it.next()?;
        let rest = it.next().unwrap_or_default();
        if status == "FAILED" {
            let (client, body) = rest.split_once(' ').unwrap_or((rest, ""));
            client.strip_prefix("client_serial=")?;
            return Some(Fetch {
                time,
                status: None,
                alpn: None,
                server_serial: None,
                client_serial: field(client, "client_serial="),
                server_trust_domain: None,
                body: body.to_string(),
            });
        }
        let code: u16 = status.parse().ok()?;
        let mut parts = rest.splitn(4, ' ');
        let alpn = value(parts.next()?);
        let server = parts.next()?;
        let client = parts.next()?;
        if !server.starts_with("server_serial=") || !client.starts_with("client_serial=") {
            return None;
        }
        let mut body = parts.next().unwrap_or_default();
        let mut server_trust_domain = None;
        if let Some(after) = body.strip_prefix("server_trust_domain=") {
            let (td, rest) = after.split_once(' ').unwrap_or((after, ""));
            server_trust_domain = Some(td.to_string());
            body = rest;
        }
        Some(Fetch {
            time,
            status: Some(code),
            alpn,
            server_serial: field(server, "server_serial="),
            client_serial: field(client, "client_serial="),
            server_trust_domain,
            body: body.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_round_trips_with_and_without_admin() {
        for admin in [Some("127.0.0.1:9090".parse().unwrap()), None] {
            let l = Listening {
                https: "[::1]:8443".parse().unwrap(),
                admin,
            };
            assert_eq!(Listening::parse(&l.to_string()), Some(l));
        }
        assert_eq!(
            Listening::parse("LISTENING https=127.0.0.1:1 admin=off")
                .unwrap()
                .to_string(),
            "LISTENING https=127.0.0.1:1 admin=off"
        );
    }

    #[test]
    fn listening_refuses_other_lines_and_bad_addresses() {
        assert_eq!(Listening::parse("https=127.0.0.1:1 admin=off"), None);
        assert_eq!(Listening::parse("LISTENING admin=off"), None);
        assert_eq!(Listening::parse("LISTENING https=nowhere admin=off"), None);
        assert_eq!(Listening::parse(""), None);
    }

    #[test]
    fn parses_demo_client_lines() {
        let ok = Fetch::parse("2026-01-01T00:00:00Z 200 h2 server_serial=ab client_serial=cd Client Identity: spiffe://x/y").unwrap();
        assert_eq!(ok.status, Some(200));
        assert_eq!(ok.alpn.as_deref(), Some("h2"));
        assert_eq!(ok.server_serial.as_deref(), Some("ab"));
        assert_eq!(ok.client_serial.as_deref(), Some("cd"));
        assert_eq!(ok.body, "Client Identity: spiffe://x/y");
        assert_eq!(ok.server_trust_domain, None);
        let spiffe = Fetch::parse(
            "t 200 h2 server_serial=ab client_serial=cd server_trust_domain=a.example Client Identity: spiffe://b.example/y",
        )
        .unwrap();
        assert_eq!(spiffe.server_trust_domain.as_deref(), Some("a.example"));
        assert_eq!(spiffe.body, "Client Identity: spiffe://b.example/y");
        let anon = Fetch::parse("t 200 - server_serial=ab client_serial=- OK").unwrap();
        assert_eq!((anon.client_serial, anon.alpn), (None, None));
        let failed = Fetch::parse("t FAILED client_serial=- connection refused").unwrap();
        assert_eq!(
            (failed.status, failed.body.as_str()),
            (None, "connection refused")
        );
    }

    #[test]
    fn fetch_refuses_lines_that_are_not_fetch_lines() {
        for line in [
            "garbage",
            "t 200 h2 OK",
            "t 200 h2 client_serial=cd server_serial=ab OK",
            "t 2000000 h2 server_serial=ab client_serial=cd OK",
            "t FAILED connection refused",
        ] {
            assert_eq!(Fetch::parse(line), None, "{line}");
        }
    }

    #[test]
    fn fetch_line_round_trips() {
        let lines = [
            "2026-01-01T00:00:00Z 200 h2 server_serial=ab client_serial=cd Client Identity: spiffe://x/y",
            "t 401 http/1.1 server_serial=ab client_serial=- server_trust_domain=a.example no client certificate",
            "t 200 - server_serial=- client_serial=- ",
            "t FAILED client_serial=cd connection refused",
        ];
        for line in lines {
            let parsed = Fetch::parse(line).unwrap();
            assert_eq!(parsed.to_string(), line);
            assert_eq!(Fetch::parse(&parsed.to_string()), Some(parsed));
        }
    }
}
