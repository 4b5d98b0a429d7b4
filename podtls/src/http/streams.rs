//! Open-stream accounting for an HTTP/2 server connection, which hyper does
//! not offer: each request holds a [`StreamGuard`] from the moment the
//! service is called until its response body is finished or dropped, and
//! [`Streams::idle`] completes once no stream has been open for a while.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    /// Streams open now.
    open: usize,
    /// Streams ever opened.
    total: u64,
}

/// The open streams of one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Streams(Arc<watch::Sender<Count>>);

impl Streams {
    /// Counts a stream as open until the guard is dropped.
    pub(crate) fn open(&self) -> StreamGuard {
        self.0.send_modify(|c| {
            c.open += 1;
            c.total += 1;
        });
        StreamGuard(self.0.clone())
    }

    /// Completes once no stream has been open for `first` (before any
    /// stream was ever opened) or `idle` (after).
    pub(crate) fn idle(&self, first: Duration, idle: Duration) -> impl Future<Output = ()> {
        let mut rx = self.0.subscribe();
        async move {
            loop {
                // The sender lives in `self.0`, which outlives this future's
                // use (the caller holds it), so `wait_for` cannot fail; if it
                // did, treat the connection as idle.
                let Ok(count) = rx.wait_for(|c| c.open == 0).await.map(|c| *c) else {
                    return;
                };
                let wait = if count.total == 0 { first } else { idle };
                if tokio::time::timeout(wait, rx.changed()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Holds one stream open; see [`Streams::open`].
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<watch::Sender<Count>>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.send_modify(|c| c.open -= 1);
    }
}

/// A response body that keeps its stream counted as open until it has been
/// sent in full (or failed, or was dropped).
pub(crate) struct TrackedBody<B> {
    inner: Pin<Box<B>>,
    guard: Option<StreamGuard>,
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(inner: B, guard: StreamGuard) -> Self {
        TrackedBody {
            inner: Box::pin(inner),
            guard: Some(guard),
        }
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = this.inner.as_mut().poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            this.guard = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::time::Instant;

    const FIRST: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_any_stream_is_idle_after_the_first_deadline() {
        let streams = Streams::default();
        let t0 = Instant::now();
        streams.idle(FIRST, IDLE).await;
        assert_eq!(t0.elapsed(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_stream_is_never_idle_and_the_idle_clock_restarts_when_it_ends() {
        let streams = Streams::default();
        let guard = streams.open();
        let idle = streams.idle(FIRST, IDLE);
        tokio::pin!(idle);
        let t0 = Instant::now();
        assert!(tokio::time::timeout(10 * IDLE, idle.as_mut())
            .await
            .is_err());
        drop(guard);
        let ended = Instant::now();
        idle.await;
        assert_eq!(ended - t0, 10 * IDLE);
        assert_eq!(ended.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_opened_and_closed_during_the_wait_restarts_it() {
        let streams = Streams::default();
        let idle = streams.idle(FIRST, IDLE);
        tokio::pin!(idle);
        assert!(tokio::time::timeout(FIRST / 2, idle.as_mut())
            .await
            .is_err());
        drop(streams.open());
        let t = Instant::now();
        idle.await;
        assert_eq!(t.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_holds_its_stream_until_finished_or_dropped() {
        use http_body_util::{BodyExt, Full};
        let streams = Streams::default();
        let mut rx = streams.0.subscribe();
        let body = TrackedBody::new(Full::new(bytes::Bytes::from("x")), streams.open());
        assert_eq!(rx.borrow_and_update().open, 1);
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"x");
        assert_eq!(rx.borrow_and_update().open, 0);
        let body = TrackedBody::new(Full::new(bytes::Bytes::from("y")), streams.open());
        assert_eq!(rx.borrow_and_update().open, 1);
        drop(body);
        assert_eq!(rx.borrow_and_update().open, 0);
        assert_eq!(rx.borrow().total, 2);
    }
}
