//! Any command that prints a token on stdout (another CI's token CLI, e.g.
//! `buildkite-agent oidc request-token --audience …` or `circleci run oidc get …`). Its stderr
//! is passed through for diagnostics; its stdout is the token and is never shown.

use std::process::Stdio;
use std::time::Duration;

use super::token::Token;

/// Bound on the command's run.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Why the command gave no token. Messages never contain its stdout.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum CommandError {
    #[error("cannot run {program:?}: {reason}")]
    Start { program: String, reason: String },
    #[error(
        "{program:?} exited with {status} (its stdout, which would hold the token, is not shown)"
    )]
    Failed { program: String, status: String },
    #[error("{0:?} did not finish within {TIMEOUT:?}")]
    Timeout(String),
    #[error("{0:?} printed no token (or not UTF-8) on stdout")]
    NoToken(String),
}

/// Runs `argv` and reads the token from its stdout.
pub(crate) async fn run(argv: &[String]) -> Result<Token, CommandError> {
    let (program, args) = argv.split_first().ok_or_else(|| CommandError::Start {
        program: String::new(),
        reason: "no command given".into(),
    })?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // kubectl shows the plugin's stderr: the command's own diagnostics reach the user.
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CommandError::Start {
            program: program.clone(),
            reason: e.to_string(),
        })?;
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| CommandError::Timeout(program.clone()))?
        .map_err(|e| CommandError::Start {
            program: program.clone(),
            reason: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(CommandError::Failed {
            program: program.clone(),
            status: output.status.to_string(),
        });
    }
    let value = String::from_utf8(output.stdout)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CommandError::NoToken(program.clone()))?;
    Ok(Token::jwt_or_opaque(value))
}

#[cfg(test)]
mod tests {
    use super::super::token::tests::jwt;
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn stdout_is_the_token() {
        let token = jwt(serde_json::json!({"exp": 2000}));
        let got = run(&sh(&format!("echo '{token}'"))).await.unwrap();
        assert_eq!(got.secret(), token);
        assert!(got.expires.is_some());
    }

    #[tokio::test]
    async fn failures_do_not_show_stdout() {
        let err = run(&sh("echo secret-output; exit 3")).await.unwrap_err();
        assert!(matches!(err, CommandError::Failed { .. }), "{err:?}");
        assert!(!err.to_string().contains("secret-output"));
        assert_eq!(
            run(&sh("true")).await.unwrap_err(),
            CommandError::NoToken("sh".into())
        );
        assert!(matches!(
            run(&["/nonexistent/token-cli".to_owned()]).await,
            Err(CommandError::Start { .. })
        ));
    }
}
