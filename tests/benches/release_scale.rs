//! A release at scale: the time and the peak memory of cutting a release (read every stored
//! report, estimate every facet, debias with bootstrap intervals, cross-tab, discover, central
//! noise, sign, store) over 100,000 and 1,000,000 stored reports, in SQLite and, when
//! `CHORUS_TEST_POSTGRES` names a server, in PostgreSQL.
//!
//! `cargo bench -p chorus-tests --bench release_scale [-- SIZES...]`
//!
//! Every report comes from a contributor of its own (the most contributors a number of reports
//! can have). Set `CHORUS_SCALE_KEEP=1` to keep the stores (SQLite under the cache directory,
//! PostgreSQL as database `chorus_scale_<size>`) and reuse them on the next run: filling ten
//! million reports takes longer than cutting their release.

use chorus_messages::Report;
use chorus_server::ingest::new_batch;
use chorus_server::release::{cut, sign::Signer, ReleaseOptions};
use chorus_server::storage::{self, Storage};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::study::CompiledStudy;
use chorus_tests::{analyses_of, cache_dir, compile_study, fixture, one_report_batch};
use std::time::Instant;

/// Distinct privatized reports the stores cycle through. Each is privatized on its own, as on
/// its own device, with seeded noise: the server's time is measured here, not OpenDP's.
const DISTINCT_REPORTS: usize = 100_000;

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    let keep = std::env::var_os("CHORUS_SCALE_KEEP").is_some();
    let study = compile_study(None);
    let analyses = analyses_of(&fixture("chatgpt/conversations.json"));
    let mut noise = Noise::seeded(1);
    let reports: Vec<Report> = (0..DISTINCT_REPORTS)
        .map(|i| {
            let analysis = &analyses[i % analyses.len()];
            study
                .privacy
                .privatize(analysis, &study.category_ids(), &mut noise)
                .unwrap()
        })
        .collect();
    for n in sizes {
        for (kind, database) in databases(n, keep) {
            let storage = storage::open(&database).unwrap();
            let loaded = fill(storage.as_ref(), &study, &reports, n);
            let key = std::env::temp_dir().join(format!("chorus-scale-key-{}", std::process::id()));
            let signer = Signer::load_or_create(&key).unwrap();
            reset_peak_memory();
            let before = memory_mb("VmRSS:");
            let started = Instant::now();
            let (summary, signed) = cut(storage.as_ref(), &study, &signer, &ReleaseOptions::default()).unwrap();
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "{kind:<10} {n:>10} stored reports: release {} cut in {elapsed:.2} s ({:.2} µs per report), peak memory {:.0} MB ({before:.0} MB before); {loaded}; {} contributors published",
                summary.id,
                elapsed * 1e6 / n as f64,
                memory_mb("VmHWM:"),
                signed.release["counts"]["contributors"]
            );
            drop(storage);
            std::fs::remove_file(&key).ok();
            if !keep {
                discard(&database);
            }
        }
    }
}

/// The stores to measure: SQLite always, PostgreSQL when the test command's server is set.
fn databases(n: usize, keep: bool) -> Vec<(&'static str, String)> {
    let dir = if keep {
        cache_dir().join("scale")
    } else {
        std::env::temp_dir().join(format!("chorus-scale-{}", std::process::id()))
    };
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = vec![("SQLite", dir.join(format!("{n}.sqlite3")).display().to_string())];
    if let Ok(base) = std::env::var("CHORUS_TEST_POSTGRES") {
        let mut client = postgres::Client::connect(&base, postgres::NoTls).unwrap();
        let name = format!("chorus_scale_{n}");
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .unwrap()
            .is_some();
        if !(keep && exists) {
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                .unwrap();
            client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        }
        let (prefix, _) = base.rsplit_once('/').unwrap();
        out.push(("PostgreSQL", format!("{prefix}/{name}")));
    }
    out
}

/// Stores `n` one-report batches (unless the store holds them already) and says how long it took.
fn fill(storage: &dyn Storage, study: &CompiledStudy, reports: &[Report], n: usize) -> String {
    let (_, stored) = storage.totals(&study.id, &study.version).unwrap();
    if stored == n as u64 {
        return "the store was kept from an earlier run".into();
    }
    assert_eq!(stored, 0, "a kept store with another number of reports");
    let started = Instant::now();
    let mut group = Vec::with_capacity(4096);
    for i in 0..n {
        let batch = one_report_batch(study, reports[i % reports.len()].clone(), i);
        group.push(new_batch(&batch, 1, 20_786 + (i % 30) as i64));
        if group.len() == 4096 || i + 1 == n {
            storage.store(&group).unwrap();
            group.clear();
        }
    }
    format!("storing them took {:.0} s", started.elapsed().as_secs_f64())
}

fn discard(database: &str) {
    match database.rsplit_once('/') {
        Some((prefix, name)) if database.starts_with("postgres") => {
            let base = std::env::var("CHORUS_TEST_POSTGRES").unwrap_or_else(|_| format!("{prefix}/postgres"));
            let mut client = postgres::Client::connect(&base, postgres::NoTls).unwrap();
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                .unwrap();
        }
        _ => {
            for suffix in ["", "-wal", "-shm"] {
                std::fs::remove_file(format!("{database}{suffix}")).ok();
            }
        }
    }
}

/// Starts the process's peak resident memory afresh (Linux: writing 5 to clear_refs).
fn reset_peak_memory() {
    std::fs::write("/proc/self/clear_refs", "5").expect("Linux's /proc/self/clear_refs");
}

/// A memory figure of the process in MB: `VmRSS:` now, `VmHWM:` the peak since the last reset.
fn memory_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}
