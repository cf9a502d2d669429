//! noisescope: no subcommand opens the app on its default scene; otherwise the CLI.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// Mesa's Vulkan driver, probed for a GPU adapter, prints "XDG_RUNTIME_DIR is invalid or not set"
/// on headless machines; point it at the temp folder when the session has none.
fn quiet_graphics_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: first thing in main, before any thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}

/// The app, on a preset when one is given.
fn open_app(
    preset: Option<&std::path::Path>,
    renderer: noisescope::app::Renderer,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let spec = match preset {
        Some(path) => {
            let text = noisescope::run::preset::read_preset_text(path)
                .with_context(|| format!("reading preset {}", path.display()))?;
            Some(
                noisescope::run::RunSpec::from_json(&text)
                    .with_context(|| format!("preset {}", path.display()))?,
            )
        }
        None => None,
    };
    Ok(noisescope::app::run(spec, renderer)?)
}

/// clap's error as one line (its message, tips and possible values, without the usage block);
/// --help and --version print as usual.
fn argument_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    let text = e.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let message = parts.join("; ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("error: {message} (see --help)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    quiet_graphics_probe();
    let parsed = match cli::Cli::try_parse() {
        Ok(parsed) => parsed,
        Err(e) => return argument_error(e),
    };
    // The training baseline (`bench-train --stock`) measures candle as it comes.
    let stock = matches!(&parsed.command, Some(cli::Command::BenchTrain(a)) if a.stock);
    if !stock {
        // SAFETY: before any thread exists (parsing the arguments starts none).
        unsafe { noisescope::train::ops::pin_thread_count() };
        // Per-call buffers (the denoiser's distance and weight matrices, training's activations)
        // are reused from the heap instead of mapped anew and page-faulted on every call.
        noisescope::train::ops::keep_buffers_resident();
    }
    if parsed.command.is_some() {
        // A command's output piped into `head` ends it quietly, as other Unix tools do, instead
        // of a panic on the closed pipe (Rust ignores SIGPIPE by default).
        // SAFETY: restoring a signal's default disposition before any output.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let result = match parsed.command {
        Some(cli::Command::Sample(args)) => cli::sample::run(&args),
        Some(cli::Command::Sweep(args)) => cli::sweep::run(&args),
        Some(cli::Command::Train(args)) => cli::train::run(&args),
        Some(cli::Command::Bench(args)) => cli::bench::run(&args),
        Some(cli::Command::BenchTrain(args)) => cli::bench_train::run(&args),
        Some(cli::Command::BenchUi(args)) => cli::bench_ui::run(&args),
        None => open_app(parsed.preset.as_deref(), parsed.renderer),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line: the error and its causes (a cause's own line breaks joined).
            let text = format!("{e:#}");
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", lines.join("; "));
            ExitCode::from(2)
        }
    }
}
