//! A fake API server for upgrade requests only, written at the byte level so a test sees
//! exactly what reaches it on each connection: the request head, every byte after it, and
//! whether and when the proxy closed the connection.
//!
//! The answer depends on the path (`/answer/<what>`):
//! - `101`: switches protocols as kube-apiserver does. For WebSocket it picks the first offered
//!   subprotocol and sends `Sec-WebSocket-Accept`, then echoes WebSocket messages; for SPDY it
//!   picks `v4.channel.k8s.io` if offered (not the first offer, so a test sees the server's
//!   choice come back) and echoes raw bytes until the client's end of stream, then writes `bye`
//!   and closes.
//! - `101-then-close`: switches protocols, writes `closing` and closes the connection at once.
//! - `101-without-upgrade`: a 101 that names no protocol, then waits for the proxy to close.
//! - `/readyz` (the proxy's readiness check): 200 `ok`, then the connection is closed.
//! - `400`, `403`, `500`: a Kubernetes `Status` with that code and no `Connection: close`, then
//!   keeps reading the connection (recording anything more the proxy sends) until it closes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::pki::{server_config, TestCa};

/// What one connection from the proxy carried.
#[derive(Debug, Default, Clone)]
pub struct Connection {
    /// The request head, as received (request line and headers, no final blank line).
    pub head: String,
    /// Bytes that arrived after the head outside an upgraded stream (for refused upgrades:
    /// what a smuggling client could have pushed through).
    pub after_refusal: Vec<u8>,
    /// The proxy closed (or reset) the connection.
    pub closed: bool,
}

impl Connection {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }
}

pub struct UpgradeServer {
    pub url: String,
    pub address: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<Mutex<Connection>>>>>,
}

impl UpgradeServer {
    pub async fn start(ca: &TestCa) -> Self {
        let leaf = ca.leaf("upgrade-apiserver");
        // HTTP/1.1 only, as kube-apiserver's answer to an upgrade dial.
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&leaf, &[b"http/1.1"])));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<Arc<Mutex<Connection>>>>> = Arc::default();
        let registry = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let record = Arc::new(Mutex::new(Connection::default()));
                registry.lock().unwrap().push(record.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, &record).await;
                    }
                    record.lock().unwrap().closed = true;
                });
            }
        });
        Self {
            url: format!("https://127.0.0.1:{}", address.port()),
            address,
            connections,
        }
    }

    /// Every connection so far, oldest first.
    pub fn connections(&self) -> Vec<Connection> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().clone())
            .collect()
    }

    /// The connections whose request line contains `needle`.
    pub fn connections_for(&self, needle: &str) -> Vec<Connection> {
        self.connections()
            .into_iter()
            .filter(|c| c.request_line().contains(needle))
            .collect()
    }

    /// Waits (bounded) until every connection whose request line contains `needle` was closed.
    pub async fn wait_closed(&self, needle: &str) -> bool {
        for _ in 0..300 {
            let matching = self.connections_for(needle);
            if !matching.is_empty() && matching.iter().all(|c| c.closed) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// Reads a request head byte by byte (so nothing after it is consumed).
pub async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    head.truncate(head.len() - 4);
    String::from_utf8(head).ok()
}

async fn serve<S>(mut stream: S, record: &Mutex<Connection>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    record.lock().unwrap().head = head.clone();
    let request = Connection {
        head,
        ..Connection::default()
    };
    let path = request
        .request_line()
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    // The proxy's readiness check: answered as kube-apiserver does, on a connection closed
    // after it (every other connection here serves one request and is then held open).
    if path == "/readyz" {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .await;
        let _ = stream.shutdown().await;
        return;
    }
    let answer = path
        .strip_prefix("/answer/")
        .and_then(|rest| rest.split(['?', '/']).next())
        .unwrap_or_default()
        .to_string();
    let upgrade = request
        .header_values("upgrade")
        .first()
        .cloned()
        .unwrap_or_default();
    let websocket = upgrade.eq_ignore_ascii_case("websocket");
    let is_upgrade = request
        .header_values("connection")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("upgrade"));
    // Like kube-apiserver's exec handler, a plain request to an upgrade endpoint is a 400.
    let answer = if is_upgrade {
        answer
    } else {
        "400".to_string()
    };
    match answer.as_str() {
        "101-without-upgrade" => {
            let _ = stream
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n")
                .await;
            let _ = stream.read(&mut [0u8; 1]).await;
        }
        "101" | "101-then-close" => {
            let mut response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n"
            );
            if websocket {
                let key = request
                    .header_values("sec-websocket-key")
                    .first()
                    .cloned()
                    .unwrap_or_default();
                response.push_str(&format!(
                    "Sec-WebSocket-Accept: {}\r\n",
                    derive_accept_key(key.as_bytes())
                ));
                let offered: Vec<String> = request
                    .header_values("sec-websocket-protocol")
                    .iter()
                    .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
                    .collect();
                if let Some(first) = offered.first() {
                    response.push_str(&format!("Sec-WebSocket-Protocol: {first}\r\n"));
                }
            } else {
                let offered = request.header_values("x-stream-protocol-version");
                let chosen = offered
                    .iter()
                    .find(|p| *p == "v4.channel.k8s.io")
                    .or(offered.first());
                if let Some(chosen) = chosen {
                    response.push_str(&format!("X-Stream-Protocol-Version: {chosen}\r\n"));
                }
            }
            response.push_str("\r\n");
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
            if answer == "101-then-close" {
                let _ = stream.write_all(b"closing").await;
                let _ = stream.shutdown().await;
                return;
            }
            if websocket {
                let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                    if (message.is_binary() || message.is_text()) && ws.send(message).await.is_err()
                    {
                        break;
                    }
                }
                let _ = ws.close(None).await;
            } else {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                // The client's half-close arrived; this side still writes, then closes.
                let _ = stream.write_all(b"bye").await;
                let _ = stream.shutdown().await;
            }
        }
        code @ ("400" | "403" | "500") => {
            let (reason, message) = match code {
                "400" => ("BadRequest", "Upgrade request required"),
                "403" => ("Forbidden", "forbidden: cannot create pods/exec"),
                _ => ("InternalError", "the kubelet could not be reached"),
            };
            let body = format!(
                r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"{message}","reason":"{reason}","code":{code}}}"#
            );
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => record
                        .lock()
                        .unwrap()
                        .after_refusal
                        .extend_from_slice(&buf[..n]),
                }
            }
        }
        _ => {
            let _ = stream
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    }
}
