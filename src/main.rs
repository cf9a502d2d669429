//! noisescope: no subcommand opens the app on its default scene; otherwise the CLI.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let parsed = cli::Cli::parse();
    let result = match parsed.command {
        Some(cli::Command::Sample(args)) => cli::sample::run(&args),
        Some(cli::Command::Bench(args)) => cli::bench::run(&args),
        None => {
            eprintln!("the app is not built yet; try `noisescope sample --help`");
            Ok(())
        }
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
