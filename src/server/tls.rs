//! Serving TLS: a rustls [`ServerConfig`] built from the Go-style `--tls-*` flags, and serving
//! certificates that are re-read from disk while the proxy runs.
//!
//! The Go kube-oidc-proxy serves through k8s.io/apiserver `SecureServingOptions`
//! (`pkg/server/options/serving.go`) and its `dynamiccertificates` controller. This module keeps
//! the flags and the behaviour of that code, on rustls 0.23 with the aws-lc-rs provider:
//!
//! - `--tls-min-version` takes Go's names (`VersionTLS10` … `VersionTLS13`); the default is TLS 1.2,
//!   as in `SecureServingInfo`. rustls speaks only TLS 1.2 and 1.3, so `VersionTLS10` and
//!   `VersionTLS11` are accepted and serve TLS 1.2+ (stricter than Go; see [`protocol_versions`]).
//! - `--tls-cipher-suites` takes Go's IANA-style names. As in Go's `crypto/tls`, the list constrains
//!   TLS 1.2 only and every TLS 1.3 suite stays enabled (see [`cipher_suites`]). Names Go accepts but
//!   rustls does not implement (CBC, RC4, 3DES, static-RSA key exchange) refuse to start (stricter).
//! - `--tls-sni-cert-key` follows Go's `NamedCertKey` syntax (see [`parse_sni_cert_key`]) and the
//!   name selection of `dynamiccertificates.BuildNamedCertificates` and `crypto/tls`
//!   (see [`ServingCertificates`]).
//! - Certificates are reloaded from disk by polling the file contents (see
//!   [`ServingCertificates::watch`]), which, unlike an inotify watch on the file, survives the
//!   Kubernetes Secret-volume `..data` symlink swap.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use rustls::crypto::aws_lc_rs::{self as provider, cipher_suite as suite};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::version::{TLS12, TLS13};
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

#[cfg(test)]
mod tests;

/// The serving-TLS flags, as parsed by the config layer.
///
/// `cert_file`/`key_file` are `--tls-cert-file`/`--tls-private-key-file` (both required: the proxy
/// never generates a self-signed pair), `sni` holds every `--tls-sni-cert-key` in flag order,
/// `min_version` is `--tls-min-version` (`None` or empty = TLS 1.2), `cipher_suites` is
/// `--tls-cipher-suites` (empty = rustls defaults), and `http2` is false under
/// `--disable-http2-serving`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain of the default serving pair, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of the default serving pair.
    pub key_file: PathBuf,
    /// Additional pairs chosen by the client's SNI name; earlier entries win on equal names.
    pub sni: Vec<SniCertKey>,
    /// Go name of the minimum TLS version; see [`protocol_versions`].
    pub min_version: Option<String>,
    /// Go names of the allowed TLS 1.2 cipher suites; see [`cipher_suites`].
    pub cipher_suites: Vec<String>,
    /// Offer HTTP/2 through ALPN (`h2` before `http/1.1`).
    pub http2: bool,
}

/// One `--tls-sni-cert-key` value: a certificate/key pair and the SNI names it serves.
///
/// With empty `names`, the names come from the certificate itself: its subject CN when that is a
/// DNS-1123 subdomain (optionally `*.`-prefixed, or `*`) and not an IP address, plus every DNS SAN
/// (k8s.io/apiserver `dynamiccertificates.getCertificateNames`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertKey {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Explicit names or `*.domain` patterns; these win over names taken from any certificate.
    pub names: Vec<String>,
}

/// Everything that can go wrong while configuring serving TLS or loading its certificates.
///
/// Messages name the flag or the file at fault and never contain key material (PEM parse errors
/// are reduced to a fixed description for that reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// `--tls-cert-file` or `--tls-private-key-file` is missing; both are required.
    #[error("--tls-cert-file and --tls-private-key-file are both required")]
    MissingServingPair,
    /// A `--tls-sni-cert-key` value breaks Go's `NamedCertKey` syntax
    /// (`cert.crt,key.key` or `cert.crt,key.key:name,name`).
    #[error("invalid --tls-sni-cert-key {value:?}: {reason}")]
    MalformedSniCertKey {
        /// The flag value as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `--tls-min-version` is not one of Go's version names.
    #[error(
        "unknown --tls-min-version {name:?}; valid names: VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13"
    )]
    UnknownTlsVersion {
        /// The name as given.
        name: String,
    },
    /// `--tls-cipher-suites` names suites that are insecure or that rustls does not implement,
    /// or names no suite at all. Every bad name is listed.
    #[error("{}", describe_bad_cipher_suites(insecure, unknown))]
    InvalidCipherSuites {
        /// Names Go knows that are insecure or unsupported by rustls, in flag order.
        insecure: Vec<String>,
        /// Names that are no cipher suite, in flag order.
        unknown: Vec<String>,
    },
    /// A certificate or key file cannot be read.
    #[error("cannot read {}: {reason}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A file is not well-formed PEM.
    #[error("{}: malformed PEM ({reason})", path.display())]
    MalformedPem {
        /// The file.
        path: PathBuf,
        /// A fixed description of the fault.
        reason: &'static str,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("{}: no CERTIFICATE PEM block found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key block (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[error("{}: no private key PEM block found", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds a key the aws-lc-rs provider cannot sign with.
    #[error("{}: unsupported private key: {reason}", path.display())]
    UnsupportedPrivateKey {
        /// The file.
        path: PathBuf,
        /// The provider's reason.
        reason: String,
    },
    /// The first certificate of a chain is not a parsable X.509 certificate.
    #[error("{}: invalid leaf certificate: {reason}", path.display())]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
    /// The private key is not the key of the leaf certificate.
    #[error("private key {} does not match certificate {}", key_file.display(), cert_file.display())]
    KeyMismatch {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
    },
    /// rustls refused the assembled configuration.
    #[error("cannot build the TLS server configuration: {0}")]
    ServerConfig(String),
}

fn describe_bad_cipher_suites(insecure: &[String], unknown: &[String]) -> String {
    let insecure = insecure
        .iter()
        .map(|name| format!("cipher suite {name} is insecure/unsupported"));
    let unknown = unknown
        .iter()
        .map(|name| format!("unknown cipher suite {name}"));
    insecure.chain(unknown).collect::<Vec<_>>().join("; ")
}

/// Parses one `--tls-sni-cert-key` value with Go's `NamedCertKey.Set` rules
/// (k8s.io/component-base `cli/flag/namedcertkey_flag.go`).
///
/// The value splits at the first `:` into the pair and an optional comma-separated list of names;
/// the pair must be exactly two comma-separated paths; surrounding spaces are trimmed everywhere.
/// A `:` with nothing after it is an error, as in Go. Stricter than Go: an empty path or an empty
/// name inside the list (`a,,b`) is refused rather than carried into a certificate that cannot
/// load or a name that matches clients sending no SNI.
pub fn parse_sni_cert_key(value: &str) -> Result<SniCertKey, TlsError> {
    let malformed = |reason| TlsError::MalformedSniCertKey {
        value: value.to_owned(),
        reason,
    };
    let (pair, names) = match value.split_once(':') {
        Some((pair, names)) => {
            let names = names.trim();
            if names.is_empty() {
                return Err(malformed("empty names list is not allowed"));
            }
            let names: Vec<String> = names.split(',').map(|n| n.trim().to_owned()).collect();
            if names.iter().any(String::is_empty) {
                return Err(malformed("empty name in the names list"));
            }
            (pair, names)
        }
        None => (value, Vec::new()),
    };
    let mut paths = pair.split(',').map(str::trim);
    let (Some(cert_file), Some(key_file), None) = (paths.next(), paths.next(), paths.next()) else {
        return Err(malformed(
            "expected comma separated certificate and key file paths",
        ));
    };
    if cert_file.is_empty() || key_file.is_empty() {
        return Err(malformed("empty certificate or key file path"));
    }
    Ok(SniCertKey {
        cert_file: cert_file.into(),
        key_file: key_file.into(),
        names,
    })
}

/// The TLS versions to serve for Go's `--tls-min-version` name (k8s.io/component-base
/// `cli/flag.TLSVersion`), newest first.
///
/// `None` or `""` means the kube-apiserver default minimum, TLS 1.2. `VersionTLS10`,
/// `VersionTLS11` and `VersionTLS12` give TLS 1.3 + 1.2: rustls cannot speak TLS 1.0 or 1.1, so
/// the effective minimum is 1.2, a stricter result than Go's. `VersionTLS13` gives TLS 1.3 only.
/// Any other name is an error listing the valid names.
pub fn protocol_versions(
    min: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    match min.unwrap_or("") {
        "" | "VersionTLS10" | "VersionTLS11" | "VersionTLS12" => Ok(vec![&TLS13, &TLS12]),
        "VersionTLS13" => Ok(vec![&TLS13]),
        other => Err(TlsError::UnknownTlsVersion {
            name: other.to_owned(),
        }),
    }
}

/// What a Go cipher suite name means to us.
enum GoCipherSuite {
    /// Implemented by the aws-lc-rs provider.
    Supported(SupportedCipherSuite),
    /// Known to Go (`tls.CipherSuites()` or `tls.InsecureCipherSuites()`) but insecure or not
    /// implemented by rustls: CBC, RC4, 3DES and static-RSA key exchange.
    InsecureOrUnsupported,
    /// Not a cipher suite name Go accepts.
    Unknown,
}

/// Maps Go's cipher suite names, as accepted by k8s.io/component-base `cli/flag.TLSCipherSuites`
/// (Go's `crypto/tls` secure and insecure lists, plus the deprecated `..._CHACHA20_POLY1305`
/// spellings kept for compatibility). Matching is case-sensitive, as in Go.
fn go_cipher_suite(name: &str) -> GoCipherSuite {
    use GoCipherSuite::{InsecureOrUnsupported, Supported, Unknown};
    match name {
        "TLS_AES_128_GCM_SHA256" => Supported(suite::TLS13_AES_128_GCM_SHA256),
        "TLS_AES_256_GCM_SHA384" => Supported(suite::TLS13_AES_256_GCM_SHA384),
        "TLS_CHACHA20_POLY1305_SHA256" => Supported(suite::TLS13_CHACHA20_POLY1305_SHA256),
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            Supported(suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            Supported(suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            Supported(suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            Supported(suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            Supported(suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            Supported(suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_RSA_WITH_RC4_128_SHA"
        | "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        | "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" => InsecureOrUnsupported,
        _ => Unknown,
    }
}

/// The cipher suites to serve for Go's `--tls-cipher-suites` names.
///
/// An empty list gives the aws-lc-rs provider's defaults. Otherwise the result is every TLS 1.3
/// suite plus the named TLS 1.2 suites, in rustls's preference order: Go's `crypto/tls` applies
/// `Config.CipherSuites` to TLS 1.0–1.2 only and always enables all TLS 1.3 suites, so a listed
/// TLS 1.3 name is accepted but changes nothing, and a list without TLS 1.2 suites leaves TLS 1.2
/// clients with nothing to agree on (as in Go). List order is ignored, as in Go since 1.17.
/// Names that Go knows but that are insecure or not implemented by rustls, and unknown names,
/// are all reported in one [`TlsError::InvalidCipherSuites`] (Go would accept the insecure ones).
pub fn cipher_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    if names.is_empty() {
        return Ok(provider::DEFAULT_CIPHER_SUITES.to_vec());
    }
    let mut tls12_named = Vec::new();
    let mut insecure = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        match go_cipher_suite(name) {
            GoCipherSuite::Supported(named) => tls12_named.push(named.suite()),
            GoCipherSuite::InsecureOrUnsupported => insecure.push(name.clone()),
            GoCipherSuite::Unknown => unknown.push(name.clone()),
        }
    }
    if !insecure.is_empty() || !unknown.is_empty() {
        return Err(TlsError::InvalidCipherSuites { insecure, unknown });
    }
    Ok(provider::DEFAULT_CIPHER_SUITES
        .iter()
        .filter(|s| s.tls13().is_some() || tls12_named.contains(&s.suite()))
        .copied()
        .collect())
}

/// ALPN protocols offered by the server, most preferred first.
fn alpn_protocols(http2: bool) -> Vec<Vec<u8>> {
    if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    }
}

/// Builds the rustls server configuration for `settings`, serving the certificates of `certs`.
///
/// No client certificates are requested (the proxy authenticates by bearer token). ALPN offers
/// `h2` and `http/1.1` when `settings.http2`, else `http/1.1` only. Errors when the version or
/// cipher suite flags are invalid.
pub fn server_config(
    settings: &TlsSettings,
    certs: Arc<ServingCertificates>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let versions = protocol_versions(settings.min_version.as_deref())?;
    if matches!(
        settings.min_version.as_deref(),
        Some("VersionTLS10" | "VersionTLS11")
    ) {
        tracing::warn!(
            min_version = settings.min_version.as_deref(),
            "TLS 1.0 and 1.1 are not supported; serving TLS 1.2 and newer"
        );
    }
    let crypto = CryptoProvider {
        cipher_suites: cipher_suites(&settings.cipher_suites)?,
        ..provider::default_provider()
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto))
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::ServerConfig(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = alpn_protocols(settings.http2);
    Ok(Arc::new(config))
}

impl TlsSettings {
    /// Checks every serving-TLS setting without serving and returns every error found (empty when
    /// all is well): the serving pair is given, the version and cipher suite names are valid, and
    /// each pair (default and SNI) reads, parses and has a matching key.
    pub fn validate(&self) -> Vec<TlsError> {
        let mut errors = Vec::new();
        if let Err(e) = serving_pair_given(self) {
            errors.push(e);
        }
        if let Err(e) = protocol_versions(self.min_version.as_deref()) {
            errors.push(e);
        }
        if let Err(e) = cipher_suites(&self.cipher_suites) {
            errors.push(e);
        }
        let sources = PairSource::all(self);
        let skip_default = usize::from(errors.contains(&TlsError::MissingServingPair));
        for source in sources.iter().skip(skip_default) {
            if let Err(e) = source.read().and_then(|bytes| source.parse(&bytes)) {
                errors.push(e);
            }
        }
        errors
    }
}

fn serving_pair_given(settings: &TlsSettings) -> Result<(), TlsError> {
    if settings.cert_file.as_os_str().is_empty() || settings.key_file.as_os_str().is_empty() {
        return Err(TlsError::MissingServingPair);
    }
    Ok(())
}

/// Where one certificate/key pair lives and which names it was configured for.
#[derive(Debug)]
struct PairSource {
    cert_file: PathBuf,
    key_file: PathBuf,
    /// Explicit SNI names, lower-cased; empty for the default pair and for SNI pairs whose names
    /// come from the certificate.
    explicit_names: Vec<String>,
}

/// The raw contents of a pair's files.
struct PairBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// A parsed pair whose key matches its leaf certificate.
struct LoadedPair {
    certified: Arc<CertifiedKey>,
    /// Names taken from the leaf (CN and DNS SANs), lower-cased.
    leaf_names: Vec<String>,
    not_after: SystemTime,
}

impl PairSource {
    /// The default pair first, then the SNI pairs in flag order.
    fn all(settings: &TlsSettings) -> Vec<PairSource> {
        let default = PairSource {
            cert_file: settings.cert_file.clone(),
            key_file: settings.key_file.clone(),
            explicit_names: Vec::new(),
        };
        let sni = settings.sni.iter().map(|s| PairSource {
            cert_file: s.cert_file.clone(),
            key_file: s.key_file.clone(),
            explicit_names: s.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        });
        std::iter::once(default).chain(sni).collect()
    }

    fn read(&self) -> Result<PairBytes, TlsError> {
        Ok(PairBytes {
            cert: read_file(&self.cert_file)?,
            key: read_file(&self.key_file)?,
        })
    }

    /// Parses the chain and key (Go `tls.X509KeyPair`) and checks that the key belongs to the leaf.
    fn parse(&self, bytes: &PairBytes) -> Result<LoadedPair, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&bytes.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(&self.cert_file, &e))?;
        let Some(leaf) = chain.first() else {
            return Err(TlsError::NoCertificate {
                path: self.cert_file.clone(),
            });
        };
        let (leaf_names, not_after) =
            leaf_details(leaf).map_err(|reason| TlsError::InvalidCertificate {
                path: self.cert_file.clone(),
                reason,
            })?;
        let key = PrivateKeyDer::from_pem_slice(&bytes.key).map_err(|e| match e {
            pem::Error::NoItemsFound => TlsError::NoPrivateKey {
                path: self.key_file.clone(),
            },
            e => pem_error(&self.key_file, &e),
        })?;
        let signing_key = provider::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::UnsupportedPrivateKey {
                path: self.key_file.clone(),
                reason: e.to_string(),
            })?;
        let certified = CertifiedKey::new(chain, signing_key);
        // Deny by default: a key whose public half cannot be compared counts as a mismatch.
        if certified.keys_match().is_err() {
            return Err(TlsError::KeyMismatch {
                cert_file: self.cert_file.clone(),
                key_file: self.key_file.clone(),
            });
        }
        Ok(LoadedPair {
            certified: Arc::new(certified),
            leaf_names,
            not_after,
        })
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::ReadFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Maps a PEM error to a fixed description: the library's own message may quote file content,
/// which for a key file would be key material.
fn pem_error(path: &Path, error: &pem::Error) -> TlsError {
    let reason = match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        pem::Error::Base64Decode(_) => "invalid base64",
        pem::Error::SectionTooLarge => "section too large",
        pem::Error::NoItemsFound => "no PEM block found",
        _ => "unreadable PEM",
    };
    TlsError::MalformedPem {
        path: path.to_owned(),
        reason,
    }
}

/// The SNI names (k8s.io/apiserver `dynamiccertificates.getCertificateNames`: the subject CN when
/// it is `*` or a DNS-1123 subdomain after an optional `*.` and is not an IP address, then every
/// DNS SAN; IP SANs never, since SNI carries no IPs) and the notAfter time of a leaf certificate.
fn leaf_details(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, SystemTime), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    // Go's pkix.Name keeps the last CN attribute of the subject.
    let common_name = cert
        .subject()
        .iter_common_name()
        .last()
        .and_then(|cn| cn.as_str().ok());
    if let Some(cn) = common_name {
        let is_ip = cn.parse::<IpAddr>().is_ok();
        let is_domain = cn == "*" || is_dns1123_subdomain(cn.strip_prefix("*.").unwrap_or(cn));
        if !is_ip && is_domain {
            names.push(cn.to_owned());
        }
    }
    if let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    let not_after = unix_seconds_to_system_time(cert.validity().not_after.timestamp());
    Ok((names, not_after))
}

/// k8s.io/apimachinery `validation.IsDNS1123Subdomain`: at most 253 characters of dot-separated
/// labels, each of lower-case alphanumerics and `-`, starting and ending alphanumeric.
fn is_dns1123_subdomain(value: &str) -> bool {
    let label_ok = |label: &str| {
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
            }
            _ => false,
        }
    };
    value.len() <= 253 && value.split('.').all(label_ok)
}

fn unix_seconds_to_system_time(seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

/// SHA-256 of a file's bytes: reload compares contents without keeping a copy of the key's PEM.
fn fingerprint(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

/// One consistent generation of served pairs; swapped as a whole.
struct ServedPairs {
    /// Fingerprints of every cert and key file, in source order, as loaded.
    fingerprints: Vec<Vec<u8>>,
    default: Arc<CertifiedKey>,
    /// Lower-cased SNI name or `*.domain` pattern → pair.
    by_name: HashMap<String, Arc<CertifiedKey>>,
    not_after: SystemTime,
}

fn fingerprints_of(files: &[PairBytes]) -> Vec<Vec<u8>> {
    files
        .iter()
        .flat_map(|pair| [fingerprint(&pair.cert), fingerprint(&pair.key)])
        .collect()
}

impl ServedPairs {
    /// Parses every pair and builds the name map; fails on the first bad pair.
    fn build(sources: &[PairSource], files: &[PairBytes]) -> Result<ServedPairs, TlsError> {
        let loaded = sources
            .iter()
            .zip(files)
            .map(|(source, bytes)| source.parse(bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let (default, sni) = loaded
            .split_first()
            .expect("the default pair is always present");

        // dynamiccertificates.BuildNamedCertificates: names taken from a certificate go in first,
        // the earliest flag winning a shared name; explicit names then override them, again the
        // earliest flag winning.
        let mut by_name = HashMap::new();
        for (source, pair) in sources[1..].iter().zip(sni) {
            if source.explicit_names.is_empty() {
                for name in &pair.leaf_names {
                    by_name
                        .entry(name.clone())
                        .or_insert_with(|| Arc::clone(&pair.certified));
                }
            }
        }
        let mut explicit = HashMap::new();
        for (source, pair) in sources[1..].iter().zip(sni) {
            for name in &source.explicit_names {
                explicit
                    .entry(name.clone())
                    .or_insert_with(|| Arc::clone(&pair.certified));
            }
        }
        by_name.extend(explicit);

        let not_after = loaded
            .iter()
            .map(|pair| pair.not_after)
            .min()
            .expect("the default pair is always present");
        Ok(ServedPairs {
            fingerprints: fingerprints_of(files),
            default: Arc::clone(&default.certified),
            by_name,
            not_after,
        })
    }

    /// Go `crypto/tls` `Config.getCertificate` over `NameToCertificate`: the lower-cased server
    /// name exactly, then with its first label replaced by `*` (so `*.foo.com` matches exactly one
    /// label), else the default pair. No SNI (also the case for IP-address hosts) → default pair.
    fn select(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = server_name.filter(|n| !n.is_empty() && !self.by_name.is_empty()) {
            let name = name.to_ascii_lowercase();
            if let Some(pair) = self.by_name.get(&name) {
                return Arc::clone(pair);
            }
            let wildcard = match name.split_once('.') {
                Some((_, parent)) => format!("*.{parent}"),
                None => "*".to_owned(),
            };
            if let Some(pair) = self.by_name.get(&wildcard) {
                return Arc::clone(pair);
            }
        }
        Arc::clone(&self.default)
    }
}

/// The serving certificates: the default pair and the SNI pairs, swapped atomically on reload.
///
/// As the rustls certificate resolver it picks a pair per handshake by SNI name: an exact
/// (case-insensitive) name first, then a `*.domain` pattern matching exactly one leading label,
/// else the default pair (k8s.io/apiserver `dynamiccertificates` + Go `crypto/tls`). Names of an
/// SNI pair are its explicit names, or else those of its certificate (see [`SniCertKey`]);
/// explicit names beat certificate names, and an earlier flag beats a later one.
///
/// Two differences from Go, both deterministic: explicit names are matched case-insensitively
/// (Go never matches an upper-case pattern), and an unmatched name always gets the default pair
/// (Go would first look for any configured pair whose key type the client accepts).
pub struct ServingCertificates {
    sources: Vec<PairSource>,
    served: ArcSwap<ServedPairs>,
    /// Serialises reloads so an older read can never overwrite a newer swap.
    reload_lock: Mutex<()>,
}

impl fmt::Debug for ServingCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths and names only: never the keys.
        f.debug_struct("ServingCertificates")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl ServingCertificates {
    /// Reads, parses and checks every pair of `settings`; fails on the first bad one (use
    /// [`TlsSettings::validate`] to see every error).
    pub fn load(settings: &TlsSettings) -> Result<Arc<ServingCertificates>, TlsError> {
        serving_pair_given(settings)?;
        let sources = PairSource::all(settings);
        let files = sources
            .iter()
            .map(PairSource::read)
            .collect::<Result<Vec<_>, _>>()?;
        let served = ServedPairs::build(&sources, &files)?;
        Ok(Arc::new(ServingCertificates {
            sources,
            served: ArcSwap::from_pointee(served),
            reload_lock: Mutex::new(()),
        }))
    }

    /// Re-reads every certificate and key file and returns whether the served pairs changed.
    ///
    /// When any file's contents differ from what is served, every pair is parsed and checked
    /// again and all are swapped at once; if any file cannot be read, parsed or matched, the error
    /// is returned and the old pairs stay served. A read that races a half-finished rotation
    /// (new certificate, old key) therefore fails harmlessly and the next call picks it up.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let _one_at_a_time = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let files = self
            .sources
            .iter()
            .map(PairSource::read)
            .collect::<Result<Vec<_>, _>>()?;
        if fingerprints_of(&files) == self.served.load().fingerprints {
            return Ok(false);
        }
        let served = ServedPairs::build(&self.sources, &files)?;
        self.served.store(Arc::new(served));
        Ok(true)
    }

    /// Calls [`reload`](Self::reload) every `interval`, forever; run it as a spawned task.
    ///
    /// Polling the contents (rather than watching the file with inotify) survives the Kubernetes
    /// Secret-volume update, which swaps the `..data` symlink so the watched file never changes.
    /// A swap is logged at info level; a failed reload at error level with the file and the
    /// reason (never key material), keeping the old pairs. A zero `interval` is raised to one
    /// second.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let period = if interval.is_zero() {
            Duration::from_secs(1)
        } else {
            interval
        };
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let this = Arc::clone(&self);
            // File reads block; keep them off the async workers.
            match tokio::task::spawn_blocking(move || this.reload()).await {
                Ok(Ok(true)) => tracing::info!(
                    cert_files = ?self.cert_files(),
                    "serving certificates changed on disk and were reloaded"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => tracing::error!(
                    %error,
                    "cannot reload serving certificates; still serving the previous ones"
                ),
                Err(error) => tracing::error!(
                    %error,
                    "serving certificate reload task failed; still serving the previous ones"
                ),
            }
        }
    }

    /// The earliest notAfter among the served leaf certificates (default and SNI).
    pub fn not_after(&self) -> Option<SystemTime> {
        Some(self.served.load().not_after)
    }

    fn cert_files(&self) -> Vec<&Path> {
        self.sources.iter().map(|s| s.cert_file.as_path()).collect()
    }
}

impl ResolvesServerCert for ServingCertificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.served.load().select(client_hello.server_name()))
    }
}
