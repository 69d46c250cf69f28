//! Upgraded connections (exec, attach, port-forward over SPDY or WebSocket).
//!
//! The rule from CVE-2018-1002105 (k8s-semantics §4.3, §5.1): the two connections are spliced
//! only when the API server answers `101 Switching Protocols`; any other answer goes back as an
//! ordinary response and the client connection is closed, so no byte the client sends after a
//! failed upgrade can reach the API server. The 101's headers (`Sec-WebSocket-Accept`,
//! `Sec-WebSocket-Protocol`, `X-Stream-Protocol-Version`) go back unchanged.

use http::{header, HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::{boxed, headers, status_response, Status};
use crate::upstream::Body;

/// Completes an upgrade after the API server's answer `response` to the forwarded request.
///
/// On `101` (with an `Upgrade` header) the response goes back with the API server's headers
/// unchanged and a task splices the client's connection to the upstream one once hyper hands
/// both over; each side's end of stream is passed on as a write shutdown of the other
/// (half-close). Any other answer is returned as an ordinary response with
/// `Connection: close`, so the client connection ends after it and nothing the client sent
/// behind the request is ever read as a new request.
pub fn finish(mut response: Response<Incoming>, client: OnUpgrade) -> Response<Body> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = response.into_parts();
        headers::strip_response_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Response::from_parts(parts, boxed(body));
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
        return refused;
    }
    let upstream = hyper::upgrade::on(&mut response);
    let (parts, _) = response.into_parts();
    // The splice lives in its own task: it ends (dropping and so closing both connections)
    // when both directions have ended, or at the first error in either.
    tokio::spawn(async move {
        let (client_io, upstream_io) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client_io = TokioIo::new(client_io);
        let mut upstream_io = TokioIo::new(upstream_io);
        // copy_bidirectional propagates each side's EOF as a write shutdown of the other
        // (half-close) and ends when both directions are done; dropping both closes them.
        match tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await {
            Ok((to_upstream, to_client)) => {
                tracing::debug!(to_upstream, to_client, "upgraded connection closed")
            }
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
        }
    });
    let mut response = Response::new(boxed(http_body_util::Empty::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = parts.headers;
    response
}
