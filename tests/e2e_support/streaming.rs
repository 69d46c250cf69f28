//! Harness for the streaming end-to-end tests (`tests/e2e_streaming.rs`): the kwok node of the
//! test cluster, pods on it, the kubectl versions and protocols under test, and the pieces the
//! cases drive (a TCP echo server behind port-forward, a pseudo-terminal, the audit log that
//! tells which protocol a command really used).
//!
//! kwok (`scripts/cluster`) serves the kubelet API for every pod on its node: `exec` runs the
//! command as a local process in `KWOK_WORK_DIR`, `logs` and `attach` stream the files
//! `KWOK_LOGS_FILE` and `KWOK_ATTACH_FILE` (CRI log format), and `port-forward` to any pod port
//! reaches `KWOK_FORWARD_TARGET` on 127.0.0.1, where [`EchoServer`] listens.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::e2e_support::{unique_name, Kubectl, Proxy, TestEnv, EVENTUALLY};

/// Upper bound for one streaming kubectl command (100 MiB through port-forward included).
pub(crate) const STREAM_TIMEOUT: Duration = Duration::from_secs(240);

/// The group whose members may exec, attach, port-forward and read logs in test namespaces.
pub(crate) const STREAMING_GROUP: &str = "team-a-devs";
/// The group whose members may read pods but not exec into them (the Forbidden case).
pub(crate) const READ_ONLY_GROUP: &str = "team-b-devs";

/// The kwok node and what its kubelet API acts on, from the env file.
pub(crate) struct Kwok {
    pub(crate) node: String,
    pub(crate) work_dir: PathBuf,
    pub(crate) logs_file: PathBuf,
    pub(crate) attach_file: PathBuf,
    pub(crate) forward_target: SocketAddr,
}

impl Kwok {
    pub(crate) fn from_env(env: &TestEnv) -> Kwok {
        let get = |name: &str| -> String {
            env.vars.get(name).cloned().unwrap_or_else(|| {
                panic!(
                    "the e2e env file does not set {name}: is it from scripts/cluster with kwok?"
                )
            })
        };
        Kwok {
            node: get("KWOK_NODE"),
            work_dir: PathBuf::from(get("KWOK_WORK_DIR")),
            logs_file: PathBuf::from(get("KWOK_LOGS_FILE")),
            attach_file: PathBuf::from(get("KWOK_ATTACH_FILE")),
            forward_target: get("KWOK_FORWARD_TARGET")
                .parse()
                .expect("KWOK_FORWARD_TARGET is host:port"),
        }
    }

    /// Appends `text` as one stdout line in the CRI log format (`<RFC 3339 time> stdout F
    /// <text>`, what kubelets write and kwok parses) to a file kwok streams.
    pub(crate) fn append_line(file: &Path, text: &str) {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format the time");
        let mut out = OpenOptions::new()
            .append(true)
            .open(file)
            .unwrap_or_else(|e| panic!("open {}: {e}", file.display()));
        // One write of one whole line: concurrent tests append to the same file.
        out.write_all(format!("{now} stdout F {text}\n").as_bytes())
            .unwrap_or_else(|e| panic!("append to {}: {e}", file.display()));
    }
}

/// A fresh namespace with one Running pod on the kwok node, where [`STREAMING_GROUP`] may use
/// every streaming subresource and [`READ_ONLY_GROUP`] may only read pods.
pub(crate) struct TestPod {
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl TestPod {
    pub(crate) fn create(env: &TestEnv, kwok: &Kwok, prefix: &str) -> TestPod {
        let namespace = unique_name(prefix);
        let name = "app".to_owned();
        let binding = |role: &str, group: &str| {
            serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": format!("{group}-{role}"), "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
            })
        };
        // WebSocket clients open exec/attach/portforward with GET, SPDY clients with POST
        // (verbs get and create); kube-apiserver authorizes the verb of the method it sees.
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": "streamer", "namespace": namespace},
                    "rules": [
                        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                        {
                            "apiGroups": [""],
                            "resources": ["pods/exec", "pods/attach", "pods/portforward"],
                            "verbs": ["get", "create"],
                        },
                    ],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": "pod-reader", "namespace": namespace},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
                },
                binding("streamer", STREAMING_GROUP),
                binding("pod-reader", READ_ONLY_GROUP),
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": namespace},
                    // No scheduler runs: the pod is bound to the kwok node directly.
                    "spec": {
                        "nodeName": kwok.node,
                        "containers": [{"name": "app", "image": "kwok.invalid/app"}],
                    },
                },
            ],
        });
        let admin = env.admin_kubectl();
        admin
            .run_with_stdin(&["create", "-f", "-"], manifest.to_string().as_bytes())
            .success();
        admin
            .run(&[
                "wait",
                "-n",
                &namespace,
                "--for=jsonpath={.status.phase}=Running",
                "--timeout=60s",
                &format!("pod/{name}"),
            ])
            .success();
        TestPod { namespace, name }
    }
}

/// How kubectl opens an upgraded connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// RFC 6455 WebSocket (`GET`, `v5.channel.k8s.io` or `SPDY/3.1+portforward.k8s.io`).
    WebSocket,
    /// SPDY/3.1 (`POST`, `X-Stream-Protocol-Version`).
    Spdy,
}

impl Protocol {
    /// The verb kube-apiserver's audit log records for the upgrade request: it derives the verb
    /// from the method, and WebSocket handshakes are `GET`s, SPDY upgrades `POST`s.
    fn audit_verb(self) -> &'static str {
        match self {
            Protocol::WebSocket => "get",
            Protocol::Spdy => "create",
        }
    }
}

/// One kubectl binary with one protocol choice.
#[derive(Clone)]
pub(crate) struct ClientVariant {
    /// Short name for namespaces and messages, e.g. `k133-ws`.
    pub(crate) label: String,
    bin: PathBuf,
    /// kubectl's client minor version.
    minor: u32,
    /// `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` and `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`.
    pub(crate) spdy_forced: bool,
}

impl fmt::Display for ClientVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kubectl 1.{} ({}){}",
            self.minor,
            self.bin.display(),
            if self.spdy_forced {
                " with WebSockets disabled"
            } else {
                ""
            }
        )
    }
}

impl ClientVariant {
    /// The protocol kubectl uses for exec, attach and cp: WebSocket by default since 1.30
    /// (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS`), SPDY before or when disabled.
    pub(crate) fn exec_protocol(&self) -> Protocol {
        if self.minor >= 30 && !self.spdy_forced {
            Protocol::WebSocket
        } else {
            Protocol::Spdy
        }
    }

    /// The protocol kubectl uses for port-forward: WebSocket (tunnelling SPDY) by default
    /// since 1.31 (`KUBECTL_PORT_FORWARD_WEBSOCKETS`), SPDY before or when disabled.
    pub(crate) fn port_forward_protocol(&self) -> Protocol {
        if self.minor >= 31 && !self.spdy_forced {
            Protocol::WebSocket
        } else {
            Protocol::Spdy
        }
    }

    /// This kubectl through `proxy` with `token`.
    pub(crate) fn kubectl(&self, proxy: &Proxy, env: &TestEnv, token: &str) -> Kubectl {
        let kubectl = proxy.kubectl_with_token(env, token).with_binary(&self.bin);
        if self.spdy_forced {
            kubectl
                .with_env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
                .with_env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        } else {
            kubectl
        }
    }
}

fn client_minor(bin: &Path) -> u32 {
    let out = Command::new(bin)
        .args(["version", "--client", "-o", "json"])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap_or_else(|e| panic!("run {} version: {e}", bin.display()));
    let version: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} version --client -o json: {e}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let minor = version["clientVersion"]["minor"]
        .as_str()
        .unwrap_or_default();
    // "27", or "27+" for some vendor builds.
    minor
        .trim_end_matches('+')
        .parse()
        .unwrap_or_else(|_| panic!("{} reports minor version {minor:?}", bin.display()))
}

/// The clients every case runs with: the newest kubectl with its defaults (WebSocket for
/// every verb) and with WebSockets disabled (SPDY), and the oldest kubectl of the machine with
/// its defaults (1.27: SPDY only; it has no WebSocket client). Cached per test process.
pub(crate) fn client_variants(env: &TestEnv) -> Vec<ClientVariant> {
    static VARIANTS: OnceLock<Vec<ClientVariant>> = OnceLock::new();
    VARIANTS
        .get_or_init(|| {
            let newest = env.kubectl.clone();
            let oldest = env
                .vars
                .get("KUBECTL_OLDEST")
                .map(PathBuf::from)
                .unwrap_or_else(|| newest.clone());
            let newest_minor = client_minor(&newest);
            let mut variants = vec![
                ClientVariant {
                    label: format!("k1{newest_minor}-ws"),
                    bin: newest.clone(),
                    minor: newest_minor,
                    spdy_forced: false,
                },
                ClientVariant {
                    label: format!("k1{newest_minor}-spdy"),
                    bin: newest,
                    minor: newest_minor,
                    spdy_forced: true,
                },
            ];
            let oldest_minor = client_minor(&oldest);
            if oldest_minor != newest_minor {
                variants.push(ClientVariant {
                    label: format!("k1{oldest_minor}-default"),
                    bin: oldest,
                    minor: oldest_minor,
                    spdy_forced: false,
                });
            }
            variants
        })
        .clone()
}

/// The answers kube-apiserver audited for the proxy's `subresource` requests in `namespace`
/// made for `user`, as (verb, status code); waits (bounded) until there is at least one.
pub(crate) fn audited_answers(
    env: &TestEnv,
    namespace: &str,
    subresource: &str,
    user: &str,
) -> Vec<(String, i64)> {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let text = std::fs::read_to_string(&env.audit_log).unwrap_or_default();
        let answered: Vec<(String, i64)> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|e| {
                // Upgrades are long-running requests: audited when the response starts (the
                // 101 or the refusal), completed only when the connection ends.
                e["stage"] == "ResponseStarted"
                    && e["objectRef"]["namespace"] == namespace
                    && e["objectRef"]["subresource"] == subresource
                    && e["user"]["username"] == "kube-oidc-proxy"
                    && e["impersonatedUser"]["username"] == user
            })
            .map(|e| {
                (
                    e["verb"].as_str().unwrap_or_default().to_owned(),
                    e["responseStatus"]["code"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        if !answered.is_empty() {
            return answered;
        }
        assert!(
            Instant::now() < deadline,
            "no audited {subresource} request in {namespace} for {user} via the proxy"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts, from kube-apiserver's audit log, that every `subresource` request the proxy made
/// in `namespace` for `user` was upgraded (`101`) over `protocol`: the case really used the
/// protocol it is named after, through the proxy, impersonating `user`, with no silent
/// fallback from WebSocket to SPDY (which would leave a refused `get` behind).
#[track_caller]
pub(crate) fn assert_upgraded_via(
    env: &TestEnv,
    namespace: &str,
    subresource: &str,
    user: &str,
    protocol: Protocol,
) {
    let answered = audited_answers(env, namespace, subresource, user);
    let expected = (protocol.audit_verb().to_owned(), 101);
    assert!(
        answered.iter().all(|a| *a == expected),
        "{subresource} in {namespace} for {user}: expected every request upgraded over \
         {protocol:?} (verb {}, 101), audit log has (verb, code) {answered:?}",
        protocol.audit_verb()
    );
}

/// What a finished kubectl wrote, as bytes.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
    what: String,
}

impl Finished {
    /// kubectl's command line, exit status, stderr and the proxy's log tail, for messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} exited {}\n--- stdout ({} bytes, first 2000 shown lossily) ---\n{}\n\
             --- stderr ---\n{}",
            self.what,
            self.status,
            self.stdout.len(),
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(2000)]),
            self.stderr
        )
    }
}

/// Runs `kubectl ARGS` with `stdin` written to it, collecting binary stdout.
pub(crate) fn run_bytes(
    kubectl: &Kubectl,
    variant: &ClientVariant,
    args: &[&str],
    stdin: &[u8],
) -> Finished {
    let mut command = kubectl.command(args);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{variant}: kubectl {args:?}");
    wait_bounded(command, stdin.to_vec(), what, kubectl)
}

fn wait_bounded(mut command: Command, stdin: Vec<u8>, what: String, kubectl: &Kubectl) -> Finished {
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let writer = thread::spawn(move || {
        // The command may stop reading early; that is its answer, not an error here.
        let _ = input.write_all(&stdin);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let stdout = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let stderr = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    let deadline = Instant::now() + STREAM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {STREAM_TIMEOUT:?}\n{}",
                kubectl.context()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Finished {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        what: format!("{what}\n{}", kubectl.context()),
    }
}

/// Runs `kubectl ARGS` with a pseudo-terminal as its standard input and output (util-linux
/// `script`), as a person at a terminal would for `exec -it`, typing `typed` and then the
/// end-of-file key. Returns what the terminal showed.
pub(crate) fn run_in_terminal(
    kubectl: &Kubectl,
    variant: &ClientVariant,
    args: &[&str],
    typed: &[u8],
) -> Finished {
    let inner = kubectl.command(args);
    let line = std::iter::once(inner.get_program())
        .chain(inner.get_args())
        .map(|part| shell_quote(&part.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new("script");
    // -q: no banner; -e: kubectl's exit status; -f: flush; the typescript goes nowhere.
    command.args(["-qefc", &line, "/dev/null"]);
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!("{variant}: kubectl {args:?} in a terminal");
    wait_bounded(command, typed.to_vec(), what, kubectl)
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A running `kubectl port-forward` and the local port it listens on. Killed when dropped.
pub(crate) struct PortForward {
    child: Child,
    pub(crate) local_port: u16,
    what: String,
}

impl PortForward {
    /// Starts `kubectl port-forward POD :REMOTE_PORT` in `namespace` and waits until it listens.
    pub(crate) fn start(
        kubectl: &Kubectl,
        variant: &ClientVariant,
        pod: &TestPod,
        remote_port: u16,
    ) -> PortForward {
        let remote = format!(":{remote_port}");
        let args = [
            "port-forward",
            "-n",
            &pod.namespace,
            &pod.name,
            "--address=127.0.0.1",
            &remote,
        ];
        let what = format!("{variant}: kubectl {args:?}");
        let mut child = kubectl
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        // Drained for the whole life of kubectl: it prints a line per connection and would
        // block on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            text
        });
        // "Forwarding from 127.0.0.1:43567 -> 8080"
        let local_port = loop {
            match rx.recv_timeout(EVENTUALLY) {
                Ok(line) => {
                    if let Some(port) = line
                        .strip_prefix("Forwarding from 127.0.0.1:")
                        .and_then(|rest| rest.split(' ').next())
                        .and_then(|port| port.parse().ok())
                    {
                        break port;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{what} never said it was forwarding\n--- stderr ---\n{}\n{}",
                        stderr.join().unwrap_or_default(),
                        kubectl.context()
                    );
                }
            }
        };
        PortForward {
            child,
            local_port,
            what,
        }
    }

    /// Sends `len` bytes of a pseudo-random stream (`seed`) through the forward to the echo
    /// server and reads the echo concurrently; asserts the SHA-256 and length of what came
    /// back equal what was sent.
    #[track_caller]
    pub(crate) fn echo_roundtrip(&self, len: usize, seed: u64) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.local_port))
            .unwrap_or_else(|e| panic!("{}: connect: {e}", self.what));
        stream
            .set_read_timeout(Some(STREAM_TIMEOUT))
            .expect("read timeout");
        let mut writer = stream.try_clone().expect("clone the socket");
        let sender = thread::spawn(move || {
            let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            let mut bytes = PseudoRandom::new(seed);
            let mut left = len;
            let mut chunk = vec![0u8; 64 * 1024];
            while left > 0 {
                let n = left.min(chunk.len());
                bytes.fill(&mut chunk[..n]);
                digest.update(&chunk[..n]);
                writer.write_all(&chunk[..n]).expect("write to the forward");
                left -= n;
            }
            digest.finish()
        });
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut received = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        while received < len {
            let n = stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("{}: read after {received} bytes: {e}", self.what));
            assert!(
                n > 0,
                "{}: connection closed after {received} of {len} bytes",
                self.what
            );
            digest.update(&buf[..n]);
            received += n;
        }
        let sent = sender.join().expect("sender");
        let _ = stream.shutdown(Shutdown::Both);
        assert_eq!(received, len, "{}", self.what);
        assert_eq!(
            digest.finish().as_ref(),
            sent.as_ref(),
            "{}: the echo differs from what was sent",
            self.what
        );
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// xorshift64*: cheap, deterministic, not text (so nothing in the path can treat it as lines).
pub(crate) struct PseudoRandom(u64);

impl PseudoRandom {
    pub(crate) fn new(seed: u64) -> PseudoRandom {
        PseudoRandom(seed | 1)
    }

    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        PseudoRandom::new(seed).fill(&mut out);
        out
    }
}

/// The TCP echo server kwok forwards pod ports to: one per test process, on the address
/// `scripts/cluster` reserved for it. Each connection echoes until the client's EOF, then
/// half-closes its own side.
pub(crate) struct EchoServer;

impl EchoServer {
    pub(crate) fn ensure(kwok: &Kwok) {
        static STARTED: OnceLock<Arc<TcpListener>> = OnceLock::new();
        STARTED.get_or_init(|| {
            let listener = Arc::new(TcpListener::bind(kwok.forward_target).unwrap_or_else(|e| {
                panic!(
                    "bind the port-forward echo server on {}: {e}",
                    kwok.forward_target
                )
            }));
            let accepting = listener.clone();
            thread::spawn(move || {
                for stream in accepting.incoming() {
                    let Ok(stream) = stream else { continue };
                    thread::spawn(move || echo(stream));
                }
            });
            listener
        });
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Reads lines from a long-running kubectl (logs -f, attach) as they come, on a thread.
pub(crate) struct LiveOutput {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
    what: String,
}

impl LiveOutput {
    pub(crate) fn start(kubectl: &Kubectl, variant: &ClientVariant, args: &[&str]) -> LiveOutput {
        let what = format!("{variant}: kubectl {args:?}");
        let mut child = kubectl
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        LiveOutput {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr: Some(stderr),
            what: format!("{what}\n{}", kubectl.context()),
        }
    }

    /// Stops kubectl and returns what it wrote on stderr, for a failure message.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Waits until kubectl prints `expected`, calling `nudge` every half second meanwhile
    /// (e.g. to write the line again until a just-started stream is attached). Bounded by
    /// [`EVENTUALLY`]; asserts kubectl is still running, i.e. the line arrived while streaming.
    #[track_caller]
    pub(crate) fn wait_for(&mut self, expected: &str, mut nudge: impl FnMut()) {
        let deadline = Instant::now() + EVENTUALLY;
        nudge();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(500)) {
                Ok(line) => {
                    let found = line == expected;
                    self.seen.push(line);
                    if found {
                        assert!(
                            self.child.try_wait().expect("poll kubectl").is_none(),
                            "{}: kubectl had already exited",
                            self.what
                        );
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        let stderr = self.stop();
                        panic!(
                            "{}: no line {expected:?}; lines so far: {:?}\n--- stderr ---\n{stderr}",
                            self.what, self.seen
                        );
                    }
                    nudge();
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let stderr = self.stop();
                    panic!(
                        "{}: output ended before {expected:?}; lines: {:?}\n--- stderr ---\n{stderr}",
                        self.what, self.seen
                    );
                }
            }
        }
    }
}

impl Drop for LiveOutput {
    fn drop(&mut self) {
        self.stop();
    }
}
