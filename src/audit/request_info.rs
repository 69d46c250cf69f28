//! What a request path means to kube-apiserver: verb, API group and version, namespace,
//! resource, subresource and name, as `RequestInfoFactory.NewRequestInfo` computes them
//! (`staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`).

/// kube-apiserver's `request.RequestInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// False for non-resource URLs such as `/healthz` or `/apis`.
    pub is_resource_request: bool,
    /// The URL path, without the query.
    pub path: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, ...), or for non-resource
    /// requests the lower-cased HTTP method.
    pub verb: String,
    /// `api` or `apis` for resource requests.
    pub api_prefix: String,
    /// Empty for the core group.
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The path segments after the version (and after `namespaces/<ns>` for namespaced ones).
    pub parts: Vec<String>,
}
