//! The request pipeline, as named steps in request order:
//! authenticate → decide the upstream identity (authorize `kubectl --as`; see [`identity`]) →
//! build the upstream request → forward → observe (access log). One [`RequestContext`] carries
//! what the log reads.

pub mod client_ip;
pub mod headers;
pub mod identity;
pub mod observed;
pub mod status;
pub mod upgrade;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::audit::recorder::{
    authentication_failed_message, Auditor, Completion, RequestAudit, RequestFacts,
    MAX_AUDITED_OBJECT_BYTES,
};
use crate::audit::request_info::{self, RequestInfo};
use crate::authn::authenticators::Authenticators;
use crate::authn::oidc::AuthError;
use crate::authn::{bearer_token, UserInfo};
use crate::impersonation::{extras, inbound, set_impersonation_headers};
use crate::observe::access_log::{self, Source};
use crate::observe::metrics::{self, AuthOutcome, Metrics};
use crate::upstream::review::ReviewError;
use crate::upstream::{Body, Route, Upstream, UpstreamError};
use identity::IdentityForwarding;
use observed::{BodyEnd, Captured, ObservedBody};
use status::Status;

/// The header carrying a request's audit ID, to the API server and back to the client.
const AUDIT_ID: &str = "audit-id";

/// The `issuer` metrics label of callers a TokenReview accepted (`--token-passthrough`).
const TOKEN_REVIEW_ISSUER: &str = "tokenreview";

/// What one request's log line needs.
struct RequestContext {
    /// The verb label of its metrics.
    verb: &'static str,
    source: Source,
    uri: String,
    /// The client's address by the `--trusted-proxies` rule (see [`client_ip`]).
    client_ip: IpAddr,
}

/// The authenticated caller and the credential it presented.
struct Caller {
    user: Arc<UserInfo>,
    token: String,
    /// The metrics label of who vouched for the caller: the issuer URL, or `tokenreview`.
    issuer: Arc<str>,
    /// Accepted by a TokenReview (`--token-passthrough`), not by an issuer.
    passthrough: bool,
}

/// Why a request is not authenticated.
enum AuthFailure {
    /// No, or no acceptable, token: 401.
    Unauthorized(String),
    /// A TokenReview had no answer: 503 (never an allow).
    ReviewFailed(ReviewError),
}

/// How a request goes upstream.
enum Outbound {
    /// The proxy's credentials plus impersonation headers for this identity.
    Impersonate(UserInfo),
    /// The caller's own token as the only credential, the client's `Impersonate-*` headers kept
    /// for the API server to authorize.
    CallerToken(String),
}

/// The proxy: authenticators and upstream, shared by every connection.
pub struct Proxy {
    authenticators: Arc<Authenticators>,
    upstream: Upstream,
    identity: IdentityForwarding,
    metrics: Arc<Metrics>,
    auditor: Option<Arc<Auditor>>,
}

/// What serving a request learned that observing it needs.
#[derive(Default)]
struct Outcome {
    /// Who authenticated the caller (the `issuer` metrics label); empty when nobody did.
    issuer: Option<Arc<str>>,
    /// The response is a `101`: the splice reports its own end.
    upgraded: bool,
    /// With auditing on: what every event of the request carries.
    audit_facts: Option<RequestFacts>,
    /// The request's audit, once the policy chose a level for the authenticated caller.
    audit: Option<RequestAudit>,
    /// The request body's bounded copy, when the audit records it.
    request_body: Option<Captured>,
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
            identity: IdentityForwarding::default(),
            metrics: Arc::new(Metrics::new()),
            auditor: None,
        }
    }

    /// Audits requests with `auditor` (`--audit-policy-file` and a backend).
    pub fn with_auditor(mut self, auditor: Option<Arc<Auditor>>) -> Self {
        self.auditor = auditor;
        self
    }

    /// Records into `metrics` (by default a registry nobody scrapes).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sets how identities are forwarded (`kubectl --as`, passthrough, no impersonation, extra
    /// user headers, trusted proxies). Without it: impersonation only, client impersonation
    /// requests refused.
    pub fn with_identity(mut self, identity: IdentityForwarding) -> Self {
        self.identity = identity;
        self
    }

    /// [`Proxy::handle`] on the heap. The connection (HTTP/1.1) or stream task (HTTP/2) that
    /// polls it would otherwise hold the pipeline's state inline, a few KiB, for as long as the
    /// response streams (a watch's for hours); boxed, it is freed once the response head is
    /// ready, and a streaming response keeps only its body.
    pub fn handle_boxed(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(async move { self.handle(request, peer).await })
    }

    /// Handles one request from `peer`. Never fails: every error becomes a `Status` response.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let info = request_info::parse(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let is_upgrade = request.version() <= http::Version::HTTP_11
            && headers::is_upgrade_request(request.headers());
        let long_running = is_upgrade || request_info::is_long_running(&info);
        let in_flight = self.metrics.in_flight(long_running);
        let verb = metrics::verb_label(&info.verb);
        // The client's address by the --trusted-proxies rule: once, for the pipeline and audit.
        let client_ip = self
            .identity
            .settings
            .trusted_proxies
            .client_ip(peer.ip(), request.headers());
        let mut outcome = Outcome {
            audit_facts: self
                .auditor
                .is_some()
                .then(|| audit_facts(&request, info, peer, client_ip)),
            ..Outcome::default()
        };
        let mut response = self
            .serve(request, peer, client_ip, verb, &mut outcome)
            .await;
        if let Some(facts) = &outcome.audit_facts {
            if let Ok(id) = HeaderValue::from_str(&facts.audit_id) {
                response.headers_mut().insert(AUDIT_ID, id);
            }
        }

        // Counted when the response ends: a short request's duration runs to its last byte.
        let metrics = self.metrics.clone();
        let code = response.status().as_u16();
        let issuer = outcome.issuer.unwrap_or_else(|| Arc::from(""));
        let record = move || {
            let duration = (!long_running).then(|| started.elapsed());
            metrics.request(verb, code, issuer, duration);
            drop(in_flight);
        };
        if outcome.upgraded {
            // The body of a 101 is empty; the spliced connection is counted and audited by the
            // splice.
            record();
            return response;
        }
        let mut audit = outcome.audit;
        if long_running {
            if let Some(audit) = audit.as_mut() {
                audit.response_started(code);
            }
        }
        let (parts, body) = response.into_parts();
        let capture = audit
            .as_ref()
            .and_then(|audit| audit.response_capture_limit(code));
        let (body, response_body) = match capture {
            Some(limit) => {
                let (body, captured) = ObservedBody::capturing(body, limit);
                (body, Some(captured))
            }
            None => (ObservedBody::passing(body), None),
        };
        let request_body = outcome.request_body;
        let body = body.on_end(move |_: BodyEnd| {
            record();
            if let Some(audit) = audit {
                audit.complete(completion(code, request_body, response_body));
            }
        });
        Response::from_parts(parts, boxed(body))
    }

    async fn serve(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        client_ip: IpAddr,
        verb: &'static str,
        outcome: &mut Outcome,
    ) -> Response<Body> {
        let settings = &self.identity.settings;
        let context = RequestContext {
            verb,
            source: Source::from_request(peer.ip(), request.headers()),
            uri: path_and_query(&request),
            client_ip,
        };

        // Step 1: authenticate (the issuer; then, with --token-passthrough, a TokenReview for a
        // token no issuer claims).
        let caller = match self.authenticate(&request).await {
            Ok(caller) => {
                outcome.issuer = Some(caller.issuer.clone());
                if let (Some(auditor), Some(facts)) = (&self.auditor, &outcome.audit_facts) {
                    outcome.audit = auditor.begin(facts, &caller.user);
                }
                caller
            }
            Err(failure) => {
                access_log::emit(&access_log::failure_line(
                    time::OffsetDateTime::now_utc(),
                    &context.source,
                    &context.uri,
                ));
                if let (Some(auditor), Some(facts)) = (&self.auditor, &outcome.audit_facts) {
                    let code = match failure {
                        AuthFailure::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                        AuthFailure::ReviewFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    let presented = request.headers().contains_key(header::AUTHORIZATION);
                    auditor.failed_authentication(
                        facts,
                        authentication_failed_message(presented),
                        code.as_u16(),
                    );
                }
                return match failure {
                    AuthFailure::Unauthorized(reason) => {
                        tracing::info!(uri = %context.uri, peer = %peer, reason = %reason, "authentication failed");
                        unauthorized_response(&request)
                    }
                    AuthFailure::ReviewFailed(error) => {
                        tracing::warn!(uri = %context.uri, peer = %peer, %error, "TokenReview failed");
                        status_response(identity::review_failure(
                            &error,
                            "the token could not be reviewed",
                        ))
                    }
                };
            }
        };

        // Step 2: decide the upstream identity. The caller's own token, or impersonation of the
        // caller, or of the target of its authorized `kubectl --as`.
        let log_success = |outbound: Option<&UserInfo>| {
            access_log::emit(&access_log::success_line(
                time::OffsetDateTime::now_utc(),
                &context.source,
                &context.uri,
                &caller.user,
                outbound,
            ));
        };
        let outbound = if caller.passthrough || settings.disable_impersonation {
            log_success(None);
            Outbound::CallerToken(caller.token.clone())
        } else {
            let target = match self.impersonation_target(&request, &caller.user).await {
                Ok(target) => target,
                Err(status) => {
                    log_success(None);
                    return status_response(status);
                }
            };
            // The outbound section names whom the caller acts as (the authorized target), not
            // the extras the proxy adds on top.
            log_success(target.as_ref());
            let user = extras::outbound_user(
                &caller.user,
                target.as_ref(),
                &settings.extra_user_headers,
                context.client_ip,
            );
            if let Some(audit) = outcome.audit.as_mut() {
                audit.set_impersonated_user(&user);
            }
            Outbound::Impersonate(user)
        };

        // Steps 3-4: build the upstream request and forward it.
        let response = self.forward(request, outbound, &context, outcome).await;
        outcome.upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        response
    }

    /// Authenticates the request and records the outcome in the metrics.
    async fn authenticate(&self, request: &Request<Incoming>) -> Result<Caller, AuthFailure> {
        let token = match request_token(request.headers()) {
            Ok(token) => token,
            Err(reason) => {
                self.metrics
                    .authentication(Arc::from(""), AuthOutcome::Failure("no_token"));
                return Err(AuthFailure::Unauthorized(reason));
            }
        };
        let result = self.authenticate_token(token).await;
        let (issuer, outcome) = match &result {
            Ok(caller) => (caller.issuer.clone(), AuthOutcome::Success),
            Err((issuer, AuthFailure::Unauthorized(_), reason)) => {
                (issuer.clone(), AuthOutcome::Failure(reason))
            }
            Err((issuer, AuthFailure::ReviewFailed(_), reason)) => {
                (issuer.clone(), AuthOutcome::Error(reason))
            }
        };
        self.metrics.authentication(issuer, outcome);
        result.map_err(|(_, failure, _)| failure)
    }

    /// Authenticates a bearer token; a failure comes with its metrics issuer and reason.
    async fn authenticate_token(
        &self,
        token: String,
    ) -> Result<Caller, (Arc<str>, AuthFailure, &'static str)> {
        let now = SystemTime::now();
        let error = match self.authenticators.authenticate(&token, now).await {
            Ok(authenticated) => {
                self.metrics
                    .token_cache(authenticated.issuer.clone(), authenticated.cached);
                return Ok(Caller {
                    user: authenticated.user,
                    token,
                    issuer: authenticated.issuer,
                    passthrough: false,
                });
            }
            Err(error) => error,
        };
        let issuer = || {
            self.authenticators
                .claimed_issuer(&token)
                .unwrap_or_else(|| Arc::from(""))
        };
        match error {
            AuthError::NotReady(ref url) => {
                tracing::warn!(issuer = %url, "token refused: issuer keys not loaded yet");
                Err((
                    issuer(),
                    AuthFailure::Unauthorized(format!("issuer {url} not initialized")),
                    error.reason(),
                ))
            }
            // Only a token that no issuer claims is the API server's to judge; one the issuer
            // claims but refuses stays refused.
            AuthError::UnknownIssuer if self.identity.settings.token_passthrough => {
                // Boxed: the TokenReview's client future is kilobytes, and inline it would
                // size every request's state (see `handle_boxed`) for this rare path.
                Box::pin(self.review_token(token, now)).await
            }
            error => Err((
                issuer(),
                AuthFailure::Unauthorized(error.to_string()),
                error.reason(),
            )),
        }
    }

    /// `--token-passthrough`: asks the API server about a token no issuer claims.
    async fn review_token(
        &self,
        token: String,
        now: SystemTime,
    ) -> Result<Caller, (Arc<str>, AuthFailure, &'static str)> {
        let label: Arc<str> = Arc::from(TOKEN_REVIEW_ISSUER);
        let Some(reviewer) = &self.identity.reviewer else {
            return Err((
                Arc::from(""),
                AuthFailure::Unauthorized("no configured issuer claims the token".into()),
                "unknown_issuer",
            ));
        };
        match reviewer.review_token(&token, now).await {
            Ok(Some(user)) => Ok(Caller {
                user: Arc::new(user),
                token,
                issuer: label,
                passthrough: true,
            }),
            Ok(None) => Err((
                label,
                AuthFailure::Unauthorized(
                    "TokenReview: not authenticated for the configured audiences".into(),
                ),
                "token_review_rejected",
            )),
            Err(error) => Err((
                label,
                AuthFailure::ReviewFailed(error),
                "token_review_failed",
            )),
        }
    }

    /// The authorized target of the client's own `Impersonate-*` headers, or `None` when it
    /// sent none; the refusal as a `Status` otherwise.
    async fn impersonation_target(
        &self,
        request: &Request<Incoming>,
        caller: &UserInfo,
    ) -> Result<Option<UserInfo>, Status> {
        let requested = match inbound::parse(request.headers()) {
            Ok(Some(requested)) => requested,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Status::bad_request(e.to_string())),
        };
        identity::authorize_impersonation(
            self.identity.reviewer.as_deref(),
            caller,
            &requested,
            &self.identity.settings.extra_user_headers,
        )
        .await
        .map(Some)
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        outbound: Outbound,
        context: &RequestContext,
        outcome: &mut Outcome,
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
        // The client's impersonation request travels on only with its own token, for the API
        // server to authorize for that token's identity.
        let client_impersonation: Vec<(http::HeaderName, HeaderValue)> = match &outbound {
            Outbound::CallerToken(_) => parts
                .headers
                .iter()
                .filter(|(name, _)| name.as_str().starts_with("impersonate-"))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            Outbound::Impersonate(_) => Vec::new(),
        };
        // Strip first, then set: nothing the client sent can remove or alter what follows.
        headers::strip_client_headers(&mut parts.headers, is_upgrade);
        let upstream = match &outbound {
            Outbound::Impersonate(user) => {
                if let Err(e) = set_impersonation_headers(&mut parts.headers, user) {
                    tracing::info!(uri = %context.uri, error = %e, "user cannot be impersonated");
                    return status_response(Status::unauthorized());
                }
                &self.upstream
            }
            Outbound::CallerToken(token) => {
                // Never the proxy's credentials with the caller's token, and never no token.
                let Some(upstream) = &self.identity.caller_upstream else {
                    tracing::error!("no upstream client without credentials is configured");
                    return status_response(Status::internal("the proxy is misconfigured"));
                };
                let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
                    return status_response(Status::unauthorized());
                };
                parts.headers.insert(header::AUTHORIZATION, value);
                for (name, value) in client_impersonation {
                    parts.headers.append(name, value);
                }
                upstream
            }
        };
        // The client's address by the --trusted-proxies rule: without trusted proxies the TCP
        // peer, the only source the proxy can vouch for (a client-written X-Forwarded-For would
        // be spoofable in the API server's audit `sourceIPs`).
        if let Ok(value) = HeaderValue::from_str(&context.client_ip.to_string()) {
            parts.headers.insert("x-forwarded-for", value);
        }
        // The API server's own audit event gets the same ID as the proxy's (kube-apiserver takes
        // a request's `Audit-ID` as its own), so the two logs join on `auditID`.
        if let Some(facts) = &outcome.audit_facts {
            if let Ok(id) = HeaderValue::from_str(&facts.audit_id) {
                parts.headers.insert(AUDIT_ID, id);
            }
        }
        let body = match outcome.audit.as_ref().filter(|a| a.wants_request_body()) {
            Some(_) => {
                let (body, captured) =
                    ObservedBody::capturing(boxed(body), MAX_AUDITED_OBJECT_BYTES);
                outcome.request_body = Some(captured);
                boxed(body)
            }
            None => boxed(body),
        };
        let mut upstream_request = Request::new(body);
        *upstream_request.method_mut() = parts.method;
        *upstream_request.uri_mut() = target;
        *upstream_request.headers_mut() = parts.headers;
        if is_upgrade {
            *upstream_request.version_mut() = http::Version::HTTP_11;
        }

        let route = if is_upgrade {
            Route::Upgrade
        } else {
            Route::for_request(&context.uri)
        };
        let sent = Instant::now();
        let response = match upstream.send(upstream_request, route).await {
            Ok(response) => response,
            Err(e) => return upstream_error_response(e, &context.uri),
        };
        self.metrics.upstream(context.verb, sent.elapsed());

        if let Some(client_upgrade) = client_upgrade {
            let mut audit = outcome.audit.take();
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(audit) = audit.as_mut() {
                    audit.response_started(StatusCode::SWITCHING_PROTOCOLS.as_u16());
                }
            } else {
                // An ordinary answer: audited like any response.
                outcome.audit = audit.take();
            }
            let on_close = move || {
                if let Some(audit) = audit {
                    audit.complete(completion(
                        StatusCode::SWITCHING_PROTOCOLS.as_u16(),
                        None,
                        None,
                    ));
                }
            };
            return upgrade::finish(response, client_upgrade, &self.metrics, on_close);
        }
        let (mut parts, body) = response.into_parts();
        headers::strip_response_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, body)
    }
}

/// The request's path and query as received (`/` when it has none).
fn path_and_query<B>(request: &Request<B>) -> String {
    request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}

/// What every audit event of a request carries, read before authentication.
fn audit_facts(
    request: &Request<Incoming>,
    info: RequestInfo,
    peer: SocketAddr,
    client_ip: IpAddr,
) -> RequestFacts {
    let mut source_ips = vec![client_ip.to_string()];
    if client_ip != peer.ip() {
        source_ips.push(peer.ip().to_string());
    }
    RequestFacts {
        audit_id: Auditor::new_audit_id(),
        request_uri: path_and_query(request),
        info,
        source_ips,
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        received: SystemTime::now(),
    }
}

/// What `ResponseComplete` records of the bodies' bounded copies.
fn completion(
    code: u16,
    request_body: Option<Captured>,
    response_body: Option<Captured>,
) -> Completion {
    let request = request_body.as_ref().map(Captured::bytes);
    let response = response_body.as_ref().map(Captured::bytes);
    Completion {
        code,
        request_body_too_large: matches!(request, Some(None)),
        request_body: request.flatten(),
        response_body_too_large: matches!(response, Some(None)),
        response_body: response.flatten(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<F: Future>(
        _: impl Fn(&'static Proxy, Request<Incoming>, SocketAddr) -> F,
    ) -> usize {
        size_of::<F>()
    }

    /// Every request in flight holds this state, so rare paths with large futures (TokenReview,
    /// SubjectAccessReview clients) are boxed rather than inlined into it.
    #[test]
    fn the_request_pipeline_state_stays_small() {
        let size = future_size(Proxy::handle);
        assert!(size <= 5 * 1024, "Proxy::handle's future is {size} bytes");
    }
}
