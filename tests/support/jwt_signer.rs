// Token minting shared by the unit tests (`authn::jws::testing`) and the integration tests
// (`tests/support/jwt.rs`): both `include!` this file after bringing `Algorithm` into scope.
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};


/// Short name used by the fixtures.
pub type Alg = Algorithm;

/// A private key generated for a test, able to sign every algorithm that fits its type.
#[derive(Debug)]
pub enum TestKey {
    /// RSA 2048: RS256..RS512 and PS256..PS512.
    Rsa(RsaKeyPair),
    /// ECDSA; the curve decides the one algorithm (ES256, ES384 or ES512).
    Ec(Algorithm, EcdsaKeyPair),
    /// Ed25519: EdDSA.
    Ed25519(Ed25519KeyPair),
}

impl TestKey {
    /// Generates a fresh key of the type `alg` needs (RSA 2048 for RS*/PS*).
    pub fn generate(alg: Algorithm) -> Self {
        use Algorithm::*;
        match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                Self::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("generate RSA"))
            }
            ES256 => Self::ec(alg, &signature::ECDSA_P256_SHA256_FIXED_SIGNING),
            ES384 => Self::ec(alg, &signature::ECDSA_P384_SHA384_FIXED_SIGNING),
            ES512 => Self::ec(alg, &signature::ECDSA_P521_SHA512_FIXED_SIGNING),
            EdDSA => Self::Ed25519(Ed25519KeyPair::generate().expect("generate Ed25519")),
        }
    }

    fn ec(alg: Algorithm, signing: &'static signature::EcdsaSigningAlgorithm) -> Self {
        Self::Ec(alg, EcdsaKeyPair::generate(signing).expect("generate EC"))
    }

    /// The natural algorithm of this key (RS256 for RSA).
    pub fn default_alg(&self) -> Algorithm {
        match self {
            Self::Rsa(_) => Algorithm::RS256,
            Self::Ec(alg, _) => *alg,
            Self::Ed25519(_) => Algorithm::EdDSA,
        }
    }

    /// The public key as a JWK object (no `alg`, no `use`), with `kid` when given.
    pub fn public_jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = match self {
            Self::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Self::Ec(alg, pair) => {
                // Uncompressed SEC1 point: 0x04 || x || y, coordinates of equal length.
                let point = &pair.public_key().as_ref()[1..];
                let (x, y) = point.split_at(point.len() / 2);
                let crv = match alg {
                    Algorithm::ES256 => "P-256",
                    Algorithm::ES384 => "P-384",
                    _ => "P-521",
                };
                json!({ "kty": "EC", "crv": crv, "x": b64(x), "y": b64(y) })
            }
            Self::Ed25519(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) })
            }
        };
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    /// Signs `message` with `alg`; panics if `alg` does not fit the key type.
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Vec<u8> {
        match (self, alg) {
            (Self::Rsa(pair), _) => {
                let encoding: &'static dyn signature::RsaEncoding = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_SHA512,
                    other => panic!("{other} does not fit an RSA key"),
                };
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &SystemRandom::new(), message, &mut sig)
                    .expect("RSA sign");
                sig
            }
            (Self::Ec(key_alg, pair), _) if *key_alg == alg => pair
                .sign(&SystemRandom::new(), message)
                .expect("EC sign")
                .as_ref()
                .to_vec(),
            (Self::Ed25519(pair), Algorithm::EdDSA) => pair.sign(message).as_ref().to_vec(),
            _ => panic!("{alg} does not fit this key"),
        }
    }

    /// A compact JWS of the raw `header` and `payload` bytes, signed with `alg` whatever the
    /// header says.
    pub fn sign_raw(&self, alg: Algorithm, header: &[u8], payload: &[u8]) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(payload));
        let signature = self.sign(alg, signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature))
    }

    /// A compact JWS of the JSON `header` and `payload`, signed with `alg` whatever the
    /// header says.
    pub fn sign_json(&self, alg: Algorithm, header: &Value, payload: &Value) -> String {
        self.sign_raw(
            alg,
            header.to_string().as_bytes(),
            payload.to_string().as_bytes(),
        )
    }

    /// A compact JWS with header `{"alg": alg, "typ": "JWT", "kid": kid}` (no `kid` when
    /// `None`).
    pub fn token(&self, alg: Algorithm, kid: Option<&str>, payload: &Value) -> String {
        let mut header = json!({ "alg": alg.as_str(), "typ": "JWT" });
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        self.sign_json(alg, &header, payload)
    }
}

/// Unpadded base64url, the JWS and JWK encoding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWKS document `{"keys": [...]}` as bytes.
pub fn jwks(keys: &[Value]) -> Vec<u8> {
    json!({ "keys": keys }).to_string().into_bytes()
}
