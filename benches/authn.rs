//! Authentication cost per operation (issue 8): `cargo bench --bench authn`.
//!
//! Every benchmark goes through the proxy's real entry point, [`Authenticators::authenticate`]
//! (token size bound, routing by the unverified `iss`, the issuer's verified-token cache, JWS
//! decode and signature check, standard claims, claim mappings, reserved-identity rule), on
//! keys loaded the production way: an in-process HTTPS issuer (the integration tests' fixture)
//! serves discovery and the JWKS, and [`Issuer::refresh`](kube_oidc_proxy::authn::issuer::Issuer::refresh)
//! fetches them once before timing starts.
//!
//! * `cold`: a distinct token per iteration (a unique `jti`), so the cache misses and the token
//!   pays the full verification, as a new token does. Signing happens outside the timed region.
//! * `cached`: the same token over and over, so the cache hits (issue 8's target: ≤ 2 µs).
//! * `parts`: pieces of the cached path, to see where its time goes.
//!
//! The async calls run with `block_on` on a current-thread Tokio runtime, once per iteration;
//! `parts::block_on_ready` measures that overhead alone (tens of ns) so it can be subtracted.
//!
//! Under `cargo test --all-targets` divan runs each benchmark once, as a smoke test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use divan::Bencher;
use kube_oidc_proxy::authn::authenticators::{AuthenticatorOptions, Authenticators};
use kube_oidc_proxy::authn::claims::PrefixedClaim;
use kube_oidc_proxy::authn::issuer::IssuerSettings;
use kube_oidc_proxy::authn::jws::{self, Algorithm, KUBERNETES_ALGORITHMS};
use kube_oidc_proxy::authn::mapping::{ClaimMappings, GroupsMapping, UsernameMapping};
use kube_oidc_proxy::authn::oidc::JwtConfig;
use serde_json::json;
use tokio::runtime::Runtime;

#[path = "../tests/support/mod.rs"]
mod support;

use support::issuer::TestIssuer;
use support::pki::TestCa;

fn main() {
    divan::main();
}

/// The audience (client id) the fixtures' tokens carry.
const AUDIENCE: &str = "kube";

/// One issuer with one key of `alg`, served over TLS, and the proxy's authenticators for it
/// with the keys already loaded.
struct Fixture {
    runtime: Runtime,
    authenticators: Authenticators,
    issuer: TestIssuer,
    /// Makes every minted token distinct.
    next_jti: AtomicU64,
    /// Keeps the CA's temporary directory alive.
    _ca: TestCa,
}

impl Fixture {
    fn new(alg: Algorithm) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let ca = TestCa::new();
        let issuer = runtime.block_on(TestIssuer::start_with(&ca, alg));
        let mut algorithms = KUBERNETES_ALGORITHMS.to_vec();
        algorithms.push(Algorithm::EdDSA);
        // The `--oidc-*` flags' shape: a username claim and a groups claim, both prefixed.
        let config = JwtConfig {
            issuer: IssuerSettings {
                certificate_authority: Some(ca.cert_pem.clone()),
                ..IssuerSettings::new(issuer.url.clone())
            },
            audiences: vec![AUDIENCE.to_owned()],
            algorithms,
            claim_mappings: ClaimMappings {
                username: UsernameMapping::Claim(PrefixedClaim {
                    claim: "email".to_owned(),
                    prefix: "oidc:".to_owned(),
                }),
                groups: Some(GroupsMapping::Claim(PrefixedClaim {
                    claim: "groups".to_owned(),
                    prefix: "oidc:".to_owned(),
                })),
                uid: None,
                extra: Vec::new(),
            },
            claim_validation_rules: Vec::new(),
            user_validation_rules: Vec::new(),
        };
        let authenticators = Authenticators::new(vec![config], AuthenticatorOptions::default())
            .expect("authenticators");
        let authenticator = authenticators
            .authenticator(&issuer.url)
            .expect("configured issuer");
        runtime
            .block_on(authenticator.issuer().refresh())
            .expect("load the issuer's keys");
        let fixture = Self {
            runtime,
            authenticators,
            issuer,
            next_jti: AtomicU64::new(0),
            _ca: ca,
        };
        // What is timed is what is meant: a new token misses the cache, its repeat hits it.
        let token = fixture.token();
        assert!(!fixture.authenticate(&token).cached);
        assert!(fixture.authenticate(&token).cached);
        fixture
    }

    /// A new token of a typical ID token's shape, signed with the issuer's key.
    fn token(&self) -> String {
        let jti = self.next_jti.fetch_add(1, Ordering::Relaxed);
        self.issuer.token(&self.issuer.claims(
            AUDIENCE,
            json!({
                "sub": "b6f1c2a4-3d2e-4f8a-9c1d-0e5f7a8b9c0d",
                "email": "alice@example.com",
                "email_verified": true,
                "groups": ["dev", "ops", "platform"],
                "jti": jti.to_string(),
            }),
        ))
    }

    /// What one request pays to authenticate `token` (the proxy reads the clock per request).
    fn authenticate(&self, token: &str) -> kube_oidc_proxy::authn::authenticators::Authenticated {
        self.runtime
            .block_on(self.authenticators.authenticate(token, SystemTime::now()))
            .expect("token accepted")
    }
}

const ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
    Algorithm::EdDSA,
];

/// A new token: cache miss, full verification. RSA signing (outside the timed region) makes
/// the RSA runs slow in wall time, hence the bounded sample count.
#[divan::bench(args = ALGORITHMS, sample_count = 200, sample_size = 1)]
fn cold(bencher: Bencher, alg: Algorithm) {
    let fixture = Fixture::new(alg);
    bencher
        .with_inputs(|| fixture.token())
        .bench_local_refs(|token| fixture.authenticate(token));
}

/// The same token again: cache hit. RS256 tokens are longer (a 256-byte signature) than ES256
/// ones, which the per-hit SHA-256 and the routing decode both scale with.
#[divan::bench(args = [Algorithm::RS256, Algorithm::ES256])]
fn cached(bencher: Bencher, alg: Algorithm) {
    let fixture = Fixture::new(alg);
    let token = fixture.token();
    fixture.authenticate(&token);
    bencher.bench_local(|| fixture.authenticate(divan::black_box(&token)));
}

/// Pieces of the cached path, on an RS256 token.
mod parts {
    use super::*;

    /// The harness overhead in every `cold`/`cached` figure: `block_on` of a ready future.
    #[divan::bench]
    fn block_on_ready(bencher: Bencher) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        bencher.bench_local(|| runtime.block_on(async { divan::black_box(1) }));
    }

    /// The cache hit without the set-level routing: `JwtAuthenticator::authenticate`.
    #[divan::bench]
    fn cached_without_routing(bencher: Bencher) {
        let fixture = Fixture::new(Algorithm::RS256);
        let token = fixture.token();
        let authenticator = fixture
            .authenticators
            .authenticator(&fixture.issuer.url)
            .expect("configured issuer");
        fixture.authenticate(&token);
        bencher.bench_local(|| {
            fixture
                .runtime
                .block_on(authenticator.authenticate(divan::black_box(&token), SystemTime::now()))
                .expect("token accepted")
        });
    }

    /// The routing step alone: base64 and JSON decoding of the unverified payload for `iss`.
    #[divan::bench]
    fn unverified_issuer(bencher: Bencher) {
        let fixture = Fixture::new(Algorithm::RS256);
        let token = fixture.token();
        bencher.bench_local(|| jws::unverified_issuer(divan::black_box(&token)));
    }

    /// The cache key: SHA-256 of the token.
    #[divan::bench]
    fn token_sha256(bencher: Bencher) {
        let fixture = Fixture::new(Algorithm::RS256);
        let token = fixture.token();
        bencher.bench_local(|| {
            aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                divan::black_box(&token).as_bytes(),
            )
        });
    }

    /// `jws::decode` of the compact token (base64 of three parts, header JSON).
    #[divan::bench]
    fn jws_decode(bencher: Bencher) {
        let fixture = Fixture::new(Algorithm::RS256);
        let token = fixture.token();
        bencher.bench_local(|| jws::decode(divan::black_box(&token)).expect("decodes"));
    }
}
