//! One request's audit events, emitted at the stages kube-apiserver's audit filters emit them
//! (`staging/src/k8s.io/apiserver/pkg/endpoints/filters/audit.go`, `.../audit/request.go`):
//!
//! - after authentication, the policy is evaluated for the caller and the request; level `None`
//!   means no event at all;
//! - `RequestReceived` at once;
//! - `ResponseStarted` when the response headers go out, for long-running requests only (watch,
//!   exec, attach, port-forward, proxy, followed logs);
//! - `ResponseComplete` when the response ends (for upgrades: when the spliced connection closes);
//! - a refused token gives one `ResponseStarted` event with code 401 and an empty user, as
//!   kube-apiserver's `WithFailedAuthenticationAudit` filter
//!   (`filters/authn_audit.go`).
//!
//! Stages in the policy's `omitStages` are not emitted. Objects are recorded only when they
//! are JSON (the proxy does not decode protobuf) and at most [`MAX_AUDITED_OBJECT_BYTES`]; the
//! `objectRef` of a create is completed from the request's metadata in either encoding.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;
use time::macros::format_description;
use time::OffsetDateTime;

use super::backend::Backend;
use super::event::{Event, ObjectReference, ResponseStatus, UserInfo as EventUser};
use super::policy::{Level, Policy, RequestAuditConfig, Stage};
use super::request_info::{self, RequestInfo};
use crate::authn::UserInfo;
use crate::impersonation::authenticated_groups;
use crate::observe::digits;

/// The largest request or response body kept for an event; a larger one is not recorded (and
/// the event says so in an annotation), so memory per request stays bounded.
pub const MAX_AUDITED_OBJECT_BYTES: usize = 1024 * 1024;

/// The largest error answer read for its `Status` at levels that record no response object.
const MAX_ERROR_STATUS_BYTES: usize = 64 * 1024;

/// The annotation set when an object was too large (or not JSON) to record.
pub const OBJECT_OMITTED_ANNOTATION: &str = "kube-oidc-proxy.io/object-omitted";

/// The policy and where events go.
pub struct Auditor {
    policy: Policy,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").finish_non_exhaustive()
    }
}

/// What every event of a request carries, known before authentication.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub audit_id: String,
    /// Path and query as received.
    pub request_uri: String,
    pub info: RequestInfo,
    /// The client's address by the `--trusted-proxies` rule, then the TCP peer if different.
    pub source_ips: Vec<String>,
    pub user_agent: String,
    pub received: SystemTime,
}

impl Auditor {
    /// Audits by `policy` into `backend`.
    pub fn new(policy: Policy, backend: Arc<dyn Backend>) -> Self {
        Self { policy, backend }
    }

    /// A new audit ID (a random UUID, as kube-apiserver generates them).
    pub fn new_audit_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// Starts auditing an authenticated request: `None` when the policy says level `None`.
    /// Emits `RequestReceived`.
    pub fn begin(&self, facts: &RequestFacts, user: &UserInfo) -> Option<RequestAudit> {
        // The caller as kube-apiserver's audit filter sees it: with `system:authenticated`.
        let user = event_user(user);
        let config = self
            .policy
            .evaluate(&user.username, &user.groups, &facts.info);
        if config.level.is_none() {
            return None;
        }
        let audit = RequestAudit {
            backend: self.backend.clone(),
            event: Arc::new(base_event(facts, config.level, user)),
            impersonated_user: None,
            config,
            long_running: request_info::is_long_running(&facts.info),
        };
        // `base_event` is already at this stage and time.
        audit.emit_current(Stage::RequestReceived);
        Some(audit)
    }

    /// Audits a request whose token was refused: evaluated with no user (rules naming users or
    /// groups do not match), one `ResponseStarted` event with the 401.
    pub fn failed_authentication(&self, facts: &RequestFacts, attempted: &str, code: u16) {
        let config = self.policy.evaluate("", &[], &facts.info);
        if config.level.is_none() {
            return;
        }
        let mut event = base_event(facts, config.level, EventUser::default());
        event.response_status = Some(ResponseStatus {
            message: attempted.to_string(),
            code,
            ..ResponseStatus::default()
        });
        let mut audit = RequestAudit {
            backend: self.backend.clone(),
            event: Arc::new(event),
            impersonated_user: None,
            config,
            long_running: request_info::is_long_running(&facts.info),
        };
        audit.emit(Stage::ResponseStarted, SystemTime::now());
    }
}

/// kube-apiserver's `getAuthMethods` message for a refused request.
pub fn authentication_failed_message(bearer_presented: bool) -> &'static str {
    if bearer_presented {
        "Authentication failed, attempted: bearer"
    } else {
        "Authentication failed, no credentials provided"
    }
}

/// The event at stage `RequestReceived`, stamped with the time the request was received.
fn base_event(facts: &RequestFacts, level: Level, user: EventUser) -> Event {
    let info = &facts.info;
    let received = micro_time(facts.received);
    Event {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level,
        audit_id: facts.audit_id.clone(),
        stage: Stage::RequestReceived,
        request_uri: facts.request_uri.clone(),
        verb: info.verb.clone(),
        user,
        impersonated_user: None,
        source_ips: facts.source_ips.clone(),
        user_agent: facts.user_agent.clone(),
        object_ref: info.is_resource_request.then(|| ObjectReference {
            resource: info.resource.clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            api_group: info.api_group.clone(),
            api_version: info.api_version.clone(),
            subresource: info.subresource.clone(),
            ..ObjectReference::default()
        }),
        response_status: None,
        request_object: None,
        response_object: None,
        stage_timestamp: received.clone(),
        request_received_timestamp: received,
        annotations: BTreeMap::new(),
    }
}

/// An authenticated (or impersonated) user as kube-apiserver records it: its groups include
/// `system:authenticated`, as the authenticator and the impersonation filter add it (and as
/// the proxy's `Impersonate-Group` headers carry it).
fn event_user(user: &UserInfo) -> EventUser {
    EventUser {
        username: user.username.clone(),
        uid: user.uid.clone().unwrap_or_default(),
        groups: authenticated_groups(&user.groups),
        extra: user.extra.clone(),
    }
}

/// `metav1.MicroTime` as JSON: RFC 3339, UTC, six fractional digits.
const MICRO_TIME: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// [`MICRO_TIME`], written digit by digit ([`digits`]: three per request).
fn micro_time(at: SystemTime) -> String {
    let at = OffsetDateTime::from(at);
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return at.format(MICRO_TIME).unwrap_or_default();
    }
    let (hour, minute, second, micro) = at.to_hms_micro();
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    for (range, value) in [
        (0..4, year.unsigned_abs()),
        (5..7, u32::from(u8::from(at.month()))),
        (8..10, u32::from(at.day())),
        (11..13, u32::from(hour)),
        (14..16, u32::from(minute)),
        (17..19, u32::from(second)),
        (20..26, micro),
    ] {
        digits::fill(&mut text[range], value);
    }
    digits::text(&text).to_owned()
}

/// One request's audit, between `RequestReceived` and `ResponseComplete`.
pub struct RequestAudit {
    backend: Arc<dyn Backend>,
    config: RequestAuditConfig,
    /// The event of the last stage emitted, shared with the backends. The next stage changes
    /// it in place once they have let go of it (`Arc::make_mut`), as the log writer usually
    /// has by then, rather than cloning it for every stage.
    event: Arc<Event>,
    /// The identity sent upstream, for the stages after `RequestReceived`: kept aside until
    /// the next one, so that setting it right after `RequestReceived` clones nothing.
    impersonated_user: Option<EventUser>,
    /// kube-apiserver's long-running rule ([`request_info::is_long_running`]): the response
    /// is a stream (watch events, exec bytes, followed logs), not one object.
    long_running: bool,
}

impl std::fmt::Debug for RequestAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestAudit")
            .field("audit_id", &self.event.audit_id)
            .field("level", &self.config.level)
            .finish_non_exhaustive()
    }
}

/// What the response carried, for `ResponseComplete`.
#[derive(Debug, Default)]
pub struct Completion {
    /// The HTTP status code.
    pub code: u16,
    /// The request body if captured whole (`None`: not captured or too large).
    pub request_body: Option<Bytes>,
    /// Whether the request had a body beyond the capture limit.
    pub request_body_too_large: bool,
    /// The response body if captured whole.
    pub response_body: Option<Bytes>,
    /// Whether the response body outgrew the capture limit.
    pub response_body_too_large: bool,
}

impl RequestAudit {
    /// The level the policy chose.
    pub fn level(&self) -> Level {
        self.config.level
    }

    /// Whether the request body must be captured: at level `Request` and above, and at every
    /// level for `create` and `update`, whose object names what the event is about
    /// (kube-apiserver's `LogRequestObject` completes `objectRef` from it at `Metadata` too).
    pub fn wants_request_body(&self) -> bool {
        self.config.level.records_request_body()
            || matches!(self.event.verb.as_str(), "create" | "update")
    }

    /// How much of a response with `code` to capture: objects at `RequestResponse` (not for
    /// streams), and error answers at every level, whose `Status` fills in `responseStatus`.
    pub fn response_capture_limit(&self, code: u16) -> Option<usize> {
        if self.config.level.records_response_body() && !self.is_streaming() {
            Some(MAX_AUDITED_OBJECT_BYTES)
        } else if code >= 400 {
            Some(MAX_ERROR_STATUS_BYTES)
        } else {
            None
        }
    }

    /// The identity sent upstream.
    pub fn set_impersonated_user(&mut self, user: &UserInfo) {
        self.impersonated_user = Some(event_user(user));
    }

    /// The event, to change for the next stage: no longer shared, and with the changes kept
    /// aside applied.
    fn event_mut(&mut self) -> &mut Event {
        let event = Arc::make_mut(&mut self.event);
        if let Some(user) = self.impersonated_user.take() {
            event.impersonated_user = Some(user);
        }
        event
    }

    /// Emits `ResponseStarted` (long-running requests) with the response code.
    pub fn response_started(&mut self, code: u16) {
        self.event_mut().response_status = Some(ResponseStatus {
            code,
            ..ResponseStatus::default()
        });
        self.emit(Stage::ResponseStarted, SystemTime::now());
    }

    /// Emits `ResponseComplete`.
    pub fn complete(mut self, completion: Completion) {
        let mut status = ResponseStatus {
            code: completion.code,
            ..ResponseStatus::default()
        };
        let response = completion.response_body.as_deref().and_then(json_object);
        // An error answer's `Status` is copied into `responseStatus` at every level, as
        // kube-apiserver's `LogResponseObject` does.
        if let Some(Value::Object(object)) = &response {
            if object.get("kind").and_then(Value::as_str) == Some("Status") {
                let text = |key: &str| {
                    object
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                status.status = text("status");
                status.message = text("message");
                status.reason = text("reason");
            }
        }
        let omit_managed_fields = self.config.omit_managed_fields;
        let records_request = self.config.level.records_request_body();
        let records_response = self.config.level.records_response_body() && !self.is_streaming();
        let event = self.event_mut();
        event.response_status = Some(status);

        let request = completion.request_body.as_deref().and_then(json_object);
        if let Some(request) = &request {
            complete_object_ref(event, json_object_meta(request));
        } else if let Some(body) = completion.request_body.as_deref() {
            // kubectl sends built-in objects as protobuf: its metadata names the object too.
            complete_object_ref(event, protobuf_object_meta(body));
        }
        if records_request {
            match request {
                Some(object) => {
                    event.request_object = raw(object, omit_managed_fields);
                }
                None if completion.request_body_too_large => {
                    omitted(event, "requestObject", "larger than the recording limit")
                }
                None => {}
            }
        }
        if records_response {
            match response {
                Some(object) => {
                    event.response_object = raw(object, omit_managed_fields);
                }
                None if completion.response_body_too_large => {
                    omitted(event, "responseObject", "larger than the recording limit")
                }
                None => {}
            }
        }
        self.emit(Stage::ResponseComplete, SystemTime::now());
    }

    /// Long-running responses stream events or bytes, not one object (kube-apiserver records
    /// no response object for them either).
    fn is_streaming(&self) -> bool {
        self.long_running
    }

    /// Emits the event at `stage`, stamped `at`.
    fn emit(&mut self, stage: Stage, at: SystemTime) {
        if self.config.omit_stages.contains(stage) {
            return;
        }
        let event = self.event_mut();
        event.stage = stage;
        event.stage_timestamp = micro_time(at);
        self.emit_current(stage);
    }

    /// Hands the event as it is to the backends (unless the policy omits `stage`).
    fn emit_current(&self, stage: Stage) {
        if !self.config.omit_stages.contains(stage) {
            self.backend.process(Arc::clone(&self.event));
        }
    }
}

fn omitted(event: &mut Event, what: &str, why: &str) {
    event
        .annotations
        .insert(OBJECT_OMITTED_ANNOTATION.into(), format!("{what}: {why}"));
}

/// kube-apiserver's `LogRequestObject`: empty `objectRef` fields are taken from the request
/// object's metadata.
fn complete_object_ref(event: &mut Event, metadata: Option<ObjectMetaFields>) {
    let (Some(object_ref), Some(metadata)) = (event.object_ref.as_mut(), metadata) else {
        return;
    };
    for (slot, value) in [
        (&mut object_ref.namespace, metadata.namespace),
        (&mut object_ref.name, metadata.name),
        (&mut object_ref.uid, metadata.uid),
        (&mut object_ref.resource_version, metadata.resource_version),
    ] {
        if slot.is_empty() {
            *slot = value;
        }
    }
}

/// The `metadata` fields that complete an `objectRef`.
#[derive(Debug, Default, PartialEq, Eq)]
struct ObjectMetaFields {
    namespace: String,
    name: String,
    uid: String,
    resource_version: String,
}

fn json_object_meta(object: &Value) -> Option<ObjectMetaFields> {
    let metadata = object.get("metadata").and_then(Value::as_object)?;
    let field = |key: &str| {
        metadata
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(ObjectMetaFields {
        namespace: field("namespace"),
        name: field("name"),
        uid: field("uid"),
        resource_version: field("resourceVersion"),
    })
}

/// The magic that starts Kubernetes' protobuf encoding, followed by a `runtime.Unknown`.
const PROTOBUF_MAGIC: &[u8] = b"k8s\x00";

/// The `metadata` of a body in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`,
/// what kubectl sends for built-in objects): `runtime.Unknown.raw` (field 2) holds the object,
/// whose field 1 is `metadata` in every `k8s.io/api` type; `ObjectMeta` has `name` = 1,
/// `namespace` = 3, `uid` = 5, `resourceVersion` = 6. Only these wire-format facts are used,
/// no schema; `None` for anything else.
fn protobuf_object_meta(body: &[u8]) -> Option<ObjectMetaFields> {
    let unknown = body.strip_prefix(PROTOBUF_MAGIC)?;
    let raw = protobuf_field(unknown, 2)?;
    let metadata = protobuf_field(raw, 1)?;
    let text = |number: u64| {
        protobuf_field(metadata, number)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
            .to_string()
    };
    Some(ObjectMetaFields {
        name: text(1),
        namespace: text(3),
        uid: text(5),
        resource_version: text(6),
    })
}

/// The bytes of the first length-delimited field `number` of a protobuf message, or `None`
/// (absent, or the message is malformed).
fn protobuf_field(mut message: &[u8], number: u64) -> Option<&[u8]> {
    fn varint(input: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = input.split_first()?;
            *input = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    fn skip<'a>(input: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
        let (taken, rest) = (input.get(..len)?, input.get(len..)?);
        *input = rest;
        Some(taken)
    }
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let bytes = match key & 7 {
            0 => {
                varint(&mut message)?;
                None
            }
            1 => skip(&mut message, 8).map(|_| None)?,
            2 => {
                let len = usize::try_from(varint(&mut message)?).ok()?;
                Some(skip(&mut message, len)?)
            }
            5 => skip(&mut message, 4).map(|_| None)?,
            _ => return None,
        };
        if key >> 3 == number {
            if let Some(bytes) = bytes {
                return Some(bytes);
            }
        }
    }
    None
}

/// The body as a JSON object, or `None` (not JSON: e.g. protobuf, or a plain-text error).
fn json_object(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
}

/// The object as recorded, `metadata.managedFields` removed (of each list item too) when the
/// policy says `omitManagedFields`.
fn raw(mut object: Value, omit_managed_fields: bool) -> Option<Box<RawValue>> {
    if omit_managed_fields {
        remove_managed_fields(&mut object);
        if let Some(Value::Array(items)) = object.get_mut("items") {
            items.iter_mut().for_each(remove_managed_fields);
        }
    }
    serde_json::value::to_raw_value(&object).ok()
}

fn remove_managed_fields(object: &mut Value) {
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.remove("managedFields");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::backend::{AuditCounters, ShutdownFuture};
    use crate::audit::request_info;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recording(Mutex<Vec<Arc<Event>>>);

    impl Backend for Recording {
        fn process(&self, event: Arc<Event>) {
            self.0.lock().unwrap().push(event);
        }
        fn shutdown(&self, _: tokio::time::Instant) -> ShutdownFuture<'_> {
            Box::pin(async {})
        }
        fn all_counters(&self) -> Vec<Arc<AuditCounters>> {
            Vec::new()
        }
    }

    fn auditor(policy: &str) -> (Auditor, Arc<Recording>) {
        let recording = Arc::new(Recording::default());
        let policy = crate::audit::policy::parse(policy.as_bytes()).unwrap();
        (Auditor::new(policy, recording.clone()), recording)
    }

    fn facts(method: &str, uri: &str) -> RequestFacts {
        let uri: http::Uri = uri.parse().unwrap();
        RequestFacts {
            audit_id: "id-1".into(),
            request_uri: uri.to_string(),
            info: request_info::parse(&method.parse().unwrap(), uri.path(), uri.query()),
            source_ips: vec!["10.0.0.1".into()],
            user_agent: "kubectl/v1.33".into(),
            received: SystemTime::UNIX_EPOCH,
        }
    }

    fn alice() -> UserInfo {
        UserInfo {
            username: "alice".into(),
            groups: vec!["dev".into()],
            ..UserInfo::default()
        }
    }

    fn json(event: &Event) -> Value {
        serde_json::to_value(event).unwrap()
    }

    /// The recorded events as JSON, in order.
    fn recorded(recording: &Recording) -> Vec<Value> {
        recording
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| json(e))
            .collect()
    }

    const METADATA: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

    #[test]
    fn a_short_request_gets_received_and_complete_with_object_ref_and_users() {
        let (auditor, recording) = auditor(METADATA);
        let facts = facts(
            "POST",
            "/api/v1/namespaces/team-a/configmaps?fieldManager=kubectl",
        );
        let mut audit = auditor.begin(&facts, &alice()).unwrap();
        assert!(
            audit.wants_request_body(),
            "create names its object in the body"
        );
        let target = UserInfo {
            username: "bob".into(),
            ..UserInfo::default()
        };
        audit.set_impersonated_user(&target);
        audit.complete(Completion {
            code: 201,
            request_body: Some(Bytes::from_static(
                br#"{"kind":"ConfigMap","metadata":{"name":"cm1"},"data":{"secret":"x"}}"#,
            )),
            response_body: Some(Bytes::from_static(br#"{"kind":"ConfigMap"}"#)),
            ..Completion::default()
        });
        let events = recording.0.lock().unwrap().clone();
        let stages: Vec<Value> = events.iter().map(|e| json(e)["stage"].clone()).collect();
        assert_eq!(stages, vec!["RequestReceived", "ResponseComplete"]);
        let complete = json(&events[1]);
        assert_eq!(complete["kind"], "Event");
        assert_eq!(complete["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(complete["level"], "Metadata");
        assert_eq!(complete["auditID"], "id-1");
        assert_eq!(complete["verb"], "create");
        assert_eq!(
            complete["requestURI"],
            "/api/v1/namespaces/team-a/configmaps?fieldManager=kubectl"
        );
        assert_eq!(
            complete["objectRef"],
            serde_json::json!({"resource": "configmaps", "namespace": "team-a", "name": "cm1",
                               "apiVersion": "v1"})
        );
        assert_eq!(
            complete["user"],
            serde_json::json!({"username": "alice", "groups": ["dev", "system:authenticated"]})
        );
        assert_eq!(
            complete["impersonatedUser"],
            serde_json::json!({"username": "bob", "groups": ["system:authenticated"]})
        );
        assert_eq!(complete["sourceIPs"], serde_json::json!(["10.0.0.1"]));
        assert_eq!(complete["userAgent"], "kubectl/v1.33");
        assert_eq!(
            complete["responseStatus"],
            serde_json::json!({"metadata": {}, "code": 201})
        );
        assert_eq!(
            complete["requestReceivedTimestamp"],
            "1970-01-01T00:00:00.000000Z"
        );
        // Metadata level: no objects.
        assert!(complete.get("requestObject").is_none());
        assert!(complete.get("responseObject").is_none());
        // The first event has no response yet.
        assert!(json(&events[0]).get("responseStatus").is_none());
    }

    #[test]
    fn levels_record_objects_and_omit_managed_fields() {
        let (auditor, recording) = auditor(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules:\n\
             - level: RequestResponse\n  resources: [{group: \"\", resources: [configmaps]}]\n\
             - level: Request\n",
        );
        let body = Bytes::from_static(
            br#"{"metadata":{"name":"a","managedFields":[{"manager":"kubectl"}]},"data":{}}"#,
        );
        let list = Bytes::from_static(
            br#"{"kind":"ConfigMapList","items":[{"metadata":{"name":"a","managedFields":[1]}}]}"#,
        );
        let audit = auditor
            .begin(&facts("PUT", "/api/v1/namespaces/n/configmaps/a"), &alice())
            .unwrap();
        audit.complete(Completion {
            code: 200,
            request_body: Some(body.clone()),
            response_body: Some(body.clone()),
            ..Completion::default()
        });
        let audit = auditor
            .begin(&facts("GET", "/api/v1/namespaces/n/configmaps"), &alice())
            .unwrap();
        audit.complete(Completion {
            code: 200,
            response_body: Some(list),
            ..Completion::default()
        });
        let audit = auditor
            .begin(&facts("PUT", "/api/v1/namespaces/n/secrets/s"), &alice())
            .unwrap();
        assert_eq!(audit.level(), Level::Request);
        audit.complete(Completion {
            code: 200,
            request_body: Some(body.clone()),
            response_body: Some(body),
            ..Completion::default()
        });
        let events: Vec<Value> = recording
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.stage == Stage::ResponseComplete)
            .map(|e| json(e))
            .collect();
        let stripped = serde_json::json!({"metadata": {"name": "a"}, "data": {}});
        assert_eq!(events[0]["requestObject"], stripped);
        assert_eq!(events[0]["responseObject"], stripped);
        assert_eq!(
            events[1]["responseObject"]["items"][0],
            serde_json::json!({"metadata": {"name": "a"}})
        );
        assert_eq!(events[2]["level"], "Request");
        assert_eq!(events[2]["requestObject"], stripped);
        assert!(events[2].get("responseObject").is_none());
    }

    #[test]
    fn long_running_requests_get_response_started_and_no_response_object() {
        let (auditor, recording) = auditor(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
             - level: RequestResponse\n",
        );
        let mut audit = auditor
            .begin(
                &facts("GET", "/api/v1/namespaces/n/pods?watch=true"),
                &alice(),
            )
            .unwrap();
        audit.response_started(200);
        audit.complete(Completion {
            code: 200,
            response_body: Some(Bytes::from_static(br#"{"type":"ADDED","object":{}}"#)),
            ..Completion::default()
        });
        let events = recorded(&recording);
        let stages: Vec<&Value> = events.iter().map(|e| &e["stage"]).collect();
        assert_eq!(
            stages,
            vec!["ResponseStarted", "ResponseComplete"],
            "RequestReceived omitted"
        );
        assert_eq!(events[0]["responseStatus"]["code"], 200);
        assert!(events[1].get("responseObject").is_none());
    }

    #[test]
    fn error_status_bodies_fill_response_status_and_none_level_emits_nothing() {
        let (auditor, recording) = auditor(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n\
             - level: None\n  users: [system:kube-proxy]\n- level: Metadata\n",
        );
        let proxy_user = UserInfo {
            username: "system:kube-proxy".into(),
            ..UserInfo::default()
        };
        assert!(auditor
            .begin(&facts("GET", "/api/v1/pods"), &proxy_user)
            .is_none());
        let audit = auditor
            .begin(&facts("GET", "/api/v1/nodes"), &alice())
            .unwrap();
        audit.complete(Completion {
            code: 403,
            response_body: Some(Bytes::from_static(
                br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes is forbidden","reason":"Forbidden","code":403}"#,
            )),
            ..Completion::default()
        });
        let events = recording.0.lock().unwrap().clone();
        assert_eq!(events.len(), 2);
        assert_eq!(
            json(&events[1])["responseStatus"],
            serde_json::json!({"metadata": {}, "status": "Failure", "message": "nodes is forbidden",
                               "reason": "Forbidden", "code": 403})
        );
        assert!(json(&events[1]).get("responseObject").is_none());
    }

    #[test]
    fn rules_for_system_authenticated_match_every_authenticated_caller() {
        let (auditor, _) = auditor(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n\
             - level: Request\n  userGroups: [system:authenticated]\n",
        );
        let audit = auditor
            .begin(&facts("GET", "/api/v1/pods"), &alice())
            .expect("alice is authenticated");
        assert_eq!(audit.level(), Level::Request);
    }

    #[test]
    fn a_refused_token_is_one_response_started_event_without_a_user() {
        let (auditor, recording) = auditor(METADATA);
        auditor.failed_authentication(
            &facts("GET", "/api/v1/secrets"),
            authentication_failed_message(true),
            401,
        );
        let events = recording.0.lock().unwrap().clone();
        assert_eq!(events.len(), 1);
        let event = json(&events[0]);
        assert_eq!(event["stage"], "ResponseStarted");
        assert_eq!(event["user"], serde_json::json!({}));
        assert_eq!(
            event["responseStatus"],
            serde_json::json!({"metadata": {}, "message": "Authentication failed, attempted: bearer",
                               "code": 401})
        );
        assert_eq!(event["objectRef"]["resource"], "secrets");
    }

    /// A protobuf length-delimited field.
    fn proto(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_protobuf_create_completes_the_object_ref_from_its_metadata() {
        let (auditor, recording) = auditor(METADATA);
        // What kubectl sends for `kubectl create configmap cm1 -n team-a --from-literal=k=v`.
        let metadata = [proto(1, b"cm1"), proto(3, b"team-a")].concat();
        let config_map = [proto(1, &metadata), proto(2, &proto(1, b"k"))].concat();
        let type_meta = [proto(1, b"v1"), proto(2, b"ConfigMap")].concat();
        let body = [
            PROTOBUF_MAGIC.to_vec(),
            proto(1, &type_meta),
            proto(2, &config_map),
            proto(3, b""),
            proto(4, b""),
        ]
        .concat();
        let audit = auditor
            .begin(
                &facts("POST", "/api/v1/namespaces/team-a/configmaps"),
                &alice(),
            )
            .unwrap();
        audit.complete(Completion {
            code: 201,
            request_body: Some(Bytes::from(body)),
            ..Completion::default()
        });
        let event = json(&recording.0.lock().unwrap()[1]);
        assert_eq!(
            event["objectRef"],
            serde_json::json!({"resource": "configmaps", "namespace": "team-a", "name": "cm1",
                               "apiVersion": "v1"})
        );
        assert!(
            event.get("requestObject").is_none(),
            "protobuf is not recorded"
        );
        // Not protobuf, or cut short: nothing is made up.
        assert_eq!(protobuf_object_meta(b"k8s\x00\x12\x05ab"), None);
        assert_eq!(protobuf_object_meta(b"plain text"), None);
    }

    #[test]
    fn micro_time_is_the_time_crates_format() {
        let mut at = 0u64;
        // Seconds from 1970 past 9999 with varied subseconds; the `time` crate formats them all.
        while at < 300_000_000_000 {
            let nanos = (at.wrapping_mul(2_654_435_761) % 1_000_000_000) as u32;
            let time = SystemTime::UNIX_EPOCH + std::time::Duration::new(at, nanos);
            assert_eq!(
                micro_time(time),
                OffsetDateTime::from(time).format(MICRO_TIME).unwrap(),
                "{at}.{nanos:09}"
            );
            at = at * 3 / 2 + 86_399;
        }
        assert_eq!(
            micro_time(SystemTime::UNIX_EPOCH + std::time::Duration::new(951_782_400, 999_999)),
            "2000-02-29T00:00:00.000999Z"
        );
    }

    #[test]
    fn a_stage_still_held_by_a_backend_is_not_changed_by_the_next() {
        let (auditor, recording) = auditor(METADATA);
        let mut audit = auditor
            .begin(&facts("GET", "/api/v1/namespaces/n/pods"), &alice())
            .unwrap();
        audit.set_impersonated_user(&alice());
        audit.response_started(200);
        audit.complete(Completion {
            code: 404,
            ..Completion::default()
        });
        let events = recorded(&recording);
        let stages: Vec<&Value> = events.iter().map(|e| &e["stage"]).collect();
        assert_eq!(
            stages,
            vec!["RequestReceived", "ResponseStarted", "ResponseComplete"]
        );
        assert!(events[0].get("impersonatedUser").is_none());
        assert!(events[0].get("responseStatus").is_none());
        assert_eq!(
            events[0]["stageTimestamp"],
            events[0]["requestReceivedTimestamp"]
        );
        assert_eq!(events[1]["impersonatedUser"]["username"], "alice");
        assert_eq!(events[1]["responseStatus"]["code"], 200);
        assert_eq!(events[2]["responseStatus"]["code"], 404);
    }

    #[test]
    fn oversized_objects_are_noted_not_recorded() {
        let (auditor, recording) = auditor(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n",
        );
        let audit = auditor
            .begin(&facts("GET", "/api/v1/namespaces/n/configmaps"), &alice())
            .unwrap();
        audit.complete(Completion {
            code: 200,
            response_body_too_large: true,
            ..Completion::default()
        });
        let event = json(&recording.0.lock().unwrap()[1]);
        assert!(event.get("responseObject").is_none());
        assert_eq!(
            event["annotations"][OBJECT_OMITTED_ANNOTATION],
            "responseObject: larger than the recording limit"
        );
    }
}
