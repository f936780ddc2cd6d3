//! Snapshot files: a fixed header and a bincode body, written atomically.
//!
//! Layout (little endian): `magic` (8 bytes, `SWBSNAP\0`), format version
//! (u32), body length (u64), CRC-32 of the body (u32), then the body: a
//! bincode-1 [`SnapshotBody`] (journal sequence number of the cut, the time
//! it was taken, the routing core's [`CoreSnapshot`] and the store's
//! [`StoreImage`]). A file is `snapshot-<seq, 20 digits>.snap`; it is written
//! to a temp file in the same directory, fsynced, renamed into place and the
//! directory fsynced, so a crash leaves either the old set or the new file
//! whole. The body is streamed to the file with its CRC computed on the way
//! (no second copy in memory); the header is written last. Loading takes the newest file that checks out and logs every one it
//! skipped and why. This module must never delete a file it cannot prove is
//! superseded, and never return a body whose checksum failed.

use super::record::Seq;
use crate::routing::{CoreSnapshot, Millis};
use crate::store::StoreImage;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// First bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"SWBSNAP\0";
/// Version of the file layout and body encoding.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 8 + 4 + 8 + 4;

/// What a snapshot file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotBody {
    /// Every journal record up to and including this one is in the state.
    pub seq: Seq,
    pub taken_at_ms: Millis,
    pub core: CoreSnapshot,
    pub store: StoreImage,
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
    #[error("{path} has format version {found}, this build reads {FORMAT_VERSION}")]
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
    #[error("{path}: cannot decode the body: {source}")]
    Decode {
        path: PathBuf,
        source: bincode::Error,
    },
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

/// Encodes `body` with its header (in memory; [`write`] streams instead).
pub fn encode(body: &SnapshotBody) -> Result<Vec<u8>, SnapshotError> {
    let mut out = vec![0u8; HEADER_LEN];
    bincode::serialize_into(&mut out, body).map_err(SnapshotError::Encode)?;
    let payload_len = (out.len() - HEADER_LEN) as u64;
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[..HEADER_LEN].copy_from_slice(&header(payload_len, crc));
    Ok(out)
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

/// Decodes a whole file's bytes; `path` only names it in errors.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<SnapshotBody, SnapshotError> {
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
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Version {
            path: path_buf(),
            found: version,
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let len = u64::from_le_bytes(len);
    let stored = u32_at(20);
    let body = &bytes[HEADER_LEN..];
    if (body.len() as u64) < len {
        return Err(SnapshotError::Short {
            path: path_buf(),
            expected: len,
            found: body.len() as u64,
        });
    }
    let body = &body[..len as usize];
    let computed = crc32fast::hash(body);
    if computed != stored {
        return Err(SnapshotError::Checksum {
            path: path_buf(),
            stored,
            computed,
        });
    }
    bincode::deserialize(body).map_err(|source| SnapshotError::Decode {
        path: path_buf(),
        source,
    })
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
        bincode::serialize_into(&mut out, body).map_err(|e| match *e {
            bincode::ErrorKind::Io(source) => SnapshotError::Io {
                op: "writing",
                path: tmp.clone(),
                source,
            },
            other => SnapshotError::Encode(Box::new(other)),
        })?;
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
pub fn read(path: &Path) -> Result<SnapshotBody, SnapshotError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io("reading", path))?;
    decode(path, &bytes)
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
    pub body: SnapshotBody,
    pub path: PathBuf,
    /// Newer files that failed their checks, with why.
    pub skipped: Vec<SnapshotError>,
}

/// The newest snapshot in `dir` that checks out; `Ok(None)` when none does
/// (every damaged file is logged with the reason it was skipped).
pub fn load_newest(dir: &Path) -> Result<Option<Loaded>, SnapshotError> {
    let mut skipped = Vec::new();
    for (_, path) in list(dir)?.into_iter().rev() {
        match read(&path) {
            Ok(body) => {
                return Ok(Some(Loaded {
                    body,
                    path,
                    skipped,
                }))
            }
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
