//! Fine-tuning the embedder's upper layers on labelled examples: the layers above a cut and a
//! linear head over [request, reply opening] are trained with cross-entropy on the categories,
//! starting from the pinned weights; the lower layers stay as pinned, so their output (the hidden
//! states at the cut) is computed once per text. What a study does with it is in `tuning.rs`.
//!
//! Deterministic: the order of the examples comes from a seeded generator, and each batch's
//! gradient is the sum of fixed groups of examples' gradients added in a fixed order, whatever
//! the number of threads that computed them.

use crate::embed::layer::{Dense, Layer, WIDTH};
use crate::embed::pool;
use tract_onnx::prelude::tract_ndarray::{s, Array2};

/// How the upper layers are trained. The defaults are those measured on the default study
/// (`bench/classifier`): AdamW at 5e-5 for the layers, Adam at 3e-3 for the head, batches of 32,
/// two epochs, the rate warmed up over the first tenth of the steps and then cosine-decayed to 0.
#[derive(Debug, Clone, Copy)]
pub struct FineTuneOptions {
    pub epochs: usize,
    pub batch: usize,
    pub layer_rate: f32,
    pub head_rate: f32,
    pub weight_decay: f32,
    pub seed: u64,
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        FineTuneOptions {
            epochs: 2,
            batch: 32,
            layer_rate: 5e-5,
            head_rate: 3e-3,
            weight_decay: 0.01,
            seed: 0,
        }
    }
}

/// The head multiplies the unit-length embeddings by this before its linear map, so that a head
/// starting from zero reaches confident logits in a few hundred steps.
const HEAD_INPUT_SCALE: f32 = 10.0;
/// Examples whose gradients one thread computes and sums before they are added to the batch's.
const GROUP: usize = 4;

/// One labelled example at the cut: the hidden states of its request and of its reply's opening
/// (the request's again when it has no reply), each tokens × [`WIDTH`].
#[derive(Clone, Copy)]
pub struct Item<'a> {
    pub request: &'a Array2<f32>,
    pub reply: &'a Array2<f32>,
    pub label: usize,
}

/// The sentence embedding the upper layers give one text's hidden states at the cut.
pub fn embed(layers: &[Layer], states: &Array2<f32>) -> Vec<f32> {
    let mut x = states.clone();
    for layer in layers {
        x = layer.forward(x).into_output();
    }
    pool(&x.view())
}

/// [`embed`] for many texts, on every core.
pub fn embed_all(layers: &[Layer], states: &[Array2<f32>]) -> Vec<Vec<f32>> {
    crate::parallel::map(states.len(), |i| embed(layers, &states[i]), |_, _| {})
}

/// The upper layers `layers` trained on `items` (categories below `classes`); `progress`
/// receives the step, the number of steps and the batch's mean loss after each step.
pub fn fine_tune(
    mut layers: Vec<Layer>,
    items: &[Item<'_>],
    classes: usize,
    options: FineTuneOptions,
    mut progress: impl FnMut(usize, usize, f32),
) -> Vec<Layer> {
    let mut head = Dense::zeros(2 * WIDTH, classes);
    let mut rng = SplitMix(options.seed);
    let epochs: Vec<Vec<Vec<usize>>> = (0..options.epochs)
        .map(|_| batches(items, options.batch, &mut rng))
        .collect();
    let steps: usize = epochs.iter().map(Vec::len).sum();
    let warmup = steps / 10;
    let mut layer_optimiser = Adam::new(&mut layers.iter_mut().flat_map(Layer::tensors_mut).collect::<Vec<_>>());
    let mut head_optimiser = Adam::new(&mut head.tensors_mut());
    for (step, batch) in epochs.iter().flatten().enumerate() {
        let schedule = if step < warmup {
            step as f32 / warmup as f32
        } else {
            let progress = (step - warmup) as f32 / (steps - warmup).max(1) as f32;
            0.5 * (1.0 + (std::f32::consts::PI * progress).cos())
        };
        let (mut gradient, loss) = batch_gradient(&layers, &head, items, batch);
        let scale = 1.0 / batch.len() as f32;
        layer_optimiser.step(
            layers.iter_mut().flat_map(Layer::tensors_mut).collect(),
            gradient.0.iter_mut().flat_map(Layer::tensors_mut).collect(),
            scale,
            options.layer_rate * schedule,
            options.weight_decay,
        );
        head_optimiser.step(
            head.tensors_mut(),
            gradient.1.tensors_mut(),
            scale,
            options.head_rate * schedule,
            0.0,
        );
        progress(step + 1, steps, loss * scale);
    }
    layers
}

/// One epoch's batches: the items shuffled, cut into groups of 16 batches sorted by length
/// (so that a batch's texts are alike in cost), the batches shuffled again.
fn batches(items: &[Item<'_>], batch: usize, rng: &mut SplitMix) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    rng.shuffle(&mut order);
    let mut out = Vec::new();
    for group in order.chunks(16 * batch) {
        let mut group = group.to_vec();
        group.sort_by_key(|&i| items[i].request.nrows() + items[i].reply.nrows());
        out.extend(group.chunks(batch).map(<[usize]>::to_vec));
    }
    rng.shuffle(&mut out);
    out
}

type Gradient = (Vec<Layer>, Dense);

/// The summed gradient and loss of a batch's items, computed in groups of [`GROUP`] on every
/// core and added in the groups' order.
fn batch_gradient(layers: &[Layer], head: &Dense, items: &[Item<'_>], batch: &[usize]) -> (Gradient, f32) {
    let groups: Vec<&[usize]> = batch.chunks(GROUP).collect();
    let mut parts = crate::parallel::map(
        groups.len(),
        |g| {
            let mut gradient = (layers.iter().map(|_| Layer::zeros()).collect(), head.zeros_like());
            let loss: f32 = (groups[g].iter())
                .map(|&i| item_gradient(layers, head, &items[i], &mut gradient))
                .sum();
            (gradient, loss)
        },
        |_, _| {},
    )
    .into_iter();
    let (mut total, mut loss) = parts.next().expect("a batch has items");
    for ((mut layers, mut head), part_loss) in parts {
        for (t, l) in total.0.iter_mut().zip(layers.iter_mut()) {
            t.add(l);
        }
        for (t, h) in total.1.tensors_mut().into_iter().zip(head.tensors_mut()) {
            t.iter_mut().zip(h.iter()).for_each(|(t, h)| *t += h);
        }
        loss += part_loss;
    }
    (total, loss)
}

/// Adds one item's gradient of the cross-entropy to `gradient`; returns the loss.
fn item_gradient(layers: &[Layer], head: &Dense, item: &Item<'_>, gradient: &mut Gradient) -> f32 {
    let request = Pooled::forward(layers, item.request);
    let reply = Pooled::forward(layers, item.reply);
    let mut input = Array2::zeros((1, 2 * WIDTH));
    input
        .slice_mut(s![0, ..WIDTH])
        .assign(&(&request.embedding * HEAD_INPUT_SCALE));
    input
        .slice_mut(s![0, WIDTH..])
        .assign(&(&reply.embedding * HEAD_INPUT_SCALE));
    let logits = head.forward(&input.view());
    let max = logits.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let exp = logits.mapv(|v| (v - max).exp());
    let sum = exp.sum();
    let loss = sum.ln() - (logits[[0, item.label]] - max);
    let mut d_logits = exp / sum;
    d_logits[[0, item.label]] -= 1.0;
    let d_input = head.backward(&mut gradient.1, &input.view(), &d_logits) * HEAD_INPUT_SCALE;
    request.backward(layers, &mut gradient.0, d_input.slice(s![0, ..WIDTH]).to_vec());
    reply.backward(layers, &mut gradient.0, d_input.slice(s![0, WIDTH..]).to_vec());
    loss
}

/// A text through the upper layers and the pooling, with what the backward pass needs.
struct Pooled {
    traces: Vec<crate::embed::layer::Trace>,
    /// The unit-length mean of the last layer's output, and the mean's length.
    embedding: tract_onnx::prelude::tract_ndarray::Array1<f32>,
    norm: f32,
}

impl Pooled {
    fn forward(layers: &[Layer], states: &Array2<f32>) -> Pooled {
        let mut traces = Vec::with_capacity(layers.len());
        let mut x = states.clone();
        for layer in layers {
            let trace = layer.forward(x);
            x = trace.output().clone();
            traces.push(trace);
        }
        let mean = x
            .mean_axis(tract_onnx::prelude::tract_ndarray::Axis(0))
            .expect("a text has tokens");
        let norm = mean.dot(&mean).sqrt().max(f32::MIN_POSITIVE);
        Pooled {
            traces,
            embedding: mean / norm,
            norm,
        }
    }

    fn backward(&self, layers: &[Layer], gradient: &mut [Layer], d_embedding: Vec<f32>) {
        let d = tract_onnx::prelude::tract_ndarray::Array1::from(d_embedding);
        let along = self.embedding.dot(&d);
        let d_mean = (d - &self.embedding * along) / self.norm;
        let tokens = self.traces[0].output().nrows();
        let mut dy = Array2::zeros((tokens, WIDTH));
        for mut row in dy.rows_mut() {
            row.assign(&(&d_mean / tokens as f32));
        }
        for ((layer, g), trace) in layers.iter().zip(gradient.iter_mut()).zip(&self.traces).rev() {
            dy = layer.backward(g, trace, &dy);
        }
    }
}

/// Adam (Kingma & Ba), with decoupled weight decay (AdamW) when `decay` > 0, over flat tensors.
struct Adam {
    first: Vec<Vec<f32>>,
    second: Vec<Vec<f32>>,
    steps: i32,
}

impl Adam {
    fn new(tensors: &mut [&mut [f32]]) -> Adam {
        Adam {
            first: tensors.iter().map(|t| vec![0.0; t.len()]).collect(),
            second: tensors.iter().map(|t| vec![0.0; t.len()]).collect(),
            steps: 0,
        }
    }

    /// One step on `params` with the gradient `gradients × scale`.
    fn step(&mut self, params: Vec<&mut [f32]>, gradients: Vec<&mut [f32]>, scale: f32, rate: f32, decay: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPSILON: f32 = 1e-8;
        self.steps += 1;
        let (c1, c2) = (1.0 - B1.powi(self.steps), 1.0 - B2.powi(self.steps));
        for (((p, g), m), v) in params
            .into_iter()
            .zip(gradients)
            .zip(&mut self.first)
            .zip(&mut self.second)
        {
            for (((p, &g), m), v) in p.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = g * scale;
                *m = B1 * *m + (1.0 - B1) * g;
                *v = B2 * *v + (1.0 - B2) * g * g;
                *p -= rate * ((*m / c1) / ((*v / c2).sqrt() + EPSILON) + decay * *p);
            }
        }
    }
}

/// SplitMix64: a small, fast, seeded generator for the order of the examples (not for noise,
/// which comes from OpenDP).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::layer::tests::random_layer;

    fn states(tokens: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((tokens, WIDTH), |(t, d)| {
            ((t * 31 + d * 7 + seed) % 23) as f32 / 11.5 - 1.0
        })
    }

    fn loss(layers: &[Layer], head: &Dense, item: &Item<'_>) -> f64 {
        let mut scratch = (layers.iter().map(|_| Layer::zeros()).collect(), head.zeros_like());
        item_gradient(layers, head, item, &mut scratch) as f64
    }

    #[test]
    fn the_gradient_is_that_of_the_cross_entropy_through_pooling_and_both_texts() {
        let layers = vec![random_layer(1), random_layer(2)];
        let mut head = Dense::zeros(2 * WIDTH, 5);
        head.weight = Array2::from_shape_fn((2 * WIDTH, 5), |(i, c)| ((i * 3 + c * 11) % 19) as f32 / 95.0 - 0.1);
        let (request, reply) = (states(4, 0), states(3, 5));
        let item = Item {
            request: &request,
            reply: &reply,
            label: 2,
        };
        let mut gradient = (vec![Layer::zeros(), Layer::zeros()], head.zeros_like());
        item_gradient(&layers, &head, &item, &mut gradient);
        // Central differences (h = 1e-2): within 2% of the tensor's largest entry, or 1e-3.
        let h = 1e-2f32;
        let near = |analytic: f32, numeric: f64, scale: f32| {
            (analytic as f64 - numeric).abs() <= (0.02 * scale as f64).max(1e-3)
        };
        for n in [0, 8, 10, 14] {
            for l in 0..2 {
                let analytic = gradient.0[l].clone().tensors_mut()[n].to_vec();
                let scale = analytic.iter().fold(0f32, |m, v| m.max(v.abs()));
                for i in [1, analytic.len() / 2] {
                    let (mut plus, mut minus) = (layers.clone(), layers.clone());
                    plus[l].tensors_mut()[n][i] += h;
                    minus[l].tensors_mut()[n][i] -= h;
                    let numeric = (loss(&plus, &head, &item) - loss(&minus, &head, &item)) / (2.0 * h as f64);
                    assert!(
                        near(analytic[i], numeric, scale),
                        "layer {l} tensor {n}[{i}]: {} vs {numeric}",
                        analytic[i]
                    );
                }
            }
        }
        let analytic = gradient.1.weight.clone();
        let scale = analytic.fold(0f32, |m, v| m.max(v.abs()));
        for (i, c) in [(0, 2), (400, 1), (767, 4)] {
            let (mut plus, mut minus) = (head.clone(), head.clone());
            plus.weight[[i, c]] += h;
            minus.weight[[i, c]] -= h;
            let numeric = (loss(&layers, &plus, &item) - loss(&layers, &minus, &item)) / (2.0 * h as f64);
            assert!(
                near(analytic[[i, c]], numeric, scale),
                "head[{i}, {c}]: {} vs {numeric}",
                analytic[[i, c]]
            );
        }
    }

    #[test]
    fn training_lowers_the_loss_and_gives_the_same_weights_every_time() {
        let layers = vec![random_layer(3)];
        let texts: Vec<Array2<f32>> = (0..12).map(|i| states(3 + i % 4, i * 7)).collect();
        let items: Vec<Item<'_>> = (0..6)
            .map(|i| Item {
                request: &texts[2 * i],
                reply: &texts[2 * i + 1],
                label: i % 3,
            })
            .collect();
        let options = FineTuneOptions {
            epochs: 30,
            batch: 4,
            layer_rate: 1e-3,
            ..Default::default()
        };
        let mut losses = Vec::new();
        let tuned = fine_tune(layers.clone(), &items, 3, options, |_, _, loss| losses.push(loss));
        assert!(losses.last().unwrap() < &(0.5 * losses[0]), "{losses:?}");
        assert_ne!(tuned, layers);
        assert_eq!(fine_tune(layers, &items, 3, options, |_, _, _| {}), tuned);
    }
}
