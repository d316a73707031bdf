//! The one in-memory shape every export format is read into.

/// Who wrote a turn. System prompts, tool calls and tool results are not turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One visible user or assistant message, as the person saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
    /// The export marked this message as code (e.g. ChatGPT's `content_type: "code"`).
    pub is_code: bool,
}

/// A conversation read from an export: its id in that export, its title if the export has one,
/// the day it was started if the export says, and its visible turns in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    pub title: Option<String>,
    /// The day the conversation was started (UTC, `YYYY-MM-DD`), for the contributor's review
    /// on the device; never reported.
    pub created: Option<String>,
    pub turns: Vec<Turn>,
}

impl Conversation {
    /// The first message the user wrote, if any.
    pub fn first_user_text(&self) -> Option<&str> {
        self.turns
            .iter()
            .find(|t| t.role == Role::User)
            .map(|t| t.text.as_str())
    }

    /// All user turns, in order.
    pub fn user_texts(&self) -> impl Iterator<Item = &str> {
        self.turns
            .iter()
            .filter(|t| t.role == Role::User)
            .map(|t| t.text.as_str())
    }
}
