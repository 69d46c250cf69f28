//! Authentication: a bearer token becomes a Kubernetes user, or is refused.
//!
//! Rules follow kube-apiserver's JWT authenticator
//! (`staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/oidc/oidc.go`).

pub mod authenticators;
pub mod cel;
pub mod claims;
pub mod issuer;
pub mod jwk;
pub mod jws;
pub mod mapping;
pub mod oidc;

use std::collections::BTreeMap;

/// The identity a verified token maps to; what the proxy impersonates upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    /// Extra attributes; keys as Kubernetes sees them (lower case, decoded).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The bearer token of an `Authorization` header value, as kube-apiserver's `bearertoken`
/// authenticator reads it: scheme `Bearer` (case-insensitive), one space-separated token,
/// non-empty. Anything else is no token.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let mut parts = header_value.trim().splitn(2, ' ');
    let scheme = parts.next()?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = parts.next()?.trim();
    if token.is_empty() || token.contains(' ') {
        return None;
    }
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_token_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
    }
}
