//! In-process integration tests: the real proxy binary between a test OIDC issuer and a fake
//! API server that records exactly what reaches it.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use support::apiserver::FakeApiServer;
use support::http::{body_bytes, client, empty, full, ConnectionId, MAX_CONCURRENT_STREAMS};
use support::issuer::TestIssuer;
use support::jwt::{Alg, TestKey};
use support::pki::TestCa;
use support::proxy::ProxyProcess;
use support::setup::{setup, Setup};

fn status_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("a Status JSON body")
}

#[tokio::test]
async fn forwards_with_exact_impersonation_headers_and_proxy_credentials() {
    let s = setup(&[]).await;
    let token = s.alice();
    let request = Request::post(format!(
        "{}/api/v1/namespaces/default/configmaps?fieldManager=kubectl&dryRun=All",
        s.proxy.url
    ))
    .header("authorization", format!("Bearer {token}"))
    .header("content-type", "application/json")
    // The Director-ordering trick: the client names the proxy's own headers as hop-by-hop.
    .header(
        "connection",
        "Authorization, Impersonate-User, Impersonate-Group",
    )
    .header("x-remote-user", "system:admin")
    .header("x-forwarded-for", "203.0.113.9")
    .body(full(r#"{"kind":"ConfigMap"}"#))
    .unwrap();
    let response = client(&s.ca, false).request(request).await.unwrap();
    let (parts, _) = body_bytes(response).await;
    assert_eq!(parts.status, StatusCode::OK);

    let seen = s.api.last();
    assert_eq!(seen.method, http::Method::POST);
    assert!(
        seen.uri
            .ends_with("/api/v1/namespaces/default/configmaps?fieldManager=kubectl&dryRun=All"),
        "{}",
        seen.uri
    );
    assert_eq!(seen.body, Bytes::from_static(br#"{"kind":"ConfigMap"}"#));
    let h = &seen.headers;
    assert_eq!(h["authorization"], "Bearer proxy-service-account-token");
    assert_eq!(h.get_all("authorization").iter().count(), 1);
    assert_eq!(h["impersonate-user"], "alice");
    let groups: Vec<_> = h.get_all("impersonate-group").iter().collect();
    assert_eq!(groups, vec!["dev", "ops", "system:authenticated"]);
    assert!(h.get("impersonate-uid").is_none());
    assert!(h.get("x-remote-user").is_none());
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(
        !h.values().any(|v| v.as_bytes() == token.as_bytes()),
        "client token leaked upstream"
    );

    let expected = "AuSuccess src:[127.0.0.1 / 203.0.113.9] URI:/api/v1/namespaces/default/configmaps?fieldManager=kubectl&dryRun=All inbound:[alice / dev|ops / ]";
    let log = s
        .proxy
        .stdout_when(|lines| lines.iter().any(|l| l.contains(expected)))
        .await
        .join("\n");
    assert!(log.contains(expected), "{log}");
}

/// A client's own Impersonate-* headers, in any case, never reach the API server unvetted:
/// without a user they are a 400, and a user the API server does not allow (the fake denies
/// every SubjectAccessReview by default) is a 403. The full rules are in tests/impersonation.rs.
#[tokio::test]
async fn client_impersonation_headers_are_refused_unless_authorized() {
    let s = setup(&[]).await;
    for (header, expected) in [
        ("Impersonate-User", StatusCode::FORBIDDEN),
        ("IMPERSONATE-GROUP", StatusCode::BAD_REQUEST),
        ("impersonate-uid", StatusCode::BAD_REQUEST),
        ("Impersonate-Extra-Scopes", StatusCode::BAD_REQUEST),
    ] {
        let request = Request::get(format!("{}/api/v1/pods", s.proxy.url))
            .header("authorization", format!("Bearer {}", s.alice()))
            .header(header, "system:masters")
            .body(empty())
            .unwrap();
        let (parts, body) = body_bytes(client(&s.ca, false).request(request).await.unwrap()).await;
        assert_eq!(parts.status, expected, "{header}");
        let status = status_json(&body);
        assert_eq!(status["kind"], "Status");
    }
    assert!(
        s.api.forwarded().is_empty(),
        "a refused request reached the API server"
    );
}

#[tokio::test]
async fn bad_tokens_get_401_status_and_never_reach_the_api_server() {
    let s = setup(&[]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let other_key = TestKey::generate(Alg::RS256);
    let good = s.alice();
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("not-a-jwt".into())),
        ("tampered signature", Some(tampered)),
        (
            "expired",
            Some(
                s.issuer
                    .token(&s.issuer.claims("kube", json!({"exp": now - 10}))),
            ),
        ),
        (
            "wrong audience",
            Some(s.issuer.token(&s.issuer.claims("someone-else", json!({})))),
        ),
        (
            "unknown key",
            Some(other_key.token(
                Alg::RS256,
                Some("key-1"),
                &s.issuer.claims("kube", json!({})),
            )),
        ),
        (
            "other issuer",
            Some(
                s.issuer.token(
                    &s.issuer
                        .claims("kube", json!({"iss": "https://evil.example"})),
                ),
            ),
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                support::jwt::b64(br#"{"alg":"none"}"#),
                support::jwt::b64(s.issuer.claims("kube", json!({})).to_string().as_bytes())
            )),
        ),
        (
            "empty username",
            Some(s.issuer.token(&s.issuer.claims("kube", json!({"sub": ""})))),
        ),
        (
            "groups of the wrong type",
            Some(
                s.issuer
                    .token(&s.issuer.claims("kube", json!({"groups": 42}))),
            ),
        ),
    ];
    for (name, token) in cases {
        let (parts, body) = s.get_path("/api/v1/pods", token.as_deref()).await;
        assert_eq!(parts.status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(parts.headers["content-type"], "application/json", "{name}");
        let status = status_json(&body);
        assert_eq!(
            status,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"Unauthorized","reason":"Unauthorized","code":401}),
            "{name}"
        );
    }
    assert!(s.api.requests().is_empty());
    let failures = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("] AuFail src:[127.0.0.1 / ] URI:/api/v1/pods"))
            .count()
    };
    let log = s.proxy.stdout_when(|lines| failures(lines) >= 10).await;
    assert_eq!(failures(&log), 10, "{log:?}");
}

#[tokio::test]
async fn api_server_responses_pass_through_and_redirects_are_not_followed() {
    let s = setup(&[]).await;
    let token = s.alice();
    let (parts, body) = s.get_path("/forbidden", Some(&token)).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert_eq!(status_json(&body)["message"], "pods is forbidden");

    let (parts, _) = s.get_path("/redirect", Some(&token)).await;
    assert_eq!(parts.status, StatusCode::FOUND);
    assert_eq!(parts.headers["location"], "https://127.0.0.1:1/elsewhere");
    assert_eq!(s.api.requests().len(), 2);
}

#[tokio::test]
async fn watch_events_arrive_one_by_one() {
    let s = setup(&[]).await;
    let request = Request::get(format!("{}/watch", s.proxy.url))
        .header("authorization", format!("Bearer {}", s.alice()))
        .body(empty())
        .unwrap();
    let response = client(&s.ca, false).request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    for i in 0..3 {
        let event = format!("{{\"type\":\"ADDED\",\"n\":{i}}}\n");
        s.api.send_watch_event(&event).await;
        // The next event is only sent after this one arrived: no buffering anywhere.
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("event not delivered while the stream stays open")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from(event));
    }
    s.api.end_watch();
}

#[tokio::test]
async fn http2_clients_are_served() {
    let s = setup(&[]).await;
    let request = Request::get(format!("{}/api/v1/namespaces", s.proxy.url))
        .header("authorization", format!("Bearer {}", s.alice()))
        .body(empty())
        .unwrap();
    let response = client(&s.ca, true).request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(s.api.last().headers["impersonate-user"], "alice");
}

#[tokio::test]
async fn large_bodies_stream_in_both_directions() {
    let s = setup(&[]).await;
    let (parts, body) = s.get_path("/big", Some(&s.alice())).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body.len(), 64 * 1024 * 1024);

    let payload = Bytes::from(vec![b'y'; 8 * 1024 * 1024]);
    let request = Request::put(format!("{}/echo-body", s.proxy.url))
        .header("authorization", format!("Bearer {}", s.alice()))
        .body(full(payload.clone()))
        .unwrap();
    let (parts, body) = body_bytes(client(&s.ca, false).request(request).await.unwrap()).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body, payload);
}

#[tokio::test]
async fn rotated_issuer_key_is_fetched_once_on_unknown_kid() {
    let s = setup(&[]).await;
    let fetches_before = s.issuer.jwks_fetches();
    let new_key = TestKey::generate(Alg::RS256);
    s.issuer.set_jwks(&[
        s.issuer.key.public_jwk(Some("key-1")),
        new_key.public_jwk(Some("key-2")),
    ]);
    let token = new_key.token(
        Alg::RS256,
        Some("key-2"),
        &s.issuer.claims("kube", json!({"sub": "bob"})),
    );
    let (parts, _) = s.get_path("/api", Some(&token)).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(s.api.last().headers["impersonate-user"], "bob");
    assert_eq!(s.issuer.jwks_fetches(), fetches_before + 1);

    // A flood of tokens with unknown kids does not turn into a flood of JWKS fetches.
    let stranger = TestKey::generate(Alg::RS256);
    for i in 0..5 {
        let token = stranger.token(
            Alg::RS256,
            Some(&format!("nope-{i}")),
            &s.issuer.claims("kube", json!({})),
        );
        let (parts, _) = s.get_path("/api", Some(&token)).await;
        assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    }
    assert!(
        s.issuer.jwks_fetches() <= fetches_before + 2,
        "{}",
        s.issuer.jwks_fetches()
    );
}

/// A proxy in front of an API server that cannot be reached (readiness only reports it), and a
/// token it accepts.
async fn proxy_before_failing_upstream(
    ca: &TestCa,
    issuer: &TestIssuer,
    upstream: &str,
) -> (ProxyProcess, String) {
    let proxy = ProxyProcess::start(
        ca,
        &issuer.url,
        upstream,
        &["--readiness-upstream=reported".to_string()],
    )
    .await;
    (proxy, issuer.token(&issuer.claims("kube", json!({}))))
}

#[tokio::test]
async fn upstream_failures_are_502_and_504_status() {
    let ca = TestCa::new();
    let issuer = TestIssuer::start(&ca).await;
    let dead = format!("https://127.0.0.1:{}", support::proxy::free_port());
    let (proxy, token) = proxy_before_failing_upstream(&ca, &issuer, &dead).await;
    let request = Request::get(format!("{}/api", proxy.url))
        .header("authorization", format!("Bearer {token}"))
        .body(empty())
        .unwrap();
    let (parts, body) = body_bytes(client(&ca, false).request(request).await.unwrap()).await;
    assert_eq!(parts.status, StatusCode::BAD_GATEWAY);
    assert_eq!(status_json(&body)["code"], 502);

    let api = FakeApiServer::start(&ca).await;
    let proxy = ProxyProcess::start(
        &ca,
        &issuer.url,
        &api.url,
        &["--request-timeout=1s".to_string()],
    )
    .await;
    let request = Request::get(format!("{}/slow", proxy.url))
        .header("authorization", format!("Bearer {token}"))
        .body(empty())
        .unwrap();
    let (parts, body) = body_bytes(client(&ca, false).request(request).await.unwrap()).await;
    assert_eq!(parts.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(status_json(&body)["reason"], "Timeout");
}

/// Requests that wait while a connection to the API server is being opened share its failure
/// rather than each trying again in turn (which made the last of n wait n connect attempts).
#[tokio::test]
async fn waiting_requests_share_a_failed_connection_attempt() {
    let ca = TestCa::new();
    let issuer = TestIssuer::start(&ca).await;
    // Accepts connections and drops each after a while without a TLS handshake: a slow failure.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("https://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                drop(stream);
            });
        }
    });
    let (proxy, token) = proxy_before_failing_upstream(&ca, &issuer, &dead).await;
    let client = client(&ca, false);
    const REQUESTS: usize = 8;
    let before = accepted.load(Ordering::SeqCst);
    let pending: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let request = Request::get(format!("{}/api", proxy.url))
                .header("authorization", format!("Bearer {token}"))
                .body(empty())
                .unwrap();
            tokio::spawn(client.request(request))
        })
        .collect();
    for answer in pending {
        let response = answer.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }
    let attempts = accepted.load(Ordering::SeqCst) - before;
    assert!(
        attempts <= 3,
        "{attempts} connection attempts for {REQUESTS} concurrent requests"
    );
}

async fn raw_tls(s: &Setup) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(s.ca.client_config(&[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.proxy.port))
        .await
        .unwrap();
    connector
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

async fn read_head(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn upgrades_splice_only_after_101() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(&[]).await;
    let token = s.alice();

    let mut stream = raw_tls(&s).await;
    let request = format!(
        "POST /upgrade-echo?command=sh HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
         X-Stream-Protocol-Version: channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: spdy/3.1"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    stream.write_all(b"hello through the tunnel").await.unwrap();
    let mut echoed = [0u8; 24];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"hello through the tunnel");
    let seen = s.api.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers["impersonate-user"], "alice");
    assert_eq!(
        seen.headers["authorization"],
        "Bearer proxy-service-account-token"
    );
    let offers: Vec<_> = seen
        .headers
        .get_all("x-stream-protocol-version")
        .iter()
        .collect();
    assert_eq!(offers, vec!["v4.channel.k8s.io", "channel.k8s.io"]);

    // A refused upgrade is an ordinary response, and the client connection is closed.
    let mut stream = raw_tls(&s).await;
    let request = format!(
        "POST /upgrade-refused HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("connection left open after a refused upgrade")
        .ok();
    let text = String::from_utf8_lossy(&rest).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 400"), "{text}");
    assert!(text.contains("upgrade refused"), "{text}");
}

#[tokio::test]
async fn readiness_waits_for_issuer_keys_and_liveness_does_not() {
    let ca = TestCa::new();
    let api = FakeApiServer::start(&ca).await;
    let nowhere = format!("https://127.0.0.1:{}", support::proxy::free_port());
    let proxy = ProxyProcess::spawn(&ca, &nowhere, &api.url, &[]);
    let mut live = None;
    for _ in 0..100 {
        live = proxy.probe("/live").await;
        if live.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(live.unwrap().0, 200);
    assert_eq!(proxy.probe("/healthz").await.unwrap().0, 200);
    let (code, body) = proxy.probe("/ready").await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("keys not loaded"), "{body}");
    assert_eq!(proxy.probe("/readyz").await.unwrap().0, 503);
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let mut s = setup(&[]).await;
    let pid = s.proxy.pid();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || s.proxy.wait_exit(Duration::from_secs(40)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[test]
fn configuration_errors_are_all_reported_before_listening() {
    let output = std::process::Command::new(support::proxy::binary())
        .args([
            "--oidc-issuer-url=http://insecure.example",
            "--oidc-client-id=kube",
            "--oidc-signing-algs=HS256",
            "--tls-min-version=VersionSSL30",
            "--server=https://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "--tls-cert-file: required",
        "--tls-private-key-file: required",
        "URL scheme must be https",
        "HS256",
        "VersionSSL30",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn websocket_token_in_subprotocol_is_accepted_and_never_forwarded() {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(&[]).await;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.alice());
    let mut stream = raw_tls(&s).await;
    let request = format!(
        "GET /upgrade-echo?command=ls HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.{encoded}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    let seen = s.api.last();
    assert_eq!(seen.headers["impersonate-user"], "alice");
    assert_eq!(seen.headers["sec-websocket-protocol"], "v5.channel.k8s.io");
    assert_eq!(
        seen.headers["sec-websocket-key"],
        "dGhlIHNhbXBsZSBub25jZQ=="
    );

    // The token alone, with no subprotocol to echo back, is refused as kube-apiserver refuses it.
    let mut stream = raw_tls(&s).await;
    let request = format!(
        "GET /upgrade-echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.{encoded}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
}

/// Opens `count` watches of `path` through the proxy at once, each on its own client
/// connection, and waits for every one's response headers.
async fn open_watches(s: &Setup, path: &str, count: usize) -> Vec<Response<Incoming>> {
    let token = s.alice();
    let client = client(&s.ca, false);
    let pending: Vec<_> = (0..count)
        .map(|_| {
            let request = Request::get(format!("{}{path}", s.proxy.url))
                .header("authorization", format!("Bearer {token}"))
                .body(empty())
                .unwrap();
            tokio::spawn(client.request(request))
        })
        .collect();
    let mut open = Vec::new();
    for watch in pending {
        let response = tokio::time::timeout(Duration::from_secs(30), watch)
            .await
            .expect("a watch was not answered")
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    open
}

/// The upstream connections that requests for `path` came on.
fn connections_of(api: &FakeApiServer, path: &str) -> HashSet<ConnectionId> {
    api.forwarded()
        .iter()
        .filter(|r| r.uri.parse::<http::Uri>().unwrap().path() == path)
        .map(|r| r.connection)
        .collect()
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// Waits (bounded) until `read` gives the same value for half a second: a stream that still
/// moves would only make the caller's check pass too early, never fail wrongly.
async fn until_settled(what: &str, read: impl Fn() -> u64) {
    let mut last = read();
    let mut unchanged = 0;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = read();
        unchanged = if now == last { unchanged + 1 } else { 0 };
        if unchanged == 10 {
            return;
        }
        last = now;
    }
    panic!("never: {what}");
}

/// Regression: watches used to share the multiplexed HTTP/2 upstream connection, whose
/// server-side stream limit (200 for hyper, 250 for kube-apiserver by default) then queued every
/// later request behind them forever. More watches than that limit, and than one lane carries,
/// all open.
#[tokio::test]
async fn many_open_watches_do_not_starve_other_requests() {
    const WATCHES: usize = 250;
    const _: () = assert!(WATCHES > MAX_CONCURRENT_STREAMS as usize);
    let s = setup(&[]).await;
    let _watches = open_watches(&s, "/quiet-watch?watch=true", WATCHES).await;
    let (parts, _) = tokio::time::timeout(
        Duration::from_secs(30),
        s.get_path("/api/v1/namespaces", Some(&s.alice())),
    )
    .await
    .expect("an ordinary request was starved by open watches");
    assert_eq!(parts.status, StatusCode::OK);
}

/// Watches travel over HTTP/2 upstream, at most 100 to a connection ("lanes"), with the proxy's
/// credentials; a closed watch frees its place for the next one.
#[tokio::test]
async fn watches_share_upstream_connections_a_hundred_each() {
    let s = setup(&[]).await;
    let mut watches = open_watches(&s, "/quiet-watch?watch=true", 250).await;
    assert_eq!(connections_of(&s.api, "/quiet-watch").len(), 3);
    for seen in s.api.forwarded() {
        assert_eq!(seen.version, http::Version::HTTP_2);
        assert_eq!(
            seen.headers["authorization"],
            "Bearer proxy-service-account-token"
        );
        assert_eq!(seen.headers["impersonate-user"], "alice");
    }

    // Closed watches free their places on the lanes once the proxy has ended their streams.
    watches.drain(..100);
    until("100 watches ended upstream", || {
        s.api.open_quiet_watches() == 150
    })
    .await;
    let reopened = open_watches(&s, "/quiet-watch?watch=true", 100).await;
    assert_eq!(s.api.open_quiet_watches(), 250);
    assert_eq!(connections_of(&s.api, "/quiet-watch").len(), 3);
    drop((watches, reopened));
}

/// Short requests travel on lanes of their own: more in flight than one lane carries open a
/// second connection instead of queueing behind the first (hyper's client alone would keep all
/// 150 on one connection, under the upstream's limit of 200), and none shares a connection with
/// a watch.
#[tokio::test]
async fn short_requests_take_lanes_of_their_own() {
    let s = setup(&[]).await;
    let watch = open_watches(&s, "/quiet-watch?watch=true", 1).await;
    // Without `watch=true`, `/quiet-watch` is a short request that stays open until dropped.
    let short = open_watches(&s, "/quiet-watch", 150).await;
    let seen = s.api.forwarded();
    let watch_lanes: HashSet<ConnectionId> = seen
        .iter()
        .filter(|r| r.uri.ends_with("watch=true"))
        .map(|r| r.connection)
        .collect();
    let short_lanes: HashSet<ConnectionId> = seen
        .iter()
        .filter(|r| r.uri.ends_with("/quiet-watch"))
        .map(|r| r.connection)
        .collect();
    assert_eq!(watch_lanes.len(), 1);
    assert_eq!(short_lanes.len(), 2);
    assert!(watch_lanes.is_disjoint(&short_lanes));
    assert!(seen.iter().all(|r| r.version == http::Version::HTTP_2));
    drop((watch, short));
}

/// A client that stops reading its watch stalls only that stream: the upstream connection it
/// shares with other watches keeps flowing, however much the upstream writes to the stalled ones.
#[tokio::test]
async fn stalled_watches_do_not_block_their_lane() {
    let s = setup(&[]).await;
    let mut watch = open_watches(&s, "/watch?watch=true", 1).await.remove(0);
    const STALLED: u64 = 20;
    // Never read: each fills its stream's window in the proxy and the buffers on the way to
    // its client, then the upstream can write no more to it.
    let stalled = open_watches(&s, "/flood?watch=true", STALLED as usize).await;
    until("the stalled watches filled their windows", || {
        s.api.flooded_bytes() >= STALLED << 20
    })
    .await;
    until_settled("the stalled watches stopped taking data", || {
        s.api.flooded_bytes()
    })
    .await;
    let lanes = connections_of(&s.api, "/flood");
    assert_eq!(lanes.len(), 1);
    assert_eq!(lanes, connections_of(&s.api, "/watch"));

    let event = r#"{"type":"ADDED","object":{"kind":"ConfigMap"}}"#;
    s.api.send_watch_event(event).await;
    let mut received = Vec::new();
    while received.len() < event.len() {
        let frame = tokio::time::timeout(Duration::from_secs(30), watch.body_mut().frame())
            .await
            .expect("the watch sharing a lane with stalled ones stopped receiving")
            .unwrap()
            .unwrap();
        received.extend_from_slice(&frame.into_data().unwrap());
    }
    assert_eq!(received, event.as_bytes());
    drop(stalled);
}

/// Against an API server without HTTP/2, watches go over HTTP/1.1 connections.
#[tokio::test]
async fn watches_fall_back_to_http1_without_http2_upstream() {
    let ca = TestCa::new();
    let issuer = TestIssuer::start(&ca).await;
    let api = FakeApiServer::start_http1_only(&ca).await;
    let proxy = ProxyProcess::start(
        &ca,
        &issuer.url,
        &api.url,
        &["--oidc-groups-claim=groups".to_string()],
    )
    .await;
    let s = Setup {
        ca,
        issuer,
        api,
        proxy,
    };
    let quiet = open_watches(&s, "/quiet-watch?watch=true", 3).await;
    let mut watch = open_watches(&s, "/watch?watch=true", 1).await.remove(0);
    s.api.send_watch_event(r#"{"type":"ADDED"}"#).await;
    let frame = tokio::time::timeout(Duration::from_secs(30), watch.body_mut().frame())
        .await
        .expect("the watch received nothing")
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data().unwrap(), r#"{"type":"ADDED"}"#);
    let forwarded = s.api.forwarded();
    assert_eq!(forwarded.len(), 4);
    for seen in forwarded {
        assert_eq!(seen.version, http::Version::HTTP_11);
        assert_eq!(
            seen.headers["authorization"],
            "Bearer proxy-service-account-token"
        );
    }
    assert_eq!(connections_of(&s.api, "/quiet-watch").len(), 3);
    drop(quiet);
}
