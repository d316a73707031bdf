//! The release signing key: an Ed25519 key whose 32-byte seed lives in the data directory
//! (`release-signing-key`, hex, readable by its owner only), created on first use.

use chorus_shared::release::{canonical_bytes, ReleaseSignature, SignedRelease, SIGNATURE_ALGORITHM};
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::Value;
use std::path::Path;

pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// Loads the key from `path`, or creates it there from the operating system's secure source.
    pub fn load_or_create(path: &Path) -> Result<Signer, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let seed: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("{} is not a 32-byte hex key", path.display()))?;
                Ok(Signer {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| format!("no secure random source: {e}"))?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                write_private(path, hex::encode(seed).as_bytes())?;
                Ok(Signer {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, release: Value) -> SignedRelease {
        let signature = self.key.sign(&canonical_bytes(&release));
        SignedRelease {
            release,
            signature: ReleaseSignature {
                algorithm: SIGNATURE_ALGORITHM.into(),
                public_key: self.public_key_hex(),
                value: hex::encode(signature.to_bytes()),
            },
        }
    }
}

/// Writes a new secret file readable by its owner only (the release signing key, a token
/// issuer key), synced to disk; an existing file is never overwritten.
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents)
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
