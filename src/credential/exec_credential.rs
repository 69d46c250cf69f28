//! The `ExecCredential` a kubectl credential plugin prints (client-go's exec plugin contract,
//! `client.authentication.k8s.io` v1 and v1beta1): the output's `apiVersion` must be the one
//! kubectl sent in `KUBERNETES_EXEC_INFO`.

use std::time::SystemTime;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::token::Token;

/// The versions client-go still speaks (v1alpha1 was removed in Kubernetes 1.24).
pub(crate) const VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];

/// Without `KUBERNETES_EXEC_INFO` (run by hand, or an old client): v1, what kubeconfigs written
/// by `kube-oidc-proxy kubeconfig` ask for.
pub(crate) const DEFAULT_VERSION: &str = VERSIONS[0];

/// What is wrong with `KUBERNETES_EXEC_INFO`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum ExecInfoError {
    /// Not JSON, or no string `apiVersion`.
    #[error("KUBERNETES_EXEC_INFO is not an ExecCredential with an apiVersion")]
    Malformed,
    /// A version this plugin does not speak.
    #[error("KUBERNETES_EXEC_INFO asks for {0:?}; supported: {VERSIONS:?}")]
    Unsupported(String),
}

/// The version to answer with, from `KUBERNETES_EXEC_INFO` (if set).
pub(crate) fn requested_version(exec_info: Option<&str>) -> Result<&'static str, ExecInfoError> {
    let Some(info) = exec_info.filter(|i| !i.trim().is_empty()) else {
        return Ok(DEFAULT_VERSION);
    };
    let info: Value = serde_json::from_str(info).map_err(|_| ExecInfoError::Malformed)?;
    let version = info["apiVersion"]
        .as_str()
        .ok_or(ExecInfoError::Malformed)?;
    VERSIONS
        .into_iter()
        .find(|v| *v == version)
        .ok_or_else(|| ExecInfoError::Unsupported(version.to_owned()))
}

/// The ExecCredential JSON for `token`, expiring at `expiry` (RFC 3339, whole seconds, UTC).
pub(crate) fn render(version: &str, token: &Token, expiry: Option<SystemTime>) -> String {
    let mut status = json!({ "token": token.secret() });
    if let Some(expiry) = expiry.and_then(rfc3339) {
        status["expirationTimestamp"] = Value::String(expiry);
    }
    json!({
        "apiVersion": version,
        "kind": "ExecCredential",
        "status": status,
    })
    .to_string()
}

fn rfc3339(at: SystemTime) -> Option<String> {
    let at = OffsetDateTime::from(at).replace_nanosecond(0).ok()?;
    at.format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::super::token::tests::at;
    use super::*;

    #[test]
    fn the_version_follows_kubernetes_exec_info() {
        assert_eq!(requested_version(None), Ok(DEFAULT_VERSION));
        assert_eq!(requested_version(Some("")), Ok(DEFAULT_VERSION));
        let v1beta1 = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}"#;
        assert_eq!(
            requested_version(Some(v1beta1)),
            Ok("client.authentication.k8s.io/v1beta1")
        );
        let v1 = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#;
        assert_eq!(
            requested_version(Some(v1)),
            Ok("client.authentication.k8s.io/v1")
        );
        assert_eq!(
            requested_version(Some(
                r#"{"apiVersion":"client.authentication.k8s.io/v1alpha1"}"#
            )),
            Err(ExecInfoError::Unsupported(
                "client.authentication.k8s.io/v1alpha1".into()
            ))
        );
        assert_eq!(
            requested_version(Some("{nope")),
            Err(ExecInfoError::Malformed)
        );
    }

    #[test]
    fn renders_each_version() {
        let token = Token::opaque("t0k3n".into());
        for version in VERSIONS {
            let out: Value = serde_json::from_str(&render(
                version,
                &token,
                Some(at(1_788_609_238) + std::time::Duration::from_millis(700)),
            ))
            .unwrap();
            assert_eq!(
                out,
                json!({
                    "apiVersion": version,
                    "kind": "ExecCredential",
                    "status": {"token": "t0k3n", "expirationTimestamp": "2026-09-05T11:53:58Z"},
                })
            );
        }
        let out: Value = serde_json::from_str(&render(DEFAULT_VERSION, &token, None)).unwrap();
        assert_eq!(out["status"], json!({"token": "t0k3n"}));
    }
}
