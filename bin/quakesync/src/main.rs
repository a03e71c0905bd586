// Temporary: wires only the configuration layer until the lead rewrites main.rs.
#[allow(dead_code)]
mod cli;
#[allow(dead_code)]
mod config;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match config::load(
        cli.config.as_deref(),
        &|k| std::env::var(k).ok(),
        &cli.overrides,
    ) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("quakesync: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match cli.command {
        cli::Command::Config => {
            print!("{}", config.redacted_toml());
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("quakesync: {other:?} is not wired yet");
            ExitCode::FAILURE
        }
    }
}
