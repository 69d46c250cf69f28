//! The built binary's `credential` and `kubeconfig` subcommands, as kubectl and a pipeline run
//! them: a clean environment, a fake GitHub Actions token endpoint on loopback, exit codes,
//! stdout and stderr. The token must never appear on stderr, whatever happens.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_kube-oidc-proxy");
const REQUEST_TOKEN: &str = "runner-request-bearer-5ecret";

fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"sig")
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Serves one HTTP/1.1 request with `status` and `body`; hands back the request head.
fn one_shot_endpoint(status: &str, body: String) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/_apis/idtoken?api-version=2.0",
        listener.local_addr().unwrap()
    );
    let status = status.to_owned();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = String::new();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let _ = tx.send(head);
    });
    (url, rx)
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn github_actions_prints_the_exec_credential_version_kubectl_asked_for() {
    let token = jwt(json!({"iat": now(), "exp": now() + 300, "sub": "repo:acme/shop"}));
    let (url, requests) =
        one_shot_endpoint("200 OK", json!({"count": 1, "value": token}).to_string());
    let exec_info = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}"#;
    let output = run(
        &[
            "credential",
            "github-actions",
            "--audience",
            "https://kube.example",
            "--no-cache",
        ],
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
            ("KUBERNETES_EXEC_INFO", exec_info),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let credential: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        credential["apiVersion"],
        "client.authentication.k8s.io/v1beta1"
    );
    assert_eq!(credential["kind"], "ExecCredential");
    assert_eq!(credential["status"]["token"], token.as_str());
    assert!(credential["status"]["expirationTimestamp"].is_string());
    let head = requests.recv().unwrap();
    assert!(
        head.starts_with(
            "GET /_apis/idtoken?api-version=2.0&audience=https%3A%2F%2Fkube.example HTTP/1.1"
        ),
        "{head}"
    );
    assert!(head
        .to_lowercase()
        .contains(&format!("authorization: bearer {REQUEST_TOKEN}")));
    assert!(!stderr(&output).contains(&token));
}

#[test]
fn errors_explain_and_never_show_a_token() {
    // No id-token: write.
    let output = run(
        &["credential", "github-actions", "--audience", "a"],
        &[("GITHUB_ACTIONS", "true"), ("HOME", "/nonexistent")],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("permissions: id-token: write"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());

    // The endpoint refuses, echoing what it got.
    let (url, _requests) = one_shot_endpoint(
        "401 Unauthorized",
        format!(r#"{{"message":"bad token {REQUEST_TOKEN}"}}"#),
    );
    let output = run(
        &[
            "credential",
            "github-actions",
            "--audience",
            "a",
            "--no-cache",
        ],
        &[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", &url),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN),
        ],
    );
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("answered 401") && text.contains("bad token"),
        "{text}"
    );
    assert!(!text.contains(REQUEST_TOKEN), "{text}");

    // An expired GitLab token.
    let expired = jwt(json!({"iat": now() - 400, "exp": now() - 100}));
    let output = run(
        &["credential", "gitlab", "--variable", "KUBE_ID_TOKEN"],
        &[("KUBE_ID_TOKEN", &expired)],
    );
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("mints it once per job"), "{text}");
    assert!(!text.contains(&expired), "{text}");

    // A GitLab token near its end: used, with a warning that does not show it.
    let ending = jwt(json!({"iat": now() - 3500, "exp": now() + 60}));
    let output = run(&["credential", "gitlab"], &[("KUBE_ID_TOKEN", &ending)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("warning: the GitLab ID token in $KUBE_ID_TOKEN expires in"),
        "{text}"
    );
    assert!(!text.contains(&ending), "{text}");
    let credential: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(credential["status"]["token"], ending.as_str());
}

#[test]
fn kubeconfig_writes_an_exec_user_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = dir.path().join("kubeconfig");
    let output = run(
        &[
            "kubeconfig",
            "--server=https://kube.example.com",
            &format!("--certificate-authority={}", ca.display()),
            &format!("--output={}", out.display()),
            "github-actions",
            "--audience=https://kube.example.com",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    let user = &config["users"][0]["user"];
    assert_eq!(user.as_object().unwrap().len(), 1, "{text}");
    assert_eq!(user["exec"]["command"], BIN, "{text}");
    assert_eq!(
        user["exec"]["args"],
        json!([
            "credential",
            "github-actions",
            "--audience",
            "https://kube.example.com"
        ])
    );
    assert_eq!(
        config["clusters"][0]["cluster"]["server"],
        "https://kube.example.com"
    );
}

#[test]
fn the_proxy_s_own_flags_are_unchanged() {
    let output = run(&["--help"], &[]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("--oidc-issuer-url"));
}
