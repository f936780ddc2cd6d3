//! The journal: append-only segment files of checksummed records, written by
//! one thread with group commit.
//!
//! A segment is `journal-<first seq, 20 digits>.log`: the magic `SWBJRNL\0`
//! and a format version (u32 LE), then records, each `length` (u32 LE) +
//! `crc32` of the payload (u32 LE) + payload (bincode-1 of `(Seq, Record)`).
//! A new segment starts after each snapshot, so whole segments older than
//! the oldest snapshot kept can be deleted.
//!
//! Group commit: [`spawn_writer`] starts the one thread that owns the open
//! segment. It blocks for the first queued message, drains everything else
//! queued, writes it all in one `pwrite`, issues ONE `fdatasync`, and only
//! then publishes the highest durable sequence number on a `watch` channel,
//! and hands the durable records on to the snapshot replica. Callers never
//! wait for the disk while holding a lock; they wait on the watermark.
//!
//! A commit starts no sooner than [`WriterOptions::commit_window`] after the
//! previous one started: under a steady stream of changes the records of a
//! whole window share one `fdatasync`, instead of each fsync taking the few
//! records that arrived during the last one. After a quiet spell the first
//! change is committed at once.
//!
//! Segments grow by zero-filled chunks ([`ZERO_CHUNK`]) written ahead of the
//! records, so most group commits overwrite blocks the file already has and
//! the `fdatasync` flushes only the data: appending at the end would change
//! the file's size on every commit and make each one write the inode too (a
//! second synchronous disk write). A zero record header is therefore the
//! clean end of a segment, when everything after it is zero as well.
//!
//! Reading ([`replay`]) stops at the first record that is short or fails its
//! checksum, logs how many bytes it skipped, truncates them off and goes on
//! with a clean file. This module must never publish a sequence number before
//! its fsync returned, and never hand a record that failed its checksum to
//! the caller.

use super::record::{Record, Seq};
use super::snapshot::sync_dir;
use crate::clock;
use crate::metrics;
use crossbeam_channel::{Receiver, Sender};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// First bytes of every segment.
pub const MAGIC: [u8; 8] = *b"SWBJRNL\0";
/// Version of the segment layout and record encoding.
pub const FORMAT_VERSION: u32 = 1;
const SEGMENT_HEADER: u64 = 12;
/// A record longer than this is treated as damage, not allocated.
const MAX_RECORD: u32 = 64 << 20;
/// How far ahead of the records a segment is filled with zeros.
pub const ZERO_CHUNK: u64 = 1 << 20;

/// Why the journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode a journal record: {0}")]
    Encode(bincode::Error),
    #[error("journal records {expected}..{found} are missing (after {path})")]
    Gap {
        path: PathBuf,
        expected: Seq,
        found: Seq,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The file name of the segment whose first record is `first`.
pub fn segment_name(first: Seq) -> String {
    format!("journal-{first:020}.log")
}

fn parse_name(name: &str) -> Option<Seq> {
    name.strip_prefix("journal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Every segment in `dir`, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<(Seq, PathBuf)>, JournalError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_name) {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Appends one framed record to `out`.
pub fn encode_record(seq: Seq, record: &Record, out: &mut Vec<u8>) -> Result<(), JournalError> {
    let payload = bincode::serialize(&(seq, record)).map_err(JournalError::Encode)?;
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// What reading one segment found.
#[derive(Debug, Default)]
pub struct SegmentRead {
    pub records: Vec<(Seq, Record)>,
    /// Bytes of the file that hold whole, valid records (header included).
    pub valid_len: u64,
    /// Bytes after the last valid record (a torn or damaged tail).
    pub skipped_bytes: u64,
    /// Why reading stopped early, if it did.
    pub damage: Option<String>,
}

/// Reads one segment's bytes up to the first bad record.
pub fn decode_segment(bytes: &[u8]) -> SegmentRead {
    let mut read = SegmentRead::default();
    let total = bytes.len() as u64;
    if bytes.len() < SEGMENT_HEADER as usize
        || bytes[..8] != MAGIC
        || bytes[8..12] != FORMAT_VERSION.to_le_bytes()
    {
        read.skipped_bytes = total;
        read.damage = Some("missing or bad segment header".into());
        return read;
    }
    let mut at = SEGMENT_HEADER as usize;
    loop {
        if at == bytes.len() {
            break;
        }
        let damage = |why: &str| Some(why.to_string());
        if bytes.len() - at < 8 {
            read.damage = damage("short record header");
            break;
        }
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if len == 0 && crc == 0 {
            // The zero-filled space ahead of the records (no record is empty).
            if bytes[at..].iter().any(|&b| b != 0) {
                read.damage = damage("data after the end of the records");
            }
            break;
        }
        if len > MAX_RECORD {
            read.damage = damage("implausible record length");
            break;
        }
        let start = at + 8;
        let end = start + len as usize;
        if end > bytes.len() {
            read.damage = damage("short record");
            break;
        }
        let payload = &bytes[start..end];
        if crc32fast::hash(payload) != crc {
            read.damage = damage("checksum mismatch");
            break;
        }
        match bincode::deserialize::<(Seq, Record)>(payload) {
            Ok(entry) => read.records.push(entry),
            Err(e) => {
                read.damage = Some(format!("undecodable record: {e}"));
                break;
            }
        }
        at = end;
    }
    read.valid_len = at as u64;
    read.skipped_bytes = if read.damage.is_some() {
        total - at as u64
    } else {
        0
    };
    read
}

/// What a replay went through.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records handed to the callback.
    pub applied: u64,
    /// Sequence number of the last record applied (or `after`).
    pub last_seq: Seq,
    /// Bytes of damaged tail cut off.
    pub truncated_bytes: u64,
}

/// Feeds every record after `after`, in order, to `apply`. A damaged tail is
/// logged and truncated off; segments after a damaged one (which cannot be
/// applied without the records lost in between) are renamed `*.damaged`.
pub fn replay(
    dir: &Path,
    after: Seq,
    apply: impl FnMut(Seq, Record),
) -> Result<ReplayStats, JournalError> {
    replay_range(dir, after, Seq::MAX, true, apply)
}

/// [`replay`] of the records in `after+1..=until` only; with `repair` false
/// nothing is truncated or moved (for reading a journal that is being written).
pub fn replay_range(
    dir: &Path,
    after: Seq,
    until: Seq,
    repair: bool,
    mut apply: impl FnMut(Seq, Record),
) -> Result<ReplayStats, JournalError> {
    let mut stats = ReplayStats {
        last_seq: after,
        ..ReplayStats::default()
    };
    let all = segments(dir)?;
    let mut stop_at: Option<usize> = None;
    for (i, (_, path)) in all.iter().enumerate() {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io("reading", path))?;
        let read = decode_segment(&bytes);
        for (seq, record) in read.records {
            if seq <= stats.last_seq {
                continue;
            }
            if seq > until {
                return Ok(stats);
            }
            if seq != stats.last_seq + 1 {
                tracing::error!(path = %path.display(), expected = stats.last_seq + 1, found = seq,
                    "journal records are missing; stopping the replay here");
                stop_at = Some(i);
                break;
            }
            apply(seq, record);
            stats.applied += 1;
            stats.last_seq = seq;
        }
        if stop_at.is_some() || stats.last_seq >= until {
            break;
        }
        if !repair {
            continue;
        }
        if let Some(why) = read.damage {
            tracing::warn!(
                path = %path.display(),
                skipped_bytes = read.skipped_bytes,
                valid_bytes = read.valid_len,
                reason = %why,
                "journal tail is damaged (torn write?); truncating it off"
            );
            let keep = read.valid_len.max(if read.valid_len == 0 {
                0
            } else {
                SEGMENT_HEADER
            });
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| {
                    f.set_len(keep)?;
                    f.sync_all()
                })
                .map_err(io("truncating", path))?;
            stats.truncated_bytes += read.skipped_bytes;
            if i + 1 < all.len() {
                stop_at = Some(i);
                break;
            }
        }
    }
    if let Some(i) = stop_at.filter(|_| repair) {
        for (_, later) in &all[i + 1..] {
            let aside = later.with_extension("log.damaged");
            tracing::error!(path = %later.display(), moved_to = %aside.display(),
                "journal segment follows lost records and cannot be replayed; moved aside");
            fs::rename(later, &aside).map_err(io("moving aside", later))?;
        }
    }
    Ok(stats)
}

/// Deletes the segments whose records are all at or before `upto` (they are
/// in a snapshot that is kept). The newest segment is never deleted.
pub fn prune(dir: &Path, upto: Seq) -> Result<usize, JournalError> {
    let all = segments(dir)?;
    let mut deleted = 0;
    for pair in all.windows(2) {
        let (next_first, _) = pair[1];
        if next_first <= upto + 1 {
            fs::remove_file(&pair[0].1).map_err(io("deleting", &pair[0].1))?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The highest durable sequence number, published after each group fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    pub seq: Seq,
    /// The journal could not be written: nothing after `seq` will ever be durable.
    pub failed: bool,
}

/// What the journal thread is asked to do.
#[derive(Debug)]
pub enum JournalMsg {
    Append(Seq, Record),
    /// Close the current segment; the next record starts a new one (after a
    /// snapshot, so older segments can be deleted once they are covered).
    Rotate,
    /// Reply once everything queued before is durable.
    Sync(Sender<()>),
}

/// Creates a fresh segment starting at `first` (replacing an empty leftover).
fn open_segment(dir: &Path, first: Seq) -> Result<OpenSegment, JournalError> {
    let path = dir.join(segment_name(first));
    let mut file = File::create(&path).map_err(io("creating", &path))?;
    file.write_all(&MAGIC)
        .and_then(|_| file.write_all(&FORMAT_VERSION.to_le_bytes()))
        .and_then(|_| file.sync_all())
        .map_err(io("writing", &path))?;
    sync_dir(dir).map_err(io("fsyncing the directory", dir))?;
    Ok(OpenSegment {
        file,
        path,
        end: SEGMENT_HEADER,
        zeroed: SEGMENT_HEADER,
    })
}

/// The segment being written: records end at `end`, zeros at `zeroed`.
struct OpenSegment {
    file: File,
    path: PathBuf,
    end: u64,
    zeroed: u64,
}

impl OpenSegment {
    /// Writes `bytes` after the last record and makes them durable. Zeros
    /// are written ahead first when the records would pass them, so the
    /// file's size changes once per [`ZERO_CHUNK`], not once per commit.
    fn write_durably(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let new_end = self.end + bytes.len() as u64;
        if new_end > self.zeroed {
            let upto = new_end + ZERO_CHUNK;
            let zeros = vec![0u8; (upto - self.zeroed) as usize];
            self.file.write_all_at(&zeros, self.zeroed)?;
            self.zeroed = upto;
        }
        self.file.write_all_at(bytes, self.end)?;
        self.file.sync_data()?;
        self.end = new_end;
        Ok(())
    }
}

/// The journal thread's inbox, its watermark, and the thread.
pub struct JournalWriter {
    pub tx: Sender<JournalMsg>,
    pub watermark: watch::Receiver<Watermark>,
    pub thread: std::thread::JoinHandle<()>,
    /// Group commits made so far (one `fdatasync` each).
    pub commits: Arc<AtomicU64>,
}

/// How the journal thread runs.
#[derive(Clone, Default)]
pub struct WriterOptions {
    /// Nice value of the thread (see [`super::priority`]).
    pub nice: i32,
    /// The shortest time from the start of one commit to the start of the
    /// next (zero: commit as soon as the previous one is done).
    pub commit_window: Duration,
    /// Called on the journal thread after each commit, once the watermark
    /// is published (the server releases connectors' held notices with it).
    /// It must not block.
    pub on_commit: Option<OnCommit>,
}

/// See [`WriterOptions::on_commit`].
pub type OnCommit = Arc<dyn Fn(Watermark) + Send + Sync>;

impl std::fmt::Debug for WriterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterOptions")
            .field("nice", &self.nice)
            .field("commit_window", &self.commit_window)
            .field("on_commit", &self.on_commit.is_some())
            .finish()
    }
}

/// Starts the group-commit thread; the first record it gets must be `first`
/// (the watermark starts at `first - 1`). Records are handed to `forward`
/// (the snapshot replica) once durable, in order.
pub fn spawn_writer(
    dir: &Path,
    first: Seq,
    forward: Option<Sender<(Seq, Record)>>,
    options: WriterOptions,
) -> Result<JournalWriter, JournalError> {
    // Prove the directory takes a segment now, not at the first record.
    let out = open_segment(dir, first)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let (mark_tx, mark_rx) = watch::channel(Watermark {
        seq: first.saturating_sub(1),
        failed: false,
    });
    let mut seg = Segment {
        dir: dir.to_path_buf(),
        open: Some(out),
        buf: Vec::with_capacity(1 << 16),
    };
    let commits = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&commits);
    let thread = std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || {
            super::priority::set_this_thread_nice(options.nice);
            run_writer(&mut seg, rx, mark_tx, forward, &options, &counted)
        })
        .map_err(io("starting the journal thread for", Path::new("journal")))?;
    Ok(JournalWriter {
        tx,
        watermark: mark_rx,
        thread,
        commits,
    })
}

fn run_writer(
    seg: &mut Segment,
    rx: Receiver<JournalMsg>,
    mark: watch::Sender<Watermark>,
    forward: Option<Sender<(Seq, Record)>>,
    options: &WriterOptions,
    commits: &AtomicU64,
) {
    let window = options.commit_window;
    let mut failed = false;
    let mut durable = mark.borrow().seq;
    let mut batch: Vec<(Seq, Record)> = Vec::new();
    let mut last_commit: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        // What arrives until the window since the last commit has passed
        // joins this one. Callers only queue here and hold no lock while
        // their acks wait for the watermark.
        if let Some(rest) = last_commit.and_then(|at| window.checked_sub(at.elapsed())) {
            std::thread::sleep(rest);
        }
        let mut syncs = Vec::new();
        let mut result = Ok(());
        batch.clear();
        for msg in std::iter::once(first).chain(rx.try_iter()) {
            match msg {
                JournalMsg::Sync(reply) => syncs.push(reply),
                _ if failed || result.is_err() => {}
                JournalMsg::Append(seq, record) => {
                    result = seg.append(seq, &record);
                    batch.push((seq, record));
                }
                JournalMsg::Rotate => result = seg.close(),
            }
        }
        if result.is_ok() && !batch.is_empty() && !failed {
            let start = clock::instant();
            last_commit = Some(start);
            result = seg.sync();
            metrics::journal_fsync(clock::elapsed_secs(start));
            commits.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(()) if !failed => {
                if let Some((seq, _)) = batch.last() {
                    durable = *seq;
                }
                if let Some(forward) = &forward {
                    for entry in batch.drain(..) {
                        let _ = forward.send(entry);
                    }
                }
            }
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, durable_seq = durable,
                    "the journal cannot be written; nothing more will be acknowledged");
                metrics::error("journal_write");
                failed = true;
            }
        }
        let published = Watermark {
            seq: durable,
            failed,
        };
        mark.send_replace(published);
        if let Some(on_commit) = &options.on_commit {
            on_commit(published);
        }
        for reply in syncs {
            let _ = reply.send(());
        }
    }
    if !failed {
        let _ = seg.sync();
    }
}

/// The segment the journal thread writes to (`None` between a rotation and
/// the next record), and the encoded records of the commit being gathered.
struct Segment {
    dir: PathBuf,
    open: Option<OpenSegment>,
    buf: Vec<u8>,
}

impl Segment {
    fn append(&mut self, seq: Seq, record: &Record) -> Result<(), JournalError> {
        if self.open.is_none() {
            self.open = Some(open_segment(&self.dir, seq)?);
        }
        let before = self.buf.len();
        encode_record(seq, record, &mut self.buf)?;
        metrics::journal_appended((self.buf.len() - before) as u64);
        Ok(())
    }

    /// Writes what was appended since the last sync, then `fdatasync`s.
    fn sync(&mut self) -> Result<(), JournalError> {
        let Some(open) = &mut self.open else {
            return Ok(());
        };
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = open
            .write_durably(&self.buf)
            .map_err(io("appending to", &open.path));
        self.buf.clear();
        result
    }

    fn close(&mut self) -> Result<(), JournalError> {
        self.sync()?;
        self.open = None;
        Ok(())
    }
}
