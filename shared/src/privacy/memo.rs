//! Memoisation: a conversation's report is drawn once and re-sent unchanged, and the sample of
//! conversations a contributor reports is drawn once per study version, so that running the
//! client again can neither average the noise away nor spend more than `m` reports (as RAPPOR
//! does). The memo lives on the contributor's device (IndexedDB in the browser, a file for the
//! `chorus` command); it is keyed by a salted hash, so it does not hold the conversations.

use super::noise::{Noise, NoiseError};
use super::{PrivacyError, PrivacyPlan};
use crate::conversation::Conversation;
use crate::pipeline::Analysis;
use crate::protocol::{random_id, Report, ReportBatch};
use crate::study::CompiledStudy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memo {
    /// Random, drawn once per device; keeps the keys from being matched against known texts.
    pub salt: String,
    /// Keyed by `study_id@study_version`.
    pub studies: BTreeMap<String, StudyMemo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StudyMemo {
    /// The contributor's pseudonym in this study.
    pub contributor: String,
    /// The idempotency key of the batch of these reports: sending it again is a retry.
    pub batch_key: String,
    /// Keys of the conversations selected for reporting, in selection order.
    pub selected: Vec<String>,
    /// The report drawn for each selected conversation.
    pub reports: BTreeMap<String, Report>,
}

impl Memo {
    pub fn new(noise: &mut Noise) -> Result<Memo, NoiseError> {
        Ok(Memo {
            salt: format!("{:016x}{:016x}", noise.uniform_u64()?, noise.uniform_u64()?),
            studies: BTreeMap::new(),
        })
    }

    /// The salted key of a conversation in a study version, from its [`digest`].
    pub fn key(&self, study_version: &str, digest: &str) -> String {
        let mut h = Sha256::new();
        for part in [self.salt.as_str(), study_version, digest] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The reports to send for a study: on the first run, a uniform sample of at most `m` of
    /// the `candidates` (key and analysis), each privatized once; on every later run, exactly
    /// the same reports, under the same pseudonym and batch key.
    pub fn reports(
        &mut self,
        study: &str,
        plan: &PrivacyPlan,
        categories: &[String],
        candidates: &[(String, &Analysis)],
        noise: &mut Noise,
    ) -> Result<&StudyMemo, PrivacyError> {
        let memo = self.studies.entry(study.to_owned()).or_default();
        let id = |noise: &mut Noise| random_id(noise).map_err(|e| PrivacyError::Invalid(e.to_string()));
        if memo.contributor.is_empty() {
            memo.contributor = id(noise)?;
        }
        if memo.selected.is_empty() {
            memo.batch_key = id(noise)?;
            let chosen = noise.sample_indices(candidates.len(), plan.reports_per_contributor as usize)?;
            for i in chosen {
                let (key, analysis) = &candidates[i];
                let report = plan.privatize(analysis, categories, noise)?;
                memo.reports.insert(key.clone(), report);
                memo.selected.push(key.clone());
            }
        }
        Ok(memo)
    }
}

/// The memo's name for a compiled study: `study_id@study_version` (a new version is a new
/// study round, with a new sample and new reports).
pub fn study_key(study: &CompiledStudy) -> String {
    format!("{}@{}", study.id, study.version)
}

impl Memo {
    /// The batch this device sends for `study`: the memoised reports (drawn on the first run
    /// from the `candidates`, keyed with [`study_key`]) under the memoised pseudonym and key.
    pub fn batch(
        &mut self,
        study: &CompiledStudy,
        candidates: &[(String, &Analysis)],
        noise: &mut Noise,
    ) -> Result<ReportBatch, PrivacyError> {
        let entry = self.reports(
            &study_key(study),
            &study.privacy,
            &study.category_ids(),
            candidates,
            noise,
        )?;
        Ok(ReportBatch::new(
            &study.id,
            &study.version,
            &entry.contributor,
            &entry.batch_key,
            entry.selected_reports(),
            noise,
        )?)
    }
}

impl StudyMemo {
    /// The memoised reports, in selection order.
    pub fn selected_reports(&self) -> Vec<Report> {
        self.selected
            .iter()
            .filter_map(|k| self.reports.get(k).cloned())
            .collect()
    }
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
