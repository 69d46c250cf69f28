//! The API server's review APIs, asked with the proxy's own identity: `SubjectAccessReview`
//! (may the caller impersonate this user, group, uid or extra?) and `TokenReview` (whose is this
//! token that no configured issuer claims?).
//!
//! A `kube::Client` built from the same `kube::Config` as the forwarding client (same API
//! server, TLS roots and credentials; kube's retry layer off, so a failure is reported, not
//! hidden). Every call is bounded by one timeout; a review that fails or times out is an error
//! the caller must turn into a refusal, never an allow.
//!
//! Both answers are cached briefly, in bounded caches keyed by SHA-256:
//! - decisions (allowed or denied) for [`ACCESS_CACHE_TTL`], keyed by the whole review spec
//!   (requestor and attributes); decisions that came with an `evaluationError` are not kept;
//! - authenticated tokens for [`TOKEN_CACHE_TTL`], and never past the token's own `exp` when it
//!   is a JWT (checked on every hit). Refusals are not cached.
//!
//! kube-apiserver's webhook authorizer and authenticator cache for minutes by default; seconds
//! here, so an RBAC change or a deleted ServiceAccount takes effect almost at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use quick_cache::sync::Cache;
use tokio::time::Instant;

use crate::authn::UserInfo;

/// How long an access decision is reused.
pub const ACCESS_CACHE_TTL: Duration = Duration::from_secs(10);
/// How long an authenticated token is reused (at most; never past its `exp`).
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
/// Distinct decisions, and distinct tokens, remembered.
const CACHE_CAPACITY: usize = 10_000;

/// The group kube-apiserver adds to every authenticated requestor before any authorization
/// (`group.AuthenticatedGroupAdder`), so SubjectAccessReviews carry it too.
const ALL_AUTHENTICATED_GROUP: &str = "system:authenticated";
const ALL_UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";

/// How reviews are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewSettings {
    /// Bound on the SubjectAccessReviews of one request together, and on one TokenReview
    /// (`--subject-access-review-timeout`).
    pub timeout: Duration,
    /// `--token-passthrough-audiences`: put in every TokenReview; when non-empty, the returned
    /// audiences must include one of them. Empty means the API server's own audiences.
    pub token_audiences: Vec<String>,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            token_audiences: Vec::new(),
        }
    }
}

/// The API server's answer to one access review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `status.allowed` was true.
    Allowed,
    /// Not allowed; `reason` is the authorizer's (often empty for RBAC).
    Denied { reason: String },
}

/// Why a review has no answer. The request it was for must be refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// No answer within the configured timeout.
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, TLS or the HTTP exchange failed.
    #[error("the API server could not be reached: {0}")]
    Unreachable(String),
    /// The API server answered with an error status (e.g. 403: the proxy may not create reviews).
    #[error("the API server refused the review ({code}): {message}")]
    Refused { code: u16, message: String },
    /// The answer was not a review with a status.
    #[error("the API server's answer was not a usable review: {0}")]
    Malformed(String),
}

impl ReviewError {
    fn from_kube(error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => ReviewError::Refused {
                code: status.code,
                message: status.message,
            },
            kube::Error::SerdeError(e) => ReviewError::Malformed(e.to_string()),
            other => ReviewError::Unreachable(crate::authn::issuer::error_chain(
                &other as &dyn std::error::Error,
            )),
        }
    }
}

#[derive(Clone)]
struct CachedDecision {
    decision: Decision,
    until: Instant,
}

#[derive(Clone)]
struct CachedToken {
    user: UserInfo,
    until: SystemTime,
}

/// Makes SubjectAccessReviews and TokenReviews; shared by every request.
/// Which review an observation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewKind {
    /// A SubjectAccessReview (`kubectl --as`).
    SubjectAccess,
    /// A TokenReview (`--token-passthrough`).
    Token,
}

/// Told the duration of every review call that reached for the API server (cache hits are
/// not calls) and whether it got no answer.
pub type ReviewObserver = Arc<dyn Fn(ReviewKind, Duration, bool) + Send + Sync>;

pub struct Reviewer {
    observer: Option<ReviewObserver>,
    access: Api<SubjectAccessReview>,
    tokens: Api<TokenReview>,
    settings: ReviewSettings,
    access_cache: Cache<[u8; 32], CachedDecision>,
    token_cache: Cache<[u8; 32], CachedToken>,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// The requestor of a SubjectAccessReview as kube-apiserver's authorizer sees the caller: its
/// name, uid, groups plus `system:authenticated`, and extras.
pub fn requestor_spec(requestor: &UserInfo) -> SubjectAccessReviewSpec {
    let mut groups = requestor.groups.clone();
    if !groups
        .iter()
        .any(|g| g == ALL_AUTHENTICATED_GROUP || g == ALL_UNAUTHENTICATED_GROUP)
    {
        groups.push(ALL_AUTHENTICATED_GROUP.to_string());
    }
    SubjectAccessReviewSpec {
        user: Some(requestor.username.clone()),
        uid: requestor.uid.clone().filter(|uid| !uid.is_empty()),
        groups: Some(groups),
        extra: (!requestor.extra.is_empty()).then(|| requestor.extra.clone()),
        ..SubjectAccessReviewSpec::default()
    }
}

/// The `exp` of a JWT-shaped token, read without verification (only ever used to shorten how
/// long a TokenReview answer is reused).
fn unverified_expiry(token: &str) -> Option<SystemTime> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    (exp >= 0.0).then(|| UNIX_EPOCH + Duration::from_secs(exp as u64))
}

impl Reviewer {
    /// A reviewer over the proxy's upstream configuration. Needs a Tokio runtime.
    pub fn new(config: &kube::Config, settings: ReviewSettings) -> Result<Self, kube::Error> {
        let mut config = config.clone();
        // A failed review is reported at once, within our own timeout, never retried behind
        // our back.
        config.default_retry = false;
        let client = kube::Client::try_from(config)?;
        Ok(Self {
            observer: None,
            access: Api::all(client.clone()),
            tokens: Api::all(client),
            settings,
            access_cache: Cache::new(CACHE_CAPACITY),
            token_cache: Cache::new(CACHE_CAPACITY),
        })
    }

    /// The settings in force.
    /// Reports every review call to `observer` (metrics).
    pub fn with_observer(mut self, observer: ReviewObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    async fn observed<T>(
        &self,
        kind: ReviewKind,
        call: impl std::future::Future<Output = Result<T, ReviewError>>,
    ) -> Result<T, ReviewError> {
        let started = Instant::now();
        let result = call.await;
        if let Some(observer) = &self.observer {
            observer(kind, started.elapsed(), result.is_err());
        }
        result
    }

    pub fn settings(&self) -> &ReviewSettings {
        &self.settings
    }

    /// Asks whether `requestor` may do each of `attributes`, all at once, within one timeout.
    /// Returns one answer per attribute set, in order; identical attribute sets are asked once.
    pub async fn review_access(
        &self,
        requestor: &UserInfo,
        attributes: Vec<ResourceAttributes>,
    ) -> Vec<Result<Decision, ReviewError>> {
        let deadline = Instant::now() + self.settings.timeout;
        let base = requestor_spec(requestor);
        let mut unique: Vec<([u8; 32], SubjectAccessReviewSpec)> = Vec::new();
        let mut index: HashMap<[u8; 32], usize> = HashMap::new();
        let mut positions = Vec::with_capacity(attributes.len());
        for resource_attributes in attributes {
            let spec = SubjectAccessReviewSpec {
                resource_attributes: Some(resource_attributes),
                ..base.clone()
            };
            // The spec's JSON is deterministic (sorted extra map, fixed field order).
            let key = sha256(&serde_json::to_vec(&spec).unwrap_or_default());
            let position = *index.entry(key).or_insert_with(|| {
                unique.push((key, spec));
                unique.len() - 1
            });
            positions.push(position);
        }
        let answers = futures_util::future::join_all(
            unique
                .into_iter()
                .map(|(key, spec)| self.review_one(key, spec, deadline)),
        )
        .await;
        positions.into_iter().map(|i| answers[i].clone()).collect()
    }

    async fn review_one(
        &self,
        key: [u8; 32],
        spec: SubjectAccessReviewSpec,
        deadline: Instant,
    ) -> Result<Decision, ReviewError> {
        if let Some(hit) = self.access_cache.get(&key) {
            if Instant::now() < hit.until {
                return Ok(hit.decision);
            }
            self.access_cache.remove(&key);
        }
        let review = SubjectAccessReview {
            spec,
            ..SubjectAccessReview::default()
        };
        let answer = self
            .observed(ReviewKind::SubjectAccess, async {
                tokio::time::timeout_at(
                    deadline,
                    self.access.create(&PostParams::default(), &review),
                )
                .await
                .map_err(|_| ReviewError::Timeout(self.settings.timeout))?
                .map_err(ReviewError::from_kube)
            })
            .await?;
        let status = answer
            .status
            .ok_or_else(|| ReviewError::Malformed("no status".into()))?;
        let decision = if status.allowed {
            Decision::Allowed
        } else {
            Decision::Denied {
                reason: status.reason.unwrap_or_default(),
            }
        };
        if status.evaluation_error.as_deref().unwrap_or("").is_empty() {
            self.access_cache.insert(
                key,
                CachedDecision {
                    decision: decision.clone(),
                    until: Instant::now() + ACCESS_CACHE_TTL,
                },
            );
        }
        Ok(decision)
    }

    /// Asks the API server whose `token` is (`TokenReview`, with the configured audiences).
    /// `Ok(None)` when it is not authenticated, reports an error, or (when audiences were asked
    /// for) is valid for none of them — kube-apiserver's webhook authenticator rules.
    pub async fn review_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Option<UserInfo>, ReviewError> {
        let key = sha256(token.as_bytes());
        if let Some(hit) = self.token_cache.get(&key) {
            if now <= hit.until {
                return Ok(Some(hit.user));
            }
            self.token_cache.remove(&key);
        }
        let audiences = &self.settings.token_audiences;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!audiences.is_empty()).then(|| audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = self
            .observed(ReviewKind::Token, async {
                tokio::time::timeout(
                    self.settings.timeout,
                    self.tokens.create(&PostParams::default(), &review),
                )
                .await
                .map_err(|_| ReviewError::Timeout(self.settings.timeout))?
                .map_err(ReviewError::from_kube)
            })
            .await?;
        let status = answer
            .status
            .ok_or_else(|| ReviewError::Malformed("no status".into()))?;
        if status.authenticated != Some(true) || !status.error.unwrap_or_default().is_empty() {
            return Ok(None);
        }
        if !audiences.is_empty() {
            let returned = status.audiences.unwrap_or_default();
            if !returned.iter().any(|a| audiences.contains(a)) {
                return Ok(None);
            }
        }
        let info = status.user.unwrap_or_default();
        let user = UserInfo {
            username: info.username.unwrap_or_default(),
            uid: info.uid.filter(|uid| !uid.is_empty()),
            groups: info.groups.unwrap_or_default(),
            extra: info.extra.unwrap_or_default(),
        };
        let mut until = now + TOKEN_CACHE_TTL;
        if let Some(exp) = unverified_expiry(token) {
            until = until.min(exp);
        }
        if until > now {
            self.token_cache.insert(
                key,
                CachedToken {
                    user: user.clone(),
                    until,
                },
            );
        }
        Ok(Some(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn requestor_gets_system_authenticated_like_kube_apiserver_adds_it() {
        let spec = requestor_spec(&UserInfo {
            username: "alice".into(),
            uid: Some(String::new()),
            groups: vec!["dev".into()],
            extra: BTreeMap::from([("k".to_string(), vec!["v".to_string()])]),
        });
        assert_eq!(spec.user.as_deref(), Some("alice"));
        assert_eq!(spec.uid, None);
        assert_eq!(
            spec.groups,
            Some(vec!["dev".to_string(), "system:authenticated".to_string()])
        );
        assert_eq!(spec.extra.unwrap()["k"], vec!["v"]);
        let already = requestor_spec(&UserInfo {
            username: "a".into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        });
        assert_eq!(already.groups.unwrap().len(), 1);
    }

    #[test]
    fn expiry_of_jwt_shaped_tokens_only() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!("{}.{}.sig", b64("{}"), b64(r#"{"exp":2000000000}"#));
        assert_eq!(
            unverified_expiry(&jwt),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(unverified_expiry("opaque-token"), None);
        assert_eq!(
            unverified_expiry(&format!("a.{}.b", b64(r#"{"exp":"soon"}"#))),
            None
        );
    }
}
