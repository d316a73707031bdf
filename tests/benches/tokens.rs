//! What a contribution token costs (Privacy Pass publicly verifiable tokens, blind RSA 2048):
//! the device's request and finalization, the issuer's blind signature, and the server's
//! verification at ingest, each per token (a batch of the default study carries one).
//!
//! `cargo bench -p chorus-tests --bench tokens`

use chorus_shared::tokens::{challenge_digest, IssuerKey, TokenRequest};
use criterion::{criterion_group, criterion_main, Criterion};

fn tokens(c: &mut Criterion) {
    let issuer = IssuerKey::generate().unwrap();
    let key = issuer.public().clone();
    let challenge = challenge_digest("chorus-default", "v");
    let mut nonce = 0u8;
    let mut group = c.benchmark_group("per_token");
    group.bench_function("device_request", |b| {
        b.iter(|| {
            nonce = nonce.wrapping_add(1);
            std::hint::black_box(TokenRequest::new(&key, challenge, [nonce; 32]).unwrap())
        })
    });
    let request = TokenRequest::new(&key, challenge, [1; 32]).unwrap();
    let blinded = request.blinded().to_vec();
    group.bench_function("issuer_sign", |b| {
        b.iter(|| std::hint::black_box(issuer.issue(&blinded).unwrap()))
    });
    let signed = issuer.issue(&blinded).unwrap();
    group.bench_function("device_finalize", |b| {
        b.iter_batched(
            || TokenRequest::new(&key, challenge, [2; 32]).unwrap(),
            |r| {
                let s = issuer.issue(r.blinded()).unwrap();
                std::hint::black_box(r.finalize(&key, &s).unwrap())
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let token = request.finalize(&key, &signed).unwrap();
    group.bench_function("server_verify", |b| {
        b.iter(|| key.verify(std::hint::black_box(&token), &challenge).unwrap())
    });
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
