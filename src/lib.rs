//! kube-oidc-proxy: an OIDC-authenticating, impersonating reverse proxy for the Kubernetes API.
//!
//! The way of one request (see `docs/design.md`):
//! `server` (TLS, HTTP/1.1 + HTTP/2) → `proxy` (the pipeline) → `authn` (token → user) →
//! `impersonation` (outbound headers) → `upstream` (API server client), observed by `observe`.
//! `config` reads flags at the edge and hands plain structs to the rest.

pub mod authn;
pub mod config;
pub mod impersonation;
pub mod observe;
pub mod proxy;
pub mod server;
pub mod upstream;
