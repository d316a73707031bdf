//! Recentring a codebook on the public requests as this code embeds them, when the embedding
//! of a request changes (it is read to another length) but its topics should not: the topics'
//! ids, parents, names and descriptions stay, so the names a person wrote keep describing them;
//! their centroids, shares, keywords and examples become those of their public requests
//! embedded anew. A device finds its topic in the space its own embeddings live in.

use super::kmeans::{nearest, normalised};
use super::{name_level, Codebook, CodebookError, LevelBuild};

/// `codebook` recentred on `embeddings` of the public requests `texts` (the corpus it was built
/// from, embedded by this code, read to `max_tokens` pieces): the spherical k-means that built
/// its leaves, run again from where they stood until no request changes leaf (each request
/// joins the leaf nearest it, a leaf's centroid is its members' mean at unit length), so that
/// every request is in the leaf a device would find for it; each topic above is the mean of its
/// children's centroids weighted by their members, as [`super::build`] weighs them, and holds
/// its children's members.
/// A topic that no request is nearest is an error: build the codebook again.
pub fn recentre(
    codebook: &Codebook,
    texts: &[String],
    embeddings: &[Vec<f32>],
    max_tokens: usize,
) -> Result<Codebook, CodebookError> {
    if texts.len() != embeddings.len() {
        return Err(CodebookError::Mismatch {
            texts: texts.len(),
            embeddings: embeddings.len(),
        });
    }
    let (mut centroids, mut members) = leaves_recentred(codebook, embeddings);
    let mut built = Vec::with_capacity(codebook.levels.len());
    for depth in (0..codebook.levels.len()).rev() {
        let level = &codebook.levels[depth];
        if let Some(empty) = members.iter().position(Vec::is_empty) {
            return Err(CodebookError::EmptyTopic(level[empty].id.clone()));
        }
        let parents: Vec<Option<usize>> = level.iter().map(|t| t.parent).collect();
        let above = depth.checked_sub(1).map_or(0, |d| codebook.levels[d].len());
        let (mut members_above, mut weighted_above) = (vec![Vec::new(); above], vec![Vec::new(); above]);
        for (t, parent) in parents.iter().enumerate() {
            if let Some(p) = *parent {
                members_above[p].extend(&members[t]);
                weighted_above[p].push((t, members[t].len() as f32));
            }
        }
        let centroids_above = (weighted_above.iter())
            .map(|children| unit_sum(children.iter().map(|&(t, w)| (&centroids[t][..], w))))
            .collect();
        built.push(LevelBuild {
            centroids: std::mem::replace(&mut centroids, centroids_above),
            members: std::mem::replace(&mut members, members_above),
            parents,
        });
    }
    let levels = (built.into_iter().rev().enumerate())
        .map(|(depth, level)| {
            let fresh = name_level(depth, level, texts, embeddings);
            (fresh.into_iter().zip(&codebook.levels[depth]))
                .map(|(fresh, old)| super::Topic {
                    id: old.id.clone(),
                    parent: old.parent,
                    name: old.name.clone(),
                    description: old.description.clone(),
                    ..fresh
                })
                .collect()
        })
        .collect();
    Ok(Codebook {
        max_tokens,
        levels,
        ..codebook.clone()
    })
}

/// The leaves' centroids and members once Lloyd's iterations from the codebook's centroids
/// settle (at most [`ITERATIONS`], as many as [`super::kmeans::spherical_kmeans`] runs).
fn leaves_recentred(codebook: &Codebook, embeddings: &[Vec<f32>]) -> (Vec<Vec<f32>>, Vec<Vec<usize>>) {
    let mut centroids: Vec<Vec<f32>> = codebook.leaves().iter().map(|t| t.centroid.clone()).collect();
    let mut assignment: Vec<Option<usize>> = vec![None; embeddings.len()];
    let mut members = vec![Vec::new(); centroids.len()];
    for _ in 0..ITERATIONS {
        let mut changed = false;
        for (a, e) in assignment.iter_mut().zip(embeddings) {
            let nearest = Some(nearest(&centroids, e));
            changed |= *a != nearest;
            *a = nearest;
        }
        if !changed {
            break;
        }
        members = vec![Vec::new(); centroids.len()];
        for (i, a) in assignment.iter().enumerate() {
            members[a.expect("assigned above")].push(i);
        }
        for (c, m) in centroids.iter_mut().zip(&members) {
            if !m.is_empty() {
                *c = unit_sum(m.iter().map(|&i| (&embeddings[i][..], 1.0)));
            }
        }
    }
    (centroids, members)
}

const ITERATIONS: usize = 50;

/// The weighted sum of unit vectors, scaled to unit length.
fn unit_sum<'a>(vectors: impl Iterator<Item = (&'a [f32], f32)>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    for (v, w) in vectors {
        sum.resize(v.len(), 0.0);
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += w * x);
    }
    normalised(sum)
}

#[cfg(test)]
mod tests {
    use super::super::{build, EmbeddedBy};
    use super::*;

    const BY: EmbeddedBy<'static> = EmbeddedBy {
        model_sha256: "model",
        max_tokens: 128,
    };

    /// Six tight groups of points on the unit circle, 1.2 radians apart, turned by `shift`.
    fn points(shift: f32) -> (Vec<String>, Vec<Vec<f32>>) {
        let mut texts = Vec::new();
        let mut embeddings = Vec::new();
        for (group, angle) in [0.0f32, 1.2, 2.4, 3.6, 4.8, 6.0].iter().enumerate() {
            for j in 0..8 {
                let a = angle + shift + 0.01 * j as f32;
                texts.push(format!("group{group} word{j} common"));
                embeddings.push(vec![a.cos(), a.sin()]);
            }
        }
        (texts, embeddings)
    }

    #[test]
    fn recentring_keeps_every_topic_and_name_and_moves_centroids_to_the_new_embeddings() {
        let (texts, embeddings) = points(0.0);
        let mut codebook = build(&texts, &embeddings, &[6, 3, 2], 7, BY, "test").unwrap();
        codebook.levels[0][0].name = "Named by a person".into();
        let (_, moved) = points(0.05);
        let recentred = recentre(&codebook, &texts, &moved, 64).unwrap();
        assert_eq!(recentred.max_tokens, 64);
        for (old, new) in codebook.levels.iter().flatten().zip(recentred.levels.iter().flatten()) {
            assert_eq!((&old.id, old.parent, &old.name), (&new.id, new.parent, &new.name));
            let cosine: f32 = old.centroid.iter().zip(&new.centroid).map(|(a, b)| a * b).sum();
            assert!(
                cosine < 0.9995 && cosine > 0.99,
                "{} moved by a cosine of {cosine}",
                old.id
            );
        }
        for level in &recentred.levels {
            assert!((level.iter().map(|t| t.public_share).sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let again = recentre(&codebook, &texts, &embeddings, 128).unwrap();
        for (old, new) in codebook.levels.iter().flatten().zip(again.levels.iter().flatten()) {
            let cosine: f32 = old.centroid.iter().zip(&new.centroid).map(|(a, b)| a * b).sum();
            assert!(cosine > 0.99999, "the built embeddings give back {}'s centroid", old.id);
        }
    }

    #[test]
    fn a_topic_left_without_requests_is_an_error() {
        let (texts, embeddings) = points(0.0);
        let codebook = build(&texts, &embeddings, &[6, 3, 2], 7, BY, "test").unwrap();
        let everyone_in_one_place = vec![vec![1.0, 0.0]; texts.len()];
        let err = recentre(&codebook, &texts, &everyone_in_one_place, 64).unwrap_err();
        assert!(matches!(err, CodebookError::EmptyTopic(_)), "{err}");
    }
}
