//! Whether a compiled study received from elsewhere fits together: every vector as long as the
//! embedding or classifier input it meets, every index in range. A device takes its compiled
//! study from the server; a malformed one (a server's fault or an operator's malice) must be
//! refused with an error, not panic the page's worker halfway through an export.

use super::classifier::{CategoryInput, Classifier};
use super::compiled::CompiledStudy;
use super::neighbours::Neighbours;
use crate::codebook::Codebook;

impl CompiledStudy {
    /// Checks the shapes the analysis relies on, for the pinned model's embeddings.
    pub fn check_shapes(&self) -> Result<(), String> {
        let dim = crate::embed::DIM;
        let classes = self.categories.len();
        if classes == 0 {
            return Err("the study has no categories".into());
        }
        // A device runs tuned layers for the category's request, and nothing else reads them.
        if self.tuned_layers.is_some() != (self.category_input == CategoryInput::TunedRequestAndLayers) {
            return Err("the category classifier reads tuned layers, but the study has none (or the reverse)".into());
        }
        if let Some(words) = &self.words {
            if words.idf.len() != words.len() || !words.vocabulary.is_sorted_by(|a, b| a < b) {
                return Err("its words are not a sorted vocabulary with one weight per word".into());
            }
        }
        check_classifier(&self.classifier, classes, self.category_width())?;
        if let Some(neighbours) = &self.neighbours {
            check_neighbours(neighbours, classes, self.category_input.compared())?;
        }
        self.check_finite()?;
        if let Some(confusion) = &self.category_confusion {
            if confusion.len() != classes || confusion.iter().any(|row| row.len() != classes) {
                return Err(format!("the category confusion is not {classes} × {classes}"));
            }
        }
        (self.privacy.check(classes, dim)).map_err(|e| format!("its privacy plan: {e}"))?;
        if self.concern_prototypes.iter().any(|p| p.embedding.len() != dim) {
            return Err(format!("a concern example's embedding does not have {dim} floats"));
        }
        match &self.codebook {
            Some(codebook) => check_codebook(codebook, dim),
            None => Ok(()),
        }
    }
}

impl CompiledStudy {
    /// Every weight the device's arithmetic reads is a finite number. One NaN among the
    /// classifier's weights or the words' idf makes every probability NaN, and the device would
    /// report the first category for every conversation: a wrong answer that no shape check sees.
    fn check_finite(&self) -> Result<(), String> {
        let classifier = match &self.classifier {
            Classifier::Linear {
                mean, scale, weights, ..
            } => finite(mean.iter().chain(scale).chain(weights)),
            Classifier::Prototypes { centroids } => finite(centroids.iter().flatten()),
        };
        let words = (self.words.iter()).all(|w| finite(w.idf.iter()));
        let neighbours = self.neighbours.iter().all(|n| {
            let projection = &n.projection;
            finite(projection.mean.iter().chain(projection.components.iter().flatten()))
        });
        let concern = finite(self.concern_prototypes.iter().flat_map(|p| &p.embedding));
        let confusion = (self.category_confusion.iter().flatten().flatten()).all(|v| v.is_finite() && *v >= 0.0);
        let topics = (self.codebook.iter())
            .flat_map(|c| c.levels.iter().flatten())
            .all(|topic| finite(topic.centroid.iter()));
        match [classifier, words, neighbours, concern, confusion, topics] {
            [true, true, true, true, true, true] => Ok(()),
            [false, ..] => Err("the category classifier has a weight that is not a finite number".into()),
            [_, false, ..] => Err("a word's weight is not a finite number".into()),
            [_, _, false, ..] => Err("the neighbours' projection has a value that is not a finite number".into()),
            [_, _, _, false, ..] => Err("a concern example's embedding is not finite".into()),
            [.., false, _] => Err("the category confusion has a sum that is negative or not finite".into()),
            [.., false] => Err("a topic's centroid is not finite".into()),
        }
    }
}

fn finite<'a>(mut values: impl Iterator<Item = &'a f32>) -> bool {
    values.all(|v| v.is_finite())
}

fn check_classifier(classifier: &Classifier, classes: usize, input: usize) -> Result<(), String> {
    let fits = match classifier {
        Classifier::Linear {
            mean,
            scale,
            weights,
            classes: c,
        } => *c == classes && mean.len() == input && scale.len() == input && weights.len() == classes * (input + 1),
        Classifier::Prototypes { centroids } => {
            centroids.len() == classes && centroids.iter().all(|c| c.len() == input)
        }
    };
    match fits {
        true => Ok(()),
        false => Err(format!(
            "the category classifier does not fit {classes} categories and inputs of {input} floats"
        )),
    }
}

fn check_neighbours(n: &Neighbours, classes: usize, input: usize) -> Result<(), String> {
    let components = &n.projection.components;
    if n.classes != classes || n.labels.iter().any(|&l| usize::from(l) >= classes) {
        return Err(format!("a labelled neighbour's category is not one of the {classes}"));
    }
    if components.is_empty() || n.projection.mean.len() != input || components.iter().any(|c| c.len() != input) {
        return Err(format!(
            "the neighbours' projection does not take inputs of {input} floats"
        ));
    }
    if n.points.len() != n.labels.len() * components.len() {
        return Err("the labelled neighbours' points and labels do not match".into());
    }
    let finite_positive = |v: f64| v.is_finite() && v > 0.0;
    if !(0.0..=1.0).contains(&n.weight) || !finite_positive(n.temperature) || !finite_positive(f64::from(n.scale)) {
        return Err("the neighbours' weight, temperature or scale is out of range".into());
    }
    Ok(())
}

fn check_codebook(codebook: &Codebook, dim: usize) -> Result<(), String> {
    if codebook.leaves().is_empty() {
        return Err("the codebook has no topics".into());
    }
    for (level, topics) in codebook.levels.iter().enumerate() {
        for topic in topics {
            if topic.centroid.len() != dim {
                return Err(format!("topic {}'s centroid does not have {dim} floats", topic.id));
            }
            let parent_fits = match (level, topic.parent) {
                (0, None) => true,
                (0, Some(_)) | (_, None) => false,
                (_, Some(p)) => p < codebook.levels[level - 1].len(),
            };
            if !parent_fits {
                return Err(format!("topic {} has no parent in the level above", topic.id));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::neighbours::Projection;
    use super::*;

    fn neighbours(labels: Vec<u16>, points: usize) -> Neighbours {
        Neighbours {
            projection: Projection {
                mean: vec![0.0; 4],
                components: vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0]],
            },
            points: vec![1; points],
            scale: 1.0,
            labels,
            classes: 2,
            weight: 0.4,
            temperature: 0.8,
        }
    }

    #[test]
    fn neighbours_out_of_shape_are_refused() {
        assert_eq!(check_neighbours(&neighbours(vec![0, 1], 4), 2, 4), Ok(()));
        assert!(
            check_neighbours(&neighbours(vec![0, 2], 4), 2, 4).is_err(),
            "label out of range"
        );
        assert!(
            check_neighbours(&neighbours(vec![0, 1], 3), 2, 4).is_err(),
            "points cut short"
        );
        assert!(
            check_neighbours(&neighbours(vec![0, 1], 4), 2, 8).is_err(),
            "input width"
        );
        let mut hot = neighbours(vec![0, 1], 4);
        hot.temperature = 0.0;
        assert!(check_neighbours(&hot, 2, 4).is_err(), "temperature");
    }

    #[test]
    fn a_classifier_must_fit_its_input() {
        let linear = |weights: usize| Classifier::Linear {
            mean: vec![0.0; 3],
            scale: vec![1.0; 3],
            weights: vec![0.0; weights],
            classes: 2,
        };
        assert_eq!(check_classifier(&linear(8), 2, 3), Ok(()));
        assert!(check_classifier(&linear(7), 2, 3).is_err());
        assert!(check_classifier(&linear(8), 3, 3).is_err());
    }
}
