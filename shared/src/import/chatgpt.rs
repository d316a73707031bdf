//! ChatGPT data export: `conversations.json` (or split `conversations-NNN.json`), an array of
//! conversations, each a `mapping` tree of message nodes. The visible conversation is the path
//! from the root to `current_node`; abandoned edit branches hang off that path and are ignored.

use super::text_of_parts;
use crate::conversation::{Conversation, Role, Turn};
use serde_json::Value;

pub fn matches(v: &Value) -> bool {
    v.get("mapping").is_some_and(Value::is_object)
}

pub fn parse(v: &Value) -> Result<Conversation, String> {
    let mapping = v
        .get("mapping")
        .and_then(Value::as_object)
        .ok_or("no `mapping` object")?;
    let id = string_field(v, "conversation_id")
        .or_else(|| string_field(v, "id"))
        .ok_or("no `id` or `conversation_id`")?;
    let title = string_field(v, "title");

    let leaf = match string_field(v, "current_node") {
        Some(node) => node,
        None => last_branch_leaf(mapping).ok_or("no `current_node` and no root node")?,
    };
    // Walk up from the leaf to the root, guarding against cycles in a damaged file.
    let mut path = Vec::new();
    let mut cursor = Some(leaf);
    while let Some(node_id) = cursor {
        if path.len() > mapping.len() {
            return Err("the `parent` links form a cycle".into());
        }
        let node = mapping
            .get(&node_id)
            .ok_or_else(|| format!("node `{node_id}` is referenced but missing"))?;
        path.push(node);
        cursor = node.get("parent").and_then(Value::as_str).map(str::to_owned);
    }
    path.reverse();

    let turns = path
        .iter()
        .filter_map(|node| visible_turn(node.get("message")?))
        .collect();
    let created = v
        .get("create_time")
        .and_then(Value::as_f64)
        .and_then(super::day_of_unix);
    Ok(Conversation {
        id,
        title,
        created,
        turns,
    })
}

/// Exports without `current_node` (older or hand-made files): follow the last child from the root.
fn last_branch_leaf(mapping: &serde_json::Map<String, Value>) -> Option<String> {
    let root = mapping
        .iter()
        .find(|(_, n)| n.get("parent").is_none_or(Value::is_null))?;
    let mut id = root.0.clone();
    let mut steps = 0;
    while let Some(next) = mapping
        .get(&id)
        .and_then(|n| n.get("children"))
        .and_then(Value::as_array)
        .and_then(|c| c.last())
        .and_then(Value::as_str)
    {
        steps += 1;
        if steps > mapping.len() {
            return None;
        }
        id = next.to_owned();
    }
    Some(id)
}

/// A message the person saw in the chat window, or `None` for everything else: system and tool
/// messages, hidden nodes, custom instructions, and assistant calls addressed to a tool.
fn visible_turn(message: &Value) -> Option<Turn> {
    let role = match message.pointer("/author/role")?.as_str()? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        _ => return None,
    };
    let metadata = message.get("metadata");
    let hidden = |key| metadata.and_then(|m| m.get(key)).and_then(Value::as_bool) == Some(true);
    if hidden("is_visually_hidden_from_conversation") || hidden("is_user_system_message") {
        return None;
    }
    if message
        .get("recipient")
        .and_then(Value::as_str)
        .is_some_and(|r| r != "all")
    {
        return None;
    }
    let content = message.get("content")?;
    let content_type = content.get("content_type").and_then(Value::as_str).unwrap_or("text");
    let (text, is_code) = match content_type {
        "text" | "multimodal_text" => (text_of_parts(content.get("parts")?), false),
        "code" => (content.get("text")?.as_str()?.to_owned(), true),
        // user_editable_context (custom instructions), model_editable_context (memory),
        // tether_* (browsing), execution_output, thoughts, system_error, …: not chat turns.
        _ => return None,
    };
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(Turn {
        role,
        text: text.to_owned(),
        is_code,
    })
}

fn string_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}
