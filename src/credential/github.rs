//! GitHub Actions (and Forgejo Actions, same contract): a new ID token from the runner's token
//! endpoint for each call. The job gets `ACTIONS_ID_TOKEN_REQUEST_URL` and
//! `ACTIONS_ID_TOKEN_REQUEST_TOKEN` only with `permissions: id-token: write`; the request is
//! `GET $URL&audience=<url-encoded>` with `Authorization: bearer $TOKEN`, and the answer is
//! JSON with the JWT in `value` (GitHub's OIDC reference, "Methods for requesting the OIDC
//! token"; the Actions toolkit's `getIDToken`). The ID token lives five minutes and cannot be
//! extended: minting again is the only refresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use secrecy::{ExposeSecret as _, SecretString};

use super::token::Token;
use crate::authn::issuer::error_chain;

pub(crate) const REQUEST_URL: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub(crate) const REQUEST_TOKEN: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// JavaScript's `encodeURIComponent`, as the toolkit encodes the audience.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Bound on one request to the token endpoint.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts for transport errors and 5xx answers (the toolkit retries too).
const ATTEMPTS: u32 = 3;
/// The largest answer read; a JWT is a few kB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How much of an error answer's body is shown.
const MAX_ERROR_TEXT: usize = 300;

/// Why no token was obtained. Messages never contain the request token or an ID token.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum GithubError {
    /// Not a GitHub Actions job at all.
    #[error(
        "{REQUEST_URL} is not set: this is not a GitHub Actions job (or a Forgejo Actions job); \
         use another provider (see kube-oidc-proxy credential --help)"
    )]
    NotActions,
    /// A pull request from a fork: GitHub never lets those mint ID tokens.
    #[error(
        "{REQUEST_URL} is not set: this run is for a pull request from a fork, and GitHub gives \
         fork pull requests at most `id-token: read`, so they cannot get an ID token. Deploy \
         from the base repository's own events (push, workflow_dispatch, or a workflow_run \
         after review) instead"
    )]
    ForkPullRequest,
    /// The job lacks `permissions: id-token: write`.
    #[error(
        "{REQUEST_URL} and {REQUEST_TOKEN} are not set: the job needs `permissions: id-token: \
         write` (in the workflow or the job; setting any permission sets the others to none, \
         so list `contents: read` too)"
    )]
    MissingPermission,
    /// The runner's URL is not usable.
    #[error("{REQUEST_URL} is not a valid URL: {0}")]
    BadUrl(String),
    /// No answer (connection, TLS, timeout) after every attempt.
    #[error("requesting an ID token from the runner's token endpoint failed: {0}")]
    Request(String),
    /// The endpoint refused.
    #[error("the runner's token endpoint answered {status}: {body}")]
    Status { status: u16, body: String },
    /// The answer is not `{"value": "<JWT>"}`.
    #[error("the runner's token endpoint answered without a usable token: {0}")]
    Response(String),
}

/// The runner's token endpoint, as the job's environment names it.
pub(crate) struct Runner {
    url: String,
    request_token: SecretString,
}

impl Runner {
    /// Reads the endpoint from `env`, or says why the job has none.
    pub(crate) fn from_env(env: &HashMap<String, String>) -> Result<Runner, GithubError> {
        let get = |name| env.get(name).filter(|v| !v.is_empty());
        match (get(REQUEST_URL), get(REQUEST_TOKEN)) {
            (Some(url), Some(token)) => Ok(Runner {
                url: url.clone(),
                request_token: SecretString::from(token.clone()),
            }),
            _ if env.get("GITHUB_ACTIONS").map(String::as_str) != Some("true") => {
                Err(GithubError::NotActions)
            }
            _ if is_fork_pull_request(env) => Err(GithubError::ForkPullRequest),
            _ => Err(GithubError::MissingPermission),
        }
    }

    /// What tells this job's tokens apart from another job's in a shared cache (the request
    /// URL names the run and job; the request token differs per job).
    pub(crate) fn cache_key(&self) -> [&str; 2] {
        [&self.url, self.request_token.expose_secret()]
    }

    /// Mints an ID token for `audience`.
    pub(crate) async fn fetch(&self, audience: &str) -> Result<Token, GithubError> {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{separator}audience={}",
            self.url,
            utf8_percent_encode(audience, URI_COMPONENT)
        );
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| GithubError::BadUrl(e.to_string()))?;
        let client = client();
        let mut last = GithubError::Request("no attempt made".into());
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            match self.attempt(&client, uri.clone()).await {
                Ok(body) => return self.token_from(&body),
                Err(e @ GithubError::Request(_)) => last = e,
                Err(e @ GithubError::Status { status, .. }) if status >= 500 => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    async fn attempt(&self, client: &HttpsClient, uri: http::Uri) -> Result<Bytes, GithubError> {
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json; api-version=2.0")
            .header(
                http::header::AUTHORIZATION,
                format!("bearer {}", self.request_token.expose_secret()),
            )
            .header(http::header::USER_AGENT, "kube-oidc-proxy-credential")
            .body(Empty::<Bytes>::new())
            .map_err(|e| GithubError::BadUrl(e.to_string()))?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| GithubError::Request(self.redact(&error_chain(&e))))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| GithubError::Request(self.redact(&e.to_string())))?
                .to_bytes();
            if status != http::StatusCode::OK {
                return Err(GithubError::Status {
                    status: status.as_u16(),
                    body: self.redact(&String::from_utf8_lossy(&body)),
                });
            }
            Ok(body)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| GithubError::Request(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }

    fn token_from(&self, body: &[u8]) -> Result<Token, GithubError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            value: Option<String>,
        }
        let answer: Answer = serde_json::from_slice(body)
            .map_err(|_| GithubError::Response("not a JSON object".into()))?;
        let value = answer
            .value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| GithubError::Response("no \"value\"".into()))?;
        Token::from_jwt(value).map_err(|e| GithubError::Response(e.to_string()))
    }

    /// Error text as shown: the request token cut out, control characters replaced, bounded.
    fn redact(&self, text: &str) -> String {
        let text = text.replace(self.request_token.expose_secret(), "[redacted]");
        let mut shown: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_ERROR_TEXT)
            .collect();
        if text.chars().count() > MAX_ERROR_TEXT {
            shown.push('…');
        }
        shown
    }
}

/// Whether the job runs for a pull request whose head is a fork (`GITHUB_EVENT_PATH` holds the
/// webhook payload; `pull_request_target` runs in the base repository and may mint).
fn is_fork_pull_request(env: &HashMap<String, String>) -> bool {
    let pull_request_events = [
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
    ];
    let Some(event) = env.get("GITHUB_EVENT_NAME") else {
        return false;
    };
    if !pull_request_events.contains(&event.as_str()) {
        return false;
    }
    let Some(payload) = env
        .get("GITHUB_EVENT_PATH")
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    else {
        return false;
    };
    let head = &payload["pull_request"]["head"]["repo"];
    head["fork"].as_bool() == Some(true)
        || head["full_name"]
            .as_str()
            .zip(payload["repository"]["full_name"].as_str())
            .is_some_and(|(head, base)| head != base)
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// A client trusting the system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured, as by
/// rustls-native-certs), for the runner's HTTPS endpoint (plain HTTP for self-hosted Forgejo).
fn client() -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    let (_added, _ignored) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

#[cfg(test)]
mod tests {
    use super::super::token::tests::jwt;
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    const REQUEST_SECRET: &str = "request-bearer-s3cret";

    /// A fake token endpoint on loopback answering `status` with `body`; records each request's
    /// path and query and Authorization header.
    struct Endpoint {
        url: String,
        seen: Arc<Mutex<Vec<(String, String)>>>,
        count: Arc<AtomicUsize>,
    }

    async fn endpoint(status: u16, body: String) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/_apis/idtoken?api-version=2.0",
            listener.local_addr().unwrap()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (seen2, count2) = (seen.clone(), count.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (seen, count, body) = (seen2.clone(), count2.clone(), body.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        seen.lock().unwrap().push((
                            req.uri().to_string(),
                            req.headers()[http::header::AUTHORIZATION]
                                .to_str()
                                .unwrap()
                                .to_owned(),
                        ));
                        let mut response =
                            http::Response::new(Full::new(Bytes::from(body.clone())));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Endpoint { url, seen, count }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn runner(url: &str) -> Runner {
        Runner::from_env(&env(&[(REQUEST_URL, url), (REQUEST_TOKEN, REQUEST_SECRET)])).unwrap()
    }

    #[tokio::test]
    async fn requests_a_token_for_the_audience_with_the_bearer() {
        let id_token = jwt(serde_json::json!({"exp": 2000, "iat": 1700}));
        let endpoint = endpoint(200, format!(r#"{{"count":1,"value":"{id_token}"}}"#)).await;
        let token = runner(&endpoint.url)
            .fetch("https://kube.example.com/a b&c")
            .await
            .unwrap();
        assert_eq!(token.secret(), id_token);
        assert_eq!(token.expires, Some(super::super::token::tests::at(2000)));
        let seen = endpoint.seen.lock().unwrap();
        assert_eq!(
            *seen,
            [(
                "/_apis/idtoken?api-version=2.0&audience=https%3A%2F%2Fkube.example.com%2Fa%20b%26c"
                    .to_owned(),
                format!("bearer {REQUEST_SECRET}")
            )]
        );
    }

    #[tokio::test]
    async fn a_refusal_names_the_status_and_github_s_message_without_secrets() {
        let endpoint = endpoint(
            403,
            format!(r#"{{"message":"Unable to get ID token; echo {REQUEST_SECRET}"}}"#),
        )
        .await;
        let err = runner(&endpoint.url).fetch("aud").await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, GithubError::Status { status: 403, .. }),
            "{err:?}"
        );
        assert!(text.contains("Unable to get ID token"), "{text}");
        assert!(!text.contains(REQUEST_SECRET), "{text}");
        // A 4xx is not retried.
        assert_eq!(endpoint.count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_without_a_jwt_is_an_error() {
        for body in ["{}", "[]", r#"{"value":"opaque"}"#, "<html>"] {
            let endpoint = endpoint(200, body.to_owned()).await;
            let err = runner(&endpoint.url).fetch("aud").await.unwrap_err();
            assert!(matches!(err, GithubError::Response(_)), "{body}: {err:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_are_retried() {
        let endpoint = endpoint(503, "busy".into()).await;
        let err = runner(&endpoint.url).fetch("aud").await.unwrap_err();
        assert!(
            matches!(err, GithubError::Status { status: 503, .. }),
            "{err:?}"
        );
        assert_eq!(endpoint.count.load(Ordering::SeqCst), ATTEMPTS as usize);
    }

    #[test]
    fn explains_why_the_job_cannot_mint() {
        let err = |pairs: &[(&str, &str)]| Runner::from_env(&env(pairs)).err().unwrap();
        assert_eq!(err(&[]), GithubError::NotActions);
        assert_eq!(
            err(&[("GITHUB_ACTIONS", "true"), ("GITHUB_EVENT_NAME", "push")]),
            GithubError::MissingPermission
        );
        assert!(err(&[("GITHUB_ACTIONS", "true")])
            .to_string()
            .contains("permissions: id-token: write"));

        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event.json");
        let payload = |fork: bool, head: &str| {
            serde_json::json!({
                "pull_request": {"head": {"repo": {"fork": fork, "full_name": head}}},
                "repository": {"full_name": "acme/shop"},
            })
            .to_string()
        };
        let pull_request = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_EVENT_PATH", event.to_str().unwrap()),
        ];
        std::fs::write(&event, payload(true, "mallory/shop")).unwrap();
        assert_eq!(err(&pull_request), GithubError::ForkPullRequest);
        std::fs::write(&event, payload(false, "acme/shop")).unwrap();
        assert_eq!(err(&pull_request), GithubError::MissingPermission);
        // pull_request_target runs in the base repository: a missing permission, not a fork.
        std::fs::write(&event, payload(true, "mallory/shop")).unwrap();
        let mut target = pull_request;
        target[1] = ("GITHUB_EVENT_NAME", "pull_request_target");
        assert_eq!(err(&target), GithubError::MissingPermission);
    }
}
