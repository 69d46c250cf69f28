//! The benchmark's fast upstream and OIDC issuer, in one TLS server (HTTP/1.1 and HTTP/2).
//!
//! `cargo run --release --example bench_upstream -- OUT_DIR` writes into OUT_DIR:
//! `ca.crt` (the CA of every certificate here), `serving.crt`/`serving.key` (for 127.0.0.1, used
//! by this server and by the proxy under test), `token` (one ID token) and `tokens` (10,000 tokens
//! for distinct users, one per line), then serves on 127.0.0.1 and prints `PORT <n>` on stdout.
//!
//! Routes: `/.well-known/openid-configuration` and `/keys` (the issuer);
//! `/api/v1/namespaces/default` (a small JSON object, like the API server's); `/watch` and any
//! other path with `watch=true` in its query (headers, then silence until the client leaves);
//! `/big?bytes=N` (N bytes streamed in 64 KiB chunks).

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support/jwt.rs"]
mod jwt;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use serde_json::json;

type Body = BoxBody<Bytes, Infallible>;

const NAMESPACE: &[u8] = br#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"default","uid":"6c6f6e67-2d75-6964-2d66-6f722d62656e","resourceVersion":"42","creationTimestamp":"2026-01-01T00:00:00Z","labels":{"kubernetes.io/metadata.name":"default"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}"#;

fn silent_watch() -> Response<Body> {
    let stream = futures_util::stream::pending::<Result<Frame<Bytes>, Infallible>>();
    Response::new(StreamBody::new(stream).boxed())
}

fn respond(request: &Request<Incoming>, discovery: &Bytes, keys: &Bytes) -> Response<Body> {
    let full = |b: Bytes| Full::new(b).boxed();
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "watch=true"));
    match request.uri().path() {
        _ if watch => silent_watch(),
        "/.well-known/openid-configuration" => Response::new(full(discovery.clone())),
        "/keys" => Response::new(full(keys.clone())),
        "/api/v1/namespaces/default" => {
            let mut r = Response::new(full(Bytes::from_static(NAMESPACE)));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        "/watch" => silent_watch(),
        "/big" => {
            let total: u64 = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1 << 20);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(total, move |left| {
                let chunk = chunk.clone();
                async move {
                    (left > 0).then(|| {
                        let n = left.min(chunk.len() as u64);
                        (Ok(Frame::data(chunk.slice(..n as usize))), left - n)
                    })
                }
            });
            Response::new(StreamBody::new(stream).boxed())
        }
        _ => {
            let mut r = Response::new(full(Bytes::from_static(b"not found")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

#[tokio::main]
async fn main() {
    let out = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: bench_upstream OUT_DIR"),
    );
    std::fs::create_dir_all(&out).unwrap();

    // PKI: one CA, one serving certificate for 127.0.0.1.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench-ca");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(out.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(out.join("serving.crt"), cert.pem()).unwrap();
    std::fs::write(out.join("serving.key"), key.serialize_pem()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let issuer = format!("https://127.0.0.1:{port}");

    // The issuer's key and tokens: one user, and 10,000 distinct users.
    let signer = jwt::TestKey::generate(jwt::Algorithm::RS256);
    let keys = Bytes::from(jwt::jwks(&[signer.public_jwk(Some("bench"))]));
    let discovery =
        Bytes::from(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys")}).to_string());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 24 * 3600;
    let token = |user: &str| {
        signer.token(
            jwt::Algorithm::RS256,
            Some("bench"),
            &json!({"iss": issuer, "aud": "kube", "sub": user, "exp": exp,
                    "groups": ["developers", "bench"]}),
        )
    };
    std::fs::write(out.join("token"), token("bench-user")).unwrap();
    let many: Vec<String> = (0..10_000).map(|i| token(&format!("user-{i}"))).collect();
    std::fs::write(out.join("tokens"), many.join("\n") + "\n").unwrap();

    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert.pem().as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let private =
        rustls_pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, private)
    .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    println!("PORT {port}");

    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let (discovery, keys) = (discovery.clone(), keys.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&request, &discovery, &keys);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
