//! A release's tables of cells before and after the publication rule: every estimate becomes a
//! [`Candidate`]; the rule ([`super::publish`]) decides over all of them at once; each cell is
//! then written as published (its share in [k / reports, 1], its interval, its unbiased estimate
//! and standard error, its count) or withheld with the reason.

use super::publish::{leave_out_the_unreachable, publish, selective_interval, Candidate};
use chorus_shared::release::document::{Estimate, Published, Withheld, WithheldCell};

/// Every candidate cell of a release, in the order the tables were added; each table knows
/// its range.
#[derive(Default)]
pub struct Cells {
    candidates: Vec<Candidate>,
    /// For each published cell, the share its estimate had to clear.
    published: Vec<Option<f64>>,
    /// k over the reports: the least share the rule lets a published cell have.
    floor: f64,
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
        leave_out_the_unreachable(&mut self.candidates, k, total);
        self.published = publish(&self.candidates, k, total);
        self.floor = (k / total).clamp(0.0, 1.0);
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
    /// cleared the threshold ([`selective_interval`]), in [k / reports, 1].
    ///
    /// Why not below k / reports: the rule publishes a cell because its count is reliably at
    /// least k, yet the selective median of an estimate that only just cleared its bar falls
    /// towards 0 (such an estimate is what a small share would give, once selected). A release
    /// that published a cell with a count of 0 would contradict itself, and a reader dividing by
    /// that share would get infinities. The shares the floor removes are those of a phantom
    /// cell, which the rule keeps to fewer than one release in twenty, so only a phantom's
    /// interval can miss because of it.
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
        let (lo, hi) = (lo.clamp(self.floor, 1.0), hi.clamp(self.floor, 1.0));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(unbiased: f64, se: f64) -> Candidate {
        Candidate {
            unbiased,
            se,
            tested: true,
            interval: None,
        }
    }

    /// k and the number of reports of the tests below.
    const K: f64 = 10.0;
    const TOTAL: f64 = 1000.0;

    /// One table of these candidates, decided at [`K`] among [`TOTAL`] reports.
    fn decided(candidates: [Candidate; 2]) -> (Cells, TableRange) {
        let mut cells = Cells::default();
        let table = cells.add(candidates);
        cells.decide(K, TOTAL);
        (cells, table)
    }

    fn published(estimate: Estimate) -> Published {
        match estimate {
            Estimate::Published(p) => p,
            Estimate::Withheld(w) => panic!("withheld: {w:?}"),
        }
    }

    /// An estimate that only just cleared its bar keeps a share, an interval and a count of at
    /// least k (its selective median alone would be near 0); one far above its bar is the
    /// estimate ± 1.96 standard errors, as before.
    #[test]
    fn a_published_cell_is_never_below_k() {
        // Holm over two cells: the strong one first (z ≥ 1.96), then the marginal one at
        // z ≥ 1.645, a bar of 0.01 + 1.645 × 0.2 = 0.339.
        let (cells, table) = decided([candidate(0.5, 0.01), candidate(0.36, 0.2)]);
        assert_eq!(cells.published(), 2);
        let (_, median, _) = selective_interval(0.36, 0.2, 0.01 + 1.6449 * 0.2);
        assert!(median < 0.0, "the selective median alone: {median}");
        let marginal = published(cells.estimate(table, 1, TOTAL));
        assert_eq!(marginal.share, 0.01);
        assert_eq!(marginal.ci95[0], 0.01);
        assert!(marginal.ci95[1] > 0.5, "{marginal:?}");
        assert_eq!(marginal.count, K);
        let strong = published(cells.estimate(table, 0, TOTAL));
        assert!((strong.share - 0.5).abs() < 1e-3, "{strong:?}");
        assert!((strong.ci95[0] - (0.5 - 1.96 * 0.01)).abs() < 1e-3, "{strong:?}");
        assert_eq!(strong.count, 500.0);
    }

    /// A cell whose estimate would have to exceed a share of 1 to clear its bar is not tested
    /// (however high its noisy estimate came out) and does not count among the cells tested.
    #[test]
    fn a_cell_only_noise_could_publish_is_not_tested() {
        // Two cells tested: the strictest bar is 0.01 + 1.96 se, above 1 for se = 0.6.
        let (cells, table) = decided([candidate(0.5, 0.01), candidate(1.9, 0.6)]);
        assert_eq!((cells.tested(), cells.published()), (1, 1));
        assert_eq!(cells.estimate(table, 1, TOTAL), withheld(Withheld::TooFewReports));
        published(cells.estimate(table, 0, TOTAL));
        // With a standard error of 0.45 the bar (0.892) is reachable: tested, and published.
        let (cells, table) = decided([candidate(0.5, 0.01), candidate(1.9, 0.45)]);
        assert_eq!((cells.tested(), cells.published()), (2, 2));
        published(cells.estimate(table, 1, TOTAL));
    }
}
