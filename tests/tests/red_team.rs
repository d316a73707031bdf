//! A scripted attacker against the shipped default study, which anyone may contribute to. Into
//! 3,000 honest demo contributors (public conversations analysed by the client pipeline, each
//! privatized by its own device), the attacker adds F fabricated one-report batches, each one
//! accepted by the server's validation, and the server's release code cuts a release. For each
//! attack and F the test prints the shift of the published estimate and which plausibility
//! checks flag the release, and holds what the checks promise: honest reports flag nothing;
//! what departs from the devices' noise (a skewed pool choice, seeds chosen to support several
//! values, embeddings beyond the noise's norms) is flagged once it moves the estimate by more
//! than its standard error; reports that imitate the noise exactly and only claim a value are
//! not (only restricting who may contribute stops those).
//!
//! The noise is seeded: every figure here is reproducible and the test cannot fail by chance.

use chorus_messages::{Channel, Privatized, Report};
use chorus_server::analyze::Tally;
use chorus_server::ingest::validate::{embedding_norm_bound, validate};
use chorus_server::release::central::History;
use chorus_server::release::{build, ReleaseOptions};
use chorus_server::storage::ReleaseSummary;
use chorus_shared::codebook::kmeans::SplitMix;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::privacy::oracle::{local_hash, Oracle};
use chorus_shared::release::document::{Estimate, Release};
use chorus_shared::study::CompiledStudy;
use chorus_tests::{analyses_of, cached, compile_study, one_report_batch, write_sharegpt_sample};

const HONEST: usize = 3_000;
const TARGET_CATEGORY: &str = "law_and_finance";
const TARGET_CONCERN: &str = "5";

/// What an attack's fabricated report does.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// Every report claims the target category, otherwise noised as an honest device does.
    Category,
    /// Every report carries the concern channel (not a uniform pick of its pool) at level 5.
    ConcernInEveryReport,
    /// Reports keep the pool's uniform pick; those that carry concern claim level 5.
    ConcernUniformPool,
    /// Category seeds ground so that one bucket supports four categories at once.
    ChosenSeeds,
    /// Embeddings just inside the validation's norm bound, all in one direction.
    Embeddings,
}

struct Outcome {
    category: Option<f64>,
    concern: Option<f64>,
    flagged: Vec<String>,
}

#[test]
fn fabricated_reports_shift_an_open_study_and_the_checks_flag_what_departs_from_the_noise() {
    let study = compile_study(None);
    let dir = std::env::temp_dir().join(format!("chorus-red-team-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = dir.join("sharegpt.json");
    write_sharegpt_sample(&cached("corpus/sharegpt.json"), HONEST, &export);
    let analyses = analyses_of(&export);
    std::fs::remove_dir_all(&dir).ok();
    let mut noise = Noise::seeded(2026);
    let honest: Vec<Report> = analyses
        .iter()
        .map(|a| study.privacy.privatize(a, &study.category_ids(), &mut noise).unwrap())
        .collect();

    let baseline = release_of(&study, &honest, &[]);
    assert!(
        baseline.flagged.is_empty(),
        "honest reports flagged {:?}",
        baseline.flagged
    );
    eprintln!("attack                   F  category share (shift)  concern 5 share (shift)  flagged");
    let attacks = [
        Attack::Category,
        Attack::ConcernInEveryReport,
        Attack::ConcernUniformPool,
        Attack::ChosenSeeds,
        Attack::Embeddings,
    ];
    for attack in attacks {
        for f in [25, 50, 100, 200, 400] {
            let fake = fabricate(&study, &honest, attack, f);
            let outcome = release_of(&study, &honest, &fake);
            eprintln!(
                "{:<22} {f:>4}  {:<22}  {:<23}  {}",
                format!("{attack:?}"),
                shift(outcome.category, baseline.category),
                shift(outcome.concern, baseline.concern),
                if outcome.flagged.is_empty() {
                    "-".into()
                } else {
                    outcome.flagged.join(", ")
                }
            );
            let flagged = |prefix: &str| outcome.flagged.iter().any(|c| c.starts_with(prefix));
            match attack {
                Attack::ConcernInEveryReport if f >= 200 => assert!(flagged("pool facets"), "{attack:?} {f}"),
                Attack::ChosenSeeds if f >= 200 => assert!(flagged("supports category"), "{attack:?} {f}"),
                Attack::Embeddings if f >= 50 => assert!(flagged("embedding norms"), "{attack:?} {f}"),
                _ => {}
            }
        }
    }
    // The plain claim moves the published share and no check sees it.
    let fake = fabricate(&study, &honest, Attack::Category, 200);
    let outcome = release_of(&study, &honest, &fake);
    let moved = outcome.category.unwrap_or(0.0) - baseline.category.unwrap_or(0.0);
    assert!(
        moved > 0.05,
        "200 fabricated category reports moved the share by {moved:.3}"
    );
}

/// The release of the honest reports and the fabricated ones (each fabricated batch accepted by
/// the server's validation, as it would be at ingest).
fn release_of(study: &CompiledStudy, honest: &[Report], fake: &[Report]) -> Outcome {
    for (i, report) in fake.iter().enumerate() {
        let batch = one_report_batch(study, report.clone(), i);
        validate(&batch, study, None).unwrap_or_else(|e| panic!("a fabricated batch was refused: {e:?}"));
    }
    let reports: Vec<Report> = honest.iter().chain(fake).cloned().collect();
    let tally = Tally::of_reports(study, &reports, 20_790, 7);
    let summary = ReleaseSummary {
        id: format!("red-team-{}", fake.len()),
        study_id: study.id.clone(),
        created: String::new(),
    };
    let mut noise = Noise::seeded(99);
    let release = build(
        study,
        &tally,
        &summary,
        20_790,
        &ReleaseOptions::default(),
        &History::default(),
        &mut noise,
    )
    .unwrap();
    // An open study's release says so, and that it is not robust to what follows.
    assert_eq!(release.study.access, "open");
    assert!(release
        .study
        .who_contributed
        .contains("not robust to fabricated reports"));
    Outcome {
        category: published(&release, "category", TARGET_CATEGORY),
        concern: published(&release, "concern", TARGET_CONCERN),
        flagged: release
            .plausibility
            .checks
            .iter()
            .filter(|c| c.flagged)
            .map(|c| c.name.clone())
            .collect(),
    }
}

fn published(release: &Release, facet: &str, value: &str) -> Option<f64> {
    let cell = release.facets.get(facet)?.cells.iter().find(|c| c.value == value)?;
    match &cell.estimate {
        Estimate::Published(p) => Some(p.share),
        Estimate::Withheld(_) => None,
    }
}

fn shift(share: Option<f64>, baseline: Option<f64>) -> String {
    match share {
        None => "withheld".into(),
        Some(s) => format!("{s:.3} ({:+.3})", s - baseline.unwrap_or(0.0)),
    }
}

/// `f` fabricated reports: each starts as a copy of a random honest report (so it looks like
/// one) and is then changed as the attack says.
fn fabricate(study: &CompiledStudy, honest: &[Report], attack: Attack, f: usize) -> Vec<Report> {
    let mut rng = SplitMix(f as u64 * 31 + attack as u64);
    let category = study.privacy.channel(Channel::Category).unwrap();
    let concern = study.privacy.channel(Channel::Concern).unwrap();
    let target = category.labels.iter().position(|l| l == TARGET_CATEGORY).unwrap();
    let level5 = concern.labels.iter().position(|l| l == TARGET_CONCERN).unwrap();
    (0..f)
        .map(|_| {
            let mut report = honest[rng.below(honest.len())].clone();
            match attack {
                Attack::Category => {
                    report
                        .channels
                        .insert(Channel::Category, claim(&category.oracle, target, &mut rng));
                }
                Attack::ConcernInEveryReport => {
                    let pool = concern.pool.as_deref().unwrap();
                    for c in study.privacy.pools()[pool].iter() {
                        report.channels.remove(&c.channel);
                    }
                    report
                        .channels
                        .insert(Channel::Concern, claim(&concern.oracle, level5, &mut rng));
                }
                Attack::ConcernUniformPool => {
                    if report.channels.contains_key(&Channel::Concern) {
                        report
                            .channels
                            .insert(Channel::Concern, claim(&concern.oracle, level5, &mut rng));
                    }
                }
                Attack::ChosenSeeds => {
                    report
                        .channels
                        .insert(Channel::Category, chosen_seed(&category.oracle, target, &mut rng));
                }
                Attack::Embeddings => {
                    let e = study.privacy.embedding.as_ref().unwrap();
                    let bound = embedding_norm_bound(e.dimensions(), e.clip, e.sigma);
                    let mut v = vec![0f32; e.dimensions()];
                    v[0] = (bound * 0.99) as f32;
                    report.embedding = Some(v);
                }
            }
            report
        })
        .collect()
}

/// A report that always supports `value` and looks like the oracle's output.
fn claim(oracle: &Oracle, value: usize, rng: &mut SplitMix) -> Privatized {
    match *oracle {
        Oracle::Krr { .. } => Privatized::Value(value as u32),
        Oracle::Olh { buckets, .. } => {
            let seed = rng.next_u64();
            Privatized::Hashed {
                seed,
                bucket: local_hash(seed, value, buckets) as u32,
            }
        }
        Oracle::Oue { .. } => Privatized::Bits(vec![value as u32]),
    }
}

/// An OLH report whose seed was searched for so that its bucket supports `value` and the three
/// values after it (Cao, Jia and Gong's maximal-gain attack, here with four targets).
fn chosen_seed(oracle: &Oracle, value: usize, rng: &mut SplitMix) -> Privatized {
    let Oracle::Olh { domain, buckets, .. } = *oracle else {
        panic!("the default study's category is reported by OLH");
    };
    let targets: Vec<usize> = (0..4).map(|i| (value + i) % domain).collect();
    loop {
        let seed = rng.next_u64();
        let bucket = local_hash(seed, targets[0], buckets);
        if targets.iter().all(|&t| local_hash(seed, t, buckets) == bucket) {
            return Privatized::Hashed {
                seed,
                bucket: bucket as u32,
            };
        }
    }
}
