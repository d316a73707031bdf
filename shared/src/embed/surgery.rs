//! A rewrite of the ONNX graph at load time: look rows up before dequantizing them.
//!
//! The pinned model stores its embedding tables as int8 with a per-row scale, and dequantizes
//! the whole table (`Cast` to f32, then `Mul` by the scale) before the `Gather` that picks the
//! rows for the input tokens. For the 30,522 × 384 word table that is 11.7 million conversions
//! per call to use a few hundred rows. Gathering the int8 rows and their scales first, then
//! dequantizing only those, computes exactly the same values.

use tract_onnx::pb::{self, attribute_proto::AttributeType, tensor_proto::DataType, NodeProto};

/// Rewrites every `Gather(Mul(Cast(Q), S), idx)` whose `Q` and `S` are initializers into
/// `Mul(Cast(Gather(Q, idx)), Gather(S, idx))`. Returns how many gathers were rewritten.
pub fn gather_before_dequantize(graph: &mut pb::GraphProto) -> usize {
    let mut rewritten = 0;
    let mut i = 0;
    while i < graph.node.len() {
        let Some((quantized, scale)) = dequantized_table(graph, &graph.node[i]) else {
            i += 1;
            continue;
        };
        let table = graph.node[i].input[0].clone();
        let replacement = gather_rows_then_dequantize(&graph.node[i], quantized, scale);
        graph.node.splice(i..=i, replacement);
        i += 4;
        rewritten += 1;
        remove_unused(graph, &table);
    }
    rewritten
}

/// For `Gather(Mul(Cast(Q), S), idx)` with `Q` and `S` initializers: the names of `Q` and `S`.
fn dequantized_table(graph: &pb::GraphProto, gather: &NodeProto) -> Option<(String, String)> {
    let is_initializer = |name: &str| graph.initializer.iter().any(|t| t.name == name);
    let producer = |output: &str| graph.node.iter().find(|n| n.output.iter().any(|o| o == output));
    if gather.op_type != "Gather" || gather.input.len() != 2 {
        return None;
    }
    let mul = producer(&gather.input[0])?;
    if mul.op_type != "Mul" || mul.input.len() != 2 || !is_initializer(&mul.input[1]) {
        return None;
    }
    let cast = producer(&mul.input[0])?;
    let quantized = cast.input.first()?;
    (cast.op_type == "Cast" && is_initializer(quantized)).then(|| (quantized.clone(), mul.input[1].clone()))
}

/// The four nodes that replace `gather`: gather the int8 rows and their scales, cast the rows to
/// f32, multiply by the scales (into `gather`'s output).
fn gather_rows_then_dequantize(gather: &NodeProto, quantized: String, scale: String) -> Vec<NodeProto> {
    let (indices, output) = (gather.input[1].clone(), gather.output[0].clone());
    let name = |suffix: &str| format!("{}_{suffix}", gather.name);
    let node =
        |op: &str, name: String, inputs: Vec<String>, output: String, attribute: Vec<pb::AttributeProto>| NodeProto {
            op_type: op.into(),
            name,
            input: inputs,
            output: vec![output],
            attribute,
            ..Default::default()
        };
    let to_f32 = pb::AttributeProto {
        name: "to".into(),
        r#type: AttributeType::Int as i32,
        i: DataType::Float as i64,
        ..Default::default()
    };
    vec![
        node(
            "Gather",
            name("rows_q"),
            vec![quantized, indices.clone()],
            name("rows_q"),
            gather.attribute.clone(),
        ),
        node(
            "Gather",
            name("rows_scale"),
            vec![scale, indices],
            name("rows_scale"),
            gather.attribute.clone(),
        ),
        node(
            "Cast",
            name("rows_f"),
            vec![name("rows_q")],
            name("rows_f"),
            vec![to_f32],
        ),
        node(
            "Mul",
            name("rows"),
            vec![name("rows_f"), name("rows_scale")],
            output,
            vec![],
        ),
    ]
}

/// Removes the node producing `output` if nothing reads it any more, and then its own inputs.
fn remove_unused(graph: &mut pb::GraphProto, output: &str) {
    let used =
        graph.node.iter().any(|n| n.input.iter().any(|i| i == output)) || graph.output.iter().any(|o| o.name == output);
    if used {
        return;
    }
    if let Some(p) = graph.node.iter().position(|n| n.output.iter().any(|o| o == output)) {
        let node = graph.node.remove(p);
        for input in &node.input {
            remove_unused(graph, input);
        }
    }
}
