//! Admission to a study open to invited contributors only: invitation codes, the issuer key of
//! each study version, and the redemption of an invitation for anonymous one-time tokens
//! ([`chorus_shared::tokens`]).
//!
//! Architecture Invariant: issuance and ingest share no identifier. Redemption sees an
//! invitation code and blinded token inputs; ingest sees a pseudonym and tokens. The store keeps
//! a hash of each code and, once redeemed, a hash of the blinded request (for retries); the
//! spent tokens' nonces are kept apart. Neither holds a time, and no log line or metric names
//! an invitation, a blinded input or a token.

use crate::release::sign::write_private;
use crate::storage::{Redemption, Storage, StorageError};
use chorus_shared::study::CompiledStudy;
use chorus_shared::tokens::{IssuerKey, TokenError, KEY_BITS};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Why a redemption was refused.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("this invitation is not one of this study's")]
    Unknown,
    #[error("this invitation was used already")]
    Spent,
    #[error("an invitation pays for {expected} tokens (one per report the study takes); the request asks for {asked}")]
    WrongCount { expected: usize, asked: usize },
    #[error("a blinded token request is malformed: {0}")]
    Malformed(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// `count` fresh invitation codes (128 random bits each, from the operating system's secure
/// source), printable as groups of four hexadecimal digits.
pub fn new_codes(count: usize) -> Result<Vec<String>, String> {
    (0..count)
        .map(|_| {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(|e| format!("no secure random source: {e}"))?;
            let hex = hex::encode(bytes);
            Ok(hex
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-"))
        })
        .collect()
}

/// What the store keeps of a code: its SHA-256, bound to the study (case, spaces and dashes of
/// the written code do not matter).
pub fn code_hash(study_id: &str, code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(format!("chorus invitation\0{study_id}\0{normal}")))
}

/// The issuer key of `study`'s current version, from the data directory, created on first use
/// (`token-keys/<study>-<version>.der`, readable by its owner only). A new version gets a new
/// key: tokens of one version never count for another.
pub fn issuer_key(data_dir: &Path, study: &CompiledStudy) -> Result<IssuerKey, String> {
    let dir = data_dir.join("token-keys");
    let path = dir.join(format!("{}-{}.der", study.id, study.version));
    if path.exists() {
        let der = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return IssuerKey::from_der(&der).map_err(|e| format!("{}: {e}", path.display()));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key = IssuerKey::generate().map_err(|e| e.to_string())?;
    let der = key.to_der().map_err(|e| e.to_string())?;
    write_private(&path, &der)?;
    Ok(key)
}

/// Redeems `code` for one blind signature per blinded token input: exactly one per report the
/// study takes from a contributor. A retry of the same request is answered again (the signatures
/// are deterministic, so it yields no new token); any other second use is refused.
pub fn redeem(
    storage: &dyn Storage,
    study: &CompiledStudy,
    key: &IssuerKey,
    code: &str,
    blinded: &[String],
) -> Result<Vec<String>, RedeemError> {
    let expected = study.privacy.reports_per_contributor as usize;
    if blinded.len() != expected {
        return Err(RedeemError::WrongCount {
            expected,
            asked: blinded.len(),
        });
    }
    let inputs: Vec<Vec<u8>> = blinded
        .iter()
        .map(|b| hex::decode(b).map_err(|e| RedeemError::Malformed(e.to_string())))
        .collect::<Result<_, _>>()?;
    if inputs.iter().any(|i| i.len() != KEY_BITS / 8) {
        return Err(RedeemError::Malformed(format!(
            "a blinded input is {} bytes",
            KEY_BITS / 8
        )));
    }
    let mut request = Sha256::new();
    for input in &inputs {
        request.update(input);
    }
    let request = hex::encode(request.finalize());
    match storage.redeem_invitation(&study.id, &code_hash(&study.id, code), &request)? {
        Redemption::Redeemed | Redemption::Retried => {}
        Redemption::Spent => return Err(RedeemError::Spent),
        Redemption::Unknown => return Err(RedeemError::Unknown),
    }
    inputs
        .iter()
        .map(|input| key.issue(input).map(hex::encode))
        .collect::<Result<_, TokenError>>()
        .map_err(|e| RedeemError::Malformed(e.to_string()))
}
