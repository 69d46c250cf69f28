//! One OIDC issuer's signing keys: discovery document, JWKS, refresh.
//!
//! Discovery follows kube-apiserver (k8s-semantics §1.5): `GET <issuer>/.well-known/openid-configuration`
//! (or the configured `discoveryURL` instead), whose `issuer` must equal the configured URL byte
//! for byte, then `jwks_uri`. TLS trusts the configured `certificateAuthority` (PEM) or else the
//! host's roots. Deliberate
//! differences, both stricter or safer:
//! - an unknown `kid` triggers a refetch whatever the JWKS cache headers say (go-oidc v2 would wait
//!   for the cached set to expire), but at most one fetch runs at a time per issuer and forced
//!   refetches are rate-limited (`MIN_FORCED_REFRESH_INTERVAL`), so a stream of forged `kid`s cannot
//!   turn the proxy into a load generator against the issuer;
//! - `jwks_uri` must be https, like the issuer itself.
//!
//! Keys are swapped whole (`ArcSwap`); readers never wait on a refresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::jwk::JwkSet;

/// kube-apiserver's OIDC HTTP client gives up after 30 s.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Discovery documents and JWKS larger than this are refused (bounded memory).
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// kube-apiserver retries a failed initial discovery every 10 s.
pub const INITIAL_RETRY_INTERVAL: Duration = Duration::from_secs(10);
/// A forced refetch (unknown `kid`) happens at most this often per issuer.
pub const MIN_FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Periodic refresh when the JWKS response carries no usable `Cache-Control: max-age`.
const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Keys not refreshed successfully for this long make the proxy unready (they are still used).
const MIN_KEY_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Why the issuer's keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The certificate authority is not a PEM bundle of certificates.
    #[error("certificate authority: {0}")]
    CertificateAuthority(String),
    /// The host's root CAs could not be loaded.
    #[error("loading system root CAs: {0}")]
    SystemRoots(String),
    /// An HTTP request failed or timed out.
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
    /// The response was not 200.
    #[error("GET {url}: unexpected status {status}")]
    Status { url: String, status: u16 },
    /// The discovery document is not what OIDC discovery requires.
    #[error("discovery document from {url}: {reason}")]
    Discovery { url: String, reason: String },
    /// The discovery document names another issuer.
    #[error("oidc: issuer did not match the issuer returned by provider, expected {expected:?} got {got:?}")]
    IssuerMismatch { expected: String, got: String },
    /// The JWKS document could not be parsed.
    #[error("JWKS from {url}: {reason}")]
    Jwks { url: String, reason: String },
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

/// The keys of one fetch.
#[derive(Debug)]
pub struct KeySnapshot {
    pub keys: Arc<JwkSet>,
    pub fetched_at: Instant,
    /// How long the issuer said the set may be cached.
    pub refresh_interval: Duration,
}

/// Health of the issuer as readiness reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerHealth {
    /// Keys loaded and refreshed within their lifetime.
    Healthy,
    /// Keys never loaded yet.
    NotLoaded(String),
    /// Keys loaded but not refreshable for longer than their lifetime.
    Stale(String),
}

/// An OIDC issuer and its current signing keys.
pub struct Issuer {
    settings: IssuerSettings,
    issuer_url: String,
    discovery_url: String,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    snapshot: ArcSwapOption<KeySnapshot>,
    /// Single flight: one discovery+JWKS fetch at a time. Holds when the last *forced*
    /// (unknown `kid`) refresh happened, for the rate limit.
    fetch_lock: Mutex<Option<Instant>>,
    last_error: ArcSwapOption<String>,
    fetches_succeeded: AtomicU64,
    fetches_failed: AtomicU64,
}

/// Counters of an issuer's key fetches, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchCounts {
    /// Discovery + JWKS fetches that installed keys.
    pub succeeded: u64,
    /// Fetches that failed (the old keys kept serving).
    pub failed: u64,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer_url", &self.issuer_url)
            .finish_non_exhaustive()
    }
}

/// Where an issuer is and how to reach it: the parts of its configuration that its keys depend
/// on. Two authenticators with equal settings can share one [`Issuer`] (and its keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssuerSettings {
    /// `issuer.url`: must equal the token's `iss` and the discovery document's `issuer`.
    pub url: String,
    /// `issuer.discoveryURL`: fetched instead of `<url>/.well-known/openid-configuration`.
    pub discovery_url: Option<String>,
    /// `issuer.certificateAuthority`: PEM certificates trusted for the issuer's TLS instead of
    /// the host's roots (`--oidc-ca-file`'s content on the flag path).
    pub certificate_authority: Option<String>,
}

impl IssuerSettings {
    /// Settings for `url` with discovery at its well-known path and the host's roots.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            discovery_url: None,
            certificate_authority: None,
        }
    }
}

/// The certificates of a PEM bundle; at least one, every one parsable as X.509 by rustls
/// (kube: `cert.NewPoolFromBytes`).
pub fn parse_certificate_authority(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in &certs {
        roots.add(cert.clone()).map_err(|e| e.to_string())?;
    }
    Ok(certs)
}

fn root_store(certificate_authority: Option<&str>) -> Result<rustls::RootCertStore, IssuerError> {
    let mut roots = rustls::RootCertStore::empty();
    match certificate_authority {
        Some(pem) => {
            let certs =
                parse_certificate_authority(pem).map_err(IssuerError::CertificateAuthority)?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| IssuerError::CertificateAuthority(e.to_string()))?;
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            if loaded.certs.is_empty() {
                return Err(IssuerError::SystemRoots(format!("{:?}", loaded.errors)));
            }
            let (_added, _ignored) = roots.add_parsable_certificates(loaded.certs);
        }
    }
    Ok(roots)
}

fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|directive| directive.trim().strip_prefix("max-age="))
        .filter_map(|secs| secs.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .next()
}

impl Issuer {
    /// Prepares an issuer; no network traffic happens until [`Issuer::refresh`].
    pub fn new(settings: &IssuerSettings) -> Result<Self, IssuerError> {
        let roots = root_store(settings.certificate_authority.as_deref())?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| IssuerError::SystemRoots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let issuer_url = settings.url.clone();
        // kube: `discoveryURL` replaces exactly the discovery GET; otherwise go-oidc's
        // `TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"`.
        let discovery_url = settings.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                issuer_url.trim_end_matches('/')
            )
        });
        Ok(Self {
            settings: settings.clone(),
            issuer_url,
            discovery_url,
            client,
            snapshot: ArcSwapOption::empty(),
            fetch_lock: Mutex::new(None),
            fetches_succeeded: AtomicU64::new(0),
            fetches_failed: AtomicU64::new(0),
            last_error: ArcSwapOption::empty(),
        })
    }

    /// The configured issuer URL.
    pub fn url(&self) -> &str {
        &self.issuer_url
    }

    /// The settings this issuer was built from.
    pub fn settings(&self) -> &IssuerSettings {
        &self.settings
    }

    /// The current keys, if any were ever loaded.
    pub fn keys(&self) -> Option<Arc<JwkSet>> {
        self.snapshot.load().as_ref().map(|s| s.keys.clone())
    }

    async fn get(&self, url: &str) -> Result<(http::HeaderMap, Bytes), IssuerError> {
        let http_err = |reason: String| IssuerError::Http {
            url: url.to_string(),
            reason,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| http_err(e.to_string()))?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| http_err(e.to_string()))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| http_err(error_chain(&e)))?;
            let status = response.status();
            if status != http::StatusCode::OK {
                return Err(IssuerError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                });
            }
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| http_err(e.to_string()))?
                .to_bytes();
            Ok((parts.headers, bytes))
        };
        tokio::time::timeout(HTTP_TIMEOUT, fetch)
            .await
            .map_err(|_| http_err("timed out after 30s".into()))?
    }

    async fn fetch(&self) -> Result<KeySnapshot, IssuerError> {
        let (_, body) = self.get(&self.discovery_url).await?;
        let document: DiscoveryDocument =
            serde_json::from_slice(&body).map_err(|e| IssuerError::Discovery {
                url: self.discovery_url.clone(),
                reason: e.to_string(),
            })?;
        if document.issuer != self.issuer_url {
            return Err(IssuerError::IssuerMismatch {
                expected: self.issuer_url.clone(),
                got: document.issuer,
            });
        }
        if !document.jwks_uri.starts_with("https://") {
            return Err(IssuerError::Discovery {
                url: self.discovery_url.clone(),
                reason: format!("jwks_uri {:?} is not https", document.jwks_uri),
            });
        }
        let (headers, body) = self.get(&document.jwks_uri).await?;
        let keys = JwkSet::from_json(&body).map_err(|e| IssuerError::Jwks {
            url: document.jwks_uri.clone(),
            reason: e.to_string(),
        })?;
        let refresh_interval = max_age(&headers)
            .map(|age| age.clamp(Duration::from_secs(60), Duration::from_secs(60 * 60)))
            .unwrap_or(DEFAULT_REFRESH_INTERVAL);
        Ok(KeySnapshot {
            keys: Arc::new(keys),
            fetched_at: Instant::now(),
            refresh_interval,
        })
    }

    /// Fetches discovery and keys now (single flight). Keeps the old keys on failure.
    pub async fn refresh(&self) -> Result<(), IssuerError> {
        let _single_flight = self.fetch_lock.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<(), IssuerError> {
        match self.fetch().await {
            Ok(snapshot) => {
                tracing::info!(
                    issuer = %self.issuer_url,
                    keys = snapshot.keys.len(),
                    "loaded issuer signing keys"
                );
                self.snapshot.store(Some(Arc::new(snapshot)));
                self.last_error.store(None);
                self.fetches_succeeded.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer_url, error = %e, "refreshing issuer keys failed");
                self.last_error.store(Some(Arc::new(e.to_string())));
                self.fetches_failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Called when a token names a `kid` the current keys lack. Refetches unless another
    /// fetch is running (then waits for it) or one happened within
    /// [`MIN_FORCED_REFRESH_INTERVAL`]. Returns the keys to retry with, if they changed.
    pub async fn refresh_for_unknown_kid(&self, seen: &Arc<JwkSet>) -> Option<Arc<JwkSet>> {
        let mut last_forced = self.fetch_lock.lock().await;
        // Someone else refreshed while we waited: use their result.
        if let Some(current) = self.keys() {
            if !Arc::ptr_eq(&current, seen) {
                return Some(current);
            }
        }
        if let Some(at) = *last_forced {
            if at.elapsed() < MIN_FORCED_REFRESH_INTERVAL {
                return None;
            }
        }
        *last_forced = Some(Instant::now());
        self.refresh_locked().await.ok()?;
        self.keys().filter(|keys| !Arc::ptr_eq(keys, seen))
    }

    /// How many key fetches succeeded and failed.
    pub fn fetch_counts(&self) -> FetchCounts {
        FetchCounts {
            succeeded: self.fetches_succeeded.load(Ordering::Relaxed),
            failed: self.fetches_failed.load(Ordering::Relaxed),
        }
    }

    /// How long ago the current keys were fetched, if any were.
    pub fn key_age(&self) -> Option<Duration> {
        self.snapshot
            .load()
            .as_ref()
            .map(|s| s.fetched_at.elapsed())
    }

    /// Installs keys as if fetched now (tests only).
    #[cfg(test)]
    pub(crate) fn store_keys(&self, keys: JwkSet) {
        self.snapshot.store(Some(Arc::new(KeySnapshot {
            keys: Arc::new(keys),
            fetched_at: Instant::now(),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
        })));
    }

    /// Readiness: keys loaded, and refreshed within their lifetime.
    pub fn health(&self) -> IssuerHealth {
        let error = self
            .last_error
            .load()
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        match self.snapshot.load().as_ref() {
            None => IssuerHealth::NotLoaded(if error.is_empty() {
                "keys not loaded yet".into()
            } else {
                error
            }),
            Some(snapshot) => {
                let lifetime = (snapshot.refresh_interval * 2).max(MIN_KEY_LIFETIME);
                if snapshot.fetched_at.elapsed() > lifetime {
                    IssuerHealth::Stale(format!(
                        "keys last refreshed {}s ago: {error}",
                        snapshot.fetched_at.elapsed().as_secs()
                    ))
                } else {
                    IssuerHealth::Healthy
                }
            }
        }
    }

    /// Keeps the keys fresh until the task is dropped: retries the first load every
    /// [`INITIAL_RETRY_INTERVAL`], then refreshes at the interval the JWKS response asked for
    /// (retrying failures at the initial interval).
    pub async fn run_refresh_loop(self: Arc<Self>) {
        // Keys loaded just before (a reload loads a new issuer's keys first) are not fetched
        // again at once.
        let fresh = self
            .snapshot
            .load()
            .as_ref()
            .map(|s| s.refresh_interval.saturating_sub(s.fetched_at.elapsed()));
        if let Some(wait) = fresh {
            tokio::time::sleep(wait).await;
        }
        loop {
            let wait = match self.refresh().await {
                Ok(()) => self
                    .snapshot
                    .load()
                    .as_ref()
                    .map(|s| s.refresh_interval)
                    .unwrap_or(DEFAULT_REFRESH_INTERVAL),
                Err(_) => INITIAL_RETRY_INTERVAL,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// The error and its causes on one line (hyper's errors hide the useful part in `source`).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CACHE_CONTROL,
            "public, max-age=600, must-revalidate".parse().unwrap(),
        );
        assert_eq!(max_age(&headers), Some(Duration::from_secs(600)));
        assert_eq!(max_age(&http::HeaderMap::new()), None);
    }

    fn test_issuer() -> Issuer {
        let ca = rcgen::generate_simple_self_signed(vec!["issuer.example".to_string()]).unwrap();
        Issuer::new(&IssuerSettings {
            certificate_authority: Some(ca.cert.pem()),
            ..IssuerSettings::new("https://issuer.example")
        })
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_goes_stale_when_keys_outlive_their_lifetime() {
        let issuer = test_issuer();
        assert!(matches!(issuer.health(), IssuerHealth::NotLoaded(_)));
        issuer.store_keys(JwkSet::default());
        assert_eq!(issuer.health(), IssuerHealth::Healthy);
        tokio::time::advance(MIN_KEY_LIFETIME - Duration::from_secs(1)).await;
        assert_eq!(issuer.health(), IssuerHealth::Healthy);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(issuer.health(), IssuerHealth::Stale(_)));
        // A successful refresh makes it healthy again.
        issuer.store_keys(JwkSet::default());
        assert_eq!(issuer.health(), IssuerHealth::Healthy);
    }

    #[test]
    fn a_certificate_authority_without_certificates_is_an_error() {
        let err = Issuer::new(&IssuerSettings {
            certificate_authority: Some("not a certificate".into()),
            ..IssuerSettings::new("https://issuer.example")
        })
        .unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        assert!(parse_certificate_authority("").is_err());
        let ca = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).unwrap();
        assert_eq!(
            parse_certificate_authority(&ca.cert.pem()).unwrap().len(),
            1
        );
    }

    #[test]
    fn discovery_url_replaces_the_well_known_path() {
        let well_known = Issuer::new(&IssuerSettings::new("https://issuer.example/a/")).unwrap();
        assert_eq!(
            well_known.discovery_url,
            "https://issuer.example/a/.well-known/openid-configuration"
        );
        let explicit = Issuer::new(&IssuerSettings {
            discovery_url: Some("https://internal.svc/d/.well-known/openid-configuration".into()),
            ..IssuerSettings::new("https://issuer.example/a/")
        })
        .unwrap();
        assert_eq!(
            explicit.discovery_url,
            "https://internal.svc/d/.well-known/openid-configuration"
        );
        assert_eq!(explicit.url(), "https://issuer.example/a/");
    }
}
