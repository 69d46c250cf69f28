//! A test OIDC signer: aws-lc-rs key pairs that sign arbitrary JWS header/payload JSON and publish
//! the matching JWK, for integration tests that play the issuer.
//!
//! Keys are generated when the test runs; nothing here is key material on disk.
#![allow(dead_code)] // each test binary uses a different part

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kube_oidc_proxy::authn::jws::Algorithm;
use serde_json::{json, Value};

/// A private signing key with a `kid` and the algorithm its tokens are signed with.
pub(crate) struct SigningKey {
    kid: String,
    alg: Algorithm,
    pair: KeyPair,
}

enum KeyPair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl SigningKey {
    /// Generates a key of the type `alg` needs: RSA 2048 for RS*/PS*, P-256/P-384/P-521 for
    /// ES256/ES384/ES512, Ed25519 for EdDSA.
    pub(crate) fn generate(alg: Algorithm, kid: &str) -> Self {
        let pair = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                KeyPair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"))
            }
            Algorithm::ES256 => ec_pair(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
            Algorithm::ES384 => ec_pair(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
            Algorithm::ES512 => ec_pair(&signature::ECDSA_P521_SHA512_FIXED_SIGNING),
            Algorithm::EdDSA => {
                KeyPair::Ed25519(Ed25519KeyPair::generate().expect("Ed25519 key generation"))
            }
        };
        Self {
            kid: kid.to_owned(),
            alg,
            pair,
        }
    }

    /// The same RSA key signing with another RSA algorithm (RSA generation is slow).
    ///
    /// Panics unless both algorithms are RSA ones.
    pub(crate) fn with_rsa_algorithm(self, alg: Algorithm) -> Self {
        assert!(matches!(self.pair, KeyPair::Rsa(_)) && rsa_encoding(alg).is_some());
        Self { alg, ..self }
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public JWK: `kty`, key members, `kid`, `use: sig`. No `alg` member, as many issuers
    /// publish; add one to the returned object to pin the key.
    pub(crate) fn public_jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            KeyPair::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            KeyPair::Ec(pair) => {
                // The public key is the uncompressed point 0x04 || x || y.
                let point = &pair.public_key().as_ref()[1..];
                let (x, y) = point.split_at(point.len() / 2);
                let crv = match self.alg {
                    Algorithm::ES256 => "P-256",
                    Algorithm::ES384 => "P-384",
                    _ => "P-521",
                };
                json!({ "kty": "EC", "crv": crv, "x": b64(x), "y": b64(y) })
            }
            KeyPair::Ed25519(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) })
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk
    }

    /// A token for `claims` with header `{"alg", "kid", "typ": "JWT"}`.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg.as_str(), "kid": self.kid, "typ": "JWT" });
        self.sign_with_header(&header, claims)
    }

    /// A token with any header JSON, signed with this key's algorithm whatever `alg` says.
    pub(crate) fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(header.to_string().as_bytes(), claims.to_string().as_bytes())
    }

    /// A token of raw header and payload bytes (e.g. JSON with duplicate keys).
    pub(crate) fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(payload));
        let message = signing_input.as_bytes();
        let signature = match &self.pair {
            KeyPair::Rsa(pair) => {
                let encoding = rsa_encoding(self.alg).expect("RSA algorithm");
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &SystemRandom::new(), message, &mut signature)
                    .expect("RSA signing");
                signature
            }
            KeyPair::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .expect("ECDSA signing")
                .as_ref()
                .to_vec(),
            KeyPair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        };
        format!("{signing_input}.{}", b64(&signature))
    }
}

/// The JWKS document publishing `keys`.
pub(crate) fn jwks_json(keys: &[&SigningKey]) -> String {
    let keys: Vec<Value> = keys.iter().map(|key| key.public_jwk()).collect();
    json!({ "keys": keys }).to_string()
}

/// Unpadded base64url.
pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_pair(alg: &'static signature::EcdsaSigningAlgorithm) -> KeyPair {
    KeyPair::Ec(EcdsaKeyPair::generate(alg).expect("EC key generation"))
}

fn rsa_encoding(alg: Algorithm) -> Option<&'static dyn signature::RsaEncoding> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_SHA512,
        _ => return None,
    })
}
