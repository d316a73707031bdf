//! The memo: what a contributor's device remembers of a study, so that running the client again
//! can neither average the noise away nor spend more than it says (as RAPPOR does).
//!
//! - Each sampled conversation's report is drawn once and kept ([`Draw`]); a value is re-used
//!   whenever the same mechanism asks for it again, in this study version or a later one, and a
//!   value that already left the device costs nothing to send again.
//! - A batch always holds exactly `m` reports, in random order, of conversations included right
//!   now ([`Memo::prepare`]): an excluded conversation is never sent; the sample may be redrawn
//!   among the included ones before anything is sent (only `m` reports ever leave).
//! - Once a batch is handed to the network ([`Memo::commit`]) it is frozen, and the device's
//!   ledger records what it spent; the study's lifetime cap is enforced there.
//!
//! The memo lives on the device (IndexedDB in the browser, a file for the `chorus` command). It
//! is keyed by salted hashes of the conversations, so it does not hold them.

use super::batch::{random_id, seal};
use super::mechanisms::{mechanisms, Mechanisms};
use super::DeviceError;
use crate::analysis::Analysis;
use crate::privacy::accountant::{self, Guarantee, ReportCost};
use crate::privacy::noise::{Noise, NoiseError};
use crate::privacy::oracle::Oracle;
use crate::privacy::PrivacyPlan;
use crate::study::{Access, CompiledStudy};
use crate::tokens::Token;
use chorus_messages::{Channel, Privatized, Report, ReportBatch};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Version of the memo's layout (the first had no `format` field).
pub const MEMO_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memo {
    pub format: u32,
    /// Random, drawn once per device; keeps the keys from being matched against known texts.
    pub salt: String,
    /// By study id: one entry per study, across all its versions.
    pub studies: BTreeMap<String, StudyMemo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyMemo {
    /// The reports drawn for each conversation (by salted key), one per time it was sampled
    /// into the same batch (a conversation appears more than once only when the device has
    /// fewer than `m`).
    pub draws: BTreeMap<String, Vec<Draw>>,
    /// One round per study version this device prepared a batch for.
    pub rounds: BTreeMap<String, Round>,
    /// Every batch this device sent to the study, across its versions, with what it spent.
    pub ledger: Vec<Spend>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Round {
    /// The contributor's pseudonym in this study version.
    pub contributor: String,
    /// The idempotency key of the batch: sending it again is a retry.
    pub batch_key: String,
    /// The batch's reports in the order they are sent.
    pub slots: Vec<Slot>,
    /// Set once the batch was handed to the network: from then on it is re-sent unchanged.
    pub sent: bool,
    /// For a study that admits invited contributors only: the batch's tokens (hexadecimal), one
    /// per report in order; each fixes its report's OLH hash seeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<String>,
}

/// One report of a batch: the `draw`-th report drawn for the conversation `key`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    pub key: String,
    pub draw: usize,
}

/// The values drawn for one report of one conversation, each with the mechanism that drew it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draw {
    /// Per sampled pool: the channel this report carries, and the pool's members it was chosen from.
    pub pools: BTreeMap<String, PoolChoice>,
    pub channels: BTreeMap<Channel, Drawn<Privatized>>,
    pub embedding: Option<Drawn<Vec<f32>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolChoice {
    pub members: String,
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drawn<T> {
    /// The fingerprint of the mechanism that drew it ([`super::mechanisms`]).
    pub mechanism: String,
    pub value: T,
    /// Whether it has left the device (then sending it again costs nothing).
    pub sent: bool,
}

/// One batch sent, in the device's ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spend {
    pub study_version: String,
    pub reports: usize,
    /// Values in the batch that had never left the device; only they cost anything.
    pub new_values: usize,
    /// What sending the batch spent (composed over its reports' new values).
    pub spent: Guarantee,
}

/// A batch ready to show and send, with what sending it costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prepared {
    pub batch: ReportBatch,
    /// For each report, in batch order, the index (into the candidates) of its conversation.
    pub sampled: Vec<usize>,
    /// Whether this batch was sent already (sending it again is a retry and costs nothing).
    pub sent: bool,
    /// What sending it spends now: only values that never left the device count.
    pub cost: Guarantee,
    /// The device's total for the study (every version) before and after sending it.
    pub lifetime_before: Guarantee,
    pub lifetime_after: Guarantee,
    /// The study's lifetime cap on ε, which the device enforces.
    pub lifetime_cap: Option<f64>,
}

impl Memo {
    pub fn new(noise: &mut Noise) -> Result<Memo, DeviceError> {
        Ok(Memo {
            format: MEMO_FORMAT,
            salt: random_id(noise)?,
            studies: BTreeMap::new(),
        })
    }

    /// Reads a stored memo; one written by an older layout is refused with a message that says so.
    pub fn from_json(json: &str) -> Result<Memo, DeviceError> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| DeviceError::Damaged(e.to_string()))?;
        if value.get("format").and_then(serde_json::Value::as_u64) != Some(MEMO_FORMAT.into()) {
            return Err(DeviceError::OldMemo);
        }
        serde_json::from_value(value).map_err(|e| DeviceError::Damaged(e.to_string()))
    }

    /// The salted key of a conversation in a study (the same in every version of it), from its
    /// [`super::digest`].
    pub fn key(&self, study_id: &str, digest: &str) -> String {
        let mut h = Sha256::new();
        for part in [self.salt.as_str(), study_id, digest] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// What this device has spent on a study, across its versions (basic composition).
    pub fn lifetime(&self, study_id: &str) -> Guarantee {
        let ledger = self
            .studies
            .get(study_id)
            .map(|s| s.ledger.as_slice())
            .unwrap_or_default();
        Guarantee {
            epsilon: ledger.iter().map(|s| s.spent.epsilon).sum(),
            delta: ledger.iter().map(|s| s.spent.delta).sum(),
        }
    }

    /// The batch this device would send for `study` from the conversations included now
    /// (`candidates`: salted key and analysis). Before anything is sent, the sample keeps the
    /// conversations still included and fills up with new ones drawn at random; once sent, the
    /// same batch comes back (or an error, if one of its conversations is now excluded).
    pub fn prepare(
        &mut self,
        study: &CompiledStudy,
        candidates: &[(String, &Analysis)],
        noise: &mut Noise,
    ) -> Result<Prepared, DeviceError> {
        self.prepare_with_tokens(study, candidates, &[], noise)
    }

    /// [`Memo::prepare`] for a study that admits invited contributors only: `tokens` (one per
    /// report the study takes, redeemed from an invitation) travel with the batch and fix its
    /// reports' OLH hash seeds. A value drawn before with another seed is drawn again (and
    /// paid for again). Once a batch is sent, it comes back with the tokens it was sent with.
    pub fn prepare_with_tokens(
        &mut self,
        study: &CompiledStudy,
        candidates: &[(String, &Analysis)],
        tokens: &[Token],
        noise: &mut Noise,
    ) -> Result<Prepared, DeviceError> {
        if candidates.is_empty() {
            return Err(DeviceError::NothingIncluded);
        }
        let index: BTreeMap<&str, usize> = candidates
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_str(), i))
            .collect();
        let mechanisms = mechanisms(study);
        let lifetime_before = self.lifetime(&study.id);
        let memo = self.studies.entry(study.id.clone()).or_default();
        memo.round(study, &index, candidates, noise)?;
        let round = memo.rounds.get_mut(&study.version).expect("round() made it");
        if !round.sent && !tokens.is_empty() {
            round.tokens = tokens.iter().take(round.slots.len()).map(Token::to_hex).collect();
        }
        let (contributor, batch_key, slots, sent, round_tokens) = (
            round.contributor.clone(),
            round.batch_key.clone(),
            round.slots.clone(),
            round.sent,
            round.tokens.clone(),
        );
        if study.access == Access::Invited && round_tokens.len() < slots.len() {
            return Err(DeviceError::NeedsTokens { needed: slots.len() });
        }
        let parsed: Vec<Token> = round_tokens
            .iter()
            .map(|t| Token::from_hex(t).map_err(|e| DeviceError::Damaged(e.to_string())))
            .collect::<Result<_, _>>()?;
        let categories = study.category_ids();
        let mut reports = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter().enumerate() {
            let analysis = candidates[index[slot.key.as_str()]].1;
            let draw = memo.draw_mut(slot);
            let token = parsed.get(i);
            // A sent batch is re-sent as it left: even when the device's code now computes its
            // channels another way (a new compiled format, model or classifier under the same
            // study version), a fresh draw of the same conversation must not leave the device.
            reports.push(match sent {
                true => draw.sent_report(&study.privacy)?,
                false => draw.report(&study.privacy, &mechanisms, analysis, &categories, token, noise)?,
            });
        }
        let cost = memo.cost(&study.privacy, &slots, study.privacy.delta);
        let mut batch = seal(&study.id, &study.version, &contributor, &batch_key, reports, noise)?;
        batch.tokens = round_tokens;
        Ok(Prepared {
            batch,
            sampled: slots.iter().map(|s| index[s.key.as_str()]).collect(),
            sent,
            lifetime_after: Guarantee {
                epsilon: lifetime_before.epsilon + cost.epsilon,
                delta: lifetime_before.delta + cost.delta,
            },
            cost,
            lifetime_before,
            lifetime_cap: study.privacy.lifetime_epsilon_cap,
        })
    }

    /// Marks the prepared batch with this key as sent: its values are recorded as having left
    /// the device and the ledger gains what they cost. Refused when that would take the device
    /// past the study's lifetime cap. Committing a batch that was sent already changes nothing.
    pub fn commit(&mut self, study: &CompiledStudy, batch_key: &str) -> Result<Option<Spend>, DeviceError> {
        let lifetime = self.lifetime(&study.id);
        let memo = self.studies.get_mut(&study.id).ok_or(DeviceError::NotPrepared)?;
        let round = memo
            .rounds
            .get(&study.version)
            .filter(|r| r.batch_key == batch_key)
            .ok_or(DeviceError::NotPrepared)?;
        if round.sent {
            return Ok(None);
        }
        let slots = round.slots.clone();
        let cost = memo.cost(&study.privacy, &slots, study.privacy.delta);
        if let Some(cap) = study.privacy.lifetime_epsilon_cap {
            if lifetime.epsilon + cost.epsilon > cap + 1e-9 {
                return Err(DeviceError::OverLifetimeCap {
                    before: lifetime.epsilon,
                    cost: cost.epsilon,
                    cap,
                });
            }
        }
        let mut new_values = 0;
        for slot in &slots {
            let draw = memo.draw_mut(slot);
            let carried = draw.carried(&study.privacy);
            for (channel, drawn) in draw.channels.iter_mut() {
                if carried.contains(channel) && !drawn.sent {
                    drawn.sent = true;
                    new_values += 1;
                }
            }
            // Only an embedding this study's reports carry leaves the device.
            let embedding = draw.embedding.as_mut().filter(|_| study.privacy.embedding.is_some());
            if let Some(e) = embedding.filter(|e| !e.sent) {
                e.sent = true;
                new_values += 1;
            }
        }
        let spend = Spend {
            study_version: study.version.clone(),
            reports: slots.len(),
            new_values,
            spent: cost,
        };
        memo.ledger.push(spend.clone());
        memo.rounds.get_mut(&study.version).expect("checked above").sent = true;
        Ok(Some(spend))
    }
}

impl StudyMemo {
    /// This version's round, its sample brought up to date with the included conversations.
    fn round(
        &mut self,
        study: &CompiledStudy,
        index: &BTreeMap<&str, usize>,
        candidates: &[(String, &Analysis)],
        noise: &mut Noise,
    ) -> Result<&Round, DeviceError> {
        let m = study.privacy.reports_per_contributor as usize;
        let sent = self.rounds.get(&study.version).map(|r| (r.sent, r.slots.clone()));
        if let Some((true, slots)) = sent {
            if slots.iter().any(|s| !index.contains_key(s.key.as_str())) {
                return Err(DeviceError::AlreadySent);
            }
            return Ok(&self.rounds[&study.version]);
        }
        // Start from this version's sample, or carry over the last batch sent to the study.
        let previous: Vec<Slot> = match self.rounds.get(&study.version) {
            Some(round) => round.slots.clone(),
            None => self
                .ledger
                .last()
                .and_then(|spend| self.rounds.get(&spend.study_version))
                .map(|round| round.slots.clone())
                .unwrap_or_default(),
        };
        let slots = choose_slots(&previous, index, candidates, m, noise)?;
        let unchanged = self
            .rounds
            .get(&study.version)
            .is_some_and(|r| sorted(&r.slots) == sorted(&slots));
        if !unchanged {
            let contributor = match self.rounds.get(&study.version) {
                Some(round) => round.contributor.clone(),
                None => random_id(noise)?,
            };
            let round = Round {
                contributor,
                // Another sample is another batch: a new key, and a new random order.
                batch_key: random_id(noise)?,
                slots: shuffled(slots, noise)?,
                sent: false,
                // Tokens of an unsent batch were never spent: the new batch takes them over.
                tokens: self
                    .rounds
                    .get(&study.version)
                    .map(|r| r.tokens.clone())
                    .unwrap_or_default(),
            };
            self.rounds.insert(study.version.clone(), round);
        }
        Ok(self.rounds.get(&study.version).expect("inserted above"))
    }

    fn draw_mut(&mut self, slot: &Slot) -> &mut Draw {
        let draws = self.draws.entry(slot.key.clone()).or_default();
        if draws.len() <= slot.draw {
            draws.resize_with(slot.draw + 1, Draw::default);
        }
        &mut draws[slot.draw]
    }

    /// What sending these reports costs: the values among them that never left the device.
    fn cost(&self, plan: &PrivacyPlan, slots: &[Slot], delta: f64) -> Guarantee {
        let costs: Vec<ReportCost> = slots
            .iter()
            .filter_map(|slot| self.draws.get(&slot.key)?.get(slot.draw))
            .map(|draw| draw.new_cost(plan))
            .collect();
        accountant::compose_reports(&costs, delta).0
    }
}

/// The sample of a batch, `m` slots: with at least `m` conversations included, `m` distinct
/// ones — the `previous` ones still included, then others drawn uniformly; with fewer, every
/// included conversation once, then repeats — the previous repeats still included, then
/// conversations drawn with replacement. A new slot of a conversation takes its first draw no
/// other slot uses (earlier draws are re-used, never redrawn).
fn choose_slots(
    previous: &[Slot],
    index: &BTreeMap<&str, usize>,
    candidates: &[(String, &Analysis)],
    m: usize,
    noise: &mut Noise,
) -> Result<Vec<Slot>, NoiseError> {
    let n = candidates.len();
    let included: Vec<&Slot> = previous.iter().filter(|s| index.contains_key(s.key.as_str())).collect();
    // The first slot of each conversation kept from the previous sample.
    let mut slots: Vec<Slot> = Vec::with_capacity(m);
    for slot in &included {
        if slots.len() < m && !slots.iter().any(|s| s.key == slot.key) {
            slots.push((*slot).clone());
        }
    }
    let chosen: BTreeSet<&str> = slots.iter().map(|s| s.key.as_str()).collect();
    let others: Vec<&str> = candidates
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !chosen.contains(k))
        .collect();
    let mut keys: Vec<&str> = if n >= m {
        noise
            .sample_indices(others.len(), m - slots.len())?
            .into_iter()
            .map(|i| others[i])
            .collect()
    } else {
        others
    };
    if n < m {
        // Repeats: the previous ones first, then new ones with replacement.
        let repeats: Vec<Slot> = included
            .iter()
            .filter(|s| !slots.contains(s))
            .map(|s| (*s).clone())
            .collect();
        for slot in repeats {
            if slots.len() + keys.len() < m {
                slots.push(slot);
            }
        }
        while slots.len() + keys.len() < m {
            keys.push(candidates[noise.uniform_below(n)?].0.as_str());
        }
    }
    for key in keys {
        let draw = (0..)
            .find(|d| !slots.iter().any(|s| s.key == key && s.draw == *d))
            .expect("a free draw");
        slots.push(Slot {
            key: key.to_owned(),
            draw,
        });
    }
    Ok(slots)
}

fn sorted(slots: &[Slot]) -> Vec<Slot> {
    let mut s = slots.to_vec();
    s.sort();
    s
}

/// A uniformly random order (Fisher–Yates), so that a batch's order says nothing of the export's.
fn shuffled(mut slots: Vec<Slot>, noise: &mut Noise) -> Result<Vec<Slot>, NoiseError> {
    for i in (1..slots.len()).rev() {
        let j = noise.uniform_below(i + 1)?;
        slots.swap(i, j);
    }
    Ok(slots)
}

impl Draw {
    /// The channels a report of this draw carries under `plan`: every channel outside a pool,
    /// and the chosen one of each pool.
    fn carried(&self, plan: &PrivacyPlan) -> BTreeSet<Channel> {
        let mut carried: BTreeSet<Channel> = plan.unpooled().collect();
        carried.extend(self.pools.values().map(|p| p.channel));
        carried
    }

    /// The report under the current mechanisms: values drawn before by the same mechanism are
    /// re-used, every other value (and pool choice) is drawn now and kept. With a `token`, an
    /// OLH value must carry the seed the token fixes: one drawn with another seed is redrawn.
    fn report(
        &mut self,
        plan: &PrivacyPlan,
        mechanisms: &Mechanisms,
        analysis: &Analysis,
        categories: &[String],
        token: Option<&Token>,
        noise: &mut Noise,
    ) -> Result<Report, DeviceError> {
        let pools = plan.pools();
        self.pools.retain(|name, _| pools.contains_key(name.as_str()));
        for (name, members) in &pools {
            let fingerprint = &mechanisms.pools[*name];
            if self.pools.get(*name).is_none_or(|p| &p.members != fingerprint) {
                let channel = members[noise.uniform_below(members.len())?].channel;
                let choice = PoolChoice {
                    members: fingerprint.clone(),
                    channel,
                };
                self.pools.insert((*name).to_owned(), choice);
            }
        }
        let mut channels = BTreeMap::new();
        for channel in self.carried(plan) {
            let mechanism = &mechanisms.channels[&channel];
            let olh = plan
                .channel(channel)
                .is_some_and(|c| matches!(c.oracle, Oracle::Olh { .. }));
            let seed = token.filter(|_| olh).map(|t| t.olh_seed(channel.name()));
            let other_seed = |value: &Privatized| match (seed, value) {
                (Some(s), Privatized::Hashed { seed, .. }) => *seed != s,
                _ => false,
            };
            if self
                .channels
                .get(&channel)
                .is_none_or(|d| &d.mechanism != mechanism || other_seed(&d.value))
            {
                let value = plan.privatize_channel(channel, analysis, categories, seed, noise)?;
                let drawn = Drawn {
                    mechanism: mechanism.clone(),
                    value,
                    sent: false,
                };
                self.channels.insert(channel, drawn);
            }
            channels.insert(channel, self.channels[&channel].value.clone());
        }
        let embedding = match (&plan.embedding, &mechanisms.embedding) {
            (Some(e), Some(mechanism)) => {
                if self.embedding.as_ref().is_none_or(|d| &d.mechanism != mechanism) {
                    let vector = analysis
                        .embedding
                        .as_deref()
                        .ok_or_else(|| DeviceError::Damaged("the analysis has no embedding".into()))?;
                    self.embedding = Some(Drawn {
                        mechanism: mechanism.clone(),
                        value: e.privatize(vector, noise)?,
                        sent: false,
                    });
                }
                self.embedding.as_ref().map(|d| d.value.clone())
            }
            _ => None,
        };
        Ok(Report { channels, embedding })
    }

    /// The report this draw sent under `plan`: the values that left the device, as they were.
    /// Refused when one of them is no longer kept (another version's round drew it again).
    fn sent_report(&self, plan: &PrivacyPlan) -> Result<Report, DeviceError> {
        let missing = || DeviceError::Damaged("a value of a batch that was sent is no longer kept".into());
        let channels = (self.carried(plan).into_iter())
            .map(|channel| match self.channels.get(&channel) {
                Some(drawn) if drawn.sent => Ok((channel, drawn.value.clone())),
                _ => Err(missing()),
            })
            .collect::<Result<_, _>>()?;
        let embedding = match (&plan.embedding, &self.embedding) {
            (None, _) => None,
            (Some(_), Some(drawn)) if drawn.sent => Some(drawn.value.clone()),
            (Some(_), _) => return Err(missing()),
        };
        Ok(Report { channels, embedding })
    }

    /// What this draw's report costs: each carried value that never left the device at its
    /// channel's ε (a pool's dearest, as the study's accounting does), the embedding at its ρ.
    fn new_cost(&self, plan: &PrivacyPlan) -> ReportCost {
        let unsent = |c: Channel| self.channels.get(&c).is_none_or(|d| !d.sent);
        let pools = plan.pools();
        let mut pure: Vec<f64> = plan
            .channels
            .iter()
            .filter(|c| c.pool.is_none() && unsent(c.channel))
            .map(|c| c.oracle.epsilon())
            .collect();
        for (name, members) in &pools {
            if self.pools.get(*name).is_none_or(|p| unsent(p.channel)) {
                pure.push(members.iter().map(|c| c.oracle.epsilon()).fold(0.0, f64::max));
            }
        }
        let rho = match &plan.embedding {
            Some(e) if self.embedding.as_ref().is_none_or(|d| !d.sent) => {
                accountant::gaussian_rho(2.0 * e.clip, e.sigma, e.dimensions())
            }
            _ => 0.0,
        };
        ReportCost {
            pure,
            pools: vec![],
            rho,
        }
    }
}
