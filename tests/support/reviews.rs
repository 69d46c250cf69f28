//! The fake API server's review APIs, answered as each test programs them:
//! `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` and
//! `POST /apis/authentication.k8s.io/v1/tokenreviews`. Every review also lands in the fake's
//! request record, like any other request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::http::{full, Body};

/// Path of the SubjectAccessReview API.
pub const SUBJECT_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
/// Path of the TokenReview API.
pub const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// How the fake answers one review.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `status.allowed: true` (SAR) / authenticated as this user with these audiences (TokenReview).
    Allow,
    /// `status.allowed: false` with this reason (SAR) / `authenticated: false` (TokenReview).
    Deny(String),
    /// An error `Status` with this HTTP code.
    Fail(StatusCode),
    /// No answer for a long time (60 s).
    Hang,
}

/// A TokenReview answer: who the token is, for which audiences.
#[derive(Debug, Clone)]
pub struct TokenIdentity {
    pub answer: Answer,
    pub user: Value,
    pub audiences: Vec<String>,
}

type AccessRule = Arc<dyn Fn(&Value) -> Answer + Send + Sync>;

/// The programmable review answers of one fake API server.
pub struct Reviews {
    access: Mutex<AccessRule>,
    tokens: Mutex<HashMap<String, TokenIdentity>>,
}

impl Default for Reviews {
    fn default() -> Self {
        Self {
            access: Mutex::new(Arc::new(|_| Answer::Deny(String::new()))),
            tokens: Mutex::default(),
        }
    }
}

impl Reviews {
    /// Decides every SubjectAccessReview with `rule`, given the review's `spec`. Default: deny.
    pub fn on_access(&self, rule: impl Fn(&Value) -> Answer + Send + Sync + 'static) {
        *self.access.lock().unwrap() = Arc::new(rule);
    }

    /// Answers TokenReviews of `token`. Unknown tokens are not authenticated.
    pub fn on_token(&self, token: &str, identity: TokenIdentity) {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_string(), identity);
    }

    /// The answer for a request to `path` with `body`, or `None` when `path` is not a review API.
    pub async fn respond(&self, path: &str, body: &Bytes) -> Option<Response<Body>> {
        let review: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let spec = review["spec"].clone();
        match path {
            SUBJECT_ACCESS_REVIEWS => {
                let rule = self.access.lock().unwrap().clone();
                let status = match rule(&spec) {
                    Answer::Allow => json!({"allowed": true, "reason": "allowed by the test"}),
                    Answer::Deny(reason) => json!({"allowed": false, "reason": reason}),
                    Answer::Fail(code) => return Some(failure(code)),
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        json!({"allowed": false})
                    }
                };
                Some(created(json!({
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "metadata": {},
                    "spec": spec,
                    "status": status,
                })))
            }
            TOKEN_REVIEWS => {
                let token = spec["token"].as_str().unwrap_or_default().to_string();
                let identity = self.tokens.lock().unwrap().get(&token).cloned();
                let status = match identity {
                    None => json!({"authenticated": false, "error": "invalid bearer token"}),
                    Some(identity) => match identity.answer {
                        Answer::Allow => json!({
                            "authenticated": true,
                            "user": identity.user,
                            "audiences": identity.audiences,
                        }),
                        Answer::Deny(error) => json!({"authenticated": false, "error": error}),
                        Answer::Fail(code) => return Some(failure(code)),
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            json!({"authenticated": false})
                        }
                    },
                };
                // The token is never echoed back (kube-apiserver does not either).
                let mut spec = spec;
                spec.as_object_mut().map(|s| s.remove("token"));
                Some(created(json!({
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenReview",
                    "metadata": {},
                    "spec": spec,
                    "status": status,
                })))
            }
            _ => None,
        }
    }
}

fn created(body: Value) -> Response<Body> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = StatusCode::CREATED;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

fn failure(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("the test made this review fail with {code}"),
            "reason": "InternalError", "code": code.as_u16(),
        })
        .to_string(),
    ));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}
