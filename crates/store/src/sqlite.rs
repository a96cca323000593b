//! The embedded default: one SQLite database in WAL mode under the data dir.
use crate::{Store, StoreError};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

/// Opens a connection with the settings every Nimbus connection uses: WAL so readers
/// never block the writer, NORMAL sync (durable across process crashes such as
/// `kill -9`; an OS crash may lose the last transactions), a busy timeout.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = open_connection(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS documents (
                collection TEXT NOT NULL,
                key TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (collection, key)
            ) WITHOUT ROWID;",
        )?;
        Ok(SqliteStore { conn: Mutex::new(conn) })
    }
}

impl Store for SqliteStore {
    fn put(&self, collection: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn.lock().execute(
            "INSERT INTO documents (collection, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value",
            params![collection, key, value],
        )?;
        Ok(())
    }

    fn get(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .lock()
            .query_row(
                "SELECT value FROM documents WHERE collection = ?1 AND key = ?2",
                params![collection, key],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn delete(&self, collection: &str, key: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .lock()
            .execute("DELETE FROM documents WHERE collection = ?1 AND key = ?2", params![collection, key])?;
        Ok(n > 0)
    }

    fn list(&self, collection: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare_cached("SELECT key, value FROM documents WHERE collection = ?1 ORDER BY key")?;
        let rows = stmt.query_map(params![collection], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.put("functions", "b", b"two").unwrap();
            s.put("functions", "a", b"one").unwrap();
            s.put("functions", "a", b"uno").unwrap();
            s.put("other", "a", b"x").unwrap();
            assert!(s.delete("other", "a").unwrap());
            assert!(!s.delete("other", "a").unwrap());
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get("functions", "a").unwrap().as_deref(), Some(&b"uno"[..]));
        let keys: Vec<_> = s.list("functions").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(s.list("other").unwrap().is_empty());
    }
}
