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

use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;

use http::HeaderMap;
use time::OffsetDateTime;

use crate::authn::UserInfo;
use crate::observe::digits;

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

    /// `peer / forwarded entries other than the peer`, the entries escaped.
    fn write_to(&self, out: &mut String) {
        let start = out.len();
        let _ = write!(out, "{}", self.peer);
        out.push_str(" / ");
        if self.forwarded_for.is_empty() {
            return;
        }
        let peer = out[start..out.len() - 3].to_string();
        let others = self.forwarded_for.iter().filter(|entry| **entry != peer);
        push_joined(out, others, ", ");
    }
}

/// Appends `text` with control characters escaped, so one request is always exactly one line.
fn push_escaped(out: &mut String, text: &str) {
    if !text.chars().any(char::is_control) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

/// Appends `items` escaped, separated by `separator`.
fn push_joined<'a>(out: &mut String, items: impl IntoIterator<Item = &'a String>, separator: &str) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        push_escaped(out, item);
    }
}

/// `[2021-11-25T01:05:17+0000] `: the Go proxy's timestamp ([`digits`]: built per request).
fn push_timestamp(out: &mut String, now: OffsetDateTime) {
    let year = now.year();
    if !(0..=9999).contains(&year) {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
        );
        let _ = write!(out, "[{}] ", now.format(&format).unwrap_or_default());
        return;
    }
    let offset = now.offset();
    let mut text = *b"[0000-00-00T00:00:00+0000] ";
    for (range, value) in [
        (1..5, year.unsigned_abs()),
        (6..8, u32::from(u8::from(now.month()))),
        (9..11, u32::from(now.day())),
        (12..14, u32::from(now.hour())),
        (15..17, u32::from(now.minute())),
        (18..20, u32::from(now.second())),
        (21..23, u32::from(offset.whole_hours().unsigned_abs())),
        (23..25, u32::from(offset.minutes_past_hour().unsigned_abs())),
    ] {
        digits::fill(&mut text[range], value);
    }
    if offset.is_negative() {
        text[20] = b'-';
    }
    out.push_str(digits::text(&text));
}

/// `name / groups / [uid / ]key=v1|v2 ...`, every field escaped.
fn push_user(out: &mut String, user: &UserInfo, with_uid: bool) {
    push_escaped(out, &user.username);
    out.push_str(" / ");
    push_joined(out, &user.groups, "|");
    out.push_str(" / ");
    if with_uid {
        push_escaped(out, user.uid.as_deref().unwrap_or(""));
        out.push_str(" / ");
    }
    for (key, values) in &user.extra {
        push_escaped(out, key);
        out.push('=');
        push_joined(out, values, "|");
        out.push(' ');
    }
}

/// The start both lines share: timestamp, outcome, source and URI.
fn line_start(now: OffsetDateTime, outcome: &str, source: &Source, uri: &str) -> String {
    let mut line = String::with_capacity(256);
    push_timestamp(&mut line, now);
    line.push_str(outcome);
    line.push_str(" src:[");
    source.write_to(&mut line);
    line.push_str("] URI:");
    push_escaped(&mut line, uri);
    line
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
    let mut line = line_start(now, "AuSuccess", source, uri);
    line.push_str(" inbound:[");
    push_user(&mut line, inbound, false);
    line.push(']');
    if let Some(user) = outbound {
        line.push_str(" outbound:[");
        push_user(&mut line, user, true);
        line.push(']');
    }
    line
}

/// The `AuFail` line.
pub fn failure_line(now: OffsetDateTime, source: &Source, uri: &str) -> String {
    line_start(now, "AuFail", source, uri)
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

    #[test]
    fn timestamp_is_the_go_format_for_any_offset_and_year() {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
        );
        for (unix, offset) in [
            (1_637_802_317, time::UtcOffset::UTC),
            (0, time::UtcOffset::from_hms(-5, -30, 0).unwrap()),
            (
                -62_000_000_000,
                time::UtcOffset::from_hms(9, 45, 0).unwrap(),
            ),
            (4_102_444_799, time::UtcOffset::from_hms(-12, 0, 0).unwrap()),
        ] {
            let now = OffsetDateTime::from_unix_timestamp(unix)
                .unwrap()
                .to_offset(offset);
            let mut line = String::new();
            push_timestamp(&mut line, now);
            assert_eq!(line, format!("[{}] ", now.format(&format).unwrap()));
        }
    }
}
