//! Releases as auditors receive them: a JSON document `{"release": …, "signature": …}` whose
//! signature is Ed25519 over the release's canonical bytes. Verification lives here so that the
//! `chorus verify` command and the auditor's page (through the wasm client) run the same code.
//!
//! Canonical bytes: the `release` value written as compact JSON by `serde_json`, with object
//! keys in the order the document holds them. Writing a parsed document back out gives the
//! same bytes (numbers keep their shortest round-trip form), so a release can be pretty-printed,
//! stored and re-read without breaking its signature — but not edited.

pub mod document;

pub use document::{Release, RELEASE_FORMAT};
use ed25519_dalek::{Signature as EdSignature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SIGNATURE_ALGORITHM: &str = "ed25519";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRelease {
    pub release: Value,
    pub signature: ReleaseSignature,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSignature {
    pub algorithm: String,
    /// The signer's Ed25519 public key, 32 bytes in hex.
    pub public_key: String,
    /// The signature of the canonical bytes, 64 bytes in hex.
    pub value: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("this is not a signed Chorus release: {0}")]
    NotARelease(String),
    #[error("unsupported signature algorithm `{0}` (expected ed25519)")]
    Algorithm(String),
    #[error("the public key is not 32 bytes of hex: {0}")]
    BadKey(String),
    #[error("the release was signed by key {signed_by}, not by the expected key {expected}")]
    OtherKey { signed_by: String, expected: String },
    #[error("the signature does not match the release: it was altered after signing, or signed by someone else")]
    Mismatch,
}

impl SignedRelease {
    /// The release as the typed document of this format ([`RELEASE_FORMAT`]); an error for a
    /// release of another layout (whose signature still verifies).
    pub fn document(&self) -> Result<Release, serde_json::Error> {
        Release::deserialize(&self.release)
    }
}

/// The bytes a release's signature covers.
pub fn canonical_bytes(release: &Value) -> Vec<u8> {
    serde_json::to_vec(release).expect("a JSON value serialises")
}

/// Parses a hex Ed25519 public key.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, VerifyError> {
    let bytes = hex::decode(hex_key.trim()).map_err(|e| VerifyError::BadKey(e.to_string()))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| VerifyError::BadKey(format!("{} bytes", b.len())))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| VerifyError::BadKey(e.to_string()))
}

/// Checks a signed release document against the key the auditor trusts (hex). Returns the
/// release on success.
pub fn verify(document: &str, trusted_key: &str) -> Result<SignedRelease, VerifyError> {
    let signed: SignedRelease = serde_json::from_str(document).map_err(|e| VerifyError::NotARelease(e.to_string()))?;
    if signed.signature.algorithm != SIGNATURE_ALGORITHM {
        return Err(VerifyError::Algorithm(signed.signature.algorithm.clone()));
    }
    let key = parse_public_key(trusted_key)?;
    let signed_by = parse_public_key(&signed.signature.public_key)?;
    if key != signed_by {
        return Err(VerifyError::OtherKey {
            signed_by: signed.signature.public_key.clone(),
            expected: trusted_key.trim().to_owned(),
        });
    }
    let bytes = hex::decode(&signed.signature.value).map_err(|_| VerifyError::Mismatch)?;
    let signature = EdSignature::from_slice(&bytes).map_err(|_| VerifyError::Mismatch)?;
    key.verify(&canonical_bytes(&signed.release), &signature)
        .map_err(|_| VerifyError::Mismatch)?;
    Ok(signed)
}
