//! Durable state for Nimbus: a document store (SQLite embedded; the `Store` trait is the
//! seam for PostgreSQL), a content-addressed blob store on local disk, and the log store
//! behind CloudWatch Logs.
#![forbid(unsafe_code)]

mod blobs;
mod logs;
mod sqlite;

pub use blobs::BlobStore;
pub use logs::{EventsPage, FoundEvent, LogEvent, LogGroupInfo, LogStore, LogStreamInfo};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("log writer has stopped")]
    WriterGone,
}

/// Durable documents by (collection, key). Engines keep their own in-memory views and
/// write through; this trait is what a multi-node PostgreSQL store will implement.
pub trait Store: Send + Sync {
    fn put(&self, collection: &str, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn get(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Returns whether the key existed.
    fn delete(&self, collection: &str, key: &str) -> Result<bool, StoreError>;
    /// All documents of a collection in key order.
    fn list(&self, collection: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}
