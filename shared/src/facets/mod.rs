//! Facets: what is computed about one conversation on the contributor's device, without a
//! language model. The facets that need the embedding (category, concern) are computed by the
//! study's classifier in [`crate::study`]; the rest are here.

mod code;
mod language;
pub mod pii;

use crate::conversation::{Conversation, Role};

/// Longest request text kept, in characters. The embedder reads at most 64 tokens (about 250
/// characters of English); the category classifier counts the words of all of it.
pub const MAX_REQUEST_CHARS: usize = 1500;

/// Facets that come from the text alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFacets {
    /// ISO 639-1 code of the user's turns, or `und`.
    pub language: &'static str,
    /// Visible user and assistant messages.
    pub turns: u32,
    /// Characters in all visible messages.
    pub chars: u64,
    pub has_code: bool,
}

pub fn text_facets(conversation: &Conversation) -> TextFacets {
    let user_prose: String = conversation
        .user_texts()
        .map(code::without_code_blocks)
        .collect::<Vec<_>>()
        .join("\n");
    TextFacets {
        language: language::detect(&user_prose),
        turns: conversation.turns.len() as u32,
        chars: conversation.turns.iter().map(|t| t.text.chars().count() as u64).sum(),
        has_code: code::has_code(conversation),
    }
}

/// The text that stands for the conversation's request: its title when the export has a
/// meaningful one (ChatGPT and Claude titles are short model-written summaries), then the first
/// user message; PII-scrubbed and truncated. It is embedded on the device and never sent.
pub fn request_text(conversation: &Conversation) -> String {
    let first = conversation.first_user_text().unwrap_or_default();
    let text = match conversation.title.as_deref().map(str::trim) {
        Some(title) if is_meaningful_title(title) && !first.starts_with(title) => {
            format!("{title}\n{first}")
        }
        _ => first.to_owned(),
    };
    let truncated: String = text.chars().take(MAX_REQUEST_CHARS).collect();
    pii::scrub(&truncated)
}

/// ISO 639-1 code of a text's language, or `und`: as [`text_facets`] detects a conversation's.
pub fn language_of(text: &str) -> &'static str {
    language::detect(&code::without_code_blocks(text))
}

/// Words of the assistant's first reply the category classifier reads. Its opening names the
/// task ("Here is a Python function that…", "Subject: …"): on the default study's labelled
/// examples the first 24 words added as much accuracy as the whole reply, at a quarter of the
/// embedding time.
pub const REPLY_WORDS: usize = 24;
/// Longest reply excerpt, in characters: scripts without spaces between words stop here.
pub const MAX_REPLY_CHARS: usize = 200;

/// The opening of the assistant's first reply, as the category classifier reads it: its first
/// [`REPLY_WORDS`] words (at most [`MAX_REPLY_CHARS`] characters), PII-scrubbed. `None` when
/// the conversation has no reply. Like the request text, it is embedded on the device and
/// never sent.
pub fn reply_text(conversation: &Conversation) -> Option<String> {
    let reply = conversation
        .turns
        .iter()
        .skip_while(|t| t.role != Role::User)
        .find(|t| t.role == Role::Assistant && !t.text.trim().is_empty())?;
    Some(reply_excerpt(&reply.text))
}

/// [`reply_text`] of a reply's text; labelled examples' replies go through it too.
pub fn reply_excerpt(reply: &str) -> String {
    let words: Vec<&str> = reply.split_whitespace().take(REPLY_WORDS).collect();
    let excerpt: String = words.join(" ").chars().take(MAX_REPLY_CHARS).collect();
    pii::scrub(&excerpt)
}

/// Longest excerpt of the assistant's replies whose words the category classifier reads, in
/// characters (about 300 words). On the default study's labelled examples (scikit-learn
/// reference runs) the words of the replies' first 1,000 characters added 1.2 points of
/// held-out accuracy to the request's and the reply opening's words, of the first 3,000 1.8.
/// Counting words costs a device nothing next to embedding a text; the cap bounds it and the
/// labelled examples' size.
pub const MAX_REPLIES_CHARS: usize = 2000;

/// The assistant's replies, joined, as the category classifier reads their words: their first
/// [`MAX_REPLIES_CHARS`] characters, PII-scrubbed (replies before the first request, a
/// greeting, do not count). `None` when the conversation has no reply. Never embedded and
/// never sent: only the category its words help choose is reported.
pub fn replies_text(conversation: &Conversation) -> Option<String> {
    let mut replies = (conversation.turns.iter())
        .skip_while(|t| t.role != Role::User)
        .filter(|t| t.role == Role::Assistant && !t.text.trim().is_empty())
        .map(|t| t.text.as_str())
        .peekable();
    replies.peek()?;
    // The replies joined by newlines, read only as far as the excerpt goes: a conversation
    // with megabytes of replies is not copied whole.
    let joined = (replies.enumerate()).flat_map(|(i, text)| (i > 0).then_some('\n').into_iter().chain(text.chars()));
    Some(excerpt_of(joined))
}

/// [`replies_text`] of the replies' joined text; labelled examples' replies go through it too.
pub fn replies_excerpt(replies: &str) -> String {
    excerpt_of(replies.chars())
}

fn excerpt_of(chars: impl Iterator<Item = char>) -> String {
    pii::scrub(&chars.take(MAX_REPLIES_CHARS).collect::<String>())
}

fn is_meaningful_title(title: &str) -> bool {
    const PLACEHOLDERS: [&str; 5] = ["new chat", "untitled", "new conversation", "chat", "conversation"];
    !title.is_empty() && !PLACEHOLDERS.contains(&title.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Role, Turn};

    fn conv(title: Option<&str>, turns: &[(Role, &str)]) -> Conversation {
        Conversation {
            id: "c1".into(),
            title: title.map(Into::into),
            created: None,
            turns: turns
                .iter()
                .map(|(role, text)| Turn {
                    role: *role,
                    text: (*text).into(),
                    is_code: false,
                })
                .collect(),
        }
    }

    #[test]
    fn request_text_is_title_and_first_request_scrubbed() {
        let c = conv(
            Some("Email to landlord"),
            &[
                (Role::User, "Write to bob@example.com about the leak"),
                (Role::Assistant, "Sure"),
                (Role::User, "shorter"),
            ],
        );
        assert_eq!(request_text(&c), "Email to landlord\nWrite to [email] about the leak");
        let untitled = conv(Some("New chat"), &[(Role::User, "hello there")]);
        assert_eq!(request_text(&untitled), "hello there");
    }

    #[test]
    fn reply_text_is_the_first_reply_cut_to_its_first_words_and_scrubbed() {
        let long = format!("Here is the e-mail to bob@example.com: {}", "word ".repeat(100));
        let c = conv(
            None,
            &[
                (Role::Assistant, "Welcome"),
                (Role::User, "Write to Bob"),
                (Role::Assistant, "  "),
                (Role::Assistant, &long),
                (Role::Assistant, "Anything else?"),
            ],
        );
        let reply = reply_text(&c).unwrap();
        assert!(reply.starts_with("Here is the e-mail to [email]: word"), "{reply}");
        assert_eq!(reply.split_whitespace().count(), REPLY_WORDS);
        let unspaced = conv(None, &[(Role::User, "你好"), (Role::Assistant, &"好".repeat(500))]);
        assert_eq!(reply_text(&unspaced).unwrap().chars().count(), MAX_REPLY_CHARS);
        assert_eq!(reply_text(&conv(None, &[(Role::User, "hello")])), None);
    }

    #[test]
    fn replies_text_joins_every_reply_after_the_first_request_cut_and_scrubbed() {
        let c = conv(
            None,
            &[
                (Role::Assistant, "Welcome"),
                (Role::User, "Write to Bob"),
                (Role::Assistant, "Here is the e-mail to bob@example.com"),
                (Role::User, "Shorter"),
                (Role::Assistant, " "),
                (Role::Assistant, "Dear Bob"),
            ],
        );
        assert_eq!(replies_text(&c).unwrap(), "Here is the e-mail to [email]\nDear Bob");
        let long = conv(None, &[(Role::User, "hi"), (Role::Assistant, &"word ".repeat(1000))]);
        assert_eq!(replies_text(&long).unwrap().chars().count(), MAX_REPLIES_CHARS);
        // Cut inside the second reply: the same as cutting the joined replies.
        let (first, second) = ("é".repeat(MAX_REPLIES_CHARS - 10), "mot ".repeat(100));
        let two = conv(
            None,
            &[
                (Role::User, "hi"),
                (Role::Assistant, &first),
                (Role::Assistant, &second),
            ],
        );
        assert_eq!(
            replies_text(&two).unwrap(),
            replies_excerpt(&format!("{first}\n{second}"))
        );
        assert_eq!(replies_text(&conv(None, &[(Role::User, "hello")])), None);
    }

    #[test]
    fn request_text_is_truncated() {
        let long = "word ".repeat(1000);
        let c = conv(None, &[(Role::User, &long)]);
        assert_eq!(request_text(&c).chars().count(), MAX_REQUEST_CHARS);
    }

    #[test]
    fn text_facets_count_turns_and_chars() {
        let c = conv(
            None,
            &[
                (Role::User, "Bonjour, pouvez-vous m'aider à écrire une lettre ?"),
                (Role::Assistant, "Oui"),
            ],
        );
        let f = text_facets(&c);
        assert_eq!((f.language, f.turns, f.has_code), ("fr", 2, false));
        assert_eq!(f.chars, 50 + 3);
    }
}
