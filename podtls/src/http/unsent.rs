//! Telling a request that failed *without being sent* from one that failed
//! after the server may have acted on it.
//!
//! A server closing a connection gracefully (podtls at a connection's
//! maximum age, a rolling restart) sends HTTP/2 GOAWAY. hyper's HTTP/2
//! client, and with it tonic's channel and hyper-util's pooled client, can
//! still route a request to that connection and then fail it instead of
//! sending it on a new one (hyperium/hyper#2500). Such a request never
//! reached the server, so it is safe to send again, idempotent or not.

use std::error::Error as StdError;

/// Whether `error` (or any error in its `source` chain) says the request
/// was never processed by the server because its connection was closing:
///
/// - an HTTP/2 stream refused by the server's GOAWAY with `NO_ERROR` (its ID
///   is above the GOAWAY's last stream ID: not processed, RFC 9113 §6.8);
/// - a request hyper cancelled before sending it (`hyper::Error::is_canceled`:
///   "dropped before ever being processed").
///
/// Works on hyper-util's client errors, hyper's, tonic's `Status` and
/// `transport::Error`, and `reqwest::Error` (all keep hyper's error in their
/// `source` chain). Retry such a request once, on the same client: the
/// closing connection has left the pool by then.
///
/// ```no_run
/// # async fn run(client: hyper_util::client::legacy::Client<podtls::http::HttpsConnector, http_body_util::Empty<bytes::Bytes>>) {
/// let uri: http::Uri = "https://backend.ns.svc/".parse().unwrap();
/// let mut response = client.get(uri.clone()).await;
/// if response.as_ref().is_err_and(|e| podtls::http::never_sent(e)) {
///     response = client.get(uri).await;
/// }
/// # }
/// ```
pub fn never_sent(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_canceled() {
                return true;
            }
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(Box<dyn StdError + Send + Sync>);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapper")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn other_errors_are_not_taken_for_unsent_requests() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!never_sent(&io));
        // A stream reset by the server (it may have acted on it) is not
        // "never sent", even deep in a chain.
        let reset = h2::Error::from(h2::Reason::NO_ERROR);
        assert!(!reset.is_go_away());
        assert!(!never_sent(&Wrapper(Box::new(reset))));
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(!never_sent(&Wrapper(Box::new(refused))));
    }
}
