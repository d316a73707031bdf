//! Whether a conversation contains code: fenced blocks, code-typed messages, or several lines
//! that read as source code.

use crate::conversation::Conversation;

/// Lines that look like source code needed to call an unfenced message code.
const CODE_LINES: usize = 3;

pub fn has_code(conversation: &Conversation) -> bool {
    conversation
        .turns
        .iter()
        .any(|t| t.is_code || t.text.contains("```") || code_like_lines(&t.text) >= CODE_LINES)
}

/// Removes fenced code blocks, leaving the prose (for language detection).
pub fn without_code_blocks(text: &str) -> String {
    text.split("```").step_by(2).collect::<Vec<_>>().join(" ")
}

fn code_like_lines(text: &str) -> usize {
    const STARTS: [&str; 24] = [
        "def ",
        "import ",
        "from ",
        "#include",
        "public ",
        "private ",
        "function ",
        "const ",
        "let ",
        "var ",
        "class ",
        "return ",
        "if (",
        "for (",
        "while (",
        "<div",
        "<?php",
        "SELECT ",
        "select ",
        "INSERT ",
        "package ",
        "fn ",
        "func ",
        "@",
    ];
    text.lines()
        .map(str::trim)
        .filter(|l| {
            l.ends_with(';')
                || l.ends_with('{')
                || *l == "}"
                || l.ends_with("):")
                || STARTS.iter().any(|s| l.starts_with(s))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{Role, Turn};

    fn conv(text: &str) -> Conversation {
        Conversation {
            id: "c".into(),
            title: None,
            created: None,
            turns: vec![Turn {
                role: Role::User,
                text: text.into(),
                is_code: false,
            }],
        }
    }

    #[test]
    fn finds_fenced_and_unfenced_code() {
        assert!(has_code(&conv("fix this:\n```py\nprint(1)\n```")));
        assert!(has_code(&conv("int main() {\n  int a = 1;\n  return a;\n}")));
        assert!(!has_code(&conv("Write me a poem about the sea.\nMake it rhyme.")));
    }

    #[test]
    fn strips_fenced_blocks() {
        assert_eq!(without_code_blocks("a ```x``` b ```y``` c"), "a   b   c");
    }
}
