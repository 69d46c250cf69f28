//! Diagnostic logs via `tracing`, on stderr, as text or JSON. Tokens are never logged:
//! no code path formats a request's `Authorization` header or a token into an event.

use tracing_subscriber::EnvFilter;

/// Output format of the diagnostic log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging settings from `-v` and `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// klog-style verbosity: 0-1 info, 2-4 debug, 5+ trace (dependencies included at 5+).
    pub verbosity: u8,
    pub format: LogFormat,
}

impl LogSettings {
    /// The `tracing` filter for this verbosity.
    pub fn filter(&self) -> EnvFilter {
        let directive = match self.verbosity {
            0..=1 => "warn,kube_oidc_proxy=info",
            2..=4 => "warn,kube_oidc_proxy=debug",
            _ => "debug,kube_oidc_proxy=trace",
        };
        EnvFilter::new(directive)
    }
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(settings: &LogSettings) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(settings.filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    let result = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second call (tests) keeps the first subscriber.
    let _ = result;
}
