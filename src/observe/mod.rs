//! Observing the proxy: diagnostic logging and the per-request access log.

pub mod access_log;
pub(crate) mod digits;
pub mod logging;
pub mod metrics;
