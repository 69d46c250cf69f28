//! kube-apiserver's rules for the claims of a verified token: the standard checks go-oidc v2 makes
//! (`verify.go`), and the plain-claim rules (username, groups, uid, `jti`, required claims) of
//! the apiserver's `plugin/pkg/authenticator/token/oidc/oidc.go` (research note
//! `k8s-semantics.md` §1.3 steps 3–6 and §1.4). [`super::mapping`] puts them in kube's order
//! together with the CEL mappings and rules.
//!
//! Claims are read with the exact (case-sensitive) names below. Go's `encoding/json` also matches
//! a struct field case-insensitively (`EXP` fills `exp`); we do not.
//!
//! Distributed claims (`_claim_names`/`_claim_sources`, OIDC Core §5.6.2) are **not supported**:
//! their shape is checked as go-oidc checks it, but a groups claim that lives only in a
//! distributed source yields no groups.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::authn::cel::EvalError;
use crate::authn::jws::coalesce_google_issuer;

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
    /// The mapped username is empty. Stricter than kube-apiserver (which accepts it from a
    /// plain claim): the proxy would send no `Impersonate-User` and the request would run as the
    /// proxy itself.
    #[error("mapped username is empty")]
    EmptyUsername,
    /// A username expression returned "" (kube: `empty username via CEL expression is not
    /// allowed`).
    #[error("empty username via CEL expression is not allowed")]
    EmptyUsernameExpression,
    /// A CEL mapping or rule failed to evaluate, or returned the wrong type (kube: `error
    /// evaluating <what>: expression '<e>' resulted in error: <error>`).
    #[error("error evaluating {what}: expression '{expression}' resulted in error: {error}")]
    Expression {
        /// Which mapping or rule, e.g. "username claim expression".
        what: &'static str,
        /// The expression as configured.
        expression: String,
        /// What went wrong.
        error: EvalError,
    },
    /// A claim validation rule evaluated to false.
    #[error(
        "error evaluating claim validation expression: validation expression '{expression}' \
         failed: {message}"
    )]
    ClaimValidationFailed {
        /// The rule's expression.
        expression: String,
        /// The rule's message.
        message: String,
    },
    /// A user validation rule evaluated to false.
    #[error(
        "error evaluating user info validation rule: validation expression '{expression}' \
         failed: {message}"
    )]
    UserValidationFailed {
        /// The rule's expression.
        expression: String,
        /// The rule's message.
        message: String,
    },
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

/// A claim that must be present, a string, and equal to `value` (`--oidc-required-claim`, or a
/// `claimValidationRules` entry with `claim` and `requiredValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredClaim {
    /// The claim's name.
    pub claim: String,
    /// The value it must have.
    pub value: String,
}

/// The username from a plain claim (kube `getUsername`, oidc.go L982-1028): the claim must be
/// present and a string (`null` reads as ""); when the claim is literally `email`, an
/// `email_verified` claim, if present, must be the JSON boolean `true` (`null` reads as false; a
/// string is a type error); the prefix is prepended.
pub fn username_from_claim(claims: &Claims, mapping: &PrefixedClaim) -> Result<String, ClaimError> {
    let username = match claims.get(&mapping.claim) {
        None => return Err(missing(&mapping.claim)),
        Some(value) => string_or_null(&mapping.claim, value)?,
    };
    if mapping.claim == "email" {
        check_email_verified(claims)?;
    }
    Ok(format!("{}{username}", mapping.prefix))
}

/// Groups from a plain claim (kube `getGroups` with `stringOrArray`): absent or `null` → none;
/// a string → one group; an array of strings → those groups (empty strings kept, as kube
/// does); anything else is a type error. The prefix goes before each. Stricter than kube: a
/// `null` inside the array is a type error (Go reads it as "").
pub fn groups_from_claim(
    claims: &Claims,
    groups: &PrefixedClaim,
) -> Result<Vec<String>, ClaimError> {
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

/// The uid from a plain claim (kube `getUID`): must be present and a string; `null` or ""
/// means no uid.
pub fn uid_from_claim(claims: &Claims, claim: &str) -> Result<Option<String>, ClaimError> {
    match claims.get(claim) {
        None => Err(missing(claim)),
        Some(value) => {
            Ok(Some(string_or_null(claim, value)?.to_owned()).filter(|uid| !uid.is_empty()))
        }
    }
}

/// The credential id kube-apiserver derives from a non-empty string `jti`: `JTI=<jti>` (for the
/// extra [`CREDENTIAL_ID_EXTRA_KEY`]); a non-string `jti` is ignored.
pub fn credential_id(claims: &Claims) -> Option<String> {
    match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() => Some(format!("JTI={jti}")),
        _ => None,
    }
}

/// A required claim (kube `requiredClaims`): present, a string (`null` reads as ""), and equal
/// to the required value.
pub fn check_required_claim(claims: &Claims, rule: &RequiredClaim) -> Result<(), ClaimError> {
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
    Ok(())
}

fn check_email_verified(claims: &Claims) -> Result<(), ClaimError> {
    match claims.get("email_verified") {
        None | Some(Value::Bool(true)) => Ok(()),
        Some(Value::Bool(false) | Value::Null) => Err(ClaimError::EmailNotVerified),
        Some(_) => Err(invalid_type("email_verified", "a boolean")),
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

/// `ClaimError::MissingClaim` for `claim`.
pub(crate) fn missing(claim: &str) -> ClaimError {
    ClaimError::MissingClaim {
        claim: claim.to_owned(),
    }
}

/// `ClaimError::InvalidType` for `claim`.
pub(crate) fn invalid_type(claim: &str, expected: &'static str) -> ClaimError {
    ClaimError::InvalidType {
        claim: claim.to_owned(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://issuer.example";
    /// A fixed "now" for every test: 2033-05-18T03:33:20Z.
    const NOW: i64 = 2_000_000_000;

    fn at(seconds: i64) -> SystemTime {
        unix_time("test", seconds).unwrap()
    }

    fn rules() -> ValidationRules {
        ValidationRules {
            issuer: ISSUER.to_owned(),
            audiences: vec!["my-client".to_owned()],
        }
    }

    /// Valid standard claims plus `extra`, which may override them (`null` deletes).
    fn claims_with(extra: Value) -> Claims {
        let mut claims = json!({
            "iss": ISSUER,
            "aud": "my-client",
            "sub": "1234",
            "exp": NOW + 3600,
            "iat": NOW - 60,
        })
        .as_object()
        .unwrap()
        .clone();
        for (name, value) in extra.as_object().unwrap() {
            claims.insert(name.clone(), value.clone());
        }
        claims
    }

    fn without(mut claims: Claims, name: &str) -> Claims {
        claims.remove(name);
        claims
    }

    fn validate(claims: &Claims) -> Result<Expiry, ClaimError> {
        validate_standard(claims, &rules(), at(NOW))
    }

    fn type_error(claim: &str, expected: &'static str) -> ClaimError {
        invalid_type(claim, expected)
    }

    const NUMERIC: &str = "a number or numeric string";

    #[test]
    fn parse_claims_needs_a_json_object() {
        assert_eq!(
            parse_claims(br#"{"sub":"a","sub":"b"}"#).unwrap()["sub"],
            json!("b"),
            "last duplicate wins, as in Go"
        );
        assert_eq!(parse_claims(b"[1]"), Err(ClaimError::NotAnObject));
        assert_eq!(parse_claims(b"\"x\""), Err(ClaimError::NotAnObject));
        assert_eq!(parse_claims(b"{\"sub\":"), Err(ClaimError::InvalidJson));
        assert_eq!(parse_claims(b""), Err(ClaimError::InvalidJson));
        assert_eq!(
            parse_claims(b"{\"a\":\"\xff\"}"),
            Err(ClaimError::InvalidJson)
        );
    }

    #[test]
    fn valid_claims_return_the_expiry() {
        assert_eq!(validate(&claims_with(json!({}))), Ok(at(NOW + 3600)));
    }

    #[test]
    fn expiry_has_no_leeway_and_exp_equal_to_now_passes() {
        let claims = claims_with(json!({ "exp": NOW }));
        assert_eq!(validate(&claims), Ok(at(NOW)));
        assert_eq!(
            validate_standard(&claims, &rules(), at(NOW) + Duration::from_millis(1)),
            Err(ClaimError::Expired { exp: NOW })
        );
        assert_eq!(
            validate(&claims_with(json!({ "exp": NOW - 1 }))),
            Err(ClaimError::Expired { exp: NOW - 1 })
        );
    }

    #[test]
    fn exp_is_required() {
        assert_eq!(
            validate(&without(claims_with(json!({})), "exp")),
            Err(missing("exp"))
        );
    }

    #[test]
    fn numeric_dates_accept_numbers_numeric_strings_and_truncate_fractions() {
        assert_eq!(
            validate(&claims_with(json!({ "exp": (NOW + 10).to_string() }))),
            Ok(at(NOW + 10))
        );
        assert_eq!(
            validate(&claims_with(json!({ "exp": NOW as f64 + 0.9 }))),
            Ok(at(NOW))
        );
        assert_eq!(
            validate(&claims_with(json!({ "exp": "2.0000001e9" }))),
            Ok(at(2_000_000_100))
        );
        // Truncated, so a fraction past `now` does not keep the token alive.
        assert_eq!(
            validate_standard(
                &claims_with(json!({ "exp": NOW as f64 + 0.9 })),
                &rules(),
                at(NOW) + Duration::from_millis(500)
            ),
            Err(ClaimError::Expired { exp: NOW })
        );
    }

    #[test]
    fn wrongly_typed_numeric_dates_are_refused() {
        for bad in [
            json!("soon"),
            json!(" 2000000000"),
            json!("0x77359400"),
            json!(""),
            json!(true),
            json!([NOW]),
            json!({}),
            json!(null),
            json!(1e300),
        ] {
            for claim in ["exp", "iat"] {
                assert_eq!(
                    validate(&claims_with(json!({ claim: bad }))),
                    Err(type_error(claim, NUMERIC)),
                    "{claim}: {bad}"
                );
            }
        }
        assert_eq!(
            validate(&claims_with(json!({ "nbf": "now" }))),
            Err(type_error("nbf", NUMERIC))
        );
    }

    #[test]
    fn iat_is_parsed_but_never_checked() {
        assert!(validate(&claims_with(json!({ "iat": NOW + 86_400 }))).is_ok());
        assert!(validate(&without(claims_with(json!({})), "iat")).is_ok());
    }

    #[test]
    fn nbf_has_a_one_minute_leeway() {
        assert!(validate(&claims_with(json!({ "nbf": NOW + 60 }))).is_ok());
        assert!(validate(&claims_with(json!({ "nbf": NOW + 30 }))).is_ok());
        assert!(validate(&claims_with(json!({ "nbf": null }))).is_ok());
        assert_eq!(
            validate(&claims_with(json!({ "nbf": NOW + 61 }))),
            Err(ClaimError::NotYetValid { nbf: NOW + 61 })
        );
    }

    #[test]
    fn the_issuer_must_match_exactly() {
        for other in [
            json!("https://issuer.example/"),
            json!("https://evil.example"),
            json!(null),
        ] {
            assert_eq!(
                validate(&claims_with(json!({ "iss": other }))),
                Err(ClaimError::IssuerMismatch {
                    expected: ISSUER.to_owned()
                }),
                "{other}"
            );
        }
        assert_eq!(
            validate(&without(claims_with(json!({})), "iss")),
            Err(ClaimError::IssuerMismatch {
                expected: ISSUER.to_owned()
            })
        );
        assert_eq!(
            validate(&claims_with(json!({ "iss": 1 }))),
            Err(type_error("iss", "a string"))
        );
    }

    #[test]
    fn google_issuer_without_scheme_is_coalesced() {
        let google = ValidationRules {
            issuer: "https://accounts.google.com".to_owned(),
            audiences: vec!["my-client".to_owned()],
        };
        let claims = claims_with(json!({ "iss": "accounts.google.com" }));
        assert!(validate_standard(&claims, &google, at(NOW)).is_ok());
        // Only for Google: another scheme-less issuer stays as it is.
        let other = ValidationRules {
            issuer: "https://issuer.example".to_owned(),
            ..google
        };
        let claims = claims_with(json!({ "iss": "issuer.example" }));
        assert!(validate_standard(&claims, &other, at(NOW)).is_err());
    }

    #[test]
    fn audience_is_a_string_or_array_and_any_configured_audience_matches() {
        let two_audiences = ValidationRules {
            audiences: vec!["random-client".to_owned(), "my-client".to_owned()],
            ..rules()
        };
        let ok = |aud: Value, rules: &ValidationRules| {
            validate_standard(&claims_with(json!({ "aud": aud })), rules, at(NOW)).is_ok()
        };
        assert!(ok(json!("my-client"), &rules()));
        assert!(ok(json!(["not-my-client", "my-client"]), &rules()));
        assert!(ok(json!(["random-client"]), &two_audiences));
        assert!(!ok(json!("not-my-client"), &rules()));
        assert!(!ok(json!(["not-my-client"]), &two_audiences));
        assert!(!ok(json!([]), &rules()));
        assert!(!ok(json!(null), &rules()));
        assert!(!ok(json!("My-Client"), &rules()));

        assert_eq!(
            validate(&claims_with(json!({ "aud": "x" }))),
            Err(ClaimError::AudienceMismatch {
                expected: vec!["my-client".to_owned()]
            })
        );
        assert_eq!(
            validate(&without(claims_with(json!({})), "aud")),
            Err(ClaimError::AudienceMismatch {
                expected: vec!["my-client".to_owned()]
            })
        );
        let no_audiences = ValidationRules {
            audiences: vec![],
            ..rules()
        };
        assert!(!ok(json!("my-client"), &no_audiences));
    }

    #[test]
    fn wrongly_typed_audiences_are_refused() {
        for bad in [
            json!(1),
            json!(["my-client", 1]),
            json!({ "my-client": true }),
        ] {
            assert_eq!(
                validate(&claims_with(json!({ "aud": bad }))),
                Err(type_error("aud", "a string or an array of strings")),
                "{bad}"
            );
        }
    }

    #[test]
    fn wrongly_typed_string_claims_go_oidc_reads_are_refused() {
        for claim in ["sub", "nonce", "at_hash"] {
            assert_eq!(
                validate(&claims_with(json!({ claim: 7 }))),
                Err(type_error(claim, "a string"))
            );
            assert!(validate(&claims_with(json!({ claim: null }))).is_ok());
        }
    }

    #[test]
    fn checks_run_in_go_oidc_order() {
        // Type errors come first, then distributed-claim names, issuer, audience, expiry.
        let everything_wrong = claims_with(json!({
            "iss": "https://evil.example",
            "aud": "x",
            "exp": NOW - 1,
            "_claim_names": { "groups": "src1" },
        }));
        assert_eq!(
            validate(&everything_wrong),
            Err(ClaimError::ClaimSourceMissing {
                claim: "groups".to_owned()
            })
        );
        let no_claim_names = without(everything_wrong.clone(), "_claim_names");
        assert!(matches!(
            validate(&no_claim_names),
            Err(ClaimError::IssuerMismatch { .. })
        ));
        let mut right_issuer = no_claim_names;
        right_issuer.insert("iss".to_owned(), json!(ISSUER));
        assert!(matches!(
            validate(&right_issuer),
            Err(ClaimError::AudienceMismatch { .. })
        ));
        let mut typed_wrong = everything_wrong;
        typed_wrong.insert("iat".to_owned(), json!("yesterday"));
        assert_eq!(validate(&typed_wrong), Err(type_error("iat", NUMERIC)));
    }

    #[test]
    fn distributed_claim_names_must_name_existing_sources() {
        let sources =
            json!({ "src1": { "endpoint": "https://groups.example", "access_token": "t" } });
        let ok = claims_with(json!({
            "_claim_names": { "groups": "src1" },
            "_claim_sources": sources,
        }));
        assert!(validate(&ok).is_ok());
        let aggregated = claims_with(json!({
            "_claim_names": { "groups": "src1" },
            "_claim_sources": { "src1": { "JWT": "some.jwt.token" } },
        }));
        assert!(validate(&aggregated).is_ok());

        let missing_source = ClaimError::ClaimSourceMissing {
            claim: "groups".to_owned(),
        };
        for names in [json!({ "groups": "nonexistent" }), json!({ "groups": "" })] {
            let claims = claims_with(json!({ "_claim_names": names, "_claim_sources": sources }));
            assert_eq!(validate(&claims), Err(missing_source.clone()), "{names}");
        }
        let names_only = claims_with(json!({ "_claim_names": { "groups": "src1" } }));
        assert_eq!(validate(&names_only), Err(missing_source));

        let bad_names = claims_with(json!({ "_claim_names": ["groups"] }));
        assert_eq!(
            validate(&bad_names),
            Err(type_error("_claim_names", "an object of strings"))
        );
        let bad_name_value = claims_with(json!({
            "_claim_names": { "groups": 1 },
            "_claim_sources": sources,
        }));
        assert_eq!(
            validate(&bad_name_value),
            Err(type_error("_claim_names", "a string"))
        );
        for bad_sources in [
            json!("src1"),
            json!({ "src1": "x" }),
            json!({ "src1": { "endpoint": 1 } }),
        ] {
            let claims = claims_with(json!({ "_claim_sources": bad_sources }));
            assert_eq!(
                validate(&claims),
                Err(type_error("_claim_sources", "an object of objects")),
                "{bad_sources}"
            );
        }
    }

    #[test]
    fn standard_claim_errors_never_contain_claim_values() {
        let secret = "s3cr3t-value";
        let errors = [
            validate(&claims_with(json!({ "iss": secret }))).unwrap_err(),
            validate(&claims_with(json!({ "aud": secret }))).unwrap_err(),
            validate(&claims_with(json!({ "exp": secret }))).unwrap_err(),
        ];
        for error in errors {
            assert!(!error.to_string().contains(secret), "{error}");
        }
    }
}
