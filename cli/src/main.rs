//! `chorus`: the Chorus command line. `analyze`, `report`, `simulate` and `contribute` run the
//! contributor's on-device pipeline natively on export files; `serve`, `release` and `verify`
//! are the server's and the auditor's side; `study` compiles and evaluates a study's classifiers.

mod analyze;
mod codebook;
mod contribute;
mod coverage;
mod demo;
mod exports;
mod files;
mod invite;
mod progress;
mod report;
mod serve;
mod simulate;
mod study;
mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "chorus",
    version,
    about = "Privacy-preserving insight into how people use AI assistants"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub struct StudyArgs {
    /// Study file (TOML); the default study when omitted.
    #[arg(long, value_name = "FILE")]
    pub study: Option<PathBuf>,
    /// Directory holding the pinned model.onnx and tokenizer.json
    /// [default: $CHORUS_CACHE_DIR/model, or ~/.cache/chorus/model].
    #[arg(long, value_name = "DIR", env = "CHORUS_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse chat exports on this machine: one JSON object per conversation on stdout.
    Analyze(analyze::Args),
    /// The exact batch of privatized reports this device would send (memoised; nothing is sent).
    Report(report::Args),
    /// What the server would learn at a privacy budget, treating each conversation as one
    /// contributor: one JSON document per --epsilon value.
    Simulate(simulate::Args),
    /// Analyse exports here and send this device's privatized reports to a Chorus server.
    Contribute(contribute::Args),
    /// Run the aggregation server (API, pages, releases).
    Serve(serve::ServeArgs),
    /// Cut a signed release of a study from the server's store.
    Release(serve::ReleaseArgs),
    /// Create one-time invitations to a study that admits invited contributors only.
    Invite(invite::Args),
    /// Check a release's signature offline.
    Verify(verify::Args),
    /// Build a study's public topic codebook from a public corpus.
    #[command(subcommand)]
    Codebook(codebook::Command),
    /// Work with a study's classifiers.
    #[command(subcommand)]
    Study(study::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Report(args) => report::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Contribute(args) => contribute::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::Release(args) => serve::release(args),
        Command::Invite(args) => invite::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Codebook(command) => codebook::run(command),
        Command::Study(command) => study::run(command),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("chorus: {message}");
            ExitCode::FAILURE
        }
    }
}
