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
//! * RSA keys must be 2048..=8192 bits (aws-lc-rs' `*_2048_8192_*` parameters; Go accepts 1024-bit
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
/// that the signing input always belongs to the header and payload it was decoded with. Its
/// `Debug` output shows the header only: the rest is the credential.
#[derive(Clone)]
pub struct Jws {
    header: JwsHeader,
    payload: Vec<u8>,
    signing_input: String,
    signature: Vec<u8>,
}

impl fmt::Debug for Jws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jws")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
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

/// Test helpers: key pairs, their public JWKs, and signed tokens with arbitrary header/payload
/// (the same file serves the integration tests as `tests/support/jwt.rs`).
#[cfg(test)]
pub mod testing {
    pub use super::Algorithm;

    include!("../../tests/support/jwt_signer.rs");
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE};
    use serde_json::{json, Value};

    use super::testing::{b64, jwks, TestKey};
    use super::*;

    /// RSA key generation is slow; every test shares one RSA key.
    static RSA: LazyLock<TestKey> = LazyLock::new(|| TestKey::generate(Algorithm::RS256));

    const ALL_ALGORITHMS: [Algorithm; 10] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    fn claims() -> Value {
        json!({ "iss": "https://issuer.example", "sub": "jane", "exp": 2_000_000_000 })
    }

    fn key_set(keys: &[Value]) -> JwkSet {
        JwkSet::from_json(&jwks(keys)).expect("valid JWKS")
    }

    fn rsa_set() -> JwkSet {
        key_set(&[RSA.public_jwk(Some("rsa"))])
    }

    fn check(token: &str, keys: &JwkSet, allowed: &[Algorithm]) -> Result<(), JwsError> {
        verify(&decode(token)?, keys, allowed)
    }

    /// Replaces part `index` (0 header, 1 payload, 2 signature) of a compact token.
    fn replace_part(token: &str, index: usize, part: &str) -> String {
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[index] = part;
        parts.join(".")
    }

    /// A key for `alg`: the shared RSA key for RS*/PS*, otherwise a fresh one kept in `fresh`.
    fn key_for(alg: Algorithm, fresh: &mut Option<TestKey>) -> &TestKey {
        if alg.as_str().starts_with(['R', 'P']) {
            &RSA
        } else {
            fresh.insert(TestKey::generate(alg))
        }
    }

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for alg in ALL_ALGORITHMS {
            let mut fresh = None;
            let key = key_for(alg, &mut fresh);
            let keys = key_set(&[key.public_jwk(Some("k1"))]);
            let token = key.token(alg, Some("k1"), &claims());

            let jws = decode(&token).unwrap();
            assert_eq!(jws.header().alg, alg.as_str());
            assert_eq!(jws.header().kid.as_deref(), Some("k1"));
            assert_eq!(jws.payload(), claims().to_string().as_bytes());
            assert_eq!(verify(&jws, &keys, &[alg]), Ok(()), "{alg}");
        }
    }

    #[test]
    fn a_changed_payload_or_signature_fails_for_every_algorithm() {
        for alg in ALL_ALGORITHMS {
            let mut fresh = None;
            let key = key_for(alg, &mut fresh);
            let keys = key_set(&[key.public_jwk(Some("k1"))]);
            let token = key.token(alg, Some("k1"), &claims());

            let forged_claims = json!({ "iss": "https://issuer.example", "sub": "admin" });
            let forged = replace_part(&token, 1, &b64(forged_claims.to_string().as_bytes()));
            assert_eq!(
                check(&forged, &keys, &[alg]),
                Err(JwsError::BadSignature),
                "{alg}"
            );

            let mut signature = decode(&token).unwrap().signature;
            signature[0] ^= 1;
            let flipped = replace_part(&token, 2, &b64(&signature));
            assert_eq!(
                check(&flipped, &keys, &[alg]),
                Err(JwsError::BadSignature),
                "{alg}"
            );
        }
    }

    #[test]
    fn a_signature_by_another_key_with_the_same_kid_fails() {
        let issuer_key = TestKey::generate(Algorithm::ES256);
        let attacker_key = TestKey::generate(Algorithm::ES256);
        let keys = key_set(&[issuer_key.public_jwk(Some("k1"))]);
        let token = attacker_key.token(Algorithm::ES256, Some("k1"), &claims());
        assert_eq!(
            check(&token, &keys, &[Algorithm::ES256]),
            Err(JwsError::BadSignature)
        );
    }

    #[test]
    fn an_asn1_der_ecdsa_signature_is_refused() {
        // JWS ECDSA signatures are fixed-width r || s (RFC 7518 §3.4), never DER.
        let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let der_key = TestKey::Ec(Algorithm::ES256, pair);
        let keys = key_set(&[der_key.public_jwk(Some("k1"))]);
        let token = der_key.token(Algorithm::ES256, Some("k1"), &claims());
        assert_eq!(
            check(&token, &keys, &[Algorithm::ES256]),
            Err(JwsError::BadSignature)
        );
    }

    #[test]
    fn alg_none_is_never_allowed() {
        let header = b64(br#"{"alg":"none","kid":"rsa"}"#);
        let payload = b64(claims().to_string().as_bytes());
        let token = format!("{header}.{payload}.");
        assert_eq!(
            check(&token, &rsa_set(), &ALL_ALGORITHMS),
            Err(JwsError::AlgorithmNotAllowed("none".into()))
        );
    }

    #[test]
    fn hmac_with_the_rsa_public_key_as_secret_is_never_allowed() {
        // The classic key-confusion forgery: HS256 keyed with the issuer's public key bytes.
        let TestKey::Rsa(pair) = &*RSA else {
            unreachable!()
        };
        let secret =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pair.public_key().as_ref());
        let signing_input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","kid":"rsa"}"#),
            b64(claims().to_string().as_bytes())
        );
        let tag = aws_lc_rs::hmac::sign(&secret, signing_input.as_bytes());
        let token = format!("{signing_input}.{}", b64(tag.as_ref()));
        assert_eq!(
            check(&token, &rsa_set(), &ALL_ALGORITHMS),
            Err(JwsError::AlgorithmNotAllowed("HS256".into()))
        );
    }

    #[test]
    fn an_algorithm_outside_the_allow_list_is_refused_even_with_a_valid_signature() {
        let token = RSA.token(Algorithm::PS256, Some("rsa"), &claims());
        assert_eq!(
            check(&token, &rsa_set(), &[Algorithm::RS256]),
            Err(JwsError::AlgorithmNotAllowed("PS256".into()))
        );
        let eddsa_key = TestKey::generate(Algorithm::EdDSA);
        let keys = key_set(&[eddsa_key.public_jwk(None)]);
        let token = eddsa_key.token(Algorithm::EdDSA, None, &claims());
        assert_eq!(
            check(&token, &keys, &KUBERNETES_ALGORITHMS),
            Err(JwsError::AlgorithmNotAllowed("EdDSA".into()))
        );
    }

    #[test]
    fn an_unknown_kid_has_no_matching_key() {
        let token = RSA.token(Algorithm::RS256, Some("rotated"), &claims());
        assert_eq!(
            check(&token, &rsa_set(), &[Algorithm::RS256]),
            Err(JwsError::NoMatchingKey)
        );
    }

    #[test]
    fn a_kid_naming_a_key_of_another_type_has_no_matching_key() {
        let ec_key = TestKey::generate(Algorithm::ES256);
        let keys = key_set(&[RSA.public_jwk(Some("rsa")), ec_key.public_jwk(Some("ec"))]);

        let rsa_signed = RSA.token(Algorithm::RS256, Some("ec"), &claims());
        assert_eq!(
            check(&rsa_signed, &keys, &KUBERNETES_ALGORITHMS),
            Err(JwsError::NoMatchingKey)
        );
        let ec_signed = ec_key.token(Algorithm::ES256, Some("rsa"), &claims());
        assert_eq!(
            check(&ec_signed, &keys, &KUBERNETES_ALGORITHMS),
            Err(JwsError::NoMatchingKey)
        );
    }

    #[test]
    fn an_ec_key_only_verifies_the_algorithm_of_its_curve() {
        let p384_key = TestKey::generate(Algorithm::ES384);
        let keys = key_set(&[p384_key.public_jwk(Some("ec"))]);
        // Header claims ES256 for a P-384 key: the key does not fit, so it is not even tried.
        let header = json!({ "alg": "ES256", "kid": "ec" });
        let token = p384_key.sign_json(Algorithm::ES384, &header, &claims());
        assert_eq!(
            check(&token, &keys, &KUBERNETES_ALGORITHMS),
            Err(JwsError::NoMatchingKey)
        );
    }

    #[test]
    fn a_jwk_alg_binds_the_key_to_that_algorithm() {
        let mut jwk = RSA.public_jwk(Some("rsa"));
        jwk["alg"] = json!("RS256");
        let keys = key_set(&[jwk]);

        let rs256 = RSA.token(Algorithm::RS256, Some("rsa"), &claims());
        assert_eq!(check(&rs256, &keys, &KUBERNETES_ALGORITHMS), Ok(()));
        let ps256 = RSA.token(Algorithm::PS256, Some("rsa"), &claims());
        assert_eq!(
            check(&ps256, &keys, &KUBERNETES_ALGORITHMS),
            Err(JwsError::NoMatchingKey)
        );
    }

    #[test]
    fn a_token_without_kid_or_with_an_empty_kid_tries_every_key() {
        let other = TestKey::generate(Algorithm::ES256);
        let signer = TestKey::generate(Algorithm::ES256);
        let keys = key_set(&[other.public_jwk(Some("a")), signer.public_jwk(Some("b"))]);

        let no_kid = signer.token(Algorithm::ES256, None, &claims());
        assert_eq!(check(&no_kid, &keys, &[Algorithm::ES256]), Ok(()));
        let empty_kid = signer.token(Algorithm::ES256, Some(""), &claims());
        assert_eq!(check(&empty_kid, &keys, &[Algorithm::ES256]), Ok(()));
        let null_kid = signer.sign_json(
            Algorithm::ES256,
            &json!({ "alg": "ES256", "kid": null }),
            &claims(),
        );
        assert_eq!(check(&null_kid, &keys, &[Algorithm::ES256]), Ok(()));

        let stranger = TestKey::generate(Algorithm::ES256);
        let unsigned_by_any = stranger.token(Algorithm::ES256, None, &claims());
        assert_eq!(
            check(&unsigned_by_any, &keys, &[Algorithm::ES256]),
            Err(JwsError::BadSignature)
        );
    }

    #[test]
    fn a_key_without_kid_does_not_match_a_token_with_kid() {
        let keys = key_set(&[RSA.public_jwk(None)]);
        let token = RSA.token(Algorithm::RS256, Some("rsa"), &claims());
        assert_eq!(
            check(&token, &keys, &[Algorithm::RS256]),
            Err(JwsError::NoMatchingKey)
        );
    }

    #[test]
    fn keys_embedded_in_the_header_are_never_used() {
        // An attacker signs with their own key and offers it through `jwk`, `jku`, `x5u` and
        // `x5c`; only the issuer's JWKS counts.
        let attacker = TestKey::generate(Algorithm::ES256);
        let header = json!({
            "alg": "ES256",
            "jwk": attacker.public_jwk(None),
            "jku": "https://attacker.example/jwks",
            "x5u": "https://attacker.example/cert",
            "x5c": ["MIIB"],
        });
        let token = attacker.sign_json(Algorithm::ES256, &header, &claims());
        let issuer_key = TestKey::generate(Algorithm::ES256);
        let keys = key_set(&[issuer_key.public_jwk(Some("k1"))]);
        assert_eq!(
            check(&token, &keys, &[Algorithm::ES256]),
            Err(JwsError::BadSignature)
        );
        assert_eq!(
            check(&token, &rsa_set(), &KUBERNETES_ALGORITHMS),
            Err(JwsError::NoMatchingKey)
        );
    }

    #[test]
    fn a_crit_header_is_refused() {
        let header = json!({ "alg": "RS256", "kid": "rsa", "crit": ["exp"], "exp": 1 });
        let token = RSA.sign_json(Algorithm::RS256, &header, &claims());
        assert_eq!(decode(&token).unwrap_err(), JwsError::CriticalHeader);
        let b64_extension = json!({ "alg": "RS256", "crit": ["b64"], "b64": true });
        let token = RSA.sign_json(Algorithm::RS256, &b64_extension, &claims());
        assert_eq!(decode(&token).unwrap_err(), JwsError::CriticalHeader);
    }

    #[test]
    fn padded_or_standard_alphabet_base64_is_refused() {
        let token = RSA.token(Algorithm::RS256, Some("rsa"), &claims());
        assert_eq!(check(&token, &rsa_set(), &[Algorithm::RS256]), Ok(()));

        // 2 bytes → 3 characters + one '=' when padded.
        let padded = URL_SAFE.encode([0x7b, 0x7d]);
        assert!(padded.ends_with('='));
        assert_eq!(
            decode(&replace_part(&token, 1, &padded)).unwrap_err(),
            JwsError::InvalidBase64(Segment::Payload)
        );
        // 0xfb 0xff encodes as "-_8" in base64url and "+/8" in standard base64.
        let standard = STANDARD_NO_PAD.encode([0xfb, 0xff]);
        assert_eq!(standard, "+/8");
        assert_eq!(
            decode(&replace_part(&token, 1, &standard)).unwrap_err(),
            JwsError::InvalidBase64(Segment::Payload)
        );
        let padded_header = URL_SAFE.encode(br#"{"alg":"RS256"}1"#);
        assert!(padded_header.ends_with('='));
        assert_eq!(
            decode(&replace_part(&token, 0, &padded_header)).unwrap_err(),
            JwsError::InvalidBase64(Segment::Header)
        );
        let signature = decode(&token).unwrap().signature;
        let standard_signature = base64::engine::general_purpose::STANDARD.encode(&signature);
        assert_eq!(
            decode(&replace_part(&token, 2, &standard_signature)).unwrap_err(),
            JwsError::InvalidBase64(Segment::Signature)
        );
        // Non-zero trailing bits ("AB" would also read as the single byte 0x00) are refused.
        assert_eq!(
            decode(&replace_part(&token, 1, "AB")).unwrap_err(),
            JwsError::InvalidBase64(Segment::Payload)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let cases: [(&[u8], JwsError); 6] = [
            (b"{\"alg\":\"RS256\"", JwsError::InvalidHeader),
            (b"[\"RS256\"]", JwsError::InvalidHeader),
            (b"", JwsError::InvalidHeader),
            (br#"{"alg":"RS256","kid":7}"#, JwsError::InvalidHeader),
            (br#"{"kid":"rsa"}"#, JwsError::MissingAlgorithm),
            (br#"{"alg":256}"#, JwsError::MissingAlgorithm),
        ];
        for (header, expected) in cases {
            let token = RSA.sign_raw(Algorithm::RS256, header, claims().to_string().as_bytes());
            assert_eq!(decode(&token).unwrap_err(), expected, "{header:?}");
        }
    }

    #[test]
    fn only_three_part_compact_tokens_decode() {
        let token = RSA.token(Algorithm::RS256, Some("rsa"), &claims());
        assert_eq!(
            decode(&format!("{token}.")).unwrap_err(),
            JwsError::NotCompact
        );
        assert_eq!(
            decode(&format!("{token}.{}", b64(b"x"))).unwrap_err(),
            JwsError::NotCompact
        );
        let (two_parts, _) = token.rsplit_once('.').unwrap();
        assert_eq!(decode(two_parts).unwrap_err(), JwsError::NotCompact);
        assert_eq!(decode("").unwrap_err(), JwsError::NotCompact);

        // The JWS JSON serialization (RFC 7515 §7.2) of the same token.
        let [header, payload, signature]: [&str; 3] =
            token.split('.').collect::<Vec<_>>().try_into().unwrap();
        let json_serialized = json!({
            "payload": payload,
            "protected": header,
            "signature": signature,
        })
        .to_string();
        assert_eq!(decode(&json_serialized).unwrap_err(), JwsError::NotCompact);
    }

    #[test]
    fn oversize_tokens_are_refused_before_decoding() {
        // A token of exactly the limit decodes...
        let key = TestKey::generate(Algorithm::ES256);
        let keys = key_set(&[key.public_jwk(None)]);
        let token_with = |typ_len: usize, filler_len: usize| {
            let header = json!({ "alg": "ES256", "typ": "J".repeat(typ_len) }).to_string();
            let payload = json!({ "f": "a".repeat(filler_len) }).to_string();
            key.sign_raw(Algorithm::ES256, header.as_bytes(), payload.as_bytes())
        };
        // Unpadded base64 cannot reach every length, so the header's length varies too.
        let exact = (1..4)
            .flat_map(|typ_len| {
                let estimate = (MAX_TOKEN_BYTES - token_with(typ_len, 0).len()) * 3 / 4;
                (estimate - 3..estimate + 3).map(move |filler_len| (typ_len, filler_len))
            })
            .map(|(typ_len, filler_len)| token_with(typ_len, filler_len))
            .find(|token| token.len() == MAX_TOKEN_BYTES)
            .expect("some header and filler length give exactly the limit");
        assert_eq!(check(&exact, &keys, &[Algorithm::ES256]), Ok(()));

        // ...one byte more does not, even though it is otherwise a valid token.
        let longer = format!("{exact}A");
        assert_eq!(decode(&longer).unwrap_err(), JwsError::TokenTooLarge);
        // Checked first: garbage of that size is "too large", not "not compact".
        assert_eq!(
            decode(&"a".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err(),
            JwsError::TokenTooLarge
        );
    }

    #[test]
    fn algorithm_names_parse_exactly() {
        for alg in ALL_ALGORITHMS {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        for name in [
            "none", "HS256", "HS384", "HS512", "rs256", "RS256 ", "ES256K", "Ed25519", "",
        ] {
            assert_eq!(
                name.parse::<Algorithm>(),
                Err(UnsupportedAlgorithm(name.to_owned()))
            );
        }
        assert_eq!(
            UnsupportedAlgorithm("HS256".into()).to_string(),
            "unsupported signing algorithm \"HS256\""
        );
        assert!(!KUBERNETES_ALGORITHMS.contains(&Algorithm::EdDSA));
        assert_eq!(KUBERNETES_ALGORITHMS.len(), ALL_ALGORITHMS.len() - 1);
    }

    #[test]
    fn a_long_header_alg_is_cut_in_the_error() {
        let alg = "X".repeat(1000);
        let header = json!({ "alg": alg });
        let token = RSA.sign_json(Algorithm::RS256, &header, &claims());
        assert_eq!(
            check(&token, &rsa_set(), &ALL_ALGORITHMS),
            Err(JwsError::AlgorithmNotAllowed(
                "X".repeat(MAX_REPORTED_ALG_CHARS)
            ))
        );
    }

    #[test]
    fn error_messages_never_contain_the_token() {
        let token = RSA.token(Algorithm::PS512, Some("rsa"), &claims());
        let [header, payload, signature]: [&str; 3] =
            token.split('.').collect::<Vec<_>>().try_into().unwrap();
        let errors = [
            check(&token, &rsa_set(), &[Algorithm::RS256]).unwrap_err(),
            check(&token, &key_set(&[]), &ALL_ALGORITHMS).unwrap_err(),
            check(
                &replace_part(&token, 2, &b64(b"bad")),
                &rsa_set(),
                &ALL_ALGORITHMS,
            )
            .unwrap_err(),
            decode(&replace_part(&token, 1, "+")).unwrap_err(),
            decode(&format!("{token}.")).unwrap_err(),
        ];
        for error in errors {
            let message = error.to_string();
            for part in [header, payload, signature] {
                assert!(!message.contains(part), "{message}");
            }
        }
    }

    #[test]
    fn debug_output_shows_the_header_but_not_the_credential() {
        let token = RSA.token(Algorithm::RS256, Some("rsa"), &claims());
        let debug = format!("{:?}", decode(&token).unwrap());
        assert!(debug.contains("RS256") && debug.contains("rsa"), "{debug}");
        let [_, payload, signature]: [&str; 3] =
            token.split('.').collect::<Vec<_>>().try_into().unwrap();
        assert!(!debug.contains(payload) && !debug.contains(signature));
        // Neither as text nor as the bytes of `{"`.
        assert!(
            !debug.contains("jane") && !debug.contains("123, 34"),
            "{debug}"
        );
    }

    #[test]
    fn unverified_issuer_reads_iss_without_verifying() {
        let token = RSA.token(Algorithm::RS256, None, &claims());
        assert_eq!(
            unverified_issuer(&token).as_deref(),
            Some("https://issuer.example")
        );
        // The signature is not looked at.
        let unsigned = replace_part(&token, 2, "");
        assert_eq!(
            unverified_issuer(&unsigned).as_deref(),
            Some("https://issuer.example")
        );
    }

    #[test]
    fn unverified_issuer_coalesces_google_only() {
        let google = RSA.token(
            Algorithm::RS256,
            None,
            &json!({ "iss": "accounts.google.com" }),
        );
        assert_eq!(
            unverified_issuer(&google).as_deref(),
            Some("https://accounts.google.com")
        );
        let other = RSA.token(Algorithm::RS256, None, &json!({ "iss": "issuer.example" }));
        assert_eq!(unverified_issuer(&other).as_deref(), Some("issuer.example"));
    }

    #[test]
    fn unverified_issuer_skips_what_kube_skips() {
        let token = RSA.token(Algorithm::RS256, None, &claims());
        let with_payload = |payload: &str| replace_part(&token, 1, payload);
        let standard_alphabet =
            STANDARD_NO_PAD.encode("{\"iss\":\"https://issuer.example/\u{3ff}\"}".as_bytes());
        assert!(standard_alphabet.contains(['+', '/']));
        let skipped = [
            format!(
                " {{\"payload\":\"{}\"}}",
                b64(claims().to_string().as_bytes())
            ),
            format!("{token}.x"),
            token.rsplit_once('.').unwrap().0.to_owned(),
            with_payload(&URL_SAFE.encode(br#"{"iss":"https://issuer.example"}"#)),
            with_payload(&standard_alphabet),
            with_payload(&b64(b"[\"https://issuer.example\"]")),
            with_payload(&b64(br#"{"iss":42}"#)),
            with_payload(&b64(br#"{"sub":"jane"}"#)),
            with_payload(&b64(br#"{"iss":"https://issuer.example""#)),
            with_payload(&b64(br#"{"ISS":"https://issuer.example"}"#)),
        ];
        for token in skipped {
            assert_eq!(unverified_issuer(&token), None, "{token}");
        }
    }

    #[test]
    fn unverified_issuer_takes_the_last_duplicate_iss() {
        let token = RSA.sign_raw(
            Algorithm::RS256,
            br#"{"alg":"RS256"}"#,
            br#"{"iss":"https://first.example","iss":"https://last.example"}"#,
        );
        assert_eq!(
            unverified_issuer(&token).as_deref(),
            Some("https://last.example")
        );
    }
}
