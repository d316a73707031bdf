use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The facets a report can carry, each as an index into a public domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Category,
    Language,
    Concern,
    Turns,
    HasCode,
    /// The top-level topic of the study's public codebook.
    TopicTop,
    /// The second-level topic of the codebook.
    TopicMid,
    /// The leaf of the codebook (`topic` on the wire).
    #[serde(rename = "topic")]
    TopicLeaf,
}

impl Channel {
    pub const ALL: [Channel; 8] = [
        Channel::Category,
        Channel::Language,
        Channel::Concern,
        Channel::Turns,
        Channel::HasCode,
        Channel::TopicTop,
        Channel::TopicMid,
        Channel::TopicLeaf,
    ];

    pub fn is_topic(self) -> bool {
        matches!(self, Channel::TopicTop | Channel::TopicMid | Channel::TopicLeaf)
    }

    /// The codebook level a topic channel reports (0 is the top; `depth` levels in all).
    pub fn topic_level(self, depth: usize) -> Option<usize> {
        match self {
            Channel::TopicTop => Some(0),
            Channel::TopicMid => Some(1),
            Channel::TopicLeaf => Some(depth.checked_sub(1)?),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Channel::Category => "category",
            Channel::Language => "language",
            Channel::Concern => "concern",
            Channel::Turns => "turns",
            Channel::HasCode => "has_code",
            Channel::TopicTop => "topic_top",
            Channel::TopicMid => "topic_mid",
            Channel::TopicLeaf => "topic",
        }
    }
}
