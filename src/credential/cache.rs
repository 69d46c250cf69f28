//! The plugin's token cache on disk: one file per key (provider, audience, job), so that every
//! `kubectl` process of a pipeline does not mint a new token.
//!
//! The directory is created `0700`, files are written `0600` aside and renamed over (a reader
//! never sees half a file). A directory or file that another user owns, or that group or others
//! may read or write, is not used: a token there may have been read, or planted. A file that
//! does not parse is ignored and replaced.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

use super::token::Token;

/// Mode bits that must be clear on the cache directory and its files.
const GROUP_OR_OTHER: u32 = 0o077;

/// The largest cache file read; anything bigger is not ours.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Entries untouched for this long are removed when another is written: every job writes its
/// own (the key names the job), and on a long-lived runner they would pile up. No CI token
/// lives this long (GitHub's request token, about 6 h, bounds a job's minting).
const PRUNE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// A usable cache directory.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
}

/// What is kept per key. The token is stored as is: the file is as private as the token.
#[derive(Serialize, Deserialize)]
struct Entry {
    token: String,
    /// Seconds since the epoch (the token's `exp`).
    exp: u64,
    iat: Option<u64>,
}

/// Whether a file or directory is ours alone.
fn private(meta: &fs::Metadata) -> Result<(), String> {
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(format!("owned by uid {}, not by this user", meta.uid()));
    }
    if meta.mode() & GROUP_OR_OTHER != 0 {
        return Err(format!(
            "mode {:o} lets group or others in (want 0600 files, a 0700 directory)",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` so that no one else can read it and no reader ever sees half of it:
/// a 0600 file with a unique name beside `path` (tempfile), synced, then renamed over `path`.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Cache {
    /// Opens (creating it `0700` if missing) the cache directory. Errors say why it is not
    /// used; the caller then goes without a cache.
    pub(crate) fn open(dir: &Path) -> Result<Cache, String> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let meta = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        private(&meta).map_err(|why| format!("not using {}: {why}", dir.display()))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
        })
    }

    /// The file for `key` (its parts joined unambiguously and hashed: no secret or odd
    /// character reaches a file name).
    fn path(&self, key: &[&str]) -> PathBuf {
        let mut context = digest::Context::new(&digest::SHA256);
        for part in key {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let hex: String = context
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("{hex}.json"))
    }

    /// The cached token for `key` if it is still fresh at `now` with `margin`. A missing,
    /// unreadable, corrupt or stale entry is `Ok(None)`; a file not private to this user is an
    /// `Err` saying so (and is not read).
    pub(crate) fn get(
        &self,
        key: &[&str],
        now: SystemTime,
        margin: Duration,
    ) -> Result<Option<Token>, String> {
        let path = self.path(key);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return Ok(None);
        };
        if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
            return Ok(None);
        }
        private(&meta).map_err(|why| format!("ignoring cache file {}: {why}", path.display()))?;
        let Ok(bytes) = fs::read(&path) else {
            return Ok(None);
        };
        let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) else {
            return Ok(None);
        };
        let token = Token {
            value: entry.token.into(),
            expires: Some(UNIX_EPOCH + Duration::from_secs(entry.exp)),
            issued: entry.iat.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        };
        Ok(token.fresh_at(now, margin).then_some(token))
    }

    /// Stores `token` under `key` (tokens without `exp` are not cached: their freshness is
    /// unknown).
    pub(crate) fn put(&self, key: &[&str], token: &Token) -> Result<(), String> {
        let Some(expires) = token.expires else {
            return Ok(());
        };
        let entry = Entry {
            token: token.secret().to_owned(),
            exp: seconds(expires),
            iat: token.issued.map(seconds),
        };
        let path = self.path(key);
        serde_json::to_vec(&entry)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_private(&path, &bytes))
            .map_err(|e| format!("cannot write cache file {}: {e}", path.display()))?;
        self.prune(SystemTime::now());
        Ok(())
    }

    /// Removes this cache's entries (`<sha256 hex>.json`) last written before `now` minus
    /// [`PRUNE_AFTER`]; best effort.
    fn prune(&self, now: SystemTime) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let ours = name.to_str().is_some_and(|n| {
                n.strip_suffix(".json")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            });
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified + PRUNE_AFTER < now);
            if ours && old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::token::tests::{at, jwt};
    use super::*;
    use secrecy::ExposeSecret as _;

    const MARGIN: Duration = Duration::from_secs(60);

    fn token(iat: u64, exp: u64) -> Token {
        Token::from_jwt(jwt(serde_json::json!({"iat": iat, "exp": exp}))).unwrap()
    }

    #[test]
    fn a_fresh_token_is_a_hit_until_its_refresh_time() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("credentials")).unwrap();
        let key = ["github-actions", "https://kube.example", "job-1"];
        assert!(cache.get(&key, at(1000), MARGIN).unwrap().is_none());
        let stored = token(1000, 1300);
        cache.put(&key, &stored).unwrap();

        let hit = cache.get(&key, at(1100), MARGIN).unwrap().unwrap();
        assert_eq!(hit.value.expose_secret(), stored.value.expose_secret());
        assert_eq!(hit.expires, Some(at(1300)));
        assert_eq!(hit.issued, Some(at(1000)));
        // From exp - margin on, a new one is needed.
        assert!(cache.get(&key, at(1240), MARGIN).unwrap().is_none());
        // Another key (audience) is another entry.
        let other = ["github-actions", "https://other.example", "job-1"];
        assert!(cache.get(&other, at(1100), MARGIN).unwrap().is_none());
    }

    #[test]
    fn directory_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/credentials");
        let cache = Cache::open(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        cache.put(&["k"], &token(1000, 1300)).unwrap();
        let files: Vec<_> = fs::read_dir(&path).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(files.len(), 1, "no temporary file left behind");
        assert_eq!(
            files[0].metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_loose_directory_or_file_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let cache = Cache::open(&path).unwrap();
        cache.put(&["k"], &token(1000, 1300)).unwrap();
        let file = cache.path(&["k"]);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let err = cache.get(&["k"], at(1100), MARGIN).unwrap_err();
        assert!(err.contains("mode 644"), "{err}");
        // Rewriting replaces it with a private file.
        cache.put(&["k"], &token(1000, 1300)).unwrap();
        assert!(cache.get(&["k"], at(1100), MARGIN).unwrap().is_some());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        let err = Cache::open(&path).unwrap_err();
        assert!(err.contains("mode 755"), "{err}");
    }

    /// Needs root to give a file away; elsewhere it says so and checks nothing.
    #[test]
    fn a_file_or_directory_of_another_user_is_not_used() {
        if !rustix::process::geteuid().is_root() {
            println!("skipped: only root can chown a file to another user");
            return;
        }
        let nobody = Some(65534);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let cache = Cache::open(&path).unwrap();
        cache.put(&["k"], &token(1000, 1300)).unwrap();
        std::os::unix::fs::chown(cache.path(&["k"]), nobody, nobody).unwrap();
        let err = cache.get(&["k"], at(1100), MARGIN).unwrap_err();
        assert!(err.contains("owned by uid 65534"), "{err}");
        std::os::unix::fs::chown(&path, nobody, nobody).unwrap();
        let err = Cache::open(&path).unwrap_err();
        assert!(err.contains("owned by uid 65534"), "{err}");
    }

    #[test]
    fn a_corrupt_file_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        let file = cache.path(&["k"]);
        fs::write(&file, b"{not json").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(cache.get(&["k"], at(1100), MARGIN).unwrap().is_none());
        cache.put(&["k"], &token(1000, 1300)).unwrap();
        assert!(cache.get(&["k"], at(1100), MARGIN).unwrap().is_some());
    }

    #[test]
    fn old_entries_are_pruned_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        cache.put(&["old"], &token(1000, 1300)).unwrap();
        let other = dir.path().join("c/notes.txt");
        fs::write(&other, "kept").unwrap();
        cache.prune(SystemTime::now() + PRUNE_AFTER / 2);
        assert!(cache.path(&["old"]).exists());
        cache.prune(SystemTime::now() + PRUNE_AFTER * 2);
        assert!(!cache.path(&["old"]).exists());
        assert!(other.exists());
    }

    #[test]
    fn tokens_without_exp_are_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c")).unwrap();
        cache.put(&["k"], &Token::opaque("x".into())).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("c")).unwrap().count(), 0);
    }
}
