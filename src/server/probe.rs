//! The plain-HTTP probe listener (`-P/--readiness-probe-port`, default 8080).
//!
//! - `/ready`, `/readyz`: 200 only while the secure listener serves and the issuer's keys are
//!   loaded and fresh; 503 with the reason otherwise (and from the moment shutdown begins, so
//!   load balancers stop sending new requests).
//! - `/live`, `/healthz`: 200 while the process runs its event loop.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::stopped;
use crate::authn::issuer::IssuerHealth;
use crate::authn::oidc::JwtAuthenticator;

/// What readiness depends on.
pub struct Readiness {
    serving: AtomicBool,
    authenticator: Arc<JwtAuthenticator>,
}

impl Readiness {
    /// Not serving until [`Readiness::set_serving`] says so.
    pub fn new(authenticator: Arc<JwtAuthenticator>) -> Self {
        Self {
            serving: AtomicBool::new(false),
            authenticator,
        }
    }

    /// Marks the secure listener as serving (true) or draining (false).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    /// `Ok` when ready, else the reason.
    pub fn check(&self) -> Result<(), String> {
        if !self.serving.load(Ordering::SeqCst) {
            return Err("secure serving is not running".into());
        }
        match self.authenticator.health() {
            IssuerHealth::Healthy => Ok(()),
            IssuerHealth::NotLoaded(why) => Err(format!(
                "issuer {}: keys not loaded: {why}",
                self.authenticator.issuer().url()
            )),
            IssuerHealth::Stale(why) => Err(format!(
                "issuer {}: keys stale: {why}",
                self.authenticator.issuer().url()
            )),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Answers one probe request.
pub fn respond<B>(readiness: &Readiness, request: &Request<B>) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/ready" | "/readyz" => match readiness.check() {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/live" | "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".into()),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Serves probes until `shutdown` turns true.
pub async fn serve_probes(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            _ = stopped(&mut shutdown) => return,
        };
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&readiness, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
