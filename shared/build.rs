//! Digests this crate's source, so that a compiled study cached on disk is used only by the
//! code that compiled it: training, embedding and text preparation all live in `src`, and a
//! change to any of them can change a compiled study without changing its format number.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src");
    let mut files = Vec::new();
    collect(Path::new("src"), &mut files);
    files.sort();
    let mut digest = Sha256::new();
    for file in &files {
        let contents = std::fs::read(file).expect("a source file is readable");
        digest.update(file.to_string_lossy().replace('\\', "/").as_bytes());
        digest.update((contents.len() as u64).to_le_bytes());
        digest.update(&contents);
    }
    let hex: String = digest.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=CHORUS_SHARED_SOURCE_DIGEST={hex}");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
