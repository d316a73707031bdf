//! Whether the default study's codebook describes the public corpus as a device reads it: each
//! public request embedded as a device embeds its own (the request text, read to `MAX_TOKENS`),
//! given the leaf a device would find, and then each leaf's centroid compared with the mean of
//! its requests and its published public share with the share of requests a device finds in it.
//! Both agree exactly after `chorus codebook recentre` (k-means settled at this reading length).
//!
//! ```text
//! cargo run --release -p chorus-tests --example codebook_shares [CODEBOOK]   # about 4 minutes on two cores
//! ```
//! (CODEBOOK: another codebook file in place of the default study's.)

use chorus_shared::codebook::Codebook;
use chorus_shared::facets::request_text;
use chorus_shared::import::read_export;
use chorus_tests::{cached, embedder, workspace_root};

fn main() {
    let path =
        (std::env::args().nth(1)).map_or_else(|| workspace_root().join("studies/default/codebook.json"), Into::into);
    let codebook: Codebook = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let corpus = std::fs::File::open(cached("corpus/sharegpt.json")).unwrap();
    let mut texts = Vec::new();
    read_export(corpus, "sharegpt.json", &mut |c| texts.push(request_text(&c))).unwrap();
    texts.retain(|t| !t.trim().is_empty());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embeddings = embedder().embed_many(&refs, |_| {}).unwrap();
    let leaves = codebook.leaves();
    let (mut sums, mut counts) = (
        vec![vec![0f32; leaves[0].centroid.len()]; leaves.len()],
        vec![0usize; leaves.len()],
    );
    for e in &embeddings {
        let leaf = codebook.leaf(e);
        counts[leaf] += 1;
        sums[leaf].iter_mut().zip(e).for_each(|(s, x)| *s += x);
    }
    let (mut least_cosine, mut largest_gap) = (1f32, 0f64);
    for ((topic, sum), count) in leaves.iter().zip(&sums).zip(&counts) {
        // An empty leaf has no mean to compare with (its cosine would be NaN, which `min` drops).
        assert!(*count > 0, "no public request falls in leaf {}", topic.id);
        let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
        least_cosine = least_cosine.min(sum.iter().zip(&topic.centroid).map(|(s, c)| s / norm * c).sum());
        largest_gap = largest_gap.max((*count as f64 / embeddings.len() as f64 - topic.public_share).abs());
    }
    println!(
        "{} public requests read to {} tokens (the codebook records {}): least cosine of a leaf's centroid to its requests' mean {least_cosine:.6}; largest gap between a leaf's public share and the share a device finds {largest_gap:.6}",
        embeddings.len(),
        chorus_shared::embed::MAX_TOKENS,
        codebook.max_tokens
    );
}
