//! The command line: `switchboard [serve] [--config FILE]`,
//! `switchboard check-config [FILE]` and `switchboard print-default-config`.
//!
//! This module parses arguments and runs the two offline commands; it never
//! starts the server (that is `main`'s job) and never logs: its output is the
//! command's answer on stdout, or the problems on stderr.

use crate::config::{AppConfig, DEFAULT_CONFIG};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Real-time contact-center routing engine.
#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// Arguments of `serve` when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the engine (the default).
    Serve(ServeArgs),
    /// Check a config file (default: the embedded one) and list every problem.
    ///
    /// `SWITCHBOARD__…` environment overrides are applied, as `serve` would.
    /// Prints `ok` and a summary, or one problem per line; exits 1 on problems.
    CheckConfig {
        /// The config file; without it the embedded default is checked.
        file: Option<PathBuf>,
    },
    /// Print the embedded default configuration (every setting, commented).
    PrintDefaultConfig,
}

/// Arguments of `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Config file, layered over the embedded default; without it the
    /// embedded default is used.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl Cli {
    /// The command to run: `serve` with the top-level arguments when none is named.
    pub fn into_command(self) -> CliCommand {
        self.command.unwrap_or(CliCommand::Serve(self.serve))
    }
}

/// `check-config`: loads `path` (or the embedded default) with the process's
/// environment overrides; prints `ok` and a one-line summary on stdout, or
/// every problem, one per line with its field path, on stderr.
pub fn run_check_config(path: Option<&Path>) -> ExitCode {
    let origin = path.map_or_else(
        || "embedded default".to_string(),
        |p| p.display().to_string(),
    );
    match AppConfig::load(path) {
        Ok(config) => {
            let mut line = format!("ok: {origin}: {}", config.summary());
            if config.uses_dev_tokens() {
                line.push_str(" (warning: development tokens configured)");
            }
            write_out(&mut std::io::stdout().lock(), &line);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let problems = e.problems();
            let mut err = std::io::stderr().lock();
            for p in &problems {
                write_out(&mut err, &p.to_string());
            }
            let noun = if problems.len() == 1 {
                "problem"
            } else {
                "problems"
            };
            write_out(&mut err, &format!("{origin}: {} {noun}", problems.len()));
            ExitCode::FAILURE
        }
    }
}

/// `print-default-config`: the embedded default, verbatim, on stdout.
pub fn print_default_config() {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = out
        .write_all(DEFAULT_CONFIG.as_bytes())
        .and_then(|()| out.flush());
}

fn write_out(w: &mut impl Write, line: &str) {
    let _ = writeln!(w, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_the_default_command() {
        let cli = Cli::try_parse_from(["switchboard"]).expect("parse");
        assert!(matches!(
            cli.into_command(),
            CliCommand::Serve(ServeArgs { config: None })
        ));
        let cli = Cli::try_parse_from(["switchboard", "--config", "a.toml"]).expect("parse");
        assert!(
            matches!(cli.into_command(), CliCommand::Serve(ServeArgs { config: Some(p) }) if p == Path::new("a.toml"))
        );
        let cli = Cli::try_parse_from(["switchboard", "serve", "-c", "b.toml"]).expect("parse");
        assert!(
            matches!(cli.into_command(), CliCommand::Serve(ServeArgs { config: Some(p) }) if p == Path::new("b.toml"))
        );
    }

    #[test]
    fn check_config_and_print_default_parse() {
        let cli = Cli::try_parse_from(["switchboard", "check-config"]).expect("parse");
        assert!(matches!(
            cli.into_command(),
            CliCommand::CheckConfig { file: None }
        ));
        let cli = Cli::try_parse_from(["switchboard", "check-config", "x.toml"]).expect("parse");
        assert!(matches!(
            cli.into_command(),
            CliCommand::CheckConfig { file: Some(_) }
        ));
        let cli = Cli::try_parse_from(["switchboard", "print-default-config"]).expect("parse");
        assert!(matches!(cli.into_command(), CliCommand::PrintDefaultConfig));
        assert!(
            Cli::try_parse_from(["switchboard", "--config", "a.toml", "check-config"]).is_err()
        );
        assert!(Cli::try_parse_from(["switchboard", "frobnicate"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
