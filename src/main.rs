//! noisescope: no subcommand opens the app on its default scene; otherwise the CLI.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let parsed = cli::Cli::parse();
    let result = match parsed.command {
        Some(cli::Command::Sample(args)) => cli::sample::run(&args),
        Some(cli::Command::Bench(args)) => cli::bench::run(&args),
        Some(cli::Command::BenchUi(args)) => cli::bench_ui::run(&args),
        None => noisescope::app::run().map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line: the error and its causes.
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
