//! JSON Web Key Sets (RFC 7517) holding the issuer's public signing keys (RFC 7518 §6, RFC 8037).
//!
//! Like real JWKS consumers, one unusable key does not spoil the set: keys with an unknown `kty`
//! or `crv`, a `use` other than `sig`, an unknown `alg` or one that does not fit the key, or
//! malformed material are skipped (logged at debug level). Only a document that is not a JSON
//! object with a `keys` array is an error. (go-jose v2, as kube-apiserver uses it, refuses the
//! whole set on an unknown `kty`; skipping per key keeps one odd key from locking out an issuer.)
//!
//! Each key is parsed once, when the set is loaded, into an `aws-lc-rs` public key per algorithm
//! it may verify, so verification does no parsing.

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::authn::jws::Algorithm;

/// At most this many usable keys are kept from one JWKS document; later keys are ignored. Real
/// issuers publish a handful; the bound caps the keys a token without `kid` is tried against.
pub const MAX_KEYS: usize = 100;

/// The RSA modulus sizes accepted, in bits: the range of aws-lc-rs' `RSA_*_2048_8192_*`
/// verification parameters. Smaller keys are refused on purpose (Go would accept them).
const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The RSA algorithms, tried in this order for a key without `alg`.
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The document is not valid JSON; carries serde_json's message (position, not content).
    #[error("JWKS is not valid JSON: {0}")]
    InvalidJson(String),
    /// The document is JSON but not an object with a `keys` array.
    #[error("JWKS is not a JSON object with a \"keys\" array")]
    NotAKeySet,
}

/// The usable signing keys of one JWKS document, ready to verify with.
#[derive(Clone, Default)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// One usable key: its `kid` and one parsed public key per algorithm it may verify.
#[derive(Clone)]
struct Jwk {
    kid: Option<String>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
}

/// The JWK members we read (RFC 7517 §4, RFC 7518 §6.2.1 and §6.3.1, RFC 8037 §2). Any member of
/// the wrong type makes the key unusable.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl JwkSet {
    /// Parses a JWKS document `{"keys": [...]}`.
    ///
    /// Errors only when the document is not valid JSON ([`JwkError::InvalidJson`]) or not an
    /// object with a `keys` array ([`JwkError::NotAKeySet`]). Unusable keys are skipped; see the
    /// module documentation. At most [`MAX_KEYS`] usable keys are kept.
    pub fn from_json(document: &[u8]) -> Result<Self, JwkError> {
        let document: Value =
            serde_json::from_slice(document).map_err(|e| JwkError::InvalidJson(e.to_string()))?;
        let Some(Value::Array(entries)) = document.get("keys") else {
            return Err(JwkError::NotAKeySet);
        };

        let mut keys = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            if keys.len() == MAX_KEYS {
                tracing::debug!(
                    ignored = entries.len() - index,
                    "JWKS reached {MAX_KEYS} usable keys; ignoring the remaining entries"
                );
                break;
            }
            match Jwk::parse(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => tracing::debug!(index, reason, "skipping JWKS key"),
            }
        }
        Ok(Self { keys })
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is usable; every token then fails with `NoMatchingKey`.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public keys that may verify a token signed with `alg` and carrying `kid`: keys whose
    /// `kid` equals it, or all keys when `kid` is `None`, that fit `alg`.
    pub(crate) fn verification_keys<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a ParsedPublicKey> + 'a {
        self.keys
            .iter()
            .filter(move |key| kid.is_none() || key.kid.as_deref() == kid)
            .filter_map(move |key| {
                key.verifiers
                    .iter()
                    .find(|(key_alg, _)| *key_alg == alg)
                    .map(|(_, public_key)| public_key)
            })
    }
}

impl std::fmt::Debug for JwkSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|key| {
                let algs: Vec<&str> = key.verifiers.iter().map(|(alg, _)| alg.as_str()).collect();
                (key.kid.as_deref(), algs)
            }))
            .finish()
    }
}

impl Jwk {
    /// Parses one JWKS entry; the error is the reason it is skipped, for the debug log.
    fn parse(entry: &Value) -> Result<Self, &'static str> {
        let raw = RawJwk::deserialize(entry).map_err(|_| "not a JSON object of string members")?;
        if raw.use_.as_deref().is_some_and(|key_use| key_use != "sig") {
            return Err("\"use\" is not \"sig\"");
        }
        let pinned_alg = match raw.alg.as_deref() {
            None => None,
            Some(alg) => Some(
                alg.parse::<Algorithm>()
                    .map_err(|_| "\"alg\" is not a supported signature algorithm")?,
            ),
        };

        let verifiers = match raw.kty.as_deref() {
            Some("RSA") => rsa_verifiers(&raw, pinned_alg)?,
            Some("EC") => vec![ec_verifier(&raw, pinned_alg)?],
            Some("OKP") => vec![ed25519_verifier(&raw, pinned_alg)?],
            Some(_) => return Err("unsupported \"kty\""),
            None => return Err("no \"kty\""),
        };
        Ok(Self {
            kid: raw.kid,
            verifiers,
        })
    }
}

/// RSA (RFC 7518 §6.3.1): `n` and `e`, big-endian. One parsed key per allowed RSA algorithm,
/// because an aws-lc-rs parsed key is bound to its padding and hash.
fn rsa_verifiers(
    raw: &RawJwk,
    pinned_alg: Option<Algorithm>,
) -> Result<Vec<(Algorithm, ParsedPublicKey)>, &'static str> {
    let algs: Vec<Algorithm> = match pinned_alg {
        None => RSA_ALGORITHMS.to_vec(),
        Some(alg) if RSA_ALGORITHMS.contains(&alg) => vec![alg],
        Some(_) => return Err("\"alg\" does not fit an RSA key"),
    };
    let n = member(raw.n.as_deref(), "no valid \"n\"")?;
    let e = member(raw.e.as_deref(), "no valid \"e\"")?;
    // aws-lc-rs wants both without leading zero bytes; JWKs may carry one (RFC 7518 §6.3.1.1
    // says they must not, but some issuers do).
    let components = RsaPublicKeyComponents {
        n: strip_leading_zeros(&n),
        e: strip_leading_zeros(&e),
    };
    if components.n.is_empty() || components.e.is_empty() {
        return Err("\"n\" or \"e\" is zero");
    }
    let modulus_bits = components.n.len() * 8 - components.n[0].leading_zeros() as usize;
    if !RSA_MODULUS_BITS.contains(&modulus_bits) {
        return Err("RSA modulus is not 2048 to 8192 bits");
    }
    algs.into_iter()
        .map(|alg| {
            components
                .to_parsed_public_key(rsa_parameters(alg))
                .map(|key| (alg, key))
                .map_err(|_| "RSA key rejected by aws-lc-rs")
        })
        .collect()
}

fn rsa_parameters(alg: Algorithm) -> &'static RsaParameters {
    match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => unreachable!("only called with RSA algorithms"),
    }
}

/// EC (RFC 7518 §6.2.1): the curve fixes the algorithm; `x` and `y` must each be exactly the
/// curve's coordinate length (RFC 7518 §6.2.1.2, §6.2.1.3), and the point must be on the curve.
fn ec_verifier(
    raw: &RawJwk,
    pinned_alg: Option<Algorithm>,
) -> Result<(Algorithm, ParsedPublicKey), &'static str> {
    let (alg, coordinate_len, verification): (
        _,
        _,
        &'static signature::EcdsaVerificationAlgorithm,
    ) = match raw.crv.as_deref() {
        Some("P-256") => (Algorithm::ES256, 32, &signature::ECDSA_P256_SHA256_FIXED),
        Some("P-384") => (Algorithm::ES384, 48, &signature::ECDSA_P384_SHA384_FIXED),
        Some("P-521") => (Algorithm::ES512, 66, &signature::ECDSA_P521_SHA512_FIXED),
        _ => return Err("unsupported EC \"crv\""),
    };
    if pinned_alg.is_some_and(|pinned| pinned != alg) {
        return Err("\"alg\" does not fit the EC curve");
    }
    let x = member(raw.x.as_deref(), "no valid \"x\"")?;
    let y = member(raw.y.as_deref(), "no valid \"y\"")?;
    if x.len() != coordinate_len || y.len() != coordinate_len {
        return Err("EC coordinate has the wrong length for the curve");
    }
    // Uncompressed SEC1 point encoding: 0x04 || x || y.
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    ParsedPublicKey::new(verification, point)
        .map(|key| (alg, key))
        .map_err(|_| "EC point rejected by aws-lc-rs")
}

/// OKP (RFC 8037 §2): only `crv` `Ed25519`, with a 32-byte `x`.
fn ed25519_verifier(
    raw: &RawJwk,
    pinned_alg: Option<Algorithm>,
) -> Result<(Algorithm, ParsedPublicKey), &'static str> {
    if raw.crv.as_deref() != Some("Ed25519") {
        return Err("unsupported OKP \"crv\"");
    }
    if pinned_alg.is_some_and(|pinned| pinned != Algorithm::EdDSA) {
        return Err("\"alg\" does not fit an Ed25519 key");
    }
    let x = member(raw.x.as_deref(), "no valid \"x\"")?;
    if x.len() != 32 {
        return Err("Ed25519 \"x\" is not 32 bytes");
    }
    ParsedPublicKey::new(&signature::ED25519, x)
        .map(|key| (Algorithm::EdDSA, key))
        .map_err(|_| "Ed25519 key rejected by aws-lc-rs")
}

/// Decodes a base64url key member. Trailing `=` padding is tolerated here, as go-jose does for
/// key material (`base64URLDecode`); tokens themselves get no such leniency.
fn member(encoded: Option<&str>, missing: &'static str) -> Result<Vec<u8>, &'static str> {
    let encoded = encoded.ok_or(missing)?;
    URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| missing)
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first_non_zero = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first_non_zero..]
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use base64::engine::general_purpose::URL_SAFE;
    use serde_json::{json, Value};

    use super::*;
    use crate::authn::jws::testing::{b64, jwks, TestKey};
    use crate::authn::jws::{decode, verify, JwsError, KUBERNETES_ALGORITHMS};

    static RSA: LazyLock<TestKey> = LazyLock::new(|| TestKey::generate(Algorithm::RS256));

    fn payload() -> Value {
        json!({ "sub": "jane" })
    }

    fn verifies(keys: &JwkSet, key: &TestKey, alg: Algorithm, kid: Option<&str>) -> bool {
        let token = key.token(alg, kid, &payload());
        verify(&decode(&token).unwrap(), keys, &[alg]).is_ok()
    }

    /// Decodes a base64url member of a JWK object.
    fn member_bytes(jwk: &Value, name: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap()
    }

    #[test]
    fn documents_that_are_not_key_sets_are_errors() {
        assert!(matches!(
            JwkSet::from_json(b"{\"keys\": ["),
            Err(JwkError::InvalidJson(_))
        ));
        assert!(matches!(
            JwkSet::from_json(b"<html>"),
            Err(JwkError::InvalidJson(_))
        ));
        for document in [
            &b"[]"[..],
            b"{}",
            b"{\"keys\": {}}",
            b"{\"keys\": null}",
            b"\"keys\"",
        ] {
            assert_eq!(
                JwkSet::from_json(document).unwrap_err(),
                JwkError::NotAKeySet,
                "{}",
                String::from_utf8_lossy(document)
            );
        }
        let empty = JwkSet::from_json(b"{\"keys\": []}").unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn every_key_type_loads_and_verifies() {
        let ec256 = TestKey::generate(Algorithm::ES256);
        let ec384 = TestKey::generate(Algorithm::ES384);
        let ec521 = TestKey::generate(Algorithm::ES512);
        let ed25519 = TestKey::generate(Algorithm::EdDSA);
        let keys = JwkSet::from_json(&jwks(&[
            RSA.public_jwk(Some("rsa")),
            ec256.public_jwk(Some("p256")),
            ec384.public_jwk(Some("p384")),
            ec521.public_jwk(Some("p521")),
            ed25519.public_jwk(Some("ed")),
        ]))
        .unwrap();
        assert_eq!(keys.len(), 5);
        assert!(verifies(&keys, &RSA, Algorithm::PS384, Some("rsa")));
        assert!(verifies(&keys, &ec256, Algorithm::ES256, Some("p256")));
        assert!(verifies(&keys, &ec384, Algorithm::ES384, Some("p384")));
        assert!(verifies(&keys, &ec521, Algorithm::ES512, Some("p521")));
        assert!(verifies(&keys, &ed25519, Algorithm::EdDSA, Some("ed")));
    }

    #[test]
    fn unusable_keys_are_skipped_and_the_rest_still_work() {
        let ec = TestKey::generate(Algorithm::ES256);
        let good = ec.public_jwk(Some("good"));
        let with = |changes: Value| {
            let mut jwk = good.clone();
            for (name, value) in changes.as_object().unwrap() {
                jwk[name] = value.clone();
            }
            jwk
        };
        let x = member_bytes(&good, "x");
        let rsa = RSA.public_jwk(Some("rsa"));
        let unusable = [
            (
                "symmetric key",
                json!({ "kty": "oct", "k": b64(b"secret"), "kid": "good" }),
            ),
            (
                "no kty",
                json!({ "crv": "P-256", "x": good["x"], "y": good["y"] }),
            ),
            ("unknown kty", with(json!({ "kty": "DSA" }))),
            ("unknown curve", with(json!({ "crv": "secp256k1" }))),
            ("curve of another size", with(json!({ "crv": "P-384" }))),
            ("encryption key", with(json!({ "use": "enc" }))),
            ("unknown alg", with(json!({ "alg": "ECDH-ES" }))),
            ("alg of another curve", with(json!({ "alg": "ES384" }))),
            ("RSA alg on an EC key", with(json!({ "alg": "RS256" }))),
            ("short x", with(json!({ "x": b64(&x[1..]) }))),
            (
                "long x",
                with(json!({ "x": b64(&[&[0][..], &x].concat()) })),
            ),
            ("x not base64url", with(json!({ "x": "+/+/" }))),
            ("no y", with(json!({ "y": null }))),
            ("not on the curve", with(json!({ "y": b64(&[1; 32]) }))),
            ("kid not a string", with(json!({ "kid": 1 }))),
            ("not an object", json!("key")),
            (
                "Ed448",
                json!({ "kty": "OKP", "crv": "Ed448", "x": b64(&[1; 57]) }),
            ),
            (
                "X25519",
                json!({ "kty": "OKP", "crv": "X25519", "x": b64(&[9; 32]) }),
            ),
            (
                "short Ed25519",
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(&[9; 31]) }),
            ),
            ("RSA without n", json!({ "kty": "RSA", "e": rsa["e"] })),
            ("RSA without e", json!({ "kty": "RSA", "n": rsa["n"] })),
            (
                "RSA zero e",
                json!({ "kty": "RSA", "n": rsa["n"], "e": b64(&[0]) }),
            ),
            (
                "EC alg on an RSA key",
                json!({ "kty": "RSA", "n": rsa["n"], "e": rsa["e"], "alg": "ES256" }),
            ),
        ];
        for (reason, bad) in unusable {
            let keys = JwkSet::from_json(&jwks(&[bad, good.clone()])).unwrap();
            assert_eq!(keys.len(), 1, "{reason}");
            assert!(
                verifies(&keys, &ec, Algorithm::ES256, Some("good")),
                "{reason}"
            );
        }
    }

    #[test]
    fn use_sig_and_a_fitting_alg_are_accepted() {
        let ec = TestKey::generate(Algorithm::ES512);
        let mut jwk = ec.public_jwk(Some("k"));
        jwk["use"] = json!("sig");
        jwk["alg"] = json!("ES512");
        let keys = JwkSet::from_json(&jwks(&[jwk])).unwrap();
        assert!(verifies(&keys, &ec, Algorithm::ES512, Some("k")));
    }

    #[test]
    fn rsa_components_with_leading_zeros_or_padding_are_accepted() {
        let jwk = RSA.public_jwk(Some("rsa"));
        let n = member_bytes(&jwk, "n");
        let e = member_bytes(&jwk, "e");
        let sloppy = json!({
            "kty": "RSA",
            "kid": "rsa",
            "n": b64(&[&[0, 0][..], &n].concat()),
            "e": URL_SAFE.encode([&[0][..], &e].concat()),
        });
        assert!(sloppy["e"].as_str().unwrap().ends_with('='));
        let keys = JwkSet::from_json(&jwks(&[sloppy])).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(verifies(&keys, &RSA, Algorithm::RS256, Some("rsa")));
    }

    #[test]
    fn rsa_keys_below_2048_bits_are_skipped() {
        // A 2047-bit modulus: one bit short. The key material need not be a real key to be
        // refused on size.
        let jwk = RSA.public_jwk(None);
        let e = jwk["e"].clone();
        let mut short_n = vec![0xff; 256];
        short_n[0] = 0x7f;
        let short = json!({ "kty": "RSA", "n": b64(&short_n), "e": e });
        let mut full_n = short_n.clone();
        full_n[0] = 0x80;
        let full = json!({ "kty": "RSA", "n": b64(&full_n), "e": e });
        assert_eq!(JwkSet::from_json(&jwks(&[short])).unwrap().len(), 0);
        assert_eq!(JwkSet::from_json(&jwks(&[full])).unwrap().len(), 1);
        let oversized = json!({ "kty": "RSA", "n": b64(&[0xff; 1025]), "e": e });
        assert_eq!(JwkSet::from_json(&jwks(&[oversized])).unwrap().len(), 0);
    }

    #[test]
    fn at_most_max_keys_are_kept() {
        let ec = TestKey::generate(Algorithm::ES256);
        let public = ec.public_jwk(None);
        let entries: Vec<Value> = (0..=MAX_KEYS)
            .map(|i| {
                let mut jwk = public.clone();
                jwk["kid"] = json!(format!("k{i}"));
                jwk
            })
            .collect();
        let keys = JwkSet::from_json(&jwks(&entries)).unwrap();
        assert_eq!(keys.len(), MAX_KEYS);
        let last_kept = format!("k{}", MAX_KEYS - 1);
        assert!(verifies(&keys, &ec, Algorithm::ES256, Some(&last_kept)));
        let ignored = ec.token(Algorithm::ES256, Some(&format!("k{MAX_KEYS}")), &payload());
        assert_eq!(
            verify(&decode(&ignored).unwrap(), &keys, &KUBERNETES_ALGORITHMS),
            Err(JwsError::NoMatchingKey)
        );
    }

    #[test]
    fn skipped_entries_do_not_count_towards_the_bound() {
        let ec = TestKey::generate(Algorithm::ES256);
        let mut entries = vec![json!({ "kty": "oct", "k": "c2VjcmV0" }); MAX_KEYS];
        entries.push(ec.public_jwk(Some("real")));
        let keys = JwkSet::from_json(&jwks(&entries)).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(verifies(&keys, &ec, Algorithm::ES256, Some("real")));
    }

    #[test]
    fn debug_output_lists_kids_and_algorithms_only() {
        let mut jwk = RSA.public_jwk(Some("rsa"));
        jwk["alg"] = json!("PS256");
        let keys = JwkSet::from_json(&jwks(&[jwk])).unwrap();
        assert_eq!(format!("{keys:?}"), r#"[(Some("rsa"), ["PS256"])]"#);
    }
}
