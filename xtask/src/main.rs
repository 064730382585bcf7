//! `cargo xtask`: project automation, written with nothing but std.
//!
//! Run `cargo xtask help` for the commands. The tidy checks in `tidy.rs` are
//! ordinary tests, so `cargo nextest run --workspace` runs them too.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod fuzz;
#[cfg(test)]
mod tidy;
mod workspace;

use std::error::Error;
use std::process::ExitCode;

/// Errors are values whose message says what failed.
type Result<T> = std::result::Result<T, Box<dyn Error>>;

const USAGE: &str = "\
Usage: cargo xtask <command>

Commands:
  bench rtmp [FILTER]
          RTMP fan-out of arcly against nginx-rtmp: 232 kbit/s and
          3 Mbit/s streams to 100, 1000 and 5000 players, churn, slow
          players, a short batch window; appends the table to
          BENCHMARKS.md. FILTER runs only the scenarios whose label
          contains it (e.g. '1000 players, 232 kbit/s')
  ci      run every CI check in order, stopping at the first failure:
          fmt, clippy, features, peers, tests, loom, docs,
          deny, fuzz (with the smoke run when a nightly toolchain exists)
  fuzz --smoke [--seconds N] [target...]
          run every fuzz target (or those named) for 20 s (or N s) each
          with cargo-fuzz on nightly; fails on a crash (see FUZZING.md)
  fuzz --seconds N target...
          a longer run of the targets named
  fuzz --seed
          rewrite the seed corpora fuzz/corpus/*/seed-* from testdata/
  help    print this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] | ["help" | "-h" | "--help"] => {
            print!("{USAGE}");
            Ok(())
        }
        ["bench", what] => bench::run(what, None),
        ["bench", what, filter] => bench::run(what, Some(filter)),
        ["ci"] => ci::run(),
        ["fuzz", rest @ ..] => fuzz::run(rest),
        _ => Err(format!("unknown command `{}`\n\n{USAGE}", args.join(" ")).into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
