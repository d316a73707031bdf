//! `chorus codebook build` on public conversations: a three-level hierarchy whose every topic
//! has a parent one level up, a name and an example from the public text, shares that add up,
//! the same codebook from the same corpus and seed, and leaves a device can assign.

use chorus_shared::codebook::Codebook;
use chorus_tests::{cached, chorus_bin, write_sharegpt_sample};
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
    std::fs::remove_dir_all(&dir).ok();
}
