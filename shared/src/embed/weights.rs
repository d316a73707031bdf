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
use serde::{Deserialize, Serialize};
use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};
use tract_onnx::prelude::tract_ndarray::{Array1, Array2};

/// A study's own weights for the pinned model's layers from `first` up, as replacements for
/// the pinned graph's initializers of the same names (plain data, shipped in a compiled study).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunedLayers {
    pub first: usize,
    pub tensors: Vec<NamedTensor>,
}

/// One initializer: int8 (a matrix) or floats (a scale, a bias, a norm's gain or shift).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    pub name: String,
    pub dims: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "hex_i8")]
    pub int8: Vec<i8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floats: Vec<f32>,
}

impl NamedTensor {
    fn proto(&self) -> Result<TensorProto, String> {
        let count: usize = self.dims.iter().product();
        let (data_type, raw_data) = match (self.int8.len(), self.floats.len()) {
            (n, 0) if n == count => (DataType::Int8, self.int8.iter().map(|&v| v as u8).collect()),
            (0, n) if n == count => (
                DataType::Float,
                self.floats.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            _ => return Err(format!("`{}` does not hold {count} values of one type", self.name)),
        };
        // A NaN or an infinity would run through every later layer into every embedding.
        if let Some(v) = self.floats.iter().find(|v| !v.is_finite()) {
            return Err(format!("`{}` holds {v}", self.name));
        }
        Ok(TensorProto {
            name: self.name.clone(),
            dims: self.dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type as i32,
            raw_data,
            ..Default::default()
        })
    }
}

/// Int8 values as a hexadecimal string in JSON.
mod hex_i8 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &[i8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(values.iter().map(|&v| v as u8).collect::<Vec<u8>>()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i8>, D::Error> {
        let bytes = hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)?;
        Ok(bytes.into_iter().map(|b| b as i8).collect())
    }
}

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
pub fn layer_initializers(graph: &GraphProto, layer: usize, weights: &Layer) -> Result<Vec<NamedTensor>, String> {
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
        let (rows, cols) = d.weight.dim();
        out.push(NamedTensor {
            name: q.clone(),
            dims: vec![rows, cols],
            int8: quantized,
            floats: Vec::new(),
        });
        out.push(float_tensor(scale, vec![1, cols], scales));
        out.push(float_tensor(bias, vec![d.bias.len()], d.bias.to_vec()));
    }
    for ((gain, bias), n) in names.norms.iter().zip([&weights.attention_norm, &weights.output_norm]) {
        out.push(float_tensor(gain, vec![n.gain.len()], n.gain.to_vec()));
        out.push(float_tensor(bias, vec![n.bias.len()], n.bias.to_vec()));
    }
    Ok(out)
}

fn float_tensor(name: &str, dims: Vec<usize>, values: Vec<f32>) -> NamedTensor {
    NamedTensor {
        name: name.into(),
        dims,
        int8: Vec::new(),
        floats: values,
    }
}

/// The initializers that give the graph's layers from `first` up the weights `layers`.
pub fn tuned_layers(graph: &GraphProto, first: usize, layers: &[Layer]) -> Result<TunedLayers, String> {
    let mut tensors = Vec::new();
    for (l, layer) in (first..).zip(layers) {
        tensors.extend(layer_initializers(graph, l, layer)?);
    }
    Ok(TunedLayers { first, tensors })
}

/// Replaces the graph's initializers of the same names by `tensors`, each of which must have
/// the shape and type of the one it replaces and belong to a layer from `first` up.
pub fn replace_initializers(graph: &mut GraphProto, tuned: &TunedLayers) -> Result<(), String> {
    let allowed: std::collections::HashSet<String> = (tuned.first..)
        .map_while(|l| layer_tensors(graph, l).ok())
        .flat_map(|names| {
            (names.dense.into_iter().flat_map(|(q, s, b)| [q, s, b]))
                .chain(names.norms.into_iter().flat_map(|(g, b)| [g, b]))
        })
        .collect();
    for t in &tuned.tensors {
        if !allowed.contains(&t.name) {
            return Err(format!(
                "`{}` is not a weight of the layers from {} up",
                t.name, tuned.first
            ));
        }
        let t = t.proto()?;
        let slot = (graph.initializer.iter_mut().find(|i| i.name == t.name))
            .ok_or_else(|| format!("the graph has no initializer `{}` to replace", t.name))?;
        if slot.dims != t.dims || slot.data_type != t.data_type {
            return Err(format!(
                "`{}` does not have the shape and type of the pinned tensor",
                t.name
            ));
        }
        *slot = t;
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
