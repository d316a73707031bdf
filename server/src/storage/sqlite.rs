//! SQLite storage, the embedded default: one file under the data directory, in WAL mode with
//! `synchronous = FULL`, so a commit is on disk before a receipt goes out. One connection
//! writes (the ingest writer groups batches into one transaction); another reads.

use super::{
    ContributorsByReports, NewBatch, Receipt, Redemption, ReleaseSummary, Storage, StorageError, StoreOutcome,
    StoredBatch,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;

/// The migration history, in order; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_tokens.sql")),
    (3, include_str!("../../migrations/sqlite/0003_retention.sql")),
    (4, include_str!("../../migrations/sqlite/0004_counted.sql")),
];

pub struct SqliteStorage {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

fn connect(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Checkpoint the WAL every ~40 MB rather than every 4 MB: fewer stalls of the writer.
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    Ok(conn)
}

impl SqliteStorage {
    pub fn open(path: &Path) -> Result<SqliteStorage, StorageError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StorageError::Other(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut writer = connect(path)?;
        migrate(&mut writer)?;
        let reader = connect(path)?;
        Ok(SqliteStorage {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)",
    )?;
    let current: i64 = conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| {
        r.get(0)
    })?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StorageError::SchemaTooNew { found: current, known });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied) VALUES (?1, datetime('now'))",
            [version],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The batch stored under a key, and its digest: a retry's receipt when the digests agree.
fn stored_under(
    conn: &rusqlite::Connection,
    study_id: &str,
    idempotency_key: &str,
) -> Result<Option<(Receipt, String)>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, digest, reports, received_day FROM batches WHERE study_id = ?1 AND idempotency_key = ?2",
        )?
        .query_row(params![study_id, idempotency_key], |r| {
            let receipt = Receipt {
                receipt: r.get(0)?,
                study_id: study_id.to_owned(),
                idempotency_key: idempotency_key.to_owned(),
                reports: r.get(2)?,
                day: r.get(3)?,
            };
            Ok((receipt, r.get(1)?))
        })
        .optional()?)
}

/// Stores one batch inside the group's transaction. The writer is the only one writing, so
/// the key lookup and the insert cannot race.
fn store_one(tx: &rusqlite::Transaction, b: &NewBatch) -> Result<StoreOutcome, StorageError> {
    let receipt = |id: i64, reports: u32, day: i64| Receipt {
        receipt: id,
        study_id: b.study_id.clone(),
        idempotency_key: b.idempotency_key.clone(),
        reports,
        day,
    };
    if let Some((stored, digest)) = stored_under(tx, &b.study_id, &b.idempotency_key)? {
        return Ok(if digest == b.digest {
            StoreOutcome::Replayed(stored)
        } else {
            StoreOutcome::KeyConflict
        });
    }
    if b.reports > b.cap {
        // More than the cap in one batch (validation stops these before they get here).
        return Ok(StoreOutcome::OverCap {
            stored: contributor_reports(tx, b)?,
            cap: b.cap,
        });
    }
    for nonce in &b.token_nonces {
        let spent = tx
            .prepare_cached("SELECT 1 FROM spent_tokens WHERE study_id = ?1 AND nonce = ?2")?
            .exists(params![b.study_id, nonce])?;
        if spent {
            return Ok(StoreOutcome::TokenSpent);
        }
    }
    let within_cap: Option<u32> = tx
        .prepare_cached(
            "INSERT INTO contributors (study_id, study_version, contributor, reports) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (study_id, study_version, contributor)
             DO UPDATE SET reports = reports + excluded.reports WHERE reports + excluded.reports <= ?5
             RETURNING reports",
        )?
        .query_row(
            params![b.study_id, b.study_version, b.contributor, b.reports, b.cap],
            |r| r.get(0),
        )
        .optional()?;
    if within_cap.is_none() {
        return Ok(StoreOutcome::OverCap {
            stored: contributor_reports(tx, b)?,
            cap: b.cap,
        });
    }
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO batches (study_id, study_version, idempotency_key, contributor, digest, reports, received_day, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
        )?
        .query_row(
            params![b.study_id, b.study_version, b.idempotency_key, b.contributor, b.digest, b.reports, b.day, b.body],
            |r| r.get(0),
        )?;
    for nonce in &b.token_nonces {
        tx.prepare_cached("INSERT INTO spent_tokens (study_id, nonce) VALUES (?1, ?2)")?
            .execute(params![b.study_id, nonce])?;
    }
    Ok(StoreOutcome::Stored(receipt(id, b.reports, b.day)))
}

/// Reports stored so far for the batch's contributor in its study version.
fn contributor_reports(tx: &rusqlite::Transaction, b: &NewBatch) -> Result<u32, StorageError> {
    Ok(tx
        .prepare_cached(
            "SELECT reports FROM contributors WHERE study_id = ?1 AND study_version = ?2 AND contributor = ?3",
        )?
        .query_row(params![b.study_id, b.study_version, b.contributor], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

impl Storage for SqliteStorage {
    fn store(&self, batches: &[NewBatch]) -> Result<Vec<StoreOutcome>, StorageError> {
        let mut conn = self.writer.lock().expect("writer lock");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcomes = batches
            .iter()
            .map(|b| store_one(&tx, b))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(outcomes)
    }

    fn batches(
        &self,
        study_id: &str,
        study_version: &str,
        visit: &mut dyn FnMut(StoredBatch),
    ) -> Result<ContributorsByReports, StorageError> {
        let conn = self.reader.lock().expect("reader lock");
        // One read transaction: in WAL mode, one snapshot for both statements.
        let tx = conn.unchecked_transaction()?;
        let mut statement = tx.prepare(
            "SELECT contributor, received_day, body FROM batches WHERE study_id = ?1 AND study_version = ?2 AND reports > 0 ORDER BY id",
        )?;
        let mut rows = statement.query(params![study_id, study_version])?;
        while let Some(row) = rows.next()? {
            visit(StoredBatch {
                contributor: row.get(0)?,
                day: row.get(1)?,
                body: row.get(2)?,
            });
        }
        drop(rows);
        drop(statement);
        let mut statement = tx.prepare(
            "SELECT reports, COUNT(*) FROM contributors WHERE study_id = ?1 AND study_version = ?2 GROUP BY reports",
        )?;
        let contributors = statement
            .query_map(params![study_id, study_version], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<ContributorsByReports, _>>()?;
        drop(statement);
        tx.commit()?;
        Ok(contributors)
    }

    fn stored_receipt(
        &self,
        study_id: &str,
        idempotency_key: &str,
        digest: &str,
    ) -> Result<Option<Receipt>, StorageError> {
        let conn = self.reader.lock().expect("reader lock");
        let stored = stored_under(&conn, study_id, idempotency_key)?;
        Ok(stored.filter(|(_, d)| d == digest).map(|(receipt, _)| receipt))
    }

    fn totals(&self, study_id: &str, study_version: &str) -> Result<(u64, u64), StorageError> {
        let conn = self.reader.lock().expect("reader lock");
        Ok(conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(reports), 0) FROM batches WHERE study_id = ?1 AND study_version = ?2 AND reports > 0",
            params![study_id, study_version],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    fn insert_release(&self, summary: &ReleaseSummary, document: &str, counted: &str) -> Result<(), StorageError> {
        let conn = self.writer.lock().expect("writer lock");
        let inserted = conn.execute(
            "INSERT INTO releases (id, study_id, created, document, counted) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
            params![summary.id, summary.study_id, summary.created, document, counted],
        )?;
        if inserted == 0 {
            return Err(StorageError::ReleaseExists(summary.id.clone()));
        }
        Ok(())
    }

    fn releases(&self) -> Result<Vec<ReleaseSummary>, StorageError> {
        let conn = self.reader.lock().expect("reader lock");
        let mut statement = conn.prepare("SELECT id, study_id, created FROM releases ORDER BY created, id")?;
        let rows = statement.query_map([], |r| {
            Ok(ReleaseSummary {
                id: r.get(0)?,
                study_id: r.get(1)?,
                created: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn release(&self, id: &str) -> Result<Option<String>, StorageError> {
        let conn = self.reader.lock().expect("reader lock");
        Ok(conn
            .query_row("SELECT document FROM releases WHERE id = ?1", [id], |r| r.get(0))
            .optional()?)
    }

    fn release_counted(&self, id: &str) -> Result<Option<String>, StorageError> {
        let conn = self.reader.lock().expect("reader lock");
        Ok(conn
            .query_row("SELECT counted FROM releases WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    fn release_count(&self, study_id: &str) -> Result<u64, StorageError> {
        let conn = self.reader.lock().expect("reader lock");
        Ok(
            conn.query_row("SELECT COUNT(*) FROM releases WHERE study_id = ?1", [study_id], |r| {
                r.get::<_, i64>(0)
            })? as u64,
        )
    }

    fn withdraw(&self, study_id: &str, idempotency_key: &str) -> Result<Option<u32>, StorageError> {
        let mut conn = self.writer.lock().expect("writer lock");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: Option<(String, String, u32)> = tx
            .query_row(
                "SELECT study_version, contributor, reports FROM batches WHERE study_id = ?1 AND idempotency_key = ?2",
                params![study_id, idempotency_key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((version, contributor, reports)) = found else {
            return Ok(None);
        };
        if reports > 0 {
            tx.execute(
                "UPDATE batches SET reports = 0, body = '' WHERE study_id = ?1 AND idempotency_key = ?2",
                params![study_id, idempotency_key],
            )?;
            tx.execute(
                "UPDATE contributors SET reports = reports - ?4 WHERE study_id = ?1 AND study_version = ?2 AND contributor = ?3",
                params![study_id, version, contributor, reports],
            )?;
            tx.execute(
                "DELETE FROM contributors WHERE study_id = ?1 AND study_version = ?2 AND contributor = ?3 AND reports <= 0",
                params![study_id, version, contributor],
            )?;
        }
        tx.commit()?;
        Ok(Some(reports))
    }

    fn forget_before(&self, study_id: &str, day: i64) -> Result<u64, StorageError> {
        let mut conn = self.writer.lock().expect("writer lock");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE contributors SET reports = contributors.reports - old.n
             FROM (SELECT study_version, contributor, SUM(reports) AS n FROM batches
                   WHERE study_id = ?1 AND received_day < ?2 GROUP BY study_version, contributor) AS old
             WHERE contributors.study_id = ?1 AND contributors.study_version = old.study_version
               AND contributors.contributor = old.contributor",
            params![study_id, day],
        )?;
        tx.execute(
            "DELETE FROM contributors WHERE study_id = ?1 AND reports <= 0",
            [study_id],
        )?;
        let deleted = tx.execute(
            "DELETE FROM batches WHERE study_id = ?1 AND received_day < ?2",
            params![study_id, day],
        )?;
        tx.commit()?;
        Ok(deleted as u64)
    }

    fn add_invitations(&self, study_id: &str, code_hashes: &[String]) -> Result<(), StorageError> {
        let mut conn = self.writer.lock().expect("writer lock");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for hash in code_hashes {
            tx.execute(
                "INSERT INTO invitations (study_id, code_hash) VALUES (?1, ?2)",
                params![study_id, hash],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn redeem_invitation(&self, study_id: &str, code_hash: &str, request: &str) -> Result<Redemption, StorageError> {
        let conn = self.writer.lock().expect("writer lock");
        let changed = conn.execute(
            "UPDATE invitations SET redeemed = ?3 WHERE study_id = ?1 AND code_hash = ?2 AND redeemed IS NULL",
            params![study_id, code_hash, request],
        )?;
        if changed == 1 {
            return Ok(Redemption::Redeemed);
        }
        let found: Option<Option<String>> = conn
            .query_row(
                "SELECT redeemed FROM invitations WHERE study_id = ?1 AND code_hash = ?2",
                params![study_id, code_hash],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match found {
            None => Redemption::Unknown,
            Some(Some(r)) if r == request => Redemption::Retried,
            Some(_) => Redemption::Spent,
        })
    }
}
