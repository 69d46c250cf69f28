//! GitLab CI: the ID token a job declares under `id_tokens:` (GitLab 15.7+), in the variable it
//! names. GitLab mints it once, when the job starts, and offers no way to get another within
//! the job (its expiry follows the job's timeout), so this provider can only read it, refuse it
//! once expired, and warn when little time is left.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::token::Token;

/// Why the job's token cannot be used. Messages never contain the token.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum GitlabError {
    /// The variable is not set.
    #[error(
        "${0} is not set: declare it in the job, `id_tokens: {{ {0}: {{ aud: <the proxy's \
         audience> }} }}` (GitLab 15.7+), and pass the same name to --variable"
    )]
    Missing(String),
    /// It is not a JWT, or has no `exp`.
    #[error("${variable} does not hold an ID token with an exp claim: {reason}")]
    Malformed { variable: String, reason: String },
    /// It expired.
    #[error(
        "the GitLab ID token in ${variable} expired {ago} ago. GitLab mints it once per job, \
         when the job starts, and it cannot be renewed: give the job a `timeout:` that covers \
         the deploy (the token's lifetime follows it), or split the deploy into shorter jobs"
    )]
    Expired { variable: String, ago: String },
}

/// The token in `$variable`, checked against `now`; a warning is pushed when less than
/// `warn_before` of its life is left.
pub(crate) fn read(
    env: &HashMap<String, String>,
    variable: &str,
    now: SystemTime,
    warn_before: Duration,
    warnings: &mut Vec<String>,
) -> Result<Token, GitlabError> {
    let value = env
        .get(variable)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| GitlabError::Missing(variable.to_owned()))?;
    let malformed = |reason: String| GitlabError::Malformed {
        variable: variable.to_owned(),
        reason,
    };
    let token = Token::from_jwt(value.to_owned()).map_err(|e| malformed(e.to_string()))?;
    let expires = token
        .expires
        .ok_or_else(|| malformed("no numeric exp".into()))?;
    match expires.duration_since(now) {
        Err(past) => Err(GitlabError::Expired {
            variable: variable.to_owned(),
            ago: whole_seconds(past.duration()),
        }),
        Ok(left) => {
            if left < warn_before {
                warnings.push(format!(
                    "the GitLab ID token in ${variable} expires in {}; GitLab cannot renew it \
                     within this job (a longer job `timeout:` gives it a longer life)",
                    whole_seconds(left)
                ));
            }
            Ok(token)
        }
    }
}

fn whole_seconds(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::token::tests::{at, jwt};
    use super::*;

    const WARN: Duration = Duration::from_secs(120);

    fn env(token: &str) -> HashMap<String, String> {
        HashMap::from([("KUBE_ID_TOKEN".to_owned(), token.to_owned())])
    }

    #[test]
    fn reads_the_variable() {
        let token = jwt(serde_json::json!({"exp": 4600, "iat": 1000}));
        let mut warnings = Vec::new();
        let read = read(&env(&token), "KUBE_ID_TOKEN", at(1000), WARN, &mut warnings).unwrap();
        assert_eq!(read.secret(), token);
        assert!(warnings.is_empty());
    }

    #[test]
    fn warns_near_expiry_without_the_token() {
        let token = jwt(serde_json::json!({"exp": 1100, "iat": 1000}));
        let mut warnings = Vec::new();
        read(&env(&token), "KUBE_ID_TOKEN", at(1010), WARN, &mut warnings).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("expires in 1m 30s"), "{warnings:?}");
        assert!(!warnings[0].contains(&token));
    }

    #[test]
    fn an_expired_token_is_refused_with_the_reason() {
        let token = jwt(serde_json::json!({"exp": 1100, "iat": 1000}));
        let err = read(
            &env(&token),
            "KUBE_ID_TOKEN",
            at(1165),
            WARN,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            GitlabError::Expired {
                variable: "KUBE_ID_TOKEN".into(),
                ago: "1m 5s".into()
            }
        );
        let text = err.to_string();
        assert!(text.contains("mints it once per job"), "{text}");
        assert!(!text.contains(&token));
    }

    #[test]
    fn missing_and_malformed() {
        let err = read(
            &HashMap::new(),
            "KUBE_ID_TOKEN",
            at(0),
            WARN,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err, GitlabError::Missing("KUBE_ID_TOKEN".into()));
        assert!(err.to_string().contains("id_tokens:"));
        for bad in ["not-a-jwt", &jwt(serde_json::json!({"iat": 1}))] {
            let err = read(&env(bad), "KUBE_ID_TOKEN", at(0), WARN, &mut Vec::new()).unwrap_err();
            assert!(matches!(err, GitlabError::Malformed { .. }), "{err:?}");
            assert!(!err.to_string().contains(bad));
        }
    }
}
