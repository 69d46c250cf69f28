//! Runs the built `kube-oidc-proxy` binary in front of a fixture, on free loopback ports.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::pki::{Leaf, TestCa};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct ProxyProcess {
    child: Child,
    pub url: String,
    pub port: u16,
    pub probe_port: u16,
    pub serving: Leaf,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(reader: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kube-oidc-proxy"))
}

impl ProxyProcess {
    /// Starts the proxy with the standard test flags plus `extra`; does not wait for readiness.
    pub fn spawn(ca: &TestCa, issuer_url: &str, upstream_url: &str, extra: &[String]) -> Self {
        let mut args: Vec<String> = vec![
            format!("--oidc-issuer-url={issuer_url}"),
            "--oidc-client-id=kube".into(),
            format!("--oidc-ca-file={}", ca.ca_file().display()),
        ];
        args.extend_from_slice(extra);
        Self::spawn_without_issuer(ca, upstream_url, &args)
    }

    /// Starts the proxy with the standard serving and upstream flags but no `--oidc-*` flags,
    /// plus `extra` (e.g. `--authentication-config`); does not wait for readiness.
    pub fn spawn_without_issuer(ca: &TestCa, upstream_url: &str, extra: &[String]) -> Self {
        let serving = ca.leaf(&format!("proxy-{}", free_port()));
        let port = free_port();
        let probe_port = free_port();
        let mut args: Vec<String> = vec![
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--readiness-probe-port={probe_port}"),
            format!("--tls-cert-file={}", serving.cert_file.display()),
            format!("--tls-private-key-file={}", serving.key_file.display()),
            format!("--server={upstream_url}"),
            format!("--certificate-authority={}", ca.ca_file().display()),
            "--token=proxy-service-account-token".into(),
            "-v=4".into(),
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(binary())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kube-oidc-proxy");
        let stdout: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        collect(child.stdout.take().unwrap(), stdout.clone());
        collect(child.stderr.take().unwrap(), stderr.clone());
        Self {
            child,
            url: format!("https://127.0.0.1:{port}"),
            port,
            probe_port,
            serving,
            stdout,
            stderr,
        }
    }

    /// Starts the proxy and waits until `/ready` answers 200.
    pub async fn start(
        ca: &TestCa,
        issuer_url: &str,
        upstream_url: &str,
        extra: &[String],
    ) -> Self {
        let mut proxy = Self::spawn(ca, issuer_url, upstream_url, extra);
        proxy.wait_ready().await;
        proxy
    }

    pub async fn probe(&self, path: &str) -> Option<(u16, String)> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<super::http::Body>();
        let uri = format!("http://127.0.0.1:{}{path}", self.probe_port);
        let response = client
            .request(http::Request::get(uri).body(super::http::empty()).unwrap())
            .await
            .ok()?;
        let (parts, body) = super::http::body_bytes(response).await;
        Some((
            parts.status.as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }

    pub async fn wait_ready(&mut self) {
        for _ in 0..300 {
            if let Some((200, _)) = self.probe("/ready").await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("proxy exited ({status}) before ready:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("proxy not ready after 30s:\n{}", self.stderr());
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The stdout lines once `done` holds for them, or after 5 s: a line the proxy wrote before
    /// answering (or exiting) may still be on its way through the pipe to the reader thread.
    pub async fn stdout_when(&self, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        eventually(|| self.stdout(), |lines| done(lines)).await
    }

    /// stderr once it contains `needle`, or after 5 s (see [`Self::stdout_when`]).
    pub async fn stderr_with(&self, needle: &str) -> String {
        eventually(|| self.stderr(), |stderr| stderr.contains(needle)).await
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit (after a signal) and returns its status code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `read()` once `done` holds for it, polling every 50 ms for at most 5 s; the last reading
/// otherwise, for the caller's assertion to show.
async fn eventually<T>(read: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    for _ in 0..100 {
        let value = read();
        if done(&value) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    read()
}
