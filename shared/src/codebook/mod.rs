//! The topic codebook: a multi-level hierarchy of topics (Clio-style) built from a *public*
//! corpus and published with a study, so that a device can name the topic of its own
//! conversation without anyone else seeing it. Leaves are spherical k-means clusters of public
//! request embeddings; each upper level clusters the level below (weighted by size); names are
//! c-TF-IDF keywords of the public requests in a topic and its most central public request.
//! Nothing in a codebook comes from contributors.

pub mod kmeans;
pub mod names;
mod recentre;

use kmeans::spherical_kmeans;
pub use recentre::recentre;
use serde::{Deserialize, Serialize};

pub const CODEBOOK_FORMAT: u32 = 1;
/// Longest central example kept, in characters.
const EXAMPLE_CHARS: usize = 160;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Codebook {
    pub format: u32,
    /// The model whose embeddings the centroids live in.
    pub model_sha256: String,
    /// How much of each public request was embedded (pieces, the embedder's `MAX_TOKENS` when it
    /// was built or [`recentre`]d): a device's embeddings are comparable with the centroids only
    /// when it reads as much. 0 in codebooks from before it was recorded.
    #[serde(default)]
    pub max_tokens: usize,
    /// The public corpus it was built from.
    pub source: String,
    /// `levels[0]` is the top of the hierarchy, the last level the leaves.
    pub levels: Vec<Vec<Topic>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    pub id: String,
    /// Index of the parent in the level above (none at the top).
    pub parent: Option<usize>,
    /// A name a person can read: c-TF-IDF keywords when built, a person's words once the codebook
    /// is reviewed (it is public data).
    pub name: String,
    /// One line on what the topic holds, written by a person who read its public requests (empty
    /// until then).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub keywords: Vec<String>,
    /// The public request nearest the centroid.
    pub example: String,
    /// Share of the public corpus in this topic.
    pub public_share: f64,
    /// Unit centroid in the embedding space.
    pub centroid: Vec<f32>,
}

/// Gives the codebook's topics the names and descriptions of `tsv`: one line per topic,
/// `id<TAB>name<TAB>description`, blank lines and `#` comments skipped. Every topic must be named,
/// once, and no unknown id may appear: a rebuilt codebook whose ids moved is caught here.
pub fn apply_names(codebook: &mut Codebook, tsv: &str) -> Result<(), String> {
    let mut names = std::collections::BTreeMap::new();
    for (number, line) in tsv.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let [id, name, description] = fields[..] else {
            return Err(format!(
                "line {}: expected id, name and description separated by tabs",
                number + 1
            ));
        };
        if name.is_empty() || names.insert(id, (name, description)).is_some() {
            return Err(format!("line {}: topic {id} has no name or is named twice", number + 1));
        }
    }
    for topic in codebook.levels.iter_mut().flatten() {
        let (name, description) = names
            .remove(topic.id.as_str())
            .ok_or_else(|| format!("topic {} has no name", topic.id))?;
        topic.name = name.to_owned();
        topic.description = description.to_owned();
    }
    match names.keys().next() {
        Some(id) => Err(format!("no topic {id} in the codebook")),
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodebookError {
    #[error("a codebook needs at least three levels of decreasing size (e.g. 48,12,4), not {0:?}")]
    Levels(Vec<usize>),
    #[error("{texts} texts but {embeddings} embeddings")]
    Mismatch { texts: usize, embeddings: usize },
    #[error("{0} public requests are too few for {1} leaves (at least five per leaf)")]
    TooFew(usize, usize),
    #[error("no public request is nearest topic {0} any more; build the codebook again")]
    EmptyTopic(String),
}

impl Codebook {
    pub fn leaves(&self) -> &[Topic] {
        self.levels.last().map_or(&[], Vec::as_slice)
    }

    /// The leaf whose centroid is most similar to a request embedding (what a device reports).
    pub fn leaf(&self, embedding: &[f32]) -> usize {
        self.nearest_leaves(embedding, 1)[0].0
    }

    /// The `n` leaves most similar to a unit vector, most similar first, with their cosines.
    pub fn nearest_leaves(&self, embedding: &[f32], n: usize) -> Vec<(usize, f32)> {
        let mut ranked: Vec<(usize, f32)> = self
            .leaves()
            .iter()
            .enumerate()
            .map(|(i, t)| (i, dot(&t.centroid, embedding)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(n.max(1));
        ranked
    }

    /// The ids of a leaf's topics at every level, top first.
    pub fn path_ids(&self, leaf: usize) -> Vec<String> {
        let mut ids = vec![self.leaves()[leaf].id.clone()];
        let mut here = leaf;
        for level in (1..self.levels.len()).rev() {
            here = self.levels[level][here]
                .parent
                .expect("below the top, every topic has a parent");
            ids.push(self.levels[level - 1][here].id.clone());
        }
        ids.reverse();
        ids
    }

    /// For each leaf, its topic index at every level (top first).
    pub fn paths(&self) -> Vec<Vec<usize>> {
        let depth = self.levels.len();
        (0..self.leaves().len())
            .map(|leaf| {
                let mut path = vec![leaf];
                for level in (1..depth).rev() {
                    let here = *path.last().expect("not empty");
                    path.push(
                        self.levels[level][here]
                            .parent
                            .expect("below the top, every topic has a parent"),
                    );
                }
                path.reverse();
                path
            })
            .collect()
    }
}

/// Where a codebook's embeddings come from: the model and how much of each request it read.
pub struct EmbeddedBy<'a> {
    pub model_sha256: &'a str,
    pub max_tokens: usize,
}

/// Builds a codebook from public request texts and their embeddings; `sizes` are the numbers
/// of topics per level from the leaves up (e.g. `[48, 12, 4]`).
pub fn build(
    texts: &[String],
    embeddings: &[Vec<f32>],
    sizes: &[usize],
    seed: u64,
    embedded_by: EmbeddedBy<'_>,
    source: &str,
) -> Result<Codebook, CodebookError> {
    if sizes.len() < 3 || sizes.windows(2).any(|w| w[0] <= w[1]) || sizes.last() < Some(&2) {
        return Err(CodebookError::Levels(sizes.to_vec()));
    }
    if texts.len() != embeddings.len() {
        return Err(CodebookError::Mismatch {
            texts: texts.len(),
            embeddings: embeddings.len(),
        });
    }
    if texts.len() < 5 * sizes[0] {
        return Err(CodebookError::TooFew(texts.len(), sizes[0]));
    }
    let levels = cluster_levels(embeddings, sizes, seed)
        .into_iter()
        .rev()
        .enumerate()
        .map(|(level, built)| name_level(level, built, texts, embeddings))
        .collect();
    Ok(Codebook {
        format: CODEBOOK_FORMAT,
        model_sha256: embedded_by.model_sha256.to_owned(),
        max_tokens: embedded_by.max_tokens,
        source: source.to_owned(),
        levels,
    })
}

/// The hierarchy from the leaves up: the leaves cluster the public requests, each level above
/// clusters the centroids below (weighted by their members).
fn cluster_levels(embeddings: &[Vec<f32>], sizes: &[usize], seed: u64) -> Vec<LevelBuild> {
    let (leaf_centroids, assignment) = spherical_kmeans(embeddings, &vec![1.0; embeddings.len()], sizes[0], seed);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); leaf_centroids.len()];
    for (i, &a) in assignment.iter().enumerate() {
        members[a].push(i);
    }
    let mut levels_up = vec![LevelBuild {
        centroids: leaf_centroids,
        members,
        parents: Vec::new(),
    }];
    for (depth, &size) in sizes.iter().enumerate().skip(1) {
        let below = levels_up.last_mut().expect("the leaves");
        let weights: Vec<f64> = below.members.iter().map(|m| m.len() as f64).collect();
        let (centroids, parent_of) =
            spherical_kmeans(&below.centroids, &weights, size, seed.wrapping_add(depth as u64));
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); centroids.len()];
        for (child, &p) in parent_of.iter().enumerate() {
            members[p].extend(&below.members[child]);
        }
        below.parents = parent_of.into_iter().map(Some).collect();
        levels_up.push(LevelBuild {
            centroids,
            members,
            parents: Vec::new(),
        });
    }
    levels_up
}

/// One level's topics (`level` 0 is the top): c-TF-IDF keywords, the public request nearest
/// each centroid as its example, and a name from the keywords.
fn name_level(level: usize, built: LevelBuild, texts: &[String], embeddings: &[Vec<f32>]) -> Vec<Topic> {
    let LevelBuild {
        centroids,
        members,
        parents,
    } = built;
    let classes: Vec<Vec<&str>> = members
        .iter()
        .map(|m| m.iter().map(|&i| texts[i].as_str()).collect())
        .collect();
    let keywords = names::class_keywords(&classes, 5);
    centroids
        .into_iter()
        .enumerate()
        .map(|(t, centroid)| {
            let central = members[t]
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    let (sa, sb) = (dot(&embeddings[a], &centroid), dot(&embeddings[b], &centroid));
                    sa.total_cmp(&sb).then(b.cmp(&a))
                })
                .expect("clusters are not empty");
            let example: String = texts[central].chars().take(EXAMPLE_CHARS).collect();
            let name = if keywords[t].is_empty() {
                example.chars().take(40).collect()
            } else {
                keywords[t].iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            };
            Topic {
                id: format!("t{}.{}", level + 1, t + 1),
                parent: if level == 0 {
                    None
                } else {
                    parents.get(t).copied().flatten()
                },
                name,
                description: String::new(),
                keywords: keywords[t].clone(),
                example,
                public_share: members[t].len() as f64 / texts.len() as f64,
                centroid,
            }
        })
        .collect()
}

/// One level while building: centroids, the public requests in each topic, each topic's parent.
struct LevelBuild {
    centroids: Vec<Vec<f32>>,
    members: Vec<Vec<usize>>,
    parents: Vec<Option<usize>>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod naming_tests {
    use super::{apply_names, Codebook};

    fn default_codebook() -> Codebook {
        serde_json::from_str(include_str!("../../../studies/default/codebook.json")).unwrap()
    }

    #[test]
    fn the_default_codebooks_topics_carry_the_names_a_person_wrote() {
        let shipped = default_codebook();
        let mut renamed = shipped.clone();
        apply_names(&mut renamed, include_str!("../../../studies/default/topic-names.tsv")).unwrap();
        assert_eq!(renamed, shipped, "codebook.json differs from topic-names.tsv");
        for topic in shipped.levels.iter().flatten() {
            assert!(!topic.description.is_empty(), "{} has no description", topic.id);
            assert_ne!(
                topic.name,
                topic.keywords[..3].join(", "),
                "{} is named by keywords",
                topic.id
            );
        }
    }

    #[test]
    fn every_topic_is_named_once_and_no_other() {
        let mut codebook = default_codebook();
        let names = include_str!("../../../studies/default/topic-names.tsv");
        let missing: String = names
            .lines()
            .filter(|l| !l.starts_with("t3.48"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            apply_names(&mut codebook, &missing).unwrap_err(),
            "topic t3.48 has no name"
        );
        let extra = format!("{names}t9.1\tNowhere\tA topic no codebook has.\n");
        assert_eq!(
            apply_names(&mut codebook, &extra).unwrap_err(),
            "no topic t9.1 in the codebook"
        );
        let twice = format!("{names}t1.1\tAgain\tNamed twice.\n");
        assert!(apply_names(&mut codebook, &twice).unwrap_err().contains("named twice"));
        assert!(apply_names(&mut codebook, "t1.1 no tabs\n")
            .unwrap_err()
            .contains("separated by tabs"));
    }
}
