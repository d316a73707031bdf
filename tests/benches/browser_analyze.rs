//! The contributor's page in headless Chromium analysing a 1,000-conversation export (the
//! first 1,000 public ShareGPT conversations: a realistic mix of lengths): seconds from the
//! file being chosen to the review table (the pinned model already cached, as on a second
//! visit), with the page's workers, and the peak memory of all of the browser's processes.
//!
//! `cargo bench -p chorus-tests --bench browser_analyze [-- CONVERSATIONS RUNS] [--chatgpt]
//! [--study-file=FILE]` (RUNS after the first; 0 for one run only; FILE: a study to serve in
//! place of the default one, which keeps its id for the page to find it). `--chatgpt`: the export is a ChatGPT
//! `conversations.json` of CONVERSATIONS conversations in the mapping format with a real export's
//! metadata (the public corpus repeated under new ids past its 17,395) — e.g. `-- 25000 0
//! --chatgpt` for a year-sized archive of several hundred MB.
//! (needs Debian's chromium and `npm ci --ignore-scripts` in tests/browser, as
//! `cargo xtask test` installs them).

use chorus_tests::{cached, workspace_root, write_chatgpt_export, write_sharegpt_sample, ServerProcess};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let conversations: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let dir = std::env::temp_dir().join(format!("chorus-browser-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let export = if std::env::args().any(|a| a == "--chatgpt") {
        let export = dir.join("conversations.json");
        let bytes = write_chatgpt_export(&cached("corpus/sharegpt.json"), conversations, &export);
        eprintln!(
            "browser_analyze: a ChatGPT export of {conversations} conversations, {} MB",
            bytes >> 20
        );
        export
    } else {
        let export = dir.join(format!("sharegpt-{conversations}.json"));
        write_sharegpt_sample(&cached("corpus/sharegpt.json"), conversations, &export);
        export
    };
    let www = workspace_root().join("www");
    let study_file = std::env::args().find_map(|a| a.strip_prefix("--study-file=").map(String::from));
    let mut serve = vec!["--www", www.to_str().unwrap()];
    if let Some(file) = &study_file {
        serve.extend(["--study-file", file]);
    }
    let server = ServerProcess::start(&dir.join("data"), None, &serve);
    let out = std::process::Command::new("node")
        .args([
            "bench.mjs",
            &server.url,
            export.to_str().unwrap(),
            &(runs + 1).to_string(),
        ])
        .current_dir(workspace_root().join("tests/browser"))
        .output()
        .expect("node runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seconds: Vec<f64> = result["seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    // The table shows a page of rows, whatever the export's size.
    assert!(result["rows_rendered"].as_u64().unwrap() <= 500, "{result}");
    // The first run also downloads and caches the model; the rest are what a return visit sees.
    let later = if seconds.len() > 1 { &seconds[1..] } else { &seconds[..] };
    let mean = later.iter().sum::<f64>() / later.len() as f64;
    println!(
        "browser_analyze: {} conversations, {} workers: first run {:.1} s (model download included), then {:.1} s mean over {} runs ({:.1} ms per conversation); peak RSS of the browser {} MB; {} table rows rendered",
        result["conversations"],
        result["workers"],
        seconds[0],
        mean,
        later.len(),
        1000.0 * mean / result["conversations"].as_f64().unwrap(),
        result["peak_rss_mb"],
        result["rows_rendered"]
    );
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}
