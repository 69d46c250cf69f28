//! A bearer token with the times read from its (unverified) claims, and the refresh rule.
//!
//! The plugin never verifies signatures: the proxy does. It reads `exp` and `iat` only to tell
//! kubectl when to ask again.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret as _, SecretString};

use crate::authn::jws;

/// The share of a token's lifetime that the expiry margin may take at most. A 20-second test
/// token keeps 15 s of use with a margin capped at 5 s; GitHub's 5-minute token keeps the full
/// 60 s default margin.
const MAX_MARGIN_SHARE: u32 = 4;

/// A token and what its claims say about its lifetime. `Debug` never shows the token.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) value: SecretString,
    /// `exp`, when the token is a JWT with a numeric `exp`.
    pub(crate) expires: Option<SystemTime>,
    /// `iat`, when present and numeric.
    pub(crate) issued: Option<SystemTime>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("expires", &self.expires)
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

/// Why a token's claims could not be read (never containing the token).
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum ClaimsError {
    /// Not a compact JWS.
    #[error("not a JWT ({0})")]
    NotJwt(String),
    /// The payload is not a JSON object.
    #[error("the JWT payload is not a JSON object")]
    NotObject,
}

impl Token {
    /// A token whose lifetime is unknown (opaque tokens).
    pub(crate) fn opaque(value: String) -> Token {
        Token {
            value: SecretString::from(value),
            expires: None,
            issued: None,
        }
    }

    /// Reads `exp` and `iat` from a JWT without verifying it.
    pub(crate) fn from_jwt(value: String) -> Result<Token, ClaimsError> {
        let decoded = jws::decode(&value).map_err(|e| ClaimsError::NotJwt(e.to_string()))?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(decoded.payload()).map_err(|_| ClaimsError::NotObject)?;
        let time = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_f64)
                .filter(|secs| secs.is_finite() && *secs >= 0.0)
                .map(|secs| UNIX_EPOCH + Duration::from_secs(secs as u64))
        };
        Ok(Token {
            expires: time("exp"),
            issued: time("iat"),
            value: SecretString::from(value),
        })
    }

    /// A JWT's times when it is one, else an opaque token (token files and commands may hold
    /// either).
    pub(crate) fn jwt_or_opaque(value: String) -> Token {
        match Token::from_jwt(value.clone()) {
            Ok(token) => token,
            Err(_) => Token::opaque(value),
        }
    }

    /// The token itself, for the one place that prints it (the ExecCredential on stdout).
    pub(crate) fn secret(&self) -> &str {
        self.value.expose_secret()
    }

    /// When this token should be replaced: `exp` minus the margin, the margin capped to a
    /// quarter of the token's lifetime (`exp − iat`) so short tokens stay usable.
    pub(crate) fn refresh_at(&self, margin: Duration) -> Option<SystemTime> {
        let expires = self.expires?;
        let lifetime = self
            .issued
            .and_then(|issued| expires.duration_since(issued).ok());
        let margin = match lifetime {
            Some(lifetime) => margin.min(lifetime / MAX_MARGIN_SHARE),
            None => margin,
        };
        Some(expires.checked_sub(margin).unwrap_or(expires))
    }

    /// Whether a cached copy may still be handed out at `now`.
    pub(crate) fn fresh_at(&self, now: SystemTime, margin: Duration) -> bool {
        self.refresh_at(margin).is_some_and(|at| now < at)
    }

    /// The `expirationTimestamp` for kubectl: the refresh time, or `exp` itself once that has
    /// passed (a token that cannot be renewed, such as GitLab's, stays usable to the end).
    pub(crate) fn credential_expiry(
        &self,
        now: SystemTime,
        margin: Duration,
    ) -> Option<SystemTime> {
        let refresh = self.refresh_at(margin)?;
        Some(if refresh > now {
            refresh
        } else {
            self.expires?
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    /// An unsigned-looking JWT (the plugin never checks signatures) with `claims`.
    pub(crate) fn jwt(claims: serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signature = URL_SAFE_NO_PAD.encode(b"signature");
        format!("{header}.{payload}.{signature}")
    }

    pub(crate) fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn reads_exp_and_iat() {
        let token = Token::from_jwt(jwt(serde_json::json!({"exp": 1300, "iat": 1000}))).unwrap();
        assert_eq!(token.expires, Some(at(1300)));
        assert_eq!(token.issued, Some(at(1000)));
        assert!(matches!(
            Token::from_jwt("not-a-jwt".into()),
            Err(ClaimsError::NotJwt(_))
        ));
        assert_eq!(Token::jwt_or_opaque("opaque".into()).expires, None);
    }

    #[test]
    fn the_margin_is_capped_to_a_quarter_of_the_lifetime() {
        let margin = Duration::from_secs(60);
        // GitHub: 300 s, the full margin.
        let github = Token::from_jwt(jwt(serde_json::json!({"exp": 1300, "iat": 1000}))).unwrap();
        assert_eq!(github.refresh_at(margin), Some(at(1240)));
        // A 20 s token: 5 s margin.
        let short = Token::from_jwt(jwt(serde_json::json!({"exp": 1020, "iat": 1000}))).unwrap();
        assert_eq!(short.refresh_at(margin), Some(at(1015)));
        assert!(short.fresh_at(at(1014), margin));
        assert!(!short.fresh_at(at(1015), margin));
        // No iat: the whole margin.
        let no_iat = Token::from_jwt(jwt(serde_json::json!({"exp": 1020}))).unwrap();
        assert_eq!(no_iat.refresh_at(margin), Some(at(960)));
    }

    #[test]
    fn past_the_refresh_time_the_credential_expires_with_the_token() {
        let margin = Duration::from_secs(60);
        let token = Token::from_jwt(jwt(serde_json::json!({"exp": 1300, "iat": 1000}))).unwrap();
        assert_eq!(token.credential_expiry(at(1100), margin), Some(at(1240)));
        assert_eq!(token.credential_expiry(at(1250), margin), Some(at(1300)));
        assert_eq!(
            Token::opaque("x".into()).credential_expiry(at(0), margin),
            None
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = Token::opaque("very-secret-value".into());
        assert!(!format!("{token:?}").contains("very-secret-value"));
    }
}
