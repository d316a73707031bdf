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
