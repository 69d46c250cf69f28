//! A CI/CD OIDC issuer served by the test harness, next to Dex: HTTPS on 127.0.0.1 with its own
//! CA, OIDC discovery and a JWKS, and ID tokens shaped like the real ones — GitHub Actions'
//! (`sub` `repo:acme/shop:ref:refs/heads/main`, `repository`, `repository_owner`, `ref`, `jti`,
//! …, research note cicd.md §1.3) or GitLab CI's (`project_path`, `ref_protected`, …, §2).
//! Tokens live five minutes, as GitHub's do.
//!
//! It also plays a GitHub Actions runner's ID-token endpoint (what `ACTIONS_ID_TOKEN_REQUEST_URL`
//! names): `GET <job URL>&audience=<aud>` with `Authorization: bearer <request token>` answers
//! `{"count": …, "value": "<JWT>"}` with a fresh token of that job's identity and lifetime
//! for each request, and counts the requests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

use super::block_on;

/// Token minting shared with the other test suites.
#[allow(unreachable_pub, dead_code)]
mod signer {
    pub use kube_oidc_proxy::authn::jws::Algorithm;
    include!("../support/jwt_signer.rs");
}

use signer::{Algorithm, TestKey};

/// Key id of the one signing key.
const KID: &str = "ci-key-1";

/// The issuer; its server runs on the harness runtime until the test process ends.
pub(crate) struct CiIssuer {
    /// `https://127.0.0.1:<port>`: the `iss` of its tokens and the `issuer` of its discovery.
    pub(crate) url: String,
    /// PEM of the CA that signed its serving certificate (`issuer.certificateAuthority`).
    pub(crate) ca_pem: String,
    state: Arc<State>,
}

/// What the server and the test share.
struct State {
    url: String,
    key: TestKey,
    /// Runner jobs by their path segment.
    jobs: Mutex<HashMap<String, Job>>,
}

/// One GitHub Actions job as the runner's token endpoint knows it.
struct Job {
    request_token: String,
    claims: Value,
    lifetime: Duration,
    requests: Arc<AtomicUsize>,
}

/// A job's token endpoint, as a job's environment would name it.
pub(crate) struct RunnerJob {
    /// `ACTIONS_ID_TOKEN_REQUEST_URL` (already carrying a query string, as GitHub's does).
    pub(crate) request_url: String,
    /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    pub(crate) request_token: String,
    requests: Arc<AtomicUsize>,
}

impl RunnerJob {
    /// ID tokens issued to this job so far.
    pub(crate) fn tokens_issued(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl CiIssuer {
    /// Starts serving discovery and keys on a free port.
    pub(crate) fn start() -> CiIssuer {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ci-issuer-ca");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let ca_pem = ca_cert.pem();
        let ca = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("IP")));
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca)
            .expect("leaf certificate");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(leaf.pem().as_bytes()).expect("leaf PEM")],
            PrivateKeyDer::from_pem_slice(leaf_key.serialize_pem().as_bytes()).expect("key PEM"),
        )
        .expect("serving certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let key = TestKey::generate(Algorithm::RS256);
        let listener = block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().expect("address").port()
        );
        let discovery = Bytes::from(
            json!({
                "issuer": url,
                "jwks_uri": format!("{url}/.well-known/jwks"),
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            })
            .to_string(),
        );
        let keys = Bytes::from(signer::jwks(&[key.public_jwk(Some(KID))]));
        let state = Arc::new(State {
            url: url.clone(),
            key,
            jobs: Mutex::new(HashMap::new()),
        });
        let shared = state.clone();
        block_on(async move {
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, discovery, keys, state) = (
                        acceptor.clone(),
                        discovery.clone(),
                        keys.clone(),
                        shared.clone(),
                    );
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = service_fn(move |request: Request<Incoming>| {
                            let (status, body) = match request.uri().path() {
                                "/.well-known/openid-configuration" => {
                                    (StatusCode::OK, discovery.clone())
                                }
                                "/.well-known/jwks" => (StatusCode::OK, keys.clone()),
                                path if path.starts_with(RUNNER_PATH) => {
                                    state.runner_token(&request)
                                }
                                _ => (StatusCode::NOT_FOUND, Bytes::from("not found")),
                            };
                            async move {
                                let mut response = Response::new(Full::new(body));
                                *response.status_mut() = status;
                                Ok::<_, Infallible>(response)
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        CiIssuer { url, ca_pem, state }
    }

    /// A token with the standard claims for `audience` (five minutes, as GitHub's) and
    /// `claims` merged in.
    pub(crate) fn token(&self, audience: &str, claims: Value) -> String {
        self.state
            .token(audience, &claims, Duration::from_secs(300))
    }

    /// A runner job that mints tokens with `claims` living `lifetime` each (see the module doc).
    pub(crate) fn runner_job(&self, claims: Value, lifetime: Duration) -> RunnerJob {
        let id = format!(
            "{:x}-{}",
            std::process::id(),
            JOB_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let request_token = format!("request-token-{id}");
        let requests = Arc::new(AtomicUsize::new(0));
        self.state.jobs.lock().expect("jobs").insert(
            id.clone(),
            Job {
                request_token: request_token.clone(),
                claims,
                lifetime,
                requests: requests.clone(),
            },
        );
        RunnerJob {
            request_url: format!("{}{RUNNER_PATH}{id}?api-version=2.0", self.url),
            request_token,
            requests,
        }
    }

    /// A GitHub Actions ID token for a push to `git_ref` of `owner/repo`.
    pub(crate) fn github_token(
        &self,
        audience: &str,
        owner: &str,
        repo: &str,
        git_ref: &str,
    ) -> String {
        self.token(audience, github_claims(owner, repo, "7654321", git_ref))
    }

    /// A GitLab CI ID token for a job on `git_ref` of `project_path`.
    pub(crate) fn gitlab_token(
        &self,
        audience: &str,
        project_path: &str,
        git_ref: &str,
        ref_protected: bool,
    ) -> String {
        self.token(
            audience,
            gitlab_claims(project_path, git_ref, ref_protected),
        )
    }
}

/// Where the runner's token endpoint lives; a job id follows.
const RUNNER_PATH: &str = "/_apis/pipelines/idtoken/";

static JOB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// GitHub Actions claims for a push to `git_ref` of `owner/repo` (repository ID `repo_id`).
pub(crate) fn github_claims(owner: &str, repo: &str, repo_id: &str, git_ref: &str) -> Value {
    json!({
        "sub": format!("repo:{owner}/{repo}:ref:{git_ref}"),
        "repository": format!("{owner}/{repo}"),
        "repository_id": repo_id,
        "repository_owner": owner,
        "repository_owner_id": if owner == "acme" { "1234567" } else { "7777777" },
        "repository_visibility": "private",
        "ref": git_ref,
        "ref_type": "branch",
        "ref_protected": "true",
        "sha": "bcdb9add7aa4d7c4f3b1a4b5d3f3c3b2a1a0f9e8",
        "workflow": "deploy",
        "workflow_ref": format!("{owner}/{repo}/.github/workflows/deploy.yml@{git_ref}"),
        "job_workflow_ref": format!("{owner}/{repo}/.github/workflows/deploy.yml@{git_ref}"),
        "event_name": "push",
        "actor": "octocat",
        "actor_id": "555",
        "run_id": "33964329992",
        "run_number": "7",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
    })
}

impl State {
    /// A signed token for `audience` with `claims`, living `lifetime` from now.
    fn token(&self, audience: &str, claims: &Value, lifetime: Duration) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
        let secs = now.as_secs();
        let mut payload = json!({
            "iss": self.url,
            "aud": audience,
            "iat": secs,
            "nbf": secs - 5,
            "exp": secs + lifetime.as_secs(),
            "jti": format!("{:x}-{}", std::process::id(), now.as_nanos()),
        });
        for (name, value) in claims.as_object().expect("claims object") {
            payload[name] = value.clone();
        }
        self.key.token(Algorithm::RS256, Some(KID), &payload)
    }

    /// The runner endpoint: the job's bearer must match; `audience` defaults to the owner's
    /// URL, as GitHub's does.
    fn runner_token(&self, request: &Request<Incoming>) -> (StatusCode, Bytes) {
        let refuse = |status, message: &str| {
            (
                status,
                Bytes::from(json!({ "message": message }).to_string()),
            )
        };
        let id = request.uri().path()[RUNNER_PATH.len()..].to_owned();
        let jobs = self.jobs.lock().expect("jobs");
        let Some(job) = jobs.get(&id) else {
            return refuse(StatusCode::NOT_FOUND, "no such job");
        };
        let bearer = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.to_owned());
        if bearer.as_deref() != Some(job.request_token.as_str()) {
            return refuse(StatusCode::UNAUTHORIZED, "bad request token");
        }
        let audience = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "audience")
            .map(|(_, value)| {
                percent_encoding::percent_decode_str(value)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_else(|| {
                format!(
                    "https://github.com/{}",
                    job.claims["repository_owner"].as_str().unwrap_or_default()
                )
            });
        let count = job.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let token = self.token(&audience, &job.claims, job.lifetime);
        (
            StatusCode::OK,
            Bytes::from(json!({ "count": count, "value": token }).to_string()),
        )
    }
}

/// GitLab CI claims for a job on `git_ref` of `project_path`.
pub(crate) fn gitlab_claims(project_path: &str, git_ref: &str, ref_protected: bool) -> Value {
    let namespace = project_path.split('/').next().unwrap_or_default();
    json!({
        "sub": format!("project_path:{project_path}:ref_type:branch:ref:{git_ref}"),
        "namespace_id": "72",
        "namespace_path": namespace,
        "project_id": "20",
        "project_path": project_path,
        "user_id": "1",
        "user_login": "sample-user",
        "pipeline_id": "574",
        "pipeline_source": "push",
        "job_id": "302",
        "ref": git_ref,
        "ref_type": "branch",
        "ref_path": format!("refs/heads/{git_ref}"),
        "ref_protected": if ref_protected { "true" } else { "false" },
        "runner_id": 1,
        "runner_environment": "self-hosted",
        "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
    })
}
