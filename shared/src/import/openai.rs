//! OpenAI-style messages, one conversation per JSON Lines line (or per array element):
//! `{"messages": [{"role": "user"|"assistant"|"system"|"tool", "content": ...}]}`.

use super::text_of_parts;
use crate::conversation::{Conversation, Role, Turn};
use serde_json::Value;

pub fn matches(v: &Value) -> bool {
    v.get("messages")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().all(|t| t.get("role").is_some()))
}

pub fn parse(v: &Value, fallback_id: &str) -> Result<Conversation, String> {
    let id = v.get("id").and_then(Value::as_str).unwrap_or(fallback_id).to_owned();
    let title = v.get("title").and_then(Value::as_str).map(str::to_owned);
    let turns = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("no `messages` array")?
        .iter()
        .filter_map(|m| {
            let role = match m.get("role")?.as_str()? {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                _ => return None,
            };
            // An assistant message that only calls tools has no visible text.
            let text = match m.get("content")? {
                Value::String(s) => s.clone(),
                parts @ Value::Array(_) => text_of_parts(parts),
                _ => return None,
            };
            let text = text.trim();
            (!text.is_empty()).then(|| Turn {
                role,
                text: text.to_owned(),
                is_code: false,
            })
        })
        .collect();
    Ok(Conversation {
        id,
        title,
        created: None,
        turns,
    })
}
