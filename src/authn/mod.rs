//! Authentication: a bearer token becomes a Kubernetes user, or is refused.
//!
//! Rules follow kube-apiserver's JWT authenticator
//! (`staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/oidc/oidc.go`).

pub mod claims;
pub mod jwk;
pub mod jws;

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
