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

fn main() -> ExitCode {
    quiet_graphics_probe();
    let parsed = cli::Cli::parse();
    let result = match parsed.command {
        Some(cli::Command::Sample(args)) => cli::sample::run(&args),
        Some(cli::Command::Bench(args)) => cli::bench::run(&args),
        Some(cli::Command::BenchUi(args)) => cli::bench_ui::run(&args),
        None => open_app(parsed.preset.as_deref(), parsed.renderer),
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
