//! PostgreSQL storage, for deployments with several stateless servers in front of one
//! database. The same operations and guarantees as SQLite: the batch key is unique per study,
//! the per-contributor cap is checked by an atomic upsert, a commit precedes every receipt.

use super::{NewBatch, Receipt, ReleaseSummary, Storage, StorageError, StoreOutcome, StoredBatch};
use postgres::{Client, NoTls, Statement};
use std::sync::Mutex;

/// The migration history, in order; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

pub struct PostgresStorage {
    writer: Mutex<(Client, Statements)>,
    reader: Mutex<Client>,
}

impl PostgresStorage {
    pub fn open(url: &str) -> Result<PostgresStorage, StorageError> {
        let mut writer = Client::connect(url, NoTls)?;
        migrate(&mut writer)?;
        let statements = Statements::prepare(&mut writer)?;
        let reader = Client::connect(url, NoTls)?;
        Ok(PostgresStorage {
            writer: Mutex::new((writer, statements)),
            reader: Mutex::new(reader),
        })
    }
}

fn migrate(client: &mut Client) -> Result<(), StorageError> {
    let mut tx = client.transaction()?;
    // Servers starting together take turns.
    tx.execute("SELECT pg_advisory_xact_lock(7391)", &[])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StorageError::SchemaTooNew { found: current, known });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version])?;
    }
    tx.commit()?;
    Ok(())
}

/// The writer's statements, prepared once per connection.
struct Statements {
    existing: Statement,
    reserve: Statement,
    count: Statement,
    release_reserve: Statement,
    insert: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Statements, StorageError> {
        Ok(Statements {
            existing: client.prepare(
                "SELECT id, digest, reports, received_day FROM batches WHERE study_id = $1 AND idempotency_key = $2",
            )?,
            reserve: client.prepare(
                "INSERT INTO contributors (study_id, study_version, contributor, reports) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (study_id, study_version, contributor)
                 DO UPDATE SET reports = contributors.reports + EXCLUDED.reports
                 WHERE contributors.reports + EXCLUDED.reports <= $5
                 RETURNING reports",
            )?,
            count: client.prepare(
                "SELECT reports FROM contributors WHERE study_id = $1 AND study_version = $2 AND contributor = $3",
            )?,
            release_reserve: client.prepare(
                "UPDATE contributors SET reports = reports - $4 WHERE study_id = $1 AND study_version = $2 AND contributor = $3",
            )?,
            insert: client.prepare(
                "INSERT INTO batches (study_id, study_version, idempotency_key, contributor, digest, reports, received_day, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )?,
        })
    }
}

/// Stores one batch inside the group's transaction: the key lookup, the cap reservation (an
/// atomic upsert), the insert. If another server inserts the same key between lookup and
/// insert, the unique index fails the group's transaction: its clients get 503, retry, and
/// are answered with a replay — never a second copy.
fn store_one(tx: &mut postgres::Transaction, s: &Statements, b: &NewBatch) -> Result<StoreOutcome, StorageError> {
    let receipt = |id: i64, reports: u32, day: i64| Receipt {
        receipt: id,
        study_id: b.study_id.clone(),
        idempotency_key: b.idempotency_key.clone(),
        reports,
        day,
    };
    let (reports, cap) = (b.reports as i32, b.cap as i32);
    if let Some(row) = tx.query_opt(&s.existing, &[&b.study_id, &b.idempotency_key])? {
        let digest: String = row.get(1);
        return Ok(if digest == b.digest {
            StoreOutcome::Replayed(receipt(row.get(0), row.get::<_, i32>(2) as u32, row.get(3)))
        } else {
            StoreOutcome::KeyConflict
        });
    }
    let within_cap = tx.query_opt(
        &s.reserve,
        &[&b.study_id, &b.study_version, &b.contributor, &reports, &cap],
    )?;
    if within_cap.is_none() || b.reports > b.cap {
        let stored = tx
            .query_opt(&s.count, &[&b.study_id, &b.study_version, &b.contributor])?
            .map_or(0, |r| r.get::<_, i32>(0) as u32);
        if within_cap.is_some() {
            tx.execute(
                &s.release_reserve,
                &[&b.study_id, &b.study_version, &b.contributor, &reports],
            )?;
        }
        return Ok(StoreOutcome::OverCap { stored, cap: b.cap });
    }
    let row = tx.query_one(
        &s.insert,
        &[
            &b.study_id,
            &b.study_version,
            &b.idempotency_key,
            &b.contributor,
            &b.digest,
            &reports,
            &b.day,
            &b.body,
        ],
    )?;
    Ok(StoreOutcome::Stored(receipt(row.get(0), b.reports, b.day)))
}

impl Storage for PostgresStorage {
    fn store(&self, batches: &[NewBatch]) -> Result<Vec<StoreOutcome>, StorageError> {
        let mut writer = self.writer.lock().expect("writer lock");
        let (client, statements) = &mut *writer;
        let mut tx = client.transaction()?;
        let outcomes = batches
            .iter()
            .map(|b| store_one(&mut tx, statements, b))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(outcomes)
    }

    fn batches(
        &self,
        study_id: &str,
        study_version: &str,
        visit: &mut dyn FnMut(StoredBatch),
    ) -> Result<(), StorageError> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut client = self.reader.lock().expect("reader lock");
        let mut tx = client.transaction()?;
        let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&study_id, &study_version];
        let mut rows = tx.query_raw(
            "SELECT contributor, received_day, body FROM batches WHERE study_id = $1 AND study_version = $2 ORDER BY id",
            params,
        )?;
        while let Some(row) = rows.next()? {
            visit(StoredBatch {
                contributor: row.get(0),
                day: row.get(1),
                body: row.get(2),
            });
        }
        drop(rows);
        tx.commit()?;
        Ok(())
    }

    fn totals(&self, study_id: &str, study_version: &str) -> Result<(u64, u64), StorageError> {
        let mut client = self.reader.lock().expect("reader lock");
        let row = client.query_one(
            "SELECT COUNT(*), COALESCE(SUM(reports), 0)::BIGINT FROM batches WHERE study_id = $1 AND study_version = $2",
            &[&study_id, &study_version],
        )?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    fn insert_release(&self, summary: &ReleaseSummary, document: &str) -> Result<(), StorageError> {
        let mut writer = self.writer.lock().expect("writer lock");
        let inserted = writer.0.execute(
            "INSERT INTO releases (id, study_id, created, document) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            &[&summary.id, &summary.study_id, &summary.created, &document],
        )?;
        if inserted == 0 {
            return Err(StorageError::ReleaseExists(summary.id.clone()));
        }
        Ok(())
    }

    fn releases(&self) -> Result<Vec<ReleaseSummary>, StorageError> {
        let mut client = self.reader.lock().expect("reader lock");
        let rows = client.query("SELECT id, study_id, created FROM releases ORDER BY created, id", &[])?;
        Ok(rows
            .iter()
            .map(|r| ReleaseSummary {
                id: r.get(0),
                study_id: r.get(1),
                created: r.get(2),
            })
            .collect())
    }

    fn release(&self, id: &str) -> Result<Option<String>, StorageError> {
        let mut client = self.reader.lock().expect("reader lock");
        Ok(client
            .query_opt("SELECT document FROM releases WHERE id = $1", &[&id])?
            .map(|r| r.get(0)))
    }

    fn release_count(&self, study_id: &str) -> Result<u64, StorageError> {
        let mut client = self.reader.lock().expect("reader lock");
        Ok(client
            .query_one("SELECT COUNT(*) FROM releases WHERE study_id = $1", &[&study_id])?
            .get::<_, i64>(0) as u64)
    }
}
