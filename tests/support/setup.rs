//! The usual in-process arrangement: a test CA, an OIDC issuer, a recording fake API server
//! and the proxy binary between them (groups from the `groups` claim, plus `extra` flags).
//! Test files add their own request helpers in `impl Setup` blocks.

use bytes::Bytes;
use http::Request;
use serde_json::json;

use super::apiserver::FakeApiServer;
use super::http::{body_bytes, client, empty};
use super::issuer::TestIssuer;
use super::pki::TestCa;
use super::proxy::ProxyProcess;

pub struct Setup {
    pub ca: TestCa,
    pub issuer: TestIssuer,
    pub api: FakeApiServer,
    pub proxy: ProxyProcess,
}

pub async fn setup(extra: &[&str]) -> Setup {
    let ca = TestCa::new();
    let issuer = TestIssuer::start(&ca).await;
    let api = FakeApiServer::start(&ca).await;
    let mut args: Vec<String> = vec!["--oidc-groups-claim=groups".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let proxy = ProxyProcess::start(&ca, &issuer.url, &api.url, &args).await;
    Setup {
        ca,
        issuer,
        api,
        proxy,
    }
}

impl Setup {
    /// `GET path` through the proxy, with a bearer token when given; the answer read whole.
    pub async fn get_path(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (http::response::Parts, Bytes) {
        let mut request = Request::get(format!("{}{path}", self.proxy.url));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = client(&self.ca, false)
            .request(request.body(empty()).unwrap())
            .await
            .unwrap();
        body_bytes(response).await
    }

    /// A token for alice, in groups dev and ops.
    pub fn alice(&self) -> String {
        self.issuer.token(
            &self
                .issuer
                .claims("kube", json!({"sub": "alice", "groups": ["dev", "ops"]})),
        )
    }
}
