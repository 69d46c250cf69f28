//! Outbound impersonation: the authenticated user becomes `Impersonate-*` headers.
//!
//! Wire format as kube-apiserver's impersonation filter reads it
//! (`k8s.io/apiserver/pkg/endpoints/filters/impersonation`, k8s-semantics §3.1):
//! `Impersonate-User` (one), one `Impersonate-Group` line per group, `Impersonate-Uid` (one),
//! and `Impersonate-Extra-<key>` once per value. The server lower-cases the key suffix and
//! then path-unescapes it, so keys are percent-encoded here exactly as client-go's
//! `headerKeyEscape` does: every byte that is not an RFC 7230 token character, and `%` itself,
//! becomes `%XX`. Values are sent as they are.
//!
//! Callers must have removed every client `Impersonate-*` header first
//! (`proxy::headers::strip_client_headers`); this module only inserts.
//!
//! [`inbound`] reads a client's own `Impersonate-*` headers (`kubectl --as`); [`extras`] adds
//! the extras the proxy itself sends (original user, client IP, `--extra-user-headers`).

pub mod extras;
pub mod inbound;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::authn::UserInfo;

/// The group kube-apiserver gives every authenticated user; the Go kube-oidc-proxy sends it
/// explicitly, so the proxy's RBAC must allow impersonating it.
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";

/// RFC 7230 `tchar`s other than alphanumerics; `%` is deliberately absent so that it is escaped.
const EXTRA_KEY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'*')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// A user attribute that cannot travel in an HTTP header (control characters).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    /// A username, group, uid or extra value holds bytes a header value cannot carry.
    #[error("the {0} contains characters that cannot be sent in an HTTP header")]
    InvalidValue(&'static str),
}

/// `Impersonate-Extra-<escaped key>` for an extra key as Kubernetes names it.
pub fn extra_header_name(key: &str) -> HeaderName {
    let escaped = percent_encoding::utf8_percent_encode(key, EXTRA_KEY_ESCAPE).to_string();
    // Every byte is now a token character, so this is a valid header name.
    HeaderName::from_bytes(format!("impersonate-extra-{escaped}").as_bytes())
        .unwrap_or_else(|_| HeaderName::from_static("impersonate-extra-invalid"))
}

fn value(text: &str, what: &'static str) -> Result<HeaderValue, HeaderError> {
    HeaderValue::from_str(text).map_err(|_| HeaderError::InvalidValue(what))
}

/// `groups` plus `system:authenticated` unless it or `system:unauthenticated` is present: the
/// groups kube-apiserver gives an authenticated user (its `AuthenticatedGroupAdder`) and an
/// impersonated one.
pub fn authenticated_groups(groups: &[String]) -> Vec<String> {
    authenticated_group_names(groups)
        .map(str::to_string)
        .collect()
}

/// [`authenticated_groups`] without copying: the request path sends them as headers.
fn authenticated_group_names(groups: &[String]) -> impl Iterator<Item = &str> {
    let add = !groups
        .iter()
        .any(|g| g == SYSTEM_AUTHENTICATED || g == "system:unauthenticated");
    groups
        .iter()
        .map(String::as_str)
        .chain(add.then_some(SYSTEM_AUTHENTICATED))
}

/// Sets the impersonation headers for `user` on an outbound request, adding
/// `system:authenticated` to the groups when absent (as the Go kube-oidc-proxy does).
/// Fails, changing nothing, when an attribute cannot be represented in a header.
pub fn set_impersonation_headers(
    headers: &mut HeaderMap,
    user: &UserInfo,
) -> Result<(), HeaderError> {
    let mut outbound: Vec<(HeaderName, HeaderValue)> = Vec::new();
    outbound.push((
        HeaderName::from_static("impersonate-user"),
        value(&user.username, "username")?,
    ));
    let group_header = HeaderName::from_static("impersonate-group");
    for group in authenticated_group_names(&user.groups) {
        outbound.push((group_header.clone(), value(group, "group")?));
    }
    if let Some(uid) = user.uid.as_deref().filter(|uid| !uid.is_empty()) {
        outbound.push((
            HeaderName::from_static("impersonate-uid"),
            value(uid, "uid")?,
        ));
    }
    for (key, values) in &user.extra {
        let name = extra_header_name(key);
        for extra in values {
            outbound.push((name.clone(), value(extra, "extra value")?));
        }
    }
    for (name, value) in outbound {
        headers.append(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn extra_keys_are_escaped_like_client_go() {
        assert_eq!(
            extra_header_name("authentication.kubernetes.io/credential-id").as_str(),
            "impersonate-extra-authentication.kubernetes.io%2fcredential-id"
        );
        // `%` itself is escaped so that the server's unescape gives it back.
        assert_eq!(extra_header_name("a%b").as_str(), "impersonate-extra-a%25b");
        // UTF-8 bytes and `:` are escaped.
        assert_eq!(
            extra_header_name("ᛄ:x").as_str(),
            "impersonate-extra-%e1%9b%84%3ax"
        );
        assert_eq!(
            extra_header_name("scopes").as_str(),
            "impersonate-extra-scopes"
        );
    }

    #[test]
    fn headers_for_a_full_user() {
        let user = UserInfo {
            username: "alice@example.com".into(),
            uid: Some("42".into()),
            groups: vec!["dev".into(), "ops".into()],
            extra: BTreeMap::from([(
                "authentication.kubernetes.io/credential-id".to_string(),
                vec!["JTI=abc".to_string()],
            )]),
        };
        let mut headers = HeaderMap::new();
        set_impersonation_headers(&mut headers, &user).unwrap();
        assert_eq!(headers["impersonate-user"], "alice@example.com");
        let groups: Vec<_> = headers.get_all("impersonate-group").iter().collect();
        assert_eq!(groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(headers["impersonate-uid"], "42");
        assert_eq!(
            headers["impersonate-extra-authentication.kubernetes.io%2fcredential-id"],
            "JTI=abc"
        );
    }

    #[test]
    fn system_authenticated_not_duplicated_and_no_empty_uid() {
        let user = UserInfo {
            username: "u".into(),
            uid: Some(String::new()),
            groups: vec!["system:authenticated".into()],
            extra: BTreeMap::new(),
        };
        let mut headers = HeaderMap::new();
        set_impersonation_headers(&mut headers, &user).unwrap();
        assert_eq!(headers.get_all("impersonate-group").iter().count(), 1);
        assert!(headers.get("impersonate-uid").is_none());
    }

    #[test]
    fn control_characters_are_refused_without_partial_headers() {
        let user = UserInfo {
            username: "ok".into(),
            groups: vec!["bad\ngroup".into()],
            ..UserInfo::default()
        };
        let mut headers = HeaderMap::new();
        assert_eq!(
            set_impersonation_headers(&mut headers, &user),
            Err(HeaderError::InvalidValue("group"))
        );
        assert!(headers.is_empty());
    }
}
