//! A tiny HTTPS (or HTTP) server for fixtures, and a client that trusts the test CA.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// The HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` of every server here (hyper's default; below
/// kube-apiserver's 250).
pub const MAX_CONCURRENT_STREAMS: u32 = 200;

/// Which accepted connection (numbered from 0 per server) a request came on: a request extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub usize);

/// Serves `handler` on 127.0.0.1 (TLS when `tls` is given) until the runtime ends.
pub async fn serve(tls: Option<rustls::ServerConfig>, handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
    let accepted = AtomicUsize::new(0);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let connection = ConnectionId(accepted.fetch_add(1, Ordering::Relaxed));
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(connection);
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(request).await) }
                });
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http2()
                    .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    address
}

/// An HTTPS client trusting `ca`; `http2` selects the protocol offered by ALPN.
pub fn client(
    ca: &super::pki::TestCa,
    http2: bool,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Body> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(ca.client_config(&[]))
        .https_only();
    let connector = if http2 {
        connector.enable_http2().build()
    } else {
        connector.enable_http1().build()
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(http2);
    builder.build(connector)
}

/// Collects a response body to bytes.
pub async fn body_bytes(response: Response<Incoming>) -> (http::response::Parts, Bytes) {
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}
