//! End-to-end tests of what the proxy reports about the requests it serves, on the real test
//! cluster (see `tests/e2e_support/mod.rs`):
//!
//! - its audit events agree with kube-apiserver's own events for the same requests, joined on
//!   `auditID` (the proxy sends its audit ID upstream as `Audit-ID`, which kube-apiserver
//!   adopts);
//! - a policy level writes the objects it names and nothing more;
//! - `/metrics` counts a scripted run of requests exactly.
//!
//! Like the other e2e tests, they skip without `KUBE_OIDC_PROXY_E2E_ENV` and fail under CI
//! without it.

mod e2e_support;
#[path = "e2e_support/streaming.rs"]
#[allow(dead_code)] // a part of the streaming harness is used here
mod streaming;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e_support::{block_on, strings, unique_name, HttpsClient, Proxy, TestEnv, EVENTUALLY};
use http::{header, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use streaming::{client_variants, EchoServer, Kwok, PortForward, TestPod, STREAMING_GROUP};
use tempfile::TempDir;

const ALICE: &str = "alice@example.com";

/// The user kube-apiserver authenticates the proxy as (its client certificate's CN).
const PROXY_IDENTITY: &str = "kube-oidc-proxy";

/// kube-apiserver adds this group to every impersonated user that is not anonymous.
const ALL_AUTHENTICATED: &str = "system:authenticated";

/// Every request at `Metadata`, as the test cluster's API server audits.
const METADATA_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

/// The objectRef fields that name what a request is about: the proxy derives them as
/// kube-apiserver does (request-info rules, then the request body of a create), so they must
/// be equal. `uid` and `resourceVersion` are compared separately (see [`object_ref_extras`]).
const OBJECT_REF_FIELDS: [&str; 6] = [
    "resource",
    "namespace",
    "name",
    "subresource",
    "apiGroup",
    "apiVersion",
];

/// Starts the proxy auditing by `policy` into `<dir>/proxy-audit.log`.
fn start_audited_proxy(env: &TestEnv, dir: &Path, policy: &str) -> (Proxy, PathBuf) {
    let policy_file = dir.join("audit-policy.yaml");
    std::fs::write(&policy_file, policy).expect("write the audit policy");
    let log = dir.join("proxy-audit.log");
    let proxy = env.start_proxy_with(
        &env.proxy_upstream_kubeconfig,
        &[
            &format!("--audit-policy-file={}", policy_file.display()),
            &format!("--audit-log-path={}", log.display()),
        ],
    );
    (proxy, log)
}

/// Every event of a JSON audit log so far (a partly written last line is skipped).
fn events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

/// Polls `log` (bounded by [`EVENTUALLY`]) until `done` holds for its events; returns them.
#[track_caller]
fn wait_for_events(log: &Path, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let all = events(log);
        if done(&all) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not in {} after {EVENTUALLY:?}; last events so far:\n{}",
            log.display(),
            all[all.len().saturating_sub(40)..]
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        thread::sleep(Duration::from_millis(200));
    }
}

fn text<'a>(event: &'a Value, pointer: &str) -> &'a str {
    event.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `(verb, resource, subresource, name)` of an event, for finding the operations of a run.
fn operation(event: &Value) -> (String, String, String, String) {
    (
        text(event, "/verb").to_owned(),
        text(event, "/objectRef/resource").to_owned(),
        text(event, "/objectRef/subresource").to_owned(),
        text(event, "/objectRef/name").to_owned(),
    )
}

/// The event of each request in `namespace` to compare: `ResponseStarted` for a long-running
/// request (the stage at which both sides know the answer; its `ResponseComplete` comes when
/// the stream ends), `ResponseComplete` for the others. `None` while some request in the
/// namespace has only its `RequestReceived` so far.
fn final_events(all: &[Value], namespace: &str) -> Option<Vec<Value>> {
    let mut by_id: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for event in all
        .iter()
        .filter(|e| text(e, "/objectRef/namespace") == namespace)
    {
        by_id
            .entry(text(event, "/auditID"))
            .or_default()
            .push(event);
    }
    by_id
        .values()
        .map(|events| {
            let stage = |name: &str| events.iter().find(|e| e["stage"] == name);
            stage("ResponseStarted")
                .or_else(|| stage("ResponseComplete"))
                .map(|e| (*e).clone())
        })
        .collect()
}

/// A user's groups as kube-apiserver records an impersonated user: the impersonated groups,
/// then `system:authenticated` unless already there.
fn with_all_authenticated(groups: Vec<String>) -> Vec<String> {
    let mut groups = groups;
    if !groups.iter().any(|g| g == ALL_AUTHENTICATED) {
        groups.push(ALL_AUTHENTICATED.to_owned());
    }
    groups
}

/// The objectRef fields the proxy and kube-apiserver may fill differently, when they differ.
fn object_ref_extras(ours: &Value, theirs: &Value) -> Vec<String> {
    ["uid", "resourceVersion"]
        .iter()
        .filter(|f| ours["objectRef"][**f] != theirs["objectRef"][**f])
        .map(|f| {
            format!(
                "{} {}: objectRef.{f} proxy {} / kube-apiserver {}",
                ours["verb"], ours["requestURI"], ours["objectRef"][*f], theirs["objectRef"][*f]
            )
        })
        .collect()
}

/// Asserts that the proxy's event and kube-apiserver's event of one request agree on what
/// the request was, its answer and who made it.
#[track_caller]
fn assert_agree(ours: &Value, theirs: &Value) {
    let context = format!("\nproxy:          {ours}\nkube-apiserver: {theirs}");
    assert_eq!(ours["auditID"], theirs["auditID"], "{context}");
    assert_eq!(ours["stage"], theirs["stage"], "{context}");
    assert_eq!(ours["verb"], theirs["verb"], "verb{context}");
    assert_eq!(
        ours["requestURI"], theirs["requestURI"],
        "requestURI{context}"
    );
    for field in OBJECT_REF_FIELDS {
        assert_eq!(
            ours["objectRef"][field], theirs["objectRef"][field],
            "objectRef.{field}{context}"
        );
    }
    assert_eq!(
        ours["responseStatus"]["code"], theirs["responseStatus"]["code"],
        "responseStatus.code{context}"
    );
    // kube-apiserver authenticated the proxy and records the caller the proxy impersonated.
    assert_eq!(
        theirs["user"]["username"], PROXY_IDENTITY,
        "the API server's user is the proxy{context}"
    );
    let impersonated = &theirs["impersonatedUser"];
    assert_eq!(
        ours["user"]["username"], impersonated["username"],
        "the proxy's user is the API server's impersonatedUser{context}"
    );
    assert_eq!(
        with_all_authenticated(strings(&ours["user"]["groups"])),
        strings(&impersonated["groups"]),
        "the proxy's user's groups are the impersonated groups{context}"
    );
    // What the proxy says it sent upstream is what kube-apiserver got.
    assert_eq!(
        ours["impersonatedUser"]["username"], impersonated["username"],
        "{context}"
    );
    assert_eq!(
        with_all_authenticated(strings(&ours["impersonatedUser"]["groups"])),
        strings(&impersonated["groups"]),
        "{context}"
    );
    assert_eq!(
        ours["impersonatedUser"]["extra"], impersonated["extra"],
        "impersonatedUser.extra{context}"
    );
}

/// The proxy's audit events agree with kube-apiserver's own, joined on `auditID`, for get,
/// list, watch, create, delete, a forbidden get, exec and port-forward (every kubectl of the
/// streaming suite, WebSocket and SPDY) through the proxy: verb, requestURI, objectRef, the
/// response code, and the proxy's caller as kube-apiserver's impersonated user.
#[test]
fn proxy_audit_events_agree_with_the_api_servers() {
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    EchoServer::ensure(&kwok);
    let pod = TestPod::create(&env, &kwok, "obs-audit");
    let ns = pod.namespace.as_str();
    let admin = env.admin_kubectl();
    admin
        .run(&[
            "create",
            "role",
            "cm-editor",
            "-n",
            ns,
            "--verb=get,list,watch,create,delete",
            "--resource=configmaps",
        ])
        .success();
    admin
        .run(&[
            "create",
            "rolebinding",
            "cm-editor",
            "-n",
            ns,
            "--role=cm-editor",
            &format!("--group={STREAMING_GROUP}"),
        ])
        .success();

    let dir = TempDir::new().expect("temp dir");
    let (proxy, log) = start_audited_proxy(&env, dir.path(), METADATA_POLICY);
    let token = env.id_token(ALICE);
    let alice = proxy.kubectl_with_token(&env, &token);
    let cm = unique_name("cm");

    // watch: established (the proxy answered it) before the create it is to see.
    let mut watch =
        alice.spawn_lines(&["get", "configmaps", "-n", ns, "--watch-only", "-o", "name"]);
    wait_for_events(&log, "the watch's ResponseStarted", |all| {
        all.iter().any(|e| {
            e["verb"] == "watch"
                && e["stage"] == "ResponseStarted"
                && text(e, "/objectRef/namespace") == ns
        })
    });
    alice
        .run(&[
            "create",
            "configmap",
            &cm,
            "-n",
            ns,
            "--from-literal=key=value",
        ])
        .success();
    watch.wait_for_line(&format!("configmap/{cm}"));
    drop(watch);

    alice
        .run(&["get", "configmap", &cm, "-n", ns, "-o", "name"])
        .success();
    alice
        .run(&["get", "configmaps", "-n", ns, "-o", "name"])
        .success();
    alice
        .run(&["get", "secret", "absent", "-n", ns])
        .fails_with("Forbidden");
    for variant in client_variants(&env) {
        let kubectl = variant.kubectl(&proxy, &env, &token);
        kubectl
            .run(&["exec", "-n", ns, &pod.name, "--", "true"])
            .success();
        let forward = PortForward::start(&kubectl, &variant, &pod, 8080);
        forward.echo_roundtrip(4096, 7);
        drop(forward);
    }
    alice.run(&["delete", "configmap", &cm, "-n", ns]).success();

    let variants = client_variants(&env).len();
    let ours = wait_for_events(&log, "every operation of the run", |all| {
        let Some(finals) = final_events(all, ns) else {
            return false;
        };
        let ops: Vec<_> = finals.iter().map(operation).collect();
        let has = |verb: &str, resource: &str, sub: &str, name: &str| {
            ops.iter()
                .any(|o| o.0 == verb && o.1 == resource && o.2 == sub && o.3 == name)
        };
        let count = |sub: &str| ops.iter().filter(|o| o.2 == sub).count();
        has("watch", "configmaps", "", "")
            && has("create", "configmaps", "", &cm)
            && has("get", "configmaps", "", &cm)
            && has("list", "configmaps", "", "")
            && has("get", "secrets", "", "absent")
            && has("delete", "configmaps", "", &cm)
            && count("exec") >= variants
            && count("portforward") >= variants
    });
    let ours = final_events(&ours, ns).expect("every request has its final event");

    let mut compared = BTreeSet::new();
    let mut differences = Vec::new();
    for event in &ours {
        let id = text(event, "/auditID").to_owned();
        let stage = text(event, "/stage").to_owned();
        let theirs = wait_for_events(
            &env.audit_log,
            &format!("kube-apiserver's {stage} event {id} for the proxy's {event}"),
            |all| {
                all.iter()
                    .any(|e| e["auditID"] == id.as_str() && e["stage"] == stage.as_str())
            },
        )
        .into_iter()
        .find(|e| e["auditID"] == id.as_str() && e["stage"] == stage.as_str())
        .expect("found above");
        assert_agree(event, &theirs);
        differences.extend(object_ref_extras(event, &theirs));
        let (verb, resource, sub, _) = operation(event);
        compared.insert(format!("{verb} {resource}/{sub}"));
    }
    // Printed for the record (cargo test --nocapture): where kube-apiserver knows more.
    println!("compared {} requests: {compared:?}", ours.len());
    for difference in &differences {
        println!("differs (allowed): {difference}");
    }
    // Both protocols of each streaming verb were compared (WebSocket GET, SPDY POST).
    for expected in [
        "get pods/exec",
        "create pods/exec",
        "get pods/portforward",
        "create pods/portforward",
    ] {
        assert!(
            compared.contains(expected),
            "{expected} not among the compared requests {compared:?}"
        );
    }
}

/// A policy with `Request` for configmaps and `None` for everything else, on the real
/// cluster: a create records its request object and no response object; a get records
/// neither; a secret (and kubectl's discovery) produce no event at all. kubectl sends
/// `kubectl create configmap` as protobuf, which the proxy does not decode: that event names
/// the object but has no request object; `kubectl create -f` of a JSON manifest sends JSON.
#[test]
fn a_request_level_policy_writes_request_objects_and_nothing_more() {
    let Some(env) = TestEnv::load() else { return };
    let ns = env.team_namespace("obs-levels", STREAMING_GROUP);
    let dir = TempDir::new().expect("temp dir");
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n\
                  - level: Request\n  resources:\n  - group: \"\"\n    resources: [\"configmaps\"]\n\
                  - level: None\n";
    let (proxy, log) = start_audited_proxy(&env, dir.path(), policy);
    let alice = proxy.kubectl_with_token(&env, &env.id_token(ALICE));
    let (json_cm, proto_cm) = (unique_name("cm-json"), unique_name("cm-proto"));

    let manifest = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": json_cm, "namespace": ns},
        "data": {"key": "value"},
    });
    alice
        .run_with_stdin(&["create", "-f", "-"], manifest.to_string().as_bytes())
        .success();
    alice
        .run(&[
            "create",
            "configmap",
            &proto_cm,
            "-n",
            &ns,
            "--from-literal=key=value",
        ])
        .success();
    // No RBAC for secrets: a 403, audited at None all the same.
    alice
        .run(&["get", "secret", "absent", "-n", &ns])
        .fails_with("Forbidden");
    // The last request: once its event is written, every earlier one's is too (one writer,
    // in order).
    alice
        .run(&["get", "configmap", &json_cm, "-n", &ns, "-o", "name"])
        .success();

    let all = wait_for_events(&log, "the get's ResponseComplete", |all| {
        all.iter().any(|e| {
            e["verb"] == "get"
                && e["stage"] == "ResponseComplete"
                && text(e, "/objectRef/name") == json_cm
        })
    });
    let dump = all
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for event in &all {
        assert_eq!(
            text(event, "/objectRef/resource"),
            "configmaps",
            "only configmaps are audited:\n{dump}"
        );
        assert_eq!(event["level"], "Request", "{dump}");
        assert!(
            event.get("responseObject").is_none(),
            "no response object at Request level:\n{dump}"
        );
    }
    let complete = |verb: &str, name: &str| -> &Value {
        all.iter()
            .find(|e| {
                e["verb"] == verb
                    && e["stage"] == "ResponseComplete"
                    && text(e, "/objectRef/name") == name
            })
            .unwrap_or_else(|| panic!("no {verb} {name} ResponseComplete:\n{dump}"))
    };
    let create = complete("create", &json_cm);
    assert_eq!(create["responseStatus"]["code"], 201, "{create}");
    let object = &create["requestObject"];
    assert_eq!(object["kind"], "ConfigMap", "{create}");
    assert_eq!(text(object, "/metadata/name"), json_cm, "{create}");
    assert_eq!(object["data"], json!({"key": "value"}), "{create}");
    let create = complete("create", &proto_cm);
    assert_eq!(create["responseStatus"]["code"], 201, "{create}");
    assert!(
        create.get("requestObject").is_none(),
        "protobuf is not recorded: {create}"
    );
    let get = complete("get", &json_cm);
    assert!(
        get.get("requestObject").is_none(),
        "a get has no body: {get}"
    );
    assert_eq!(
        all.len(),
        6,
        "RequestReceived and ResponseComplete of the two creates and the get:\n{dump}"
    );
}

/// One Prometheus sample: labels and value.
type Sample = (BTreeMap<String, String>, f64);

/// The samples of the family `name` in a text-format scrape.
fn samples(scrape: &str, name: &str) -> Vec<Sample> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (metric, labels) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            (metric == name).then(|| (parse_labels(labels), value))
        })
        .collect()
}

/// `a="x",b="y"` (no escapes in these label values: verbs, codes, URLs, fixed words).
fn parse_labels(labels: &str) -> BTreeMap<String, String> {
    labels
        .split("\",")
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once("=\"")?;
            Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
        })
        .collect()
}

/// The value of the series of `name` with exactly `labels` (0 when absent).
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples(scrape, name)
        .into_iter()
        .filter(|(l, _)| *l == wanted)
        .map(|(_, v)| v)
        .sum()
}

fn total(scrape: &str, name: &str) -> f64 {
    samples(scrape, name).iter().map(|(_, v)| v).sum()
}

/// `GET http://127.0.0.1:<port>/metrics`, the body.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the probe port");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    // HTTP/1.0: the answer ends with the connection, no chunked framing to undo.
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read /metrics");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

/// A scripted run of raw requests through a fresh proxy (no client making requests of its
/// own), then `/metrics`: `requests_total` and `authentications_total` count exactly the run.
#[test]
fn metrics_count_a_scripted_run_exactly() {
    let Some(env) = TestEnv::load() else { return };
    let ns = env.team_namespace("obs-metrics", STREAMING_GROUP);
    let proxy = env.start_proxy();
    let token = env.id_token(ALICE);
    // A valid Dex token for another audience: the proxy's issuer refuses it.
    let wrong_audience = env.id_token_for_other_client(ALICE);
    let client = HttpsClient::new(&env.proxy_serving_ca_file, None);
    let get = |path: &str, token: &str| -> StatusCode {
        let request = Request::get(format!("{}{path}", proxy.url))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .expect("request");
        block_on(client.send(request)).0
    };

    let absent = format!(
        "/api/v1/namespaces/{ns}/configmaps/{}",
        unique_name("absent")
    );
    let list = format!("/api/v1/namespaces/{ns}/configmaps");
    // alice (team-a-devs) has no RBAC in team-b.
    let forbidden = "/api/v1/namespaces/team-b/configmaps";
    for _ in 0..3 {
        assert_eq!(get(&absent, &token), StatusCode::NOT_FOUND);
    }
    for _ in 0..2 {
        assert_eq!(get(&list, &token), StatusCode::OK);
    }
    assert_eq!(get(forbidden, &token), StatusCode::FORBIDDEN);
    assert_eq!(get(&list, &wrong_audience), StatusCode::UNAUTHORIZED);

    // Counted when each response ends: wait (bounded) until all 7 are in, then compare exactly.
    let requests = "kube_oidc_proxy_requests_total";
    let deadline = Instant::now() + EVENTUALLY;
    let text = loop {
        let text = scrape(proxy.readiness_port);
        if total(&text, requests) >= 7.0 || Instant::now() >= deadline {
            break text;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let issuer = env.dex_issuer_url.as_str();
    let context = format!("\n--- /metrics ---\n{text}\n{}", proxy.logs());
    for (verb, code, by, expected) in [
        ("get", "404", issuer, 3.0),
        ("list", "200", issuer, 2.0),
        ("list", "403", issuer, 1.0),
        // Nobody authenticated the refused caller.
        ("list", "401", "", 1.0),
    ] {
        assert_eq!(
            value(
                &text,
                requests,
                &[("verb", verb), ("code", code), ("issuer", by)]
            ),
            expected,
            "{requests}{{verb={verb},code={code},issuer={by}}}{context}"
        );
    }
    assert_eq!(total(&text, requests), 7.0, "nothing else counted{context}");

    let authentications = "kube_oidc_proxy_authentications_total";
    assert_eq!(
        value(
            &text,
            authentications,
            &[("issuer", issuer), ("result", "success"), ("reason", "")]
        ),
        6.0,
        "{context}"
    );
    assert_eq!(
        value(
            &text,
            authentications,
            &[
                ("issuer", issuer),
                ("result", "failure"),
                ("reason", "audience_mismatch")
            ]
        ),
        1.0,
        "{context}"
    );
    assert_eq!(total(&text, authentications), 7.0, "{context}");
    // Every successful authentication looked the token up in the cache once.
    assert_eq!(
        total(&text, "kube_oidc_proxy_token_cache_requests_total"),
        6.0,
        "{context}"
    );
}
