//! The privacy boundary: [`ReportBatch`] is the only thing a Chorus client ever sends about
//! its conversations. For a study that admits invited contributors only, a client first sends
//! an [`InvitationRedemption`] (its invitation code and blinded token inputs, which say nothing
//! of any conversation) and gets [`BlindSignatures`] back.
//!
//! Read this crate to know what leaves a contributor's device. A batch names the study it was
//! made for, a random pseudonym, a random idempotency key, and reports. A report carries, for
//! each of the study's channels, a value privatized by a frequency oracle (an index into a
//! public domain, a hash seed and bucket, or a set of bit indices), and the embedding as a
//! noised, projected vector of a few dozen floats. No text of any kind: no titles, no requests,
//! no exact facet values, no un-noised numbers derived from the conversations.
//!
//! These are plain serde types. They know nothing of noise, models or storage: the device
//! (`chorus_shared::device`) is the one place that builds a batch, from reports privatized with
//! the secure source, and the server (`chorus_server::ingest`) the one place that accepts one.

mod channel;
mod seed_text;

pub use channel::Channel;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of this wire format (2: OLH hash seeds travel as decimal strings).
pub const PROTOCOL_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    pub protocol: u32,
    pub study_id: String,
    /// The study version the reports were made for; the server rejects any other.
    pub study_version: String,
    /// 128 random bits, hex: the same for every batch of one contributor in one study.
    pub contributor: String,
    /// 128 random bits, hex: a retried batch carries the same key and is stored once.
    pub idempotency_key: String,
    pub reports: Vec<Report>,
    /// For a study open to invited contributors only: one anonymous one-time token per report
    /// (Privacy Pass, publicly verifiable; hexadecimal), in the order of the reports. A token
    /// says that an invitation paid for the report, not which one; report i's OLH hash seeds
    /// are derived from token i.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<String>,
}

/// What a device sends to `POST /api/v1/studies/{id}/withdrawals` to withdraw a donation: the
/// batch's idempotency key, a random value only the device that built the batch (and the
/// server that stored it) knows. Nothing else: no receipt, no pseudonym.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    pub idempotency_key: String,
}

/// What a device sends to `POST /api/v1/studies/{id}/tokens`: an invitation code and one blinded
/// token input per report the study takes (RFC 9474 blinded messages, hexadecimal). The blinding
/// hides the token inputs from the issuer, so the tokens cannot be joined to this request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvitationRedemption {
    pub invitation: String,
    pub blinded: Vec<String>,
}

/// The issuer's answer to an [`InvitationRedemption`]: one blind signature per blinded input,
/// in order, hexadecimal. The same request sent again is answered with the same signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlindSignatures {
    pub signatures: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// One privatized value per channel the report carries.
    pub channels: BTreeMap<Channel, Privatized>,
    /// The projected, clipped, noised request embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// A privatized categorical value as it appears in a report: k-RR sends a value, OLH a seed and
/// a bucket, OUE the indices of its set bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Privatized {
    Value(u32),
    Hashed {
        /// Written as a decimal string: a JSON number above 2^53 loses digits in JavaScript,
        /// and a seed that is off by one hashes every value elsewhere.
        #[serde(with = "seed_text")]
        seed: u64,
        bucket: u32,
    },
    Bits(Vec<u32>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_olh_seed_travels_as_text_and_a_number_is_refused() {
        let report = Privatized::Hashed {
            seed: u64::MAX - 1,
            bucket: 3,
        };
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(text, r#"{"seed":"18446744073709551614","bucket":3}"#);
        assert_eq!(serde_json::from_str::<Privatized>(&text).unwrap(), report);
        assert!(serde_json::from_str::<Privatized>(r#"{"seed":18446744073709551614,"bucket":3}"#).is_err());
    }
}
