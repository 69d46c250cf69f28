//! A CI/CD OIDC issuer served by the test harness, next to Dex: HTTPS on 127.0.0.1 with its own
//! CA, OIDC discovery and a JWKS, and ID tokens shaped like the real ones — GitHub Actions'
//! (`sub` `repo:acme/shop:ref:refs/heads/main`, `repository`, `repository_owner`, `ref`, `jti`,
//! …, research note cicd.md §1.3) or GitLab CI's (`project_path`, `ref_protected`, …, §2).
//! Tokens live five minutes, as GitHub's do.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
    key: TestKey,
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
        block_on(async move {
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, discovery, keys) =
                        (acceptor.clone(), discovery.clone(), keys.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = service_fn(move |request: Request<Incoming>| {
                            let body = match request.uri().path() {
                                "/.well-known/openid-configuration" => Some(discovery.clone()),
                                "/.well-known/jwks" => Some(keys.clone()),
                                _ => None,
                            };
                            async move {
                                let mut response = Response::new(Full::new(
                                    body.clone().unwrap_or_else(|| Bytes::from("not found")),
                                ));
                                if body.is_none() {
                                    *response.status_mut() = StatusCode::NOT_FOUND;
                                }
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
        CiIssuer { url, ca_pem, key }
    }

    /// A token with the standard claims for `audience` (five minutes, as GitHub's) and
    /// `claims` merged in.
    pub(crate) fn token(&self, audience: &str, claims: Value) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut payload = json!({
            "iss": self.url,
            "aud": audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
            "jti": format!("{:x}-{now}", std::process::id()),
        });
        for (name, value) in claims.as_object().expect("claims object") {
            payload[name] = value.clone();
        }
        self.key.token(Algorithm::RS256, Some(KID), &payload)
    }

    /// A GitHub Actions ID token for a push to `git_ref` of `owner/repo`.
    pub(crate) fn github_token(
        &self,
        audience: &str,
        owner: &str,
        repo: &str,
        git_ref: &str,
    ) -> String {
        self.token(
            audience,
            json!({
                "sub": format!("repo:{owner}/{repo}:ref:{git_ref}"),
                "repository": format!("{owner}/{repo}"),
                "repository_id": "7654321",
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
            }),
        )
    }

    /// A GitLab CI ID token for a job on `git_ref` of `project_path`.
    pub(crate) fn gitlab_token(
        &self,
        audience: &str,
        project_path: &str,
        git_ref: &str,
        ref_protected: bool,
    ) -> String {
        let namespace = project_path.split('/').next().unwrap_or_default();
        self.token(
            audience,
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
            }),
        )
    }
}
