//! The JWT authenticator: one issuer, its keys, its claim rules, and a verified-token cache.
//!
//! Steps in order, as kube-apiserver's `AuthenticateToken` (k8s-semantics §1.3):
//! the unverified `iss` routes the token (not ours → [`AuthError::NotMine`]); the JWS signature
//! is checked against the issuer's keys (one refetch on an unknown `kid`); the standard claims
//! (`iss`, `aud`, `exp`, `nbf`), then the claim mappings and validation rules
//! ([`super::mapping`]) decide the user.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quick_cache::sync::Cache;

use super::claims::{self, ClaimError, ValidationRules};
use super::issuer::{Issuer, IssuerError, IssuerHealth, IssuerSettings};
use super::jws::{self, Algorithm, JwsError};
use super::mapping::{self, ClaimMappings, ClaimValidationRule, UserValidationRule};
use super::UserInfo;

/// Verified tokens remembered at most this long (and never past their `exp`).
const CACHE_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// Distinct tokens remembered.
const CACHE_CAPACITY: usize = 10_000;

/// One JWT authenticator's configuration: a `jwt` entry of kube-apiserver's
/// `AuthenticationConfiguration`, which the `--oidc-*` flags are also turned into (as
/// kube-apiserver turns them, k8s-semantics §1.1), so both take the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// `issuer.url`, `issuer.discoveryURL`, `issuer.certificateAuthority`.
    pub issuer: IssuerSettings,
    /// `issuer.audiences`: a token is accepted when its `aud` contains any of these
    /// (`MatchAny`).
    pub audiences: Vec<String>,
    /// Accepted JWS algorithms: `--oidc-signing-algs` on the flag path, kube's nine on the
    /// file path.
    pub algorithms: Vec<Algorithm>,
    /// `claimMappings`.
    pub claim_mappings: ClaimMappings,
    /// `claimValidationRules` (`--oidc-required-claim` on the flag path).
    pub claim_validation_rules: Vec<ClaimValidationRule>,
    /// `userValidationRules`.
    pub user_validation_rules: Vec<UserValidationRule>,
}

/// Why a token was not accepted. Only the log sees these; the client gets `Unauthorized`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token does not name this issuer (kube: "skip", not an error).
    #[error("token issuer is not {0}")]
    NotMine(String),
    /// The issuer's keys were never loaded.
    #[error("oidc: authenticator for issuer {0:?} is not initialized")]
    NotReady(String),
    /// The token is not a well-formed JWS or its signature does not verify.
    #[error("oidc: verify token: {0}")]
    Jws(#[from] JwsError),
    /// A claim check or mapping failed.
    #[error("oidc: {0}")]
    Claims(#[from] ClaimError),
    /// No configured issuer is the token's unverified `iss` (or it has none): kube-apiserver's
    /// "not mine" from every JWT authenticator, hence unauthenticated.
    #[error("token issuer is not a configured issuer")]
    UnknownIssuer,
    /// The mapped user is one of Kubernetes' own identities and `--allow-reserved-identities`
    /// is off.
    #[error("{0}")]
    Reserved(#[from] super::authenticators::ReservedIdentity),
}

impl AuthError {
    /// A short, fixed label for why a token was refused (metrics; never client input).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::NotMine(_) | AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::NotReady(_) => "issuer_not_ready",
            AuthError::Jws(JwsError::NoMatchingKey) => "unknown_key",
            AuthError::Jws(JwsError::BadSignature) => "invalid_signature",
            AuthError::Jws(JwsError::AlgorithmNotAllowed(_)) => "algorithm_not_allowed",
            AuthError::Jws(_) => "malformed_token",
            AuthError::Claims(claim) => match claim {
                ClaimError::Expired { .. } => "expired",
                ClaimError::NotYetValid { .. } => "not_yet_valid",
                ClaimError::AudienceMismatch { .. } => "audience_mismatch",
                ClaimError::IssuerMismatch { .. } => "issuer_mismatch",
                ClaimError::InvalidJson | ClaimError::NotAnObject => "malformed_token",
                _ => "claims_rejected",
            },
            AuthError::Reserved(_) => "reserved_identity",
        }
    }
}

#[derive(Clone)]
struct CachedUser {
    user: Arc<UserInfo>,
    /// min(token exp, insert time + CACHE_MAX_AGE), checked on every hit.
    valid_until: SystemTime,
}

/// Authenticates bearer tokens of one issuer.
pub struct JwtAuthenticator {
    config: JwtConfig,
    rules: ValidationRules,
    issuer: Arc<Issuer>,
    issuer_label: Arc<str>,
    cache: Cache<[u8; 32], CachedUser>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("issuer", &self.config.issuer.url)
            .finish_non_exhaustive()
    }
}

/// The verified-token cache key: the token's SHA-256 (the token itself is never kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenKey([u8; 32]);

pub(crate) fn token_key(token: &str) -> TokenKey {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    TokenKey(key)
}

impl JwtAuthenticator {
    /// Builds the authenticator with a new issuer; keys load later (see
    /// [`Issuer::run_refresh_loop`]).
    pub fn new(config: JwtConfig) -> Result<Self, IssuerError> {
        let issuer = Arc::new(Issuer::new(&config.issuer)?);
        Ok(Self::with_issuer(config, issuer))
    }

    /// Builds the authenticator on an existing issuer (whose keys it shares), e.g. when a
    /// reloaded configuration keeps the issuer but changes its rules. The verified-token cache
    /// always starts empty, so no user mapped under old rules survives.
    pub fn with_issuer(config: JwtConfig, issuer: Arc<Issuer>) -> Self {
        debug_assert_eq!(issuer.settings(), &config.issuer);
        Self {
            rules: ValidationRules {
                issuer: config.issuer.url.clone(),
                audiences: config.audiences.clone(),
            },
            issuer_label: config.issuer.url.as_str().into(),
            config,
            issuer,
            cache: Cache::new(CACHE_CAPACITY),
        }
    }

    /// The configuration this authenticator runs.
    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// The issuer, for its refresh loop and readiness.
    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    /// Readiness of this authenticator.
    pub fn health(&self) -> IssuerHealth {
        self.issuer.health()
    }

    /// Authenticates a bearer token at `now`.
    pub async fn authenticate(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Arc<UserInfo>, AuthError> {
        self.authenticate_noting_cache(token, now)
            .await
            .map(|(user, _)| user)
    }

    /// [`JwtAuthenticator::authenticate`], also telling whether the verified-token cache
    /// answered (for metrics).
    pub async fn authenticate_noting_cache(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<(Arc<UserInfo>, bool), AuthError> {
        let key = token_key(token);
        if let Some(user) = self.cached(&key, now) {
            return Ok((user, true));
        }
        self.verify(token, key, now).await.map(|user| (user, false))
    }

    /// The user this authenticator verified `key`'s token as, while that is still valid at
    /// `now` (an entry past its token's `exp` is removed).
    pub(crate) fn cached(&self, key: &TokenKey, now: SystemTime) -> Option<Arc<UserInfo>> {
        let hit = self.cache.get(&key.0)?;
        if now <= hit.valid_until {
            return Some(hit.user);
        }
        self.cache.remove(&key.0);
        None
    }

    /// The issuer URL as a shared string (the `issuer` of every authentication it accepts).
    pub fn issuer_label(&self) -> &Arc<str> {
        &self.issuer_label
    }

    /// Verifies and maps a token the cache did not answer for, and caches the result.
    pub(crate) async fn verify(
        &self,
        token: &str,
        key: TokenKey,
        now: SystemTime,
    ) -> Result<Arc<UserInfo>, AuthError> {
        match jws::unverified_issuer(token) {
            Some(iss) if iss == self.config.issuer.url => {}
            _ => return Err(AuthError::NotMine(self.config.issuer.url.clone())),
        }
        let decoded = jws::decode(token)?;
        let mut keys = self
            .issuer
            .keys()
            .ok_or_else(|| AuthError::NotReady(self.config.issuer.url.clone()))?;
        loop {
            match jws::verify(&decoded, &keys, &self.config.algorithms) {
                Ok(()) => break,
                Err(JwsError::NoMatchingKey) => {
                    match self.issuer.refresh_for_unknown_kid(&keys).await {
                        Some(fresh) => keys = fresh,
                        None => return Err(JwsError::NoMatchingKey.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let claims = claims::parse_claims(decoded.payload())?;
        let expiry = claims::validate_standard(&claims, &self.rules, now)?;
        let user = Arc::new(mapping::map_user(
            &claims,
            &self.config.claim_mappings,
            &self.config.claim_validation_rules,
            &self.config.user_validation_rules,
        )?);
        let valid_until = expiry.min(now + CACHE_MAX_AGE);
        self.cache.insert(
            key.0,
            CachedUser {
                user: user.clone(),
                valid_until,
            },
        );
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::jwk::JwkSet;
    use crate::authn::jws::testing::{jwks, TestKey};
    use serde_json::json;
    use std::time::UNIX_EPOCH;

    const ISSUER: &str = "https://issuer.example";

    fn authenticator() -> JwtAuthenticator {
        let ca = rcgen::generate_simple_self_signed(vec!["issuer.example".to_string()]).unwrap();
        JwtAuthenticator::new(JwtConfig {
            issuer: IssuerSettings {
                certificate_authority: Some(ca.cert.pem()),
                ..IssuerSettings::new(ISSUER)
            },
            audiences: vec!["kube".into()],
            algorithms: vec![Algorithm::RS256],
            claim_mappings: ClaimMappings::username_claim("sub", "oidc:"),
            claim_validation_rules: vec![],
            user_validation_rules: vec![],
        })
        .unwrap()
    }

    #[tokio::test]
    async fn verified_tokens_are_cached_but_never_past_exp() {
        let auth = authenticator();
        let key = TestKey::generate(Algorithm::RS256);
        auth.issuer()
            .store_keys(JwkSet::from_json(&jwks(&[key.public_jwk(Some("k"))])).unwrap());
        let t0 = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let token = key.token(
            Algorithm::RS256,
            Some("k"),
            &json!({"iss": ISSUER, "aud": "kube", "sub": "alice", "exp": 2_000_000_060u64}),
        );
        assert_eq!(
            auth.authenticate(&token, t0).await.unwrap().username,
            "oidc:alice"
        );

        // Cached: with the keys gone, the same token still authenticates within its life...
        auth.issuer().store_keys(JwkSet::default());
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            auth.authenticate(&token, later).await.unwrap().username,
            "oidc:alice"
        );

        // ...but never past `exp`: the entry is dropped and the token re-checked (and refused).
        auth.issuer()
            .store_keys(JwkSet::from_json(&jwks(&[key.public_jwk(Some("k"))])).unwrap());
        let expired = t0 + Duration::from_secs(61);
        assert!(matches!(
            auth.authenticate(&token, expired).await,
            Err(AuthError::Claims(ClaimError::Expired { .. }))
        ));
    }

    #[tokio::test]
    async fn tokens_of_other_issuers_and_unready_keys() {
        let auth = authenticator();
        let key = TestKey::generate(Algorithm::RS256);
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let mine = key.token(
            Algorithm::RS256,
            Some("k"),
            &json!({"iss": ISSUER, "aud": "kube", "sub": "a", "exp": 2_000_000_060u64}),
        );
        assert!(matches!(
            auth.authenticate(&mine, now).await,
            Err(AuthError::NotReady(_))
        ));
        let other = key.token(
            Algorithm::RS256,
            Some("k"),
            &json!({"iss": "https://other.example", "aud": "kube", "sub": "a", "exp": 2_000_000_060u64}),
        );
        assert!(matches!(
            auth.authenticate(&other, now).await,
            Err(AuthError::NotMine(_))
        ));
    }
}
