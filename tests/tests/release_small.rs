//! A release of the shipped default study from a handful of reports (a study's first days): it
//! is built without a panic, withholds what it cannot publish reliably, and still shows no
//! impossible value and no number without a source.

use chorus_server::analyze::Tally;
use chorus_server::release::central::History;
use chorus_server::release::{build, ReleaseOptions};
use chorus_server::storage::ReleaseSummary;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::release::Release;
use chorus_tests::release_fields::{impossible_values, numeric_sources};
use chorus_tests::{compile_study, synthetic_analyses};

#[test]
fn a_release_of_a_few_reports_withholds_and_never_panics() {
    let study = compile_study(None);
    let analyses = synthetic_analyses(&study, 40, 5);
    let categories = study.category_ids();
    for n in [1, 2, 3, 5, 10, 40] {
        let mut noise = Noise::seeded(n as u64);
        let reports: Vec<_> = analyses
            .iter()
            .take(n)
            .map(|a| study.privacy.privatize(a, &categories, &mut noise).unwrap())
            .collect();
        let tally = Tally::of_reports(&study, &reports, 20_790, n as u64);
        let summary = ReleaseSummary {
            id: format!("small-{n}"),
            study_id: study.id.clone(),
            created: String::new(),
        };
        let release = build(
            &study,
            &tally,
            &summary,
            20_790,
            &ReleaseOptions::default(),
            &History::default(),
            &mut noise,
        )
        .unwrap_or_else(|e| panic!("{n} reports: {e}"));
        let published = release.publication.cells_published;
        let release = serde_json::to_value(&release).unwrap();
        // What an auditor's typed reader makes of it: every number a number (JSON has no
        // infinity; serde writes one as null).
        if let Err(e) = serde_json::from_value::<Release>(release.clone()) {
            panic!("{n} reports: the document does not read back as a release: {e}");
        }
        assert_eq!(impossible_values(&release), Vec::<String>::new(), "{n} reports");
        if let Err(unknown) = numeric_sources(&release) {
            panic!("{n} reports: numbers of unknown source: {unknown:?}");
        }
        assert!(n >= 10 || published == 0, "{n} reports published {published} cells");
    }
}
