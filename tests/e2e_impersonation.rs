//! End-to-end tests of identity forwarding on the real cluster (kube-apiserver with RBAC and an
//! audit log, Dex, the real kubectl): `kubectl --as` authorized per attribute, the
//! `originaluser.jetstack.io-*` extras in the API server's audit log, ServiceAccount tokens
//! through `--token-passthrough`, `--disable-impersonation` with an API server that trusts Dex,
//! and the client IP extra with and without a trusted proxy. Run with `scripts/test`; see
//! `tests/e2e_support/mod.rs`.

mod e2e_support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use e2e_support::{
    audit_event, block_on, strings, unique_name, HttpsClient, Proxy, TestEnv, EVENTUALLY,
};
use http::{header, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use tempfile::TempDir;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

/// kubectl's words for a 401 `Status`.
const UNAUTHORIZED: &str = "You must be logged in to the server";

/// Creates (or updates) the objects of a `List` manifest as the cluster admin.
fn apply(env: &TestEnv, items: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    env.admin_kubectl()
        .run_with_stdin(&["apply", "-f", "-"], list.to_string().as_bytes())
        .success();
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn rule(group: &str, resource: &str, names: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": [group], "resources": [resource], "resourceNames": names, "verbs": verbs})
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name}, "rules": rules,
    })
}

fn subject_user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

fn subject_service_account(namespace: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "namespace": namespace, "name": name})
}

/// A ClusterRoleBinding (or, with `namespace`, a RoleBinding) of the (Cluster)Role `role`.
fn binding(
    name: &str,
    namespace: Option<&str>,
    role_kind: &str,
    role: &str,
    subject: Value,
) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": if namespace.is_some() { "RoleBinding" } else { "ClusterRoleBinding" },
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [subject],
    })
}

/// `kubectl auth whoami -o json` through a kubectl; the `userInfo`.
fn whoami(kubectl: &e2e_support::Kubectl, extra_args: &[&str]) -> Value {
    let mut args = vec!["auth", "whoami", "-o", "json"];
    args.extend_from_slice(extra_args);
    let review = kubectl.run(&args).success().json();
    review["status"]["userInfo"].clone()
}

/// Asserts that kubectl (with `extra_args`) is refused with `message`. `get --raw` prints the
/// server's message as it is (`kubectl auth whoami` replaces a 403 with its own words).
#[track_caller]
fn refused(kubectl: &e2e_support::Kubectl, extra_args: &[&str], message: &str) {
    let mut args = vec!["get", "--raw", "/api"];
    args.extend_from_slice(extra_args);
    kubectl.run(&args).fails_with(message);
}

/// A token for ServiceAccount `namespace/name` from the TokenRequest API
/// (`kubectl create token`), with the API server's default audience unless `audiences` are given.
fn service_account_token(env: &TestEnv, namespace: &str, name: &str, audiences: &[&str]) -> String {
    let mut args = vec!["create", "token", name, "-n", namespace, "--duration=1h"];
    let flags: Vec<String> = audiences
        .iter()
        .map(|a| format!("--audience={a}"))
        .collect();
    args.extend(flags.iter().map(String::as_str));
    env.admin_kubectl()
        .run(&args)
        .success()
        .stdout
        .trim()
        .to_owned()
}

/// `kubectl --as`, `--as-group`, `--as-uid` for a user, a group, a ServiceAccount and a uid:
/// each allowed only as far as RBAC lets alice impersonate, each denial naming what was denied
/// in kube-apiserver's words; the target reaches the API server (`whoami` is the target) with
/// alice as the `originaluser.jetstack.io-*` extras. bob, without the grants, gets nothing.
#[test]
fn kubectl_as_is_authorized_per_attribute() {
    let Some(env) = TestEnv::load() else { return };
    let id = unique_name("as");
    let (target, group, uid, ns) = (
        format!("{id}-target"),
        format!("{id}-group"),
        format!("{id}-uid"),
        format!("{id}-ns"),
    );
    apply(
        &env,
        vec![
            namespace(&ns),
            cluster_role(
                &id,
                vec![
                    rule("", "users", &[&target], &["impersonate"]),
                    rule("", "groups", &[&group], &["impersonate"]),
                    rule("authentication.k8s.io", "uids", &[&uid], &["impersonate"]),
                ],
            ),
            binding(&id, None, "ClusterRole", &id, subject_user(ALICE)),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "impersonate-robot", "namespace": ns},
                "rules": [rule("", "serviceaccounts", &["robot"], &["impersonate"])],
            }),
            binding(
                "alice-robot",
                Some(&ns),
                "Role",
                "impersonate-robot",
                subject_user(ALICE),
            ),
        ],
    );
    let proxy = env.start_proxy();
    let alice = proxy.kubectl_with_token(&env, &env.id_token(ALICE));

    let user = whoami(&alice, &[&format!("--as={target}")]);
    assert_eq!(user["username"], target.as_str(), "{user}");
    assert_eq!(strings(&user["groups"]), ["system:authenticated"], "{user}");
    assert_eq!(
        strings(&user["extra"]["originaluser.jetstack.io-user"]),
        [ALICE],
        "{user}"
    );
    assert_eq!(
        strings(&user["extra"]["originaluser.jetstack.io-groups"]),
        ["team-a-devs", "developers"],
        "{user}"
    );

    let user = whoami(
        &alice,
        &[&format!("--as={target}"), &format!("--as-group={group}")],
    );
    assert_eq!(
        strings(&user["groups"]),
        [group.as_str(), "system:authenticated"],
        "{user}"
    );

    let robot = format!("system:serviceaccount:{ns}:robot");
    let user = whoami(&alice, &[&format!("--as={robot}")]);
    assert_eq!(user["username"], robot.as_str(), "{user}");
    assert_eq!(
        strings(&user["groups"]),
        [
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".to_owned()
        ],
        "{user}"
    );

    let user = whoami(
        &alice,
        &[&format!("--as={target}"), &format!("--as-uid={uid}")],
    );
    assert_eq!(user["uid"], uid.as_str(), "{user}");

    // Denied, each in kube-apiserver's words.
    refused(
        &alice,
        &["--as=someone-else"],
        &format!(
            r#"users "someone-else" is forbidden: User "{ALICE}" cannot impersonate resource "users" in API group "" at the cluster scope"#
        ),
    );
    refused(
        &alice,
        &[&format!("--as={target}"), "--as-group=system:masters"],
        &format!(
            r#"groups "system:masters" is forbidden: User "{ALICE}" cannot impersonate resource "groups" in API group "" at the cluster scope"#
        ),
    );
    refused(
        &alice,
        &[&format!("--as=system:serviceaccount:{ns}:other")],
        &format!(
            r#"serviceaccounts "other" is forbidden: User "{ALICE}" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "{ns}""#
        ),
    );
    refused(
        &alice,
        &[&format!("--as={target}"), "--as-uid=other-uid"],
        &format!(
            r#"uids.authentication.k8s.io "other-uid" is forbidden: User "{ALICE}" cannot impersonate resource "uids" in API group "authentication.k8s.io" at the cluster scope"#
        ),
    );

    let bob = proxy.kubectl_with_token(&env, &env.id_token(BOB));
    refused(
        &bob,
        &[&format!("--as={target}")],
        &format!(
            r#"users "{target}" is forbidden: User "{BOB}" cannot impersonate resource "users" in API group "" at the cluster scope"#
        ),
    );
    // Without --as, everyone is still themselves.
    assert_eq!(whoami(&bob, &[])["username"], BOB);
}

/// The API server's audit log names the proxy as the authenticated user, the `--as` target as
/// the impersonated one, and the real caller in the impersonated user's
/// `originaluser.jetstack.io-*` extras; the proxy's access log has the outbound section.
#[test]
fn audit_log_shows_the_target_and_the_original_user() {
    let Some(env) = TestEnv::load() else { return };
    let id = unique_name("as-audit");
    let target = format!("{id}-target");
    apply(
        &env,
        vec![
            cluster_role(&id, vec![rule("", "users", &[&target], &["impersonate"])]),
            binding(&id, None, "ClusterRole", &id, subject_user(ALICE)),
        ],
    );
    let proxy = env.start_proxy();
    let alice = proxy.kubectl_with_token(&env, &env.id_token(ALICE));

    // The target has no RBAC of its own: the API server refuses it by name.
    let probe = unique_name("audit-as-probe");
    alice
        .run(&[
            "get",
            "configmap",
            &probe,
            "-n",
            "team-a",
            &format!("--as={target}"),
        ])
        .fails_with(&format!(
            r#"User "{target}" cannot get resource "configmaps""#
        ));

    let event = audit_event(&env, &probe, |e| e["objectRef"]["name"] == probe.as_str());
    assert_eq!(event["user"]["username"], "kube-oidc-proxy", "{event}");
    let impersonated = &event["impersonatedUser"];
    assert_eq!(impersonated["username"], target.as_str(), "{event}");
    assert_eq!(
        strings(&impersonated["extra"]["originaluser.jetstack.io-user"]),
        [ALICE],
        "{event}"
    );
    assert_eq!(
        strings(&impersonated["extra"]["originaluser.jetstack.io-groups"]),
        ["team-a-devs", "developers"],
        "{event}"
    );

    let log = proxy.access_log();
    assert!(
        log.lines().any(|l| l.contains(&probe)
            && l.contains(&format!(
                "inbound:[{ALICE} / team-a-devs|developers / ] outbound:[{target} / system:authenticated /  / ]"
            ))),
        "{log}"
    );
}

/// Writes a kubeconfig for the API server with a bearer token (for a proxy whose own identity
/// is a ServiceAccount, as in a real deployment).
fn token_kubeconfig(env: &TestEnv, dir: &Path, token: &str) -> PathBuf {
    let path = dir.join("upstream.kubeconfig");
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {
            "server": env.apiserver_url, "certificate-authority": env.kube_ca_file}}],
        "users": [{"name": "proxy", "user": {"token": token}}],
        "contexts": [{"name": "proxy", "context": {"cluster": "testenv", "user": "proxy"}}],
        "current-context": "proxy",
    });
    std::fs::write(&path, kubeconfig.to_string()).expect("write kubeconfig");
    path
}

/// A kubeconfig's `as-user-extra` (kubectl 1.33 has no flag for it): each value is authorized
/// as `userextras/<key>` for the caller. The proxy here runs as a ServiceAccount bound to the
/// shipped ClusterRole (deploy/rbac) plus the one extra key this deployment lets users
/// impersonate, as docs/rbac.md describes.
#[test]
fn impersonated_extras_are_authorized_per_key_and_value() {
    let Some(env) = TestEnv::load() else { return };
    let id = unique_name("as-extra");
    let (ns, target, key) = (
        format!("{id}-proxy"),
        format!("{id}-target"),
        "e2e.example.com/team",
    );
    apply(
        &env,
        vec![
            namespace(&ns),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "kube-oidc-proxy", "namespace": ns}}),
            binding(
                &format!("{id}-proxy"),
                None,
                "ClusterRole",
                "kube-oidc-proxy",
                subject_service_account(&ns, "kube-oidc-proxy"),
            ),
            cluster_role(
                &format!("{id}-proxy-extra"),
                vec![rule(
                    "authentication.k8s.io",
                    &format!("userextras/{key}"),
                    &[],
                    &["impersonate"],
                )],
            ),
            binding(
                &format!("{id}-proxy-extra"),
                None,
                "ClusterRole",
                &format!("{id}-proxy-extra"),
                subject_service_account(&ns, "kube-oidc-proxy"),
            ),
            cluster_role(
                &id,
                vec![
                    rule("", "users", &[&target], &["impersonate"]),
                    rule(
                        "authentication.k8s.io",
                        &format!("userextras/{key}"),
                        &["blue"],
                        &["impersonate"],
                    ),
                ],
            ),
            binding(&id, None, "ClusterRole", &id, subject_user(ALICE)),
        ],
    );
    let dir = TempDir::new().expect("temp dir");
    let upstream = token_kubeconfig(
        &env,
        dir.path(),
        &service_account_token(&env, &ns, "kube-oidc-proxy", &[]),
    );
    let proxy = env.start_proxy_with(&upstream, &[]);
    let token = env.id_token(ALICE);

    let as_team = |team: &str| {
        proxy.kubectl_with_user(
            &env,
            json!({"token": token, "as": target, "as-user-extra": {key: [team]}}),
        )
    };
    let user = whoami(&as_team("blue"), &[]);
    assert_eq!(user["username"], target.as_str(), "{user}");
    assert_eq!(strings(&user["extra"][key]), ["blue"], "{user}");
    assert_eq!(
        strings(&user["extra"]["originaluser.jetstack.io-user"]),
        [ALICE],
        "{user}"
    );

    refused(
        &as_team("red"),
        &[],
        &format!(
            r#"userextras.authentication.k8s.io "red" is forbidden: User "{ALICE}" cannot impersonate resource "userextras/{key}" in API group "authentication.k8s.io" at the cluster scope"#
        ),
    );
}

/// `--token-passthrough`: a ServiceAccount token made with `kubectl create token` passes
/// through and acts as that ServiceAccount (its RBAC, its own `--as` rights judged by the API
/// server, no impersonation in the audit log); a token for another audience is refused by the
/// proxy; with `--token-passthrough-audiences` only tokens for those audiences pass. Dex tokens
/// still go the impersonation way.
#[test]
fn service_account_tokens_pass_through_and_act_as_themselves() {
    let Some(env) = TestEnv::load() else { return };
    let ns = unique_name("pass");
    let sa = format!("system:serviceaccount:{ns}:ci");
    apply(
        &env,
        vec![
            namespace(&ns),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "ci", "namespace": ns}}),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "read-configmaps", "namespace": ns},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            }),
            binding(
                "ci-reads",
                Some(&ns),
                "Role",
                "read-configmaps",
                subject_service_account(&ns, "ci"),
            ),
        ],
    );
    let token = service_account_token(&env, &ns, "ci", &[]);
    let proxy = env.start_proxy_with(&env.proxy_upstream_kubeconfig, &["--token-passthrough"]);
    let ci = proxy.kubectl_with_token(&env, &token);

    let user = whoami(&ci, &[]);
    assert_eq!(user["username"], sa.as_str(), "{user}");
    assert!(
        strings(&user["groups"]).contains(&format!("system:serviceaccounts:{ns}")),
        "{user}"
    );
    let probe = unique_name("pass-probe");
    ci.run(&["get", "configmap", &probe, "-n", &ns])
        .fails_with("NotFound");
    ci.run(&["get", "configmaps", "-n", "team-a"]).fails_with(&format!(
        r#"User "{sa}" cannot list resource "configmaps" in API group "" in the namespace "team-a""#
    ));
    // The client's own impersonation request goes along, and the API server judges it for the
    // ServiceAccount.
    refused(
        &ci,
        &["--as=someone"],
        &format!(
            r#"users "someone" is forbidden: User "{sa}" cannot impersonate resource "users" in API group "" at the cluster scope"#
        ),
    );
    let event = audit_event(&env, &probe, |e| e["objectRef"]["name"] == probe.as_str());
    assert_eq!(event["user"]["username"], sa.as_str(), "{event}");
    assert!(event.get("impersonatedUser").is_none(), "{event}");

    // The API server does not accept a token for another audience; the proxy refuses it and
    // never forwards it.
    let elsewhere = service_account_token(&env, &ns, "ci", &["elsewhere"]);
    proxy
        .kubectl_with_token(&env, &elsewhere)
        .run(&["get", "configmaps", "-n", &ns])
        .fails_with(UNAUTHORIZED);

    // Dex tokens are the issuer's: impersonated as before.
    let alice = proxy.kubectl_with_token(&env, &env.id_token(ALICE));
    assert_eq!(whoami(&alice, &[])["username"], ALICE);

    // With --token-passthrough-audiences the token must be meant for one of them too, even
    // where the API server itself would accept it.
    let restricted = env.start_proxy_with(
        &env.proxy_upstream_kubeconfig,
        &[
            "--token-passthrough",
            "--token-passthrough-audiences=e2e-ci",
        ],
    );
    let both = service_account_token(&env, &ns, "ci", &["e2e-ci", &env.apiserver_url]);
    let user = whoami(&restricted.kubectl_with_token(&env, &both), &[]);
    assert_eq!(user["username"], sa.as_str(), "{user}");
    restricted
        .kubectl_with_token(&env, &token)
        .run(&["get", "configmaps", "-n", &ns])
        .fails_with(UNAUTHORIZED);
    assert!(
        restricted.access_log().contains("AuFail"),
        "{}",
        restricted.access_log()
    );
}

/// Waits until kube-apiserver accepts Dex tokens itself (its JWT authenticator retries issuer
/// discovery every 10 s when Dex was not up yet at its start).
fn wait_until_apiserver_trusts_dex(env: &TestEnv, token: &str) {
    let client = HttpsClient::new(&env.kube_ca_file, None);
    let url = format!(
        "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        env.apiserver_url
    );
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let request = Request::post(&url)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
            )))
            .expect("request");
        let (status, _) = block_on(client.send(request));
        if status == StatusCode::CREATED || status == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kube-apiserver never accepted a Dex token ({status})"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `--disable-impersonation`: the proxy verifies the Dex token and forwards it as the caller's
/// only credential; the API server, which trusts Dex itself here, maps it with its own prefix
/// (so `whoami` shows `dex:alice@...`, not the proxy's impersonation, and no client
/// certificate of the proxy's went along). Never an anonymous request: no token is a 401 even
/// where the API server would answer anonymous clients.
#[test]
fn disable_impersonation_forwards_the_callers_token() {
    let Some(env) = TestEnv::load() else { return };
    let token = env.id_token(ALICE);
    wait_until_apiserver_trusts_dex(&env, &token);
    let proxy = env.start_proxy_with(&env.proxy_upstream_kubeconfig, &["--disable-impersonation"]);
    let prefix = &env.apiserver_oidc_prefix;

    let alice = proxy.kubectl_with_token(&env, &token);
    let user = whoami(&alice, &[]);
    assert_eq!(user["username"], format!("{prefix}{ALICE}"), "{user}");
    assert_eq!(
        strings(&user["groups"]),
        [
            format!("{prefix}team-a-devs"),
            format!("{prefix}developers"),
            "system:authenticated".into()
        ],
        "{user}"
    );
    let probe = unique_name("noimp-probe");
    alice
        .run(&["get", "configmap", &probe, "-n", "team-a"])
        .fails_with(&format!(
            r#"User "{prefix}{ALICE}" cannot get resource "configmaps""#
        ));
    let event = audit_event(&env, &probe, |e| e["objectRef"]["name"] == probe.as_str());
    assert_eq!(
        event["user"]["username"],
        format!("{prefix}{ALICE}"),
        "{event}"
    );
    assert!(event.get("impersonatedUser").is_none(), "{event}");

    // A token the proxy does not accept never reaches the API server.
    proxy
        .kubectl_with_token(&env, &env.id_token_for_other_client(ALICE))
        .run(&["auth", "whoami"])
        .fails_with(UNAUTHORIZED);
    // /version is open to anonymous clients on the API server; through the proxy it is not.
    let client = HttpsClient::new(&env.proxy_serving_ca_file, None);
    let request = Request::get(format!("{}/version", proxy.url))
        .body(Full::default())
        .expect("request");
    let (status, _) = block_on(client.send(request));
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", proxy.logs());
    let direct = HttpsClient::new(&env.kube_ca_file, None);
    let request = Request::get(format!("{}/version", env.apiserver_url))
        .body(Full::default())
        .expect("request");
    assert_eq!(block_on(direct.send(request)).0, StatusCode::OK);
}

/// `remote-client-ip` as the API server receives it: the TCP peer; a spoofed X-Forwarded-For
/// from an untrusted peer changes nothing; behind a trusted proxy (`--trusted-proxies`), the
/// right-most untrusted X-Forwarded-For entry.
#[test]
fn client_ip_extra_with_and_without_a_trusted_proxy() {
    let Some(env) = TestEnv::load() else { return };
    let token = env.id_token(ALICE);
    let self_review = |proxy: &Proxy, forwarded_for: Option<&str>| -> Value {
        let client = HttpsClient::new(&env.proxy_serving_ca_file, None);
        let mut request = Request::post(format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            proxy.url
        ))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
        if let Some(xff) = forwarded_for {
            request = request.header("x-forwarded-for", xff);
        }
        let request = request
            .body(Full::new(Bytes::from(
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
            )))
            .expect("request");
        let (status, body) = block_on(client.send(request));
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::CREATED, "{body}\n{}", proxy.logs());
        body["status"]["userInfo"].clone()
    };

    let direct = env.start_proxy_with(
        &env.proxy_upstream_kubeconfig,
        &["--extra-user-header-client-ip"],
    );
    let user = whoami(&direct.kubectl_with_token(&env, &token), &[]);
    assert_eq!(
        strings(&user["extra"]["remote-client-ip"]),
        ["127.0.0.1"],
        "{user}"
    );
    let user = self_review(&direct, Some("203.0.113.7"));
    assert_eq!(
        strings(&user["extra"]["remote-client-ip"]),
        ["127.0.0.1"],
        "spoofed: {user}"
    );

    let behind = env.start_proxy_with(
        &env.proxy_upstream_kubeconfig,
        &[
            "--extra-user-header-client-ip",
            "--trusted-proxies=127.0.0.1/32",
        ],
    );
    let user = self_review(&behind, Some("198.51.100.1, 203.0.113.7"));
    assert_eq!(
        strings(&user["extra"]["remote-client-ip"]),
        ["203.0.113.7"],
        "{user}"
    );
    let user = self_review(&behind, None);
    assert_eq!(
        strings(&user["extra"]["remote-client-ip"]),
        ["127.0.0.1"],
        "{user}"
    );
}
