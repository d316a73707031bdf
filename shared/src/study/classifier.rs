//! The category classifier: a multinomial logistic regression on the embedding, trained
//! deterministically from the study's labelled examples; or, for a study without labelled
//! examples, the nearest category prototype (the mean embedding of its name, description and
//! examples).

use super::design::Design;
use crate::embed::{DIM, POOLED_LAYERS};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Classifier {
    /// Softmax of `weights · standardise(x)`; `weights` holds one row of `dim + 1` values per
    /// class, the last one the bias.
    Linear {
        mean: Vec<f32>,
        scale: Vec<f32>,
        weights: Vec<f32>,
        classes: usize,
    },
    /// Cosine similarity to one unit-length centroid per class.
    Prototypes { centroids: Vec<Vec<f32>> },
}

/// What the category classifier reads about a conversation.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CategoryInput {
    /// The request text's embedding.
    #[default]
    Request,
    /// The request's embedding followed by the embedding of the first reply's opening (the
    /// request's again when there is no reply).
    RequestAndReply,
    /// As [`CategoryInput::RequestAndReply`], followed by the request's and then the reply's
    /// means of the pinned layers' hidden states ([`crate::embed::POOLED_LAYERS`]).
    RequestAndReplyLayers,
    /// The request's embedding through a study's tuned upper layers, the reply's (pinned)
    /// embedding, then the request's pinned embedding and the two texts' means as
    /// [`CategoryInput::RequestAndReplyLayers`] has them. The tuned layers run for the request
    /// alone: a device runs the pinned upper layers for it anyway (topics, concern, the
    /// embedding channel), and the reply's tuned embedding added nothing measurable (on fold 0
    /// of the default study, 1,846 held out: 0.740 with it and 0.740 without, against 0.729
    /// with no tuned layers; `bench/classifier/README.md`).
    TunedRequestAndLayers,
}

impl CategoryInput {
    /// The classifier's input for a conversation with these embeddings: for the layered input,
    /// each text's [`crate::embed::Embedder::embed_layers`] (its embedding, then its means); for
    /// the tuned one, the request as [`tuned_request`] lays it out. Without a reply, the
    /// request's (pinned) embedding and means stand for the reply's.
    pub fn features(self, request: &[f32], reply: Option<&[f32]>) -> Vec<f32> {
        match self {
            CategoryInput::Request => request.to_vec(),
            CategoryInput::RequestAndReply => [request, reply.unwrap_or(request)].concat(),
            CategoryInput::RequestAndReplyLayers => {
                let (request, request_means) = embedding_and_means(request);
                let (reply, reply_means) = reply.map_or((request, request_means), embedding_and_means);
                [request, reply, request_means, reply_means].concat()
            }
            CategoryInput::TunedRequestAndLayers => {
                // An embedding alone (a cluster's centroid) stands for both the tuned and the
                // pinned request.
                let (tuned, pinned) = embedding_and_means(request);
                let (pinned, pinned_means) = if pinned.is_empty() {
                    (tuned, pinned)
                } else {
                    embedding_and_means(pinned)
                };
                let (reply, reply_means) = reply.map_or((pinned, pinned_means), embedding_and_means);
                [tuned, reply, pinned, pinned_means, reply_means].concat()
            }
        }
    }

    /// The input that reads the same texts through the pinned layers alone.
    pub fn pinned(self) -> CategoryInput {
        match self {
            CategoryInput::TunedRequestAndLayers => CategoryInput::RequestAndReplyLayers,
            other => other,
        }
    }

    /// Whether each text is embedded with its layers' means ([`crate::embed::Embedder::embed_layers`]).
    pub fn layered(self) -> bool {
        matches!(
            self,
            CategoryInput::RequestAndReplyLayers | CategoryInput::TunedRequestAndLayers
        )
    }

    /// The length of the classifier's input.
    pub fn width(self) -> usize {
        match self {
            CategoryInput::Request => DIM,
            CategoryInput::RequestAndReply => 2 * DIM,
            CategoryInput::RequestAndReplyLayers => 2 * DIM * (1 + POOLED_LAYERS.len()),
            CategoryInput::TunedRequestAndLayers => DIM + 2 * DIM * (1 + POOLED_LAYERS.len()),
        }
    }

    /// How many of the input's first floats the labelled neighbours compare: the embeddings
    /// alone (with tuned layers, the request's tuned one and the reply's: on fold 0 of the
    /// default study the vote there scored 0.740, against 0.736 over the pinned two). The
    /// layers' means would add nothing to the vote (measured on the default study) and make the
    /// projection shipped to devices four times larger.
    pub fn compared(self) -> usize {
        match self {
            CategoryInput::Request => DIM,
            _ => 2 * DIM,
        }
    }
}

/// A layered text's embedding and its layers' means (none for an embedding alone).
fn embedding_and_means(v: &[f32]) -> (&[f32], &[f32]) {
    v.split_at(DIM.min(v.len()))
}

/// The request as [`CategoryInput::TunedRequestAndLayers`] reads it: its embedding through the
/// study's tuned layers, then its pinned embedding and means
/// ([`crate::embed::Embedder::embed_layers`]).
pub fn tuned_request(tuned: &[f32], pinned: &[f32]) -> Vec<f32> {
    [tuned, pinned].concat()
}

/// Settings of the logistic regression. The defaults were chosen by cross-validation on the
/// default study's labelled examples (`chorus study evaluate`).
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    /// L2 penalty on the weights (not on the biases).
    pub l2: f64,
    /// Full-batch accelerated gradient steps.
    pub iterations: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            l2: 0.1,
            iterations: 300,
        }
    }
}

/// How sharply prototype similarities turn into probabilities.
const PROTOTYPE_TEMPERATURE: f32 = 20.0;

impl Classifier {
    pub fn classes(&self) -> usize {
        match self {
            Classifier::Linear { classes, .. } => *classes,
            Classifier::Prototypes { centroids } => centroids.len(),
        }
    }

    /// Class probabilities for the embedding `x`.
    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        softmax(&self.scores(x)).into_iter().map(|p| p as f32).collect()
    }

    /// The scores the probabilities are the softmax of.
    pub fn scores(&self, x: &[f32]) -> Vec<f64> {
        match self {
            Classifier::Linear {
                mean,
                scale,
                weights,
                classes,
            } => {
                let z: Vec<f64> = standardise(x, mean, scale);
                let dim = z.len() + 1;
                (0..*classes)
                    .map(|c| {
                        let row = &weights[c * dim..(c + 1) * dim];
                        row[..dim - 1].iter().zip(&z).map(|(w, v)| *w as f64 * v).sum::<f64>() + row[dim - 1] as f64
                    })
                    .collect()
            }
            Classifier::Prototypes { centroids } => centroids
                .iter()
                .map(|c| (crate::embed::cosine(c, x) * PROTOTYPE_TEMPERATURE) as f64)
                .collect(),
        }
    }

    /// The same classifier with its scores divided by `temperature` (above 1 softens the
    /// probabilities, below 1 sharpens them; the most probable class stays the same).
    pub fn with_temperature(mut self, temperature: f64) -> Classifier {
        if let Classifier::Linear { weights, .. } = &mut self {
            weights
                .iter_mut()
                .for_each(|w| *w = (f64::from(*w) / temperature) as f32);
        }
        self
    }

    /// The most probable class (the lowest index on a tie).
    pub fn predict(&self, x: &[f32]) -> usize {
        argmax(&self.probabilities(x))
    }

    /// Nearest-prototype classifier: one centroid per class from the vectors labelled with it.
    pub fn prototypes(xs: &[Vec<f32>], ys: &[usize], classes: usize) -> Classifier {
        let dim = xs.first().map_or(0, Vec::len);
        let mut centroids = vec![vec![0f32; dim]; classes];
        for (x, &y) in xs.iter().zip(ys) {
            centroids[y].iter_mut().zip(x).for_each(|(c, v)| *c += v);
        }
        centroids.iter_mut().for_each(|c| crate::embed::normalize(c));
        Classifier::Prototypes { centroids }
    }

    /// Trains the logistic regression by Nesterov-accelerated gradient descent on the mean
    /// cross-entropy plus the L2 penalty, from zero weights with a step size of 1/L (L bounds
    /// the gradient's Lipschitz constant): the same inputs always give the same weights.
    pub fn train_linear(xs: &[Vec<f32>], ys: &[usize], classes: usize, options: TrainOptions) -> Classifier {
        assert_eq!(xs.len(), ys.len());
        assert!(!xs.is_empty(), "training needs examples");
        let (mean, scale) = moments(xs);
        let design = Design::new(xs, &mean, &scale);
        let dim = design.width();
        let lipschitz = 0.5 * design.top_eigenvalue() + options.l2;
        let step = 1.0 / lipschitz;

        let mut w = vec![0f64; classes * dim];
        let mut previous = w.clone();
        let mut lookahead = w.clone();
        let mut grad = vec![0f64; classes * dim];
        for t in 0..options.iterations {
            gradient(&design, ys, classes, &lookahead, options.l2, &mut grad);
            let momentum = t as f64 / (t as f64 + 3.0);
            for j in 0..w.len() {
                let next = lookahead[j] - step * grad[j];
                lookahead[j] = next + momentum * (next - previous[j]);
                previous[j] = next;
                w[j] = next;
            }
        }
        Classifier::Linear {
            mean,
            scale,
            weights: design.in_input_order(&w, classes),
            classes,
        }
    }
}

fn standardise(x: &[f32], mean: &[f32], scale: &[f32]) -> Vec<f64> {
    x.iter()
        .zip(mean)
        .zip(scale)
        .map(|((v, m), s)| (*v as f64 - *m as f64) / *s as f64)
        .collect()
}

fn moments(xs: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let n = xs.len() as f64;
    let d = xs[0].len();
    let mut mean = vec![0f64; d];
    for x in xs {
        mean.iter_mut().zip(x).for_each(|(m, v)| *m += *v as f64 / n);
    }
    let mut var = vec![0f64; d];
    for x in xs {
        var.iter_mut()
            .zip(x)
            .zip(&mean)
            .for_each(|((s, v), m)| *s += (*v as f64 - m).powi(2) / n);
    }
    (
        mean.iter().map(|&m| m as f32).collect(),
        var.iter().map(|&v| v.sqrt().max(1e-6) as f32).collect(),
    )
}

/// Gradient of mean cross-entropy + (l2/2)·|weights|² (biases unpenalised) at `w` (in the
/// design's column order), as two matrix products: the logits Z·Wᵀ, then residualsᵀ·Z.
fn gradient(design: &Design, ys: &[usize], classes: usize, w: &[f64], l2: f64, grad: &mut [f64]) {
    let n = design.rows() as f64;
    let mut residuals = design.scores(w, classes);
    for (mut row, &y) in residuals.rows_mut().into_iter().zip(ys) {
        let p = softmax(&row.to_vec());
        for (c, r) in row.iter_mut().enumerate() {
            *r = (p[c] - if y == c { 1.0 } else { 0.0 }) / n;
        }
    }
    design.transposed_product(&residuals, grad);
    let dim = design.width();
    for c in 0..classes {
        for j in (0..dim).filter(|&j| !design.is_bias(j)) {
            grad[c * dim + j] += l2 * w[c * dim + j];
        }
    }
}

pub(crate) fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// Index of the largest value (the lowest index on a tie).
pub fn argmax<T: PartialOrd>(values: &[T]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, v)| if *v > values[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two well-separated clouds in 3-d, labelled by which side of a plane they are on.
    fn clouds() -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..40 {
            let jitter = (i as f32 * 0.37).sin() * 0.2;
            xs.push(vec![1.0 + jitter, 0.5 - jitter, 0.1 * jitter]);
            ys.push(0);
            xs.push(vec![-1.0 - jitter, 0.4 + jitter, -0.1 * jitter]);
            ys.push(1);
        }
        (xs, ys)
    }

    #[test]
    fn logistic_regression_separates_and_is_deterministic() {
        let (xs, ys) = clouds();
        let a = Classifier::train_linear(&xs, &ys, 2, TrainOptions::default());
        let b = Classifier::train_linear(&xs, &ys, 2, TrainOptions::default());
        assert_eq!(a, b);
        assert!(xs.iter().zip(&ys).all(|(x, &y)| a.predict(x) == y));
        let p = a.probabilities(&[2.0, 0.5, 0.0]);
        assert!(p[0] > 0.9 && (p[0] + p[1] - 1.0).abs() < 1e-5, "{p:?}");
    }

    #[test]
    fn prototypes_pick_the_nearest_centroid() {
        let (xs, ys) = clouds();
        let c = Classifier::prototypes(&xs, &ys, 2);
        assert_eq!(c.predict(&[1.0, 0.5, 0.0]), 0);
        assert_eq!(c.predict(&[-1.0, 0.5, 0.0]), 1);
    }
}
