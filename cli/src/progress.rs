//! A one-line progress bar on stderr, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: &'static str,
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
    unit: Option<&'static str>,
}

impl Progress {
    /// `unit` names what is counted besides the fraction (e.g. "conversations").
    pub fn new(label: &'static str, unit: Option<&'static str>) -> Self {
        Progress {
            label,
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last_draw: None,
            unit,
        }
    }

    /// Draws `done` of `total` (at most ten times a second).
    pub fn update(&mut self, done: u64, total: u64) {
        self.update_with_count(done, total, None)
    }

    pub fn update_with_count(&mut self, done: u64, total: u64, count: Option<u64>) {
        if !self.enabled || self.last_draw.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let fraction = if total == 0 {
            0.0
        } else {
            (done as f64 / total as f64).min(1.0)
        };
        let filled = (fraction * 30.0) as usize;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if fraction > 0.0 {
            elapsed / fraction - elapsed
        } else {
            0.0
        };
        let counted = match (count, self.unit) {
            (Some(n), Some(unit)) => format!(" {n} {unit} ({:.1}/s)", n as f64 / elapsed.max(1e-3)),
            _ => String::new(),
        };
        eprint!(
            "\r{} [{}{}] {:3.0}%{counted} ~{:.0}s left \x1b[K",
            self.label,
            "#".repeat(filled),
            ".".repeat(30 - filled),
            fraction * 100.0,
            eta
        );
        let _ = std::io::stderr().flush();
    }

    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}
