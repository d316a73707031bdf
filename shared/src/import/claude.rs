//! Claude data export: `conversations.json`, an array of conversations with `chat_messages`
//! (sender `human` or `assistant`; the words in `text` and/or in `content` blocks).

use crate::conversation::{Conversation, Role, Turn};
use serde_json::Value;

pub fn matches(v: &Value) -> bool {
    v.get("chat_messages").is_some_and(Value::is_array)
}

pub fn parse(v: &Value) -> Result<Conversation, String> {
    let id = v.get("uuid").and_then(Value::as_str).ok_or("no `uuid`")?.to_owned();
    let title = v.get("name").and_then(Value::as_str).map(str::to_owned);
    let messages = v
        .get("chat_messages")
        .and_then(Value::as_array)
        .ok_or("no `chat_messages`")?;
    let turns = messages
        .iter()
        .filter_map(|m| {
            let role = match m.get("sender")?.as_str()? {
                "human" => Role::User,
                "assistant" => Role::Assistant,
                _ => return None,
            };
            let text = message_text(m);
            let text = text.trim();
            (!text.is_empty()).then(|| Turn {
                role,
                text: text.to_owned(),
                is_code: false,
            })
        })
        .collect();
    let created = v.get("created_at").and_then(Value::as_str).and_then(super::iso_day);
    Ok(Conversation {
        id,
        title,
        created,
        turns,
    })
}

/// The `content` text blocks when present (newer exports), else the flat `text` field.
/// Tool-use and tool-result blocks are not what the person saw as the message.
fn message_text(m: &Value) -> String {
    let blocks: Vec<&str> = m
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if blocks.iter().any(|b| !b.trim().is_empty()) {
        blocks.join("\n")
    } else {
        m.get("text").and_then(Value::as_str).unwrap_or_default().to_owned()
    }
}
