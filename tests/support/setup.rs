//! The usual in-process arrangement: a test CA, an OIDC issuer, a recording fake API server
//! and the proxy binary between them (groups from the `groups` claim, plus `extra` flags).
//! Test files add their own request helpers in `impl Setup` blocks.

use serde_json::json;

use super::apiserver::FakeApiServer;
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
    /// A token for alice, in groups dev and ops.
    pub fn alice(&self) -> String {
        self.issuer.token(
            &self
                .issuer
                .claims("kube", json!({"sub": "alice", "groups": ["dev", "ops"]})),
        )
    }
}
