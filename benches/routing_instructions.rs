//! Instructions per routing decision, counted by callgrind: deterministic and
//! unaffected by machine load, so it shows whether the *algorithm's* cost
//! depends on the number of agents (wall time at 100k agents also pays for
//! cache misses, which this does not count).
//!
//! ```sh
//! cargo bench --bench routing_instructions --no-run
//! B=$(ls -t target/release/deps/routing_instructions-* | grep -v '\.d$' | head -1)
//! for n in 1000 10000 100000; do for k in arrival frees; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$k.$n --collect-atstart=no \
//!     --toggle-collect='*decide_*' $B $k $n 20000 2>&1 | grep -E 'decisions|refs'
//! done; done
//! ```
//!
//! Arguments: `MODE AGENTS ITERS [WARM]`. Each run makes `WARM` uncounted
//! warm-up decisions (default `ITERS`: first offer to each agent, ready
//! rings growing), then `ITERS` counted ones, and prints that number;
//! callgrind's `I refs` divided by it is the instructions per decision. At
//! 100k agents the ready rings are still growing after 20,000 decisions, so
//! cache-model runs there use `WARM` = 400000 (steady state, as criterion
//! sees it after its own warm-up). Without valgrind it just runs (a smoke
//! check under `cargo bench`).

mod support;

use std::hint::black_box;
use support::World;
use switchboard::routing::*;

/// One arrival decision (the only code callgrind counts in `arrival` mode).
#[inline(never)]
fn decide_arrival(engine: &mut Engine, now: Millis, cmd: Command) -> Result<Reply, CommandError> {
    engine.handle(now, cmd)
}

/// One agent-frees-up decision (the only code counted in `frees` mode).
#[inline(never)]
fn decide_frees(engine: &mut Engine, now: Millis, cmd: Command) -> Result<Reply, CommandError> {
    engine.handle(now, cmd)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mode = args
        .first()
        .map(String::as_str)
        .unwrap_or("arrival")
        .to_string();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let warm: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(iters);
    let mut w = World::new(n);
    let mut assigned = Vec::new();
    match mode.as_str() {
        "arrival" => {
            for i in 0..warm + iters {
                let cmd = w.random_open();
                w.now += 1;
                let r = if i < warm {
                    // Warm-up, not counted: first offers per agent, ring buffers growing.
                    w.engine.handle(w.now, cmd)
                } else {
                    decide_arrival(&mut w.engine, w.now, cmd)
                };
                black_box(r.ok());
                w.accept_offers(&mut assigned);
                w.complete_all(&mut assigned);
                w.engine.handle_timeout(w.now);
                while w.engine.poll_effect().is_some() {}
            }
        }
        "frees" => {
            assigned = w.fill(n * 3);
            let mut pick = 0usize;
            for i in 0..warm + iters {
                pick = (pick + 7919) % assigned.len();
                let (agent, conversation) = assigned.swap_remove(pick);
                w.now += 1;
                let cmd = Command::Complete {
                    agent,
                    conversation,
                };
                let r = if i < warm {
                    // Warm-up, not counted.
                    w.engine.handle(w.now, cmd)
                } else {
                    decide_frees(&mut w.engine, w.now, cmd)
                };
                black_box(r.ok());
                w.accept_offers(&mut assigned);
                let cmd = w.random_open();
                let _ = w.engine.handle(w.now, cmd);
                w.accept_offers(&mut assigned);
                w.engine.handle_timeout(w.now);
            }
        }
        other => {
            eprintln!("unknown mode `{other}` (arrival | frees)");
            std::process::exit(2);
        }
    }
    println!(
        "mode={mode} agents={n} decisions={iters} live={} peak_rss_kib={}",
        w.engine.live_conversations(),
        peak_rss_kib().map_or("?".into(), |k| k.to_string())
    );
}

/// The process's peak resident memory (Linux `VmHWM`): the size of the
/// world the decisions were spread over, give or take the harness.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
