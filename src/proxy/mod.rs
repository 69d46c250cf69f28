//! The request pipeline, as named steps in request order:
//! authenticate → refuse client impersonation → build the upstream request → forward →
//! observe (access log). One [`RequestContext`] carries what the log reads.

pub mod headers;
pub mod status;
pub mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::authn::authenticators::Authenticators;
use crate::authn::oidc::AuthError;
use crate::authn::{bearer_token, UserInfo};
use crate::impersonation::set_impersonation_headers;
use crate::observe::access_log::{self, Source};
use crate::upstream::{Body, Upstream, UpstreamError};
use status::Status;

/// What one request's log line needs.
struct RequestContext {
    source: Source,
    uri: String,
}

/// The proxy: authenticators and upstream, shared by every connection.
pub struct Proxy {
    authenticators: Arc<Authenticators>,
    upstream: Upstream,
}

/// Boxes any body into the pipeline's body type.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<crate::upstream::BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A `Status` as a response of the pipeline's body type.
pub fn status_response(status: Status) -> Response<Body> {
    let response: Response<Full<Bytes>> = status.into_response();
    response.map(boxed)
}

impl Proxy {
    /// A proxy over the authenticators and an upstream client.
    pub fn new(authenticators: Arc<Authenticators>, upstream: Upstream) -> Self {
        Self {
            authenticators,
            upstream,
        }
    }

    /// Handles one request from `peer`. Never fails: every error becomes a `Status` response.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let context = RequestContext {
            source: Source::from_request(peer.ip(), request.headers()),
            uri: request
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
        };

        // Step 1: authenticate.
        let user = match self.authenticate(&request).await {
            Ok(user) => user,
            Err(reason) => {
                tracing::info!(uri = %context.uri, peer = %peer, reason = %reason, "authentication failed");
                access_log::emit(&access_log::failure_line(
                    time::OffsetDateTime::now_utc(),
                    &context.source,
                    &context.uri,
                ));
                return unauthorized_response(&request);
            }
        };
        access_log::emit(&access_log::success_line(
            time::OffsetDateTime::now_utc(),
            &context.source,
            &context.uri,
            &user,
            None,
        ));

        // Step 2: client impersonation (`kubectl --as`) is refused until it is authorized
        // per attribute with SubjectAccessReviews; any Impersonate-* header, any case, counts.
        if headers::has_impersonation_headers(request.headers()) {
            return status_response(Status::forbidden(
                "Impersonation requests are disabled when using kube-oidc-proxy",
            ));
        }

        // Steps 3-4: build the upstream request and forward it.
        self.forward(request, peer, &user, &context).await
    }

    async fn authenticate(&self, request: &Request<Incoming>) -> Result<Arc<UserInfo>, String> {
        let token = request_token(request.headers())?;
        match self
            .authenticators
            .authenticate(&token, SystemTime::now())
            .await
        {
            Ok(authenticated) => Ok(authenticated.user),
            Err(AuthError::NotReady(issuer)) => {
                tracing::warn!(%issuer, "token refused: issuer keys not loaded yet");
                Err(format!("issuer {issuer} not initialized"))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        user: &UserInfo,
        context: &RequestContext,
    ) -> Response<Body> {
        let is_upgrade = request.version() <= http::Version::HTTP_11
            && headers::is_upgrade_request(request.headers());
        let target = match self.upstream.target(&context.uri) {
            Ok(uri) => uri,
            Err(e) => {
                return status_response(Status::bad_request(format!("invalid request URI: {e}")))
            }
        };
        let mut request = request;
        let client_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        // Strip first, then set: nothing the client sent can remove or alter what follows.
        headers::strip_client_headers(&mut parts.headers, is_upgrade);
        if let Err(e) = set_impersonation_headers(&mut parts.headers, user) {
            tracing::info!(uri = %context.uri, error = %e, "user cannot be impersonated");
            return status_response(Status::unauthorized());
        }
        // The peer is the only source the proxy can vouch for; a client's own
        // X-Forwarded-For is not passed on (it would be spoofable in the API server's audit).
        if let Ok(value) = HeaderValue::from_str(&peer.ip().to_string()) {
            parts.headers.insert("x-forwarded-for", value);
        }
        let mut outbound = Request::new(boxed(body));
        *outbound.method_mut() = parts.method;
        *outbound.uri_mut() = target;
        *outbound.headers_mut() = parts.headers;
        if is_upgrade {
            *outbound.version_mut() = http::Version::HTTP_11;
        }

        let response = match self.upstream.send(outbound, is_upgrade).await {
            Ok(response) => response,
            Err(e) => return upstream_error_response(e, &context.uri),
        };

        if let Some(client_upgrade) = client_upgrade {
            return upgrade::finish(response, client_upgrade);
        }
        let (mut parts, body) = response.into_parts();
        headers::strip_response_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, boxed(body))
    }
}

/// The caller's bearer token: from `Authorization`, or, for a WebSocket upgrade without one,
/// from the `Sec-WebSocket-Protocol` entry browsers use (kube-apiserver accepts both).
fn request_token(headers: &http::HeaderMap) -> Result<String, String> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    match values.next() {
        Some(value) => {
            if values.next().is_some() {
                return Err("more than one Authorization header".into());
            }
            let value = value
                .to_str()
                .map_err(|_| "Authorization header is not text")?;
            bearer_token(value)
                .map(str::to_string)
                .ok_or_else(|| "Authorization header is not a bearer token".into())
        }
        None if headers::is_websocket_request(headers) => headers::websocket_bearer_token(headers)
            .map_err(str::to_string)?
            .ok_or_else(|| "no bearer token".into()),
        None => Err("no Authorization header".into()),
    }
}

fn unauthorized_response<B>(request: &Request<B>) -> Response<Body> {
    let mut response = status_response(Status::unauthorized());
    // kube-apiserver closes HTTP/1 connections of unauthenticated clients after the 401
    // (HTTP/2 rapid-reset mitigation, k8s-semantics §5.1); h2 has no Connection header.
    if request.version() <= http::Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn upstream_error_response(error: UpstreamError, uri: &str) -> Response<Body> {
    tracing::warn!(%uri, error = %error, "forwarding to the API server failed");
    match error {
        UpstreamError::Timeout(_) => status_response(Status::gateway_timeout(
            "the API server did not answer in time",
        )),
        UpstreamError::Unreachable(_) => {
            status_response(Status::bad_gateway("the API server could not be reached"))
        }
    }
}

/// 404 for paths the probe listener does not serve, shared by the listeners.
pub fn not_found() -> Response<Body> {
    status_response(Status::failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        "not found",
    ))
}
