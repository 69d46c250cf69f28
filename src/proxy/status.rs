//! Errors the proxy itself returns, as Kubernetes `Status` objects.
//!
//! kubectl renders a `Status` body the way it renders the API server's own errors (e.g.
//! `error: You must be logged in to the server (Unauthorized)`), so every response the proxy
//! makes up is one. The shape follows `k8s.io/apimachinery/pkg/apis/meta/v1.Status` and the
//! reasons of `StatusReason` (`Unauthorized`, `Forbidden`, `BadRequest`, ...).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// The body of a Kubernetes `Status` failure.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    kind: &'static str,
    api_version: &'static str,
    metadata: EmptyMeta,
    status: &'static str,
    message: String,
    reason: &'static str,
    code: u16,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct EmptyMeta {}

impl Status {
    /// A failure with the given HTTP code, Kubernetes reason and human message.
    pub fn failure(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: EmptyMeta {},
            status: "Failure",
            message: message.into(),
            reason,
            code: code.as_u16(),
        }
    }

    /// 401: the client learns no more than kube-apiserver tells it (`Unauthorized`).
    pub fn unauthorized() -> Self {
        Self::failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// 403 with a message saying what was refused.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 400 for a request the proxy cannot forward as sent.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 502: the API server could not be reached or its TLS failed.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::BAD_GATEWAY, "ServiceUnavailable", message)
    }

    /// 503: the proxy cannot serve yet (e.g. the issuer's keys are not loaded).
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    /// 504: the API server did not answer in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::GATEWAY_TIMEOUT, "Timeout", message)
    }

    /// 500: a failure of the proxy itself.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// The HTTP status code.
    pub fn code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body bytes.
    pub fn to_json(&self) -> Bytes {
        // Serialising a struct of strings and integers cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// A complete HTTP response carrying this status.
    pub fn into_response<B>(self) -> Response<B>
    where
        B: From<Full<Bytes>>,
    {
        let mut response = Response::new(B::from(Full::new(self.to_json())));
        *response.status_mut() = self.code();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_body_is_kubernetes_status() {
        let body: serde_json::Value =
            serde_json::from_slice(&Status::unauthorized().to_json()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401
            })
        );
    }

    #[test]
    fn codes_match_reasons() {
        assert_eq!(Status::forbidden("x").code(), StatusCode::FORBIDDEN);
        assert_eq!(Status::bad_gateway("x").code(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            Status::gateway_timeout("x").code(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(Status::bad_request("x").code(), StatusCode::BAD_REQUEST);
    }
}
