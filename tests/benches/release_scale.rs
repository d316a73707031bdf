//! Analysis time at scale: a release (read every stored report, estimate every facet, debias
//! with bootstrap intervals, cross-tab, central noise, sign, store) over 100,000 and 1,000,000
//! stored reports in SQLite.
//!
//! `cargo bench -p chorus-tests --bench release_scale [-- SIZES...]`

use chorus_messages::{ReportBatch, PROTOCOL_VERSION};
use chorus_server::ingest::new_batch;
use chorus_server::release::{cut, sign::Signer, ReleaseOptions};
use chorus_server::storage::{sqlite::SqliteStorage, Storage};
use chorus_shared::device::random_id;
use chorus_shared::privacy::noise::Noise;
use chorus_tests::{analyses_of, compile_study, fixture};
use std::time::Instant;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect::<Vec<_>>();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    let study = compile_study(None);
    let analyses = analyses_of(&fixture("chatgpt/conversations.json"));
    // Every stored report privatized on its own, as from its own device, but with seeded noise:
    // the server's time is measured here, not OpenDP's (which is secure and slower).
    let mut noise = Noise::seeded(1);
    let mut secure = Noise::Secure;
    for n in sizes {
        let dir = std::env::temp_dir().join(format!("chorus-scale-{n}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = SqliteStorage::open(&dir.join("chorus.sqlite3")).unwrap();
        let started = Instant::now();
        let mut group = Vec::with_capacity(4096);
        for i in 0..n {
            let report = study
                .privacy
                .privatize(&analyses[i % analyses.len()], &study.category_ids(), &mut noise)
                .unwrap();
            let batch = ReportBatch {
                protocol: PROTOCOL_VERSION,
                study_id: study.id.clone(),
                study_version: study.version.clone(),
                contributor: random_id(&mut secure).unwrap(),
                idempotency_key: random_id(&mut secure).unwrap(),
                reports: vec![report],
            };
            group.push(new_batch(&batch, 1, 20_786 + (i % 30) as i64));
            if group.len() == 4096 || i + 1 == n {
                storage.store(&group).unwrap();
                group.clear();
            }
        }
        let loaded = started.elapsed().as_secs_f64();
        let signer = Signer::load_or_create(&dir.join("key")).unwrap();
        let started = Instant::now();
        let (summary, signed) = cut(&storage, &study, &signer, &ReleaseOptions::default()).unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{n:>9} stored reports: release {} cut in {elapsed:.2} s ({:.2} µs per report); storing them took {loaded:.1} s; {} contributors published",
            summary.id,
            elapsed * 1e6 / n as f64,
            signed.release["counts"]["contributors"]
        );
        drop(storage);
        std::fs::remove_dir_all(&dir).ok();
    }
}
