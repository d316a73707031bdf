//! Element-wise additions and multiplications that tract leaves on its slow path.
//!
//! tract picks its vectorised kernels for a binary operator only when it can prove, at
//! optimisation time, that the tensors are large enough; with the batch and sequence axes
//! symbolic (one plan for every text length) it cannot, and the residual adds, GELU's four
//! steps and the attention mask's add run through ndarray's generic broadcasting — about a
//! fifth of the embedding's time. After optimisation, each such `f32` `Add` or `Mul` whose output
//! has the shape of one of its inputs is replaced by [`DenseBinary`], which runs the same
//! per-element operation over contiguous runs. IEEE addition and multiplication are exact and
//! commutative per element, so the results are bit for bit those of tract's own operator (the
//! embedding test checks it against onnxruntime).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::math::{Add, Mul};
use tract_onnx::tract_core::{as_op, op_as_typed_op, op_out_of_plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Mul,
}

/// `Add` or `Mul` of two `f32` tensors of equal rank where the output has the shape of one of
/// them (the "big" one) and the other repeats along some axes. Falls back to tract's own
/// operator for anything else at run time.
#[derive(Debug, Clone)]
pub struct DenseBinary {
    kind: Kind,
    fallback: TypedBinOp,
}

impl PartialEq for DenseBinary {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}
impl Eq for DenseBinary {}

impl Op for DenseBinary {
    fn name(&self) -> StaticName {
        "DenseBinary".into()
    }
    op_as_typed_op!();
}

impl EvalOp for DenseBinary {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        // Dense in C order: the stride of an axis of length 1 does not matter (tract leaves
        // e.g. [384, 384, 1] on a [1, S, 384] tensor).
        let natural = |t: &TValue| {
            let mut expected = 1isize;
            let dense = t.shape().iter().zip(t.strides()).rev().all(|(&n, &stride)| {
                let ok = n == 1 || stride == expected;
                expected *= n as isize;
                ok
            });
            t.datum_type() == f32::datum_type() && t.len() == t.shape().iter().product::<usize>() && dense
        };
        let big = if a.shape() == b.shape() || broadcasts(b.shape(), a.shape()) {
            0
        } else if broadcasts(a.shape(), b.shape()) {
            1
        } else {
            return self.fallback.eval(ctx, inputs);
        };
        if !natural(a) || !natural(b) || a.rank() != b.rank() {
            return self.fallback.eval(ctx, inputs);
        }
        let mut inputs = inputs;
        let small = inputs.remove(1 - big);
        let mut out = inputs.remove(0).into_tensor();
        apply(self.kind, &mut out, &small)?;
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DenseBinary {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.fallback.output_facts(inputs)
    }
    as_op!();
}

/// Whether `small` repeats along some axes to give `big` (each axis equal, or 1 in `small`).
fn broadcasts(small: &[usize], big: &[usize]) -> bool {
    small.len() == big.len() && small.iter().zip(big).all(|(s, b)| s == b || *s == 1)
}

/// `out[i] = out[i] ∘ small[i projected]`, over the longest contiguous runs the shapes allow.
fn apply(kind: Kind, out: &mut Tensor, small: &Tensor) -> TractResult<()> {
    let shape: Vec<usize> = out.shape().to_vec();
    let s_shape = small.shape().to_vec();
    let small = small.try_as_plain_ram()?;
    let b = small.as_slice::<f32>()?;
    let mut out = out.try_as_plain_ram_mut()?;
    let a = out.as_slice_mut::<f32>()?;
    let op = |x: &mut f32, y: f32| match kind {
        Kind::Add => *x += y,
        Kind::Mul => *x *= y,
    };
    // The trailing axes where the two agree form one run of `inner` elements; if instead the
    // last axes repeat a single value of `small`, that value applies to a run of `inner`.
    let matching = shape.iter().zip(&s_shape).rev().take_while(|(o, s)| o == s).count();
    let (inner, repeated) = if matching > 0 {
        (shape[shape.len() - matching..].iter().product::<usize>(), false)
    } else {
        let n = s_shape.iter().rev().take_while(|s| **s == 1).count();
        (shape[shape.len() - n..].iter().product::<usize>(), true)
    };
    let outer_axes = shape.len()
        - if repeated {
            s_shape.iter().rev().take_while(|s| **s == 1).count()
        } else {
            matching
        };
    // Strides of `small` over the outer axes (0 where it repeats), in elements.
    let mut s_strides = vec![0usize; outer_axes];
    let mut stride = if repeated { 1 } else { inner };
    for axis in (0..outer_axes).rev() {
        s_strides[axis] = if s_shape[axis] == 1 { 0 } else { stride };
        stride *= s_shape[axis];
    }
    let mut index = vec![0usize; outer_axes];
    let mut offset = 0usize;
    for run in a.chunks_exact_mut(inner.max(1)) {
        if repeated {
            let y = b[offset];
            run.iter_mut().for_each(|x| op(x, y));
        } else {
            run.iter_mut()
                .zip(&b[offset..offset + inner])
                .for_each(|(x, &y)| op(x, y));
        }
        // Next outer index, carrying.
        for axis in (0..outer_axes).rev() {
            index[axis] += 1;
            offset += s_strides[axis];
            if index[axis] < shape[axis] {
                break;
            }
            offset -= s_strides[axis] * shape[axis];
            index[axis] = 0;
        }
    }
    Ok(())
}

/// Replaces every generic `f32` `Add`/`Mul` of the optimised model whose output has the shape
/// of one of its inputs. Returns how many were replaced.
pub fn replace_generic_binaries(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let Some(op) = model.node(id).op_as::<TypedBinOp>() else {
            continue;
        };
        let kind = if op.0.is::<Add>() {
            Kind::Add
        } else if op.0.is::<Mul>() {
            Kind::Mul
        } else {
            continue;
        };
        let fallback = op.clone();
        let eligible = {
            let facts = model.node_input_facts(id)?;
            let output = &model.node(id).outputs[0].fact;
            let f32_only =
                facts.iter().all(|f| f.datum_type == f32::datum_type()) && output.datum_type == f32::datum_type();
            let same_rank = facts.len() == 2 && facts[0].rank() == facts[1].rank();
            f32_only && same_rank && facts.iter().any(|f| f.shape == output.shape)
        };
        if eligible {
            model.node_mut(id).op = Box::new(DenseBinary { kind, fallback });
            replaced += 1;
        }
    }
    Ok(replaced)
}
