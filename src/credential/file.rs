//! A token file, re-read on every call: a projected ServiceAccount token (the kubelet rotates
//! it at 80 % of its life), or a file any other tool keeps fresh.

use std::io::Read as _;
use std::path::Path;
use std::time::SystemTime;

use super::token::Token;

/// The largest token file read.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Why the file gave no token. Messages never contain the token.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum FileError {
    #[error("cannot read the token file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the token file {0} is empty")]
    Empty(String),
    #[error("the token in {0} has expired; is whatever renews that file still running?")]
    Expired(String),
}

/// The token in `path`; a JWT's expiry is read, an opaque token is passed on as it is.
pub(crate) fn read(path: &Path, now: SystemTime) -> Result<Token, FileError> {
    let shown = path.display().to_string();
    let read_error = |e: std::io::Error| FileError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    let value = text.trim();
    if value.is_empty() {
        return Err(FileError::Empty(shown));
    }
    let token = Token::jwt_or_opaque(value.to_owned());
    if token.expires.is_some_and(|exp| exp <= now) {
        return Err(FileError::Expired(shown));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::super::token::tests::{at, jwt};
    use super::*;

    #[test]
    fn re_reads_the_file_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = jwt(serde_json::json!({"exp": 2000, "iat": 1000}));
        std::fs::write(&path, format!("{first}\n")).unwrap();
        assert_eq!(read(&path, at(1500)).unwrap().secret(), first);
        let second = jwt(serde_json::json!({"exp": 3000, "iat": 2000}));
        std::fs::write(&path, &second).unwrap();
        let token = read(&path, at(2500)).unwrap();
        assert_eq!(token.secret(), second);
        assert_eq!(token.expires, Some(at(3000)));
    }

    #[test]
    fn opaque_empty_missing_and_expired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "opaque-token").unwrap();
        assert_eq!(read(&path, at(0)).unwrap().expires, None);
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(read(&path, at(0)), Err(FileError::Empty(_))));
        let expired = jwt(serde_json::json!({"exp": 2000}));
        std::fs::write(&path, &expired).unwrap();
        let err = read(&path, at(2000)).unwrap_err();
        assert!(matches!(err, FileError::Expired(_)));
        assert!(!err.to_string().contains(&expired));
        assert!(matches!(
            read(&dir.path().join("missing"), at(0)),
            Err(FileError::Read { .. })
        ));
    }
}
