//! `chorus codebook build` on public conversations: a three-level hierarchy whose every topic
//! has a parent one level up, a name and an example from the public text, shares that add up,
//! the same codebook from the same corpus and seed, and leaves a device can assign; recorded at
//! the length this code reads a request to, which `chorus codebook recentre` gives back
//! unchanged, and which compiling a study checks.

use chorus_shared::codebook::Codebook;
use chorus_shared::embed::MAX_TOKENS;
use chorus_shared::study::{CompileError, CompiledStudy, TrainOptions};
use chorus_tests::{cached, chorus_bin, default_study, embedder, write_sharegpt_sample};
use std::process::Command;

#[test]
fn builds_a_deterministic_three_level_codebook_from_public_text() {
    let dir = std::env::temp_dir().join(format!("chorus-codebook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let corpus = dir.join("public.json");
    write_sharegpt_sample(&cached("corpus/sharegpt.json"), 400, &corpus);
    let build = |out: &str| {
        let status = Command::new(chorus_bin())
            .args(["codebook", "build", "--levels", "16,6,3", "--corpus"])
            .arg(&corpus)
            .arg("--out")
            .arg(dir.join(out))
            .status()
            .unwrap();
        assert!(status.success());
        let codebook: Codebook = serde_json::from_slice(&std::fs::read(dir.join(out)).unwrap()).unwrap();
        codebook
    };
    let codebook = build("a.json");
    assert_eq!(
        codebook,
        build("b.json"),
        "the same corpus and seed give the same codebook"
    );
    assert_eq!(codebook.levels.len(), 3);
    assert_eq!(codebook.levels[0].len(), 3);
    assert!(codebook.leaves().len() >= 12, "{} leaves", codebook.leaves().len());
    let public = std::fs::read_to_string(&corpus).unwrap();
    for (depth, level) in codebook.levels.iter().enumerate() {
        let total: f64 = level.iter().map(|t| t.public_share).sum();
        assert!((total - 1.0).abs() < 1e-9, "level {depth} shares sum to {total}");
        for topic in level {
            assert!(!topic.name.is_empty() && !topic.example.is_empty());
            // Names come from the public corpus.
            for keyword in &topic.keywords {
                assert!(public.to_lowercase().contains(keyword.as_str()), "{keyword}");
            }
            match (depth, topic.parent) {
                (0, None) => {}
                (d, Some(p)) if d > 0 => assert!(p < codebook.levels[d - 1].len()),
                other => panic!("bad parent {other:?}"),
            }
        }
    }
    // Every leaf reaches the top, and a leaf's own centroid is assigned to it.
    for (leaf, path) in codebook.paths().iter().enumerate() {
        assert_eq!(path.len(), 3);
        assert_eq!(path[2], leaf);
        assert_eq!(codebook.leaf(&codebook.leaves()[leaf].centroid), leaf);
    }
    assert_eq!(codebook.max_tokens, MAX_TOKENS);

    // Recentring on the requests it was built from, read as it read them, moves nothing.
    let recentre = |file: &str| {
        Command::new(chorus_bin())
            .args(["codebook", "recentre", "--corpus"])
            .arg(&corpus)
            .arg(dir.join(file))
            .output()
            .unwrap()
    };
    let output = recentre("b.json");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let recentred: Codebook = serde_json::from_slice(&std::fs::read(dir.join("b.json")).unwrap()).unwrap();
    for (built, again) in codebook.levels.iter().flatten().zip(recentred.levels.iter().flatten()) {
        let cosine: f32 = built.centroid.iter().zip(&again.centroid).map(|(a, b)| a * b).sum();
        assert!(cosine > 0.9999, "{} moved to a cosine of {cosine}", built.id);
        assert_eq!(
            (&built.id, built.parent, &built.name),
            (&again.id, again.parent, &again.name)
        );
        assert!(
            (built.public_share - again.public_share).abs() < 1e-9,
            "{}'s share",
            built.id
        );
    }
    assert_eq!(recentred.source, codebook.source);

    // Another model's centroids live in another space: recentring them is refused.
    let other_model = Codebook {
        model_sha256: "0".repeat(64),
        ..codebook.clone()
    };
    std::fs::write(dir.join("c.json"), serde_json::to_vec(&other_model).unwrap()).unwrap();
    let refused = recentre("c.json");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("build it again"));
    std::fs::remove_dir_all(&dir).ok();
}

/// A device finds its request's topic by comparing its embedding with the codebook's centroids,
/// so the shipped codebook's centroids come from requests read to the length this code reads,
/// and a codebook made at another length is refused by name before anything is trained.
#[test]
fn a_codebook_made_at_another_reading_length_is_refused_and_the_shipped_one_reads_as_devices_do() {
    let mut study = default_study();
    let codebook = study.codebook.as_mut().expect("the default study has a codebook");
    assert_eq!(
        codebook.max_tokens, MAX_TOKENS,
        "recentre studies/default/codebook.json"
    );
    codebook.max_tokens = 128;
    let refused = CompiledStudy::compile(&study, &embedder(), TrainOptions::default(), None, |_, _| {});
    match refused {
        Err(e @ CompileError::CodebookReadingLength { codebook: 128, .. }) => {
            assert!(e.to_string().contains("chorus codebook recentre"), "{e}");
        }
        other => panic!("a 128-token codebook was not refused: {:?}", other.err()),
    }
}
