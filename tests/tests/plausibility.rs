//! The plausibility checks of a release are calibrated for the shipped default study: over 300
//! populations of 2,000 honest reports (made-up analyses, each privatized with the study's own
//! plan), every check's p-value falls below 0.05 about as often as a p-value should, and the
//! release-level flag (each check at 0.001 divided by the number of checks) is almost never
//! raised.

use chorus_server::analyze::{plausibility, Tally, FALSE_ALARM_RATE};
use chorus_shared::privacy::noise::Noise;
use chorus_tests::{compile_study, synthetic_analyses};
use std::collections::BTreeMap;

const POPULATIONS: u64 = 300;

#[test]
fn honest_reports_pass_every_check_as_often_as_its_level_says() {
    let study = compile_study(None);
    let analyses = synthetic_analyses(&study, 2_000, 3);
    let mut below_005: BTreeMap<String, u32> = BTreeMap::new();
    let (mut releases_flagged, mut checks) = (0u32, 0usize);
    for population in 0..POPULATIONS {
        let mut noise = Noise::seeded(1_000 + population);
        let reports: Vec<_> = analyses
            .iter()
            .map(|a| study.privacy.privatize(a, &study.category_ids(), &mut noise).unwrap())
            .collect();
        let found = plausibility(&study, &Tally::of_reports(&study, &reports, 20_790, population));
        checks = found.checks.len();
        releases_flagged += u32::from(found.flagged);
        for check in &found.checks {
            assert!(
                (0.0..=1.0).contains(&check.p_value),
                "{}: p = {}",
                check.name,
                check.p_value
            );
            *below_005.entry(check.name.clone()).or_default() += u32::from(check.p_value < 0.05);
        }
    }
    eprintln!("{checks} checks; p < 0.05 in {POPULATIONS} honest populations: {below_005:?}");
    // The two pools, buckets and supports of each OLH channel (category, language, the two
    // finer topic levels), the embedding norms.
    assert_eq!(checks, 11, "{below_005:?}");
    for (name, count) in &below_005 {
        // A calibrated check falls below 0.05 in 15 of 300 populations (sd 3.8); a conservative
        // one (the norm test allows for the data's own norm) less often. 38 is six standard
        // deviations above: a calibrated check exceeds it by chance about once in 10⁹.
        assert!(
            *count <= 38,
            "{name}: p < 0.05 in {count} of {POPULATIONS} honest populations"
        );
    }
    let pooled: u32 = below_005.values().sum();
    // Pooled over the checks, a calibrated set gives 5% of its p-values below 0.05; at least 2%
    // (half of each check kind could be conservative, none should be blind).
    assert!(
        f64::from(pooled) >= 0.02 * (POPULATIONS as f64) * checks as f64,
        "{pooled} of {} p-values below 0.05: the checks are far too lenient",
        POPULATIONS as usize * checks
    );
    // The release flags honest reports with probability below FALSE_ALARM_RATE = 0.001: 0.3
    // expected flags in 300; more than 3 happens by chance with probability below 3·10⁻⁴.
    const { assert!(FALSE_ALARM_RATE <= 0.001) };
    assert!(releases_flagged <= 3, "{releases_flagged} honest releases flagged");
}
