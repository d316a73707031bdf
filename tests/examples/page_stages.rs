//! Screenshots of every stage of the contributor's and the auditor's pages at 1280 and 390 px
//! wide, as a first-time contributor and a reader of the release meet them: the shipped default
//! study, a 400-conversation ChatGPT export written from the public corpus, and a server seeded
//! with 2,000 demo contributors so that the auditor's page has a release to show.
//!
//! ```text
//! cargo run --release -p chorus-tests --example page_stages -- OUT_DIR
//! ```
//! (`cargo xtask wasm` and `cargo build --release --workspace` first; Chromium as for the
//! browser tests.)

use chorus_tests::{cached, workspace_root, write_chatgpt_export, write_sharegpt_sample, ServerProcess};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let out: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("usage: page_stages OUT_DIR"));
    std::fs::create_dir_all(&out).unwrap();
    let out = out.canonicalize().unwrap();
    let work = std::env::temp_dir().join(format!("chorus-page-stages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let corpus = cached("corpus/sharegpt.json");
    let demo = work.join("public.json");
    write_sharegpt_sample(&corpus, 2000, &demo);
    let export = work.join("conversations.json");
    write_chatgpt_export(&corpus, 400, &export);
    let www = workspace_root().join("www");
    let server = ServerProcess::start(
        &work.join("data"),
        None,
        &[
            "--www",
            www.to_str().unwrap(),
            "--demo-corpus",
            demo.to_str().unwrap(),
            "--demo-contributors",
            "2000",
        ],
    );
    let started = Instant::now();
    while server.get("/api/v1/releases").1 == "[]" {
        assert!(started.elapsed() < Duration::from_secs(600), "no demo release");
        std::thread::sleep(Duration::from_millis(500));
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let status = std::process::Command::new("node")
        .arg("stages.mjs")
        .args([
            &server.url,
            "chorus-default",
            export.to_str().unwrap(),
            out.to_str().unwrap(),
        ])
        .current_dir(workspace_root().join("tests/browser"))
        .env("CHROMIUM", chromium)
        .status()
        .expect("node runs");
    assert!(status.success(), "stages.mjs failed");
    drop(server);
    std::fs::remove_dir_all(&work).ok();
}
