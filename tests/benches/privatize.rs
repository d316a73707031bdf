//! Privatization time per report with OpenDP's secure noise (the category drawn from the
//! classifier's probabilities and sent by k-RR, one pooled channel, the projection, clip and
//! Gaussian noise), next to the analysis of the same conversations, in one run.

mod common;

use chorus_shared::privacy::noise::Noise;
use criterion::{criterion_group, criterion_main, Criterion};

fn privatize(c: &mut Criterion) {
    let analyzer = common::analyzer();
    let study = analyzer.study();
    let categories = study.category_ids();
    let mix = common::mix();
    let analyses: Vec<_> = mix
        .iter()
        .take(50)
        .map(|conv| analyzer.analyze(conv, true).unwrap())
        .collect();
    let mut noise = Noise::Secure;
    let mut group = c.benchmark_group("per_conversation");
    let mut i = 0;
    group.bench_function("analyze", |b| {
        b.iter(|| {
            i = (i + 1) % analyses.len();
            std::hint::black_box(analyzer.analyze(&mix[i], true).unwrap())
        })
    });
    group.bench_function("privatize", |b| {
        b.iter(|| {
            i = (i + 1) % analyses.len();
            std::hint::black_box(study.privacy.privatize(&analyses[i], &categories, &mut noise).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, privatize);
criterion_main!(benches);
