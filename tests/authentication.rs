//! `--authentication-config` through the real binary: two test issuers configured at once, a
//! fake API server recording what reaches it, readiness per issuer, reserved identities, and
//! hot reload of the file (including a Kubernetes-ConfigMap-style symlink swap and a broken
//! version that changes nothing).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use serde_json::json;
use support::apiserver::FakeApiServer;
use support::http::{body_bytes, client, empty};
use support::issuer::TestIssuer;
use support::pki::TestCa;
use support::proxy::{free_port, ProxyProcess};

/// A bound on waiting for a reload (the proxy checks the file every 200 ms here).
const RELOAD_WAIT: Duration = Duration::from_secs(30);

struct Setup {
    ca: TestCa,
    people: TestIssuer,
    pipelines: TestIssuer,
    api: FakeApiServer,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let ca = TestCa::new();
        Self {
            people: TestIssuer::start(&ca).await,
            pipelines: TestIssuer::start(&ca).await,
            api: FakeApiServer::start(&ca).await,
            dir: tempfile::tempdir().unwrap(),
            ca,
        }
    }

    /// The test CA as YAML block-scalar lines for `certificateAuthority`.
    fn ca_block(&self) -> String {
        self.ca
            .cert_pem
            .lines()
            .map(|line| format!("      {line}\n"))
            .collect()
    }

    /// An authenticator for people: `email` is the username, `groups` get `oidc:`.
    fn people_entry(&self) -> String {
        format!(
            "- issuer:
    url: {}
    audiences: [kube]
    certificateAuthority: |
{}  claimMappings:
    username: {{claim: email, prefix: ''}}
    groups: {{claim: groups, prefix: 'oidc:'}}
",
            self.people.url,
            self.ca_block()
        )
    }

    /// An authenticator for GitHub-Actions-shaped pipelines of `owner` on `main`.
    fn pipelines_entry(&self, owner: &str) -> String {
        format!(
            "- issuer:
    url: {}
    audiences: [https://kube.example.com]
    certificateAuthority: |
{}  claimValidationRules:
  - expression: claims.repository_owner == '{owner}'
    message: only {owner}
  - expression: claims.ref == 'refs/heads/main'
    message: only main
  claimMappings:
    username: {{expression: \"'github:' + claims.sub\"}}
    groups: {{expression: \"['github:' + claims.repository]\"}}
",
            self.pipelines.url,
            self.ca_block()
        )
    }

    fn file(entries: &[String]) -> String {
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n{}",
            entries.concat()
        )
    }

    /// Writes the configuration behind a `..data` symlink, as a Kubernetes ConfigMap volume
    /// does, and returns the path the proxy reads.
    fn write_config(&self, contents: &str) -> PathBuf {
        let version = self.dir.path().join(format!(
            "..{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&version).unwrap();
        std::fs::write(version.join("authn.yaml"), contents).unwrap();
        // Swap `..data` atomically (rename over the old link), then make sure the file link
        // exists.
        let staging = self.dir.path().join("..data_tmp");
        let _ = std::fs::remove_file(&staging);
        std::os::unix::fs::symlink(version.file_name().unwrap(), &staging).unwrap();
        std::fs::rename(&staging, self.dir.path().join("..data")).unwrap();
        let link = self.dir.path().join("authn.yaml");
        if !link.exists() {
            std::os::unix::fs::symlink("..data/authn.yaml", &link).unwrap();
        }
        link
    }

    async fn proxy(&self, config: &Path, extra: &[&str]) -> ProxyProcess {
        let mut args = vec![
            format!("--authentication-config={}", config.display()),
            "--authentication-config-reload-interval=200ms".to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        ProxyProcess::spawn_without_issuer(&self.ca, &self.api.url, &args)
    }

    fn person(&self, email: &str, groups: &[&str]) -> String {
        self.people.token(
            &self
                .people
                .claims("kube", json!({"email": email, "groups": groups})),
        )
    }

    /// A GitHub Actions ID token's claims (cicd.md §1.3) for `owner/repo` on `git_ref`.
    fn pipeline(&self, owner: &str, repo: &str, git_ref: &str) -> String {
        self.pipelines.token(&self.pipelines.claims(
            "https://kube.example.com",
            json!({
                "sub": format!("repo:{owner}/{repo}:ref:{git_ref}"),
                "repository": format!("{owner}/{repo}"),
                "repository_id": "7654321",
                "repository_owner": owner,
                "repository_owner_id": "1234567",
                "ref": git_ref,
                "ref_type": "branch",
                "ref_protected": "true",
                "sha": "bcdb9add",
                "workflow": "deploy",
                "event_name": "push",
                "run_id": "33964329992",
                "run_attempt": "1",
                "jti": "f2f7364b-0001",
            }),
        ))
    }

    async fn get(&self, proxy: &ProxyProcess, token: &str) -> StatusCode {
        let request = Request::get(format!("{}/api/v1/namespaces", proxy.url))
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .unwrap();
        let response = client(&self.ca, false).request(request).await.unwrap();
        body_bytes(response).await.0.status
    }
}

fn header_values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn people_and_pipelines_through_one_proxy() {
    let s = Setup::new().await;
    let config = s.write_config(&Setup::file(&[s.people_entry(), s.pipelines_entry("acme")]));
    let mut proxy = s.proxy(&config, &[]).await;
    proxy.wait_ready().await;

    assert_eq!(
        s.get(&proxy, &s.person("alice@example.com", &["dev"]))
            .await,
        StatusCode::OK
    );
    let seen = s.api.last();
    assert_eq!(seen.headers["impersonate-user"], "alice@example.com");
    assert_eq!(
        header_values(&seen.headers, "impersonate-group"),
        ["oidc:dev", "system:authenticated"]
    );

    assert_eq!(
        s.get(&proxy, &s.pipeline("acme", "shop", "refs/heads/main"))
            .await,
        StatusCode::OK
    );
    let seen = s.api.last();
    assert_eq!(
        seen.headers["impersonate-user"],
        "github:repo:acme/shop:ref:refs/heads/main"
    );
    assert_eq!(
        header_values(&seen.headers, "impersonate-group"),
        ["github:acme/shop", "system:authenticated"]
    );
    assert_eq!(
        seen.headers["impersonate-extra-authentication.kubernetes.io%2fcredential-id"],
        "JTI=f2f7364b-0001"
    );

    // Refused: another owner, another branch, an unknown issuer. None reaches the API server.
    let before = s.api.requests().len();
    assert_eq!(
        s.get(&proxy, &s.pipeline("evil", "shop", "refs/heads/main"))
            .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get(&proxy, &s.pipeline("acme", "shop", "refs/heads/feature"))
            .await,
        StatusCode::UNAUTHORIZED
    );
    let stranger = TestIssuer::start(&s.ca).await;
    let token = stranger.token(&stranger.claims("kube", json!({"email": "eve@example.com"})));
    assert_eq!(s.get(&proxy, &token).await, StatusCode::UNAUTHORIZED);
    // A person's token is not valid for the pipelines' audience and vice versa: each issuer's
    // rules apply to its own tokens only.
    let wrong_audience = s.people.token(&s.people.claims(
        "https://kube.example.com",
        json!({"email": "a@example.com"}),
    ));
    assert_eq!(
        s.get(&proxy, &wrong_audience).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.api.requests().len(), before);

    let stderr = proxy.stderr_with("only main").await;
    assert!(
        stderr.contains("only evil") || stderr.contains("only acme"),
        "{stderr}"
    );
    assert!(stderr.contains("only main"), "{stderr}");
}

#[tokio::test]
async fn reserved_identities_are_refused_unless_allowed() {
    let s = Setup::new().await;
    let config = s.write_config(&Setup::file(&[s.people_entry()]));
    let admin = s.people.token(
        &s.people
            .claims("kube", json!({"email": "system:admin", "groups": []})),
    );
    let mut proxy = s.proxy(&config, &[]).await;
    proxy.wait_ready().await;
    assert_eq!(s.get(&proxy, &admin).await, StatusCode::UNAUTHORIZED);
    let stderr = proxy.stderr_with("is reserved").await;
    assert!(
        stderr.contains("mapped username \\\"system:admin\\\" is reserved")
            || stderr.contains("mapped username \"system:admin\" is reserved"),
        "{stderr}"
    );
    assert!(s.api.requests().is_empty());

    let mut allowing = s.proxy(&config, &["--allow-reserved-identities"]).await;
    allowing.wait_ready().await;
    assert_eq!(s.get(&allowing, &admin).await, StatusCode::OK);
    assert_eq!(s.api.last().headers["impersonate-user"], "system:admin");
}

/// The flag path too: `system:` from a plain `--oidc-*` username claim is refused.
#[tokio::test]
async fn reserved_identities_from_the_oidc_flags_are_refused() {
    let ca = TestCa::new();
    let issuer = TestIssuer::start(&ca).await;
    let api = FakeApiServer::start(&ca).await;
    let mut proxy = ProxyProcess::spawn(
        &ca,
        &issuer.url,
        &api.url,
        &["--oidc-groups-claim=groups".to_owned()],
    );
    proxy.wait_ready().await;
    let token = issuer.token(&issuer.claims(
        "kube",
        json!({"sub": "alice", "groups": ["system:masters"]}),
    ));
    let request = Request::get(format!("{}/api", proxy.url))
        .header("authorization", format!("Bearer {token}"))
        .body(empty())
        .unwrap();
    let response = client(&ca, false).request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(api.requests().is_empty());
}

#[tokio::test]
async fn readiness_reports_every_issuer() {
    let s = Setup::new().await;
    let nowhere = format!("https://127.0.0.1:{}", free_port());
    let down = format!(
        "- issuer:\n    url: {nowhere}\n    audiences: [kube]\n  claimMappings:\n    username: {{claim: sub, prefix: ''}}\n"
    );
    let config = s.write_config(&Setup::file(&[s.people_entry(), down]));
    let all = s.proxy(&config, &[]).await;
    let any = s.proxy(&config, &["--readiness-issuers=any"]).await;

    // `any`: ready once the people issuer's keys are in, whatever the other one does.
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        if let Some((200, _)) = any.probe("/ready").await {
            break;
        }
        assert!(Instant::now() < deadline, "never ready:\n{}", any.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `all` (the default): not ready, and the body names each issuer's state.
    let (code, body) = all.probe("/ready").await.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("of 2 issuers have fresh keys"), "{body}");
    assert!(
        body.contains(&format!("issuer {nowhere}: keys not loaded")),
        "{body}"
    );
    // The people issuer's state: loaded by now (the other proxy is ready), or still loading.
    assert!(
        body.contains(&format!("issuer {}: ", s.people.url)),
        "{body}"
    );

    // Tokens of the healthy issuer work on both.
    let alice = s.person("alice@example.com", &[]);
    assert_eq!(s.get(&any, &alice).await, StatusCode::OK);
}

async fn until_status(s: &Setup, proxy: &ProxyProcess, token: &str, expected: StatusCode) {
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        if s.get(proxy, token).await == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still not {expected} after {RELOAD_WAIT:?}:\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_file_is_reloaded_without_restart_and_a_broken_version_changes_nothing() {
    let s = Setup::new().await;
    let config = s.write_config(&Setup::file(&[s.people_entry()]));
    let mut proxy = s.proxy(&config, &[]).await;
    proxy.wait_ready().await;
    let alice = s.person("alice@example.com", &["dev"]);
    let job = s.pipeline("acme", "shop", "refs/heads/main");
    let beta = s.pipeline("beta", "app", "refs/heads/main");
    assert_eq!(s.get(&proxy, &alice).await, StatusCode::OK);
    assert_eq!(s.get(&proxy, &job).await, StatusCode::UNAUTHORIZED);

    // A new issuer (ConfigMap-style symlink swap): its tokens work without a restart.
    s.write_config(&Setup::file(&[s.people_entry(), s.pipelines_entry("acme")]));
    until_status(&s, &proxy, &job, StatusCode::OK).await;
    assert_eq!(s.get(&proxy, &alice).await, StatusCode::OK);

    // Broken versions: a syntax error, then a validation error. Each is logged and the
    // previous configuration keeps serving.
    s.write_config("apiVersion: apiserver.config.k8s.io/v1\nkind: [");
    let deadline = Instant::now() + RELOAD_WAIT;
    while !proxy
        .stderr()
        .contains("new authentication configuration is invalid")
    {
        assert!(Instant::now() < deadline, "{}", proxy.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let broken = Setup::file(&[s.people_entry(), s.pipelines_entry("beta")])
        .replace("claims.ref ==", "claims.ref ==="); // not CEL
    s.write_config(&broken);
    let deadline = Instant::now() + RELOAD_WAIT;
    while !proxy
        .stderr()
        .contains("claimValidationRules[1].expression")
    {
        assert!(Instant::now() < deadline, "{}", proxy.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get(&proxy, &alice).await, StatusCode::OK);
    assert_eq!(s.get(&proxy, &job).await, StatusCode::OK);
    assert_eq!(s.get(&proxy, &beta).await, StatusCode::UNAUTHORIZED);

    // Changed rules take effect, and a user admitted under the old ones is not cached.
    s.write_config(&Setup::file(&[s.people_entry(), s.pipelines_entry("beta")]));
    until_status(&s, &proxy, &beta, StatusCode::OK).await;
    assert_eq!(s.get(&proxy, &job).await, StatusCode::UNAUTHORIZED);

    // Removing an issuer removes its users.
    s.write_config(&Setup::file(&[s.pipelines_entry("beta")]));
    until_status(&s, &proxy, &alice, StatusCode::UNAUTHORIZED).await;
    assert_eq!(s.get(&proxy, &beta).await, StatusCode::OK);
    assert!(proxy
        .stderr_with("authentication configuration reloaded")
        .await
        .contains("authentication configuration reloaded"));
}

#[test]
fn the_file_and_the_oidc_flags_are_mutually_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authn.yaml");
    std::fs::write(
        &file,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt: []\n",
    )
    .unwrap();
    let output = std::process::Command::new(support::proxy::binary())
        .args([
            &format!("--authentication-config={}", file.display()),
            "--oidc-issuer-url=https://issuer.example",
            "--oidc-client-id=kube",
            "--validate-config",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--authentication-config: cannot be combined with the --oidc-* flags"),
        "{stderr}"
    );
    assert!(
        stderr.contains("jwt: Required value: at least one authenticator is required"),
        "{stderr}"
    );
}
