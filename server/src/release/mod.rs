//! Release: a signed, immutable JSON document of everything the study may publish — estimates
//! with 95% intervals, cells suppressed unless their count is reliably at least `k`, central-DP
//! counts, the study's privacy parameters and the ledger of what the release spent.

pub mod central;
pub mod csv;
pub mod sign;

use crate::analyze::{
    collect, cross_tab, embedding_mean, estimate_facets, estimate_groups, Axis, Collected, CrossTab, FacetEstimate,
};
use crate::discover::discover;
use crate::storage::{ReleaseSummary, Storage};
use central::{noisy_counts, LedgerEntry};
use chorus_shared::privacy::oracle::share_ci95;
use chorus_shared::privacy::Channel;
use chorus_shared::release::SignedRelease;
use chorus_shared::study::CompiledStudy;
use serde_json::{json, Map, Value};
use sign::Signer;

/// Version of the release document's layout.
pub const RELEASE_FORMAT: u32 = 2;

#[derive(Debug, Clone, Default)]
pub struct ReleaseOptions {
    /// Marks every number as coming from demo contributions (public conversations run through
    /// the client pipeline), not from real contributors.
    pub demo: bool,
}

/// Cuts the next release of `study`: reads every stored report, estimates, thresholds, adds
/// central noise, signs, and stores the document. Returns its summary and the signed document.
pub fn cut(
    storage: &dyn Storage,
    study: &CompiledStudy,
    signer: &Signer,
    options: &ReleaseOptions,
) -> Result<(ReleaseSummary, SignedRelease), String> {
    let collected = collect(storage, study).map_err(|e| e.to_string())?;
    if collected.reports.is_empty() {
        return Err(format!(
            "study `{}` has no reports in version {} yet",
            study.id, study.version
        ));
    }
    let number = storage.release_count(&study.id).map_err(|e| e.to_string())? + 1;
    let summary = ReleaseSummary {
        id: format!("{}-r{number}", study.id),
        study_id: study.id.clone(),
        created: timestamp(now_secs()),
    };
    let release = build(study, &collected, &summary, options)?;
    let signed = signer.sign(release);
    let document = serde_json::to_string_pretty(&signed).expect("a release serialises");
    storage.insert_release(&summary, &document).map_err(|e| e.to_string())?;
    Ok((summary, signed))
}

/// The release document (unsigned).
pub fn build(
    study: &CompiledStudy,
    collected: &Collected,
    summary: &ReleaseSummary,
    options: &ReleaseOptions,
) -> Result<Value, String> {
    let plan = &study.privacy;
    let (k, central) = (study.release.k as f64, study.release.central_epsilon);
    let m = plan.reports_per_contributor as i64;
    let quarter = central / 4.0;
    let mut ledger: Vec<LedgerEntry> = Vec::new();

    let (contributors, entry) = noisy_counts("contributors", &[collected.per_contributor.len() as i64], 1, quarter)?;
    ledger.push(entry);
    let (reports, entry) = noisy_counts("reports", &[collected.reports.len() as i64], m, quarter)?;
    ledger.push(entry);
    let (first, last) = (
        *collected.per_day.keys().next().expect("reports were collected"),
        *collected.per_day.keys().last().expect("reports were collected"),
    );
    let days: Vec<i64> = (first..=last)
        .map(|d| collected.per_day.get(&d).copied().unwrap_or(0) as i64)
        .collect();
    let (noisy_days, entry) = noisy_counts("reports per day", &days, m, quarter)?;
    ledger.push(entry);
    let mut per_contributor = vec![0i64; m as usize];
    for &n in collected.per_contributor.values() {
        per_contributor[(n.clamp(1, m as u32) - 1) as usize] += 1;
    }
    let (noisy_per_contributor, entry) = noisy_counts("contributors by reports sent", &per_contributor, 1, quarter)?;
    ledger.push(entry);

    // Counts of cells are shares of this (noisy) total.
    let total = reports[0].max(1) as f64;
    let cell = |label: &str, share: f64, (lo, hi): (f64, f64), normal: Option<Normal>| -> Value {
        if lo * total >= k {
            let mut c = json!({"value": label, "share": round(share), "ci95": [round(lo), round(hi)],
                   "count": (share * total).round(), "count_ci95": [(lo * total).round(), (hi * total).round()]});
            if let Some(Normal { unbiased, se }) = normal {
                c["unbiased"] = json!(round(unbiased));
                c["se"] = json!(round(se));
            }
            c
        } else {
            json!({"value": label, "suppressed": true})
        }
    };
    // Topic channels are published as the codebook's hierarchy (`topics`), with names.
    let facets: Map<String, Value> = estimate_facets(study, &collected.reports, seed_from(&summary.id))
        .iter()
        .filter(|f| !f.channel.is_topic())
        .map(|f| (f.channel.name().to_owned(), facet_json(f, &cell)))
        .collect();
    let topics = topics_json(study, collected, &cell);
    // Which categories and topics are over- or under-represented in each language (Clio's
    // cross-language comparison); the leaves are too fine for the reports a language gets.
    let mut crosstabs = Map::new();
    let language = Axis::channel(study, Channel::Language);
    let depth = study.codebook.as_ref().map_or(0, |c| c.levels.len());
    let rows = std::iter::once(Axis::channel(study, Channel::Category))
        .chain((0..depth.saturating_sub(1)).map(|level| Axis::topic_level(study, level)));
    for row in rows.flatten() {
        if let Some(tab) = language
            .as_ref()
            .and_then(|l| cross_tab(study, &row, l, &collected.reports))
        {
            crosstabs.insert(format!("{}_by_{}", tab.rows, tab.columns), crosstab_json(&tab, &cell));
        }
    }
    let days_json: Map<String, Value> = noisy_days
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let value = if (n as f64) >= k { json!(n) } else { json!("suppressed") };
            (date(first + i as i64), value)
        })
        .collect();
    let per_contributor_json: Map<String, Value> = noisy_per_contributor
        .iter()
        .enumerate()
        .map(|(i, &n)| ((i + 1).to_string(), json!(n.max(0))))
        .collect();
    let a = &plan.accounting;
    let mut release = json!({
        "format": RELEASE_FORMAT,
        "id": summary.id,
        "created": summary.created,
        "demo": options.demo,
        "study": {"id": study.id, "version": study.version, "title": study.title,
                  "description": study.description, "model_sha256": study.model_sha256},
        "privacy": {
            "per_report": a.per_report, "contributor": a.contributor, "composition": a.composition,
            "reports_per_contributor": plan.reports_per_contributor,
            "channels": plan.channels.iter().map(|c| json!({"channel": c.channel, "oracle": c.oracle,
                         "pool": c.pool, "values": c.labels})).collect::<Vec<_>>(),
            "embedding": plan.embedding.as_ref().map(|e| json!({"dimensions": e.dimensions(), "clip": e.clip, "sigma": e.sigma})),
            "k": study.release.k,
            "central_epsilon": central,
        },
        "ledger": {
            "local": {"guarantee": a.contributor, "mechanisms": "frequency oracles and the Gaussian mechanism on each device (see privacy); estimates and intervals are post-processing of those reports"},
            "central": ledger,
            "central_epsilon_total": ledger.iter().map(|e| e.epsilon).sum::<f64>(),
        },
        "counts": {
            "contributors": contributors[0].max(0),
            "reports": reports[0].max(0),
            "reports_per_day": days_json,
            "contributors_by_reports_sent": per_contributor_json,
        },
        "cells": CELLS_METHOD,
        "facets": facets,
        "crosstabs": crosstabs,
    });
    if let Some(topics) = topics {
        release["topics"] = topics;
    }
    let embeddings: Vec<&[f32]> = collected
        .reports
        .iter()
        .filter_map(|r| r.embedding.as_deref())
        .collect();
    if let Some(found) = discover(study, &embeddings, k, seed_from(&summary.id)) {
        release["discovery"] = json!({
            "method": "Gaussian mixture with the known noise variance (deconvolved EM), clusters chosen by BIC, kept when their count is reliably at least k and their centroids are separated beyond their standard errors",
            "points": found.points,
            "sigma": found.sigma,
            "fitted": found.fitted,
            "clusters": found.clusters,
            "note": found.note,
        });
    }
    if let Some(mean) = embedding_mean(&collected.reports) {
        release["embedding_mean"] = json!({
            "mean": mean.mean.iter().map(|x| round(*x)).collect::<Vec<_>>(),
            "standard_errors": mean.standard_errors.iter().map(|x| round(*x)).collect::<Vec<_>>(),
        });
    }
    Ok(release)
}

/// How to read a cell, in the release itself.
const CELLS_METHOD: &str = "share: the estimate (a facet's shares projected onto the simplex); \
ci95: the 95% interval of the unbiased estimate, clipped to [0, 1]; unbiased and se: that \
estimate unclipped and its standard error; count and count_ci95: share and interval times the \
reports. A cell is published only when the lower end of count_ci95 is at least k. Each interval \
covers the truth 95% of the time before that threshold, not after it: a small cell clears k \
only when its estimate came out high, so published small cells lean towards overestimates.";

/// A cell from its label, share, 95% interval and (for a normal interval) the estimate behind
/// it: published, or suppressed below `k`.
type CellFn<'a> = dyn Fn(&str, f64, (f64, f64), Option<Normal>) -> Value + 'a;

/// An unbiased estimate and its standard error, published next to the interval they give: the
/// interval is clipped to [0, 1] (and can collapse to [1, 1]), the estimate is not, so an
/// auditor can still tell how far off a value is.
#[derive(Clone, Copy)]
struct Normal {
    unbiased: f64,
    se: f64,
}

impl Normal {
    fn ci95(self) -> (f64, f64) {
        share_ci95(self.unbiased, self.se)
    }
}

fn facet_json(f: &FacetEstimate, cell: &CellFn<'_>) -> Value {
    let cells: Vec<Value> = f
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let normal = Normal {
                unbiased: f.estimate.shares[i],
                se: f.estimate.standard_errors[i],
            };
            cell(l, f.estimate.projected[i], normal.ci95(), Some(normal))
        })
        .collect();
    let mut facet = json!({"oracle": f.oracle, "cells": cells});
    if let Some(d) = &f.debiased {
        facet["debiased"] = f
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| cell(l, d.shares[i], d.ci95[i], None))
            .collect::<Vec<_>>()
            .into();
    }
    facet
}

/// The codebook's hierarchy with an estimate for every topic at every level (top first); a
/// topic's names and public example are public, so a suppressed topic keeps them.
fn topics_json(study: &CompiledStudy, collected: &Collected, cell: &CellFn<'_>) -> Option<Value> {
    let codebook = study.codebook.as_ref()?;
    let mut levels = Vec::new();
    let mut n = 0;
    for (depth, topics) in codebook.levels.iter().enumerate() {
        let axis = Axis::topic_level(study, depth)?;
        let estimate = estimate_groups(study, &axis, &collected.reports)?;
        n = estimate.n;
        let cells: Vec<Value> = topics
            .iter()
            .enumerate()
            .map(|(i, topic)| {
                let normal = Normal {
                    unbiased: estimate.shares[i],
                    se: estimate.standard_errors[i],
                };
                let mut c = cell(&topic.id, normal.unbiased.max(0.0), normal.ci95(), Some(normal));
                c["name"] = json!(topic.name);
                c["parent"] = json!(topic.parent.map(|p| codebook.levels[depth - 1][p].id.clone()));
                c["keywords"] = json!(topic.keywords);
                c["example"] = json!(topic.example);
                c["public_share"] = json!(round(topic.public_share));
                c
            })
            .collect();
        levels.push(Value::Array(cells));
    }
    Some(json!({
        "method": "each report carries its topic at one level of the codebook (drawn at random) through that level's frequency oracle; a level's shares are the means of the reports' unbiased indicators; a level the study does not report sums its leaves' indicators",
        "source": codebook.source,
        "reports": n,
        "levels": levels,
    }))
}

fn crosstab_json(tab: &CrossTab, cell: &CellFn<'_>) -> Value {
    let mut cells = Vec::new();
    for (i, row) in tab.row_labels.iter().enumerate() {
        for (j, column) in tab.column_labels.iter().enumerate() {
            let normal = Normal {
                unbiased: tab.shares[i][j],
                se: tab.standard_errors[i][j],
            };
            // Shares of the reports carrying both channels; counts scale them to all reports.
            let mut c = cell(
                &format!("{row}|{column}"),
                normal.unbiased.max(0.0),
                normal.ci95(),
                Some(normal),
            );
            c["row"] = json!(row);
            c["column"] = json!(column);
            c.as_object_mut().expect("a cell is an object").remove("value");
            cells.push(c);
        }
    }
    json!({"rows": tab.rows, "columns": tab.columns, "row_values": tab.row_labels,
           "column_values": tab.column_labels, "cells": cells})
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A deterministic seed for a release's bootstrap (its intervals do not change on re-reading).
fn seed_from(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian calendar).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
pub fn date(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 UTC timestamp of Unix seconds.
pub fn timestamp(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(days),
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(11_016), "2000-02-29");
        assert_eq!(date(20_786), "2026-11-29");
        assert_eq!(timestamp(1_796_000_000), "2026-11-30T00:53:20Z");
    }
}
