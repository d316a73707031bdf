//! `chorus simulate --releases N`: does every interval a release publishes cover its truth as
//! often as it says, for the study as shipped? Each repetition runs the whole client → server
//! path on the same population (one contributor per analysed conversation): every device
//! privatizes its report with the study's own plan, the server's release code builds the
//! release, and each published interval is held against the population's true value. A
//! published cell whose true count is below `k` is a phantom.

use chorus_messages::Channel;
use chorus_server::release::central::History;
use chorus_server::release::{build, now_secs, ReleaseOptions};
use chorus_server::storage::ReleaseSummary;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::study::CompiledStudy;
use chorus_shared::Analysis;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Published cells of one kind over all repetitions.
#[derive(Default)]
struct Tally {
    published: u64,
    covered: u64,
    phantoms: u64,
}

/// The truths a release is judged against, by table and cell.
struct Truth {
    /// `facets.<channel>` and `topic_level<L>`: cell value → share.
    tables: BTreeMap<String, BTreeMap<String, f64>>,
    /// Cross-tabs: `<rows>_by_<columns>` → (row, column) → joint share.
    joint: BTreeMap<String, BTreeMap<(String, String), f64>>,
    embedding_mean: Vec<f64>,
}

pub fn coverage(study: &CompiledStudy, analyses: &[Analysis], releases: usize, seed: u64) -> Result<Value, String> {
    let truth = truth(study, analyses);
    let k = study.release.k as f64;
    let n = analyses.len() as f64;
    let categories = study.category_ids();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let (mut releases_with_phantoms, mut clusters) = (0u64, 0u64);
    let today = now_secs().div_euclid(86_400);
    for r in 0..releases {
        let mut noise = Noise::seeded(seed.wrapping_add(r as u64));
        let reports = analyses
            .iter()
            .map(|a| study.privacy.privatize(a, &categories, &mut noise))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        // One contributor per analysed conversation, every report received today.
        let sums = chorus_server::analyze::Tally::of_reports(study, &reports, today, seed.wrapping_add(r as u64));
        let summary = ReleaseSummary {
            id: format!("{}-coverage-{r}", study.id),
            study_id: study.id.clone(),
            created: String::new(),
        };
        let options = ReleaseOptions::default();
        let release = build(study, &sums, &summary, today, &options, &History::default(), &mut noise)?;
        let release = serde_json::to_value(&release).map_err(|e| e.to_string())?;
        let phantoms_before: u64 = tallies.values().map(|t| t.phantoms).sum();
        judge(&release, &truth, k, n, &mut tallies);
        releases_with_phantoms += u64::from(tallies.values().map(|t| t.phantoms).sum::<u64>() > phantoms_before);
        clusters += release["discovery"]["clusters"]
            .as_array()
            .map_or(0, |c| c.len() as u64);
    }
    let quantities: Map<String, Value> = tallies
        .iter()
        .map(|(name, t)| {
            let coverage = if t.published == 0 {
                Value::Null
            } else {
                json!(t.covered as f64 / t.published as f64)
            };
            (
                name.clone(),
                json!({"published": t.published, "covered": t.covered, "coverage": coverage, "phantoms": t.phantoms}),
            )
        })
        .collect();
    Ok(json!({
        "releases": releases,
        "contributors": analyses.len(),
        "nominal": 0.95,
        "quantities": quantities,
        "phantoms": tallies.values().map(|t| t.phantoms).sum::<u64>(),
        "releases_with_phantoms": releases_with_phantoms,
        "discovered_clusters": clusters,
    }))
}

/// Adds one release's published cells to the tallies.
fn judge(release: &Value, truth: &Truth, k: f64, n: f64, tallies: &mut BTreeMap<String, Tally>) {
    let mut check = |quantity: String, cell: &Value, t: f64, count: bool| {
        if cell["suppressed"] == true {
            return;
        }
        let tally = tallies.entry(quantity).or_default();
        tally.published += 1;
        let (lo, hi) = (
            cell["ci95"][0].as_f64().unwrap_or(f64::NAN),
            cell["ci95"][1].as_f64().unwrap_or(f64::NAN),
        );
        // Bounds are rounded to 10⁻⁶ in the release.
        tally.covered += u64::from(lo - 5e-7 <= t && t <= hi + 5e-7);
        tally.phantoms += u64::from(count && t * n < k);
    };
    for (name, facet) in release["facets"].as_object().into_iter().flatten() {
        let table = &truth.tables[&format!("facets.{name}")];
        for cell in facet["cells"].as_array().into_iter().flatten() {
            check(
                format!("facet {name}"),
                cell,
                table[cell["value"].as_str().unwrap_or_default()],
                true,
            );
        }
    }
    for (depth, level) in release["topics"]["levels"].as_array().into_iter().flatten().enumerate() {
        let name = format!("topic_level{}", depth + 1);
        for cell in level.as_array().into_iter().flatten() {
            check(
                name.clone(),
                cell,
                truth.tables[&name][cell["value"].as_str().unwrap_or_default()],
                true,
            );
        }
    }
    for (name, tab) in release["crosstabs"].as_object().into_iter().flatten() {
        let joint = &truth.joint[name];
        for cell in tab["cells"].as_array().into_iter().flatten() {
            let key = (
                cell["row"].as_str().unwrap_or_default().to_owned(),
                cell["column"].as_str().unwrap_or_default().to_owned(),
            );
            check(
                format!("crosstab {name}"),
                cell,
                joint.get(&key).copied().unwrap_or(0.0),
                true,
            );
        }
    }
    let mean = &release["embedding_mean"];
    for (j, t) in truth.embedding_mean.iter().enumerate() {
        let (m, se) = (
            mean["mean"][j].as_f64().unwrap_or(f64::NAN),
            mean["standard_errors"][j].as_f64().unwrap_or(0.0),
        );
        let cell = json!({"ci95": [m - 1.96 * se, m + 1.96 * se]});
        check("embedding_mean".into(), &cell, *t, false);
    }
}

/// The population's true values of everything a release estimates.
fn truth(study: &CompiledStudy, analyses: &[Analysis]) -> Truth {
    let plan = &study.privacy;
    let categories = study.category_ids();
    let n = analyses.len() as f64;
    let mut tables = BTreeMap::new();
    for c in &plan.channels {
        let shares = plan.true_shares(c.channel, analyses, &categories);
        tables.insert(
            format!("facets.{}", c.channel.name()),
            c.labels.iter().cloned().zip(shares).collect(),
        );
    }
    let depth = study.codebook.as_ref().map_or(0, |c| c.levels.len());
    for level in 0..depth {
        let mut shares: BTreeMap<String, f64> = study.codebook.as_ref().expect("a codebook").levels[level]
            .iter()
            .map(|t| (t.id.clone(), 0.0))
            .collect();
        for a in analyses {
            if let Some(id) = a.topic_path.as_ref().and_then(|p| p.get(level)) {
                *shares.entry(id.clone()).or_default() += 1.0 / n;
            }
        }
        tables.insert(format!("topic_level{}", level + 1), shares);
    }
    let mut joint = BTreeMap::new();
    let rows = std::iter::once((Channel::Category, "category".to_owned()))
        .chain((0..depth.saturating_sub(1)).map(|l| (Channel::TopicLeaf, format!("topic_level{}", l + 1))));
    for (channel, name) in rows {
        let mut cells: BTreeMap<(String, String), f64> = BTreeMap::new();
        for a in analyses {
            let language = plan
                .channel_value(Channel::Language, a, &categories)
                .and_then(|v| plan.channel(Channel::Language)?.labels.get(v).cloned())
                .unwrap_or_default();
            // Each row value with the weight the device reports it with.
            let rows: Vec<(String, f64)> = match (channel, &a.category_probabilities) {
                (Channel::Category, Some(p)) => categories.iter().cloned().zip(p.iter().map(|x| *x as f64)).collect(),
                (Channel::Category, None) => vec![(a.category.clone(), 1.0)],
                _ => {
                    let level: usize = name.trim_start_matches("topic_level").parse::<usize>().unwrap_or(1) - 1;
                    a.topic_path
                        .as_ref()
                        .and_then(|p| p.get(level))
                        .map(|id| (id.clone(), 1.0))
                        .into_iter()
                        .collect()
                }
            };
            for (row, weight) in rows {
                *cells.entry((row, language.clone())).or_default() += weight / n;
            }
        }
        joint.insert(format!("{name}_by_language"), cells);
    }
    let embedding_mean = plan.embedding.as_ref().map_or_else(Vec::new, |e| {
        let projected: Vec<Vec<f64>> = analyses
            .iter()
            .map(|a| e.project(a.embedding.as_deref().unwrap_or_default()))
            .collect();
        (0..e.dimensions())
            .map(|j| projected.iter().map(|v| v[j]).sum::<f64>() / n)
            .collect()
    });
    Truth {
        tables,
        joint,
        embedding_mean,
    }
}
