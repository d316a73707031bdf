//! Where every number of a release comes from. A release may show only three kinds of numbers:
//! public facts (the study's parameters, its codebook and labelled examples, the format), counts
//! that went through the central mechanism and are in the ledger, and post-processing of the
//! devices' locally private reports (possibly scaled by a central count). [`numeric_sources`]
//! walks a release and names the source of each numeric field by its path; a field it cannot
//! name is an error, so a new exact number cannot slip into a release unnoticed.

use serde_json::Value;
use std::collections::BTreeMap;

/// The source of a number in a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// A study parameter, the codebook, the labelled examples' validation, the layout.
    Public,
    /// A count with central noise, listed in the ledger.
    Central,
    /// An estimate from the devices' locally private reports (post-processing), or one scaled
    /// by a central count.
    Local,
    /// The ledger's own figures: what each release spent (public parameters times releases).
    Ledger,
}

/// Path patterns (array indices written `[]`, map keys of counts written `*`) and their source.
const SOURCES: &[(&str, Source)] = &[
    ("format", Source::Public),
    ("privacy.", Source::Public),
    ("publication.family_error", Source::Public),
    ("publication.cells_tested", Source::Local),
    ("publication.cells_published", Source::Local),
    ("plausibility.false_alarm_rate", Source::Public),
    ("plausibility.checks[].", Source::Local),
    ("ledger.local.", Source::Public),
    ("ledger.central[].", Source::Ledger),
    ("ledger.central_epsilon_spent", Source::Ledger),
    ("ledger.central_epsilon_total", Source::Public),
    ("ledger.central_epsilon_this_release", Source::Ledger),
    ("counts.contributors", Source::Central),
    ("counts.reports", Source::Central),
    ("counts.reports_per_day.*", Source::Central),
    ("counts.contributors_by_reports_sent.*", Source::Central),
    ("facets.*.oracle.", Source::Public),
    ("facets.category.validation.", Source::Public),
    ("facets.*.cells[].", Source::Local),
    ("facets.category.debiased[].", Source::Local),
    ("topics.levels[][].public_share", Source::Public),
    ("topics.levels[][].", Source::Local),
    ("crosstabs.*.cells[].", Source::Local),
    ("discovery.sigma", Source::Public),
    ("discovery.fitted", Source::Local),
    ("discovery.clusters[].", Source::Local),
    ("embedding_mean.", Source::Local),
];

/// The source of every numeric field of a release (by its generalised path), or the paths
/// whose source is unknown.
pub fn numeric_sources(release: &Value) -> Result<BTreeMap<String, Source>, Vec<String>> {
    let mut found = BTreeMap::new();
    let mut unknown = Vec::new();
    walk(release, String::new(), &mut |path| match source_of(&path) {
        Some(source) => {
            found.insert(path, source);
        }
        None => unknown.push(path),
    });
    if unknown.is_empty() {
        Ok(found)
    } else {
        unknown.sort();
        unknown.dedup();
        Err(unknown)
    }
}

fn source_of(path: &str) -> Option<Source> {
    SOURCES
        .iter()
        .find(|(pattern, _)| matches(pattern, path))
        .map(|(_, s)| *s)
}

/// A pattern matches a path segment by segment: `*` matches any map key (with the same `[]`
/// after it), and a pattern ending in `.` matches everything below it.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, below) = match pattern.strip_suffix('.') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), path.split('.').collect());
    if q.len() < p.len() || (!below && q.len() != p.len()) {
        return false;
    }
    p.iter().zip(&q).all(|(a, b)| match a.strip_prefix('*') {
        Some(brackets) => b.strip_suffix(brackets).is_some_and(|key| !key.contains('[')),
        None => a == b,
    })
}

/// Calls `number` with the path of every numeric leaf: array indices become `[]`; the keys of
/// maps keyed by data (counts per day, per label) stay, and are matched by `*`.
fn walk(value: &Value, path: String, number: &mut dyn FnMut(String)) {
    match value {
        Value::Number(_) => number(path),
        Value::Array(items) => {
            for item in items {
                walk(item, format!("{path}[]"), number);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let next = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(item, next, number);
            }
        }
        _ => {}
    }
}

/// Every published share and interval bound of a release lies in [0, 1], every published cell's
/// share within its interval, no published cell's count or interval below k (the rule publishes
/// a cell because its count is reliably at least k), no published cell one whose estimate had to
/// exceed a share of 1 to clear its bar (only noise could publish it), a withheld cell
/// carries no number, and the numbers of cells tested and published are those of its tables.
pub fn impossible_values(release: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let k = release["privacy"]["k"].as_f64().unwrap_or(f64::NAN);
    let total = release["counts"]["reports"].as_f64().unwrap_or(f64::NAN).max(1.0);
    let publication = &release["publication"];
    let strictest = chorus_server::release::publish::normal_upper_quantile(
        publication["family_error"].as_f64().unwrap_or(f64::NAN)
            / publication["cells_tested"].as_f64().unwrap_or(f64::NAN).max(1.0),
    );
    let mut cells: Vec<(String, &Value)> = Vec::new();
    for (name, facet) in release["facets"].as_object().into_iter().flatten() {
        for key in ["cells", "debiased"] {
            cells.extend(
                facet[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| (format!("{name}.{key}"), c)),
            );
        }
    }
    for level in release["topics"]["levels"].as_array().into_iter().flatten() {
        cells.extend(level.as_array().into_iter().flatten().map(|c| ("topics".to_owned(), c)));
    }
    for (name, tab) in release["crosstabs"].as_object().into_iter().flatten() {
        cells.extend(tab["cells"].as_array().into_iter().flatten().map(|c| (name.clone(), c)));
    }
    // The publication rule's family is the release's cells: a reader who counts the published
    // cells and those withheld as below k finds the numbers the release states.
    let published = cells.iter().filter(|(_, c)| c["suppressed"] != true).count();
    let below_k = cells.iter().filter(|(_, c)| c["reason"] == "below k").count();
    if publication["cells_published"].as_u64() != Some(published as u64)
        || publication["cells_tested"].as_u64() != Some((published + below_k) as u64)
    {
        bad.push(format!(
            "the publication says {publication}, the tables hold {published} published cells and {below_k} withheld below k"
        ));
    }
    for (table, cell) in cells {
        if cell["suppressed"] == true {
            if cell.get("share").is_some() || cell.get("count").is_some() {
                bad.push(format!("{table}: a withheld cell with numbers: {cell}"));
            }
            continue;
        }
        let share = cell["share"].as_f64().unwrap_or(f64::NAN);
        let (lo, hi) = (
            cell["ci95"][0].as_f64().unwrap_or(f64::NAN),
            cell["ci95"][1].as_f64().unwrap_or(f64::NAN),
        );
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if !(unit(share) && unit(lo) && unit(hi) && lo <= share && share <= hi) {
            bad.push(format!("{table}: {cell}"));
        }
        let (count, count_lo) = (
            cell["count"].as_f64().unwrap_or(f64::NAN),
            cell["count_ci95"][0].as_f64().unwrap_or(f64::NAN),
        );
        if !(count >= k && count_lo >= k) {
            bad.push(format!("{table}: a published count below k = {k}: {cell}"));
        }
        // The release rounds the standard error to 1e-6.
        let bar = k / total + strictest * cell["se"].as_f64().unwrap_or(f64::NAN);
        if bar.is_nan() || bar > 1.0 + 1e-5 {
            bad.push(format!("{table}: published, though its bar is {bar}: {cell}"));
        }
    }
    bad
}
