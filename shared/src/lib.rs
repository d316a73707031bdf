//! Everything the Chorus client and server share. This crate does no I/O of its own: callers
//! hand it bytes and readers, and it hands back values.
//!
//! The data flow on the contributor's device, one module a stage:
//! [`import`] (export file → conversations) → [`facets`] (text facets, request text) →
//! [`embed`] (sentence embedding) → [`study`] (category and concern classifiers) —
//! tied together for one conversation in [`pipeline`] → [`privacy`] (privatize, account; and
//! the server's estimators) → [`device`] (the memo, the ledger, and the one way a batch is
//! built) → [`protocol`] (the one type that leaves the device).
//! Releases the server publishes are checked with [`release`]; [`codebook`] is the public topic
//! hierarchy a device names its conversation's topic from.

pub mod codebook;
pub mod conversation;
pub mod device;
pub mod embed;
pub mod facets;
pub mod import;
pub mod pipeline;
pub mod privacy;
pub mod protocol;
pub mod release;
pub mod stable_hash;
pub mod study;

pub use conversation::{Conversation, Role, Turn};
pub use pipeline::{Analysis, Analyzer};
