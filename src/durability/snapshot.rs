//! Snapshot files: a fixed header and a sectioned body, written atomically.
//!
//! Layout (little endian): `magic` (8 bytes, `SWBSNAP\0`), format version
//! (u32), body length (u64), CRC-32 of the body (u32), then the body: the
//! journal sequence number of the cut (u64), the time it was taken (u64),
//! the routing core's [`CoreSnapshot`] (u64 length + bincode 1), and the
//! store's section (see `crate::store::codec`: chunks of binary records that
//! a restart decodes on every core at once). A file is
//! `snapshot-<seq, 20 digits>.snap`; it is written to a temp file in the
//! same directory, fsynced, renamed into place and the directory fsynced, so
//! a crash leaves either the old set or the new file whole. The body is
//! streamed to the file with its CRC computed on the way; the header is
//! written last.
//!
//! Reading checks the header, the CRC and the framing of every section
//! ([`read`]); the sections are decoded by whoever needs them
//! ([`Contents::Sections`]). Format 1 (a bincode 1 body, written by older
//! builds) is still read and decoded whole ([`Contents::Decoded`]), so a data
//! directory is migrated on its first start; any other version is refused.
//! This module must never delete a file it cannot prove is superseded, and
//! never return a body whose checksum failed.

use super::record::Seq;
use crate::routing::{CoreSnapshot, Millis};
use crate::store::codec::{self, ImageError, StoreSections};
use crate::store::legacy::StoreImageV1;
use crate::store::{PackedSection, StoreImage};
use serde::Deserialize;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// First bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"SWBSNAP\0";
/// Version of the file layout and body encoding written by this build.
pub const FORMAT_VERSION: u32 = 2;
/// The older version this build still reads (and migrates).
pub const LEGACY_VERSION: u32 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 8 + 4 + 8 + 4;

/// What a snapshot file holds, as plain data (what is written).
#[derive(Debug, Clone)]
pub struct SnapshotBody {
    /// Every journal record up to and including this one is in the state.
    pub seq: Seq,
    pub taken_at_ms: Millis,
    pub core: CoreSnapshot,
    pub store: StoreImage,
}

/// Format 1's body: bincode 1 of this.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct BodyV1 {
    seq: Seq,
    taken_at_ms: Millis,
    core: CoreSnapshot,
    store: StoreImageV1,
}

/// A snapshot file's bytes: mapped from the file by a restart (hundreds of
/// MiB read in place from the page cache instead of copied into fresh
/// memory), or owned.
#[derive(Debug)]
pub enum FileBytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Owned(v) => v,
            FileBytes::Mapped(m) => m,
        }
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(v: Vec<u8>) -> Self {
        FileBytes::Owned(v)
    }
}

/// A snapshot file that passed its checks.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub seq: Seq,
    pub taken_at_ms: Millis,
    pub version: u32,
    pub contents: Contents,
}

/// The body of a checked file.
#[derive(Debug)]
pub enum Contents {
    /// The current format: sections, decoded where they are needed.
    Sections(Sections),
    /// Format 1, decoded whole on reading.
    Decoded(Box<SnapshotBody>),
}

/// The file's bytes and where its sections lie (framing checked).
#[derive(Debug)]
pub struct Sections {
    path: PathBuf,
    /// The whole file, header included (shared with the records a restart
    /// leaves packed in it).
    body: Arc<FileBytes>,
    core: Range<usize>,
    store: Range<usize>,
}

impl Sections {
    /// Decodes the routing core's section.
    pub fn core(&self) -> Result<CoreSnapshot, SnapshotError> {
        bincode::deserialize(&self.body[self.core.clone()]).map_err(|source| {
            SnapshotError::Decode {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// The store's section as shared bytes, for records left packed.
    pub fn packed_store(&self) -> PackedSection {
        PackedSection {
            bytes: Arc::clone(&self.body) as Arc<dyn AsRef<[u8]> + Send + Sync>,
            range: self.store.clone(),
        }
    }

    /// The store's section, split into chunks (records not yet decoded).
    pub fn store(&self) -> Result<StoreSections<'_>, SnapshotError> {
        StoreSections::parse(&self.body[self.store.clone()])
            .map_err(|source| self.store_error(source))
    }

    /// An error in the store section, with the file's path.
    pub fn store_error(&self, source: ImageError) -> SnapshotError {
        SnapshotError::Store {
            path: self.path.clone(),
            source,
        }
    }
}

impl SnapshotFile {
    /// Everything as plain data (tests, tools; a restart decodes the
    /// sections in parallel instead).
    pub fn body(&self) -> Result<SnapshotBody, SnapshotError> {
        match &self.contents {
            Contents::Decoded(body) => Ok(SnapshotBody::clone(body)),
            Contents::Sections(s) => Ok(SnapshotBody {
                seq: self.seq,
                taken_at_ms: self.taken_at_ms,
                core: s.core()?,
                store: s.store()?.to_image().map_err(|e| s.store_error(e))?,
            }),
        }
    }
}

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a snapshot file (bad magic)")]
    BadMagic { path: PathBuf },
    #[error(
        "{path} has format version {found}; this build reads {FORMAT_VERSION} and {LEGACY_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{path} is short: header says {expected} body bytes, found {found}")]
    Short {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{path} fails its checksum (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        path: PathBuf,
        stored: u32,
        computed: u32,
    },
    #[error("{path}: the body is malformed: {why}")]
    Layout { path: PathBuf, why: &'static str },
    #[error("{path}: cannot decode the routing core: {source}")]
    Decode {
        path: PathBuf,
        source: bincode::Error,
    },
    #[error("{path}: cannot decode the store: {source}")]
    Store { path: PathBuf, source: ImageError },
    #[error("cannot encode the snapshot: {0}")]
    Encode(bincode::Error),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The file name of the snapshot cut at `seq`.
pub fn file_name(seq: Seq) -> String {
    format!("snapshot-{seq:020}.snap")
}

fn parse_name(name: &str) -> Option<Seq> {
    name.strip_prefix("snapshot-")?
        .strip_suffix(".snap")?
        .parse()
        .ok()
}

fn header(payload_len: u64, crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&payload_len.to_le_bytes());
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A writer that counts and checksums what passes through it.
struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Checks a whole file's bytes (header, checksum, framing); `path` names it.
pub fn check(path: &Path, bytes: impl Into<FileBytes>) -> Result<SnapshotFile, SnapshotError> {
    let bytes = bytes.into();
    let path_buf = || path.to_path_buf();
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::Short {
            path: path_buf(),
            expected: HEADER_LEN as u64,
            found: bytes.len() as u64,
        });
    }
    if bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic { path: path_buf() });
    }
    let version = u32_at(&bytes, 8);
    if version != FORMAT_VERSION && version != LEGACY_VERSION {
        return Err(SnapshotError::Version {
            path: path_buf(),
            found: version,
        });
    }
    let len = u64_at(&bytes, 12);
    let stored = u32_at(&bytes, 20);
    let found = (bytes.len() - HEADER_LEN) as u64;
    if found < len {
        return Err(SnapshotError::Short {
            path: path_buf(),
            expected: len,
            found,
        });
    }
    // Anything after the body (never written by us) is ignored.
    let end = HEADER_LEN + len as usize;
    let computed = crc32fast::hash(&bytes[HEADER_LEN..end]);
    if computed != stored {
        return Err(SnapshotError::Checksum {
            path: path_buf(),
            stored,
            computed,
        });
    }
    if version == LEGACY_VERSION {
        let v1: BodyV1 = bincode::deserialize(&bytes[HEADER_LEN..end]).map_err(|source| {
            SnapshotError::Decode {
                path: path_buf(),
                source,
            }
        })?;
        return Ok(SnapshotFile {
            path: path_buf(),
            seq: v1.seq,
            taken_at_ms: v1.taken_at_ms,
            version,
            contents: Contents::Decoded(Box::new(SnapshotBody {
                seq: v1.seq,
                taken_at_ms: v1.taken_at_ms,
                core: v1.core,
                store: v1.store.into(),
            })),
        });
    }
    let layout = |why| SnapshotError::Layout {
        path: path_buf(),
        why,
    };
    // Then seq, time and the core's length, 8 bytes each.
    let body_len = end - HEADER_LEN;
    if body_len < 24 {
        return Err(layout("it ends inside its first fields"));
    }
    let field = |i: usize| u64_at(&bytes, HEADER_LEN + 8 * i);
    let (seq, taken_at_ms, core_len) = (field(0), field(1), field(2));
    let core_start = HEADER_LEN + 24;
    let core_end = (core_start as u64)
        .checked_add(core_len)
        .filter(|core_end| *core_end <= end as u64)
        .ok_or_else(|| layout("the core section runs past the end"))? as usize;
    let sections = Sections {
        path: path_buf(),
        core: core_start..core_end,
        store: core_end..end,
        body: Arc::new(bytes),
    };
    sections.store()?;
    Ok(SnapshotFile {
        path: path_buf(),
        seq,
        taken_at_ms,
        version,
        contents: Contents::Sections(sections),
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Writes `body` atomically into `dir`, streaming it (encode, checksum and
/// write in one pass; the header is filled in last); returns the path and the
/// file's size in bytes.
pub fn write(dir: &Path, body: &SnapshotBody) -> Result<(PathBuf, u64), SnapshotError> {
    let path = dir.join(file_name(body.seq));
    let tmp = dir.join(format!(".{}.tmp", file_name(body.seq)));
    let size = {
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        let mut out = Checksummed {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
            len: 0,
        };
        out.inner
            .write_all(&[0u8; HEADER_LEN])
            .map_err(io("writing", &tmp))?;
        let encode_error = |e: bincode::Error| match *e {
            bincode::ErrorKind::Io(source) => SnapshotError::Io {
                op: "writing",
                path: tmp.clone(),
                source,
            },
            other => SnapshotError::Encode(Box::new(other)),
        };
        let core_len = bincode::serialized_size(&body.core).map_err(encode_error)?;
        for field in [body.seq, body.taken_at_ms, core_len] {
            out.write_all(&field.to_le_bytes())
                .map_err(io("writing", &tmp))?;
        }
        bincode::serialize_into(&mut out, &body.core).map_err(encode_error)?;
        codec::encode(&body.store, &mut out).map_err(io("writing", &tmp))?;
        let Checksummed { inner, crc, len } = out;
        let mut file = inner.into_inner().map_err(|e| SnapshotError::Io {
            op: "writing",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header(len, crc.finalize())))
            .map_err(io("writing the header of", &tmp))?;
        file.sync_all().map_err(io("fsyncing", &tmp))?;
        HEADER_LEN as u64 + len
    };
    fs::rename(&tmp, &path).map_err(io("renaming into place", &path))?;
    sync_dir(dir).map_err(io("fsyncing the directory", dir))?;
    Ok((path, size))
}

/// fsyncs a directory so a rename or a new file in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Reads and checks one snapshot file.
pub fn read(path: &Path) -> Result<SnapshotFile, SnapshotError> {
    let file = File::open(path).map_err(io("reading", path))?;
    let len = file.metadata().map_err(io("reading", path))?.len();
    if len == 0 {
        // Nothing to map; `check` reports it as too short.
        return check(path, Vec::new());
    }
    // SAFETY: a snapshot file is never written after the rename that
    // publishes it (a new snapshot is a new file; pruning unlinks, which
    // leaves a mapping intact), so the mapped bytes cannot change under us.
    match unsafe { memmap2::MmapOptions::new().populate().map(&file) } {
        Ok(mapped) => check(path, FileBytes::Mapped(mapped)),
        Err(e) => {
            // Not damage: a file system that cannot map files. Read it.
            tracing::warn!(path = %path.display(), error = %e, "cannot map the snapshot; reading it into memory");
            let mut bytes = Vec::new();
            let mut file = file;
            file.read_to_end(&mut bytes).map_err(io("reading", path))?;
            check(path, bytes)
        }
    }
}

/// Every snapshot file in `dir`, oldest (lowest sequence number) first.
pub fn list(dir: &Path) -> Result<Vec<(Seq, PathBuf)>, SnapshotError> {
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

/// A loaded snapshot and what was skipped to find it.
#[derive(Debug)]
pub struct Loaded {
    pub file: SnapshotFile,
    /// Newer files that failed their checks, with why.
    pub skipped: Vec<SnapshotError>,
}

/// The newest snapshot in `dir` that checks out; `Ok(None)` when none does
/// (every damaged file is logged with the reason it was skipped).
pub fn load_newest(dir: &Path) -> Result<Option<Loaded>, SnapshotError> {
    let mut skipped = Vec::new();
    for (_, path) in list(dir)?.into_iter().rev() {
        match read(&path) {
            Ok(file) => return Ok(Some(Loaded { file, skipped })),
            Err(e) => {
                tracing::error!(error = %e, "skipping a damaged snapshot; trying the next older one");
                skipped.push(e);
            }
        }
    }
    Ok(None)
}

/// Deletes all but the newest `keep` snapshots (and stale temp files);
/// returns the sequence number of the oldest one kept.
pub fn prune(dir: &Path, keep: usize) -> Result<Option<Seq>, SnapshotError> {
    // Temp files left by a crash in the middle of a write (never a finished snapshot).
    for entry in fs::read_dir(dir).map_err(io("listing", dir))?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".snapshot-") && name.ends_with(".tmp") {
            let path = entry.path();
            fs::remove_file(&path).map_err(io("deleting", &path))?;
        }
    }
    let all = list(dir)?;
    let cut = all.len().saturating_sub(keep.max(1));
    for (_, path) in &all[..cut] {
        fs::remove_file(path).map_err(io("deleting", path))?;
    }
    Ok(all.get(cut).map(|(seq, _)| *seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protocol::{Speaker, TranscriptLine};
    use crate::config::AppConfig;
    use crate::routing::{ConversationId, Engine};
    use crate::store::legacy::StoredConversationV1;
    use crate::store::ConversationState;

    fn file_with(version: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = header(body.len() as u64, crc32fast::hash(body)).to_vec();
        bytes[8..12].copy_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn a_format_1_file_is_migrated_and_an_unknown_version_refused() {
        let settings = AppConfig::from_toml_str("")
            .expect("config")
            .routing_settings();
        let core = Engine::new(settings).expect("settings").snapshot();
        let line = |text: &str| TranscriptLine {
            from: Speaker::Customer,
            text: text.into(),
            at_ms: 7,
            channel: "chat".into(),
        };
        let v1 = BodyV1 {
            seq: 12,
            taken_at_ms: 99,
            core,
            store: StoreImageV1 {
                conversations: vec![StoredConversationV1 {
                    key: ConversationId(3),
                    customer_id: "cu".into(),
                    channel: "chat".into(),
                    queue: "general".into(),
                    priority: 2,
                    state: ConversationState::Ended,
                    agent_id: Some("a-1".into()),
                    offer_id: None,
                    transcript: vec![line("hello"), line("still there?")],
                    attributes_json: r#"{"tier":"gold"}"#.into(),
                    previous_channels: vec!["voice".into()],
                    previous_agent_id: None,
                    outcome: Some("abandoned".into()),
                    opened_at_ms: 5,
                    assigned_at_ms: Some(6),
                    ended_at_ms: Some(8),
                    agent_replied: true,
                    owner: "gw".into(),
                }],
                agents: vec![],
            },
        };
        let body = bincode::serialize(&v1).expect("encode");
        let path = Path::new("snapshot-v1.snap");
        let file = check(path, file_with(LEGACY_VERSION, &body)).expect("format 1 is read");
        assert_eq!((file.seq, file.taken_at_ms, file.version), (12, 99, 1));
        let Contents::Decoded(body) = &file.contents else {
            panic!("format 1 is decoded whole");
        };
        let c = &body.store.conversations[0];
        assert_eq!(
            c.transcript.to_lines(),
            vec![line("hello"), line("still there?")]
        );
        assert_eq!(c.attributes.to_map()["tier"], "gold");
        assert_eq!(c.outcome, Some("abandoned"));
        assert_eq!(&*c.previous_channels[0], "voice");
        assert_eq!(c.agent_id.as_deref(), Some("a-1"));

        let store = body.store.clone().into_store();
        assert_eq!(store.customer_conversations("cu").len(), 1);

        let err = check(path, file_with(3, &[0u8; 40])).expect_err("version 3");
        assert!(
            matches!(err, SnapshotError::Version { found: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("reads 2 and 1"), "{err}");
    }
}
