//! The plain-HTTP probe listener (`-P/--readiness-probe-port`, default 8080).
//!
//! - `/ready`, `/readyz`: 200 only while the secure listener serves and the issuers' keys are
//!   loaded and fresh — every issuer's by default, any one's with `--readiness-issuers=any`;
//!   503 with the reason and every issuer's state otherwise (and from the moment shutdown
//!   begins, so load balancers stop sending new requests). kube-apiserver's `/readyz` does not
//!   wait for its OIDC issuers; the Go proxy's `/ready` waits for its one issuer, and so does
//!   this one, for each.
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
use crate::authn::authenticators::{Authenticators, IssuerStatus};
use crate::authn::issuer::IssuerHealth;

/// Which issuers must have fresh keys for the proxy to be ready (`--readiness-issuers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssuerReadiness {
    /// Every configured issuer (the default): a proxy that cannot admit some of its users is
    /// not ready.
    #[default]
    All,
    /// At least one issuer: for proxies whose issuers may be down independently.
    Any,
}

/// What readiness depends on.
pub struct Readiness {
    serving: AtomicBool,
    authenticators: Arc<Authenticators>,
    policy: IssuerReadiness,
}

impl Readiness {
    /// Not serving until [`Readiness::set_serving`] says so.
    pub fn new(authenticators: Arc<Authenticators>, policy: IssuerReadiness) -> Self {
        Self {
            serving: AtomicBool::new(false),
            authenticators,
            policy,
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
        let issuers = self.authenticators.health();
        let healthy = issuers
            .iter()
            .filter(|status| status.health == IssuerHealth::Healthy)
            .count();
        let ready = match self.policy {
            IssuerReadiness::All => healthy == issuers.len(),
            IssuerReadiness::Any => healthy > 0,
        };
        if ready {
            return Ok(());
        }
        let policy = match self.policy {
            IssuerReadiness::All => "all",
            IssuerReadiness::Any => "any",
        };
        let mut reason = format!(
            "{healthy} of {} issuers have fresh keys (--readiness-issuers={policy})",
            issuers.len()
        );
        for status in &issuers {
            reason.push('\n');
            reason.push_str(&describe(status));
        }
        Err(reason)
    }
}

/// One issuer's line in the readiness body.
fn describe(status: &IssuerStatus) -> String {
    match &status.health {
        IssuerHealth::Healthy => format!("issuer {}: ok", status.issuer),
        IssuerHealth::NotLoaded(why) => format!("issuer {}: keys not loaded: {why}", status.issuer),
        IssuerHealth::Stale(why) => format!("issuer {}: keys stale: {why}", status.issuer),
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
