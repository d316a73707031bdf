//! Analyze: from stored reports to estimates with error bars. Everything here is
//! post-processing of locally private reports: unbiased frequency estimates per channel,
//! the true category mix corrected for the classifier's errors (with bootstrap intervals),
//! the topic codebook at every level, cross-tabs of two channels (or topic levels), and the
//! mean of the noisy embeddings.

use chorus_messages::Channel;
use chorus_shared::privacy::oracle::{FrequencyEstimate, Oracle};
use chorus_shared::study::CompiledStudy;

mod debiased;
mod plausibility;
mod tally;
pub use debiased::{debias_category, CategoryMoments, Debiased, BOOTSTRAP};
pub use plausibility::{plausibility, FALSE_ALARM_RATE};
pub use tally::{collect, Tally, EMBEDDING_SAMPLE};

/// One channel's estimate.
#[derive(Debug, Clone)]
pub struct FacetEstimate {
    pub channel: Channel,
    pub labels: Vec<String>,
    pub oracle: Oracle,
    pub estimate: FrequencyEstimate,
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

    /// A report's unbiased indicator of each group, from the values it supports: the sum of
    /// its values' indicators (1[supported] − q*) / (p* − q*).
    fn indicators(&self, oracle: &Oracle, supported: &[bool], sums: &mut [f64]) {
        let (p, q) = oracle.support_probabilities();
        sums.fill(0.0);
        for (&g, &yes) in self.group_of.iter().zip(supported) {
            sums[g] += (f64::from(u8::from(yes)) - q) / (p - q);
        }
    }
}

/// Shares of an axis's groups (a topic level's distribution), from the reports carrying its
/// channel: the mean of each report's unbiased group indicators, with the standard error of
/// that mean. Levels grouped from the leaves' channel are consistent (a topic's estimate is the
/// sum of its children's); levels reported on channels of their own are independent estimates.
#[derive(Debug, Clone)]
pub struct GroupEstimate {
    pub n: usize,
    pub shares: Vec<f64>,
    pub standard_errors: Vec<f64>,
}

/// Running sums of per-report indicator vectors, for their means and standard errors.
#[derive(Debug, Clone)]
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

    /// Adds the products of two independent indicator vectors, `a[i]·b[j]` at `i·|b| + j`.
    fn add_products(&mut self, a: &[f64], b: &[f64]) {
        self.n += 1;
        let kb = b.len();
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                let v = x * y;
                self.sum[i * kb + j] += v;
                self.sum_sq[i * kb + j] += v * v;
            }
        }
    }

    /// (n, means, standard errors of the means); none with fewer than two reports.
    fn finish(&self) -> Option<(usize, Vec<f64>, Vec<f64>)> {
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
