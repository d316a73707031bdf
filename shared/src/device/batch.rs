//! Sealing reports into the batch that leaves the device: the one constructor of a
//! [`ReportBatch`] outside tests of the server, and the refusal of simulation noise.

use crate::privacy::noise::Noise;
use chorus_messages::{Report, ReportBatch, PROTOCOL_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("reports privatized with seeded (simulation) noise can never be sent")]
    InsecureNoise,
    #[error("cannot draw a random identifier: {0}")]
    Random(String),
}

/// Assembles a batch. `noise` is the source the reports were privatized with: anything but
/// OpenDP's secure source is refused, so a simulation's reports cannot be sent by mistake.
pub fn seal(
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
        tokens: Vec::new(),
    })
}

/// 128 random bits as 32 hex digits, from the secure source.
pub fn random_id(noise: &mut Noise) -> Result<String, BatchError> {
    let a = noise.uniform_u64().map_err(|e| BatchError::Random(e.to_string()))?;
    let b = noise.uniform_u64().map_err(|e| BatchError::Random(e.to_string()))?;
    Ok(format!("{a:016x}{b:016x}"))
}
