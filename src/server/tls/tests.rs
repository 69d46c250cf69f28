//! Tests for serving TLS. Keys and certificates are generated per test (rcgen, aws-lc-rs); served
//! certificates are asserted through real handshakes over an in-memory pipe.

use std::fs;
use std::os::unix::fs::symlink;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{CipherSuite, ClientConfig, DigitallySignedStruct, ProtocolVersion, SignatureScheme};
use tempfile::TempDir;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A freshly generated self-signed certificate and its key.
struct TestPair {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn test_pair(dns_sans: &[&str]) -> TestPair {
    test_pair_with(dns_sans, None, None)
}

fn test_pair_with(
    dns_sans: &[&str],
    common_name: Option<&str>,
    not_after: Option<time::OffsetDateTime>,
) -> TestPair {
    let sans: Vec<String> = dns_sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).unwrap();
    if let Some(cn) = common_name {
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    if let Some(not_after) = not_after {
        params.not_after = not_after;
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

/// Writes `stem.crt` and `stem.key` into `dir`.
fn write_pair(dir: &Path, stem: &str, cert_pem: &str, key_pem: &str) -> (PathBuf, PathBuf) {
    let cert_file = dir.join(format!("{stem}.crt"));
    let key_file = dir.join(format!("{stem}.key"));
    fs::write(&cert_file, cert_pem).unwrap();
    fs::write(&key_file, key_pem).unwrap();
    (cert_file, key_file)
}

fn settings_for(cert_file: PathBuf, key_file: PathBuf) -> TlsSettings {
    TlsSettings {
        cert_file,
        key_file,
        http2: true,
        ..TlsSettings::default()
    }
}

/// A Kubernetes Secret volume as the kubelet's atomic writer lays it out:
/// `..<timestamp>/tls.{crt,key}`, `..data -> ..<timestamp>`, `tls.crt -> ..data/tls.crt`.
struct SecretVolume {
    dir: TempDir,
    generation: u32,
    current: Option<String>,
}

impl SecretVolume {
    fn new(cert_pem: &str, key_pem: &str) -> SecretVolume {
        let mut volume = SecretVolume {
            dir: TempDir::new().unwrap(),
            generation: 0,
            current: None,
        };
        volume.publish(cert_pem, key_pem);
        symlink("..data/tls.crt", volume.cert_file()).unwrap();
        symlink("..data/tls.key", volume.key_file()).unwrap();
        volume
    }

    fn cert_file(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Writes a new timestamped directory, atomically renames a fresh symlink over `..data`, and
    /// removes the previous directory, as the kubelet does on a Secret update.
    fn publish(&mut self, cert_pem: &str, key_pem: &str) {
        self.generation += 1;
        let name = format!("..2026_01_01_00_00_{:02}.000000001", self.generation);
        let data_dir = self.dir.path().join(&name);
        fs::create_dir(&data_dir).unwrap();
        fs::write(data_dir.join("tls.crt"), cert_pem).unwrap();
        fs::write(data_dir.join("tls.key"), key_pem).unwrap();
        let tmp_link = self.dir.path().join("..data_tmp");
        symlink(&name, &tmp_link).unwrap();
        fs::rename(&tmp_link, self.dir.path().join("..data")).unwrap();
        if let Some(old) = self.current.replace(name) {
            fs::remove_dir_all(self.dir.path().join(old)).unwrap();
        }
    }
}

/// Accepts any server certificate (the tests check which one was served) while still checking
/// the handshake signatures, so a server signing with the wrong key fails.
#[derive(Debug)]
struct AcceptAnyServerCert(CryptoProvider);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client offering `h2` and `http/1.1`, the given versions and (if given) only these suites.
fn client_with(
    versions: &[&'static SupportedProtocolVersion],
    suites: Option<Vec<SupportedCipherSuite>>,
) -> Arc<ClientConfig> {
    let mut crypto = provider::default_provider();
    if let Some(suites) = suites {
        crypto.cipher_suites = suites;
    }
    let verifier = Arc::new(AcceptAnyServerCert(provider::default_provider()));
    let mut config = ClientConfig::builder_with_provider(Arc::new(crypto))
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

fn default_client() -> Arc<ClientConfig> {
    client_with(&[&TLS13, &TLS12], None)
}

/// What the client saw of a completed handshake.
#[derive(Debug)]
struct Handshake {
    peer_leaf: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    version: ProtocolVersion,
    suite: CipherSuite,
}

/// Runs one handshake over an in-memory pipe; `server_name` is sent as SNI unless it is an IP.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> std::io::Result<Handshake> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let (_server, client) = tokio::join!(
        TlsAcceptor::from(server).accept(server_io),
        TlsConnector::from(client).connect(name, client_io),
    );
    let (_, conn) = client?.into_inner();
    Ok(Handshake {
        peer_leaf: conn.peer_certificates().unwrap()[0].clone().into_owned(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version().unwrap(),
        suite: conn.negotiated_cipher_suite().unwrap().suite(),
    })
}

/// The leaf certificate served for `server_name` with `settings` and `certs`.
async fn served_leaf(
    settings: &TlsSettings,
    certs: &Arc<ServingCertificates>,
    server_name: &str,
) -> CertificateDer<'static> {
    let config = server_config(settings, Arc::clone(certs)).unwrap();
    handshake(config, default_client(), server_name)
        .await
        .unwrap()
        .peer_leaf
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// --tls-sni-cert-key syntax
// ---------------------------------------------------------------------------------------------

#[test]
fn sni_cert_key_without_names_takes_names_from_the_certificate() {
    assert_eq!(
        parse_sni_cert_key(" a.crt , a.key ").unwrap(),
        SniCertKey {
            cert_file: "a.crt".into(),
            key_file: "a.key".into(),
            names: vec![],
        }
    );
}

#[test]
fn sni_cert_key_names_follow_the_first_colon_and_are_trimmed() {
    assert_eq!(
        parse_sni_cert_key("a.crt,a.key: *.foo.com , foo.com").unwrap(),
        SniCertKey {
            cert_file: "a.crt".into(),
            key_file: "a.key".into(),
            names: strings(&["*.foo.com", "foo.com"]),
        }
    );
}

#[test]
fn malformed_sni_cert_key_values_are_refused_with_the_reason() {
    let cases = [
        ("a.crt,a.key:", "empty names list is not allowed"),
        ("a.crt,a.key:  ", "empty names list is not allowed"),
        (
            "a.crt,a.key:foo.com,,bar.com",
            "empty name in the names list",
        ),
        (
            "a.crt",
            "expected comma separated certificate and key file paths",
        ),
        (
            "a.crt,a.key,b.key:foo.com",
            "expected comma separated certificate and key file paths",
        ),
        (",a.key", "empty certificate or key file path"),
        ("a.crt, :foo.com", "empty certificate or key file path"),
    ];
    for (value, reason) in cases {
        assert_eq!(
            parse_sni_cert_key(value),
            Err(TlsError::MalformedSniCertKey {
                value: value.to_owned(),
                reason,
            }),
            "{value}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// --tls-min-version and --tls-cipher-suites
// ---------------------------------------------------------------------------------------------

#[test]
fn min_version_names_map_to_tls12_and_newer_or_tls13_only() {
    let both = vec![&TLS13, &TLS12];
    assert_eq!(protocol_versions(None).unwrap(), both);
    assert_eq!(protocol_versions(Some("")).unwrap(), both);
    // rustls cannot speak TLS 1.0/1.1: those minimums are served as TLS 1.2+.
    assert_eq!(protocol_versions(Some("VersionTLS10")).unwrap(), both);
    assert_eq!(protocol_versions(Some("VersionTLS11")).unwrap(), both);
    assert_eq!(protocol_versions(Some("VersionTLS12")).unwrap(), both);
    assert_eq!(
        protocol_versions(Some("VersionTLS13")).unwrap(),
        vec![&TLS13]
    );
}

#[test]
fn unknown_min_version_is_refused_listing_valid_names() {
    let error = protocol_versions(Some("TLS1.2")).unwrap_err();
    assert_eq!(
        error,
        TlsError::UnknownTlsVersion {
            name: "TLS1.2".to_owned()
        }
    );
    assert!(error.to_string().contains("VersionTLS13"), "{error}");
}

fn suite_ids(suites: &[SupportedCipherSuite]) -> Vec<CipherSuite> {
    suites.iter().map(|s| s.suite()).collect()
}

#[test]
fn named_tls12_suites_are_chosen_and_every_tls13_suite_stays_on() {
    let chosen = cipher_suites(&strings(&[
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        // Go's deprecated spelling of TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256.
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        // A TLS 1.3 name is valid but does not narrow TLS 1.3.
        "TLS_AES_128_GCM_SHA256",
    ]))
    .unwrap();
    assert_eq!(
        suite_ids(&chosen),
        vec![
            CipherSuite::TLS13_AES_256_GCM_SHA384,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ]
    );
}

#[test]
fn every_go_spelling_of_a_supported_suite_is_accepted() {
    let names = [
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    ];
    let chosen = cipher_suites(&strings(&names)).unwrap();
    assert_eq!(
        suite_ids(&chosen),
        suite_ids(provider::DEFAULT_CIPHER_SUITES)
    );
}

#[test]
fn empty_cipher_suite_list_gives_the_provider_defaults() {
    assert_eq!(
        suite_ids(&cipher_suites(&[]).unwrap()),
        suite_ids(provider::DEFAULT_CIPHER_SUITES)
    );
}

#[test]
fn every_insecure_and_unknown_cipher_suite_is_reported_at_once() {
    let error = cipher_suites(&strings(&[
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_BOGUS",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        // Go's names are case-sensitive.
        "tls_aes_128_gcm_sha256",
    ]))
    .unwrap_err();
    assert_eq!(
        error,
        TlsError::InvalidCipherSuites {
            insecure: strings(&[
                "TLS_RSA_WITH_AES_128_CBC_SHA",
                "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
            ]),
            unknown: strings(&["TLS_BOGUS", "tls_aes_128_gcm_sha256"]),
        }
    );
    assert_eq!(
        error.to_string(),
        "cipher suite TLS_RSA_WITH_AES_128_CBC_SHA is insecure/unsupported; \
         cipher suite TLS_ECDHE_RSA_WITH_RC4_128_SHA is insecure/unsupported; \
         unknown cipher suite TLS_BOGUS; unknown cipher suite tls_aes_128_gcm_sha256"
    );
}

#[tokio::test]
async fn cipher_suite_list_constrains_tls12_handshakes_only() {
    let dir = TempDir::new().unwrap();
    let pair = test_pair(&["proxy.example"]);
    let (cert, key) = write_pair(dir.path(), "serving", &pair.cert_pem, &pair.key_pem);
    let settings = TlsSettings {
        cipher_suites: strings(&["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]),
        ..settings_for(cert, key)
    };
    let certs = ServingCertificates::load(&settings).unwrap();
    let config = server_config(&settings, certs).unwrap();

    let tls12_named = client_with(
        &[&TLS12],
        Some(vec![suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]),
    );
    let done = handshake(Arc::clone(&config), tls12_named, "proxy.example")
        .await
        .unwrap();
    assert_eq!(
        done.suite,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );

    let tls12_unnamed = client_with(
        &[&TLS12],
        Some(vec![suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]),
    );
    assert!(
        handshake(Arc::clone(&config), tls12_unnamed, "proxy.example")
            .await
            .is_err()
    );

    let tls13_unnamed = client_with(&[&TLS13], Some(vec![suite::TLS13_CHACHA20_POLY1305_SHA256]));
    let done = handshake(config, tls13_unnamed, "proxy.example")
        .await
        .unwrap();
    assert_eq!(done.suite, CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
}

#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_only_client() {
    let dir = TempDir::new().unwrap();
    let pair = test_pair(&["proxy.example"]);
    let (cert, key) = write_pair(dir.path(), "serving", &pair.cert_pem, &pair.key_pem);
    let default_min = settings_for(cert, key);
    let tls13_min = TlsSettings {
        min_version: Some("VersionTLS13".to_owned()),
        ..default_min.clone()
    };
    let certs = ServingCertificates::load(&default_min).unwrap();
    let tls12_client = client_with(&[&TLS12], None);

    let config = server_config(&default_min, Arc::clone(&certs)).unwrap();
    let done = handshake(config, Arc::clone(&tls12_client), "proxy.example")
        .await
        .unwrap();
    assert_eq!(done.version, ProtocolVersion::TLSv1_2);

    let config = server_config(&tls13_min, certs).unwrap();
    assert!(handshake(config, tls12_client, "proxy.example")
        .await
        .is_err());
}

#[tokio::test]
async fn alpn_offers_h2_only_when_http2_is_enabled() {
    let dir = TempDir::new().unwrap();
    let pair = test_pair(&["proxy.example"]);
    let (cert, key) = write_pair(dir.path(), "serving", &pair.cert_pem, &pair.key_pem);
    let with_h2 = settings_for(cert, key);
    let without_h2 = TlsSettings {
        http2: false,
        ..with_h2.clone()
    };
    let certs = ServingCertificates::load(&with_h2).unwrap();

    let config = server_config(&with_h2, Arc::clone(&certs)).unwrap();
    let done = handshake(config, default_client(), "proxy.example")
        .await
        .unwrap();
    assert_eq!(done.alpn.as_deref(), Some(&b"h2"[..]));

    let config = server_config(&without_h2, certs).unwrap();
    let done = handshake(config, default_client(), "proxy.example")
        .await
        .unwrap();
    assert_eq!(done.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

// ---------------------------------------------------------------------------------------------
// Loading pairs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn loaded_pair_is_served() {
    let dir = TempDir::new().unwrap();
    let pair = test_pair(&["proxy.example"]);
    let (cert, key) = write_pair(dir.path(), "serving", &pair.cert_pem, &pair.key_pem);
    let settings = settings_for(cert, key);
    let certs = ServingCertificates::load(&settings).unwrap();
    assert_eq!(
        served_leaf(&settings, &certs, "proxy.example").await,
        pair.der
    );
}

#[test]
fn key_of_another_certificate_is_refused() {
    let dir = TempDir::new().unwrap();
    let (one, other) = (test_pair(&["one.example"]), test_pair(&["other.example"]));
    let (cert, key) = write_pair(dir.path(), "serving", &one.cert_pem, &other.key_pem);
    let error = ServingCertificates::load(&settings_for(cert.clone(), key.clone())).unwrap_err();
    assert_eq!(
        error,
        TlsError::KeyMismatch {
            cert_file: cert,
            key_file: key
        }
    );
}

#[test]
fn bad_pem_is_refused_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let pair = test_pair(&["proxy.example"]);
    let bad = "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n";
    let (cert, key) = write_pair(dir.path(), "serving", bad, &pair.key_pem);
    let error = ServingCertificates::load(&settings_for(cert.clone(), key)).unwrap_err();
    assert_eq!(
        error,
        TlsError::MalformedPem {
            path: cert.clone(),
            reason: "invalid base64"
        }
    );
    assert!(
        error.to_string().contains(&*cert.to_string_lossy()),
        "{error}"
    );
}

#[test]
fn key_pem_joined_to_its_begin_line_is_refused_without_echoing_it() {
    let dir = TempDir::new().unwrap();
    let pair = test_pair(&["proxy.example"]);
    // A lost newline glues key material onto the BEGIN line; the PEM library's own error would
    // quote that line, so the error must carry only a fixed description.
    let glued = pair.key_pem.replacen("-----\n", "-----", 1);
    let (cert, key) = write_pair(dir.path(), "serving", &pair.cert_pem, &glued);
    let error = ServingCertificates::load(&settings_for(cert, key.clone())).unwrap_err();
    assert_eq!(
        error,
        TlsError::MalformedPem {
            path: key.clone(),
            reason: "malformed BEGIN line"
        }
    );
    assert_eq!(
        error.to_string(),
        format!("{}: malformed PEM (malformed BEGIN line)", key.display())
    );
}

#[test]
fn empty_chain_missing_key_and_unreadable_file_are_refused() {
    let dir = TempDir::new().unwrap();
    let pair = test_pair(&["proxy.example"]);
    let (cert, key) = write_pair(dir.path(), "serving", &pair.cert_pem, &pair.key_pem);
    let (empty_cert, keyless) = write_pair(dir.path(), "empty", "", &pair.cert_pem);
    let missing = dir.path().join("missing.key");

    assert_eq!(
        ServingCertificates::load(&settings_for(empty_cert.clone(), key)).unwrap_err(),
        TlsError::NoCertificate { path: empty_cert }
    );
    assert_eq!(
        ServingCertificates::load(&settings_for(cert.clone(), keyless.clone())).unwrap_err(),
        TlsError::NoPrivateKey { path: keyless }
    );
    assert!(matches!(
        ServingCertificates::load(&settings_for(cert, missing.clone())).unwrap_err(),
        TlsError::ReadFile { path, .. } if path == missing
    ));
    assert_eq!(
        ServingCertificates::load(&TlsSettings::default()).unwrap_err(),
        TlsError::MissingServingPair
    );
}

// ---------------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn reload_follows_the_secret_volume_data_symlink_swap() {
    let (old, new) = (test_pair(&["proxy.example"]), test_pair(&["proxy.example"]));
    let mut volume = SecretVolume::new(&old.cert_pem, &old.key_pem);
    let settings = settings_for(volume.cert_file(), volume.key_file());
    let certs = ServingCertificates::load(&settings).unwrap();
    assert_eq!(
        served_leaf(&settings, &certs, "proxy.example").await,
        old.der
    );
    assert_eq!(certs.reload(), Ok(false), "nothing changed yet");

    volume.publish(&new.cert_pem, &new.key_pem);

    assert_eq!(certs.reload(), Ok(true));
    assert_eq!(
        served_leaf(&settings, &certs, "proxy.example").await,
        new.der
    );
    assert_eq!(certs.reload(), Ok(false), "the new pair is already served");
}

#[tokio::test]
async fn broken_new_pair_is_refused_and_the_old_pair_stays_served() {
    let (old, new, other) = (
        test_pair(&["proxy.example"]),
        test_pair(&["proxy.example"]),
        test_pair(&["other.example"]),
    );
    let mut volume = SecretVolume::new(&old.cert_pem, &old.key_pem);
    let settings = settings_for(volume.cert_file(), volume.key_file());
    let certs = ServingCertificates::load(&settings).unwrap();

    volume.publish(&new.cert_pem, &other.key_pem);

    assert_eq!(
        certs.reload(),
        Err(TlsError::KeyMismatch {
            cert_file: volume.cert_file(),
            key_file: volume.key_file(),
        })
    );
    assert_eq!(
        served_leaf(&settings, &certs, "proxy.example").await,
        old.der
    );

    // Once the rotation is completed the new pair is picked up.
    volume.publish(&new.cert_pem, &new.key_pem);
    assert_eq!(certs.reload(), Ok(true));
    assert_eq!(
        served_leaf(&settings, &certs, "proxy.example").await,
        new.der
    );
}

#[tokio::test]
async fn reload_swaps_sni_pairs_together_with_the_default_pair() {
    let dir = TempDir::new().unwrap();
    let default = test_pair(&["proxy.example"]);
    let (old_sni, new_sni) = (test_pair(&["sni.example"]), test_pair(&["sni.example"]));
    let (cert, key) = write_pair(dir.path(), "serving", &default.cert_pem, &default.key_pem);
    let mut volume = SecretVolume::new(&old_sni.cert_pem, &old_sni.key_pem);
    let settings = TlsSettings {
        sni: vec![SniCertKey {
            cert_file: volume.cert_file(),
            key_file: volume.key_file(),
            names: vec![],
        }],
        ..settings_for(cert, key)
    };
    let certs = ServingCertificates::load(&settings).unwrap();

    volume.publish(&new_sni.cert_pem, &new_sni.key_pem);

    assert_eq!(certs.reload(), Ok(true));
    assert_eq!(
        served_leaf(&settings, &certs, "sni.example").await,
        new_sni.der
    );
    assert_eq!(
        served_leaf(&settings, &certs, "proxy.example").await,
        default.der
    );
}

#[tokio::test]
async fn watch_picks_up_a_rotation() {
    let (old, new) = (test_pair(&["proxy.example"]), test_pair(&["proxy.example"]));
    let mut volume = SecretVolume::new(&old.cert_pem, &old.key_pem);
    let settings = settings_for(volume.cert_file(), volume.key_file());
    let certs = ServingCertificates::load(&settings).unwrap();
    let watcher = tokio::spawn(Arc::clone(&certs).watch(Duration::from_millis(10)));

    volume.publish(&new.cert_pem, &new.key_pem);

    // A deadline for a hung test, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(30), async {
        while served_leaf(&settings, &certs, "proxy.example").await != new.der {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the watcher reloaded the rotated pair");
    watcher.abort();
}

// ---------------------------------------------------------------------------------------------
// SNI selection
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sni_selects_exact_names_then_one_label_wildcards_then_the_default() {
    let dir = TempDir::new().unwrap();
    let default = test_pair(&["proxy.example"]);
    let (exact, wildcard) = (
        test_pair(&["unused.example"]),
        test_pair(&["unused.example"]),
    );
    let (cert, key) = write_pair(dir.path(), "serving", &default.cert_pem, &default.key_pem);
    let (exact_cert, exact_key) = write_pair(dir.path(), "exact", &exact.cert_pem, &exact.key_pem);
    let (wild_cert, wild_key) =
        write_pair(dir.path(), "wild", &wildcard.cert_pem, &wildcard.key_pem);
    let settings = TlsSettings {
        sni: vec![
            parse_sni_cert_key(&format!(
                "{},{}:a.foo.com,b.example",
                exact_cert.display(),
                exact_key.display()
            ))
            .unwrap(),
            parse_sni_cert_key(&format!(
                "{},{}:*.foo.com",
                wild_cert.display(),
                wild_key.display()
            ))
            .unwrap(),
        ],
        ..settings_for(cert, key)
    };
    let certs = ServingCertificates::load(&settings).unwrap();

    let cases = [
        ("a.foo.com", &exact.der),
        ("B.Example", &exact.der),
        ("c.foo.com", &wildcard.der),
        ("C.FOO.COM", &wildcard.der),
        // A wildcard covers exactly one label.
        ("x.c.foo.com", &default.der),
        ("foo.com", &default.der),
        ("other.example", &default.der),
        // An IP-address host sends no SNI.
        ("127.0.0.1", &default.der),
    ];
    for (server_name, expected) in cases {
        assert_eq!(
            &served_leaf(&settings, &certs, server_name).await,
            expected,
            "{server_name}"
        );
    }
}

#[tokio::test]
async fn sni_pair_without_names_serves_its_certificate_names() {
    let dir = TempDir::new().unwrap();
    let default = test_pair(&["proxy.example"]);
    let sni = test_pair_with(&["san.example", "*.wild.example"], Some("cn.example"), None);
    let (cert, key) = write_pair(dir.path(), "serving", &default.cert_pem, &default.key_pem);
    let (sni_cert, sni_key) = write_pair(dir.path(), "sni", &sni.cert_pem, &sni.key_pem);
    let settings = TlsSettings {
        sni: vec![SniCertKey {
            cert_file: sni_cert,
            key_file: sni_key,
            names: vec![],
        }],
        ..settings_for(cert, key)
    };
    let certs = ServingCertificates::load(&settings).unwrap();
    for server_name in ["cn.example", "san.example", "x.wild.example"] {
        assert_eq!(
            served_leaf(&settings, &certs, server_name).await,
            sni.der,
            "{server_name}"
        );
    }
    assert_eq!(
        served_leaf(&settings, &certs, "other.example").await,
        default.der
    );
}

#[test]
fn certificate_names_follow_get_certificate_names() {
    let names = |cn: &str, sans: &[&str]| {
        leaf_details(&test_pair_with(sans, Some(cn), None).der)
            .unwrap()
            .0
    };
    assert_eq!(
        names("cn.example", &["a.example", "B.Example"]),
        strings(&["cn.example", "a.example", "b.example"])
    );
    assert_eq!(names("*.cn.example", &[]), strings(&["*.cn.example"]));
    assert_eq!(names("*", &[]), strings(&["*"]));
    // Not used as a name: an IP address, a non-DNS-1123 (upper-case) name, free text.
    assert_eq!(names("10.0.0.1", &["a.example"]), strings(&["a.example"]));
    assert_eq!(names("Upper.Example", &[]), Vec::<String>::new());
    assert_eq!(names("my proxy", &[]), Vec::<String>::new());
}

#[tokio::test]
async fn explicit_names_beat_certificate_names_and_earlier_flags_win() {
    let dir = TempDir::new().unwrap();
    let default = test_pair(&["proxy.example"]);
    let first = test_pair(&["shared.example", "both.example"]);
    let second = test_pair(&["shared.example", "both.example"]);
    let explicit_late = test_pair(&["unused.example"]);
    let explicit_later = test_pair(&["unused.example"]);
    let (cert, key) = write_pair(dir.path(), "serving", &default.cert_pem, &default.key_pem);
    let sni = |stem: &str, pair: &TestPair, names: &[&str]| {
        let (cert_file, key_file) = write_pair(dir.path(), stem, &pair.cert_pem, &pair.key_pem);
        SniCertKey {
            cert_file,
            key_file,
            names: strings(names),
        }
    };
    let settings = TlsSettings {
        sni: vec![
            sni("first", &first, &[]),
            sni("second", &second, &[]),
            sni("late", &explicit_late, &["both.example"]),
            sni("later", &explicit_later, &["both.example"]),
        ],
        ..settings_for(cert, key)
    };
    let certs = ServingCertificates::load(&settings).unwrap();
    // Certificate names only: the earlier flag wins.
    assert_eq!(
        served_leaf(&settings, &certs, "shared.example").await,
        first.der
    );
    // An explicit name overrides certificate names; among explicit names the earlier flag wins.
    assert_eq!(
        served_leaf(&settings, &certs, "both.example").await,
        explicit_late.der
    );
}

// ---------------------------------------------------------------------------------------------
// Validation and expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_reports_every_error_at_once() {
    let dir = TempDir::new().unwrap();
    let (one, other) = (test_pair(&["one.example"]), test_pair(&["other.example"]));
    let (cert, key) = write_pair(dir.path(), "serving", &one.cert_pem, &other.key_pem);
    let missing = dir.path().join("missing.crt");
    let settings = TlsSettings {
        min_version: Some("VersionTLS14".to_owned()),
        cipher_suites: strings(&["TLS_RSA_WITH_AES_128_CBC_SHA"]),
        sni: vec![SniCertKey {
            cert_file: missing.clone(),
            key_file: key.clone(),
            names: vec![],
        }],
        ..settings_for(cert.clone(), key.clone())
    };
    let errors = settings.validate();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(
        errors[..3],
        [
            TlsError::UnknownTlsVersion {
                name: "VersionTLS14".to_owned()
            },
            TlsError::InvalidCipherSuites {
                insecure: strings(&["TLS_RSA_WITH_AES_128_CBC_SHA"]),
                unknown: vec![],
            },
            TlsError::KeyMismatch {
                cert_file: cert,
                key_file: key,
            },
        ]
    );
    assert!(
        matches!(&errors[3], TlsError::ReadFile { path, .. } if *path == missing),
        "{errors:?}"
    );
}

#[test]
fn validate_of_good_settings_is_empty_and_missing_pair_is_reported() {
    let dir = TempDir::new().unwrap();
    let pair = test_pair(&["proxy.example"]);
    let (cert, key) = write_pair(dir.path(), "serving", &pair.cert_pem, &pair.key_pem);
    assert_eq!(settings_for(cert, key).validate(), vec![]);
    assert_eq!(
        TlsSettings::default().validate(),
        vec![TlsError::MissingServingPair]
    );
}

#[test]
fn not_after_is_the_earliest_expiry_of_all_served_leaves() {
    let dir = TempDir::new().unwrap();
    let late = time::macros::datetime!(2031-01-01 00:00 UTC);
    let early = time::macros::datetime!(2030-06-01 00:00 UTC);
    let default = test_pair_with(&["proxy.example"], None, Some(late));
    let sni = test_pair_with(&["sni.example"], None, Some(early));
    let (cert, key) = write_pair(dir.path(), "serving", &default.cert_pem, &default.key_pem);
    let (sni_cert, sni_key) = write_pair(dir.path(), "sni", &sni.cert_pem, &sni.key_pem);
    let settings = TlsSettings {
        sni: vec![SniCertKey {
            cert_file: sni_cert,
            key_file: sni_key,
            names: vec![],
        }],
        ..settings_for(cert, key)
    };
    let certs = ServingCertificates::load(&settings).unwrap();
    let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(early.unix_timestamp() as u64);
    assert_eq!(certs.not_after(), Some(expected));
}
