//! The contributor's device: what it remembers between runs ([`memo`]) and the one way a batch
//! that leaves it is built ([`Memo::prepare`], then [`Memo::commit`] when it is handed to the
//! network). The browser client, `chorus report` and `chorus contribute` all go through here.
//!
//! The unit of privacy is the device in one study, across all the study's versions: the memo's
//! ledger records every batch sent and what it spent, a value already sent is re-sent rather
//! than redrawn, and the study's lifetime cap is enforced before anything new leaves.

pub mod batch;
pub mod invitation;
pub mod mechanisms;
pub mod memo;

pub use batch::{random_id, seal, BatchError};
pub use invitation::PendingTokens;
pub use memo::{Draw, Memo, Prepared, Round, Slot, Spend, StudyMemo, MEMO_FORMAT};

use crate::conversation::Conversation;
use crate::privacy::noise::NoiseError;
use crate::privacy::PrivacyError;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("every conversation is excluded: include at least one to donate")]
    NothingIncluded,
    #[error("this device already sent its batch for this version of the study, and that batch reports a conversation that is now excluded; a report that was sent cannot be taken back")]
    AlreadySent,
    #[error("sending would take this device's spending on the study to ε = {:.2}, past the study's lifetime cap of ε = {cap} (ε = {before:.2} spent before, ε = {cost:.2} now)", before + cost)]
    OverLifetimeCap { before: f64, cost: f64, cap: f64 },
    #[error("no batch with that key was prepared for this version of the study")]
    NotPrepared,
    #[error("this study admits invited contributors only: its {needed} reports need as many tokens, redeemed from an invitation")]
    NeedsTokens { needed: usize },
    #[error("the contribution tokens could not be made: {0}")]
    Tokens(String),
    #[error("the memo was written by an older version of Chorus and cannot be read; move it aside to start afresh (the reports it records are then forgotten, and a new batch spends anew)")]
    OldMemo,
    #[error("the memo is damaged: {0}")]
    Damaged(String),
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    #[error(transparent)]
    Noise(#[from] NoiseError),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// SHA-256 over a conversation's id, title and every turn: an edited conversation is a new
/// conversation. It stays on the device (only salted keys derived from it are stored).
pub fn digest(conversation: &Conversation) -> String {
    let mut h = Sha256::new();
    for part in [conversation.id.as_str(), conversation.title.as_deref().unwrap_or("")] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for turn in &conversation.turns {
        h.update([turn.role as u8]);
        h.update((turn.text.len() as u64).to_le_bytes());
        h.update(turn.text.as_bytes());
    }
    hex::encode(h.finalize())
}
