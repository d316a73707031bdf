//! The release's parts written as the typed document (`chorus_shared::release::document`): the
//! study and its privacy parameters, the ledger, each table's cells, the category mix with what
//! its validation found, the topic hierarchy and the cross-tabs.

use super::cells::{round, Cells, TableRange};
use super::central::Central;
use crate::analyze::{CrossTab, FacetEstimate};
use chorus_shared::release::document::{
    CategoryValidation, Cell, ChannelDescription, CrossTab as CrossTabTable, CrossTabCell, EmbeddingDescription, Facet,
    Ledger, LocalLedger, PrivacyParameters, StudyInfo, ThroughTheChannel, TopicCell, Topics, WithoutNoise,
};
use chorus_shared::study::{Access, CompiledStudy};

/// How to read a cell, in the release itself.
pub const CELLS_METHOD: &str = "share: the estimate of the value's share, in [0, 1]; ci95: its 95% \
interval. A cell is published only because its estimate cleared the threshold, so share and ci95 \
are those of the estimate given that it did (the median and the middle 95% of a normal estimate \
truncated at the threshold): far above the threshold they are the estimate and ±1.96 standard \
errors, just above it the interval reaches lower, but never below k over the reports, since the \
rule published the cell because its count is reliably at least k. unbiased and se: the raw \
unbiased estimate (its noise can take it slightly outside [0, 1]) and its standard error; count \
and count_ci95: share and interval times the (noisy) number of reports. A withheld cell says why: \
'below k' (its count is not reliably at least k) or 'too few reports' (its cross-tab row or \
column holds too few reports to test it, or its estimate would have to exceed a share of 1 to \
clear its bar) — a withheld cell is not a zero. Counts carry noise twice (the reports' local \
noise and the central noise on the total), so published counts can add up to more than the \
reports.";

pub fn study_info(study: &CompiledStudy) -> StudyInfo {
    StudyInfo {
        id: study.id.clone(),
        version: study.version.clone(),
        title: study.title.clone(),
        description: study.description.clone(),
        model_sha256: study.model_sha256.clone(),
        access: study.access.name().to_owned(),
        who_contributed: who_contributed(study.access).to_owned(),
    }
}

/// Who could contribute, and what that means for fabricated reports, in words.
fn who_contributed(access: Access) -> &'static str {
    match access {
        Access::Open => "Anyone could contribute to this study. Local noise hides a fabricated report as well as an honest one, and it amplifies it: these figures are not robust to fabricated reports. The plausibility checks catch only reports that depart from what honest devices send.",
        Access::Invited => "Only invited contributors could contribute: every report carried an anonymous one-time token that an invitation paid for (one contributor's reports per invitation), verified and spent by the server. Tokens do not say which invitation paid for them.",
    }
}

pub fn privacy_parameters(study: &CompiledStudy) -> PrivacyParameters {
    let plan = &study.privacy;
    let a = &plan.accounting;
    PrivacyParameters {
        per_report: a.per_report,
        contributor: a.contributor,
        composition: a.composition.clone(),
        reports_per_contributor: plan.reports_per_contributor,
        lifetime_epsilon_cap: plan.lifetime_epsilon_cap,
        channels: plan
            .channels
            .iter()
            .map(|c| ChannelDescription {
                channel: c.channel,
                oracle: c.oracle,
                pool: c.pool.clone(),
                values: c.labels.clone(),
            })
            .collect(),
        embedding: plan.embedding.as_ref().map(|e| EmbeddingDescription {
            dimensions: e.dimensions(),
            clip: e.clip,
            sigma: e.sigma,
        }),
        k: study.release.k,
        central_epsilon: study.release.central_epsilon,
        central_epsilon_total: study.release.central_epsilon_total,
    }
}

pub fn ledger(study: &CompiledStudy, central: &Central) -> Ledger {
    Ledger {
        local: LocalLedger {
            guarantee: study.privacy.accounting.contributor,
            mechanisms: "frequency oracles and the Gaussian mechanism on each device (see privacy); estimates and intervals are post-processing of those reports".into(),
        },
        central: central.ledger.clone(),
        central_epsilon_spent: central.ledger.iter().map(|e| e.epsilon).sum::<f64>(),
        central_epsilon_total: study.release.central_epsilon_total,
        central_epsilon_this_release: central.spent_now,
        note: "central spending is cumulative over every release of this study version; once the total is spent, releases re-publish the last noisy counts instead of drawing new noise".into(),
    }
}

/// A table's cells, one per label.
fn table(labels: &[String], cells: &Cells, range: TableRange, total: f64) -> Vec<Cell> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| Cell {
            value: l.clone(),
            estimate: cells.estimate(range, i, total),
        })
        .collect()
}

pub fn facet(f: &FacetEstimate, cells: &Cells, range: TableRange, total: f64) -> Facet {
    Facet {
        oracle: f.oracle,
        cells: table(&f.labels, cells, range, total),
        estimates: None,
        validation: None,
        debiased: None,
    }
}

/// What the category facet says of the true mix of categories: the debiased mix where the
/// study's validation found it beats the devices' estimate, else the devices' estimate with the
/// classifier-error band that validation measured.
pub fn category_mix(
    study: &CompiledStudy,
    facet: &mut Facet,
    labels: &[String],
    cells: &Cells,
    debiased: Option<TableRange>,
    total: f64,
) {
    let Some(v) = &study.category_validation else {
        facet.estimates = Some("the categories as the devices' classifier assigns them; the classifier's errors were not measured (the study has no labelled examples)".into());
        return;
    };
    facet.validation = Some(CategoryValidation {
        held_out_mixes: v.mixes,
        without_noise: WithoutNoise {
            tvd_devices: round(v.tvd_devices),
            tvd_debiased: round(v.tvd_debiased),
            tvd_classify_and_count: round(v.tvd_counted),
        },
        through_the_channel: v
            .noisy
            .iter()
            .map(|a| ThroughTheChannel {
                reports: a.reports,
                tvd_devices: round(a.tvd_devices),
                tvd_debiased: round(a.tvd_debiased),
            })
            .collect(),
        band: labels
            .iter()
            .zip(&v.band)
            .map(|(l, b)| (l.clone(), round(*b)))
            .collect(),
    });
    if let Some(range) = debiased {
        facet.estimates = Some("cells: the categories as the devices' classifier assigns them; debiased: the true mix, corrected for the classifier's errors, which at this many reports beat the devices' estimate on held-out labelled conversations (validation); its intervals carry the devices' noise and the uncertainty of the classifier's measured errors".into());
        facet.debiased = Some(table(labels, cells, range, total));
    } else {
        facet.estimates = Some(format!(
            "the categories as the devices' classifier assigns them, not the true mix: at this many reports, correcting for the classifier's errors did not beat this estimate on held-out labelled conversations ({} shifted mixes; see validation: the correction amplifies the devices' noise). The true share of a category was within its band of this estimate in 95% of those mixes: read a cell as its interval widened by the band.",
            v.mixes
        ));
    }
}

/// The codebook's hierarchy with an estimate for every topic at every level (top first); a
/// topic's names and public example are public, so a withheld topic keeps them.
pub fn topics(study: &CompiledStudy, cells: &Cells, ranges: &[TableRange], total: f64) -> Option<Topics> {
    let codebook = study.codebook.as_ref()?;
    if ranges.len() != codebook.levels.len() {
        return None;
    }
    let levels = codebook
        .levels
        .iter()
        .zip(ranges)
        .enumerate()
        .map(|(depth, (topics, range))| {
            topics
                .iter()
                .enumerate()
                .map(|(i, topic)| TopicCell {
                    cell: Cell {
                        value: topic.id.clone(),
                        estimate: cells.estimate(*range, i, total),
                    },
                    name: topic.name.clone(),
                    description: topic.description.clone(),
                    parent: topic.parent.map(|p| codebook.levels[depth - 1][p].id.clone()),
                    keywords: topic.keywords.clone(),
                    example: topic.example.clone(),
                    public_share: round(topic.public_share),
                })
                .collect()
        })
        .collect();
    Some(Topics {
        method: "each report carries its topic at one level of the codebook (drawn at random) through that level's frequency oracle; a level's shares are the means of the reports' unbiased indicators; a level the study does not report sums its leaves' indicators".into(),
        source: codebook.source.clone(),
        levels,
    })
}

/// A cross-tab's cells: joint shares of all conversations; counts scale them to all reports.
pub fn crosstab(tab: &CrossTab, cells: &Cells, range: TableRange, total: f64) -> CrossTabTable {
    let mut out = Vec::new();
    for (i, row) in tab.row_labels.iter().enumerate() {
        for (j, column) in tab.column_labels.iter().enumerate() {
            out.push(CrossTabCell {
                row: row.clone(),
                column: column.clone(),
                estimate: cells.estimate(range, i * tab.column_labels.len() + j, total),
            });
        }
    }
    CrossTabTable {
        rows: tab.rows.clone(),
        columns: tab.columns.clone(),
        row_values: tab.row_labels.clone(),
        column_values: tab.column_labels.clone(),
        cells: out,
    }
}
