//! Shift tracking: the server's estimate of the *true* category mix must follow real changes
//! in what people ask, although the on-device classifier is wrong a third of the time.
//!
//! A fifth of the default study's uniformly sampled labelled examples is held out; a study
//! compiled from the rest (classifier and cross-validated confusion matrix) classifies them;
//! they are then resampled into shifted mixes and the debiased estimate is compared with the
//! true mix, against plain classify-and-count (the mix of the most probable categories).

use chorus_shared::codebook::kmeans::SplitMix;
use chorus_shared::privacy::debias::{debias, debias_randomized_response, ITERATIONS};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::privacy::oracle::{Oracle, OracleChoice, Privatized};
use chorus_shared::study::{example_text, LabelledExample};
use chorus_tests::{compile_study, embedder, workspace_root};

fn fnv(text: &str) -> u64 {
    text.bytes()
        .fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

fn tvd(a: &[f64], b: &[f64]) -> f64 {
    0.5 * a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>()
}

#[test]
fn debiased_estimates_follow_shifted_mixes() {
    let dir = workspace_root().join("studies/default");
    let examples: Vec<LabelledExample> = std::fs::read_to_string(dir.join("examples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let held_out = |e: &LabelledExample| e.source.as_deref() == Some("sample") && fnv(&e.text).is_multiple_of(5);
    let temp = std::env::temp_dir().join(format!("chorus-debias-{}", std::process::id()));
    std::fs::create_dir_all(&temp).unwrap();
    for file in ["study.toml", "codebook.json"] {
        std::fs::copy(dir.join(file), temp.join(file)).unwrap();
    }
    let kept: Vec<String> = examples
        .iter()
        .filter(|e| !held_out(e))
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(temp.join("examples.jsonl"), kept.join("\n")).unwrap();
    let study = compile_study(Some(&temp.join("study.toml")));
    std::fs::remove_dir_all(&temp).ok();
    let confusion = study
        .category_confusion
        .clone()
        .expect("a study with labelled examples has a confusion matrix");

    let test: Vec<&LabelledExample> = examples.iter().filter(|e| held_out(e)).collect();
    let texts: Vec<String> = test.iter().map(|e| example_text(&e.text)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder().embed_many(&refs, |_| {}).unwrap();
    let k = study.categories.len();
    let truth: Vec<usize> = test
        .iter()
        .map(|e| study.categories.iter().position(|c| c.id == e.category).unwrap())
        .collect();
    let probabilities: Vec<Vec<f32>> = vectors.iter().map(|v| study.classifier.probabilities(v)).collect();
    let predicted: Vec<usize> = vectors.iter().map(|v| study.category(v)).collect();
    let by_category: Vec<Vec<usize>> = (0..k)
        .map(|c| (0..test.len()).filter(|&i| truth[i] == c).collect())
        .collect();

    let id = |name: &str| study.categories.iter().position(|c| c.id == name).unwrap();
    let natural: Vec<f64> = by_category.iter().map(|items| items.len() as f64).collect();
    let heavy = |boosted: &[&str], share: f64| -> Vec<f64> {
        let ids: Vec<usize> = boosted.iter().map(|b| id(b)).collect();
        let rest: f64 = (0..k).filter(|c| !ids.contains(c)).map(|c| natural[c]).sum();
        let boosted_total: f64 = ids.iter().map(|&c| natural[c]).sum();
        (0..k)
            .map(|c| {
                if ids.contains(&c) {
                    share * natural[c] / boosted_total
                } else {
                    (1.0 - share) * natural[c] / rest
                }
            })
            .collect()
    };
    let mixes = [
        ("natural", natural.clone()),
        ("coding-heavy", heavy(&["software_development", "data_and_ai"], 0.7)),
        (
            "writing-heavy",
            heavy(
                &["professional_writing", "creative_writing", "marketing_and_sales"],
                0.6,
            ),
        ),
        ("flattened", vec![1.0; k]),
        (
            "advice-heavy",
            heavy(
                &[
                    "health_and_wellbeing",
                    "law_and_finance",
                    "career_and_jobs",
                    "lifestyle_and_leisure",
                ],
                0.5,
            ),
        ),
    ];

    let draws = 4000;
    let mut rng = SplitMix(42);
    let oracle = Oracle::new(OracleChoice::Krr, k, 2.0);
    let (keep, lie) = oracle.support_probabilities();
    let mut noise = Noise::seeded(9);
    let (mut debiased_sum, mut counted_sum, mut private_sum) = (0.0, 0.0, 0.0);
    let mut shifted_gains = Vec::new();
    for (name, weights) in &mixes {
        let total: f64 = weights.iter().sum();
        let (mut true_mix, mut counted_mix, mut drawn_mix, mut reported) =
            (vec![0f64; k], vec![0f64; k], vec![0f64; k], vec![0f64; k]);
        for _ in 0..draws {
            // Pick a category by the mix's weights, then one of its held-out examples.
            let mut u = rng.unit() * total;
            let c = (0..k)
                .find(|&c| {
                    u -= weights[c];
                    u < 0.0
                })
                .unwrap_or(k - 1);
            let item = by_category[c][rng.below(by_category[c].len())];
            true_mix[truth[item]] += 1.0 / draws as f64;
            counted_mix[predicted[item]] += 1.0 / draws as f64;
            // What a device reports: a category drawn from the classifier's probabilities.
            let drawn = noise.categorical(&probabilities[item]).unwrap();
            drawn_mix[drawn] += 1.0 / draws as f64;
            if let Privatized::Value(v) = oracle.privatize(drawn, &mut noise).unwrap() {
                reported[v as usize] += 1.0 / draws as f64;
            }
        }
        let debiased = debias(&drawn_mix, &confusion, ITERATIONS);
        let private = debias_randomized_response(&reported, keep, lie, &confusion, ITERATIONS);
        let (d, c, p) = (
            1.0 - tvd(&debiased, &true_mix),
            1.0 - tvd(&counted_mix, &true_mix),
            1.0 - tvd(&private, &true_mix),
        );
        eprintln!(
            "{name:>14}: 1−TVD debiased {d:.3}, classify-and-count {c:.3}; at ε = 2 through k-RR: debiased {p:.3}"
        );
        if ["writing-heavy", "flattened", "advice-heavy"].contains(name) {
            shifted_gains.push((name, d - c));
        }
        debiased_sum += d;
        counted_sum += c;
        private_sum += p;
    }
    let n = mixes.len() as f64;
    let (debiased_mean, counted_mean) = (debiased_sum / n, counted_sum / n);
    eprintln!(
        "mean 1−TVD: debiased {debiased_mean:.3}, classify-and-count {counted_mean:.3}, debiased at ε = 2 {:.3}",
        private_sum / n
    );
    assert!(
        debiased_mean >= 0.85,
        "debiased estimates do not follow the mix: mean 1−TVD {debiased_mean:.3}"
    );
    assert!(
        counted_mean < debiased_mean,
        "classify-and-count {counted_mean:.3} does as well as debiasing"
    );
    // Where the mix moves away from the one the classifier learnt on, counting falls behind.
    for (name, gain) in shifted_gains {
        assert!(
            gain >= 0.03,
            "{name}: debiasing gains only {gain:.3} over classify-and-count"
        );
    }
}
