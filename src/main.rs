//! The `switchboard` binary: parses the command line and runs the command.
//!
//! `serve` (the default) loads the config (embedded default, `--config FILE`
//! layered over it, `SWITCHBOARD__…` overrides), sets up `tracing`, warns when
//! development tokens are configured, starts the server and runs until
//! SIGTERM or Ctrl-C. `check-config` and `print-default-config` are offline.
//! `anyhow` is used only here and at the server's start (`server.rs`), the
//! edges where errors are reported with context; the library's errors are
//! typed.

use anyhow::Context as _;
use clap::Parser;
use serde_json::{Map, Value};
use std::fmt;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use switchboard::cli::{print_default_config, run_check_config, Cli, CliCommand};
use switchboard::config::{AppConfig, LogFormat};
use switchboard::server::{self, StartOptions};
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// mimalloc instead of glibc's malloc: frames, commands and effects are
/// allocated on one thread and freed on another, and glibc's arenas spent
/// ~13 % of the engine's CPU at 4,000 lifecycles/s on that (`_int_malloc`,
/// `malloc_consolidate`, `unlink_chunk`; see docs/performance.md).
///
/// Built with mimalloc's `no_thp` feature: it does not ask the kernel for
/// transparent huge pages. Side by side they gave no higher knee, held
/// ~400 MiB more RSS with 1M conversations restored, and made a restart slower
/// when the kernel first had to compact memory to serve them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Cli::parse().into_command() {
        CliCommand::Serve(args) => match serve(args.config.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                // Logging may not be set up yet when the config is what failed.
                eprintln!("switchboard: {e:#}");
                ExitCode::FAILURE
            }
        },
        CliCommand::CheckConfig { file } => run_check_config(file.as_deref()),
        CliCommand::PrintDefaultConfig => {
            print_default_config();
            ExitCode::SUCCESS
        }
    }
}

fn serve(path: Option<&Path>) -> anyhow::Result<()> {
    let config = AppConfig::load(path).map_err(|e| {
        let problems: Vec<String> = e.problems().iter().map(|p| p.to_string()).collect();
        anyhow::anyhow!("{e}\n  {}", problems.join("\n  "))
    })?;
    init_tracing(&config)?;
    if config.uses_dev_tokens() {
        tracing::warn!(
            "development tokens (dev-connector-token, dev-agent-token, dev-supervisor-token) are configured: \
             for development only, replace them with [[auth.tokens]] in production"
        );
    }
    let fault_injection = std::env::var("SWITCHBOARD_FAULT_INJECTION").is_ok_and(|v| v == "1");
    if fault_injection {
        tracing::warn!("fault injection is ON: POST /v1/admin/panic/... can crash actors");
    }
    tracing::info!(summary = %config.summary(), "configuration loaded");
    actix_web::rt::System::new().block_on(async move {
        let running = server::start_with(
            config,
            StartOptions {
                fault_injection,
                workers: None,
            },
        )
        .await
        .context("starting the server")?;
        running.run_until_signal().await
    })
}

fn init_tracing(config: &AppConfig) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.logging.level))
        .context("logging.level")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.logging.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).try_init(),
    }
    .map_err(|e| anyhow::anyhow!("setting up logging: {e}"))?;
    Ok(())
}

/// `logging.format = "json"`: one JSON object per line with `ts_ms`,
/// `level`, `target`, `spans` and the event's fields (`message` included).
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut fields = Map::new();
        event.record(&mut JsonFields(&mut fields));
        let spans: Vec<Value> = ctx
            .event_scope()
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| Value::from(span.name()))
                    .collect()
            })
            .unwrap_or_default();
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("ts_ms".into(), Value::from(switchboard::clock::now_ms()));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        if !spans.is_empty() {
            line.insert("spans".into(), Value::Array(spans));
        }
        line.extend(fields);
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields as JSON values.
struct JsonFields<'a>(&'a mut Map<String, Value>);

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), Value::from(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
}
