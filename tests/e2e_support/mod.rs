//! Harness for the end-to-end tests: the real test cluster of `scripts/cluster` (etcd,
//! kube-apiserver with RBAC and audit log, Dex), the built `kube-oidc-proxy` binary started with
//! the Go kube-oidc-proxy's flags, and the real `kubectl`.
//!
//! The cluster's coordinates come from the env file named by `KUBE_OIDC_PROXY_E2E_ENV`
//! (`scripts/test` sets it). Without it the tests skip, except under CI (`CI` set), where a
//! skipped end-to-end suite would hide a broken setup, so they fail.
// Shared by several test binaries (tests/e2e*.rs); each uses a part.
#![allow(dead_code)]

pub(crate) mod ci_issuer;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tempfile::TempDir;

/// Names the env file written by `scripts/cluster up`.
pub(crate) const ENV_FILE_VAR: &str = "KUBE_OIDC_PROXY_E2E_ENV";

/// Names a proxy binary to test instead of this crate's own build (optional).
pub(crate) const PROXY_BIN_VAR: &str = "KUBE_OIDC_PROXY_E2E_PROXY_BIN";

/// How long the proxy may take to report ready on `/ready`.
const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for one kubectl invocation, so a hung proxy fails the test instead of CI.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(180);
/// The strings of a JSON array (group lists, extra values); empty for anything else.
pub(crate) fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Upper bound for waiting on something that happens asynchronously (a watch event, an audit
/// line). Generous: a bound against hangs, not a latency assertion.
pub(crate) const EVENTUALLY: Duration = Duration::from_secs(60);

/// The test cluster as `scripts/cluster up` describes it in its env file.
pub(crate) struct TestEnv {
    pub(crate) apiserver_url: String,
    pub(crate) kube_ca_file: PathBuf,
    pub(crate) admin_kubeconfig: PathBuf,
    pub(crate) admin_cert: PathBuf,
    pub(crate) admin_key: PathBuf,
    pub(crate) proxy_upstream_kubeconfig: PathBuf,
    pub(crate) proxy_serving_cert: PathBuf,
    pub(crate) proxy_serving_key: PathBuf,
    pub(crate) proxy_serving_ca_file: PathBuf,
    pub(crate) dex_issuer_url: String,
    pub(crate) dex_token_url: String,
    pub(crate) dex_ca_file: PathBuf,
    pub(crate) dex_client_id: String,
    pub(crate) dex_client_secret: String,
    pub(crate) dex_other_client_id: String,
    pub(crate) dex_other_client_secret: String,
    pub(crate) dex_password: String,
    pub(crate) audit_log: PathBuf,
    pub(crate) kubectl: PathBuf,
    /// Prefix of the user names and groups kube-apiserver maps from Dex tokens sent to it
    /// directly (its own `--authentication-config`).
    pub(crate) apiserver_oidc_prefix: String,
    /// Every variable the env file exports, for suites that need more than the above.
    pub(crate) vars: HashMap<String, String>,
}

impl TestEnv {
    /// The cluster to test against, or `None` (after printing why) when the suite is not set up.
    /// Panics when `CI` is set and the suite is not set up, or when the env file is unusable.
    pub(crate) fn load() -> Option<TestEnv> {
        let Some(path) = std::env::var_os(ENV_FILE_VAR).filter(|v| !v.is_empty()) else {
            let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
            assert!(
                !in_ci,
                "{ENV_FILE_VAR} is not set but CI is: the end-to-end tests must run in CI \
                 (run scripts/test)"
            );
            println!("skipped: {ENV_FILE_VAR} not set (run scripts/test)");
            return None;
        };
        Some(TestEnv::from_file(Path::new(&path)))
    }

    /// Reads the env file by sourcing it in a clean `bash` (it is a shell file, so the shell is
    /// the one faithful parser), keeping only what the file itself exports.
    fn from_file(path: &Path) -> TestEnv {
        assert!(
            path.is_file(),
            "{ENV_FILE_VAR}={} is not a file; is the cluster up (scripts/cluster up)?",
            path.display()
        );
        let out = Command::new("bash")
            .args(["-c", ". \"$0\" && env -0"])
            .arg(path)
            .env_clear()
            .output()
            .expect("run bash to read the e2e env file");
        assert!(
            out.status.success(),
            "sourcing {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let vars: HashMap<String, String> = out
            .stdout
            .split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect();
        let get = |name: &str| -> String {
            vars.get(name)
                .cloned()
                .unwrap_or_else(|| panic!("{} does not set {name}", path.display()))
        };
        let file = |name: &str| PathBuf::from(get(name));
        TestEnv {
            apiserver_url: get("KUBE_APISERVER_URL"),
            kube_ca_file: file("KUBE_CA_FILE"),
            admin_kubeconfig: file("ADMIN_KUBECONFIG"),
            admin_cert: file("ADMIN_CERT"),
            admin_key: file("ADMIN_KEY"),
            proxy_upstream_kubeconfig: file("PROXY_UPSTREAM_KUBECONFIG"),
            proxy_serving_cert: file("PROXY_SERVING_CERT"),
            proxy_serving_key: file("PROXY_SERVING_KEY"),
            proxy_serving_ca_file: file("PROXY_SERVING_CA_FILE"),
            dex_issuer_url: get("DEX_ISSUER_URL"),
            dex_token_url: get("DEX_TOKEN_URL"),
            dex_ca_file: file("DEX_CA_FILE"),
            dex_client_id: get("DEX_CLIENT_ID"),
            dex_client_secret: get("DEX_CLIENT_SECRET"),
            dex_other_client_id: get("DEX_OTHER_CLIENT_ID"),
            dex_other_client_secret: get("DEX_OTHER_CLIENT_SECRET"),
            dex_password: get("DEX_PASSWORD"),
            audit_log: file("KUBE_AUDIT_LOG"),
            kubectl: file("KUBECTL"),
            apiserver_oidc_prefix: get("KUBE_APISERVER_OIDC_PREFIX"),
            vars,
        }
    }

    /// A fresh ID token for the Dex user `email`, issued to the proxy's client (audience
    /// `DEX_CLIENT_ID`).
    pub(crate) fn id_token(&self, email: &str) -> String {
        self.id_token_for_client(email, &self.dex_client_id, &self.dex_client_secret)
    }

    /// A fresh ID token for `email` issued to another Dex client (another audience).
    pub(crate) fn id_token_for_other_client(&self, email: &str) -> String {
        self.id_token_for_client(
            email,
            &self.dex_other_client_id,
            &self.dex_other_client_secret,
        )
    }

    /// OAuth 2.0 password grant (RFC 6749 §4.3) against Dex's token endpoint.
    fn id_token_for_client(&self, email: &str, client_id: &str, secret: &str) -> String {
        let form = [
            ("grant_type", "password"),
            ("username", email),
            ("password", self.dex_password.as_str()),
            ("scope", "openid email profile groups"),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        // RFC 6749 §2.3.1: client id and secret, form-encoded, as HTTP Basic credentials.
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(client_id),
            form_encode(secret)
        ));
        let client = HttpsClient::new(&self.dex_ca_file, None);
        let request = Request::post(&self.dex_token_url)
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .expect("token request");
        let (status, body) = block_on(client.send(request));
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(
            status,
            StatusCode::OK,
            "Dex password grant for {email}: {body}"
        );
        body["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("Dex returned no id_token for {email}: {body}"))
            .to_owned()
    }

    /// kubectl as the cluster admin (`system:masters`), straight to the API server.
    pub(crate) fn admin_kubectl(&self) -> Kubectl {
        Kubectl::new(self, self.admin_kubeconfig.clone(), None, Vec::new())
    }

    /// kubectl with the proxy's own upstream identity, straight to the API server.
    pub(crate) fn proxy_identity_kubectl(&self) -> Kubectl {
        Kubectl::new(
            self,
            self.proxy_upstream_kubeconfig.clone(),
            None,
            Vec::new(),
        )
    }

    /// An HTTP client to the API server authenticated as the cluster admin.
    pub(crate) fn admin_http(&self) -> HttpsClient {
        HttpsClient::new(
            &self.kube_ca_file,
            Some((&self.admin_cert, &self.admin_key)),
        )
    }

    /// Starts the built proxy against this cluster; see [`Proxy`].
    pub(crate) fn start_proxy(&self) -> Proxy {
        Proxy::start(
            self,
            &self.proxy_upstream_kubeconfig,
            &self.dex_oidc_flags(),
            &[],
        )
    }

    /// Starts the built proxy in front of Dex with `extra_args` after the standard flags,
    /// reaching the API server with the identity of `upstream_kubeconfig`.
    pub(crate) fn start_proxy_with(
        &self,
        upstream_kubeconfig: &Path,
        extra_args: &[&str],
    ) -> Proxy {
        Proxy::start(
            self,
            upstream_kubeconfig,
            &self.dex_oidc_flags(),
            extra_args,
        )
    }

    /// Starts the built proxy with `authentication` flags (e.g. `--authentication-config`)
    /// instead of the Dex `--oidc-*` flags.
    pub(crate) fn start_proxy_with_authentication(&self, authentication: &[String]) -> Proxy {
        Proxy::start(self, &self.proxy_upstream_kubeconfig, authentication, &[])
    }

    /// Starts the built proxy with `args` as its only flags besides the harness's own (ports,
    /// serving certificate, `--kubeconfig`), reaching the API server as `upstream_kubeconfig`.
    pub(crate) fn start_proxy_with_args(
        &self,
        upstream_kubeconfig: &Path,
        args: &[String],
    ) -> Proxy {
        Proxy::start(self, upstream_kubeconfig, args, &[])
    }

    /// The Go kube-oidc-proxy flags of a deployment in front of Dex.
    fn dex_oidc_flags(&self) -> Vec<String> {
        vec![
            format!("--oidc-issuer-url={}", self.dex_issuer_url),
            format!("--oidc-client-id={}", self.dex_client_id),
            flag_path("--oidc-ca-file", &self.dex_ca_file),
            "--oidc-username-claim=email".to_owned(),
            "--oidc-groups-claim=groups".to_owned(),
        ]
    }

    /// Creates a new namespace `<prefix>-<unique>` in which members of `group` may edit
    /// configmaps and deployments (the same Role as the demo namespaces), and returns its name.
    /// Tests that create many objects use their own namespace so they do not disturb others.
    pub(crate) fn team_namespace(&self, prefix: &str, group: &str) -> String {
        let ns = unique_name(prefix);
        let verbs = [
            "create", "get", "list", "watch", "patch", "update", "delete",
        ];
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": "app-editor", "namespace": ns},
                    "rules": [
                        {"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs},
                        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs},
                    ],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": format!("{group}-app-editor"), "namespace": ns},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": "app-editor",
                    },
                    "subjects": [{
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Group",
                        "name": group,
                    }],
                },
            ],
        });
        self.admin_kubectl()
            .run_with_stdin(&["create", "-f", "-"], manifest.to_string().as_bytes())
            .success();
        ns
    }
}

/// `application/x-www-form-urlencoded` value encoding (every byte but ALPHA / DIGIT escaped;
/// always valid, if more than the minimum).
fn form_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A DNS-1123 name `<prefix>-<suffix>` unique across tests and test runs against one cluster.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{:x}{:x}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A free TCP port on 127.0.0.1, as the kernel assigns one. It is released before the proxy
/// binds it; losing that race makes the proxy exit, which [`Proxy::start`] reports.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Last `lines` lines of a file, for failure messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The built `kube-oidc-proxy` binary, running against the test cluster with the flags a
/// Go kube-oidc-proxy deployment uses. Its output goes to files shown in failure messages.
/// Killed when dropped.
pub(crate) struct Proxy {
    child: Child,
    /// `https://127.0.0.1:<port>`, served with the test CA's proxy certificate.
    pub(crate) url: String,
    /// The plain-HTTP probe listener (`/ready`, `/livez`, `/metrics`) on 127.0.0.1.
    pub(crate) readiness_port: u16,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: TempDir,
}

impl Proxy {
    fn start(
        env: &TestEnv,
        upstream_kubeconfig: &Path,
        authentication: &[String],
        extra_args: &[&str],
    ) -> Proxy {
        let dir = TempDir::new().expect("temp dir for the proxy");
        let (secure_port, readiness_port) = (free_port(), free_port());
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        // Another build can be put under the same tests (e.g. the Go kube-oidc-proxy, to compare).
        let binary = std::env::var_os(PROXY_BIN_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kube-oidc-proxy")));
        let mut command = Command::new(&binary);
        command
            .arg(format!("--secure-port={secure_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--readiness-probe-port={readiness_port}"))
            .arg(flag_path("--tls-cert-file", &env.proxy_serving_cert))
            .arg(flag_path("--tls-private-key-file", &env.proxy_serving_key))
            .args(authentication)
            .arg(flag_path("--kubeconfig", upstream_kubeconfig))
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("proxy stdout file"))
            .stderr(fs::File::create(&stderr).expect("proxy stderr file"));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut proxy = Proxy {
            child,
            url: format!("https://127.0.0.1:{secure_port}"),
            readiness_port,
            stdout,
            stderr,
            _dir: dir,
        };
        proxy.wait_ready(readiness_port);
        proxy
    }

    /// Waits for `GET http://127.0.0.1:<readiness-port>/ready` to answer 200.
    fn wait_ready(&mut self, readiness_port: u16) {
        let deadline = Instant::now() + PROXY_READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the proxy") {
                panic!(
                    "kube-oidc-proxy exited ({status}) before it was ready\n{}",
                    self.logs()
                );
            }
            if http_get_status(readiness_port, "/ready") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-oidc-proxy not ready on 127.0.0.1:{readiness_port}/ready after {:?}\n{}",
                PROXY_READY_TIMEOUT,
                self.logs()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the proxy wrote to stderr (its diagnostic log) so far.
    pub(crate) fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (bounded by [`EVENTUALLY`]) until the proxy's diagnostic log contains `text`.
    #[track_caller]
    pub(crate) fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + EVENTUALLY;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{text:?} never logged\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The proxy's output so far (the last lines), for failure messages.
    pub(crate) fn logs(&self) -> String {
        format!(
            "--- kube-oidc-proxy stdout (tail) ---\n{}\n--- kube-oidc-proxy stderr (tail) ---\n{}",
            tail(&self.stdout, 40),
            tail(&self.stderr, 40)
        )
    }

    /// kubectl talking to this proxy with `token` as its bearer token, through a generated
    /// kubeconfig (server = the proxy, CA = the test CA).
    pub(crate) fn kubectl_with_token(&self, env: &TestEnv, token: &str) -> Kubectl {
        self.kubectl_with_user(env, serde_json::json!({ "token": token }))
    }

    /// kubectl with a kubeconfig of the caller's own (e.g. one that runs a credential plugin);
    /// failures show this proxy's logs.
    pub(crate) fn kubectl_with_kubeconfig(&self, env: &TestEnv, kubeconfig: &Path) -> Kubectl {
        Kubectl::new(
            env,
            kubeconfig.to_path_buf(),
            None,
            vec![self.stdout.clone(), self.stderr.clone()],
        )
    }

    /// The proxy's access log (stdout) so far.
    pub(crate) fn access_log(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// kubectl talking to this proxy as the kubeconfig `user` entry given (token, and e.g.
    /// `as`, `as-groups`, `as-uid`, `as-user-extra`).
    pub(crate) fn kubectl_with_user(&self, env: &TestEnv, user: Value) -> Kubectl {
        let dir = TempDir::new().expect("temp dir for a kubeconfig");
        let path = dir.path().join("kubeconfig");
        // JSON is YAML, and serde_json quotes every value correctly.
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "kube-oidc-proxy",
                "cluster": {
                    "server": self.url,
                    "certificate-authority": env.proxy_serving_ca_file,
                },
            }],
            "users": [{"name": "oidc-user", "user": user}],
            "contexts": [{
                "name": "oidc-user@kube-oidc-proxy",
                "context": {"cluster": "kube-oidc-proxy", "user": "oidc-user"},
            }],
            "current-context": "oidc-user@kube-oidc-proxy",
        });
        fs::write(&path, kubeconfig.to_string()).expect("write kubeconfig");
        Kubectl::new(
            env,
            path,
            Some(dir),
            vec![self.stdout.clone(), self.stderr.clone()],
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flag_path(flag: &str, path: &Path) -> String {
    format!("{flag}={}", path.display())
}

/// Status code of a plain-HTTP `GET` on 127.0.0.1, or `None` if nothing answers (yet).
pub(crate) fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).ok()?;
    let head = std::str::from_utf8(&head[..n]).ok()?;
    // "HTTP/1.1 200 OK"
    head.split(' ').nth(1)?.parse().ok()
}

/// The real kubectl with one kubeconfig, a private `HOME` (no cache or config of the user's
/// leaks in, nothing is cached between runs) and no `KUBECONFIG` from the environment.
pub(crate) struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: TempDir,
    _kubeconfig_dir: Option<TempDir>,
    /// Logs shown when a command fails (the proxy's, when kubectl goes through it).
    context_logs: Vec<PathBuf>,
    /// Extra environment, e.g. `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`.
    envs: Vec<(String, String)>,
}

impl Kubectl {
    fn new(
        env: &TestEnv,
        kubeconfig: PathBuf,
        kubeconfig_dir: Option<TempDir>,
        context_logs: Vec<PathBuf>,
    ) -> Kubectl {
        Kubectl {
            bin: env.kubectl.clone(),
            kubeconfig,
            home: TempDir::new().expect("temp HOME for kubectl"),
            _kubeconfig_dir: kubeconfig_dir,
            context_logs,
            envs: Vec::new(),
        }
    }

    /// The same kubectl configuration run by another kubectl binary (e.g. an older version).
    #[allow(dead_code)] // used by tests/e2e_streaming.rs only
    pub(crate) fn with_binary(mut self, bin: &Path) -> Kubectl {
        self.bin = bin.to_path_buf();
        self
    }

    /// Runs kubectl with `name=value` in its environment.
    #[allow(dead_code)] // used by tests/e2e_streaming.rs only
    pub(crate) fn with_env(mut self, name: &str, value: &str) -> Kubectl {
        self.envs.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The kubectl command line for `args`, for callers that manage the process themselves.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG")
            .env_remove("KUBERC")
            // Protocol choices come only from with_env, never from the caller's environment.
            .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
            .env_remove("KUBECTL_PORT_FORWARD_WEBSOCKETS")
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs `kubectl ARGS` to completion (bounded by a generous timeout).
    pub(crate) fn run(&self, args: &[&str]) -> KubectlOutput {
        self.run_with_stdin(args, b"")
    }

    /// Runs `kubectl ARGS` with `stdin` as its standard input.
    pub(crate) fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> KubectlOutput {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubectl");
        let mut input = child.stdin.take().expect("kubectl stdin");
        let stdin = stdin.to_vec();
        let writer = thread::spawn(move || {
            // kubectl may exit without reading it all; that is its answer, not our error.
            let _ = input.write_all(&stdin);
        });
        let stdout = read_in_background(child.stdout.take().expect("kubectl stdout"));
        let stderr = read_in_background(child.stderr.take().expect("kubectl stderr"));
        let deadline = Instant::now() + KUBECTL_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("poll kubectl") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kubectl {args:?} did not finish within {KUBECTL_TIMEOUT:?}\n{}",
                    self.context()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        let _ = writer.join();
        KubectlOutput {
            args: args.iter().map(|a| a.to_string()).collect(),
            status,
            stdout: stdout.join().expect("kubectl stdout reader"),
            stderr: stderr.join().expect("kubectl stderr reader"),
            context: self.context(),
        }
    }

    /// Starts `kubectl ARGS` (e.g. a watch) and hands its standard output over line by line.
    pub(crate) fn spawn_lines(&self, args: &[&str]) -> LineStream {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubectl");
        let stdout = child.stdout.take().expect("kubectl stdout");
        let stderr = read_in_background(child.stderr.take().expect("kubectl stderr"));
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || forward_lines(stdout, tx));
        LineStream {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr: Some(stderr),
            context: self.context(),
        }
    }

    /// The logs to show when a command of this kubectl fails (the proxy's tails).
    pub(crate) fn context(&self) -> String {
        self.context_logs
            .iter()
            .map(|p| format!("--- {} (tail) ---\n{}", p.display(), tail(p, 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn read_in_background(mut from: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn forward_lines(stdout: ChildStdout, tx: mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        if tx.send(line).is_err() {
            return;
        }
    }
}

/// What a finished kubectl printed, with the context to explain a failed expectation.
pub(crate) struct KubectlOutput {
    args: Vec<String>,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    context: String,
}

impl KubectlOutput {
    fn describe(&self) -> String {
        format!(
            "kubectl {:?} exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n{}",
            self.args, self.status, self.stdout, self.stderr, self.context
        )
    }

    /// Asserts that kubectl succeeded; returns its output for further checks.
    #[track_caller]
    pub(crate) fn success(self) -> KubectlOutput {
        assert!(
            self.status.success(),
            "expected success: {}",
            self.describe()
        );
        self
    }

    /// Asserts that kubectl failed and said `message` on stderr.
    #[track_caller]
    pub(crate) fn fails_with(self, message: &str) -> KubectlOutput {
        assert!(
            !self.status.success() && self.stderr.contains(message),
            "expected failure with {message:?}: {}",
            self.describe()
        );
        self
    }

    /// stdout parsed as JSON (for `-o json`).
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }
}

/// The first event (stage ResponseComplete) in the API server's audit log that matches
/// `predicate`, waited for (bounded by [`EVENTUALLY`]); `what` names it in the failure.
pub(crate) fn audit_event(env: &TestEnv, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let log = fs::read_to_string(&env.audit_log).unwrap_or_default();
        if let Some(event) = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|e| e["stage"] == "ResponseComplete" && predicate(e))
        {
            return event;
        }
        assert!(Instant::now() < deadline, "no audit event for {what}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// The lines a long-running kubectl prints, as they come. Kills kubectl when dropped.
pub(crate) struct LineStream {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
    context: String,
}

impl LineStream {
    /// Waits (at most [`EVENTUALLY`]) until a line equal to `expected` arrives.
    #[track_caller]
    pub(crate) fn wait_for_line(&mut self, expected: &str) {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line == expected;
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(why) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let stderr = self
                        .stderr
                        .take()
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default();
                    panic!(
                        "no line {expected:?} from kubectl ({why:?}); lines so far: {:?}\n\
                         --- kubectl stderr ---\n{stderr}\n{}",
                        self.seen, self.context
                    );
                }
            }
        }
    }
}

impl Drop for LineStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A runtime for the few async HTTP calls of the harness; the tests themselves are plain
/// threads that block on it.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime")
        })
        .block_on(future)
}

/// HTTPS client (HTTP/1.1 and HTTP/2) trusting only the test CA, optionally presenting a client
/// certificate.
#[derive(Clone)]
pub(crate) struct HttpsClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpsClient {
    /// A client trusting `ca_file` only, with `identity` = (certificate, key) PEM files if given.
    pub(crate) fn new(ca_file: &Path, identity: Option<(&PathBuf, &PathBuf)>) -> HttpsClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file).expect("read CA file") {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .expect("read client certificate")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("client certificate PEM");
                let key = PrivateKeyDer::from_pem_file(key).expect("client key PEM");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client identity")
            }
            None => builder.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        HttpsClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Sends `request` and returns the status and whole body. Panics on transport errors.
    pub(crate) async fn send(&self, request: Request<Full<Bytes>>) -> (StatusCode, Bytes) {
        let what = format!("{} {}", request.method(), request.uri());
        let response = self
            .client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"))
            .to_bytes();
        (status, body)
    }

    /// POSTs `body` as JSON to `url`.
    pub(crate) async fn post_json(&self, url: &str, body: &Value) -> (StatusCode, Bytes) {
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("POST request");
        self.send(request).await
    }
}
