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

// PLACEHOLDER until the parser lands from its branch: verb only.
/// Parses a request.
pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> RequestInfo {
    let watch = query.is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
    RequestInfo {
        path: path.to_string(),
        verb: if watch {
            "watch".into()
        } else {
            method.as_str().to_ascii_lowercase()
        },
        ..RequestInfo::default()
    }
}

/// Whether kube-apiserver treats the request as long-running.
pub fn is_long_running(info: &RequestInfo) -> bool {
    info.verb == "watch"
}
