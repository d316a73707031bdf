//! The end-to-end timing of `bench/`: an N-conversation ChatGPT export from file to a verified,
//! signed release, with the time of each stage.
//!
//! ```text
//! end_to_end N WORK_DIR
//! ```
//! The export is written from the public corpus (ChatGPT's `conversations.json` format). Each
//! conversation is then donated as if by its own contributor — the default study takes one
//! report per contributor, so one person's export alone would never clear the release's k —
//! and the stages run as they do in the product: import, on-device analysis (facets, embedding,
//! classifier; one analyser per core), privatization with OpenDP's secure noise, ingest over
//! HTTP into `chorus serve` (SQLite), a release cut and signed over the admin API, its signature
//! verified. Prints one JSON object of seconds per stage.

use chorus_shared::import::read_export;
use chorus_shared::study::CompiledStudy;
use chorus_shared::{Analysis, Analyzer, Conversation};
use chorus_tests::{batch_for, cached, embedder, write_chatgpt_export, ServerProcess};
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [n, work] = &args[..] else {
        eprintln!("usage: end_to_end N WORK_DIR");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N is a number");
    let work = Path::new(work);
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).unwrap();
    let export = work.join("conversations.json");
    let bytes = write_chatgpt_export(&cached("corpus/sharegpt.json"), n, &export);
    let mut stages: Vec<(&str, f64)> = Vec::new();
    let mut timed = |name, started: Instant| stages.push((name, started.elapsed().as_secs_f64()));

    let started = Instant::now();
    let server = ServerProcess::start(&work.join("data"), None, &[]);
    timed("server_start", started);
    let study: CompiledStudy = serde_json::from_str(&server.get("/api/v1/studies/chorus-default").1).unwrap();

    let started = Instant::now();
    let mut conversations = Vec::new();
    let file = std::io::BufReader::new(std::fs::File::open(&export).unwrap());
    read_export(file, "the export", &mut |c| conversations.push(c)).unwrap();
    timed("import", started);

    let started = Instant::now();
    let analyses = analyse(&conversations, &study);
    timed("analyse", started);

    let started = Instant::now();
    let bodies: Vec<String> = analyses
        .iter()
        .map(|a| serde_json::to_string(&batch_for(&study, a)).unwrap())
        .collect();
    timed("privatize", started);

    let started = Instant::now();
    std::thread::scope(|scope| {
        for share in bodies.chunks(bodies.len().div_ceil(2)) {
            let server = &server;
            scope.spawn(move || {
                for body in share {
                    let (status, answer) = server.post("/api/v1/studies/chorus-default/reports", body);
                    assert!(status == 200 || status == 201, "{status}: {answer}");
                }
            });
        }
    });
    timed("ingest", started);

    let started = Instant::now();
    let (status, body) = server.post("/api/v1/admin/studies/chorus-default/releases", "");
    assert!(status == 200 || status == 201, "{status}: {body}");
    timed("release", started);
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .expect("the release's id")
        .to_owned();

    let started = Instant::now();
    let (_, document) = server.get(&format!("/api/v1/releases/{id}"));
    let key: serde_json::Value = serde_json::from_str(&server.get("/api/v1/public-key").1).unwrap();
    let signed = chorus_shared::release::verify(&document, key["public_key"].as_str().unwrap()).expect("it verifies");
    timed("fetch_and_verify", started);

    let published = signed.release["counts"]["contributors"].as_f64().unwrap_or(0.0);
    let total: f64 = stages.iter().map(|(_, s)| s).sum();
    let fields: Vec<String> = stages.iter().map(|(k, s)| format!(r#""{k}": {s:.3}"#)).collect();
    println!(
        r#"{{"conversations": {}, "export_bytes": {bytes}, "contributors": {published}, "total": {total:.3}, {}}}"#,
        conversations.len(),
        fields.join(", ")
    );
}

/// One analyser per core, each taking every other conversation, in export order.
fn analyse(conversations: &[Conversation], study: &CompiledStudy) -> Vec<Analysis> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let analysers: Vec<Analyzer> = (0..threads)
        .map(|_| Analyzer::new(embedder(), study.clone()).unwrap())
        .collect();
    let mut out: Vec<Option<Analysis>> = vec![None; conversations.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = analysers
            .iter()
            .enumerate()
            .map(|(t, analyser)| {
                scope.spawn(move || {
                    (t..conversations.len())
                        .step_by(threads)
                        .map(|i| (i, analyser.analyze(&conversations[i], true).unwrap()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (i, a) in handle.join().unwrap() {
                out[i] = Some(a);
            }
        }
    });
    out.into_iter().map(|a| a.expect("analysed")).collect()
}
