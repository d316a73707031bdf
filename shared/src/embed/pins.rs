//! The pinned model files, read from `shared/model.toml` (the one place their hashes live).

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

#[derive(Debug, Clone, Deserialize)]
pub struct Pin {
    /// File name in the model cache directory.
    pub file: String,
    /// SHA-256 of the file itself, lowercase hex.
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pins {
    pub model: Pin,
    pub tokenizer: Pin,
}

pub fn pins() -> &'static Pins {
    static PINS: OnceLock<Pins> = OnceLock::new();
    PINS.get_or_init(|| toml::from_str(include_str!("../../model.toml")).expect("shared/model.toml is valid"))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
