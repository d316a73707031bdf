//! Every interval a release of the shipped default study prints covers its truth as often as it
//! says, and the publication rule keeps phantom cells (true count below k) to fewer than one
//! release in twenty: `chorus simulate --releases 300` repeats the whole client → server path
//! (each of 3,000 public conversations privatized by its own device with the study's plan, the
//! server's release code deciding what is published) with fixed seeds, and holds every published
//! interval against the population's true value.

use chorus_tests::{cached, chorus_bin, write_sharegpt_sample};
use serde_json::Value;

const RELEASES: u64 = 300;

#[test]
fn published_intervals_cover_their_truth_and_phantoms_are_rare() {
    let dir = std::env::temp_dir().join(format!("chorus-coverage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let export = dir.join("sharegpt-3000.json");
    write_sharegpt_sample(&cached("corpus/sharegpt.json"), 3000, &export);
    let out = std::process::Command::new(chorus_bin())
        .args(["simulate", "--releases", &RELEASES.to_string(), "--seed", "2026"])
        .arg(&export)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let document: Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    eprintln!("{}", serde_json::to_string_pretty(&document).unwrap());

    let quantities = document["quantities"].as_object().unwrap();
    let (mut published, mut covered) = (0u64, 0u64);
    for (name, q) in quantities {
        let (n, c) = (q["published"].as_u64().unwrap(), q["covered"].as_u64().unwrap());
        // Each kind within four binomial standard deviations of 95% (the intervals of one
        // release are nearly independent: different channels, or cells of one estimate): a
        // chance failure about once in 15,000 per kind. Kinds with few published cells get a
        // wide band; the pooled rate below is the sharp test.
        if n >= 50 {
            let rate = c as f64 / n as f64;
            let bound = 4.0 * (0.95 * 0.05 / n as f64).sqrt();
            assert!(
                (rate - 0.95).abs() <= bound,
                "{name}: {c} of {n} intervals cover ({rate:.3}; 0.95 ± {bound:.3})"
            );
        }
        if name != "embedding_mean" {
            published += n;
            covered += c;
        }
    }
    // Every published cell together: about 3,000 intervals here, a standard deviation of 0.004,
    // so 93–97% is a ±5σ band.
    assert!(
        published >= 2000,
        "only {published} cells were published in {RELEASES} releases"
    );
    let rate = covered as f64 / published as f64;
    assert!((0.93..=0.97).contains(&rate), "published intervals cover {rate:.3}");
    // Holm's procedure holds the chance of any phantom in a release under 5%; the shipped study
    // must stay under one release in twenty (15 of 300; with a true rate of 5% the count would
    // exceed 15 about one time in two, with the rate measured here, near zero, never).
    let with_phantoms = document["releases_with_phantoms"].as_u64().unwrap();
    assert!(
        with_phantoms <= RELEASES / 20,
        "{with_phantoms} of {RELEASES} releases publish a phantom cell"
    );
}
