//! The privacy boundary: [`ReportBatch`] is the only thing a Chorus client ever sends.
//!
//! Read this file to know what leaves a contributor's device. A batch names the study it was
//! made for, a random pseudonym, a random idempotency key, and reports. A report carries, for
//! each of the study's channels, a value privatized by a frequency oracle (an index into a
//! public domain, a hash seed and bucket, or a set of bit indices), and the embedding as a
//! noised, projected vector of a few dozen floats. No text of any kind: no titles, no requests,
//! no exact facet values, no un-noised numbers derived from the conversations.

use crate::privacy::noise::Noise;
use crate::privacy::oracle::Privatized;
use crate::privacy::Channel;
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

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("reports privatized with seeded (simulation) noise can never be sent")]
    InsecureNoise,
    #[error("cannot draw a random identifier: {0}")]
    Random(String),
}

impl ReportBatch {
    /// Assembles a batch. `noise` is the source the reports were privatized with: anything but
    /// OpenDP's secure source is refused, so a simulation's reports cannot be sent by mistake.
    pub fn new(
        study_id: &str,
        study_version: &str,
        contributor: &str,
        idempotency_key: &str,
        reports: Vec<Report>,
        noise: &Noise,
    ) -> Result<ReportBatch, BatchError> {
        if !noise.is_secure() {
            return Err(BatchError::InsecureNoise);
        }
        Ok(ReportBatch {
            protocol: PROTOCOL_VERSION,
            study_id: study_id.to_owned(),
            study_version: study_version.to_owned(),
            contributor: contributor.to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            reports,
        })
    }
}

/// 128 random bits as 32 hex digits, from the secure source.
pub fn random_id(noise: &mut Noise) -> Result<String, BatchError> {
    let a = noise.uniform_u64().map_err(|e| BatchError::Random(e.to_string()))?;
    let b = noise.uniform_u64().map_err(|e| BatchError::Random(e.to_string()))?;
    Ok(format!("{a:016x}{b:016x}"))
}
