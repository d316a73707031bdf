//! PostgreSQL storage, for deployments with several stateless servers in front of one
//! database. The same operations and guarantees as SQLite: the batch key is unique per study,
//! the per-contributor cap is checked by an atomic upsert, a commit precedes every receipt.

use super::{
    ContributorsByReports, NewBatch, Receipt, Redemption, ReleaseSummary, Storage, StorageError, StoreOutcome,
    StoredBatch,
};
use postgres::{Client, NoTls, Statement};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// The migration history, in order; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_tokens.sql")),
    (3, include_str!("../../migrations/postgres/0003_retention.sql")),
    (4, include_str!("../../migrations/postgres/0004_counted.sql")),
];

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

/// The batch stored under a key: (id, digest, reports, day), read by [`stored_under`].
const STORED_UNDER_KEY: &str =
    "SELECT id, digest, reports, received_day FROM batches WHERE study_id = $1 AND idempotency_key = $2";

/// A row of [`STORED_UNDER_KEY`] as its receipt and its digest: a retry's receipt when the
/// digests agree.
fn stored_under(row: &postgres::Row, study_id: &str, idempotency_key: &str) -> (Receipt, String) {
    let receipt = Receipt {
        receipt: row.get(0),
        study_id: study_id.to_owned(),
        idempotency_key: idempotency_key.to_owned(),
        reports: row.get::<_, i32>(2) as u32,
        day: row.get(3),
    };
    (receipt, row.get(1))
}

/// The writer's statements, prepared once per connection.
struct Statements {
    existing: Statement,
    reserve: Statement,
    count: Statement,
    insert: Statement,
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Statements, StorageError> {
        Ok(Statements {
            existing: client.prepare(STORED_UNDER_KEY)?,
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
    let (reports, cap) = (b.reports as i32, b.cap as i32);
    if let Some(row) = tx.query_opt(&s.existing, &[&b.study_id, &b.idempotency_key])? {
        let (stored, digest) = stored_under(&row, &b.study_id, &b.idempotency_key);
        return Ok(if digest == b.digest {
            StoreOutcome::Replayed(stored)
        } else {
            StoreOutcome::KeyConflict
        });
    }
    let stored_so_far = |tx: &mut postgres::Transaction| -> Result<u32, StorageError> {
        Ok(tx
            .query_opt(&s.count, &[&b.study_id, &b.study_version, &b.contributor])?
            .map_or(0, |r| r.get::<_, i32>(0) as u32))
    };
    if b.reports > b.cap {
        // More than the cap in one batch (validation stops these before they get here).
        return Ok(StoreOutcome::OverCap {
            stored: stored_so_far(tx)?,
            cap: b.cap,
        });
    }
    for nonce in &b.token_nonces {
        let spent = tx.query_opt(
            "SELECT 1 FROM spent_tokens WHERE study_id = $1 AND nonce = $2",
            &[&b.study_id, nonce],
        )?;
        if spent.is_some() {
            return Ok(StoreOutcome::TokenSpent);
        }
    }
    let within_cap = tx.query_opt(
        &s.reserve,
        &[&b.study_id, &b.study_version, &b.contributor, &reports, &cap],
    )?;
    if within_cap.is_none() {
        return Ok(StoreOutcome::OverCap {
            stored: stored_so_far(tx)?,
            cap: b.cap,
        });
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
    for nonce in &b.token_nonces {
        tx.execute(
            "INSERT INTO spent_tokens (study_id, nonce) VALUES ($1, $2)",
            &[&b.study_id, nonce],
        )?;
    }
    Ok(StoreOutcome::Stored(receipt(b, row.get(0), b.reports, b.day)))
}

/// The common case in three round trips for the whole group: look up every key at once,
/// reserve every contributor's cap at once, insert every new batch at once. Returns `None`
/// (and changes nothing) when the group has a repeated key, contributor or study, which the
/// batch-by-batch path handles.
fn store_group(
    tx: &mut postgres::Transaction,
    batches: &[NewBatch],
) -> Result<Option<Vec<StoreOutcome>>, StorageError> {
    let Some(first) = one_group(batches) else {
        return Ok(None);
    };
    let existing = existing_batches(tx, first, batches)?;
    let spent = spent_nonces(tx, first, batches)?;
    let spends = |b: &NewBatch| b.token_nonces.iter().any(|n| spent.contains(n));
    let fresh: Vec<&NewBatch> = batches
        .iter()
        .filter(|b| !existing.contains_key(&b.idempotency_key) && b.reports <= b.cap && !spends(b))
        .collect();
    let within = count_towards_caps(tx, first, &fresh)?;
    let accepted: Vec<&NewBatch> = fresh.into_iter().filter(|b| within.contains(&b.contributor)).collect();
    let ids = insert_batches(tx, first, &accepted)?;
    record_nonces(tx, first, &accepted)?;
    let mut outcomes = Vec::with_capacity(batches.len());
    for b in batches {
        let outcome = if let Some(&(id, ref digest, reports, day)) = existing.get(&b.idempotency_key) {
            if *digest == b.digest {
                StoreOutcome::Replayed(receipt(b, id, reports as u32, day))
            } else {
                StoreOutcome::KeyConflict
            }
        } else if let Some(&id) = ids.get(&b.idempotency_key) {
            StoreOutcome::Stored(receipt(b, id, b.reports, b.day))
        } else if spends(b) {
            StoreOutcome::TokenSpent
        } else {
            over_cap(tx, b)?
        };
        outcomes.push(outcome);
    }
    Ok(Some(outcomes))
}

/// The group's first batch, when the group can be stored with set-wise statements: at least two
/// batches, of one study version and cap, with distinct keys, contributors and token nonces.
fn one_group(batches: &[NewBatch]) -> Option<&NewBatch> {
    let first = batches.first().filter(|_| batches.len() >= 2)?;
    // A nonce twice in the group: the batch-by-batch path decides which batch spends it.
    let nonces: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.token_nonces.iter().map(String::as_str))
        .collect();
    if nonces.iter().collect::<HashSet<_>>().len() != nonces.len() {
        return None;
    }
    let keys: HashSet<&str> = batches.iter().map(|b| b.idempotency_key.as_str()).collect();
    let contributors: HashSet<&str> = batches.iter().map(|b| b.contributor.as_str()).collect();
    let one_study = batches
        .iter()
        .all(|b| b.study_id == first.study_id && b.study_version == first.study_version && b.cap == first.cap);
    (keys.len() == batches.len() && contributors.len() == batches.len() && one_study).then_some(first)
}

fn receipt(b: &NewBatch, id: i64, reports: u32, day: i64) -> Receipt {
    Receipt {
        receipt: id,
        study_id: b.study_id.clone(),
        idempotency_key: b.idempotency_key.clone(),
        reports,
        day,
    }
}

/// A batch already stored: (id, digest, reports, day).
type Stored = (i64, String, i32, i64);

/// Batches already stored under the group's keys.
fn existing_batches(
    tx: &mut postgres::Transaction,
    first: &NewBatch,
    batches: &[NewBatch],
) -> Result<HashMap<String, Stored>, StorageError> {
    let key_list: Vec<&str> = batches.iter().map(|b| b.idempotency_key.as_str()).collect();
    Ok(tx
        .query(
            "SELECT idempotency_key, id, digest, reports, received_day FROM batches WHERE study_id = $1 AND idempotency_key = ANY($2)",
            &[&first.study_id, &key_list],
        )?
        .into_iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect())
}

/// The group's token nonces that were spent before.
fn spent_nonces(
    tx: &mut postgres::Transaction,
    first: &NewBatch,
    batches: &[NewBatch],
) -> Result<HashSet<String>, StorageError> {
    let nonces: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.token_nonces.iter().map(String::as_str))
        .collect();
    if nonces.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(tx
        .query(
            "SELECT nonce FROM spent_tokens WHERE study_id = $1 AND nonce = ANY($2)",
            &[&first.study_id, &nonces],
        )?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}

/// Spends the accepted batches' token nonces in one statement.
fn record_nonces(tx: &mut postgres::Transaction, first: &NewBatch, accepted: &[&NewBatch]) -> Result<(), StorageError> {
    let nonces: Vec<&str> = accepted
        .iter()
        .flat_map(|b| b.token_nonces.iter().map(String::as_str))
        .collect();
    if !nonces.is_empty() {
        tx.execute(
            "INSERT INTO spent_tokens (study_id, nonce) SELECT $1, n FROM unnest($2::text[]) AS t(n)",
            &[&first.study_id, &nonces],
        )?;
    }
    Ok(())
}

/// Adds each fresh batch's reports to its contributor's count, where that stays within the cap
/// (one atomic upsert); the contributors whose batches fit.
fn count_towards_caps(
    tx: &mut postgres::Transaction,
    first: &NewBatch,
    fresh: &[&NewBatch],
) -> Result<HashSet<String>, StorageError> {
    let names: Vec<&str> = fresh.iter().map(|b| b.contributor.as_str()).collect();
    let counts: Vec<i32> = fresh.iter().map(|b| b.reports as i32).collect();
    Ok(tx
        .query(
            "INSERT INTO contributors (study_id, study_version, contributor, reports)
             SELECT $1, $2, c, r FROM unnest($3::text[], $4::int[]) AS t(c, r)
             ON CONFLICT (study_id, study_version, contributor)
             DO UPDATE SET reports = contributors.reports + EXCLUDED.reports
             WHERE contributors.reports + EXCLUDED.reports <= $5
             RETURNING contributor",
            &[
                &first.study_id,
                &first.study_version,
                &names,
                &counts,
                &(first.cap as i32),
            ],
        )?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}

/// Inserts the accepted batches in one statement; key → the new row's id.
fn insert_batches(
    tx: &mut postgres::Transaction,
    first: &NewBatch,
    accepted: &[&NewBatch],
) -> Result<HashMap<String, i64>, StorageError> {
    let column = |f: fn(&NewBatch) -> &str| accepted.iter().map(|b| f(b)).collect::<Vec<&str>>();
    let (keys, contributors, digests, bodies) = (
        column(|b| &b.idempotency_key),
        column(|b| &b.contributor),
        column(|b| &b.digest),
        column(|b| &b.body),
    );
    let reports: Vec<i32> = accepted.iter().map(|b| b.reports as i32).collect();
    let days: Vec<i64> = accepted.iter().map(|b| b.day).collect();
    Ok(tx
        .query(
            "INSERT INTO batches (study_id, study_version, idempotency_key, contributor, digest, reports, received_day, body)
             SELECT $1, $2, k, c, d, r, day, body
             FROM unnest($3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[], $8::text[]) AS t(k, c, d, r, day, body)
             RETURNING idempotency_key, id",
            &[&first.study_id, &first.study_version, &keys, &contributors, &digests, &reports, &days, &bodies],
        )?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// A batch refused because its contributor would pass the cap: what they already stored.
fn over_cap(tx: &mut postgres::Transaction, b: &NewBatch) -> Result<StoreOutcome, StorageError> {
    let stored = tx
        .query_opt(
            "SELECT reports FROM contributors WHERE study_id = $1 AND study_version = $2 AND contributor = $3",
            &[&b.study_id, &b.study_version, &b.contributor],
        )?
        .map_or(0, |r| r.get::<_, i32>(0) as u32);
    Ok(StoreOutcome::OverCap { stored, cap: b.cap })
}

impl Storage for PostgresStorage {
    fn store(&self, batches: &[NewBatch]) -> Result<Vec<StoreOutcome>, StorageError> {
        let mut writer = self.writer.lock().expect("writer lock");
        let (client, statements) = &mut *writer;
        let mut tx = client.transaction()?;
        let outcomes = match store_group(&mut tx, batches)? {
            Some(outcomes) => outcomes,
            None => batches
                .iter()
                .map(|b| store_one(&mut tx, statements, b))
                .collect::<Result<Vec<_>, _>>()?,
        };
        tx.commit()?;
        Ok(outcomes)
    }

    fn batches(
        &self,
        study_id: &str,
        study_version: &str,
        visit: &mut dyn FnMut(StoredBatch),
    ) -> Result<ContributorsByReports, StorageError> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut client = self.reader.lock().expect("reader lock");
        // Repeatable read: both statements see one snapshot. The rows stream from the socket as
        // they are visited; none are held.
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&study_id, &study_version];
        let mut rows = tx.query_raw(
            "SELECT contributor, received_day, body FROM batches WHERE study_id = $1 AND study_version = $2 AND reports > 0 ORDER BY id",
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
        let contributors = tx
            .query(
                "SELECT reports, COUNT(*) FROM contributors WHERE study_id = $1 AND study_version = $2 GROUP BY reports",
                &[&study_id, &study_version],
            )?
            .iter()
            .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1) as u64))
            .collect();
        tx.commit()?;
        Ok(contributors)
    }

    fn stored_receipt(
        &self,
        study_id: &str,
        idempotency_key: &str,
        digest: &str,
    ) -> Result<Option<Receipt>, StorageError> {
        let mut client = self.reader.lock().expect("reader lock");
        let row = client.query_opt(STORED_UNDER_KEY, &[&study_id, &idempotency_key])?;
        let stored = row.map(|r| stored_under(&r, study_id, idempotency_key));
        Ok(stored.filter(|(_, d)| d == digest).map(|(receipt, _)| receipt))
    }

    fn totals(&self, study_id: &str, study_version: &str) -> Result<(u64, u64), StorageError> {
        let mut client = self.reader.lock().expect("reader lock");
        let row = client.query_one(
            "SELECT COUNT(*), COALESCE(SUM(reports), 0)::BIGINT FROM batches WHERE study_id = $1 AND study_version = $2 AND reports > 0",
            &[&study_id, &study_version],
        )?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    fn insert_release(&self, summary: &ReleaseSummary, document: &str, counted: &str) -> Result<(), StorageError> {
        let mut writer = self.writer.lock().expect("writer lock");
        let inserted = writer.0.execute(
            "INSERT INTO releases (id, study_id, created, document, counted) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            &[&summary.id, &summary.study_id, &summary.created, &document, &counted],
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

    fn release_counted(&self, id: &str) -> Result<Option<String>, StorageError> {
        let mut client = self.reader.lock().expect("reader lock");
        Ok(client
            .query_opt("SELECT counted FROM releases WHERE id = $1", &[&id])?
            .and_then(|r| r.get(0)))
    }

    fn release_count(&self, study_id: &str) -> Result<u64, StorageError> {
        let mut client = self.reader.lock().expect("reader lock");
        Ok(client
            .query_one("SELECT COUNT(*) FROM releases WHERE study_id = $1", &[&study_id])?
            .get::<_, i64>(0) as u64)
    }

    fn withdraw(&self, study_id: &str, idempotency_key: &str) -> Result<Option<u32>, StorageError> {
        let mut writer = self.writer.lock().expect("writer lock");
        let mut tx = writer.0.transaction()?;
        one_forgetting_at_a_time(&mut tx, study_id)?;
        // FOR UPDATE: two withdrawals of one batch cannot both subtract its reports.
        let found = tx.query_opt(
            "SELECT study_version, contributor, reports FROM batches WHERE study_id = $1 AND idempotency_key = $2 FOR UPDATE",
            &[&study_id, &idempotency_key],
        )?;
        let Some(row) = found else {
            return Ok(None);
        };
        let (version, contributor, reports): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
        if reports > 0 {
            tx.execute(
                "UPDATE batches SET reports = 0, body = '' WHERE study_id = $1 AND idempotency_key = $2",
                &[&study_id, &idempotency_key],
            )?;
            tx.execute(
                "UPDATE contributors SET reports = reports - $4 WHERE study_id = $1 AND study_version = $2 AND contributor = $3",
                &[&study_id, &version, &contributor, &reports],
            )?;
            tx.execute(
                "DELETE FROM contributors WHERE study_id = $1 AND study_version = $2 AND contributor = $3 AND reports <= 0",
                &[&study_id, &version, &contributor],
            )?;
        }
        tx.commit()?;
        Ok(Some(reports as u32))
    }

    fn forget_before(&self, study_id: &str, day: i64) -> Result<u64, StorageError> {
        let mut writer = self.writer.lock().expect("writer lock");
        let mut tx = writer.0.transaction()?;
        one_forgetting_at_a_time(&mut tx, study_id)?;
        tx.execute(
            "UPDATE contributors SET reports = contributors.reports - old.n
             FROM (SELECT study_version, contributor, SUM(reports) AS n FROM batches
                   WHERE study_id = $1 AND received_day < $2 GROUP BY study_version, contributor) AS old
             WHERE contributors.study_id = $1 AND contributors.study_version = old.study_version
               AND contributors.contributor = old.contributor",
            &[&study_id, &day],
        )?;
        tx.execute(
            "DELETE FROM contributors WHERE study_id = $1 AND reports <= 0",
            &[&study_id],
        )?;
        let deleted = tx.execute(
            "DELETE FROM batches WHERE study_id = $1 AND received_day < $2",
            &[&study_id, &day],
        )?;
        tx.commit()?;
        Ok(deleted)
    }

    fn add_invitations(&self, study_id: &str, code_hashes: &[String]) -> Result<(), StorageError> {
        let mut writer = self.writer.lock().expect("writer lock");
        let mut tx = writer.0.transaction()?;
        for hash in code_hashes {
            tx.execute(
                "INSERT INTO invitations (study_id, code_hash) VALUES ($1, $2)",
                &[&study_id, hash],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn redeem_invitation(&self, study_id: &str, code_hash: &str, request: &str) -> Result<Redemption, StorageError> {
        let mut writer = self.writer.lock().expect("writer lock");
        let changed = writer.0.execute(
            "UPDATE invitations SET redeemed = $3 WHERE study_id = $1 AND code_hash = $2 AND redeemed IS NULL",
            &[&study_id, &code_hash, &request],
        )?;
        if changed == 1 {
            return Ok(Redemption::Redeemed);
        }
        let found = writer.0.query_opt(
            "SELECT redeemed FROM invitations WHERE study_id = $1 AND code_hash = $2",
            &[&study_id, &code_hash],
        )?;
        Ok(match found.map(|r| r.get::<_, Option<String>>(0)) {
            None => Redemption::Unknown,
            Some(Some(r)) if r == request => Redemption::Retried,
            Some(_) => Redemption::Spent,
        })
    }
}

/// Withdrawals and retention passes of one study, from any of the servers sharing the database,
/// one after the other. Each subtracts the reports it removes from the contributors' counts;
/// under READ COMMITTED an UPDATE that waited for another's row locks re-reads the rows but not
/// its own subquery, so two at once (two servers' retention passes at start, or a withdrawal
/// during one) would subtract the same reports twice and let a contributor past the cap.
fn one_forgetting_at_a_time(tx: &mut postgres::Transaction<'_>, study_id: &str) -> Result<(), StorageError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('chorus forget ' || $1))",
        &[&study_id],
    )?;
    Ok(())
}
