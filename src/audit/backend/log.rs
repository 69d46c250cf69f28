//! The log backend (`--audit-log-*`): one line per event, JSON (`json`, one `Event` per line as
//! kube-apiserver writes it) or kube-apiserver's one-line text (`legacy`, `audit.EventString`),
//! to a file rotated as lumberjack does (kube-apiserver's writer) or to stdout (`-`).
//!
//! Writing happens on a dedicated thread fed by a bounded queue of
//! `--audit-log-batch-buffer-size` events; a full queue drops the event and counts it. This is
//! how every `--audit-log-mode` is served, so auditing never blocks or fails a request. That
//! differs on purpose from kube-apiserver's default `blocking` mode, where the request waits
//! for the write (and `blocking-strict` fails it). The batch max-size, max-wait and throttle
//! flags are validated but unused: the log writes event by event, as kube-apiserver does with
//! its default batch size of one.
//!
//! Rotation follows gopkg.in/natefinch/lumberjack.v2 as kube-apiserver configures it (hand-
//! written: no crate names its backups and prunes them the same way):
//! - the file is created with its parent directories (mode 0700) and mode 0600 when the
//!   backend starts, as kube-apiserver's `ensureLogFile`; a rotated-in file keeps the old
//!   file's mode;
//! - before a write would take the file over `--audit-log-maxsize` MB (0 = 100 MB), it is
//!   renamed `<name>-<UTC 2006-01-02T15-04-05.000><ext>` and a new one started; a line larger
//!   than the maximum itself is refused (counted as an error);
//! - after each rotation (and at start) backups beyond `--audit-log-maxbackup` (newest kept,
//!   by the time in their names) or older than `--audit-log-maxage` days are removed, and the
//!   rest gzipped (`.gz` appended) with `--audit-log-compress`. Lumberjack does this on a
//!   goroutine; here it is done on the writer thread, whose queue absorbs the pause.
//!
//! An I/O error is logged (at most once a minute for each kind of error) and counted; the
//! event is lost, the next one is tried again.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::{encode_into, AuditCounters, Backend, Intake, Queue, ShutdownFuture, Warnings};
use crate::audit::event::Event;
use crate::config::audit::{LogBackendSettings, LogDestination, LogFormat, RotationSettings};

/// Where formatted lines go.
trait LineSink: Send {
    /// Writes one whole line (newline included).
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;
}

/// Standard output, shared with the access log: each line is written whole under the lock.
struct Stdout;

impl LineSink for Stdout {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(line)?;
        out.flush()
    }
}

/// The log backend.
pub struct LogBackend {
    queue: Queue,
    counters: Arc<AuditCounters>,
    finished: Mutex<Option<oneshot::Receiver<()>>>,
}

impl LogBackend {
    /// Opens (creating) the log file and starts the writer thread.
    pub fn start(settings: &LogBackendSettings) -> Result<Self, String> {
        let sink: Box<dyn LineSink> = match &settings.destination {
            LogDestination::Stdout => Box::new(Stdout),
            LogDestination::File(path) => {
                Box::new(RotatingFile::create(path, settings.rotation).map_err(|e| {
                    format!("--audit-log-path: cannot open {}: {e}", path.display())
                })?)
            }
        };
        Self::with_sink(settings, sink)
    }

    fn with_sink(settings: &LogBackendSettings, sink: Box<dyn LineSink>) -> Result<Self, String> {
        let counters = Arc::new(AuditCounters::new("log"));
        let (queue, intake) = Queue::new(settings.batch.buffer_size, Arc::clone(&counters));
        let (done, finished) = oneshot::channel();
        let writer = Writer {
            sink,
            format: settings.format,
            truncate: settings.truncate,
            counters: Arc::clone(&counters),
            warnings: Warnings::default(),
            line: Vec::new(),
        };
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                writer.run(intake);
                let _ = done.send(());
            })
            .map_err(|e| format!("audit log writer thread: {e}"))?;
        Ok(Self {
            queue,
            counters,
            finished: Mutex::new(Some(finished)),
        })
    }

    /// The delivery counters (`backend` = `log`).
    pub fn counters(&self) -> Arc<AuditCounters> {
        Arc::clone(&self.counters)
    }

    /// Stops taking events and waits until the queued ones are written, or `deadline`.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        self.queue.close();
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(finished) = finished {
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                tracing::warn!("audit log: queued events still being written at shutdown");
            }
        }
    }
}

impl Backend for LogBackend {
    fn process(&self, event: Arc<Event>) {
        self.queue.push(event);
    }

    fn shutdown(&self, deadline: tokio::time::Instant) -> ShutdownFuture<'_> {
        Box::pin(LogBackend::shutdown(self, deadline))
    }

    fn all_counters(&self) -> Vec<Arc<AuditCounters>> {
        vec![self.counters()]
    }
}

/// How long the writer lets events gather after writing what was queued.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);
/// The smallest queue that gathers: room for a million events a second over [`GATHER`].
const GATHER_MIN_QUEUE: usize = 1000;

/// The writer thread's state.
struct Writer {
    sink: Box<dyn LineSink>,
    format: LogFormat,
    truncate: Option<crate::config::audit::TruncateSettings>,
    counters: Arc<AuditCounters>,
    warnings: Warnings,
    /// The line being written, reused: it grows to the longest line once.
    line: Vec<u8>,
}

impl Writer {
    fn run(mut self, mut intake: Intake) {
        while let Some(event) = intake.rx.blocking_recv() {
            self.write(&event);
            drop(event);
            while let Ok(event) = intake.rx.try_recv() {
                self.write(&event);
            }
            // Under load, the next events gather in the queue meanwhile and are written in one
            // go: waking this thread for every event (two per request) cost more than writing
            // them. An idle queue is still written at once: `blocking_recv` returns with it.
            // A queue too small to absorb the pause is served event by event, as it asked.
            if intake.rx.max_capacity() >= GATHER_MIN_QUEUE {
                std::thread::sleep(GATHER);
            }
        }
    }

    fn write(&mut self, event: &Event) {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        if self.format_line(event, &mut line) {
            match self.sink.write_line(&line) {
                Ok(()) => AuditCounters::add(&self.counters.written, 1),
                Err(e) => {
                    AuditCounters::add(&self.counters.errors, 1);
                    self.warnings.warn("log", format!("{:?}", e.kind()), e);
                }
            }
        } else {
            // Too large, even truncated.
            AuditCounters::add(&self.counters.dropped, 1);
        }
        self.line = line;
    }

    /// Puts the event's line, newline included, in the empty `line`; false when the event is
    /// refused.
    fn format_line(&self, event: &Event, line: &mut Vec<u8>) -> bool {
        match self.format {
            LogFormat::Json => {
                if encode_into(event, self.truncate.as_ref(), line).is_err() {
                    return false;
                }
            }
            LogFormat::Legacy => {
                // The size limit applies to the JSON form, as in kube-apiserver.
                if self.truncate.is_some()
                    && encode_into(event, self.truncate.as_ref(), line).is_err()
                {
                    return false;
                }
                line.clear();
                line.extend_from_slice(event_string(event).as_bytes());
            }
        }
        line.push(b'\n');
        true
    }
}

/// kube-apiserver's `audit.EventString`: the legacy one-line format.
pub(crate) fn event_string(event: &Event) -> String {
    let (username, groups) = if event.user.username.is_empty() {
        ("<none>".to_owned(), "<none>".to_owned())
    } else if event.user.groups.is_empty() {
        (event.user.username.clone(), "<none>".to_owned())
    } else {
        (event.user.username.clone(), quoted_list(&event.user.groups))
    };
    let (as_user, as_groups) = match &event.impersonated_user {
        // No groups is Go's nil here: the API server looks them up.
        Some(user) if user.groups.is_empty() => (user.username.clone(), "<lookup>".to_owned()),
        Some(user) => (user.username.clone(), quoted_list(&user.groups)),
        None => ("<self>".to_owned(), "<lookup>".to_owned()),
    };
    let namespace = event
        .object_ref
        .as_ref()
        .map(|r| r.namespace.as_str())
        .filter(|ns| !ns.is_empty())
        .unwrap_or("<none>");
    let response = event
        .response_status
        .as_ref()
        .map_or_else(|| "<deferred>".to_owned(), |s| s.code.to_string());
    let ip = event.source_ips.first().map_or("<unknown>", String::as_str);
    let stage = serde_json::to_value(event.stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{} AUDIT: id={} stage={} ip={} method={} user={} groups={} as={} asgroups={} \
         user-agent={} namespace={} uri={} response=\"{response}\"",
        rfc3339_nano(&event.request_received_timestamp),
        go_quote(&event.audit_id),
        go_quote(&stage),
        go_quote(ip),
        go_quote(&event.verb),
        go_quote(&username),
        go_quote(&groups),
        go_quote(&as_user),
        go_quote(&as_groups),
        go_quote(&event.user_agent),
        go_quote(namespace),
        go_quote(&event.request_uri),
    )
}

/// Go's `time.RFC3339Nano` of a timestamp already in RFC 3339: trailing zeros of the fraction
/// are dropped (and the dot with them).
fn rfc3339_nano(timestamp: &str) -> String {
    let Some(dot) = timestamp.find('.') else {
        return timestamp.to_owned();
    };
    let digits = timestamp[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(timestamp.len(), |end| dot + 1 + end);
    let fraction = timestamp[dot + 1..digits].trim_end_matches('0');
    let dot_part = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{fraction}")
    };
    format!("{}{dot_part}{}", &timestamp[..dot], &timestamp[digits..])
}

/// `"a","b"` as Go's `auditStringSlice`.
fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| go_quote(s))
        .collect::<Vec<_>>()
        .join(",")
}

/// Go's `%q` of a string (`strconv.Quote`), for printable text and the usual escapes.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// lumberjack's backup time layout, `2006-01-02T15-04-05.000`, in UTC.
const BACKUP_TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]-[minute]-[second].[subsecond digits:3]"
);

/// A log file rotated as lumberjack rotates it.
struct RotatingFile {
    path: PathBuf,
    rotation: RotationSettings,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    /// Creates the file (and its directories) as kube-apiserver's `ensureLogFile`, and prunes
    /// old backups as lumberjack does when it first opens the file.
    fn create(path: &Path, rotation: RotationSettings) -> io::Result<Self> {
        Self::create_at(path, rotation, OffsetDateTime::now_utc())
    }

    fn create_at(path: &Path, rotation: RotationSettings, now: OffsetDateTime) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let size = file.metadata()?.len();
        let rotating = Self {
            path: path.to_path_buf(),
            rotation,
            file: Some(file),
            size,
        };
        rotating.mill(now)?;
        Ok(rotating)
    }

    fn write_at(&mut self, line: &[u8], now: OffsetDateTime) -> io::Result<()> {
        let len = line.len() as u64;
        let max = self.rotation.max_size_bytes;
        if len > max {
            return Err(io::Error::other(format!(
                "write length {len} exceeds maximum file size {max}"
            )));
        }
        if self.file.is_none() {
            self.open_existing_or_new(len, now)?;
        }
        if self.size + len > max {
            self.rotate(now)?;
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("no file"))?;
        let result = file.write_all(line);
        // On a partial write lumberjack counts what was written; the size is re-read on the
        // next open instead, so an error closes the file.
        match result {
            Ok(()) => self.size += len,
            Err(_) => self.file = None,
        }
        result
    }

    fn open_existing_or_new(&mut self, len: u64, now: OffsetDateTime) -> io::Result<()> {
        match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.open_new(now),
            Err(e) => Err(e),
            Ok(meta) if meta.len() + len >= self.rotation.max_size_bytes => self.rotate(now),
            Ok(meta) => match OpenOptions::new().append(true).open(&self.path) {
                Ok(file) => {
                    self.file = Some(file);
                    self.size = meta.len();
                    Ok(())
                }
                Err(_) => self.open_new(now),
            },
        }
    }

    fn rotate(&mut self, now: OffsetDateTime) -> io::Result<()> {
        self.file = None;
        self.open_new(now)?;
        self.mill(now)
    }

    /// Moves the current file aside to its backup name and starts a new, empty one.
    fn open_new(&mut self, now: OffsetDateTime) -> io::Result<()> {
        let mut mode = 0o600;
        if let Ok(meta) = std::fs::metadata(&self.path) {
            mode = meta.permissions().mode() & 0o7777;
            std::fs::rename(&self.path, self.backup_name(now))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&self.path)?;
        self.file = Some(file);
        self.size = 0;
        Ok(())
    }

    /// The directory, the name before the extension, and the extension (Go's `filepath.Ext`).
    fn name_parts(&self) -> (PathBuf, String, String) {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (stem, ext) = match name.rfind('.') {
            Some(dot) => (name[..dot].to_owned(), name[dot..].to_owned()),
            None => (name, String::new()),
        };
        (dir, stem, ext)
    }

    fn backup_name(&self, now: OffsetDateTime) -> PathBuf {
        let (dir, stem, ext) = self.name_parts();
        let stamp = now
            .to_offset(time::UtcOffset::UTC)
            .format(BACKUP_TIME_FORMAT)
            .unwrap_or_default();
        dir.join(format!("{stem}-{stamp}{ext}"))
    }

    /// Removes and compresses backups as lumberjack's `millRunOnce`.
    fn mill(&self, now: OffsetDateTime) -> io::Result<()> {
        let rotation = &self.rotation;
        if rotation.max_backups == 0 && rotation.max_age_days == 0 && !rotation.compress {
            return Ok(());
        }
        let (dir, stem, ext) = self.name_parts();
        let prefix = format!("{stem}-");
        let mut backups: Vec<(OffsetDateTime, OsString)> = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name();
            let Some(text) = name.to_str() else { continue };
            let stamp = text.strip_prefix(&prefix).and_then(|rest| {
                rest.strip_suffix(&format!("{ext}.gz"))
                    .or_else(|| rest.strip_suffix(ext.as_str()))
            });
            if let Some(at) = stamp.and_then(parse_backup_time) {
                backups.push((at, name));
            }
        }
        // Newest first.
        backups.sort_by_key(|(at, _)| std::cmp::Reverse(*at));

        let mut remove = Vec::new();
        if rotation.max_backups > 0 && rotation.max_backups < backups.len() {
            // A backup and its compressed copy count once.
            let mut kept_names = std::collections::HashSet::new();
            let mut remaining = Vec::new();
            for (at, name) in backups {
                let text = name.to_string_lossy();
                kept_names.insert(text.trim_end_matches(".gz").to_owned());
                if kept_names.len() > rotation.max_backups {
                    remove.push(name);
                } else {
                    remaining.push((at, name));
                }
            }
            backups = remaining;
        }
        if rotation.max_age_days > 0 {
            let cutoff = now - time::Duration::days(rotation.max_age_days as i64);
            let (old, young): (Vec<_>, Vec<_>) =
                backups.into_iter().partition(|(at, _)| *at < cutoff);
            remove.extend(old.into_iter().map(|(_, name)| name));
            backups = young;
        }
        let mut first_error = None;
        for name in remove {
            if let Err(e) = std::fs::remove_file(dir.join(name)) {
                first_error.get_or_insert(e);
            }
        }
        if rotation.compress {
            for (_, name) in backups {
                if !name.to_string_lossy().ends_with(".gz") {
                    if let Err(e) = compress(&dir.join(name)) {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl LineSink for RotatingFile {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.write_at(line, OffsetDateTime::now_utc())
    }
}

/// Parses lumberjack's backup time (`2006-01-02T15-04-05.000`, UTC).
fn parse_backup_time(text: &str) -> Option<OffsetDateTime> {
    let b = text.as_bytes();
    if b.len() != 23
        || [4, 7].iter().any(|&i| b[i] != b'-')
        || b[10] != b'T'
        || [13, 16].iter().any(|&i| b[i] != b'-')
        || b[19] != b'.'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(num(0..4)?).ok()?, month, num(8..10)? as u8)
            .ok()?;
    let clock = time::Time::from_hms_milli(
        num(11..13)? as u8,
        num(14..16)? as u8,
        num(17..19)? as u8,
        num(20..23)? as u16,
    )
    .ok()?;
    Some(date.with_time(clock).assume_utc())
}

/// Gzips `path` to `path.gz` with the same mode and removes `path`, as lumberjack's
/// `compressLogFile` (a partial `.gz` is removed on error).
fn compress(path: &Path) -> io::Result<()> {
    let mut gz_name = path.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz_path = PathBuf::from(gz_name);
    let mut source = File::open(path)?;
    let mode = source.metadata()?.mode() & 0o7777;
    let result = (|| {
        let target = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&gz_path)?;
        let mut encoder = flate2::write::GzEncoder::new(target, flate2::Compression::default());
        io::copy(&mut source, &mut encoder)?;
        encoder.finish()?.sync_all()
    })();
    match result {
        Ok(()) => std::fs::remove_file(path),
        Err(e) => {
            let _ = std::fs::remove_file(&gz_path);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::atomic::Ordering;
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    use super::*;
    use crate::audit::backend::testing::event;
    use crate::audit::event::UserInfo;
    use crate::audit::policy::Level;
    use crate::config::audit::{BatchSettings, Mode};

    fn settings(destination: LogDestination, format: LogFormat) -> LogBackendSettings {
        LogBackendSettings {
            destination,
            format,
            rotation: RotationSettings {
                max_size_bytes: 100 * 1024 * 1024,
                max_backups: 0,
                max_age_days: 0,
                compress: false,
            },
            mode: Mode::Blocking,
            batch: BatchSettings {
                buffer_size: 100,
                max_size: 1,
                max_wait: Duration::ZERO,
                throttle: None,
            },
            truncate: None,
        }
    }

    fn deadline() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(10)
    }

    fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn json_lines_parse_back_into_the_events_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dirs/audit.log");
        let backend = LogBackend::start(&settings(
            LogDestination::File(path.clone()),
            LogFormat::Json,
        ))
        .unwrap();
        // Created at start, with kube-apiserver's modes.
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        for id in ["a", "b", "c"] {
            backend.process(Arc::new(event(id, Level::Metadata)));
        }
        backend.shutdown(deadline()).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (line, id) in lines.iter().zip(["a", "b", "c"]) {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(json["auditID"], id);
            assert_eq!(json["kind"], "Event");
            assert_eq!(json["user"]["username"], "alice@example.com");
        }
        let counters = backend.counters();
        assert_eq!(counters.backend, "log");
        assert_eq!(load(&counters.written), 3);
        assert_eq!(load(&counters.dropped), 0);
        // After shutdown, events are dropped and counted.
        backend.process(Arc::new(event("late", Level::Metadata)));
        assert_eq!(load(&counters.dropped), 1);
    }

    #[test]
    fn legacy_lines_are_kube_apiservers_event_string() {
        let mut e = event("id-1", Level::Metadata);
        e.user.groups = vec!["dev".into(), "a\"b".into()];
        assert_eq!(
            event_string(&e),
            "2024-05-01T10:00:00.1234Z AUDIT: id=\"id-1\" stage=\"ResponseComplete\" \
             ip=\"10.0.0.1\" method=\"list\" user=\"alice@example.com\" \
             groups=\"\\\"dev\\\",\\\"a\\\\\\\"b\\\"\" as=\"<self>\" asgroups=\"<lookup>\" \
             user-agent=\"kubectl/v1.33.0\" namespace=\"default\" \
             uri=\"/api/v1/namespaces/default/pods?limit=500\" response=\"200\""
        );
        e.user = UserInfo::default();
        e.impersonated_user = Some(UserInfo {
            username: "bob".into(),
            ..UserInfo::default()
        });
        e.object_ref = None;
        e.response_status = None;
        e.source_ips.clear();
        e.request_received_timestamp = "2024-05-01T10:00:00.000000Z".into();
        assert_eq!(
            event_string(&e),
            "2024-05-01T10:00:00Z AUDIT: id=\"id-1\" stage=\"ResponseComplete\" \
             ip=\"<unknown>\" method=\"list\" user=\"<none>\" groups=\"<none>\" as=\"bob\" \
             asgroups=\"<lookup>\" user-agent=\"kubectl/v1.33.0\" namespace=\"<none>\" \
             uri=\"/api/v1/namespaces/default/pods?limit=500\" response=\"<deferred>\""
        );
    }

    #[tokio::test]
    async fn legacy_format_writes_one_text_line_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let backend = LogBackend::start(&settings(
            LogDestination::File(path.clone()),
            LogFormat::Legacy,
        ))
        .unwrap();
        backend.process(Arc::new(event("x", Level::Metadata)));
        backend.shutdown(deadline()).await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("{}\n", event_string(&event("x", Level::Metadata)))
        );
    }

    fn rotation(max_size_bytes: u64, max_backups: usize, compress: bool) -> RotationSettings {
        RotationSettings {
            max_size_bytes,
            max_backups,
            max_age_days: 0,
            compress,
        }
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn rotation_by_size_keeps_maxbackup_newest_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = RotatingFile::create(&path, rotation(100, 2, false)).unwrap();
        // 40-byte lines: two fit in 100 bytes, the third rotates.
        let line = |i: usize| format!("{i:039}\n");
        for i in 0..7 {
            file.write_at(line(i).as_bytes(), at(i as i64)).unwrap();
        }
        // Rotations happened at writes 2, 4 and 6; the oldest backup (lines 0-1) was pruned.
        assert_eq!(
            names(dir.path()),
            [
                "audit-2023-11-14T22-13-24.000.log",
                "audit-2023-11-14T22-13-26.000.log",
                "audit.log"
            ]
        );
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(
            read("audit-2023-11-14T22-13-24.000.log"),
            line(2) + &line(3)
        );
        assert_eq!(
            read("audit-2023-11-14T22-13-26.000.log"),
            line(4) + &line(5)
        );
        assert_eq!(read("audit.log"), line(6));
        assert_eq!(
            std::fs::metadata(dir.path().join("audit-2023-11-14T22-13-26.000.log"))
                .unwrap()
                .mode()
                & 0o777,
            0o600
        );
        // A line larger than the maximum is refused, and nothing rotates for it.
        assert!(file.write_at(&[b'x'; 101], at(10)).is_err());
        assert_eq!(names(dir.path()).len(), 3);
    }

    #[test]
    fn an_existing_file_is_appended_to_until_it_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut file = RotatingFile::create(&path, rotation(10, 0, false)).unwrap();
        file.write_at(b"new\n", at(0)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\nnew\n");
        file.write_at(b"more\n", at(1)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "more\n");
        assert_eq!(names(dir.path()).len(), 2);
    }

    #[test]
    fn compressed_backups_are_gzip_of_the_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = RotatingFile::create(&path, rotation(100, 0, true)).unwrap();
        for i in 0..5 {
            file.write_at(format!("{i:039}\n").as_bytes(), at(i))
                .unwrap();
        }
        assert_eq!(
            names(dir.path()),
            [
                "audit-2023-11-14T22-13-22.000.log.gz",
                "audit-2023-11-14T22-13-24.000.log.gz",
                "audit.log"
            ]
        );
        let gz = File::open(dir.path().join("audit-2023-11-14T22-13-22.000.log.gz")).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, format!("{:039}\n{:039}\n", 0, 1));
    }

    #[test]
    fn backups_older_than_maxage_are_removed_by_the_time_in_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        for name in [
            "audit-2023-11-01T00-00-00.000.log", // 13 days before `at(0)`: removed
            "audit-2023-11-01T00-00-00.001.log.gz", // compressed and old: removed
            "audit-2023-11-14T00-00-00.000.log", // same day: kept
            "audit-notatime.log",                // not a backup: kept
            "other-2023-11-01T00-00-00.000.log", // another log's backup: kept
        ] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        let mut file = RotatingFile::create_at(
            &path,
            RotationSettings {
                max_size_bytes: 10,
                max_backups: 0,
                max_age_days: 2,
                compress: false,
            },
            at(0),
        )
        .unwrap();
        // Pruned at creation; rotate once more.
        file.write_at(b"12345678\n", at(0)).unwrap();
        file.write_at(b"12345678\n", at(1)).unwrap();
        assert_eq!(
            names(dir.path()),
            [
                "audit-2023-11-14T00-00-00.000.log",
                "audit-2023-11-14T22-13-21.000.log",
                "audit-notatime.log",
                "audit.log",
                "other-2023-11-01T00-00-00.000.log",
            ]
        );
    }

    #[test]
    fn backup_times_parse_only_in_lumberjacks_layout() {
        assert_eq!(parse_backup_time("2023-11-14T22-13-21.000"), Some(at(1)));
        for bad in [
            "2023-11-14T22:13:21.000",
            "2023-13-14T22-13-21.000",
            "2023-11-14T22-13-21",
            "2023-11-14T22-13-21.0000",
            "+023-11-14T22-13-21.000",
        ] {
            assert_eq!(parse_backup_time(bad), None, "{bad}");
        }
    }

    /// A sink that signals each line it takes and then waits for permission to finish it.
    struct GatedSink {
        entered: std_mpsc::Sender<()>,
        gate: std_mpsc::Receiver<()>,
    }

    impl LineSink for GatedSink {
        fn write_line(&mut self, _line: &[u8]) -> io::Result<()> {
            let _ = self.entered.send(());
            let _ = self.gate.recv();
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_without_blocking() {
        let (entered_tx, entered) = std_mpsc::channel();
        let (open, gate) = std_mpsc::channel();
        let mut config = settings(LogDestination::Stdout, LogFormat::Json);
        config.batch.buffer_size = 2;
        let backend = LogBackend::with_sink(
            &config,
            Box::new(GatedSink {
                entered: entered_tx,
                gate,
            }),
        )
        .unwrap();
        backend.process(Arc::new(event("first", Level::Metadata)));
        // The writer holds the first event; two more fit in the buffer, eight do not.
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        for i in 0..10 {
            backend.process(Arc::new(event(&i.to_string(), Level::Metadata)));
        }
        let counters = backend.counters();
        assert_eq!(load(&counters.dropped), 8);
        for _ in 0..3 {
            open.send(()).unwrap();
        }
        backend.shutdown(deadline()).await;
        assert_eq!(load(&counters.written), 3);
        assert_eq!(load(&counters.dropped), 8);
    }

    struct FailingSink;

    impl LineSink for FailingSink {
        fn write_line(&mut self, _line: &[u8]) -> io::Result<()> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
    }

    #[tokio::test]
    async fn write_errors_are_counted_and_the_writer_goes_on() {
        let backend = LogBackend::with_sink(
            &settings(LogDestination::Stdout, LogFormat::Json),
            Box::new(FailingSink),
        )
        .unwrap();
        for id in ["a", "b"] {
            backend.process(Arc::new(event(id, Level::Metadata)));
        }
        backend.shutdown(deadline()).await;
        let counters = backend.counters();
        assert_eq!(load(&counters.errors), 2);
        assert_eq!(load(&counters.written), 0);
    }

    #[tokio::test]
    async fn truncation_applies_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut config = settings(LogDestination::File(path.clone()), LogFormat::Json);
        config.truncate = Some(crate::config::audit::TruncateSettings {
            max_event_size: 2000,
            max_batch_size: 10_000,
        });
        let backend = LogBackend::start(&config).unwrap();
        let mut big = event("big", Level::Request);
        big.request_object = Some(crate::audit::backend::testing::object(5000));
        let mut huge = event("huge", Level::Metadata);
        huge.annotations.insert("a".into(), "y".repeat(5000));
        backend.process(Arc::new(big));
        backend.process(Arc::new(huge));
        backend.shutdown(deadline()).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["auditID"], "big");
        assert_eq!(lines[0]["annotations"]["audit.k8s.io/truncated"], "true");
        assert_eq!(load(&backend.counters().dropped), 1);
    }
}
