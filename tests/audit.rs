//! Audit events through the real binary: a policy file and a log file (JSON lines) or a webhook
//! receiver, requests through the proxy to the recording fake API server, then the events
//! written must be the ones kube-apiserver would write for them: levels, stages, fields, the
//! shared `Audit-ID`, failed authentications and refused `kubectl --as`. Backends that fail
//! must never delay or fail a request, and a bad audit configuration stops the proxy at start.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::apiserver::{FakeApiServer, Recorded};
use support::http::{body_bytes, client, full, serve, Handler};
use support::issuer::TestIssuer;
use support::pki::TestCa;
use support::proxy::{free_port, ProxyProcess};
use support::reviews::Answer;
use support::setup::{setup, Setup};

/// A policy that records everything at `Metadata`.
const METADATA: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

/// How long a test waits for the asynchronous writers.
const PATIENCE: Duration = Duration::from_secs(15);

/// A temporary directory with a policy file, and the log file path next to it.
struct AuditFiles {
    dir: tempfile::TempDir,
    policy: PathBuf,
    log: PathBuf,
}

impl AuditFiles {
    fn new(policy: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, policy).unwrap();
        let log = dir.path().join("audit.log");
        Self {
            dir,
            policy: policy_path,
            log,
        }
    }

    /// `--audit-policy-file` and `--audit-log-path` for these files.
    fn log_flags(&self) -> Vec<String> {
        vec![
            format!("--audit-policy-file={}", self.policy.display()),
            format!("--audit-log-path={}", self.log.display()),
        ]
    }

    /// A webhook kubeconfig naming `server`.
    fn webhook_kubeconfig(&self, server: &str) -> PathBuf {
        let path = self.dir.path().join("webhook.kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: sink\n  cluster:\n    \
                 server: {server}\ncontexts:\n- name: default\n  context:\n    cluster: sink\n\
                 current-context: default\n"
            ),
        )
        .unwrap();
        path
    }

    /// Every event in the log so far.
    fn events(&self) -> Vec<Value> {
        read_events(&self.log)
    }

    /// Waits (bounded) until `done` holds for the events in the log, and returns them.
    async fn wait_events(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            if Instant::now() > deadline {
                panic!("audit log never had {what}:\n{events:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the `ResponseComplete` event of `audit_id`, then returns that request's
    /// events in order.
    async fn request_events(&self, audit_id: &str) -> Vec<Value> {
        let events = self
            .wait_events(&format!("the ResponseComplete of {audit_id}"), |events| {
                events
                    .iter()
                    .any(|e| e["auditID"] == audit_id && e["stage"] == "ResponseComplete")
            })
            .await;
        of_request(&events, audit_id)
    }

    /// Alice's `GET path` (which the policy must audit), then every event in the log once its
    /// `ResponseComplete` is there: events are written in order, so every earlier request's
    /// events are in too.
    async fn written_before(&self, s: &Setup, path: &str) -> Vec<Value> {
        let sentinel = s.alice_get(path).await;
        self.request_events(&sentinel.audit_id()).await;
        self.events()
    }
}

fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Only whole lines: the writer may be half-way through the last one.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn of_request(events: &[Value], audit_id: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["auditID"] == audit_id)
        .cloned()
        .collect()
}

fn stages(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["stage"].as_str().unwrap_or_default())
        .collect()
}

/// One answer of the proxy.
struct Answered {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answered {
    /// The `Audit-ID` the proxy returned.
    fn audit_id(&self) -> String {
        self.headers
            .get("audit-id")
            .expect("no Audit-ID response header")
            .to_str()
            .unwrap()
            .to_string()
    }
}

impl Setup {
    /// `method path` with an optional bearer token, extra headers and a JSON body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answered {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.proxy.url));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                full(body.to_string())
            }
            None => full(Bytes::new()),
        };
        let response = client(&self.ca, false)
            .request(request.body(body).unwrap())
            .await
            .unwrap();
        let (parts, body) = body_bytes(response).await;
        Answered {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Alice's `GET path`, which must succeed.
    async fn alice_get(&self, path: &str) -> Answered {
        let answer = self
            .send(Method::GET, path, Some(&self.alice()), &[], None)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "GET {path}");
        answer
    }

    /// `kubectl --as=target get secrets -n x` by alice.
    async fn alice_as(&self, target: &str) -> Answered {
        let path = "/api/v1/namespaces/x/secrets";
        let headers = [("Impersonate-User", target)];
        self.send(Method::GET, path, Some(&self.alice()), &headers, None)
            .await
    }

    /// The value of one `/metrics` series (`name{labels}` exactly as rendered), if present.
    async fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.proxy.probe("/metrics").await?;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Waits (bounded) until the series satisfies `done`, and returns its value.
    async fn wait_metric(&self, series: &str, done: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.metric(series).await;
            match value {
                Some(v) if done(v) => return v,
                _ if Instant::now() > deadline => panic!("{series} stayed at {value:?}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// The forwarded request that carried `audit_id` to the fake API server.
fn forwarded_with(api: &FakeApiServer, audit_id: &str) -> Recorded {
    api.forwarded()
        .into_iter()
        .find(|r| r.headers.get("audit-id").is_some_and(|v| v == audit_id))
        .unwrap_or_else(|| panic!("no forwarded request carried Audit-ID {audit_id}"))
}

/// The identity a forwarded request's `Impersonate-*` headers name, as an audit `UserInfo`.
fn impersonated_by_headers(request: &Recorded) -> Value {
    let values = |name: &str| request.values(name);
    let mut user = json!({"username": values("impersonate-user")[0]});
    let groups = values("impersonate-group");
    if !groups.is_empty() {
        user["groups"] = json!(groups);
    }
    if let Some(uid) = values("impersonate-uid").first() {
        user["uid"] = json!(uid);
    }
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in request.headers.keys() {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-") {
            let key = percent_decode(key);
            extra.insert(key, values(name.as_str()));
        }
    }
    if !extra.is_empty() {
        user["extra"] = json!(extra);
    }
    user
}

/// `%XX` escapes decoded (the impersonation extra key encoding).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// `metav1.MicroTime`: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn is_micro_time(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let shape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    text.len() == shape.len()
        && text.chars().zip(shape.chars()).all(|(c, s)| match s {
            'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

// ---- 1. levels ----

const LEVELS_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  resources: [{group: "", resources: [endpoints]}]
- level: None
  nonResourceURLs: ["/version"]
- level: Metadata
  resources: [{group: "", resources: [configmaps]}]
- level: Request
  omitManagedFields: true
  resources: [{group: "", resources: [secrets]}]
- level: RequestResponse
  omitStages: [RequestReceived]
  resources: [{group: "", resources: [pods]}]
"#;

/// Each level writes what it should and nothing more; `None` writes nothing; a rule's
/// `omitStages` and `omitManagedFields` apply to its requests only.
#[tokio::test]
async fn levels_write_what_they_should_and_nothing_more() {
    let files = AuditFiles::new(LEVELS_POLICY);
    let s = setup(
        &files
            .log_flags()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await;
    let alice = s.alice();

    // Metadata: a create names its object from the body, but records no objects.
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "cm-1"}, "data": {"k": "v"}});
    let created = s
        .send(
            Method::POST,
            "/api/v1/namespaces/team-a/configmaps",
            Some(&alice),
            &[],
            Some(&configmap),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    let events = files.request_events(&created.audit_id()).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    for event in &events {
        assert_eq!(event["level"], "Metadata");
        assert_eq!(event["verb"], "create");
        assert!(event.get("requestObject").is_none(), "{event}");
        assert!(event.get("responseObject").is_none(), "{event}");
    }
    assert_eq!(
        events[1]["objectRef"],
        json!({"resource": "configmaps", "namespace": "team-a", "name": "cm-1",
               "apiVersion": "v1"})
    );

    // Request: the request object (managedFields omitted by the rule), no response object.
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "s-1", "namespace": "team-a",
                                     "managedFields": [{"manager": "kubectl"}]},
                        "stringData": {"password": "hunter2"}});
    let updated = s
        .send(
            Method::PUT,
            "/api/v1/namespaces/team-a/secrets/s-1",
            Some(&alice),
            &[],
            Some(&secret),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    // The API server still got the whole object.
    let upstream: Value = serde_json::from_slice(&s.api.last().body).unwrap();
    assert_eq!(upstream, secret);
    let events = files.request_events(&updated.audit_id()).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    let complete = &events[1];
    assert_eq!(complete["level"], "Request");
    assert_eq!(complete["verb"], "update");
    let mut stripped = secret.clone();
    stripped["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    assert_eq!(complete["requestObject"], stripped);
    assert!(complete.get("responseObject").is_none(), "{complete}");

    // RequestResponse, RequestReceived omitted by the rule: one event with what the API
    // server answered.
    let got = s.alice_get("/api/v1/namespaces/team-a/pods/p-1").await;
    let events = files.request_events(&got.audit_id()).await;
    assert_eq!(stages(&events), ["ResponseComplete"]);
    assert_eq!(events[0]["level"], "RequestResponse");
    assert_eq!(
        events[0]["responseObject"],
        serde_json::from_slice::<Value>(&got.body).unwrap()
    );
    assert_eq!(
        events[0]["responseObject"],
        json!({"kind": "ConfigMap", "path": "/api/v1/namespaces/team-a/pods/p-1"})
    );

    // None, by resource and by non-resource URL: no event at all, though forwarded and
    // given an Audit-ID.
    let endpoints = s.alice_get("/api/v1/namespaces/team-a/endpoints").await;
    let version = s.alice_get("/version").await;
    forwarded_with(&s.api, &endpoints.audit_id());
    forwarded_with(&s.api, &version.audit_id());
    // No rule matches a request outside the policy's resources: no event either.
    let unmatched = s.alice_get("/api/v1/namespaces/team-a/services").await;
    let all = files
        .written_before(&s, "/api/v1/namespaces/team-a/configmaps/cm-1")
        .await;
    for skipped in [&endpoints, &version, &unmatched] {
        assert!(of_request(&all, &skipped.audit_id()).is_empty(), "{all:#?}");
    }
    assert!(
        all.iter().all(|e| e["requestURI"] != "/version"
            && e["requestURI"] != "/api/v1/namespaces/team-a/endpoints"),
        "{all:#?}"
    );
    assert_eq!(all.len(), 2 + 2 + 1 + 2, "{all:#?}");
}

/// The flags as the `&str`s `setup` takes.
fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

// ---- 2. fields ----

/// Who (the token's identity and the identity sent upstream), from where, with what, and the
/// one `Audit-ID` shared by the client, the proxy's events and the API server.
#[tokio::test]
async fn events_carry_the_callers_the_request_and_the_shared_audit_id() {
    let files = AuditFiles::new(METADATA);
    let s = setup(&strs(&files.log_flags())).await;
    let alice = s.alice();
    let agent = "audit-test/1.0 (linux/amd64)";
    let path = "/api/v1/namespaces/x/configmaps?limit=500";
    let list = s
        .send(
            Method::GET,
            path,
            Some(&alice),
            &[("user-agent", agent)],
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let audit_id = list.audit_id();
    assert_eq!(audit_id.len(), 36, "a UUID: {audit_id}");
    let upstream = forwarded_with(&s.api, &audit_id);
    assert_eq!(upstream.headers.get_all("audit-id").iter().count(), 1);

    let events = files.request_events(&audit_id).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    for event in &events {
        assert_eq!(event["kind"], "Event");
        assert_eq!(event["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(event["level"], "Metadata");
        assert_eq!(event["auditID"], audit_id);
        assert_eq!(event["verb"], "list");
        assert_eq!(event["requestURI"], path);
        assert_eq!(
            event["user"],
            json!({"username": "alice", "groups": ["dev", "ops", "system:authenticated"]}),
            "the caller as kube-apiserver sees it"
        );
        assert_eq!(event["sourceIPs"], json!(["127.0.0.1"]));
        assert_eq!(event["userAgent"], agent);
        assert_eq!(
            event["objectRef"],
            json!({"resource": "configmaps", "namespace": "x", "apiVersion": "v1"})
        );
        assert!(is_micro_time(&event["requestReceivedTimestamp"]), "{event}");
        assert!(is_micro_time(&event["stageTimestamp"]), "{event}");
        assert_eq!(
            event["requestReceivedTimestamp"],
            events[0]["requestReceivedTimestamp"]
        );
        // Same format, so the text orders as the time does.
        assert!(
            event["stageTimestamp"].as_str() >= event["requestReceivedTimestamp"].as_str(),
            "{event}"
        );
    }
    // As kube-apiserver: RequestReceived is written before impersonation is decided.
    assert!(events[0].get("impersonatedUser").is_none(), "{}", events[0]);
    assert_eq!(
        events[1]["impersonatedUser"],
        impersonated_by_headers(&upstream),
        "what the API server was asked to impersonate"
    );
    assert!(events[0].get("responseStatus").is_none(), "{}", events[0]);
    assert_eq!(
        events[1]["responseStatus"],
        json!({"metadata": {}, "code": 200})
    );

    // kube-apiserver's verbs: a single object, a watch, a non-resource path.
    for (path, verb) in [
        ("/api/v1/namespaces/x/configmaps/one", "get"),
        ("/api/v1/namespaces/x/configmaps?watch=true", "watch"),
        ("/apis/apps/v1/watch/namespaces/x/deployments", "watch"),
        ("/version", "get"),
    ] {
        let answer = s.alice_get(path).await;
        let events = files.request_events(&answer.audit_id()).await;
        assert_eq!(events[0]["verb"], verb, "{path}");
        assert_eq!(events[0]["requestURI"], path);
    }
    let version = files
        .events()
        .into_iter()
        .find(|e| e["requestURI"] == "/version")
        .unwrap();
    assert!(version.get("objectRef").is_none(), "{version}");

    // An error answer: its code, and its Status copied into responseStatus.
    let forbidden = s
        .send(Method::GET, "/forbidden", Some(&alice), &[], None)
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let events = files.request_events(&forbidden.audit_id()).await;
    assert_eq!(
        events[1]["responseStatus"],
        json!({"metadata": {}, "status": "Failure", "message": "pods is forbidden",
               "reason": "Forbidden", "code": 403})
    );
}

// ---- 3. long-running requests ----

/// A watch is long-running: `ResponseStarted` when its headers go out, between the other two,
/// and no response object even at `RequestResponse`.
#[tokio::test]
async fn a_watch_gets_received_started_and_complete_in_order() {
    let files = AuditFiles::new(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n",
    );
    let s = setup(&strs(&files.log_flags())).await;
    let watch = s
        .alice_get("/api/v1/namespaces/x/configmaps?watch=true&resourceVersion=1")
        .await;
    let events = files.request_events(&watch.audit_id()).await;
    assert_eq!(
        stages(&events),
        ["RequestReceived", "ResponseStarted", "ResponseComplete"]
    );
    assert_eq!(
        events[1]["responseStatus"],
        json!({"metadata": {}, "code": 200})
    );
    assert_eq!(events[2]["responseStatus"]["code"], 200);
    for pair in events.windows(2) {
        assert!(pair[0]["stageTimestamp"].as_str() <= pair[1]["stageTimestamp"].as_str());
    }
    for event in &events {
        assert_eq!(event["verb"], "watch");
        assert!(event.get("responseObject").is_none(), "{event}");
    }

    // A short request at the same level has no ResponseStarted, and records its answer.
    let get = s.alice_get("/api/v1/namespaces/x/configmaps/one").await;
    let events = files.request_events(&get.audit_id()).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    assert_eq!(
        events[1]["responseObject"],
        serde_json::from_slice::<Value>(&get.body).unwrap()
    );
}

// ---- 4. failed authentication ----

/// No token, and a token the issuer refuses: one `ResponseStarted` event each with the 401,
/// no user, kube-apiserver's message; nothing forwarded.
#[tokio::test]
async fn failed_authentication_is_one_response_started_event_without_a_user() {
    let files = AuditFiles::new(METADATA);
    let s = setup(&strs(&files.log_flags())).await;
    let wrong_audience = s
        .issuer
        .token(&s.issuer.claims("someone-else", json!({"sub": "mallory"})));
    let cases = [
        (None, "Authentication failed, no credentials provided"),
        (
            Some("not-a-jwt"),
            "Authentication failed, attempted: bearer",
        ),
        (
            Some(wrong_audience.as_str()),
            "Authentication failed, attempted: bearer",
        ),
    ];
    let mut refused = Vec::new();
    for (token, message) in cases {
        let answer = s
            .send(Method::GET, "/api/v1/namespaces/x/pods", token, &[], None)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        refused.push((answer.audit_id(), message));
    }
    assert!(s.api.forwarded().is_empty());
    let all = files.written_before(&s, "/api/v1/namespaces/x/pods").await;
    assert_eq!(all.len(), refused.len() + 2, "{all:#?}");
    for (audit_id, message) in refused {
        let events = of_request(&all, &audit_id);
        assert_eq!(stages(&events), ["ResponseStarted"], "{all:#?}");
        let event = &events[0];
        assert_eq!(event["user"], json!({}));
        assert!(event.get("impersonatedUser").is_none(), "{event}");
        assert_eq!(
            event["responseStatus"],
            json!({"metadata": {}, "message": message, "code": 401})
        );
        assert_eq!(event["verb"], "list");
        assert_eq!(event["level"], "Metadata");
        assert_eq!(event["sourceIPs"], json!(["127.0.0.1"]));
        assert_eq!(
            event["objectRef"],
            json!({"resource": "pods", "namespace": "x", "apiVersion": "v1"})
        );
    }
}

// ---- 5. kubectl --as ----

/// A refused `kubectl --as`: the caller is the event's user, nobody was impersonated, and the
/// 403's Status is in `responseStatus`. An authorized one names the target as
/// `impersonatedUser`, exactly as sent upstream.
#[tokio::test]
async fn kubectl_as_refused_is_audited_with_the_caller_and_the_403() {
    let files = AuditFiles::new(METADATA);
    let s = setup(&strs(&files.log_flags())).await;
    s.api.reviews.on_access(|_| Answer::Deny(String::new()));
    let refused = s.alice_as("carol").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(s.api.forwarded().is_empty());
    let status: Value = serde_json::from_slice(&refused.body).unwrap();
    let events = files.request_events(&refused.audit_id()).await;
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    for event in &events {
        assert_eq!(
            event["user"],
            json!({"username": "alice", "groups": ["dev", "ops", "system:authenticated"]})
        );
        assert!(event.get("impersonatedUser").is_none(), "{event}");
    }
    assert_eq!(
        events[1]["responseStatus"],
        json!({"metadata": {}, "status": "Failure", "message": status["message"],
               "reason": "Forbidden", "code": 403})
    );
    assert!(status["message"]
        .as_str()
        .unwrap()
        .starts_with(r#"users "carol" is forbidden: User "alice" cannot impersonate"#));

    s.api.reviews.on_access(|_| Answer::Allow);
    let allowed = s.alice_as("bob").await;
    assert_eq!(allowed.status, StatusCode::OK);
    let upstream = forwarded_with(&s.api, &allowed.audit_id());
    let events = files.request_events(&allowed.audit_id()).await;
    let complete = &events[1];
    assert_eq!(complete["user"]["username"], "alice");
    assert_eq!(
        complete["impersonatedUser"],
        impersonated_by_headers(&upstream)
    );
    assert_eq!(complete["impersonatedUser"]["username"], "bob");
    assert_eq!(
        complete["impersonatedUser"]["extra"]["originaluser.jetstack.io-user"],
        json!(["alice"])
    );
}

// ---- 6-7. webhook ----

/// What a plain-HTTP webhook receiver got: each POST's path and JSON body.
#[derive(Clone, Default)]
struct Receiver {
    posts: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 that answers every POST with 200; its URL ends in
    /// `/audit`.
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let posts = receiver.posts.clone();
        let handler: Handler = Arc::new(move |request| {
            let posts = posts.clone();
            Box::pin(async move {
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let content_type = parts
                    .headers
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                posts.lock().unwrap().push((
                    format!("{} {}", parts.method, parts.uri.path()),
                    content_type,
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                ));
                http::Response::new(full("{}"))
            })
        });
        let address = serve(None, handler).await;
        (receiver, format!("http://{address}/audit"))
    }

    /// Every event received so far, in order.
    fn items(&self) -> Vec<Value> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, _, list)| list["items"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// A receiver that accepts connections and requests but never answers.
async fn silent_receiver() -> String {
    let handler: Handler = Arc::new(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            http::Response::new(full(""))
        })
    });
    format!("http://{}/audit", serve(None, handler).await)
}

/// The webhook gets `EventList` batches whose items are the requests' events.
#[tokio::test]
async fn the_webhook_receives_event_lists_of_the_requests() {
    let files = AuditFiles::new(METADATA);
    let (receiver, url) = Receiver::start().await;
    let kubeconfig = files.webhook_kubeconfig(&url);
    let s = setup(&strs(&[
        format!("--audit-policy-file={}", files.policy.display()),
        format!("--audit-webhook-config-file={}", kubeconfig.display()),
        "--audit-webhook-batch-max-wait=100ms".into(),
    ]))
    .await;
    let paths = [
        "/api/v1/namespaces/x/configmaps",
        "/api/v1/namespaces/x/configmaps/one",
        "/apis/apps/v1/namespaces/x/deployments/web",
    ];
    let mut ids = Vec::new();
    for path in paths {
        ids.push(s.alice_get(path).await.audit_id());
    }
    let deadline = Instant::now() + PATIENCE;
    let items = loop {
        let items = receiver.items();
        let complete = |id: &String| {
            items
                .iter()
                .any(|e| e["auditID"] == id.as_str() && e["stage"] == "ResponseComplete")
        };
        if ids.iter().all(complete) {
            break items;
        }
        assert!(Instant::now() < deadline, "the webhook got {items:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (request, content_type, list) in receiver.posts.lock().unwrap().iter() {
        assert_eq!(request, "POST /audit");
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        assert_eq!(list["kind"], "EventList", "{list}");
        assert_eq!(list["apiVersion"], "audit.k8s.io/v1", "{list}");
        assert!(!list["items"].as_array().unwrap().is_empty(), "{list}");
    }
    assert_eq!(items.len(), 2 * paths.len(), "{items:#?}");
    for (path, id) in paths.iter().zip(&ids) {
        let events = of_request(&items, id);
        assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
        for event in &events {
            assert_eq!(event["kind"], "Event");
            assert_eq!(event["requestURI"], *path);
            assert_eq!(event["user"]["username"], "alice");
        }
        assert_eq!(events[1]["responseStatus"]["code"], 200);
    }
}

/// Sends `count` GETs through one client; all must succeed. The time they took.
async fn timed_requests(s: &Setup, count: usize) -> Duration {
    let client = client(&s.ca, false);
    let token = s.alice();
    // One request first, so the connection and the token cache are warm.
    let mut times = Duration::ZERO;
    for i in 0..=count {
        let request = Request::get(format!(
            "{}/api/v1/namespaces/x/configmaps/cm-{i}",
            s.proxy.url
        ))
        .header("authorization", format!("Bearer {token}"))
        .body(full(Bytes::new()))
        .unwrap();
        let started = Instant::now();
        let response = client.request(request).await.unwrap();
        let (parts, _) = body_bytes(response).await;
        if i > 0 {
            times += started.elapsed();
        }
        assert_eq!(parts.status, StatusCode::OK, "request {i}");
    }
    times
}

/// A webhook that refuses connections, or accepts and never answers, delays and fails no
/// request; the log alongside gets every event, and the metrics say what happened.
#[tokio::test]
async fn a_dead_webhook_neither_blocks_nor_fails_requests() {
    let baseline = setup(&[]).await;
    let without_audit = timed_requests(&baseline, 50).await;
    drop(baseline);

    for (name, url) in [
        (
            "closed port",
            format!("http://127.0.0.1:{}/audit", free_port()),
        ),
        ("silent receiver", silent_receiver().await),
    ] {
        let files = AuditFiles::new(METADATA);
        let kubeconfig = files.webhook_kubeconfig(&url);
        let mut flags = files.log_flags();
        flags.extend([
            format!("--audit-webhook-config-file={}", kubeconfig.display()),
            "--audit-webhook-batch-max-wait=100ms".into(),
            "--audit-webhook-initial-backoff=100ms".into(),
        ]);
        let s = setup(&strs(&flags)).await;
        let with_dead_webhook = timed_requests(&s, 50).await;
        eprintln!(
            "50 requests, webhook at a {name}: {with_dead_webhook:?}; without audit: \
             {without_audit:?}; ratio {:.2}",
            with_dead_webhook.as_secs_f64() / without_audit.as_secs_f64()
        );
        // 51 requests (one warm-up), two events each.
        let events = files
            .wait_events("all 102 events", |events| events.len() >= 102)
            .await;
        assert_eq!(events.len(), 102);
        let logged = s
            .wait_metric(
                r#"kube_oidc_proxy_audit_events_total{backend="log"}"#,
                |v| v >= 102.0,
            )
            .await;
        assert_eq!(logged, files.events().len() as f64);
        if name == "closed port" {
            s.wait_metric(
                r#"kube_oidc_proxy_audit_errors_total{backend="webhook"}"#,
                |v| v > 0.0,
            )
            .await;
        }
        assert_eq!(
            s.metric(r#"kube_oidc_proxy_audit_events_total{backend="webhook"}"#)
                .await,
            Some(0.0)
        );
    }
}

// ---- 8. bad configuration ----

/// A bad audit configuration stops the proxy before it listens, with exit code 1 and a message
/// naming the problem.
#[tokio::test]
async fn bad_audit_configuration_stops_the_proxy_before_it_listens() {
    let ca = TestCa::new();
    let issuer = TestIssuer::start(&ca).await;
    let api = FakeApiServer::start(&ca).await;
    let unknown_level =
        AuditFiles::new("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Verbose\n");
    let good = AuditFiles::new(METADATA);
    let serverless = good.dir.path().join("serverless.kubeconfig");
    std::fs::write(
        &serverless,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sink\n  cluster: {}\ncontexts:\n\
         - name: default\n  context:\n    cluster: sink\ncurrent-context: default\n",
    )
    .unwrap();
    let missing = good.dir.path().join("no-such-policy.yaml");
    let cases: [(Vec<String>, &str); 4] = [
        (
            unknown_level.log_flags(),
            r#"rules[0].level: Unsupported value: "Verbose""#,
        ),
        (
            vec![
                format!("--audit-policy-file={}", missing.display()),
                format!("--audit-log-path={}", good.log.display()),
            ],
            "--audit-policy-file: cannot read",
        ),
        (
            vec![format!("--audit-log-path={}", good.log.display())],
            "--audit-log-path: requires --audit-policy-file",
        ),
        (
            vec![
                format!("--audit-policy-file={}", good.policy.display()),
                format!("--audit-webhook-config-file={}", serverless.display()),
            ],
            r#"cluster "sink" has no server"#,
        ),
    ];
    for (flags, message) in cases {
        let mut proxy = ProxyProcess::spawn(&ca, &issuer.url, &api.url, &flags);
        let code = proxy.wait_exit(Duration::from_secs(20));
        let stderr = proxy.stderr_with(message).await;
        assert_eq!(code, Some(1), "{flags:?}:\n{stderr}");
        assert!(
            stderr.contains(message),
            "{flags:?}: no {message:?} in:\n{stderr}"
        );
        assert!(
            proxy.probe("/ready").await.is_none(),
            "{flags:?}: the probe port answered"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", proxy.port)).is_err(),
            "{flags:?}: the secure port is open"
        );
        assert!(!good.log.exists(), "{flags:?}: the audit log was created");
    }
    assert!(api.requests().is_empty(), "{:?}", api.requests());
}
