//! kube-apiserver's rules for the claims of a verified token: the standard checks go-oidc v2 makes
//! (`verify.go`), then the claim → user mapping of the apiserver's
//! `plugin/pkg/authenticator/token/oidc/oidc.go` (research note `k8s-semantics.md` §1.3 steps
//! 3–6 and §1.4).
//!
//! Claims are read with the exact (case-sensitive) names below. Go's `encoding/json` also matches
//! a struct field case-insensitively (`EXP` fills `exp`); we do not.
//!
//! Distributed claims (`_claim_names`/`_claim_sources`, OIDC Core §5.6.2) are **not supported**:
//! their shape is checked as go-oidc checks it, but a groups claim that lives only in a
//! distributed source yields no groups.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::authn::jws::coalesce_google_issuer;
use crate::authn::UserInfo;

/// The claims of a token: a JSON object. Duplicate keys keep the last value, as in Go.
pub type Claims = serde_json::Map<String, Value>;

/// The token's `exp`, which bounds how long a verification result may be cached.
pub type Expiry = SystemTime;

/// go-oidc's leeway for `nbf`: a token is accepted up to one minute before it becomes valid.
const NOT_BEFORE_LEEWAY: Duration = Duration::from_secs(60);

/// The extra key kube-apiserver fills from a string `jti` (`authentication.kubernetes.io/
/// credential-id`, apiserver `pkg/authentication/token/jwt`).
pub const CREDENTIAL_ID_EXTRA_KEY: &str = "authentication.kubernetes.io/credential-id";

/// Why a token's claims were refused. Messages name claims, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The payload is not valid JSON.
    #[error("token payload is not valid JSON")]
    InvalidJson,
    /// The payload is JSON but not an object.
    #[error("token payload is not a JSON object")]
    NotAnObject,
    /// A claim that must be present is absent (`exp`, the username claim, the uid claim).
    #[error("claim {claim:?} not present")]
    MissingClaim {
        /// The claim's name.
        claim: String,
    },
    /// A claim has a JSON type the rule cannot read.
    #[error("claim {claim:?} is not {expected}")]
    InvalidType {
        /// The claim's name.
        claim: String,
        /// What the claim should have been, e.g. "a string".
        expected: &'static str,
    },
    /// A `_claim_names` entry names a source that is empty or absent from `_claim_sources`
    /// (go-oidc: `oidc: source does not exist`).
    #[error("distributed claim {claim:?} names a source that does not exist")]
    ClaimSourceMissing {
        /// The distributed claim's name.
        claim: String,
    },
    /// `iss` is not the configured issuer.
    #[error("token issuer is not {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
    },
    /// No `aud` entry is one of the configured audiences.
    #[error("token audience is not one of {expected:?}")]
    AudienceMismatch {
        /// The configured audiences.
        expected: Vec<String>,
    },
    /// `exp` is before now (go-oidc: no leeway).
    #[error("token is expired (exp {exp})")]
    Expired {
        /// The token's `exp`, seconds since the Unix epoch.
        exp: i64,
    },
    /// Now plus one minute is before `nbf`.
    #[error("token is not valid yet (nbf {nbf})")]
    NotYetValid {
        /// The token's `nbf`, seconds since the Unix epoch.
        nbf: i64,
    },
    /// The username claim is `email` and `email_verified` is present but not `true`.
    #[error("email not verified")]
    EmailNotVerified,
    /// A required claim is absent.
    #[error("required claim {claim:?} not present")]
    MissingRequiredClaim {
        /// The claim's name.
        claim: String,
    },
    /// A required claim does not have the required value.
    #[error("required claim {claim:?} does not have the required value")]
    RequiredClaimMismatch {
        /// The claim's name.
        claim: String,
    },
    /// The mapped username is empty. Stricter than kube-apiserver (which accepts it): the proxy
    /// would send no `Impersonate-User` and the request would run as the proxy itself.
    #[error("mapped username is empty")]
    EmptyUsername,
}

/// Parses a (verified) payload into [`Claims`]. It must be a JSON object. Size and nesting are
/// bounded by `MAX_TOKEN_BYTES` and serde_json's recursion limit.
pub fn parse_claims(payload: &[u8]) -> Result<Claims, ClaimError> {
    match serde_json::from_slice(payload) {
        Ok(Value::Object(claims)) => Ok(claims),
        Ok(_) => Err(ClaimError::NotAnObject),
        Err(_) => Err(ClaimError::InvalidJson),
    }
}

/// What [`validate_standard`] checks the token against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationRules {
    /// The configured issuer URL; `iss` must equal it byte for byte.
    pub issuer: String,
    /// The configured audiences; at least one `aud` entry must be among them (MatchAny).
    pub audiences: Vec<String>,
}

/// The standard claim checks, in go-oidc v2 `IDTokenVerifier.Verify` order, then kube's audience
/// rule. Returns the token's `exp`.
///
/// 1. Types, as go-oidc unmarshals its `idToken`: `iss`, `sub`, `nonce`, `at_hash` strings (or
///    `null`); `aud` a string or an array of strings; `exp`, `iat`, `nbf` numeric dates (a JSON
///    number or a numeric string, fractions truncated; `nbf` may be `null`); `_claim_names` an
///    object of strings; `_claim_sources` an object of objects. `iat` is never checked further.
/// 2. Every `_claim_names` value names an entry of `_claim_sources`.
/// 3. `iss` equals `rules.issuer`, after mapping `accounts.google.com` to
///    `https://accounts.google.com`.
/// 4. Some `aud` entry is in `rules.audiences` (kube `verifyAudience`, MatchAny).
/// 5. `exp` is required and the token is expired iff `exp < now` (no leeway; `exp == now` passes).
/// 6. If `nbf` is set, refused iff `now + 60s < nbf`.
pub fn validate_standard(
    claims: &Claims,
    rules: &ValidationRules,
    now: SystemTime,
) -> Result<Expiry, ClaimError> {
    for name in ["iss", "sub", "nonce", "at_hash"] {
        optional_string(claims, name)?;
    }
    let audiences = audience(claims)?;
    let exp = numeric_date(claims, "exp")?;
    numeric_date(claims, "iat")?;
    let nbf = match claims.get("nbf") {
        None | Some(Value::Null) => None,
        Some(_) => numeric_date(claims, "nbf")?,
    };
    check_distributed_claim_names(claims)?;

    let issuer = optional_string(claims, "iss")?.map(|iss| coalesce_google_issuer(iss.to_owned()));
    if issuer.as_deref() != Some(rules.issuer.as_str()) {
        return Err(ClaimError::IssuerMismatch {
            expected: rules.issuer.clone(),
        });
    }

    if !audiences.iter().any(|aud| rules.audiences.contains(aud)) {
        return Err(ClaimError::AudienceMismatch {
            expected: rules.audiences.clone(),
        });
    }

    // go-oidc: a missing `exp` is Go's zero time, which is always expired.
    let exp = exp.ok_or_else(|| ClaimError::MissingClaim {
        claim: "exp".to_owned(),
    })?;
    let expiry = unix_time("exp", exp)?;
    if expiry < now {
        return Err(ClaimError::Expired { exp });
    }

    if let Some(nbf) = nbf {
        let not_before = unix_time("nbf", nbf)?;
        if now
            .checked_add(NOT_BEFORE_LEEWAY)
            .is_none_or(|late| late < not_before)
        {
            return Err(ClaimError::NotYetValid { nbf });
        }
    }
    Ok(expiry)
}

/// A claim and the prefix to put before its value (kube `claimMappings.username`/`.groups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixedClaim {
    /// The claim's name.
    pub claim: String,
    /// Prepended to the value (to each value for groups); empty for none. The flag defaults
    /// (`<issuer>#` for non-email usernames) are computed by the configuration, not here.
    pub prefix: String,
}

/// How claims become a Kubernetes user (kube `claimMappings` with `claim`, not expressions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMappings {
    /// The username claim (`--oidc-username-claim`, default `sub`) and its prefix.
    pub username: PrefixedClaim,
    /// The groups claim and its prefix; `None` for no groups.
    pub groups: Option<PrefixedClaim>,
    /// The uid claim; `None` for no uid.
    pub uid: Option<String>,
}

/// A claim that must be present, a string, and equal to `value` (`--oidc-required-claim`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredClaim {
    /// The claim's name.
    pub claim: String,
    /// The value it must have.
    pub value: String,
}

/// Maps validated claims to the user to impersonate, in kube-apiserver's order (oidc.go
/// L982-1138): username (with the `email_verified` check when the username claim is `email`),
/// groups, uid, extra (`jti`), then the required claims. Finally, stricter than kube: an empty
/// mapped username is refused ([`ClaimError::EmptyUsername`]).
///
/// * username: must be present and a string (`null` reads as ""); the prefix is prepended.
/// * `email_verified`, only when the username claim is literally `email`: absent is fine;
///   present must be the JSON boolean `true` (`null` reads as false; a string is a type error).
/// * groups: absent or `null` → none; a string → one group; an array of strings → those groups
///   (empty strings kept, as kube does); anything else is a type error. The prefix goes before
///   each. Stricter than kube: a `null` inside the array is a type error (Go reads it as "").
/// * uid: must be present and a string; `null` or "" means no uid.
/// * extra: a non-empty string `jti` adds `authentication.kubernetes.io/credential-id:
///   ["JTI=<jti>"]`; a non-string `jti` is ignored.
/// * required claims: each present, a string (`null` reads as ""), and equal to its value.
pub fn map_user(
    claims: &Claims,
    mappings: &ClaimMappings,
    required: &[RequiredClaim],
) -> Result<UserInfo, ClaimError> {
    let username_claim = &mappings.username.claim;
    let username = match claims.get(username_claim) {
        None => return Err(missing(username_claim)),
        Some(value) => string_or_null(username_claim, value)?,
    };
    if username_claim == "email" {
        check_email_verified(claims)?;
    }
    let username = format!("{}{username}", mappings.username.prefix);

    let groups = match &mappings.groups {
        None => Vec::new(),
        Some(groups) => map_groups(claims, groups)?,
    };

    let uid = match &mappings.uid {
        None => None,
        Some(uid_claim) => match claims.get(uid_claim) {
            None => return Err(missing(uid_claim)),
            Some(value) => Some(string_or_null(uid_claim, value)?.to_owned()),
        },
    }
    .filter(|uid| !uid.is_empty());

    let mut extra = BTreeMap::new();
    if let Some(Value::String(jti)) = claims.get("jti") {
        if !jti.is_empty() {
            extra.insert(
                CREDENTIAL_ID_EXTRA_KEY.to_owned(),
                vec![format!("JTI={jti}")],
            );
        }
    }

    for rule in required {
        let value = match claims.get(&rule.claim) {
            None => {
                return Err(ClaimError::MissingRequiredClaim {
                    claim: rule.claim.clone(),
                })
            }
            Some(value) => string_or_null(&rule.claim, value)?,
        };
        if value != rule.value {
            return Err(ClaimError::RequiredClaimMismatch {
                claim: rule.claim.clone(),
            });
        }
    }

    if username.is_empty() {
        return Err(ClaimError::EmptyUsername);
    }
    Ok(UserInfo {
        username,
        uid,
        groups,
        extra,
    })
}

fn check_email_verified(claims: &Claims) -> Result<(), ClaimError> {
    match claims.get("email_verified") {
        None | Some(Value::Bool(true)) => Ok(()),
        Some(Value::Bool(false) | Value::Null) => Err(ClaimError::EmailNotVerified),
        Some(_) => Err(invalid_type("email_verified", "a boolean")),
    }
}

fn map_groups(claims: &Claims, groups: &PrefixedClaim) -> Result<Vec<String>, ClaimError> {
    let prefixed = |group: &str| format!("{}{group}", groups.prefix);
    match claims.get(&groups.claim) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(group)) => Ok(vec![prefixed(group)]),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| match value {
                Value::String(group) => Ok(prefixed(group)),
                _ => Err(invalid_type(
                    &groups.claim,
                    "a string or an array of strings",
                )),
            })
            .collect(),
        Some(_) => Err(invalid_type(
            &groups.claim,
            "a string or an array of strings",
        )),
    }
}

/// A value read as a Go `string`: a JSON string, or `null` as "".
fn string_or_null<'a>(claim: &str, value: &'a Value) -> Result<&'a str, ClaimError> {
    match value {
        Value::String(s) => Ok(s),
        Value::Null => Ok(""),
        _ => Err(invalid_type(claim, "a string")),
    }
}

/// An optional string claim: absent and `null` are `None`.
fn optional_string<'a>(claims: &'a Claims, claim: &str) -> Result<Option<&'a str>, ClaimError> {
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_type(claim, "a string")),
    }
}

/// go-oidc's `audience`: a string, or an array of strings. `null` reads as one empty audience
/// (and elements that are `null` as ""), which matches no configured audience.
fn audience(claims: &Claims) -> Result<Vec<String>, ClaimError> {
    const EXPECTED: &str = "a string or an array of strings";
    match claims.get("aud") {
        None => Ok(Vec::new()),
        Some(Value::Null) => Ok(vec![String::new()]),
        Some(Value::String(aud)) => Ok(vec![aud.clone()]),
        Some(Value::Array(values)) => values
            .iter()
            .map(|value| match value {
                Value::String(aud) => Ok(aud.clone()),
                Value::Null => Ok(String::new()),
                _ => Err(invalid_type("aud", EXPECTED)),
            })
            .collect(),
        Some(_) => Err(invalid_type("aud", EXPECTED)),
    }
}

/// go-oidc's `jsonTime`: reads a JSON number, or a string holding a JSON number (Go
/// `json.Number`), as whole seconds since the epoch; fractions are truncated. `None` when absent.
/// `null` is a type error, as in Go (the value reaches `jsonTime.UnmarshalJSON`). Values outside
/// the `i64` range are a type error (Go's conversion would be undefined).
fn numeric_date(claims: &Claims, claim: &str) -> Result<Option<i64>, ClaimError> {
    let number = match claims.get(claim) {
        None => return Ok(None),
        Some(Value::Number(number)) => number.clone(),
        Some(Value::String(text)) => parse_json_number(text)
            .ok_or_else(|| invalid_type(claim, "a number or numeric string"))?,
        Some(_) => return Err(invalid_type(claim, "a number or numeric string")),
    };
    if let Some(seconds) = number.as_i64() {
        return Ok(Some(seconds));
    }
    // Go: `Int64()` failed, so `int64(Float64())`.
    let seconds = number.as_f64().map(f64::trunc).filter(|seconds| {
        // 2^63 is exactly representable; anything at or beyond it does not fit an i64.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        (-LIMIT..LIMIT).contains(seconds)
    });
    match seconds {
        // In range and already whole, so the cast is exact.
        Some(seconds) => Ok(Some(seconds as i64)),
        None => Err(invalid_type(claim, "a number or numeric string")),
    }
}

/// A string that is exactly a JSON number (Go's `json.Number` accepts nothing else).
fn parse_json_number(text: &str) -> Option<serde_json::Number> {
    // serde_json would skip surrounding whitespace; a JSON number has none.
    if text.is_empty() || text.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    serde_json::from_str(text).ok()
}

fn unix_time(claim: &str, seconds: i64) -> Result<SystemTime, ClaimError> {
    let offset = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
    .ok_or_else(|| invalid_type(claim, "a representable time"))
}

/// go-oidc: `_claim_names` must be an object of strings and `_claim_sources` an object of
/// objects (with string `endpoint`/`access_token`); every name's source must be non-empty and
/// exist. Checked whether or not a groups claim is configured.
fn check_distributed_claim_names(claims: &Claims) -> Result<(), ClaimError> {
    let names = match claims.get("_claim_names") {
        None | Some(Value::Null) => None,
        Some(Value::Object(names)) => Some(names),
        Some(_) => return Err(invalid_type("_claim_names", "an object of strings")),
    };
    let sources = match claims.get("_claim_sources") {
        None | Some(Value::Null) => None,
        Some(Value::Object(sources)) => Some(sources),
        Some(_) => return Err(invalid_type("_claim_sources", "an object of objects")),
    };
    for source in sources.into_iter().flat_map(|sources| sources.values()) {
        let valid = match source {
            Value::Null => true,
            Value::Object(source) => ["endpoint", "access_token"].iter().all(|field| {
                matches!(
                    source.get(*field),
                    None | Some(Value::Null | Value::String(_))
                )
            }),
            _ => false,
        };
        if !valid {
            return Err(invalid_type("_claim_sources", "an object of objects"));
        }
    }
    for (claim, source) in names.into_iter().flat_map(|names| names.iter()) {
        let source = string_or_null("_claim_names", source)?;
        let exists = !source.is_empty() && sources.is_some_and(|s| s.contains_key(source));
        if !exists {
            return Err(ClaimError::ClaimSourceMissing {
                claim: claim.clone(),
            });
        }
    }
    Ok(())
}

fn missing(claim: &str) -> ClaimError {
    ClaimError::MissingClaim {
        claim: claim.to_owned(),
    }
}

fn invalid_type(claim: &str, expected: &'static str) -> ClaimError {
    ClaimError::InvalidType {
        claim: claim.to_owned(),
        expected,
    }
}
