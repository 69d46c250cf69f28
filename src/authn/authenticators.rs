//! The set of JWT authenticators the proxy runs: one per issuer, whether from the `--oidc-*`
//! flags or an `AuthenticationConfiguration` file.
//!
//! - **Routing.** A token goes to the authenticator whose `issuer.url` equals its unverified
//!   `iss`, as kube-apiserver's union of JWT authenticators does (each answers "not mine" unless
//!   `iss` matches, k8s-semantics §2.4). No match: unauthenticated.
//! - **Independent issuers.** Each issuer fetches and refreshes its own keys on its own task; one
//!   issuer being down only fails its own tokens. Health is reported per issuer.
//! - **Reserved identities.** A mapped username or group starting with `system:` is refused
//!   unless `--allow-reserved-identities` is set: re-emitted as `Impersonate-*` headers they
//!   would name Kubernetes' own identities (`system:masters`, `system:serviceaccount:…`,
//!   `system:node:…`, k8s-semantics §1.4 PROXY note). kube-apiserver has no such rule for its
//!   own tokens; for a proxy that impersonates, it is the safe default.
//! - **Hot reload.** A new configuration is swapped in whole ([`ArcSwap`]): a request holds the
//!   set it started with to its end. Issuers whose settings (URL, discovery URL, CA) are
//!   unchanged keep their keys and refresh task; new issuers must load their keys before the
//!   swap (as kube-apiserver waits for the new authenticators to be healthy), else the reload
//!   fails and the old set keeps serving. Every authenticator of the new set starts with an
//!   empty token cache, so no user mapped under the old rules survives.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use super::issuer::{FetchCounts, Issuer, IssuerError, IssuerHealth, IssuerSettings};
use super::jws::{self, JwsError, MAX_TOKEN_BYTES};
use super::oidc::{token_key, AuthError, JwtAuthenticator, JwtConfig};
use super::UserInfo;

/// The prefix of Kubernetes' own usernames and groups.
pub const RESERVED_PREFIX: &str = "system:";

/// Set-wide policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthenticatorOptions {
    /// `--allow-reserved-identities`: admit `system:` usernames and groups.
    pub allow_reserved_identities: bool,
}

/// A mapped identity that names Kubernetes' own (`system:` prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservedIdentity {
    /// The username.
    #[error(
        "mapped username {0:?} is reserved (\"system:\" prefix; see --allow-reserved-identities)"
    )]
    Username(String),
    /// One of the groups.
    #[error(
        "mapped group {0:?} is reserved (\"system:\" prefix; see --allow-reserved-identities)"
    )]
    Group(String),
}

impl ReservedIdentity {
    /// The first reserved name of `user`, username first.
    pub fn of(user: &UserInfo) -> Option<Self> {
        if user.username.starts_with(RESERVED_PREFIX) {
            return Some(Self::Username(user.username.clone()));
        }
        user.groups
            .iter()
            .find(|group| group.starts_with(RESERVED_PREFIX))
            .map(|group| Self::Group(group.clone()))
    }
}

/// Why a set of authenticators could not be built or swapped in.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An issuer's TLS settings are unusable.
    #[error("issuer {url}: {error}")]
    Issuer {
        /// The issuer URL.
        url: String,
        /// What failed.
        error: IssuerError,
    },
    /// A new issuer's keys could not be loaded (reloads only).
    #[error("issuer {url}: loading its keys failed: {error}")]
    Keys {
        /// The issuer URL.
        url: String,
        /// What failed.
        error: IssuerError,
    },
}

/// A successful authentication: the user and the issuer that vouched for it.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The mapped user.
    pub user: Arc<UserInfo>,
    /// The issuer URL of the authenticator that accepted the token.
    pub issuer: Arc<str>,
    /// Whether the verified-token cache answered (no signature check ran).
    pub cached: bool,
}

/// One issuer's keys and the task keeping them fresh; shared by the sets that use the issuer,
/// the task stops when the last of them is gone.
struct IssuerEntry {
    issuer: Arc<Issuer>,
    refresh: Mutex<Option<JoinHandle<()>>>,
}

impl IssuerEntry {
    fn new(settings: &IssuerSettings) -> Result<Arc<Self>, BuildError> {
        let issuer = Issuer::new(settings).map_err(|error| BuildError::Issuer {
            url: settings.url.clone(),
            error,
        })?;
        Ok(Arc::new(Self {
            issuer: Arc::new(issuer),
            refresh: Mutex::new(None),
        }))
    }

    /// Starts the refresh task unless it runs already.
    fn start_refresh(&self) {
        let mut task = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        if task.is_none() {
            *task = Some(tokio::spawn(self.issuer.clone().run_refresh_loop()));
        }
    }
}

impl Drop for IssuerEntry {
    fn drop(&mut self) {
        let task = self.refresh.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

/// One configuration's authenticators, in configuration order.
struct AuthenticatorSet {
    authenticators: Vec<(Arc<JwtAuthenticator>, Arc<IssuerEntry>)>,
    by_issuer: HashMap<String, usize>,
}

impl AuthenticatorSet {
    /// Builds the set, reusing `previous`'s issuer entries whose settings are unchanged.
    /// Returns the set and the entries that are new.
    fn build(
        configs: Vec<JwtConfig>,
        previous: Option<&AuthenticatorSet>,
    ) -> Result<(Self, Vec<Arc<IssuerEntry>>), BuildError> {
        let mut reusable: HashMap<&IssuerSettings, &Arc<IssuerEntry>> = previous
            .map(|set| {
                set.authenticators
                    .iter()
                    .map(|(_, entry)| (entry.issuer.settings(), entry))
                    .collect()
            })
            .unwrap_or_default();
        let mut authenticators = Vec::with_capacity(configs.len());
        let mut by_issuer = HashMap::with_capacity(configs.len());
        let mut new_entries = Vec::new();
        for config in configs {
            let entry = match reusable.remove(&config.issuer) {
                Some(entry) => entry.clone(),
                None => {
                    let entry = IssuerEntry::new(&config.issuer)?;
                    new_entries.push(entry.clone());
                    entry
                }
            };
            by_issuer.insert(config.issuer.url.clone(), authenticators.len());
            let authenticator = JwtAuthenticator::with_issuer(config, entry.issuer.clone());
            authenticators.push((Arc::new(authenticator), entry));
        }
        Ok((
            Self {
                authenticators,
                by_issuer,
            },
            new_entries,
        ))
    }
}

/// Counts of configuration reloads (for logs now, metrics later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadCounts {
    /// New configurations swapped in.
    pub succeeded: u64,
    /// New configurations refused (invalid, or a new issuer's keys unavailable).
    pub failed: u64,
}

/// One issuer's state, for readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStatus {
    /// The issuer URL.
    pub issuer: String,
    /// Its keys' health.
    pub health: IssuerHealth,
}

/// The proxy's authenticators: route, authenticate, report health, reload.
pub struct Authenticators {
    current: ArcSwap<AuthenticatorSet>,
    options: AuthenticatorOptions,
    /// Whether refresh tasks run (set by [`Authenticators::start`]).
    started: AtomicBool,
    /// One reload at a time.
    reload_lock: tokio::sync::Mutex<()>,
    reloads_succeeded: AtomicU64,
    reloads_failed: AtomicU64,
}

impl std::fmt::Debug for Authenticators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticators")
            .field("issuers", &self.issuers())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Authenticators {
    /// Builds the authenticators of `configs`. No network traffic happens until
    /// [`Authenticators::start`].
    pub fn new(configs: Vec<JwtConfig>, options: AuthenticatorOptions) -> Result<Self, BuildError> {
        let (set, _) = AuthenticatorSet::build(configs, None)?;
        Ok(Self {
            current: ArcSwap::from_pointee(set),
            options,
            started: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
            reloads_succeeded: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        })
    }

    /// Starts every issuer's key refresh task (needs a Tokio runtime). Issuers added by later
    /// reloads get theirs when they are swapped in.
    pub fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
        for (_, entry) in &self.current.load().authenticators {
            entry.start_refresh();
        }
    }

    /// The configured issuer URLs, in configuration order.
    pub fn issuers(&self) -> Vec<String> {
        self.current
            .load()
            .authenticators
            .iter()
            .map(|(a, _)| a.config().issuer.url.clone())
            .collect()
    }

    /// The authenticator for issuer `url`, if configured (tests and diagnostics).
    pub fn authenticator(&self, url: &str) -> Option<Arc<JwtAuthenticator>> {
        let set = self.current.load();
        set.by_issuer
            .get(url)
            .map(|&i| set.authenticators[i].0.clone())
    }

    /// Authenticates a bearer token at `now`: routes it by its unverified `iss`, verifies and
    /// maps it with that issuer's authenticator, then applies the reserved-identity rule.
    pub async fn authenticate(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Authenticated, AuthError> {
        // Bound the work before the unverified payload is decoded for routing.
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Jws(JwsError::TokenTooLarge));
        }
        // Held to the end of the request: a reload meanwhile does not affect it.
        let set = self.current.load_full();
        // The caches first: a token is cached only by the authenticator its `iss` routed it
        // to, and the same token routes the same way, so a hit anywhere is the answer routing
        // would give, without decoding the payload (most of a cached request's cost).
        let key = token_key(token);
        let hit = set
            .authenticators
            .iter()
            .find_map(|(authenticator, _)| Some((authenticator, authenticator.cached(&key, now)?)));
        let (authenticator, user, cached) = match hit {
            Some((authenticator, user)) => (authenticator, user, true),
            None => {
                let issuer = jws::unverified_issuer(token).ok_or(AuthError::UnknownIssuer)?;
                let index = *set.by_issuer.get(&issuer).ok_or(AuthError::UnknownIssuer)?;
                let (authenticator, _) = &set.authenticators[index];
                let user = authenticator.verify(token, key, now).await?;
                (authenticator, user, false)
            }
        };
        if !self.options.allow_reserved_identities {
            if let Some(reserved) = ReservedIdentity::of(&user) {
                return Err(reserved.into());
            }
        }
        Ok(Authenticated {
            user,
            issuer: authenticator.issuer_label().clone(),
            cached,
        })
    }

    /// The configured issuer `token` names, without verifying anything: the issuer label of a
    /// refused token's metrics (a name from the configuration, never the client's text).
    pub fn claimed_issuer(&self, token: &str) -> Option<Arc<str>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let issuer = jws::unverified_issuer(token)?;
        let set = self.current.load();
        let index = *set.by_issuer.get(&issuer)?;
        Some(
            set.authenticators[index]
                .0
                .config()
                .issuer
                .url
                .as_str()
                .into(),
        )
    }

    /// Every issuer's key-fetch counters and key age, in configuration order (metrics).
    pub fn key_stats(&self) -> Vec<(String, FetchCounts, Option<Duration>)> {
        self.current
            .load()
            .authenticators
            .iter()
            .map(|(authenticator, _)| {
                let issuer = authenticator.issuer();
                (
                    authenticator.config().issuer.url.clone(),
                    issuer.fetch_counts(),
                    issuer.key_age(),
                )
            })
            .collect()
    }

    /// Every issuer's health, in configuration order.
    pub fn health(&self) -> Vec<IssuerStatus> {
        self.current
            .load()
            .authenticators
            .iter()
            .map(|(authenticator, _)| IssuerStatus {
                issuer: authenticator.config().issuer.url.clone(),
                health: authenticator.health(),
            })
            .collect()
    }

    /// How many reloads succeeded and failed so far.
    pub fn reload_counts(&self) -> ReloadCounts {
        ReloadCounts {
            succeeded: self.reloads_succeeded.load(Ordering::Relaxed),
            failed: self.reloads_failed.load(Ordering::Relaxed),
        }
    }

    /// Counts a configuration refused before [`Authenticators::reload`] (it did not parse or
    /// validate).
    pub fn count_failed_reload(&self) {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Swaps in the authenticators of `configs`. Issuers with unchanged settings keep their
    /// keys; new issuers must load their keys first. On any error nothing changes (and the
    /// failure is counted).
    pub async fn reload(&self, configs: Vec<JwtConfig>) -> Result<(), BuildError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let result = self.reload_locked(configs).await;
        match &result {
            Ok(()) => self.reloads_succeeded.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.reloads_failed.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    async fn reload_locked(&self, configs: Vec<JwtConfig>) -> Result<(), BuildError> {
        let previous = self.current.load_full();
        let (set, new_entries) = AuthenticatorSet::build(configs, Some(&previous))?;
        let loads = new_entries.iter().map(|entry| async move {
            entry
                .issuer
                .refresh()
                .await
                .map_err(|error| BuildError::Keys {
                    url: entry.issuer.url().to_owned(),
                    error,
                })
        });
        for result in futures_util::future::join_all(loads).await {
            result?;
        }
        if self.started.load(Ordering::SeqCst) {
            for entry in &new_entries {
                entry.start_refresh();
            }
        }
        self.current.store(Arc::new(set));
        Ok(())
    }

    /// Watches the `--authentication-config` file: every `interval` its bytes are read and, when
    /// they differ from the last version handled, parsed with `parse` and swapped in. Polling the
    /// contents (not inotify on the path) survives Kubernetes ConfigMap `..data` symlink swaps.
    ///
    /// An invalid version is logged and counted and not retried until the file changes again;
    /// a valid one whose new issuers cannot load their keys is retried every `interval`. The old
    /// configuration keeps serving meanwhile. Runs until the task is dropped.
    pub async fn watch_file<F>(
        self: Arc<Self>,
        path: PathBuf,
        initial: Vec<u8>,
        interval: Duration,
        parse: F,
    ) where
        F: Fn(&[u8]) -> Result<Vec<JwtConfig>, Vec<String>> + Send + Sync,
    {
        let mut handled = initial;
        let mut last_read_error: Option<String> = None;
        loop {
            tokio::time::sleep(interval).await;
            let contents = match tokio::fs::read(&path).await {
                Ok(contents) => {
                    last_read_error = None;
                    contents
                }
                Err(e) => {
                    // Once per distinct error: a ConfigMap swap makes the file vanish briefly.
                    let error = e.to_string();
                    if last_read_error.as_ref() != Some(&error) {
                        tracing::warn!(path = %path.display(), %error,
                            "cannot read the authentication configuration; keeping the current one");
                        last_read_error = Some(error);
                    }
                    continue;
                }
            };
            if contents == handled {
                continue;
            }
            match parse(&contents) {
                Err(problems) => {
                    self.count_failed_reload();
                    for problem in &problems {
                        tracing::error!(path = %path.display(), %problem,
                            "authentication configuration rejected");
                    }
                    tracing::error!(
                        path = %path.display(),
                        problems = problems.len(),
                        failed_reloads = self.reload_counts().failed,
                        "new authentication configuration is invalid; the previous one keeps serving"
                    );
                    handled = contents;
                }
                Ok(configs) => {
                    let issuers = configs.len();
                    match self.reload(configs).await {
                        Ok(()) => {
                            tracing::info!(path = %path.display(), issuers,
                                reloads = self.reload_counts().succeeded,
                                "authentication configuration reloaded");
                            handled = contents;
                        }
                        Err(error) => tracing::warn!(path = %path.display(), %error,
                            failed_reloads = self.reload_counts().failed,
                            "new authentication configuration not applied (will retry); the \
                             previous one keeps serving"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use serde_json::json;

    use super::*;
    use crate::authn::jwk::JwkSet;
    use crate::authn::jws::testing::{jwks, TestKey};
    use crate::authn::jws::Algorithm;
    use crate::authn::mapping::ClaimMappings;

    const NOW: u64 = 2_000_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn ca() -> String {
        rcgen::generate_simple_self_signed(vec!["issuer.example".to_string()])
            .unwrap()
            .cert
            .pem()
    }

    fn config(url: &str, prefix: &str) -> JwtConfig {
        JwtConfig {
            issuer: IssuerSettings {
                certificate_authority: Some(ca()),
                ..IssuerSettings::new(url)
            },
            audiences: vec!["kube".into()],
            algorithms: vec![Algorithm::RS256],
            claim_mappings: ClaimMappings::username_claim("sub", prefix),
            claim_validation_rules: vec![],
            user_validation_rules: vec![],
        }
    }

    struct Issued {
        key: TestKey,
        url: String,
    }

    impl Issued {
        fn new(url: &str) -> Self {
            Self {
                key: TestKey::generate(Algorithm::RS256),
                url: url.to_owned(),
            }
        }

        fn install(&self, set: &Authenticators) {
            let keys = JwkSet::from_json(&jwks(&[self.key.public_jwk(Some("k"))])).unwrap();
            set.authenticator(&self.url)
                .unwrap()
                .issuer()
                .store_keys(keys);
        }

        fn token(&self, sub: &str, extra: serde_json::Value) -> String {
            let mut claims = json!({"iss": self.url, "aud": "kube", "sub": sub, "exp": NOW + 60});
            for (k, v) in extra.as_object().unwrap() {
                claims[k] = v.clone();
            }
            self.key.token(Algorithm::RS256, Some("k"), &claims)
        }
    }

    const PEOPLE: &str = "https://people.example";
    const PIPELINES: &str = "https://pipelines.example";

    fn two_issuers(options: AuthenticatorOptions) -> (Authenticators, Issued, Issued) {
        let set = Authenticators::new(
            vec![config(PEOPLE, "people:"), config(PIPELINES, "ci:")],
            options,
        )
        .unwrap();
        let (people, pipelines) = (Issued::new(PEOPLE), Issued::new(PIPELINES));
        people.install(&set);
        pipelines.install(&set);
        (set, people, pipelines)
    }

    #[tokio::test]
    async fn tokens_go_to_the_authenticator_of_their_issuer() {
        let (set, people, pipelines) = two_issuers(AuthenticatorOptions::default());
        let alice = set
            .authenticate(&people.token("alice", json!({})), now())
            .await
            .unwrap();
        assert_eq!(alice.user.username, "people:alice");
        assert_eq!(&*alice.issuer, PEOPLE);
        let job = set
            .authenticate(&pipelines.token("job", json!({})), now())
            .await
            .unwrap();
        assert_eq!(job.user.username, "ci:job");
        assert_eq!(&*job.issuer, PIPELINES);

        // A token naming one issuer but signed by another's key fails there; it is never
        // tried against the other issuer.
        let forged = people.key.token(
            Algorithm::RS256,
            Some("k"),
            &json!({"iss": PIPELINES, "aud": "kube", "sub": "x", "exp": NOW + 60}),
        );
        assert!(matches!(
            set.authenticate(&forged, now()).await,
            Err(AuthError::Jws(JwsError::BadSignature))
        ));

        let stranger = Issued::new("https://stranger.example");
        assert!(matches!(
            set.authenticate(&stranger.token("x", json!({})), now())
                .await,
            Err(AuthError::UnknownIssuer)
        ));
        assert!(matches!(
            set.authenticate("not-a-jwt", now()).await,
            Err(AuthError::UnknownIssuer)
        ));
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            set.authenticate(&huge, now()).await,
            Err(AuthError::Jws(JwsError::TokenTooLarge))
        ));
    }

    #[tokio::test]
    async fn one_issuer_without_keys_does_not_affect_the_other() {
        let set = Authenticators::new(
            vec![config(PEOPLE, ""), config(PIPELINES, "")],
            AuthenticatorOptions::default(),
        )
        .unwrap();
        let (people, pipelines) = (Issued::new(PEOPLE), Issued::new(PIPELINES));
        pipelines.install(&set);
        assert!(matches!(
            set.authenticate(&people.token("a", json!({})), now()).await,
            Err(AuthError::NotReady(_))
        ));
        assert!(set
            .authenticate(&pipelines.token("b", json!({})), now())
            .await
            .is_ok());
        let health = set.health();
        assert_eq!(health.len(), 2);
        assert_eq!(health[0].issuer, PEOPLE);
        assert!(matches!(health[0].health, IssuerHealth::NotLoaded(_)));
        assert_eq!(health[1].health, IssuerHealth::Healthy);
    }

    #[tokio::test]
    async fn reserved_identities_are_refused_unless_allowed() {
        let (strict, people, _) = two_issuers(AuthenticatorOptions::default());
        let masters = people.token("x", json!({}));
        let mut config_groups = config(PEOPLE, "");
        config_groups.claim_mappings.groups = Some(crate::authn::mapping::GroupsMapping::Claim(
            crate::authn::claims::PrefixedClaim {
                claim: "groups".into(),
                prefix: String::new(),
            },
        ));
        let with_groups =
            Authenticators::new(vec![config_groups.clone()], AuthenticatorOptions::default())
                .unwrap();
        people.install(&with_groups);
        let admin = people.token("alice", json!({"groups": ["dev", "system:masters"]}));
        assert!(matches!(
            with_groups.authenticate(&admin, now()).await,
            Err(AuthError::Reserved(ReservedIdentity::Group(g))) if g == "system:masters"
        ));
        // A username claim with a `system:` value, via the flag-style plain mapping.
        let flag_style =
            Authenticators::new(vec![config(PEOPLE, "")], AuthenticatorOptions::default()).unwrap();
        people.install(&flag_style);
        let node = people.token("system:node:n1", json!({}));
        assert!(matches!(
            flag_style.authenticate(&node, now()).await,
            Err(AuthError::Reserved(ReservedIdentity::Username(u))) if u == "system:node:n1"
        ));
        // A prefix that is not `system:` keeps the name out of the reserved space.
        assert!(strict.authenticate(&masters, now()).await.is_ok());

        let allowing = Authenticators::new(
            vec![config_groups],
            AuthenticatorOptions {
                allow_reserved_identities: true,
            },
        )
        .unwrap();
        people.install(&allowing);
        let user = allowing.authenticate(&admin, now()).await.unwrap();
        assert!(user.user.groups.contains(&"system:masters".to_owned()));
    }

    #[tokio::test]
    async fn a_reload_keeps_unchanged_issuers_keys_and_drops_cached_users() {
        let (set, people, pipelines) = two_issuers(AuthenticatorOptions::default());
        let token = people.token("alice", json!({}));
        assert_eq!(
            set.authenticate(&token, now()).await.unwrap().user.username,
            "people:alice"
        );
        let people_issuer = set.authenticator(PEOPLE).unwrap().issuer().clone();

        // Same issuers, new rules for people; pipelines removed. No network is needed: the
        // kept issuer is not new.
        let mut changed = config(PEOPLE, "human:");
        changed.issuer = people_issuer.settings().clone();
        set.reload(vec![changed]).await.unwrap();
        assert!(Arc::ptr_eq(
            set.authenticator(PEOPLE).unwrap().issuer(),
            &people_issuer
        ));
        // The same token now maps under the new rules: nothing cached survived.
        assert_eq!(
            set.authenticate(&token, now()).await.unwrap().user.username,
            "human:alice"
        );
        assert!(matches!(
            set.authenticate(&pipelines.token("job", json!({})), now())
                .await,
            Err(AuthError::UnknownIssuer)
        ));
        assert_eq!(
            set.reload_counts(),
            ReloadCounts {
                succeeded: 1,
                failed: 0
            }
        );
    }

    #[tokio::test]
    async fn a_reload_whose_new_issuer_has_no_keys_changes_nothing() {
        let (set, people, _) = two_issuers(AuthenticatorOptions::default());
        // 127.0.0.1:9 (discard) refuses connections: the new issuer cannot load its keys.
        let unreachable = config("https://127.0.0.1:9", "");
        let mut kept = config(PEOPLE, "other:");
        kept.issuer = set
            .authenticator(PEOPLE)
            .unwrap()
            .issuer()
            .settings()
            .clone();
        let error = set.reload(vec![kept, unreachable]).await.unwrap_err();
        assert!(matches!(error, BuildError::Keys { ref url, .. } if url == "https://127.0.0.1:9"));
        assert_eq!(set.issuers(), [PEOPLE, PIPELINES]);
        assert_eq!(
            set.authenticate(&people.token("alice", json!({})), now())
                .await
                .unwrap()
                .user
                .username,
            "people:alice"
        );
        assert_eq!(set.reload_counts().failed, 1);
    }

    #[tokio::test]
    async fn in_flight_requests_keep_the_set_they_started_with() {
        let (set, people, _) = two_issuers(AuthenticatorOptions::default());
        let before = set.current.load_full();
        let mut kept = config(PEOPLE, "new:");
        kept.issuer = set
            .authenticator(PEOPLE)
            .unwrap()
            .issuer()
            .settings()
            .clone();
        set.reload(vec![kept]).await.unwrap();
        // The old set is intact for whoever holds it.
        let old = &before.authenticators[before.by_issuer[PEOPLE]].0;
        let user = old
            .authenticate(&people.token("alice", json!({})), now())
            .await
            .unwrap();
        assert_eq!(user.username, "people:alice");
    }

    #[test]
    fn reserved_identity_detection() {
        let user = |name: &str, groups: &[&str]| UserInfo {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        };
        assert_eq!(ReservedIdentity::of(&user("alice", &["dev"])), None);
        assert_eq!(ReservedIdentity::of(&user("systemic", &["system"])), None);
        assert_eq!(
            ReservedIdentity::of(&user("system:anonymous", &[])),
            Some(ReservedIdentity::Username("system:anonymous".into()))
        );
        assert_eq!(
            ReservedIdentity::of(&user("a", &["x", "system:masters"])),
            Some(ReservedIdentity::Group("system:masters".into()))
        );
    }
}
