//! `kube-oidc-proxy credential <provider>`: a kubectl credential plugin (client-go's exec
//! plugin contract, `client.authentication.k8s.io`) for pipelines that deploy through the
//! proxy with their own short-lived OIDC token.
//!
//! It prints an `ExecCredential` whose `expirationTimestamp` comes a margin before the token's
//! `exp`, so kubectl and helm ask again before the token dies (client-go has no margin of its
//! own). Tokens that can be minted again (GitHub Actions, a command) are cached on disk per
//! audience and job, so not every `kubectl` process mints one. The token is printed on stdout
//! in the ExecCredential only: never in a message on stderr.

pub(crate) mod cache;
mod command;
mod exec_credential;
mod file;
mod github;
mod gitlab;
mod token;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};

use self::cache::Cache;
use self::token::Token;

/// Default `--expiry-margin`.
const DEFAULT_MARGIN: Duration = Duration::from_secs(60);

/// `kube-oidc-proxy credential`: the plugin's command line.
#[derive(Debug, Parser)]
#[command(
    name = "kube-oidc-proxy credential",
    bin_name = "kube-oidc-proxy credential",
    about = "kubectl credential plugin: prints an ExecCredential with a CI/CD OIDC token",
    long_about = "kubectl credential plugin (users[].user.exec in a kubeconfig; see \
                  `kube-oidc-proxy kubeconfig`): prints an ExecCredential with a CI/CD OIDC \
                  token that expires a margin before the token does, so kubectl and helm ask \
                  for a fresh one in time."
)]
pub struct CredentialArgs {
    #[command(flatten)]
    pub options: CommonOptions,
    #[command(subcommand)]
    pub provider: Provider,
}

/// Options of every provider.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonOptions {
    /// Directory of the token cache (created 0700; files 0600).
    /// [default: $XDG_CACHE_HOME or ~/.cache, + /kube-oidc-proxy/credentials]
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not cache tokens on disk (a new token for every kubectl process).
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// How long before the token's exp kubectl is told to ask again; capped to a quarter of
    /// the token's lifetime (exp - iat), so short tokens stay usable. [default: 60s]
    #[arg(long, global = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expiry_margin: Option<Duration>,
}

/// Where the token comes from.
#[derive(Debug, Clone, Subcommand)]
pub enum Provider {
    /// GitHub Actions (or Forgejo Actions): a new ID token from the runner for each use. The
    /// job needs `permissions: id-token: write`.
    GithubActions {
        /// The audience (`aud`) to request: the one the proxy's configuration expects.
        #[arg(long)]
        audience: String,
    },
    /// GitLab CI: the ID token the job declares under `id_tokens:`. GitLab mints it once per
    /// job; it cannot be renewed.
    Gitlab {
        /// The variable named under the job's `id_tokens:`.
        #[arg(long, value_name = "NAME", default_value = "KUBE_ID_TOKEN")]
        variable: String,
        /// Warn on stderr when less than this is left of the token's life.
        #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
        warn_before: Duration,
    },
    /// A token file, re-read on every use (e.g. a projected ServiceAccount token).
    File {
        /// The file holding the token.
        #[arg(long)]
        path: PathBuf,
    },
    /// A command that prints a token on stdout (e.g. another CI's token CLI), after `--`.
    Command {
        /// The command and its arguments.
        #[arg(required = true, last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

impl CommonOptions {
    /// These options as command-line arguments (only those given), for a kubeconfig's exec.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(dir) = &self.cache_dir {
            args.extend(["--cache-dir".to_owned(), dir.display().to_string()]);
        }
        if self.no_cache {
            args.push("--no-cache".to_owned());
        }
        if let Some(margin) = self.expiry_margin {
            args.extend([
                "--expiry-margin".to_owned(),
                humantime::format_duration(margin).to_string(),
            ]);
        }
        args
    }
}

impl Provider {
    /// This provider and its options as command-line arguments, for a kubeconfig's exec.
    pub fn to_args(&self) -> Vec<String> {
        let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            Provider::GithubActions { audience } => {
                let mut args = owned(&["github-actions", "--audience"]);
                args.push(audience.clone());
                args
            }
            Provider::Gitlab {
                variable,
                warn_before,
            } => {
                let mut args = owned(&["gitlab", "--variable"]);
                args.push(variable.clone());
                args.push("--warn-before".to_owned());
                args.push(humantime::format_duration(*warn_before).to_string());
                args
            }
            Provider::File { path } => {
                let mut args = owned(&["file", "--path"]);
                args.push(path.display().to_string());
                args
            }
            Provider::Command { command } => {
                let mut args = owned(&["command", "--"]);
                args.extend(command.iter().cloned());
                args
            }
        }
    }
}

/// What the plugin sees of its process: the environment and the clock (injected by tests).
pub(crate) struct Context {
    pub(crate) env: HashMap<String, String>,
    pub(crate) now: SystemTime,
}

impl Context {
    /// The process's own environment (variables that are not UTF-8 are skipped) and clock.
    pub(crate) fn from_process() -> Context {
        Context {
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            now: SystemTime::now(),
        }
    }
}

/// Why no credential was printed. Messages never contain a token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialError {
    #[error(transparent)]
    ExecInfo(#[from] exec_credential::ExecInfoError),
    #[error(transparent)]
    Github(#[from] github::GithubError),
    #[error(transparent)]
    Gitlab(#[from] gitlab::GitlabError),
    #[error(transparent)]
    File(#[from] file::FileError),
    #[error(transparent)]
    Command(#[from] command::CommandError),
}

/// The plugin's answer: the ExecCredential JSON and warnings for stderr.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) exec_credential: String,
    pub(crate) warnings: Vec<String>,
}

/// Obtains the token and renders the ExecCredential.
pub(crate) async fn credential(
    args: &CredentialArgs,
    ctx: &Context,
) -> Result<Answer, CredentialError> {
    let version = exec_credential::requested_version(
        ctx.env.get("KUBERNETES_EXEC_INFO").map(String::as_str),
    )?;
    let margin = args.options.expiry_margin.unwrap_or(DEFAULT_MARGIN);
    let mut warnings = Vec::new();
    let token = match &args.provider {
        Provider::GithubActions { audience } => {
            let runner = github::Runner::from_env(&ctx.env)?;
            let [url, request] = runner.cache_key();
            let key = ["github-actions", audience.as_str(), url, request];
            cached(&args.options, ctx, &key, margin, &mut warnings, || {
                runner.fetch(audience)
            })
            .await?
        }
        Provider::Gitlab {
            variable,
            warn_before,
        } => gitlab::read(&ctx.env, variable, ctx.now, *warn_before, &mut warnings)?,
        Provider::File { path } => file::read(path, ctx.now)?,
        Provider::Command { command } => {
            let mut key = vec!["command"];
            key.extend(command.iter().map(String::as_str));
            cached(&args.options, ctx, &key, margin, &mut warnings, || {
                command::run(command)
            })
            .await?
        }
    };
    let expiry = token.credential_expiry(ctx.now, margin);
    Ok(Answer {
        exec_credential: exec_credential::render(version, &token, expiry),
        warnings,
    })
}

/// `fetch` behind the disk cache, unless `--no-cache`. A cache that cannot be used is a
/// warning, never a failure: the token is then fetched every time.
async fn cached<F, Fut, E>(
    options: &CommonOptions,
    ctx: &Context,
    key: &[&str],
    margin: Duration,
    warnings: &mut Vec<String>,
    fetch: F,
) -> Result<Token, E>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Token, E>>,
{
    if options.no_cache {
        return fetch().await;
    }
    let cache = match cache_dir(options, &ctx.env).map(|dir| Cache::open(&dir)) {
        Some(Ok(cache)) => Some(cache),
        Some(Err(why)) => {
            warnings.push(format!("token cache not used: {why}"));
            None
        }
        None => {
            warnings.push("token cache not used: no --cache-dir, XDG_CACHE_HOME or HOME".into());
            None
        }
    };
    if let Some(cache) = &cache {
        match cache.get(key, ctx.now, margin) {
            Ok(Some(token)) => return Ok(token),
            Ok(None) => {}
            Err(why) => warnings.push(why),
        }
    }
    let token = fetch().await?;
    if let Some(cache) = &cache {
        if let Err(why) = cache.put(key, &token) {
            warnings.push(why);
        }
    }
    Ok(token)
}

/// `--cache-dir`, else `$XDG_CACHE_HOME/kube-oidc-proxy/credentials`, else
/// `~/.cache/kube-oidc-proxy/credentials`.
fn cache_dir(options: &CommonOptions, env: &HashMap<String, String>) -> Option<PathBuf> {
    if let Some(dir) = &options.cache_dir {
        return Some(dir.clone());
    }
    let non_empty = |name: &str| env.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base =
        non_empty("XDG_CACHE_HOME").or_else(|| non_empty("HOME").map(|h| h.join(".cache")))?;
    Some(base.join(Path::new("kube-oidc-proxy/credentials")))
}

/// `kube-oidc-proxy credential …` as a program: `args` starts with `credential`.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = CredentialArgs::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kube-oidc-proxy credential: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = Context::from_process();
    match runtime.block_on(credential(&args, &ctx)) {
        Ok(answer) => {
            for warning in &answer.warnings {
                eprintln!("kube-oidc-proxy credential: warning: {warning}");
            }
            println!("{}", answer.exec_credential);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kube-oidc-proxy credential: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::token::tests::{at, jwt};
    use super::*;

    fn parse(args: &[&str]) -> CredentialArgs {
        CredentialArgs::try_parse_from(std::iter::once("credential").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn options_go_before_or_after_the_provider_and_round_trip() {
        let args = parse(&[
            "--cache-dir=/c",
            "github-actions",
            "--audience",
            "https://kube.example",
            "--expiry-margin=30s",
        ]);
        assert_eq!(args.options.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(args.options.expiry_margin, Some(Duration::from_secs(30)));
        let mut again = vec!["credential".to_owned()];
        again.extend(args.options.to_args());
        again.extend(args.provider.to_args());
        let reparsed = CredentialArgs::try_parse_from(&again).unwrap();
        assert_eq!(reparsed.options.to_args(), args.options.to_args());
        assert_eq!(reparsed.provider.to_args(), args.provider.to_args());

        let argv = [
            "command",
            "--",
            "buildkite-agent",
            "oidc",
            "request-token",
            "--audience",
            "x",
        ];
        assert_eq!(parse(&argv).provider.to_args(), argv);
        assert!(CredentialArgs::try_parse_from(["credential", "command"]).is_err());
    }

    #[test]
    fn the_default_cache_dir() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let none = CommonOptions::default();
        assert_eq!(
            cache_dir(&none, &env(&[("HOME", "/home/ci")])),
            Some(PathBuf::from("/home/ci/.cache/kube-oidc-proxy/credentials"))
        );
        assert_eq!(
            cache_dir(
                &none,
                &env(&[("HOME", "/home/ci"), ("XDG_CACHE_HOME", "/x")])
            ),
            Some(PathBuf::from("/x/kube-oidc-proxy/credentials"))
        );
        assert_eq!(cache_dir(&none, &env(&[])), None);
    }

    /// A command provider that counts its runs in a file: the second call is served from the
    /// cache until the refresh time, then the command runs again.
    #[tokio::test]
    async fn the_cache_saves_runs_until_the_refresh_time() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let token = jwt(serde_json::json!({"iat": 1000, "exp": 1020}));
        let script = format!("echo x >> {}; echo {token}", count.display());
        let args = CredentialArgs {
            options: CommonOptions {
                cache_dir: Some(dir.path().join("cache")),
                ..CommonOptions::default()
            },
            provider: Provider::Command {
                command: vec!["sh".into(), "-c".into(), script],
            },
        };
        let runs = || std::fs::read_to_string(&count).unwrap().lines().count();
        let at_time = |secs| Context {
            env: HashMap::new(),
            now: at(secs),
        };
        let answer = credential(&args, &at_time(1001)).await.unwrap();
        let out: serde_json::Value = serde_json::from_str(&answer.exec_credential).unwrap();
        // 20 s lifetime: margin capped to 5 s.
        assert_eq!(out["status"]["expirationTimestamp"], "1970-01-01T00:16:55Z");
        assert_eq!(out["status"]["token"], token.as_str());
        assert!(answer.warnings.is_empty(), "{:?}", answer.warnings);
        credential(&args, &at_time(1014)).await.unwrap();
        assert_eq!(runs(), 1);
        credential(&args, &at_time(1015)).await.unwrap();
        assert_eq!(runs(), 2);
    }
}
