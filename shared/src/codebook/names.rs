//! Names for topics from public text only: class-based TF-IDF keywords (a term frequent in
//! this topic's public requests and rare across the others) and the most central request.

use std::collections::HashMap;

const STOPWORDS: &[&str] = &[
    "the",
    "and",
    "for",
    "you",
    "your",
    "with",
    "that",
    "this",
    "are",
    "can",
    "what",
    "how",
    "from",
    "have",
    "will",
    "not",
    "but",
    "all",
    "about",
    "write",
    "please",
    "like",
    "make",
    "give",
    "some",
    "any",
    "into",
    "more",
    "one",
    "its",
    "his",
    "her",
    "their",
    "they",
    "them",
    "was",
    "were",
    "has",
    "had",
    "our",
    "out",
    "use",
    "using",
    "also",
    "which",
    "who",
    "when",
    "where",
    "why",
    "there",
    "here",
    "these",
    "those",
    "then",
    "than",
    "each",
    "other",
    "want",
    "need",
    "just",
    "should",
    "would",
    "could",
    "does",
    "did",
    "been",
    "being",
    "get",
    "let",
    "tell",
    "explain",
    "create",
    "following",
    "example",
    "below",
    "above",
    "act",
    "following:",
    "i'm",
    "it's",
    "don't",
    "etc",
    "help",
    "new",
    "based",
    "list",
    "provide",
    "know",
    "way",
    "name",
    "user",
    "let's",
    "him",
    "she",
    "he's",
    "she's",
    "i've",
    "i'll",
    "we're",
    "you're",
    "that's",
    "there's",
    "can't",
    "won't",
    "isn't",
    "doesn't",
    "didn't",
    "continue",
    "now",
    "very",
    "much",
    "many",
    "only",
    "own",
    "same",
    "such",
    "too",
    "well",
    "what's",
    "into",
    "after",
    "before",
    "because",
    "while",
    "over",
    "under",
    "again",
    "further",
    "once",
    "both",
    "few",
    "most",
    "must",
    "may",
    "might",
];

/// Lowercase words of three letters or more, without stopwords.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| w.chars().count() >= 3 && w.chars().any(char::is_alphabetic) && !STOPWORDS.contains(&w.as_str()))
}

/// The `top` keywords of each class, by c-TF-IDF: tf(t, c) / |c| · ln(1 + A / f(t)), with A
/// the mean number of words per class and f(t) the frequency of t over all classes; tf counts
/// the requests of the class that use t (not its repetitions), and PII placeholders are not words.
pub fn class_keywords(classes: &[Vec<&str>], top: usize) -> Vec<Vec<String>> {
    let counts: Vec<HashMap<String, f64>> = classes
        .iter()
        .map(|texts| {
            let mut m = HashMap::new();
            for t in texts {
                // Each request counts a word once: one long pasted text must not name a topic.
                let mut text = (*t).to_owned();
                for placeholder in crate::facets::pii::PLACEHOLDERS {
                    text = text.replace(placeholder, " ");
                }
                let distinct: std::collections::HashSet<String> = words(&text).collect();
                for w in distinct {
                    *m.entry(w).or_insert(0.0) += 1.0;
                }
            }
            m
        })
        .collect();
    let mut overall: HashMap<&str, f64> = HashMap::new();
    for m in &counts {
        for (w, c) in m {
            *overall.entry(w.as_str()).or_insert(0.0) += c;
        }
    }
    let average = counts.iter().map(|m| m.values().sum::<f64>()).sum::<f64>() / counts.len().max(1) as f64;
    counts
        .iter()
        .map(|m| {
            let size: f64 = m.values().sum::<f64>().max(1.0);
            let mut scored: Vec<(&String, f64)> = m
                .iter()
                // A keyword must come from more than one request of the topic.
                .filter(|(_, &c)| c >= 2.0)
                .map(|(w, &c)| (w, c / size * (1.0 + average / overall[w.as_str()]).ln()))
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            scored.into_iter().take(top).map(|(w, _)| w.clone()).collect()
        })
        .collect()
}
