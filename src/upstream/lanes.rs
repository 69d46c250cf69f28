//! Requests multiplexed over a few HTTP/2 connections to the API server, "lanes", that never
//! carry more streams than the API server accepts.
//!
//! hyper's client queues requests beyond a connection's `SETTINGS_MAX_CONCURRENT_STREAMS`
//! instead of opening another connection, so open watches sharing one connection would starve
//! every request behind them; one HTTP/1.1 connection per watch costs a TLS session and buffers
//! each. A lane carries at most [`LANE_STREAMS`]; a request takes a free slot on an open lane or
//! opens a new lane, and holds the slot until its response body ends or is dropped.
//!
//! [`super::Upstream`] keeps two sets: one for short requests and one for watches and followed
//! logs, so long-lived streams never share a connection (and its flow-control window) with short
//! requests. Short requests go through hyper's connection handle directly rather than
//! hyper-util's pool, which per request hashes its pool key, clones connection metadata and
//! wraps the connection (about 3 % of a proxied request's instructions, `BENCHMARKS.md`).
//!
//! An API server that does not negotiate `h2` (plain HTTP, or ALPN without it) gets requests on
//! the pooled HTTP/1.1 client instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

use super::{Body, BoxError};

/// Streams per lane: RFC 9113 §6.5.2 recommends that servers allow no fewer than 100 concurrent
/// streams (kube-apiserver allows Go's default 250 unless `--http2-max-streams-per-connection`,
/// hyper's server 200), so a lane never makes hyper queue a request.
pub(super) const LANE_STREAMS: usize = 100;

/// Flow-control window of each stream. The connection window is this times [`LANE_STREAMS`]:
/// a stream whose client stops reading holds at most its own window of the connection's, so
/// stalled watches can never exhaust the connection window and block the other streams of
/// their lane (the window is fixed, not adaptive, for that bound to hold). It is also the most
/// the proxy buffers for one stalled watch.
const STREAM_WINDOW: u32 = 1 << 20;

/// A lane without streams for this long is closed when the next request looks for a slot (one
/// lane is always kept): hyper-util's and Go's pool idle timeout, so a burst's extra lanes do not
/// stay open, while lanes that empty and fill again between short requests are not churned.
const LANE_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Bound on opening a lane (TCP connect, TLS and HTTP/2 handshakes): client-go's dial timeout
/// (30 s) plus its TLS handshake timeout (10 s). Requests queue behind a lane being opened, so a
/// handshake that never completes must not hold them, or later ones, for ever.
const LANE_OPEN_TIMEOUT: Duration = Duration::from_secs(40);

/// Pings on a lane with open streams, as client-go's HTTP/2 health check (`ReadIdleTimeout`
/// 30 s, `PingTimeout` 15 s): a silently dead lane would otherwise hang every watch on it.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

/// The lanes to one API server; a `tower::Service` for the credential layer to wrap.
#[derive(Clone)]
pub(super) struct Lanes {
    shared: Arc<Shared>,
}

struct Shared {
    connector: HttpsConnector<HttpConnector>,
    http2: http2::Builder<TokioExecutor>,
    lanes: Mutex<Vec<Lane>>,
    /// Held while opening a lane: a burst of watches opens one lane at a time, each waiter then
    /// finding a slot on it rather than opening a connection of its own.
    opening: tokio::sync::Mutex<()>,
    /// Set once the API server did not negotiate `h2`; from then on requests take `http1`.
    http1_only: AtomicBool,
    /// When opening a lane last failed, and why.
    last_failure: Mutex<Option<(Instant, String)>>,
    http1: Client<HttpsConnector<HttpConnector>, Body>,
}

struct Lane {
    sender: http2::SendRequest<Body>,
    slots: Arc<Semaphore>,
    /// When a request last took a slot on this lane.
    last_used: Mutex<Instant>,
}

impl Lane {
    fn is_idle(&self) -> bool {
        self.slots.available_permits() == LANE_STREAMS
    }

    /// Idle for longer than [`LANE_IDLE_TIMEOUT`].
    fn is_stale(&self, now: Instant) -> bool {
        self.is_idle()
            && now.duration_since(*self.last_used.lock().unwrap_or_else(|e| e.into_inner()))
                > LANE_IDLE_TIMEOUT
    }
}

impl Lanes {
    /// Lanes over `connector` (which must offer ALPN `h2`); `http1` for an API server without
    /// HTTP/2.
    pub(super) fn new(
        connector: HttpsConnector<HttpConnector>,
        http1: Client<HttpsConnector<HttpConnector>, Body>,
    ) -> Self {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .adaptive_window(false)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(STREAM_WINDOW * LANE_STREAMS as u32)
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT);
        Self {
            shared: Arc::new(Shared {
                connector,
                http2,
                lanes: Mutex::default(),
                opening: tokio::sync::Mutex::default(),
                http1_only: AtomicBool::new(false),
                last_failure: Mutex::default(),
                http1,
            }),
        }
    }
}

impl tower::Service<Request<Body>> for Lanes {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> ResponseFuture {
        let shared = self.shared.clone();
        Box::pin(async move { shared.send(request).await })
    }
}

impl Shared {
    async fn send(&self, mut request: Request<Body>) -> Result<Response<Body>, BoxError> {
        let mut retried = false;
        loop {
            let Some((mut sender, slot)) = self.take_slot(request.uri()).await? else {
                let response = self.http1.request(request).await?;
                return Ok(super::boxed_response(response));
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| crate::proxy::boxed(SlotBody::new(body, slot))))
                }
                Err(mut failed) => match failed.take_message() {
                    // The lane closed (a GOAWAY, as kube-apiserver's `--goaway-chance` sends, or
                    // a broken connection) before any of the request was written: it never
                    // reached the API server, so it goes once more on another lane whatever its
                    // method, as hyper-util's pool retries a request its connection canceled.
                    Some(unsent) if !retried => {
                        tracing::debug!(error = %failed.error(), "lane closed before sending; retrying");
                        request = unsent;
                        retried = true;
                    }
                    _ => return Err(failed.into_error().into()),
                },
            }
        }
    }

    /// A slot on a lane, opening a lane when none has one; `None` when the API server does not
    /// speak HTTP/2.
    async fn take_slot(
        &self,
        uri: &Uri,
    ) -> Result<Option<(http2::SendRequest<Body>, OwnedSemaphorePermit)>, BoxError> {
        if self.http1_only.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if let Some(taken) = self.free_slot() {
            return Ok(Some(taken));
        }
        let waiting_since = Instant::now();
        let _opening = self.opening.lock().await;
        // Another request may have opened a lane (or found HTTP/1.1 only) while this one waited.
        if self.http1_only.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if let Some(taken) = self.free_slot() {
            return Ok(Some(taken));
        }
        // A lane that failed to open while this request waited its turn fails it too: if every
        // waiter tried again in turn, the last of n would wait n connect timeouts, where a pool
        // connecting for each request fails them all after one.
        if let Some(reason) = self.failed_since(waiting_since) {
            return Err(reason.into());
        }
        // Boxed: connecting and the handshake are kilobytes of state that every watch's future
        // would otherwise carry inline for this once-per-lane path.
        let opened = tokio::time::timeout(LANE_OPEN_TIMEOUT, Box::pin(self.open_lane(uri)))
            .await
            .unwrap_or_else(|_| {
                Err(format!("no connection to the API server within {LANE_OPEN_TIMEOUT:?}").into())
            })
            .inspect_err(|e| {
                let reason = crate::authn::issuer::error_chain(e.as_ref());
                *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), reason));
            });
        let Some(lane) = opened? else {
            tracing::debug!("the API server does not speak HTTP/2: these requests use HTTP/1.1");
            self.http1_only.store(true, Ordering::Relaxed);
            return Ok(None);
        };
        let slot = lane
            .slots
            .clone()
            .try_acquire_owned()
            .expect("a new lane has free slots");
        let sender = lane.sender.clone();
        self.lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(lane);
        Ok(Some((sender, slot)))
    }

    /// Why opening a lane failed, if it failed after `since`.
    fn failed_since(&self, since: Instant) -> Option<String> {
        let last_failure = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        let (at, reason) = last_failure.as_ref()?;
        (*at >= since).then(|| reason.clone())
    }

    /// A free slot on an open lane. Closed lanes (GOAWAY, broken connection) are dropped, and
    /// so are lanes idle for [`LANE_IDLE_TIMEOUT`] but one, so a burst leaves no more
    /// connections open than the load needs.
    fn free_slot(&self) -> Option<(http2::SendRequest<Body>, OwnedSemaphorePermit)> {
        let now = Instant::now();
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let mut idle_kept = false;
        lanes.retain(|lane| {
            if lane.sender.is_closed() {
                return false;
            }
            let spare_stale = idle_kept && lane.is_stale(now);
            idle_kept |= lane.is_idle();
            !spare_stale
        });
        lanes.iter().find_map(|lane| {
            let slot = lane.slots.clone().try_acquire_owned().ok()?;
            *lane.last_used.lock().unwrap_or_else(|e| e.into_inner()) = now;
            Some((lane.sender.clone(), slot))
        })
    }

    /// A new lane to the API server of `uri`; `None` when it does not negotiate `h2`.
    async fn open_lane(&self, uri: &Uri) -> Result<Option<Lane>, BoxError> {
        let io = self.connector.clone().oneshot(uri.clone()).await?;
        if !io.connected().is_negotiated_h2() {
            return Ok(None);
        }
        let (sender, connection) = self.http2.handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "watch lane to the API server closed");
            }
        });
        Ok(Some(Lane {
            sender,
            slots: Arc::new(Semaphore::new(LANE_STREAMS)),
            last_used: Mutex::new(Instant::now()),
        }))
    }
}

pin_project! {
    /// A response body holding its lane slot until it ends or is dropped.
    struct SlotBody {
        #[pin]
        inner: Incoming,
        slot: Option<OwnedSemaphorePermit>,
    }
}

impl SlotBody {
    fn new(inner: Incoming, slot: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            slot: Some(slot),
        }
    }
}

impl http_body::Body for SlotBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = polled {
            this.slot.take();
        }
        polled
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

    fn future_size<A, F: Future>(_: impl Fn(A) -> F) -> usize {
        size_of::<F>()
    }

    /// Every waiting watch holds this state (a burst of watches waits for lanes to open), so
    /// opening a lane, kilobytes of connect and handshake state, stays out of it.
    #[test]
    fn a_request_waiting_for_a_lane_holds_little_state() {
        let size =
            future_size(|(shared, request): (&'static Shared, Request<Body>)| shared.send(request));
        assert!(size <= 2048, "a lane request's future is {size} bytes");
    }
}
