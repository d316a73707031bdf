//! A release's tables of cells before and after the publication rule: every estimate becomes a
//! [`Candidate`]; the rule ([`super::publish`]) decides over all of them at once; each cell is
//! then written as published (its share in [0, 1], its interval, its unbiased estimate and
//! standard error, its count) or withheld with the reason.

use super::publish::{publish, Candidate};
use chorus_shared::privacy::oracle::share_ci95;
use serde_json::{json, Value};

/// Why a cell is not published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Withheld {
    /// Its count is not reliably at least k.
    BelowK,
    /// Its cross-tab row or column holds too few reports to test it.
    TooFewReports,
}

/// Every candidate cell of a release, in the order the tables were added; each table knows
/// its range.
#[derive(Default)]
pub struct Cells {
    candidates: Vec<Candidate>,
    published: Vec<bool>,
}

/// A table's place among the release's cells.
#[derive(Debug, Clone, Copy)]
pub struct TableRange {
    start: usize,
    len: usize,
}

impl Cells {
    /// Adds a table of cells; returns where it lies.
    pub fn add(&mut self, cells: impl IntoIterator<Item = Candidate>) -> TableRange {
        let start = self.candidates.len();
        self.candidates.extend(cells);
        TableRange {
            start,
            len: self.candidates.len() - start,
        }
    }

    /// Applies the publication rule to every cell at once: `total` is the (noisy) number of
    /// reports that shares are of.
    pub fn decide(&mut self, k: f64, total: f64) {
        self.published = publish(&self.candidates, k, total);
    }

    pub fn tested(&self) -> usize {
        self.candidates.iter().filter(|c| c.tested).count()
    }

    pub fn published(&self) -> usize {
        self.published.iter().filter(|&&p| p).count()
    }

    /// Cell `i` of a table, as JSON: `{value, share, ci95, unbiased, se, count, count_ci95}`
    /// when published, else `{value, suppressed: true, reason}`.
    pub fn cell(&self, table: TableRange, i: usize, label: &str, total: f64) -> Value {
        assert!(i < table.len, "cell {i} of a table of {}", table.len);
        let c = self.candidates[table.start + i];
        if !self.published[table.start + i] {
            let reason = if c.tested {
                Withheld::BelowK
            } else {
                Withheld::TooFewReports
            };
            return withheld(label, reason);
        }
        let (lo, hi) = c.interval.map_or_else(
            || share_ci95(c.unbiased, c.se),
            |(lo, hi)| (lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0)),
        );
        let share = c.unbiased.clamp(0.0, 1.0);
        json!({
            "value": label,
            "share": round(share),
            "ci95": [round(lo), round(hi)],
            "unbiased": round(c.unbiased),
            "se": round(c.se),
            "count": (share * total).round(),
            "count_ci95": [(lo * total).round(), (hi * total).round()],
        })
    }
}

pub fn withheld(label: &str, reason: Withheld) -> Value {
    let reason = match reason {
        Withheld::BelowK => "below k",
        Withheld::TooFewReports => "too few reports",
    };
    json!({"value": label, "suppressed": true, "reason": reason})
}

pub fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
