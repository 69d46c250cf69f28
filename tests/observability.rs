//! Metrics and readiness through the real binary: a scripted run against a test issuer and a
//! recording fake API server, then `/metrics` must show exactly what the run did, and
//! `/readyz?verbose` must list every check.

mod support;

use serde_json::json;
use support::apiserver::FakeApiServer;
use support::issuer::TestIssuer;
use support::pki::TestCa;
use support::proxy::{free_port, ProxyProcess};
use support::setup::{setup, Setup};

impl Setup {
    async fn status_of(&self, path: &str, token: Option<&str>) -> u16 {
        self.get_path(path, token).await.0.status.as_u16()
    }

    async fn metrics(&self) -> String {
        let (code, text) = self.proxy.probe("/metrics").await.unwrap();
        assert_eq!(code, 200, "{text}");
        text
    }
}

/// The value of one series (`name{labels}` exactly as rendered), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_exactly_what_a_scripted_run_did() {
    let s = setup(&[]).await;
    let alice = s.alice();
    let issuer = s.issuer.url.clone();
    let expired = s.issuer.token(&s.issuer.claims(
        "kube",
        json!({"sub": "bob", "exp": 1_000_000_000, "iat": 999_999_000}),
    ));
    let foreign = s.issuer.token(&json!({
        "iss": "https://not-configured.example", "aud": "kube", "sub": "eve",
        "exp": 4_000_000_000u64,
    }));

    for _ in 0..3 {
        let code = s
            .status_of("/api/v1/namespaces/default/configmaps/one", Some(&alice))
            .await;
        assert_eq!(code, 200);
    }
    assert_eq!(
        s.status_of("/api/v1/namespaces/default/configmaps", Some(&alice))
            .await,
        200
    );
    assert_eq!(
        s.status_of(
            "/api/v1/namespaces/default/configmaps?watch=true",
            Some(&alice)
        )
        .await,
        200
    );
    assert_eq!(s.status_of("/api/v1/pods", None).await, 401);
    assert_eq!(s.status_of("/api/v1/pods", None).await, 401);
    assert_eq!(s.status_of("/api/v1/pods", Some(&expired)).await, 401);
    assert_eq!(s.status_of("/api/v1/pods", Some(&foreign)).await, 401);

    let text = s.metrics().await;
    let requests = |verb: &str, code: u16, issuer: &str| {
        value(
            &text,
            &format!(
                r#"kube_oidc_proxy_requests_total{{verb="{verb}",code="{code}",issuer="{issuer}"}}"#
            ),
        )
    };
    assert_eq!(requests("get", 200, &issuer), Some(3.0), "{text}");
    assert_eq!(requests("list", 200, &issuer), Some(1.0), "{text}");
    assert_eq!(requests("watch", 200, &issuer), Some(1.0), "{text}");
    assert_eq!(requests("list", 401, ""), Some(4.0), "{text}");

    // Every short request is timed (the watch is not), upstream only for forwarded ones.
    assert_eq!(
        value(
            &text,
            r#"kube_oidc_proxy_request_duration_seconds_count{verb="list"}"#
        ),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"kube_oidc_proxy_request_duration_seconds_count{verb="watch"}"#
        ),
        None
    );
    assert_eq!(
        value(
            &text,
            r#"kube_oidc_proxy_upstream_request_duration_seconds_count{verb="get"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            r#"kube_oidc_proxy_upstream_request_duration_seconds_count{verb="watch"}"#
        ),
        Some(1.0)
    );

    let auth = |issuer: &str, result: &str, reason: &str| {
        value(
            &text,
            &format!(
                r#"kube_oidc_proxy_authentications_total{{issuer="{issuer}",result="{result}",reason="{reason}"}}"#
            ),
        )
    };
    assert_eq!(auth(&issuer, "success", ""), Some(5.0), "{text}");
    assert_eq!(auth("", "failure", "no_token"), Some(2.0), "{text}");
    assert_eq!(auth(&issuer, "failure", "expired"), Some(1.0), "{text}");
    // The unconfigured issuer's URL never becomes a label value.
    assert_eq!(auth("", "failure", "unknown_issuer"), Some(1.0), "{text}");
    assert!(!text.contains("not-configured.example"), "{text}");

    let cache = |result: &str| {
        value(
            &text,
            &format!(
                r#"kube_oidc_proxy_token_cache_requests_total{{issuer="{issuer}",result="{result}"}}"#
            ),
        )
    };
    assert_eq!(cache("miss"), Some(1.0), "{text}");
    assert_eq!(cache("hit"), Some(4.0), "{text}");

    assert_eq!(
        value(&text, r#"kube_oidc_proxy_requests_in_flight{kind="short"}"#),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            r#"kube_oidc_proxy_requests_in_flight{kind="long_running"}"#
        ),
        Some(0.0)
    );
    let fetches = value(
        &text,
        &format!(r#"kube_oidc_proxy_jwks_fetches_total{{issuer="{issuer}",result="success"}}"#),
    );
    assert!(fetches.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        value(
            &text,
            &format!(r#"kube_oidc_proxy_jwks_age_seconds{{issuer="{issuer}"}}"#)
        )
        .is_some(),
        "{text}"
    );
    let expiry = value(
        &text,
        "kube_oidc_proxy_serving_certificate_expiry_timestamp_seconds",
    )
    .expect("certificate expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now, "{expiry} vs {now}");
    assert_eq!(
        value(
            &text,
            r#"kube_oidc_proxy_config_reloads_total{result="failure"}"#
        ),
        Some(0.0)
    );
    assert!(text.contains("# TYPE kube_oidc_proxy_requests_total counter"));
    assert_eq!(value(&text, "kube_oidc_proxy_ready"), Some(1.0), "{text}");
    assert_eq!(
        value(
            &text,
            r#"kube_oidc_proxy_readiness_checks{check="upstream"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&text, "process_resident_memory_bytes").is_some(),
        "{text}"
    );
}

#[tokio::test]
async fn readyz_verbose_lists_the_issuer_and_api_server_checks() {
    let s = setup(&[]).await;
    let (code, body) = s.proxy.probe("/readyz?verbose").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        format!(
            "[+]serving ok\n[+]issuer:{} ok\n[+]upstream ok\nreadyz check passed\n",
            s.issuer.url
        )
    );
    let (code, body) = s.proxy.probe("/livez?verbose=true").await.unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, "[+]ping ok\nlivez check passed\n")
    );
}

#[tokio::test]
async fn an_unreachable_api_server_makes_the_proxy_unready_unless_only_reported() {
    let ca = TestCa::new();
    let issuer = TestIssuer::start(&ca).await;
    let dead = format!("https://127.0.0.1:{}", free_port());

    let proxy = ProxyProcess::spawn(&ca, &issuer.url, &dead, &[]);
    let mut last = None;
    for _ in 0..100 {
        last = proxy.probe("/readyz?verbose").await;
        if last.as_ref().is_some_and(|(_, body)| {
            body.contains(&format!("[+]issuer:{} ok", issuer.url))
                && body.contains("[-]upstream failed: ")
        }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (code, body) = last.expect("probe listener up");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("[-]upstream failed: "), "{body}");
    assert!(body.ends_with("readyz check failed\n"), "{body}");
    let (code, body) = proxy.probe("/ready").await.unwrap();
    assert_eq!(code, 503);
    assert!(body.starts_with("not ready: API server: "), "{body}");

    // Reported only: ready, and the verbose form still shows the failure.
    let mut reported = ProxyProcess::spawn(
        &ca,
        &issuer.url,
        &dead,
        &["--readiness-upstream=reported".to_string()],
    );
    reported.wait_ready().await;
    let (code, body) = reported.probe("/readyz?verbose").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("[-]upstream failed: "), "{body}");

    // And a reachable API server whose check is answered: ready.
    let api = FakeApiServer::start(&ca).await;
    let mut healthy = ProxyProcess::spawn(&ca, &issuer.url, &api.url, &[]);
    healthy.wait_ready().await;
    assert!(
        api.requests().is_empty(),
        "readiness checks are not forwarded requests"
    );
}
