//! Privatize: what leaves the contributor's device, and what it costs them.
//!
//! A report is built from one conversation's [`Analysis`] by privatizing each of the study's
//! channels: every categorical facet through a frequency oracle ([`oracle`]), the embedding
//! through the Gaussian mechanism ([`embedding`]). Noise comes from OpenDP ([`noise`]). The
//! [`accountant`] states what a report and a contributor cost ([`crate::device`] keeps what a
//! device drew and spent). The server's estimators sit next to each mechanism, and [`debias`]
//! undoes the classifier's errors.

pub mod accountant;
mod check;
pub mod debias;
pub mod embedding;
pub mod noise;
pub mod oracle;

use crate::analysis::Analysis;
use accountant::{Accounting, ReportCost};
use chorus_messages::{Channel, Privatized, Report};
use embedding::EmbeddingPlan;
use noise::{Noise, NoiseError};
use oracle::{Oracle, OracleChoice};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `[privacy]` table of a study file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// δ of the contributor-level (ε, δ) guarantee.
    pub delta: f64,
    /// At most this many reports per contributor per study round (`m`).
    pub reports_per_contributor: u32,
    /// A study whose contributor-level ε exceeds this is refused.
    pub contributor_epsilon_cap: f64,
    /// What a device may spend on the study over all its versions (each new version whose
    /// mechanisms changed costs anew); the device refuses to send past it. None: no cap.
    pub lifetime_epsilon_cap: Option<f64>,
    /// Pure ε per report for each categorical channel; a channel left out is not reported.
    pub channels: BTreeMap<Channel, ChannelConfig>,
    /// The Gaussian embedding channel; absent means no embedding is reported.
    pub embedding: Option<EmbeddingConfig>,
    /// Languages reported as themselves; every other language (and `und`) is reported as `other`.
    pub languages: Vec<String>,
    /// Upper bounds of the turn-count buckets; a last bucket holds everything above.
    pub turn_buckets: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub epsilon: f64,
    #[serde(default)]
    pub oracle: OracleChoice,
    /// A sampled pool this channel belongs to (any name): each report carries exactly one
    /// channel of each pool, chosen uniformly at random, and pays for one. For channels with
    /// small budgets this beats splitting: an estimate's variance grows like 1/(n·ε²), so 1/c
    /// of the reports at c times the ε each is about c times better.
    #[serde(default)]
    pub pool: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// d′: principal components of the public examples kept.
    pub dimensions: usize,
    /// L2 bound C of the projected vector.
    pub clip: f64,
    /// ρ (zCDP) per report.
    pub rho: f64,
}

impl Default for PrivacyConfig {
    /// The budget of a study without a `[privacy]` table: ε = 2 per contributor (one report), no
    /// topic channel (that needs a codebook). Most of it goes to the category, on every report;
    /// the four small facets share a pool (each report carries one of them); the embedding gets
    /// a small Gaussian budget.
    fn default() -> Self {
        let always = |epsilon| ChannelConfig {
            epsilon,
            oracle: OracleChoice::Auto,
            pool: None,
        };
        let pooled = |epsilon| ChannelConfig {
            epsilon,
            oracle: OracleChoice::Auto,
            pool: Some("facets".into()),
        };
        PrivacyConfig {
            delta: 1e-6,
            reports_per_contributor: 1,
            contributor_epsilon_cap: 2.0,
            lifetime_epsilon_cap: None,
            channels: BTreeMap::from([
                (Channel::Category, always(1.5)),
                (Channel::Language, pooled(0.35)),
                (Channel::Concern, pooled(0.35)),
                (Channel::Turns, pooled(0.35)),
                (Channel::HasCode, pooled(0.35)),
            ]),
            embedding: Some(EmbeddingConfig {
                dimensions: 16,
                clip: 1.0,
                rho: 0.00068,
            }),
            languages: ["en", "zh", "es", "fr", "de", "pt", "ja", "ko", "ru", "it"]
                .map(String::from)
                .to_vec(),
            turn_buckets: vec![1, 2, 4, 8, 16],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("the privacy settings are not valid: {0}")]
    Invalid(String),
    #[error("a contributor would spend ε = {epsilon:.3} (δ = {delta:e}), more than the study's cap of ε = {cap}; lower the channels' budgets or the reports per contributor")]
    OverCap { epsilon: f64, delta: f64, cap: f64 },
    #[error(transparent)]
    Noise(#[from] NoiseError),
}

/// One channel as compiled: its public domain and its oracle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelPlan {
    pub channel: Channel,
    /// The sampled pool it belongs to (each report carries one channel of each pool).
    pub pool: Option<String>,
    /// The public names of the domain's values, in index order.
    pub labels: Vec<String>,
    pub oracle: Oracle,
}

impl ChannelPlan {
    /// The server's estimate of this channel's distribution from how many of `n` reports support
    /// each value: the oracle's, and for the category, whose value each device draws from its
    /// classifier's probabilities, with the draws' variance too
    /// ([`oracle::FrequencyEstimate::with_drawn_values`]).
    pub fn estimate_from_supports(&self, supports: &[f64], n: usize) -> oracle::FrequencyEstimate {
        let estimate = self.oracle.estimate_from_supports(supports, n);
        match self.channel {
            Channel::Category => estimate.with_drawn_values(),
            _ => estimate,
        }
    }

    /// [`ChannelPlan::estimate_from_supports`] over these reports of the channel.
    pub fn estimate<'a>(&self, reports: impl IntoIterator<Item = &'a Privatized>) -> oracle::FrequencyEstimate {
        let (supports, n) = self.oracle.support_counts(reports);
        self.estimate_from_supports(&supports, n)
    }
}

/// A study's privacy settings, compiled: what the client runs and the server estimates with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyPlan {
    pub delta: f64,
    pub reports_per_contributor: u32,
    pub contributor_epsilon_cap: f64,
    /// What a device may spend on the study over all its versions ([`crate::device`] enforces it).
    #[serde(default)]
    pub lifetime_epsilon_cap: Option<f64>,
    pub channels: Vec<ChannelPlan>,
    pub embedding: Option<EmbeddingPlan>,
    pub accounting: Accounting,
    /// Buckets of the language channel (without the final `other`).
    pub languages: Vec<String>,
    pub turn_buckets: Vec<u32>,
}

impl PrivacyPlan {
    /// Compiles the settings for a study with these category ids and topic ids (the codebook's
    /// levels, top first; empty without a codebook); `public_embeddings` (of the study's public
    /// examples) give the embedding channel's projection.
    pub fn build(
        config: &PrivacyConfig,
        categories: &[String],
        topics: &[Vec<String>],
        public_embeddings: &[Vec<f32>],
    ) -> Result<PrivacyPlan, PrivacyError> {
        check_settings(config)?;
        let channels = config
            .channels
            .iter()
            .map(|(&channel, settings)| channel_plan(config, channel, settings, categories, topics))
            .collect::<Result<Vec<_>, _>>()?;
        let embedding = config
            .embedding
            .as_ref()
            .map(|e| embedding_plan(e, public_embeddings))
            .transpose()?;
        if channels.is_empty() && embedding.is_none() {
            return invalid("a study must report at least one channel");
        }
        let mut plan = PrivacyPlan {
            delta: config.delta,
            reports_per_contributor: config.reports_per_contributor,
            contributor_epsilon_cap: config.contributor_epsilon_cap,
            lifetime_epsilon_cap: config.lifetime_epsilon_cap,
            channels,
            embedding,
            accounting: accountant::account(&ReportCost::default(), 1, config.delta),
            languages: config.languages.clone(),
            turn_buckets: config.turn_buckets.clone(),
        };
        plan.accounting = accountant::account(&plan.cost(), plan.reports_per_contributor, plan.delta);
        let total = plan.accounting.contributor;
        if total.epsilon > plan.contributor_epsilon_cap {
            return Err(PrivacyError::OverCap {
                epsilon: total.epsilon,
                delta: total.delta,
                cap: plan.contributor_epsilon_cap,
            });
        }
        Ok(plan)
    }

    /// What one report costs, channel by channel.
    pub fn cost(&self) -> ReportCost {
        let rho = self
            .embedding
            .as_ref()
            .map_or(0.0, |e| accountant::gaussian_rho(2.0 * e.clip, e.sigma, e.dimensions()));
        ReportCost {
            pure: self
                .channels
                .iter()
                .filter(|c| c.pool.is_none())
                .map(|c| c.oracle.epsilon())
                .collect(),
            pools: self
                .pools()
                .values()
                .map(|pool| pool.iter().map(|c| c.oracle.epsilon()).collect())
                .collect(),
            rho,
        }
    }

    /// The channels outside every pool: each report carries all of them.
    pub fn unpooled(&self) -> impl Iterator<Item = Channel> + '_ {
        self.channels.iter().filter(|c| c.pool.is_none()).map(|c| c.channel)
    }

    /// The sampled pools by name, each with its channels.
    pub fn pools(&self) -> BTreeMap<&str, Vec<&ChannelPlan>> {
        let mut pools: BTreeMap<&str, Vec<&ChannelPlan>> = BTreeMap::new();
        for c in &self.channels {
            if let Some(pool) = &c.pool {
                pools.entry(pool).or_default().push(c);
            }
        }
        pools
    }

    pub fn channel(&self, channel: Channel) -> Option<&ChannelPlan> {
        self.channels.iter().find(|c| c.channel == channel)
    }

    /// The index of an analysed conversation's value in a channel's domain (`None` when the
    /// analysis lacks the value: a topic without the study's codebook).
    pub fn channel_value(&self, channel: Channel, analysis: &Analysis, categories: &[String]) -> Option<usize> {
        Some(match channel {
            // An analysis handed over from elsewhere (another worker's JSON) may name a category
            // the study does not have: no value, which privatizing reports as an error.
            Channel::Category => categories.iter().position(|c| *c == analysis.category)?,
            Channel::Language => self
                .languages
                .iter()
                .position(|l| *l == analysis.language)
                .unwrap_or(self.languages.len()),
            Channel::Concern => (analysis.concern.clamp(1, 5) - 1) as usize,
            Channel::Turns => self
                .turn_buckets
                .iter()
                .position(|&b| analysis.turns <= b)
                .unwrap_or(self.turn_buckets.len()),
            Channel::HasCode => usize::from(analysis.has_code),
            Channel::TopicTop | Channel::TopicMid | Channel::TopicLeaf => {
                let path = analysis.topic_path.as_ref()?;
                let node = channel.topic_level(path.len()).and_then(|level| path.get(level))?;
                self.channel(channel)?.labels.iter().position(|l| l == node)?
            }
        })
    }

    /// The non-private distribution of what a channel privatizes over these analyses — what its
    /// estimate should recover. For the category, each report's value is drawn from the
    /// classifier's probabilities, so the truth is their mean.
    pub fn true_shares(&self, channel: Channel, analyses: &[Analysis], categories: &[String]) -> Vec<f64> {
        let size = self.channel(channel).map_or(0, |c| c.labels.len());
        let mut shares = vec![0f64; size];
        let n = analyses.len() as f64;
        for a in analyses {
            match (channel, &a.category_probabilities) {
                (Channel::Category, Some(p)) => shares.iter_mut().zip(p).for_each(|(s, x)| *s += *x as f64 / n),
                _ => {
                    if let Some(v) = self.channel_value(channel, a, categories) {
                        shares[v] += 1.0 / n;
                    }
                }
            }
        }
        shares
    }

    /// The report for one analysed conversation (its embedding is required when the study
    /// reports the embedding channel).
    pub fn privatize(
        &self,
        analysis: &Analysis,
        categories: &[String],
        noise: &mut Noise,
    ) -> Result<Report, PrivacyError> {
        self.privatize_with_token(analysis, categories, None, noise)
    }

    /// [`PrivacyPlan::privatize`] for a report that travels with a contribution `token`: its
    /// OLH channels take their hash seeds from the token (fixed by the issuer's signature
    /// before the device drew anything) instead of drawing them.
    pub fn privatize_with_token(
        &self,
        analysis: &Analysis,
        categories: &[String],
        token: Option<&crate::tokens::Token>,
        noise: &mut Noise,
    ) -> Result<Report, PrivacyError> {
        // The one channel of each sampled pool this report carries, chosen independently of the data.
        let mut carried: Vec<Channel> = self.unpooled().collect();
        for pool in self.pools().values() {
            carried.push(pool[noise.uniform_below(pool.len())?].channel);
        }
        let mut channels = BTreeMap::new();
        for channel in carried {
            let seed = token.map(|t| t.olh_seed(channel.name()));
            channels.insert(
                channel,
                self.privatize_channel(channel, analysis, categories, seed, noise)?,
            );
        }
        let embedding = match &self.embedding {
            Some(plan) => {
                let vector = analysis
                    .embedding
                    .as_deref()
                    .ok_or_else(|| PrivacyError::Invalid("the analysis has no embedding".into()))?;
                Some(plan.privatize(vector, noise)?)
            }
            _ => None,
        };
        Ok(Report { channels, embedding })
    }

    /// One channel's privatized value for an analysed conversation, through the channel's
    /// oracle; an OLH channel takes `olh_seed` as its hash seed when one is given.
    pub fn privatize_channel(
        &self,
        channel: Channel,
        analysis: &Analysis,
        categories: &[String],
        olh_seed: Option<u64>,
        noise: &mut Noise,
    ) -> Result<Privatized, PrivacyError> {
        let plan = self
            .channel(channel)
            .ok_or_else(|| PrivacyError::Invalid(format!("the study has no {} channel", channel.name())))?;
        let value = match (channel, &analysis.category_probabilities) {
            // The category is drawn from the classifier's probabilities, which lets the server
            // correct for the classifier's errors (see `debias`).
            (Channel::Category, Some(probabilities)) => noise.categorical(probabilities)?,
            _ => self
                .channel_value(channel, analysis, categories)
                .ok_or_else(|| PrivacyError::Invalid(format!("the analysis has no {}", channel.name())))?,
        };
        Ok(match olh_seed {
            Some(seed) => plan.oracle.privatize_with_seed(value, seed, noise)?,
            None => plan.oracle.privatize(value, noise)?,
        })
    }

    /// The same plan with every channel's budget scaled so that a contributor spends `epsilon`
    /// (for simulations at a given budget; `f64::INFINITY` removes all noise).
    pub fn with_contributor_epsilon(&self, epsilon: f64) -> PrivacyPlan {
        let scale = |plan: &PrivacyPlan, s: f64| -> PrivacyPlan {
            let mut p = plan.clone();
            for c in &mut p.channels {
                let (kind_choice, domain) = (oracle_choice(&c.oracle), c.oracle.domain());
                c.oracle = Oracle::new(kind_choice, domain, c.oracle.epsilon() * s);
            }
            if let Some(e) = &mut p.embedding {
                e.sigma = if s.is_infinite() { 0.0 } else { e.sigma / s };
            }
            p.contributor_epsilon_cap = f64::INFINITY;
            p.accounting = accountant::account(&p.cost(), p.reports_per_contributor, p.delta);
            p
        };
        if epsilon.is_infinite() {
            return scale(self, f64::INFINITY);
        }
        // The contributor's ε grows with the scale: bisect for the one that spends `epsilon`.
        let (mut lo, mut hi) = (0.0, 1.0);
        while scale(self, hi).accounting.contributor.epsilon < epsilon {
            hi *= 2.0;
        }
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            if scale(self, mid).accounting.contributor.epsilon < epsilon {
                lo = mid
            } else {
                hi = mid
            }
        }
        scale(self, lo)
    }
}

fn invalid<T>(message: &str) -> Result<T, PrivacyError> {
    Err(PrivacyError::Invalid(message.to_owned()))
}

/// The settings that do not depend on a channel.
fn check_settings(config: &PrivacyConfig) -> Result<(), PrivacyError> {
    if !is_positive(config.delta) || config.delta >= 1e-3 {
        return invalid("delta must lie in (0, 0.001)");
    }
    if config.reports_per_contributor == 0 {
        return invalid("reports_per_contributor must be at least 1");
    }
    if config
        .lifetime_epsilon_cap
        .is_some_and(|cap| cap.is_nan() || cap < config.contributor_epsilon_cap)
    {
        return invalid("lifetime_epsilon_cap must be at least contributor_epsilon_cap");
    }
    if config.turn_buckets.is_empty() || !config.turn_buckets.windows(2).all(|w| w[0] < w[1]) {
        return invalid("turn_buckets must be increasing and not empty");
    }
    Ok(())
}

/// One categorical channel compiled: its public domain and its oracle.
fn channel_plan(
    config: &PrivacyConfig,
    channel: Channel,
    settings: &ChannelConfig,
    categories: &[String],
    topics: &[Vec<String>],
) -> Result<ChannelPlan, PrivacyError> {
    if settings.epsilon.is_nan() || settings.epsilon <= 0.0 {
        return invalid(&format!("channel {} needs a positive epsilon", channel.name()));
    }
    if channel.is_topic() && topics.len() < 3 {
        return invalid(&format!(
            "the {} channel needs a codebook of at least three levels (`codebook = \"FILE\"` in the study)",
            channel.name()
        ));
    }
    if settings.pool.as_deref().is_some_and(str::is_empty) {
        return invalid(&format!("channel {} names an empty pool", channel.name()));
    }
    let labels = domain_labels(channel, categories, topics, &config.languages, &config.turn_buckets);
    if labels.len() < 2 {
        return invalid(&format!(
            "channel {} has {} possible value{}; a channel needs at least two (for the language, list at least one language: every other is reported as `other`)",
            channel.name(),
            labels.len(),
            if labels.len() == 1 { "" } else { "s" }
        ));
    }
    Ok(ChannelPlan {
        oracle: Oracle::new(settings.oracle, labels.len(), settings.epsilon),
        channel,
        labels,
        pool: settings.pool.clone(),
    })
}

/// The embedding channel compiled: the public projection and the Gaussian noise's σ.
fn embedding_plan(e: &EmbeddingConfig, public_embeddings: &[Vec<f32>]) -> Result<EmbeddingPlan, PrivacyError> {
    if !(1..=384).contains(&e.dimensions) || !is_positive(e.clip) || !is_positive(e.rho) {
        return invalid("embedding needs 1–384 dimensions, a positive clip and a positive rho");
    }
    let (mean, components) = embedding::principal_components(public_embeddings, e.dimensions);
    Ok(EmbeddingPlan {
        mean,
        components,
        clip: e.clip,
        sigma: EmbeddingPlan::sigma_for(e.rho, e.clip),
    })
}

/// Positive and not NaN.
fn is_positive(x: f64) -> bool {
    x > 0.0
}

fn oracle_choice(oracle: &Oracle) -> OracleChoice {
    match oracle {
        Oracle::Krr { .. } => OracleChoice::Krr,
        Oracle::Olh { .. } => OracleChoice::Olh,
        Oracle::Oue { .. } => OracleChoice::Oue,
    }
}

/// The public names of a channel's values.
pub fn domain_labels(
    channel: Channel,
    categories: &[String],
    topics: &[Vec<String>],
    languages: &[String],
    turn_buckets: &[u32],
) -> Vec<String> {
    match channel {
        Channel::Category => categories.to_vec(),
        Channel::Language => languages.iter().cloned().chain(["other".to_owned()]).collect(),
        Channel::Concern => (1..=5).map(|c| c.to_string()).collect(),
        Channel::Turns => {
            let mut labels = Vec::new();
            let mut low = 1;
            for &b in turn_buckets {
                labels.push(if low == b { b.to_string() } else { format!("{low}-{b}") });
                low = b + 1;
            }
            labels.push(format!("{low}+"));
            labels
        }
        Channel::HasCode => vec!["false".into(), "true".into()],
        Channel::TopicTop | Channel::TopicMid | Channel::TopicLeaf => channel
            .topic_level(topics.len())
            .and_then(|level| topics.get(level))
            .cloned()
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(channels: &[(Channel, f64, Option<&str>)]) -> PrivacyConfig {
        PrivacyConfig {
            channels: channels
                .iter()
                .map(|&(c, epsilon, pool)| {
                    (
                        c,
                        ChannelConfig {
                            epsilon,
                            oracle: OracleChoice::Auto,
                            pool: pool.map(str::to_owned),
                        },
                    )
                })
                .collect(),
            embedding: None,
            contributor_epsilon_cap: 10.0,
            ..PrivacyConfig::default()
        }
    }

    fn analysis() -> Analysis {
        Analysis {
            id: "c".into(),
            language: "fr".into(),
            category: "b".into(),
            concern: 2,
            topic_path: Some(vec!["t1.2".into(), "t2.3".into(), "t3.5".into()]),
            turns: 3,
            chars: 100,
            has_code: true,
            embedding: None,
            category_probabilities: None,
        }
    }

    fn topics() -> Vec<Vec<String>> {
        [2, 4, 8]
            .iter()
            .enumerate()
            .map(|(level, &n)| (1..=n).map(|i| format!("t{}.{i}", level + 1)).collect())
            .collect()
    }

    #[test]
    fn each_report_carries_one_channel_of_each_pool_and_pays_for_the_dearest() {
        let categories = ["a".to_owned(), "b".to_owned()];
        let plan = PrivacyPlan::build(
            &config(&[
                (Channel::Category, 1.0, None),
                (Channel::Language, 0.5, Some("facets")),
                (Channel::Turns, 0.25, Some("facets")),
                (Channel::TopicTop, 1.0, Some("topic")),
                (Channel::TopicMid, 0.75, Some("topic")),
                (Channel::TopicLeaf, 1.0, Some("topic")),
            ]),
            &categories,
            &topics(),
            &[],
        )
        .unwrap();
        assert!(
            (plan.accounting.per_report.epsilon - 2.5).abs() < 1e-12,
            "{:?}",
            plan.accounting
        );
        let mut seen = BTreeMap::<Channel, usize>::new();
        let mut noise = Noise::Secure;
        for _ in 0..300 {
            let report = plan.privatize(&analysis(), &categories, &mut noise).unwrap();
            assert_eq!(report.channels.len(), 3, "{report:?}");
            assert!(report.channels.contains_key(&Channel::Category));
            for c in report.channels.keys() {
                *seen.entry(*c).or_default() += 1;
            }
        }
        // Each pool's channel is drawn uniformly: every one turns up.
        for c in [
            Channel::Language,
            Channel::Turns,
            Channel::TopicTop,
            Channel::TopicMid,
            Channel::TopicLeaf,
        ] {
            assert!(seen.get(&c).copied().unwrap_or(0) > 50, "{c:?}: {seen:?}");
        }
        // A topic channel reports its own level of the path.
        let a = analysis();
        assert_eq!(plan.channel_value(Channel::TopicTop, &a, &categories), Some(1));
        assert_eq!(plan.channel_value(Channel::TopicMid, &a, &categories), Some(2));
        assert_eq!(plan.channel_value(Channel::TopicLeaf, &a, &categories), Some(4));
    }

    #[test]
    fn a_channel_with_fewer_than_two_values_is_an_error_not_a_panic() {
        let categories = ["a".to_owned(), "b".to_owned()];
        let mut no_languages = config(&[(Channel::Category, 1.0, None), (Channel::Language, 1.0, None)]);
        no_languages.languages.clear();
        let err = PrivacyPlan::build(&no_languages, &categories, &[], &[]).unwrap_err();
        assert!(err.to_string().contains("list at least one language"), "{err}");
        // An analysis naming a category the study does not have (JSON from elsewhere).
        let plan = PrivacyPlan::build(&config(&[(Channel::Category, 1.0, None)]), &categories, &[], &[]).unwrap();
        let stranger = Analysis {
            category: "not-in-the-study".into(),
            ..analysis()
        };
        let err = plan.privatize(&stranger, &categories, &mut Noise::Secure).unwrap_err();
        assert!(err.to_string().contains("no category"), "{err}");
    }

    #[test]
    fn topic_channels_need_a_codebook_and_an_analysis_with_a_topic() {
        let categories = ["a".to_owned(), "b".to_owned()];
        let topic_only = config(&[(Channel::Category, 1.0, None), (Channel::TopicLeaf, 1.0, None)]);
        let err = PrivacyPlan::build(&topic_only, &categories, &[], &[]).unwrap_err();
        assert!(err.to_string().contains("codebook"), "{err}");
        let plan = PrivacyPlan::build(&topic_only, &categories, &topics(), &[]).unwrap();
        let without = Analysis {
            topic_path: None,
            ..analysis()
        };
        let err = plan.privatize(&without, &categories, &mut Noise::Secure).unwrap_err();
        assert!(err.to_string().contains("no topic"), "{err}");
    }
}
