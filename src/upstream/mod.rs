//! The API server client: where requests go, with which credentials, over which connections.
//!
//! Configuration is kubectl's: in-cluster (the ServiceAccount token file is re-read as it
//! rotates, through kube's `RefreshableToken`) unless a kubeconfig or any client flag is given.
//! Requests are proxied through our own hyper client rather than `kube::Client`, whose bodies
//! cannot stream and whose retry layer would re-send requests (rust-ecosystem.md §2.4); kube
//! supplies the TLS configuration and the credential layer.
//!
//! Three routes ([`Route`]): ordinary requests, and apart from them watches and followed logs,
//! travel on HTTP/2 connections of a bounded number of streams each ([`lanes`]) when the API
//! server offers HTTP/2, on one pool of HTTP/1.1 connections when it does not; upgrade requests (exec, attach, port-forward) always use HTTP/1.1 on a
//! dedicated connection that is never pooled, so nothing else can ever travel on a connection a
//! client tried to upgrade (k8s-semantics §4.3, §5.1).
//!
//! [`Upstream::without_credentials`] is the same client without any of the proxy's credentials,
//! for requests that carry the caller's own token (`--token-passthrough`,
//! `--disable-impersonation`); [`review`] asks the API server's review APIs.

mod lanes;
pub mod review;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tower::util::BoxCloneSyncService;
use tower::{Service as _, ServiceBuilder, ServiceExt};

/// Errors of any body or service in the pipeline.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A streaming body, inbound or outbound.
pub type Body = BoxBody<Bytes, BoxError>;

/// The kubectl-style client flags; all empty means in-cluster configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOverrides {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    pub server: Option<String>,
    pub certificate_authority: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub token: Option<String>,
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
}

impl ClientOverrides {
    /// True when no client flag was given (the Go proxy's `ClientFlagsChanged` is false).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Upstream settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub overrides: ClientOverrides,
    /// Bound on waiting for the API server's response headers; `None` = no bound.
    pub request_timeout: Option<Duration>,
}

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    #[error("in-cluster configuration (no client flag given): {0}")]
    InCluster(String),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("--certificate-authority {path}: {reason}")]
    CertificateAuthority { path: PathBuf, reason: String },
    #[error("--server: {0}")]
    Server(String),
    #[error("API server client: {0}")]
    Client(String),
}

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting or the TLS handshake failed, or the connection broke before a response.
    #[error("API server unreachable: {0}")]
    Unreachable(String),
    /// No response headers within `--request-timeout`.
    #[error("API server did not answer within {0:?}")]
    Timeout(Duration),
}

type Service = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;
type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send + 'static>>;

/// Which connections a request travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Short requests: multiplexed over HTTP/2 connections ([`lanes`]) when the API server
    /// offers it.
    Multiplexed,
    /// Watches and followed logs: HTTP/2 connections of their own, each carrying a bounded
    /// number of streams ([`lanes`]). On the multiplexed connection they would starve every
    /// other request once the server's `MAX_CONCURRENT_STREAMS` are open: hyper's client queues
    /// beyond it rather than opening another connection. Pooled HTTP/1.1 connections, one per
    /// request, when the API server does not speak HTTP/2.
    LongRunning,
    /// Upgrades: a dedicated, never-pooled HTTP/1.1 connection.
    Upgrade,
}

impl Route {
    /// The route of an ordinary (non-upgrade) request, by kube-apiserver's long-running rules:
    /// `watch=true|1`, `follow=true|1` (logs) or a legacy `/watch/` path.
    pub fn for_request(path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let flag_set = query.split('&').any(|pair| {
            matches!(
                pair.split_once('='),
                Some(("watch" | "follow", "true" | "1"))
            )
        });
        if flag_set || path.contains("/watch/") {
            Self::LongRunning
        } else {
            Self::Multiplexed
        }
    }
}

/// How long the readiness check waits for the API server.
pub const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled client for the API server with the proxy's own credentials attached.
#[derive(Clone)]
pub struct Upstream {
    base: Uri,
    service: Service,
    long_running_service: Service,
    upgrade_service: Service,
    request_timeout: Option<Duration>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Builds kube's client configuration from the flags.
pub async fn kube_config(overrides: &ClientOverrides) -> Result<kube::Config, UpstreamConfigError> {
    if overrides.is_empty() {
        return kube::Config::incluster()
            .map_err(|e| UpstreamConfigError::InCluster(e.to_string()));
    }
    let options = KubeConfigOptions {
        context: overrides.context.clone(),
        cluster: overrides.cluster.clone(),
        user: overrides.user.clone(),
    };
    let uses_kubeconfig = overrides.kubeconfig.is_some()
        || overrides.context.is_some()
        || overrides.cluster.is_some()
        || overrides.user.is_some()
        || overrides.server.is_none();
    let mut config = if let Some(path) = &overrides.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path)
            .map_err(|e| UpstreamConfigError::Kubeconfig(format!("{}: {e}", path.display())))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| UpstreamConfigError::Kubeconfig(format!("{}: {e}", path.display())))?
    } else if uses_kubeconfig {
        kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| UpstreamConfigError::Kubeconfig(e.to_string()))?
    } else {
        let server = overrides.server.as_deref().unwrap_or_default();
        kube::Config::new(server.parse().map_err(|e: http::uri::InvalidUri| {
            UpstreamConfigError::Server(format!("{server:?}: {e}"))
        })?)
    };
    if let Some(server) = &overrides.server {
        config.cluster_url = server.parse().map_err(|e: http::uri::InvalidUri| {
            UpstreamConfigError::Server(format!("{server:?}: {e}"))
        })?;
    }
    if let Some(path) = &overrides.certificate_authority {
        let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
            .and_then(|iter| {
                iter.map(|c| c.map(|c| c.to_vec()))
                    .collect::<Result<_, _>>()
            })
            .map_err(|e| UpstreamConfigError::CertificateAuthority {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(UpstreamConfigError::CertificateAuthority {
                path: path.clone(),
                reason: "no PEM certificate found".into(),
            });
        }
        config.root_cert = Some(certs);
        config.root_cert_file = None;
    }
    if let (Some(cert), Some(key)) = (&overrides.client_certificate, &overrides.client_key) {
        config.auth_info.client_certificate = Some(cert.display().to_string());
        config.auth_info.client_certificate_data = None;
        config.auth_info.client_key = Some(key.display().to_string());
        config.auth_info.client_key_data = None;
    }
    if let Some(token) = &overrides.token {
        config.auth_info.token = Some(secrecy::SecretString::from(token.clone()));
        config.auth_info.token_file = None;
    }
    if let Some(name) = &overrides.tls_server_name {
        config.tls_server_name = Some(name.clone());
    }
    if overrides.insecure_skip_tls_verify {
        config.accept_invalid_certs = true;
    }
    Ok(config)
}

/// The TLS connector to the API server, offering `h2` by ALPN only when `http2`.
fn connector(
    config: &kube::Config,
    http2: bool,
) -> Result<HttpsConnector<HttpConnector>, UpstreamConfigError> {
    let client_err = |e: &dyn std::fmt::Display| UpstreamConfigError::Client(e.to_string());
    let mut tls = config.rustls_client_config().map_err(|e| client_err(&e))?;
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    http.set_nodelay(true);
    // TCP keep-alive as client-go's dialer (30 s): an idle exec or port-forward session keeps
    // its connection through NATs and load balancers that drop silent flows.
    http.set_keepalive(Some(Duration::from_secs(30)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
                name.clone()
                    .try_into()
                    .map_err(|e: rustls_pki_types::InvalidDnsNameError| client_err(&e))?,
            ))
        }
        None => builder,
    };
    Ok(if http2 {
        builder.enable_all_versions().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    })
}

/// A hyper client over `connector`; `pooled: false` never reuses a connection.
fn client(
    connector: HttpsConnector<HttpConnector>,
    pooled: bool,
) -> Client<HttpsConnector<HttpConnector>, Body> {
    let mut client = Client::builder(TokioExecutor::new());
    // Redirects are never followed: this client has no redirect logic at all.
    client.timer(hyper_util::rt::TokioTimer::new());
    if !pooled {
        client.pool_max_idle_per_host(0);
    }
    client.build(connector)
}

/// `service` with the credentials of `config` attached to every request.
fn with_credentials<S>(config: &kube::Config, service: S) -> Result<Service, UpstreamConfigError>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let auth = config
        .auth_layer()
        .map_err(|e| UpstreamConfigError::Client(e.to_string()))?;
    // Errors are boxed before the credential layer, whose refreshing variant fails with BoxError.
    let service = ServiceBuilder::new()
        .option_layer(auth)
        .service(service.map_err(Into::into));
    Ok(BoxCloneSyncService::new(service))
}

/// A response with its body boxed.
fn boxed_response(response: Response<hyper::body::Incoming>) -> Response<Body> {
    response.map(crate::proxy::boxed)
}

impl Upstream {
    /// Builds the three routes' pools from kube's configuration.
    pub fn new(
        config: &kube::Config,
        request_timeout: Option<Duration>,
    ) -> Result<Self, UpstreamConfigError> {
        let http2 = connector(config, true)?;
        let http1 = connector(config, false)?;
        // Without HTTP/2 upstream, both lane sets fall back to one HTTP/1.1 pool: a connection
        // carries one request at a time there, so watches cannot starve short requests in it.
        let http1_pool = client(http1.clone(), true);
        let short = lanes::Lanes::new(http2.clone(), http1_pool.clone());
        let long_running = lanes::Lanes::new(http2, http1_pool);
        Ok(Self {
            base: config.cluster_url.clone(),
            service: with_credentials(config, short)?,
            long_running_service: with_credentials(config, long_running)?,
            upgrade_service: with_credentials(
                config,
                client(http1, false).map_response(boxed_response),
            )?,
            request_timeout,
        })
    }

    /// The same API server, TLS roots and options, with none of the proxy's credentials: no
    /// token, no client certificate, no exec plugin, no impersonation from the kubeconfig. For
    /// requests that carry the caller's own `Authorization`, which must reach the API server as
    /// the only credential.
    pub fn without_credentials(
        config: &kube::Config,
        request_timeout: Option<Duration>,
    ) -> Result<Self, UpstreamConfigError> {
        let mut config = config.clone();
        config.auth_info = kube::config::AuthInfo::default();
        Self::new(&config, request_timeout)
    }

    /// The API server's URL.
    pub fn base(&self) -> &Uri {
        &self.base
    }

    /// The upstream URI for a request's path and query, kept exactly as received (a path
    /// prefix in the server URL, e.g. Rancher's `/k8s/clusters/c-x`, is kept in front).
    pub fn target(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let prefix = self.base.path().trim_end_matches('/');
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(format!("{prefix}{path_and_query}").parse()?);
        Ok(Uri::from_parts(parts)?)
    }

    /// Whether the API server answers the proxy: `GET /readyz` with the proxy's credentials
    /// within [`REACHABILITY_TIMEOUT`]. Any answer but a 401 (the proxy's credentials are
    /// refused) or a 5xx counts; kube-apiserver lets every authenticated user read `/readyz`
    /// (ClusterRole `system:public-info-viewer`).
    pub async fn check_reachable(&self) -> Result<(), String> {
        let target = self.target("/readyz").map_err(|e| e.to_string())?;
        let request = Request::get(target)
            .body(crate::proxy::boxed(http_body_util::Empty::new()))
            .map_err(|e| e.to_string())?;
        let answer =
            tokio::time::timeout(REACHABILITY_TIMEOUT, self.send(request, Route::Multiplexed))
                .await
                .map_err(|_| format!("no answer within {REACHABILITY_TIMEOUT:?}"))?;
        let status = answer.map_err(|e| e.to_string())?.status();
        if status == http::StatusCode::UNAUTHORIZED {
            Err("the API server refuses the proxy's credentials (401)".into())
        } else if status.is_server_error() {
            Err(format!("GET /readyz answered {status}"))
        } else {
            Ok(())
        }
    }

    /// Sends a request with the proxy's credentials on the connections of `route`.
    /// `--request-timeout` bounds the wait for response headers only.
    pub fn send(
        &self,
        request: Request<Body>,
        route: Route,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Body>, UpstreamError>> + Send + 'static>> {
        // A boxed 'static future: it keeps the pipeline's futures provably `Send` (rustc cannot
        // prove it through the boxed tower service for every lifetime otherwise).
        let mut service = match route {
            Route::Multiplexed => self.service.clone(),
            Route::LongRunning => self.long_running_service.clone(),
            Route::Upgrade => self.upgrade_service.clone(),
        };
        let request_timeout = self.request_timeout;
        Box::pin(async move {
            let call = async {
                std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                let response: ResponseFuture = service.call(request);
                response.await
            };
            let result = match request_timeout {
                Some(limit) => tokio::time::timeout(limit, call)
                    .await
                    .map_err(|_| UpstreamError::Timeout(limit))?,
                None => call.await,
            };
            result.map_err(|e| {
                UpstreamError::Unreachable(crate::authn::issuer::error_chain(e.as_ref()))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn long_running_requests_avoid_the_multiplexed_connection() {
        for long in [
            "/api/v1/namespaces/a/configmaps?watch=true",
            "/api/v1/namespaces/a/configmaps?resourceVersion=1&watch=1",
            "/api/v1/watch/namespaces/a/pods",
            "/api/v1/namespaces/a/pods/p/log?follow=true&container=c",
        ] {
            assert_eq!(Route::for_request(long), Route::LongRunning, "{long}");
        }
        for short in [
            "/api/v1/namespaces/a/configmaps",
            "/api/v1/namespaces/a/configmaps?watch=false",
            "/api/v1/namespaces/a/pods/p/log",
            "/apis/apps/v1/namespaces/watch",
        ] {
            assert_eq!(Route::for_request(short), Route::Multiplexed, "{short}");
        }
    }
}
