//! Ingest under load, on loopback: sustained reports/s and latency percentiles of
//! `POST /api/v1/studies/{id}/reports` with SQLite and with PostgreSQL (when
//! `CHORUS_TEST_POSTGRES` names a server, as `cargo xtask postgres` prints). Each batch is one
//! report from a new contributor, as the default study's browsers send them.
//!
//! `cargo bench -p chorus-tests --bench ingest_load [-- SECONDS CONNECTIONS]`

use chorus_shared::study::CompiledStudy;
use chorus_tests::load::{batch_bodies, fixture_reports, run};
use chorus_tests::{fresh_postgres_database, ServerProcess};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

fn measure(name: &str, database: Option<&str>, seconds: u64, connections: usize) {
    let dir = std::env::temp_dir().join(format!("chorus-load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = ServerProcess::start(&dir.join("data"), database, &[]);
    let study: CompiledStudy = serde_json::from_str(&server.get("/api/v1/studies/chorus-default").1).unwrap();
    let reports = fixture_reports(&study);
    let bodies = Arc::new(batch_bodies(&study, &reports, 25_000 * seconds as usize));
    let address = server.url.trim_start_matches("http://").to_owned();
    let path = "/api/v1/studies/chorus-default/reports";
    // Warm up, then measure.
    let warm = Arc::new(batch_bodies(&study, &reports, 2_000));
    run(
        &address,
        path,
        warm,
        connections,
        Duration::from_secs(5),
        Arc::new(AtomicBool::new(false)),
    );
    let result = run(
        &address,
        path,
        bodies,
        connections,
        Duration::from_secs(seconds),
        Arc::new(AtomicBool::new(false)),
    );
    let stored = result.answers.iter().filter(|a| a.1 == 201).count();
    let refused = result.answers.len() - stored;
    println!(
        "{name:>10}: {:.0} reports/s sustained over {:.1} s ({stored} stored, {refused} refused, {} failed), latency p50 {:.2} ms, p99 {:.2} ms, {connections} connections",
        stored as f64 / result.elapsed,
        result.elapsed,
        result.failed,
        result.percentile(0.5) * 1e3,
        result.percentile(0.99) * 1e3,
    );
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(10);
    let connections: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    measure("SQLite", None, seconds, connections);
    if std::env::var("CHORUS_TEST_POSTGRES").is_ok() {
        let url = fresh_postgres_database("load");
        measure("PostgreSQL", Some(&url), seconds, connections);
    } else {
        println!("PostgreSQL: skipped (set CHORUS_TEST_POSTGRES, e.g. from `cargo xtask postgres`)");
    }
}
