//! The true category mix, on labelled public conversations the classifier never saw: a fifth of
//! the default study's uniformly sampled labelled examples is held out and a study compiled from
//! the rest (classifier, confusion matrix, nested validation). Populations of 3,000 held-out
//! conversations in shifted mixes then go through the shipped category channel (a category drawn
//! from the classifier's probabilities, OLH at the study's ε) and the server's correction.
//!
//! What must hold: the study's own validation decides whether the release calls the corrected mix
//! the true one, and the figures behind that decision are right on data it was not fitted on; the
//! corrected mix's 95% intervals cover the true mix of labels 93–99% of the time; the devices'
//! estimate widened by the validation's classifier-error band covers it at least 93% of the time.

use chorus_messages::{Channel, Privatized};
use chorus_server::analyze::debias_category;
use chorus_shared::codebook::kmeans::SplitMix;
use chorus_shared::facets::{replies_excerpt, reply_excerpt};
use chorus_shared::privacy::noise::Noise;
use chorus_shared::privacy::oracle::share_ci95;
use chorus_shared::study::{
    embed_training_set, example_text, fold_assignment, tuned_request, CompiledStudy, LabelledExample, TrainingSet,
};
use chorus_tests::{compile_study, default_study, embedder, workspace_root};

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut SplitMix) -> f64 {
    let u = rng.unit().max(f64::MIN_POSITIVE);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * rng.unit()).cos()
}

/// The default study compiled without its held-out fifth, and the held-out examples' labels and
/// classifier probabilities.
fn held_out() -> (CompiledStudy, Vec<usize>, Vec<Vec<f32>>) {
    // The first of the five folds `chorus study evaluate` holds out, so that every copy of a
    // request (as the classifier reads it) is on one side.
    let shipped = default_study();
    let taxonomy = shipped.categories.iter().map(|c| c.examples.len()).sum::<usize>();
    let folds = fold_assignment(&shipped, 5);
    let examples = &shipped.examples;
    let is_held_out = |i: usize| folds[taxonomy + i] == Some(0);
    let dir = workspace_root().join("studies/default");
    let temp = std::env::temp_dir().join(format!("chorus-debias-{}", std::process::id()));
    std::fs::create_dir_all(&temp).unwrap();
    for file in ["study.toml", "codebook.json"] {
        std::fs::copy(dir.join(file), temp.join(file)).unwrap();
    }
    let kept: Vec<String> = examples
        .iter()
        .enumerate()
        .filter(|(i, _)| !is_held_out(*i))
        .map(|(_, e)| serde_json::to_string(e).unwrap())
        .collect();
    std::fs::write(temp.join("examples.jsonl"), kept.join("\n")).unwrap();
    let study = compile_study(Some(&temp.join("study.toml")));
    std::fs::remove_dir_all(&temp).ok();
    let test: Vec<&LabelledExample> = (examples.iter().enumerate())
        .filter_map(|(i, e)| is_held_out(i).then_some(e))
        .collect();
    // Embedded as a device embeds a conversation: the request, and the reply's opening.
    let set = TrainingSet {
        texts: test.iter().map(|e| example_text(&e.text)).collect(),
        replies: test.iter().map(|e| e.reply.as_deref().map(reply_excerpt)).collect(),
        all_replies: test.iter().map(|e| e.replies.as_deref().map(replies_excerpt)).collect(),
        labels: Vec::new(),
        example: vec![None; test.len()],
    };
    let embedder = match &study.tuned_layers {
        // The category reads the study's tuned layers, as a device's does.
        Some(tuned) => embedder().with_tuned_layers(tuned).unwrap(),
        None => embedder(),
    };
    let (embedded, _) = embed_training_set(&embedder, &set, study.category_input, &[], |_, _| {}).unwrap();
    // With tuned layers, the request's tuned embedding before its pinned one and means.
    let requests: Vec<Vec<f32>> = (set.texts.iter().zip(&embedded.requests))
        .map(|(t, pinned)| match embedder.embed_tuned(&[t]).unwrap() {
            Some(mut both) => tuned_request(&both.remove(0).tuned, pinned),
            None => pinned.clone(),
        })
        .collect();
    let replies = embedded.replies;
    let labels = test
        .iter()
        .map(|e| study.categories.iter().position(|c| c.id == e.category).unwrap())
        .collect();
    let probabilities = (requests.iter().zip(&replies).enumerate())
        .map(|(i, (request, reply))| study.category_probabilities(request, reply.as_deref(), set.category_texts(i)))
        .collect();
    (study, labels, probabilities)
}

/// Coverage tallies of one kind of interval, with the share covered in each population.
#[derive(Default)]
struct Coverage {
    intervals: u64,
    covered: u64,
    per_population: Vec<f64>,
}

impl Coverage {
    fn add(&mut self, population: usize, (lo, hi): (f64, f64), truth: f64, cells: usize) {
        self.intervals += 1;
        let hit = lo <= truth && truth <= hi;
        self.covered += u64::from(hit);
        if self.per_population.len() <= population {
            self.per_population.resize(population + 1, 0.0);
        }
        self.per_population[population] += f64::from(u8::from(hit)) / cells as f64;
    }

    fn rate(&self) -> f64 {
        self.covered as f64 / self.intervals as f64
    }

    /// The standard error of the rate, from the spread between populations (which carries the
    /// correlation between the intervals of one population).
    fn standard_error(&self) -> f64 {
        let n = self.per_population.len() as f64;
        let mean = self.per_population.iter().sum::<f64>() / n;
        let variance = self.per_population.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (variance / n).sqrt()
    }
}

#[test]
fn the_true_mix_is_covered_as_often_as_the_release_says() {
    let (study, labels, probabilities) = held_out();
    // The correction loses to the devices' estimate at 3,000 reports and wins at 30,000 (the
    // validation's figures): each size is judged by what the release publishes there, on a core
    // of its own.
    std::thread::scope(|scope| {
        let runs = [(3000, 200), (30_000, 500)].map(|(size, populations)| {
            let (study, labels, probabilities) = (&study, &labels, &probabilities);
            scope.spawn(move || judge(study, labels, probabilities, size, populations))
        });
        for run in runs {
            run.join().unwrap();
        }
    });
}

fn judge(study: &CompiledStudy, labels: &[usize], probabilities: &[Vec<f32>], size: usize, populations: usize) {
    let k = study.categories.len();
    let validation = study
        .category_validation
        .clone()
        .expect("a study with labelled examples is validated");
    let confusion = study.category_confusion.clone().unwrap();
    let plan = study.privacy.channel(Channel::Category).unwrap();
    eprintln!(
        "validation over {} held-out mixes: mean TVD devices {:.3}, debiased {:.3}, classify-and-count {:.3}; the release publishes {}",
        validation.mixes,
        validation.tvd_devices,
        validation.tvd_debiased,
        validation.tvd_counted,
        if validation.debias_at(size as f64) { "the debiased mix" } else { "the devices' estimate with its band" }
    );
    let by_category: Vec<Vec<usize>> = (0..k)
        .map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect())
        .collect();
    let natural: Vec<f64> = by_category.iter().map(|m| m.len() as f64).collect();

    // Each population is a new shifted mix of held-out conversations with new noise. The
    // coverage rate's standard error, from the spread between populations (which carries the
    // correlation of one population's sixteen intervals), is printed below: 0.0022 for the
    // debiased intervals at 30,000 reports over 500 populations, whose coverage measured 0.968
    // (0.958, 0.969, 0.973, 0.967, 0.972 and 0.982 with earlier classifiers and folds: the
    // intervals carry the validation's error of the correction, which errs wide). That standard
    // error is the populations' alone: the study compiled for this test moves the rate by about a
    // point whenever its folds, examples or embeddings change (0.972 -> 0.982 when the folds began
    // to follow the scrubbed request; 0.968 once this test held out `fold_assignment`'s first fold
    // and requests were read to 64 tokens). The promise is at least 95%, so the lower bound
    // (0.93, 17σ away) is what a release's reader relies on; the upper one (0.99, 10σ away, where
    // a 95% interval would be about a third wider than it needs) only catches
    // intervals grown uselessly wide — a chance failure (the seeds are fixed, so only a change to
    // the code re-draws) below one in ten thousand. The devices' estimate widened by its band is
    // held to at least 0.93, where it measured 0.95–0.98.
    let mut rng = SplitMix(2026 + size as u64);
    let mut noise = Noise::seeded(7 + size as u64);
    let (mut debiased, mut banded) = (Coverage::default(), Coverage::default());
    let (mut tvd_debiased, mut tvd_devices) = (0.0, 0.0);
    for population in 0..populations {
        let weights: Vec<f64> = natural.iter().map(|w| w * gaussian(&mut rng).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut truth = vec![0f64; k];
        let mut reports: Vec<Privatized> = Vec::with_capacity(size);
        for _ in 0..size {
            let mut u = rng.unit() * total;
            let c = (0..k).find(|&c| {
                u -= weights[c];
                u < 0.0
            });
            let c = c.unwrap_or(k - 1);
            let item = by_category[c][rng.below(by_category[c].len())];
            truth[c] += 1.0 / size as f64;
            let drawn = noise.categorical(&probabilities[item]).unwrap();
            reports.push(plan.oracle.privatize(drawn, &mut noise).unwrap());
        }
        let values: Vec<&Privatized> = reports.iter().collect();
        let corrected = debias_category(
            plan,
            &values,
            &confusion,
            Some(&validation.debiased_rms_error),
            population as u64,
        );
        let devices = plan.estimate(values.iter().copied());
        for (c, &t) in truth.iter().enumerate() {
            debiased.add(population, corrected.ci95[c], t, k);
            let (lo, hi) = share_ci95(devices.shares[c], devices.standard_errors[c]);
            banded.add(population, (lo - validation.band[c], hi + validation.band[c]), t, k);
        }
        let tvd = |e: &[f64]| 0.5 * e.iter().zip(&truth).map(|(a, b)| (a - b).abs()).sum::<f64>();
        tvd_debiased += tvd(&corrected.shares) / populations as f64;
        tvd_devices += tvd(&devices.projected) / populations as f64;
    }
    eprintln!(
        "{populations} populations of {size}: debiased 95% intervals cover {:.3} (standard error {:.4}); the devices' estimate ± band covers {:.3} ({:.4}); mean TVD debiased {tvd_debiased:.3}, devices {tvd_devices:.3}",
        debiased.rate(),
        debiased.standard_error(),
        banded.rate(),
        banded.standard_error()
    );
    // The validation's verdict holds on these populations too (it was measured without noise).
    if validation.debias_at(size as f64) {
        assert!(
            tvd_debiased < tvd_devices,
            "the correction does not help here: {tvd_debiased} vs {tvd_devices}"
        );
        assert!(
            (0.93..=0.99).contains(&debiased.rate()),
            "debiased intervals cover {:.3}",
            debiased.rate()
        );
    }
    assert!(
        banded.rate() >= 0.93,
        "the devices' estimate ± band covers {:.3}",
        banded.rate()
    );
}
