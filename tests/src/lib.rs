//! Helpers shared by the integration tests: where the fixtures, the built `chorus` binary and
//! the cached model and corpus are.

use std::path::{Path, PathBuf};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
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
