//! The plain-HTTP probe listener (`-P/--readiness-probe-port`, default 8080).
//!
//! - `/ready`, `/readyz`: 200 only while the secure listener serves and the issuers' keys are
//!   loaded and fresh — every issuer's by default, any one's with `--readiness-issuers=any`;
//!   503 with the reason and every issuer's state otherwise (and from the moment shutdown
//!   begins, so load balancers stop sending new requests). kube-apiserver's `/readyz` does not
//!   wait for its OIDC issuers; the Go proxy's `/ready` waits for its one issuer, and so does
//!   this one, for each.
//!   The API server must answer too (checked every few seconds in the background, see
//!   [`UpstreamHealth`]): a proxy that cannot reach it cannot serve
//!   (`--readiness-upstream=reported` only lists it).
//!   `?verbose` lists every check as kube-apiserver's `/readyz?verbose` does.
//! - `/live`, `/healthz`, `/livez`: 200 while the process runs its event loop.
//! - `/metrics`: Prometheus metrics (see `crate::observe::metrics`).

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

use std::time::Duration;

use arc_swap::ArcSwap;

use super::stopped;
use crate::authn::authenticators::Authenticators;
use crate::authn::issuer::IssuerHealth;
use crate::observe::metrics::Metrics;
use crate::upstream::Upstream;

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
    upstream: Option<Arc<UpstreamHealth>>,
    /// Whether a failing `upstream` check makes the proxy unready (`--readiness-upstream`).
    upstream_required: bool,
}

/// One named readiness check and its result, as kube-apiserver's `/readyz?verbose` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub result: Result<(), String>,
}

impl Readiness {
    /// Not serving until [`Readiness::set_serving`] says so.
    pub fn new(authenticators: Arc<Authenticators>, policy: IssuerReadiness) -> Self {
        Self {
            serving: AtomicBool::new(false),
            authenticators,
            policy,
            upstream: None,
            upstream_required: false,
        }
    }

    /// Reports whether the API server answers (see [`UpstreamHealth`]); when `required`, the
    /// proxy is not ready while it does not.
    pub fn with_upstream(mut self, upstream: Arc<UpstreamHealth>, required: bool) -> Self {
        self.upstream = Some(upstream);
        self.upstream_required = required;
        self
    }

    /// Marks the secure listener as serving (true) or draining (false).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    /// Every check in order: `serving`, one `issuer:<url>` per issuer, `upstream`. Issuer
    /// checks fail individually; whether that makes the proxy unready depends on
    /// `--readiness-issuers` (see [`Readiness::check`]).
    pub fn checks(&self) -> Vec<Check> {
        let mut checks = vec![Check {
            name: "serving".into(),
            result: if self.serving.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("secure serving is not running".into())
            },
        }];
        for status in self.authenticators.health() {
            checks.push(Check {
                name: format!("issuer:{}", status.issuer),
                result: match status.health {
                    IssuerHealth::Healthy => Ok(()),
                    IssuerHealth::NotLoaded(why) => Err(format!("keys not loaded: {why}")),
                    IssuerHealth::Stale(why) => Err(format!("keys stale: {why}")),
                },
            });
        }
        if let Some(upstream) = &self.upstream {
            checks.push(Check {
                name: "upstream".into(),
                result: upstream.state(),
            });
        }
        checks
    }

    /// `Ok` when ready, else the reason.
    pub fn check(&self) -> Result<(), String> {
        self.decide(&self.checks())
    }

    fn decide(&self, checks: &[Check]) -> Result<(), String> {
        let failed = |prefix: &str| {
            checks
                .iter()
                .find(|c| c.name.starts_with(prefix) && c.result.is_err())
        };
        if let Some(serving) = failed("serving") {
            return Err(serving.result.clone().unwrap_err());
        }
        let issuers: Vec<&Check> = checks
            .iter()
            .filter(|c| c.name.starts_with("issuer:"))
            .collect();
        let healthy = issuers.iter().filter(|c| c.result.is_ok()).count();
        let ready = match self.policy {
            IssuerReadiness::All => healthy == issuers.len(),
            IssuerReadiness::Any => healthy > 0,
        };
        if !ready {
            let policy = match self.policy {
                IssuerReadiness::All => "all",
                IssuerReadiness::Any => "any",
            };
            let mut reason = format!(
                "{healthy} of {} issuers have fresh keys (--readiness-issuers={policy})",
                issuers.len()
            );
            for check in &issuers {
                reason.push('\n');
                reason.push_str(&describe(check));
            }
            return Err(reason);
        }
        if let Some(upstream) = failed("upstream").filter(|_| self.upstream_required) {
            return Err(format!(
                "API server: {}",
                upstream.result.clone().unwrap_err()
            ));
        }
        Ok(())
    }
}

/// One issuer's line in the readiness body.
fn describe(check: &Check) -> String {
    let issuer = check.name.trim_start_matches("issuer:");
    match &check.result {
        Ok(()) => format!("issuer {issuer}: ok"),
        Err(why) => format!("issuer {issuer}: {why}"),
    }
}

/// Whether the API server answers the proxy, checked in the background (a probe must answer
/// at once, and load balancers probe often).
#[derive(Debug)]
pub struct UpstreamHealth {
    state: ArcSwap<Result<(), String>>,
}

impl Default for UpstreamHealth {
    fn default() -> Self {
        Self {
            state: ArcSwap::from_pointee(Err("not checked yet".into())),
        }
    }
}

impl UpstreamHealth {
    /// The last result.
    pub fn state(&self) -> Result<(), String> {
        self.state.load().as_ref().clone()
    }

    /// Records a result.
    pub fn set(&self, result: Result<(), String>) {
        let changed = *self.state.load().as_ref() != result;
        if changed {
            match &result {
                Ok(()) => tracing::info!("API server reachable"),
                Err(why) => tracing::warn!(reason = %why, "API server not reachable"),
            }
        }
        self.state.store(Arc::new(result));
    }

    /// Checks the API server every `interval` until the task is dropped.
    pub async fn run(self: Arc<Self>, upstream: Upstream, interval: Duration) {
        loop {
            self.set(upstream.check_reachable().await);
            tokio::time::sleep(interval).await;
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

/// Whether the query asks for the check list (`?verbose`, `?verbose=true`, `?verbose=1`).
fn verbose(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| {
            matches!(
                pair.split_once('=').unwrap_or((pair, "")),
                ("verbose", "" | "true" | "1")
            )
        })
    })
}

/// kube-apiserver's verbose health body: one `[+]name ok` or `[-]name failed: reason` line per
/// check, then `<endpoint> check passed|failed`.
fn verbose_body(endpoint: &str, checks: &[Check], passed: bool) -> String {
    let mut body = String::new();
    for check in checks {
        match &check.result {
            Ok(()) => body.push_str(&format!("[+]{} ok\n", check.name)),
            Err(why) => body.push_str(&format!(
                "[-]{} failed: {}\n",
                check.name,
                why.replace('\n', " ")
            )),
        }
    }
    let outcome = if passed { "passed" } else { "failed" };
    body.push_str(&format!("{endpoint} check {outcome}\n"));
    body
}

/// Answers one probe request.
pub fn respond<B>(readiness: &Readiness, request: &Request<B>) -> Response<Full<Bytes>> {
    respond_with(readiness, None, request)
}

/// Answers one probe request, `/metrics` included when `metrics` is given.
pub fn respond_with<B>(
    readiness: &Readiness,
    metrics: Option<&Metrics>,
    request: &Request<B>,
) -> Response<Full<Bytes>> {
    let verbose = verbose(request.uri().query());
    match request.uri().path() {
        path @ ("/ready" | "/readyz") => {
            let checks = readiness.checks();
            let decision = readiness.decide(&checks);
            let status = if decision.is_ok() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = match (verbose, decision) {
                (true, decision) => {
                    verbose_body(path.trim_start_matches('/'), &checks, decision.is_ok())
                }
                (false, Ok(())) => "ok\n".into(),
                (false, Err(why)) => format!("not ready: {why}\n"),
            };
            text(status, body)
        }
        path @ ("/live" | "/healthz" | "/livez") => {
            let body = if verbose {
                let ping = [Check {
                    name: "ping".into(),
                    result: Ok(()),
                }];
                verbose_body(path.trim_start_matches('/'), &ping, true)
            } else {
                "ok\n".into()
            };
            text(StatusCode::OK, body)
        }
        "/metrics" if metrics.is_some() => {
            let mut response = text(
                StatusCode::OK,
                metrics.map(Metrics::render).unwrap_or_default(),
            );
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(crate::observe::metrics::CONTENT_TYPE),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Serves probes until `shutdown` turns true.
pub async fn serve_probes(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    metrics: Option<Arc<Metrics>>,
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
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond_with(&readiness, metrics.as_deref(), &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
