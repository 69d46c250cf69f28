//! Where audit events go: a log file (or stdout) and a webhook. Both take events without ever
//! blocking the request that produced them: [`Backend::process`] only tries to put the event
//! in a bounded queue, and a full queue drops the event and counts it.
//!
//! The pieces both backends share live here: the queue, the per-backend [`AuditCounters`],
//! kube-apiserver's truncation (`plugin/pkg/audit/truncate`) and rate-limited warnings.

pub mod log;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::mpsc;

use super::event::Event;
use super::policy::Level;
use crate::config::audit::TruncateSettings;

/// What [`Backend::shutdown`] returns.
pub type ShutdownFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A destination for audit events.
pub trait Backend: Send + Sync {
    /// Queues one event. Never blocks and never fails the request: an event that cannot be
    /// queued is dropped and counted.
    fn process(&self, event: Arc<Event>);

    /// Stops taking events (later ones are dropped and counted) and delivers what is queued,
    /// giving up at `deadline`; what is still undelivered then is counted as dropped when it
    /// can be (the log's writer thread cannot be stopped mid-write and is left to finish).
    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_>;

    /// The counters of every destination behind this backend.
    fn all_counters(&self) -> Vec<Arc<AuditCounters>>;
}

/// Delivery counters of one backend, read by the metrics endpoint at scrape time.
#[derive(Debug)]
pub struct AuditCounters {
    /// `log` or `webhook`.
    pub backend: &'static str,
    /// Events delivered (written to the log, accepted by the webhook).
    pub written: AtomicU64,
    /// Events lost: queue full, too large after truncation, retries exhausted, or still
    /// undelivered at the shutdown deadline.
    pub dropped: AtomicU64,
    /// Failed attempts: one per failed log write or webhook request (a retried request that
    /// fails three times counts three).
    pub errors: AtomicU64,
}

impl AuditCounters {
    /// Zeroed counters for `backend`.
    pub fn new(backend: &'static str) -> Self {
        Self {
            backend,
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Several backends as one: each event goes to all of them.
#[derive(Default)]
pub struct Backends {
    backends: Vec<Box<dyn Backend>>,
}

impl Backends {
    /// No backend yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend.
    pub fn push(&mut self, backend: impl Backend + 'static) {
        self.backends.push(Box::new(backend));
    }

    /// True when no backend was added (auditing is off).
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }
}

impl Backend for Backends {
    fn process(&self, event: Arc<Event>) {
        for backend in &self.backends {
            backend.process(Arc::clone(&event));
        }
    }

    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        Box::pin(async move {
            futures_util::future::join_all(self.backends.iter().map(|b| b.shutdown(deadline)))
                .await;
        })
    }

    fn all_counters(&self) -> Vec<Arc<AuditCounters>> {
        self.backends
            .iter()
            .flat_map(|b| b.all_counters())
            .collect()
    }
}

/// The bounded queue in front of a backend's worker. Closing it lets the worker drain what
/// is queued and stop.
struct Queue {
    tx: ArcSwapOption<mpsc::Sender<Arc<Event>>>,
    counters: Arc<AuditCounters>,
}

impl Queue {
    /// A queue of `capacity` events (at least one) and its receiving end.
    fn new(capacity: usize, counters: Arc<AuditCounters>) -> (Self, Intake) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queue = Self {
            tx: ArcSwapOption::from_pointee(tx),
            counters: Arc::clone(&counters),
        };
        (queue, Intake { rx, counters })
    }

    /// Queues an event, or drops and counts it when the queue is full or closed.
    fn push(&self, event: Arc<Event>) {
        let queued = match &*self.tx.load() {
            Some(tx) => tx.try_send(event).is_ok(),
            None => false,
        };
        if !queued {
            AuditCounters::add(&self.counters.dropped, 1);
        }
    }

    /// Takes no more events.
    fn close(&self) {
        self.tx.store(None);
    }
}

/// The receiving end of a [`Queue`]; events still in it when it is dropped are counted as
/// dropped.
struct Intake {
    rx: mpsc::Receiver<Arc<Event>>,
    counters: Arc<AuditCounters>,
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.rx.close();
        let mut left = 0;
        while self.rx.try_recv().is_ok() {
            left += 1;
        }
        AuditCounters::add(&self.counters.dropped, left);
    }
}

/// kube-apiserver's truncate annotation.
const TRUNCATED_ANNOTATION: &str = "audit.k8s.io/truncated";

/// Why an event was not encoded.
#[derive(Debug, PartialEq, Eq)]
enum EncodeError {
    /// Larger than the maximum event size even without its request and response objects.
    TooLarge,
    /// serde_json refused it (it does not, for [`Event`]).
    Unencodable,
}

/// The event as one JSON document (without a newline); see [`encode_into`].
fn encode(event: &Event, truncate: Option<&TruncateSettings>) -> Result<Vec<u8>, EncodeError> {
    let mut json = Vec::new();
    encode_into(event, truncate, &mut json)?;
    Ok(json)
}

/// Appends the event as one JSON document (without a newline) to `out`, truncated as
/// kube-apiserver's truncate plugin does when `truncate` is set: an event over the maximum
/// size at level `Request` or above loses its request and response objects and gains the
/// annotation `audit.k8s.io/truncated: "true"`; one still too large is refused (and `out` left
/// as it was).
fn encode_into(
    event: &Event,
    truncate: Option<&TruncateSettings>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    event
        .write_json(out)
        .map_err(|_| EncodeError::Unencodable)?;
    let Some(limits) = truncate else {
        return Ok(());
    };
    let too_large = |out: &Vec<u8>| (out.len() - start) as u64 > limits.max_event_size;
    if too_large(out) && event.level >= Level::Request {
        let mut smaller = event.clone();
        smaller.request_object = None;
        smaller.response_object = None;
        smaller
            .annotations
            .insert(TRUNCATED_ANNOTATION.into(), "true".into());
        out.truncate(start);
        smaller
            .write_json(out)
            .map_err(|_| EncodeError::Unencodable)?;
    }
    if too_large(out) {
        out.truncate(start);
        return Err(EncodeError::TooLarge);
    }
    Ok(())
}

/// Warnings from a backend's worker, at most one a minute for each kind of problem, so a
/// dead disk or receiver does not flood the diagnostic log.
#[derive(Default)]
struct Warnings {
    last: HashMap<String, Instant>,
}

impl Warnings {
    const INTERVAL: Duration = Duration::from_secs(60);

    fn warn(&mut self, backend: &str, kind: String, message: impl std::fmt::Display) {
        let now = Instant::now();
        match self.last.get(&kind) {
            Some(at) if now.duration_since(*at) < Self::INTERVAL => {}
            _ => {
                tracing::warn!(backend, "audit events not delivered: {message}");
                self.last.insert(kind, now);
            }
        }
    }
}

/// Events built by hand for the backends' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use serde_json::value::RawValue;

    use crate::audit::event::{Event, ObjectReference, ResponseStatus, UserInfo};
    use crate::audit::policy::{Level, Stage};

    /// A `ResponseComplete` event at `level` with id `id`.
    pub(crate) fn event(id: &str, level: Level) -> Event {
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level,
            audit_id: id.into(),
            stage: Stage::ResponseComplete,
            request_uri: "/api/v1/namespaces/default/pods?limit=500".into(),
            verb: "list".into(),
            user: UserInfo {
                username: "alice@example.com".into(),
                groups: vec!["dev".into(), "system:authenticated".into()],
                ..UserInfo::default()
            },
            impersonated_user: None,
            source_ips: vec!["10.0.0.1".into()],
            user_agent: "kubectl/v1.33.0".into(),
            object_ref: Some(ObjectReference {
                resource: "pods".into(),
                namespace: "default".into(),
                api_version: "v1".into(),
                ..ObjectReference::default()
            }),
            response_status: Some(ResponseStatus {
                code: 200,
                ..ResponseStatus::default()
            }),
            request_object: None,
            response_object: None,
            request_received_timestamp: "2024-05-01T10:00:00.123400Z".into(),
            stage_timestamp: "2024-05-01T10:00:00.200000Z".into(),
            annotations: BTreeMap::new(),
        }
    }

    /// A JSON object whose serialization is about `bytes` long.
    pub(crate) fn object(bytes: usize) -> Box<RawValue> {
        RawValue::from_string(format!("{{\"data\":\"{}\"}}", "x".repeat(bytes))).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{event, object};
    use super::*;

    const LIMITS: TruncateSettings = TruncateSettings {
        max_event_size: 2000,
        max_batch_size: 10_000,
    };

    #[test]
    fn small_events_are_untouched() {
        let mut e = event("a", Level::RequestResponse);
        e.request_object = Some(object(100));
        let json = encode(&e, Some(&LIMITS)).unwrap();
        assert_eq!(json, serde_json::to_vec(&e).unwrap());
    }

    #[test]
    fn large_events_lose_their_objects_and_say_so() {
        let mut e = event("a", Level::RequestResponse);
        e.request_object = Some(object(5000));
        e.response_object = Some(object(5000));
        // Without truncation, nothing changes.
        assert!(encode(&e, None).unwrap().len() > 10_000);
        let json: serde_json::Value =
            serde_json::from_slice(&encode(&e, Some(&LIMITS)).unwrap()).unwrap();
        assert!(json.get("requestObject").is_none());
        assert!(json.get("responseObject").is_none());
        assert_eq!(json["annotations"][TRUNCATED_ANNOTATION], "true");
        assert_eq!(json["auditID"], "a");
    }

    #[test]
    fn events_still_too_large_are_refused() {
        // Metadata level: nothing to strip.
        let mut e = event("a", Level::Metadata);
        e.annotations.insert("big".into(), "y".repeat(5000));
        assert_eq!(encode(&e, Some(&LIMITS)), Err(EncodeError::TooLarge));
        // Request level, still too large after stripping; what was in the buffer stays.
        e.level = Level::Request;
        e.request_object = Some(object(100));
        let mut out = b"before\n".to_vec();
        assert_eq!(
            encode_into(&e, Some(&LIMITS), &mut out),
            Err(EncodeError::TooLarge)
        );
        assert_eq!(out, b"before\n");
    }

    #[test]
    fn a_closed_or_full_queue_drops_and_counts() {
        let counters = Arc::new(AuditCounters::new("test"));
        let (queue, intake) = Queue::new(2, Arc::clone(&counters));
        for id in ["a", "b", "c"] {
            queue.push(Arc::new(event(id, Level::Metadata)));
        }
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 1);
        queue.close();
        queue.push(Arc::new(event("d", Level::Metadata)));
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 2);
        // The two queued events were never taken: dropping the intake counts them.
        drop(intake);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 4);
    }
}
