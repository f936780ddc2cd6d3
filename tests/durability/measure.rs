//! Measurements for docs/durability.md, not tests: `#[ignore]`d, run with
//!
//! ```sh
//! cargo test --release --test durability measure -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Each prints one line per figure. They assert nothing about time.

use crate::crash::{Server, Ws};
use crate::helpers::{base_config, CONNECTOR};
use serde_json::json;
use std::time::{Duration, Instant};
use switchboard::api::protocol::{Speaker, TranscriptLine};
use switchboard::config::AppConfig;
use switchboard::durability::{self, apply_record, Record, Recorder};
use switchboard::durability::{ReplicaBase, ReplicaConfig, SnapshotReplica};
use switchboard::routing::{Command, ConversationId, Engine};
use switchboard::store::{Fact, Store};

/// An engine and store holding `n` waiting chat conversations with a
/// two-line transcript each, as the router would have built them: opened
/// 1 ms apart up to a second ago, with the SLA deadlines that fell due
/// meanwhile fired as they would have been live (so a restart finds only
/// the deadlines still ahead, or passed while it was down).
fn loaded(n: u64, settings: &switchboard::routing::RoutingSettings) -> (Engine, Store) {
    let mut engine = Engine::new(settings.clone()).expect("settings");
    let store = Store::new();
    let t0 = switchboard::clock::now_ms() - n - 1_000;
    for i in 1..=n {
        let now = t0 + i;
        if i % 1_000 == 0 {
            apply_record(&mut engine, &store, settings, Record::Timeout { now }).expect("timeout");
        }
        let open = Record::Handle {
            now,
            command: Command::Open {
                channel: "chat".into(),
                queue: None,
                skills: vec![],
                priority: None,
                preferred_agent: None,
            },
            facts: vec![Fact::Opened {
                id: ConversationId(i),
                customer_id: format!("customer-{}", i % 50_000),
                channel: "chat".into(),
                queue: "general".into(),
                priority: 0,
                attributes_json: format!(r#"{{"order":{i},"tier":"gold"}}"#),
                owner: "gateway-1".into(),
                now,
            }],
        };
        apply_record(&mut engine, &store, settings, open).expect("open");
        for k in 0..2 {
            let line = Record::Fact(Fact::Line {
                conversation: ConversationId(i),
                line: TranscriptLine {
                    from: Speaker::Customer,
                    text: format!("message {k}: my order {i} has not arrived yet"),
                    at_ms: now,
                    channel: "chat".into(),
                },
                agent_replied: false,
            });
            apply_record(&mut engine, &store, settings, line).expect("line");
        }
    }
    (engine, store)
}

fn snapshot_figures(n: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let config_path = dir.path().join("switchboard.toml");
    std::fs::write(&config_path, base_config(&data)).expect("config");
    let config = AppConfig::from_toml_str(&base_config(&data)).expect("config");
    let settings = config.routing_settings();
    let build = Instant::now();
    let (engine, store) = loaded(n, &settings);
    println!("n={n}: built in {:?}", build.elapsed());
    // The replica: a second copy, as the server keeps one on the snapshot thread.
    let (replica_engine, replica_store) = loaded(n, &settings);
    let (_to_replica, records) = crossbeam_channel::unbounded();
    let replica = SnapshotReplica::spawn(
        ReplicaConfig {
            start_gate: None,
            nice: 0,
            dir: data.clone(),
            keep: 1,
            interval: Duration::from_secs(3600),
            settings: settings.clone(),
            journal: None,
            base: ReplicaBase::State {
                engine: Box::new(replica_engine),
                store: Box::new(replica_store),
                last: 3 * n,
            },
        },
        records,
    )
    .expect("replica");
    let engine = std::sync::Mutex::new(engine);
    let recorder = Recorder::unjournaled(3 * n, None);
    // Routing on the live engine (open + abandon, as the router does it:
    // recorder lock, engine lock, store writes), with and without a snapshot
    // being written at the same time. Returns the longest call and the count.
    let pairs = std::cell::Cell::new(0u64);
    let route_for = |until: &dyn Fn() -> bool| {
        let mut took = Vec::with_capacity(1 << 20);
        let mut now = 1_800_000_000_000u64 + 10 * pairs.get();
        while !until() {
            for command in [
                Command::Open {
                    channel: "chat".into(),
                    queue: None,
                    skills: vec![],
                    priority: None,
                    preferred_agent: None,
                },
                Command::Abandon {
                    conversation: ConversationId(n + 1 + pairs.get()),
                },
            ] {
                now += 1;
                let start = Instant::now();
                let mut seq = recorder.lock();
                let mut e = engine.lock().expect("lock");
                let r = Record::Handle {
                    now,
                    command,
                    facts: vec![],
                };
                apply_record(&mut e, &store, &settings, r.clone()).expect("routing call");
                seq.record(r);
                drop(e);
                drop(seq);
                took.push(start.elapsed());
            }
            pairs.set(pairs.get() + 1);
        }
        took.sort_unstable();
        let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
        let over = |d: Duration| took.iter().filter(|t| **t > d).count();
        format!(
            "{} calls: p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}; {} over 1 ms, {} over 10 ms",
            took.len(),
            at(0.5),
            at(0.99),
            at(0.999),
            at(1.0),
            over(Duration::from_millis(1)),
            over(Duration::from_millis(10))
        )
    };
    let base_end = Instant::now() + Duration::from_secs(2);
    let without = route_for(&|| Instant::now() >= base_end);
    let done = std::sync::atomic::AtomicBool::new(false);
    let (written, during) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let w = replica.snapshot_now().expect("snapshot").expect("written");
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            w
        });
        let during = route_for(&|| done.load(std::sync::atomic::Ordering::SeqCst));
        (writer.join().expect("writer"), during)
    });
    replica.stop();
    println!(
        "n={n}: snapshot on the replica thread: {:.0} ms (of which engine+store to plain data {:.0} ms), {:.1} MiB; \
         engine lock held by it: 0 ms",
        written.write_secs * 1e3,
        written.build_secs * 1e3,
        written.bytes as f64 / (1 << 20) as f64
    );
    println!("n={n}: routing calls (open or abandon, locks + store writes) while the snapshot was written: {during}");
    println!("n={n}: routing calls for 2 s without a snapshot: {without}");
    drop(engine);
    drop(store);
    let start = Instant::now();
    let restored = durability::restore(&data, &settings).expect("restore");
    let restore = start.elapsed();
    println!("n={n}: restore steps: {:?}", restored.timings);
    assert_eq!(restored.store.conversation_count() as u64, n);
    drop(restored);
    println!("n={n}: in-process restore (read + check + decode + rebuild) {restore:?}");
    if let Ok(keep) = std::env::var("MEASURE_KEEP_DATA") {
        let keep = std::path::Path::new(&keep);
        std::fs::create_dir_all(keep).expect("keep dir");
        for entry in std::fs::read_dir(&data).expect("data dir") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), keep.join(entry.file_name())).expect("copy");
        }
        std::fs::copy(&config_path, keep.join("switchboard.toml")).expect("copy config");
    }

    // The real binary: process start to /readyz 200 on this data dir.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let start = Instant::now();
        let mut server = Server::start(dir.path(), &config_path, 0);
        server.ready().await;
        let ready = start.elapsed();
        // The engine's lock, behind the first pass over overdue deadlines.
        let (status, _) = server.get("/v1/queues").await;
        println!(
            "n={n}: binary start to ready {ready:?}; to the engine's first answer (GET /v1/queues {status}) {:?}",
            start.elapsed()
        );
    });
}

#[test]
#[ignore = "measurement; see docs/durability.md"]
fn measure_snapshot_100k() {
    snapshot_figures(100_000);
}

#[test]
#[ignore = "measurement; see docs/durability.md"]
fn measure_snapshot_1m() {
    snapshot_figures(1_000_000);
}

/// open + close pairs per second through the real binary (its own process),
/// `clients` connections each sending one request at a time and waiting for
/// its ack.
async fn pairs_per_sec(mode: &str, clients: usize, secs: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("switchboard.toml");
    let text = base_config(&data).replace(
        "[snapshot]\n",
        &format!("[snapshot]\ndurability = \"{mode}\"\n"),
    );
    std::fs::write(&config, text).expect("config");
    // The default snapshot interval: snapshots are not what is measured here.
    let mut server = Server::start_with(dir.path(), &config, 0, "30");
    server.ready().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for k in 0..clients {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Ws::connect(addr, CONNECTOR).await.expect("connect");
            let mut pairs = 0u64;
            let (mut opens, mut closes) = (Vec::new(), Vec::new());
            while tokio::time::Instant::now() < deadline {
                let open = json!({"type": "conversation.open", "customer_id": format!("c{k}"), "channel": "chat"});
                let t = Instant::now();
                let ack = c.ack(open).await.expect("open acked");
                opens.push(t.elapsed());
                let close = json!({"type": "conversation.close", "conversation_id": ack["conversation_id"]});
                let t = Instant::now();
                c.ack(close).await.expect("close acked");
                closes.push(t.elapsed());
                pairs += 1;
            }
            if k == 0 {
                opens.sort_unstable();
                closes.sort_unstable();
                let p = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
                println!(
                    "  client 0 ack latency: open p50 {:?} p99 {:?}, close p50 {:?} p99 {:?}",
                    p(&opens, 0.5), p(&opens, 0.99), p(&closes, 0.5), p(&closes, 0.99)
                );
            }
            pairs
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client");
    }
    let (_, metrics) = server.get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default().to_string();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    let (fsyncs, fsync_secs) = (
        value("switchboard_journal_fsync_seconds_count"),
        value("switchboard_journal_fsync_seconds_sum"),
    );
    if fsyncs > 0.0 {
        println!(
            "durability={mode} clients={clients}: {fsyncs} group fsyncs for {} requests ({:.1} per fsync), mean fsync {:.2} ms",
            total * 2,
            (total * 2) as f64 / fsyncs,
            fsync_secs / fsyncs * 1e3
        );
    }
    total as f64 / secs as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; see docs/durability.md"]
async fn measure_throughput_journal_vs_snapshot() {
    for clients in [1, 16, 64] {
        for mode in ["journal", "snapshot"] {
            let rate = pairs_per_sec(mode, clients, 5).await;
            println!("durability={mode} clients={clients}: {rate:.0} open+close pairs/s");
        }
    }
}

/// Restores the data directory named by `MEASURE_RESTORE_DIR` (one kept by
/// `MEASURE_KEEP_DATA=DIR` on `measure_snapshot_1m`) three times in a row and
/// prints each restore's steps: for profiling a restart without rebuilding
/// the million conversations each time.
#[test]
#[ignore = "measurement; see docs/durability.md"]
fn measure_restore_dir() {
    let Ok(dir) = std::env::var("MEASURE_RESTORE_DIR") else {
        println!("set MEASURE_RESTORE_DIR to a data directory");
        return;
    };
    let dir = std::path::Path::new(&dir);
    let config = AppConfig::from_toml_str(&base_config(dir)).expect("config");
    let settings = config.routing_settings();
    for _ in 0..3 {
        let (start, cpu) = (Instant::now(), cpu_secs());
        let mut restored = durability::restore(dir, &settings).expect("restore");
        let (took, cpu) = (start.elapsed(), cpu_secs() - cpu);
        println!(
            "{} conversations restored in {took:?} ({cpu:.2} s of CPU): {:?}",
            restored.store.conversation_count(),
            restored.timings
        );
        // What the router does first: every deadline that passed while it
        // was down fires at once.
        let start = Instant::now();
        restored.engine.handle_timeout(switchboard::clock::now_ms());
        let mut effects = 0u64;
        while restored.engine.poll_effect().is_some() {
            effects += 1;
        }
        println!(
            "  first handle_timeout (overdue deadlines): {:?}, {effects} effects",
            start.elapsed()
        );
    }
}

/// This process's user + system CPU time so far, from `/proc/self/stat`
/// (Linux; 0 elsewhere), in seconds at the kernel's tick resolution.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}
