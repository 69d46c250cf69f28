//! Configuration: flags are parsed and validated whole at the edge, every problem is reported
//! at once, and plain structs are handed to the rest of the proxy. No other module reads flags.

pub mod audit;
pub mod authentication;
pub mod flags;
mod identity;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use flags::Flags;

use crate::authn::claims::{PrefixedClaim, RequiredClaim};
use crate::authn::issuer::{parse_certificate_authority, IssuerSettings};
use crate::authn::jws::Algorithm;
use crate::authn::mapping::{ClaimMappings, ClaimValidationRule, GroupsMapping, UsernameMapping};
use crate::authn::oidc::JwtConfig;
use crate::observe::logging::{LogFormat, LogSettings};
use crate::proxy::identity::IdentitySettings;
use crate::server::probe::IssuerReadiness;
use crate::server::tls::{parse_sni_cert_key, TlsSettings};
use crate::upstream::review::ReviewSettings;
use crate::upstream::{ClientOverrides, UpstreamConfig};

/// Everything the proxy needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind_address: IpAddr,
    pub secure_port: u16,
    pub probe_port: u16,
    pub tls: TlsSettings,
    /// 0 is replaced by the Go default of 100.
    pub http2_max_streams: u32,
    /// The issuers (from the `--oidc-*` flags or `--authentication-config`) and their policy.
    pub authentication: AuthenticationSettings,
    pub upstream: UpstreamConfig,
    pub shutdown_grace: Duration,
    pub log: LogSettings,
    /// `kubectl --as`, passthrough, no-impersonation, extra user headers, trusted proxies.
    pub identity: IdentitySettings,
    /// SubjectAccessReview / TokenReview timeout and passthrough audiences.
    pub reviews: ReviewSettings,
    /// The audit policy file and backends (none unless asked for).
    pub audit: audit::AuditSettings,
}

/// Who may authenticate, and how readiness judges the issuers.
#[derive(Debug, Clone)]
pub struct AuthenticationSettings {
    /// The JWT authenticators: one from the `--oidc-*` flags, or those of the file.
    pub jwt: Vec<JwtConfig>,
    /// The `--authentication-config` file they came from (watched for changes), or `None` on
    /// the flag path.
    pub file: Option<AuthenticationFile>,
    /// `--allow-reserved-identities`: admit `system:` usernames and groups.
    pub allow_reserved_identities: bool,
    /// `--readiness-issuers`.
    pub readiness: IssuerReadiness,
    /// `--readiness-upstream=required`: not ready while the API server does not answer.
    pub readiness_requires_upstream: bool,
}

/// The `--authentication-config` file as it was read at startup.
#[derive(Debug, Clone)]
pub struct AuthenticationFile {
    /// Where it is (re-read from here on every change).
    pub path: PathBuf,
    /// Its bytes when the authenticators were built from it.
    pub contents: Vec<u8>,
    /// `--authentication-config-reload-interval`: how often it is checked for changes.
    pub reload_interval: Duration,
}

/// Every problem found in the flags, in flag order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parses a duration as Go's flags write them (`30s`, `1m30s`, `0`) or as plain seconds
/// (kubectl's `--request-timeout=5`).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

impl Config {
    /// Validates all flags and returns the configuration, or every error found.
    ///
    /// Files named by flags are checked for readability here; their contents (certificates,
    /// CA bundles, kubeconfig) are loaded by the modules that own them, which report their own
    /// errors before the proxy listens.
    pub fn from_flags(flags: &Flags) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();

        let bind_address = flags.bind_address.parse::<IpAddr>().unwrap_or_else(|_| {
            errors.push(format!(
                "--bind-address: {:?} is not an IP address",
                flags.bind_address
            ));
            IpAddr::from([0, 0, 0, 0])
        });
        if flags.secure_port == 0 {
            errors.push("--secure-port: must be between 1 and 65535".into());
        }
        if flags.readiness_probe_port == 0 {
            errors.push("--readiness-probe-port: must be between 1 and 65535".into());
        }
        if flags.readiness_probe_port == flags.secure_port {
            errors.push(format!(
                "--readiness-probe-port: must differ from --secure-port ({})",
                flags.secure_port
            ));
        }
        if let Err(e) = parse_go_duration(&flags.flush_interval) {
            errors.push(format!("--flush-interval: {e}"));
        }

        let tls = tls_settings(flags, &mut errors);
        let authentication = authentication_settings(flags, &mut errors);
        let upstream = upstream_config(flags, &mut errors);

        let shutdown_grace = parse_go_duration(&flags.shutdown_grace_period).unwrap_or_else(|e| {
            errors.push(format!("--shutdown-grace-period: {e}"));
            Duration::from_secs(30)
        });
        let (identity, reviews) = identity::identity_settings(flags, &mut errors);
        let audit = flags.audit.settings().unwrap_or_else(|problems| {
            errors.extend(problems);
            audit::AuditSettings::default()
        });
        let format = match flags.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                errors.push(format!(
                    "--log-format: {other:?} is not one of \"text\", \"json\""
                ));
                LogFormat::Text
            }
        };

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Self {
            bind_address,
            secure_port: flags.secure_port,
            probe_port: flags.readiness_probe_port,
            tls,
            http2_max_streams: if flags.http2_max_streams_per_connection == 0 {
                100
            } else {
                flags.http2_max_streams_per_connection
            },
            authentication,
            upstream,
            shutdown_grace,
            log: LogSettings {
                verbosity: flags.verbosity,
                format,
            },
            identity,
            reviews,
            audit,
        })
    }
}

fn required_file(flag: &str, value: &Option<PathBuf>, errors: &mut Vec<String>) -> PathBuf {
    match value {
        None => {
            errors.push(format!("{flag}: required"));
            PathBuf::new()
        }
        Some(path) => {
            check_readable(flag, path, errors);
            path.clone()
        }
    }
}

fn check_readable(flag: &str, path: &PathBuf, errors: &mut Vec<String>) {
    if let Err(e) = std::fs::metadata(path) {
        errors.push(format!("{flag}: cannot read {}: {e}", path.display()));
    }
}

fn tls_settings(flags: &Flags, errors: &mut Vec<String>) -> TlsSettings {
    let cert_file = required_file("--tls-cert-file", &flags.tls_cert_file, errors);
    let key_file = required_file(
        "--tls-private-key-file",
        &flags.tls_private_key_file,
        errors,
    );
    let mut sni = Vec::new();
    for value in &flags.tls_sni_cert_key {
        match parse_sni_cert_key(value) {
            Ok(pair) => sni.push(pair),
            Err(e) => errors.push(format!("--tls-sni-cert-key: {e}")),
        }
    }
    let settings = TlsSettings {
        cert_file,
        key_file,
        sni,
        min_version: flags.tls_min_version.clone(),
        cipher_suites: flags.tls_cipher_suites.clone(),
        http2: !flags.disable_http2_serving,
    };
    for e in settings.validate() {
        errors.push(e.to_string());
    }
    settings
}

/// The `--oidc-*` flags that were given (differ from their defaults).
fn oidc_flags_given(flags: &Flags) -> Vec<&'static str> {
    let mut given = Vec::new();
    let mut check = |set: bool, name: &'static str| {
        if set {
            given.push(name);
        }
    };
    check(!flags.oidc_issuer_url.is_empty(), "--oidc-issuer-url");
    check(!flags.oidc_client_id.is_empty(), "--oidc-client-id");
    check(flags.oidc_ca_file.is_some(), "--oidc-ca-file");
    check(flags.oidc_username_claim != "sub", "--oidc-username-claim");
    check(
        !flags.oidc_username_prefix.is_empty(),
        "--oidc-username-prefix",
    );
    check(!flags.oidc_groups_claim.is_empty(), "--oidc-groups-claim");
    check(!flags.oidc_groups_prefix.is_empty(), "--oidc-groups-prefix");
    check(flags.oidc_signing_algs != ["RS256"], "--oidc-signing-algs");
    check(
        !flags.oidc_required_claim.is_empty(),
        "--oidc-required-claim",
    );
    given
}

fn authentication_settings(flags: &Flags, errors: &mut Vec<String>) -> AuthenticationSettings {
    let readiness = match flags.readiness_issuers.as_str() {
        "all" => IssuerReadiness::All,
        "any" => IssuerReadiness::Any,
        other => {
            errors.push(format!(
                "--readiness-issuers: {other:?} is not one of \"all\", \"any\""
            ));
            IssuerReadiness::All
        }
    };
    let readiness_requires_upstream = match flags.readiness_upstream.as_str() {
        "required" => true,
        "reported" => false,
        other => {
            errors.push(format!(
                "--readiness-upstream: {other:?} is not one of \"required\", \"reported\""
            ));
            true
        }
    };
    let (jwt, file) = match &flags.authentication_config {
        None => (vec![jwt_config(flags, errors)], None),
        Some(path) => {
            // kube-apiserver: "authentication-config file and oidc-* flags are mutually
            // exclusive".
            let given = oidc_flags_given(flags);
            if !given.is_empty() {
                errors.push(format!(
                    "--authentication-config: cannot be combined with the --oidc-* flags (given: \
                     {}); configure the issuer in the file instead",
                    given.join(", ")
                ));
            }
            match std::fs::read(path) {
                Err(e) => {
                    errors.push(format!(
                        "--authentication-config: cannot read {}: {e}",
                        path.display()
                    ));
                    (Vec::new(), None)
                }
                Ok(contents) => {
                    let reload_interval =
                        match parse_go_duration(&flags.authentication_config_reload_interval) {
                            Ok(interval) if !interval.is_zero() => interval,
                            Ok(_) => {
                                errors.push(
                                    "--authentication-config-reload-interval: must be positive"
                                        .into(),
                                );
                                Duration::from_secs(10)
                            }
                            Err(e) => {
                                errors
                                    .push(format!("--authentication-config-reload-interval: {e}"));
                                Duration::from_secs(10)
                            }
                        };
                    let jwt = authentication::parse(&contents).unwrap_or_else(|problems| {
                        errors.extend(problems.into_iter().map(|problem| {
                            format!("--authentication-config {}: {problem}", path.display())
                        }));
                        Vec::new()
                    });
                    let file = AuthenticationFile {
                        path: path.clone(),
                        contents,
                        reload_interval,
                    };
                    (jwt, Some(file))
                }
            }
        }
    };
    AuthenticationSettings {
        jwt,
        file,
        allow_reserved_identities: flags.allow_reserved_identities,
        readiness,
        readiness_requires_upstream,
    }
}

/// The `--oidc-*` flags as one authenticator of the file's model (kube-apiserver's
/// `ToAuthenticationConfig`, k8s-semantics §1.1), with the Go proxy's username-prefix rule.
fn jwt_config(flags: &Flags, errors: &mut Vec<String>) -> JwtConfig {
    let issuer_url = flags.oidc_issuer_url.clone();
    // kube-apiserver: "oidc-issuer-url and oidc-client-id must be specified together".
    if issuer_url.is_empty() || flags.oidc_client_id.is_empty() {
        errors.push(
            "--oidc-issuer-url and --oidc-client-id: both are required (the proxy cannot \
             authenticate anyone without an issuer)"
                .into(),
        );
    } else {
        match url_scheme(&issuer_url).as_deref() {
            Some("https") => {}
            _ => errors.push(format!(
                "--oidc-issuer-url: {issuer_url:?}: URL scheme must be https"
            )),
        }
    }
    // kube-apiserver reads the file into `issuer.certificateAuthority`.
    let certificate_authority =
        flags
            .oidc_ca_file
            .as_ref()
            .and_then(|path| match std::fs::read_to_string(path) {
                Ok(pem) => {
                    if let Err(e) = parse_certificate_authority(&pem) {
                        errors.push(format!("--oidc-ca-file: {}: {e}", path.display()));
                    }
                    Some(pem)
                }
                Err(e) => {
                    errors.push(format!(
                        "--oidc-ca-file: cannot read {}: {e}",
                        path.display()
                    ));
                    None
                }
            });
    if flags.oidc_username_claim.is_empty() {
        errors.push("--oidc-username-claim: must not be empty".into());
    }

    let mut algorithms = Vec::new();
    for name in flags.oidc_signing_algs.iter().map(|s| s.trim()) {
        match name.parse::<Algorithm>() {
            Ok(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
            Ok(_) => {}
            Err(_) => errors.push(format!(
                "--oidc-signing-algs: unsupported signing alg {name:?} (allowed: RS256, RS384, \
                 RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)"
            )),
        }
    }
    if algorithms.is_empty() && flags.oidc_signing_algs.iter().all(|s| s.trim().is_empty()) {
        algorithms.push(Algorithm::RS256);
    }

    let mut required_claims = Vec::new();
    for pair in &flags.oidc_required_claim {
        match pair.split_once('=') {
            Some((claim, value)) if !claim.is_empty() => {
                if required_claims
                    .iter()
                    .any(|r: &RequiredClaim| r.claim == claim)
                {
                    errors.push(format!(
                        "--oidc-required-claim: claim {claim:?} given more than once"
                    ));
                }
                required_claims.push(RequiredClaim {
                    claim: claim.to_string(),
                    value: value.to_string(),
                });
            }
            _ => errors.push(format!(
                "--oidc-required-claim: {pair:?} is not of the form key=value"
            )),
        }
    }

    // peers.md §3.2: the Go proxy's help promised `-` = no prefix but applied it literally;
    // we do what the help text says. Default (empty) is no prefix, as in the Go proxy.
    let username_prefix = match flags.oidc_username_prefix.as_str() {
        "-" => String::new(),
        other => other.to_string(),
    };
    JwtConfig {
        issuer: IssuerSettings {
            certificate_authority,
            ..IssuerSettings::new(issuer_url)
        },
        audiences: vec![flags.oidc_client_id.clone()],
        algorithms,
        claim_mappings: ClaimMappings {
            username: UsernameMapping::Claim(PrefixedClaim {
                claim: flags.oidc_username_claim.clone(),
                prefix: username_prefix,
            }),
            groups: (!flags.oidc_groups_claim.is_empty()).then(|| {
                GroupsMapping::Claim(PrefixedClaim {
                    claim: flags.oidc_groups_claim.clone(),
                    prefix: flags.oidc_groups_prefix.clone(),
                })
            }),
            uid: None,
            extra: Vec::new(),
        },
        // kube: each --oidc-required-claim becomes a claimValidationRules entry.
        claim_validation_rules: required_claims
            .into_iter()
            .map(ClaimValidationRule::Required)
            .collect(),
        user_validation_rules: Vec::new(),
    }
}

fn url_scheme(url: &str) -> Option<String> {
    let uri = url.parse::<http::Uri>().ok()?;
    uri.host()?;
    uri.scheme_str().map(str::to_string)
}

fn upstream_config(flags: &Flags, errors: &mut Vec<String>) -> UpstreamConfig {
    let request_timeout = match parse_go_duration(&flags.request_timeout) {
        Ok(d) if d.is_zero() => None,
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(format!("--request-timeout: {e}"));
            None
        }
    };
    for (flag, path) in [
        ("--kubeconfig", &flags.kubeconfig),
        ("--certificate-authority", &flags.certificate_authority),
        ("--client-certificate", &flags.client_certificate),
        ("--client-key", &flags.client_key),
    ] {
        if let Some(path) = path {
            check_readable(flag, path, errors);
        }
    }
    if flags.client_certificate.is_some() != flags.client_key.is_some() {
        errors.push("--client-certificate and --client-key: must be given together".into());
    }
    if let Some(server) = &flags.server {
        if !matches!(url_scheme(server).as_deref(), Some("https") | Some("http")) {
            errors.push(format!(
                "--server: {server:?} is not an http(s) URL with a host"
            ));
        }
    }
    let overrides = ClientOverrides {
        kubeconfig: flags.kubeconfig.clone(),
        context: flags.context.clone(),
        cluster: flags.cluster.clone(),
        user: flags.user.clone(),
        server: flags.server.clone(),
        certificate_authority: flags.certificate_authority.clone(),
        client_certificate: flags.client_certificate.clone(),
        client_key: flags.client_key.clone(),
        token: flags.token.clone(),
        tls_server_name: flags.tls_server_name.clone(),
        insecure_skip_tls_verify: flags.insecure_skip_tls_verify,
    };
    UpstreamConfig {
        overrides,
        request_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Flags {
        let mut all = vec!["kube-oidc-proxy"];
        all.extend_from_slice(args);
        Flags::try_parse_from(all).unwrap()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_go_duration("soon").is_err());
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let flags = parse(&[
            "--bind-address=nowhere",
            "--oidc-issuer-url=http://issuer.example",
            "--oidc-client-id=c",
            "--oidc-signing-algs=RS256,HS256,none",
            "--oidc-required-claim=novalue",
            "--log-format=xml",
            "--readiness-probe-port=6443",
            "--readiness-upstream=sometimes",
            "--audit-log-path=/tmp/audit.log",
        ]);
        let errors = Config::from_flags(&flags).unwrap_err().0;
        let joined = errors.join("\n");
        for expected in [
            "--bind-address",
            "--tls-cert-file: required",
            "--tls-private-key-file: required",
            "URL scheme must be https",
            "\"HS256\"",
            "\"none\"",
            "--oidc-required-claim",
            "--log-format",
            "--readiness-probe-port: must differ",
            "--readiness-upstream: \"sometimes\" is not one of \"required\", \"reported\"",
            "--audit-log-path: requires --audit-policy-file",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
    }

    #[test]
    fn missing_issuer_is_an_error() {
        let errors = Config::from_flags(&parse(&[])).unwrap_err().0;
        assert!(errors.iter().any(|e| e.contains("--oidc-issuer-url")));
    }

    #[test]
    fn go_style_bool_flags() {
        assert!(parse(&["--disable-http2-serving"]).disable_http2_serving);
        assert!(!parse(&["--disable-http2-serving=false"]).disable_http2_serving);
        assert_eq!(parse(&["-v=4"]).verbosity, 4);
        assert_eq!(parse(&["--v=3"]).verbosity, 3);
        assert_eq!(parse(&["-P", "9090"]).readiness_probe_port, 9090);
    }

    fn serving_pair(dir: &tempfile::TempDir) -> [String; 2] {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, pair.cert.pem()).unwrap();
        std::fs::write(&key_path, pair.signing_key.serialize_pem()).unwrap();
        [
            format!("--tls-cert-file={}", cert_path.display()),
            format!("--tls-private-key-file={}", key_path.display()),
        ]
    }

    #[test]
    fn the_authentication_config_file_replaces_the_oidc_flags() {
        let dir = tempfile::tempdir().unwrap();
        let [cert, key] = serving_pair(&dir);
        let file = dir.path().join("authn.yaml");
        std::fs::write(
            &file,
            "apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer: {url: 'https://a.example', audiences: [kube]}
  claimMappings: {username: {claim: sub, prefix: 'a:'}}
- issuer: {url: 'https://b.example', audiences: [kube]}
  claimMappings: {username: {expression: \"'b:' + claims.sub\"}}
",
        )
        .unwrap();
        let file_flag = format!("--authentication-config={}", file.display());
        let config = Config::from_flags(&parse(&[
            &file_flag,
            &cert,
            &key,
            "--allow-reserved-identities",
            "--readiness-issuers=any",
        ]))
        .unwrap();
        let urls: Vec<&str> = config
            .authentication
            .jwt
            .iter()
            .map(|jwt| jwt.issuer.url.as_str())
            .collect();
        assert_eq!(urls, ["https://a.example", "https://b.example"]);
        let source = config.authentication.file.unwrap();
        assert_eq!(source.path, file);
        assert_eq!(source.contents, std::fs::read(&file).unwrap());
        assert_eq!(source.reload_interval, Duration::from_secs(10));
        assert!(config.authentication.allow_reserved_identities);
        assert_eq!(config.authentication.readiness, IssuerReadiness::Any);

        // kube-apiserver: the file and the --oidc-* flags are mutually exclusive.
        let errors = Config::from_flags(&parse(&[
            &file_flag,
            &cert,
            &key,
            "--oidc-issuer-url=https://a.example",
            "--oidc-groups-claim=groups",
        ]))
        .unwrap_err()
        .0;
        assert_eq!(
            errors,
            [
                "--authentication-config: cannot be combined with the --oidc-* flags (given: \
              --oidc-issuer-url, --oidc-groups-claim); configure the issuer in the file instead"
            ]
        );

        // File problems are reported with the file's name, with the other flags' problems.
        std::fs::write(
            &file,
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt: []\n",
        )
        .unwrap();
        let errors = Config::from_flags(&parse(&[&file_flag, "--readiness-issuers=most"]))
            .unwrap_err()
            .0;
        let joined = errors.join("\n");
        for expected in [
            "--tls-cert-file: required",
            "--readiness-issuers: \"most\" is not one of \"all\", \"any\"",
            &format!(
                "--authentication-config {}: jwt: Required value",
                file.display()
            ),
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
        let missing = format!(
            "--authentication-config={}",
            dir.path().join("none.yaml").display()
        );
        let errors = Config::from_flags(&parse(&[&missing, &cert, &key]))
            .unwrap_err()
            .0;
        assert!(
            errors[0].starts_with("--authentication-config: cannot read "),
            "{errors:?}"
        );
    }

    #[test]
    fn the_oidc_ca_file_content_is_the_certificate_authority() {
        let dir = tempfile::tempdir().unwrap();
        let [cert, key] = serving_pair(&dir);
        let ca = rcgen::generate_simple_self_signed(vec!["issuer.example".to_string()]).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        let flags = |ca: &std::path::Path| {
            parse(&[
                "--oidc-issuer-url=https://issuer.example",
                "--oidc-client-id=kube",
                &format!("--oidc-ca-file={}", ca.display()),
                &cert,
                &key,
            ])
        };
        let config = Config::from_flags(&flags(&ca_path)).unwrap();
        assert_eq!(
            config.authentication.jwt[0]
                .issuer
                .certificate_authority
                .as_deref(),
            Some(ca.cert.pem().as_str())
        );
        std::fs::write(&ca_path, "garbage").unwrap();
        let errors = Config::from_flags(&flags(&ca_path)).unwrap_err().0;
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("--oidc-ca-file: "), "{errors:?}");
    }

    #[test]
    fn username_prefix_dash_means_none_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, pair.cert.pem()).unwrap();
        std::fs::write(&key_path, pair.signing_key.serialize_pem()).unwrap();
        let (cert, key) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
        let flags = parse(&[
            "--oidc-issuer-url=https://issuer.example",
            "--oidc-client-id=kube",
            "--oidc-username-prefix=-",
            &format!("--tls-cert-file={cert}"),
            &format!("--tls-private-key-file={key}"),
            "--oidc-required-claim=hd=example.com",
        ]);
        let config = Config::from_flags(&flags).unwrap();
        let [jwt] = config.authentication.jwt.as_slice() else {
            panic!("one authenticator expected")
        };
        assert_eq!(jwt.claim_mappings, ClaimMappings::username_claim("sub", ""));
        assert_eq!(jwt.algorithms, vec![Algorithm::RS256]);
        assert_eq!(jwt.audiences, vec!["kube".to_string()]);
        assert_eq!(
            jwt.claim_validation_rules,
            vec![ClaimValidationRule::Required(RequiredClaim {
                claim: "hd".into(),
                value: "example.com".into()
            })]
        );
        assert!(config.authentication.file.is_none());
        assert!(!config.authentication.allow_reserved_identities);
        assert_eq!(config.authentication.readiness, IssuerReadiness::All);
        assert_eq!(config.secure_port, 6443);
        assert_eq!(config.probe_port, 8080);
        assert_eq!(config.http2_max_streams, 100);
        assert!(config.upstream.overrides.is_empty());
    }
}
