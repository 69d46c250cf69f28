//! A test OIDC issuer over TLS: discovery, a JWKS that tests can rotate, a fetch counter, and
//! token minting.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::http::{full, serve, Handler};
use super::jwt::{jwks, TestKey};
use super::pki::{server_config, TestCa};

pub use super::jwt::Alg;

pub struct TestIssuer {
    pub url: String,
    pub address: SocketAddr,
    jwks: Arc<Mutex<Vec<u8>>>,
    jwks_fetches: Arc<AtomicUsize>,
    pub key: TestKey,
    pub kid: String,
}

impl TestIssuer {
    /// Starts an issuer at `https://127.0.0.1:<port>` serving one fresh RS256 key.
    pub async fn start(ca: &TestCa) -> Self {
        Self::start_with(ca, Alg::RS256).await
    }

    pub async fn start_with(ca: &TestCa, alg: Alg) -> Self {
        let leaf = ca.leaf("issuer");
        let jwks_doc = Arc::new(Mutex::new(Vec::new()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let url_cell: Arc<Mutex<String>> = Arc::default();
        let handler: Handler = {
            let jwks_doc = jwks_doc.clone();
            let fetches = fetches.clone();
            let url_cell = url_cell.clone();
            Arc::new(move |request| {
                let jwks_doc = jwks_doc.clone();
                let fetches = fetches.clone();
                let url = url_cell.lock().unwrap().clone();
                Box::pin(async move {
                    match request.uri().path() {
                        "/.well-known/openid-configuration" => http::Response::new(full(
                            json!({"issuer": url, "jwks_uri": format!("{url}/keys")}).to_string(),
                        )),
                        "/keys" => {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            http::Response::new(full(jwks_doc.lock().unwrap().clone()))
                        }
                        _ => {
                            let mut r = http::Response::new(full("not found"));
                            *r.status_mut() = http::StatusCode::NOT_FOUND;
                            r
                        }
                    }
                })
            })
        };
        let address = serve(Some(server_config(&leaf, &[b"http/1.1"])), handler).await;
        let url = format!("https://127.0.0.1:{}", address.port());
        *url_cell.lock().unwrap() = url.clone();
        let key = TestKey::generate(alg);
        let kid = "key-1".to_string();
        *jwks_doc.lock().unwrap() = jwks(&[key.public_jwk(Some(&kid))]);
        Self {
            url,
            address,
            jwks: jwks_doc,
            jwks_fetches: fetches,
            key,
            kid,
        }
    }

    /// Replaces the served key set.
    pub fn set_jwks(&self, keys: &[Value]) {
        *self.jwks.lock().unwrap() = jwks(keys);
    }

    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Standard claims for `aud`, valid for an hour, merged with `extra`.
    pub fn claims(&self, aud: &str, extra: Value) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims =
            json!({"iss": self.url, "aud": aud, "exp": now + 3600, "iat": now, "sub": "subject-1"});
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                claims[k] = v;
            }
        }
        claims
    }

    /// A token signed with the issuer's key.
    pub fn token(&self, claims: &Value) -> String {
        self.key.token(self.key_alg(), Some(&self.kid), claims)
    }

    pub fn key_alg(&self) -> Alg {
        self.key.default_alg()
    }
}
