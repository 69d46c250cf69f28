//! In-process integration tests of identity forwarding: the real proxy binary between a test
//! OIDC issuer and a fake API server whose SubjectAccessReview and TokenReview answers each test
//! programs (allow, deny, error, no answer). What reaches the fake is asserted exactly: a review
//! that fails must never let a request through.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::{json, Value};
use support::apiserver::Recorded;
use support::http::{body_bytes, client, empty};
use support::pki::TestCa;
use support::proxy::ProxyProcess;
use support::reviews::{Answer, TokenIdentity};
use support::setup::{setup, Setup};

/// The proxy's own credential towards the fake API server (`ProxyProcess`'s `--token`).
const PROXY_TOKEN: &str = "Bearer proxy-service-account-token";

impl Setup {
    /// `GET path` with a bearer token and extra headers; the status and the body.
    async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Bytes) {
        let mut request = Request::get(format!("{}{path}", self.proxy.url));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = client(&self.ca, false)
            .request(request.body(empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = body_bytes(response).await;
        (parts.status, body)
    }

    /// Waits (bounded) for an access-log line containing `needle`.
    async fn log_line(&self, needle: &str) -> String {
        let lines = self
            .proxy
            .stdout_when(|lines| lines.iter().any(|l| l.contains(needle)))
            .await;
        match lines.iter().find(|l| l.contains(needle)) {
            Some(line) => line.clone(),
            None => panic!("no access-log line with {needle:?}:\n{}", lines.join("\n")),
        }
    }
}

fn values(request: &Recorded, name: &str) -> Vec<String> {
    request.values(name)
}

fn json_body(request: &Recorded) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON review body")
}

fn status_message(body: &[u8]) -> String {
    let status: Value = serde_json::from_slice(body).expect("a Status JSON body");
    assert_eq!(status["kind"], "Status", "{status}");
    status["message"].as_str().unwrap_or_default().to_string()
}

/// `kubectl --as=bob`: one SubjectAccessReview for alice (as kube-apiserver sees her: her
/// groups plus system:authenticated, made with the proxy's own credentials), then bob goes
/// upstream with alice as the `originaluser.jetstack.io-*` extras, and the access log gains its
/// outbound section.
#[tokio::test]
async fn as_user_is_reviewed_for_the_caller_and_the_target_goes_upstream() {
    let s = setup(&[]).await;
    s.api.reviews.on_access(|_| Answer::Allow);
    let (status, _) = s
        .get(
            "/api/v1/namespaces/default/pods",
            Some(&s.alice()),
            &[("Impersonate-User", "bob")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let reviews = s.api.reviews_seen();
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    assert_eq!(reviews[0].headers["authorization"], PROXY_TOKEN);
    let review = json_body(&reviews[0]);
    assert_eq!(review["kind"], "SubjectAccessReview");
    assert_eq!(
        review["spec"],
        json!({
            "user": "alice",
            "groups": ["dev", "ops", "system:authenticated"],
            "resourceAttributes": {"verb": "impersonate", "resource": "users", "name": "bob"},
        })
    );

    let forwarded = s.api.forwarded();
    assert_eq!(forwarded.len(), 1);
    let h = &forwarded[0];
    assert_eq!(values(h, "authorization"), vec![PROXY_TOKEN]);
    assert_eq!(values(h, "impersonate-user"), vec!["bob"]);
    assert_eq!(values(h, "impersonate-group"), vec!["system:authenticated"]);
    assert!(h.headers.get("impersonate-uid").is_none());
    assert_eq!(
        values(h, "impersonate-extra-originaluser.jetstack.io-user"),
        vec!["alice"]
    );
    assert_eq!(
        values(h, "impersonate-extra-originaluser.jetstack.io-groups"),
        vec!["dev", "ops"]
    );
    let impersonation_headers: Vec<&str> = h
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("impersonate-"))
        .collect();
    assert_eq!(impersonation_headers.len(), 4, "{impersonation_headers:?}");

    s.log_line(
        "URI:/api/v1/namespaces/default/pods inbound:[alice / dev|ops / ] \
         outbound:[bob / system:authenticated /  / ]",
    )
    .await;
}

/// A ServiceAccount, groups, a uid and an escaped extra key: each becomes the check
/// kube-apiserver's impersonation filter makes (serviceaccounts in the namespace, groups,
/// userextras/<decoded key>, uids in authentication.k8s.io), and the target identity goes
/// upstream whole, uid included.
#[tokio::test]
async fn every_attribute_is_reviewed_as_kube_apiserver_does() {
    let s = setup(&[]).await;
    s.api.reviews.on_access(|_| Answer::Allow);
    let (status, _) = s
        .get(
            "/api/v1/pods",
            Some(&s.alice()),
            &[
                ("Impersonate-User", "system:serviceaccount:team-a:deployer"),
                ("Impersonate-Group", "g1"),
                ("Impersonate-Group", "g2"),
                ("Impersonate-Uid", "u-7"),
                ("Impersonate-Extra-Example.com%2fTeam", "blue"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut asked: Vec<String> = s
        .api
        .reviews_seen()
        .iter()
        .map(|r| json_body(r)["spec"]["resourceAttributes"].to_string())
        .collect();
    asked.sort();
    let mut expected: Vec<String> = [
        json!({"verb": "impersonate", "resource": "serviceaccounts", "namespace": "team-a", "name": "deployer"}),
        json!({"verb": "impersonate", "resource": "groups", "name": "g1"}),
        json!({"verb": "impersonate", "resource": "groups", "name": "g2"}),
        json!({"verb": "impersonate", "group": "authentication.k8s.io", "version": "v1",
               "resource": "userextras", "subresource": "example.com/team", "name": "blue"}),
        json!({"verb": "impersonate", "group": "authentication.k8s.io", "version": "v1",
               "resource": "uids", "name": "u-7"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    expected.sort();
    assert_eq!(asked, expected);

    let h = &s.api.forwarded()[0];
    assert_eq!(
        values(h, "impersonate-user"),
        vec!["system:serviceaccount:team-a:deployer"]
    );
    assert_eq!(
        values(h, "impersonate-group"),
        vec!["g1", "g2", "system:authenticated"]
    );
    assert_eq!(values(h, "impersonate-uid"), vec!["u-7"]);
    assert_eq!(
        values(h, "impersonate-extra-example.com%2fteam"),
        vec!["blue"]
    );
    assert_eq!(
        values(h, "impersonate-extra-originaluser.jetstack.io-user"),
        vec!["alice"]
    );

    // A ServiceAccount without requested groups gets its own, as kube-apiserver gives them.
    let (status, _) = s
        .get(
            "/api/v1/pods",
            Some(&s.alice()),
            &[("Impersonate-User", "system:serviceaccount:team-a:deployer")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let h = s.api.forwarded().pop().unwrap();
    assert_eq!(
        values(&h, "impersonate-group"),
        vec![
            "system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "system:authenticated"
        ]
    );
}

/// One denied attribute refuses the whole request with kube-apiserver's Forbidden message (the
/// authorizer's reason appended), and nothing reaches the API server but the reviews.
#[tokio::test]
async fn a_denied_attribute_is_403_naming_it_and_nothing_is_forwarded() {
    let s = setup(&[]).await;
    s.api.reviews.on_access(|spec| {
        if spec["resourceAttributes"]["name"] == "system:masters" {
            Answer::Deny("denied by the test".into())
        } else {
            Answer::Allow
        }
    });
    let (status, body) = s
        .get(
            "/api/v1/secrets",
            Some(&s.alice()),
            &[
                ("IMPERSONATE-USER", "bob"),
                ("impersonate-group", "viewers"),
                ("Impersonate-Group", "system:masters"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        status_message(&body),
        r#"groups "system:masters" is forbidden: User "alice" cannot impersonate resource "groups" in API group "" at the cluster scope: denied by the test"#
    );
    assert!(
        s.api.forwarded().is_empty(),
        "a denied request was forwarded"
    );

    // A denied user, the RBAC way (no reason).
    s.api.reviews.on_access(|_| Answer::Deny(String::new()));
    let (status, body) = s
        .get(
            "/api/v1/secrets",
            Some(&s.alice()),
            &[("Impersonate-User", "carol")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        status_message(&body),
        r#"users "carol" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
    );
    assert!(s.api.forwarded().is_empty());
    // The refusal still records who asked.
    s.log_line("URI:/api/v1/secrets inbound:[alice / dev|ops / ]")
        .await;
}

/// Reviews that get no answer within --subject-access-review-timeout refuse the request with
/// 503: fail closed, never a silent allow.
#[tokio::test]
async fn reviews_that_time_out_fail_closed_with_503() {
    let s = setup(&["--subject-access-review-timeout=1s"]).await;
    s.api.reviews.on_access(|spec| {
        if spec["resourceAttributes"]["resource"] == "groups" {
            Answer::Hang
        } else {
            Answer::Allow
        }
    });
    let (status, body) = s
        .get(
            "/api/v1/pods",
            Some(&s.alice()),
            &[("Impersonate-User", "bob"), ("Impersonate-Group", "g")],
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        status_message(&body).contains("could not be authorized"),
        "{}",
        status_message(&body)
    );
    assert!(s.api.forwarded().is_empty());
}

/// A review the API server answers with an error (500, or 403 because the proxy may not create
/// reviews) refuses the request with 500.
#[tokio::test]
async fn reviews_the_api_server_refuses_fail_closed_with_500() {
    let s = setup(&[]).await;
    for code in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::FORBIDDEN] {
        s.api.reviews.on_access(move |_| Answer::Fail(code));
        let (status, body) = s
            .get(
                "/api/v1/pods",
                Some(&s.alice()),
                &[("Impersonate-User", "bob")],
            )
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "review {code}");
        assert_eq!(
            status_message(&body),
            "the impersonation request could not be authorized"
        );
    }
    assert!(s.api.forwarded().is_empty());
}

/// Groups, a uid or extras without a user: 400 with kube-apiserver's wording, no review, nothing
/// forwarded.
#[tokio::test]
async fn groups_without_a_user_are_a_bad_request_and_never_reviewed() {
    let s = setup(&[]).await;
    s.api.reviews.on_access(|_| Answer::Allow);
    let (status, body) = s
        .get(
            "/api/v1/pods",
            Some(&s.alice()),
            &[("Impersonate-Group", "system:masters")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        status_message(&body),
        "requested [{Group  system:masters    }] without impersonating a user"
    );
    let (status, _) = s
        .get(
            "/api/v1/pods",
            Some(&s.alice()),
            &[("Impersonate-User", ""), ("Impersonate-Uid", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(s.api.requests().is_empty(), "{:?}", s.api.requests());
}

/// The extras the proxy sets itself (originaluser.*, remote-client-ip when enabled,
/// --extra-user-headers keys) cannot be asked for by a client, however they are spelled.
#[tokio::test]
async fn extras_the_proxy_sets_itself_cannot_be_impersonated() {
    let s = setup(&[
        "--extra-user-header-client-ip",
        "--extra-user-headers=team=a",
    ])
    .await;
    s.api.reviews.on_access(|_| Answer::Allow);
    for header in [
        "Impersonate-Extra-Originaluser.jetstack.io-User",
        "impersonate-extra-originaluser.jetstack.io%2Dextra",
        "Impersonate-Extra-Remote-Client-Ip",
        "Impersonate-Extra-Team",
    ] {
        let (status, body) = s
            .get(
                "/api/v1/pods",
                Some(&s.alice()),
                &[("Impersonate-User", "bob"), (header, "root")],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header}");
        assert!(
            status_message(&body).contains("is set by kube-oidc-proxy itself"),
            "{header}"
        );
    }
    assert!(s.api.requests().is_empty(), "{:?}", s.api.requests());
}

/// Identical checks are asked once per request, and decisions are reused for the next request
/// (bounded, short-lived cache).
#[tokio::test]
async fn decisions_are_cached_and_each_check_asked_once() {
    let s = setup(&[]).await;
    s.api.reviews.on_access(|_| Answer::Allow);
    let headers = [
        ("Impersonate-User", "bob"),
        ("Impersonate-Group", "g"),
        ("Impersonate-Group", "g"),
    ];
    for _ in 0..3 {
        let (status, _) = s.get("/api/v1/pods", Some(&s.alice()), &headers).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(s.api.reviews_seen().len(), 2);
    assert_eq!(s.api.forwarded().len(), 3);
    // The duplicate group still goes upstream as sent.
    assert_eq!(
        values(&s.api.forwarded()[0], "impersonate-group"),
        vec!["g", "g", "system:authenticated"]
    );
}

/// `remote-client-ip` is the TCP peer unless the peer is a trusted proxy; a client's own
/// X-Forwarded-For counts only behind one. The outbound X-Forwarded-For carries the same address.
#[tokio::test]
async fn client_ip_extra_trusts_x_forwarded_for_only_from_trusted_proxies() {
    let spoofed = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7")];

    let untrusted = setup(&["--extra-user-header-client-ip"]).await;
    let (status, _) = untrusted
        .get("/api/v1/pods", Some(&untrusted.alice()), &spoofed)
        .await;
    assert_eq!(status, StatusCode::OK);
    let h = untrusted.api.last();
    assert_eq!(
        values(&h, "impersonate-extra-remote-client-ip"),
        vec!["127.0.0.1"]
    );
    assert_eq!(values(&h, "x-forwarded-for"), vec!["127.0.0.1"]);

    let behind = setup(&[
        "--extra-user-header-client-ip",
        "--trusted-proxies=127.0.0.1/32",
    ])
    .await;
    let (status, _) = behind
        .get("/api/v1/pods", Some(&behind.alice()), &spoofed)
        .await;
    assert_eq!(status, StatusCode::OK);
    let h = behind.api.last();
    assert_eq!(
        values(&h, "impersonate-extra-remote-client-ip"),
        vec!["203.0.113.7"]
    );
    assert_eq!(values(&h, "x-forwarded-for"), vec!["203.0.113.7"]);
}

/// --extra-user-headers pairs (keys may repeat, keys lower-cased) go with every impersonated
/// user, after `kubectl --as` too.
#[tokio::test]
async fn extra_user_headers_are_added_to_every_impersonated_user() {
    let s = setup(&[
        "--extra-user-headers=Team=a,scope=x",
        "--extra-user-headers=scope=y",
    ])
    .await;
    s.api.reviews.on_access(|_| Answer::Allow);
    for impersonate in [None, Some("bob")] {
        let headers: Vec<(&str, &str)> = impersonate
            .map(|user| vec![("Impersonate-User", user)])
            .unwrap_or_default();
        let (status, _) = s.get("/api/v1/pods", Some(&s.alice()), &headers).await;
        assert_eq!(status, StatusCode::OK);
        let h = s.api.forwarded().pop().unwrap();
        assert_eq!(
            values(&h, "impersonate-user"),
            vec![impersonate.unwrap_or("alice")]
        );
        assert_eq!(values(&h, "impersonate-extra-team"), vec!["a"]);
        assert_eq!(values(&h, "impersonate-extra-scope"), vec!["x", "y"]);
    }
}

fn service_account(audiences: &[&str]) -> TokenIdentity {
    TokenIdentity {
        answer: Answer::Allow,
        user: json!({
            "username": "system:serviceaccount:ci:deployer",
            "uid": "0b5e5e9e-0000-4000-8000-000000000001",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"],
        }),
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
    }
}

/// --token-passthrough: a token no issuer claims is reviewed (with the configured audiences, by
/// the proxy's identity) and then forwarded as the only credential, with the client's own
/// Impersonate-* headers for the API server to authorize. Answers are cached; issuer tokens
/// still go the impersonation way.
#[tokio::test]
async fn token_passthrough_forwards_the_callers_token_alone() {
    let s = setup(&[
        "--token-passthrough",
        "--token-passthrough-audiences=ci-proxy",
    ])
    .await;
    s.api
        .reviews
        .on_token("sa-token", service_account(&["ci-proxy"]));
    for _ in 0..2 {
        let (status, _) = s
            .get(
                "/api/v1/namespaces/ci/pods",
                Some("sa-token"),
                &[("Impersonate-User", "someone"), ("X-Remote-User", "admin")],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let reviews = s.api.reviews_seen();
    assert_eq!(reviews.len(), 1, "the answer is cached");
    assert_eq!(reviews[0].headers["authorization"], PROXY_TOKEN);
    let review = json_body(&reviews[0]);
    assert_eq!(review["kind"], "TokenReview");
    assert_eq!(
        review["spec"],
        json!({"token": "sa-token", "audiences": ["ci-proxy"]})
    );

    let forwarded = s.api.forwarded();
    assert_eq!(forwarded.len(), 2);
    let h = &forwarded[1];
    assert_eq!(values(h, "authorization"), vec!["Bearer sa-token"]);
    assert_eq!(values(h, "impersonate-user"), vec!["someone"]);
    assert!(h.headers.get("impersonate-group").is_none());
    assert!(h.headers.get("x-remote-user").is_none());
    assert_eq!(values(h, "x-forwarded-for"), vec!["127.0.0.1"]);
    s.log_line(
        "URI:/api/v1/namespaces/ci/pods inbound:[system:serviceaccount:ci:deployer / \
         system:serviceaccounts|system:serviceaccounts:ci|system:authenticated / ]",
    )
    .await;

    // A token the issuer claims is the issuer's: impersonated with the proxy's credentials.
    let (status, _) = s.get("/api/v1/pods", Some(&s.alice()), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let h = s.api.forwarded().pop().unwrap();
    assert_eq!(values(&h, "authorization"), vec![PROXY_TOKEN]);
    assert_eq!(values(&h, "impersonate-user"), vec!["alice"]);
    assert_eq!(s.api.reviews_seen().len(), 1);
}

/// Passthrough accepts only what the API server authenticates for the configured audiences;
/// an issuer's token that fails verification is never sent for review; without the flag no
/// token is ever reviewed.
#[tokio::test]
async fn token_passthrough_refuses_what_the_api_server_does_not_vouch_for() {
    let s = setup(&[
        "--token-passthrough",
        "--token-passthrough-audiences=ci-proxy",
    ])
    .await;
    s.api
        .reviews
        .on_token("other-audience", service_account(&["elsewhere"]));
    s.api.reviews.on_token(
        "revoked",
        TokenIdentity {
            answer: Answer::Deny("token has been invalidated".into()),
            ..service_account(&["ci-proxy"])
        },
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = s
        .issuer
        .token(&s.issuer.claims("kube", json!({"exp": now - 10})));
    for token in ["unknown", "other-audience", "revoked", expired.as_str()] {
        let (status, body) = s.get("/api/v1/pods", Some(token), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(status_message(&body), "Unauthorized");
    }
    assert_eq!(
        s.api.reviews_seen().len(),
        3,
        "the expired issuer token was reviewed"
    );
    assert!(s.api.forwarded().is_empty());

    let plain = setup(&[]).await;
    plain.api.reviews.on_token("sa-token", service_account(&[]));
    let (status, _) = plain.get("/api/v1/pods", Some("sa-token"), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(plain.api.requests().is_empty());
}

/// A TokenReview without an answer refuses the request (503 on timeout, 500 on an error from
/// the API server); nothing is forwarded, least of all without credentials.
#[tokio::test]
async fn token_passthrough_review_failures_fail_closed() {
    let s = setup(&["--token-passthrough", "--subject-access-review-timeout=1s"]).await;
    s.api.reviews.on_token(
        "slow",
        TokenIdentity {
            answer: Answer::Hang,
            ..service_account(&[])
        },
    );
    s.api.reviews.on_token(
        "broken",
        TokenIdentity {
            answer: Answer::Fail(StatusCode::INTERNAL_SERVER_ERROR),
            ..service_account(&[])
        },
    );
    let (status, _) = s.get("/api/v1/pods", Some("slow"), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = s.get("/api/v1/pods", Some("broken"), &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(s.api.forwarded().is_empty());
    s.log_line("AuFail src:[127.0.0.1 / ] URI:/api/v1/pods")
        .await;
}

/// --disable-impersonation: the issuer still verifies the token; then it goes upstream as the
/// only credential, with no impersonation of the proxy's and the client's own Impersonate-*
/// headers. A missing or bad token is a 401 and never an anonymous request.
#[tokio::test]
async fn disable_impersonation_forwards_the_verified_token_alone() {
    let s = setup(&["--disable-impersonation"]).await;
    let token = s.alice();
    let (status, _) = s
        .get(
            "/api/v1/pods",
            Some(&token),
            &[("Impersonate-User", "bob"), ("Impersonate-Group", "g")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let h = s.api.last();
    assert_eq!(values(&h, "authorization"), vec![format!("Bearer {token}")]);
    assert_eq!(values(&h, "impersonate-user"), vec!["bob"]);
    assert_eq!(values(&h, "impersonate-group"), vec!["g"]);
    assert!(h
        .headers
        .keys()
        .all(|k| !k.as_str().starts_with("impersonate-extra-")));
    assert!(s.api.reviews_seen().is_empty());

    let before = s.api.requests().len();
    for bad in [None, Some("garbage"), Some("opaque-token")] {
        let (status, _) = s.get("/api/v1/pods", bad, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    assert_eq!(
        s.api.requests().len(),
        before,
        "a refused request went upstream"
    );
}

/// Combinations the Go proxy refuses stop this proxy too, before it listens, with every error.
#[tokio::test]
async fn incompatible_identity_flags_stop_the_proxy_before_it_listens() {
    let ca = TestCa::new();
    let mut proxy = ProxyProcess::spawn(
        &ca,
        "https://issuer.invalid",
        "https://127.0.0.1:1",
        &[
            "--disable-impersonation".into(),
            "--extra-user-header-client-ip".into(),
            "--extra-user-headers=team=a".into(),
            "--trusted-proxies=10.0.0.1/8".into(),
        ],
    );
    assert_eq!(proxy.wait_exit(Duration::from_secs(20)), Some(1));
    // The pipe reader may still be catching up with the exited process.
    let stderr = proxy.stderr_with("not starting").await;
    for expected in [
        "--disable-impersonation cannot be combined with --extra-user-header-client-ip",
        "--disable-impersonation cannot be combined with --extra-user-headers",
        "--trusted-proxies",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}
