//! Who a request goes upstream as: the pipeline's identity step, between authentication and
//! forwarding.
//!
//! - Default (impersonation): the proxy's own credentials plus `Impersonate-*` headers for the
//!   authenticated caller. When the caller sent `Impersonate-*` headers itself (`kubectl --as`),
//!   each requested attribute is first authorized for the caller with a SubjectAccessReview,
//!   exactly as kube-apiserver's impersonation filter would (`impersonation::inbound`), and the
//!   target identity goes upstream instead, with the caller as `originaluser.jetstack.io-*`
//!   extras. Denied: 403 naming what was denied; a review that fails or times out: 503 or 500,
//!   never an allow.
//! - `--token-passthrough` (a token no issuer claims, accepted by a TokenReview) and
//!   `--disable-impersonation` (a token the issuer verified): the caller's own token is the only
//!   credential upstream (no proxy token, no client certificate), and the client's
//!   `Impersonate-*` headers go along for the API server to authorize for that caller itself.

use std::sync::Arc;

use k8s_openapi::api::authorization::v1::ResourceAttributes;

use crate::authn::UserInfo;
use crate::impersonation::extras::ExtraUserHeaders;
use crate::impersonation::inbound::{ImpersonationCheck, ImpersonationRequest};
use crate::upstream::review::{Decision, ReviewError, Reviewer};
use crate::upstream::Upstream;

use super::client_ip::TrustedProxies;
use super::status::Status;

/// The identity-related settings of the proxy (validated flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentitySettings {
    /// `--disable-impersonation`: forward the caller's own (verified) token instead of
    /// impersonating. The API server must trust the issuer itself.
    pub disable_impersonation: bool,
    /// `--token-passthrough`: a token no configured issuer claims is checked with a TokenReview
    /// and, when accepted, forwarded as the caller's own credential.
    pub token_passthrough: bool,
    /// `--extra-user-header-client-ip` and `--extra-user-headers`.
    pub extra_user_headers: ExtraUserHeaders,
    /// `--trusted-proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
}

/// The parts the identity step needs besides its settings.
#[derive(Default)]
pub struct IdentityForwarding {
    /// The flags.
    pub settings: IdentitySettings,
    /// SubjectAccessReviews for `kubectl --as`, TokenReviews for passthrough. Without it every
    /// client impersonation request is refused and passthrough is off.
    pub reviewer: Option<Arc<Reviewer>>,
    /// The upstream client without the proxy's credentials, for the caller's own token. Without
    /// it no request is ever forwarded with the caller's token.
    pub caller_upstream: Option<Upstream>,
}

impl std::fmt::Debug for IdentityForwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityForwarding")
            .field("settings", &self.settings)
            .field("reviewer", &self.reviewer.is_some())
            .field("caller_upstream", &self.caller_upstream.is_some())
            .finish()
    }
}

/// The SubjectAccessReview attributes of one impersonation check.
fn resource_attributes(check: &ImpersonationCheck) -> ResourceAttributes {
    let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_string());
    ResourceAttributes {
        verb: Some(ImpersonationCheck::VERB.to_string()),
        group: non_empty(check.group),
        version: non_empty(check.version),
        resource: Some(check.resource.to_string()),
        subresource: check.subresource.clone(),
        namespace: check.namespace.clone(),
        name: Some(check.name.clone()),
        ..ResourceAttributes::default()
    }
}

/// The refusal when a review has no answer: 503 when the API server did not answer (timeout,
/// unreachable), 500 when it refused the review or answered nonsense. `message` says what could
/// not be done.
pub(crate) fn review_failure(error: &ReviewError, message: &str) -> Status {
    match error {
        ReviewError::Timeout(limit) => Status::service_unavailable(format!(
            "{message}: the API server did not answer within {limit:?}"
        )),
        ReviewError::Unreachable(_) => {
            Status::service_unavailable(format!("{message}: the API server could not be reached"))
        }
        ReviewError::Refused { .. } | ReviewError::Malformed(_) => Status::internal(message),
    }
}

/// Authorizes a client's impersonation request for `caller` and returns the identity to act as.
///
/// Every check of the request is reviewed (concurrently, under the reviewer's timeout); the first
/// one in kube-apiserver's order that is not allowed decides the answer: denied → 403 with
/// kube-apiserver's message; no answer → 503 (timeout, unreachable) or 500 (the API server
/// refused the review). Extra keys the proxy sets itself are refused (403) before any review.
pub async fn authorize_impersonation(
    reviewer: Option<&Reviewer>,
    caller: &UserInfo,
    request: &ImpersonationRequest,
    extras: &ExtraUserHeaders,
) -> Result<UserInfo, Status> {
    if let Some(key) = request.extra.keys().find(|key| extras.is_reserved(key)) {
        return Err(Status::forbidden(format!(
            "the extra {key:?} is set by kube-oidc-proxy itself and cannot be impersonated"
        )));
    }
    let Some(reviewer) = reviewer else {
        return Err(Status::forbidden(
            "Impersonation requests are disabled when using kube-oidc-proxy",
        ));
    };
    let checks = request.checks();
    let answers = reviewer
        .review_access(caller, checks.iter().map(resource_attributes).collect())
        .await;
    for (check, answer) in checks.iter().zip(answers) {
        match answer {
            Ok(Decision::Allowed) => {}
            Ok(Decision::Denied { reason }) => {
                let message = check.forbidden_message(&caller.username, &reason);
                tracing::info!(%message, "impersonation denied");
                return Err(Status::forbidden(message));
            }
            Err(error) => {
                tracing::warn!(%error, resource = check.resource, "impersonation review failed");
                return Err(review_failure(
                    &error,
                    "the impersonation request could not be authorized",
                ));
            }
        }
    }
    Ok(request.target())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_leave_the_core_group_and_version_empty() {
        let user = ImpersonationCheck {
            group: "",
            version: "",
            resource: "users",
            subresource: None,
            namespace: None,
            name: "bob".into(),
        };
        let attributes = resource_attributes(&user);
        assert_eq!(attributes.verb.as_deref(), Some("impersonate"));
        assert_eq!(attributes.group, None);
        assert_eq!(attributes.version, None);
        assert_eq!(attributes.resource.as_deref(), Some("users"));
        assert_eq!(attributes.name.as_deref(), Some("bob"));

        let extra = ImpersonationCheck {
            group: "authentication.k8s.io",
            version: "v1",
            resource: "userextras",
            subresource: Some("example.com/team".into()),
            namespace: None,
            name: "a".into(),
        };
        let attributes = resource_attributes(&extra);
        assert_eq!(attributes.group.as_deref(), Some("authentication.k8s.io"));
        assert_eq!(attributes.subresource.as_deref(), Some("example.com/team"));
    }

    #[test]
    fn review_failures_are_never_an_allow() {
        assert_eq!(
            review_failure(
                &ReviewError::Timeout(std::time::Duration::from_secs(5)),
                "x"
            )
            .code(),
            http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            review_failure(&ReviewError::Unreachable("x".into()), "x").code(),
            http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            review_failure(
                &ReviewError::Refused {
                    code: 403,
                    message: "no".into()
                },
                "x"
            )
            .code(),
            http::StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn without_a_reviewer_client_impersonation_is_refused() {
        let request = crate::impersonation::inbound::parse(&{
            let mut h = http::HeaderMap::new();
            h.insert("impersonate-user", "bob".parse().unwrap());
            h
        })
        .unwrap()
        .unwrap();
        let caller = UserInfo {
            username: "alice".into(),
            ..UserInfo::default()
        };
        let refused =
            authorize_impersonation(None, &caller, &request, &ExtraUserHeaders::default())
                .await
                .unwrap_err();
        assert_eq!(refused.code(), http::StatusCode::FORBIDDEN);
    }
}
