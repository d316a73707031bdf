//! Helpers shared by the integration tests: where the fixtures, the built `chorus` binary and
//! the cached model and corpus are.

use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The `chorus` binary of the profile these tests were built with.
pub fn chorus_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/chorus
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target layout")
        .join("chorus");
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --release --workspace`)",
        path.display()
    );
    path
}

/// `$CHORUS_CACHE_DIR`, else `$XDG_CACHE_HOME/chorus`, else `~/.cache/chorus`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHORUS_CACHE_DIR") {
        return dir.into();
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("chorus")
}

/// A file the test command fetched into the cache (`cargo xtask fetch --corpus`); a missing
/// file fails the test loudly rather than skipping it.
pub fn cached(relative: &str) -> PathBuf {
    let path = cache_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask fetch --corpus` (the test command does)",
        path.display()
    );
    path
}

/// The first `n` conversations of an export, read with Chorus's own import.
pub fn first_conversations(export: &Path, n: usize) -> Vec<chorus_shared::Conversation> {
    let mut out = Vec::new();
    let file = std::fs::File::open(export).unwrap_or_else(|e| panic!("{}: {e}", export.display()));
    chorus_shared::import::read_export(file, &export.display().to_string(), &mut |c| {
        if out.len() < n {
            out.push(c)
        }
    })
    .expect("the export reads");
    out
}

/// Writes the first `n` conversations of `export` as a ShareGPT-style JSON file: the
/// realistic length mix the benchmarks and the wasm test use.
pub fn write_sharegpt_sample(export: &Path, n: usize, out: &Path) {
    use chorus_shared::Role;
    let records: Vec<serde_json::Value> = first_conversations(export, n)
        .iter()
        .map(|c| {
            let turns: Vec<serde_json::Value> = c
                .turns
                .iter()
                .map(|t| {
                    let from = if t.role == Role::User { "human" } else { "gpt" };
                    serde_json::json!({ "from": from, "value": t.text })
                })
                .collect();
            serde_json::json!({ "id": c.id, "conversations": turns })
        })
        .collect();
    std::fs::write(out, serde_json::to_vec(&records).unwrap()).unwrap();
}

/// A study compiled by the `chorus` binary (which caches it), loaded for use in a test.
pub fn compile_study(study_toml: Option<&Path>) -> chorus_shared::study::CompiledStudy {
    let out = std::env::temp_dir().join(format!(
        "chorus-compiled-{}-{:x}.json",
        std::process::id(),
        fnv(study_toml)
    ));
    let mut command = std::process::Command::new(chorus_bin());
    command.args(["study", "compile", "--out"]).arg(&out);
    if let Some(path) = study_toml {
        command.arg("--study").arg(path);
    }
    let status = command.status().expect("chorus runs");
    assert!(status.success(), "chorus study compile failed");
    let compiled = serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("a compiled study");
    std::fs::remove_file(&out).ok();
    compiled
}

fn fnv(path: Option<&Path>) -> u64 {
    path.map(|p| p.display().to_string())
        .unwrap_or_default()
        .bytes()
        .fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// The embedder over the cached pinned model.
pub fn embedder() -> chorus_shared::embed::Embedder {
    use chorus_shared::embed::pins::pins;
    let model = std::fs::read(cached(&format!("model/{}", pins().model.file))).unwrap();
    let tokenizer = std::fs::read(cached(&format!("model/{}", pins().tokenizer.file))).unwrap();
    chorus_shared::embed::Embedder::new(&model, &tokenizer).unwrap()
}

/// Fails if `sent` contains any 20 consecutive characters of any title or turn of `export`.
pub fn assert_no_text_of(export: &Path, sent: &str) {
    let mut checked = 0usize;
    for conversation in first_conversations(export, usize::MAX) {
        let texts = conversation
            .turns
            .iter()
            .map(|t| t.text.as_str())
            .chain(conversation.title.as_deref());
        for text in texts {
            let chars: Vec<char> = text.chars().collect();
            for window in chars.windows(20) {
                let needle: String = window.iter().collect();
                assert!(
                    !sent.contains(&needle),
                    "the payload contains conversation text: {needle:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "too little text to check ({checked} windows)");
}
