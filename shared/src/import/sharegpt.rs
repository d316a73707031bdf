//! ShareGPT-style JSON: `{"id": ..., "conversations": [{"from": "human"|"gpt", "value": ...}]}`.

use crate::conversation::{Conversation, Role, Turn};
use serde_json::Value;

pub fn matches(v: &Value) -> bool {
    v.get("conversations")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().all(|t| t.get("from").is_some() || t.get("value").is_some()))
}

pub fn parse(v: &Value, fallback_id: &str) -> Result<Conversation, String> {
    let id = v.get("id").and_then(Value::as_str).unwrap_or(fallback_id).to_owned();
    let turns = v
        .get("conversations")
        .and_then(Value::as_array)
        .ok_or("no `conversations` array")?
        .iter()
        .filter_map(|t| {
            let role = match t.get("from")?.as_str()? {
                "human" | "user" => Role::User,
                "gpt" | "assistant" | "chatgpt" | "bard" | "bing" | "model" => Role::Assistant,
                _ => return None,
            };
            let text = t.get("value")?.as_str()?.trim();
            (!text.is_empty()).then(|| Turn {
                role,
                text: text.to_owned(),
                is_code: false,
            })
        })
        .collect();
    Ok(Conversation {
        id,
        title: None,
        created: None,
        turns,
    })
}
