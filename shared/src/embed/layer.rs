//! One of the embedder's transformer layers (BERT's post-norm encoder layer, as the pinned
//! graph computes it) in plain arrays: forward for one text (its tokens × 384 hidden states,
//! no padding, so no attention mask), and backward, its gradient with respect to every weight
//! and to its input, for fine-tuning.

use tract_onnx::prelude::tract_ndarray::{s, Array1, Array2, ArrayView2, Axis};

pub const WIDTH: usize = super::DIM;
pub const HEADS: usize = 12;
const HEAD: usize = WIDTH / HEADS;
pub const FFN: usize = 4 * WIDTH;
/// The pinned graph's layer norms' epsilon.
const EPSILON: f32 = 1e-12;

/// `x · weight + bias`; the weight is inputs × outputs, as the ONNX graph multiplies.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub weight: Array2<f32>,
    pub bias: Array1<f32>,
}

/// Layer normalisation's scale and shift.
#[derive(Debug, Clone, PartialEq)]
pub struct Norm {
    pub gain: Array1<f32>,
    pub bias: Array1<f32>,
}

/// The weights of one layer, named as in the ONNX export; a gradient has the same shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub query: Dense,
    pub key: Dense,
    pub value: Dense,
    pub attention_output: Dense,
    pub attention_norm: Norm,
    pub intermediate: Dense,
    pub output: Dense,
    pub output_norm: Norm,
}

/// What the forward pass keeps for the backward pass.
pub struct Trace {
    input: Array2<f32>,
    q: Array2<f32>,
    k: Array2<f32>,
    v: Array2<f32>,
    /// Attention probabilities, one tokens × tokens matrix per head.
    probabilities: Vec<Array2<f32>>,
    context: Array2<f32>,
    attention_norm: NormTrace,
    /// The intermediate layer before and after GELU.
    pre_gelu: Array2<f32>,
    post_gelu: Array2<f32>,
    output_norm: NormTrace,
}

struct NormTrace {
    /// The normalised rows (before gain and bias) and each row's 1 / standard deviation.
    normalised: Array2<f32>,
    inverse_std: Array1<f32>,
    output: Array2<f32>,
}

impl Dense {
    pub fn zeros(inputs: usize, outputs: usize) -> Dense {
        Dense {
            weight: Array2::zeros((inputs, outputs)),
            bias: Array1::zeros(outputs),
        }
    }

    pub fn zeros_like(&self) -> Dense {
        Dense::zeros(self.weight.nrows(), self.weight.ncols())
    }

    /// The weight and the bias as flat slices (for the optimiser).
    pub fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        vec![
            self.weight.as_slice_mut().expect("weights are contiguous"),
            self.bias.as_slice_mut().expect("biases are contiguous"),
        ]
    }

    pub fn forward(&self, x: &ArrayView2<f32>) -> Array2<f32> {
        x.dot(&self.weight) + &self.bias
    }

    /// Adds this layer's gradient for input `x` and output gradient `dy` to `self`, and returns
    /// the gradient with respect to `x`.
    pub fn backward(&self, gradient: &mut Dense, x: &ArrayView2<f32>, dy: &Array2<f32>) -> Array2<f32> {
        gradient.weight += &x.t().dot(dy);
        gradient.bias += &dy.sum_axis(Axis(0));
        dy.dot(&self.weight.t())
    }
}

impl Norm {
    fn zeros() -> Norm {
        Norm {
            gain: Array1::zeros(WIDTH),
            bias: Array1::zeros(WIDTH),
        }
    }

    fn forward(&self, x: Array2<f32>) -> NormTrace {
        let mut normalised = x;
        let mut inverse_std = Array1::zeros(normalised.nrows());
        for (mut row, inv) in normalised.rows_mut().into_iter().zip(inverse_std.iter_mut()) {
            let mean = row.mean().unwrap_or(0.0);
            row -= mean;
            *inv = 1.0 / (row.mapv(|v| v * v).mean().unwrap_or(0.0) + EPSILON).sqrt();
            row *= *inv;
        }
        let output = &normalised * &self.gain + &self.bias;
        NormTrace {
            normalised,
            inverse_std,
            output,
        }
    }

    fn backward(&self, gradient: &mut Norm, trace: &NormTrace, dy: &Array2<f32>) -> Array2<f32> {
        gradient.gain += &(dy * &trace.normalised).sum_axis(Axis(0));
        gradient.bias += &dy.sum_axis(Axis(0));
        let mut dx = dy * &self.gain;
        for ((mut row, x), &inv) in dx
            .rows_mut()
            .into_iter()
            .zip(trace.normalised.rows())
            .zip(&trace.inverse_std)
        {
            let mean = row.mean().unwrap_or(0.0);
            let along = (&row * &x).mean().unwrap_or(0.0);
            row.zip_mut_with(&x, |d, &x| *d = (*d - mean - x * along) * inv);
        }
        dx
    }
}

impl Layer {
    /// A layer of zeros: the starting point of a gradient.
    pub fn zeros() -> Layer {
        Layer {
            query: Dense::zeros(WIDTH, WIDTH),
            key: Dense::zeros(WIDTH, WIDTH),
            value: Dense::zeros(WIDTH, WIDTH),
            attention_output: Dense::zeros(WIDTH, WIDTH),
            attention_norm: Norm::zeros(),
            intermediate: Dense::zeros(WIDTH, FFN),
            output: Dense::zeros(FFN, WIDTH),
            output_norm: Norm::zeros(),
        }
    }

    /// Every weight, in a fixed order, as flat slices (for the optimiser).
    pub fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out = Vec::with_capacity(16);
        for dense in [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.attention_output,
            &mut self.intermediate,
            &mut self.output,
        ] {
            out.extend(dense.tensors_mut());
        }
        for norm in [&mut self.attention_norm, &mut self.output_norm] {
            out.push(norm.gain.as_slice_mut().expect("gains are contiguous"));
            out.push(norm.bias.as_slice_mut().expect("biases are contiguous"));
        }
        out
    }

    /// Adds `other` to `self`, weight by weight.
    pub fn add(&mut self, other: &mut Layer) {
        for (a, b) in self.tensors_mut().into_iter().zip(other.tensors_mut()) {
            a.iter_mut().zip(b.iter()).for_each(|(a, b)| *a += b);
        }
    }

    /// The layer's output for one text's hidden states (tokens × [`WIDTH`]).
    pub fn forward(&self, x: Array2<f32>) -> Trace {
        let view = x.view();
        let (q, k, v) = (
            self.query.forward(&view),
            self.key.forward(&view),
            self.value.forward(&view),
        );
        let scale = 1.0 / (HEAD as f32).sqrt();
        let mut context = Array2::zeros(x.raw_dim());
        let mut probabilities = Vec::with_capacity(HEADS);
        for h in 0..HEADS {
            let cols = s![.., h * HEAD..(h + 1) * HEAD];
            let mut p = q.slice(cols).dot(&k.slice(cols).t()) * scale;
            for mut row in p.rows_mut() {
                let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                row.mapv_inplace(|v| (v - max).exp());
                let sum = row.sum();
                row /= sum;
            }
            context.slice_mut(cols).assign(&p.dot(&v.slice(cols)));
            probabilities.push(p);
        }
        let attention_norm = self
            .attention_norm
            .forward(self.attention_output.forward(&context.view()) + &x);
        let pre_gelu = self.intermediate.forward(&attention_norm.output.view());
        let post_gelu = pre_gelu.mapv(gelu);
        let output_norm = self
            .output_norm
            .forward(self.output.forward(&post_gelu.view()) + &attention_norm.output);
        Trace {
            input: x,
            q,
            k,
            v,
            probabilities,
            context,
            attention_norm,
            pre_gelu,
            post_gelu,
            output_norm,
        }
    }

    /// Adds the gradient of the weights for one forward pass and the gradient `dy` of its
    /// output to `gradient`, and returns the gradient with respect to the layer's input.
    pub fn backward(&self, gradient: &mut Layer, trace: &Trace, dy: &Array2<f32>) -> Array2<f32> {
        let d_residual = self
            .output_norm
            .backward(&mut gradient.output_norm, &trace.output_norm, dy);
        let d_post_gelu = self
            .output
            .backward(&mut gradient.output, &trace.post_gelu.view(), &d_residual);
        let d_pre_gelu = d_post_gelu * &trace.pre_gelu.mapv(gelu_derivative);
        let d_attention = d_residual
            + self.intermediate.backward(
                &mut gradient.intermediate,
                &trace.attention_norm.output.view(),
                &d_pre_gelu,
            );
        let d_sum = self
            .attention_norm
            .backward(&mut gradient.attention_norm, &trace.attention_norm, &d_attention);
        let d_context = self
            .attention_output
            .backward(&mut gradient.attention_output, &trace.context.view(), &d_sum);
        let scale = 1.0 / (HEAD as f32).sqrt();
        let (mut dq, mut dk, mut dv) = (
            Array2::zeros(d_context.raw_dim()),
            Array2::zeros(d_context.raw_dim()),
            Array2::zeros(d_context.raw_dim()),
        );
        for (h, p) in trace.probabilities.iter().enumerate() {
            let cols = s![.., h * HEAD..(h + 1) * HEAD];
            let dc = d_context.slice(cols);
            let mut ds = dc.dot(&trace.v.slice(cols).t());
            dv.slice_mut(cols).assign(&p.t().dot(&dc));
            // Softmax: dS = P ⊙ (dP − rowsum(dP ⊙ P)).
            for (mut row, p_row) in ds.rows_mut().into_iter().zip(p.rows()) {
                let along = (&row * &p_row).sum();
                row.zip_mut_with(&p_row, |d, &p| *d = p * (*d - along) * scale);
            }
            dq.slice_mut(cols).assign(&ds.dot(&trace.k.slice(cols)));
            dk.slice_mut(cols).assign(&ds.t().dot(&trace.q.slice(cols)));
        }
        let x = trace.input.view();
        d_sum
            + self.query.backward(&mut gradient.query, &x, &dq)
            + self.key.backward(&mut gradient.key, &x, &dk)
            + self.value.backward(&mut gradient.value, &x, &dv)
    }
}

impl Trace {
    /// The layer's output: tokens × [`WIDTH`].
    pub fn output(&self) -> &Array2<f32> {
        &self.output_norm.output
    }

    /// The output, giving up what only the backward pass needs.
    pub fn into_output(self) -> Array2<f32> {
        self.output_norm.output
    }
}

/// GELU as the pinned graph computes it: x · Φ(x), with the exact normal distribution function.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

fn gelu_derivative(x: f32) -> f32 {
    let density = (-0.5 * x * x).exp() * (0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2);
    0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)) + x * density
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A layer of small pseudo-random weights (a fixed sequence), and norms near the identity.
    pub(crate) fn random_layer(seed: u64) -> Layer {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        };
        let mut layer = Layer::zeros();
        for t in layer.tensors_mut() {
            t.iter_mut().for_each(|v| *v = next());
        }
        layer.attention_norm.gain.mapv_inplace(|g| 1.0 + g);
        layer.output_norm.gain.mapv_inplace(|g| 1.0 + g);
        layer
    }

    fn input(tokens: usize) -> Array2<f32> {
        Array2::from_shape_fn((tokens, WIDTH), |(t, d)| ((t * 31 + d * 7) % 23) as f32 / 11.5 - 1.0)
    }

    /// A scalar of the output whose gradient is known: Σ output ⊙ R for a fixed R.
    fn loss(layer: &Layer, x: &Array2<f32>) -> f64 {
        let y = layer.forward(x.clone()).into_output();
        y.indexed_iter()
            .map(|((t, d), &v)| v as f64 * (((t * 13 + d * 5) % 17) as f64 / 8.5 - 1.0))
            .sum()
    }

    #[test]
    fn the_backward_pass_is_the_gradient_of_the_forward_pass() {
        let layer = random_layer(7);
        let x = input(5);
        let r = Array2::from_shape_fn((5, WIDTH), |(t, d)| ((t * 13 + d * 5) % 17) as f32 / 8.5 - 1.0);
        let mut gradient = Layer::zeros();
        let trace = layer.forward(x.clone());
        let dx = layer.backward(&mut gradient, &trace, &r);
        // Central differences, h = 1e-2 on f32 weights: each checked entry's numerical
        // derivative must agree with the backward pass's to 2% of the tensor's largest entry
        // (at least 1e-3: the key's bias has no effect at all, softmax being blind to a shift of
        // a whole row, so only rounding is left there).
        let h = 1e-2f32;
        let check = |analytic: f32, numeric: f64, scale: f64, what: &str| {
            assert!(
                (analytic as f64 - numeric).abs() <= (0.02 * scale).max(1e-3),
                "{what}: backward {analytic}, numerical {numeric}"
            );
        };
        let names = [
            "query",
            "query bias",
            "key",
            "key bias",
            "value",
            "value bias",
            "attention output",
            "attention output bias",
            "intermediate",
            "intermediate bias",
            "output",
            "output bias",
            "attention norm gain",
            "attention norm bias",
            "output norm gain",
            "output norm bias",
        ];
        for (n, name) in names.iter().enumerate() {
            let analytic = gradient.clone().tensors_mut()[n].to_vec();
            let scale = analytic.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            for &i in &[0, analytic.len() / 3, analytic.len() - 1] {
                let mut plus = layer.clone();
                plus.tensors_mut()[n][i] += h;
                let mut minus = layer.clone();
                minus.tensors_mut()[n][i] -= h;
                let numeric = (loss(&plus, &x) - loss(&minus, &x)) / (2.0 * h as f64);
                check(analytic[i], numeric, scale, &format!("{name}[{i}]"));
            }
        }
        let scale = dx.fold(0f32, |m, v| m.max(v.abs())) as f64;
        for &(t, d) in &[(0, 0), (2, 100), (4, 383)] {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[[t, d]] += h;
            minus[[t, d]] -= h;
            let numeric = (loss(&layer, &plus) - loss(&layer, &minus)) / (2.0 * h as f64);
            check(dx[[t, d]], numeric, scale, &format!("input[{t}, {d}]"));
        }
    }
}
