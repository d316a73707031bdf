//! Analyze: from stored reports to estimates with error bars. Everything here is
//! post-processing of locally private reports: unbiased frequency estimates per channel,
//! the true category mix corrected for the classifier's errors (with bootstrap intervals),
//! the topic codebook at every level, cross-tabs of two channels (or topic levels), and the
//! mean of the noisy embeddings.

use crate::storage::{Storage, StorageError, StoredBatch};
use chorus_messages::Report;
use chorus_messages::{Channel, Privatized};
use chorus_shared::privacy::embedding::{estimate_mean, MeanEstimate};
use chorus_shared::privacy::oracle::{FrequencyEstimate, Oracle};
use chorus_shared::privacy::ChannelPlan;
use chorus_shared::study::CompiledStudy;
use std::collections::{BTreeMap, HashMap};

mod debiased;
pub use debiased::{debias_category, Debiased, BOOTSTRAP};

/// What the server holds for one study version, read back from the store.
#[derive(Debug, Default)]
pub struct Collected {
    pub reports: Vec<Report>,
    /// Reports per contributor pseudonym.
    pub per_contributor: HashMap<String, u32>,
    /// Reports per day (days since 1970-01-01).
    pub per_day: BTreeMap<i64, u64>,
}

pub fn collect(storage: &dyn Storage, study: &CompiledStudy) -> Result<Collected, StorageError> {
    let mut collected = Collected::default();
    let mut damaged = 0usize;
    storage.batches(
        &study.id,
        &study.version,
        &mut |batch: StoredBatch| match serde_json::from_str::<Vec<Report>>(&batch.body) {
            Ok(reports) => {
                *collected.per_contributor.entry(batch.contributor).or_default() += reports.len() as u32;
                *collected.per_day.entry(batch.day).or_default() += reports.len() as u64;
                collected.reports.extend(reports);
            }
            Err(_) => damaged += 1,
        },
    )?;
    if damaged > 0 {
        return Err(StorageError::Other(format!("{damaged} stored batches cannot be read")));
    }
    Ok(collected)
}

/// One channel's estimate.
#[derive(Debug, Clone)]
pub struct FacetEstimate {
    pub channel: Channel,
    pub labels: Vec<String>,
    pub oracle: Oracle,
    pub estimate: FrequencyEstimate,
}

/// The category mix corrected for the classifier's errors (none for a study without a
/// confusion matrix or with fewer than two category reports).
pub fn debiased_category(study: &CompiledStudy, reports: &[Report], seed: u64) -> Option<Debiased> {
    let plan = study.privacy.channel(Channel::Category)?;
    let confusion = study.category_confusion.as_ref()?;
    let values: Vec<&Privatized> = reports
        .iter()
        .filter_map(|r| r.channels.get(&Channel::Category))
        .collect();
    let rms_error = study
        .category_validation
        .as_ref()
        .map(|v| v.debiased_rms_error.as_slice());
    (values.len() > 1).then(|| debias_category(plan, &values, confusion, rms_error, seed))
}

/// Every channel's estimate.
pub fn estimate_facets(study: &CompiledStudy, reports: &[Report]) -> Vec<FacetEstimate> {
    study
        .privacy
        .channels
        .iter()
        .map(|plan| {
            let values: Vec<&Privatized> = reports.iter().filter_map(|r| r.channels.get(&plan.channel)).collect();
            FacetEstimate {
                channel: plan.channel,
                labels: plan.labels.clone(),
                oracle: plan.oracle,
                estimate: plan.oracle.estimate(values.iter().copied()),
            }
        })
        .collect()
}

/// One side of an estimate over indicator sums: a channel whose values are grouped (a topic
/// level groups codebook leaves; a plain channel is its own grouping).
#[derive(Debug, Clone)]
pub struct Axis {
    pub channel: Channel,
    /// What the axis is called in a release (`topic_level1`, or the channel's name).
    pub name: String,
    pub labels: Vec<String>,
    /// The group of each value of the channel's domain.
    group_of: Vec<usize>,
}

impl Axis {
    pub fn channel(study: &CompiledStudy, channel: Channel) -> Option<Axis> {
        let plan = study.privacy.channel(channel)?;
        Some(Axis {
            channel,
            name: channel.name().to_owned(),
            labels: plan.labels.clone(),
            group_of: (0..plan.labels.len()).collect(),
        })
    }

    /// The topics of one level of the codebook (0 is the top): the level's own channel when the
    /// study reports it, else the reported leaves grouped by their ancestor at that level.
    pub fn topic_level(study: &CompiledStudy, level: usize) -> Option<Axis> {
        let codebook = study.codebook.as_ref()?;
        let depth = codebook.levels.len();
        let name = format!("topic_level{}", level + 1);
        let reported = Channel::ALL
            .into_iter()
            .find(|c| c.topic_level(depth) == Some(level) && study.privacy.channel(*c).is_some());
        if let Some(channel) = reported {
            return Axis::channel(study, channel).map(|axis| Axis { name, ..axis });
        }
        study.privacy.channel(Channel::TopicLeaf)?;
        let topics = codebook.levels.get(level)?;
        Some(Axis {
            channel: Channel::TopicLeaf,
            name,
            labels: topics.iter().map(|t| t.id.clone()).collect(),
            group_of: codebook.paths().iter().map(|path| path[level]).collect(),
        })
    }

    /// A report's unbiased indicator of each group: the sum of its values' indicators.
    fn indicators(&self, plan: &ChannelPlan, value: &Privatized) -> Vec<f64> {
        let mut sums = vec![0f64; self.labels.len()];
        for (v, &g) in self.group_of.iter().enumerate() {
            sums[g] += plan.oracle.support_indicator(value, v);
        }
        sums
    }
}

/// Shares of an axis's groups (a topic level's distribution), from the reports carrying its
/// channel: the mean of each report's unbiased group indicators, with the standard error of
/// that mean. Summing leaf indicators keeps every level consistent: a topic's estimate is the
/// sum of its children's.
#[derive(Debug, Clone)]
pub struct GroupEstimate {
    pub n: usize,
    pub shares: Vec<f64>,
    pub standard_errors: Vec<f64>,
}

pub fn estimate_groups(study: &CompiledStudy, axis: &Axis, reports: &[Report]) -> Option<GroupEstimate> {
    let plan = study.privacy.channel(axis.channel)?;
    let mut moments = Moments::new(axis.labels.len());
    for value in reports.iter().filter_map(|r| r.channels.get(&axis.channel)) {
        moments.add(&axis.indicators(plan, value));
    }
    let (n, shares, standard_errors) = moments.finish()?;
    Some(GroupEstimate {
        n,
        shares,
        standard_errors,
    })
}

/// Running sums of per-report indicator vectors, for their means and standard errors.
struct Moments {
    n: usize,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

impl Moments {
    fn new(cells: usize) -> Moments {
        Moments {
            n: 0,
            sum: vec![0.0; cells],
            sum_sq: vec![0.0; cells],
        }
    }

    fn add(&mut self, values: &[f64]) {
        self.n += 1;
        for ((s, q), v) in self.sum.iter_mut().zip(&mut self.sum_sq).zip(values) {
            *s += v;
            *q += v * v;
        }
    }

    /// (n, means, standard errors of the means); none with fewer than two reports.
    fn finish(self) -> Option<(usize, Vec<f64>, Vec<f64>)> {
        if self.n < 2 {
            return None;
        }
        let nf = self.n as f64;
        let means: Vec<f64> = self.sum.iter().map(|s| s / nf).collect();
        let errors = self
            .sum_sq
            .iter()
            .zip(&means)
            .map(|(sq, m)| ((sq - nf * m * m) / (nf - 1.0)).max(0.0).sqrt() / nf.sqrt())
            .collect();
        Some((self.n, means, errors))
    }
}

/// The joint distribution of two axes, estimated from the reports that carry both channels:
/// each report's unbiased indicators of the two values, multiplied (their noise is
/// independent), averaged; standard errors from the spread of those products.
#[derive(Debug, Clone)]
pub struct CrossTab {
    pub rows: String,
    pub columns: String,
    pub row_channel: Channel,
    pub column_channel: Channel,
    pub row_labels: Vec<String>,
    pub column_labels: Vec<String>,
    pub n: usize,
    /// `[row][column]` shares of all reports carrying both channels.
    pub shares: Vec<Vec<f64>>,
    pub standard_errors: Vec<Vec<f64>>,
}

pub fn cross_tab(study: &CompiledStudy, rows: &Axis, columns: &Axis, reports: &[Report]) -> Option<CrossTab> {
    let (a, b) = (
        study.privacy.channel(rows.channel)?,
        study.privacy.channel(columns.channel)?,
    );
    let (ka, kb) = (rows.labels.len(), columns.labels.len());
    let mut moments = Moments::new(ka * kb);
    let mut products = vec![0f64; ka * kb];
    for report in reports {
        let (Some(x), Some(y)) = (
            report.channels.get(&rows.channel),
            report.channels.get(&columns.channel),
        ) else {
            continue;
        };
        let (ix, iy) = (rows.indicators(a, x), columns.indicators(b, y));
        for i in 0..ka {
            for j in 0..kb {
                products[i * kb + j] = ix[i] * iy[j];
            }
        }
        moments.add(&products);
    }
    let (n, shares, errors) = moments.finish()?;
    Some(CrossTab {
        rows: rows.name.clone(),
        columns: columns.name.clone(),
        row_channel: rows.channel,
        column_channel: columns.channel,
        row_labels: rows.labels.clone(),
        column_labels: columns.labels.clone(),
        n,
        shares: shares.chunks(kb).map(<[f64]>::to_vec).collect(),
        standard_errors: errors.chunks(kb).map(<[f64]>::to_vec).collect(),
    })
}

/// Mean of the noisy projected embeddings (unbiased for the mean of the clipped projections).
pub fn embedding_mean(reports: &[Report]) -> Option<MeanEstimate> {
    let estimate = estimate_mean(reports.iter().filter_map(|r| r.embedding.as_deref()));
    (estimate.n > 0).then_some(estimate)
}
