//! The webhook backend (`--audit-webhook-*`): batches of events POSTed as an
//! `audit.k8s.io/v1` `EventList` to the server named by a kubeconfig, as kube-apiserver's
//! `plugin/pkg/audit/{buffered,webhook}`.
//!
//! - [`Backend::process`] only tries to queue the event (`--audit-webhook-batch-buffer-size`);
//!   a full queue drops and counts it. A slow or dead receiver never blocks a request.
//! - A batch is sent when `--audit-webhook-batch-max-size` events are collected, or
//!   `--audit-webhook-batch-max-wait` after its first event (kube-apiserver's timer starts with
//!   the batch instead; either way no event waits longer). Batches are throttled by a token
//!   bucket (`--audit-webhook-batch-throttle-{qps,burst}`) when enabled, and sent concurrently
//!   as kube-apiserver does, at most [`MAX_IN_FLIGHT`] at once (kube-apiserver has no bound).
//! - The `blocking` and `blocking-strict` modes are served as batches of one, unthrottled, still
//!   off the request path (kube-apiserver makes the request wait; `blocking-strict` fails it).
//! - Any failure is retried, as kube-apiserver's audit webhook `retryOnError` does: five
//!   attempts in all, waiting `--audit-webhook-initial-backoff` before the second, then 1.5
//!   times longer each, with up to 20% jitter (`DefaultRetryBackoffWithInitialDelay`). After the
//!   fifth failure the batch is dropped and counted. Each attempt, response body included, is
//!   bounded by [`REQUEST_TIMEOUT`] (kube-apiserver's `defaultRequestTimeout`).
//! - With `--audit-webhook-truncate-enabled`, events over the maximum event size are truncated
//!   (then dropped if still too large) and a batch over the maximum batch size is split.
//!
//! The kubeconfig is read through kube (`Kubeconfig::read_from`,
//! `Config::from_custom_kubeconfig`: server URL with its path, CA, client certificate, token
//! or exec credentials) and requests go through the same hyper client as the API server's
//! ([`crate::upstream::Upstream`]).

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{encode, AuditCounters, Backend, EncodeError, Intake, Queue, ShutdownFuture, Warnings};
use crate::audit::event::Event;
use crate::config::audit::{
    BatchSettings, ThrottleSettings, TruncateSettings, WebhookBackendSettings, AUDIT_API_VERSION,
};
use crate::upstream::{Route, Upstream};

/// Bound on one webhook request, response body included (kube-apiserver's
/// `defaultRequestTimeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts per batch (kube-apiserver's backoff `Steps`).
const ATTEMPTS: u32 = 5;
/// Growth of the wait between attempts (`Factor`).
const BACKOFF_FACTOR: f64 = 1.5;
/// Up to this fraction is added to each wait (`Jitter`).
const BACKOFF_JITTER: f64 = 0.2;
/// Batches being sent (or retried) at once; the next waits, and the queue absorbs the rest.
pub const MAX_IN_FLIGHT: usize = 16;

/// The webhook backend.
pub struct WebhookBackend {
    queue: Queue,
    counters: Arc<AuditCounters>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    stop: watch::Sender<Option<Instant>>,
}

impl WebhookBackend {
    /// Reads the kubeconfig, builds the client and starts the batching task on the current
    /// tokio runtime.
    pub async fn start(settings: &WebhookBackendSettings) -> Result<Self, String> {
        Self::start_with_timeout(settings, REQUEST_TIMEOUT).await
    }

    async fn start_with_timeout(
        settings: &WebhookBackendSettings,
        request_timeout: Duration,
    ) -> Result<Self, String> {
        let path = &settings.config_file;
        let context = |e: &dyn std::fmt::Display| {
            format!("--audit-webhook-config-file: {}: {e}", path.display())
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| context(&e))?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| context(&e))?;
        let client = Upstream::new(&config, None).map_err(|e| context(&e))?;
        let counters = Arc::new(AuditCounters::new("webhook"));
        let (queue, intake) = Queue::new(settings.batch.buffer_size, Arc::clone(&counters));
        let sender = Arc::new(Sender {
            client,
            target: config.cluster_url,
            initial_backoff: settings.initial_backoff,
            request_timeout,
            truncate: settings.truncate,
            counters: Arc::clone(&counters),
            warnings: Mutex::new(Warnings::default()),
        });
        let (stop, stopped) = watch::channel(None);
        let dispatcher = tokio::spawn(dispatch(intake, settings.batch.clone(), sender, stopped));
        Ok(Self {
            queue,
            counters,
            dispatcher: Mutex::new(Some(dispatcher)),
            stop,
        })
    }

    /// The delivery counters (`backend` = `webhook`).
    pub fn counters(&self) -> Arc<AuditCounters> {
        Arc::clone(&self.counters)
    }

    /// Stops taking events and sends what is queued (in batches, with retries) until
    /// `deadline`; batches still unsent then are abandoned and counted as dropped.
    pub async fn shutdown(&self, deadline: Instant) {
        self.queue.close();
        self.stop.send_replace(Some(deadline));
        let dispatcher = self
            .dispatcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(dispatcher) = dispatcher {
            // The dispatcher abandons its work at the deadline by itself.
            let _ = dispatcher.await;
        }
        let dropped = self
            .counters
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        if Instant::now() >= deadline && dropped > 0 {
            tracing::warn!(dropped, "audit webhook: shut down with undelivered events");
        }
    }
}

impl Backend for WebhookBackend {
    fn process(&self, event: Arc<Event>) {
        self.queue.push(event);
    }

    fn shutdown(&self, deadline: Instant) -> ShutdownFuture<'_> {
        Box::pin(WebhookBackend::shutdown(self, deadline))
    }

    fn all_counters(&self) -> Vec<Arc<AuditCounters>> {
        vec![self.counters()]
    }
}

/// Events not yet settled; whatever is left when it is dropped (an abandoned batch) is counted
/// as dropped.
struct Pending {
    count: u64,
    counters: Arc<AuditCounters>,
}

impl Pending {
    fn settle(&mut self, counter: &std::sync::atomic::AtomicU64, n: u64) {
        let n = n.min(self.count);
        self.count -= n;
        AuditCounters::add(counter, n);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        AuditCounters::add(&self.counters.dropped, self.count);
    }
}

/// Runs [`collect`] until the queue is closed and everything is sent, or until the shutdown
/// deadline arrives through `stop`: then the partial batch, the queue and the batches in flight
/// are abandoned, each counted as dropped.
async fn dispatch(
    intake: Intake,
    batch: BatchSettings,
    sender: Arc<Sender>,
    mut stop: watch::Receiver<Option<Instant>>,
) {
    let mut in_flight = JoinSet::new();
    let deadline = async {
        loop {
            let deadline = *stop.borrow_and_update();
            if let Some(deadline) = deadline {
                tokio::time::sleep_until(deadline).await;
                return;
            }
            if stop.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = collect(intake, batch, sender, &mut in_flight) => {}
        () = deadline => {}
    }
    in_flight.shutdown().await;
}

/// Collects batches and hands each to a sending task, until the queue is closed and empty;
/// then waits for the sending tasks.
async fn collect(
    mut intake: Intake,
    batch: BatchSettings,
    sender: Arc<Sender>,
    in_flight: &mut JoinSet<()>,
) {
    let mut throttle = batch.throttle.map(TokenBucket::new);
    while let Some(first) = intake.rx.recv().await {
        let mut events = vec![first];
        let mut pending = Pending {
            count: 1,
            counters: Arc::clone(&sender.counters),
        };
        let deadline = Instant::now() + batch.max_wait;
        while events.len() < batch.max_size {
            match tokio::time::timeout_at(deadline, intake.rx.recv()).await {
                Ok(Some(event)) => {
                    events.push(event);
                    pending.count += 1;
                }
                // Closed and empty, or time is up.
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(bucket) = &mut throttle {
            bucket.take().await;
        }
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= MAX_IN_FLIGHT {
            in_flight.join_next().await;
        }
        in_flight.spawn(Arc::clone(&sender).deliver(events, pending));
    }
    while in_flight.join_next().await.is_some() {}
}

/// kube's `flowcontrol.NewTokenBucketRateLimiter`: starts full with `burst` tokens, refills at
/// `qps`; taking a token waits for one.
struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(settings: ThrottleSettings) -> Self {
        Self {
            qps: settings.qps,
            burst: f64::from(settings.burst),
            tokens: f64::from(settings.burst),
            at: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.at).as_secs_f64() * self.qps;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.at = now;
    }

    async fn take(&mut self) {
        self.refill();
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / self.qps;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            self.refill();
        }
        self.tokens -= 1.0;
    }
}

/// Sends batches to the receiver.
struct Sender {
    client: Upstream,
    target: Uri,
    initial_backoff: Duration,
    request_timeout: Duration,
    truncate: Option<TruncateSettings>,
    counters: Arc<AuditCounters>,
    warnings: Mutex<Warnings>,
}

impl Sender {
    /// Encodes the batch, splits it by size when truncating, and sends each part.
    async fn deliver(self: Arc<Self>, events: Vec<Arc<Event>>, mut pending: Pending) {
        let mut items = Vec::with_capacity(events.len());
        for event in &events {
            match encode(event, self.truncate.as_ref()) {
                Ok(json) => items.push(json),
                Err(EncodeError::TooLarge | EncodeError::Unencodable) => {
                    pending.settle(&self.counters.dropped, 1)
                }
            }
        }
        drop(events);
        let max_batch = self.truncate.map_or(u64::MAX, |t| t.max_batch_size);
        for part in split(items, max_batch) {
            let n = part.len() as u64;
            if self.send_with_retries(event_list(&part)).await {
                pending.settle(&self.counters.written, n);
            } else {
                pending.settle(&self.counters.dropped, n);
            }
        }
    }

    /// POSTs the body until it is accepted or [`ATTEMPTS`] attempts have failed.
    async fn send_with_retries(&self, body: Bytes) -> bool {
        let mut wait = self.initial_backoff;
        for attempt in 1..=ATTEMPTS {
            match self.post(body.clone()).await {
                Ok(()) => return true,
                Err(e) => {
                    AuditCounters::add(&self.counters.errors, 1);
                    self.warn(
                        "post",
                        format!("POST {} (attempt {attempt}): {e}", self.target),
                    );
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait.mul_f64(1.0 + BACKOFF_JITTER * random_fraction())).await;
                wait = wait.mul_f64(BACKOFF_FACTOR);
            }
        }
        false
    }

    /// One POST, bounded by the request timeout; any status but 2xx is a failure.
    async fn post(&self, body: Bytes) -> Result<(), String> {
        let request = Request::post(self.target.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(body).map_err(|never| match never {}).boxed())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .send(request, Route::Multiplexed)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            // Read (and discard) the body so the connection can be reused.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {status}"))
            }
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.request_timeout))?
    }

    fn warn(&self, kind: &str, message: impl std::fmt::Display) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .warn("webhook", kind.to_owned(), message);
    }
}

/// Splits encoded events into parts whose total size stays within `max_bytes` (a part holds at
/// least one event), as kube-apiserver's truncate plugin splits batches.
fn split(items: Vec<Vec<u8>>, max_bytes: u64) -> Vec<Vec<Vec<u8>>> {
    let mut parts: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut size = 0u64;
    for item in items {
        let len = item.len() as u64;
        match parts.last_mut() {
            Some(part) if size + len <= max_bytes => {
                part.push(item);
                size += len;
            }
            _ => {
                parts.push(vec![item]);
                size = len;
            }
        }
    }
    parts
}

/// The `EventList` body around already-encoded events.
fn event_list(items: &[Vec<u8>]) -> Bytes {
    let head = format!(
        "{{\"kind\":\"EventList\",\"apiVersion\":\"{AUDIT_API_VERSION}\",\"metadata\":{{}},\"items\":["
    );
    let mut body =
        Vec::with_capacity(head.len() + items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
    body.extend_from_slice(head.as_bytes());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

/// A number in [0, 1) for jitter; std's randomly keyed hasher is random enough for that.
fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{Response, StatusCode};
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;
    use crate::audit::backend::testing::{event, object};
    use crate::audit::policy::Level;
    use crate::config::audit::{webhook_kubeconfig, Mode};

    /// What the test receiver got: one parsed body per request.
    #[derive(Clone, Default)]
    struct Received(Arc<Mutex<Vec<serde_json::Value>>>);

    impl Received {
        fn bodies(&self) -> Vec<serde_json::Value> {
            self.0.lock().unwrap().clone()
        }

        /// The audit ids of each request's items.
        fn batches(&self) -> Vec<Vec<String>> {
            self.bodies()
                .iter()
                .map(|body| {
                    body["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|item| item["auditID"].as_str().unwrap().to_owned())
                        .collect()
                })
                .collect()
        }

        async fn wait_for(&self, requests: usize) {
            for _ in 0..1000 {
                if self.0.lock().unwrap().len() >= requests {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "the receiver never got {requests} requests: {:?}",
                self.batches()
            );
        }
    }

    /// A plain-HTTP receiver on 127.0.0.1 that answers 500 to the first `failures` requests
    /// and 200 to the rest, recording every body and checking the request's shape.
    async fn receiver(failures: usize) -> (String, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/audit/sink", listener.local_addr().unwrap());
        let received = Received::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let record = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let record = record.clone();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let record = record.clone();
                        let seen = Arc::clone(&seen);
                        async move {
                            assert_eq!(request.method(), http::Method::POST);
                            assert_eq!(request.uri().path(), "/audit/sink");
                            assert_eq!(
                                request.headers()[http::header::CONTENT_TYPE],
                                "application/json"
                            );
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            record
                                .0
                                .lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap());
                            let status = if seen.fetch_add(1, Ordering::SeqCst) < failures {
                                StatusCode::INTERNAL_SERVER_ERROR
                            } else {
                                StatusCode::OK
                            };
                            let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                            *response.status_mut() = status;
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, received)
    }

    fn settings(dir: &std::path::Path, url: &str, batch: BatchSettings) -> WebhookBackendSettings {
        WebhookBackendSettings {
            config_file: webhook_kubeconfig(dir, url),
            initial_backoff: Duration::from_millis(1),
            mode: Mode::Batch,
            batch,
            truncate: None,
        }
    }

    async fn start(dir: &std::path::Path, url: &str, batch: BatchSettings) -> WebhookBackend {
        WebhookBackend::start(&settings(dir, url, batch))
            .await
            .unwrap()
    }

    fn batch(buffer_size: usize, max_size: usize, max_wait: Duration) -> BatchSettings {
        BatchSettings {
            buffer_size,
            max_size,
            max_wait,
            throttle: None,
        }
    }

    fn send(backend: &WebhookBackend, ids: &[&str]) {
        for id in ids {
            backend.process(Arc::new(event(id, Level::Metadata)));
        }
    }

    fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(20)
    }

    #[tokio::test]
    async fn full_batches_are_sent_at_once_and_the_rest_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (url, received) = receiver(0).await;
        let backend = start(dir.path(), &url, batch(100, 3, Duration::from_secs(3600))).await;
        send(&backend, &["a", "b", "c", "d", "e", "f", "g"]);
        received.wait_for(2).await;
        assert_eq!(received.batches(), [["a", "b", "c"], ["d", "e", "f"]]);
        let body = &received.bodies()[0];
        assert_eq!(body["kind"], "EventList");
        assert_eq!(body["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(body["metadata"], serde_json::json!({}));
        assert_eq!(
            body["items"][0],
            serde_json::to_value(event("a", Level::Metadata)).unwrap()
        );
        backend.shutdown(soon()).await;
        assert_eq!(received.batches()[2], ["g"]);
        let counters = backend.counters();
        assert_eq!(counters.backend, "webhook");
        assert_eq!(load(&counters.written), 7);
        assert_eq!(load(&counters.dropped), 0);
        assert_eq!(load(&counters.errors), 0);
    }

    #[tokio::test]
    async fn an_incomplete_batch_is_sent_after_max_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (url, received) = receiver(0).await;
        let backend = start(
            dir.path(),
            &url,
            batch(100, 400, Duration::from_millis(100)),
        )
        .await;
        send(&backend, &["a", "b"]);
        // No shutdown: only the timer can send this batch.
        received.wait_for(1).await;
        assert_eq!(received.batches(), [["a", "b"]]);
        backend.shutdown(soon()).await;
    }

    #[tokio::test]
    async fn a_failed_request_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let (url, received) = receiver(1).await;
        let backend = start(dir.path(), &url, batch(100, 2, Duration::from_secs(3600))).await;
        send(&backend, &["a", "b"]);
        received.wait_for(2).await;
        backend.shutdown(soon()).await;
        assert_eq!(received.batches(), [["a", "b"], ["a", "b"]]);
        let counters = backend.counters();
        assert_eq!(load(&counters.written), 2);
        assert_eq!(load(&counters.errors), 1);
        assert_eq!(load(&counters.dropped), 0);
    }

    #[tokio::test]
    async fn after_the_last_retry_the_batch_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (url, received) = receiver(usize::MAX).await;
        let backend = start(dir.path(), &url, batch(100, 2, Duration::from_secs(3600))).await;
        send(&backend, &["a", "b"]);
        backend.shutdown(soon()).await;
        assert_eq!(received.bodies().len(), 5);
        let counters = backend.counters();
        assert_eq!(load(&counters.written), 0);
        assert_eq!(load(&counters.errors), 5);
        assert_eq!(load(&counters.dropped), 2);
    }

    #[tokio::test]
    async fn a_dead_receiver_never_blocks_process() {
        let dir = tempfile::tempdir().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        let backend =
            WebhookBackend::start(&settings(dir.path(), &url, batch(2, 1, Duration::ZERO)))
                .await
                .unwrap();
        // The test runtime has one thread: nothing is sent while this loop runs, so all but
        // two events find the queue full.
        let ids: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        send(
            &backend,
            &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let counters = backend.counters();
        assert_eq!(load(&counters.dropped), 98);
        backend.shutdown(soon()).await;
        assert_eq!(load(&counters.dropped), 100);
        assert_eq!(load(&counters.errors), 2 * u64::from(ATTEMPTS));
        assert_eq!(load(&counters.written), 0);
    }

    /// A receiver that accepts connections and never answers.
    async fn hung_receiver() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn a_hung_receiver_is_bounded_by_the_request_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (url, accepted) = hung_receiver().await;
        let backend = WebhookBackend::start_with_timeout(
            &settings(dir.path(), &url, batch(5, 5, Duration::ZERO)),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
        let ids: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        send(
            &backend,
            &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let counters = backend.counters();
        assert_eq!(load(&counters.dropped), 15);
        // Every attempt times out; the batch is dropped after the fifth.
        backend.shutdown(soon()).await;
        assert_eq!(load(&counters.errors), u64::from(ATTEMPTS));
        assert_eq!(load(&counters.dropped), 20);
        assert!(accepted.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn shutdown_gives_up_at_its_deadline_and_counts_what_is_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _accepted) = hung_receiver().await;
        let backend = start(dir.path(), &url, batch(100, 3, Duration::from_secs(3600))).await;
        send(&backend, &["a", "b", "c", "d", "e"]);
        // The first batch hangs (30 s timeout); the deadline comes first.
        backend
            .shutdown(Instant::now() + Duration::from_millis(200))
            .await;
        let counters = backend.counters();
        assert_eq!(load(&counters.dropped), 5);
        assert_eq!(load(&counters.written), 0);
    }

    #[tokio::test]
    async fn truncation_shrinks_events_and_splits_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (url, received) = receiver(0).await;
        let mut config = settings(dir.path(), &url, batch(100, 10, Duration::from_secs(3600)));
        config.truncate = Some(TruncateSettings {
            max_event_size: 2000,
            max_batch_size: 2500,
        });
        let backend = WebhookBackend::start(&config).await.unwrap();
        let mut big = event("big", Level::RequestResponse);
        big.response_object = Some(object(5000));
        let mut huge = event("huge", Level::Metadata);
        huge.annotations.insert("a".into(), "y".repeat(5000));
        backend.process(Arc::new(big));
        backend.process(Arc::new(huge));
        send(&backend, &["a", "b", "c"]);
        backend.shutdown(soon()).await;
        let batches = received.batches();
        // "huge" is dropped; about 600-byte events, four to a 2500-byte request.
        assert_eq!(batches, [vec!["big", "a", "b", "c"]]);
        let first = &received.bodies()[0]["items"][0];
        assert!(first.get("responseObject").is_none());
        assert_eq!(first["annotations"]["audit.k8s.io/truncated"], "true");
        let counters = backend.counters();
        assert_eq!(load(&counters.written), 4);
        assert_eq!(load(&counters.dropped), 1);
    }

    #[test]
    fn batches_split_by_size_keep_at_least_one_event() {
        let items = |sizes: &[usize]| sizes.iter().map(|&n| vec![b'x'; n]).collect::<Vec<_>>();
        let lengths = |parts: Vec<Vec<Vec<u8>>>| {
            parts
                .iter()
                .map(|p| p.iter().map(Vec::len).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lengths(split(items(&[4, 4, 4, 12, 1]), 10)),
            [vec![4, 4], vec![4], vec![12], vec![1]]
        );
        assert!(split(Vec::new(), 10).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(ThrottleSettings {
            qps: 10.0,
            burst: 3,
        });
        let start = Instant::now();
        for _ in 0..3 {
            bucket.take().await;
        }
        assert_eq!(Instant::now(), start);
        for _ in 0..5 {
            bucket.take().await;
        }
        let elapsed = Instant::now() - start;
        assert!(
            elapsed >= Duration::from_millis(499) && elapsed < Duration::from_millis(600),
            "{elapsed:?}"
        );
    }
}
