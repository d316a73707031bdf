//! Ingest under load, on loopback: sustained reports/s and latency percentiles of
//! `POST /api/v1/studies/{id}/reports` with SQLite and with PostgreSQL (when
//! `CHORUS_TEST_POSTGRES` names a server, as `cargo xtask postgres` prints). Each batch is one
//! report from a new contributor, as the default study's browsers send them.
//!
//! Then the same for a copy of the default study that admits invited contributors only: every
//! batch carries a contribution token (minted beforehand with the server's issuer key, as an
//! invitation's redemption would) that the server verifies and spends, and its report's OLH
//! seeds come from that token.
//!
//! `cargo bench -p chorus-tests --bench ingest_load [-- SECONDS CONNECTIONS]`

use chorus_shared::device::{random_id, seal};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::study::CompiledStudy;
use chorus_shared::tokens::{challenge_digest, IssuerKey, TokenRequest};
use chorus_tests::load::{batch_bodies, fixture_reports, run};
use chorus_tests::{analyses_of, fixture, fresh_postgres_database, workspace_root, ServerProcess};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

fn measure(name: &str, database: Option<&str>, seconds: u64, connections: usize, invited: bool) {
    let dir = std::env::temp_dir().join(format!("chorus-load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let study_file = invited.then(|| invited_default_study(&dir));
    let extra: Vec<&str> = match &study_file {
        Some(file) => vec!["--study-file", file.to_str().unwrap()],
        None => Vec::new(),
    };
    let server = ServerProcess::start(&dir.join("data"), database, &extra);
    let id = if invited { "chorus-invited" } else { "chorus-default" };
    let study: CompiledStudy = serde_json::from_str(&server.get(&format!("/api/v1/studies/{id}")).1).unwrap();
    let reports = fixture_reports(&study);
    let bodies = |n: usize| match invited {
        true => invited_bodies(&study, &dir.join("data"), n),
        false => batch_bodies(&study, &reports, n),
    };
    // Minting a token costs the issuer ~2 ms: the invited run posts fewer, prepared beforehand.
    let per_second = if invited { 6_000 } else { 25_000 };
    let bodies = Arc::new(bodies(per_second * seconds as usize));
    let address = server.url.trim_start_matches("http://").to_owned();
    let path = format!("/api/v1/studies/{id}/reports");
    let path = path.as_str();
    // Warm up, then measure.
    let warm = Arc::new(match invited {
        true => invited_bodies(&study, &dir.join("data"), 500),
        false => batch_bodies(&study, &reports, 2_000),
    });
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
        "{name:>22}: {:.0} reports/s sustained over {:.1} s ({stored} stored, {refused} refused, {} failed), latency p50 {:.2} ms, p99 {:.2} ms, {connections} connections",
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
    measure("SQLite", None, seconds, connections, false);
    measure("SQLite, with tokens", None, seconds, connections, true);
    if std::env::var("CHORUS_TEST_POSTGRES").is_ok() {
        let url = fresh_postgres_database("load");
        measure("PostgreSQL", Some(&url), seconds, connections, false);
        let url = fresh_postgres_database("load_tokens");
        measure("PostgreSQL, with tokens", Some(&url), seconds, connections, true);
    } else {
        println!("PostgreSQL: skipped (set CHORUS_TEST_POSTGRES, e.g. from `cargo xtask postgres`)");
    }
}

/// A copy of the default study (with its examples and codebook) that admits invited
/// contributors only, as `chorus-invited`.
fn invited_default_study(dir: &std::path::Path) -> std::path::PathBuf {
    let source = workspace_root().join("studies/default");
    let target = dir.join("study");
    std::fs::create_dir_all(&target).unwrap();
    for file in ["examples.jsonl", "codebook.json"] {
        std::fs::copy(source.join(file), target.join(file)).unwrap();
    }
    let text = std::fs::read_to_string(source.join("study.toml")).unwrap();
    let invited = text
        .replace("access = \"open\"\n", "")
        .replace("id = \"chorus-default\"", "id = \"chorus-invited\"");
    let path = target.join("study.toml");
    std::fs::write(&path, invited).unwrap();
    path
}

/// `n` one-report batches, each with a token minted with the server's issuer key (read from
/// its data directory, as the operator can) and its report privatized with that token's seeds;
/// minted on every core.
fn invited_bodies(study: &CompiledStudy, data: &std::path::Path, n: usize) -> Vec<String> {
    let der = std::fs::read(data.join(format!("token-keys/{}-{}.der", study.id, study.version))).unwrap();
    let issuer = IssuerKey::from_der(&der).unwrap();
    let analyses = analyses_of(&fixture("chatgpt/conversations.json"));
    let challenge = challenge_digest(&study.id, &study.version);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (issuer, analyses) = (&issuer, &analyses);
                scope.spawn(move || {
                    let mut noise = Noise::Secure;
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let mut nonce = [0u8; 32];
                            for chunk in nonce.chunks_mut(8) {
                                chunk.copy_from_slice(&noise.uniform_u64().unwrap().to_be_bytes());
                            }
                            let request = TokenRequest::new(issuer.public(), challenge, nonce).unwrap();
                            let signed = issuer.issue(request.blinded()).unwrap();
                            let token = request.finalize(issuer.public(), &signed).unwrap();
                            let analysis = &analyses[i % analyses.len()];
                            let report = study
                                .privacy
                                .privatize_with_token(analysis, &study.category_ids(), Some(&token), &mut noise)
                                .unwrap();
                            let (contributor, key) = (random_id(&mut noise).unwrap(), random_id(&mut noise).unwrap());
                            let mut batch =
                                seal(&study.id, &study.version, &contributor, &key, vec![report], &noise).unwrap();
                            batch.tokens = vec![token.to_hex()];
                            serde_json::to_string(&batch).unwrap()
                        })
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}
