//! The peer protocol: frames between two members of a resource.
//!
//! Every frame is a 24-byte header — magic, protocol version, message type, flags, sequence
//! number, payload length — then the payload: a fixed part whose size the message type decides,
//! then, for messages that carry data (`Write`, `ReadReply`, `ResyncData`), the data itself. A
//! data payload is never framed again: a write goes out as one vectored write (header, fixed
//! part, the very buffer the disk write uses) and is received straight into an aligned buffer.
//!
//! The codec is versioned: a peer speaking another [`PROTOCOL_VERSION`] is refused with a clear
//! reason at the handshake, and every decoder bounds what it reads ([`MAX_DATA_BYTES`],
//! [`MAX_CONTROL_BYTES`]), so a malformed or hostile frame is an error, never a panic or an
//! unbounded allocation.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::gi::{GenerationSet, GiFlags, HISTORY_UUIDS, MAX_NODES, Uuid};

/// `FMIR`, little-endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"FMIR");

/// The protocol version this build speaks. Bump on any change to the frames below.
pub const PROTOCOL_VERSION: u16 = 5;

/// The size of every frame header.
pub const HEADER_BYTES: usize = 24;

/// The most data one frame carries (a write, a read reply, a resync block).
pub const MAX_DATA_BYTES: u32 = ferrite_block::MAX_REQUEST_BYTES;

/// The most a frame without data carries (states, bitmaps in chunks).
pub const MAX_CONTROL_BYTES: u32 = 1 << 20;

/// Header flag: the write must be on stable storage when acknowledged.
pub const FLAG_FUA: u32 = 1;

/// Header flag of a write: the Primary writes it without at least one diskful member (one it
/// outdated first). A disk receiving such a write from a diskless Primary records it out of
/// sync toward the members it holds Outdated; a write without the flag reached every member
/// the Primary replicates to, and is not recorded (since version 4: before, every write of a
/// diskless Primary was, and a member resynced while the Primary already reached it again was
/// left with bits set for writes it had).
pub const FLAG_WRITTEN_WITHOUT: u32 = 2;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub flags: u32,
    pub seq: u64,
    /// Bytes after the header: the fixed part and the data.
    pub length: u32,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a MIRROR peer frame (magic {0:#010x})")]
    BadMagic(u32),
    #[error("the peer speaks protocol version {theirs}, this node {ours}")]
    Version { theirs: u16, ours: u16 },
    #[error("unknown message type {0}")]
    UnknownKind(u16),
    #[error("a {kind:?} frame of {length} bytes is out of bounds ({reason})")]
    BadLength {
        kind: Kind,
        length: u32,
        reason: &'static str,
    },
    #[error("malformed {kind:?} payload: {reason}")]
    Malformed { kind: Kind, reason: String },
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident = $value:literal, fixed $fixed:expr, data $data:literal;)+) => {
        /// Message types, with the size of their fixed part and whether data follows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Kind {
            $($(#[$doc])* $name = $value,)+
        }

        impl Kind {
            fn from_u16(value: u16) -> Option<Kind> {
                match value {
                    $($value => Some(Kind::$name),)+
                    _ => None,
                }
            }

            /// The size of the fixed part, or `None` where it varies (control messages).
            pub fn fixed_bytes(self) -> Option<usize> {
                match self {
                    $(Kind::$name => $fixed,)+
                }
            }

            /// Whether data follows the fixed part.
            pub fn carries_data(self) -> bool {
                match self {
                    $(Kind::$name => $data,)+
                }
            }
        }
    };
}

kinds! {
    /// Opens a connection: version, resource, node-id, a challenge.
    Hello = 1, fixed None, data false;
    /// The HMAC of the peer's challenge under the shared secret.
    Auth = 2, fixed Some(32), data false;
    /// A member's role and each volume's disk state and generation identifiers.
    State = 3, fixed None, data false;
    /// Replicate a write: volume, offset, then the data.
    Write = 10, fixed Some(16), data true;
    /// The write `seq` is on the peer's backing store.
    WriteAck = 11, fixed Some(0), data false;
    /// The write `seq` failed on the peer (errno).
    WriteNack = 12, fixed Some(4), data false;
    /// From a Primary: every write it sent on this connection up to `seq` reached every
    /// member it was replicated to, or was recorded out of sync toward those it missed
    /// (DRBD's `P_PEER_ACK`; since version 5). Until then the receiver counts the write as
    /// possibly missing on the other disks, should the Primary be lost.
    PeerAck = 15, fixed Some(0), data false;
    /// Everything the sender completed before is to be on stable storage.
    Flush = 13, fixed Some(0), data false;
    FlushAck = 14, fixed Some(4), data false;
    /// Read through a peer: volume, offset, length.
    Read = 20, fixed Some(16), data false;
    /// The data of read `seq` (or its errno, with no data).
    ReadReply = 21, fixed Some(4), data true;
    /// The peer's out-of-sync bitmap of one volume, in chunks.
    Bitmap = 30, fixed None, data false;
    /// Resync: send me this range (volume, offset, length).
    ResyncRequest = 31, fixed Some(16), data false;
    /// Resync data for a range (volume, offset, then the data).
    ResyncData = 32, fixed Some(16), data true;
    /// The resync of a volume is complete from the source's side.
    ResyncDone = 33, fixed Some(4), data false;
    /// Ask every peer to agree that the sender becomes Primary.
    PromoteRequest = 40, fixed Some(0), data false;
    /// The answer: granted or not (with the reason code).
    PromoteReply = 41, fixed Some(4), data false;
    /// The sender is Secondary again.
    Demoted = 42, fixed Some(0), data false;
    /// A range to mark out of sync: toward the sender, or toward the member named in the
    /// range's reserved field ([`OutOfSync`]): from a diskless Primary, the writes a peer
    /// acknowledged but had not flushed when it went away.
    OutOfSync = 43, fixed Some(16), data false;
    /// From a Primary: the diskful members it writes without (a mask of node-ids, u32), whose
    /// data is therefore outdated; the whole set each time. Answered with a `Pong` of the same
    /// sequence number once recorded, relayed once by its receivers (since version 2).
    Outdated = 44, fixed Some(4), data false;
    Ping = 50, fixed Some(0), data false;
    Pong = 51, fixed Some(0), data false;
}

/// Encodes a header.
pub fn encode_header(kind: Kind, flags: u32, seq: u64, length: u32) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    let mut out = &mut header[..];
    out.put_u32_le(MAGIC);
    out.put_u16_le(PROTOCOL_VERSION);
    out.put_u16_le(kind as u16);
    out.put_u32_le(flags);
    out.put_u64_le(seq);
    out.put_u32_le(length);
    header
}

/// Decodes and checks a header.
pub fn decode_header(bytes: &[u8; HEADER_BYTES]) -> Result<Header, WireError> {
    let mut input = &bytes[..];
    let magic = input.get_u32_le();
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = input.get_u16_le();
    if version != PROTOCOL_VERSION {
        return Err(WireError::Version {
            theirs: version,
            ours: PROTOCOL_VERSION,
        });
    }
    let raw_kind = input.get_u16_le();
    let kind = Kind::from_u16(raw_kind).ok_or(WireError::UnknownKind(raw_kind))?;
    let flags = input.get_u32_le();
    let seq = input.get_u64_le();
    let length = input.get_u32_le();
    let bad = |reason| WireError::BadLength {
        kind,
        length,
        reason,
    };
    match (kind.fixed_bytes(), kind.carries_data()) {
        (Some(fixed), false) if length as usize != fixed => {
            return Err(bad("the fixed part has another size"));
        }
        (Some(fixed), true)
            if (length as usize) < fixed || length - fixed as u32 > MAX_DATA_BYTES =>
        {
            return Err(bad("data beyond the limit"));
        }
        (None, _) if length > MAX_CONTROL_BYTES => return Err(bad("control message too large")),
        _ => {}
    }
    Ok(Header {
        kind,
        flags,
        seq,
        length,
    })
}

/// Where a write, read or resync range lands: volume and byte offset, and a length where the
/// message has no data to give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub volume: u16,
    pub offset: u64,
    pub length: u32,
}

impl Range {
    /// The 16-byte fixed part: volume u16, reserved u16, length u32, offset u64.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let mut cursor = &mut out[..];
        cursor.put_u16_le(self.volume);
        cursor.put_u16_le(0);
        cursor.put_u32_le(self.length);
        cursor.put_u64_le(self.offset);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Range, WireError> {
        if bytes.len() != 16 {
            return Err(WireError::Malformed {
                kind: Kind::Write,
                reason: format!("a range is 16 bytes, got {}", bytes.len()),
            });
        }
        let mut input = bytes;
        let volume = input.get_u16_le();
        let _reserved = input.get_u16_le();
        let length = input.get_u32_le();
        let offset = input.get_u64_le();
        Ok(Range {
            volume,
            offset,
            length,
        })
    }
}

/// `OutOfSync`: a [`Range`] whose reserved field names the member it is out of sync toward,
/// plus one (0: toward the sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfSync {
    pub range: Range,
    /// `None`: toward the sender.
    pub toward: Option<u8>,
}

impl OutOfSync {
    pub fn encode(&self) -> [u8; 16] {
        let mut out = self.range.encode();
        let toward = self.toward.map_or(0u16, |id| u16::from(id) + 1);
        out[2..4].copy_from_slice(&toward.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<OutOfSync, WireError> {
        let range = Range::decode(bytes)?;
        let toward = match u16::from_le_bytes([bytes[2], bytes[3]]) {
            0 => None,
            n if n <= MAX_MEMBERS => Some((n - 1) as u8),
            n => {
                return Err(WireError::Malformed {
                    kind: Kind::OutOfSync,
                    reason: format!("out of sync toward node-id {}, beyond 31", n - 1),
                });
            }
        };
        Ok(OutOfSync { range, toward })
    }
}

/// Node-ids are 0–31.
const MAX_MEMBERS: u16 = 32;

/// `Hello`: who is calling, for which resource, and a challenge to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub resource: String,
    pub node_id: u8,
    pub challenge: [u8; 32],
}

/// The longest resource name a `Hello` carries.
const MAX_NAME_BYTES: usize = 64;

impl Hello {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(4 + self.resource.len() + 32);
        out.put_u8(self.node_id);
        out.put_u8(0);
        out.put_u16_le(self.resource.len() as u16);
        out.put_slice(self.resource.as_bytes());
        out.put_slice(&self.challenge);
        out.freeze()
    }

    pub fn decode(mut input: &[u8]) -> Result<Hello, WireError> {
        let malformed = |reason: &str| WireError::Malformed {
            kind: Kind::Hello,
            reason: reason.to_string(),
        };
        if input.len() < 4 {
            return Err(malformed("too short"));
        }
        let node_id = input.get_u8();
        let _reserved = input.get_u8();
        let name_len = input.get_u16_le() as usize;
        if name_len == 0 || name_len > MAX_NAME_BYTES || input.len() != name_len + 32 {
            return Err(malformed("bad resource name length"));
        }
        let resource = std::str::from_utf8(&input[..name_len])
            .map_err(|_| malformed("resource name is not UTF-8"))?
            .to_string();
        input.advance(name_len);
        let mut challenge = [0u8; 32];
        challenge.copy_from_slice(input);
        if node_id as usize >= MAX_NODES {
            return Err(malformed("node-id out of range"));
        }
        Ok(Hello {
            resource,
            node_id,
            challenge,
        })
    }
}

/// A volume's disk state, DRBD's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DiskState {
    Diskless = 0,
    Attaching = 1,
    Failed = 2,
    Inconsistent = 3,
    Outdated = 4,
    UpToDate = 5,
}

impl DiskState {
    fn from_u8(value: u8) -> Option<DiskState> {
        Some(match value {
            0 => DiskState::Diskless,
            1 => DiskState::Attaching,
            2 => DiskState::Failed,
            3 => DiskState::Inconsistent,
            4 => DiskState::Outdated,
            5 => DiskState::UpToDate,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DiskState::Diskless => "Diskless",
            DiskState::Attaching => "Attaching",
            DiskState::Failed => "Failed",
            DiskState::Inconsistent => "Inconsistent",
            DiskState::Outdated => "Outdated",
            DiskState::UpToDate => "UpToDate",
        }
    }
}

/// One volume in a `State` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeState {
    pub volume: u16,
    pub disk: DiskState,
    pub usable_bytes: u64,
    pub generations: GenerationSet,
    /// The sender holds blocks out of sync toward the receiver (since version 5): with equal
    /// generations, the two reconcile them (`gi::reconcile`).
    pub out_of_sync_toward_receiver: bool,
}

/// Bit of a volume state's flags byte: [`VolumeState::out_of_sync_toward_receiver`].
const VOLUME_OUT_OF_SYNC_TOWARD_RECEIVER: u8 = 1;

/// `State`: the sender's role, the Primary whose writes it receives, and its volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMessage {
    pub primary: bool,
    /// The node-id of the member whose writes the sender applies: itself when it is Primary,
    /// else a Primary it is connected to, else none. A resync target reads it to know whether
    /// its source receives writes the target does not (`resource`, "held resyncs").
    pub writer: Option<u8>,
    pub volumes: Vec<VolumeState>,
}

/// Bytes of one encoded volume state.
const VOLUME_STATE_BYTES: usize = 2 + 1 + 1 + 8 + 8 + 4 + (MAX_NODES + HISTORY_UUIDS) * 8;

/// The most volumes a resource has (LINSTOR's volume numbers go further, but a resource with
/// more volumes than this is not a thing).
pub const MAX_VOLUMES: usize = 1024;

impl StateMessage {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(4 + self.volumes.len() * VOLUME_STATE_BYTES);
        out.put_u8(u8::from(self.primary));
        // 0: none; otherwise node-id + 1.
        out.put_u8(self.writer.map_or(0, |id| id + 1));
        out.put_u16_le(self.volumes.len() as u16);
        for volume in &self.volumes {
            out.put_u16_le(volume.volume);
            out.put_u8(volume.disk as u8);
            out.put_u8(if volume.out_of_sync_toward_receiver {
                VOLUME_OUT_OF_SYNC_TOWARD_RECEIVER
            } else {
                0
            });
            out.put_u64_le(volume.usable_bytes);
            let g = &volume.generations;
            out.put_u64_le(g.current.raw());
            out.put_u32_le(g.flags.bits());
            for uuid in g.bitmap.iter().chain(g.history.iter()) {
                out.put_u64_le(uuid.raw());
            }
        }
        out.freeze()
    }

    pub fn decode(mut input: &[u8]) -> Result<StateMessage, WireError> {
        let malformed = |reason: String| WireError::Malformed {
            kind: Kind::State,
            reason,
        };
        if input.len() < 4 {
            return Err(malformed("too short".into()));
        }
        let primary = match input.get_u8() {
            0 => false,
            1 => true,
            other => return Err(malformed(format!("role byte {other}"))),
        };
        let writer = match input.get_u8() {
            0 => None,
            id if usize::from(id) <= MAX_NODES => Some(id - 1),
            other => return Err(malformed(format!("writer byte {other}"))),
        };
        let count = input.get_u16_le() as usize;
        if count > MAX_VOLUMES || input.len() != count * VOLUME_STATE_BYTES {
            return Err(malformed(format!(
                "{count} volumes in {} bytes",
                input.len()
            )));
        }
        let mut volumes = Vec::with_capacity(count);
        for _ in 0..count {
            let volume = input.get_u16_le();
            let disk = DiskState::from_u8(input.get_u8())
                .ok_or_else(|| malformed("unknown disk state".into()))?;
            let volume_flags = input.get_u8();
            if volume_flags & !VOLUME_OUT_OF_SYNC_TOWARD_RECEIVER != 0 {
                return Err(malformed(format!("unknown volume flags {volume_flags:#x}")));
            }
            let usable_bytes = input.get_u64_le();
            let current = Uuid::from_raw(input.get_u64_le());
            let flags = GiFlags::from_bits(input.get_u32_le())
                .map_err(|unknown| malformed(format!("unknown generation flags {unknown:#x}")))?;
            let mut generations = GenerationSet::just_created();
            generations.current = current;
            generations.flags = flags;
            for slot in generations.bitmap.iter_mut() {
                *slot = Uuid::from_raw(input.get_u64_le());
            }
            for slot in generations.history.iter_mut() {
                *slot = Uuid::from_raw(input.get_u64_le());
            }
            volumes.push(VolumeState {
                volume,
                disk,
                usable_bytes,
                generations,
                out_of_sync_toward_receiver: volume_flags & VOLUME_OUT_OF_SYNC_TOWARD_RECEIVER != 0,
            });
        }
        Ok(StateMessage {
            primary,
            writer,
            volumes,
        })
    }
}

/// A chunk of a volume's out-of-sync bitmap: which words of the bitmap, and the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitmapChunk {
    pub volume: u16,
    /// The index of the first 64-bit word.
    pub first_word: u64,
    /// Whether this is the last chunk of the volume's bitmap.
    pub last: bool,
    pub words: Vec<u64>,
}

/// The most words in one bitmap chunk (a chunk stays well below MAX_CONTROL_BYTES).
pub const BITMAP_CHUNK_WORDS: usize = 16 * 1024;

impl BitmapChunk {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(16 + self.words.len() * 8);
        out.put_u16_le(self.volume);
        out.put_u8(u8::from(self.last));
        out.put_u8(0);
        out.put_u32_le(self.words.len() as u32);
        out.put_u64_le(self.first_word);
        for word in &self.words {
            out.put_u64_le(*word);
        }
        out.freeze()
    }

    pub fn decode(mut input: &[u8]) -> Result<BitmapChunk, WireError> {
        let malformed = |reason: String| WireError::Malformed {
            kind: Kind::Bitmap,
            reason,
        };
        if input.len() < 16 {
            return Err(malformed("too short".into()));
        }
        let volume = input.get_u16_le();
        let last = match input.get_u8() {
            0 => false,
            1 => true,
            other => return Err(malformed(format!("last byte {other}"))),
        };
        let _reserved = input.get_u8();
        let count = input.get_u32_le() as usize;
        let first_word = input.get_u64_le();
        if count > BITMAP_CHUNK_WORDS || input.len() != count * 8 {
            return Err(malformed(format!("{count} words in {} bytes", input.len())));
        }
        let words = (0..count).map(|_| input.get_u64_le()).collect();
        Ok(BitmapChunk {
            volume,
            first_word,
            last,
            words,
        })
    }
}

/// Reasons a promotion is refused, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum PromoteAnswer {
    Granted = 0,
    /// The answering member is Primary itself.
    PeerIsPrimary = 1,
    /// The answering member knows another Primary.
    OtherPrimary = 2,
    /// The answering member is promoting too and wins the race (lower node-id).
    Race = 3,
    /// The answering member knows that the asking member's data is outdated: a Primary wrote
    /// without it.
    Outdated = 4,
}

impl PromoteAnswer {
    pub fn from_u32(value: u32) -> Option<PromoteAnswer> {
        Some(match value {
            0 => PromoteAnswer::Granted,
            1 => PromoteAnswer::PeerIsPrimary,
            2 => PromoteAnswer::OtherPrimary,
            3 => PromoteAnswer::Race,
            4 => PromoteAnswer::Outdated,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        let header = encode_header(Kind::Write, FLAG_FUA, 77, 16 + 4096);
        let decoded = decode_header(&header).unwrap();
        assert_eq!(
            decoded,
            Header {
                kind: Kind::Write,
                flags: FLAG_FUA,
                seq: 77,
                length: 4112
            }
        );
        let mut bad = header;
        bad[0] ^= 1;
        assert!(matches!(decode_header(&bad), Err(WireError::BadMagic(_))));
        let mut other_version = header;
        other_version[4] = 9;
        assert!(matches!(
            decode_header(&other_version),
            Err(WireError::Version { theirs: 9, .. })
        ));
        let too_big = encode_header(Kind::Write, 0, 1, 16 + MAX_DATA_BYTES + 1);
        assert!(matches!(
            decode_header(&too_big),
            Err(WireError::BadLength { .. })
        ));
        let wrong_fixed = encode_header(Kind::WriteAck, 0, 1, 3);
        assert!(decode_header(&wrong_fixed).is_err());
    }

    #[test]
    fn hello_and_state_round_trip() {
        let hello = Hello {
            resource: "web".into(),
            node_id: 3,
            challenge: [7; 32],
        };
        assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        let mut generations = GenerationSet::just_created();
        generations.current = Uuid::from_raw(0x1234_5678_0000);
        generations.bitmap[2] = Uuid::from_raw(0x99_0000);
        let state = StateMessage {
            primary: true,
            writer: Some(31),
            volumes: vec![VolumeState {
                volume: 0,
                disk: DiskState::UpToDate,
                usable_bytes: 1 << 30,
                generations,
                out_of_sync_toward_receiver: true,
            }],
        };
        assert_eq!(StateMessage::decode(&state.encode()).unwrap(), state);
        let mut unknown_flag = state.encode().to_vec();
        unknown_flag[4 + 3] = 0x80;
        assert!(StateMessage::decode(&unknown_flag).is_err());
        let follows_none = StateMessage {
            writer: None,
            ..state.clone()
        };
        assert_eq!(
            StateMessage::decode(&follows_none.encode()).unwrap(),
            follows_none
        );
        // A writer byte past node-id 31 is malformed.
        let mut bad = state.encode().to_vec();
        bad[1] = MAX_NODES as u8 + 1;
        assert!(StateMessage::decode(&bad).is_err());
        let chunk = BitmapChunk {
            volume: 1,
            first_word: 40,
            last: true,
            words: vec![1, u64::MAX, 0],
        };
        assert_eq!(BitmapChunk::decode(&chunk.encode()).unwrap(), chunk);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// No input makes a decoder panic.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut header = [0u8; HEADER_BYTES];
            let n = bytes.len().min(HEADER_BYTES);
            header[..n].copy_from_slice(&bytes[..n]);
            let _ = decode_header(&header);
            let _ = Hello::decode(&bytes);
            let _ = StateMessage::decode(&bytes);
            let _ = BitmapChunk::decode(&bytes);
            let _ = Range::decode(&bytes);
            let _ = OutOfSync::decode(&bytes);
        }

        /// An `OutOfSync` comes back as sent, toward any member or the sender.
        #[test]
        fn out_of_sync_round_trips(volume: u16, offset: u64, length: u32, toward in proptest::option::of(0u8..32)) {
            let message = OutOfSync { range: Range { volume, offset, length }, toward };
            prop_assert_eq!(OutOfSync::decode(&message.encode()).unwrap(), message);
        }

        #[test]
        fn valid_headers_always_decode(kind in prop_oneof![
            Just(Kind::Write), Just(Kind::WriteAck), Just(Kind::Read), Just(Kind::State)
        ], seq: u64, flags: u32, data in 0u32..(1 << 20)) {
            let length = match kind.fixed_bytes() {
                Some(fixed) if kind.carries_data() => fixed as u32 + data,
                Some(fixed) => fixed as u32,
                None => data,
            };
            let decoded = decode_header(&encode_header(kind, flags, seq, length)).unwrap();
            prop_assert_eq!(decoded.kind, kind);
            prop_assert_eq!(decoded.seq, seq);
            prop_assert_eq!(decoded.length, length);
        }
    }
}
