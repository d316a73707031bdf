//! A release of the shipped default study from a handful of reports (a study's first days): it
//! is built without a panic, withholds what it cannot publish reliably, and still shows no
//! impossible value and no number without a source.

use chorus_server::analyze::Collected;
use chorus_server::release::central::History;
use chorus_server::release::{build, ReleaseOptions};
use chorus_server::storage::ReleaseSummary;
use chorus_shared::codebook::kmeans::SplitMix;
use chorus_shared::privacy::noise::Noise;
use chorus_shared::Analysis;
use chorus_tests::compile_study;
use chorus_tests::release_fields::{impossible_values, numeric_sources};

#[test]
fn a_release_of_a_few_reports_withholds_and_never_panics() {
    let study = compile_study(None);
    let codebook = study.codebook.as_ref().unwrap();
    let paths = codebook.paths();
    let mut rng = SplitMix(5);
    let analyses: Vec<Analysis> = (0..40)
        .map(|i| {
            let path = &paths[rng.below(paths.len())];
            let mut probabilities: Vec<f32> = (0..study.categories.len()).map(|_| rng.unit() as f32).collect();
            let sum: f32 = probabilities.iter().sum();
            probabilities.iter_mut().for_each(|p| *p /= sum);
            Analysis {
                id: format!("c{i}"),
                language: ["en", "fr", "zh"][i % 3].into(),
                category: study.categories[i % study.categories.len()].id.clone(),
                concern: 1 + (i % 5) as u8,
                topic_path: Some(
                    path.iter()
                        .enumerate()
                        .map(|(l, &t)| codebook.levels[l][t].id.clone())
                        .collect(),
                ),
                turns: 1 + (i % 7) as u32,
                chars: 100,
                has_code: i % 2 == 0,
                embedding: Some((0..384).map(|_| rng.unit() as f32 - 0.5).collect()),
                category_probabilities: Some(probabilities),
            }
        })
        .collect();
    let categories = study.category_ids();
    for n in [1, 2, 3, 5, 10, 40] {
        let mut noise = Noise::seeded(n as u64);
        let mut collected = Collected::default();
        for (i, a) in analyses.iter().take(n).enumerate() {
            collected
                .reports
                .push(study.privacy.privatize(a, &categories, &mut noise).unwrap());
            collected.per_contributor.insert(format!("{i:032x}"), 1);
        }
        collected.per_day.insert(20_790, n as u64);
        let summary = ReleaseSummary {
            id: format!("small-{n}"),
            study_id: study.id.clone(),
            created: String::new(),
        };
        let release = build(
            &study,
            &collected,
            &summary,
            20_790,
            &ReleaseOptions::default(),
            &History::default(),
            &mut noise,
        )
        .unwrap_or_else(|e| panic!("{n} reports: {e}"));
        let published = release.publication.cells_published;
        let release = serde_json::to_value(&release).unwrap();
        assert_eq!(impossible_values(&release), Vec::<String>::new(), "{n} reports");
        if let Err(unknown) = numeric_sources(&release) {
            panic!("{n} reports: numbers of unknown source: {unknown:?}");
        }
        assert!(n >= 10 || published == 0, "{n} reports published {published} cells");
    }
}
