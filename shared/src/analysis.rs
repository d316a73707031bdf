//! The analysis record: what a device works out about one of its own conversations. Facets and
//! the classifiers fill it in ([`crate::pipeline`]); privacy turns it into a report; it never
//! leaves the device.

use serde::{Deserialize, Serialize};

/// What the device knows about one of its own conversations. It stays on the device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Analysis {
    /// The conversation's id in the export.
    pub id: String,
    /// ISO 639-1 code of the user's turns, or `und`.
    pub language: String,
    /// Category id from the study's taxonomy.
    pub category: String,
    /// Concern level 1 (none) to 5 (extreme).
    pub concern: u8,
    /// Ids of the topics of the study's codebook the request falls in, top level first, down
    /// to the nearest leaf (none without a codebook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_path: Option<Vec<String>>,
    pub turns: u32,
    pub chars: u64,
    pub has_code: bool,
    /// The request text's embedding (unit length), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// The classifier's probability for each category (in the study's order), with the
    /// embedding: the category a report carries is drawn from these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_probabilities: Option<Vec<f32>>,
}
