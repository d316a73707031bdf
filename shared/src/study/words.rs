//! The words of a conversation's request and reply, as the category classifier reads them
//! beside the embeddings: tf-idf weights of a vocabulary fitted to the study's labelled texts.
//!
//! The embeddings place a text among texts of similar meaning; some categories are told apart
//! by a few telling words ("essay", "SQL", "translate") that a 384-float mean of token states
//! blurs. On the default study the words add about half a point to a point of held-out
//! accuracy (`chorus study evaluate`, step "without words"). The words never leave the device:
//! they are counted there, from the same PII-scrubbed texts that are embedded, and only the
//! category they help choose goes through the privacy layer.

use serde::{Deserialize, Serialize};

/// A word seen in fewer labelled texts than this is not in the vocabulary: it cannot be
/// learned from one example and be checked on another.
const MIN_TEXTS: usize = 2;

/// The vocabulary, sorted so that a device finds a word by binary search, with each word's
/// inverse document frequency.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Words {
    pub vocabulary: Vec<String>,
    pub idf: Vec<f32>,
    /// Whether the classifier also reads the words of the assistant's replies
    /// ([`crate::facets::replies_text`]), a third block after the request's and the reply
    /// opening's: for a study whose labelled examples carry their replies.
    #[serde(default)]
    pub replies: bool,
}

impl Words {
    /// The `size` words found in the most `texts` (at least [`MIN_TEXTS`]; ties by the word),
    /// with smoothed inverse document frequencies `ln((1 + n) / (1 + df)) + 1`. Labels play no
    /// part: fitting it on every labelled text, held out or not, leaks nothing about their
    /// categories.
    pub fn fit(texts: &[&str], size: usize) -> Words {
        let mut frequency: std::collections::HashMap<String, usize> = Default::default();
        for text in texts {
            let mut words = tokens(text);
            words.sort_unstable();
            words.dedup();
            words.into_iter().for_each(|w| *frequency.entry(w).or_default() += 1);
        }
        let mut common: Vec<(String, usize)> = frequency.into_iter().filter(|(_, df)| *df >= MIN_TEXTS).collect();
        common.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        common.truncate(size);
        common.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let n = texts.len() as f64;
        Words {
            idf: common
                .iter()
                .map(|(_, df)| (((1.0 + n) / (1.0 + *df as f64)).ln() + 1.0) as f32)
                .collect(),
            vocabulary: common.into_iter().map(|(w, _)| w).collect(),
            replies: false,
        }
    }

    pub fn len(&self) -> usize {
        self.vocabulary.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vocabulary.is_empty()
    }

    /// How many floats the classifier's word features are: a block of the vocabulary's size
    /// per text it reads.
    pub fn width(&self) -> usize {
        self.len() * if self.replies { 3 } else { 2 }
    }

    /// The classifier's word features: the request's, then the reply opening's (the request's
    /// again when there is no reply, as for the embeddings), then, when it reads them, the
    /// replies' (the opening's when only that is known).
    pub fn text_features(&self, texts: CategoryTexts) -> Vec<f32> {
        let reply = texts.reply.unwrap_or(texts.request);
        let mut x = [self.features(texts.request), self.features(reply)].concat();
        if self.replies {
            x.extend(self.features(texts.replies.unwrap_or(reply)));
        }
        x
    }

    /// `text`'s weight for each word of the vocabulary: `(1 + ln count) × idf`, at unit length
    /// (all zero when no word of it is in the vocabulary).
    pub fn features(&self, text: &str) -> Vec<f32> {
        let mut x = vec![0f32; self.len()];
        for word in tokens(text) {
            if let Ok(i) = self.vocabulary.binary_search(&word) {
                x[i] += 1.0;
            }
        }
        x.iter_mut()
            .zip(&self.idf)
            .filter(|(c, _)| **c > 0.0)
            .for_each(|(c, idf)| *c = (1.0 + c.ln()) * idf);
        crate::embed::normalize(&mut x);
        x
    }
}

/// The texts of a conversation whose words the category classifier reads, prepared as a device
/// prepares them ([`crate::facets`]): the request, the opening of the first reply, the replies.
#[derive(Debug, Clone, Copy)]
pub struct CategoryTexts<'a> {
    pub request: &'a str,
    pub reply: Option<&'a str>,
    pub replies: Option<&'a str>,
}

/// A text's words: lowercase runs of letters, digits and underscores, two characters or more.
fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().nth(1).is_some())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vocabulary_keeps_words_of_two_texts_or_more() {
        let words = Words::fit(&["Write an essay", "an SQL query", "write the SQL, please", "a"], 10);
        assert_eq!(words.vocabulary, ["an", "sql", "write"]);
        // Each in two of four texts: ln(5 / 3) + 1.
        assert!(words.idf.iter().all(|&idf| (idf - 1.5108).abs() < 1e-3));
        // Only the most common word when one is asked for.
        assert_eq!(Words::fit(&["bb aa", "aa bb", "aa cc"], 1).vocabulary, ["aa"]);
    }

    #[test]
    fn features_are_unit_length_tf_idf() {
        let words = Words::fit(&["sql sql query", "sql query", "essay"], 10);
        let x = words.features("SQL: the query, the SQL");
        let norm: f32 = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        // "sql" twice (1 + ln 2) against "query" once, at the same idf.
        let [query, sql] = [x[0], x[1]];
        assert!((sql / query - (1.0 + 2f32.ln())).abs() < 1e-5);
        assert!(words.features("nothing known here").iter().all(|&v| v == 0.0));
    }

    #[test]
    fn the_replies_words_are_a_third_block_read_only_when_the_study_has_them() {
        let mut words = Words::fit(&["sql query", "sql essay", "essay query"], 10);
        let texts = CategoryTexts {
            request: "sql",
            reply: None,
            replies: Some("an essay"),
        };
        assert_eq!(words.text_features(texts).len(), words.width());
        assert_eq!(words.width(), 6);
        words.replies = true;
        let x = words.text_features(texts);
        assert_eq!((x.len(), words.width()), (9, 9));
        // No reply: the request stands for it; the replies are read as they are.
        assert_eq!(x[..3], x[3..6]);
        assert_eq!(x[6..], words.features("an essay"));
        let without = words.text_features(CategoryTexts { replies: None, ..texts });
        assert_eq!(without[6..], without[..3], "no replies: the opening, here the request");
    }
}
