//! The Helm chart (`deploy/charts/kube-oidc-proxy`), its plain manifests (`deploy/yaml/`) and
//! the image recipe (`Dockerfile`):
//!
//! - `helm lint --strict` and `helm template` for the default values and each `ci/*-values.yaml`,
//!   and the schema refusing unknown keys;
//! - snapshots of the default and the full-featured rendering, and `deploy/yaml/` equal to a
//!   rendering (`UPDATE_SNAPSHOTS=1 cargo test --test chart` rewrites all three);
//! - every flag of `kube-oidc-proxy --help` reachable from values, and every rendering's flags
//!   and files accepted by `kube-oidc-proxy --validate-config`;
//! - `deploy/rbac/clusterrole.yaml` (used by `scripts/cluster`) equal to the chart's rules;
//! - on the real test cluster: every rendering accepted by a server-side dry run, the pod spec
//!   admitted by Pod Security "restricted", and the chart's RBAC proved needed and sufficient by
//!   running the proxy with its ServiceAccount's token through named scenarios.
//!
//! helm comes from the cluster's env file (`HELM`) or `scripts/testenv-build helm`, never from
//! the network. The cluster tests skip without `KUBE_OIDC_PROXY_E2E_ENV` (fail under `CI`).

mod e2e_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use e2e_support::ci_issuer::CiIssuer;
use e2e_support::{strings, unique_name, Kubectl, TestEnv, EVENTUALLY};
use serde_json::{json, Value};
use tempfile::TempDir;

const RELEASE: &str = "kube-oidc-proxy";
const NAMESPACE: &str = "kube-oidc-proxy";
/// Set to rewrite the snapshots and `deploy/yaml/` from the current chart.
const UPDATE_VAR: &str = "UPDATE_SNAPSHOTS";
/// So that the full-featured values render their ServiceMonitor as on a cluster that has it.
const SERVICE_MONITOR_API: &str = "monitoring.coreos.com/v1/ServiceMonitor";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("deploy/charts/kube-oidc-proxy")
}

/// The `ci/*-values.yaml` files (helm's convention for a chart's test values), sorted.
fn ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("read the chart's ci/ directory")
        .map(|e| e.expect("ci/ entry").path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no ci/*-values.yaml");
    files
}

/// The pinned helm binary: `HELM` of the cluster's env file, else `scripts/testenv-build helm`
/// (cached per machine; it prints the bin directory last).
fn helm() -> PathBuf {
    if let Some(env_file) = std::env::var_os(e2e_support::ENV_FILE_VAR).filter(|v| !v.is_empty()) {
        let out = Command::new("bash")
            .args(["-c", ". \"$0\" && printf %s \"$HELM\""])
            .arg(env_file)
            .output()
            .expect("read HELM from the env file");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !path.is_empty() {
            return PathBuf::from(path);
        }
    }
    let out = Command::new(repo().join("scripts/testenv-build"))
        .arg("helm")
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/testenv-build helm");
    assert!(out.status.success(), "scripts/testenv-build helm failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bin_dir = stdout
        .lines()
        .last()
        .expect("testenv-build prints its bin dir");
    Path::new(bin_dir.trim()).join("helm")
}

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"))
}

#[track_caller]
fn ok(command: &mut Command) -> String {
    let out = run(command);
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `helm template` of the chart as release `kube-oidc-proxy` in `namespace` with `args`
/// (values files, `--set`, `--show-only`).
fn helm_template_command(namespace: &str, args: &[&str]) -> Command {
    let mut command = Command::new(helm());
    command
        .args(["template", RELEASE])
        .arg(chart_dir())
        .args([
            "--namespace",
            namespace,
            "--api-versions",
            SERVICE_MONITOR_API,
        ])
        .args(args);
    command
}

#[track_caller]
fn render(args: &[&str]) -> String {
    ok(&mut helm_template_command(NAMESPACE, args))
}

/// The documents of a rendering as JSON (comments and empty documents dropped).
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("rendering is not YAML: {e}\n{yaml}"))
        .into_iter()
        .filter(|d| d.is_object())
        .collect()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Every values file of the matrix, as `helm template` arguments (the defaults first).
fn matrix() -> Vec<(String, Vec<String>)> {
    let mut cases = vec![("values.yaml (defaults)".to_owned(), Vec::new())];
    for file in ci_values() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        cases.push((name, vec!["-f".to_owned(), path_str(&file).to_owned()]));
    }
    cases
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `helm lint --strict` (warnings fail) and `helm template` pass for every values file.
#[test]
fn lint_strict_and_template_every_values_file() {
    for (name, args) in matrix() {
        let out = ok(Command::new(helm())
            .args(["lint", "--strict"])
            .arg(chart_dir())
            .args(&args));
        assert!(out.contains("0 chart(s) failed"), "{name}: {out}");
        let rendered = render(&as_strs(&args));
        assert!(
            documents(&rendered)
                .iter()
                .any(|d| d["kind"] == "Deployment"),
            "{name}: no Deployment"
        );
    }
}

/// The schema is strict: a misspelt key, at the top or nested, fails `helm template` and
/// `helm lint` with its name instead of being silently ignored.
#[test]
fn schema_rejects_unknown_keys() {
    for (set, key) in [
        ("replicas=3", "replicas"),
        ("oidc.issuerURL=https://x", "issuerURL"),
        ("impersonation.clientIp=true", "clientIp"),
        ("audit.log.options.maxAge=3", "maxAge"),
        ("rbac.resourceNames.user[0]=a", "user"),
    ] {
        let out = run(&mut helm_template_command(NAMESPACE, &["--set", set]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(key),
            "--set {set} was accepted: {stderr}"
        );
        let out = run(Command::new(helm())
            .args(["lint", "--strict"])
            .arg(chart_dir())
            .args(["--set", set]));
        assert!(!out.status.success(), "helm lint accepted --set {set}");
    }
    // A wrong type too.
    let out = run(&mut helm_template_command(
        NAMESPACE,
        &["--set", "server.readinessUpstream=sometimes"],
    ));
    assert!(!out.status.success(), "an unknown enum value was accepted");
}

/// The ServiceMonitor is rendered only where its API is served (a cluster without the Prometheus
/// Operator would refuse the whole release otherwise).
#[test]
fn service_monitor_only_when_its_api_exists() {
    let chart = chart_dir();
    let full = chart.join("ci/full-values.yaml");
    let kinds = |api_versions: &[&str]| -> Vec<Value> {
        let mut args = vec!["template", RELEASE, path_str(&chart)];
        args.extend_from_slice(&["-f", path_str(&full)]);
        args.extend_from_slice(api_versions);
        documents(&ok(Command::new(helm()).args(&args)))
            .into_iter()
            .map(|d| d["kind"].clone())
            .collect()
    };
    let monitor = json!("ServiceMonitor");
    assert!(!kinds(&[]).contains(&monitor), "rendered without the API");
    assert!(kinds(&["--api-versions", SERVICE_MONITOR_API]).contains(&monitor));
}

/// Compares `actual` with the committed file, or rewrites it with `UPDATE_SNAPSHOTS=1`.
#[track_caller]
fn assert_snapshot(file: &Path, actual: &str) {
    if std::env::var_os(UPDATE_VAR).is_some_and(|v| !v.is_empty()) {
        std::fs::create_dir_all(file.parent().unwrap()).expect("snapshot dir");
        std::fs::write(file, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(file).unwrap_or_default();
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering from line {} on (rerun with {UPDATE_VAR}=1 to accept):\n\
             expected: {:?}\n  actual: {:?}",
            file.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

/// The default and the full-featured renderings, byte for byte.
#[test]
fn snapshots_of_default_and_full_renderings() {
    let snapshots = repo().join("tests/snapshots/chart");
    assert_snapshot(&snapshots.join("default.yaml"), &render(&[]));
    let full = chart_dir().join("ci/full-values.yaml");
    assert_snapshot(
        &snapshots.join("full.yaml"),
        &render(&["-f", path_str(&full)]),
    );
}

/// `deploy/yaml/kube-oidc-proxy.yaml` is the chart rendered with `deploy/yaml/values.yaml`.
#[test]
fn plain_manifests_are_the_rendered_chart() {
    let dir = repo().join("deploy/yaml");
    let rendered = render(&["-f", path_str(&dir.join("values.yaml"))]);
    assert_snapshot(&dir.join("kube-oidc-proxy.yaml"), &rendered);
}

/// The long flags of `kube-oidc-proxy --help`.
fn proxy_flags() -> BTreeSet<String> {
    let help = ok(Command::new(env!("CARGO_BIN_EXE_kube-oidc-proxy")).arg("--help"));
    let flags: BTreeSet<String> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            l.split([' ', ','])
                .find(|w| w.starts_with("--"))
                .map(str::to_owned)
        })
        .collect();
    assert!(
        flags.len() > 60,
        "too few flags parsed from --help: {flags:?}"
    );
    flags
}

/// Flags deliberately without a value of their own, and why.
const FLAGS_WITHOUT_VALUES: &[(&str, &str)] = &[
    ("--help", "not a serving flag"),
    ("--version", "not a serving flag"),
    ("--validate-config", "a one-shot check, not a serving mode"),
    (
        "--token",
        "a bearer token in the pod spec would be readable by anyone who can read Deployments: \
         put it in a kubeconfig in upstream.secretName",
    ),
    (
        "--flush-interval",
        "accepted for compatibility and ignored by the proxy (extraArgs can still pass it)",
    ),
];

/// Every flag of the binary appears in the container args of some `ci/` rendering (or is listed
/// above with a reason), so a new flag without a value fails here.
#[test]
fn every_proxy_flag_is_reachable_from_values() {
    let mut rendered_args = BTreeSet::new();
    for file in ci_values() {
        for doc in documents(&render(&["-f", path_str(&file)])) {
            if doc["kind"] == "Deployment" {
                let args = &doc["spec"]["template"]["spec"]["containers"][0]["args"];
                for arg in strings(args) {
                    // extraArgs are not a value of their own.
                    if arg == "--flush-interval=50ms" {
                        continue;
                    }
                    let name = arg.split('=').next().unwrap_or_default().to_owned();
                    rendered_args.insert(name);
                }
            }
        }
    }
    let exempt: BTreeSet<&str> = FLAGS_WITHOUT_VALUES.iter().map(|(f, _)| *f).collect();
    let missing: Vec<String> = proxy_flags()
        .into_iter()
        .filter(|f| !exempt.contains(f.as_str()) && !rendered_args.contains(f))
        .collect();
    assert!(
        missing.is_empty(),
        "flags no ci/*-values.yaml rendering sets (add a value, or a reason to \
         FLAGS_WITHOUT_VALUES): {missing:?}"
    );
}

/// A self-signed certificate and its key (PEM), for files the proxy reads and checks.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// A kubeconfig with the context, cluster and user names `ci/oidc-values.yaml` selects.
fn kubeconfig_json(server: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "remote",
        "clusters": [{"name": "remote", "cluster": {"server": server}}],
        "users": [{"name": "proxy", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "remote", "context": {"cluster": "remote", "user": "proxy"}}],
    })
    .to_string()
}

/// Every rendering is a configuration the proxy itself accepts: the Deployment's args, with the
/// files its volumes would provide (the ConfigMap's keys; certificates, keys and kubeconfigs
/// standing in for the Secrets) under a temporary root, pass `kube-oidc-proxy --validate-config`.
/// In-cluster configuration is replaced by a kubeconfig (the test is not in a pod).
#[test]
fn every_rendering_is_a_valid_proxy_configuration() {
    let mut cases = ci_values();
    cases.push(repo().join("deploy/yaml/values.yaml"));
    for file in cases {
        let docs = documents(&render(&["-f", path_str(&file)]));
        let root = TempDir::new().expect("temp root");
        let etc = root.path().join("etc/kube-oidc-proxy");
        let write = |relative: &str, contents: &str| {
            let path = etc.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
            std::fs::write(path, contents).expect("write");
        };
        for dir in ["tls", "sni/0", "sni/1", "upstream"] {
            let (cert, key) = self_signed();
            write(&format!("{dir}/tls.crt"), &cert);
            write(&format!("{dir}/tls.key"), &key);
            write(&format!("{dir}/ca.crt"), &cert);
        }
        write(
            "upstream/kubeconfig",
            &kubeconfig_json("https://remote.example.com"),
        );
        write(
            "audit-webhook/kubeconfig",
            &kubeconfig_json("https://audit.example.com/events"),
        );
        std::fs::create_dir_all(root.path().join("var/log/kube-oidc-proxy")).expect("mkdir");
        if let Some(config_map) = docs.iter().find(|d| d["kind"] == "ConfigMap") {
            for (key, value) in config_map["data"].as_object().expect("data") {
                write(&format!("config/{key}"), value.as_str().expect("string"));
            }
        }
        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("a Deployment");
        let root_str = path_str(root.path());
        let mut args: Vec<String> =
            strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
                .into_iter()
                .map(|a| {
                    a.replace(
                        "/etc/kube-oidc-proxy/",
                        &format!("{root_str}/etc/kube-oidc-proxy/"),
                    )
                    .replace(
                        "/var/log/kube-oidc-proxy/",
                        &format!("{root_str}/var/log/kube-oidc-proxy/"),
                    )
                })
                .collect();
        if !args.iter().any(|a| a.starts_with("--kubeconfig=")) {
            args.push(format!(
                "--kubeconfig={}",
                etc.join("upstream/kubeconfig").display()
            ));
        }
        let out = run(Command::new(env!("CARGO_BIN_EXE_kube-oidc-proxy"))
            .arg("--validate-config")
            .args(&args));
        assert!(
            out.status.success(),
            "{}: the proxy refuses the rendered flags {args:?}:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A ClusterRole's rules as comparable (apiGroup, resource, resourceNames, verbs) tuples, one per
/// resource, whatever the grouping of the file.
fn rule_set(role: &Value) -> BTreeSet<(String, String, Vec<String>, Vec<String>)> {
    let mut set = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                set.insert((
                    group.clone(),
                    resource,
                    strings(&rule["resourceNames"]),
                    strings(&rule["verbs"]),
                ));
            }
        }
    }
    set
}

fn cluster_role(yaml: &str) -> Value {
    documents(yaml)
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole")
}

/// `deploy/rbac/clusterrole.yaml` (which `scripts/cluster` applies for every e2e suite) grants
/// what the chart grants with those suites' features: kubectl --as, credential ids, the client
/// IP extra and token passthrough.
#[test]
fn deploy_rbac_clusterrole_matches_the_chart() {
    let file = std::fs::read_to_string(repo().join("deploy/rbac/clusterrole.yaml"))
        .expect("read deploy/rbac/clusterrole.yaml");
    let chart = render(&[
        "--show-only",
        "templates/rbac.yaml",
        "--set",
        "impersonation.clientIP=true,tokenPassthrough.enabled=true",
    ]);
    assert_eq!(
        rule_set(&cluster_role(&file)),
        rule_set(&cluster_role(&chart)),
        "deploy/rbac/clusterrole.yaml and the chart's ClusterRole differ"
    );
}

/// The image runs as a numeric non-root user from a distroless base.
#[test]
fn dockerfile_runs_as_numeric_non_root() {
    let dockerfile =
        std::fs::read_to_string(repo().join("Dockerfile")).expect("read the Dockerfile");
    let last_stage = dockerfile.rsplit("\nFROM ").next().expect("a FROM line");
    assert!(last_stage.starts_with("gcr.io/distroless/"), "{last_stage}");
    let user = last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER line in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.trim().parse().ok())
        .unwrap_or_else(|| panic!("USER {user} is not numeric"));
    assert_ne!(uid, 0, "the image runs as root");
}

// ---- On the real test cluster ----

/// Applies `objects` (JSON) with kubectl as the admin.
fn admin_apply(env: &TestEnv, args: &[&str], manifest: &str) -> e2e_support::KubectlOutput {
    let mut all = vec!["apply"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-f", "-"]);
    env.admin_kubectl()
        .run_with_stdin(&all, manifest.as_bytes())
}

/// A namespace whose Pod Security level is "restricted", enforced (and warned about).
fn restricted_namespace(env: &TestEnv, prefix: &str) -> String {
    let ns = unique_name(prefix);
    let level = "restricted";
    let manifest = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {
            "pod-security.kubernetes.io/enforce": level,
            "pod-security.kubernetes.io/warn": level,
        }},
    });
    admin_apply(env, &[], &manifest.to_string()).success();
    ns
}

/// Every rendering of the matrix is accepted by the real API server's server-side dry run (its
/// own schema validation and admission, the RBAC objects included), without a Pod Security
/// warning; the Deployment's pod spec, as a Pod, is admitted in a namespace enforcing
/// "restricted", and a pod spec that breaks the profile is not (so the check can fail).
#[test]
fn every_rendering_passes_server_dry_run_and_restricted_pod_security() {
    let Some(env) = TestEnv::load() else { return };
    // Stand-in CRDs for Certificate and ServiceMonitor (tests/chart/crds.yaml).
    let crds = std::fs::read_to_string(repo().join("tests/chart/crds.yaml")).expect("CRDs");
    admin_apply(&env, &[], &crds).success();
    env.admin_kubectl()
        .run(&[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/certificates.cert-manager.io",
            "crd/servicemonitors.monitoring.coreos.com",
        ])
        .success();
    let ns = restricted_namespace(&env, "chart-dry-run");
    for (name, args) in matrix() {
        let rendered = ok(&mut helm_template_command(&ns, &as_strs(&args)));
        let out = admin_apply(&env, &["--dry-run=server"], &rendered).success();
        assert!(
            !out.stderr.contains("Warning"),
            "{name}: warnings from the API server:\n{}",
            out.stderr
        );
        let deployment = documents(&rendered)
            .into_iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("a Deployment");
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pod-security-check", "namespace": ns},
            "spec": deployment["spec"]["template"]["spec"],
        });
        let out = admin_apply(&env, &["--dry-run=server"], &pod.to_string());
        assert!(
            out.status.success(),
            "{name}: the pod spec is not admitted under Pod Security \"restricted\":\n{}",
            out.stderr
        );
        // Control: the same namespace refuses a pod that may escalate privileges.
        let mut bad = pod.clone();
        bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
        admin_apply(&env, &["--dry-run=server"], &bad.to_string())
            .fails_with("violates PodSecurity \"restricted");
    }
}

// ---- The RBAC proof ----

const ALICE: &str = "alice@example.com";
/// An extra key mapped by the Dex issuer of the proof's AuthenticationConfiguration.
const TENANT_EXTRA: &str = "example.com/tenant";
/// An extra key end users may pass with `kubectl --as` + `as-user-extra`.
const TEAM_EXTRA: &str = "example.com/team";

/// The proof's issuers: Dex (uid and an extra mapped) and a CI issuer (tokens with a `jti`).
fn authentication_config(env: &TestEnv, ci: &CiIssuer) -> Value {
    let dex_ca = std::fs::read_to_string(&env.dex_ca_file).expect("Dex CA");
    json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [
            {
                "issuer": {
                    "url": env.dex_issuer_url,
                    "audiences": [env.dex_client_id],
                    "certificateAuthority": dex_ca,
                },
                "claimMappings": {
                    "username": {"claim": "email", "prefix": ""},
                    "groups": {"claim": "groups", "prefix": ""},
                    "uid": {"claim": "sub"},
                    "extra": [{"key": TENANT_EXTRA, "valueExpression": "'acme'"}],
                },
            },
            {
                "issuer": {
                    "url": ci.url,
                    "audiences": ["chart-proof"],
                    "certificateAuthority": ci.ca_pem,
                },
                "claimMappings": {"username": {"claim": "sub", "prefix": "ci:"}},
            },
        ],
    })
}

/// A check of the userInfo `kubectl auth whoami` reports; `Err` says what is wrong.
type Check = Box<dyn Fn(&Value) -> Result<(), String>>;

/// One named thing a user or pipeline does through the proxy: `kubectl auth whoami` with a
/// kubeconfig `user` entry (token, and `as`, `as-groups`, `as-uid`, `as-user-extra`).
struct Scenario {
    name: &'static str,
    user: Value,
    check: Check,
}

/// Whether a JSON string array contains `value`.
fn has(list: &Value, value: &str) -> bool {
    strings(list).iter().any(|v| v == value)
}

/// `kubectl auth whoami` through the proxy with a kubeconfig `user`; the userInfo, or the error.
fn whoami(proxy: &e2e_support::Proxy, env: &TestEnv, user: Value) -> Result<Value, String> {
    let kubectl: Kubectl = proxy.kubectl_with_user(env, user);
    let out = kubectl.run(&["auth", "whoami", "-o", "json"]);
    if !out.status.success() {
        return Err(out.stderr.trim().to_owned());
    }
    let review: Value = serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
    Ok(review["status"]["userInfo"].clone())
}

fn expect(cond: bool, what: &str, user: &Value) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("{what}: {user}"))
    }
}

/// The chart's ClusterRole, bound to a ServiceAccount by the chart's own binding, is all the
/// proxy needs (every scenario passes with the ServiceAccount's token as its only credential),
/// and every rule it generates is needed: without any one of them, some named scenario fails.
#[test]
fn chart_rbac_is_needed_and_sufficient() {
    let Some(env) = TestEnv::load() else { return };
    let started = Instant::now();
    let ci = CiIssuer::start();
    let ns = unique_name("chart-rbac");
    // A unique release, so its ClusterRole and binding names are its own.
    let release = ns.clone();
    let values = json!({
        "authenticationConfig": authentication_config(&env, &ci),
        "tokenPassthrough": {"enabled": true},
        "impersonation": {
            "kubectlAs": true,
            "credentialId": true,
            "clientIP": true,
            "extraUserHeaders": {"scopes": ["view"]},
            "userExtras": [TEAM_EXTRA],
        },
    });
    let dir = TempDir::new().expect("temp dir");
    let values_file = dir.path().join("values.json");
    std::fs::write(&values_file, values.to_string()).expect("write values");
    let rendered = ok(Command::new(helm())
        .args(["template", &release])
        .arg(chart_dir())
        .args(["--namespace", &ns, "-f", path_str(&values_file)]));
    let docs = documents(&rendered);
    let find = |kind: &str| -> Value {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} rendered"))
    };
    let (account, role, binding) = (
        find("ServiceAccount"),
        find("ClusterRole"),
        find("ClusterRoleBinding"),
    );
    let sa_name = account["metadata"]["name"].as_str().unwrap().to_owned();
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    let list = |items: Vec<Value>| json!({"apiVersion": "v1", "kind": "List", "items": items});
    admin_apply(
        &env,
        &[],
        &list(vec![namespace, account, role.clone(), binding]).to_string(),
    )
    .success();

    // The proxy's upstream identity: the ServiceAccount's token, nothing else.
    let token = env
        .admin_kubectl()
        .run(&["create", "token", &sa_name, "-n", &ns, "--duration=1h"])
        .success()
        .stdout
        .trim()
        .to_owned();
    let kubeconfig = dir.path().join("upstream.kubeconfig");
    let upstream = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
        "clusters": [{"name": "c", "cluster": {
            "server": env.apiserver_url,
            "certificate-authority": path_str(&env.kube_ca_file),
        }}],
        "users": [{"name": "proxy", "user": {"token": token}}],
        "contexts": [{"name": "proxy", "context": {"cluster": "c", "user": "proxy"}}],
    });
    std::fs::write(&kubeconfig, upstream.to_string()).expect("write kubeconfig");

    // The proxy's flags are the Deployment's, with the ConfigMap's file where they point; the
    // harness supplies ports, serving certificate and --kubeconfig (in-cluster in a pod).
    let config_map = find("ConfigMap");
    let container = &find("Deployment")["spec"]["template"]["spec"]["containers"][0];
    let harness_owned = [
        "--secure-port",
        "--readiness-probe-port",
        "--bind-address",
        "--tls-cert-file",
        "--tls-private-key-file",
    ];
    let args: Vec<String> = strings(&container["args"])
        .into_iter()
        .filter(|a| !harness_owned.contains(&a.split('=').next().unwrap_or_default()))
        .map(|a| {
            let Some(path) = a.strip_prefix("--authentication-config=") else {
                return a;
            };
            let key = Path::new(path).file_name().unwrap().to_string_lossy();
            let file = dir.path().join(&*key);
            let data = config_map["data"][&*key].as_str().expect("ConfigMap key");
            std::fs::write(&file, data).expect("write the authentication config");
            format!("--authentication-config={}", file.display())
        })
        .collect();

    // What the people and pipelines do. alice may impersonate what the --as scenarios ask for.
    let id = unique_name("chart-as");
    let (target, group, uid) = (
        format!("{id}-user"),
        format!("{id}-group"),
        format!("{id}-uid"),
    );
    let rule = |group: &str, resource: &str, names: &[&str]| {
        json!({"apiGroups": [group], "resources": [resource], "resourceNames": names,
               "verbs": ["impersonate"]})
    };
    let alice_role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": id},
        "rules": [
            rule("", "users", &[&target]),
            rule("", "groups", &[&group]),
            rule("", "serviceaccounts", &["robot"]),
            rule("authentication.k8s.io", "uids", &[&uid]),
            rule("authentication.k8s.io", &format!("userextras/{TEAM_EXTRA}"), &["blue"]),
        ],
    });
    let alice_binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": id},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": id},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": ALICE}],
    });
    let passthrough_sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                                "metadata": {"name": "pipeline", "namespace": ns}});
    admin_apply(
        &env,
        &[],
        &list(vec![alice_role, alice_binding, passthrough_sa]).to_string(),
    )
    .success();
    let alice = env.id_token(ALICE);
    let ci_token = ci.github_token("chart-proof", "acme", "shop", "refs/heads/main");
    let sa_token = env
        .admin_kubectl()
        .run(&["create", "token", "pipeline", "-n", &ns, "--duration=1h"])
        .success()
        .stdout
        .trim()
        .to_owned();
    let robot = format!("system:serviceaccount:{ns}:robot");
    let pipeline = format!("system:serviceaccount:{ns}:pipeline");
    let (target_for_check, group_for_check, uid_for_check) =
        (target.clone(), group.clone(), uid.clone());
    let robot_for_check = robot.clone();
    let scenarios = [
        Scenario {
            name: "a Dex user with groups, uid and extras (tenant, scopes, remote-client-ip)",
            user: json!({"token": alice}),
            check: Box::new(|u| {
                expect(u["username"] == ALICE, "username", u)?;
                expect(has(&u["groups"], "team-a-devs"), "groups", u)?;
                expect(u["uid"].is_string(), "uid", u)?;
                expect(has(&u["extra"][TENANT_EXTRA], "acme"), "tenant extra", u)?;
                expect(has(&u["extra"]["scopes"], "view"), "scopes extra", u)?;
                expect(
                    !strings(&u["extra"]["remote-client-ip"]).is_empty(),
                    "client IP",
                    u,
                )
            }),
        },
        Scenario {
            name: "a CI token with a jti (credential-id extra)",
            user: json!({"token": ci_token}),
            check: Box::new(|u| {
                let name = "ci:repo:acme/shop:ref:refs/heads/main";
                expect(u["username"] == name, "username", u)?;
                let credential_id = &u["extra"]["authentication.kubernetes.io/credential-id"];
                expect(!strings(credential_id).is_empty(), "credential-id extra", u)
            }),
        },
        Scenario {
            name: "kubectl --as a user (originaluser.jetstack.io-* extras)",
            user: json!({"token": alice, "as": target}),
            check: Box::new(move |u| {
                expect(u["username"] == target_for_check.as_str(), "username", u)?;
                for key in ["user", "groups", "uid", "extra"] {
                    let key = format!("originaluser.jetstack.io-{key}");
                    expect(!strings(&u["extra"][&key]).is_empty(), &key, u)?;
                }
                Ok(())
            }),
        },
        Scenario {
            name: "kubectl --as --as-group",
            user: json!({"token": alice, "as": target, "as-groups": [group]}),
            check: Box::new(move |u| expect(has(&u["groups"], &group_for_check), "groups", u)),
        },
        Scenario {
            name: "kubectl --as a ServiceAccount",
            user: json!({"token": alice, "as": robot}),
            check: Box::new(move |u| {
                expect(u["username"] == robot_for_check.as_str(), "username", u)
            }),
        },
        Scenario {
            name: "kubectl --as --as-uid",
            user: json!({"token": alice, "as": target, "as-uid": uid}),
            check: Box::new(move |u| expect(u["uid"] == uid_for_check.as_str(), "uid", u)),
        },
        Scenario {
            name: "kubectl --as with as-user-extra",
            user: json!({"token": alice, "as": target, "as-user-extra": {TEAM_EXTRA: ["blue"]}}),
            check: Box::new(|u| expect(has(&u["extra"][TEAM_EXTRA], "blue"), "team extra", u)),
        },
        Scenario {
            name: "a ServiceAccount token through --token-passthrough",
            user: json!({"token": sa_token}),
            check: Box::new(move |u| expect(u["username"] == pipeline.as_str(), "username", u)),
        },
    ];
    // Runs every scenario against a fresh proxy (no cached review decisions); the failures.
    let run_all = || -> Vec<(&'static str, String)> {
        let proxy = env.start_proxy_with_args(&kubeconfig, &args);
        scenarios
            .iter()
            .filter_map(|s| {
                let outcome = whoami(&proxy, &env, s.user.clone()).and_then(|u| (s.check)(&u));
                outcome.err().map(|e| (s.name, e))
            })
            .collect()
    };

    let failures = run_all();
    assert!(
        failures.is_empty(),
        "with the chart's ClusterRole, scenarios failed: {failures:#?}"
    );

    let rules = role["rules"].as_array().expect("rules").clone();
    let sa_user = format!("system:serviceaccount:{ns}:{sa_name}");
    let mut unneeded = Vec::new();
    let mut report = String::new();
    for (i, rule) in rules.iter().enumerate() {
        let mut reduced = role.clone();
        reduced["rules"].as_array_mut().unwrap().remove(i);
        admin_apply(&env, &[], &reduced.to_string()).success();
        wait_until_denied(&env, &sa_user, rule);
        let failures = run_all();
        let names: Vec<&str> = failures.iter().map(|(n, _)| *n).collect();
        report.push_str(&format!("{} -> {names:?}\n", rule_label(rule)));
        if failures.is_empty() {
            unneeded.push(rule_label(rule));
        }
    }
    admin_apply(&env, &[], &role.to_string()).success();
    println!(
        "rule removed -> scenarios that fail:\n{report}(in {:?})",
        started.elapsed()
    );
    assert!(
        unneeded.is_empty(),
        "rules no scenario needs: {unneeded:?}\n{report}"
    );
}

fn rule_label(rule: &Value) -> String {
    let group = strings(&rule["apiGroups"]).join(",");
    format!(
        "{} {}/{}",
        strings(&rule["verbs"]).join(","),
        if group.is_empty() { "core" } else { &group },
        strings(&rule["resources"]).join(",")
    )
}

/// Waits until the API server's authorizer no longer lets `user` do what `rule` allowed (RBAC
/// changes reach the authorizer through an informer, not instantly).
fn wait_until_denied(env: &TestEnv, user: &str, rule: &Value) {
    let group = strings(&rule["apiGroups"]).join("");
    let resource = strings(&rule["resources"]).join("");
    let verb = strings(&rule["verbs"]).join("");
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r.to_owned(), Some(s.to_owned())),
        None => (resource, None),
    };
    let qualified = if group.is_empty() {
        resource
    } else {
        format!("{resource}.{group}")
    };
    let mut args = vec![
        "auth".to_owned(),
        "can-i".to_owned(),
        verb,
        qualified,
        format!("--as={user}"),
    ];
    if let Some(s) = subresource {
        args.push(format!("--subresource={s}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let out = env.admin_kubectl().run(&args);
        if out.stdout.trim() == "no" {
            return;
        }
        assert!(Instant::now() < deadline, "still allowed: {args:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
