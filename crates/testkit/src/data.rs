//! Known data in users' volumes, to prove that a fault lost none of it.
//!
//! A [`Pattern`] fills a whole volume with blocks that name themselves: every 4 KiB block
//! starts with a header (a magic word, the pattern's tag, the block's index) followed by bytes
//! drawn from a generator seeded by tag and index. So no two blocks of two patterns are alike,
//! a block written to the wrong place or a volume mixed up with another is recognised, and a
//! check that fails says what it found instead (zeros, block 7 of `web@node2/0`, garbage).
//!
//! Data is written through the block device a volume report names (as a user of the volume
//! would) and flushed; it is checked in the backing file, which is what survives restarts.
//!
//! It does not know about clusters or volumes: it reads and writes paths.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The unit of the pattern; volumes are whole multiples of it.
pub const BLOCK: usize = 4096;

/// Starts every block of a pattern.
const MAGIC: &[u8; 8] = b"FERRITE:";
/// The tag's room in the header; longer tags are cut (they still seed the generator whole).
const TAG_BYTES: usize = 32;
/// Magic, tag, block index.
const HEADER: usize = MAGIC.len() + TAG_BYTES + 8;

/// The contents a test puts into one volume: `len` bytes of self-describing blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tag: String,
    seed: u64,
    len: u64,
}

impl Pattern {
    /// The pattern `tag` (e.g. `web@node1/0`) over `len` bytes, a multiple of [`BLOCK`].
    pub fn new(tag: &str, len: u64) -> Pattern {
        assert!(
            len > 0 && len.is_multiple_of(BLOCK as u64),
            "a pattern covers whole blocks"
        );
        Pattern {
            tag: tag.to_string(),
            seed: fnv1a(tag.as_bytes()),
            len,
        }
    }

    /// The pattern over a volume of `size_kib` KiB.
    pub fn for_volume(tag: &str, size_kib: u64) -> Pattern {
        Pattern::new(tag, size_kib * 1024)
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn blocks(&self) -> u64 {
        self.len / BLOCK as u64
    }

    /// Block `index` of the pattern.
    pub fn block(&self, index: u64) -> Vec<u8> {
        let mut block = vec![0u8; BLOCK];
        block[..MAGIC.len()].copy_from_slice(MAGIC);
        let tag = self.tag.as_bytes();
        let n = tag.len().min(TAG_BYTES);
        block[MAGIC.len()..MAGIC.len() + n].copy_from_slice(&tag[..n]);
        block[MAGIC.len() + TAG_BYTES..HEADER].copy_from_slice(&index.to_le_bytes());
        let mut state = self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for chunk in block[HEADER..].chunks_mut(8) {
            let word = splitmix64(&mut state).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        block
    }

    /// A checksum of the whole pattern, to print beside a volume.
    pub fn checksum(&self) -> u64 {
        let mut hash = FNV_OFFSET;
        for index in 0..self.blocks() {
            hash = fnv1a_continue(hash, &self.block(index));
        }
        hash
    }

    /// Writes the whole pattern to `path` (a block device or a file) from its start and
    /// flushes it to stable storage before returning.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut target = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("opening {} to write '{}'", path.display(), self.tag))?;
        for index in 0..self.blocks() {
            target
                .write_all(&self.block(index))
                .with_context(|| format!("writing block {index} to {}", path.display()))?;
        }
        target
            .sync_all()
            .with_context(|| format!("flushing {}", path.display()))
    }

    /// Checks that `path` holds exactly this pattern: its size is the pattern's and every byte
    /// is the pattern's. The error says how many blocks differ and what the first one holds.
    pub fn verify(&self, path: &Path) -> Result<()> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("'{}' should be in {}", self.tag, path.display()))?
            .len();
        if size != self.len && !is_block_device(path) {
            bail!(
                "{} is {size} bytes, '{}' was {} bytes",
                path.display(),
                self.tag,
                self.len
            );
        }
        self.verify_start(path)
    }

    /// Checks that `path` starts with exactly this pattern, whatever follows it (a replicated
    /// volume's backing store holds its metadata after the data).
    pub fn verify_start(&self, path: &Path) -> Result<()> {
        let mut file = File::open(path)
            .with_context(|| format!("opening {} to check '{}'", path.display(), self.tag))?;
        let mut buffer = vec![0u8; BLOCK];
        let mut bad = 0u64;
        let mut first: Option<(u64, Found)> = None;
        for index in 0..self.blocks() {
            file.read_exact(&mut buffer)
                .with_context(|| format!("reading block {index} of {}", path.display()))?;
            if buffer != self.block(index) {
                bad += 1;
                if first.is_none() {
                    first = Some((index, Found::of(&buffer)));
                }
            }
        }
        match first {
            None => Ok(()),
            Some((index, found)) => bail!(
                "{}: {bad} of {} blocks differ from '{}'; the first, block {index} (byte {}), holds {found}",
                path.display(),
                self.blocks(),
                self.tag,
                index * BLOCK as u64
            ),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' ({} KiB, checksum {:016x})",
            self.tag,
            self.len / 1024,
            self.checksum()
        )
    }
}

/// What a block that is not the expected one holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Zeros,
    /// A block of a pattern, maybe another one or another index.
    Block {
        tag: String,
        index: u64,
    },
    Other,
}

impl Found {
    pub fn of(block: &[u8]) -> Found {
        if block.iter().all(|b| *b == 0) {
            return Found::Zeros;
        }
        if block.len() >= HEADER && &block[..MAGIC.len()] == MAGIC {
            let tag = &block[MAGIC.len()..MAGIC.len() + TAG_BYTES];
            let end = tag.iter().position(|b| *b == 0).unwrap_or(TAG_BYTES);
            let mut index = [0u8; 8];
            index.copy_from_slice(&block[MAGIC.len() + TAG_BYTES..HEADER]);
            return Found::Block {
                tag: String::from_utf8_lossy(&tag[..end]).into_owned(),
                index: u64::from_le_bytes(index),
            };
        }
        Found::Other
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Zeros => write!(f, "zeros"),
            Found::Block { tag, index } => write!(f, "block {index} of '{tag}'"),
            Found::Other => write!(f, "bytes of no pattern"),
        }
    }
}

/// Whether every byte of `path` is zero (a fresh volume), with the size it has.
pub fn is_all_zero(path: &Path) -> Result<bool> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buffer = vec![0u8; 64 * BLOCK];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(true);
        }
        if buffer[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
    }
}

/// The first block of `path` that belongs to `pattern` (at any position), if one does: proof
/// that data of an earlier volume leaked into this one.
pub fn find_block_of(path: &Path, pattern: &Pattern) -> Result<Option<u64>> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buffer = vec![0u8; BLOCK];
    let mut index = 0u64;
    loop {
        match file.read_exact(&mut buffer) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        if let Found::Block { tag, .. } = Found::of(&buffer)
            && tag == pattern.tag[..pattern.tag.len().min(TAG_BYTES)]
        {
            return Ok(Some(index));
        }
        index += 1;
    }
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_continue(FNV_OFFSET, bytes)
}

fn fnv1a_continue(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_verifies_and_names_what_it_finds_instead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("volume.img");
        std::fs::write(&path, vec![0u8; 4 * BLOCK]).unwrap();
        assert!(is_all_zero(&path).unwrap());
        let pattern = Pattern::new("web@node1/0", 4 * BLOCK as u64);
        pattern.write(&path).unwrap();
        pattern.verify(&path).unwrap();
        assert!(!is_all_zero(&path).unwrap());
        assert_eq!(find_block_of(&path, &pattern).unwrap(), Some(0));

        // Another pattern's volume is recognised as such.
        let other = Pattern::new("web@node2/0", 4 * BLOCK as u64);
        let err = other.verify(&path).unwrap_err().to_string();
        assert!(err.contains("4 of 4 blocks differ"), "{err}");
        assert!(err.contains("holds block 0 of 'web@node1/0'"), "{err}");
        assert_eq!(find_block_of(&path, &other).unwrap(), None);

        // One block zeroed, one shifted.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[2 * BLOCK..3 * BLOCK].fill(0);
        bytes.copy_within(0..BLOCK, 3 * BLOCK);
        std::fs::write(&path, &bytes).unwrap();
        let err = pattern.verify(&path).unwrap_err().to_string();
        assert!(err.contains("2 of 4 blocks differ"), "{err}");
        assert!(err.contains("block 2 (byte 8192), holds zeros"), "{err}");

        // A file of another size.
        std::fs::write(&path, vec![0u8; BLOCK]).unwrap();
        let err = pattern.verify(&path).unwrap_err().to_string();
        assert!(err.contains("is 4096 bytes"), "{err}");
    }

    #[test]
    fn patterns_differ_by_tag_and_block() {
        let a = Pattern::new("a", BLOCK as u64 * 2);
        let b = Pattern::new("b", BLOCK as u64 * 2);
        assert_ne!(a.block(0), a.block(1));
        assert_ne!(a.block(0)[HEADER..], b.block(0)[HEADER..]);
        assert_ne!(a.checksum(), b.checksum());
        assert_eq!(
            Found::of(&b.block(1)),
            Found::Block {
                tag: "b".into(),
                index: 1
            }
        );
    }
}
