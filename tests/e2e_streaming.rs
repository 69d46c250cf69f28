//! End-to-end tests of the streaming verbs through the proxy: the real kubectl → the built proxy
//! → the real kube-apiserver → kwok's kubelet API (see `tests/e2e_support/streaming.rs`).
//!
//! Every case runs with each client of [`client_variants`]: the newest kubectl over WebSocket
//! (its default) and over SPDY (`KUBECTL_*_WEBSOCKETS=false`), and the oldest kubectl of the
//! machine with its defaults. Each checks the API server's audit log for the protocol really
//! used, so a silent fallback from WebSocket to SPDY fails the case.
//!
//! Like `tests/e2e.rs`, they skip without `KUBE_OIDC_PROXY_E2E_ENV` and fail under CI without it.

mod e2e_support;
#[path = "e2e_support/streaming.rs"]
mod streaming;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use base64::Engine as _;
use e2e_support::{block_on, unique_name, TestEnv};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use streaming::{
    assert_upgraded_via, audited_answers, client_variants, run_bytes, run_in_terminal, EchoServer,
    Kwok, LiveOutput, PortForward, PseudoRandom, TestPod,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

/// `kubectl exec` of a command: its stdout and stderr arrive on kubectl's stdout and stderr,
/// success is exit status 0, and a failing command fails kubectl with the command's status.
#[test]
fn exec_stdout_stderr_and_exit_status() {
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    let proxy = env.start_proxy();
    let token = env.id_token(ALICE);
    for variant in client_variants(&env) {
        let pod = TestPod::create(&env, &kwok, &format!("exec-{}", variant.label));
        let kubectl = variant.kubectl(&proxy, &env, &token);
        let ns = pod.namespace.as_str();

        let ran = run_bytes(
            &kubectl,
            &variant,
            &[
                "exec",
                "-n",
                ns,
                &pod.name,
                "--",
                "sh",
                "-c",
                "echo to-stdout; echo to-stderr >&2",
            ],
            b"",
        );
        assert!(ran.status.success(), "{}", ran.describe());
        assert_eq!(ran.stdout, b"to-stdout\n", "{}", ran.describe());
        assert!(
            ran.stderr.contains("to-stderr"),
            "stderr lost: {}",
            ran.describe()
        );

        // kwok reports a failed command as an error status that carries the exit status in
        // its message (a kubelet reports the code itself, and kubectl exits with it); either
        // way it travels on the stream's error channel, which must reach kubectl.
        let failed = run_bytes(
            &kubectl,
            &variant,
            &["exec", "-n", ns, &pod.name, "--", "sh", "-c", "exit 3"],
            b"",
        );
        assert!(!failed.status.success(), "{}", failed.describe());
        assert!(
            failed.stderr.contains("exit status 3"),
            "{}",
            failed.describe()
        );

        assert_upgraded_via(&env, ns, "exec", ALICE, variant.exec_protocol());
    }
}

/// `kubectl exec -i` with 10 MiB of (non-text) stdin: the command echoes it back byte-exact.
#[test]
fn exec_stdin_10_mib_echoed_byte_exact() {
    const SIZE: usize = 10 * 1024 * 1024;
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    let proxy = env.start_proxy();
    let token = env.id_token(ALICE);
    let input = PseudoRandom::bytes(0x5eed_0001, SIZE);
    for variant in client_variants(&env) {
        let pod = TestPod::create(&env, &kwok, &format!("stdin-{}", variant.label));
        let kubectl = variant.kubectl(&proxy, &env, &token);
        // `head -c` ends after exactly SIZE bytes: kwok never closes a command's stdin at the
        // client's EOF (a kubelet does), so `cat` would wait forever.
        let size = SIZE.to_string();
        let ran = run_bytes(
            &kubectl,
            &variant,
            &[
                "exec",
                "-i",
                "-n",
                &pod.namespace,
                &pod.name,
                "--",
                "head",
                "-c",
                &size,
            ],
            &input,
        );
        assert!(ran.status.success(), "{}", ran.describe());
        assert_eq!(ran.stdout.len(), SIZE, "{}", ran.describe());
        assert!(
            ran.stdout == input,
            "{variant}: the echo differs from the input"
        );
        assert_upgraded_via(&env, &pod.namespace, "exec", ALICE, variant.exec_protocol());
    }
}

/// `kubectl exec -it` from a terminal: the command runs with a TTY on both ends, and what is
/// typed reaches it through the terminal.
#[test]
fn exec_with_a_tty() {
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    let proxy = env.start_proxy();
    let token = env.id_token(ALICE);
    for variant in client_variants(&env) {
        let pod = TestPod::create(&env, &kwok, &format!("tty-{}", variant.label));
        let kubectl = variant.kubectl(&proxy, &env, &token);
        // The command ends by reading until end of file (^D from the terminal): kwok closes
        // the pseudo-terminal as soon as a command exits and drops output not yet copied, so
        // nothing may be printed last.
        let shown = run_in_terminal(
            &kubectl,
            &variant,
            &[
                "exec",
                "-it",
                "-n",
                &pod.namespace,
                &pod.name,
                "--",
                "sh",
                "-c",
                "test -t 0 && test -t 1 && echo remote-has-a-tty; read line; \
                 echo \"typed:$line\"; read rest || true",
            ],
            b"hello-through-the-tty\n",
        );
        assert!(shown.status.success(), "{}", shown.describe());
        // A TTY turns the command's "\n" into "\r\n": another sign the bytes crossed terminals.
        let screen = String::from_utf8_lossy(&shown.stdout);
        assert!(
            screen.contains("remote-has-a-tty\r\n"),
            "{}",
            shown.describe()
        );
        assert!(
            screen.contains("typed:hello-through-the-tty\r\n"),
            "{}",
            shown.describe()
        );
        assert_upgraded_via(&env, &pod.namespace, "exec", ALICE, variant.exec_protocol());
    }
}

/// `kubectl cp` of a 20 MiB file into the pod and back out: all three copies are equal.
#[test]
fn cp_20_mib_into_and_out_of_a_pod() {
    const SIZE: usize = 20 * 1024 * 1024;
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    let proxy = env.start_proxy();
    let token = env.id_token(ALICE);
    let local = tempfile::TempDir::new().expect("temp dir");
    let original = local.path().join("original.bin");
    let content = PseudoRandom::bytes(0x5eed_0002, SIZE);
    std::fs::write(&original, &content).expect("write the file to copy");
    for variant in client_variants(&env) {
        let pod = TestPod::create(&env, &kwok, &format!("cp-{}", variant.label));
        let kubectl = variant.kubectl(&proxy, &env, &token);
        // The pod's file system is kwok's: exec'd commands run on this machine.
        let in_pod = kwok.work_dir.join(unique_name("cp"));
        let remote = format!("{}:{}", pod.name, in_pod.display());

        let into = run_bytes(
            &kubectl,
            &variant,
            &[
                "cp",
                "-n",
                &pod.namespace,
                &original.display().to_string(),
                &remote,
            ],
            b"",
        );
        assert!(into.status.success(), "{}", into.describe());
        let landed = std::fs::read(&in_pod)
            .unwrap_or_else(|e| panic!("{variant}: {} not in the pod: {e}", in_pod.display()));
        assert!(landed == content, "{variant}: the copy in the pod differs");

        let back = local.path().join(format!("back-{}.bin", variant.label));
        let out_of = run_bytes(
            &kubectl,
            &variant,
            &[
                "cp",
                "-n",
                &pod.namespace,
                &remote,
                &back.display().to_string(),
            ],
            b"",
        );
        assert!(out_of.status.success(), "{}", out_of.describe());
        let returned = std::fs::read(&back).expect("the file copied out");
        assert!(
            returned == content,
            "{variant}: the copy out of the pod differs"
        );
        let _ = std::fs::remove_file(&in_pod);
        assert_upgraded_via(&env, &pod.namespace, "exec", ALICE, variant.exec_protocol());
    }
}

/// `kubectl attach` shows what the container writes while attached.
#[test]
fn attach_streams_what_the_container_writes() {
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    let proxy = env.start_proxy();
    let token = env.id_token(ALICE);
    for variant in client_variants(&env) {
        let pod = TestPod::create(&env, &kwok, &format!("attach-{}", variant.label));
        let kubectl = variant.kubectl(&proxy, &env, &token);
        let mut attached = LiveOutput::start(
            &kubectl,
            &variant,
            &["attach", "-n", &pod.namespace, &pod.name],
        );
        // attach shows only what is written after it attached: write until the line shows.
        let first = unique_name("attach-first");
        attached.wait_for(&first, || Kwok::append_line(&kwok.attach_file, &first));
        let second = unique_name("attach-second");
        Kwok::append_line(&kwok.attach_file, &second);
        attached.wait_for(&second, || {});
        drop(attached);
        assert_upgraded_via(
            &env,
            &pod.namespace,
            "attach",
            ALICE,
            variant.exec_protocol(),
        );
    }
}

/// `kubectl logs` shows the container's log, and `logs -f` shows each new line while it runs.
#[test]
fn logs_and_logs_follow() {
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    let proxy = env.start_proxy();
    let token = env.id_token(ALICE);
    // Logs are a plain streaming GET (no upgrade): the protocol choice does not apply, so
    // once per kubectl binary is enough.
    let mut binaries_seen = Vec::new();
    for variant in client_variants(&env) {
        if variant.spdy_forced {
            continue;
        }
        binaries_seen.push(variant.label.clone());
        let pod = TestPod::create(&env, &kwok, &format!("logs-{}", variant.label));
        let kubectl = variant.kubectl(&proxy, &env, &token);
        let before = unique_name("log-before");
        Kwok::append_line(&kwok.logs_file, &before);
        let logs = run_bytes(
            &kubectl,
            &variant,
            &["logs", "-n", &pod.namespace, &pod.name],
            b"",
        );
        assert!(logs.status.success(), "{}", logs.describe());
        assert!(
            String::from_utf8_lossy(&logs.stdout)
                .lines()
                .any(|l| l == before),
            "{}",
            logs.describe()
        );

        let mut follow = LiveOutput::start(
            &kubectl,
            &variant,
            &["logs", "-f", "-n", &pod.namespace, &pod.name],
        );
        follow.wait_for(&before, || {});
        for n in 0..3 {
            let line = unique_name(&format!("log-follow-{n}"));
            Kwok::append_line(&kwok.logs_file, &line);
            follow.wait_for(&line, || {});
        }
    }
    assert!(!binaries_seen.is_empty());
}

/// `kubectl port-forward` to the TCP echo server behind the pod: 100 MiB through one
/// connection, checksum equal; then 20 connections at once, each echoed intact.
#[test]
fn port_forward_100_mib_and_20_parallel_connections() {
    const BIG: usize = 100 * 1024 * 1024;
    const PARALLEL: usize = 20;
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    EchoServer::ensure(&kwok);
    let proxy = env.start_proxy();
    let token = env.id_token(ALICE);
    for variant in client_variants(&env) {
        let pod = TestPod::create(&env, &kwok, &format!("pf-{}", variant.label));
        let kubectl = variant.kubectl(&proxy, &env, &token);
        let forward = Arc::new(PortForward::start(&kubectl, &variant, &pod, 8080));
        forward.echo_roundtrip(BIG, 0x5eed_0003);
        let workers: Vec<_> = (0..PARALLEL)
            .map(|i| {
                let forward = forward.clone();
                thread::spawn(move || forward.echo_roundtrip(512 * 1024, 0x1000 + i as u64))
            })
            .collect();
        for worker in workers {
            worker.join().expect("a parallel connection failed");
        }
        assert_upgraded_via(
            &env,
            &pod.namespace,
            "portforward",
            ALICE,
            variant.port_forward_protocol(),
        );
    }
}

/// A port-forward left idle for 3 minutes still forwards: neither the proxy nor anything behind
/// it times the upgraded connection out. All clients wait at once (the case is 3 minutes long,
/// not 3 per client), on their own threads while other tests run.
#[test]
fn idle_port_forward_still_works_after_three_minutes() {
    const IDLE: Duration = Duration::from_secs(180);
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    EchoServer::ensure(&kwok);
    let env = Arc::new(env);
    let proxy = Arc::new(env.start_proxy());
    let token = env.id_token(ALICE);
    let waiting: Vec<_> = client_variants(&env)
        .into_iter()
        .map(|variant| {
            let (env, proxy, token) = (env.clone(), proxy.clone(), token.clone());
            let pod = TestPod::create(&env, &kwok, &format!("idle-{}", variant.label));
            thread::spawn(move || {
                let kubectl = variant.kubectl(&proxy, &env, &token);
                let forward = PortForward::start(&kubectl, &variant, &pod, 8080);
                forward.echo_roundtrip(64 * 1024, 0x5eed_0004);
                thread::sleep(IDLE);
                forward.echo_roundtrip(64 * 1024, 0x5eed_0005);
                assert_upgraded_via(
                    &env,
                    &pod.namespace,
                    "portforward",
                    ALICE,
                    variant.port_forward_protocol(),
                );
            })
        })
        .collect();
    for thread in waiting {
        thread.join().expect("an idle port-forward stopped working");
    }
}

/// A user who may read pods but not exec into them gets the API server's Forbidden through the
/// proxy, with every client; and at the protocol level the refused upgrade is an ordinary 403
/// response (the API server's `Status`), with no `Upgrade`, and the connection is closed.
#[test]
fn exec_without_permission_is_forbidden_and_not_upgraded() {
    let Some(env) = TestEnv::load() else { return };
    let kwok = Kwok::from_env(&env);
    let proxy = env.start_proxy();
    let token = env.id_token(BOB);
    let pod = TestPod::create(&env, &kwok, "forbidden");
    for variant in client_variants(&env) {
        let kubectl = variant.kubectl(&proxy, &env, &token);
        let ran = run_bytes(
            &kubectl,
            &variant,
            &["exec", "-n", &pod.namespace, &pod.name, "--", "true"],
            b"",
        );
        assert!(!ran.status.success(), "{}", ran.describe());
        assert!(
            ran.stderr.contains("forbidden")
                && ran.stderr.contains("pods/exec")
                && ran.stderr.contains(BOB),
            "expected the API server's Forbidden for {BOB}: {}",
            ran.describe()
        );
    }
    // Every exec request the proxy made for bob was refused by the API server; none upgraded.
    let answers = audited_answers(&env, &pod.namespace, "exec", BOB);
    assert!(
        answers.iter().all(|(_, code)| *code == 403),
        "(verb, code) audited for {BOB}: {answers:?}"
    );

    let path = format!(
        "/api/v1/namespaces/{}/pods/{}/exec?command=true&stdout=true",
        pod.namespace, pod.name
    );
    let websocket = format!(
        "GET {path} HTTP/1.1\r\nHost: kube\r\nAuthorization: Bearer {token}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
        base64::engine::general_purpose::STANDARD.encode(*b"sixteen byte key")
    );
    let spdy = format!(
        "POST {path} HTTP/1.1\r\nHost: kube\r\nAuthorization: Bearer {token}\r\n\
         Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
         Content-Length: 0\r\n\r\n"
    );
    for (name, request) in [("WebSocket", websocket), ("SPDY", spdy)] {
        let answer = block_on(raw_exchange(&env, &proxy.url, request.as_bytes()));
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 403"), "{name}: {text}");
        assert!(!head.contains("\r\nupgrade:"), "{name}: {text}");
        assert!(head.contains("\r\nconnection: close"), "{name}: {text}");
        assert!(
            body.contains(r#""reason":"Forbidden""#) && body.contains("pods/exec"),
            "{name}: not the API server's Status: {text}"
        );
    }
}

/// Sends `request` on a new TLS connection to the proxy and returns everything that arrives
/// until the proxy closes the connection (bounded: a connection left open fails the test).
async fn raw_exchange(env: &TestEnv, proxy_url: &str, request: &[u8]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&env.proxy_serving_ca_file).expect("CA file") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Upgrades exist only in HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let address = proxy_url.trim_start_matches("https://");
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the proxy");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("TLS handshake with the proxy");
    tls.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut answer))
        .await
        .expect("the proxy left the connection open after refusing the upgrade")
        .ok();
    answer
}
