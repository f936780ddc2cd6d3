//! The `switchboard-loadtest` command line: parses flags, applies overrides
//! to the scenario, raises the open-file limit, runs
//! [`switchboard_loadtest::run_scenario`] on a multi-threaded runtime and
//! prints the summary (and writes the JSON document to the file `--json`
//! names).

use anyhow::Context;
use clap::Parser;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use switchboard_loadtest::scenario::{self, Mode};
use switchboard_loadtest::{modes, net, report, sim};

/// mimalloc instead of glibc's malloc: frames are built on one thread and
/// freed on another, and glibc's arenas were ~5 % of the generator's CPU; a
/// generator that shares the engine's cores should take as little as it can.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status when a `[thresholds]` figure is missed (the same as k6).
const EXIT_THRESHOLDS: i32 = 99;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard-loadtest",
    version,
    about = "Open-loop load generator and checker for the Switchboard routing engine (127.0.0.1 only).",
    long_about = "Open-loop load generator and checker for the Switchboard routing engine.\n\n\
Simulates agents (one WebSocket each: skills, per-channel capacity, accept delay, reject rate, \
handle time) and customers arriving as a Poisson process over connector connections (channel and \
skill mix, channel switches, abandons, messages). Latencies are measured from the scheduled send \
time (no coordinated omission) into HDR histograms: open→offer, open→assigned, ack round trip. \
It checks that no conversation is lost, offered to two agents at once, or misrouted (skill/level \
or capacity), and exits with status 99 when a scenario [thresholds] figure is missed, 1 on error.\n\n\
Modes: run (the scenario once), max (ramp the rate to the knee), echo (the same client against \
/v1/echo: the server stack's ceiling), compare (echo, max, echo again, and the ratio), erlang-c \
(measured waits beside the Erlang C formula).\n\n\
Built-in scenarios: smoke, steady, burst, multiskill, max, max-10k, erlang-c, idle-agents, \
waiting-100k (or a path to a .toml file).\n\
Only ws://127.0.0.1:PORT targets are accepted.",
    after_help = "Examples:\n  switchboard-loadtest --scenario smoke\n  switchboard-loadtest --scenario steady --json steady.json\n  switchboard-loadtest --scenario max --mode compare\n  switchboard-loadtest --scenario erlang-c"
)]
struct Cli {
    /// Built-in scenario name or path to a scenario .toml file.
    #[arg(short, long, default_value = "smoke")]
    scenario: String,
    /// Run mode; defaults to the scenario's `mode`.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Engine base URL; only ws://127.0.0.1:PORT is accepted.
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    url: String,
    /// Token of the connector (gateway) connections.
    #[arg(long, default_value = "dev-connector-token")]
    connector_token: String,
    /// Token of the agent connections.
    #[arg(long, default_value = "dev-agent-token")]
    agent_token: String,
    /// Write the full result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Override the arrival rate (conversations/s; replaces any phases).
    #[arg(long)]
    rate: Option<f64>,
    /// Override the arrival duration in seconds (replaces any phases).
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Override the number of agents.
    #[arg(long)]
    agents: Option<usize>,
    /// Override the number of connector connections.
    #[arg(long)]
    connectors: Option<usize>,
    /// Override the cap on conversations opened.
    #[arg(long)]
    max_conversations: Option<u64>,
    /// Override the echo window (frames in flight per connection; 0: idle connections).
    #[arg(long)]
    echo_window: Option<usize>,
    /// Override the echo duration in seconds.
    #[arg(long)]
    echo_secs: Option<f64>,
    /// Simultaneous connection attempts while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Never draw the progress bar (it is also off when stdout is not a terminal).
    #[arg(long)]
    no_progress: bool,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn apply_overrides(cli: &Cli, sc: &mut scenario::Scenario) -> anyhow::Result<()> {
    if let Some(m) = cli.mode {
        sc.mode = m;
    }
    if let Some(r) = cli.rate {
        sc.arrivals.rate_per_sec = r;
        sc.arrivals.phases.clear();
    }
    if let Some(d) = cli.duration_secs {
        sc.duration_secs = d;
        sc.arrivals.phases.clear();
    }
    if let Some(a) = cli.agents {
        sc.agents.count = a;
    }
    if let Some(c) = cli.connectors {
        sc.arrivals.connectors = c;
    }
    if let Some(m) = cli.max_conversations {
        sc.max_conversations = m;
    }
    if let Some(w) = cli.echo_window {
        sc.echo.window = w;
    }
    if let Some(d) = cli.echo_secs {
        sc.echo.duration_secs = d;
    }
    let problems = sc.validate();
    if !problems.is_empty() {
        anyhow::bail!(
            "invalid scenario `{}` after overrides:\n  - {}",
            sc.name,
            problems.join("\n  - ")
        );
    }
    Ok(())
}

fn main() {
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "switchboard-loadtest: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn real_main() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout();
    if cli.list {
        for (name, text) in scenario::BUILTIN {
            let sc = scenario::parse(text)?;
            writeln!(stdout, "{name:<12} {:?}  {}", sc.mode, sc.description)?;
        }
        return Ok(0);
    }
    let target = net::Target::parse(&cli.url)?;
    let mut sc = scenario::load(&cli.scenario)?;
    apply_overrides(&cli, &mut sc)?;
    let sc = Arc::new(sc);

    let limit = net::raise_nofile_limit().context("raising the open-file limit")?;
    let echo_conns = if sc.echo.connections > 0 {
        sc.echo.connections
    } else {
        sc.agents.count + sc.arrivals.connectors
    };
    let needed = (sc.agents.count + sc.arrivals.connectors).max(echo_conns) as u64 + 64;
    if needed > limit {
        anyhow::bail!(
            "{needed} file descriptors needed but the limit is {limit}; lower agents/connectors"
        );
    }

    let conn = sim::Connection {
        target,
        connector_token: cli.connector_token.clone(),
        agent_token: cli.agent_token.clone(),
        connect_concurrency: cli.connect_concurrency,
    };
    let progress_on = !cli.no_progress && stdout.is_terminal();
    let est_secs = sc.arrival_secs()
        + sc.drain_secs
        + if sc.mode == Mode::ErlangC {
            sc.erlang_c.warmup_secs
        } else {
            0.0
        }
        + match sc.mode {
            Mode::Echo => sc.echo.duration_secs,
            Mode::Compare => 2.0 * sc.echo.duration_secs,
            _ => 0.0,
        };
    let progress = modes::Progress::new(progress_on, est_secs);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(switchboard_loadtest::run_scenario(
        sc.clone(),
        &conn,
        &progress,
        &cli.url,
    ));
    progress.finish();
    // Background timers may still be pending; they hold nothing worth waiting for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    let report = outcome?;
    stdout.write_all(report::human(&report).as_bytes())?;
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.passed { 0 } else { EXIT_THRESHOLDS })
}
