//! The durability layer without a server: files, replay, determinism.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use switchboard::config::AppConfig;
use switchboard::durability::journal::{self, JournalMsg, WriterOptions};
use switchboard::durability::snapshot::{self, SnapshotError};
use switchboard::durability::{self, apply_record, Record, Recorder};
use switchboard::durability::{ReplicaBase, ReplicaConfig, SnapshotReplica};
use switchboard::routing::{
    AgentStatus, Command, ConversationId, Engine, OfferId, RoutingSettings,
};
use switchboard::store::{Fact, Store, StoreImage};

fn settings(extra: &str) -> RoutingSettings {
    AppConfig::from_toml_str(extra)
        .unwrap_or_else(|e| panic!("config: {e}: {:?}", e.problems()))
        .routing_settings()
}

fn open(customer: &str, channel: &str, now: u64, id: u64) -> Record {
    Record::Handle {
        now,
        command: Command::Open {
            channel: channel.into(),
            queue: None,
            skills: vec![],
            priority: None,
            preferred_agent: None,
        },
        facts: vec![Fact::Opened {
            id: ConversationId(id),
            customer_id: customer.into(),
            channel: channel.into(),
            queue: "general".into(),
            priority: 0,
            attributes_json: format!(r#"{{"n":{id},"tier":"gold"}}"#),
            owner: "gateway-1".into(),
            now,
        }],
    }
}

fn login(agent: &str, chat: u8, now: u64) -> Record {
    Record::Handle {
        now,
        command: Command::AgentLogin {
            agent: agent.into(),
            skills: vec![],
            capacity: Some(vec![("chat".into(), chat)]),
            max_total: None,
        },
        facts: vec![Fact::AgentLoggedIn {
            id: agent.into(),
            name: Some(agent.to_uppercase()),
            skills: Default::default(),
            capacity: [("chat".to_string(), chat)].into_iter().collect(),
            max_total: None,
            now,
        }],
    }
}

fn line(id: u64, text: &str, now: u64) -> Record {
    Record::Fact(Fact::Line {
        conversation: ConversationId(id),
        line: switchboard::api::protocol::TranscriptLine {
            from: switchboard::api::protocol::Speaker::Customer,
            text: text.into(),
            at_ms: now,
            channel: "chat".into(),
        },
        agent_replied: false,
    })
}

/// A core command with nothing for the store beyond its effects.
fn command_at(now: u64, command: Command) -> Record {
    Record::Handle {
        now,
        command,
        facts: vec![],
    }
}

/// A scripted day: logins, opens, lines, accepts, rejects, expiries,
/// completes, a switch, a disconnect with grace expiry. Offer ids are read
/// back from the engine as it goes, so the script stays valid.
fn script(settings: &RoutingSettings) -> Vec<Record> {
    let mut probe = Engine::new(settings.clone()).expect("settings");
    let probe_store = Store::new();
    let mut out = Vec::new();
    let push = |r: Record, engine: &mut Engine, out: &mut Vec<Record>| {
        apply_record(engine, &probe_store, settings, r.clone()).expect("scripted step applies");
        out.push(r);
    };
    let mut now = 1_700_000_000_000u64;
    push(login("ann", 2, now), &mut probe, &mut out);
    push(login("bob", 1, now + 1), &mut probe, &mut out);
    for i in 1..=12u64 {
        now += 50;
        push(
            open(&format!("cust-{}", i % 4), "chat", now, i),
            &mut probe,
            &mut out,
        );
        push(
            line(i, &format!("hello {i}"), now + 1),
            &mut probe,
            &mut out,
        );
    }
    // Accept or reject the open offers, from the store's view.
    for round in 0..6u64 {
        now += 500;
        let offers: Vec<(String, String)> = probe_store
            .agents()
            .into_iter()
            .flat_map(|a| a.offers.into_keys().map(move |o| (a.id.clone(), o)))
            .collect();
        for (agent, offer) in offers {
            let offer = OfferId::parse(&offer).expect("offer id");
            let command = if round % 2 == 0 {
                Command::Accept {
                    agent: agent.as_str().into(),
                    offer,
                }
            } else {
                Command::Reject {
                    agent: agent.as_str().into(),
                    offer,
                }
            };
            push(command_at(now, command), &mut probe, &mut out);
        }
        for a in probe_store.agents() {
            if let Some(c) = a.conversations.first() {
                let conversation = ConversationId::parse(c).expect("id");
                if round == 2 {
                    let command = Command::SwitchChannel {
                        conversation,
                        channel: "voice".into(),
                    };
                    push(command_at(now, command), &mut probe, &mut out);
                } else {
                    let command = Command::Complete {
                        agent: a.id.as_str().into(),
                        conversation,
                    };
                    push(command_at(now, command), &mut probe, &mut out);
                }
            }
        }
        // Let timers fire (offer expiry, wrap-up, SLA).
        now += 40_000;
        push(Record::Timeout { now }, &mut probe, &mut out);
        if round == 3 {
            let command = Command::AgentDisconnected {
                agent: "bob".into(),
            };
            push(command_at(now, command), &mut probe, &mut out);
            let command = Command::AgentSetStatus {
                agent: "ann".into(),
                status: AgentStatus::Away,
            };
            push(command_at(now, command), &mut probe, &mut out);
            let command = Command::AgentSetStatus {
                agent: "ann".into(),
                status: AgentStatus::Available,
            };
            push(command_at(now, command), &mut probe, &mut out);
        }
    }
    out
}

fn core_bytes(engine: &Engine) -> Vec<u8> {
    bincode::serialize(&engine.snapshot()).expect("encode")
}

fn image(store: &Store) -> StoreImage {
    StoreImage::from_records(store.records())
}

#[test]
fn replaying_the_journal_rebuilds_the_live_engine_and_store_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The random policy: its seeded sequence must survive the round trip too.
    let settings = settings("[queues.general]\npolicy = \"random\"\n");
    let records = script(&settings);
    assert!(records.len() > 40, "the script does something");

    let writer =
        journal::spawn_writer(dir.path(), 1, None, WriterOptions::default()).expect("journal");
    let recorder = Recorder::journaled(0, writer.tx.clone(), writer.watermark.clone());
    let mut live = Engine::new(settings.clone()).expect("settings");
    let live_store = Store::new();
    for r in &records {
        let mut seq = recorder.lock();
        apply_record(&mut live, &live_store, &settings, r.clone()).expect("applies");
        seq.record(r.clone());
    }
    recorder.sync();

    let restored = durability::restore(dir.path(), &settings).expect("restore");
    assert_eq!(restored.replay.applied, records.len() as u64);
    assert_eq!(restored.last_seq, records.len() as u64);
    assert_eq!(restored.refused, 0);
    assert!(restored.snapshot.is_none());
    assert_eq!(
        core_bytes(&restored.engine),
        core_bytes(&live),
        "replayed core differs from live"
    );
    assert_eq!(
        image(&restored.store),
        image(&live_store),
        "replayed store differs from live"
    );
    let transcripts: usize = image(&restored.store)
        .conversations
        .iter()
        .map(|c| c.transcript.len())
        .sum();
    assert_eq!(transcripts, 12);
}

#[test]
fn a_snapshot_round_trips_and_the_journal_after_it_is_replayed_on_top() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings("");
    let records = script(&settings);
    let (head, tail) = records.split_at(records.len() / 2);

    let writer =
        journal::spawn_writer(dir.path(), 1, None, WriterOptions::default()).expect("journal");
    let recorder = Recorder::journaled(0, writer.tx.clone(), writer.watermark.clone());
    let engine = std::sync::Mutex::new(Engine::new(settings.clone()).expect("settings"));
    let store = Store::new();
    let run = |rs: &[Record]| {
        for r in rs {
            let mut seq = recorder.lock();
            let mut e = engine.lock().expect("lock");
            apply_record(&mut e, &store, &settings, r.clone()).expect("applies");
            seq.record(r.clone());
        }
    };
    run(head);
    assert_eq!(recorder.last_seq(), head.len() as u64);
    let written = durability::write_snapshot(
        dir.path(),
        3,
        recorder.last_seq(),
        42,
        &engine.lock().expect("lock"),
        &store,
    )
    .expect("write");
    assert!(written.bytes > snapshot::HEADER_LEN as u64);
    run(tail);
    recorder.sync();

    // The snapshot alone is the state at the cut.
    let loaded = snapshot::load_newest(dir.path())
        .expect("list")
        .expect("a snapshot");
    assert_eq!(loaded.file.seq, head.len() as u64);
    assert!(loaded.skipped.is_empty());

    // Snapshot + journal after it = the whole run; the pre-cut segment was pruned
    // only if an older snapshot covers it (it does not: keep everything before).
    let restored = durability::restore(dir.path(), &settings).expect("restore");
    assert_eq!(
        restored.snapshot.as_ref().map(|s| s.0),
        Some(head.len() as u64)
    );
    assert_eq!(restored.replay.applied, tail.len() as u64);
    let live = engine.lock().expect("lock");
    assert_eq!(core_bytes(&restored.engine), core_bytes(&live));
    assert_eq!(image(&restored.store), image(&store));
    // Each customer's conversations, oldest first, as live (the store is
    // rebuilt by several threads at once).
    for customer in ["cust-0", "cust-1", "cust-2", "cust-3"] {
        let ids = |s: &Store| -> Vec<String> {
            s.customer_conversations(customer)
                .into_iter()
                .map(|c| c.id())
                .collect()
        };
        assert_eq!(ids(&restored.store), ids(&store), "{customer}");
        assert!(
            ids(&store).len() >= 3,
            "{customer} has several conversations"
        );
    }
}

fn body(seq: u64, settings: &RoutingSettings) -> snapshot::SnapshotBody {
    let mut engine = Engine::new(settings.clone()).expect("settings");
    let store = Store::new();
    apply_record(&mut engine, &store, settings, open("c", "chat", 5, 1)).expect("open");
    snapshot::SnapshotBody {
        seq,
        taken_at_ms: seq * 10,
        core: engine.snapshot(),
        store: image(&store),
    }
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_next_older_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings("");
    for seq in [5, 9, 12] {
        snapshot::write(dir.path(), &body(seq, &settings)).expect("write");
    }
    // Newest: one flipped byte in the body. Middle: cut short.
    let newest = dir.path().join(snapshot::file_name(12));
    let mut bytes = std::fs::read(&newest).expect("read");
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&newest, &bytes).expect("write");
    let middle = dir.path().join(snapshot::file_name(9));
    let len = std::fs::metadata(&middle).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&middle)
        .expect("open")
        .set_len(len - 7)
        .expect("truncate");

    let loaded = snapshot::load_newest(dir.path())
        .expect("list")
        .expect("one is valid");
    assert_eq!(loaded.file.seq, 5);
    let body = loaded.file.body().expect("decodes");
    assert_eq!(body.store.conversations.len(), 1);
    assert_eq!(loaded.skipped.len(), 2);
    assert!(
        matches!(loaded.skipped[0], SnapshotError::Checksum { .. }),
        "{:?}",
        loaded.skipped[0]
    );
    assert!(
        matches!(loaded.skipped[1], SnapshotError::Short { .. }),
        "{:?}",
        loaded.skipped[1]
    );

    // None valid at all: no snapshot, not an error.
    std::fs::write(dir.path().join(snapshot::file_name(5)), b"SWBSNAP\0garbage").expect("write");
    assert!(snapshot::load_newest(dir.path()).expect("list").is_none());
}

#[test]
fn a_snapshot_whose_store_does_not_decode_is_skipped_for_the_next_older_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings("");
    for seq in [5, 9] {
        snapshot::write(dir.path(), &body(seq, &settings)).expect("write");
    }
    // The newest file's last record ends with its transcript's length (0):
    // make it run past the end, and fix the checksum so only decoding can
    // tell.
    let newest = dir.path().join(snapshot::file_name(9));
    let mut bytes = std::fs::read(&newest).expect("read");
    let last = bytes.len() - 1;
    bytes[last] = 0xff;
    let crc = crc32fast::hash(&bytes[snapshot::HEADER_LEN..]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&newest, &bytes).expect("write");

    let loaded = snapshot::load_newest(dir.path())
        .expect("list")
        .expect("framing and checksum pass");
    let err = loaded.file.body().expect_err("the store does not decode");
    assert!(matches!(err, SnapshotError::Store { .. }), "{err}");
    let restored = durability::restore(dir.path(), &settings).expect("restore");
    assert_eq!(restored.snapshot.map(|(seq, _)| seq), Some(5));
    assert_eq!(restored.skipped_snapshots, 1);
    assert_eq!(restored.store.conversation_count(), 1);
}

#[test]
fn keep_prunes_old_snapshots_and_the_journal_segments_they_cover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings("");
    for seq in [3, 6, 9] {
        snapshot::write(dir.path(), &body(seq, &settings)).expect("write");
        std::fs::write(dir.path().join(journal::segment_name(seq - 2)), b"").expect("segment");
    }
    std::fs::write(dir.path().join(journal::segment_name(10)), b"").expect("segment");
    let oldest = snapshot::prune(dir.path(), 2).expect("prune");
    assert_eq!(oldest, Some(6));
    let left: Vec<u64> = snapshot::list(dir.path())
        .expect("list")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(left, [6, 9]);
    // Segments 1.. and 4.. hold only records <= 6; 7.. holds 7..9, 10.. is the newest.
    journal::prune(dir.path(), 6).expect("prune journal");
    let segs: Vec<u64> = journal::segments(dir.path())
        .expect("list")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(segs, [7, 10]);
}

fn journal_with(dir: &Path, n: u64) -> std::path::PathBuf {
    let writer = journal::spawn_writer(dir, 1, None, WriterOptions::default()).expect("journal");
    for seq in 1..=n {
        writer
            .tx
            .send(JournalMsg::Append(seq, Record::Timeout { now: seq }))
            .expect("send");
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    writer.tx.send(JournalMsg::Sync(tx)).expect("send");
    rx.recv().expect("synced");
    assert_eq!(writer.watermark.borrow().seq, n);
    dir.join(journal::segment_name(1))
}

/// Where the records of a segment end (zeros follow, up to the file's end).
fn records_end(path: &Path) -> u64 {
    journal::decode_segment(&std::fs::read(path).expect("read")).valid_len
}

#[test]
fn a_segment_grows_by_zero_chunks_and_its_zero_tail_is_a_clean_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_with(dir.path(), 10);
    let end = records_end(&path);
    let len = std::fs::metadata(&path).expect("meta").len();
    assert_eq!(
        len,
        end + journal::ZERO_CHUNK,
        "zeros are written one chunk ahead of the records"
    );
    let read = journal::decode_segment(&std::fs::read(&path).expect("read"));
    assert_eq!(read.records.len(), 10);
    assert_eq!((read.skipped_bytes, read.damage), (0, None));
    let stats = journal::replay(dir.path(), 0, |_, _| {}).expect("replay");
    assert_eq!((stats.applied, stats.truncated_bytes), (10, 0));
    assert_eq!(
        std::fs::metadata(&path).expect("meta").len(),
        len,
        "a clean zero tail is left alone"
    );

    // Anything but zeros after the end marker is damage, cut off.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .write_all_at(b"x", end + 100)
        .expect("write");
    let stats = journal::replay(dir.path(), 0, |_, _| {}).expect("replay");
    assert_eq!((stats.applied, stats.truncated_bytes), (10, len - end));
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), end);
}

#[test]
fn a_torn_journal_tail_is_detected_logged_and_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_with(dir.path(), 10);
    let good_len = records_end(&path);
    let file_len = std::fs::metadata(&path).expect("meta").len();
    // A torn write: a record header promising more bytes than were written
    // into the zeros ahead (its last bytes are not zeros, so the zeros that
    // stand in for them fail the checksum).
    let mut torn = Vec::new();
    let now = u64::from_le_bytes([0x11; 8]);
    journal::encode_record(11, &Record::Timeout { now }, &mut torn).expect("encode");
    torn.truncate(torn.len() - 2);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .write_all_at(&torn, good_len)
        .expect("write");

    let mut seen = Vec::new();
    let stats = journal::replay(dir.path(), 0, |seq, _| seen.push(seq)).expect("replay");
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    assert_eq!(stats.truncated_bytes, file_len - good_len);
    assert_eq!(
        std::fs::metadata(&path).expect("meta").len(),
        good_len,
        "the tail was cut off"
    );
    let again = journal::replay(dir.path(), 4, |_, _| {}).expect("replay");
    assert_eq!(
        (again.applied, again.truncated_bytes, again.last_seq),
        (6, 0, 10)
    );
}

#[test]
fn a_corrupt_record_stops_the_replay_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = journal_with(dir.path(), 10);
    let mut bytes = std::fs::read(&path).expect("read");
    // Records are the same size: flip a payload byte of the 7th.
    let record_len = (records_end(&path) as usize - 12) / 10;
    let at = 12 + 6 * record_len + 9;
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write");
    let mut seen = Vec::new();
    let stats = journal::replay(dir.path(), 0, |seq, _| seen.push(seq)).expect("replay");
    assert_eq!(seen, (1..=6).collect::<Vec<_>>());
    assert_eq!(
        stats.truncated_bytes,
        (bytes.len() - 12 - 6 * record_len) as u64
    );
}

#[test]
fn sla_deadlines_survive_a_snapshot_on_their_remaining_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Chat: answer target 30 s (default config), warning at the default fraction.
    let settings = settings("");
    let t0 = 1_700_000_000_000u64;
    let engine = std::sync::Mutex::new(Engine::new(settings.clone()).expect("settings"));
    let store = Store::new();
    let recorder = Recorder::unjournaled(0, None);
    {
        let mut seq = recorder.lock();
        let r = open("late", "chat", t0, 1);
        apply_record(
            &mut engine.lock().expect("lock"),
            &store,
            &settings,
            r.clone(),
        )
        .expect("open");
        seq.record(r);
    }
    let live_next = engine.lock().expect("lock").poll_timeout();
    assert!(
        live_next.is_some_and(|t| t > t0),
        "an SLA deadline is armed"
    );
    durability::write_snapshot(
        dir.path(),
        1,
        recorder.last_seq(),
        t0 + 1_000,
        &engine.lock().expect("lock"),
        &store,
    )
    .expect("write");

    let mut restored = durability::restore(dir.path(), &settings)
        .expect("restore")
        .engine;
    assert_eq!(
        restored.poll_timeout(),
        live_next,
        "the same absolute deadline: the remaining time"
    );
    // Before the deadline: nothing fires.
    restored.handle_timeout(t0 + 1_000);
    assert!(std::iter::from_fn(|| restored.poll_effect())
        .all(|e| !matches!(e, switchboard::routing::Effect::Sla { .. })));
    // Long after (the server was down): warning and breach fire on the first timeout.
    restored.handle_timeout(t0 + 600_000);
    let levels: Vec<_> = std::iter::from_fn(|| restored.poll_effect())
        .filter_map(|e| match e {
            switchboard::routing::Effect::Sla {
                conversation: ConversationId(1),
                level,
                ..
            } => Some(level),
            _ => None,
        })
        .collect();
    assert!(
        levels.contains(&switchboard::routing::SlaLevel::Breach),
        "{levels:?}"
    );
}

#[test]
fn the_replica_fed_by_the_journal_snapshots_exactly_the_live_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings("[queues.general]\npolicy = \"random\"\n");
    let records = script(&settings);
    let (to_replica, from_journal) = crossbeam_channel::unbounded();
    let writer = journal::spawn_writer(dir.path(), 1, Some(to_replica), WriterOptions::default())
        .expect("journal");
    let recorder = Recorder::journaled(0, writer.tx.clone(), writer.watermark.clone());
    let replica = SnapshotReplica::spawn(
        ReplicaConfig {
            start_gate: None,
            nice: 0,
            dir: dir.path().to_path_buf(),
            keep: 2,
            interval: std::time::Duration::from_secs(3600),
            settings: settings.clone(),
            journal: Some(writer.tx.clone()),
            base: ReplicaBase::Restore { until: 0 },
        },
        from_journal,
    )
    .expect("replica");
    let mut live = Engine::new(settings.clone()).expect("settings");
    let live_store = Store::new();
    let (first, second) = records.split_at(records.len() / 3);
    for (i, part) in [first, second].into_iter().enumerate() {
        for r in part {
            let mut seq = recorder.lock();
            apply_record(&mut live, &live_store, &settings, r.clone()).expect("applies");
            seq.record(r.clone());
        }
        recorder.sync();
        let written = replica.snapshot_now().expect("snapshot").expect("written");
        assert_eq!(written.seq, recorder.last_seq(), "part {i}");
        let loaded = snapshot::load_newest(dir.path())
            .expect("list")
            .expect("snapshot");
        assert_eq!(loaded.file.seq, written.seq);
        let body = loaded.file.body().expect("decodes");
        assert_eq!(
            bincode::serialize(&body.core).expect("encode"),
            core_bytes(&live),
            "part {i}: the replica's core is the live one"
        );
        assert_eq!(
            body.store,
            image(&live_store),
            "part {i}: the replica's store is the live one"
        );
    }
    // After the second snapshot the journal was rotated; the first segment is
    // covered by both kept snapshots and was deleted, so a restore replays nothing.
    let restored = durability::restore(dir.path(), &settings).expect("restore");
    assert_eq!(restored.replay.applied, 0);
    assert_eq!(core_bytes(&restored.engine), core_bytes(&live));
    replica.stop();
}

#[test]
fn a_journal_that_cannot_be_written_says_so_and_publishes_nothing_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("dir");
    // The commit hook (which releases connectors' notices) sees each
    // watermark the journal publishes, the failure included.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook = Arc::clone(&seen);
    let options = WriterOptions {
        on_commit: Some(Arc::new(move |mark| hook.lock().expect("lock").push(mark))),
        ..WriterOptions::default()
    };
    let writer = journal::spawn_writer(&data, 1, None, options).expect("journal");
    let last_seen = || {
        *seen
            .lock()
            .expect("lock")
            .last()
            .expect("a commit was seen")
    };
    let sync = || {
        let (tx, rx) = crossbeam_channel::bounded(1);
        writer.tx.send(JournalMsg::Sync(tx)).expect("send");
        rx.recv().expect("synced");
    };
    writer
        .tx
        .send(JournalMsg::Append(1, Record::Timeout { now: 1 }))
        .expect("send");
    sync();
    assert_eq!(
        *writer.watermark.borrow(),
        journal::Watermark {
            seq: 1,
            failed: false
        }
    );
    assert_eq!(last_seen(), *writer.watermark.borrow());
    // The next record needs a new segment in a directory that is gone.
    writer.tx.send(JournalMsg::Rotate).expect("send");
    std::fs::remove_dir_all(&data).expect("remove");
    writer
        .tx
        .send(JournalMsg::Append(2, Record::Timeout { now: 2 }))
        .expect("send");
    sync();
    assert_eq!(
        *writer.watermark.borrow(),
        journal::Watermark {
            seq: 1,
            failed: true
        }
    );
    assert_eq!(last_seen(), *writer.watermark.borrow());
    let recorder = Recorder::journaled(2, writer.tx.clone(), writer.watermark.clone());
    assert!(recorder.is_durable(1).expect("1 is durable"));
    assert!(recorder.is_durable(2).is_err(), "2 never will be");
}

/// Records 2 ms apart for 300 ms, through a journal with `window`; returns
/// how many group commits (fsyncs) it made for them.
fn commits_for_a_steady_stream(window: std::time::Duration) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = journal::spawn_writer(
        dir.path(),
        1,
        None,
        WriterOptions {
            nice: 0,
            commit_window: window,
            ..WriterOptions::default()
        },
    )
    .expect("journal");
    for seq in 1..=150 {
        writer
            .tx
            .send(JournalMsg::Append(seq, Record::Timeout { now: seq }))
            .expect("send");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    writer.tx.send(JournalMsg::Sync(tx)).expect("send");
    rx.recv().expect("synced");
    assert_eq!(writer.watermark.borrow().seq, 150, "every record durable");
    writer.commits.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn records_arriving_within_the_commit_window_share_one_fsync() {
    // 300 ms of records with a 100 ms window: one commit at the first record,
    // then at most one per window.
    let windowed = commits_for_a_steady_stream(std::time::Duration::from_millis(100));
    assert!(windowed <= 5, "{windowed} commits with a 100 ms window");
    // Without a window each fsync takes what arrived during the previous one.
    let eager = commits_for_a_steady_stream(std::time::Duration::ZERO);
    assert!(
        eager > windowed,
        "{eager} commits without a window, {windowed} with"
    );
}
