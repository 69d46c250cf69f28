//! JWS compact serialization: decoding and signature verification (RFC 7515, algorithms of RFC 7518
//! and RFC 8037), written on `aws-lc-rs` because no JWT crate covers ES512 without OpenSSL.
//!
//! This is the product's security core. It follows what kube-apiserver's OIDC authenticator does
//! through go-oidc v2 and go-jose v2 (research note `k8s-semantics.md` §1.2, §1.3 and §5.4),
//! and is stricter where that costs no legitimate token:
//!
//! * only the compact serialization, exactly three parts, each unpadded base64url with canonical
//!   trailing bits (Go's decoder also skips `\r`/`\n` and ignores non-zero trailing bits; we refuse);
//! * the header `alg` must be on the caller's allow-list, so `none` and `HS*` can never verify:
//!   there is no code path that uses a key as an HMAC secret;
//! * keys come only from the issuer's JWKS, chosen by `kid` string equality; the `jku`, `x5u`,
//!   `x5c` and `jwk` headers are ignored, and any `crit` header is refused;
//! * a key is only used with an algorithm that fits its type and curve, and with the JWK's own
//!   `alg` when it names one (go-oidc does not check the JWK `alg`);
//! * RSA keys must be 2048..=8192 bits (aws-lc-rs' `*_2048_8192_*` parameters; Go accepts smaller
//!   keys) and RSA-PSS salts must be as long as the hash (RFC 7518 §3.5; go-jose also accepts other
//!   salt lengths).
//!
//! Claims are not looked at here: see [`crate::authn::claims`].

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use crate::authn::jwk::JwkSet;

/// The largest bearer token, in bytes, that [`decode`] accepts. Real ID tokens are a few kB;
/// the bound keeps decoding and JSON parsing of attacker-supplied input small.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The longest header `alg` value an error reports; the rest is cut so that a hostile header
/// cannot flood the log.
const MAX_REPORTED_ALG_CHARS: usize = 32;

/// A JWS signature algorithm this verifier implements (RFC 7518 §3.1, RFC 8037 §3.1).
///
/// `none` and the HMAC algorithms are deliberately absent: a proxy holds only public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256, salt as long as the hash.
    PS256,
    /// RSASSA-PSS with SHA-384, salt as long as the hash.
    PS384,
    /// RSASSA-PSS with SHA-512, salt as long as the hash.
    PS512,
    /// ECDSA on P-256 with SHA-256, signature `r || s`.
    ES256,
    /// ECDSA on P-384 with SHA-384, signature `r || s`.
    ES384,
    /// ECDSA on P-521 with SHA-512, signature `r || s`.
    ES512,
    /// Ed25519 (RFC 8037). Not accepted by kube-apiserver; an opt-in extra.
    EdDSA,
}

/// The algorithms kube-apiserver accepts for OIDC tokens (`allowedSigningAlgs` in the apiserver's
/// `plugin/pkg/authenticator/token/oidc/oidc.go`): every [`Algorithm`] except `EdDSA`.
pub const KUBERNETES_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
];

impl Algorithm {
    /// The algorithm's JWS name, as it appears in a header `alg` and in a JWK `alg`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the [`Algorithm`]s (for example `none` or `HS256`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported signing algorithm {0:?}")]
pub struct UnsupportedAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    /// Parses a JWS algorithm name. Names are case-sensitive (RFC 7515 §4.1.1); `none`, `HS256`,
    /// `HS384`, `HS512` and every other name are refused with an error naming the value.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "PS384" => Self::PS384,
            "PS512" => Self::PS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            "ES512" => Self::ES512,
            "EdDSA" => Self::EdDSA,
            other => return Err(UnsupportedAlgorithm(other.to_owned())),
        })
    }
}

/// One of the three parts of a compact JWS, named in decoding errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The protected header.
    Header,
    /// The payload (the claims).
    Payload,
    /// The signature.
    Signature,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Header => "header",
            Self::Payload => "payload",
            Self::Signature => "signature",
        })
    }
}

/// Why a token was not decoded or not verified. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TokenTooLarge,
    /// The token is not three `.`-separated parts (this includes the JSON serialization).
    #[error("token is not a JWS in compact serialization")]
    NotCompact,
    /// A part is not unpadded base64url.
    #[error("token {0} is not unpadded base64url")]
    InvalidBase64(Segment),
    /// The header is not a JSON object, or one of the fields we read has the wrong type.
    #[error("token header is not a valid JSON object")]
    InvalidHeader,
    /// The header has no string `alg`.
    #[error("token header has no \"alg\"")]
    MissingAlgorithm,
    /// The header has a `crit` field; no critical extension is supported (go-jose v2 only knows
    /// `b64`, RFC 7797, which a proxy has no use for).
    #[error("token header has a \"crit\" field; no critical extension is supported")]
    CriticalHeader,
    /// The header `alg` is unknown or not in the configured allow-list (covers `none` and `HS*`).
    /// Carries the header value, cut to a few characters.
    #[error("token signed with algorithm {0:?}, which is not allowed")]
    AlgorithmNotAllowed(String),
    /// No key in the JWKS has the token's `kid` and fits its algorithm. The caller may refetch
    /// the JWKS once (a rotated key) before failing.
    #[error("no key in the issuer's key set matches the token's kid and algorithm")]
    NoMatchingKey,
    /// Keys matched, but the signature verifies with none of them.
    #[error("token signature is invalid")]
    BadSignature,
}

/// The protected header fields this verifier reads. `typ` and `cty` are ignored; `jku`, `x5u`,
/// `x5c` and `jwk` are never used to find keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsHeader {
    /// The header `alg`, verbatim; checked against the allow-list by [`verify`].
    pub alg: String,
    /// The header `kid`; `None` when absent or JSON `null`.
    pub kid: Option<String>,
}

/// A decoded, not yet verified, compact JWS. Build it with [`decode`]; the fields are private so
/// that the signing input always belongs to the header and payload it was decoded with.
#[derive(Debug, Clone)]
pub struct Jws {
    header: JwsHeader,
    payload: Vec<u8>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jws {
    /// The protected header.
    pub fn header(&self) -> &JwsHeader {
        &self.header
    }

    /// The decoded payload bytes. Only trust them after [`verify`] returned `Ok`.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// Decodes a compact JWS without verifying it.
///
/// Refuses, in this order: tokens over [`MAX_TOKEN_BYTES`] (before any decoding); anything but
/// exactly three `.`-separated parts; parts that are not unpadded base64url (RFC 7515 §2,
/// "base64url encoding ... with all trailing '=' characters omitted"); a header that is not a JSON
/// object, has no string `alg`, has a non-string `kid`, or has `crit`.
pub fn decode(token: &str) -> Result<Jws, JwsError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsError::TokenTooLarge);
    }
    let (encoded_header, encoded_payload, encoded_signature) =
        split_compact(token).ok_or(JwsError::NotCompact)?;

    let header_bytes = decode_segment(encoded_header, Segment::Header)?;
    let payload = decode_segment(encoded_payload, Segment::Payload)?;
    let signature = decode_segment(encoded_signature, Segment::Signature)?;
    let header = parse_header(&header_bytes)?;

    // The signing input is the ASCII of the first two parts exactly as received (RFC 7515 §5.2
    // step 8), never a re-encoding.
    let signing_input_len = encoded_header.len() + 1 + encoded_payload.len();
    Ok(Jws {
        header,
        payload,
        signing_input: token[..signing_input_len].to_owned(),
        signature,
    })
}

/// Checks the signature of `jws` with `keys`, accepting only the algorithms in `allowed`.
///
/// go-oidc v2 `verify.go` and `jwks.go` order: the header `alg` must be allowed
/// ([`JwsError::AlgorithmNotAllowed`]); the candidate keys are those whose `kid` equals the
/// token's `kid`, or every key when the token has no (or an empty) `kid`; of those, only keys
/// whose type and curve fit the algorithm and whose JWK `alg`, if set, equals it are tried. No
/// candidate is [`JwsError::NoMatchingKey`]; candidates but no valid signature is
/// [`JwsError::BadSignature`].
pub fn verify(jws: &Jws, keys: &JwkSet, allowed: &[Algorithm]) -> Result<(), JwsError> {
    let alg = jws
        .header
        .alg
        .parse::<Algorithm>()
        .ok()
        .filter(|alg| allowed.contains(alg))
        .ok_or_else(|| JwsError::AlgorithmNotAllowed(reportable_alg(&jws.header.alg)))?;

    // go-oidc: `if keyID == "" || key.KeyID == keyID`, so an empty kid selects every key.
    let kid = jws.header.kid.as_deref().filter(|kid| !kid.is_empty());

    let mut candidates = keys.verification_keys(kid, alg).peekable();
    if candidates.peek().is_none() {
        return Err(JwsError::NoMatchingKey);
    }
    let message = jws.signing_input.as_bytes();
    if candidates.any(|key| key.verify_sig(message, &jws.signature).is_ok()) {
        Ok(())
    } else {
        Err(JwsError::BadSignature)
    }
}

/// Reads the issuer of a token without verifying anything, to route the token to the
/// authenticator of that issuer (kube-apiserver's `untrustedIssuer`, oidc.go L607-647).
///
/// Returns `None`, meaning "not a token for any OIDC issuer", when: the trimmed token starts with
/// `{` (JSON serialization); it is not exactly three `.`-separated parts; the payload is not
/// unpadded base64url (padded or standard-alphabet payloads are skipped, as in kube); the payload
/// is not a JSON object; or `iss` is not a string. `accounts.google.com` is coalesced to
/// `https://accounts.google.com`. With duplicate `iss` keys the last wins, as in Go and as in
/// [`crate::authn::claims::parse_claims`], so routing and verification agree.
///
/// Unlike Go's `encoding/json`, only the exact key `iss` is read (Go also matches `ISS`, `Iss`…).
/// No size bound applies here; [`decode`] enforces [`MAX_TOKEN_BYTES`].
pub fn unverified_issuer(token: &str) -> Option<String> {
    if token.trim().starts_with('{') {
        return None;
    }
    let (_, encoded_payload, _) = split_compact(token)?;
    let payload = URL_SAFE_NO_PAD.decode(encoded_payload).ok()?;
    let Ok(Value::Object(mut claims)) = serde_json::from_slice::<Value>(&payload) else {
        return None;
    };
    match claims.remove("iss")? {
        Value::String(issuer) => Some(coalesce_google_issuer(issuer)),
        _ => None,
    }
}

/// The issuer Google sometimes puts in `iss` instead of the URL its discovery document names.
const GOOGLE_ISSUER_WITHOUT_SCHEME: &str = "accounts.google.com";
/// The issuer URL Google's discovery document names.
const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// Maps Google's scheme-less `iss` to its issuer URL (go-oidc `issuerGoogleAccountsNoScheme`);
/// every other issuer is returned unchanged.
pub(crate) fn coalesce_google_issuer(issuer: String) -> String {
    if issuer == GOOGLE_ISSUER_WITHOUT_SCHEME {
        GOOGLE_ISSUER.to_owned()
    } else {
        issuer
    }
}

/// Splits a compact JWS into its three encoded parts; `None` unless there are exactly three.
fn split_compact(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let parts_triple = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some(parts_triple)
}

fn decode_segment(encoded: &str, segment: Segment) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| JwsError::InvalidBase64(segment))
}

fn parse_header(header_bytes: &[u8]) -> Result<JwsHeader, JwsError> {
    let Ok(Value::Object(mut header)) = serde_json::from_slice::<Value>(header_bytes) else {
        return Err(JwsError::InvalidHeader);
    };
    if header.contains_key("crit") {
        return Err(JwsError::CriticalHeader);
    }
    let Some(Value::String(alg)) = header.remove("alg") else {
        return Err(JwsError::MissingAlgorithm);
    };
    // go-jose: a `kid` that does not unmarshal into a Go string fails the whole header; `null`
    // unmarshals to "" (no kid).
    let kid = match header.remove("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid),
        Some(_) => return Err(JwsError::InvalidHeader),
    };
    Ok(JwsHeader { alg, kid })
}

fn reportable_alg(alg: &str) -> String {
    alg.chars().take(MAX_REPORTED_ALG_CHARS).collect()
}

/// Test helpers: key pairs, their public JWKs, and signed tokens with arbitrary header/payload.
#[cfg(test)]
pub mod testing {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::{json, Value};

    use super::Algorithm;

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
}
