//! A fake API server over TLS that records every request it receives, with routes for the
//! behaviours the proxy must preserve (streams, redirects, slowness, upgrades), and
//! programmable SubjectAccessReview / TokenReview answers (`super::reviews`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::http::{empty, full, serve, Body, ConnectionId, Handler};
use super::pki::{server_config, TestCa};
use super::reviews::{Reviews, SUBJECT_ACCESS_REVIEWS, TOKEN_REVIEWS};

/// One request as the fake API server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The connection it came on.
    pub connection: ConnectionId,
}

impl Recorded {
    /// Every value of header `name`, in order.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

pub struct FakeApiServer {
    pub url: String,
    pub address: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    /// Sends the next chunk of the `/watch` stream.
    watch_tx: Arc<Mutex<Option<mpsc::Sender<Bytes>>>>,
    /// Answers of the review APIs.
    pub reviews: Arc<Reviews>,
    /// `/quiet-watch` responses whose stream is still open.
    quiet_watches: Arc<AtomicUsize>,
    /// Bytes handed to hyper by every `/flood` response so far.
    flooded: Arc<AtomicU64>,
}

impl FakeApiServer {
    /// A fake API server offering HTTP/2 and HTTP/1.1.
    pub async fn start(ca: &TestCa) -> Self {
        Self::start_with_alpn(ca, &[b"h2", b"http/1.1"]).await
    }

    /// A fake API server that speaks HTTP/1.1 only.
    pub async fn start_http1_only(ca: &TestCa) -> Self {
        Self::start_with_alpn(ca, &[b"http/1.1"]).await
    }

    async fn start_with_alpn(ca: &TestCa, alpn: &[&[u8]]) -> Self {
        let leaf = ca.leaf("apiserver");
        let recorded: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let watch_tx: Arc<Mutex<Option<mpsc::Sender<Bytes>>>> = Arc::default();
        let reviews: Arc<Reviews> = Arc::default();
        let quiet_watches: Arc<AtomicUsize> = Arc::default();
        let flooded: Arc<AtomicU64> = Arc::default();
        let counters = Counters {
            quiet_watches: quiet_watches.clone(),
            flooded: flooded.clone(),
        };
        let handler: Handler = {
            let recorded = recorded.clone();
            let watch_tx = watch_tx.clone();
            let reviews = reviews.clone();
            Arc::new(move |mut request| {
                let recorded = recorded.clone();
                let watch_tx = watch_tx.clone();
                let reviews = reviews.clone();
                let counters = counters.clone();
                Box::pin(async move {
                    let path = request.uri().path().to_string();
                    let connection = *request
                        .extensions()
                        .get::<ConnectionId>()
                        .expect("serve numbers connections");
                    // The proxy's readiness check, answered as kube-apiserver does and kept out
                    // of the record of what the proxy forwarded.
                    if path == "/readyz" {
                        return Response::new(full("ok"));
                    }
                    let upgrade = hyper::upgrade::on(&mut request);
                    let (parts, body) = request.into_parts();
                    let is_upgrade = path.starts_with("/upgrade");
                    let body = if is_upgrade {
                        Bytes::new()
                    } else {
                        body.collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default()
                    };
                    recorded.lock().unwrap().push(Recorded {
                        method: parts.method.clone(),
                        uri: parts.uri.to_string(),
                        version: parts.version,
                        headers: parts.headers.clone(),
                        body: body.clone(),
                        connection,
                    });
                    if let Some(answer) = reviews.respond(&path, &body).await {
                        return answer;
                    }
                    route(&path, parts, body, upgrade, watch_tx, counters).await
                })
            })
        };
        let address = serve(Some(server_config(&leaf, alpn)), handler).await;
        Self {
            url: format!("https://127.0.0.1:{}", address.port()),
            address,
            recorded,
            watch_tx,
            reviews,
            quiet_watches,
            flooded,
        }
    }

    /// Bytes the `/flood` responses have handed to hyper so far.
    pub fn flooded_bytes(&self) -> u64 {
        self.flooded.load(Ordering::SeqCst)
    }

    /// How many `/quiet-watch` streams are open (their response body not yet dropped).
    pub fn open_quiet_watches(&self) -> usize {
        self.quiet_watches.load(Ordering::SeqCst)
    }

    /// The requests that were not reviews (what the proxy forwarded).
    pub fn forwarded(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !is_review(&r.uri))
            .collect()
    }

    /// The review requests (SubjectAccessReviews and TokenReviews), in order.
    pub fn reviews_seen(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| is_review(&r.uri))
            .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests()
            .pop()
            .expect("the fake API server received no request")
    }

    /// Sends one chunk on the open `/watch` stream.
    pub async fn send_watch_event(&self, event: &str) {
        let tx = self
            .watch_tx
            .lock()
            .unwrap()
            .clone()
            .expect("no watch open");
        tx.send(Bytes::from(event.to_string())).await.unwrap();
    }

    /// Ends the open `/watch` stream.
    pub fn end_watch(&self) {
        self.watch_tx.lock().unwrap().take();
    }
}

fn is_review(uri: &str) -> bool {
    let path = uri
        .parse::<http::Uri>()
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    path == SUBJECT_ACCESS_REVIEWS || path == TOKEN_REVIEWS
}

fn status(code: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = code;
    response
}

async fn route(
    path: &str,
    parts: http::request::Parts,
    body: Bytes,
    upgrade: hyper::upgrade::OnUpgrade,
    watch_tx: Arc<Mutex<Option<mpsc::Sender<Bytes>>>>,
    counters: Counters,
) -> Response<Body> {
    match path {
        "/watch" => {
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            *watch_tx.lock().unwrap() = Some(tx);
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|chunk| (Ok::<_, super::http::BoxError>(Frame::data(chunk)), rx))
            });
            let mut response = Response::new(StreamBody::new(stream).boxed());
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            response
        }
        "/echo-body" => Response::new(full(body)),
        // A watch that stays open and silent until the client leaves.
        "/quiet-watch" => {
            // Silence, counted open until hyper drops the stream.
            let open = OpenCount::enter(counters.quiet_watches);
            let stream = futures_util::stream::unfold(open, |open| async move {
                std::future::pending::<()>().await;
                Some((
                    Ok::<_, super::http::BoxError>(Frame::data(Bytes::new())),
                    open,
                ))
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        // A watch writing 64 KiB chunks for as long as the client reads them.
        "/flood" => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::repeat_with(move || {
                counters
                    .flooded
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                Ok::<_, super::http::BoxError>(Frame::data(chunk.clone()))
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        "/big" => {
            // 64 MiB in 64 KiB chunks, generated on the fly.
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::iter(
                (0..1024).map(move |_| Ok::<_, super::http::BoxError>(Frame::data(chunk.clone()))),
            );
            Response::new(StreamBody::new(stream).boxed())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            status(StatusCode::OK, "late")
        }
        "/redirect" => {
            let mut response = status(StatusCode::FOUND, "");
            response
                .headers_mut()
                .insert("location", "https://127.0.0.1:1/elsewhere".parse().unwrap());
            response
        }
        "/forbidden" => {
            let mut response = status(
                StatusCode::FORBIDDEN,
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods is forbidden","reason":"Forbidden","code":403}"#,
            );
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            response
        }
        "/upgrade-echo" if parts.headers.get("upgrade").is_some() => {
            tokio::spawn(async move {
                if let Ok(io) = upgrade.await {
                    let mut io = TokioIo::new(io);
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = io.shutdown().await;
                }
            });
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let upgrade_to = parts.headers.get("upgrade").cloned().unwrap();
            response
                .headers_mut()
                .insert("connection", "Upgrade".parse().unwrap());
            response.headers_mut().insert("upgrade", upgrade_to);
            response.headers_mut().insert(
                "x-stream-protocol-version",
                "v4.channel.k8s.io".parse().unwrap(),
            );
            response
        }
        "/upgrade-refused" => status(StatusCode::BAD_REQUEST, "upgrade refused"),
        _ => {
            let mut response = status(
                StatusCode::OK,
                &serde_json::json!({"kind": "ConfigMap", "path": path}).to_string(),
            );
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            response
        }
    }
}

/// What the routes count for the tests to observe.
#[derive(Clone)]
struct Counters {
    quiet_watches: Arc<AtomicUsize>,
    flooded: Arc<AtomicU64>,
}

/// Counts itself in while it lives.
struct OpenCount(Arc<AtomicUsize>);

impl OpenCount {
    fn enter(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
