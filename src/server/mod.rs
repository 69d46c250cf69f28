//! TODO
pub mod tls;
