//! The extras the proxy itself adds to the identity it impersonates upstream, with the Go
//! kube-oidc-proxy's key names so existing RBAC, audit queries and SIEM rules keep working:
//!
//! - after `kubectl --as` (end-user impersonation), the caller's own identity as
//!   `originaluser.jetstack.io-user` (name), `-groups` (one value per group, absent when none),
//!   `-uid` (absent when empty) and `-extra` (one JSON object string of all its extras, absent
//!   when none) — seed 001, peers.md §3.7;
//! - `remote-client-ip` with `--extra-user-header-client-ip`: the client's IP address, without
//!   a port (the Go proxy sent `ip:port`, and believed any `X-Forwarded-For`);
//! - the `--extra-user-headers` pairs.
//!
//! The API server authorizes every extra the proxy sends as `impersonate` on
//! `userextras/<key>` for the proxy's own identity (docs/rbac.md).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::authn::UserInfo;

/// Extra naming the caller who used `kubectl --as`.
pub const ORIGINAL_USER: &str = "originaluser.jetstack.io-user";
/// Extra with one value per group of the caller.
pub const ORIGINAL_GROUPS: &str = "originaluser.jetstack.io-groups";
/// Extra with the caller's uid.
pub const ORIGINAL_UID: &str = "originaluser.jetstack.io-uid";
/// Extra with the caller's extras as one JSON object string.
pub const ORIGINAL_EXTRA: &str = "originaluser.jetstack.io-extra";
/// Extra with the client's IP address (`--extra-user-header-client-ip`).
pub const REMOTE_CLIENT_IP: &str = "remote-client-ip";

/// Extras the proxy sets on an outbound identity besides the user's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraUserHeaders {
    /// `--extra-user-header-client-ip`: add [`REMOTE_CLIENT_IP`].
    pub client_ip: bool,
    /// `--extra-user-headers`: lower-case keys, values in the order given.
    pub fixed: BTreeMap<String, Vec<String>>,
}

impl ExtraUserHeaders {
    /// True when `key` is one the proxy sets itself, so a client may not ask to impersonate it:
    /// the `originaluser.jetstack.io-*` keys always, [`REMOTE_CLIENT_IP`] when enabled, and
    /// every `--extra-user-headers` key.
    pub fn is_reserved(&self, key: &str) -> bool {
        [ORIGINAL_USER, ORIGINAL_GROUPS, ORIGINAL_UID, ORIGINAL_EXTRA].contains(&key)
            || (self.client_ip && key == REMOTE_CLIENT_IP)
            || self.fixed.contains_key(key)
    }

    /// Appends the configured extras to `user`'s: the client IP first, then the fixed pairs.
    pub fn apply(&self, user: &mut UserInfo, client_ip: IpAddr) {
        if self.client_ip {
            user.extra
                .entry(REMOTE_CLIENT_IP.to_string())
                .or_default()
                .push(client_ip.to_string());
        }
        for (key, values) in &self.fixed {
            user.extra
                .entry(key.clone())
                .or_default()
                .extend(values.iter().cloned());
        }
    }
}

/// JSON as Go's `encoding/json` writes a `map[string][]string`: keys sorted, and `<`, `>`, `&`,
/// U+2028 and U+2029 escaped (Go's HTML-safe default), so the value is byte-identical to the Go
/// proxy's.
fn go_json(extra: &BTreeMap<String, Vec<String>>) -> String {
    let plain = serde_json::to_string(extra).unwrap_or_default();
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The `originaluser.jetstack.io-*` extras describing `caller`, as the Go proxy sends them.
pub fn original_user_extras(caller: &UserInfo) -> BTreeMap<String, Vec<String>> {
    let mut extra = BTreeMap::new();
    extra.insert(ORIGINAL_USER.to_string(), vec![caller.username.clone()]);
    if !caller.groups.is_empty() {
        extra.insert(ORIGINAL_GROUPS.to_string(), caller.groups.clone());
    }
    if let Some(uid) = caller.uid.as_deref().filter(|uid| !uid.is_empty()) {
        extra.insert(ORIGINAL_UID.to_string(), vec![uid.to_string()]);
    }
    if !caller.extra.is_empty() {
        extra.insert(ORIGINAL_EXTRA.to_string(), vec![go_json(&caller.extra)]);
    }
    extra
}

/// The identity to impersonate upstream for an authenticated `caller`: the caller itself, or,
/// after an authorized `kubectl --as`, the `target` plus the caller as `originaluser.*` extras;
/// then the configured extras.
pub fn outbound_user(
    caller: &UserInfo,
    target: Option<&UserInfo>,
    headers: &ExtraUserHeaders,
    client_ip: IpAddr,
) -> UserInfo {
    let mut user = match target {
        Some(target) => {
            let mut user = target.clone();
            for (key, values) in original_user_extras(caller) {
                user.extra.entry(key).or_default().extend(values);
            }
            user
        }
        None => caller.clone(),
    };
    headers.apply(&mut user, client_ip);
    user
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo {
            username: "alice".into(),
            uid: Some("u-1".into()),
            groups: vec!["dev".into(), "ops".into()],
            extra: BTreeMap::from([(
                "authentication.kubernetes.io/credential-id".to_string(),
                vec!["JTI=<a&b>".to_string()],
            )]),
        }
    }

    #[test]
    fn original_user_extras_as_the_go_proxy_sends_them() {
        let extra = original_user_extras(&alice());
        assert_eq!(extra[ORIGINAL_USER], vec!["alice"]);
        assert_eq!(extra[ORIGINAL_GROUPS], vec!["dev", "ops"]);
        assert_eq!(extra[ORIGINAL_UID], vec!["u-1"]);
        // Go's json.Marshal of map[string][]string, HTML characters escaped.
        assert_eq!(
            extra[ORIGINAL_EXTRA],
            vec![r#"{"authentication.kubernetes.io/credential-id":["JTI=\u003ca\u0026b\u003e"]}"#]
        );

        let bare = original_user_extras(&UserInfo {
            username: "carol".into(),
            ..UserInfo::default()
        });
        assert_eq!(bare.keys().collect::<Vec<_>>(), vec![ORIGINAL_USER]);
    }

    #[test]
    fn outbound_identity_for_plain_and_nested_requests() {
        let headers = ExtraUserHeaders {
            client_ip: true,
            fixed: BTreeMap::from([("team".to_string(), vec!["a".into(), "b".into()])]),
        };
        let ip: IpAddr = "192.0.2.7".parse().unwrap();

        let plain = outbound_user(&alice(), None, &headers, ip);
        assert_eq!(plain.username, "alice");
        assert_eq!(plain.extra[REMOTE_CLIENT_IP], vec!["192.0.2.7"]);
        assert_eq!(plain.extra["team"], vec!["a", "b"]);
        assert!(!plain.extra.contains_key(ORIGINAL_USER));

        let target = UserInfo {
            username: "bob".into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        };
        let nested = outbound_user(&alice(), Some(&target), &headers, ip);
        assert_eq!(nested.username, "bob");
        assert_eq!(nested.uid, None);
        assert_eq!(nested.extra[ORIGINAL_USER], vec!["alice"]);
        assert_eq!(nested.extra[REMOTE_CLIENT_IP], vec!["192.0.2.7"]);
        // The caller's credential id travels only inside originaluser.jetstack.io-extra.
        assert!(!nested
            .extra
            .contains_key("authentication.kubernetes.io/credential-id"));
    }

    #[test]
    fn reserved_keys() {
        let none = ExtraUserHeaders::default();
        assert!(none.is_reserved(ORIGINAL_USER));
        assert!(none.is_reserved(ORIGINAL_EXTRA));
        assert!(!none.is_reserved(REMOTE_CLIENT_IP));
        assert!(!none.is_reserved("scopes"));
        let some = ExtraUserHeaders {
            client_ip: true,
            fixed: BTreeMap::from([("scopes".to_string(), vec!["x".into()])]),
        };
        assert!(some.is_reserved(REMOTE_CLIENT_IP));
        assert!(some.is_reserved("scopes"));
    }
}
