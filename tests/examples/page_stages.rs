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

use chorus_tests::{cached, demo_server_with_release, workspace_root, write_chatgpt_export};
use std::path::PathBuf;

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
    let export = work.join("conversations.json");
    write_chatgpt_export(&cached("corpus/sharegpt.json"), 400, &export);
    let server = demo_server_with_release(&work, 2000);
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
