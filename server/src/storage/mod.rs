//! Store: where acknowledged batches and releases live. Exactly two implementations —
//! [`sqlite::SqliteStorage`] (embedded, the default) and [`postgres::PostgresStorage`] (for
//! several stateless servers in front of one database) — with one migration history each
//! (`server/migrations/{sqlite,postgres}`) and one test suite run against both.
//!
//! Nothing here knows HTTP. What is stored per batch: the study and version, the contributor's
//! random pseudonym, the batch key, the day it arrived, and the privatized reports as sent.
//! No IP address, user agent or time of day.

pub mod postgres;
pub mod sqlite;

use serde::{Deserialize, Serialize};

/// A validated batch, ready to store.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub study_id: String,
    pub study_version: String,
    pub contributor: String,
    pub idempotency_key: String,
    /// SHA-256 of the batch as received: a retry must carry the same content.
    pub digest: String,
    pub reports: u32,
    /// The study's cap on reports per contributor.
    pub cap: u32,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// The reports, as JSON.
    pub body: String,
    /// The nonces of the batch's contribution tokens (hexadecimal; none for an open study),
    /// spent when the batch is stored.
    pub token_nonces: Vec<String>,
}

/// What the server promises once a batch is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The batch's position in the store.
    pub receipt: i64,
    pub study_id: String,
    pub idempotency_key: String,
    pub reports: u32,
    pub day: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored(Receipt),
    /// The same batch again (a retry): acknowledged with the original receipt, not stored twice.
    Replayed(Receipt),
    /// The key was used before for a different batch.
    KeyConflict,
    /// Storing it would take the contributor past the study's cap.
    OverCap {
        stored: u32,
        cap: u32,
    },
    /// One of its tokens was spent before: nothing of the batch is stored.
    TokenSpent,
}

/// What redeeming an invitation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// Redeemed now, for this request.
    Redeemed,
    /// Redeemed before for the very same request (a retry): the same signatures may be given.
    Retried,
    /// Redeemed before for another request.
    Spent,
    /// No such invitation for the study.
    Unknown,
}

/// One stored batch, as analysis reads it.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    pub contributor: String,
    pub day: i64,
    pub body: String,
}

/// How many contributors stored how many reports in a study version: reports → contributors.
pub type ContributorsByReports = std::collections::BTreeMap<u32, u64>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    pub id: String,
    pub study_id: String,
    pub created: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("the database schema is at version {found}, newer than this server knows ({known}); upgrade the server")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("a release with id {0} exists already; releases are immutable")]
    ReleaseExists(String),
    #[error("{0}")]
    Other(String),
}

impl StorageError {
    /// What may be logged: the kind of failure, never the database's own message, which can
    /// quote values of the rows involved (a batch key, a pseudonym).
    pub fn redacted(&self) -> String {
        match self {
            StorageError::Sqlite(e) => format!("SQLite error {:?}", e.sqlite_error_code()),
            StorageError::Postgres(e) => {
                format!(
                    "PostgreSQL error {}",
                    e.code().map_or("(no SQLSTATE: connection)", |c| c.code())
                )
            }
            other => other.to_string(),
        }
    }
}

/// The operations the server needs from a database. Each call is blocking: the HTTP layer calls
/// them from its blocking pool or from the ingest writer thread.
pub trait Storage: Send + Sync {
    /// Stores the batches in one transaction (group commit) and returns one outcome each, in
    /// order. When this returns `Ok`, every `Stored` batch is durable.
    fn store(&self, batches: &[NewBatch]) -> Result<Vec<StoreOutcome>, StorageError>;
    /// Visits every batch stored for a study version, in the order they were stored, and
    /// returns how many contributors stored how many reports, read in the same snapshot (a
    /// batch stored meanwhile is in neither or both).
    fn batches(
        &self,
        study_id: &str,
        study_version: &str,
        visit: &mut dyn FnMut(StoredBatch),
    ) -> Result<ContributorsByReports, StorageError>;
    /// The receipt of the batch stored under `idempotency_key` when its digest is `digest`
    /// (an exact retry), whatever the study's version is now.
    fn stored_receipt(
        &self,
        study_id: &str,
        idempotency_key: &str,
        digest: &str,
    ) -> Result<Option<Receipt>, StorageError>;
    /// (batches, reports) stored for a study version.
    fn totals(&self, study_id: &str, study_version: &str) -> Result<(u64, u64), StorageError>;
    /// Stores a signed release and, kept by the server alone, the digest of the batches it
    /// counted; an existing id is an error (releases are immutable).
    fn insert_release(&self, summary: &ReleaseSummary, document: &str, counted: &str) -> Result<(), StorageError>;
    fn releases(&self) -> Result<Vec<ReleaseSummary>, StorageError>;
    fn release(&self, id: &str) -> Result<Option<String>, StorageError>;
    /// The digest of the batches release `id` counted (`None` for a release stored before
    /// servers kept it, or no such release).
    fn release_counted(&self, id: &str) -> Result<Option<String>, StorageError>;
    /// How many releases a study has had (to number the next).
    fn release_count(&self, study_id: &str) -> Result<u64, StorageError>;
    /// A contributor's withdrawal of the batch stored under `idempotency_key`: its reports are
    /// deleted and no longer count towards the contributor's cap, in one transaction. The row
    /// keeps the key and digest, so that a retry of the same batch is acknowledged, not stored
    /// again. `Some(reports deleted now)` (0 when withdrawn before), `None` when no such batch.
    fn withdraw(&self, study_id: &str, idempotency_key: &str) -> Result<Option<u32>, StorageError>;
    /// The study's retention: deletes every batch that arrived before `day` (days since
    /// 1970-01-01) and its count towards the contributors' caps; returns how many batches.
    fn forget_before(&self, study_id: &str, day: i64) -> Result<u64, StorageError>;
    /// Stores invitations to a study (hashes of their codes only).
    fn add_invitations(&self, study_id: &str, code_hashes: &[String]) -> Result<(), StorageError>;
    /// Marks an invitation redeemed for the request whose SHA-256 is `request` (atomically: two
    /// redemptions of one code cannot both succeed).
    fn redeem_invitation(&self, study_id: &str, code_hash: &str, request: &str) -> Result<Redemption, StorageError>;
}

/// Opens the storage a `--database` value names: `postgres://…` or `postgresql://…` for
/// PostgreSQL, anything else is a SQLite file path.
pub fn open(database: &str) -> Result<Box<dyn Storage>, StorageError> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        Ok(Box::new(postgres::PostgresStorage::open(database)?))
    } else {
        Ok(Box::new(sqlite::SqliteStorage::open(std::path::Path::new(database))?))
    }
}
