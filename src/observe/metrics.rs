//! Prometheus metrics, served on the probe listener at `/metrics` in the Prometheus text
//! format 0.0.4 (names follow the Go client's conventions: `_total` counters, `_seconds`
//! histograms, base units). What each metric means and sample alerts: `docs/operations.md`.
//!
//! Two kinds of sources:
//! - request-path events (requests, authentication results, reviews, upgrades) recorded here
//!   as they happen, with label values from small fixed sets or from configuration only, never
//!   from client input, so no client can grow the label space;
//! - state other parts already keep (issuer keys, reload counts, audit counters, certificate
//!   expiry), read at scrape time through [`Scrape`] callbacks registered at startup.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::upstream::review::ReviewKind;

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency buckets in seconds: sub-millisecond resolution for the proxy's own cost, up to a
/// minute (kube-apiserver's request timeout).
const LATENCY_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0, 60.0,
];

/// Kubernetes verbs, and the lower-cased HTTP methods of non-resource requests. Anything else
/// (an extension method a client made up) is counted as `other`.
const KNOWN_VERBS: [&str; 15] = [
    "proxy",
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "post",
    "put",
    "head",
    "options",
    "connect",
    "trace",
];

/// A verb label value from a fixed set (see [`KNOWN_VERBS`]).
pub fn verb_label(verb: &str) -> &'static str {
    KNOWN_VERBS
        .iter()
        .find(|known| **known == verb)
        .copied()
        .unwrap_or("other")
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    code: u16,
    /// The issuer that authenticated the caller, `tokenreview` for passthrough, empty when
    /// nobody did.
    issuer: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthenticationLabels {
    issuer: Arc<str>,
    result: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    issuer: Arc<str>,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    review: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

fn review_label(review: ReviewKind) -> &'static str {
    match review {
        ReviewKind::SubjectAccess => "SubjectAccessReview",
        ReviewKind::Token => "TokenReview",
    }
}

/// The outcome of authenticating one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated.
    Success,
    /// Refused (401) for `reason`, a short fixed string such as `expired`.
    Failure(&'static str),
    /// Could not be decided (a TokenReview failed: 503) for `reason`.
    Error(&'static str),
}

/// The proxy's metrics: the request-path families and the scrape-time sources.
pub struct Metrics {
    /// Locked only to add a scrape source and to render.
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<VerbLabels, Histogram>,
    upstream_duration: Family<VerbLabels, Histogram>,
    in_flight: Family<KindLabels, Gauge>,
    authentications: Family<AuthenticationLabels, Counter>,
    token_cache: Family<CacheLabels, Counter>,
    review_duration: Family<ReviewLabels, Histogram>,
    review_errors: Family<ReviewLabels, Counter>,
    upgrades_open: Gauge,
    upgrades: Counter,
    upgraded_bytes: Family<DirectionLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The request-path families, registered under the `kube_oidc_proxy_` prefix; scrape-time
    /// sources are added with [`Metrics::register_scrape`].
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kube_oidc_proxy_requests",
            "Requests served, by Kubernetes verb, HTTP status code and authenticating issuer",
            requests.clone(),
        );
        let request_duration =
            Family::<VerbLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "kube_oidc_proxy_request_duration_seconds",
            "Time from receiving a request to the end of its response, long-running requests \
             (watch, exec, attach, port-forward, proxy, follow logs) excluded",
            request_duration.clone(),
        );
        let upstream_duration =
            Family::<VerbLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "kube_oidc_proxy_upstream_request_duration_seconds",
            "Time from sending a request to the API server to its response headers",
            upstream_duration.clone(),
        );
        let in_flight = Family::<KindLabels, Gauge>::default();
        registry.register(
            "kube_oidc_proxy_requests_in_flight",
            "Requests being served, short or long_running",
            in_flight.clone(),
        );
        let authentications = Family::<AuthenticationLabels, Counter>::default();
        registry.register(
            "kube_oidc_proxy_authentications",
            "Authentication attempts by issuer (empty when no configured issuer claims the \
             token), result (success, failure, error) and reason",
            authentications.clone(),
        );
        let token_cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "kube_oidc_proxy_token_cache_requests",
            "Verified-token cache lookups by issuer and result (hit, miss)",
            token_cache.clone(),
        );
        let review_duration =
            Family::<ReviewLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "kube_oidc_proxy_review_duration_seconds",
            "Duration of SubjectAccessReview and TokenReview calls to the API server",
            review_duration.clone(),
        );
        let review_errors = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "kube_oidc_proxy_review_errors",
            "SubjectAccessReview and TokenReview calls that got no answer (error or timeout)",
            review_errors.clone(),
        );
        let upgrades_open = Gauge::default();
        registry.register(
            "kube_oidc_proxy_upgraded_connections_open",
            "Upgraded connections (exec, attach, port-forward) currently spliced",
            upgrades_open.clone(),
        );
        let upgrades = Counter::default();
        registry.register(
            "kube_oidc_proxy_upgraded_connections",
            "Upgraded connections spliced since start",
            upgrades.clone(),
        );
        let upgraded_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "kube_oidc_proxy_upgraded_bytes",
            "Bytes copied through upgraded connections, by direction (to_upstream, to_client)",
            upgraded_bytes.clone(),
        );
        registry.register(
            "kube_oidc_proxy_build_info",
            "Always 1; the version label names the running build",
            ConstGaugeWithLabels {
                labels: vec![("version", env!("CARGO_PKG_VERSION"))],
                value: 1,
            },
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            request_duration,
            upstream_duration,
            in_flight,
            authentications,
            token_cache,
            review_duration,
            review_errors,
            upgrades_open,
            upgrades,
            upgraded_bytes,
        }
    }

    /// Adds a source read at every scrape: `collect` fills in the samples of one metric
    /// family named `kube_oidc_proxy_<name>` (counters get the `_total` suffix added).
    pub fn register_scrape<F>(&self, name: &'static str, help: &'static str, kind: Kind, collect: F)
    where
        F: Fn(&mut Samples) + Send + Sync + 'static,
    {
        self.registry()
            .register_collector(Box::new(ScrapeCollector {
                name: format!("kube_oidc_proxy_{name}"),
                help,
                kind,
                collect: Box::new(collect),
            }));
    }

    /// Adds the process metrics of the Go client (`process_cpu_seconds_total`,
    /// `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
    /// `process_start_time_seconds`), read from `/proc/self` at scrape time (Linux only).
    pub fn register_process_metrics(&self) {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        self.registry()
            .register_collector(Box::new(ProcessCollector { started }));
    }

    /// The exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry());
        out
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request as in flight until the guard is dropped.
    pub fn in_flight(&self, long_running: bool) -> InFlight {
        let gauge = self.in_flight.get_or_create_owned(&KindLabels {
            kind: if long_running {
                "long_running"
            } else {
                "short"
            },
        });
        gauge.inc();
        InFlight { gauge }
    }

    /// Records a finished request; `duration` is `None` for long-running requests.
    pub fn request(
        &self,
        verb: &'static str,
        code: u16,
        issuer: Arc<str>,
        duration: Option<Duration>,
    ) {
        self.requests
            .get_or_create(&RequestLabels { verb, code, issuer })
            .inc();
        if let Some(duration) = duration {
            self.request_duration
                .get_or_create(&VerbLabels { verb })
                .observe(duration.as_secs_f64());
        }
    }

    /// Records the API server's time to response headers.
    pub fn upstream(&self, verb: &'static str, duration: Duration) {
        self.upstream_duration
            .get_or_create(&VerbLabels { verb })
            .observe(duration.as_secs_f64());
    }

    /// Records one authentication attempt.
    pub fn authentication(&self, issuer: Arc<str>, outcome: AuthOutcome) {
        let (result, reason) = match outcome {
            AuthOutcome::Success => ("success", ""),
            AuthOutcome::Failure(reason) => ("failure", reason),
            AuthOutcome::Error(reason) => ("error", reason),
        };
        self.authentications
            .get_or_create(&AuthenticationLabels {
                issuer,
                result,
                reason,
            })
            .inc();
    }

    /// Records a verified-token cache lookup.
    pub fn token_cache(&self, issuer: Arc<str>, hit: bool) {
        self.token_cache
            .get_or_create(&CacheLabels {
                issuer,
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    /// Records one review call and whether it failed to get an answer.
    pub fn review(&self, review: ReviewKind, duration: Duration, failed: bool) {
        let labels = ReviewLabels {
            review: review_label(review),
        };
        self.review_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        if failed {
            self.review_errors.get_or_create(&labels).inc();
        }
    }

    /// Counts an upgraded connection as open until the guard is dropped; its byte counters
    /// count what is copied meanwhile.
    pub fn upgrade(&self) -> UpgradedConnection {
        self.upgrades.inc();
        self.upgrades_open.inc();
        UpgradedConnection {
            open: self.upgrades_open.clone(),
            to_upstream: self.upgraded_bytes.get_or_create_owned(&DirectionLabels {
                direction: "to_upstream",
            }),
            to_client: self.upgraded_bytes.get_or_create_owned(&DirectionLabels {
                direction: "to_client",
            }),
        }
    }
}

/// Holds a request in the in-flight gauge.
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// An upgraded connection's gauge hold and byte counters.
#[derive(Debug)]
pub struct UpgradedConnection {
    open: Gauge,
    /// Bytes from the client to the API server.
    pub to_upstream: Counter,
    /// Bytes from the API server to the client.
    pub to_client: Counter,
}

impl Drop for UpgradedConnection {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// The type of a scrape-time metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// The samples of one scrape-time family: label pairs and a value each.
#[derive(Debug, Default)]
pub struct Samples {
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }
}

type CollectFn = Box<dyn Fn(&mut Samples) + Send + Sync>;

struct ScrapeCollector {
    name: String,
    help: &'static str,
    kind: Kind,
    collect: CollectFn,
}

impl fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapeCollector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for ScrapeCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), fmt::Error> {
        let mut samples = Samples::default();
        (self.collect)(&mut samples);
        if samples.samples.is_empty() {
            return Ok(());
        }
        let metric_type = match self.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        };
        let mut family = encoder.encode_descriptor(&self.name, self.help, None, metric_type)?;
        for (labels, value) in &samples.samples {
            let sample = family.encode_family(labels)?;
            match self.kind {
                // Counters are whole counts kept as integers elsewhere.
                Kind::Counter => ConstCounter::new(*value as u64).encode(sample)?,
                Kind::Gauge => ConstGauge::new(*value).encode(sample)?,
            }
        }
        Ok(())
    }
}

/// The process metrics, read from `/proc/self`.
#[derive(Debug)]
struct ProcessCollector {
    /// Unix time at startup.
    started: f64,
}

/// The kernel's `USER_HZ`, the unit of `/proc/<pid>/stat` CPU times: 100 on every Linux
/// architecture's user ABI.
const USER_HZ: f64 = 100.0;

impl ProcessCollector {
    /// (user + system CPU seconds, RSS bytes, virtual bytes, open fds), where readable.
    fn read() -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
        let cpu = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| {
                // Fields after the parenthesized command name; utime and stime are the 12th and 13th.
                let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let ticks =
                    fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
                Some(ticks / USER_HZ)
            });
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |field: &str| {
            status.lines().find_map(|line| {
                let value = line.strip_prefix(field)?.trim().strip_suffix("kB")?;
                value.trim().parse::<f64>().ok().map(|kib| kib * 1024.0)
            })
        };
        let fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as f64);
        (cpu, kib("VmRSS:"), kib("VmSize:"), fds)
    }
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), fmt::Error> {
        let (cpu, rss, virt, fds) = Self::read();
        if let Some(cpu) = cpu {
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(metric)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                virt,
            ),
            ("process_open_fds", "Number of open file descriptors", fds),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                Some(self.started),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(value).encode(metric)?;
            }
        }
        Ok(())
    }
}

/// A constant gauge carrying labels (`build_info`).
#[derive(Debug)]
struct ConstGaugeWithLabels {
    labels: Vec<(&'static str, &'static str)>,
    value: i64,
}

impl EncodeMetric for ConstGaugeWithLabels {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let sample = encoder.encode_family(&self.labels)?;
        ConstGauge::new(self.value).encode(sample)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// A counter kept elsewhere as an atomic, read at scrape time.
pub fn load(counter: &AtomicU64) -> f64 {
    counter.load(std::sync::atomic::Ordering::Relaxed) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn request_path_families_render_with_their_labels() {
        let metrics = Metrics::new();
        let issuer: Arc<str> = "https://dex.example".into();
        metrics.request("get", 200, issuer.clone(), Some(Duration::from_millis(3)));
        metrics.request("get", 200, issuer.clone(), Some(Duration::from_millis(30)));
        metrics.request("watch", 200, issuer.clone(), None);
        metrics.authentication(issuer.clone(), AuthOutcome::Success);
        metrics.authentication("".into(), AuthOutcome::Failure("unknown_issuer"));
        metrics.token_cache(issuer, true);
        metrics.review(ReviewKind::SubjectAccess, Duration::from_millis(2), true);
        let text = metrics.render();
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_requests_total{verb="get",code="200",issuer="https://dex.example"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_request_duration_seconds_count{verb="get"}"#
            ),
            Some(2.0)
        );
        // Long-running requests are counted but not timed.
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_request_duration_seconds_count{verb="watch"}"#
            ),
            None
        );
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_request_duration_seconds_bucket{verb="get",le="0.005"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_authentications_total{issuer="",result="failure",reason="unknown_issuer"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_review_errors_total{review="SubjectAccessReview"}"#
            ),
            Some(1.0)
        );
        assert!(text.contains("# TYPE kube_oidc_proxy_requests_total counter"));
        assert!(text.contains(r#"kube_oidc_proxy_build_info{version=""#));
    }

    #[test]
    fn guards_hold_gauges_while_alive() {
        let metrics = Metrics::new();
        let watch = metrics.in_flight(true);
        let upgrade = metrics.upgrade();
        upgrade.to_client.inc_by(10);
        let text = metrics.render();
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_requests_in_flight{kind="long_running"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample_value(&text, "kube_oidc_proxy_upgraded_connections_open"),
            Some(1.0)
        );
        drop((watch, upgrade));
        let text = metrics.render();
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_requests_in_flight{kind="long_running"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample_value(&text, "kube_oidc_proxy_upgraded_connections_open"),
            Some(0.0)
        );
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_upgraded_bytes_total{direction="to_client"}"#
            ),
            Some(10.0)
        );
        assert_eq!(
            sample_value(&text, "kube_oidc_proxy_upgraded_connections_total"),
            Some(1.0)
        );
    }

    #[test]
    fn scrape_sources_are_read_at_every_scrape() {
        let metrics = Metrics::new();
        let counter = Arc::new(AtomicU64::new(0));
        let source = counter.clone();
        metrics.register_scrape(
            "audit_events_dropped",
            "dropped",
            Kind::Counter,
            move |samples| samples.push(vec![("backend", "webhook".into())], load(&source)),
        );
        counter.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        let text = metrics.render();
        assert_eq!(
            sample_value(
                &text,
                r#"kube_oidc_proxy_audit_events_dropped_total{backend="webhook"}"#
            ),
            Some(3.0),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kube_oidc_proxy_audit_events_dropped_total counter"),
            "{text}"
        );
    }

    #[test]
    fn process_metrics_read_this_process() {
        let metrics = Metrics::new();
        metrics.register_process_metrics();
        let text = metrics.render();
        let rss = sample_value(&text, "process_resident_memory_bytes").expect("rss");
        assert!(rss > 1024.0 * 1024.0, "{text}");
        assert!(sample_value(&text, "process_open_fds").is_some_and(|n| n >= 3.0));
        assert!(
            sample_value(&text, "process_cpu_seconds_total").is_some(),
            "{text}"
        );
    }

    #[test]
    fn verbs_outside_the_known_set_are_other() {
        assert_eq!(verb_label("deletecollection"), "deletecollection");
        assert_eq!(verb_label("x-made-up"), "other");
    }
}
