//! Token minting for integration tests: keys of every algorithm, JWKs, compact JWS.
//! The same code serves the unit tests as `authn::jws::testing`.

pub use kube_oidc_proxy::authn::jws::Algorithm;

include!("jwt_signer.rs");
