//! Build chores for Chorus, run as `cargo xtask <task>`:
//!
//! - `fetch`: download the pinned model (and, with `--corpus`, the public ShareGPT corpus)
//!   into the cache, checking every SHA-256;
//! - `wasm`: build the browser bundle into `www/pkg` (installs the wasm target and a matching
//!   wasm-bindgen-cli when missing);
//! - `test`: everything CI checks, from a fresh machine (with a local PostgreSQL);
//! - `run`: the product: `chorus serve` with the pages, seeded on a first run with demo
//!   contributions from the public corpus;
//! - `postgres`: start the test suite's local PostgreSQL and print its URL.
//!
//! Each task is idempotent: what is already in place is checked, not redone.

mod fetch;
mod postgres;
mod tasks;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fetch") => fetch::fetch(args.iter().any(|a| a == "--corpus")),
        Some("wasm") => tasks::wasm(),
        Some("test") => tasks::test(),
        Some("run") => tasks::run(&args[1..]),
        Some("postgres") => postgres::ensure().map(|url| println!("{url}")),
        _ => {
            eprintln!("usage: cargo xtask <fetch [--corpus] | wasm | test | run | postgres>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
