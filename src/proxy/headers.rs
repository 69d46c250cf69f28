//! Cleaning a client's request headers before anything of the proxy's own is added.
//!
//! Order matters (k8s-semantics §3.3, §5.2): everything the client sent that could carry
//! credentials, an identity or a hop-by-hop instruction is removed FIRST; only then does the
//! proxy set its own `Authorization` and `Impersonate-*` headers. A client can therefore never
//! make the proxy drop or alter the headers it adds (the `Connection: Authorization` trick of the
//! Go `ReverseProxy` Director bug class) nor smuggle an extra `Impersonate-Group`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones Go's ReverseProxy removes).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Header name prefixes that carry an identity the API server might trust: the client's own
/// impersonation requests, and the request-header ("front proxy") authentication headers in
/// case the API server trusts the proxy's client certificate as a front proxy.
const IDENTITY_PREFIXES: [&str; 2] = ["impersonate-", "x-remote-"];

/// True when the request asks for a protocol upgrade: kube-apiserver's `IsUpgradeRequest` is a
/// case-insensitive substring test for `upgrade` in any `Connection` value
/// (`k8s.io/apimachinery/pkg/util/httpstream.IsUpgradeRequest`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .to_str()
            .map(|v| v.to_ascii_lowercase().contains("upgrade"))
            .unwrap_or(false)
    })
}

/// The subprotocol prefix under which browser WebSocket clients send a bearer token
/// (`k8s.io/apiserver/pkg/authentication/request/websocket`).
pub const WEBSOCKET_BEARER_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// True for a WebSocket upgrade: an upgrade request whose `Upgrade` is `websocket`
/// (case-insensitive), as `wsstream.IsWebSocketRequest`.
pub fn is_websocket_request(headers: &HeaderMap) -> bool {
    is_upgrade_request(headers)
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

fn websocket_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The bearer token a WebSocket client put in `Sec-WebSocket-Protocol`, following
/// kube-apiserver's protocol authenticator: at most one `base64url.bearer.authorization.k8s.io.`
/// entry, unpadded base64url of UTF-8 text, and at least one other subprotocol (the one the
/// server will echo back). `Ok(None)` when there is no such entry.
pub fn websocket_bearer_token(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    use base64::Engine as _;
    let mut token = None;
    let mut others = 0;
    for protocol in websocket_protocols(headers) {
        let Some(encoded) = protocol.strip_prefix(WEBSOCKET_BEARER_PREFIX) else {
            others += 1;
            continue;
        };
        if token.is_some() {
            return Err("multiple base64.bearer.authorization tokens specified");
        }
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| "invalid base64.bearer.authorization token encoding")?;
        token = Some(
            String::from_utf8(decoded).map_err(|_| "invalid base64.bearer.authorization token")?,
        );
    }
    match token {
        Some(token) if token.is_empty() => Ok(None),
        Some(_) if others == 0 => Err("missing additional subprotocol"),
        token => Ok(token),
    }
}

/// True when the client sent any `Impersonate-*` header (any case, `Impersonate-Uid` included).
pub fn has_impersonation_headers(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name.as_str().starts_with("impersonate-"))
}

/// True for a request header the client may not pass on: its credentials (`Authorization`),
/// `Host`, a hop-by-hop header, or an identity header (`Impersonate-*`, `X-Remote-*`).
fn is_stripped_request_header(name: &HeaderName) -> bool {
    *name == header::AUTHORIZATION
        || *name == header::HOST
        || is_hop_by_hop(name)
        || IDENTITY_PREFIXES
            .iter()
            .any(|prefix| name.as_str().starts_with(prefix))
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Removes every header `doomed` selects, plus every header named in a `Connection` value.
/// One pass over the names, then one removal per header present: most requests carry only a
/// few headers, and looking each forbidden name up in the map would cost more than the scan.
fn remove_headers(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let mut remove = connection_named(headers);
    remove.extend(headers.keys().filter(|name| doomed(name)).cloned());
    for name in remove {
        headers.remove(name);
    }
}

/// Removes from a client's request everything that must not reach the API server: the
/// client's `Authorization`, every `Impersonate-*` and `X-Remote-*` header, `Host`, every
/// hop-by-hop header and every header named in a `Connection` value.
///
/// For an upgrade request (`keep_upgrade`), `Upgrade` survives and `Connection: Upgrade` is
/// set again by the proxy itself; nothing else of the client's `Connection` is kept.
pub fn strip_client_headers(headers: &mut HeaderMap, keep_upgrade: bool) {
    let upgrade = if keep_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    remove_headers(headers, is_stripped_request_header);
    // A bearer token in the WebSocket subprotocol list is a credential too; the other
    // subprotocols are the client's negotiation and go through in order.
    if headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        let kept: Vec<String> = websocket_protocols(headers)
            .filter(|p| !p.starts_with(WEBSOCKET_BEARER_PREFIX))
            .map(str::to_string)
            .collect();
        headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
        if let Ok(value) = HeaderValue::from_str(&kept.join(", ")) {
            if !kept.is_empty() {
                headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
            }
        }
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
}

/// Removes hop-by-hop headers from an upstream response before it goes back to the client.
/// For a `101 Switching Protocols` answer the caller keeps `Connection`/`Upgrade`.
pub fn strip_response_hop_by_hop(headers: &mut HeaderMap) {
    remove_headers(headers, is_hop_by_hop);
}

/// The headers a message names in its `Connection` values: hop-by-hop too (RFC 9110 §7.6.1).
/// Collected before `Connection` itself goes; an empty or odd value must not stop the removal
/// of the others (CVE-2021-33197).
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::headers;

    #[test]
    fn strips_credentials_identity_and_hop_by_hop() {
        let mut map = headers(&[
            ("Authorization", "Bearer secret"),
            ("Impersonate-User", "admin"),
            ("IMPERSONATE-GROUP", "system:masters"),
            ("impersonate-uid", "1"),
            ("Impersonate-Extra-Scopes", "x"),
            ("X-Remote-User", "admin"),
            ("X-Remote-Extra-Foo", "bar"),
            ("Host", "evil"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Proxy-Authorization", "Basic x"),
            ("Accept", "application/json"),
        ]);
        strip_client_headers(&mut map, false);
        let left: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn connection_named_headers_are_removed_even_after_an_empty_token() {
        let mut map = headers(&[
            ("Connection", ""),
            ("Connection", "X-Audit-Id, ,x-custom"),
            ("X-Audit-Id", "1"),
            ("X-Custom", "2"),
            ("Accept", "*/*"),
        ]);
        strip_client_headers(&mut map, false);
        assert!(map.get("x-audit-id").is_none());
        assert!(map.get("x-custom").is_none());
        assert!(map.get("connection").is_none());
        assert!(map.get("accept").is_some());
    }

    #[test]
    fn upgrade_is_kept_only_for_upgrade_requests() {
        let mut map = headers(&[
            ("Connection", "Upgrade, X-Foo"),
            ("Upgrade", "websocket"),
            ("X-Foo", "1"),
        ]);
        assert!(is_upgrade_request(&map));
        strip_client_headers(&mut map, true);
        assert_eq!(map.get("upgrade").unwrap(), "websocket");
        assert_eq!(map.get("connection").unwrap(), "Upgrade");
        assert!(map.get("x-foo").is_none());

        let mut plain = headers(&[("Upgrade", "websocket")]);
        strip_client_headers(&mut plain, false);
        assert!(plain.get("upgrade").is_none());
    }

    fn ws(protocols: &[&str]) -> HeaderMap {
        let mut pairs = vec![("Connection", "Upgrade"), ("Upgrade", "websocket")];
        for p in protocols {
            pairs.push(("Sec-WebSocket-Protocol", p));
        }
        headers(&pairs)
    }

    #[test]
    fn websocket_bearer_token_rules() {
        // "token" in unpadded base64url.
        let entry = "base64url.bearer.authorization.k8s.io.dG9rZW4";
        assert_eq!(
            websocket_bearer_token(&ws(&[&format!("v5.channel.k8s.io, {entry}")])),
            Ok(Some("token".to_string()))
        );
        assert_eq!(
            websocket_bearer_token(&ws(&["v5.channel.k8s.io"])),
            Ok(None)
        );
        assert_eq!(
            websocket_bearer_token(&ws(&[entry])),
            Err("missing additional subprotocol")
        );
        assert_eq!(
            websocket_bearer_token(&ws(&[entry, entry, "v4.channel.k8s.io"])),
            Err("multiple base64.bearer.authorization tokens specified")
        );
        assert!(websocket_bearer_token(&ws(&[
            "base64url.bearer.authorization.k8s.io.dG9rZW4=",
            "v5.channel.k8s.io"
        ]))
        .is_err());
        assert!(is_websocket_request(&ws(&[])));
        assert!(!is_websocket_request(&headers(&[("Upgrade", "websocket")])));
    }

    #[test]
    fn websocket_bearer_entry_is_never_forwarded() {
        let mut map = ws(&[
            "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.dG9rZW4",
            "v4.channel.k8s.io",
        ]);
        strip_client_headers(&mut map, true);
        assert_eq!(
            map.get("sec-websocket-protocol").unwrap(),
            "v5.channel.k8s.io, v4.channel.k8s.io"
        );
    }

    #[test]
    fn detects_impersonation_in_any_case() {
        assert!(has_impersonation_headers(&headers(&[(
            "IMPERSONATE-UID",
            "x"
        )])));
        assert!(!has_impersonation_headers(&headers(&[("Accept", "x")])));
    }

    #[test]
    fn upgrade_detection_is_substring_and_case_insensitive() {
        assert!(is_upgrade_request(&headers(&[(
            "Connection",
            "keep-alive, UPGRADE"
        )])));
        assert!(!is_upgrade_request(&headers(&[("Connection", "close")])));
    }
}
