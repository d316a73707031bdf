//! The same 300 conversations imported and analysed natively (this process, one thread) and by the wasm
//! build under Node (one thread), interleaved A B A B …; prints the medians and their ratio.
//! Run with `cargo bench -p chorus-tests --bench wasm_vs_native` after `cargo xtask wasm`.

mod common;

use chorus_shared::embed::pins::pins;
use chorus_tests::{cached, chorus_bin, workspace_root, write_sharegpt_sample};
use std::process::Command;
use std::time::Instant;

const ROUNDS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("chorus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = dir.join("sharegpt-300.json");
    write_sharegpt_sample(&cached("corpus/sharegpt.json"), common::MIX, &export);
    let study = dir.join("study.json");
    let status = Command::new(chorus_bin())
        .args(["study", "compile", "--out"])
        .arg(&study)
        .status()
        .unwrap();
    assert!(status.success());

    let analyzer = common::analyzer();
    let bytes = std::fs::read(&export).unwrap();
    let (mut native, mut wasm) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Like the wasm client: import from the export's bytes, then analyse each conversation.
        let started = Instant::now();
        let mut count = 0;
        chorus_shared::import::read_export(std::io::Cursor::new(&bytes), "mix", &mut |conversation| {
            std::hint::black_box(analyzer.analyze(&conversation, false).unwrap());
            count += 1;
        })
        .unwrap();
        native.push(started.elapsed().as_secs_f64() * 1000.0 / count as f64);

        let out = Command::new("node")
            .arg(workspace_root().join("tests/wasm/analyze.mjs"))
            .arg(cached(&format!("model/{}", pins().model.file)))
            .arg(cached(&format!("model/{}", pins().tokenizer.file)))
            .arg(&study)
            .arg(&export)
            .arg("--time")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let timing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = timing["conversations"].as_f64().unwrap();
        wasm.push(timing["ms"].as_f64().unwrap() / n);
        eprintln!(
            "round {round}: native {:.1} ms/conversation, wasm {:.1} ms/conversation",
            native[round], wasm[round]
        );
    }
    let (n, w) = (median(native), median(wasm));
    println!(
        "import + analysis of {} ShareGPT conversations, one thread each, median of {ROUNDS} interleaved rounds:",
        common::MIX
    );
    println!("  native (tract, x86-64)    {n:7.1} ms/conversation");
    println!("  wasm (Node {}, relaxed SIMD){w:7.1} ms/conversation", node_version());
    println!("  wasm / native             {:7.2}", w / n);
    std::fs::remove_dir_all(&dir).ok();
}

fn node_version() -> String {
    Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
