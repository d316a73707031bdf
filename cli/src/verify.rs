//! `chorus verify RELEASE.json --key KEY`: checks a release's signature offline.

use chorus_shared::release::{verify, RELEASE_FORMAT};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The signed release document.
    #[arg(value_name = "RELEASE.json")]
    release: PathBuf,
    /// The public key you trust: 64 hex digits, or a file holding them (or the JSON that
    /// `GET /api/v1/public-key` returns).
    #[arg(long, value_name = "KEY")]
    key: String,
}

fn trusted_key(key: &str) -> Result<String, String> {
    let text = match std::fs::read_to_string(key) {
        Ok(text) => text,
        Err(_) if key.len() == 64 => return Ok(key.to_owned()),
        Err(e) => {
            return Err(format!(
                "--key is neither 64 hex digits nor a readable file ({key}: {e})"
            ))
        }
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if v["public_key"].is_string() => Ok(v["public_key"].as_str().unwrap_or_default().to_owned()),
        _ => Ok(text.trim().to_owned()),
    }
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let document =
        std::fs::read_to_string(&args.release).map_err(|e| format!("cannot read {}: {e}", args.release.display()))?;
    let key = trusted_key(&args.key)?;
    match verify(&document, &key) {
        Ok(signed) => {
            match signed.document() {
                Ok(release) => println!(
                    "OK: release {} of study {} (version {}) is signed by {key}",
                    release.id, release.study.id, release.study.version
                ),
                // The signature holds whatever the layout; say which layout this code reads.
                Err(e) => println!(
                    "OK: release {} is signed by {key}; it is not a format-{RELEASE_FORMAT} release ({e}), so this version of chorus does not read its contents",
                    signed.release["id"].as_str().unwrap_or("?")
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("chorus: {}: NOT VERIFIED: {e}", args.release.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
