//! End-to-end tests: the built proxy between the real `kubectl` and a real kube-apiserver (RBAC,
//! audit log), authenticating real Dex ID tokens. Run them with `scripts/test`, which builds and
//! starts the cluster and points `KUBE_OIDC_PROXY_E2E_ENV` at its env file; without it they
//! skip (and fail under CI). See `tests/e2e_support/mod.rs`.

mod e2e_support;

use std::time::Instant;

use e2e_support::{block_on, strings, unique_name, TestEnv, EVENTUALLY};
use futures_util::stream::{self, StreamExt as _};
use http::{header, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

const ALICE: &str = "alice@example.com";
const CAROL: &str = "carol@example.com";

/// The message kubectl prints for a 401 whose body is kube-apiserver's `Status`
/// (`"message": "Unauthorized"`), e.g. for `kubectl auth whoami`.
const KUBECTL_UNAUTHORIZED: &str = "error: You must be logged in to the server (Unauthorized)";

/// `kubectl auth whoami` sees the identity the API server was told to impersonate: the token's
/// `email` as user name and its `groups` claim, plus `system:authenticated`, which the API
/// server adds to every impersonated non-anonymous user.
#[test]
fn whoami_through_the_proxy_is_the_token_identity() {
    let Some(env) = TestEnv::load() else { return };
    let proxy = env.start_proxy();

    let alice = proxy.kubectl_with_token(&env, &env.id_token(ALICE));
    let review = alice
        .run(&["auth", "whoami", "-o", "json"])
        .success()
        .json();
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], ALICE, "{review}");
    let groups = strings(&user["groups"]);
    for group in ["team-a-devs", "developers", "system:authenticated"] {
        assert!(
            groups.contains(&group.to_owned()),
            "{group} missing in {review}"
        );
    }

    // No groups claim, no groups: only what the API server adds.
    let carol = proxy.kubectl_with_token(&env, &env.id_token(CAROL));
    let review = carol
        .run(&["auth", "whoami", "-o", "json"])
        .success()
        .json();
    assert_eq!(review["status"]["userInfo"]["username"], CAROL, "{review}");
    assert_eq!(
        strings(&review["status"]["userInfo"]["groups"]),
        ["system:authenticated"],
        "{review}"
    );
}

/// The API server's RBAC decides, for the token's user and groups: alice (group team-a-devs)
/// may edit configmaps and deployments in team-a only; carol (no groups) may do nothing. Denials
/// are the API server's own Forbidden messages, passed through unchanged.
#[test]
fn rbac_of_the_api_server_decides_for_the_token_identity() {
    let Some(env) = TestEnv::load() else { return };
    let proxy = env.start_proxy();
    let alice = proxy.kubectl_with_token(&env, &env.id_token(ALICE));

    let cm = unique_name("rbac-cm");
    alice
        .run(&[
            "create",
            "configmap",
            &cm,
            "--from-literal=colour=blue",
            "-n",
            "team-a",
        ])
        .success();
    let got = alice
        .run(&["get", "configmap", &cm, "-o", "json", "-n", "team-a"])
        .success()
        .json();
    assert_eq!(got["data"]["colour"], "blue", "{got}");
    let listed = alice
        .run(&["get", "configmaps", "-o", "name", "-n", "team-a"])
        .success();
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l == format!("configmap/{cm}")),
        "{cm} not listed: {}",
        listed.stdout
    );
    alice
        .run(&[
            "patch",
            "configmap",
            &cm,
            "--type=merge",
            "-p",
            r#"{"data":{"colour":"green"}}"#,
            "-n",
            "team-a",
        ])
        .success();
    let got = alice
        .run(&["get", "configmap", &cm, "-o", "json", "-n", "team-a"])
        .success()
        .json();
    assert_eq!(got["data"]["colour"], "green", "{got}");
    alice
        .run(&["delete", "configmap", &cm, "-n", "team-a"])
        .success();

    let deploy = unique_name("rbac-deploy");
    alice
        .run(&[
            "create",
            "deployment",
            &deploy,
            "--image=registry.invalid/app:1",
            "-n",
            "team-a",
        ])
        .success();
    alice
        .run(&["get", "deployment", &deploy, "-n", "team-a"])
        .success();
    alice.run(&["get", "deployments", "-n", "team-a"]).success();
    alice
        .run(&[
            "patch",
            "deployment",
            &deploy,
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
            "-n",
            "team-a",
        ])
        .success();
    let got = alice
        .run(&["get", "deployment", &deploy, "-o", "json", "-n", "team-a"])
        .success()
        .json();
    assert_eq!(got["spec"]["replicas"], 3, "{got}");
    alice
        .run(&["delete", "deployment", &deploy, "-n", "team-a"])
        .success();

    alice.run(&["get", "configmaps", "-n", "team-b"]).fails_with(
        r#"configmaps is forbidden: User "alice@example.com" cannot list resource "configmaps" in API group "" in the namespace "team-b""#,
    );
    alice.run(&["get", "deployments", "-n", "team-b"]).fails_with(
        r#"deployments.apps is forbidden: User "alice@example.com" cannot list resource "deployments" in API group "apps" in the namespace "team-b""#,
    );

    let carol = proxy.kubectl_with_token(&env, &env.id_token(CAROL));
    for ns in ["team-a", "team-b"] {
        carol.run(&["get", "configmaps", "-n", ns]).fails_with(&format!(
            r#"configmaps is forbidden: User "carol@example.com" cannot list resource "configmaps" in API group "" in the namespace "{ns}""#
        ));
    }
    carol
        .run(&["create", "configmap", &unique_name("carol"), "-n", "team-a"])
        .fails_with(r#"User "carol@example.com" cannot create resource "configmaps" in API group "" in the namespace "team-a""#);
    carol.run(&["get", "namespaces"]).fails_with(
        r#"namespaces is forbidden: User "carol@example.com" cannot list resource "namespaces" in API group "" at the cluster scope"#,
    );
}

/// Tokens the proxy must not accept get kubectl's "You must be logged in" answer, as from the
/// API server itself: garbage, a Dex token with a broken signature (stands in for every token
/// that fails verification, e.g. an expired one, which Dex will not issue on demand), and a valid
/// Dex token for another client (wrong audience). No token at all is a 401 `Status` too.
#[test]
fn tokens_that_fail_verification_are_unauthorized() {
    let Some(env) = TestEnv::load() else { return };
    let proxy = env.start_proxy();

    let valid = env.id_token(ALICE);
    let bad_tokens = [
        ("garbage", "garbage".to_owned()),
        ("broken signature", break_signature(&valid)),
        ("other audience", env.id_token_for_other_client(ALICE)),
    ];
    for (what, token) in &bad_tokens {
        let kubectl = proxy.kubectl_with_token(&env, token);
        eprintln!("token: {what}");
        kubectl
            .run(&["auth", "whoami"])
            .fails_with(KUBECTL_UNAUTHORIZED);
        kubectl
            .run(&["get", "--raw", "/api/v1/namespaces/team-a/configmaps"])
            .fails_with(KUBECTL_UNAUTHORIZED);
        // With discovery first, kubectl words it differently, as against the API server.
        kubectl
            .run(&["get", "configmaps", "-n", "team-a"])
            .fails_with("You must be logged in to the server");
    }
    // The untampered token works, so the failures above are the tampering's doing.
    proxy
        .kubectl_with_token(&env, &valid)
        .run(&["get", "configmaps", "-n", "team-a"])
        .success();

    // No Authorization header at all.
    let client = e2e_support::HttpsClient::new(&env.proxy_serving_ca_file, None);
    let request = Request::get(format!("{}/api/v1/namespaces/team-a/configmaps", proxy.url))
        .header(header::ACCEPT, "application/json")
        .body(Full::default())
        .expect("request");
    let (status, body) = block_on(client.send(request));
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}\n{}", proxy.logs());
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["code"], 401, "{body}");
}

/// A watch streams: each event reaches kubectl while the watch stays open, before the next
/// object is even created (so nothing is buffered until the response ends).
#[test]
fn watch_events_arrive_as_they_happen() {
    let Some(env) = TestEnv::load() else { return };
    let ns = env.team_namespace("e2e-watch", "team-a-devs");
    let admin = env.admin_kubectl();
    admin
        .run(&["create", "configmap", "before-watch", "-n", &ns])
        .success();

    let proxy = env.start_proxy();
    let alice = proxy.kubectl_with_token(&env, &env.id_token(ALICE));
    let mut watch = alice.spawn_lines(&["get", "configmaps", "-w", "-o", "name", "-n", &ns]);
    // The initial list: once it is printed, everything after arrives through the watch.
    watch.wait_for_line("configmap/before-watch");
    for i in 1..=5 {
        let name = format!("during-watch-{i}");
        admin
            .run(&["create", "configmap", &name, "-n", &ns])
            .success();
        watch.wait_for_line(&format!("configmap/{name}"));
    }
}

/// Large responses and requests pass whole: a list of 2,000 ConfigMaps (paged by kubectl, and in
/// one response), and a ConfigMap of almost 1 MiB (the API server's limit for ConfigMap data).
#[test]
fn large_lists_and_large_objects_pass_whole() {
    let Some(env) = TestEnv::load() else { return };
    let ns = env.team_namespace("e2e-large", "team-a-devs");
    const COUNT: usize = 2000;

    // Created straight at the API server as admin, 32 requests at a time.
    let admin = env.admin_http();
    let url = format!("{}/api/v1/namespaces/{ns}/configmaps", env.apiserver_url);
    block_on(async {
        let failures: Vec<String> = stream::iter(0..COUNT)
            .map(|i| {
                let (admin, url) = (admin.clone(), url.clone());
                async move {
                    let body = json!({
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": format!("bulk-{i:04}")},
                        "data": {"index": i.to_string()},
                    });
                    let (status, body) = admin.post_json(&url, &body).await;
                    (status != StatusCode::CREATED).then(|| {
                        format!("bulk-{i:04}: {status} {}", String::from_utf8_lossy(&body))
                    })
                }
            })
            .buffer_unordered(32)
            .filter_map(|failure| async move { failure })
            .collect()
            .await;
        assert!(failures.is_empty(), "creating configmaps: {failures:?}");
    });

    let proxy = env.start_proxy();
    let alice = proxy.kubectl_with_token(&env, &env.id_token(ALICE));
    // kubectl pages lists by 500 (continue tokens); --chunk-size=0 asks for one response.
    for chunking in ["--chunk-size=500", "--chunk-size=0"] {
        let listed = alice
            .run(&["get", "configmaps", "-o", "name", chunking, "-n", &ns])
            .success();
        let bulk = listed
            .stdout
            .lines()
            .filter(|l| l.starts_with("configmap/bulk-"))
            .count();
        assert_eq!(
            bulk,
            COUNT,
            "{chunking}: {} lines",
            listed.stdout.lines().count()
        );
    }

    // ConfigMap data may total 1 MiB (validation: maxConfigMapSize); stay just under it.
    // Server-side apply: client-side apply would copy the data into the
    // last-applied-configuration annotation, which is limited to 256 KiB.
    let payload = "x".repeat(1024 * 1024 - 1024);
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "big", "namespace": ns},
        "data": {"payload": payload},
    });
    alice
        .run_with_stdin(
            &["apply", "--server-side", "--field-manager=e2e", "-f", "-"],
            manifest.to_string().as_bytes(),
        )
        .success();
    let got = alice
        .run(&["get", "configmap", "big", "-o", "json", "-n", &ns])
        .success()
        .json();
    assert_eq!(
        got["data"]["payload"].as_str().map(str::len),
        Some(payload.len()),
        "the payload did not come back whole"
    );
}

/// The API server's own audit log names both: the proxy as the authenticated user and the token's
/// user as the impersonated one.
#[test]
fn api_server_audit_log_shows_proxy_and_impersonated_user() {
    let Some(env) = TestEnv::load() else { return };
    let proxy = env.start_proxy();
    let alice = proxy.kubectl_with_token(&env, &env.id_token(ALICE));

    // A name no other request uses, so the audit event is unmistakably this request's.
    let probe = unique_name("audit-probe");
    alice
        .run(&["get", "configmap", &probe, "-n", "team-a"])
        .fails_with("NotFound");

    // The audit backend writes asynchronously to the request; wait for the line. Only the
    // ResponseComplete stage knows the impersonated user (RequestReceived is logged before the
    // API server's impersonation filter runs).
    let deadline = Instant::now() + EVENTUALLY;
    let event = loop {
        let log = std::fs::read_to_string(&env.audit_log).unwrap_or_default();
        let found = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|e| {
                e["objectRef"]["name"] == probe.as_str()
                    && e["verb"] == "get"
                    && e["stage"] == "ResponseComplete"
            });
        if let Some(event) = found {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "no audit event for {probe} in {}",
            env.audit_log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(event["user"]["username"], "kube-oidc-proxy", "{event}");
    assert_eq!(event["impersonatedUser"]["username"], ALICE, "{event}");
    let groups = strings(&event["impersonatedUser"]["groups"]);
    assert!(groups.contains(&"team-a-devs".to_owned()), "{event}");
}

/// The proxy's own identity may only impersonate and ask for reviews
/// (deploy/rbac/clusterrole.yaml, docs/rbac.md): it cannot read anything itself, so a request
/// that reached the API server without impersonation would fail.
#[test]
fn proxy_identity_is_least_privilege() {
    let Some(env) = TestEnv::load() else { return };
    let kubectl = env.proxy_identity_kubectl();

    let listing = kubectl.run(&["auth", "can-i", "--list"]).success();
    // Every authenticated user may create these reviews (ClusterRole system:basic-user).
    let defaults = [
        "selfsubjectreviews.authentication.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
    ];
    // kubectl --as (SubjectAccessReview) and --token-passthrough (TokenReview).
    let reviews = [
        "subjectaccessreviews.authorization.k8s.io",
        "tokenreviews.authentication.k8s.io",
    ];
    let mut reviewable = Vec::new();
    let mut impersonable = Vec::new();
    // Columns: Resources, Non-Resource URLs, Resource Names, Verbs.
    for row in listing.stdout.lines().skip(1) {
        let columns: Vec<&str> = row.split_whitespace().collect();
        let verbs = columns.last().copied().unwrap_or_default();
        if row.starts_with(' ') {
            // Non-resource URLs (discovery, health, version): read-only for everyone.
            assert_eq!(verbs, "[get]", "unexpected non-resource rule: {row}");
        } else if defaults.contains(&columns[0]) {
            assert_eq!(verbs, "[create]", "unexpected rule: {row}");
        } else if reviews.contains(&columns[0]) {
            assert_eq!(verbs, "[create]", "unexpected rule: {row}");
            reviewable.push(columns[0]);
        } else {
            assert_eq!(verbs, "[impersonate]", "unexpected rule: {row}");
            impersonable.push(columns[0]);
        }
    }
    impersonable.sort_unstable();
    assert_eq!(
        impersonable,
        [
            "groups",
            "serviceaccounts",
            "uids.authentication.k8s.io",
            "userextras.authentication.k8s.io/authentication.kubernetes.io/credential-id",
            "userextras.authentication.k8s.io/originaluser.jetstack.io-extra",
            "userextras.authentication.k8s.io/originaluser.jetstack.io-groups",
            "userextras.authentication.k8s.io/originaluser.jetstack.io-uid",
            "userextras.authentication.k8s.io/originaluser.jetstack.io-user",
            "userextras.authentication.k8s.io/remote-client-ip",
            "users",
        ],
        "{}",
        listing.stdout
    );
    reviewable.sort_unstable();
    assert_eq!(reviewable, reviews, "{}", listing.stdout);

    kubectl.run(&["get", "configmaps", "-n", "team-a"]).fails_with(
        r#"configmaps is forbidden: User "kube-oidc-proxy" cannot list resource "configmaps" in API group "" in the namespace "team-a""#,
    );
}

/// The same JWT with one signature character changed in the middle (never the last character,
/// whose low bits may be padding that decoders ignore).
fn break_signature(jwt: &str) -> String {
    let (signed, signature) = jwt.rsplit_once('.').expect("a JWS has three parts");
    let mut signature: Vec<char> = signature.chars().collect();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == 'A' { 'B' } else { 'A' };
    format!("{signed}.{}", signature.into_iter().collect::<String>())
}
