//! Upgraded connections at the protocol level: the real proxy binary between raw or WebSocket
//! clients and a byte-level fake API server (`tests/support/upgrade_server.rs`) that answers
//! 101, 400, 403 or 500.
//!
//! The rules under test (k8s-semantics §4–5): splice only after `101` (CVE-2018-1002105); pass
//! the negotiation (`Sec-WebSocket-Protocol`, `X-Stream-Protocol-Version`, every offer in
//! order) through unchanged; answer anything else as an ordinary response and close both
//! connections; propagate half-close; release both sockets when either side goes away.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use support::issuer::TestIssuer;
use support::pki::TestCa;
use support::proxy::ProxyProcess;
use support::upgrade_server::{read_head, UpgradeServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

/// Bound on anything the proxy should do promptly (a hang fails instead of stalling CI).
const PROMPTLY: Duration = Duration::from_secs(30);

struct Setup {
    ca: TestCa,
    issuer: TestIssuer,
    api: UpgradeServer,
    proxy: ProxyProcess,
}

async fn setup() -> Setup {
    let ca = TestCa::new();
    let issuer = TestIssuer::start(&ca).await;
    let api = UpgradeServer::start(&ca).await;
    let proxy = ProxyProcess::start(
        &ca,
        &issuer.url,
        &api.url,
        &["--oidc-groups-claim=groups".to_string()],
    )
    .await;
    Setup {
        ca,
        issuer,
        api,
        proxy,
    }
}

impl Setup {
    fn alice(&self) -> String {
        self.issuer.token(
            &self
                .issuer
                .claims("kube", json!({"sub": "alice", "groups": ["dev"]})),
        )
    }

    /// A TLS connection to the proxy offering only HTTP/1.1, as kubectl's upgrade dialers do.
    async fn connect(&self) -> TlsStream<tokio::net::TcpStream> {
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(self.ca.client_config(&[b"http/1.1"])));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.proxy.port))
            .await
            .unwrap();
        connector
            .connect("127.0.0.1".try_into().unwrap(), tcp)
            .await
            .unwrap()
    }

    /// Opens a SPDY-style upgrade to `path` and returns the stream after the proxy's 101 head.
    async fn spdy_session(&self, path: &str) -> (TlsStream<tokio::net::TcpStream>, String) {
        let mut stream = self.connect().await;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: kube\r\nAuthorization: Bearer {}\r\n\
             Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
             Content-Length: 0\r\n\r\n",
            self.alice()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = tokio::time::timeout(PROMPTLY, read_head(&mut stream))
            .await
            .expect("no response head")
            .expect("connection closed before a response head");
        (stream, head)
    }

    /// Open descriptors of the proxy process (sockets included).
    fn proxy_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.proxy.pid()))
            .expect("read the proxy's /proc/<pid>/fd")
            .count()
    }

    /// Waits (bounded) until the proxy holds at most `limit` descriptors; returns the last count.
    async fn wait_fds_at_most(&self, limit: usize) -> usize {
        let mut now = self.proxy_fds();
        for _ in 0..300 {
            if now <= limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            now = self.proxy_fds();
        }
        now
    }

    /// One complete upgraded session, so later descriptor counts start from a warm proxy
    /// (issuer keys fetched, runtime threads started).
    async fn warm_up(&self) {
        let (mut stream, head) = self.spdy_session("/answer/101?warm-up").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        stream.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        stream.read_exact(&mut one).await.unwrap();
        drop(stream);
        assert!(self.api.wait_closed("warm-up").await);
    }
}

/// Reads until the peer closes (bounded). TLS without close_notify still counts as closed.
async fn read_to_close(stream: &mut TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut all))
        .await
        .expect("the proxy left the connection open")
        .ok();
    all
}

/// A WebSocket handshake through the proxy is forwarded as the client sent it (GET, key,
/// version, every offered subprotocol in order, the proxy's credentials and impersonation),
/// the API server's 101 comes back with its `Sec-WebSocket-Accept` (which the client library
/// verifies against its key) and chosen subprotocol, and messages then flow both ways. Both
/// exec's `v5.channel.k8s.io` and port-forward's `SPDY/3.1+portforward.k8s.io` tunnel.
#[tokio::test]
async fn websocket_is_spliced_after_101_with_negotiation_intact() {
    let s = setup().await;
    for (name, offers) in [
        ("exec", "v5.channel.k8s.io, v4.channel.k8s.io"),
        ("portforward", "SPDY/3.1+portforward.k8s.io"),
    ] {
        let mut request = format!(
            "wss://127.0.0.1:{}/answer/101/{name}?stdout=true",
            s.proxy.port
        )
        .into_client_request()
        .unwrap();
        let headers = request.headers_mut();
        headers.insert(
            "authorization",
            format!("Bearer {}", s.alice()).parse().unwrap(),
        );
        headers.insert("sec-websocket-protocol", offers.parse().unwrap());
        let key = headers["sec-websocket-key"].to_str().unwrap().to_string();
        let (mut ws, response) = tokio_tungstenite::client_async(request, s.connect().await)
            .await
            .unwrap_or_else(|e| panic!("{name}: WebSocket handshake through the proxy: {e}"));
        assert_eq!(response.status(), 101, "{name}");
        let first_offer = offers.split(',').next().unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            first_offer,
            "{name}: the API server's choice must come back unchanged"
        );

        // Channel 0 (stdin) with a payload, as kubectl frames it; echoed by the fake server.
        let frame = Message::binary(b"\x00payload through the tunnel".to_vec());
        ws.send(frame.clone()).await.unwrap();
        let echoed = tokio::time::timeout(PROMPTLY, ws.next())
            .await
            .expect("no echo")
            .expect("stream ended")
            .unwrap();
        assert_eq!(echoed, frame, "{name}");
        ws.close(None).await.unwrap();

        let seen = s.api.connections_for(&format!("/answer/101/{name}"));
        assert_eq!(seen.len(), 1, "{name}: {seen:?}");
        let seen = &seen[0];
        assert!(
            seen.request_line().starts_with("GET ") && seen.request_line().ends_with(" HTTP/1.1"),
            "{name}: {}",
            seen.request_line()
        );
        assert_eq!(seen.header_values("sec-websocket-protocol"), [offers]);
        assert_eq!(seen.header_values("sec-websocket-key"), [key.as_str()]);
        assert_eq!(seen.header_values("sec-websocket-version"), ["13"]);
        assert_eq!(seen.header_values("upgrade"), ["websocket"]);
        assert_eq!(seen.header_values("connection"), ["Upgrade"]);
        assert_eq!(seen.header_values("impersonate-user"), ["alice"]);
        assert_eq!(
            seen.header_values("authorization"),
            ["Bearer proxy-service-account-token"]
        );
        assert!(s.api.wait_closed(&format!("/answer/101/{name}")).await);
    }
}

/// A SPDY upgrade carries every `X-Stream-Protocol-Version` offer, in order, to the API server;
/// the version it chose comes back unchanged. Each side's half-close reaches the other: after
/// the client's end of stream the server can still send (`bye`), then its own close arrives.
#[tokio::test]
async fn spdy_offers_pass_in_order_and_half_close_propagates() {
    let s = setup().await;
    let offers = [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    ];
    let mut stream = s.connect().await;
    let mut request = format!(
        "POST /answer/101/spdy?command=sh HTTP/1.1\r\nHost: kube\r\nAuthorization: Bearer {}\r\n\
         Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
        s.alice()
    );
    for offer in offers {
        request.push_str(&format!("X-Stream-Protocol-Version: {offer}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await.expect("a response head");
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 101"), "{head}");
    assert!(lower.contains("\r\nupgrade: spdy/3.1"), "{head}");
    assert!(
        lower.contains("\r\nx-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );

    stream.write_all(b"spdy frames").await.unwrap();
    let mut echoed = [0u8; 11];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"spdy frames");

    // Half-close: the client is done sending but still reads.
    stream.shutdown().await.unwrap();
    let rest = read_to_close(&mut stream).await;
    assert_eq!(
        rest, b"bye",
        "the server's data after the client's half-close"
    );

    let seen = s.api.connections_for("/answer/101/spdy");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].request_line().starts_with("POST "));
    assert_eq!(seen[0].header_values("x-stream-protocol-version"), offers);
    assert_eq!(seen[0].header_values("upgrade"), ["SPDY/3.1"]);
    assert!(s.api.wait_closed("/answer/101/spdy").await);
}

/// 400, 403 and 500 answers to an upgrade are returned as ordinary responses (the API server's
/// `Status`, no `Upgrade`, `Connection: close`), and both connections are closed. Bytes a
/// client pipelines behind its upgrade request (here a second request) never reach the API
/// server: nothing after the refused request arrives there, and no second request is made.
#[tokio::test]
async fn refused_upgrades_are_answered_and_never_spliced() {
    let s = setup().await;
    let token = s.alice();
    for code in ["400", "403", "500"] {
        for (protocol, upgrade_headers) in [
            (
                "websocket",
                "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n",
            ),
            (
                "spdy",
                "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
                 Content-Length: 0\r\n",
            ),
        ] {
            let method = if protocol == "websocket" {
                "GET"
            } else {
                "POST"
            };
            let path = format!("/answer/{code}/{protocol}");
            let smuggled = format!("/answer/101/smuggled-after-{code}-{protocol}");
            let mut stream = s.connect().await;
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: kube\r\nAuthorization: Bearer {token}\r\n\
                 Connection: Upgrade\r\n{upgrade_headers}\r\n\
                 POST {smuggled} HTTP/1.1\r\nHost: kube\r\nConnection: Upgrade\r\n\
                 Upgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\nraw bytes for the backend"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let answer = read_to_close(&mut stream).await;
            let text = String::from_utf8_lossy(&answer);
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let head = head.to_ascii_lowercase();
            assert!(
                head.starts_with(&format!("http/1.1 {code}")),
                "{path}: {text}"
            );
            assert!(!head.contains("\r\nupgrade:"), "{path}: {text}");
            assert!(head.contains("\r\nconnection: close"), "{path}: {text}");
            assert!(
                body.contains(&format!(r#""code":{code}"#)),
                "{path}: the API server's Status must pass through: {text}"
            );

            assert!(
                s.api.wait_closed(&path).await,
                "{path}: the upstream connection was left open"
            );
            let seen = s.api.connections_for(&path);
            assert_eq!(seen.len(), 1, "{path}");
            assert!(
                seen[0].after_refusal.is_empty(),
                "{path}: bytes after the refused upgrade reached the API server: {:?}",
                String::from_utf8_lossy(&seen[0].after_refusal)
            );
            assert!(
                s.api.connections_for(&smuggled).is_empty(),
                "{path}: the pipelined request reached the API server"
            );
        }
    }
}

/// A 101 that names no protocol cannot be spliced: the client gets a 502 and both
/// connections are closed.
#[tokio::test]
async fn switching_to_no_protocol_is_a_bad_gateway() {
    let s = setup().await;
    let (mut stream, head) = s.spdy_session("/answer/101-without-upgrade/x").await;
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 502"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    read_to_close(&mut stream).await;
    assert!(s.api.wait_closed("/answer/101-without-upgrade").await);
}

/// An HTTP/2 client cannot upgrade (RFC 9113 §8.6): its request to an upgrade endpoint goes
/// through as an ordinary request and it gets what the API server answers (400).
#[tokio::test]
async fn http2_clients_get_the_api_servers_answer() {
    let s = setup().await;
    let request = http::Request::post(format!("{}/answer/101/over-h2?command=sh", s.proxy.url))
        .header("authorization", format!("Bearer {}", s.alice()))
        .header("x-stream-protocol-version", "v4.channel.k8s.io")
        .body(support::http::empty())
        .unwrap();
    let response = support::http::client(&s.ca, true)
        .request(request)
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let (parts, body) = support::http::body_bytes(response).await;
    assert_eq!(parts.status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("Upgrade request required"),
        "{body:?}"
    );
    let seen = s.api.connections_for("/answer/101/over-h2");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header_values("upgrade").is_empty(), "{seen:?}");
}

/// When clients vanish mid-session (dropped without any goodbye), the proxy releases both
/// sockets of every session: the API server sees each upstream connection closed, and the
/// proxy's open descriptors return to what they were before.
#[tokio::test]
async fn dropped_clients_release_both_sockets() {
    const SESSIONS: usize = 6;
    let s = setup().await;
    s.warm_up().await;
    let before = s.wait_fds_at_most(usize::MAX).await;

    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let (mut stream, head) = s.spdy_session(&format!("/answer/101/drop-{i}")).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        stream.write_all(b"ping").await.unwrap();
        let mut pong = [0u8; 4];
        stream.read_exact(&mut pong).await.unwrap();
        sessions.push(stream);
    }
    let during = s.proxy_fds();
    assert!(
        during >= before + 2 * SESSIONS,
        "expected a client and an upstream socket per session: {before} before, {during} during"
    );

    drop(sessions);
    for i in 0..SESSIONS {
        assert!(
            s.api.wait_closed(&format!("/answer/101/drop-{i}")).await,
            "session {i}: the upstream connection outlived its client"
        );
    }
    let after = s.wait_fds_at_most(before).await;
    assert!(
        after <= before,
        "descriptors leaked: {before} before, {during} during, {after} after"
    );
}

/// When the API server ends sessions, each client sees the data sent before the close and then
/// the end of the stream; once the clients close too, no descriptor is left behind.
#[tokio::test]
async fn upstream_close_reaches_the_client_and_releases_both_sockets() {
    const SESSIONS: usize = 6;
    let s = setup().await;
    s.warm_up().await;
    let before = s.wait_fds_at_most(usize::MAX).await;

    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let (mut stream, head) = s
            .spdy_session(&format!("/answer/101-then-close/server-ends-{i}"))
            .await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let rest = read_to_close(&mut stream).await;
        assert_eq!(rest, b"closing", "session {i}");
        sessions.push(stream);
    }
    drop(sessions);
    let after = s.wait_fds_at_most(before).await;
    assert!(
        after <= before,
        "descriptors leaked: {before} before, {after} after"
    );
}
