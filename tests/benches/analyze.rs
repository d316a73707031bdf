//! Native per-conversation analysis time (import excluded): facets, embedding, classifiers,
//! one conversation at a time on one thread, over the first 300 public ShareGPT conversations.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn analyze(c: &mut Criterion) {
    let analyzer = common::analyzer();
    let mix = common::mix();
    let mut group = c.benchmark_group("analyze");
    group.sample_size(10).throughput(Throughput::Elements(mix.len() as u64));
    group.bench_function("sharegpt_300_conversations", |b| {
        b.iter(|| {
            for conversation in &mix {
                std::hint::black_box(analyzer.analyze(conversation, false).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, analyze);
criterion_main!(benches);
