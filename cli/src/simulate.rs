//! `chorus simulate`: what the server would learn, at a given privacy budget, if each
//! conversation of the exports were one contributor. Runs the client pipeline, privatizes one
//! report per conversation, runs the server's estimators, and compares their estimates with the
//! non-private distributions of the same on-device facets.

use crate::exports::analyze_exports;
use crate::files::load_analyzer;
use crate::StudyArgs;
use chorus_messages::{Channel, Privatized, Report};
use chorus_server::analyze::debias_category;
use chorus_shared::privacy::embedding::{estimate_mean, EmbeddingPlan};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::privacy::{ChannelPlan, PrivacyPlan};
use chorus_shared::study::CompiledStudy;
use chorus_shared::Analysis;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    study: StudyArgs,
    /// The contributor-level ε, spread over the channels in the study's proportions; `inf`
    /// adds no noise. Several values, comma-separated, print one document each.
    #[arg(long, value_delimiter = ',', required_unless_present = "releases")]
    epsilon: Vec<f64>,
    /// Instead: repeat the whole client → server path N times with the study as shipped and
    /// report how often each kind of published interval covers its truth, and how many
    /// published cells are phantoms (true count below k). Seeded by --seed (default 1).
    #[arg(long, value_name = "N", conflicts_with = "epsilon")]
    releases: Option<usize>,
    /// Reports per contributor assumed by the accounting [default: the study's].
    #[arg(long)]
    m: Option<u32>,
    /// Seed the noise (reproducible, simulation-only noise); without it, OpenDP's secure noise.
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads for the analysis [default: the number of cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    #[arg(required = true, value_name = "EXPORT")]
    exports: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    if let Some(bad) = args.epsilon.iter().find(|e| e.is_nan() || **e <= 0.0) {
        return Err(format!("--epsilon must be positive (or inf), not {bad}"));
    }
    let analyzer = Arc::new(load_analyzer(&args.study)?);
    let mut analyses = Vec::new();
    let summary = analyze_exports(&analyzer, &args.exports, args.threads, true, &mut |_, analysis| {
        analyses.push(analysis);
        Ok(())
    })?;
    if analyses.is_empty() {
        return Err("no conversations to simulate".into());
    }
    let study = analyzer.study();
    if let Some(releases) = args.releases {
        let document = crate::coverage::coverage(study, &analyses, releases, args.seed.unwrap_or(1))?;
        println!("{}", serde_json::to_string(&document).expect("coverage serialises"));
    }
    for (i, &epsilon) in args.epsilon.iter().enumerate() {
        let mut base = study.privacy.clone();
        if let Some(m) = args.m {
            base.reports_per_contributor = m.max(1);
        }
        let plan = base.with_contributor_epsilon(epsilon);
        let mut noise = match args.seed {
            Some(seed) => Noise::seeded(seed.wrapping_add(i as u64)),
            None => Noise::Secure,
        };
        let document = simulate(study, &plan, &analyses, &mut noise)?;
        println!("{}", serde_json::to_string(&document).expect("simulation serialises"));
    }
    Ok(if summary.failed_files > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One simulated release at `plan`'s budget: each channel's estimate against the truth, with the
/// server's estimators (`oracle.estimate`, the corrected category mix), and the mean embedding.
fn simulate(
    study: &CompiledStudy,
    plan: &PrivacyPlan,
    analyses: &[Analysis],
    noise: &mut Noise,
) -> Result<Value, String> {
    let categories = study.category_ids();
    let reports: Vec<Report> = analyses
        .iter()
        .map(|a| plan.privatize(a, &categories, noise))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut facets = Map::new();
    for channel in &plan.channels {
        let truth = plan.true_shares(channel.channel, analyses, &categories);
        let mut facet = facet_document(channel, &reports, &truth);
        if let (Channel::Category, Some(confusion)) = (channel.channel, &study.category_confusion) {
            // The server's correction for the classifier's errors, with its bootstrap intervals
            // (the devices' noise and the confusion's uncertainty), to hold against a true mix.
            let values: Vec<&Privatized> = reports
                .iter()
                .filter_map(|r| r.channels.get(&Channel::Category))
                .collect();
            let band = study
                .category_validation
                .as_ref()
                .map(|v| v.debiased_rms_error.as_slice());
            let debiased = debias_category(channel, &values, confusion, band, noise_seed(noise));
            facet["debiased"] = by_label(&channel.labels, &debiased.shares);
            facet["debiased_ci95"] = intervals_by_label(&channel.labels, &debiased.ci95);
        }
        facets.insert(channel.channel.name().to_owned(), facet);
    }
    let mut document = json!({
        "contributor_epsilon": number(plan.accounting.contributor.epsilon),
        "contributor_delta": plan.accounting.contributor.delta,
        "per_report_epsilon": number(plan.accounting.per_report.epsilon),
        "composition": plan.accounting.composition,
        "reports_per_contributor": plan.reports_per_contributor,
        "contributors": analyses.len(),
        "noise": if noise.is_secure() { "opendp" } else { "seeded" },
        "facets": facets,
    });
    if let Some(embedding) = &plan.embedding {
        document["embedding"] = embedding_document(embedding, analyses, &reports);
    }
    Ok(document)
}

/// One channel: the server's estimate from the reports beside the true shares.
fn facet_document(channel: &ChannelPlan, reports: &[Report], truth: &[f64]) -> Value {
    let estimate = channel.estimate(reports.iter().filter_map(|r| r.channels.get(&channel.channel)));
    let tvd = 0.5
        * estimate
            .projected
            .iter()
            .zip(truth)
            .map(|(e, t)| (e - t).abs())
            .sum::<f64>();
    json!({
        "oracle": channel.oracle,
        "reports": estimate.n,
        "true": by_label(&channel.labels, truth),
        "estimate": by_label(&channel.labels, &estimate.projected),
        "ci95": intervals_by_label(&channel.labels, &estimate.ci95()),
        "tvd": round(tvd),
    })
}

/// The mean projected embedding estimated from the reports against the true mean.
fn embedding_document(embedding: &EmbeddingPlan, analyses: &[Analysis], reports: &[Report]) -> Value {
    let truth: Vec<Vec<f64>> = analyses
        .iter()
        .map(|a| embedding.project(a.embedding.as_deref().unwrap_or_default()))
        .collect();
    let d = embedding.dimensions();
    let true_mean: Vec<f64> = (0..d)
        .map(|j| truth.iter().map(|v| v[j]).sum::<f64>() / truth.len() as f64)
        .collect();
    let estimate = estimate_mean(reports.iter().filter_map(|r| r.embedding.as_deref()));
    let error = estimate
        .mean
        .iter()
        .zip(&true_mean)
        .map(|(e, t)| (e - t).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm = true_mean.iter().map(|t| t * t).sum::<f64>().sqrt();
    let se = (estimate.standard_errors.iter().map(|s| s * s).sum::<f64>()).sqrt();
    json!({
        "dimensions": d,
        "sigma": embedding.sigma,
        "reports": estimate.n,
        "true_mean_norm": round(norm),
        "mean_error_norm": round(error),
        "mean_standard_error_norm": round(se),
    })
}

fn by_label(labels: &[String], values: &[f64]) -> Value {
    labels
        .iter()
        .zip(values)
        .map(|(l, v)| (l.clone(), json!(round(*v))))
        .collect::<Map<_, _>>()
        .into()
}

fn intervals_by_label(labels: &[String], intervals: &[(f64, f64)]) -> Value {
    labels
        .iter()
        .zip(intervals)
        .map(|(l, (lo, hi))| (l.clone(), json!([round(*lo), round(*hi)])))
        .collect::<Map<_, _>>()
        .into()
}

/// A seed for the debiasing's bootstrap: drawn from the simulation's noise, so that a seeded
/// simulation is reproducible.
fn noise_seed(noise: &mut Noise) -> u64 {
    noise.uniform_u64().unwrap_or(0)
}

/// A number, or the string "inf" (JSON has no infinity).
fn number(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        json!("inf")
    }
}

fn round(x: f64) -> f64 {
    (x * 1e5).round() / 1e5
}
