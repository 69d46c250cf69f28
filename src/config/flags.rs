//! Command-line flags, named, defaulted and shaped as the Go kube-oidc-proxy's
//! (peers.md §2.1), so an existing Deployment keeps working when the image is swapped.
//!
//! Go's pflag accepts `--flag value`, `--flag=value`, and for booleans a bare `--flag` or
//! `--flag=false`; the bool flags here take an optional value for that reason.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// Flags as parsed; `config::Config::from_flags` validates them all at once.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-oidc-proxy",
    version,
    about = "kube-oidc-proxy is a reverse proxy that authenticates users to the Kubernetes API \
             server with OpenID Connect and forwards their requests with impersonation headers.",
    max_term_width = 100
)]
pub struct Flags {
    // ---- Kube-OIDC-Proxy ----
    /// Port of the plain-HTTP probe listener (/ready, /live, /readyz, /healthz). Must differ
    /// from --secure-port.
    #[arg(
        short = 'P',
        long,
        default_value_t = 8080,
        help_heading = "Kube-OIDC-Proxy"
    )]
    pub readiness_probe_port: u16,

    /// Accepted for compatibility with the Go proxy and ignored: responses are always flushed
    /// as soon as bytes arrive (watches and logs are never delayed).
    #[arg(long, default_value = "50ms", help_heading = "Kube-OIDC-Proxy")]
    pub flush_interval: String,

    /// How long SIGTERM waits for in-flight requests before closing them (long watches are
    /// closed at its end).
    #[arg(long, default_value = "30s", help_heading = "Kube-OIDC-Proxy")]
    pub shutdown_grace_period: String,

    /// Validate flags and files, print every problem, and exit 0 (valid) or 1 without serving.
    #[arg(long, help_heading = "Kube-OIDC-Proxy")]
    pub validate_config: bool,

    /// (Alpha) Forward each request with the caller's own, verified token instead of
    /// impersonating; the API server must trust the issuer itself. Cannot be combined with the
    /// extra user header flags.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Kube-OIDC-Proxy")]
    pub disable_impersonation: bool,

    /// (Alpha) A bearer token that no configured issuer claims is checked with a TokenReview;
    /// if the API server authenticates it, the request is forwarded with that token as its
    /// only credential.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Kube-OIDC-Proxy")]
    pub token_passthrough: bool,

    /// Audiences put in every passthrough TokenReview; the token must be valid for one of
    /// them. Empty means the API server's own audiences. Comma-separated, repeatable.
    #[arg(long, value_delimiter = ',', help_heading = "Kube-OIDC-Proxy")]
    pub token_passthrough_audiences: Vec<String>,

    /// Add the extra `remote-client-ip` (the client's IP address, see --trusted-proxies) to
    /// the impersonated user.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Kube-OIDC-Proxy")]
    pub extra_user_header_client_ip: bool,

    /// Extras added to every impersonated user: comma-separated key=value pairs, a key may
    /// repeat (e.g. "team=a,scope=x,scope=y"). Repeatable.
    #[arg(long, help_heading = "Kube-OIDC-Proxy")]
    pub extra_user_headers: Vec<String>,

    /// Networks (CIDR, or single addresses) of proxies in front of this one whose
    /// X-Forwarded-For is believed when choosing the client's address. Comma-separated,
    /// repeatable. Default: none (the TCP peer is the client).
    #[arg(long, value_delimiter = ',', help_heading = "Kube-OIDC-Proxy")]
    pub trusted_proxies: Vec<String>,

    /// Bound on the SubjectAccessReviews that authorize one `kubectl --as` request (together),
    /// and on each passthrough TokenReview. No answer in time refuses the request.
    #[arg(long, default_value = "5s", help_heading = "Kube-OIDC-Proxy")]
    pub subject_access_review_timeout: String,

    // ---- OIDC ----
    /// The URL of the OpenID issuer; only the https scheme is accepted.
    #[arg(long, default_value = "", help_heading = "OIDC")]
    pub oidc_issuer_url: String,

    /// The client ID for the OpenID Connect client; tokens must carry it in `aud`.
    #[arg(long, default_value = "", help_heading = "OIDC")]
    pub oidc_client_id: String,

    /// PEM bundle of the CAs that signed the issuer's serving certificate; the host's root CAs
    /// are used when absent.
    #[arg(long, help_heading = "OIDC")]
    pub oidc_ca_file: Option<PathBuf>,

    /// The JWT claim to use as the user name.
    #[arg(long, default_value = "sub", help_heading = "OIDC")]
    pub oidc_username_claim: String,

    /// Prefix prepended to usernames; empty or '-' means none.
    #[arg(long, default_value = "", help_heading = "OIDC")]
    pub oidc_username_prefix: String,

    /// The JWT claim to use as the user's groups (a string or an array of strings).
    #[arg(long, default_value = "", help_heading = "OIDC")]
    pub oidc_groups_claim: String,

    /// Prefix prepended to every group.
    #[arg(long, default_value = "", help_heading = "OIDC")]
    pub oidc_groups_prefix: String,

    /// Comma-separated JOSE signing algorithms accepted: RS256/384/512, PS256/384/512,
    /// ES256/384/512, and EdDSA only when named. `none` and HMAC are never accepted.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "RS256",
        help_heading = "OIDC"
    )]
    pub oidc_signing_algs: Vec<String>,

    /// A key=value pair that must be present, with that exact string value, in every token.
    /// Repeat the flag for several claims.
    #[arg(long, help_heading = "OIDC")]
    pub oidc_required_claim: Vec<String>,

    // ---- Authentication ----
    /// A kube-apiserver AuthenticationConfiguration file (apiserver.config.k8s.io/v1 or
    /// v1beta1): any number of JWT issuers with CEL claim mappings and validation rules. Re-read
    /// when it changes (an invalid new version is logged and the old one kept). Cannot be
    /// combined with the --oidc-* flags. See docs/authentication.md.
    #[arg(long, help_heading = "Authentication")]
    pub authentication_config: Option<PathBuf>,

    /// How often the --authentication-config file is checked for changes (its contents are
    /// compared, which also catches Kubernetes ConfigMap symlink swaps).
    #[arg(long, default_value = "10s", help_heading = "Authentication")]
    pub authentication_config_reload_interval: String,

    /// Admit tokens whose mapped username or any group starts with "system:" (Kubernetes'
    /// own identities, such as system:masters or system:serviceaccount:*). Refused by default.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Authentication")]
    pub allow_reserved_identities: bool,

    /// When /ready answers 200: "all" configured issuers have fresh keys, or "any" one has.
    #[arg(long, default_value = "all", help_heading = "Authentication")]
    pub readiness_issuers: String,

    /// Whether /ready also needs the API server to answer (GET /readyz with the proxy's
    /// credentials, every 5s): "required", or "reported" (listed by /readyz?verbose only).
    #[arg(long, default_value = "required", help_heading = "Kube-OIDC-Proxy")]
    pub readiness_upstream: String,

    // ---- Secure Serving ----
    /// The IP address on which to serve HTTPS.
    #[arg(long, default_value = "0.0.0.0", help_heading = "Secure Serving")]
    pub bind_address: String,

    /// The port on which to serve HTTPS.
    #[arg(long, default_value_t = 6443, help_heading = "Secure Serving")]
    pub secure_port: u16,

    /// PEM certificate (chain) for HTTPS. Required. Re-read when the file changes.
    #[arg(long, help_heading = "Secure Serving")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key matching --tls-cert-file. Required. Re-read when the file changes.
    #[arg(long, help_heading = "Secure Serving")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Minimum TLS version: VersionTLS12 or VersionTLS13 (VersionTLS10/11 are accepted but
    /// TLS 1.2 stays the floor).
    #[arg(long, help_heading = "Secure Serving")]
    pub tls_min_version: Option<String>,

    /// Comma-separated cipher suites (Go names) for TLS 1.2; TLS 1.3 suites are always on.
    #[arg(long, value_delimiter = ',', help_heading = "Secure Serving")]
    pub tls_cipher_suites: Vec<String>,

    /// A certificate/key pair served for matching SNI names: "cert,key" or
    /// "cert,key:*.example.com,example.com". Repeatable.
    #[arg(long, help_heading = "Secure Serving")]
    pub tls_sni_cert_key: Vec<String>,

    /// Serve HTTP/1.1 only (no h2 in ALPN).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Secure Serving")]
    pub disable_http2_serving: bool,

    /// Maximum concurrent HTTP/2 streams per client connection; 0 means 100.
    #[arg(long, default_value_t = 0, help_heading = "Secure Serving")]
    pub http2_max_streams_per_connection: u32,

    // ---- Audit ----
    #[command(flatten)]
    pub audit: super::audit::AuditFlags,

    // ---- Client (the API server) ----
    /// Path to a kubeconfig for the API server. Without any client flag the in-cluster
    /// ServiceAccount configuration is used.
    #[arg(long, help_heading = "Client")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use.
    #[arg(long, help_heading = "Client")]
    pub context: Option<String>,

    /// The kubeconfig cluster to use.
    #[arg(long, help_heading = "Client")]
    pub cluster: Option<String>,

    /// The kubeconfig user to use.
    #[arg(long, help_heading = "Client")]
    pub user: Option<String>,

    /// The address and port of the Kubernetes API server.
    #[arg(short = 's', long, help_heading = "Client")]
    pub server: Option<String>,

    /// Path to a CA bundle for the API server.
    #[arg(long, help_heading = "Client")]
    pub certificate_authority: Option<PathBuf>,

    /// Path to a client certificate for TLS.
    #[arg(long, help_heading = "Client")]
    pub client_certificate: Option<PathBuf>,

    /// Path to a client key for TLS.
    #[arg(long, help_heading = "Client")]
    pub client_key: Option<PathBuf>,

    /// Bearer token for the API server.
    #[arg(long, help_heading = "Client")]
    pub token: Option<String>,

    /// Server name for the API server's certificate check (SNI).
    #[arg(long, help_heading = "Client")]
    pub tls_server_name: Option<String>,

    /// Do not verify the API server's certificate. Insecure.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Client")]
    pub insecure_skip_tls_verify: bool,

    /// Timeout for the API server's response headers ("0" = none; "30s", "1m", or seconds).
    /// Watches and upgraded streams are not cut once their response has started.
    #[arg(long, default_value = "0", help_heading = "Client")]
    pub request_timeout: String,

    // ---- Logging ----
    /// Log verbosity (klog style): 0-1 info, 2-4 debug, 5+ trace.
    #[arg(short = 'v', long = "v", default_value_t = 0, help_heading = "Logging")]
    pub verbosity: u8,

    /// Diagnostic log format on stderr: text or json. Access-log lines always go to stdout.
    #[arg(long, default_value = "text", help_heading = "Logging")]
    pub log_format: String,
}
