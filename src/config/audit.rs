//! The audit flags (`--audit-policy-file`, `--audit-log-*`, `--audit-webhook-*`), named and
//! defaulted as kube-apiserver's `AuditOptions` (k8s.io/apiserver
//! `pkg/server/options/audit.go`), which the Go kube-oidc-proxy exposes unchanged.
//!
//! [`AuditFlags::settings`] validates them all at once into plain structs for
//! `audit::backend`. Differences from kube-apiserver, on purpose:
//! - a backend configured without `--audit-policy-file` is an error (kube logs at V(2) and
//!   records nothing);
//! - the webhook kubeconfig is checked here, so a bad file is reported with the other flag
//!   errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ArgAction;

use super::parse_go_duration;

/// The only audit event version written (`--audit-log-version`, `--audit-webhook-version`).
pub const AUDIT_API_VERSION: &str = "audit.k8s.io/v1";

/// kube-apiserver's `defaultBatchBufferSize`, used when a blocking mode leaves the buffer unset.
const DEFAULT_BUFFER_SIZE: usize = 10_000;

/// The audit flags, flattened into the proxy's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditFlags {
    /// Path to the audit policy file (audit.k8s.io/v1 Policy). Required by any audit backend.
    #[arg(long, help_heading = "Audit")]
    pub audit_policy_file: Option<PathBuf>,

    // ---- log backend ----
    /// Write audit events to this file; "-" means standard output. Empty disables the log
    /// backend.
    #[arg(long, default_value = "", help_heading = "Audit")]
    pub audit_log_path: String,

    /// Days to keep rotated audit log files, judged by the timestamp in their names (0 = no
    /// limit).
    #[arg(
        long,
        default_value_t = 0,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_log_maxage: i64,

    /// How many rotated audit log files to keep (0 = all).
    #[arg(
        long,
        default_value_t = 0,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_log_maxbackup: i64,

    /// Size in megabytes at which the audit log file is rotated (0 = lumberjack's default of
    /// 100).
    #[arg(
        long,
        default_value_t = 0,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_log_maxsize: i64,

    /// Compress rotated audit log files with gzip.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Audit")]
    pub audit_log_compress: bool,

    /// Audit log line format: "json" (one Event per line) or "legacy" (one line of text).
    #[arg(long, default_value = "json", help_heading = "Audit")]
    pub audit_log_format: String,

    /// API group and version of the audit events written to the log.
    #[arg(long, default_value = AUDIT_API_VERSION, help_heading = "Audit")]
    pub audit_log_version: String,

    /// Audit log mode: batch, blocking or blocking-strict. All three queue events and write
    /// them off the request path; none ever delays or fails a request.
    #[arg(long, default_value = "blocking", help_heading = "Audit")]
    pub audit_log_mode: String,

    /// Events queued for the audit log before new ones are dropped.
    #[arg(
        long,
        default_value_t = 10_000,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_log_batch_buffer_size: i64,

    /// Largest batch (batch mode). Accepted for compatibility; the log writes event by event.
    #[arg(
        long,
        default_value_t = 1,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_log_batch_max_size: i64,

    /// Longest wait before an incomplete batch is written (batch mode). Accepted for
    /// compatibility; the log writes event by event.
    #[arg(long, default_value = "0s", help_heading = "Audit")]
    pub audit_log_batch_max_wait: String,

    /// Throttle batches (batch mode). Accepted for compatibility; the log is not throttled.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Audit")]
    pub audit_log_batch_throttle_enable: bool,

    /// Average batches per second when throttled (batch mode).
    #[arg(
        long,
        default_value_t = 0.0,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_log_batch_throttle_qps: f32,

    /// Batches sent at once when throttled and the rate was not used before (batch mode).
    #[arg(
        long,
        default_value_t = 0,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_log_batch_throttle_burst: i64,

    /// Shrink audit events larger than --audit-log-truncate-max-event-size.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Audit")]
    pub audit_log_truncate_enabled: bool,

    /// Largest batch in bytes, when truncating.
    #[arg(long, default_value_t = 10 * 1024 * 1024, allow_negative_numbers = true,
          help_heading = "Audit")]
    pub audit_log_truncate_max_batch_size: i64,

    /// Largest event in bytes, when truncating: a larger one loses its request and response
    /// objects, and is dropped if still too large.
    #[arg(long, default_value_t = 100 * 1024, allow_negative_numbers = true,
          help_heading = "Audit")]
    pub audit_log_truncate_max_event_size: i64,

    // ---- webhook backend ----
    /// A kubeconfig naming the audit webhook (server URL with path, CA, client credentials).
    /// Empty disables the webhook backend.
    #[arg(long, help_heading = "Audit")]
    pub audit_webhook_config_file: Option<PathBuf>,

    /// Wait before the first retry of a failed webhook request; later ones wait 1.5 times
    /// longer each (5 attempts in all).
    #[arg(long, help_heading = "Audit")]
    pub audit_webhook_initial_backoff: Option<String>,

    /// Deprecated: use --audit-webhook-initial-backoff.
    #[arg(long, hide = true, help_heading = "Audit")]
    pub audit_webhook_batch_initial_backoff: Option<String>,

    /// API group and version of the audit events sent to the webhook.
    #[arg(long, default_value = AUDIT_API_VERSION, help_heading = "Audit")]
    pub audit_webhook_version: String,

    /// Webhook mode: batch, blocking or blocking-strict. Blocking modes send each event on its
    /// own, still off the request path.
    #[arg(long, default_value = "batch", help_heading = "Audit")]
    pub audit_webhook_mode: String,

    /// Events queued for the webhook before new ones are dropped.
    #[arg(
        long,
        default_value_t = 10_000,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_webhook_batch_buffer_size: i64,

    /// Most events in one webhook request (batch mode).
    #[arg(
        long,
        default_value_t = 400,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_webhook_batch_max_size: i64,

    /// Longest wait before an incomplete batch is sent (batch mode).
    #[arg(long, default_value = "30s", help_heading = "Audit")]
    pub audit_webhook_batch_max_wait: String,

    /// Throttle webhook batches (batch mode).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true",
          default_missing_value = "true", help_heading = "Audit")]
    pub audit_webhook_batch_throttle_enable: bool,

    /// Average webhook batches per second when throttled (batch mode).
    #[arg(
        long,
        default_value_t = 10.0,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_webhook_batch_throttle_qps: f32,

    /// Webhook batches sent at once when throttled and the rate was not used before.
    #[arg(
        long,
        default_value_t = 15,
        allow_negative_numbers = true,
        help_heading = "Audit"
    )]
    pub audit_webhook_batch_throttle_burst: i64,

    /// Shrink audit events larger than --audit-webhook-truncate-max-event-size, and split
    /// batches larger than --audit-webhook-truncate-max-batch-size.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false",
          default_missing_value = "true", help_heading = "Audit")]
    pub audit_webhook_truncate_enabled: bool,

    /// Largest webhook request body in bytes (about), when truncating.
    #[arg(long, default_value_t = 10 * 1024 * 1024, allow_negative_numbers = true,
          help_heading = "Audit")]
    pub audit_webhook_truncate_max_batch_size: i64,

    /// Largest event in bytes, when truncating: a larger one loses its request and response
    /// objects, and is dropped if still too large.
    #[arg(long, default_value_t = 100 * 1024, allow_negative_numbers = true,
          help_heading = "Audit")]
    pub audit_webhook_truncate_max_event_size: i64,
}

/// Validated audit configuration: no backend at all when nothing was asked for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditSettings {
    /// `--audit-policy-file`.
    pub policy_file: Option<PathBuf>,
    /// The log backend, when `--audit-log-path` is set.
    pub log: Option<LogBackendSettings>,
    /// The webhook backend, when `--audit-webhook-config-file` is set.
    pub webhook: Option<WebhookBackendSettings>,
}

/// Where the log backend writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// `--audit-log-path=-`.
    Stdout,
    /// A file, rotated as lumberjack does.
    File(PathBuf),
}

/// `--audit-log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON `Event` per line.
    Json,
    /// kube-apiserver's one-line text (`audit.EventString`).
    Legacy,
}

/// `--audit-*-mode`, kept for the record: every mode is served without blocking requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `batch`.
    Batch,
    /// `blocking`: served like batch with one event per batch.
    Blocking,
    /// `blocking-strict`: the same as `blocking` here (requests never fail for audit).
    BlockingStrict,
}

/// How a backend queues and groups events.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    /// Events queued before new ones are dropped (always positive).
    pub buffer_size: usize,
    /// Most events in one batch (always positive).
    pub max_size: usize,
    /// Longest an event waits for its batch to fill.
    pub max_wait: Duration,
    /// Rate limit on batches, when enabled.
    pub throttle: Option<ThrottleSettings>,
}

/// A token bucket for batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleSettings {
    /// Average batches per second (positive).
    pub qps: f64,
    /// Bucket size (positive).
    pub burst: u32,
}

/// `--audit-*-truncate-*`, when enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncateSettings {
    /// Largest serialized event; larger ones lose their objects, then are dropped.
    pub max_event_size: u64,
    /// Largest batch of serialized events; larger batches are split.
    pub max_batch_size: u64,
}

/// Log file rotation, with lumberjack's meaning of each number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationSettings {
    /// Rotate before the file would exceed this many bytes (`--audit-log-maxsize` MB; 0 there
    /// means lumberjack's default of 100 MB).
    pub max_size_bytes: u64,
    /// Rotated files kept (0 = all).
    pub max_backups: usize,
    /// Rotated files older than this many days are removed (0 = no limit).
    pub max_age_days: u64,
    /// Gzip rotated files.
    pub compress: bool,
}

/// The log backend's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogBackendSettings {
    /// `--audit-log-path`.
    pub destination: LogDestination,
    /// `--audit-log-format`.
    pub format: LogFormat,
    /// Used for files only.
    pub rotation: RotationSettings,
    /// `--audit-log-mode`.
    pub mode: Mode,
    /// Only `buffer_size` matters to the log, which writes event by event.
    pub batch: BatchSettings,
    /// `--audit-log-truncate-*`, when enabled.
    pub truncate: Option<TruncateSettings>,
}

/// The webhook backend's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookBackendSettings {
    /// The kubeconfig naming the receiver (already checked to name a server).
    pub config_file: PathBuf,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// `--audit-webhook-mode`.
    pub mode: Mode,
    /// The effective batching: the blocking modes send one event per request, unthrottled.
    pub batch: BatchSettings,
    /// `--audit-webhook-truncate-*`, when enabled.
    pub truncate: Option<TruncateSettings>,
}

/// The flag values of one backend's batch and truncate options, named by its plugin.
struct BackendFlags<'a> {
    plugin: &'static str,
    mode: &'a str,
    buffer_size: i64,
    max_size: i64,
    max_wait: &'a str,
    throttle_enable: bool,
    throttle_qps: f32,
    throttle_burst: i64,
    truncate_enabled: bool,
    truncate_max_batch_size: i64,
    truncate_max_event_size: i64,
    version: &'a str,
}

impl BackendFlags<'_> {
    fn flag(&self, name: &str) -> String {
        format!("--audit-{}-{name}", self.plugin)
    }

    fn mode(&self, errors: &mut Vec<String>) -> Mode {
        match self.mode {
            "batch" => Mode::Batch,
            "blocking" => Mode::Blocking,
            "blocking-strict" => Mode::BlockingStrict,
            other => {
                errors.push(format!(
                    "{}: {other:?} is not one of \"batch\", \"blocking\", \"blocking-strict\"",
                    self.flag("mode")
                ));
                Mode::Batch
            }
        }
    }

    /// The batch options, validated only in batch mode as kube-apiserver does; the blocking
    /// modes keep the buffer size when it is positive.
    fn batch(&self, mode: Mode, errors: &mut Vec<String>) -> BatchSettings {
        let max_wait = match parse_go_duration(self.max_wait) {
            Ok(wait) => wait,
            Err(e) => {
                if mode == Mode::Batch {
                    errors.push(format!("{}: {e}", self.flag("batch-max-wait")));
                }
                Duration::ZERO
            }
        };
        if mode != Mode::Batch {
            return BatchSettings {
                buffer_size: usize::try_from(self.buffer_size)
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or(DEFAULT_BUFFER_SIZE),
                max_size: 1,
                max_wait: Duration::ZERO,
                throttle: None,
            };
        }
        let buffer_size = positive(&self.flag("batch-buffer-size"), self.buffer_size, errors);
        let max_size = positive(&self.flag("batch-max-size"), self.max_size, errors);
        let throttle = self.throttle_enable.then(|| {
            if self.throttle_qps.is_nan() || self.throttle_qps <= 0.0 {
                errors.push(format!(
                    "{}: {} must be a positive number",
                    self.flag("batch-throttle-qps"),
                    self.throttle_qps
                ));
            }
            let burst = positive(
                &self.flag("batch-throttle-burst"),
                self.throttle_burst,
                errors,
            );
            ThrottleSettings {
                qps: f64::from(self.throttle_qps),
                burst: u32::try_from(burst).unwrap_or(u32::MAX),
            }
        });
        BatchSettings {
            buffer_size,
            max_size,
            max_wait,
            throttle,
        }
    }

    /// Truncate options are checked whether enabled or not, as kube-apiserver does.
    fn truncate(&self, errors: &mut Vec<String>) -> Option<TruncateSettings> {
        let event = self.truncate_max_event_size;
        let batch = self.truncate_max_batch_size;
        if event <= 0 {
            errors.push(format!(
                "{}: {event} must be a positive number",
                self.flag("truncate-max-event-size")
            ));
        } else if batch < event {
            errors.push(format!(
                "{}: {batch} must not be less than {} ({event})",
                self.flag("truncate-max-batch-size"),
                self.flag("truncate-max-event-size")
            ));
        }
        self.truncate_enabled.then(|| TruncateSettings {
            max_event_size: u64::try_from(event).unwrap_or(0),
            max_batch_size: u64::try_from(batch).unwrap_or(0),
        })
    }

    fn version(&self, errors: &mut Vec<String>) {
        if self.version != AUDIT_API_VERSION {
            errors.push(format!(
                "{}: {:?} is not supported; the only version is {AUDIT_API_VERSION:?}",
                self.flag("version"),
                self.version
            ));
        }
    }
}

/// A positive count, or an error naming the flag.
fn positive(flag: &str, value: i64, errors: &mut Vec<String>) -> usize {
    match usize::try_from(value) {
        Ok(n) if n > 0 => n,
        _ => {
            errors.push(format!("{flag}: {value} must be a positive number"));
            1
        }
    }
}

/// A count that may be zero, or an error naming the flag.
fn not_negative(flag: &str, value: i64, errors: &mut Vec<String>) -> u64 {
    u64::try_from(value).unwrap_or_else(|_| {
        errors.push(format!("{flag}: {value} must not be negative"));
        0
    })
}

/// Checks that a webhook kubeconfig can be read and names a server through its current
/// context, as kube's `Config::from_custom_kubeconfig` will need.
fn check_webhook_kubeconfig(path: &Path) -> Result<(), String> {
    let config = kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    let context_name = config
        .current_context
        .as_deref()
        .ok_or("no current-context is set")?;
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| format!("current-context {context_name:?} is not among its contexts"))?;
    let server = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.as_deref())
        .ok_or_else(|| format!("cluster {:?} has no server", context.cluster))?;
    let uri: http::Uri = server
        .parse()
        .map_err(|e| format!("server {server:?}: {e}"))?;
    match uri.scheme_str() {
        Some("https" | "http") if uri.host().is_some() => Ok(()),
        _ => Err(format!("server {server:?} is not an http(s) URL")),
    }
}

impl AuditFlags {
    /// Validates every audit flag and returns the settings, or all problems found.
    pub fn settings(&self) -> Result<AuditSettings, Vec<String>> {
        let mut errors = Vec::new();
        let policy_file = self.audit_policy_file.clone();
        if let Some(path) = &policy_file {
            if let Err(e) = std::fs::metadata(path) {
                errors.push(format!(
                    "--audit-policy-file: cannot read {}: {e}",
                    path.display()
                ));
            }
        }
        let log = (!self.audit_log_path.is_empty()).then(|| self.log_settings(&mut errors));
        let webhook = self
            .audit_webhook_config_file
            .as_ref()
            .filter(|path| !path.as_os_str().is_empty())
            .map(|path| self.webhook_settings(path, &mut errors));
        if policy_file.is_none() {
            for (given, flag) in [
                (log.is_some(), "--audit-log-path"),
                (webhook.is_some(), "--audit-webhook-config-file"),
            ] {
                if given {
                    errors.push(format!(
                        "{flag}: requires --audit-policy-file (without a policy no event is \
                         recorded)"
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(AuditSettings {
                policy_file,
                log,
                webhook,
            })
        } else {
            Err(errors)
        }
    }

    fn log_settings(&self, errors: &mut Vec<String>) -> LogBackendSettings {
        let flags = BackendFlags {
            plugin: "log",
            mode: &self.audit_log_mode,
            buffer_size: self.audit_log_batch_buffer_size,
            max_size: self.audit_log_batch_max_size,
            max_wait: &self.audit_log_batch_max_wait,
            throttle_enable: self.audit_log_batch_throttle_enable,
            throttle_qps: self.audit_log_batch_throttle_qps,
            throttle_burst: self.audit_log_batch_throttle_burst,
            truncate_enabled: self.audit_log_truncate_enabled,
            truncate_max_batch_size: self.audit_log_truncate_max_batch_size,
            truncate_max_event_size: self.audit_log_truncate_max_event_size,
            version: &self.audit_log_version,
        };
        let mode = flags.mode(errors);
        let batch = flags.batch(mode, errors);
        let truncate = flags.truncate(errors);
        flags.version(errors);
        let format = match self.audit_log_format.as_str() {
            "json" => LogFormat::Json,
            "legacy" => LogFormat::Legacy,
            other => {
                errors.push(format!(
                    "--audit-log-format: {other:?} is not one of \"json\", \"legacy\""
                ));
                LogFormat::Json
            }
        };
        let max_size_mb = not_negative("--audit-log-maxsize", self.audit_log_maxsize, errors);
        let rotation = RotationSettings {
            // lumberjack: MaxSize 0 means its default, 100 megabytes.
            max_size_bytes: if max_size_mb == 0 { 100 } else { max_size_mb }
                .saturating_mul(1024 * 1024),
            max_backups: not_negative("--audit-log-maxbackup", self.audit_log_maxbackup, errors)
                .try_into()
                .unwrap_or(usize::MAX),
            max_age_days: not_negative("--audit-log-maxage", self.audit_log_maxage, errors),
            compress: self.audit_log_compress,
        };
        let destination = match self.audit_log_path.as_str() {
            "-" => LogDestination::Stdout,
            path => LogDestination::File(PathBuf::from(path)),
        };
        LogBackendSettings {
            destination,
            format,
            rotation,
            mode,
            batch,
            truncate,
        }
    }

    fn webhook_settings(&self, path: &Path, errors: &mut Vec<String>) -> WebhookBackendSettings {
        if let Err(e) = check_webhook_kubeconfig(path) {
            errors.push(format!(
                "--audit-webhook-config-file: {}: {e}",
                path.display()
            ));
        }
        let flags = BackendFlags {
            plugin: "webhook",
            mode: &self.audit_webhook_mode,
            buffer_size: self.audit_webhook_batch_buffer_size,
            max_size: self.audit_webhook_batch_max_size,
            max_wait: &self.audit_webhook_batch_max_wait,
            throttle_enable: self.audit_webhook_batch_throttle_enable,
            throttle_qps: self.audit_webhook_batch_throttle_qps,
            throttle_burst: self.audit_webhook_batch_throttle_burst,
            truncate_enabled: self.audit_webhook_truncate_enabled,
            truncate_max_batch_size: self.audit_webhook_truncate_max_batch_size,
            truncate_max_event_size: self.audit_webhook_truncate_max_event_size,
            version: &self.audit_webhook_version,
        };
        let mode = flags.mode(errors);
        let batch = flags.batch(mode, errors);
        let truncate = flags.truncate(errors);
        flags.version(errors);
        let (flag, backoff) = match (
            &self.audit_webhook_initial_backoff,
            &self.audit_webhook_batch_initial_backoff,
        ) {
            (Some(value), _) => ("--audit-webhook-initial-backoff", value.as_str()),
            (None, Some(value)) => {
                tracing::warn!(
                    "--audit-webhook-batch-initial-backoff is deprecated, use \
                     --audit-webhook-initial-backoff instead"
                );
                ("--audit-webhook-batch-initial-backoff", value.as_str())
            }
            (None, None) => ("", "10s"),
        };
        let initial_backoff = parse_go_duration(backoff).unwrap_or_else(|e| {
            errors.push(format!("{flag}: {e}"));
            Duration::from_secs(10)
        });
        WebhookBackendSettings {
            config_file: path.to_path_buf(),
            initial_backoff,
            mode,
            batch,
            truncate,
        }
    }
}

/// Writes a kubeconfig for a webhook receiver at `server` into `dir` (for tests).
#[cfg(test)]
pub(crate) fn webhook_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("webhook.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sink\n  cluster:\n    \
             server: {server}\ncontexts:\n- name: default\n  context:\n    cluster: sink\n\
             current-context: default\n"
        ),
    )
    .unwrap();
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        audit: AuditFlags,
    }

    fn parse(args: &[&str]) -> AuditFlags {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Wrapper::try_parse_from(all).unwrap().audit
    }

    fn errors(args: &[&str]) -> String {
        parse(args).settings().unwrap_err().join("\n")
    }

    fn assert_all(joined: &str, expected: &[&str]) {
        for e in expected {
            assert!(joined.contains(e), "missing {e:?} in:\n{joined}");
        }
    }

    fn policy(dir: &Path) -> String {
        let path = dir.join("policy.yaml");
        std::fs::write(
            &path,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n",
        )
        .unwrap();
        path.display().to_string()
    }

    #[test]
    fn nothing_configured_means_no_backend() {
        let settings = parse(&[]).settings().unwrap();
        assert_eq!(
            settings,
            AuditSettings {
                policy_file: None,
                log: None,
                webhook: None
            }
        );
    }

    #[test]
    fn defaults_are_kube_apiservers() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path());
        let config = webhook_kubeconfig(dir.path(), "https://sink.example:8443/audit");
        let settings = parse(&[
            "--audit-policy-file",
            &policy,
            "--audit-log-path=/var/log/audit.log",
            "--audit-webhook-config-file",
            config.to_str().unwrap(),
        ])
        .settings()
        .unwrap();
        let log = settings.log.unwrap();
        assert_eq!(
            log.destination,
            LogDestination::File("/var/log/audit.log".into())
        );
        assert_eq!(log.format, LogFormat::Json);
        assert_eq!(log.mode, Mode::Blocking);
        assert_eq!(log.batch.buffer_size, 10_000);
        assert_eq!(log.truncate, None);
        assert_eq!(
            log.rotation,
            RotationSettings {
                max_size_bytes: 100 * 1024 * 1024,
                max_backups: 0,
                max_age_days: 0,
                compress: false
            }
        );
        let webhook = settings.webhook.unwrap();
        assert_eq!(webhook.mode, Mode::Batch);
        assert_eq!(webhook.initial_backoff, Duration::from_secs(10));
        assert_eq!(
            webhook.batch,
            BatchSettings {
                buffer_size: 10_000,
                max_size: 400,
                max_wait: Duration::from_secs(30),
                throttle: Some(ThrottleSettings {
                    qps: 10.0,
                    burst: 15
                }),
            }
        );
        assert_eq!(webhook.truncate, None);
    }

    #[test]
    fn values_and_go_style_flags() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path());
        let config = webhook_kubeconfig(dir.path(), "http://127.0.0.1:9/");
        let settings = parse(&[
            "--audit-policy-file",
            &policy,
            "--audit-log-path=-",
            "--audit-log-format=legacy",
            "--audit-log-maxsize=5",
            "--audit-log-maxbackup=3",
            "--audit-log-maxage",
            "7",
            "--audit-log-compress",
            "--audit-log-truncate-enabled",
            "--audit-log-truncate-max-event-size=2048",
            "--audit-webhook-config-file",
            config.to_str().unwrap(),
            "--audit-webhook-batch-initial-backoff=2s",
            "--audit-webhook-batch-throttle-enable=false",
            "--audit-webhook-batch-max-size=7",
            "--audit-webhook-batch-max-wait=1m",
        ])
        .settings()
        .unwrap();
        let log = settings.log.unwrap();
        assert_eq!(log.destination, LogDestination::Stdout);
        assert_eq!(log.format, LogFormat::Legacy);
        assert_eq!(
            log.rotation,
            RotationSettings {
                max_size_bytes: 5 * 1024 * 1024,
                max_backups: 3,
                max_age_days: 7,
                compress: true
            }
        );
        assert_eq!(
            log.truncate,
            Some(TruncateSettings {
                max_event_size: 2048,
                max_batch_size: 10 * 1024 * 1024
            })
        );
        let webhook = settings.webhook.unwrap();
        assert_eq!(webhook.initial_backoff, Duration::from_secs(2));
        assert_eq!(webhook.batch.throttle, None);
        assert_eq!(webhook.batch.max_size, 7);
        assert_eq!(webhook.batch.max_wait, Duration::from_secs(60));
    }

    #[test]
    fn the_new_backoff_flag_wins_over_its_deprecated_alias() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path());
        let config = webhook_kubeconfig(dir.path(), "http://127.0.0.1:9/");
        let webhook = parse(&[
            "--audit-policy-file",
            &policy,
            "--audit-webhook-config-file",
            config.to_str().unwrap(),
            "--audit-webhook-batch-initial-backoff=2s",
            "--audit-webhook-initial-backoff=3s",
        ])
        .settings()
        .unwrap()
        .webhook
        .unwrap();
        assert_eq!(webhook.initial_backoff, Duration::from_secs(3));
    }

    #[test]
    fn blocking_webhook_sends_one_event_per_request_unthrottled() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path());
        let config = webhook_kubeconfig(dir.path(), "http://127.0.0.1:9/");
        let webhook = parse(&[
            "--audit-policy-file",
            &policy,
            "--audit-webhook-config-file",
            config.to_str().unwrap(),
            "--audit-webhook-mode=blocking",
            // Unused in blocking modes, so not validated (as kube-apiserver).
            "--audit-webhook-batch-max-size=0",
            "--audit-webhook-batch-buffer-size=0",
        ])
        .settings()
        .unwrap()
        .webhook
        .unwrap();
        assert_eq!(webhook.mode, Mode::Blocking);
        assert_eq!(webhook.batch.max_size, 1);
        assert_eq!(webhook.batch.buffer_size, 10_000);
        assert_eq!(webhook.batch.throttle, None);
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.kubeconfig");
        let joined = errors(&[
            "--audit-log-path=/tmp/x.log",
            "--audit-log-maxage=-1",
            "--audit-log-maxbackup",
            "-2",
            "--audit-log-maxsize=-3",
            "--audit-log-format=yaml",
            "--audit-log-version=audit.k8s.io/v1beta1",
            "--audit-log-mode=async",
            "--audit-log-truncate-max-event-size=0",
            "--audit-webhook-config-file",
            missing.to_str().unwrap(),
            "--audit-webhook-batch-buffer-size=-1",
            "--audit-webhook-batch-max-size=0",
            "--audit-webhook-batch-throttle-qps=0",
            "--audit-webhook-batch-throttle-burst=-5",
            "--audit-webhook-batch-max-wait=soon",
            "--audit-webhook-initial-backoff=later",
            "--audit-webhook-truncate-max-event-size=100",
            "--audit-webhook-truncate-max-batch-size=10",
        ]);
        assert_all(
            &joined,
            &[
                "--audit-log-maxage: -1 must not be negative",
                "--audit-log-maxbackup: -2 must not be negative",
                "--audit-log-maxsize: -3 must not be negative",
                "--audit-log-format: \"yaml\"",
                "--audit-log-version: \"audit.k8s.io/v1beta1\" is not supported",
                "--audit-log-mode: \"async\"",
                "--audit-log-truncate-max-event-size: 0 must be a positive number",
                "--audit-webhook-config-file: ",
                "missing.kubeconfig",
                "--audit-webhook-batch-buffer-size: -1 must be a positive number",
                "--audit-webhook-batch-max-size: 0 must be a positive number",
                "--audit-webhook-batch-throttle-qps: 0 must be a positive number",
                "--audit-webhook-batch-throttle-burst: -5 must be a positive number",
                "--audit-webhook-batch-max-wait: ",
                "--audit-webhook-initial-backoff: ",
                "--audit-webhook-truncate-max-batch-size: 10 must not be less than",
                "--audit-log-path: requires --audit-policy-file",
                "--audit-webhook-config-file: requires --audit-policy-file",
            ],
        );
    }

    #[test]
    fn webhook_kubeconfig_must_name_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path());
        let not_yaml = dir.path().join("garbage");
        std::fs::write(&not_yaml, "{{{ not a kubeconfig").unwrap();
        let no_context = dir.path().join("no-context");
        std::fs::write(
            &no_context,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: a\n  cluster:\n    server: \
             https://a\n",
        )
        .unwrap();
        let ftp = webhook_kubeconfig(dir.path(), "ftp://sink.example/");
        for (file, expected) in [
            (&not_yaml, "garbage"),
            (&no_context, "no current-context"),
            (&ftp, "is not an http(s) URL"),
        ] {
            let joined = errors(&[
                "--audit-policy-file",
                &policy,
                "--audit-webhook-config-file",
                file.to_str().unwrap(),
            ]);
            assert_all(&joined, &["--audit-webhook-config-file: ", expected]);
        }
    }

    #[test]
    fn a_policy_without_backends_is_fine_and_a_missing_policy_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let policy = policy(dir.path());
        let settings = parse(&["--audit-policy-file", &policy]).settings().unwrap();
        assert!(settings.log.is_none() && settings.webhook.is_none());
        let joined = errors(&["--audit-policy-file=/nonexistent/policy.yaml"]);
        assert_all(
            &joined,
            &["--audit-policy-file: cannot read /nonexistent/policy.yaml"],
        );
    }
}
