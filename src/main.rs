//! `kube-oidc-proxy`: parse flags, build the parts, run. Nothing else lives here.
//! `kube-oidc-proxy credential …` and `kube-oidc-proxy kubeconfig …` are the pipelines'
//! helpers, dispatched before the proxy's own (Go-compatible, flat) flags are parsed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use kube_oidc_proxy::audit::backend::log::LogBackend;
use kube_oidc_proxy::audit::backend::webhook::WebhookBackend;
use kube_oidc_proxy::audit::backend::{AuditCounters, Backend, Backends};
use kube_oidc_proxy::audit::policy::{self, Policy};
use kube_oidc_proxy::audit::recorder::Auditor;
use kube_oidc_proxy::authn::authenticators::{AuthenticatorOptions, Authenticators};
use kube_oidc_proxy::config::audit::AuditSettings;
use kube_oidc_proxy::config::{authentication, Config, Flags};
use kube_oidc_proxy::observe::logging;
use kube_oidc_proxy::observe::metrics::{load, Kind, Metrics};
use kube_oidc_proxy::proxy::identity::IdentityForwarding;
use kube_oidc_proxy::proxy::Proxy;
use kube_oidc_proxy::server::{self, probe, tls, ServeSettings};
use kube_oidc_proxy::upstream::review::Reviewer;
use kube_oidc_proxy::upstream::{self, Upstream};
use tokio::sync::watch;

/// How long SIGTERM waits for queued audit events to be delivered.
const AUDIT_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How often readiness checks that the API server answers.
const UPSTREAM_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the serving certificate files are checked for changes.
const CERT_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

fn main() -> ExitCode {
    // The proxy has no positional arguments, so these words cannot clash with its flags.
    match std::env::args_os()
        .nth(1)
        .as_deref()
        .and_then(|a| a.to_str())
    {
        Some("credential") => {
            return kube_oidc_proxy::credential::main(std::env::args_os().skip(1))
        }
        Some("kubeconfig") => {
            return kube_oidc_proxy::kubeconfig_cmd::main(std::env::args_os().skip(1))
        }
        _ => {}
    }
    let flags = Flags::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(flags))
}

/// Everything that can be checked before listening, with every error collected.
struct Parts {
    config: Config,
    /// `--audit-policy-file`, loaded and validated.
    audit_policy: Option<Policy>,
    authenticators: Arc<Authenticators>,
    upstream: Upstream,
    identity: IdentityForwarding,
    certificates: Arc<tls::ServingCertificates>,
    tls: Arc<rustls::ServerConfig>,
}

async fn build(flags: &Flags, metrics: Arc<Metrics>) -> Result<Parts, Vec<String>> {
    let config = Config::from_flags(flags).map_err(|e| e.0)?;
    let mut errors = Vec::new();
    let authenticators = Authenticators::new(
        config.authentication.jwt.clone(),
        AuthenticatorOptions {
            allow_reserved_identities: config.authentication.allow_reserved_identities,
        },
    )
    .map_err(|e| errors.push(e.to_string()))
    .ok();
    let (upstream, identity) = match upstream::kube_config(&config.upstream.overrides).await {
        Ok(kube_config) => (
            Upstream::new(&kube_config, config.upstream.request_timeout)
                .map_err(|e| errors.push(e.to_string()))
                .ok(),
            identity_forwarding(&config, &kube_config, metrics.clone(), &mut errors),
        ),
        Err(e) => {
            errors.push(e.to_string());
            (None, None)
        }
    };
    let audit_policy = config.audit.policy_file.as_deref().and_then(|path| {
        policy::load(path)
            .map_err(|e| {
                errors.extend(
                    e.problems()
                        .iter()
                        .map(|p| format!("audit policy {}: {p}", path.display())),
                )
            })
            .ok()
    });
    let certificates = tls::ServingCertificates::load(&config.tls)
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    let tls = certificates.as_ref().and_then(|certs| {
        tls::server_config(&config.tls, certs.clone())
            .map_err(|e| errors.push(e.to_string()))
            .ok()
    });
    match (authenticators, upstream, identity, certificates, tls) {
        (Some(authenticators), Some(upstream), Some(identity), Some(certificates), Some(tls))
            if errors.is_empty() =>
        {
            Ok(Parts {
                config,
                audit_policy,
                authenticators: Arc::new(authenticators),
                upstream,
                identity,
                certificates,
                tls,
            })
        }
        _ => Err(errors),
    }
}

/// The review client (SubjectAccessReviews for `kubectl --as`, TokenReviews for passthrough)
/// and, when a caller's own token may go upstream, the client without the proxy's credentials.
fn identity_forwarding(
    config: &Config,
    kube_config: &kube::Config,
    metrics: Arc<Metrics>,
    errors: &mut Vec<String>,
) -> Option<IdentityForwarding> {
    let settings = config.identity.clone();
    let reviewer = Reviewer::new(kube_config, config.reviews.clone())
        .map_err(|e| errors.push(format!("API server review client: {e}")))
        .ok()?
        .with_observer(Arc::new(move |kind, duration, failed| {
            metrics.review(kind, duration, failed)
        }));
    let caller_upstream = if settings.token_passthrough || settings.disable_impersonation {
        Some(
            Upstream::without_credentials(kube_config, config.upstream.request_timeout)
                .map_err(|e| errors.push(e.to_string()))
                .ok()?,
        )
    } else {
        None
    };
    Some(IdentityForwarding {
        settings,
        reviewer: Some(Arc::new(reviewer)),
        caller_upstream,
    })
}

async fn run(flags: Flags) -> ExitCode {
    // The request-path families now; scrape-time sources once the parts they read exist.
    let metrics = Arc::new(Metrics::new());
    let parts = match build(&flags, metrics.clone()).await {
        Ok(parts) => parts,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            eprintln!(
                "kube-oidc-proxy: {} configuration error(s); not starting",
                errors.len()
            );
            return ExitCode::FAILURE;
        }
    };
    if flags.validate_config {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let Parts {
        config,
        audit_policy,
        authenticators,
        upstream,
        identity,
        certificates,
        tls,
    } = parts;
    logging::init(&config.log);
    let auditor = match start_audit(&config.audit, audit_policy).await {
        Ok(auditor) => auditor,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };

    let secure_address = SocketAddr::new(config.bind_address, config.secure_port);
    let probe_address = SocketAddr::new(config.bind_address, config.probe_port);
    let (secure, probes) = match (
        server::bind(secure_address, "--secure-port").await,
        server::bind(probe_address, "--readiness-probe-port").await,
    ) {
        (Ok(secure), Ok(probes)) => (secure, probes),
        (secure, probes) => {
            for error in [secure.err(), probes.err()].into_iter().flatten() {
                eprintln!("error: {error}");
            }
            return ExitCode::FAILURE;
        }
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    register_scrape_sources(&metrics, &authenticators, &certificates);
    metrics.register_process_metrics();
    if let Some((_, backends)) = &auditor {
        register_audit_sources(&metrics, backends.all_counters());
    }
    let upstream_health = Arc::new(probe::UpstreamHealth::default());
    let upstream_check = tokio::spawn(
        upstream_health
            .clone()
            .run(upstream.clone(), UPSTREAM_CHECK_INTERVAL),
    );
    let readiness = Arc::new(
        probe::Readiness::new(authenticators.clone(), config.authentication.readiness)
            .with_upstream(
                upstream_health,
                config.authentication.readiness_requires_upstream,
            ),
    );
    let checks = readiness.clone();
    metrics.register_scrape(
        "readiness_checks",
        "1 while the readiness check passes, else 0 (checks as /readyz?verbose lists them)",
        Kind::Gauge,
        move |samples| {
            for check in checks.checks() {
                samples.push(
                    vec![("check", check.name)],
                    f64::from(u8::from(check.result.is_ok())),
                );
            }
        },
    );
    let ready = readiness.clone();
    metrics.register_scrape(
        "ready",
        "1 while /ready answers 200, else 0",
        Kind::Gauge,
        move |samples| samples.push(vec![], f64::from(u8::from(ready.check().is_ok()))),
    );
    authenticators.start();
    let config_watch = config.authentication.file.clone().map(|file| {
        tokio::spawn(authenticators.clone().watch_file(
            file.path,
            file.contents,
            file.reload_interval,
            authentication::parse,
        ))
    });
    let cert_watch = tokio::spawn(certificates.watch(CERT_POLL_INTERVAL));
    let probe_task = tokio::spawn(probe::serve_probes(
        probes,
        readiness.clone(),
        Some(metrics.clone()),
        stop_rx.clone(),
    ));
    let proxy = Arc::new(
        Proxy::new(authenticators.clone(), upstream.clone())
            .with_identity(identity)
            .with_metrics(metrics)
            .with_auditor(auditor.as_ref().map(|(auditor, _)| auditor.clone())),
    );
    tracing::info!(
        address = %secure_address,
        probes = %probe_address,
        upstream = %upstream.base(),
        issuers = ?authenticators.issuers(),
        "kube-oidc-proxy serving"
    );
    let serve = tokio::spawn(server::serve_secure(
        secure,
        tls,
        proxy,
        ServeSettings {
            http2_max_streams: config.http2_max_streams,
            shutdown_grace: config.shutdown_grace,
        },
        stop_rx,
    ));
    readiness.set_serving(true);

    wait_for_signal().await;
    tracing::info!("shutting down");
    readiness.set_serving(false);
    let _ = stop_tx.send(true);
    let _ = serve.await;
    if let Some((_, backends)) = &auditor {
        // What is queued gets a few seconds to reach the log or webhook.
        backends
            .shutdown(tokio::time::Instant::now() + AUDIT_FLUSH_LIMIT)
            .await;
    }
    if let Some(config_watch) = config_watch {
        config_watch.abort();
    }
    cert_watch.abort();
    upstream_check.abort();
    probe_task.abort();
    ExitCode::SUCCESS
}

/// Starts the audit backends when a policy and at least one backend are configured.
async fn start_audit(
    settings: &AuditSettings,
    policy: Option<Policy>,
) -> Result<Option<(Arc<Auditor>, Arc<Backends>)>, String> {
    let Some(policy) = policy else {
        return Ok(None);
    };
    let mut backends = Backends::new();
    if let Some(log) = &settings.log {
        backends.push(LogBackend::start(log).map_err(|e| format!("--audit-log-path: {e}"))?);
    }
    if let Some(webhook) = &settings.webhook {
        backends.push(
            WebhookBackend::start(webhook)
                .await
                .map_err(|e| format!("--audit-webhook-config-file: {e}"))?,
        );
    }
    if backends.is_empty() {
        tracing::warn!("--audit-policy-file is set but no audit backend is; nothing is audited");
        return Ok(None);
    }
    let backends = Arc::new(backends);
    let auditor = Arc::new(Auditor::new(policy, backends.clone()));
    Ok(Some((auditor, backends)))
}

/// The audit backends' delivery counters, read at scrape time.
fn register_audit_sources(metrics: &Metrics, counters: Vec<Arc<AuditCounters>>) {
    type Field = fn(&AuditCounters) -> &std::sync::atomic::AtomicU64;
    let families: [(&'static str, &'static str, Field); 3] = [
        (
            "audit_events",
            "Audit events delivered, by backend (log, webhook)",
            |c| &c.written,
        ),
        (
            "audit_events_dropped",
            "Audit events lost (buffer full, too large, retries exhausted), by backend",
            |c| &c.dropped,
        ),
        (
            "audit_errors",
            "Failed audit writes or webhook requests (each retry counts), by backend",
            |c| &c.errors,
        ),
    ];
    for (name, help, field) in families {
        let counters = counters.clone();
        metrics.register_scrape(name, help, Kind::Counter, move |samples| {
            for counter in &counters {
                samples.push(
                    vec![("backend", counter.backend.into())],
                    load(field(counter)),
                );
            }
        });
    }
}

/// Metrics read at scrape time from the parts that keep the state.
fn register_scrape_sources(
    metrics: &Metrics,
    authenticators: &Arc<Authenticators>,
    certificates: &Arc<tls::ServingCertificates>,
) {
    let keys = authenticators.clone();
    metrics.register_scrape(
        "jwks_fetches",
        "Issuer discovery + JWKS fetches by issuer and result (success, error)",
        Kind::Counter,
        move |samples| {
            for (issuer, counts, _) in keys.key_stats() {
                samples.push(
                    vec![("issuer", issuer.clone()), ("result", "success".into())],
                    counts.succeeded as f64,
                );
                samples.push(
                    vec![("issuer", issuer), ("result", "error".into())],
                    counts.failed as f64,
                );
            }
        },
    );
    let keys = authenticators.clone();
    metrics.register_scrape(
        "jwks_age_seconds",
        "Seconds since the issuer's signing keys were last fetched (absent until first loaded)",
        Kind::Gauge,
        move |samples| {
            for (issuer, _, age) in keys.key_stats() {
                if let Some(age) = age {
                    samples.push(vec![("issuer", issuer)], age.as_secs_f64());
                }
            }
        },
    );
    let reloads = authenticators.clone();
    metrics.register_scrape(
        "config_reloads",
        "Authentication configuration reloads by result (success, failure)",
        Kind::Counter,
        move |samples| {
            let counts = reloads.reload_counts();
            samples.push(vec![("result", "success".into())], counts.succeeded as f64);
            samples.push(vec![("result", "failure".into())], counts.failed as f64);
        },
    );
    let certificates = certificates.clone();
    metrics.register_scrape(
        "serving_certificate_expiry_timestamp_seconds",
        "When the serving certificate in use expires (Unix time)",
        Kind::Gauge,
        move |samples| {
            let expiry = certificates
                .not_after()
                .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok());
            if let Some(expiry) = expiry {
                samples.push(vec![], expiry.as_secs_f64());
            }
        },
    );
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
