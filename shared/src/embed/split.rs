//! The pinned graph cut between two transformer layers: the layers below the cut, which output
//! their hidden states, and the layers above it as a graph of its own that takes those
//! hidden states as input. Running the upper part on the lower part's hidden states computes
//! exactly what the whole graph computes; running it with other weights for the upper layers
//! (one study's, say) reuses the lower layers' work.

use tract_onnx::pb::{GraphProto, ValueInfoProto};

/// The name of the tensor that holds the hidden states after the first `layers` transformer
/// layers: each layer ends with its second `LayerNormalization` (the embeddings have one of
/// their own before the first layer). None when the graph has fewer layers.
pub fn hidden_state_after(graph: &GraphProto, layers: usize) -> Option<String> {
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "LayerNormalization")
        .nth(2 * layers)
        .and_then(|n| n.output.first().cloned())
}

/// The part of the graph that computes its outputs from `boundary`: the nodes and initializers
/// they need, with `boundary` as the first input, followed by every original input they still
/// read (the attention mask, and whatever the exported graph derives shapes from), in the
/// original order.
pub fn above(graph: &GraphProto, boundary: &str) -> GraphProto {
    let producer = |tensor: &str| graph.node.iter().position(|n| n.output.iter().any(|o| o == tensor));
    let mut needed = vec![false; graph.node.len()];
    let mut read = std::collections::HashSet::new();
    let mut pending: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    while let Some(tensor) = pending.pop() {
        if tensor.is_empty() || !read.insert(tensor.clone()) || tensor == boundary {
            continue;
        }
        if let Some(p) = producer(&tensor).filter(|&p| !needed[p]) {
            needed[p] = true;
            pending.extend(graph.node[p].input.iter().cloned());
        }
    }
    let mut input = vec![hidden_state_info(graph, boundary)];
    input.extend(graph.input.iter().filter(|i| read.contains(&i.name)).cloned());
    GraphProto {
        node: (graph.node.iter().zip(&needed))
            .filter(|(_, &n)| n)
            .map(|(node, _)| node.clone())
            .collect(),
        initializer: (graph.initializer.iter())
            .filter(|t| read.contains(&t.name))
            .cloned()
            .collect(),
        input,
        output: graph.output.clone(),
        name: format!("{} above {boundary}", graph.name),
        ..Default::default()
    }
}

/// `name` typed as the graph's first output is (the last layer's hidden states: floats,
/// batch × tokens × width), which every layer's hidden states share.
fn hidden_state_info(graph: &GraphProto, name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: graph.output.first().and_then(|o| o.r#type.clone()),
        ..Default::default()
    }
}

/// The part of the graph that computes `boundary`: the whole graph with `boundary` as its only
/// output (planning leaves out the layers above it).
pub fn below(graph: &GraphProto, boundary: &str) -> GraphProto {
    GraphProto {
        output: vec![hidden_state_info(graph, boundary)],
        ..graph.clone()
    }
}

/// The whole graph with the hidden states `extra` as outputs after its own.
pub fn with_outputs(graph: &GraphProto, extra: &[String]) -> GraphProto {
    let mut output = graph.output.clone();
    output.extend(extra.iter().map(|name| hidden_state_info(graph, name)));
    GraphProto {
        output,
        ..graph.clone()
    }
}
