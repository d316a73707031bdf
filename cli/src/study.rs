//! `chorus study`: compile a study for clients, and measure its classifier.

use crate::files::{compiled_study, load_embedder, load_study, study_tuning};
use crate::progress::Progress;
use crate::StudyArgs;
use chorus_shared::study::{cross_validate, TrainOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Compile the study (train its classifiers) into the JSON a client loads.
    Compile {
        #[command(flatten)]
        study: StudyArgs,
        /// Write the compiled study here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Held-out accuracy of the category classifier, by k-fold cross-validation over the
    /// labelled examples that are a uniform sample of their corpus.
    Evaluate {
        #[command(flatten)]
        study: StudyArgs,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// L2 penalty of the logistic regression.
        #[arg(long)]
        l2: Option<f64>,
        /// Gradient steps of the logistic regression.
        #[arg(long)]
        iterations: Option<usize>,
    },
}

pub fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Compile { study, out } => {
            let parsed = load_study(&study)?;
            let embedder = load_embedder(&study)?;
            let compiled = compiled_study(&parsed, &embedder)?;
            let json = serde_json::to_string(&compiled).expect("compiled study serialises");
            match out {
                Some(path) => {
                    std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?
                }
                None => println!("{json}"),
            }
        }
        Command::Evaluate {
            study,
            folds,
            l2,
            iterations,
        } => {
            if folds < 2 {
                return Err("--folds must be at least 2".into());
            }
            let parsed = load_study(&study)?;
            let embedder = load_embedder(&study)?;
            let defaults = TrainOptions::default();
            let options = TrainOptions {
                l2: l2.unwrap_or(defaults.l2),
                iterations: iterations.unwrap_or(defaults.iterations),
            };
            let tuning = study_tuning(&parsed, &embedder, folds)?;
            let mut progress = Progress::new("embedding the examples", None);
            let evaluation = cross_validate(&parsed, &embedder, folds, options, tuning.as_ref(), |done, total| {
                progress.update(done as u64, total as u64)
            })
            .map_err(|e| e.to_string())?;
            progress.finish();
            println!(
                "{}",
                serde_json::to_string_pretty(&evaluation).expect("evaluation serialises")
            );
            // Four decimals: a figure a few examples from a target (0.74979 of 9,416) must not
            // round onto it.
            let step = |a: Option<f64>| a.map_or("-".to_owned(), |a| format!("{a:.4}"));
            let tuned = (evaluation.steps.fine_tuned.as_ref()).map_or(String::new(), |t| {
                format!(
                    "; fine-tuned: regression {:.4}, with neighbours {:.4}",
                    t.regression, t.with_neighbours
                )
            });
            eprintln!(
                "chorus: {}-fold held-out accuracy {:.4} on {} examples (request alone {}, with the reply {}, with the layers' \
                 means {}, with the words of the request and the reply's opening {}, regression {:.4}, with neighbours {}{tuned}; prototype fallback {:.4}); expected calibration error {:.3} ({:.3} \
                 uncalibrated)",
                folds,
                evaluation.accuracy,
                evaluation.held_out,
                step(evaluation.steps.request_only),
                step(evaluation.steps.without_layers),
                step(evaluation.steps.without_words),
                step(evaluation.steps.without_replies_words),
                evaluation.steps.regression,
                step(evaluation.steps.with_neighbours),
                evaluation.prototype_accuracy,
                evaluation.calibration.expected_calibration_error,
                evaluation.uncalibrated.expected_calibration_error,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
