//! Everything the Chorus client and server share apart from the wire types (`chorus_messages`).
//! This crate does no I/O of its own: callers hand it bytes and readers, and it hands back values.
//!
//! The data flow on the contributor's device, one module a stage:
//! [`import`] (export file → conversations) → [`facets`] (text facets, request text) →
//! [`embed`] (sentence embedding) → [`study`] (category and concern classifiers) —
//! tied together for one conversation in [`pipeline`], which fills in an [`Analysis`] →
//! [`privacy`] (privatize, account; and the server's estimators) → [`device`] (the memo, the
//! ledger, and the one way a `chorus_messages::ReportBatch` is built).
//! Releases the server publishes are checked with [`release`]; [`codebook`] is the public topic
//! hierarchy a device names its conversation's topic from.
//!
//! Layers (each module uses only those listed before it; ARCHITECTURE.md has the picture):
//! conversation, stable_hash → import, facets, embed → codebook → analysis → privacy → study →
//! pipeline → device; release (the typed document) uses privacy only.

pub mod analysis;
pub mod codebook;
pub mod conversation;
pub mod device;
pub mod embed;
pub mod facets;
pub mod import;
pub mod parallel;
pub mod pipeline;
pub mod privacy;
pub mod release;
pub mod stable_hash;
pub mod study;
pub mod tokens;

/// A digest of this crate's source (`build.rs`): caches of compiled studies and tuned layers are
/// keyed by it besides the study, the model and the format, because a change to the code that
/// trains, embeds or prepares texts can change what a study compiles to without a new format.
pub const SOURCE_DIGEST: &str = env!("CHORUS_SHARED_SOURCE_DIGEST");

pub use analysis::Analysis;
pub use conversation::{Conversation, Role, Turn};
pub use pipeline::Analyzer;

#[cfg(test)]
mod tests {
    #[test]
    fn the_source_digest_is_eight_bytes_of_hex() {
        let digest = super::SOURCE_DIGEST;
        assert_eq!(digest.len(), 16, "{digest}");
        assert!(
            digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{digest}"
        );
    }
}
