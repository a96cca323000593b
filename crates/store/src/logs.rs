//! The log store behind CloudWatch Logs: groups, streams and events in SQLite.
//!
//! Writers never wait for the disk: events go over a channel to one writer thread that
//! commits them in batches (thousands of events per transaction). Readers call `flush`
//! first, so what a function printed before its invoke returned is always readable.
use crate::StoreError;
use crate::sqlite::open_connection;
use parking_lot::Mutex;
use rusqlite::{Connection, params};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// One log line. `scope` is `account:region`, so groups are per account and region as in AWS.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub scope: std::sync::Arc<str>,
    pub group: std::sync::Arc<str>,
    pub stream: std::sync::Arc<str>,
    pub timestamp_ms: i64,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct LogGroupInfo {
    pub name: String,
    pub created_ms: i64,
    pub stored_bytes: i64,
    pub retention_days: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct LogStreamInfo {
    pub name: String,
    pub created_ms: i64,
    pub first_event_ms: Option<i64>,
    pub last_event_ms: Option<i64>,
    pub last_ingestion_ms: Option<i64>,
    pub stored_bytes: i64,
}

/// A page of events plus the ids that make AWS's forward/backward tokens.
#[derive(Debug, Clone)]
pub struct EventsPage {
    /// (id, timestamp, ingestion time, message), oldest first.
    pub events: Vec<(i64, i64, i64, String)>,
    pub first_id: i64,
    pub last_id: i64,
}

/// A write run on the writer thread, inside its batch transaction; its result (rows
/// changed) goes back on the channel.
type WriteFn = Box<dyn FnOnce(&rusqlite::Transaction) -> Result<usize, rusqlite::Error> + Send>;

enum Command {
    Append(LogEvent),
    Write(WriteFn, mpsc::Sender<Result<usize, String>>),
    Flush(mpsc::Sender<()>),
}

/// One event found by `filter_events`.
#[derive(Debug, Clone)]
pub struct FoundEvent {
    pub id: i64,
    pub stream: String,
    pub timestamp_ms: i64,
    pub ingestion_ms: i64,
    pub message: String,
}

pub struct LogStore {
    tx: Mutex<mpsc::Sender<Command>>,
    reader: Mutex<Connection>,
    /// Appends queued and appends committed: a flush with nothing pending returns at once.
    queued: Arc<AtomicU64>,
    committed: Arc<AtomicU64>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log_groups (
    scope TEXT NOT NULL, name TEXT NOT NULL, created_ms INTEGER NOT NULL,
    retention_days INTEGER, stored_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_streams (
    scope TEXT NOT NULL, grp TEXT NOT NULL, name TEXT NOT NULL, created_ms INTEGER NOT NULL,
    first_ts INTEGER, last_ts INTEGER, last_ingestion_ms INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, grp, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL, grp TEXT NOT NULL,
    stream TEXT NOT NULL, ts INTEGER NOT NULL, ingestion_ms INTEGER NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (scope, grp, stream, id);
";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl LogStore {
    pub fn open(path: &Path) -> Result<LogStore, StoreError> {
        let writer = open_connection(path)?;
        writer.execute_batch(SCHEMA)?;
        let reader = open_connection(path)?;
        let (tx, rx) = mpsc::channel();
        let committed = Arc::new(AtomicU64::new(0));
        let done = committed.clone();
        std::thread::Builder::new()
            .name("nimbus-log-writer".into())
            .spawn(move || writer_loop(writer, rx, done))?;
        Ok(LogStore {
            tx: Mutex::new(tx),
            reader: Mutex::new(reader),
            queued: Arc::new(AtomicU64::new(0)),
            committed,
        })
    }

    /// Queues an event; its group and stream are created on first use, as Lambda does.
    pub fn append(&self, event: LogEvent) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        // A send only fails once the writer thread is gone (process shutting down).
        let _ = self.tx.lock().send(Command::Append(event));
    }

    /// Runs `f` on the writer thread (after everything queued before it) and waits.
    fn write(&self, f: WriteFn) -> Result<usize, StoreError> {
        let (ack, done) = mpsc::channel();
        self.tx.lock().send(Command::Write(f, ack)).map_err(|_| StoreError::WriterGone)?;
        done.recv().map_err(|_| StoreError::WriterGone)?.map_err(StoreError::Corrupt)
    }

    /// Creates a group explicitly; false if it already existed.
    pub fn create_group(&self, scope: &str, group: &str) -> Result<bool, StoreError> {
        let (scope, group, now) = (scope.to_string(), group.to_string(), now_ms());
        let n = self.write(Box::new(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO log_groups (scope, name, created_ms) VALUES (?1, ?2, ?3)",
                params![scope, group, now],
            )
        }))?;
        Ok(n > 0)
    }

    /// Creates a stream in an existing group: Ok(None) if the group is missing,
    /// Ok(Some(false)) if the stream already exists.
    pub fn create_stream(&self, scope: &str, group: &str, stream: &str) -> Result<Option<bool>, StoreError> {
        if !self.group_exists(scope, group)? {
            return Ok(None);
        }
        let (scope, group, stream, now) =
            (scope.to_string(), group.to_string(), stream.to_string(), now_ms());
        let n = self.write(Box::new(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO log_streams (scope, grp, name, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![scope, group, stream, now],
            )
        }))?;
        Ok(Some(n > 0))
    }

    /// Deletes a group with its streams and events; false if it did not exist.
    pub fn delete_group(&self, scope: &str, group: &str) -> Result<bool, StoreError> {
        self.flush()?;
        let (scope, group) = (scope.to_string(), group.to_string());
        let n = self.write(Box::new(move |tx| {
            tx.execute("DELETE FROM log_events WHERE scope = ?1 AND grp = ?2", params![scope, group])?;
            tx.execute("DELETE FROM log_streams WHERE scope = ?1 AND grp = ?2", params![scope, group])?;
            tx.execute("DELETE FROM log_groups WHERE scope = ?1 AND name = ?2", params![scope, group])
        }))?;
        Ok(n > 0)
    }

    /// Deletes one stream and its events; false if it did not exist.
    pub fn delete_stream(&self, scope: &str, group: &str, stream: &str) -> Result<bool, StoreError> {
        self.flush()?;
        let (scope, group, stream) = (scope.to_string(), group.to_string(), stream.to_string());
        let n = self.write(Box::new(move |tx| {
            tx.execute(
                "DELETE FROM log_events WHERE scope = ?1 AND grp = ?2 AND stream = ?3",
                params![scope, group, stream],
            )?;
            tx.execute(
                "DELETE FROM log_streams WHERE scope = ?1 AND grp = ?2 AND name = ?3",
                params![scope, group, stream],
            )
        }))?;
        Ok(n > 0)
    }

    /// Sets (or with `None` removes) a group's retention and drops events older than it.
    /// False if the group does not exist.
    pub fn set_retention(&self, scope: &str, group: &str, days: Option<i64>) -> Result<bool, StoreError> {
        self.flush()?;
        let (scope, group) = (scope.to_string(), group.to_string());
        let cutoff = days.map(|d| now_ms() - d * 86_400_000);
        let n = self.write(Box::new(move |tx| {
            let n = tx.execute(
                "UPDATE log_groups SET retention_days = ?3 WHERE scope = ?1 AND name = ?2",
                params![scope, group, days],
            )?;
            if let Some(cutoff) = cutoff {
                tx.execute(
                    "DELETE FROM log_events WHERE scope = ?1 AND grp = ?2 AND ts < ?3",
                    params![scope, group, cutoff],
                )?;
            }
            Ok(n)
        }))?;
        Ok(n > 0)
    }

    pub fn group_exists(&self, scope: &str, group: &str) -> Result<bool, StoreError> {
        self.flush()?;
        Ok(self.reader.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM log_groups WHERE scope = ?1 AND name = ?2)",
            params![scope, group],
            |r| r.get(0),
        )?)
    }

    /// Events of a group across streams (all, or those named), after event id
    /// `after_id`, in ingestion order; the caller filters messages.
    #[allow(clippy::too_many_arguments)]
    pub fn filter_events(
        &self,
        scope: &str,
        group: &str,
        streams: Option<&[String]>,
        stream_prefix: Option<&str>,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<FoundEvent>, StoreError> {
        self.flush()?;
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, stream, ts, ingestion_ms, message FROM log_events
             WHERE scope = ?1 AND grp = ?2 AND ts >= ?3 AND ts <= ?4 AND id > ?5
               AND substr(stream, 1, length(?6)) = ?6
             ORDER BY id LIMIT ?7",
        )?;
        let rows = stmt.query_map(
            params![
                scope,
                group,
                start_ms.unwrap_or(i64::MIN),
                end_ms.unwrap_or(i64::MAX),
                after_id,
                stream_prefix.unwrap_or(""),
                limit as i64
            ],
            |r| {
                Ok(FoundEvent {
                    id: r.get(0)?,
                    stream: r.get(1)?,
                    timestamp_ms: r.get(2)?,
                    ingestion_ms: r.get(3)?,
                    message: r.get(4)?,
                })
            },
        )?;
        let mut out: Vec<FoundEvent> = rows.collect::<Result<_, _>>()?;
        if let Some(names) = streams {
            out.retain(|e| names.contains(&e.stream));
        }
        Ok(out)
    }

    /// Waits until every event appended before this call is committed.
    pub fn flush(&self) -> Result<(), StoreError> {
        if self.committed.load(Ordering::SeqCst) >= self.queued.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (ack, done) = mpsc::channel();
        self.tx.lock().send(Command::Flush(ack)).map_err(|_| StoreError::WriterGone)?;
        done.recv().map_err(|_| StoreError::WriterGone)
    }

    pub fn groups(&self, scope: &str, prefix: &str) -> Result<Vec<LogGroupInfo>, StoreError> {
        self.flush()?;
        let conn = self.reader.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT name, created_ms, retention_days, stored_bytes
             FROM log_groups WHERE scope = ?1 AND substr(name, 1, length(?2)) = ?2 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![scope, prefix], |r| {
            Ok(LogGroupInfo {
                name: r.get(0)?,
                created_ms: r.get(1)?,
                retention_days: r.get(2)?,
                stored_bytes: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Streams of a group, or `None` when the group does not exist.
    pub fn streams(&self, scope: &str, group: &str) -> Result<Option<Vec<LogStreamInfo>>, StoreError> {
        self.flush()?;
        let conn = self.reader.lock();
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM log_groups WHERE scope = ?1 AND name = ?2)",
            params![scope, group],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(None);
        }
        let mut stmt = conn.prepare_cached(
            "SELECT name, created_ms, first_ts, last_ts, last_ingestion_ms, stored_bytes
             FROM log_streams WHERE scope = ?1 AND grp = ?2 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![scope, group], |r| {
            Ok(LogStreamInfo {
                name: r.get(0)?,
                created_ms: r.get(1)?,
                first_event_ms: r.get(2)?,
                last_event_ms: r.get(3)?,
                last_ingestion_ms: r.get(4)?,
                stored_bytes: r.get(5)?,
            })
        })?;
        Ok(Some(rows.collect::<Result<_, _>>()?))
    }

    /// Events of one stream. `after_id`/`before_id` come from pagination tokens;
    /// `from_head` picks the oldest `limit` events, otherwise the newest.
    #[allow(clippy::too_many_arguments)]
    pub fn events(
        &self,
        scope: &str,
        group: &str,
        stream: &str,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        after_id: Option<i64>,
        before_id: Option<i64>,
        limit: usize,
        from_head: bool,
    ) -> Result<EventsPage, StoreError> {
        self.flush()?;
        let conn = self.reader.lock();
        let order = if from_head { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT id, ts, ingestion_ms, message FROM log_events
             WHERE scope = ?1 AND grp = ?2 AND stream = ?3 AND ts >= ?4 AND ts < ?5 AND id > ?6 AND id < ?7
             ORDER BY id {order} LIMIT ?8"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                scope,
                group,
                stream,
                start_ms.unwrap_or(i64::MIN),
                end_ms.unwrap_or(i64::MAX),
                after_id.unwrap_or(0),
                before_id.unwrap_or(i64::MAX),
                limit as i64
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let mut events: Vec<(i64, i64, i64, String)> = rows.collect::<Result<_, _>>()?;
        if !from_head {
            events.reverse();
        }
        let first_id = events.first().map(|e| e.0).unwrap_or(after_id.unwrap_or(0) + 1);
        let last_id = events.last().map(|e| e.0).unwrap_or(first_id - 1);
        Ok(EventsPage { events, first_id, last_id })
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Command>, committed: Arc<AtomicU64>) {
    let mut known_streams: HashSet<(std::sync::Arc<str>, std::sync::Arc<str>, std::sync::Arc<str>)> =
        HashSet::new();
    while let Ok(first) = rx.recv() {
        // Take everything queued now into one transaction.
        let mut batch = vec![first];
        while batch.len() < 10_000 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let appends = batch.iter().filter(|c| matches!(c, Command::Append(_))).count() as u64;
        if let Err(e) = write_batch(&mut conn, batch, &mut known_streams, &mut acks) {
            tracing::error!("log store write failed: {e}");
            known_streams.clear();
        }
        committed.fetch_add(appends, Ordering::SeqCst);
        for ack in acks {
            let _ = ack.send(());
        }
        // Let the next batch accumulate: while this thread sleeps, appends are plain queue
        // pushes with no wake-up, so a busy server pays one wake per batch, not per line.
        // (A reader's flush waits at most this long.)
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// (scope, group, stream)
type StreamKey = (std::sync::Arc<str>, std::sync::Arc<str>, std::sync::Arc<str>);

fn write_batch(
    conn: &mut Connection,
    batch: Vec<Command>,
    known: &mut HashSet<(std::sync::Arc<str>, std::sync::Arc<str>, std::sync::Arc<str>)>,
    acks: &mut Vec<mpsc::Sender<()>>,
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    let ingestion = now_ms();
    // Per-stream (first ts, last ts, bytes) of this batch, applied once per stream, so
    // listings never scan events.
    let mut stats: std::collections::HashMap<StreamKey, (i64, i64, i64)> = Default::default();
    for cmd in batch {
        match cmd {
            Command::Append(ev) => {
                let key = (ev.scope.clone(), ev.group.clone(), ev.stream.clone());
                if !known.contains(&key) {
                    tx.execute(
                        "INSERT OR IGNORE INTO log_groups (scope, name, created_ms) VALUES (?1, ?2, ?3)",
                        params![&*ev.scope, &*ev.group, ingestion],
                    )?;
                    tx.execute(
                        "INSERT OR IGNORE INTO log_streams (scope, grp, name, created_ms) VALUES (?1, ?2, ?3, ?4)",
                        params![&*ev.scope, &*ev.group, &*ev.stream, ingestion],
                    )?;
                    known.insert(key.clone());
                }
                tx.prepare_cached(
                    "INSERT INTO log_events (scope, grp, stream, ts, ingestion_ms, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![&*ev.scope, &*ev.group, &*ev.stream, ev.timestamp_ms, ingestion, ev.message])?;
                let st = stats.entry(key).or_insert((i64::MAX, i64::MIN, 0));
                st.0 = st.0.min(ev.timestamp_ms);
                st.1 = st.1.max(ev.timestamp_ms);
                st.2 += ev.message.len() as i64;
            }
            Command::Write(f, ack) => {
                let _ = ack.send(f(&tx).map_err(|e| e.to_string()));
            }
            Command::Flush(ack) => acks.push(ack),
        }
    }
    for ((scope, group, stream), (first, last, bytes)) in stats {
        tx.prepare_cached(
            "UPDATE log_streams SET first_ts = MIN(COALESCE(first_ts, ?4), ?4), last_ts = MAX(COALESCE(last_ts, ?5), ?5),
             last_ingestion_ms = ?6, stored_bytes = stored_bytes + ?7 WHERE scope = ?1 AND grp = ?2 AND name = ?3",
        )?
        .execute(params![&*scope, &*group, &*stream, first, last, ingestion, bytes])?;
        tx.prepare_cached(
            "UPDATE log_groups SET stored_bytes = stored_bytes + ?3 WHERE scope = ?1 AND name = ?2",
        )?
        .execute(params![&*scope, &*group, bytes])?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(stream: &str, ts: i64, msg: &str) -> LogEvent {
        LogEvent {
            scope: "000000000000:us-east-1".into(),
            group: "/aws/lambda/f".into(),
            stream: stream.into(),
            timestamp_ms: ts,
            message: msg.into(),
        }
    }

    #[test]
    fn appends_are_readable_after_flush_and_paginate() {
        let dir = tempfile::tempdir().unwrap();
        let logs = LogStore::open(&dir.path().join("state.db")).unwrap();
        for i in 0..25 {
            logs.append(ev("s1", i, &format!("line {i}\n")));
        }
        logs.append(ev("s2", 5, "other\n"));
        let scope = "000000000000:us-east-1";
        let groups = logs.groups(scope, "/aws/lambda/").unwrap();
        assert_eq!(groups.len(), 1);
        let streams = logs.streams(scope, "/aws/lambda/f").unwrap().unwrap();
        assert_eq!(streams.len(), 2);
        assert!(logs.streams(scope, "/nope").unwrap().is_none());
        let head = logs.events(scope, "/aws/lambda/f", "s1", None, None, None, None, 10, true).unwrap();
        assert_eq!(head.events.len(), 10);
        assert_eq!(head.events[0].3, "line 0\n");
        let next = logs
            .events(scope, "/aws/lambda/f", "s1", None, None, Some(head.last_id), None, 100, true)
            .unwrap();
        assert_eq!(next.events.len(), 15);
        let tail = logs.events(scope, "/aws/lambda/f", "s1", None, None, None, None, 5, false).unwrap();
        assert_eq!(tail.events.last().unwrap().3, "line 24\n");
        assert_eq!(tail.events[0].3, "line 20\n");
        assert!(logs.create_group(scope, "/custom").unwrap());
        assert!(!logs.create_group(scope, "/custom").unwrap());
    }
}
