//! End to end: one proxy, configured with `--authentication-config`, serving people (Dex) and
//! pipelines (a GitHub-Actions-shaped issuer served by the harness) at once, in front of the real
//! kube-apiserver, driven by the real kubectl. The pipeline may deploy into its own namespace
//! only; tokens of another owner or branch are refused; the file is reloaded without a restart,
//! and a broken version changes nothing. Run with `scripts/test` (see `tests/e2e_support`).

// Shared with tests/e2e.rs, which uses the parts this file does not.
mod e2e_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e_support::ci_issuer::CiIssuer;
use e2e_support::{strings, unique_name, Proxy, TestEnv, EVENTUALLY};
use serde_json::{json, Value};

const ALICE: &str = "alice@example.com";
/// The audience pipelines request for the proxy.
const AUDIENCE: &str = "https://kube-oidc-proxy.e2e.example";
const KUBECTL_UNAUTHORIZED: &str = "error: You must be logged in to the server (Unauthorized)";
/// The identity of acme/shop's main-branch pipeline.
const SHOP_MAIN: &str = "github:repo:acme/shop:ref:refs/heads/main";

/// `pem` as the lines of a YAML block scalar under `certificateAuthority: |`.
fn block(pem: &str) -> String {
    pem.lines().map(|line| format!("      {line}\n")).collect()
}

/// Dex, as the `--oidc-*` flags of the other e2e tests configure it: email and groups.
fn dex_entry(env: &TestEnv) -> String {
    let ca = std::fs::read_to_string(&env.dex_ca_file).expect("Dex CA");
    format!(
        "- issuer:
    url: {}
    audiences: [{}]
    certificateAuthority: |
{}  claimMappings:
    username: {{claim: email, prefix: ''}}
    groups: {{claim: groups, prefix: ''}}
",
        env.dex_issuer_url,
        env.dex_client_id,
        block(&ca)
    )
}

/// GitHub Actions, admitting only acme's repositories (pinned by name and ID) on `main`
/// (docs/examples/github-actions.yaml, without the extra keys the proxy's RBAC does not grant).
fn github_entry(issuer: &CiIssuer) -> String {
    format!(
        "- issuer:
    url: {}
    audiences: ['{AUDIENCE}']
    certificateAuthority: |
{}  claimValidationRules:
  - expression: claims.repository_owner == 'acme'
    message: only repositories of the acme organisation
  - expression: claims.repository_owner_id == '1234567'
    message: only the acme organisation as registered today
  - expression: claims.ref == 'refs/heads/main'
    message: only the main branch
  claimMappings:
    username: {{expression: \"'github:' + claims.sub\"}}
    groups: {{expression: \"['github:' + claims.repository]\"}}
  userValidationRules:
  - expression: \"!user.username.startsWith('system:')\"
    message: no reserved usernames
",
        issuer.url,
        block(&issuer.ca_pem)
    )
}

/// GitLab CI, keyed on `project_path`, admitting protected refs only
/// (docs/examples/gitlab-ci.yaml).
fn gitlab_entry(issuer: &CiIssuer) -> String {
    format!(
        "- issuer:
    url: {}
    audiences: ['{AUDIENCE}']
    certificateAuthority: |
{}  claimValidationRules:
  - claim: ref_protected
    requiredValue: 'true'
  - expression: claims.project_path.startsWith('acme/')
    message: only projects of the acme group
  claimMappings:
    username: {{expression: \"'gitlab:' + claims.sub\"}}
    groups: {{expression: \"['gitlab:' + claims.project_path]\"}}
",
        issuer.url,
        block(&issuer.ca_pem)
    )
}

fn configuration(entries: &[String]) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n{}",
        entries.concat()
    )
}

/// Replaces the file in one step (write aside, rename over), as configuration tools do.
fn write_atomically(path: &Path, contents: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, contents).expect("write configuration");
    std::fs::rename(&aside, path).expect("replace configuration");
}

struct Running {
    proxy: Proxy,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(env: &TestEnv, entries: &[String]) -> Running {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let config = dir.path().join("authentication.yaml");
    write_atomically(&config, &configuration(entries));
    let proxy = env.start_proxy_with_authentication(&[
        format!("--authentication-config={}", config.display()),
        "--authentication-config-reload-interval=1s".to_owned(),
    ]);
    Running {
        proxy,
        config,
        _dir: dir,
    }
}

/// A namespace whose `deployer` Role (deployments and configmaps) is bound to `group` only.
fn pipeline_namespace(env: &TestEnv, group: &str) -> String {
    let ns = unique_name("shop");
    let verbs = [
        "create", "get", "list", "watch", "patch", "update", "delete",
    ];
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "deployer", "namespace": ns},
                "rules": [
                    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs},
                    {"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs},
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "pipeline-deployer", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
            },
        ],
    });
    env.admin_kubectl()
        .run_with_stdin(&["create", "-f", "-"], manifest.to_string().as_bytes())
        .success();
    ns
}

fn whoami(proxy: &Proxy, env: &TestEnv, token: &str) -> Value {
    proxy
        .kubectl_with_token(env, token)
        .run(&["auth", "whoami", "-o", "json"])
        .success()
        .json()["status"]["userInfo"]
        .clone()
}

/// The API server's audit event (ResponseComplete) for `verb` on the object named `name`.
fn audit_event(env: &TestEnv, verb: &str, name: &str) -> Value {
    e2e_support::audit_event(env, &format!("{verb} {name}"), |e| {
        e["objectRef"]["name"] == name && e["verb"] == verb
    })
}

/// People and pipelines through one proxy: the pipeline identity (`github:` + `sub`, group
/// `github:acme/shop`) deploys into its namespace and nowhere else, the API server's audit log
/// names it, and tokens of another owner or branch are refused.
#[test]
fn the_pipeline_identity_deploys_into_its_namespace_only() {
    let Some(env) = TestEnv::load() else { return };
    let github = CiIssuer::start();
    let running = start(&env, &[dex_entry(&env), github_entry(&github)]);
    let proxy = &running.proxy;
    let ns = pipeline_namespace(&env, "github:acme/shop");

    // A person, through the same proxy.
    let alice = whoami(proxy, &env, &env.id_token(ALICE));
    assert_eq!(alice["username"], ALICE, "{alice}");
    assert!(
        strings(&alice["groups"]).contains(&"team-a-devs".to_owned()),
        "{alice}"
    );

    // The pipeline, as the API server sees it.
    let token = github.github_token(AUDIENCE, "acme", "shop", "refs/heads/main");
    let me = whoami(proxy, &env, &token);
    assert_eq!(me["username"], SHOP_MAIN, "{me}");
    assert_eq!(
        strings(&me["groups"]),
        ["github:acme/shop", "system:authenticated"],
        "{me}"
    );
    assert!(
        strings(&me["extra"]["authentication.kubernetes.io/credential-id"])[0].starts_with("JTI="),
        "{me}"
    );

    // Deploys into its namespace...
    let pipeline = proxy.kubectl_with_token(&env, &token);
    let deploy = unique_name("web");
    pipeline
        .run(&[
            "create",
            "deployment",
            &deploy,
            "--image=registry.invalid/shop:1",
            "-n",
            &ns,
        ])
        .success();
    pipeline
        .run(&[
            "set",
            "image",
            &format!("deployment/{deploy}"),
            "shop=registry.invalid/shop:2",
            "-n",
            &ns,
        ])
        .success();
    let got = pipeline
        .run(&["get", "deployment", &deploy, "-o", "json", "-n", &ns])
        .success()
        .json();
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][0]["image"], "registry.invalid/shop:2",
        "{got}"
    );
    // ...and nowhere else.
    pipeline
        .run(&["create", "deployment", &unique_name("web"), "--image=registry.invalid/shop:1", "-n", "team-a"])
        .fails_with(&format!(
            r#"User "{SHOP_MAIN}" cannot create resource "deployments" in API group "apps" in the namespace "team-a""#
        ));
    pipeline.run(&["get", "secrets", "-n", &ns]).fails_with(&format!(
        r#"secrets is forbidden: User "{SHOP_MAIN}" cannot list resource "secrets" in API group "" in the namespace "{ns}""#
    ));
    pipeline.run(&["get", "namespaces"]).fails_with("forbidden");

    // The API server's audit log names the pipeline, impersonated by the proxy.
    let event = audit_event(&env, "create", &deploy);
    assert_eq!(event["user"]["username"], "kube-oidc-proxy", "{event}");
    assert_eq!(event["impersonatedUser"]["username"], SHOP_MAIN, "{event}");

    // Another owner (same repository name), another branch, another audience: refused, and the
    // proxy's log says which rule refused them.
    for (what, token) in [
        (
            "another owner",
            github.github_token(AUDIENCE, "evil", "shop", "refs/heads/main"),
        ),
        (
            "another branch",
            github.github_token(AUDIENCE, "acme", "shop", "refs/heads/feature"),
        ),
        (
            "another audience",
            github.github_token(
                "https://elsewhere.example",
                "acme",
                "shop",
                "refs/heads/main",
            ),
        ),
    ] {
        eprintln!("token: {what}");
        let kubectl = proxy.kubectl_with_token(&env, &token);
        kubectl
            .run(&["auth", "whoami"])
            .fails_with(KUBECTL_UNAUTHORIZED);
        kubectl
            .run(&[
                "create",
                "deployment",
                &unique_name("web"),
                "--image=x",
                "-n",
                &ns,
            ])
            .fails_with("Unauthorized");
    }
    proxy.wait_for_log("only repositories of the acme organisation");
    proxy.wait_for_log("only the main branch");
}

/// Waits (bounded) until `token`'s whoami succeeds through the proxy.
fn until_admitted(running: &Running, env: &TestEnv, token: &str) -> Value {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let output = running
            .proxy
            .kubectl_with_token(env, token)
            .run(&["auth", "whoami", "-o", "json"]);
        if output.status.success() {
            return output.json()["status"]["userInfo"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "not admitted after {EVENTUALLY:?}: {}\n{}",
            output.stderr,
            running.proxy.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A reload that adds a third issuer takes effect without a restart; a broken reload is
/// logged and changes nothing.
#[test]
fn a_reload_adds_an_issuer_and_a_broken_reload_changes_nothing() {
    let Some(env) = TestEnv::load() else { return };
    let github = CiIssuer::start();
    let gitlab = CiIssuer::start();
    let running = start(&env, &[dex_entry(&env), github_entry(&github)]);
    let proxy = &running.proxy;
    let alice = env.id_token(ALICE);
    let shop = github.github_token(AUDIENCE, "acme", "shop", "refs/heads/main");
    let job = gitlab.gitlab_token(AUDIENCE, "acme/shop", "main", true);

    whoami(proxy, &env, &alice);
    whoami(proxy, &env, &shop);
    proxy
        .kubectl_with_token(&env, &job)
        .run(&["auth", "whoami"])
        .fails_with(KUBECTL_UNAUTHORIZED);

    // Add GitLab: admitted without a restart, under its own rules.
    write_atomically(
        &running.config,
        &configuration(&[
            dex_entry(&env),
            github_entry(&github),
            gitlab_entry(&gitlab),
        ]),
    );
    let me = until_admitted(&running, &env, &job);
    assert_eq!(
        me["username"], "gitlab:project_path:acme/shop:ref_type:branch:ref:main",
        "{me}"
    );
    assert_eq!(
        strings(&me["groups"]),
        ["gitlab:acme/shop", "system:authenticated"],
        "{me}"
    );
    let unprotected = gitlab.gitlab_token(AUDIENCE, "acme/shop", "feature", false);
    proxy
        .kubectl_with_token(&env, &unprotected)
        .run(&["auth", "whoami"])
        .fails_with(KUBECTL_UNAUTHORIZED);
    assert!(
        proxy
            .stderr()
            .contains("authentication configuration reloaded"),
        "{}",
        proxy.logs()
    );

    // A broken version (GitHub's rules dropped, a CEL typo in GitLab's): refused, logged, and
    // everything keeps working as before.
    let broken = configuration(&[dex_entry(&env), gitlab_entry(&gitlab)])
        .replace("startsWith('acme/')", "startWith('acme/')");
    write_atomically(&running.config, &broken);
    let deadline = Instant::now() + EVENTUALLY;
    while !proxy
        .stderr()
        .contains("new authentication configuration is invalid")
    {
        assert!(
            Instant::now() < deadline,
            "broken version not noticed\n{}",
            proxy.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        proxy
            .stderr()
            .contains("undeclared reference to 'startWith'"),
        "{}",
        proxy.logs()
    );
    assert_eq!(whoami(proxy, &env, &alice)["username"], ALICE);
    assert_eq!(whoami(proxy, &env, &shop)["username"], SHOP_MAIN);
    assert_eq!(
        whoami(proxy, &env, &job)["username"],
        "gitlab:project_path:acme/shop:ref_type:branch:ref:main"
    );
}
