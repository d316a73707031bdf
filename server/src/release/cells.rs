//! A release's tables of cells before and after the publication rule: every estimate becomes a
//! [`Candidate`]; the rule ([`super::publish`]) decides over all of them at once; each cell is
//! then written as published (its share in [0, 1], its interval, its unbiased estimate and
//! standard error, its count) or withheld with the reason.

use super::publish::{publish, selective_interval, Candidate};
use chorus_shared::release::document::{Estimate, Published, Withheld, WithheldCell};

/// Every candidate cell of a release, in the order the tables were added; each table knows
/// its range.
#[derive(Default)]
pub struct Cells {
    candidates: Vec<Candidate>,
    /// For each published cell, the share its estimate had to clear.
    published: Vec<Option<f64>>,
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
        self.published.iter().filter(|p| p.is_some()).count()
    }

    /// Cell `i` of a table: its share, interval, unbiased estimate, standard error and count
    /// when published, else why it is withheld. A published cell's share and interval account
    /// for its having been selected: the median and 95% interval of its estimate given that it
    /// cleared the threshold ([`selective_interval`]), in [0, 1].
    pub fn estimate(&self, table: TableRange, i: usize, total: f64) -> Estimate {
        assert!(i < table.len, "cell {i} of a table of {}", table.len);
        let c = self.candidates[table.start + i];
        let Some(threshold) = self.published[table.start + i] else {
            return withheld(if c.tested {
                Withheld::BelowK
            } else {
                Withheld::TooFewReports
            });
        };
        let (lo, median, hi) = selective_interval(c.unbiased, c.se, threshold);
        // A bootstrap interval (the debiased mix) is widened below by as much as selection asks.
        let (lo, hi) = match c.interval {
            Some((b_lo, b_hi)) => (b_lo - (c.unbiased - 1.96 * c.se - lo).max(0.0), b_hi),
            None => (lo, hi),
        };
        let (lo, hi) = (lo.clamp(0.0, 1.0), hi.clamp(0.0, 1.0));
        let share = median.clamp(lo, hi);
        Estimate::Published(Published {
            share: round(share),
            ci95: [round(lo), round(hi)],
            unbiased: round(c.unbiased),
            se: round(c.se),
            count: (share * total).round(),
            count_ci95: [(lo * total).round(), (hi * total).round()],
        })
    }
}

pub fn withheld(reason: Withheld) -> Estimate {
    Estimate::Withheld(WithheldCell {
        suppressed: true,
        reason,
    })
}

pub fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
