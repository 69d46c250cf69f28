//! The identity flags (`--disable-impersonation`, `--token-passthrough[-audiences]`,
//! `--extra-user-header-client-ip`, `--extra-user-headers`, `--trusted-proxies`,
//! `--subject-access-review-timeout`), validated together.
//!
//! Combinations the Go kube-oidc-proxy refuses are refused here too, with every other error:
//! extra user headers cannot be added when nothing is impersonated (`--disable-impersonation`).
//! Passthrough audiences without passthrough would be silently ignored, so they are an error.

use std::collections::BTreeMap;

use http::HeaderValue;

use super::{parse_go_duration, Flags};
use crate::impersonation::extras::{self, ExtraUserHeaders};
use crate::proxy::client_ip::TrustedProxies;
use crate::proxy::identity::IdentitySettings;
use crate::upstream::review::ReviewSettings;

/// One CSV record as Go's `encoding/csv` reads it (the Go proxy parses `--extra-user-headers`
/// with it): comma-separated fields, a field may be double-quoted with `""` for a quote.
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    if line.contains(['\n', '\r']) {
        return Err("must be a single line".into());
    }
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text after a closing quote".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a bare \" in an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// `--extra-user-headers`: every occurrence is a CSV list of `key=value`; keys may repeat and
/// collect their values in order. Keys are lower-cased, as the API server would receive them.
fn extra_user_headers(
    values: &[String],
    errors: &mut Vec<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for value in values.iter().filter(|v| !v.is_empty()) {
        let pairs = match csv_fields(value) {
            Ok(pairs) => pairs,
            Err(e) => {
                errors.push(format!("--extra-user-headers: {value:?}: {e}"));
                continue;
            }
        };
        for pair in pairs {
            let Some((key, val)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                errors.push(format!(
                    "--extra-user-headers: {pair:?} must be formatted as key=value"
                ));
                continue;
            };
            if HeaderValue::from_str(val).is_err() {
                errors.push(format!(
                    "--extra-user-headers: the value of {key:?} has characters an HTTP header \
                     cannot carry"
                ));
                continue;
            }
            extra
                .entry(key.to_lowercase())
                .or_default()
                .push(val.to_string());
        }
    }
    extra
}

/// Reads and checks the identity flags; problems go to `errors`.
pub(super) fn identity_settings(
    flags: &Flags,
    errors: &mut Vec<String>,
) -> (IdentitySettings, ReviewSettings) {
    let fixed = extra_user_headers(&flags.extra_user_headers, errors);
    for key in fixed.keys() {
        let reserved = [
            extras::ORIGINAL_USER,
            extras::ORIGINAL_GROUPS,
            extras::ORIGINAL_UID,
            extras::ORIGINAL_EXTRA,
        ];
        if reserved.contains(&key.as_str()) {
            errors.push(format!(
                "--extra-user-headers: {key:?} is set by the proxy itself after kubectl --as"
            ));
        } else if key == extras::REMOTE_CLIENT_IP && flags.extra_user_header_client_ip {
            errors.push(format!(
                "--extra-user-headers: {key:?} is set by --extra-user-header-client-ip"
            ));
        }
    }
    if flags.disable_impersonation {
        if flags.extra_user_header_client_ip {
            errors.push(
                "--disable-impersonation cannot be combined with --extra-user-header-client-ip: \
                 extras travel only in impersonation headers"
                    .into(),
            );
        }
        if !fixed.is_empty() {
            errors.push(
                "--disable-impersonation cannot be combined with --extra-user-headers: extras \
                 travel only in impersonation headers"
                    .into(),
            );
        }
    }

    let token_audiences: Vec<String> = flags
        .token_passthrough_audiences
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if !token_audiences.is_empty() && !flags.token_passthrough {
        errors.push(
            "--token-passthrough-audiences: has no effect without --token-passthrough".into(),
        );
    }

    let mut trusted = Vec::new();
    for entry in flags
        .trusted_proxies
        .iter()
        .filter(|e| !e.trim().is_empty())
    {
        match entry.parse() {
            Ok(cidr) => trusted.push(cidr),
            Err(e) => errors.push(format!("--trusted-proxies: {e}")),
        }
    }

    let timeout = match parse_go_duration(&flags.subject_access_review_timeout) {
        Ok(d) if d.is_zero() => {
            errors.push("--subject-access-review-timeout: must be more than 0".into());
            ReviewSettings::default().timeout
        }
        Ok(d) => d,
        Err(e) => {
            errors.push(format!("--subject-access-review-timeout: {e}"));
            ReviewSettings::default().timeout
        }
    };

    (
        IdentitySettings {
            disable_impersonation: flags.disable_impersonation,
            token_passthrough: flags.token_passthrough,
            extra_user_headers: ExtraUserHeaders {
                client_ip: flags.extra_user_header_client_ip,
                fixed,
            },
            trusted_proxies: TrustedProxies(trusted),
        },
        ReviewSettings {
            timeout,
            token_audiences,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    fn settings(args: &[&str]) -> (IdentitySettings, ReviewSettings, Vec<String>) {
        let mut all = vec!["kube-oidc-proxy"];
        all.extend_from_slice(args);
        let flags = Flags::try_parse_from(all).unwrap();
        let mut errors = Vec::new();
        let (identity, review) = identity_settings(&flags, &mut errors);
        (identity, review, errors)
    }

    #[test]
    fn defaults() {
        let (identity, review, errors) = settings(&[]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(identity, IdentitySettings::default());
        assert_eq!(review.timeout, Duration::from_secs(5));
        assert!(review.token_audiences.is_empty());
    }

    #[test]
    fn go_style_flags_are_read() {
        let (identity, review, errors) = settings(&[
            "--token-passthrough",
            "--token-passthrough-audiences=a,b",
            "--token-passthrough-audiences=c",
            "--extra-user-header-client-ip=true",
            "--extra-user-headers=Team=a,scope=x",
            "--extra-user-headers",
            "scope=y,\"quoted=a,b\"",
            "--trusted-proxies=10.0.0.0/8,192.0.2.1",
            "--trusted-proxies=2001:db8::/32",
            "--subject-access-review-timeout=1m",
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(identity.token_passthrough && !identity.disable_impersonation);
        assert_eq!(review.token_audiences, vec!["a", "b", "c"]);
        assert_eq!(review.timeout, Duration::from_secs(60));
        assert!(identity.extra_user_headers.client_ip);
        let fixed = &identity.extra_user_headers.fixed;
        assert_eq!(fixed["team"], vec!["a"]);
        assert_eq!(fixed["scope"], vec!["x", "y"]);
        assert_eq!(fixed["quoted"], vec!["a,b"]);
        assert_eq!(identity.trusted_proxies.0.len(), 3);
    }

    #[test]
    fn every_bad_identity_flag_is_reported() {
        let (_, _, errors) = settings(&[
            "--disable-impersonation",
            "--extra-user-header-client-ip",
            "--extra-user-headers=novalue,=x,ok=1,remote-client-ip=1,originaluser.jetstack.io-user=x",
            "--extra-user-headers=bad\"quote=1",
            "--token-passthrough-audiences=a",
            "--trusted-proxies=10.0.0.1/8,nonsense",
            "--subject-access-review-timeout=0",
        ]);
        let joined = errors.join("\n");
        for expected in [
            "combined with --extra-user-header-client-ip",
            "combined with --extra-user-headers",
            "\"novalue\" must be formatted as key=value",
            "\"=x\" must be formatted as key=value",
            "\"remote-client-ip\" is set by --extra-user-header-client-ip",
            "\"originaluser.jetstack.io-user\" is set by the proxy itself",
            "a bare \" in an unquoted field",
            "has no effect without --token-passthrough",
            "host bits are set (did you mean 10.0.0.0/8?)",
            "\"nonsense\" is not an IP address",
            "--subject-access-review-timeout: must be more than 0",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
    }

    #[test]
    fn csv_records() {
        assert_eq!(csv_fields("a=1,b=2").unwrap(), vec!["a=1", "b=2"]);
        assert_eq!(csv_fields("\"a=1,2\",b").unwrap(), vec!["a=1,2", "b"]);
        assert_eq!(
            csv_fields("\"say \"\"hi\"\"\"").unwrap(),
            vec!["say \"hi\""]
        );
        assert_eq!(csv_fields("a,").unwrap(), vec!["a", ""]);
        assert!(csv_fields("\"open").is_err());
        assert!(csv_fields("\"a\"b").is_err());
        assert!(csv_fields("a\nb").is_err());
    }
}
