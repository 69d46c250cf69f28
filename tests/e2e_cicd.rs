//! End to end: a GitHub Actions pipeline deploying through the proxy, as
//! `docs/ci-cd/github-actions.md` tells a reader to set it up, against the real kube-apiserver
//! with the real kubectl and helm.
//!
//! The harness plays the runner's ID-token endpoint (same request and answer as GitHub's,
//! GitHub-shaped claims) with 20-second tokens. The proxy runs with the guide's
//! AuthenticationConfiguration (only the issuer URL, audience and CA swapped for the harness's)
//! and as a ServiceAccount holding only the guide's narrowed ClusterRole; the pipeline's
//! kubeconfig is written by `kube-oidc-proxy kubeconfig` and runs `kube-oidc-proxy credential
//! github-actions`. A kubectl loop, a long-lived `kubectl proxy` and a
//! `helm upgrade --install --wait` run across several token lifetimes without a single
//! authentication failure, while the plugin's cache keeps the
//! token requests well below the kubectl runs. Another repository ID and another branch are
//! refused. The GitLab guide likewise: the job's `id_tokens:` variable through
//! `credential gitlab`, and an expired one refused by the plugin with GitLab's reason. Run with
//! `scripts/test` (see `tests/e2e_support`).

mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e_support::ci_issuer::{github_claims, gitlab_claims, CiIssuer, RunnerJob};
use e2e_support::{http_get_status, strings, unique_name, Kubectl, Proxy, TestEnv, EVENTUALLY};
use serde_json::{json, Value};
use tempfile::TempDir;

/// The audience the pipeline requests (the guide uses the proxy's URL).
const AUDIENCE: &str = "https://kube-oidc-proxy.e2e.example";
/// Each ID token's life: short, so that a test of about a minute spans several.
const LIFETIME: Duration = Duration::from_secs(20);
/// The guide's identity for acme/shop (repository 7654321) on main.
const PIPELINE: &str = "github:repo:7654321:ref:refs/heads/main";
/// The proxy's ServiceAccount, as the guide's ClusterRoleBinding names it.
const PROXY_USER: &str = "system:serviceaccount:kube-oidc-proxy:kube-oidc-proxy";
/// The guide's namespace.
const NS: &str = "shop";

/// One of the guides in docs/ci-cd, and the issuer URL its configuration names.
struct Guide {
    file: &'static str,
    issuer_url: &'static str,
}

const GITHUB: Guide = Guide {
    file: "github-actions.md",
    issuer_url: "https://token.actions.githubusercontent.com",
};

const GITLAB: Guide = Guide {
    file: "gitlab-ci.md",
    issuer_url: "https://gitlab.com",
};

/// The ```yaml blocks of `guide` that contain `needle`.
fn guide_blocks(guide: &Guide, needle: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/ci-cd")
        .join(guide.file);
    let text = std::fs::read_to_string(&path).expect("the guide");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(block), "```") => {
                if block.contains(needle) {
                    blocks.push(std::mem::take(block));
                }
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        !blocks.is_empty(),
        "no yaml block with {needle:?} in {}",
        path.display()
    );
    blocks
}

/// The guide's AuthenticationConfiguration for the harness's issuer (JSON is YAML).
fn authentication_config(guide: &Guide, issuer: &CiIssuer) -> String {
    let [block] = guide_blocks(guide, "kind: AuthenticationConfiguration")
        .try_into()
        .expect("one AuthenticationConfiguration in the guide");
    let mut config: Value = serde_saphyr::from_str(&block).expect("the guide's YAML");
    let entry = &mut config["jwt"][0]["issuer"];
    assert_eq!(entry["url"], guide.issuer_url);
    entry["url"] = json!(issuer.url);
    entry["audiences"] = json!([AUDIENCE]);
    entry["certificateAuthority"] = json!(issuer.ca_pem);
    config.to_string()
}

/// Once per test process: the guides' RBAC (namespace, Role, RoleBindings, the proxy's
/// narrowed ClusterRoles and their bindings) and the proxy's ServiceAccount. The GitLab guide's
/// ClusterRole has the GitHub one's name (a reader deploys one of them); here it is renamed and
/// bound like the GitHub one, so that the proxy's account holds both and nothing else.
fn apply_guide_rbac(env: &TestEnv) {
    static APPLIED: OnceLock<()> = OnceLock::new();
    APPLIED.get_or_init(|| {
        let account = json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-oidc-proxy"}},
                {"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "kube-oidc-proxy", "namespace": "kube-oidc-proxy"}},
            ],
        });
        env.admin_kubectl()
            .run_with_stdin(&["apply", "-f", "-"], account.to_string().as_bytes())
            .success();
        let gitlab_blocks = guide_blocks(&GITLAB, "rbac.authorization.k8s.io/v1")
            .into_iter()
            .map(|block| block.replace("kube-oidc-proxy-pipelines", "kube-oidc-proxy-gitlab"));
        let gitlab_binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "kube-oidc-proxy-gitlab"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "kube-oidc-proxy-gitlab"},
            "subjects": [{"kind": "ServiceAccount", "name": "kube-oidc-proxy",
                          "namespace": "kube-oidc-proxy"}],
        });
        for block in guide_blocks(&GITHUB, "rbac.authorization.k8s.io/v1")
            .into_iter()
            .chain(gitlab_blocks)
            .chain([gitlab_binding.to_string()])
        {
            env.admin_kubectl()
                .run_with_stdin(&["apply", "-f", "-"], block.as_bytes())
                .success();
        }
    });
}

/// A kubeconfig for the API server as the proxy's ServiceAccount (a fresh bound token).
fn proxy_identity(env: &TestEnv, dir: &Path) -> PathBuf {
    let output = env
        .admin_kubectl()
        .run(&[
            "create",
            "token",
            "kube-oidc-proxy",
            "-n",
            "kube-oidc-proxy",
            "--duration=1h",
        ])
        .success();
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "api", "cluster": {
            "server": env.apiserver_url,
            "certificate-authority": env.kube_ca_file,
        }}],
        "users": [{"name": "proxy", "user": {"token": output.stdout.trim()}}],
        "contexts": [{"name": "proxy", "context": {"cluster": "api", "user": "proxy"}}],
        "current-context": "proxy",
    });
    let path = dir.join("proxy-upstream.kubeconfig");
    std::fs::write(&path, kubeconfig.to_string()).expect("write the proxy's kubeconfig");
    path
}

/// The proxy as the guide deploys it, in front of the harness's issuer.
struct Setup {
    issuer: CiIssuer,
    proxy: Proxy,
    /// The issuer's CA as a file, for `SSL_CERT_FILE` (the runner's endpoint is HTTPS).
    issuer_ca: PathBuf,
    dir: TempDir,
}

fn setup(env: &TestEnv, guide: &Guide) -> Setup {
    apply_guide_rbac(env);
    let issuer = CiIssuer::start();
    let dir = TempDir::new().expect("temp dir");
    let config = dir.path().join("authentication.yaml");
    std::fs::write(&config, authentication_config(guide, &issuer))
        .expect("write the configuration");
    let issuer_ca = dir.path().join("issuer-ca.crt");
    std::fs::write(&issuer_ca, &issuer.ca_pem).expect("write the issuer CA");
    let upstream = proxy_identity(env, dir.path());
    let proxy = env.start_proxy_with_args(
        &upstream,
        &[format!("--authentication-config={}", config.display())],
    );
    Setup {
        issuer,
        proxy,
        issuer_ca,
        dir,
    }
}

/// A pipeline job: its kubeconfig, written by `kube-oidc-proxy kubeconfig`, and the
/// environment the runner gives the job.
struct Pipeline {
    kubeconfig: PathBuf,
    env: Vec<(String, String)>,
}

impl Pipeline {
    /// A GitHub Actions job, with the runner's token endpoint for `job` (none: the job lacks
    /// `id-token: write`).
    fn github(setup: &Setup, env: &TestEnv, job: Option<&RunnerJob>) -> Pipeline {
        let mut job_env = vec![
            ("GITHUB_ACTIONS".to_owned(), "true".to_owned()),
            (
                "SSL_CERT_FILE".to_owned(),
                setup.issuer_ca.display().to_string(),
            ),
        ];
        if let Some(job) = job {
            job_env.push((
                "ACTIONS_ID_TOKEN_REQUEST_URL".to_owned(),
                job.request_url.clone(),
            ));
            job_env.push((
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN".to_owned(),
                job.request_token.clone(),
            ));
        }
        Pipeline::new(
            setup,
            env,
            &["github-actions", "--audience", AUDIENCE],
            job_env,
        )
    }

    /// A job whose kubeconfig runs the plugin with `provider` arguments.
    fn new(
        setup: &Setup,
        env: &TestEnv,
        provider: &[&str],
        job_env: Vec<(String, String)>,
    ) -> Pipeline {
        let dir = setup.dir.path().join(unique_name("job"));
        std::fs::create_dir(&dir).expect("job dir");
        let kubeconfig = dir.join("kubeconfig");
        let output = Command::new(env!("CARGO_BIN_EXE_kube-oidc-proxy"))
            .arg("kubeconfig")
            .arg(format!("--server={}", setup.proxy.url))
            .arg(format!(
                "--certificate-authority={}",
                env.proxy_serving_ca_file.display()
            ))
            .arg(format!("--namespace={NS}"))
            .arg(format!("--output={}", kubeconfig.display()))
            .arg(format!("--cache-dir={}", dir.join("cache").display()))
            .args(provider)
            .output()
            .expect("run kube-oidc-proxy kubeconfig");
        assert!(
            output.status.success(),
            "kube-oidc-proxy kubeconfig: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Pipeline {
            kubeconfig,
            env: job_env,
        }
    }

    fn kubectl(&self, setup: &Setup, env: &TestEnv) -> Kubectl {
        self.kubectl_with(setup, env, &self.kubeconfig)
    }

    /// kubectl in this job's environment with another kubeconfig.
    fn kubectl_with(&self, setup: &Setup, env: &TestEnv, kubeconfig: &Path) -> Kubectl {
        self.env.iter().fold(
            setup.proxy.kubectl_with_kubeconfig(env, kubeconfig),
            |kubectl, (name, value)| kubectl.with_env(name, value),
        )
    }
}

/// `kubectl auth whoami` (the guides' smoke step): the user the API server sees.
fn whoami(kubectl: &Kubectl) -> Value {
    kubectl
        .run(&["auth", "whoami", "-o", "json"])
        .success()
        .json()["status"]["userInfo"]
        .clone()
}

/// A chart whose `--wait` lasts until the test binds its claim (there is no volume controller
/// in the test cluster): a ConfigMap and a PersistentVolumeClaim.
fn chart(dir: &Path) -> PathBuf {
    let chart = dir.join("chart");
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: shop\nversion: 0.1.0\n",
    )
    .expect("Chart.yaml");
    std::fs::write(
        chart.join("templates/app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\n\
         data:\n  release: {{ .Release.Name }}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {{ .Release.Name }}-data\n\
         spec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Mi\n",
    )
    .expect("template");
    chart
}

/// The API server's audit event (ResponseComplete) for `verb` on `resource` named `name`.
fn audit_event(env: &TestEnv, verb: &str, resource: &str, name: &str) -> Value {
    e2e_support::audit_event(env, &format!("{verb} {resource}/{name}"), |e| {
        e["objectRef"]["name"] == name
            && e["objectRef"]["resource"] == resource
            && e["verb"] == verb
    })
}

/// The guide's pipeline deploys with kubectl and helm for more than three token lifetimes:
/// never refused, tokens renewed underneath, fewer token requests than kubectl runs, and the
/// API server's audit log names the pipeline.
#[test]
fn a_deploy_outlives_several_tokens_without_a_refusal() {
    let Some(env) = TestEnv::load() else { return };
    let setup = setup(&env, &GITHUB);
    let job = setup.issuer.runner_job(
        github_claims("acme", "shop", "7654321", "refs/heads/main"),
        LIFETIME,
    );
    let pipeline = Pipeline::github(&setup, &env, Some(&job));
    let kubectl = pipeline.kubectl(&setup, &env);

    // The guide's smoke step; kubectl decoded the plugin's ExecCredential to get here.
    let me = &whoami(&kubectl);
    assert_eq!(me["username"], PIPELINE, "{me}");
    assert_eq!(
        strings(&me["extra"]["token.actions.githubusercontent.com/repository"]),
        ["acme/shop"],
        "{me}"
    );

    // kubectl's other supported exec version: it sends v1beta1 in KUBERNETES_EXEC_INFO, and
    // must accept the plugin's v1beta1 answer.
    let text = std::fs::read_to_string(&pipeline.kubeconfig).expect("the kubeconfig");
    let mut v1beta1: Value = serde_saphyr::from_str(&text).expect("the kubeconfig's YAML");
    let exec = &mut v1beta1["users"][0]["user"]["exec"];
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
    exec["apiVersion"] = json!("client.authentication.k8s.io/v1beta1");
    let v1beta1_path = setup.dir.path().join("v1beta1.kubeconfig");
    std::fs::write(&v1beta1_path, v1beta1.to_string()).expect("write the v1beta1 kubeconfig");
    let me = whoami(&pipeline.kubectl_with(&setup, &env, &v1beta1_path));
    assert_eq!(me["username"], PIPELINE, "{me}");

    // helm, waiting for a claim nobody binds yet, while a kubectl loop runs beside it.
    let helm_bin = env
        .vars
        .get("HELM")
        .expect("HELM in the cluster env file (scripts/cluster)");
    let release = unique_name("app");
    let chart = chart(setup.dir.path());
    let helm_home = setup.dir.path().join("helm-home");
    let helm_log = setup.dir.path().join("helm.log");
    let mut helm = Command::new(helm_bin);
    helm.args(["upgrade", "--install", &release])
        .arg(&chart)
        .args(["--namespace", NS, "--wait", "--timeout", "5m"])
        .arg(format!("--kubeconfig={}", pipeline.kubeconfig.display()))
        .env("HOME", &helm_home)
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        .env_remove("KUBECONFIG")
        .envs(pipeline.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&helm_log).expect("helm log"))
        .stderr(std::fs::File::create(&helm_log).expect("helm log"));
    let mut helm = helm.spawn().expect("start helm");

    // One long-lived client-go process too: `kubectl proxy` keeps its credential until the
    // ExecCredential's expirationTimestamp says otherwise (helm happens to re-run the plugin
    // more often), so this is what fails if the plugin's expiry is wrong.
    let mut kubectl_proxy = kubectl
        .command(&["proxy", "--port=0", "--address=127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubectl proxy");
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(kubectl_proxy.stdout.take().expect("stdout")),
        &mut banner,
    )
    .expect("kubectl proxy's banner");
    // "Starting to serve on 127.0.0.1:PORT"
    let local_port: u16 = banner
        .trim()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {banner:?}"));

    let started = Instant::now();
    let mut kubectl_runs = 1;
    let mut first_configmap = None;
    while started.elapsed() < 3 * LIFETIME + Duration::from_secs(5) {
        let path = format!("/api/v1/namespaces/{NS}/configmaps");
        let status = http_get_status(local_port, &path);
        assert_eq!(
            status,
            Some(200),
            "kubectl proxy, {:?} in
{}",
            started.elapsed(),
            setup.proxy.logs()
        );
        let name = unique_name("loop");
        kubectl
            .run(&[
                "create",
                "configmap",
                &name,
                "--from-literal=step=deploy",
                "-n",
                NS,
            ])
            .success();
        kubectl
            .run(&["get", "configmaps", "-n", NS, "-o", "name"])
            .success();
        kubectl_runs += 2;
        first_configmap.get_or_insert(name);
        std::thread::sleep(Duration::from_secs(1));
    }

    // Now let helm's wait end: bind the claim it waits for (as the admin, like a volume
    // controller would).
    let claim = format!("{release}-data");
    let deadline = Instant::now() + EVENTUALLY;
    while !env
        .admin_kubectl()
        .run(&["get", "pvc", &claim, "-n", NS])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "helm never created {claim}");
        std::thread::sleep(Duration::from_millis(500));
    }
    env.admin_kubectl()
        .run(&[
            "patch",
            "pvc",
            &claim,
            "-n",
            NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Bound"}}"#,
        ])
        .success();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = helm.try_wait().expect("poll helm") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = helm.kill();
            panic!(
                "helm did not finish\n{}\n{}",
                std::fs::read_to_string(&helm_log).unwrap_or_default(),
                setup.proxy.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let helm_took = started.elapsed();
    let _ = kubectl_proxy.kill();
    let _ = kubectl_proxy.wait();
    assert!(
        status.success(),
        "helm failed ({status})\n{}\n{}",
        std::fs::read_to_string(&helm_log).unwrap_or_default(),
        setup.proxy.logs()
    );
    assert!(
        helm_took > 3 * LIFETIME,
        "helm's wait spanned {helm_took:?}"
    );

    // Not one request was refused, across all those tokens...
    assert!(
        !setup.proxy.access_log().contains("AuFail"),
        "a request was refused\n{}",
        setup.proxy.logs()
    );
    // ...tokens were renewed (at least one per lifetime), and the cache spared most requests.
    let issued = job.tokens_issued();
    eprintln!("{kubectl_runs} kubectl runs and one helm run; {issued} ID tokens issued");
    assert!(issued >= 3, "{issued} tokens for {helm_took:?}");
    assert!(
        issued < kubectl_runs,
        "{issued} tokens for {kubectl_runs} kubectl runs"
    );

    // The API server's audit log names the pipeline, impersonated by the proxy's account.
    for (resource, name) in [
        ("configmaps", first_configmap.expect("the loop ran")),
        ("persistentvolumeclaims", claim),
    ] {
        let event = audit_event(&env, "create", resource, &name);
        assert_eq!(event["user"]["username"], PROXY_USER, "{event}");
        assert_eq!(event["impersonatedUser"]["username"], PIPELINE, "{event}");
        assert_eq!(
            strings(&event["impersonatedUser"]["extra"]["token.actions.githubusercontent.com/run"]),
            ["33964329992/1"],
            "{event}"
        );
    }
}

/// Tokens of another repository (by ID) or another branch, minted for the right audience by
/// the same runner endpoint, are refused; and a job without `id-token: write` learns why.
#[test]
fn another_repository_or_branch_is_refused() {
    let Some(env) = TestEnv::load() else { return };
    let setup = setup(&env, &GITHUB);
    for (what, claims, rule) in [
        (
            "another repository ID (same name)",
            github_claims("acme", "shop", "9999999", "refs/heads/main"),
            "only repositories allowed to deploy, by ID",
        ),
        (
            "another branch",
            github_claims("acme", "shop", "7654321", "refs/heads/feature"),
            "only the main branch",
        ),
    ] {
        eprintln!("pipeline: {what}");
        let job = setup.issuer.runner_job(claims, LIFETIME);
        let pipeline = Pipeline::github(&setup, &env, Some(&job));
        pipeline
            .kubectl(&setup, &env)
            .run(&["get", "configmaps", "-n", NS])
            .fails_with("error: You must be logged in to the server");
        assert!(job.tokens_issued() >= 1, "{what}: the plugin never asked");
        setup.proxy.wait_for_log(rule);
    }

    // No ACTIONS_ID_TOKEN_REQUEST_* (the permission is missing): kubectl shows the plugin's
    // explanation.
    let pipeline = Pipeline::github(&setup, &env, None);
    pipeline
        .kubectl(&setup, &env)
        .run(&["auth", "whoami"])
        .fails_with("permissions: id-token: write");
}

/// The GitLab guide: the job's `id_tokens:` variable read by `credential gitlab`, admitted as
/// the guide's identity and named in the audit log; an expired token is refused by the plugin
/// itself with GitLab's reason, before any request.
#[test]
fn a_gitlab_job_deploys_with_its_id_token() {
    let Some(env) = TestEnv::load() else { return };
    let setup = setup(&env, &GITLAB);
    let provider = ["gitlab", "--variable", "KUBE_ID_TOKEN"];
    let token = setup
        .issuer
        .gitlab_token(AUDIENCE, "acme/shop", "main", true);
    let pipeline = Pipeline::new(
        &setup,
        &env,
        &provider,
        vec![("KUBE_ID_TOKEN".to_owned(), token)],
    );
    let kubectl = pipeline.kubectl(&setup, &env);
    let me = &whoami(&kubectl);
    assert_eq!(me["username"], "gitlab:project:20:ref:main", "{me}");
    assert_eq!(
        strings(&me["extra"]["gitlab.com/pipeline"]),
        ["574/302"],
        "{me}"
    );
    let name = unique_name("gitlab");
    kubectl
        .run(&[
            "create",
            "configmap",
            &name,
            "--from-literal=by=gitlab",
            "-n",
            NS,
        ])
        .success();
    let event = audit_event(&env, "create", "configmaps", &name);
    assert_eq!(event["user"]["username"], PROXY_USER, "{event}");
    assert_eq!(
        event["impersonatedUser"]["username"], "gitlab:project:20:ref:main",
        "{event}"
    );

    // The job outlived its token.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut claims = gitlab_claims("acme/shop", "main", true);
    claims["iat"] = json!(now - 3600);
    claims["nbf"] = json!(now - 3600);
    claims["exp"] = json!(now - 30);
    let expired = setup.issuer.token(AUDIENCE, claims);
    let pipeline = Pipeline::new(
        &setup,
        &env,
        &provider,
        vec![("KUBE_ID_TOKEN".to_owned(), expired.clone())],
    );
    let output = pipeline
        .kubectl(&setup, &env)
        .run(&["get", "configmaps", "-n", NS])
        .fails_with("GitLab mints it once per job");
    assert!(!output.stderr.contains(&expired), "{}", output.stderr);
}
