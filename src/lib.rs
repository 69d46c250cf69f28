//! kube-oidc-proxy: an OIDC-authenticating, impersonating reverse proxy for the Kubernetes API.
//!
//! The way of one request (see `docs/design.md`):
//! `server` (TLS, HTTP/1.1 + HTTP/2) → `proxy` (the pipeline) → `authn` (token → user) →
//! `impersonation` (outbound headers) → `upstream` (API server client), observed by `observe`.
//! `config` reads flags at the edge and hands plain structs to the rest.
//!
//! Beside the proxy, the same binary is the pipelines' kubectl credential plugin
//! (`credential`) and writes their kubeconfig (`kubeconfig_cmd`).

pub mod audit;
pub mod authn;
pub mod config;
pub mod credential;
pub mod impersonation;
pub mod kubeconfig_cmd;
pub mod observe;
pub mod proxy;
pub mod server;
pub mod upstream;

/// Helpers shared by unit tests of several modules.
#[cfg(test)]
pub(crate) mod testing {
    use http::header::{HeaderMap, HeaderName, HeaderValue};

    /// A header map from name/value pairs, in order (repeated names append).
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }
}
