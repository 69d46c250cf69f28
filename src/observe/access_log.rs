//! The access log on stdout, one line per request, in the Go kube-oidc-proxy's format (seed
//! 001, peers.md §3.9) so existing SIEM parsers keep working:
//!
//! ```text
//! [2021-11-25T01:05:17+0000] AuSuccess src:[10.42.0.5 / 10.42.1.3] URI:/api/v1/pods inbound:[alice / dev|system:authenticated / ]
//! [2021-11-25T01:05:24+0000] AuFail src:[10.42.0.5 / 10.42.1.3] URI:/api/v1/nodes
//! ```
//!
//! Fixed against the Go proxy: IPv6 source addresses stay whole (Go cut at the first `:`), odd
//! `X-Forwarded-For` values cannot panic, and control characters in any field are escaped so a
//! crafted claim cannot forge a second line. Timestamps are UTC.

use std::io::Write;
use std::net::IpAddr;

use http::HeaderMap;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::authn::UserInfo;

/// Where a request came from, as logged.
#[derive(Debug, Clone)]
pub struct Source {
    /// The TCP peer's IP (never taken from a header).
    pub peer: IpAddr,
    /// The client's `X-Forwarded-For` entries (untrusted, logged for correlation only).
    pub forwarded_for: Vec<String>,
}

impl Source {
    /// Reads the source of a request from its peer address and headers.
    pub fn from_request(peer: IpAddr, headers: &HeaderMap) -> Self {
        let forwarded_for = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        Self {
            peer,
            forwarded_for,
        }
    }

    fn render(&self) -> String {
        let peer = self.peer.to_string();
        let others: Vec<&str> = self
            .forwarded_for
            .iter()
            .map(String::as_str)
            .filter(|entry| *entry != peer)
            .collect();
        format!("{} / {}", peer, escape(&others.join(", ")))
    }
}

/// Replaces control characters so one request is always exactly one line.
fn escape(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn timestamp(now: OffsetDateTime) -> String {
    let format = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
    );
    now.format(&format).unwrap_or_default()
}

fn render_user(user: &UserInfo, with_uid: bool) -> String {
    let groups: Vec<String> = user.groups.iter().map(|g| escape(g)).collect();
    let extras: String = user
        .extra
        .iter()
        .map(|(key, values)| {
            let values: Vec<String> = values.iter().map(|v| escape(v)).collect();
            format!("{}={} ", escape(key), values.join("|"))
        })
        .collect();
    if with_uid {
        format!(
            "{} / {} / {} / {}",
            escape(&user.username),
            groups.join("|"),
            escape(user.uid.as_deref().unwrap_or("")),
            extras
        )
    } else {
        format!(
            "{} / {} / {}",
            escape(&user.username),
            groups.join("|"),
            extras
        )
    }
}

/// The `AuSuccess` line; `outbound` is the impersonated target when it differs from `inbound`
/// (`kubectl --as`, a later feature).
pub fn success_line(
    now: OffsetDateTime,
    source: &Source,
    uri: &str,
    inbound: &UserInfo,
    outbound: Option<&UserInfo>,
) -> String {
    let outbound = outbound
        .map(|user| format!(" outbound:[{}]", render_user(user, true)))
        .unwrap_or_default();
    format!(
        "[{}] AuSuccess src:[{}] URI:{} inbound:[{}]{}",
        timestamp(now),
        source.render(),
        escape(uri),
        render_user(inbound, false),
        outbound
    )
}

/// The `AuFail` line.
pub fn failure_line(now: OffsetDateTime, source: &Source, uri: &str) -> String {
    format!(
        "[{}] AuFail src:[{}] URI:{}",
        timestamp(now),
        source.render(),
        escape(uri)
    )
}

/// Writes one line to stdout (whole, under stdout's lock).
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_637_802_317).unwrap()
    }

    #[test]
    fn success_line_matches_the_go_format() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "10.42.1.3, 10.42.0.5".parse().unwrap());
        let source = Source::from_request("10.42.0.5".parse().unwrap(), &headers);
        let user = UserInfo {
            username: "mlbadmin1".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            ..UserInfo::default()
        };
        assert_eq!(
            success_line(
                at(),
                &source,
                "/api/v1/namespaces/openunison/pods?limit=500",
                &user,
                None
            ),
            "[2021-11-25T01:05:17+0000] AuSuccess src:[10.42.0.5 / 10.42.1.3] \
             URI:/api/v1/namespaces/openunison/pods?limit=500 \
             inbound:[mlbadmin1 / system:masters|system:authenticated / ]"
        );
    }

    #[test]
    fn extras_and_outbound() {
        let source = Source::from_request("::1".parse().unwrap(), &HeaderMap::new());
        let user = UserInfo {
            username: "a".into(),
            uid: Some("7".into()),
            groups: vec![],
            extra: BTreeMap::from([("k".into(), vec!["v1".into(), "v2".into()])]),
        };
        let line = success_line(at(), &source, "/x", &user, Some(&user));
        assert!(line.contains("src:[::1 / ]"), "{line}");
        assert!(
            line.ends_with("inbound:[a /  / k=v1|v2 ] outbound:[a /  / 7 / k=v1|v2 ]"),
            "{line}"
        );
    }

    #[test]
    fn ipv6_failure_line_and_no_line_injection() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", ",,, ::ffff:1.2.3.4 ,".parse().unwrap());
        let source = Source::from_request("2001:db8::1".parse().unwrap(), &headers);
        assert_eq!(
            failure_line(at(), &source, "/api"),
            "[2021-11-25T01:05:17+0000] AuFail src:[2001:db8::1 / ::ffff:1.2.3.4] URI:/api"
        );
        let user = UserInfo {
            username: "evil\n[x] AuSuccess".into(),
            ..UserInfo::default()
        };
        let line = success_line(at(), &source, "/", &user, None);
        assert!(!line.contains('\n'));
        assert!(line.contains("evil\\n[x]"));
    }
}
