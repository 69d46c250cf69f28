//! Kubernetes-format audit events for the requests the proxy serves (`--audit-policy-file`,
//! `--audit-log-*`, `--audit-webhook-*`), flag-compatible with the Go kube-oidc-proxy, which
//! took them from kube-apiserver's `AuditOptions`.
//!
//! - [`request_info`]: what a request path means (kube-apiserver's `RequestInfoFactory`), and
//!   which requests are long-running;
//! - [`policy`]: the `audit.k8s.io/v1` `Policy` file and its rule evaluation;
//! - [`event`]: the `audit.k8s.io/v1` `Event` the backends write;
//! - [`backend`]: the log file and webhook backends, neither ever blocking a request;
//! - [`recorder`]: one request's events, stage by stage.

pub mod backend;
pub mod event;
pub mod policy;
pub mod recorder;
pub mod request_info;
