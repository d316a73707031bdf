//! The release document as Rust types: the server builds a release from them, `chorus verify`,
//! the auditor's page (through the wasm client) and the tests read it through them, and the
//! OpenAPI document publishes their JSON Schema. A release is signed over its JSON (object keys
//! in sorted order, see [`super::canonical_bytes`]), so these types fix what a release may hold;
//! [`RELEASE_FORMAT`] changes whenever they do.

use crate::privacy::accountant::Guarantee;
use crate::privacy::oracle::Oracle;
use chorus_messages::Channel;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the release document's layout (4: the plausibility checks and who could contribute).
pub const RELEASE_FORMAT: u32 = 4;

/// A release: everything the study publishes at one cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub format: u32,
    /// `<study>-r<number>`.
    pub id: String,
    /// RFC 3339 UTC time of the cut.
    pub created: String,
    /// Every number comes from demo contributions (public conversations), not real contributors.
    pub demo: bool,
    pub study: StudyInfo,
    pub privacy: PrivacyParameters,
    pub ledger: Ledger,
    pub counts: Counts,
    pub publication: Publication,
    /// Do the reports look as honest devices make them?
    pub plausibility: Plausibility,
    /// How to read a cell, in words.
    pub cells: String,
    /// One table per reported channel other than the topic levels, by channel name.
    pub facets: BTreeMap<String, Facet>,
    /// Cross-tabs of a row axis by the language, named `<rows>_by_<columns>`.
    pub crosstabs: BTreeMap<String, CrossTab>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Topics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Discovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_mean: Option<EmbeddingMean>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StudyInfo {
    pub id: String,
    pub version: String,
    pub title: String,
    pub description: String,
    /// SHA-256 of the model the study's classifiers were trained with.
    pub model_sha256: String,
    /// Who could contribute: "open" (anyone) or "invited" (holders of an invitation's tokens).
    pub access: String,
    /// What that means for fabricated reports, in words.
    pub who_contributed: String,
}

/// The study's privacy parameters, as the devices applied them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacyParameters {
    pub per_report: Guarantee,
    pub contributor: Guarantee,
    /// Which composition gave the contributor-level figure: "pure", "basic" or "zcdp".
    pub composition: String,
    pub reports_per_contributor: u32,
    pub lifetime_epsilon_cap: Option<f64>,
    pub channels: Vec<ChannelDescription>,
    pub embedding: Option<EmbeddingDescription>,
    /// The publication threshold: a cell is published only when its count is reliably at least k.
    pub k: u32,
    /// Central ε of one release's counts.
    pub central_epsilon: f64,
    /// Central ε of every release of the study version together.
    pub central_epsilon_total: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelDescription {
    pub channel: Channel,
    pub oracle: Oracle,
    /// The sampled pool it belongs to (each report carries one channel of each pool).
    pub pool: Option<String>,
    /// The public domain, in index order.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingDescription {
    pub dimensions: usize,
    pub clip: f64,
    pub sigma: f64,
}

/// What the study version has spent: the devices' local guarantee and every central spending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    pub local: LocalLedger,
    /// Every central spending of the study version, this release's included, oldest first.
    pub central: Vec<LedgerEntry>,
    pub central_epsilon_spent: f64,
    pub central_epsilon_total: f64,
    pub central_epsilon_this_release: f64,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalLedger {
    pub guarantee: Guarantee,
    pub mechanisms: String,
}

/// One line of a release's privacy ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    /// The release that spent it.
    #[serde(default)]
    pub release: String,
    pub quantity: String,
    pub mechanism: String,
    /// L1 sensitivity to one contributor joining or leaving.
    pub sensitivity: i64,
    pub scale: f64,
    pub epsilon: f64,
    pub delta: f64,
}

/// The counts the server sees un-noised, published with central differential privacy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub contributors: i64,
    pub reports: i64,
    /// Contributors by the number of reports they sent ("1" to "m").
    pub contributors_by_reports_sent: BTreeMap<String, i64>,
    /// Reports per day (`YYYY-MM-DD`) from the study's public start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports_per_day: Option<BTreeMap<String, DayCount>>,
    /// The release whose noisy counts these are, once the version's central budget is spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republished_from: Option<String>,
}

/// A day's noisy count, or `"suppressed"` below k.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DayCount {
    Count(i64),
    Withheld(Suppressed),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum Suppressed {
    #[serde(rename = "suppressed")]
    Suppressed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Publication {
    pub rule: String,
    /// The chance, over the whole release, of publishing any cell whose true count is below k.
    pub family_error: f64,
    pub cells_tested: usize,
    pub cells_published: usize,
}

/// Tests of what the devices' noise fixes whatever the data, each at a stated level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plausibility {
    /// How to read the checks, in words.
    pub method: String,
    /// The chance that a release of honest reports flags any check.
    pub false_alarm_rate: f64,
    /// Whether any check is flagged.
    pub flagged: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    /// What honest devices do, and what the statistic is.
    pub what: String,
    pub statistic: f64,
    /// The chance of a statistic at least this extreme from honest devices.
    pub p_value: f64,
    pub flagged: bool,
}

/// One channel's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Facet {
    pub oracle: Oracle,
    pub cells: Vec<Cell>,
    /// The category only: what its cells estimate, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimates: Option<String>,
    /// The category only: how well correcting for the classifier's errors did on held-out
    /// labelled conversations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<CategoryValidation>,
    /// The category only, where the validation allows it: the mix corrected for the
    /// classifier's errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debiased: Option<Vec<Cell>>,
}

/// One value's cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cell {
    pub value: String,
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// A cell's estimate when published, else why it is withheld.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Estimate {
    Published(Published),
    Withheld(WithheldCell),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Published {
    /// The value's share given that the cell cleared the threshold, in [k / reports, 1]: the
    /// rule publishes a cell because its count is reliably at least k.
    pub share: f64,
    pub ci95: [f64; 2],
    /// The raw unbiased estimate (its noise can take it slightly outside [0, 1]).
    pub unbiased: f64,
    pub se: f64,
    /// Share and interval times the (noisy) number of reports.
    pub count: f64,
    pub count_ci95: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WithheldCell {
    /// Always true.
    pub suppressed: bool,
    pub reason: Withheld,
}

/// Why a cell is not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Withheld {
    /// Its count is not reliably at least k.
    #[serde(rename = "below k")]
    BelowK,
    /// Too few reports to test it: its cross-tab row or column is expected to hold too few, or
    /// its channel's noise is such that its estimate would have to exceed a share of 1 to clear
    /// its bar.
    #[serde(rename = "too few reports")]
    TooFewReports,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryValidation {
    pub held_out_mixes: usize,
    pub without_noise: WithoutNoise,
    pub through_the_channel: Vec<ThroughTheChannel>,
    /// Per category: how far the true share was from the devices' estimate in 95% of the
    /// held-out mixes.
    pub band: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WithoutNoise {
    pub tvd_devices: f64,
    pub tvd_debiased: f64,
    pub tvd_classify_and_count: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThroughTheChannel {
    pub reports: usize,
    pub tvd_devices: f64,
    pub tvd_debiased: f64,
}

/// A cross-tab: joint shares of all conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossTab {
    pub rows: String,
    pub columns: String,
    pub row_values: Vec<String>,
    pub column_values: Vec<String>,
    pub cells: Vec<CrossTabCell>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CrossTabCell {
    pub row: String,
    pub column: String,
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// The codebook's hierarchy with an estimate for every topic at every level (top first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    pub method: String,
    pub source: String,
    pub levels: Vec<Vec<TopicCell>>,
}

/// A topic's cell; its names and public example are public, so a withheld topic keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopicCell {
    #[serde(flatten)]
    pub cell: Cell,
    pub name: String,
    /// One line on what the topic holds, from the codebook (absent when it has none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub parent: Option<String>,
    pub keywords: Vec<String>,
    pub example: String,
    pub public_share: f64,
}

/// Clusters the noisy embeddings support.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    pub method: String,
    pub sigma: f64,
    /// Clusters chosen by BIC before the support checks.
    pub fitted: usize,
    pub clusters: Vec<Cluster>,
    /// Why nothing (or less) is reported, in words.
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Share of the reports, with its standard error.
    pub share: f64,
    pub share_se: f64,
    /// Centroid in the projected space, and the standard error of each coordinate.
    pub centroid: Vec<f64>,
    pub centroid_se: f64,
    /// Spread of the cluster itself (noise removed).
    pub tau: f64,
    /// The nearest public names: categories by the study's classifier on the back-projected
    /// centroid, most probable first, with their probabilities.
    pub names: Vec<(String, f64)>,
    /// The nearest leaves of the public topic codebook to the back-projected centroid (id,
    /// name, cosine), most similar first.
    pub topics: Vec<(String, String, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingMean {
    pub mean: Vec<f64>,
    pub standard_errors: Vec<f64>,
}

/// The OpenAPI (3.0) component schemas of [`Release`] and every type it holds, by name; their
/// references point into `#/components/schemas/`.
pub fn openapi_schemas() -> serde_json::Map<String, serde_json::Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<Release>();
    generator.take_definitions(true)
}
