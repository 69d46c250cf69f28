//! Inbound impersonation: a client's own `Impersonate-*` headers (`kubectl --as`, `--as-group`,
//! `--as-uid`, and a kubeconfig's `as-user-extra`), read exactly as kube-apiserver's
//! impersonation filter reads them, turned into the authorization checks that filter makes and
//! into the identity the request then runs as.
//!
//! Source: `k8s.io/apiserver/pkg/endpoints/filters/impersonation/impersonation.go`
//! (`buildImpersonationRequests`, `WithImpersonation`; k8s-semantics §3.1-3.2), legacy mode:
//!
//! - `Impersonate-User`: the first value; empty means "not impersonating".
//!   `system:serviceaccount:<ns>:<name>` with a DNS-label namespace and a DNS-subdomain name
//!   (`serviceaccount.SplitUsername`) is a ServiceAccount, checked as `serviceaccounts` in that
//!   namespace; anything else is a user, checked as `users`.
//! - `Impersonate-Group`: every header line is one group, checked as `groups`.
//! - `Impersonate-Extra-<key>`: every line is one value, checked as `userextras/<key>` in
//!   `authentication.k8s.io`; the key is the header name's suffix lower-cased and then
//!   path-unescaped (kept raw when the escaping is malformed). Values are taken as they are.
//! - `Impersonate-Uid`: the first value, checked as `uids` in `authentication.k8s.io`.
//! - Groups, extras or a uid without a user: `400 BadRequest`, "requested [...] without
//!   impersonating a user" (kube-apiserver ≤ 1.34 answered the same text as a 500).
//!
//! Deliberately stricter (each is a request kube-apiserver would accept but that cannot travel
//! on to the API server unchanged; refused with 400 rather than altered):
//! - a value that is not UTF-8 text, an empty extra key, and an extra key with upper-case
//!   letters (the API server lower-cases every extra key it receives, so the identity it would
//!   run as could differ from the one that was authorized).

use std::collections::BTreeMap;

use http::header::{HeaderMap, HeaderValue};

use crate::authn::UserInfo;

/// The user-name prefix of ServiceAccounts (`serviceaccount.ServiceAccountUsernamePrefix`).
pub const SERVICE_ACCOUNT_USERNAME_PREFIX: &str = "system:serviceaccount:";
/// The group every ServiceAccount is in (`serviceaccount.AllServiceAccountsGroup`).
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// The anonymous user (`user.Anonymous`).
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group kube-apiserver gives every authenticated user (`user.AllAuthenticated`).
pub const ALL_AUTHENTICATED_GROUP: &str = super::SYSTEM_AUTHENTICATED;
/// The group of unauthenticated requests (`user.AllUnauthenticated`).
pub const ALL_UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The API group of `userextras` and `uids` (`authentication.k8s.io`).
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

const USER_HEADER: &str = "impersonate-user";
const GROUP_HEADER: &str = "impersonate-group";
const UID_HEADER: &str = "impersonate-uid";
const EXTRA_HEADER_PREFIX: &str = "impersonate-extra-";

/// Whom the client asks to act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedUser {
    /// Any user name that is not a well-formed ServiceAccount name.
    User(String),
    /// `system:serviceaccount:<namespace>:<name>`, well-formed.
    ServiceAccount {
        /// A DNS label.
        namespace: String,
        /// A DNS subdomain.
        name: String,
    },
}

impl RequestedUser {
    /// The user name the request runs as (for a ServiceAccount, `serviceaccount.MakeUsername`).
    pub fn username(&self) -> String {
        match self {
            RequestedUser::User(name) => name.clone(),
            RequestedUser::ServiceAccount { namespace, name } => {
                format!("{SERVICE_ACCOUNT_USERNAME_PREFIX}{namespace}:{name}")
            }
        }
    }
}

/// A client's impersonation request, parsed; see the module documentation for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpersonationRequest {
    /// `Impersonate-User` (its first value, non-empty).
    pub user: RequestedUser,
    /// `Impersonate-Group` lines in the order sent.
    pub groups: Vec<String>,
    /// Decoded extra keys; values in the order sent.
    pub extra: BTreeMap<String, Vec<String>>,
    /// `Impersonate-Uid`, when non-empty.
    pub uid: Option<String>,
}

/// One `impersonate` authorization check: the resource attributes of one SubjectAccessReview.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImpersonationCheck {
    /// API group: `""` for users, groups and serviceaccounts, `authentication.k8s.io` otherwise.
    pub group: &'static str,
    /// API version as the legacy filter sets it: `""` for the core kinds, `v1` otherwise
    /// (RBAC ignores it).
    pub version: &'static str,
    /// `users`, `serviceaccounts`, `groups`, `userextras` or `uids`.
    pub resource: &'static str,
    /// The extra key, for `userextras`.
    pub subresource: Option<String>,
    /// The ServiceAccount's namespace, for `serviceaccounts`.
    pub namespace: Option<String>,
    /// The user, group, ServiceAccount name, extra value or uid asked for.
    pub name: String,
}

impl ImpersonationCheck {
    /// The verb of every impersonation check.
    pub const VERB: &'static str = "impersonate";

    /// kube-apiserver's message when this check is denied for `requestor`
    /// (`responsewriters.Forbidden` over `apierrors.NewForbidden`), e.g.
    /// `users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group
    /// "" at the cluster scope`, followed by `: <reason>` when the authorizer gave one.
    pub fn forbidden_message(&self, requestor: &str, reason: &str) -> String {
        let qualified = if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let resource = match &self.subresource {
            Some(sub) if !sub.is_empty() => format!("{}/{sub}", self.resource),
            _ => self.resource.to_string(),
        };
        let scope = match &self.namespace {
            Some(ns) if !ns.is_empty() => format!("in the namespace {ns:?}"),
            _ => "at the cluster scope".to_string(),
        };
        let mut cause = format!(
            "User {requestor:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            Self::VERB,
            self.group
        );
        if !reason.is_empty() {
            cause.push_str(": ");
            cause.push_str(reason);
        }
        if self.name.is_empty() {
            format!("{qualified} is forbidden: {cause}")
        } else {
            format!("{qualified} {:?} is forbidden: {cause}", self.name)
        }
    }
}

/// Why a client's `Impersonate-*` headers cannot be honoured. All are the client's fault (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// Groups, extras or a uid were asked for without a user (kube-apiserver's wording).
    #[error("requested {0} without impersonating a user")]
    WithoutUser(String),
    /// A header value is not UTF-8 text.
    #[error("the {0} header is not valid UTF-8 text")]
    NotText(String),
    /// `Impersonate-Extra-` with nothing after it.
    #[error("an Impersonate-Extra- header names no extra key")]
    EmptyExtraKey,
    /// The decoded extra key is not UTF-8, or has upper-case letters the API server would fold.
    #[error("the extra key {0:?} cannot be forwarded unchanged (keys must be lower-case UTF-8)")]
    UnrepresentableExtraKey(String),
}

fn text(name: &str, value: &HeaderValue) -> Result<String, InboundError> {
    std::str::from_utf8(value.as_bytes())
        .map(str::to_string)
        .map_err(|_| InboundError::NotText(name.to_string()))
}

/// Go's `url.PathUnescape`: `%XX` decoded; `None` when a `%` is not followed by two hex digits.
fn path_unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The extra key of an `Impersonate-Extra-*` header name suffix, as kube-apiserver's
/// `unescapeExtraKey(strings.ToLower(suffix))` yields it.
fn extra_key(suffix: &str) -> Result<String, InboundError> {
    if suffix.is_empty() {
        return Err(InboundError::EmptyExtraKey);
    }
    // Header names arrive lower-cased (hyper normalises them, as Go canonicalises them).
    let lowered = suffix.to_ascii_lowercase();
    let key = match path_unescape(&lowered) {
        Some(bytes) => String::from_utf8(bytes)
            .map_err(|_| InboundError::UnrepresentableExtraKey(lowered.clone()))?,
        None => lowered,
    };
    if key.is_empty() || key.chars().any(char::is_uppercase) {
        return Err(InboundError::UnrepresentableExtraKey(key));
    }
    Ok(key)
}

/// True for a DNS-1123 label (`validation.IsDNS1123Label`): at most 63 characters of
/// lower-case alphanumerics and `-`, starting and ending with an alphanumeric.
fn is_dns1123_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// True for a DNS-1123 subdomain (`validation.IsDNS1123Subdomain`): at most 253 characters,
/// dot-separated labels of the label alphabet (no per-label length limit).
fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= 253
        && text.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

/// `serviceaccount.SplitUsername`: the namespace and name of a well-formed ServiceAccount user
/// name (exactly two `:`-separated parts after the prefix, a DNS-label namespace and a
/// DNS-subdomain name), else `None`.
pub fn split_service_account(username: &str) -> Option<(String, String)> {
    let rest = username.strip_prefix(SERVICE_ACCOUNT_USERNAME_PREFIX)?;
    let mut parts = rest.split(':');
    let (namespace, name) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_dns1123_label(namespace) || !is_dns1123_subdomain(name) {
        return None;
    }
    Some((namespace.to_string(), name.to_string()))
}

/// One entry of kube-apiserver's "requested [...]" message: Go's `%v` of a
/// `v1.ObjectReference{Kind, Namespace, Name, UID, APIVersion, ResourceVersion, FieldPath}`.
fn object_reference(
    kind: &str,
    namespace: &str,
    name: &str,
    api_version: &str,
    field: &str,
) -> String {
    format!("{{{kind} {namespace} {name}  {api_version}  {field}}}")
}

/// Reads a client's impersonation request from its headers: `Ok(None)` when it does not
/// impersonate (no `Impersonate-*` header with meaning, or only an empty `Impersonate-User`).
/// Header names other than User, Group, Uid and `Extra-*` are ignored, as by kube-apiserver
/// (the proxy removes them all before forwarding).
pub fn parse(headers: &HeaderMap) -> Result<Option<ImpersonationRequest>, InboundError> {
    let user = match headers.get(USER_HEADER) {
        Some(value) => text("Impersonate-User", value)?,
        None => String::new(),
    };
    let groups = headers
        .get_all(GROUP_HEADER)
        .iter()
        .map(|v| text("Impersonate-Group", v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let Some(suffix) = name.as_str().strip_prefix(EXTRA_HEADER_PREFIX) else {
            continue;
        };
        let key = extra_key(suffix)?;
        extra
            .entry(key)
            .or_default()
            .push(text(name.as_str(), value)?);
    }
    let uid = match headers.get(UID_HEADER) {
        Some(value) => text("Impersonate-Uid", value)?,
        None => String::new(),
    };

    if user.is_empty() {
        if groups.is_empty() && extra.is_empty() && uid.is_empty() {
            return Ok(None);
        }
        let mut requested: Vec<String> = groups
            .iter()
            .map(|g| object_reference("Group", "", g, "", ""))
            .collect();
        for (key, values) in &extra {
            for value in values {
                requested.push(object_reference(
                    "UserExtra",
                    "",
                    value,
                    "authentication.k8s.io/v1",
                    key,
                ));
            }
        }
        if !uid.is_empty() {
            requested.push(object_reference(
                "UID",
                "",
                &uid,
                "authentication.k8s.io/v1",
                "",
            ));
        }
        return Err(InboundError::WithoutUser(format!(
            "[{}]",
            requested.join(" ")
        )));
    }

    let user = match split_service_account(&user) {
        Some((namespace, name)) => RequestedUser::ServiceAccount { namespace, name },
        None => RequestedUser::User(user),
    };
    Ok(Some(ImpersonationRequest {
        user,
        groups,
        extra,
        uid: (!uid.is_empty()).then_some(uid),
    }))
}

impl ImpersonationRequest {
    /// The checks kube-apiserver makes, in its order: the user (or ServiceAccount), each group,
    /// each extra value (keys in sorted order), the uid. Every one must be allowed.
    pub fn checks(&self) -> Vec<ImpersonationCheck> {
        let mut checks = Vec::new();
        checks.push(match &self.user {
            RequestedUser::User(name) => ImpersonationCheck {
                group: "",
                version: "",
                resource: "users",
                subresource: None,
                namespace: None,
                name: name.clone(),
            },
            RequestedUser::ServiceAccount { namespace, name } => ImpersonationCheck {
                group: "",
                version: "",
                resource: "serviceaccounts",
                subresource: None,
                namespace: Some(namespace.clone()),
                name: name.clone(),
            },
        });
        for group in &self.groups {
            checks.push(ImpersonationCheck {
                group: "",
                version: "",
                resource: "groups",
                subresource: None,
                namespace: None,
                name: group.clone(),
            });
        }
        for (key, values) in &self.extra {
            for value in values {
                checks.push(ImpersonationCheck {
                    group: AUTHENTICATION_GROUP,
                    version: "v1",
                    resource: "userextras",
                    subresource: Some(key.clone()),
                    namespace: None,
                    name: value.clone(),
                });
            }
        }
        if let Some(uid) = &self.uid {
            checks.push(ImpersonationCheck {
                group: AUTHENTICATION_GROUP,
                version: "v1",
                resource: "uids",
                subresource: None,
                namespace: None,
                name: uid.clone(),
            });
        }
        checks
    }

    /// The identity the request runs as once every check passed, as kube-apiserver builds it:
    /// nothing of the requestor is kept; a ServiceAccount without requested groups gets
    /// `system:serviceaccounts` and `system:serviceaccounts:<ns>`; then `system:authenticated`
    /// is added unless `system:authenticated` or `system:unauthenticated` is present (for
    /// `system:anonymous`, `system:unauthenticated` is added instead).
    pub fn target(&self) -> UserInfo {
        let username = self.user.username();
        let mut groups = self.groups.clone();
        if let RequestedUser::ServiceAccount { namespace, .. } = &self.user {
            if self.groups.is_empty() {
                groups = vec![
                    ALL_SERVICE_ACCOUNTS_GROUP.to_string(),
                    format!("{ALL_SERVICE_ACCOUNTS_GROUP}:{namespace}"),
                ];
            }
        }
        if username == ANONYMOUS_USER {
            if !groups.iter().any(|g| g == ALL_UNAUTHENTICATED_GROUP) {
                groups.push(ALL_UNAUTHENTICATED_GROUP.to_string());
            }
        } else if !groups
            .iter()
            .any(|g| g == ALL_AUTHENTICATED_GROUP || g == ALL_UNAUTHENTICATED_GROUP)
        {
            groups.push(ALL_AUTHENTICATED_GROUP.to_string());
        }
        UserInfo {
            username,
            uid: self.uid.clone(),
            groups,
            extra: self.extra.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::headers;

    #[test]
    fn no_impersonation_and_an_empty_user_alone() {
        assert_eq!(parse(&headers(&[("Accept", "*/*")])), Ok(None));
        assert_eq!(parse(&headers(&[("Impersonate-User", "")])), Ok(None));
        // Unknown Impersonate-* names mean nothing to kube-apiserver either.
        assert_eq!(parse(&headers(&[("Impersonate-Foo", "x")])), Ok(None));
    }

    #[test]
    fn groups_extras_or_uid_without_user_are_refused_with_kubes_wording() {
        // The exact text kube-apiserver 1.34 answers (verified against the test cluster).
        assert_eq!(
            parse(&headers(&[
                ("Impersonate-Group", "system:masters"),
                ("Impersonate-Uid", "1")
            ])),
            Err(InboundError::WithoutUser(
                "[{Group  system:masters    } {UID  1  authentication.k8s.io/v1  }]".into()
            ))
        );
        assert_eq!(
            parse(&headers(&[("Impersonate-User", ""), ("Impersonate-Extra-Scopes", "v")]))
                .unwrap_err()
                .to_string(),
            "requested [{UserExtra  v  authentication.k8s.io/v1  scopes}] without impersonating a user"
        );
    }

    #[test]
    fn service_account_names_follow_split_username() {
        assert_eq!(
            split_service_account("system:serviceaccount:ns:sa"),
            Some(("ns".into(), "sa".into()))
        );
        assert_eq!(
            split_service_account("system:serviceaccount:kube-system:a.b-c"),
            Some(("kube-system".into(), "a.b-c".into()))
        );
        for not_sa in [
            "system:serviceaccount:ns",
            "system:serviceaccount:ns:sa:x",
            "system:serviceaccount::sa",
            "system:serviceaccount:Ns:sa",
            "system:serviceaccount:ns.x:sa",
            "system:serviceaccount:ns:-sa",
            "system:serviceaccount:ns:",
            "system:serviceaccounts:ns:sa",
        ] {
            assert_eq!(split_service_account(not_sa), None, "{not_sa}");
        }
        let long_label = "a".repeat(64);
        assert_eq!(
            split_service_account(&format!("system:serviceaccount:{long_label}:sa")),
            None
        );
        // A malformed ServiceAccount name is an ordinary user, checked as `users`.
        let request = parse(&headers(&[(
            "Impersonate-User",
            "system:serviceaccount:ns",
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(request.checks()[0].resource, "users");
    }

    #[test]
    fn every_attribute_becomes_a_check_in_kubes_order() {
        let request = parse(&headers(&[
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Example.com%2fTeam", "a"),
            ("Impersonate-Group", "g1"),
            ("Impersonate-User", "system:serviceaccount:ns:sa"),
            ("Impersonate-Group", "g2"),
            ("Impersonate-Extra-example.com%2fteam", "b"),
            ("impersonate-extra-scopes", "view"),
        ]))
        .unwrap()
        .unwrap();
        let checks = request.checks();
        let summary: Vec<String> = checks
            .iter()
            .map(|c| {
                format!(
                    "{}|{}|{}|{}|{}|{}",
                    c.group,
                    c.resource,
                    c.subresource.as_deref().unwrap_or("-"),
                    c.namespace.as_deref().unwrap_or("-"),
                    c.name,
                    c.version
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                "|serviceaccounts|-|ns|sa|",
                "|groups|-|-|g1|",
                "|groups|-|-|g2|",
                "authentication.k8s.io|userextras|example.com/team|-|a|v1",
                "authentication.k8s.io|userextras|example.com/team|-|b|v1",
                "authentication.k8s.io|userextras|scopes|-|view|v1",
                "authentication.k8s.io|uids|-|-|u-1|v1",
            ]
        );
    }

    #[test]
    fn extra_keys_are_lowercased_then_path_unescaped() {
        let key = |suffix: &str| extra_key(suffix);
        assert_eq!(
            key("authentication.kubernetes.io%2fcredential-id").unwrap(),
            "authentication.kubernetes.io/credential-id"
        );
        assert_eq!(key("%e1%9b%84").unwrap(), "ᛄ");
        // Malformed escapes are kept as they are (kube-apiserver records them raw).
        assert_eq!(
            key("almost%zzpercent%xxencoded").unwrap(),
            "almost%zzpercent%xxencoded"
        );
        assert_eq!(key("trailing%2").unwrap(), "trailing%2");
        // `+` is not a space in a path.
        assert_eq!(key("a+b").unwrap(), "a+b");
        // Stricter than kube: keys that could not arrive upstream unchanged.
        assert_eq!(key(""), Err(InboundError::EmptyExtraKey));
        assert!(matches!(
            key("%41"),
            Err(InboundError::UnrepresentableExtraKey(_))
        ));
        assert!(matches!(
            key("%ff"),
            Err(InboundError::UnrepresentableExtraKey(_))
        ));
    }

    #[test]
    fn target_identity_follows_kube_apiserver() {
        let target = |pairs: &[(&str, &str)]| parse(&headers(pairs)).unwrap().unwrap().target();

        let user = target(&[("Impersonate-User", "bob"), ("Impersonate-Uid", "42")]);
        assert_eq!(user.username, "bob");
        assert_eq!(user.groups, vec!["system:authenticated"]);
        assert_eq!(user.uid.as_deref(), Some("42"));

        let sa = target(&[("Impersonate-User", "system:serviceaccount:ns:sa")]);
        assert_eq!(sa.username, "system:serviceaccount:ns:sa");
        assert_eq!(
            sa.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                "system:authenticated"
            ]
        );
        // Requested groups replace the ServiceAccount's own.
        let sa = target(&[
            ("Impersonate-User", "system:serviceaccount:ns:sa"),
            ("Impersonate-Group", "g"),
        ]);
        assert_eq!(sa.groups, vec!["g", "system:authenticated"]);

        let anonymous = target(&[("Impersonate-User", "system:anonymous")]);
        assert_eq!(anonymous.groups, vec!["system:unauthenticated"]);
        let explicit = target(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "system:unauthenticated"),
        ]);
        assert_eq!(explicit.groups, vec!["system:unauthenticated"]);

        let with_extra = target(&[
            ("Impersonate-User", "bob"),
            ("Impersonate-Extra-Scopes", "a"),
        ]);
        assert_eq!(with_extra.extra["scopes"], vec!["a"]);
    }

    #[test]
    fn only_the_first_user_and_uid_count() {
        let request = parse(&headers(&[
            ("Impersonate-User", "first"),
            ("Impersonate-User", "second"),
            ("Impersonate-Uid", "1"),
            ("Impersonate-Uid", "2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(request.user, RequestedUser::User("first".into()));
        assert_eq!(request.uid.as_deref(), Some("1"));
        assert_eq!(request.checks().len(), 2);
    }

    #[test]
    fn non_utf8_values_are_refused() {
        let mut map = HeaderMap::new();
        map.insert(
            "impersonate-user",
            HeaderValue::from_bytes(b"b\xffob").unwrap(),
        );
        assert_eq!(
            parse(&map),
            Err(InboundError::NotText("Impersonate-User".into()))
        );
        let mut map = HeaderMap::new();
        map.insert("impersonate-user", HeaderValue::from_static("bob"));
        map.insert(
            "impersonate-group",
            HeaderValue::from_bytes("jürgen".as_bytes()).unwrap(),
        );
        assert_eq!(parse(&map).unwrap().unwrap().groups, vec!["jürgen"]);
    }

    #[test]
    fn forbidden_messages_match_kube_apiserver() {
        let check = |pairs: &[(&str, &str)], i: usize| {
            parse(&headers(pairs)).unwrap().unwrap().checks()[i].clone()
        };
        assert_eq!(
            check(&[("Impersonate-User", "bob")], 0).forbidden_message("alice", ""),
            r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        assert_eq!(
            check(&[("Impersonate-User", "system:serviceaccount:ns:sa")], 0)
                .forbidden_message("alice", "no rule"),
            r#"serviceaccounts "sa" is forbidden: User "alice" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "ns": no rule"#
        );
        // The text the test cluster's kube-apiserver answered for a denied extra.
        assert_eq!(
            check(
                &[("Impersonate-User", "bob"), ("Impersonate-Extra-Foo", "x")],
                1
            )
            .forbidden_message("kube-oidc-proxy", ""),
            r#"userextras.authentication.k8s.io "x" is forbidden: User "kube-oidc-proxy" cannot impersonate resource "userextras/foo" in API group "authentication.k8s.io" at the cluster scope"#
        );
        assert_eq!(
            check(&[("Impersonate-User", "bob"), ("Impersonate-Group", "")], 1)
                .forbidden_message("alice", ""),
            r#"groups is forbidden: User "alice" cannot impersonate resource "groups" in API group "" at the cluster scope"#
        );
    }
}
