//! The token path through the public `authn` API, with tokens from the integration-test signer:
//! route by issuer → decode → verify → standard claims → user.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube_oidc_proxy::authn::claims::{
    map_user, parse_claims, validate_standard, ClaimMappings, PrefixedClaim, ValidationRules,
};
use kube_oidc_proxy::authn::jwk::JwkSet;
use kube_oidc_proxy::authn::jws::{
    decode, unverified_issuer, verify, Algorithm, JwsError, KUBERNETES_ALGORITHMS,
};
use kube_oidc_proxy::authn::UserInfo;
use serde_json::{json, Value};
use support::jwt::{jwks_json, SigningKey};

const ISSUER: &str = "https://issuer.example";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(2_000_000_000)
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": "my-client",
        "sub": "1234",
        "email": "jane@example.com",
        "email_verified": true,
        "groups": ["team1"],
        "exp": 2_000_000_600,
    })
}

/// The whole path as the authenticator will run it.
fn authenticate(token: &str, keys: &JwkSet, allowed: &[Algorithm]) -> Result<UserInfo, String> {
    let issuer = unverified_issuer(token).ok_or("not a token for an OIDC issuer")?;
    assert_eq!(issuer, ISSUER);
    let jws = decode(token).map_err(|e| e.to_string())?;
    verify(&jws, keys, allowed).map_err(|e| e.to_string())?;
    let claims = parse_claims(jws.payload()).map_err(|e| e.to_string())?;
    let rules = ValidationRules {
        issuer: ISSUER.to_owned(),
        audiences: vec!["my-client".to_owned()],
    };
    validate_standard(&claims, &rules, now()).map_err(|e| e.to_string())?;
    let mappings = ClaimMappings {
        username: PrefixedClaim {
            claim: "email".to_owned(),
            prefix: String::new(),
        },
        groups: Some(PrefixedClaim {
            claim: "groups".to_owned(),
            prefix: "oidc:".to_owned(),
        }),
        uid: None,
    };
    map_user(&claims, &mappings, &[]).map_err(|e| e.to_string())
}

#[test]
fn tokens_from_the_test_signer_authenticate_with_every_algorithm() {
    let check = |key: &SigningKey| {
        let keys = JwkSet::from_json(jwks_json(&[key]).as_bytes()).unwrap();
        let user = authenticate(&key.sign(&claims()), &keys, &[key.alg()]).unwrap();
        assert_eq!(user.username, "jane@example.com", "{}", key.alg());
        assert_eq!(user.groups, ["oidc:team1"], "{}", key.alg());
    };
    let mut rsa = SigningKey::generate(Algorithm::RS256, "rsa");
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        rsa = rsa.with_rsa_algorithm(alg);
        check(&rsa);
    }
    for alg in [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ] {
        check(&SigningKey::generate(alg, "k1"));
    }
}

#[test]
fn a_rotated_key_is_not_found_until_the_new_key_set_is_loaded() {
    let old = SigningKey::generate(Algorithm::ES256, "2026-01");
    let new = SigningKey::generate(Algorithm::ES256, "2026-02");
    let published_before = JwkSet::from_json(jwks_json(&[&old]).as_bytes()).unwrap();
    let token = new.sign(&claims());
    let jws = decode(&token).unwrap();
    assert_eq!(
        verify(&jws, &published_before, &KUBERNETES_ALGORITHMS),
        Err(JwsError::NoMatchingKey)
    );
    let published_after = JwkSet::from_json(jwks_json(&[&old, &new]).as_bytes()).unwrap();
    assert_eq!(
        authenticate(&token, &published_after, &KUBERNETES_ALGORITHMS).map(|u| u.username),
        Ok("jane@example.com".to_owned())
    );
}

#[test]
fn raw_and_custom_headers_are_signed_as_given() {
    let key = SigningKey::generate(Algorithm::ES384, "k1");
    let keys = JwkSet::from_json(jwks_json(&[&key]).as_bytes()).unwrap();
    let with_crit = key.sign_with_header(&json!({ "alg": "ES384", "crit": ["x"] }), &claims());
    assert_eq!(decode(&with_crit).unwrap_err(), JwsError::CriticalHeader);

    let duplicate_sub = key.sign_raw(
        br#"{"alg":"ES384","kid":"k1"}"#,
        claims()
            .to_string()
            .replace("\"sub\"", "\"sub\":\"evil\",\"sub\"")
            .as_bytes(),
    );
    let jws = decode(&duplicate_sub).unwrap();
    assert_eq!(verify(&jws, &keys, &[Algorithm::ES384]), Ok(()));
    assert_eq!(parse_claims(jws.payload()).unwrap()["sub"], "1234");
}
