//! A state file kept as a snapshot and a journal of the changes since: what the satellite's
//! files that change a little at a time (the desired state, the ledger) are made of, so that a
//! change costs what it changes, not what the file holds.
//!
//! The snapshot is the JSON file earlier versions wrote whole (`desired-state.json`,
//! `ledger.json`), written the same way (`persist::write_json_atomically`), with one more
//! top-level field, `journal_sequence`: the last journal record it holds. A file without it was
//! written by a version without journals, and holds everything: it is stamped when loaded, and
//! a journal found beside it (left before a downgrade) is dropped. The journal (`<name>.journal`) is a sequence of frames, each
//! appended with one `write` and made durable with one `fdatasync` before the append returns:
//!
//! ```text
//!   length of payload (u32 LE) | CRC-32C of sequence and payload (u32 LE) | sequence (u64 LE) | payload (JSON)
//! ```
//!
//! Loading is the snapshot, then every record whose sequence is above the snapshot's, in order.
//! A damaged frame with no intact frame after it is a write that was cut short, so never
//! acknowledged: it is dropped (and cut off the file, so the next append does not follow it).
//! A damaged frame, or one whose sequence does not follow, with a later record (a higher
//! sequence) after it is corruption: an error that names the file and the offset, never a
//! silent reset. Without one it is the end of the records: a write cut short, or older frames
//! the file's blocks held before (a crash can show them past the last synced write); they are
//! cut off too.
//!
//! The file is made longer than its records ahead of need ([`PREALLOCATE_BYTES`] of zeros,
//! written in page-sized pieces and synced with the append that needs them), so that an append writes into space the
//! file already has: its `fdatasync` then writes the record alone, where a file that grows
//! must also write its inode (the new size) before the call returns. Zeros after the last
//! record are that space, never a record: a frame of length zero is never written. (A version
//! without this takes them for a record cut short and cuts them off, with a warning.)
//!
//! Compaction writes the whole state as a new snapshot (atomically, stamped with the last
//! sequence), then empties the journal. A crash between the two leaves a snapshot that holds
//! every record still in the journal; their sequences say so, and they are skipped.
//!
//! The reconciler compacts both files once at every start (`Reconciler::load`), so the JSON
//! files of a stopped satellite that started since its last change hold everything: for an
//! operator who reads or mends them, and for a version without journals.
//!
//! What the records mean, and when to compact, is the owner's (`ledger::LedgerFile`,
//! `desired::DesiredStateFile`); one writer per file is `persist::StateDir`'s lock and the
//! reconciler's ownership.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::persist::{PersistError, io, read_json, write_json_atomically};

/// The bytes before a frame's payload.
const FRAME_HEADER: usize = 16;

/// The zeros the journal is made longer by when an append needs room: one `fsync` of the
/// file's new size per this many bytes of records, instead of one per record.
pub const PREALLOCATE_BYTES: u64 = 1024 * 1024;

/// The piece the zeros are written in. Written in one piece, the kernel may keep a megabyte
/// of zeros as one large page-cache folio, and each small append into it then walks the
/// whole folio's blocks (ext4): page-sized pieces keep folios small.
const ZEROS_PIECE: usize = 4096;

/// The journal is compacted once it is about this many times larger than the snapshot...
pub const COMPACT_FACTOR: u64 = 4;

/// ...give or take this share of it, drawn for each journal after every compaction: nodes
/// that fill together (one placement policy spreading a cluster's volumes evenly) would
/// otherwise compact together, every node writing and syncing megabytes at the same moment.
pub const COMPACT_SPREAD: f64 = 0.25;

/// ...and larger than this, so a small state is not rewritten every few changes.
pub const COMPACT_MIN_BYTES: u64 = 256 * 1024;

/// Writes `bytes` at `at`, then zeros up to `until`, the zeros in pieces that end on
/// [`ZEROS_PIECE`] boundaries.
fn write_with_zeros(file: &File, bytes: &[u8], at: u64, until: u64) -> std::io::Result<()> {
    const ZEROS: [u8; ZEROS_PIECE] = [0; ZEROS_PIECE];
    file.write_all_at(bytes, at)?;
    let mut offset = at + bytes.len() as u64;
    while offset < until {
        let to_boundary = ZEROS_PIECE - (offset % ZEROS_PIECE as u64) as usize;
        let piece = to_boundary.min((until - offset) as usize);
        file.write_all_at(&ZEROS[..piece], offset)?;
        offset += piece as u64;
    }
    Ok(())
}

/// A journal's compaction threshold: [`COMPACT_FACTOR`] ± [`COMPACT_SPREAD`].
fn draw_compact_factor() -> f64 {
    crate::spread::around(COMPACT_FACTOR as f64, COMPACT_SPREAD)
}

/// The snapshot as written: the state and the last journal record it holds.
#[derive(Serialize)]
struct SnapshotRef<'a, T> {
    journal_sequence: u64,
    #[serde(flatten)]
    state: &'a T,
}

#[derive(Deserialize)]
struct Snapshot<T> {
    /// `None`: written by a version without journals.
    #[serde(default)]
    journal_sequence: Option<u64>,
    #[serde(flatten)]
    state: T,
}

/// One state file's journal, open for appending.
#[derive(Debug)]
pub struct Journal {
    snapshot_path: PathBuf,
    path: PathBuf,
    file: File,
    /// The journal's length: where the next frame goes.
    len: u64,
    /// The file's size: from `len` on, zeros ([`PREALLOCATE_BYTES`]).
    allocated: u64,
    snapshot_len: u64,
    /// This journal's share of [`COMPACT_FACTOR`] ± [`COMPACT_SPREAD`], until it is compacted.
    compact_factor: f64,
    /// The sequence of the last record written (in the journal or the snapshot).
    sequence: u64,
    /// An append failed and its bytes could not be cut off: nothing more may be appended
    /// after them; the next change is written as a snapshot.
    damaged: bool,
}

/// A state file as loaded: its snapshot, the records after it, and the journal to go on with.
pub struct Loaded<S, R> {
    pub snapshot: Option<S>,
    pub records: Vec<R>,
    pub journal: Journal,
}

/// The journal's path for snapshot `snapshot` (`ledger.json` → `ledger.journal`).
pub fn journal_path(snapshot: &Path) -> PathBuf {
    snapshot.with_extension("journal")
}

/// A frame read from a journal.
struct Frame<'a> {
    sequence: u64,
    payload: &'a [u8],
    end: usize,
}

/// The intact frame at `at`, if there is one.
fn frame_at(bytes: &[u8], at: usize) -> Option<Frame<'_>> {
    let header = bytes.get(at..at.checked_add(FRAME_HEADER)?)?;
    let length = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let checksum = u32::from_le_bytes(header[4..8].try_into().ok()?);
    // An empty payload is never written; refusing it keeps a run of zeros from reading as
    // frames.
    if length == 0 {
        return None;
    }
    let end = at.checked_add(FRAME_HEADER)?.checked_add(length)?;
    let payload = bytes.get(at + FRAME_HEADER..end)?;
    let sequenced = &bytes[at + 8..end];
    if crc32c::crc32c(sequenced) != checksum {
        return None;
    }
    Some(Frame {
        sequence: u64::from_le_bytes(header[8..16].try_into().ok()?),
        payload,
        end,
    })
}

/// The frame of `payload` as record `sequence`.
fn frame(sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(FRAME_HEADER + payload.len());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut sequenced = Vec::with_capacity(8 + payload.len());
    sequenced.extend_from_slice(&sequence.to_le_bytes());
    sequenced.extend_from_slice(payload);
    bytes.extend_from_slice(&crc32c::crc32c(&sequenced).to_le_bytes());
    bytes.extend_from_slice(&sequenced);
    bytes
}

/// The journal's intact frames and where they end. The records end at the first frame that is
/// damaged or does not follow the last (an older sequence: what the file's blocks held before,
/// which a crash can show past the last synced write), unless a record with a higher sequence
/// than the last (than `floor`, the snapshot's, before the first) lies after it: only then was
/// something acknowledged damaged, and that is an error.
fn read_frames<'a>(
    path: &Path,
    bytes: &'a [u8],
    floor: u64,
) -> Result<(Vec<Frame<'a>>, usize), PersistError> {
    let mut frames: Vec<Frame<'a>> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match frame_at(bytes, at) {
            Some(frame)
                if frames
                    .last()
                    .is_none_or(|last| frame.sequence > last.sequence) =>
            {
                at = frame.end;
                frames.push(frame);
            }
            found => {
                let last = frames.last().map_or(floor, |f| f.sequence);
                let later = (at + 1..bytes.len()).find_map(|i| {
                    frame_at(bytes, i)
                        .filter(|f| f.sequence > last)
                        .map(|f| (i, f))
                });
                if let Some((offset, record)) = later {
                    return Err(PersistError::JournalCorrupt {
                        path: path.to_path_buf(),
                        offset: at as u64,
                        reason: match found {
                            Some(frame) => format!(
                                "record {} follows record {last}, and record {} lies after it (at byte {offset})",
                                frame.sequence, record.sequence
                            ),
                            None => format!(
                                "a damaged record lies before an intact one, record {} (at byte {offset})",
                                record.sequence
                            ),
                        },
                    });
                }
                break;
            }
        }
    }
    Ok((frames, at))
}

impl Journal {
    /// Loads the state file whose snapshot is `snapshot_path`: the snapshot (`None` if there is
    /// none, as before the first compaction) and the records after it. A damaged tail is cut off
    /// the journal; the journal is created if missing.
    pub fn open<S: Serialize + DeserializeOwned, R: DeserializeOwned>(
        snapshot_path: PathBuf,
    ) -> Result<Loaded<S, R>, PersistError> {
        let path = journal_path(&snapshot_path);
        let snapshot = read_json::<Snapshot<S>>(&snapshot_path)?;
        let mut bytes = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", &path)(e)),
        };
        if let Some(snapshot) = snapshot.as_ref().filter(|s| s.journal_sequence.is_none()) {
            // Written by a version without journals. Beside an empty journal (or none), that
            // is the upgrade from it. Beside records, that version ran after them (this one,
            // then it, then this one again) and wrote the whole state: the records are older
            // than the snapshot. Either way the snapshot is stamped before anything is
            // appended, so that records appended from now on are never taken for old ones;
            // the old records go first, so a crash in between leaves the upgrade case.
            if bytes.as_ref().is_some_and(|b| !b.is_empty()) {
                warn!(
                    journal = %path.display(),
                    snapshot = %snapshot_path.display(),
                    "the snapshot was written by a version without journals after the journal's records; they are older and dropped"
                );
                let file = File::options()
                    .write(true)
                    .open(&path)
                    .map_err(io("open", &path))?;
                file.set_len(0)
                    .and_then(|()| file.sync_all())
                    .map_err(io("empty", &path))?;
                bytes = Some(Vec::new());
            }
            write_json_atomically(
                &snapshot_path,
                &SnapshotRef {
                    journal_sequence: 0,
                    state: &snapshot.state,
                },
            )?;
        }
        let snapshot_len = std::fs::metadata(&snapshot_path).map_or(0, |m| m.len());
        let snapshot_sequence = snapshot
            .as_ref()
            .and_then(|s| s.journal_sequence)
            .unwrap_or(0);
        let mut records = Vec::new();
        let mut sequence = snapshot_sequence;
        let mut len = 0;
        // Whether everything after the records is zeros: space made ahead, kept.
        let mut zeros_after = true;
        if let Some(bytes) = &bytes {
            let (frames, end) = read_frames(&path, bytes, snapshot_sequence)?;
            for frame in frames {
                sequence = sequence.max(frame.sequence);
                if frame.sequence <= snapshot_sequence {
                    continue;
                }
                let record = serde_json::from_slice(frame.payload).map_err(|source| {
                    PersistError::JournalRecord {
                        path: path.clone(),
                        sequence: frame.sequence,
                        source,
                    }
                })?;
                records.push(record);
            }
            len = end as u64;
            zeros_after = bytes[end..].iter().all(|&b| b == 0);
            if !zeros_after {
                warn!(
                    journal = %path.display(),
                    offset = end,
                    dropped_bytes = bytes.len() - end,
                    "cutting off the journal after its last intact record: what follows is a record cut short (never acknowledged) or older data the file's blocks held"
                );
            }
        }
        // Written at `len` (`write_all_at`), not opened to append: appends go into the zeros.
        let file = File::options()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open", &path))?;
        let mut allocated = bytes.as_ref().map_or(0, |b| b.len() as u64);
        if !zeros_after {
            file.set_len(len)
                .map_err(io("cut the damaged tail off", &path))?;
            file.sync_all().map_err(io("sync", &path))?;
            allocated = len;
        }
        if bytes.is_none() {
            let dir = path.parent().unwrap_or(Path::new("."));
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync the directory", dir))?;
        }
        Ok(Loaded {
            snapshot: snapshot.map(|s| s.state),
            records,
            journal: Journal {
                snapshot_path,
                path,
                file,
                len,
                allocated,
                snapshot_len,
                compact_factor: draw_compact_factor(),
                sequence,
                damaged: false,
            },
        })
    }

    /// Appends `record` and makes it durable. After an error the journal is as it was (or, if
    /// that could not be ensured, takes no more records until the next [`Journal::compact`]).
    pub fn append<R: Serialize>(&mut self, record: &R) -> Result<(), PersistError> {
        if self.damaged {
            return Err(PersistError::Io {
                action: "append to",
                path: self.path.clone(),
                source: std::io::Error::other(
                    "an earlier append failed part way; the state is written whole instead",
                ),
            });
        }
        let payload = serde_json::to_vec(record).map_err(|source| PersistError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        let sequence = self.sequence + 1;
        let bytes = frame(sequence, &payload);
        let end = self.len + bytes.len() as u64;
        let written = if end <= self.allocated {
            // Into zeros the file has: the record is all `fdatasync` writes.
            self.file
                .write_all_at(&bytes, self.len)
                .map_err(io("append to", &self.path))
                .and_then(|()| self.file.sync_data().map_err(io("sync", &self.path)))
        } else {
            // The record and the zeros after it (in pieces, [`ZEROS_PIECE`]), and the new size
            // with them in one sync.
            let allocated = end + PREALLOCATE_BYTES;
            write_with_zeros(&self.file, &bytes, self.len, allocated)
                .map_err(io("append to", &self.path))
                .and_then(|()| self.file.sync_all().map_err(io("sync", &self.path)))
                .map(|()| self.allocated = allocated)
        };
        if let Err(e) = written {
            // The frame may have reached the file whole: its sequence is used up, so a
            // snapshot written after this one counts it as held and never replays it.
            self.sequence = sequence;
            // Whatever part of the frame reached the file must not stay in front of the next.
            // The cut takes the zeros after it too; the next append makes them again.
            let undone = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_all());
            self.allocated = self.len;
            if undone.is_err() {
                self.damaged = true;
            }
            return Err(e);
        }
        self.len = end;
        self.sequence = sequence;
        Ok(())
    }

    /// Whether the journal has grown enough (against the snapshot) to be compacted, or must be.
    pub fn wants_compaction(&self) -> bool {
        self.damaged
            || self.len as f64
                > self.compact_factor * self.snapshot_len.max(COMPACT_MIN_BYTES) as f64
    }

    /// Writes `state` (everything the journal and snapshot hold, and no more) as the new
    /// snapshot, then empties the journal.
    pub fn compact<S: Serialize>(&mut self, state: &S) -> Result<(), PersistError> {
        write_json_atomically(
            &self.snapshot_path,
            &SnapshotRef {
                journal_sequence: self.sequence,
                state,
            },
        )?;
        self.snapshot_len = std::fs::metadata(&self.snapshot_path).map_or(0, |m| m.len());
        self.compact_factor = draw_compact_factor();
        match self.file.set_len(0).and_then(|()| self.file.sync_all()) {
            Ok(()) => {
                self.len = 0;
                self.allocated = 0;
                self.damaged = false;
            }
            Err(e) => {
                // The state is durable: the snapshot holds every record, so a load skips
                // them. Nothing may follow them, though: the next change compacts again.
                warn!(journal = %self.path.display(), error = %e, "could not empty the journal after writing the snapshot");
                self.damaged = true;
            }
        }
        Ok(())
    }

    /// The journal's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state of numbered values; a record sets or clears one.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct State {
        values: std::collections::BTreeMap<String, String>,
    }

    impl State {
        fn is_empty(&self) -> bool {
            self.values.is_empty()
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Set(u32, Option<String>);

    fn apply(state: &mut State, record: Set) {
        let key = record.0.to_string();
        match record.1 {
            Some(value) => state.values.insert(key, value),
            None => state.values.remove(&key),
        };
    }

    fn load(path: &Path) -> Result<(State, Journal), PersistError> {
        let loaded = Journal::open::<State, Set>(path.to_path_buf())?;
        let mut state = loaded.snapshot.unwrap_or_default();
        for record in loaded.records {
            apply(&mut state, record);
        }
        Ok((state, loaded.journal))
    }

    /// Appends `record` to `state` and the journal.
    fn change(state: &mut State, journal: &mut Journal, record: Set) {
        journal.append(&record).unwrap();
        apply(state, record);
    }

    #[test]
    fn a_journal_loads_the_changes_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut state, mut journal) = load(&path).unwrap();
        assert!(state.is_empty() && journal.is_empty());
        for i in 0..20 {
            change(&mut state, &mut journal, Set(i % 7, Some(format!("v{i}"))));
        }
        change(&mut state, &mut journal, Set(3, None));
        drop(journal);
        let (loaded, _) = load(&path).unwrap();
        assert_eq!(loaded, state);
        assert!(!path.exists(), "no snapshot before the first compaction");
    }

    #[test]
    fn a_record_cut_short_anywhere_loads_the_state_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut state, mut journal) = load(&path).unwrap();
        change(&mut state, &mut journal, Set(1, Some("one".into())));
        change(&mut state, &mut journal, Set(2, Some("two".into())));
        let before = state.clone();
        let whole = journal.len();
        change(&mut state, &mut journal, Set(1, Some("changed".into())));
        let bytes = std::fs::read(journal.path()).unwrap()[..journal.len() as usize].to_vec();
        drop(journal);
        for cut in whole as usize..bytes.len() {
            std::fs::write(journal_path(&path), &bytes[..cut]).unwrap();
            let (loaded, journal) = load(&path).unwrap();
            assert_eq!(loaded, before, "cut at byte {cut}");
            // The damaged tail is gone, so what comes next is not appended after it.
            assert_eq!(journal.len(), whole);
            assert_eq!(std::fs::metadata(journal.path()).unwrap().len(), whole);
        }
        // A last record that reads as zeros (its size reached the disk, its data did not).
        let mut zeroed = bytes.clone();
        zeroed[whole as usize..].fill(0);
        std::fs::write(journal_path(&path), &zeroed).unwrap();
        let (loaded, mut journal) = load(&path).unwrap();
        assert_eq!(loaded, before);
        let mut state = loaded;
        change(&mut state, &mut journal, Set(9, Some("after".into())));
        drop(journal);
        assert_eq!(load(&path).unwrap().0, state);
    }

    /// Appends go into zeros the file already has, made a [`PREALLOCATE_BYTES`] at a time; a
    /// load keeps them and goes on where the records end.
    #[test]
    fn appends_write_into_space_made_ahead_and_a_load_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut state, mut journal) = load(&path).unwrap();
        let size = |journal: &Journal| std::fs::metadata(journal.path()).unwrap().len();
        change(&mut state, &mut journal, Set(1, Some("one".into())));
        let first = size(&journal);
        assert_eq!(first, journal.len() + PREALLOCATE_BYTES);
        for i in 0..50 {
            change(&mut state, &mut journal, Set(i % 5, Some(format!("v{i}"))));
        }
        assert_eq!(size(&journal), first, "appends within the space made ahead");
        let bytes = std::fs::read(journal.path()).unwrap();
        assert!(bytes[journal.len() as usize..].iter().all(|&b| b == 0));
        let len = journal.len();
        drop(journal);

        let (loaded, mut journal) = load(&path).unwrap();
        assert_eq!(loaded, state);
        assert_eq!(
            (journal.len(), size(&journal)),
            (len, first),
            "nothing cut off"
        );
        let mut state = loaded;
        change(
            &mut state,
            &mut journal,
            Set(7, Some("after the load".into())),
        );
        assert_eq!(size(&journal), first);
        // A record larger than the space left makes more.
        let large = "x".repeat(PREALLOCATE_BYTES as usize);
        change(&mut state, &mut journal, Set(8, Some(large)));
        assert_eq!(size(&journal), journal.len() + PREALLOCATE_BYTES);
        change(&mut state, &mut journal, Set(9, Some("nine".into())));
        drop(journal);
        assert_eq!(load(&path).unwrap().0, state);
    }

    /// A record cut short in the space made ahead is cut off with the zeros after it, and the
    /// next append makes them again.
    #[test]
    fn a_record_cut_short_in_the_space_made_ahead_loads_the_state_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut state, mut journal) = load(&path).unwrap();
        change(&mut state, &mut journal, Set(1, Some("one".into())));
        let before = state.clone();
        let whole = journal.len();
        change(&mut state, &mut journal, Set(2, Some("two".into())));
        let end = journal.len() as usize;
        drop(journal);
        let mut bytes = std::fs::read(journal_path(&path)).unwrap();
        // The second record's last bytes never reached the disk.
        bytes[end - 3..end].fill(0);
        std::fs::write(journal_path(&path), &bytes).unwrap();
        let (loaded, mut journal) = load(&path).unwrap();
        assert_eq!(loaded, before);
        assert_eq!(journal.len(), whole);
        assert_eq!(std::fs::metadata(journal.path()).unwrap().len(), whole);
        let mut state = loaded;
        change(&mut state, &mut journal, Set(3, Some("three".into())));
        assert_eq!(
            std::fs::metadata(journal.path()).unwrap().len(),
            journal.len() + PREALLOCATE_BYTES
        );
        drop(journal);
        assert_eq!(load(&path).unwrap().0, state);
    }

    /// Older frames past the end of the records (blocks a crash showed before their new
    /// contents were written) end the records, with or without damage before them; a later
    /// record after damage is still an error.
    #[test]
    fn older_records_past_the_end_are_not_taken_for_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut state, mut journal) = load(&path).unwrap();
        for i in 1..=3 {
            change(&mut state, &mut journal, Set(i, Some(format!("v{i}"))));
        }
        let len = journal.len() as usize;
        let records = std::fs::read(journal.path()).unwrap()[..len].to_vec();
        drop(journal);
        let old = |sequence: u64| {
            frame(
                sequence,
                &serde_json::to_vec(&Set(9, Some("old".into()))).unwrap(),
            )
        };
        let garbage = vec![0xab_u8; 10];
        for (case, tail) in [
            ("an older record right after", old(2)),
            ("a repeated last record", old(3)),
            (
                "damage, then an older record",
                [garbage.clone(), old(1)].concat(),
            ),
        ] {
            std::fs::write(journal_path(&path), [records.clone(), tail].concat()).unwrap();
            let (loaded, journal) = load(&path).unwrap();
            assert_eq!(loaded, state, "{case}");
            assert_eq!(journal.len() as usize, len, "{case}");
            assert_eq!(
                std::fs::metadata(journal.path()).unwrap().len() as usize,
                len,
                "{case}: cut off"
            );
        }
        for (case, tail) in [
            (
                "damage, then a later record",
                [garbage.clone(), old(4)].concat(),
            ),
            (
                "an older record, then a later one",
                [old(2), old(5)].concat(),
            ),
        ] {
            let bytes = [records.clone(), tail].concat();
            std::fs::write(journal_path(&path), &bytes).unwrap();
            let err = load(&path).unwrap_err();
            assert!(
                matches!(err, PersistError::JournalCorrupt { offset, .. } if offset as usize == len),
                "{case}: {err}"
            );
            assert_eq!(std::fs::read(journal_path(&path)).unwrap(), bytes, "{case}");
        }
    }

    #[test]
    fn a_damaged_record_before_an_intact_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut state, mut journal) = load(&path).unwrap();
        change(&mut state, &mut journal, Set(1, Some("one".into())));
        let first = journal.len() as usize;
        change(&mut state, &mut journal, Set(2, Some("two".into())));
        change(&mut state, &mut journal, Set(3, Some("three".into())));
        let bytes = std::fs::read(journal.path()).unwrap();
        drop(journal);
        for at in [first + 3, first + FRAME_HEADER + 2] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            std::fs::write(journal_path(&path), &damaged).unwrap();
            let err = load(&path).unwrap_err();
            assert!(
                matches!(err, PersistError::JournalCorrupt { offset, .. } if offset == first as u64),
                "{err}"
            );
            let message = err.to_string();
            assert!(message.contains("state.journal"), "{message}");
            assert!(message.contains("Restore the state directory"), "{message}");
            // Nothing was cut off: the journal is as it was found.
            assert_eq!(std::fs::read(journal_path(&path)).unwrap(), damaged);
        }
    }

    #[test]
    fn an_intact_record_that_does_not_read_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (_, mut journal) = load(&path).unwrap();
        journal.append(&"not a record").unwrap();
        drop(journal);
        let err = load(&path).unwrap_err();
        assert!(
            matches!(err, PersistError::JournalRecord { sequence: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn compaction_cut_short_at_any_step_loads_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut state, mut journal) = load(&path).unwrap();
        for i in 0..10 {
            change(&mut state, &mut journal, Set(i, Some(format!("v{i}"))));
        }
        journal.compact(&state).unwrap();
        change(&mut state, &mut journal, Set(3, None));
        change(&mut state, &mut journal, Set(11, Some("eleven".into())));
        let old_snapshot = std::fs::read(&path).unwrap();
        let old_journal = std::fs::read(journal.path()).unwrap();
        journal.compact(&state).unwrap();
        let new_snapshot = std::fs::read(&path).unwrap();
        drop(journal);
        let temporary = dir.path().join(".state.json.tmp");
        // (step, snapshot, temporary snapshot, journal)
        type Step<'a> = (&'a str, &'a [u8], Option<&'a [u8]>, &'a [u8]);
        let steps: [Step; 4] = [
            // The temporary snapshot written, not yet renamed.
            (
                "before the rename",
                &old_snapshot,
                Some(&new_snapshot),
                &old_journal,
            ),
            // Renamed; the journal still holds the records the snapshot now has.
            ("after the rename", &new_snapshot, None, &old_journal),
            // The journal emptied.
            ("done", &new_snapshot, None, b""),
            // Nothing done yet.
            ("not started", &old_snapshot, None, &old_journal),
        ];
        for (step, snapshot, pending, journal) in steps {
            std::fs::write(&path, snapshot).unwrap();
            std::fs::write(journal_path(&path), journal).unwrap();
            match pending {
                Some(bytes) => std::fs::write(&temporary, bytes).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&temporary);
                }
            }
            let (loaded, mut journal) = load(&path).unwrap();
            assert_eq!(loaded, state, "{step}");
            // And it goes on from there: a change after it loads too.
            let mut next = loaded;
            change(&mut next, &mut journal, Set(20, Some("next".into())));
            drop(journal);
            assert_eq!(load(&path).unwrap().0, next, "{step}, then a change");
        }
    }

    #[test]
    fn a_snapshot_from_before_journals_loads_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, br#"{"values": {"1": "one", "2": "two"}}"#).unwrap();
        let (mut state, mut journal) = load(&path).unwrap();
        assert_eq!(state.values.len(), 2);
        change(&mut state, &mut journal, Set(2, None));
        drop(journal);
        assert_eq!(load(&path).unwrap().0, state);
    }

    #[test]
    fn a_whole_file_written_by_an_earlier_version_after_the_journal_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut state, mut journal) = load(&path).unwrap();
        change(&mut state, &mut journal, Set(1, Some("one".into())));
        change(&mut state, &mut journal, Set(2, Some("two".into())));
        drop(journal);
        // Downgraded: the earlier version reads the snapshot only, and writes it whole.
        std::fs::write(&path, br#"{"values": {"3": "three"}}"#).unwrap();
        let (mut state, mut journal) = load(&path).unwrap();
        assert_eq!(state.values.keys().collect::<Vec<_>>(), ["3"]);
        assert!(journal.is_empty());
        change(&mut state, &mut journal, Set(4, Some("four".into())));
        drop(journal);
        assert_eq!(load(&path).unwrap().0, state);
    }

    #[test]
    fn the_journal_is_compacted_once_it_outgrows_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut state, mut journal) = load(&path).unwrap();
        let value = "x".repeat(1000);
        while !journal.wants_compaction() {
            change(&mut state, &mut journal, Set(1, Some(value.clone())));
        }
        let least = COMPACT_FACTOR as f64 * (1.0 - COMPACT_SPREAD) * COMPACT_MIN_BYTES as f64;
        assert!(journal.len() as f64 > least);
        assert!(journal.len() as f64 <= 1.01 * journal.compact_factor * COMPACT_MIN_BYTES as f64);
        journal.compact(&state).unwrap();
        assert!(journal.is_empty() && !journal.wants_compaction());
        drop(journal);
        assert_eq!(load(&path).unwrap().0, state);
    }
}
