//! The `audit.k8s.io/v1` `Policy` (`--audit-policy-file`) and its evaluation, as
//! kube-apiserver's `staging/src/k8s.io/apiserver/pkg/audit/policy/{reader,checker}.go`.

use serde::{Deserialize, Serialize};

/// How much of a request an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

/// The stages of a request at which events are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}
