//! One pass over the reports (the server's running sums) estimates exactly what the estimators
//! over a list of reports do, for the shipped default study: every channel, the corrected
//! category mix, the mean embedding, a cross-tab cell recomputed from its definition, and each
//! topic level as its channel's estimate.

use chorus_messages::{Channel, Report};
use chorus_server::analyze::{debias_category, Tally};
use chorus_shared::privacy::embedding::estimate_mean;
use chorus_shared::privacy::noise::Noise;
use chorus_tests::{compile_study, synthetic_analyses};

#[test]
fn running_sums_estimate_what_the_estimators_over_all_reports_do() {
    let study = compile_study(None);
    let mut noise = Noise::seeded(11);
    let reports: Vec<Report> = synthetic_analyses(&study, 3_000, 11)
        .iter()
        .map(|a| study.privacy.privatize(a, &study.category_ids(), &mut noise).unwrap())
        .collect();
    let tally = Tally::of_reports(&study, &reports, 20_790, 1);
    assert_eq!(tally.reports, 3_000);
    assert_eq!(tally.contributors(), 3_000);

    let values = |channel: Channel| reports.iter().filter_map(move |r| r.channels.get(&channel));
    for facet in tally.facets() {
        assert_eq!(
            facet.estimate,
            study
                .privacy
                .channel(facet.channel)
                .unwrap()
                .estimate(values(facet.channel)),
            "{:?}",
            facet.channel
        );
    }

    let plan = study.privacy.channel(Channel::Category).unwrap();
    let confusion = study.category_confusion.as_ref().unwrap();
    let rms = study
        .category_validation
        .as_ref()
        .map(|v| v.debiased_rms_error.as_slice());
    let category: Vec<_> = values(Channel::Category).collect();
    let direct = debias_category(plan, &category, confusion, rms, 5);
    let streamed = tally.debiased_category(&study, 5).unwrap();
    assert_eq!((streamed.shares, streamed.ci95), (direct.shares, direct.ci95));

    let mean = tally.embedding_mean().unwrap();
    assert_eq!(
        mean,
        estimate_mean(reports.iter().filter_map(|r| r.embedding.as_deref()))
    );
    let (sample, embeddings) = tally.embedding_sample();
    assert_eq!((sample.len(), embeddings), (3_000, 3_000));

    let tab = tally.crosstabs().into_iter().find(|t| t.rows == "category").unwrap();
    let language = study.privacy.channel(Channel::Language).unwrap();
    let both: Vec<_> = reports
        .iter()
        .filter_map(|r| Some((r.channels.get(&Channel::Category)?, r.channels.get(&Channel::Language)?)))
        .collect();
    assert_eq!(tab.n, both.len());
    let (i, j) = (2, 1);
    let cell = both
        .iter()
        .map(|(c, l)| plan.oracle.support_indicator(c, i) * language.oracle.support_indicator(l, j))
        .sum::<f64>()
        / both.len() as f64;
    assert!(
        (tab.shares[i][j] - cell).abs() < 1e-12,
        "{} vs {cell}",
        tab.shares[i][j]
    );

    // The default study reports every level of the codebook on a channel of its own: each
    // level's shares (means of indicators) are that channel's estimate (from support counts).
    let levels = tally.topic_levels();
    let facets = tally.facets();
    let depth = study.codebook.as_ref().unwrap().levels.len();
    assert_eq!(levels.len(), depth);
    for (l, level) in levels.iter().enumerate() {
        let channel = Channel::ALL
            .into_iter()
            .find(|c| c.topic_level(depth) == Some(l))
            .unwrap();
        let facet = facets.iter().find(|f| f.channel == channel).unwrap();
        assert_eq!(level.n, facet.estimate.n);
        for (a, b) in level.shares.iter().zip(&facet.estimate.shares) {
            assert!((a - b).abs() < 1e-9, "level {l}: {a} vs {b}");
        }
    }
}
