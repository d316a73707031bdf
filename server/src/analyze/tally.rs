//! One pass over a study version's stored reports. Every estimate a release makes is a sum over
//! reports, so reading the store keeps running sums only: memory does not grow with the number
//! of reports, except for a bounded uniform sample of the embeddings that discovery fits.
//!
//! Architecture Invariant: a report is looked at once, when it is read; nothing here holds a
//! report after [`Tally::add`] returns (the sample keeps at most [`EMBEDDING_SAMPLE`] vectors).

use super::{Axis, CategoryMoments, CrossTab, Debiased, FacetEstimate, GroupEstimate, Moments};
use crate::storage::{Storage, StorageError, StoredBatch};
use chorus_messages::{Channel, Privatized, Report};
use chorus_shared::privacy::embedding::{MeanEstimate, MeanSums};
use chorus_shared::privacy::oracle::Oracle;
use chorus_shared::privacy::ChannelPlan;
use chorus_shared::study::CompiledStudy;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Embeddings kept for discovery: a uniform sample of at most this many (discovery fits at
/// most this many points; see `discover::SAMPLE`).
pub const EMBEDDING_SAMPLE: usize = crate::discover::SAMPLE;

/// Everything a release needs from the stored reports of one study version.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Reports read.
    pub reports: u64,
    /// Reports per day (days since 1970-01-01).
    pub per_day: BTreeMap<i64, u64>,
    /// How many contributors stored how many reports (reports → contributors).
    pub contributors_by_reports: BTreeMap<u32, u64>,
    /// A digest of the stored batches read, in the order read (hex SHA-256; empty for a tally
    /// of reports not read from a store): two tallies with the same digest counted the same
    /// reports from the same contributors on the same days.
    pub counted: String,
    pub(super) channels: Vec<ChannelSums>,
    levels: Vec<AxisSums>,
    crosstabs: Vec<(AxisSums, AxisSums, Moments)>,
    category: Option<CategoryMoments>,
    embedding_mean: MeanSums,
    embeddings: Reservoir,
    pub(super) norms: NormSums,
}

/// Running sums of the embeddings' squared norms in units of the noise's variance, ‖y‖²/σ²
/// (for the plausibility check of their distribution).
#[derive(Debug, Clone, Default)]
pub(super) struct NormSums {
    pub sigma: f64,
    pub n: u64,
    pub sum: f64,
}

/// One channel's running sums: how many reports support each value, and the values the
/// current report supports (reused by the axes and the corrected mix).
#[derive(Debug, Clone)]
pub(super) struct ChannelSums {
    pub plan: ChannelPlan,
    pub n: usize,
    supports: Vec<f64>,
    supported: Vec<bool>,
    present: bool,
    /// Values supported, summed over the reports (each OLH report supports several).
    pub supported_values: f64,
    /// Reports per bucket (OLH only; empty otherwise).
    pub buckets: Vec<f64>,
}

/// An axis (a topic level, or a channel) with the running moments of its group indicators.
#[derive(Debug, Clone)]
struct AxisSums {
    axis: Axis,
    /// Index of the axis's channel in `Tally::channels`.
    channel: usize,
    indicators: Vec<f64>,
    moments: Moments,
}

impl Tally {
    /// Empty sums for what `study` estimates; `seed` draws the embedding sample.
    pub fn new(study: &CompiledStudy, seed: u64) -> Tally {
        let channels: Vec<ChannelSums> = study
            .privacy
            .channels
            .iter()
            .map(|plan| ChannelSums {
                plan: plan.clone(),
                n: 0,
                supports: vec![0.0; plan.labels.len()],
                supported: vec![false; plan.labels.len()],
                present: false,
                supported_values: 0.0,
                buckets: match plan.oracle {
                    Oracle::Olh { buckets, .. } => vec![0.0; buckets],
                    _ => Vec::new(),
                },
            })
            .collect();
        let sums = |axis: Axis| AxisSums::new(axis, &channels);
        let depth = study.codebook.as_ref().map_or(0, |c| c.levels.len());
        let levels: Option<Vec<AxisSums>> = (0..depth)
            .map(|level| Axis::topic_level(study, level).map(sums))
            .collect();
        let crosstabs = crosstab_axes(study)
            .into_iter()
            .map(|(rows, columns)| {
                let cells = rows.labels.len() * columns.labels.len();
                (sums(rows), sums(columns), Moments::new(cells))
            })
            .collect();
        Tally {
            reports: 0,
            per_day: BTreeMap::new(),
            contributors_by_reports: BTreeMap::new(),
            counted: String::new(),
            category: study
                .category_confusion
                .as_ref()
                .and(study.privacy.channel(Channel::Category))
                .map(CategoryMoments::new),
            channels,
            levels: levels.unwrap_or_default(),
            crosstabs,
            embedding_mean: MeanSums::default(),
            embeddings: Reservoir::new(EMBEDDING_SAMPLE, seed),
            norms: NormSums {
                sigma: study.privacy.embedding.as_ref().map_or(0.0, |e| e.sigma),
                ..NormSums::default()
            },
        }
    }

    /// Sums over `reports`, each from a contributor of its own, all received on `day`: what a
    /// simulation of a release needs.
    pub fn of_reports(study: &CompiledStudy, reports: &[Report], day: i64, seed: u64) -> Tally {
        let mut tally = Tally::new(study, seed);
        reports.iter().for_each(|r| tally.add(r, day));
        if !reports.is_empty() {
            tally.contributors_by_reports.insert(1, reports.len() as u64);
        }
        tally
    }

    /// Adds one report received on `day`.
    pub fn add(&mut self, report: &Report, day: i64) {
        self.reports += 1;
        *self.per_day.entry(day).or_default() += 1;
        for c in &mut self.channels {
            c.present = match report.channels.get(&c.plan.channel) {
                Some(value) => {
                    c.plan.oracle.mark_supported(value, &mut c.supported);
                    c.n += 1;
                    for (s, &yes) in c.supports.iter_mut().zip(&c.supported) {
                        *s += f64::from(u8::from(yes));
                        c.supported_values += f64::from(u8::from(yes));
                    }
                    if let Privatized::Hashed { bucket, .. } = value {
                        if let Some(b) = c.buckets.get_mut(*bucket as usize) {
                            *b += 1.0;
                        }
                    }
                    true
                }
                None => false,
            };
        }
        let channels = &self.channels;
        for level in &mut self.levels {
            if level.indicate(channels) {
                level.moments.add(&level.indicators);
            }
        }
        for (rows, columns, moments) in &mut self.crosstabs {
            if rows.indicate(channels) && columns.indicate(channels) {
                moments.add_products(&rows.indicators, &columns.indicators);
            }
        }
        if let Some(category) = &mut self.category {
            if let Some(c) = channels
                .iter()
                .find(|c| c.present && c.plan.channel == Channel::Category)
            {
                category.add(&c.supported);
            }
        }
        if let Some(embedding) = report.embedding.as_deref() {
            self.norms.add(embedding);
            self.embedding_mean.add(embedding);
            self.embeddings.offer(embedding);
        }
    }

    /// Contributors who stored at least one report.
    pub fn contributors(&self) -> u64 {
        self.contributors_by_reports.values().sum()
    }

    /// Every channel's estimate. A device draws the category it reports from its classifier's
    /// probabilities, so that channel's standard errors carry the draws' variance too.
    pub fn facets(&self) -> Vec<FacetEstimate> {
        self.channels
            .iter()
            .map(|c| FacetEstimate {
                channel: c.plan.channel,
                labels: c.plan.labels.clone(),
                oracle: c.plan.oracle,
                estimate: c.plan.estimate_from_supports(&c.supports, c.n),
            })
            .collect()
    }

    /// Every level of the codebook's hierarchy (top first); empty without a codebook, or when
    /// a level has fewer than two reports. A level the study reports on a channel of its own
    /// (as the default study reports all three) is estimated from that channel's reports alone,
    /// so a child's estimate can exceed its parent's by their noise; a level made of the
    /// reported leaves sums their indicators, and there a topic's estimate is its children's sum.
    pub fn topic_levels(&self) -> Vec<GroupEstimate> {
        let levels: Option<Vec<GroupEstimate>> = self
            .levels
            .iter()
            .map(|level| {
                let (n, shares, standard_errors) = level.moments.finish()?;
                Some(GroupEstimate {
                    n,
                    shares,
                    standard_errors,
                })
            })
            .collect();
        levels.unwrap_or_default()
    }

    /// Each cross-tab with at least two reports carrying both of its channels.
    pub fn crosstabs(&self) -> Vec<CrossTab> {
        self.crosstabs
            .iter()
            .filter_map(|(rows, columns, moments)| {
                let (n, shares, errors) = moments.finish()?;
                let kb = columns.axis.labels.len();
                Some(CrossTab {
                    rows: rows.axis.name.clone(),
                    columns: columns.axis.name.clone(),
                    row_channel: rows.axis.channel,
                    column_channel: columns.axis.channel,
                    row_labels: rows.axis.labels.clone(),
                    column_labels: columns.axis.labels.clone(),
                    n,
                    shares: shares.chunks(kb).map(<[f64]>::to_vec).collect(),
                    standard_errors: errors.chunks(kb).map(<[f64]>::to_vec).collect(),
                })
            })
            .collect()
    }

    /// The category mix corrected for the classifier's errors (none for a study without a
    /// confusion matrix, or with fewer than two category reports).
    pub fn debiased_category(&self, study: &CompiledStudy, seed: u64) -> Option<Debiased> {
        let category = self.category.as_ref().filter(|c| c.len() > 1)?;
        let confusion = study.category_confusion.as_ref()?;
        let rms_error = study
            .category_validation
            .as_ref()
            .map(|v| v.debiased_rms_error.as_slice());
        Some(category.debias(confusion, rms_error, seed))
    }

    /// Mean of the noisy projected embeddings (unbiased for the mean of the clipped projections);
    /// none from fewer than two.
    pub fn embedding_mean(&self) -> Option<MeanEstimate> {
        let estimate = self.embedding_mean.estimate();
        // One embedding has no standard error to publish (JSON has no infinity).
        (estimate.n >= 2).then_some(estimate)
    }

    /// A uniform sample of the embeddings (in random order once there were more than the
    /// sample holds), and how many embeddings there were.
    pub fn embedding_sample(&self) -> (Vec<&[f32]>, usize) {
        (self.embeddings.items(), self.embeddings.seen as usize)
    }
}

/// Which categories and topics are over- or under-represented in each language (Clio's
/// cross-language comparison): the category and every topic level but the leaves (too fine
/// for the reports a language gets), each against the language.
fn crosstab_axes(study: &CompiledStudy) -> Vec<(Axis, Axis)> {
    let Some(language) = Axis::channel(study, Channel::Language) else {
        return Vec::new();
    };
    let depth = study.codebook.as_ref().map_or(0, |c| c.levels.len());
    std::iter::once(Axis::channel(study, Channel::Category))
        .chain((0..depth.saturating_sub(1)).map(|level| Axis::topic_level(study, level)))
        .flatten()
        .map(|rows| (rows, language.clone()))
        .collect()
}

impl NormSums {
    fn add(&mut self, v: &[f32]) {
        if self.sigma > 0.0 {
            self.n += 1;
            self.sum += v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / (self.sigma * self.sigma);
        }
    }
}

impl AxisSums {
    fn new(axis: Axis, channels: &[ChannelSums]) -> AxisSums {
        let channel = channels
            .iter()
            .position(|c| c.plan.channel == axis.channel)
            .expect("an axis's channel is one the study reports");
        AxisSums {
            channel,
            indicators: vec![0.0; axis.labels.len()],
            moments: Moments::new(axis.labels.len()),
            axis,
        }
    }

    /// Computes the current report's group indicators; false when it does not carry the channel.
    fn indicate(&mut self, channels: &[ChannelSums]) -> bool {
        let c = &channels[self.channel];
        if c.present {
            self.axis.indicators(&c.plan.oracle, &c.supported, &mut self.indicators);
        }
        c.present
    }
}

/// A uniform sample without replacement of a stream of vectors (Vitter's algorithm R).
#[derive(Debug, Clone)]
struct Reservoir {
    capacity: usize,
    seen: u64,
    items: Vec<Vec<f32>>,
    rng: rand_chacha::ChaCha20Rng,
}

impl Reservoir {
    fn new(capacity: usize, seed: u64) -> Reservoir {
        Reservoir {
            capacity,
            seen: 0,
            items: Vec::new(),
            rng: rand_chacha::ChaCha20Rng::seed_from_u64(seed),
        }
    }

    fn offer(&mut self, item: &[f32]) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(item.to_vec());
        } else {
            let j = self.rng.gen_range(0..self.seen);
            if let Some(slot) = self.items.get_mut(j as usize) {
                slot.copy_from_slice(item);
            }
        }
    }

    /// The sample: in stored order while it holds everything; shuffled once it is a sample
    /// (algorithm R's slots are not exchangeable: early slots favour early items), so any
    /// prefix of it is a uniform sample too.
    fn items(&self) -> Vec<&[f32]> {
        let mut items: Vec<&[f32]> = self.items.iter().map(Vec::as_slice).collect();
        if self.seen > self.capacity as u64 {
            let mut rng = self.rng.clone();
            for i in (1..items.len()).rev() {
                items.swap(i, rng.gen_range(0..=i));
            }
        }
        items
    }
}

/// Reads every batch stored for `study`'s current version into a [`Tally`], with the
/// contributor counts from the same snapshot of the store. `seed` draws the embedding sample.
pub fn collect(storage: &dyn Storage, study: &CompiledStudy, seed: u64) -> Result<Tally, StorageError> {
    let mut tally = Tally::new(study, seed);
    let mut damaged = 0usize;
    let mut counted = Sha256::new();
    let contributors = storage.batches(&study.id, &study.version, &mut |batch: StoredBatch| {
        // Each field's own digest, so that no two different batches hash alike by moving bytes
        // from one field to the next.
        counted.update(Sha256::digest(batch.contributor.as_bytes()));
        counted.update(batch.day.to_le_bytes());
        counted.update(Sha256::digest(batch.body.as_bytes()));
        match serde_json::from_str::<Vec<Report>>(&batch.body) {
            Ok(reports) => reports.iter().for_each(|r| tally.add(r, batch.day)),
            Err(_) => damaged += 1,
        }
    })?;
    if damaged > 0 {
        return Err(StorageError::Other(format!("{damaged} stored batches cannot be read")));
    }
    tally.contributors_by_reports = contributors;
    tally.counted = hex::encode(counted.finalize());
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each item of a stream of 100 lands in a sample of 10 (and in its first slot) as often as
    /// a uniform sample says. Over 2,000 samples an item is kept 200 times on average (sd 13.4)
    /// and sits first 20 times (sd 4.4); the bounds are six standard deviations, so the 100
    /// items together fail by chance less than once in 10⁵ runs (normal tail 2·10⁻⁹ per item;
    /// the Poisson tail of the first slot at 47, about 10⁻⁷).
    #[test]
    fn the_reservoir_is_a_uniform_sample_in_random_order() {
        let (items, capacity, samples) = (100usize, 10usize, 2_000u64);
        let (mut kept, mut first) = (vec![0u32; items], vec![0u32; items]);
        for seed in 0..samples {
            let mut reservoir = Reservoir::new(capacity, seed);
            for i in 0..items {
                reservoir.offer(&[i as f32]);
            }
            let sample = reservoir.items();
            assert_eq!(sample.len(), capacity);
            for item in &sample {
                kept[item[0] as usize] += 1;
            }
            first[sample[0][0] as usize] += 1;
        }
        for i in 0..items {
            assert!(
                (kept[i] as f64 - 200.0).abs() < 6.0 * 13.4,
                "item {i} kept {} times",
                kept[i]
            );
            assert!(first[i] < 47, "item {i} first {} times", first[i]);
        }
    }

    #[test]
    fn a_short_stream_is_kept_whole_in_order() {
        let mut reservoir = Reservoir::new(10, 1);
        for i in 0..7 {
            reservoir.offer(&[i as f32, 0.5]);
        }
        let sample: Vec<f32> = reservoir.items().iter().map(|v| v[0]).collect();
        assert_eq!(sample, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
}
