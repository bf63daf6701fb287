//! Envelope verification cost: full Ed25519 verification versus a hit in the per-core
//! verified-envelope cache (SHA-256 of the token + lookup + expiry re-check).

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::envelope::mint::{MintOptions, claims_from_file};
use portcullis::envelope::{EnvelopeCache, SigningKey, TrustedKeys, Verifier, jws};
use std::hint::black_box;

const SEED: &str = include_str!("../policies/envelopes/renewal-review.json");

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate(Some("bench".into())).unwrap();
    let now = 1_790_000_000;
    let m = serde_json::from_str::<serde_json::Value>(SEED)
        .unwrap()
        .as_object()
        .unwrap()
        .clone();
    let claims = claims_from_file(
        m,
        &MintOptions {
            now,
            ttl_secs: Some(900),
            ..Default::default()
        },
    )
    .unwrap();
    let token = jws::sign(&claims, &key);
    let mut keys = TrustedKeys::new();
    keys.add("bench", key.public_key());
    let verifier = Verifier::new(keys, "portcullis");

    let mut g = c.benchmark_group("envelope");
    g.bench_function("verify_uncached", |b| {
        b.iter(|| verifier.verify(black_box(&token), now).unwrap())
    });
    let mut cache = EnvelopeCache::new(4096);
    cache.verify(&verifier, &token, now).unwrap();
    g.bench_function("verify_cached", |b| {
        b.iter(|| cache.verify(&verifier, black_box(&token), now).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
