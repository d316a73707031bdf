//! One transformer layer's weights in the pinned graph: read out as plain arrays (dequantized),
//! and written back in the graph's own form (int8 with a scale per output column) as
//! replacements for the pinned ones.
//!
//! A layer's six matrices are the `MatMul`s between its input's `LayerNormalization` and its
//! output's whose weight is dequantized from an initializer (`Mul(Cast(Q), scale)`), in graph
//! order: query, key, value, attention output, intermediate, output. Each one's bias is the
//! initializer the following `Add` adds; the two norms are the layer's two
//! `LayerNormalization`s.

use super::layer::{Dense, Layer, Norm};
use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};
use tract_onnx::prelude::tract_ndarray::{Array1, Array2};

/// The names of one layer's initializers.
#[derive(Debug, Clone)]
struct LayerTensors {
    /// (int8 matrix, scale, bias) for query, key, value, attention output, intermediate, output.
    dense: Vec<(String, String, String)>,
    /// (gain, bias) of the attention's norm and of the output's.
    norms: Vec<(String, String)>,
}

fn layer_tensors(graph: &GraphProto, layer: usize) -> Result<LayerTensors, String> {
    let norms: Vec<usize> = (graph.node.iter().enumerate())
        .filter(|(_, n)| n.op_type == "LayerNormalization")
        .map(|(i, _)| i)
        .collect();
    let (&start, &end) = norms
        .get(2 * layer)
        .zip(norms.get(2 * layer + 2))
        .ok_or_else(|| format!("the graph has no layer {layer}"))?;
    let is_initializer = |name: &str| graph.initializer.iter().any(|t| t.name == name);
    let producer = |tensor: &str| graph.node.iter().find(|n| n.output.iter().any(|o| o == tensor));
    let consumer = |tensor: &str| graph.node.iter().find(|n| n.input.iter().any(|i| i == tensor));
    let dequantized = |matmul: &NodeProto| -> Option<(String, String)> {
        let mul = producer(matmul.input.get(1)?)?;
        let cast = producer(mul.input.first()?)?;
        let (quantized, scale) = (cast.input.first()?, mul.input.get(1)?);
        (mul.op_type == "Mul" && cast.op_type == "Cast" && is_initializer(quantized) && is_initializer(scale))
            .then(|| (quantized.clone(), scale.clone()))
    };
    let mut dense = Vec::new();
    for node in &graph.node[start..end] {
        if node.op_type != "MatMul" {
            continue;
        }
        let Some((quantized, scale)) = dequantized(node) else {
            continue;
        };
        let add = consumer(&node.output[0]).filter(|n| n.op_type == "Add");
        let bias = add
            .and_then(|a| a.input.iter().find(|i| is_initializer(i)))
            .ok_or_else(|| format!("layer {layer}: `{}` has no bias", node.name))?;
        dense.push((quantized, scale, bias.clone()));
    }
    if dense.len() != 6 {
        return Err(format!("layer {layer} has {} dequantized matrices, not 6", dense.len()));
    }
    let norms = [norms[2 * layer + 1], end]
        .iter()
        .map(|&i| {
            let n = &graph.node[i];
            Ok((
                n.input.get(1).cloned().ok_or("a norm without gain")?,
                n.input.get(2).cloned().ok_or("a norm without bias")?,
            ))
        })
        .collect::<Result<_, &str>>()?;
    Ok(LayerTensors { dense, norms })
}

/// Layer `layer` of the graph (counting from 0), its matrices dequantized.
pub fn read_layer(graph: &GraphProto, layer: usize) -> Result<Layer, String> {
    let names = layer_tensors(graph, layer)?;
    let tensor = |name: &str| -> Result<&TensorProto, String> {
        (graph.initializer.iter().find(|t| t.name == name)).ok_or_else(|| format!("no initializer `{name}`"))
    };
    let vector = |name: &str| Ok::<_, String>(Array1::from(floats(tensor(name)?)?));
    let dense = |(q, scale, bias): &(String, String, String)| -> Result<Dense, String> {
        let q = tensor(q)?;
        let (rows, cols) = matrix_shape(q)?;
        let scale = floats(tensor(scale)?)?;
        if scale.len() != cols {
            return Err(format!("`{}` has {} scales for {cols} columns", q.name, scale.len()));
        }
        let values = int8s(q);
        if values.len() != rows * cols {
            return Err(format!(
                "`{}` holds {} values, not {rows} × {cols}",
                q.name,
                values.len()
            ));
        }
        let weight = Array2::from_shape_fn((rows, cols), |(r, c)| values[r * cols + c] as f32 * scale[c]);
        Ok(Dense {
            weight,
            bias: vector(bias)?,
        })
    };
    let norm = |(gain, bias): &(String, String)| {
        Ok::<_, String>(Norm {
            gain: vector(gain)?,
            bias: vector(bias)?,
        })
    };
    let d = names.dense.iter().map(dense).collect::<Result<Vec<_>, _>>()?;
    let n = names.norms.iter().map(norm).collect::<Result<Vec<_>, _>>()?;
    let [query, key, value, attention_output, intermediate, output]: [Dense; 6] =
        d.try_into().expect("six matrices were found");
    let [attention_norm, output_norm]: [Norm; 2] = n.try_into().expect("two norms were found");
    Ok(Layer {
        query,
        key,
        value,
        attention_output,
        attention_norm,
        intermediate,
        output,
        output_norm,
    })
}

/// The initializers that give layer `layer` of the graph the weights of `weights`: each matrix
/// quantized as the pinned graph stores it (int8, one scale per column: its largest magnitude
/// over 127), biases and norms as floats. Named as the pinned initializers they replace.
pub fn layer_initializers(graph: &GraphProto, layer: usize, weights: &Layer) -> Result<Vec<TensorProto>, String> {
    let names = layer_tensors(graph, layer)?;
    let dense = [
        &weights.query,
        &weights.key,
        &weights.value,
        &weights.attention_output,
        &weights.intermediate,
        &weights.output,
    ];
    let mut out = Vec::new();
    for ((q, scale, bias), d) in names.dense.iter().zip(dense) {
        let (quantized, scales) = quantize_columns(&d.weight);
        out.push(int8_tensor(q, d.weight.dim(), quantized));
        out.push(float_tensor(scale, vec![1, scales.len() as i64], scales));
        out.push(float_tensor(bias, vec![d.bias.len() as i64], d.bias.to_vec()));
    }
    for ((gain, bias), n) in names.norms.iter().zip([&weights.attention_norm, &weights.output_norm]) {
        out.push(float_tensor(gain, vec![n.gain.len() as i64], n.gain.to_vec()));
        out.push(float_tensor(bias, vec![n.bias.len() as i64], n.bias.to_vec()));
    }
    Ok(out)
}

/// Replaces the graph's initializers of the same names by `tensors`.
pub fn replace_initializers(graph: &mut GraphProto, tensors: &[TensorProto]) -> Result<(), String> {
    for t in tensors {
        let slot = (graph.initializer.iter_mut().find(|i| i.name == t.name))
            .ok_or_else(|| format!("the graph has no initializer `{}` to replace", t.name))?;
        if slot.dims != t.dims || slot.data_type != t.data_type {
            return Err(format!(
                "`{}` does not have the shape and type of the pinned tensor",
                t.name
            ));
        }
        *slot = t.clone();
    }
    Ok(())
}

/// Int8 values, one scale per column, such that value × scale ≈ weight.
pub fn quantize_columns(weight: &Array2<f32>) -> (Vec<i8>, Vec<f32>) {
    let scales: Vec<f32> = (weight.columns().into_iter())
        .map(|c| c.fold(0f32, |m, &v| m.max(v.abs())) / 127.0)
        .map(|s| if s > 0.0 { s } else { 1.0 })
        .collect();
    let values = (weight.indexed_iter())
        .map(|((_, c), &v)| (v / scales[c]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (values, scales)
}

fn matrix_shape(t: &TensorProto) -> Result<(usize, usize), String> {
    match t.dims[..] {
        [rows, cols] if t.data_type == DataType::Int8 as i32 => Ok((rows as usize, cols as usize)),
        _ => Err(format!("`{}` is not an int8 matrix", t.name)),
    }
}

fn int8s(t: &TensorProto) -> Vec<i8> {
    if t.raw_data.is_empty() {
        return t.int32_data.iter().map(|&v| v as i8).collect();
    }
    t.raw_data.iter().map(|&b| b as i8).collect()
}

fn floats(t: &TensorProto) -> Result<Vec<f32>, String> {
    if t.data_type != DataType::Float as i32 {
        return Err(format!("`{}` is not a float tensor", t.name));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn int8_tensor(name: &str, (rows, cols): (usize, usize), values: Vec<i8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![rows as i64, cols as i64],
        data_type: DataType::Int8 as i32,
        raw_data: values.into_iter().map(|v| v as u8).collect(),
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: Vec<i64>, values: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims,
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}
