//! Fixtures for in-process integration tests: a test PKI, an OIDC issuer, a fake API server
//! that records what reaches it, and the proxy binary on free loopback ports.
#![allow(dead_code, unreachable_pub)]

pub mod apiserver;
pub mod http;
pub mod issuer;
pub mod jwt;
pub mod pki;
pub mod proxy;
pub mod reviews;
pub mod setup;
pub mod upgrade_server;
