//! Upgraded connections (exec, attach, port-forward over SPDY or WebSocket).
//!
//! The rule from CVE-2018-1002105 (k8s-semantics §4.3, §5.1): the two connections are spliced
//! only when the API server answers `101 Switching Protocols`; any other answer goes back as an
//! ordinary response and the client connection is closed, so no byte the client sends after a
//! failed upgrade can reach the API server. The 101's headers (`Sec-WebSocket-Accept`,
//! `Sec-WebSocket-Protocol`, `X-Stream-Protocol-Version`) go back unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{boxed, headers, status_response, Status};
use crate::observe::metrics::Metrics;
use crate::upstream::Body;

pin_project! {
    /// A connection that counts the bytes read from it (live, so an hours-long exec session
    /// shows its traffic while it runs).
    struct Counted<T> {
        #[pin]
        inner: T,
        read: Counter,
    }
}

impl<T> Counted<T> {
    fn new(inner: T, read: Counter) -> Self {
        Self { inner, read }
    }
}

impl<T: AsyncRead> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.read.inc_by(read as u64);
        }
        polled
    }
}

impl<T: AsyncWrite> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Completes an upgrade after the API server's answer `response` to the forwarded request.
///
/// On `101` (with an `Upgrade` header) the response goes back with the API server's headers
/// unchanged and a task splices the client's connection to the upstream one once hyper hands
/// both over; each side's end of stream is passed on as a write shutdown of the other
/// (half-close). Any other answer is returned as an ordinary response with
/// `Connection: close`, so the client connection ends after it and nothing the client sent
/// behind the request is ever read as a new request.
/// `on_close` runs once the splice has ended (at once when nothing is spliced).
pub fn finish(
    mut response: Response<Body>,
    client: OnUpgrade,
    metrics: &Metrics,
    on_close: impl FnOnce() + Send + 'static,
) -> Response<Body> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = response.into_parts();
        headers::strip_response_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        on_close();
        return Response::from_parts(parts, body);
    }
    if response.headers().get(header::UPGRADE).is_none() {
        // Nothing to splice to; dropping the response closes the upstream connection, and
        // the client's is closed after the error like after any refused upgrade.
        let mut refused = status_response(Status::bad_gateway(
            "the API server switched protocols without naming one",
        ));
        refused
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        on_close();
        return refused;
    }
    let upstream = hyper::upgrade::on(&mut response);
    let (parts, _) = response.into_parts();
    let counters = metrics.upgrade();
    // The splice lives in its own task: it ends (dropping and so closing both connections)
    // when both directions have ended, or at the first error in either.
    tokio::spawn(async move {
        let (client_io, upstream_io) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                on_close();
                return;
            }
        };
        let mut client_io = Counted::new(TokioIo::new(client_io), counters.to_upstream.clone());
        let mut upstream_io = Counted::new(TokioIo::new(upstream_io), counters.to_client.clone());
        // copy_bidirectional propagates each side's EOF as a write shutdown of the other
        // (half-close) and ends when both directions are done; dropping both closes them.
        match tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await {
            Ok((to_upstream, to_client)) => {
                tracing::debug!(to_upstream, to_client, "upgraded connection closed")
            }
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
        }
        drop(counters);
        on_close();
    });
    let mut response = Response::new(boxed(http_body_util::Empty::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = parts.headers;
    response
}
